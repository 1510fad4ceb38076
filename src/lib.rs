//! faculty: find the pre-trained ONNX teacher most related to a task and distill a small student from it.
//!
//! The library does all the work; `api` is a thin HTTP layer over it and `main.rs` a thin CLI.
//! Direction of dependencies: api -> zoo -> onnx -> store.
pub mod api;
pub mod client;
pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod fuzz;
pub mod jobs;
pub mod onnx;
pub mod ot;
pub mod rank;
pub mod store;
pub mod zoo;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
