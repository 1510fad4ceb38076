//! Small builders for ONNX graphs: tensors, value infos, nodes and models. Used to write students and to
//! build test fixtures; reading lives in `graph`.
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as Dim, type_proto,
};

/// A float32 initializer with the given dims, stored as little-endian raw data.
pub fn tensor_f32(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(values.iter().flat_map(|f| f.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A float tensor value info; a negative dimension becomes the symbolic batch dimension `N`.
pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    typed_value_info(name, dims, DataType::Float)
}

/// A tensor value info of element type `ty`; a negative dimension becomes the symbolic batch dimension `N`.
pub fn typed_value_info(name: &str, dims: &[i64], ty: DataType) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 {
                Dim::DimParam("N".into())
            } else {
                Dim::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(ty as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A float tensor value info with no shape (the runtime infers it): for exposing inner tensors.
pub fn float_value_info_any_shape(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float-list attribute.
pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Floats as i32),
        floats: v.to_vec(),
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A string-list attribute.
pub fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Strings as i32),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// An int64 initializer (shapes for Reshape).
pub fn tensor_i64(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![values.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A node with one output named after the node.
pub fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(output.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

/// A model at IR 8 / opset 17 with the given graph parts and metadata.
pub fn model(
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    metadata: &[(&str, &str)],
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("faculty".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            name: Some("graph".into()),
            node: nodes,
            initializer: initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some((*k).into()),
                value: Some((*v).into()),
            })
            .collect(),
        ..Default::default()
    }
}

/// A linear softmax classifier `softmax(x W + b)`: the smallest real teacher, for tests and examples.
pub fn linear_classifier(w: &[f32], b: &[f32], d_in: usize, labels: &[&str]) -> ModelProto {
    let k = b.len();
    let labels_json = serde_json::to_string(labels).expect("strings serialize");
    model(
        vec![
            node("Gemm", &["input", "W", "b"], "logits", vec![]),
            node(
                "Softmax",
                &["logits"],
                "probabilities",
                vec![attr_int("axis", 1)],
            ),
        ],
        vec![
            tensor_f32("W", &[d_in as i64, k as i64], w),
            tensor_f32("b", &[k as i64], b),
        ],
        vec![value_info("input", &[-1, d_in as i64])],
        vec![value_info("probabilities", &[-1, k as i64])],
        &[("labels", &labels_json)],
    )
}
