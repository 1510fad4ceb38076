//! The HTTP surface: an axum router over the library. Handlers parse, call the library off the async
//! threads, and serialize; they hold no logic of their own.
pub mod auth;
pub mod dashboard;
pub mod datasets;
pub mod error;
pub mod jobs;
pub mod openapi;
pub mod teachers;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::data::DatasetStore;
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::{JobManager, StudentStore};
use crate::onnx::SessionPool;
use crate::rank::{OutputCache, RankingStore};
use crate::store::Store;
use crate::zoo::Zoo;
pub use error::{ApiError, ErrorBody};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub zoo: Arc<Zoo>,
    pub store: Store,
    pub blobs: Arc<crate::store::Blobs>,
    pub datasets: Arc<DatasetStore>,
    pub outputs: OutputCache,
    pub rankings: Arc<RankingStore>,
    pub jobs: JobManager,
    /// Rankings fanned out as shards (`--rank-shard-size`), and this process's share of scoring them.
    pub shards: Arc<crate::rank::shards::Work>,
    /// The API tokens (`None`: no tokens configured, everything open).
    pub tokens: Option<Arc<auth::Tokens>>,
    /// Slots for compute (inference, rankings) and, apart, for writes that wait on the disk (uploads,
    /// deletes, job submissions), so that fsyncs never hold up predictions.
    blocking: Arc<Semaphore>,
    writing: Arc<Semaphore>,
    /// The memory dataset uploads may hold while they are parsed, in MiB, shared by all of them.
    upload_memory: Arc<Semaphore>,
}

