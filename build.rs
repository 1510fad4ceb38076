//! Generates the ONNX protobuf types (prost) from `proto/onnx.proto`.
//! The ONNX Runtime library itself is installed by `scripts/setup.sh`, not here: a build must not
//! reach the network behind the user's back.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = std::env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| protoc_bin_vendored::protoc_bin_path().expect("vendored protoc"));
    prost_build::Config::new()
        .protoc_executable(protoc)
        .compile_protos(&["proto/onnx.proto"], &["proto/"])
        .expect("compile onnx.proto");
}
