//! Graph surgery: find a teacher's final linear classifier (Gemm / MatMul (+Add), optionally
//! followed by Softmax / Identity) behind its probability output, read the classifier's weight rows, and
//! expose the classifier's INPUT (the penultimate features) as an extra graph output. Models without such a
//! head (tree ensembles, classic-ML operators) get `None`: their rankings use soft outputs only. For
//! ProfWeight / SRatio probes, list the activation tensors the output depends on and expose any of them.
use std::collections::HashMap;

use ndarray::Array2;
use prost::Message;

use super::proto::{ModelProto, NodeProto, TensorProto, tensor_proto::DataType};

/// The penultimate layer of a teacher.
#[derive(Debug, Clone)]
pub struct Penultimate {
    /// The model with the feature tensor added as a graph output, encoded.
    pub model_bytes: Vec<u8>,
    /// Name of the feature output.
    pub output: String,
    /// Classifier weight rows, one per class: [C_t, D].
    pub weights: Array2<f32>,
}

/// A float tensor's shape and values (raw or typed storage); `None` for other types or a size mismatch.
pub(crate) fn float_tensor(t: &TensorProto) -> Option<(Vec<usize>, Vec<f32>)> {
    if t.data_type != Some(DataType::Float as i32) {
        return None;
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let values = match &t.raw_data {
        Some(raw) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        _ => t.float_data.clone(),
    };
    (values.len() == dims.iter().product::<usize>()).then_some((dims, values))
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

/// Finds the classifier head behind `prob_output` and exposes its input.
pub fn expose_penultimate(model: &ModelProto, prob_output: &str) -> Option<Penultimate> {
    let graph = model.graph.as_ref()?;
    let producer: HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut consts: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.as_deref()?, t)))
        .collect();
    for n in &graph.node {
        if n.op_type.as_deref() == Some("Constant")
            && let Some(t) = n.attribute.iter().find_map(|a| a.t.as_ref())
            && let Some(o) = n.output.first()
        {
            consts.insert(o.as_str(), t);
        }
    }
    let mut tensor = prob_output;
    for _ in 0..8 {
        let node = producer.get(tensor)?;
        let op = node.op_type.as_deref().unwrap_or("");
        match op {
            "Softmax" | "Identity" | "LogSoftmax" => tensor = node.input.first()?,
            "Add" => {
                // bias add: follow the non-constant operand
                let a = node.input.first()?;
                let b = node.input.get(1)?;
                tensor = if consts.contains_key(a.as_str()) {
                    b
                } else {
                    a
                };
            }
            "Gemm" | "MatMul" => {
                let feat = node.input.first()?;
                let (dims, w) = float_tensor(consts.get(node.input.get(1)?.as_str())?)?;
                if dims.len() != 2 {
                    return None;
                }
                let trans_b = op == "Gemm" && int_attr(node, "transB") == Some(1);
                let w = Array2::from_shape_vec((dims[0], dims[1]), w).ok()?;
                // rows = classes
                let weights = if trans_b { w } else { w.t().to_owned() };
                if op == "Gemm" && int_attr(node, "transA") == Some(1) {
                    return None;
                }
                let mut m = model.clone();
                let g = m.graph.as_mut()?;
                if !g.output.iter().any(|o| o.name.as_deref() == Some(feat)) {
                    g.output.push(super::build::value_info(
                        feat,
                        &[-1, weights.ncols() as i64],
                    ));
                }
                return Some(Penultimate {
                    model_bytes: m.encode_to_vec(),
                    output: feat.clone(),
                    weights,
                });
            }
            _ => return None,
        }
    }
    None
}

/// Activation operators whose outputs probes read (one per layer of a network).
const PROBE_OPS: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Gelu",
    "Tanh",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Clip",
];

/// The inner tensors a linear probe can read: outputs of activation nodes that `output` depends on, in
/// graph order (first layer first). Empty for models without such layers (linear models, forests).
pub fn probe_tensors(model: &ModelProto, output: &str) -> Vec<String> {
    let Some(graph) = model.graph.as_ref() else {
        return vec![];
    };
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut needed = vec![false; graph.node.len()];
    let mut stack = vec![output];
    while let Some(t) = stack.pop() {
        if let Some(&i) = producer.get(t)
            && !needed[i]
        {
            needed[i] = true;
            stack.extend(graph.node[i].input.iter().map(String::as_str));
        }
    }
    graph
        .node
        .iter()
        .zip(needed)
        .filter(|(n, need)| *need && PROBE_OPS.contains(&n.op_type.as_deref().unwrap_or("")))
        .filter_map(|(n, _)| n.output.first().cloned())
        .collect()
}

/// The model with the tensors `names` added as float graph outputs (shapes left to the runtime), encoded.
pub fn expose(model: &ModelProto, names: &[String]) -> Vec<u8> {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        for name in names {
            if !g.output.iter().any(|o| o.name.as_ref() == Some(name)) {
                g.output
                    .push(super::build::float_value_info_any_shape(name));
            }
        }
    }
    m.encode_to_vec()
}
