//! Reading an ONNX ModelProto without running it: metadata, parameter count, what produces each output,
//! and the class labels that classic-ML exporters store on their classifier node.
use std::collections::BTreeMap;

use prost::Message;

use super::proto::{ModelProto, NodeProto, attribute_proto::AttributeType};
use crate::error::{Error, Result};

/// Classic-ML classifier operators (ai.onnx.ml) that carry class labels as attributes.
const ML_CLASSIFIERS: &[&str] = &[
    "LinearClassifier",
    "TreeEnsembleClassifier",
    "SVMClassifier",
    "TreeEnsemble",
];

/// What the protobuf says about a model.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub ir_version: i64,
    pub producer: String,
    pub opsets: BTreeMap<String, i64>,
    pub model_version: Option<i64>,
    pub doc: String,
    /// `metadata_props`, in file order (later keys win on duplicates).
    pub metadata: BTreeMap<String, String>,
    /// Learned parameters: elements of all initializers and Constant-node tensors.
    pub params: u64,
    /// For each graph output: the op type of the node that produces it.
    pub output_producers: BTreeMap<String, String>,
    /// Class labels from a classic-ML classifier node (`classlabels_strings` / `classlabels_int64s`).
    pub classlabels: Option<Vec<String>>,
}

/// Decodes a ModelProto, refusing files that are not ONNX models at all.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        Error::invalid_model(format!("not an ONNX model (protobuf decode failed: {e})"))
    })?;
    if model.graph.is_none() {
        return Err(Error::invalid_model("not an ONNX model: it has no graph"));
    }
    if model.ir_version.unwrap_or(0) <= 0 || model.opset_import.is_empty() {
        return Err(Error::invalid_model(
            "not an ONNX model: no IR version or opset imports",
        ));
    }
    Ok(model)
}

fn elements(dims: &[i64]) -> u64 {
    dims.iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d.max(0) as u64))
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a super::proto::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

/// Reads everything [`ModelInfo`] holds from a decoded model.
pub fn info(model: &ModelProto) -> ModelInfo {
    let graph = model.graph.as_ref().expect("decode() checked the graph");
    let mut params: u64 = graph.initializer.iter().map(|t| elements(&t.dims)).sum();
    for node in &graph.node {
        if node.op_type.as_deref() == Some("Constant")
            && let Some(a) = attr(node, "value")
            && a.r#type == Some(AttributeType::Tensor as i32)
            && let Some(t) = &a.t
        {
            params = params.saturating_add(elements(&t.dims));
        }
        // Classic-ML operators keep their learned numbers (coefficients, thresholds, leaf values) as
        // float attributes rather than initializers.
        if node.domain.as_deref() == Some("ai.onnx.ml") {
            params =
                params.saturating_add(node.attribute.iter().map(|a| a.floats.len() as u64).sum());
        }
    }
    let mut producers = BTreeMap::new();
    for node in &graph.node {
        for out in &node.output {
            producers.insert(out.clone(), node.op_type.clone().unwrap_or_default());
        }
    }
    let output_producers = graph
        .output
        .iter()
        .filter_map(|o| o.name.clone())
        .map(|n| {
            let op = producers.get(&n).cloned().unwrap_or_default();
            (n, op)
        })
        .collect();
    let classlabels = graph.node.iter().find_map(|n| {
        if !ML_CLASSIFIERS.contains(&n.op_type.as_deref().unwrap_or("")) {
            return None;
        }
        if let Some(a) = attr(n, "classlabels_strings").filter(|a| !a.strings.is_empty()) {
            return Some(
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            );
        }
        attr(n, "classlabels_int64s")
            .or_else(|| attr(n, "classlabels_ints"))
            .filter(|a| !a.ints.is_empty())
            .map(|a| a.ints.iter().map(i64::to_string).collect())
    });
    ModelInfo {
        ir_version: model.ir_version.unwrap_or(0),
        producer: model.producer_name.clone().unwrap_or_default(),
        opsets: model
            .opset_import
            .iter()
            .map(|o| (o.domain.clone().unwrap_or_default(), o.version.unwrap_or(0)))
            .collect(),
        model_version: model.model_version,
        doc: model.doc_string.clone().unwrap_or_default(),
        metadata: model
            .metadata_props
            .iter()
            .filter_map(|p| Some((p.key.clone()?, p.value.clone().unwrap_or_default())))
            .collect(),
        params,
        output_producers,
        classlabels,
    }
}
