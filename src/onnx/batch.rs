//! Freeing a fixed batch: many models are exported for one image at a time (an input of [1, 3, 224, 224],
//! a `Reshape` to [1, 2048] before the classifier), and running them one row per call made a ranking ten
//! times slower than the same model with a dynamic batch. [`free_batch`] rewrites such a graph so the batch
//! is any size: the input's (and the outputs') first dimension becomes symbolic, shape hints that pin it
//! are dropped, and a `Reshape` of a tensor computed from the input whose constant target starts with the
//! fixed batch copies the batch instead (`0`, ONNX's "as in the input"). Nothing here proves the rewrite
//! right: the caller runs both models on the same rows and keeps the freed one only when it gives the same
//! outputs row for row (`zoo::teacher`), so a graph that mixes rows or fixes the batch some other way
//! (a constant concatenated along the batch, an `Expand` to a fixed shape) keeps its fixed batch.
use std::collections::{HashMap, HashSet};

use super::proto::{
    ModelProto, TensorProto, TypeProto, tensor_proto::DataType,
    tensor_shape_proto::dimension::Value as Dim, type_proto,
};

/// The symbolic name given to the freed batch dimension.
const BATCH: &str = "N";

/// Sets the first dimension of a tensor type whose first dimension is `fixed` to the symbolic batch;
/// whether it did.
fn free_first_dim(t: Option<&mut TypeProto>, fixed: i64) -> bool {
    let Some(TypeProto {
        value: Some(type_proto::Value::TensorType(tensor)),
        ..
    }) = t
    else {
        return false;
    };
    let Some(first) = tensor.shape.as_mut().and_then(|s| s.dim.first_mut()) else {
        return false;
    };
    if first.value != Some(Dim::DimValue(fixed)) {
        return false;
    }
    first.value = Some(Dim::DimParam(BATCH.into()));
    true
}

/// The values of a constant int64 tensor (raw or typed storage).
fn int64_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != Some(DataType::Int64 as i32) {
        return None;
    }
    let v: Vec<i64> = match &t.raw_data {
        Some(raw) if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        _ => t.int64_data.clone(),
    };
    (v.len() as i64 == t.dims.iter().product::<i64>()).then_some(v)
}

