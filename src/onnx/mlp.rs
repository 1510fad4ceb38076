//! Reading a plain MLP's weights out of an ONNX graph (for weight-space fusion): from the input, optional
//! Flatten / Reshape, then dense layers (Gemm, or MatMul + Add) with one elementwise activation (Relu,
//! Tanh or Sigmoid) between them, then optionally Softmax / Identity to the output. Anything else is
//! refused with the operator that is in the way.
use std::collections::HashMap;

use super::proto::{ModelProto, NodeProto, TensorProto};

/// One dense layer: weight [I, O] row-major (input-major, as students store it) and bias [O].
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A plain MLP: its layers in order and the activation between them (an ONNX op name).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
    pub activation: String,
}

impl Mlp {
    /// The layer widths: input, hidden.., output.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.layers.first().map_or(0, |l| l.inputs)];
        w.extend(self.layers.iter().map(|l| l.outputs));
        w
    }
}

fn int_attr(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

fn float_attr(n: &NodeProto, name: &str) -> Option<f32> {
    n.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.f)
}

/// [rows, cols] row-major transposed.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// Reads the MLP behind graph output `output`, or says why the graph is not one.
pub fn read(model: &ModelProto, output: &str) -> std::result::Result<Mlp, String> {
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let producer: HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let consts: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.as_deref()?, t)))
        .collect();
    let weight = |name: &str| -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
        consts
            .get(name)
            .and_then(|t| super::surgery::float_tensor(t))
            .ok_or_else(|| format!("the layer parameter '{name}' is not a float initializer"))
    };
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .filter_map(|i| i.name.as_deref())
        .filter(|n| !consts.contains_key(n))
        .collect();
    let not_mlp = |op: &str| {
        format!(
            "its graph has a {op} node; faculty reads weights only from plain MLPs (Gemm or MatMul + Add layers \
             with Relu, Tanh or Sigmoid between them)"
        )
    };
    let mut layers = Vec::new();
    let mut activation: Option<String> = None;
    let mut cur = output.to_string();
    let mut steps = 0;
    // walking back from the output: a layer was just read, and no activation seen since
    let mut need_act = false;
    loop {
        steps += 1;
        if steps > 10_000 {
            return Err("the graph is too deep to read as an MLP".into());
        }
        if inputs.contains(&cur.as_str()) {
            break;
        }
        let n = producer
            .get(cur.as_str())
            .ok_or_else(|| format!("nothing in the graph produces '{cur}'"))?;
        let op = n.op_type.as_deref().unwrap_or("");
        let first = || n.input.first().cloned().unwrap_or_default();
        match op {
            "Softmax" | "Identity" | "Flatten" | "Reshape"
                if layers.is_empty() || op != "Softmax" =>
            {
                if op == "Softmax" && int_attr(n, "axis").is_some_and(|a| a != 1 && a != -1) {
                    return Err(not_mlp("Softmax over another axis"));
                }
                cur = first();
            }
            "Relu" | "Tanh" | "Sigmoid" => {
                if layers.is_empty() {
                    return Err(not_mlp(&format!("{op} after the last layer")));
                }
                match &activation {
                    Some(a) if a != op => {
                        return Err(format!(
                            "its hidden layers mix activations ({a} and {op}); faculty reads weights only from MLPs with one"
                        ));
                    }
                    _ => activation = Some(op.to_string()),
                }
                need_act = false;
                cur = first();
            }
            "Gemm" | "Add" if need_act => {
                return Err(
                    "two of its dense layers have no activation between them; faculty reads weights only from \
                     MLPs with one activation between layers"
                        .into(),
                );
            }
            "Gemm" => {
                if float_attr(n, "alpha").is_some_and(|a| a != 1.0)
                    || float_attr(n, "beta").is_some_and(|b| b != 1.0)
                    || int_attr(n, "transA").is_some_and(|t| t != 0)
                {
                    return Err(not_mlp("Gemm with alpha, beta or transA"));
                }
                let (wd, w) = weight(n.input.get(1).map_or("", String::as_str))?;
                let (bd, b) = weight(n.input.get(2).map_or("", String::as_str))?;
                let (i, o, w) = match (wd.as_slice(), int_attr(n, "transB").unwrap_or(0)) {
                    ([o, i], 1) => (*i, *o, transpose(&w, *o, *i)),
                    ([i, o], 0) => (*i, *o, w),
                    _ => return Err("a Gemm weight is not a matrix".into()),
                };
                if b.len() != o || bd.len() != 1 {
                    return Err(format!(
                        "a Gemm bias has {} values for {o} outputs",
                        b.len()
                    ));
                }
                layers.push(Dense {
                    inputs: i,
                    outputs: o,
                    weight: w,
                    bias: b,
                });
                need_act = true;
                cur = first();
            }
            "Add" => {
                // MatMul + Add: the bias is the Add's constant input
                let (m_in, b_name) = match (n.input.first(), n.input.get(1)) {
                    (Some(a), Some(b)) if consts.contains_key(b.as_str()) => (a.clone(), b.clone()),
                    (Some(a), Some(b)) if consts.contains_key(a.as_str()) => (b.clone(), a.clone()),
                    _ => return Err(not_mlp("Add of two computed tensors")),
                };
                let mm = producer
                    .get(m_in.as_str())
                    .filter(|m| m.op_type.as_deref() == Some("MatMul"))
                    .ok_or_else(|| not_mlp("Add not after a MatMul"))?;
                let (wd, w) = weight(mm.input.get(1).map_or("", String::as_str))?;
                let (_, b) = weight(&b_name)?;
                let [i, o] = wd.as_slice() else {
                    return Err("a MatMul weight is not a matrix".into());
                };
                if b.len() != *o {
                    return Err(format!(
                        "a MatMul bias has {} values for {o} outputs",
                        b.len()
                    ));
                }
                layers.push(Dense {
                    inputs: *i,
                    outputs: *o,
                    weight: w,
                    bias: b,
                });
                need_act = true;
                cur = mm.input.first().cloned().unwrap_or_default();
            }
            other => return Err(not_mlp(other)),
        }
    }
    if layers.is_empty() {
        return Err("its graph has no dense layer".into());
    }
    layers.reverse();
    for pair in layers.windows(2) {
        if pair[0].outputs != pair[1].inputs {
            return Err("its layers' widths do not chain".into());
        }
    }
    Ok(Mlp {
        activation: activation.unwrap_or_else(|| "Relu".into()),
        layers,
    })
}