impl AppState {
    /// Opens the state directory and the zoo, and brings the catalog up to date (a blocking call).
    pub fn open(config: Config) -> Result<Self> {
        let tokens =
            auth::Tokens::load(config.api_tokens.as_deref(), config.require_token_for_reads)?
                .map(Arc::new);
        crate::onnx::environment()?;
        crate::onnx::memory::set_budget(config.memory_budget_mb << 20);
        let store = Store::from_config(config.database_url.as_deref(), &config.data_dir)?;
        tracing::info!(state = store.kind(), "state store open");
        let pool = Arc::new(SessionPool::with_limits(
            config.intra_threads,
            config.max_sessions,
            config.session_memory_mb << 20,
        ));
        let blobs = Arc::new(crate::store::Blobs::open(
            config.blob_url.as_deref(),
            &config.data_dir,
            config.blob_cache_mb,
        )?);
        tracing::info!(blobs = blobs.kind(), "blob store open");
        let mut zoo = Zoo::open(&config.zoo, &store, pool, config.infer_batch)?;
        if config.model_check_timeout_s > 0 {
            match crate::zoo::check::ModelCheck::find_exe() {
                Some(exe) => {
                    let budget = config.memory_budget_mb << 20;
                    zoo = zoo.with_model_check(crate::zoo::check::ModelCheck::new(
                        exe,
                        budget,
                        2 * budget,
                        std::time::Duration::from_secs(config.model_check_timeout_s),
                        config.infer_batch,
                    ));
                }
                None => tracing::warn!(
                    "no faculty executable found to check uploaded models apart from the server: \
                     uploads are loaded in the server's own process"
                ),
            }
        }
        if config.blob_url.is_some() {
            // teachers uploaded here, or pushed with `faculty zoo push`, live in the shared store
            zoo = zoo
                .with_blobs(blobs.clone())
                .with_trash_grace(std::time::Duration::from_secs(config.trash_grace_s));
        }
        let zoo = Arc::new(zoo);
        let report = zoo.rescan()?;
        tracing::info!(
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            unchanged = report.unchanged,
            reinspected = report.reinspected.len(),
            stored = report.stored,
            missing = report.missing.len(),
            failed = report.failed.len(),
            foreign = report.foreign,
            "zoo indexed"
        );
        for f in &report.failed {
            tracing::warn!(teacher = %f.id, "unusable: {}", f.reason);
        }
        if report.foreign > 0 {
            tracing::warn!(
                "{} teachers of this shared catalog are in another server's zoo directory: this server \
                 does not serve them (give the servers one zoo directory, or `faculty zoo push` the zoo)",
                report.foreign
            );
        }
        for id in &report.shadowed {
            tracing::warn!(teacher = %id, "not indexed: another server's zoo directory holds this id");
        }
        let blocking = Arc::new(Semaphore::new(config.max_blocking.max(1)));
        let writing = Arc::new(Semaphore::new(config.max_blocking.max(1)));
        let upload_memory = Arc::new(Semaphore::new(config.upload_memory_mb.max(1) as usize));
        let datasets = Arc::new(DatasetStore::open(&store, blobs.clone())?);
        // teacher outputs live in the blob store: in an object store all of them (every server reads
        // them), in the data directory those of 1 MB or more (sled keeps what it holds in memory)
        let mut outputs = OutputCache::open(&store)?.with_blobs(blobs.clone());
        if config.blob_url.is_none() {
            outputs = outputs.inline_below(crate::rank::outputs::INLINE_MAX);
            let moved = outputs.move_to_blobs()?;
            if moved > 0 {
                tracing::info!(moved, "moved cached teacher outputs from sled to files");
            }
        }
        let rankings = Arc::new(RankingStore::open(&store)?);
        let students = StudentStore::open(&store, blobs.clone())?;
        // what a crash (even SIGKILL) in the middle of an upload or an export left behind
        for (what, names) in [
            ("teacher upload staging", zoo.sweep_staging()?),
            (
                "dataset upload staging",
                crate::store::sweep(&config.data_dir.join(datasets::UPLOAD_STAGING), |_| true)?,
            ),
            ("dataset temporary", datasets.sweep_temporary()?),
            (
                "teacher outputs temporary",
                blobs.sweep("outputs", |n| n.starts_with(".tmp"))?,
            ),
            ("student temporary", students.sweep_temporary()?),
        ] {
            if !names.is_empty() {
                tracing::warn!(
                    count = names.len(),
                    "removed {what} files left by an interrupted write: {}",
                    names.join(", ")
                );
            }
        }
        let jobs = JobManager::open(
            &store,
            zoo.clone(),
            datasets.clone(),
            outputs.clone(),
            students,
            crate::jobs::Pace {
                max_jobs: config.max_jobs,
                checkpoint_every: std::time::Duration::from_millis(config.checkpoint_every_ms),
                job_memory: config.job_memory_mb << 20,
            },
            config.blob_url.is_some().then(|| blobs.clone()),
        )?;
        let shards = Arc::new(crate::rank::shards::Work {
            zoo: zoo.clone(),
            datasets: datasets.clone(),
            cache: outputs.clone(),
            rankings: rankings.clone(),
            shards: crate::rank::shards::Shards::open(&store, jobs.owner())?,
            running: Default::default(),
            swept: Default::default(),
        });
        // runners only where shards can exist: a shared database (another server may fan out) or this
        // server fans out itself
        if store.shared() || config.rank_shard_size > 0 {
            crate::rank::shards::start_runners(&shards, config.max_shards);
        }
        Ok(Self {
            config: Arc::new(config),
            shards,
            zoo,
            store,
            blobs,
            datasets,
            outputs,
            rankings,
            jobs,
            tokens,
            blocking,
            writing,
            upload_memory,
        })
    }

