//! Which of a model's sizes depend on the *values* of its input, found without running it.
//!
//! An uploaded model is run on probe rows in a child process before the server keeps it
//! ([`crate::zoo::check`]), which bounds what it costs on rows like those. It cannot bound a model whose
//! tensors are sized by the values it reads: a `ConstantOfShape` whose side is
//! `Cast(ReduceMax(x) > 2) * 20000` is empty on probe rows in [0, 1) and 1.6 GB on a dataset of pixel
//! values; an `If` on the
//! input's values runs a branch the probe never took; a `Loop` whose condition reads the input runs as
//! long as the data says. This module follows the input's values through the graph (through
//! subgraphs and model-local functions; `Shape` and `Size` read only shapes) and names the first
//! operator whose output size, branch or trip count they reach. Every size left depends only on the
//! input's shape and the model's constants, which the check's probe batches measure.
//!
//! Real classifiers exported from PyTorch, TensorFlow and scikit-learn size their tensors from constants
//! and `Shape` (every bundled teacher passes); operators outside the standard domains are accepted on
//! the input's values only when they are known to keep their output sizes.
use std::collections::HashSet;

use super::proto::{FunctionProto, GraphProto, ModelProto, NodeProto};

/// Standard operators and the inputs that set the size of their output (or choose it among several).
fn size_inputs(op: &str) -> &'static [usize] {
    match op {
        "ConstantOfShape" | "HannWindow" | "HammingWindow" | "BlackmanWindow" => &[0],
        "Range" | "MelWeightMatrix" => &[0, 1, 2],
        "Expand" | "Tile" | "Reshape" | "Upsample" | "OneHot" | "TopK" | "Split" | "Squeeze"
        | "Unsqueeze" | "CenterCropPad" | "SplitToSequence" | "SequenceAt" | "SequenceErase"
        | "DFT" | "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => &[1],
        "Resize" => &[1, 2, 3],
        "Pad" => &[1, 3],
        "Slice" => &[1, 2, 3, 4],
        "Col2Im" => &[1, 2],
        "STFT" => &[1, 2, 3],
        "MaxUnpool" | "NonMaxSuppression" | "SequenceInsert" => &[2],
        // the trip count and the condition
        "Loop" => &[0, 1],
        // the branch
        "If" => &[0],
        _ => &[],
    }
}

/// Standard operators whose output size is how many input values meet a condition.
const COUNTED: &[&str] = &[
    "NonZero",
    "Unique",
    "Compress",
    "StringSplit",
    "NonMaxSuppression",
];

/// Operators outside the standard domains (ONNX Runtime's contrib ops, as its graph optimizer writes
/// them) known to size their outputs from their inputs' shapes alone.
const FIXED_CONTRIB: &[&str] = &[
    "Attention",
    "BiasAdd",
    "BiasGelu",
    "BiasSoftmax",
    "DequantizeLinear",
    "DynamicQuantizeMatMul",
    "FastGelu",
    "FusedConv",
    "FusedGemm",
    "FusedMatMul",
    "Gelu",
    "GroupNorm",
    "LayerNormalization",
    "MatMulIntegerToFloat",
    "MatMulNBits",
    "MultiHeadAttention",
    "NhwcConv",
    "NhwcMaxPool",
    "QLinearAdd",
    "QLinearAveragePool",
    "QLinearConcat",
    "QLinearConv",
    "QLinearGlobalAveragePool",
    "QLinearLeakyRelu",
    "QLinearMul",
    "QLinearSigmoid",
    "QuantizeLinear",
    "QuickGelu",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
];

/// Deeper nesting of subgraphs and function calls than this is refused (a real model nests a few).
const MAX_DEPTH: usize = 16;

/// Node visits the analysis may make (a sorted graph is passed over twice, each subgraph twice more for
/// each pass over its parent): a file built to make it slow is refused instead.
const MAX_VISITS: usize = 2_000_000;