/// `model` with the batch of its input `input` (fixed at `fixed` rows) made any size, or `None` when the
/// input is not a graph input with that first dimension. See the module header for what is rewritten.
pub fn free_batch(model: &ModelProto, input: &str, fixed: i64) -> Option<ModelProto> {
    let mut m = model.clone();
    let g = m.graph.as_mut()?;
    let initialized: HashSet<String> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.clone())
        .collect();
    let graph_input = g
        .input
        .iter_mut()
        .find(|i| i.name.as_deref() == Some(input) && !initialized.contains(input))?;
    if !free_first_dim(graph_input.r#type.as_mut(), fixed) {
        return None;
    }
    for o in &mut g.output {
        free_first_dim(o.r#type.as_mut(), fixed);
    }
    // inner shape hints may pin the batch; the runtime infers them again
    g.value_info.clear();

    // the tensors computed from the input (graphs are sorted: one pass)
    let mut carried: HashSet<String> = HashSet::from([input.to_string()]);
    for n in &g.node {
        if n.input.iter().any(|i| carried.contains(i)) {
            carried.extend(n.output.iter().cloned());
        }
    }
    let mut constants: HashMap<String, Vec<i64>> = g
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.clone()?, int64_values(t)?)))
        .collect();
    for n in &g.node {
        if n.op_type.as_deref() == Some("Constant")
            && let Some(t) = n
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))
                .and_then(|a| a.t.as_ref())
            && let (Some(o), Some(v)) = (n.output.first(), int64_values(t))
        {
            constants.insert(o.clone(), v);
        }
    }
    let mut added = Vec::new();
    let mut names: HashSet<String> = initialized;
    for n in &mut g.node {
        let allow_zero = n
            .attribute
            .iter()
            .any(|a| a.name.as_deref() == Some("allowzero") && a.i == Some(1));
        if n.op_type.as_deref() != Some("Reshape")
            || !n.domain.as_deref().unwrap_or("").is_empty()
            || allow_zero
            || !n.input.first().is_some_and(|i| carried.contains(i))
        {
            continue;
        }
        let Some(shape) = n.input.get(1).and_then(|s| constants.get(s)) else {
            continue;
        };
        if shape.first() != Some(&fixed) {
            continue;
        }
        let mut freed = shape.clone();
        freed[0] = 0;
        let mut name = format!("{}__free_batch", n.input[1]);
        while names.contains(&name) {
            name.push('_');
        }
        names.insert(name.clone());
        added.push(super::build::tensor_i64(&name, &freed));
        n.input[1] = name;
    }
    g.initializer.extend(added);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::build::*;

    /// [1, 4] rows through a Reshape to [1, 4] and a linear softmax classifier whose weights come out of a
    /// Reshape too (of a constant: not the batch), the batch fixed at 1.
    fn fixed_model() -> ModelProto {
        let w = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        let mut m = linear_classifier(&w, &[0.0, 0.0], 4, &["a", "b"]);
        let g = m.graph.as_mut().unwrap();
        g.input[0] = value_info("input", &[1, 4]);
        g.output[0] = value_info("probabilities", &[1, 2]);
        g.node[0].input[0] = "flat".into();
        g.initializer[0] = tensor_f32("W0", &[8], &w);
        g.initializer.push(tensor_i64("shape", &[1, 4]));
        g.initializer.push(tensor_i64("shape_w", &[4, 2]));
        g.node.splice(
            0..0,
            [
                node("Reshape", &["input", "shape"], "flat", vec![]),
                node("Reshape", &["W0", "shape_w"], "W", vec![]),
            ],
        );
        m
    }

    #[test]
    fn frees_the_input_the_outputs_and_the_batch_reshapes_only() {
        let m = fixed_model();
        let freed = free_batch(&m, "input", 1).unwrap();
        let g = freed.graph.as_ref().unwrap();
        let first = |t: &Option<TypeProto>| match t.as_ref().unwrap().value.as_ref().unwrap() {
            type_proto::Value::TensorType(t) => t.shape.as_ref().unwrap().dim[0].value.clone(),
            _ => None,
        };
        assert_eq!(first(&g.input[0].r#type), Some(Dim::DimParam("N".into())));
        assert_eq!(first(&g.output[0].r#type), Some(Dim::DimParam("N".into())));
        // the input's Reshape copies the batch; the weight's keeps its constant
        assert_eq!(g.node[0].input[1], "shape__free_batch");
        let added = g
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some("shape__free_batch"));
        assert_eq!(int64_values(added.unwrap()).unwrap(), vec![0, 4]);
        assert_eq!(g.node[1].input[1], "shape_w");
        // nothing to free: another batch, an unknown input
        assert!(free_batch(&m, "input", 3).is_none());
        assert!(free_batch(&m, "nope", 1).is_none());
    }

    #[test]
    fn the_freed_model_runs_any_batch_with_the_same_rows() {
        use ndarray::Array2;
        let run = |m: &ModelProto, rows: &[f32], n: usize| -> Array2<f32> {
            let bytes = prost::Message::encode_to_vec(m);
            let mut s = crate::onnx::session::load_session(&bytes, 1).unwrap();
            let x = ort::value::TensorRef::from_array_view((vec![n as i64, 4], rows)).unwrap();
            let out = s.run(ort::inputs!["input" => x]).unwrap();
            crate::onnx::session::extract_scores(
                &out["probabilities"],
                crate::onnx::OutputKind::Probabilities,
                n,
            )
            .unwrap()
        };
        let m = fixed_model();
        let rows = [
            0.1f32, 0.2, 0.3, 0.4, 1.0, -1.0, 2.0, 0.0, 0.5, 0.5, -0.5, 3.0,
        ];
        let freed = free_batch(&m, "input", 1).unwrap();
        let all = run(&freed, &rows, 3);
        for i in 0..3 {
            let one = run(&m, &rows[i * 4..(i + 1) * 4], 1);
            assert_eq!(one.row(0), all.row(i));
        }
    }
}
