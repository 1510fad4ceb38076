//! The one configuration struct. Every field is a `--flag` and an environment variable; the defaults
//! serve the bundled zoo from a checkout.
use std::net::SocketAddr;
use std::path::PathBuf;

/// Server and library settings (`faculty serve --help`).
#[derive(Clone, clap::Args)]
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
    /// Distillation jobs that train at once; the rest wait in the queue. 0 (with --database-url): this
    /// server runs no jobs, `faculty worker` processes do.
    #[arg(long, env = "FACULTY_MAX_JOBS", default_value_t = 1)]
    pub max_jobs: usize,
    /// Fan each ranking out as shards of this many teachers, which every process with --max-shards above
    /// 0 (this server, other servers, `faculty worker`s sharing the state database) scores in parallel; a
    /// ranking is readable as its shards finish. 0: the server that gets the request ranks it itself.
    #[arg(long, env = "FACULTY_RANK_SHARD_SIZE", default_value_t = 0)]
    pub rank_shard_size: usize,
    /// Ranking shards this process scores at once (0: it leaves them to other processes).
    #[arg(long, env = "FACULTY_MAX_SHARDS", default_value_t = 1)]
    pub max_shards: usize,
    /// ONNX Runtime sessions kept loaded at most (least recently used dropped, reloaded on demand).
    #[arg(long, env = "FACULTY_MAX_SESSIONS", default_value_t = 32)]
    pub max_sessions: usize,
    /// Estimated memory of the loaded sessions at most, MiB (twice each model's size plus 2 MiB).
    #[arg(long, env = "FACULTY_SESSION_MEMORY_MB", default_value_t = 256)]
    pub session_memory_mb: u64,
    /// Resident memory that inference keeps the server under, MiB (0: no bound): each teacher's batches
    /// are sized from the peak per row measured on its first runs, and freed memory is handed back to the
    /// system before a batch that would not fit and, above two thirds of the budget, after each teacher's
    /// inference. Training a student is not bounded by it.
    #[arg(long, env = "FACULTY_MEMORY_BUDGET_MB", default_value_t = 384)]
    pub memory_budget_mb: u64,
    /// The most memory one job's training may be expected to take, MiB (0: no limit): a job whose
    /// student (or multihop intermediate) is expected to need more is refused with a 400 naming the
    /// estimate. The estimate: 64 bytes a parameter plus 4 an activation of the largest batch.
    #[arg(long, env = "FACULTY_JOB_MEMORY_MB", default_value_t = 2048)]
    pub job_memory_mb: u64,
    /// An uploaded teacher is first loaded and run in a child process (a 64-row batch, then the largest
    /// batch the memory budget plans), killed and refused (422) past twice --memory-budget-mb of resident
    /// memory, past this many seconds, or when ONNX Runtime crashes on it: a few hundred bytes of ONNX
    /// can ask for gigabytes or hours. 0: no check.
    #[arg(long, env = "FACULTY_MODEL_CHECK_TIMEOUT_S", default_value_t = 60)]
    pub model_check_timeout_s: u64,
    /// Writes (uploads, jobs) are refused with 507 while the data or zoo directory's disk has less free,
    /// MiB: the state store never meets a full disk.
    #[arg(long, env = "FACULTY_MIN_FREE_DISK_MB", default_value_t = 64)]
    pub min_free_disk_mb: u64,
    /// Memory that dataset uploads being parsed and stored datasets loaded by requests (job checks,
    /// rankings) may hold together, MiB (an upload reserves twice what its file, on disk, may inflate to,
    /// a load what the rows take; past the budget a request waits, then gets 429).
    #[arg(long, env = "FACULTY_UPLOAD_MEMORY_MB", default_value_t = 1024)]
    pub upload_memory_mb: u64,
    /// How long a request waits for a blocking slot before it is answered 429 (with Retry-After), ms.
    #[arg(long, env = "FACULTY_QUEUE_WAIT_MS", default_value_t = 2000)]
    pub queue_wait_ms: u64,
    /// API tokens: one token (role admin), or the path of a file with one `ROLE TOKEN` per line (roles
    /// read, write, admin; `#` starts a comment). With tokens, every write needs
    /// `Authorization: Bearer TOKEN`. Never logged.
    #[arg(
        long,
        alias = "api-token",
        env = "FACULTY_API_TOKENS",
        hide_env_values = true
    )]
    pub api_tokens: Option<String>,
    /// With tokens: reads need a token too (any role).
    #[arg(long, env = "FACULTY_REQUIRE_TOKEN_FOR_READS")]
    pub require_token_for_reads: bool,
    /// Keep the state (catalog, datasets' metadata, rankings, memos, students' cards, jobs) in PostgreSQL
    /// instead of sled under the data directory: `postgres://USER:PASSWORD@HOST:PORT/DB`, optionally
    /// `?schema=NAME` for tables in a schema of their own. Never logged.
    #[arg(long, env = "FACULTY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Keep datasets' rows and students' files in an object store instead of under the data directory:
    /// `s3://BUCKET?endpoint=http://HOST:PORT` (credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`), or another directory. Servers that share it (and the database) share
    /// their datasets and students.
    #[arg(long, env = "FACULTY_BLOB_URL")]
    pub blob_url: Option<String>,
    /// The local cache of blobs fetched from an object store, MiB at most (least recently used evicted).
    #[arg(long, env = "FACULTY_BLOB_CACHE_MB", default_value_t = 2048)]
    pub blob_cache_mb: u64,
    /// A job's event stream sends at most one event per this many ms: changes in between are folded
    /// into the next event (each carries the whole job), so a fast job near its 2,000-epoch history cap
    /// does not stream its ~250 KB object once per epoch. 0 sends every change.
    #[arg(long, env = "FACULTY_EVENTS_MIN_INTERVAL_MS", default_value_t = 250)]
    pub events_min_interval_ms: u64,
    /// A running job writes its checkpoint (what a restart resumes from) at most once per this many ms;
    /// lower it for resumes closer to the kill, raise it where checkpoints are large or the store is far.
    #[arg(long, env = "FACULTY_CHECKPOINT_EVERY_MS", default_value_t = 2000)]
    pub checkpoint_every_ms: u64,
    /// A stored teacher's blob that a deletion moved aside (`trash/teachers/` in the object store) and an
    /// interrupted deletion left there is removed by a rescan once it is this many seconds old. A deletion
    /// moves it back within milliseconds when another server took the same bytes meanwhile.
    #[arg(long, env = "FACULTY_TRASH_GRACE_S", default_value_t = crate::zoo::TRASH_GRACE_S)]
    pub trash_grace_s: u64,
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
            rank_shard_size: 0,
            max_shards: 1,
            max_sessions: 32,
            session_memory_mb: 256,
            memory_budget_mb: 384,
            model_check_timeout_s: 60,
            job_memory_mb: 2048,
            min_free_disk_mb: 64,
            upload_memory_mb: 1024,
            queue_wait_ms: 2000,
            api_tokens: None,
            require_token_for_reads: false,
            database_url: None,
            blob_url: None,
            blob_cache_mb: 2048,
            events_min_interval_ms: 250,
            checkpoint_every_ms: 2000,
            trash_grace_s: crate::zoo::TRASH_GRACE_S,
        }
    }
}

/// Every field but the tokens, which are never printed.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("zoo", &self.zoo)
            .field("data_dir", &self.data_dir)
            .field("addr", &self.addr)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("intra_threads", &self.intra_threads)
            .field("infer_batch", &self.infer_batch)
            .field("max_blocking", &self.max_blocking)
            .field("max_jobs", &self.max_jobs)
            .field("max_sessions", &self.max_sessions)
            .field("session_memory_mb", &self.session_memory_mb)
            .field("memory_budget_mb", &self.memory_budget_mb)
            .field("min_free_disk_mb", &self.min_free_disk_mb)
            .field("upload_memory_mb", &self.upload_memory_mb)
            .field("queue_wait_ms", &self.queue_wait_ms)
            .field(
                "api_tokens",
                &self.api_tokens.as_ref().map(|_| "<redacted>"),
            )
            .field("require_token_for_reads", &self.require_token_for_reads)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("blob_url", &self.blob_url)
            .field("blob_cache_mb", &self.blob_cache_mb)
            .field("events_min_interval_ms", &self.events_min_interval_ms)
            .field("checkpoint_every_ms", &self.checkpoint_every_ms)
            .field("trash_grace_s", &self.trash_grace_s)
            .finish()
    }
}
