//! Everything that touches ONNX: the generated protobuf types, the ONNX Runtime environment, graph reading
//! (signature, metadata, parameters, classifier heads), small graph builders, and inference sessions.
//! Nothing here knows about HTTP or the catalog.

/// Types generated from `proto/onnx.proto` (Apache-2.0, from the ONNX project).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub mod adapt;
pub mod batch;
pub mod build;
pub mod graph;
pub mod memory;
pub mod mlp;
pub mod pace;
pub mod runtime;
pub mod session;
pub mod sizes;
pub mod surgery;

pub use graph::ModelInfo;
pub use memory::{release_freed_memory, resident_bytes};
pub use runtime::environment;
pub use session::{ChannelNorm, InputType, OutputKind, Predictor, SessionPool};