    /// Runs blocking compute (inference, rankings, ONNX loading) off the async threads; at most
    /// `max_blocking` at once: a request waits up to `queue_wait_ms` for a slot, then gets 429 with
    /// `Retry-After`.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_in(&self.blocking, f).await
    }

    /// Like [`AppState::blocking`] for writes that wait on the disk (uploads, deletes, job submissions),
    /// with slots of their own. Handlers that add data call [`AppState::check_disk`] first; deletes do
    /// not (they are how space comes back).
    pub async fn writing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_in(&self.writing, f).await
    }

    /// Reserves `bytes` of the memory that uploads being parsed and datasets being loaded share (whole
    /// MiB, at most all of it), waiting up to `queue_wait_ms`; then 429 with `Retry-After`. The
    /// reservation lasts as long as the permit.
    pub async fn dataset_memory(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let mib = (bytes.div_ceil(1 << 20)).clamp(1, self.config.upload_memory_mb.max(1)) as u32;
        let wait = std::time::Duration::from_millis(self.config.queue_wait_ms);
        let busy = || {
            ApiError(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "uploads being parsed and datasets being loaded hold the server's dataset memory \
                     ({} MiB, --upload-memory-mb); retry after the Retry-After seconds",
                    self.config.upload_memory_mb
                ),
            ))
        };
        tokio::time::timeout(wait, self.upload_memory.clone().acquire_many_owned(mib))
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())
    }

    /// [`AppState::dataset_memory`] for what `load_bytes` says loading will take (read off the async
    /// threads; an unknown dataset reserves nothing much, and the load that follows names the problem).
    pub async fn dataset_memory_for(
        &self,
        load_bytes: impl FnOnce() -> Result<u64> + Send + 'static,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let need = self.blocking(move || Ok(load_bytes().unwrap_or(0))).await?;
        self.dataset_memory(need).await
    }

    /// Refuses writes while the data or zoo directory's disk has less than `min_free_disk_mb` free.
    pub fn check_disk(&self) -> Result<(), ApiError> {
        let reserve = self.config.min_free_disk_mb << 20;
        for dir in [&self.config.data_dir, &self.config.zoo] {
            if let Some(free) = crate::store::free_bytes(dir)
                && free < reserve
            {
                return Err(ApiError(Error::new(
                    ErrorKind::InsufficientStorage,
                    format!(
                        "the server's disk is nearly full ({} MiB free where {} needs {} MiB, \
                         --min-free-disk-mb); nothing was stored: free space and retry",
                        free >> 20,
                        dir.display(),
                        reserve >> 20
                    ),
                )));
            }
        }
        Ok(())
    }

    async fn run_in<T: Send + 'static>(
        &self,
        slots: &Arc<Semaphore>,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let wait = std::time::Duration::from_millis(self.config.queue_wait_ms);
        let busy = || {
            ApiError(Error::new(
                ErrorKind::Overloaded,
                "too many requests in flight; retry after the Retry-After seconds",
            ))
        };
        let permit = tokio::time::timeout(wait, slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| ApiError(Error::internal(format!("worker failed: {e}"))))?;
        out.map_err(ApiError)
    }
}

async fn log_requests(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let span = tracing::info_span!("request", %method, path = %path);
    let res = tracing::Instrument::instrument(next.run(req), span).await;
    tracing::info!(%method, path = %path, status = res.status().as_u16(), ms = start.elapsed().as_millis() as u64, "request");
    res
}

async fn not_found() -> ApiError {
    ApiError(Error::not_found("no such endpoint; see /openapi.json"))
}

/// Liveness and a one-line summary.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "Server is up", body = Health),
        (status = 503, description = "The state database cannot be reached", body = ErrorBody)))]
pub async fn healthz(State(st): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    st.store.ping()?;
    let teachers = st.zoo.all()?;
    Ok(axum::Json(Health {
        status: "ok".into(),
        state_store: st.store.kind().into(),
        blob_store: st.blobs.kind().into(),
        version: env!("CARGO_PKG_VERSION").into(),
        teachers: teachers.len(),
        usable_teachers: teachers.iter().filter(|t| t.usable).count(),
        resident_mb: crate::onnx::memory::resident_bytes().map(|b| b >> 20),
        peak_resident_mb: crate::onnx::memory::peak_bytes().map(|b| b >> 20),
        memory_budget_mb: st.config.memory_budget_mb,
    }))
}