/// The first operator of `model` whose output size, branch or trip count depends on the values of the
/// model's input, described for an error message; `None` when every size depends only on shapes and
/// constants.
pub fn value_dependent(model: &ModelProto) -> Option<String> {
    let g = model.graph.as_ref()?;
    let constant: HashSet<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let mut reads: HashSet<String> = g
        .input
        .iter()
        .filter_map(|i| i.name.clone())
        .filter(|n| !constant.contains(n.as_str()))
        .collect();
    let walk = Walk {
        functions: &model.functions,
        visits: std::cell::Cell::new(0),
    };
    walk.nodes(&g.node, &mut reads, 0).err()
}

struct Walk<'a> {
    functions: &'a [FunctionProto],
    visits: std::cell::Cell<usize>,
}

impl Walk<'_> {
    /// Marks in `reads` every tensor of `nodes` computed from a tensor already in it. ONNX graphs are
    /// sorted (a node after its inputs' producers); a graph that is not is passed over until nothing
    /// changes, so an unsorted file cannot hide a dependence.
    fn nodes(
        &self,
        nodes: &[NodeProto],
        reads: &mut HashSet<String>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "subgraphs or functions nested more than {MAX_DEPTH} deep"
            ));
        }
        loop {
            let before = reads.len();
            self.visits.set(self.visits.get() + nodes.len());
            if self.visits.get() > MAX_VISITS {
                return Err(format!(
                    "a graph too large or too deeply nested to analyze (more than {MAX_VISITS} node \
                     visits)"
                ));
            }
            for n in nodes {
                self.node(n, reads, depth)?;
            }
            if reads.len() == before {
                return Ok(());
            }
        }
    }

    fn node(&self, n: &NodeProto, reads: &mut HashSet<String>, depth: usize) -> Result<(), String> {
        let op = n.op_type.as_deref().unwrap_or("");
        let domain = n.domain.as_deref().unwrap_or("");
        let read = |name: &String| !name.is_empty() && reads.contains(name);
        let any = n.input.iter().any(read);
        let what = || {
            let name = n.name.as_deref().filter(|s| !s.is_empty());
            let prefix = if domain.is_empty() {
                String::new()
            } else {
                format!("{domain}.")
            };
            match name {
                Some(name) => format!("{prefix}{op} node '{name}'"),
                None => format!("{prefix}{op} node"),
            }
        };
        let function = self
            .functions
            .iter()
            .find(|f| f.name.as_deref() == Some(op) && f.domain.as_deref().unwrap_or("") == domain);
        let mut out = any && !matches!((domain, op), ("" | "ai.onnx", "Shape" | "Size"));
        match domain {
            "" | "ai.onnx" => {
                if let Some(&k) = size_inputs(op)
                    .iter()
                    .find(|&&k| n.input.get(k).is_some_and(read))
                {
                    let role = match op {
                        "Loop" => "trip count or condition",
                        "If" => "branch",
                        _ => "output size",
                    };
                    return Err(format!(
                        "the {role} of its {} (input {k}) depends on the values of the model's input",
                        what()
                    ));
                }
                if any && COUNTED.contains(&op) {
                    return Err(format!(
                        "the output size of its {} is a count of the model's input values",
                        what()
                    ));
                }
            }
            "ai.onnx.ml" => {}
            _ if function.is_some() => {}
            _ if any && !FIXED_CONTRIB.contains(&op) => {
                return Err(format!(
                    "its {} reads the model's input values, and faculty cannot tell whether that \
                     operator's output size depends on them (export with standard ONNX operators)",
                    what()
                ));
            }
            _ => {}
        }
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                if self.subgraph(n, g, reads, depth)? {
                    out = true;
                }
            }
        }
        if let Some(f) = function {
            let mut inner: HashSet<String> = f
                .input
                .iter()
                .zip(&n.input)
                .filter(|(_, actual)| read(actual))
                .map(|(formal, _)| formal.clone())
                .collect();
            self.nodes(&f.node, &mut inner, depth + 1)?;
            out |= f.output.iter().any(|o| inner.contains(o));
        }
        if out {
            reads.extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
        }
        Ok(())
    }

    /// Follows the values into a subgraph of `n` (a `Loop` or `Scan` body, an `If` branch): its formal
    /// inputs read what the node's inputs at the same position read, and it sees the outer scope. True
    /// when an output of the subgraph reads the input's values.
    fn subgraph(
        &self,
        n: &NodeProto,
        g: &GraphProto,
        reads: &HashSet<String>,
        depth: usize,
    ) -> Result<bool, String> {
        let mut inner = reads.clone();
        for (formal, actual) in g.input.iter().zip(&n.input) {
            if let Some(name) = &formal.name
                && !actual.is_empty()
                && reads.contains(actual)
            {
                inner.insert(name.clone());
            }
        }
        self.nodes(&g.node, &mut inner, depth + 1)?;
        let outputs: Vec<bool> = g
            .output
            .iter()
            .map(|o| o.name.as_ref().is_some_and(|n| inner.contains(n)))
            .collect();
        if n.op_type.as_deref() == Some("Loop") && outputs.first() == Some(&true) {
            return Err(format!(
                "the condition its Loop body returns depends on the values of the model's input{}",
                n.name
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" (node '{s}')"))
                    .unwrap_or_default()
            ));
        }
        Ok(outputs.into_iter().any(|b| b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn models(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                models(&p, out);
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }

    use crate::onnx::build::*;
    use crate::onnx::proto::{AttributeProto, FunctionProto, attribute_proto::AttributeType};

    /// A model reading `input` ([-1, 4]) through `nodes` into `out`, with `inits` as initializers.
    fn graph_model(
        nodes: Vec<NodeProto>,
        inits: Vec<crate::onnx::proto::TensorProto>,
    ) -> ModelProto {
        model(
            nodes,
            inits,
            vec![value_info("input", &[-1, 4])],
            vec![float_value_info_any_shape("out")],
            &[],
        )
    }

    fn body(nodes: Vec<NodeProto>, inputs: &[&str], outputs: &[&str]) -> GraphProto {
        GraphProto {
            name: Some("body".into()),
            node: nodes,
            input: inputs
                .iter()
                .map(|n| float_value_info_any_shape(n))
                .collect(),
            output: outputs
                .iter()
                .map(|n| float_value_info_any_shape(n))
                .collect(),
            ..Default::default()
        }
    }

    fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(g),
            ..Default::default()
        }
    }

    #[test]
    fn sizes_from_the_input_shape_pass_and_sizes_from_its_values_are_named() {
        // torch's flatten: Reshape to [rows, -1] through Shape, Gather, Concat
        let flatten = graph_model(
            vec![
                node("Shape", &["input"], "s", vec![]),
                node("Gather", &["s", "zero"], "rows", vec![attr_int("axis", 0)]),
                node("Unsqueeze", &["rows", "axes"], "rows1", vec![]),
                node(
                    "Concat",
                    &["rows1", "minus1"],
                    "shape",
                    vec![attr_int("axis", 0)],
                ),
                node("Reshape", &["input", "shape"], "out", vec![]),
            ],
            vec![
                tensor_i64("zero", &[0]),
                tensor_i64("axes", &[0]),
                tensor_i64("minus1", &[-1]),
            ],
        );
        assert_eq!(value_dependent(&flatten), None);
        // the same Reshape with its shape read from the values
        let mut m = flatten.clone();
        m.graph.as_mut().unwrap().node[0] = node("Cast", &["input"], "s", vec![attr_int("to", 7)]);
        let why = value_dependent(&m).unwrap();
        assert!(
            why.contains("output size of its Reshape node 'out' (input 1)"),
            "{why}"
        );
        // listed out of order (ONNX asks for sorted nodes; ONNX Runtime sorts them itself)
        m.graph.as_mut().unwrap().node.reverse();
        let why = value_dependent(&m).unwrap();
        assert!(why.contains("Reshape node 'out'"), "{why}");
        // values through a gather of the shape are values (indices read from the input)
        let m = graph_model(
            vec![
                node("Cast", &["input"], "iv", vec![attr_int("to", 7)]),
                node("Shape", &["input"], "s", vec![]),
                node("Gather", &["s", "iv"], "picked", vec![attr_int("axis", 0)]),
                node("ConstantOfShape", &["picked"], "out", vec![]),
            ],
            vec![],
        );
        assert!(value_dependent(&m).unwrap().contains("ConstantOfShape"));
        // counting values
        let m = graph_model(vec![node("NonZero", &["input"], "out", vec![])], vec![]);
        assert!(
            value_dependent(&m)
                .unwrap()
                .contains("a count of the model's input values")
        );
    }

    #[test]
    fn loops_branches_and_functions_are_followed() {
        // a loop that runs while the carried value (the input's sum) stays above 0
        let cond_body = body(
            vec![
                node("Sub", &["v_in", "one"], "v_out", vec![]),
                node("Greater", &["v_out", "zero_f"], "cond_out", vec![]),
            ],
            &["i", "cond_in", "v_in"],
            &["cond_out", "v_out"],
        );
        let looped = |trips: &str| {
            let mut l = node(
                "Loop",
                &[trips, "go", "total"],
                "out",
                vec![graph_attr("body", cond_body.clone())],
            );
            l.output = vec!["out".into()];
            graph_model(
                vec![
                    node(
                        "ReduceSum",
                        &["input"],
                        "total",
                        vec![attr_int("keepdims", 0)],
                    ),
                    node("Cast", &["total"], "total_i", vec![attr_int("to", 7)]),
                    l,
                ],
                vec![
                    tensor_i64("ten", &[10]),
                    tensor_f32("one", &[], &[1.0]),
                    tensor_f32("zero_f", &[], &[0.0]),
                ],
            )
        };
        let why = value_dependent(&looped("ten")).unwrap();
        assert!(why.contains("condition its Loop body returns"), "{why}");
        let why = value_dependent(&looped("total_i")).unwrap();
        assert!(
            why.contains("trip count or condition of its Loop node 'out' (input 0)"),
            "{why}"
        );
        // a branch that only reads the values (not chosen by them) passes; a size inside it that reads
        // them (through the outer scope) is named
        let branch = |size_from: &str| {
            let mut c = node("ConstantOfShape", &[size_from], "b_out", vec![]);
            c.name = Some("inner".into());
            body(vec![c], &[], &["b_out"])
        };
        let chosen = |size_from: &str| {
            graph_model(
                vec![
                    node("Shape", &["input"], "s", vec![]),
                    node("Cast", &["input"], "iv", vec![attr_int("to", 7)]),
                    node(
                        "If",
                        &["fixed"],
                        "out",
                        vec![
                            graph_attr("then_branch", branch(size_from)),
                            graph_attr("else_branch", branch("s")),
                        ],
                    ),
                ],
                vec![crate::onnx::proto::TensorProto {
                    name: Some("fixed".into()),
                    data_type: Some(crate::onnx::proto::tensor_proto::DataType::Bool as i32),
                    raw_data: Some(vec![1]),
                    ..Default::default()
                }],
            )
        };
        assert_eq!(value_dependent(&chosen("s")), None);
        let why = value_dependent(&chosen("iv")).unwrap();
        assert!(why.contains("ConstantOfShape node 'inner'"), "{why}");
        // a model-local function hiding a Range
        let mut m = graph_model(
            vec![
                node("Cast", &["input"], "iv", vec![attr_int("to", 7)]),
                NodeProto {
                    domain: Some("local".into()),
                    ..node("Hidden", &["iv"], "out", vec![])
                },
            ],
            vec![],
        );
        m.functions.push(FunctionProto {
            name: Some("Hidden".into()),
            domain: Some("local".into()),
            input: vec!["n".into()],
            output: vec!["r".into()],
            node: vec![node("Range", &["zero", "n", "one"], "r", vec![])],
            ..Default::default()
        });
        let why = value_dependent(&m).unwrap();
        assert!(why.contains("Range node 'r' (input 1)"), "{why}");
        // an unknown operator from another domain reading the values
        let m = graph_model(
            vec![NodeProto {
                domain: Some("com.example".into()),
                ..node("Mystery", &["input"], "out", vec![])
            }],
            vec![],
        );
        assert!(value_dependent(&m).unwrap().contains("com.example.Mystery"));
    }

    #[test]
    fn every_bundled_teacher_sizes_its_tensors_from_shapes_and_constants() {
        let mut found = Vec::new();
        models(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zoo/teachers"),
            &mut found,
        );
        assert!(found.len() >= 30, "{found:?}");
        for p in found {
            let m = crate::onnx::graph::decode(&std::fs::read(&p).unwrap()).unwrap();
            assert_eq!(value_dependent(&m), None, "{}", p.display());
        }
    }
}
