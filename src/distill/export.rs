//! A trained student as an ONNX model: input standardisation, conv blocks (Conv 3x3 + Relu + MaxPool 2x2),
//! Gemm layers with the activation between them, `logits` and `probabilities` outputs, and the card's
//! facts in `metadata_props`. The input keeps the dataset's row shape, so the model takes the same rows.
use prost::Message;

use super::student::{Arch, Params};
use crate::onnx::build::{attr_int, attr_ints, model, node, tensor_f32, tensor_i64, value_info};

/// Encodes the student as ONNX bytes with the given metadata.
pub fn to_onnx(arch: &Arch, params: &Params, metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let c = arch.classes as i64;
    let stat_dims: Vec<i64> = if arch.mean.len() == 1 {
        vec![1]
    } else {
        vec![arch.mean.len() as i64]
    };
    inits.push(tensor_f32("input_mean", &stat_dims, &arch.mean));
    inits.push(tensor_f32("input_std", &stat_dims, &arch.std));
    let mut cur = "input".to_string();
    if arch.image.is_none() {
        nodes.push(node(
            "Flatten",
            &["input"],
            "flat",
            vec![attr_int("axis", 1)],
        ));
        cur = "flat".into();
    }
    nodes.push(node("Sub", &[&cur, "input_mean"], "centred", vec![]));
    nodes.push(node(
        "Div",
        &["centred", "input_std"],
        "standardised",
        vec![],
    ));
    cur = "standardised".into();
    let n_conv = arch.conv_layers().len();
    if let Some([ch, h, w]) = arch.image {
        inits.push(tensor_i64(
            "image_shape",
            &[-1, ch as i64, h as i64, w as i64],
        ));
        nodes.push(node("Reshape", &[&cur, "image_shape"], "image", vec![]));
        cur = "image".into();
        for k in 0..n_conv {
            let (wp, bp) = (&params[2 * k], &params[2 * k + 1]);
            let (wn, bn) = (format!("conv{k}.weight"), format!("conv{k}.bias"));
            inits.push(tensor_f32(&wn, &dims(&wp.shape), &wp.values));
            inits.push(tensor_f32(&bn, &dims(&bp.shape), &bp.values));
            let conv = format!("conv{k}");
            nodes.push(node(
                "Conv",
                &[&cur, &wn, &bn],
                &conv,
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                ],
            ));
            let relu = format!("conv{k}.relu");
            nodes.push(node("Relu", &[&conv], &relu, vec![]));
            let pool = format!("conv{k}.pool");
            nodes.push(node(
                "MaxPool",
                &[&relu],
                &pool,
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                ],
            ));
            cur = pool;
        }
        nodes.push(node(
            "Flatten",
            &[&cur],
            "features",
            vec![attr_int("axis", 1)],
        ));
        cur = "features".into();
    }
    let dense = arch.dense_layers();
    for k in 0..dense.len() {
        let (wp, bp) = (&params[2 * (n_conv + k)], &params[2 * (n_conv + k) + 1]);
        let (wn, bn) = (format!("dense{k}.weight"), format!("dense{k}.bias"));
        inits.push(tensor_f32(&wn, &dims(&wp.shape), &wp.values));
        inits.push(tensor_f32(&bn, &dims(&bp.shape), &bp.values));
        let last = k + 1 == dense.len();
        let out = if last && arch.heads > 1 {
            "head_logits".to_string()
        } else if last {
            "logits".to_string()
        } else {
            format!("dense{k}")
        };
        nodes.push(node("Gemm", &[&cur, &wn, &bn], &out, vec![]));
        cur = out;
        if !last {
            let act = format!("dense{k}.act");
            nodes.push(node(arch.activation().onnx_op(), &[&cur], &act, vec![]));
            cur = act;
        }
    }
    if arch.heads > 1 {
        // mimic_all: the prediction is the mean of the heads' probabilities; `logits` is its log
        inits.push(tensor_i64("heads_shape", &[-1, arch.heads as i64, c]));
        nodes.push(node(
            "Reshape",
            &["head_logits", "heads_shape"],
            "heads",
            vec![],
        ));
        nodes.push(node(
            "Softmax",
            &["heads"],
            "head_probabilities",
            vec![attr_int("axis", 2)],
        ));
        nodes.push(node(
            "ReduceMean",
            &["head_probabilities"],
            "probabilities",
            vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
        ));
        nodes.push(node("Log", &["probabilities"], "logits", vec![]));
    } else {
        nodes.push(node(
            "Softmax",
            &["logits"],
            "probabilities",
            vec![attr_int("axis", 1)],
        ));
    }
    let mut input_dims = vec![-1i64];
    input_dims.extend(arch.row_shape.iter().map(|&d| d as i64));
    model(
        nodes,
        inits,
        vec![value_info("input", &input_dims)],
        vec![
            value_info("probabilities", &[-1, c]),
            value_info("logits", &[-1, c]),
        ],
        metadata,
    )
    .encode_to_vec()
}

fn dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}