/// Health summary.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// Where the state lives: `sled` (embedded) or `postgresql`.
    pub state_store: String,
    /// Where datasets' rows and students' files live: `dir` (a directory) or `s3` (an object store).
    pub blob_store: String,
    pub teachers: usize,
    pub usable_teachers: usize,
    /// The server's resident memory now, MiB (Linux).
    pub resident_mb: Option<u64>,
    /// The most resident memory the server has held, MiB (Linux; the kernel's `VmHWM` alone can be
    /// lower: the memory budget resets it to measure each model's peak).
    pub peak_resident_mb: Option<u64>,
    /// `--memory-budget-mb` (0: none).
    pub memory_budget_mb: u64,
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let upload_limit = state.config.max_upload_bytes.saturating_add(1 << 20) as usize;
    Router::new()
        .route("/", get(dashboard::index))
        .route("/favicon.ico", get(dashboard::favicon))
        .route("/static/{*path}", get(dashboard::asset))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::serve))
        .route(
            "/v1/teachers",
            get(teachers::list)
                .post(teachers::upload)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/v1/teachers/{id}",
            get(teachers::get_one).delete(teachers::delete),
        )
        .route("/v1/teachers/{id}/model.onnx", get(teachers::download))
        .route("/v1/teachers/{id}/predict", post(teachers::predict))
        .route("/v1/zoo/rescan", post(teachers::rescan))
        .route(
            "/v1/datasets",
            get(datasets::list)
                .post(datasets::upload)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/v1/datasets/{id}",
            get(datasets::get_one).delete(datasets::delete),
        )
        .route("/v1/datasets/{id}/samples", get(datasets::samples))
        .route(
            "/v1/rankings",
            get(datasets::list_rankings).post(datasets::create_ranking),
        )
        .route("/v1/rankings/stream", post(datasets::stream_ranking))
        .route("/v1/rankings/{id}", get(datasets::get_ranking))
        .route(
            "/v1/rankings/{id}/teachers/{teacher_id}/label_map",
            get(datasets::label_map),
        )
        .route("/v1/jobs", get(jobs::list).post(jobs::create))
        .route("/v1/jobs/{id}", get(jobs::get_one))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/students", get(jobs::list_students))
        .route(
            "/v1/students/{id}",
            get(jobs::get_student).delete(jobs::delete_student),
        )
        .route("/v1/students/{id}/model.onnx", get(jobs::download_student))
        .fallback(not_found)
        // JSON bodies everywhere else (the upload routes above set their own, larger limit)
        .layer(axum::extract::DefaultBodyLimit::max(error::JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn(log_requests))
        .with_state(state)
}

/// Serves until Ctrl-C / SIGTERM.
pub async fn serve(config: Config) -> Result<()> {
    let addr = config.addr;
    let state = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::invalid_input(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!("faculty listening on http://{}", listener.local_addr()?);
    if !addr.ip().is_loopback() && state.tokens.is_none() {
        tracing::warn!(
            "SERVING ON A NON-LOOPBACK ADDRESS ({addr}) WITHOUT API TOKENS: anyone who can reach it can \
             upload, delete and train. Set --api-tokens (or FACULTY_API_TOKENS)"
        );
        eprintln!(
            "WARNING: faculty serves {addr} without API tokens: anyone who can reach it can upload, \
             delete and train. Set --api-tokens (or FACULTY_API_TOKENS)."
        );
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::internal(format!("server: {e}")))
}

/// `faculty worker`: the library's state and job manager without the HTTP layer. The manager's heartbeat
/// takes the jobs no process holds; the worker runs until SIGINT or SIGTERM.
pub async fn work(config: Config) -> Result<()> {
    if config.database_url.is_none() {
        return Err(Error::invalid_input(
            "a worker takes jobs from the servers' shared state database: give it --database-url \
             (and --blob-url, unless it shares the servers' data directory)",
        ));
    }
    if config.max_jobs == 0 && config.max_shards == 0 {
        return Err(Error::invalid_input(
            "a worker with --max-jobs 0 and --max-shards 0 would never do any work",
        ));
    }
    let (max_jobs, max_shards) = (config.max_jobs, config.max_shards);
    let state = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    tracing::info!(
        worker = state.jobs.owner(),
        max_jobs,
        max_shards,
        "faculty worker ready: taking jobs and ranking shards from the shared queue"
    );
    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
