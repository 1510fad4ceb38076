//! The one configuration struct. Every field is a `--flag` and an environment variable; the defaults
//! serve the bundled zoo from a checkout.
use std::net::SocketAddr;
use std::path::PathBuf;

/// Server and library settings (`faculty serve --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Directory of ONNX teachers: flat `*.onnx` files and/or `<name>/<version>/model.onnx`.
    #[arg(long, env = "FACULTY_ZOO", default_value = "zoo/teachers")]
    pub zoo: PathBuf,
    /// Where faculty keeps its state (sled database, caches).
    #[arg(long, env = "FACULTY_DATA_DIR", default_value = "var")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "FACULTY_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "FACULTY_MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Threads ONNX Runtime may use inside one inference call (0 = number of cores).
    #[arg(long, env = "FACULTY_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Rows per ONNX Runtime call when a teacher predicts a large batch.
    #[arg(long, env = "FACULTY_INFER_BATCH", default_value_t = 1024)]
    pub infer_batch: usize,
    /// Blocking jobs (inference, scans) allowed at once before requests get 429.
    #[arg(long, env = "FACULTY_MAX_BLOCKING", default_value_t = 8)]
    pub max_blocking: usize,
    /// Distillation jobs that train at once; the rest wait in the queue.
    #[arg(long, env = "FACULTY_MAX_JOBS", default_value_t = 1)]
    pub max_jobs: usize,
}

impl Config {
    /// A configuration for tests and embedding: the given zoo and state directory, defaults elsewhere.
    pub fn new(zoo: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            zoo: zoo.into(),
            data_dir: data_dir.into(),
            addr: "127.0.0.1:8080".parse().expect("literal address"),
            max_upload_bytes: 256 * 1024 * 1024,
            intra_threads: 0,
            infer_batch: 1024,
            max_blocking: 8,
            max_jobs: 1,
        }
    }
}
