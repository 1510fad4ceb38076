//! Durable distillation jobs. A job is a row in the table `jobs`; its training checkpoint is in
//! `checkpoints` (with an object store, a blob `checkpoints/<sha256>.json` the table points at); finished
//! students are in `students` (see [`students`]). The manager runs at most
//! `max_jobs` at once on blocking threads (the rest wait, first come first served), streams every change
//! through a watch channel (the SSE endpoint reads it), cancels on request, and on start-up puts every job
//! a killed server left behind into a known state: queued again and resumed from its last checkpoint, or
//! failed with the reason.
//!
//! Several servers may share one state database (PostgreSQL): each job is then held by one of them
//! through a lease ([`lease`]) that it renews while the job waits or runs. A server that dies stops
//! renewing; within seconds another one takes the job over and resumes it from its checkpoint. A job is
//! watched from any server (from the database, polled, where it runs elsewhere) and cancelled from any
//! (through the `cancels` table its holder reads).
pub mod lease;
pub mod students;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::data::DatasetStore;
use crate::distill::{self, Checkpoint, DistillRequest, EpochMetrics, TeacherRef};
use crate::error::{Error, Result};
use crate::rank::OutputCache;
use crate::store::listing::{Listed, Listing, Paging};
use crate::store::{Store, now_unix};
use crate::zoo::Zoo;
pub use students::{StudentPage, StudentQuery, StudentStore};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A distillation job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    /// queued, ranking, teacher outputs, training, baseline, export, done.
    pub phase: String,
    /// 0..1
    pub progress: f64,
    pub dataset_id: String,
    pub request: DistillRequest,
    pub student_id: Option<String>,
    pub teacher: Option<TeacherRef>,
    /// The epochs of the job's latest trainings (train loss, validation accuracy, ...; `stage` names the
    /// training), at most the last few thousand: a search trains dozens of students.
    pub epochs: Vec<EpochMetrics>,
    /// Epochs of earlier trainings no longer in `epochs` (the student's card keeps its own whole history).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epochs_dropped: usize,
    pub error: Option<String>,
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// The epoch of the last saved checkpoint (what a restart resumes from).
    pub checkpoint_epoch: Option<usize>,
    /// Which training that checkpoint belongs to (the `stage` of its epochs), for jobs that train several
    /// students: until a new training writes its first checkpoint, the last one is the previous training's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_stage: Option<String>,
    /// How many times a server restart interrupted this job.
    pub restarts: u32,
    /// Method searches (`auto`, `multihop`): every candidate trained so far, with its validation
    /// accuracy and the student's when taught by it.
    #[serde(default)]
    pub search: Vec<distill::HopTrial>,
    /// Why a finished multihop search ended (the student card's `multihop.stopped`: the rule, `max_hops`
    /// or the time budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_stopped: Option<String>,
    /// What a finished job delivered, as its student card's `selection.picked` says: the method (with a
    /// search's answer, e.g. `auto (faculty)`, `multihop (a chain of 2)`), or `scratch` when the
    /// scratch baseline won. Absent for `scratch` jobs (nothing to choose) and unfinished ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked: Option<String>,
    pub notes: Vec<String>,
    /// The process that runs (or ran) it: `host:pid:tag` of a server or a `faculty worker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl Listed for Job {
    fn created(&self) -> u64 {
        self.created
    }
    fn id(&self) -> &str {
        &self.id
    }
}

impl Job {
    /// The job as listed: its latest epoch, the others counted in `epochs_dropped`.
    pub fn latest_epoch_only(mut self) -> Self {
        let older = self.epochs.len().saturating_sub(1);
        self.epochs.drain(..older);
        self.epochs_dropped += older;
        self
    }
}

/// Filters and paging for listing jobs.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this dataset.
    pub dataset_id: Option<String>,
    /// Jobs per page (1-500, default 100).
    pub page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A page of jobs, newest first, each with its latest epoch only (`epochs_dropped` counts the others).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
    /// Jobs matching the filters, over all pages.
    pub total: usize,
}

/// A job shows at most this many epochs: every epoch publishes the job to its watchers, so a search of
/// thousands of epochs would otherwise copy and send an ever-longer list each time.
const MAX_JOB_EPOCHS: usize = 2000;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How often a server reads a job that another server runs, for its watchers.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// This machine's name (for the lease owner), or `unknown`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// How a `checkpoints` entry points at a checkpoint kept in the blob store.
const BLOB_POINTER: &[u8] = b"blob:";

fn checkpoint_key(sha256: &str) -> String {
    format!("checkpoints/{sha256}.json")
}

/// A restart may interrupt a job this many times before it is failed instead of resumed.
const MAX_RESTARTS: u32 = 3;
/// At most one progress write to sled per this interval (the watch channel sees every change).
const PERSIST_EVERY: Duration = Duration::from_millis(250);

struct Inner {
    /// The jobs, each with its list view (its latest epoch only, ~1 KB: a list reads these, not the
    /// whole jobs of ~250 KB each near the epoch cap).
    jobs: Listing<Job>,
    checkpoints: crate::store::Table,
    /// Where checkpoints live when servers share an object store (the table then holds pointers).
    checkpoint_blobs: Option<Arc<crate::store::Blobs>>,
    /// The unfinished jobs' ids (what a server looks through for jobs whose holder is gone).
    active: crate::store::Table,
    /// Cancellations asked of a job held by another server.
    cancels: crate::store::Table,
    leases: lease::Leases,
    /// Whether other servers share the tables (then they may hold jobs, and take ours over).
    shared: bool,
    /// Whether this process runs jobs (`max_jobs` > 0); a server that does not leaves them to workers.
    runs_jobs: bool,
    /// Jobs this process runs at once; it takes over at most this many jobs from the shared queue, less
    /// the ones it has.
    max_jobs: usize,
    /// At most one checkpoint write per this interval.
    checkpoint_every: Duration,
    /// See [`Pace::job_memory`].
    job_memory: u64,
    zoo: Arc<Zoo>,
    datasets: Arc<DatasetStore>,
    outputs: OutputCache,
    students: StudentStore,
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<String, watch::Sender<Job>>>,
    cancel: Mutex<HashMap<String, Arc<AtomicBool>>>,
    counter: AtomicU64,
    runtime: Option<tokio::runtime::Handle>,
}

/// How many jobs a process runs at once, and how often a running job writes its checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub max_jobs: usize,
    pub checkpoint_every: Duration,
    /// The most memory one job's training is expected to take, bytes (0: no limit); jobs past it are
    /// refused when submitted.
    pub job_memory: u64,
}

/// Runs and remembers jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

impl JobManager {
    /// Opens the job trees and recovers what a previous process left running. Call from inside a tokio
    /// runtime (jobs are spawned on it).
    pub fn open(
        store: &Store,
        zoo: Arc<Zoo>,
        datasets: Arc<DatasetStore>,
        outputs: OutputCache,
        students: StudentStore,
        pace: Pace,
        checkpoint_blobs: Option<Arc<crate::store::Blobs>>,
    ) -> Result<Self> {
        let Pace {
            max_jobs,
            checkpoint_every,
            job_memory,
        } = pace;
        let owner = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            &crate::zoo::teacher::sha256_hex(format!("{:?}", Instant::now()).as_bytes())[..8]
        );
        if max_jobs == 0 && !store.shared() {
            return Err(Error::invalid_input(
                "--max-jobs 0 leaves jobs to `faculty worker` processes, which need a shared state \
                 database: add --database-url (or run at least one job at a time)",
            ));
        }
        let m = Self {
            inner: Arc::new(Inner {
                jobs: Listing::open(store.tree("jobs")?, |j: &Job| j.clone().latest_epoch_only())?,
                checkpoints: store.tree("checkpoints")?,
                checkpoint_blobs,
                active: store.tree("jobs_active")?,
                cancels: store.tree("job_cancels")?,
                leases: lease::Leases::open(store, "job_leases", owner)?,
                shared: store.shared(),
                runs_jobs: max_jobs > 0,
                max_jobs,
                checkpoint_every,
                job_memory,
                zoo,
                datasets,
                outputs,
                students,
                slots: Arc::new(Semaphore::new(max_jobs.max(1))),
                live: Mutex::new(HashMap::new()),
                cancel: Mutex::new(HashMap::new()),
                counter: AtomicU64::new(0),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        };
        m.recover()?;
        m.start_heartbeat();
        Ok(m)
    }

    /// This process as job holders are named (`host:pid:tag`).
    pub fn owner(&self) -> &str {
        &self.inner.leases.owner
    }

    /// Renews this server's leases every [`lease::HEARTBEAT`], passes on cancellations asked elsewhere
    /// and, where servers share the tables, takes over the jobs whose holder is gone. Ends with the
    /// manager.
    fn start_heartbeat(&self) {
        if self.inner.runtime.is_none() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("faculty-job-leases".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(lease::HEARTBEAT);
                    let Some(inner) = weak.upgrade() else { return };
                    let m = JobManager { inner };
                    if let Err(e) = m.heartbeat() {
                        tracing::warn!("job leases: {}", e.message);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the job lease thread: {e}");
        }
    }

    fn heartbeat(&self) -> Result<()> {
        let mine: Vec<(String, Arc<AtomicBool>)> = self
            .inner
            .cancel
            .lock()
            .expect("cancel lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, flag) in mine {
            if !self.inner.leases.renew(&id)? {
                tracing::warn!(job = %id, "lost this job's lease to another server; stopping it here");
                flag.store(true, Ordering::Relaxed);
            } else if self.inner.cancels.get(id.as_bytes())?.is_some() {
                flag.store(true, Ordering::Relaxed);
            }
        }
        if self.inner.shared && self.inner.runs_jobs {
            self.adopt_orphans()?;
        }
        Ok(())
    }

    /// Queues here, oldest first and no more than this process has free slots for, the unfinished jobs
    /// that no live process holds (left to workers, or their holder was killed).
    fn adopt_orphans(&self) -> Result<()> {
        let local = || self.inner.cancel.lock().expect("cancel lock").len();
        let mut orphans = Vec::new();
        for (k, _) in self.inner.active.iter()? {
            let id = String::from_utf8_lossy(&k).into_owned();
            let mine = self
                .inner
                .cancel
                .lock()
                .expect("cancel lock")
                .contains_key(&id);
            if mine || self.inner.leases.held_elsewhere(&id)? {
                continue;
            }
            match self.read(&id) {
                Ok(job) if !job.state.finished() => orphans.push(job),
                Ok(_) | Err(_) => {
                    self.inner.active.remove(k)?;
                    self.inner.leases.forget(&id)?;
                }
            }
        }
        if self.inner.leases.is_queue() {
            // every unheld job is an item of the queue (idempotent), then the oldest are taken with
            // FOR UPDATE SKIP LOCKED: processes claiming at once each get different jobs
            for job in &orphans {
                self.inner.leases.enqueue(&job.id)?;
            }
            while local() < self.inner.max_jobs {
                let Some(id) = self.inner.leases.claim_next()? else {
                    break;
                };
                match self.read(&id) {
                    Ok(job) if !job.state.finished() => {
                        self.requeue(job, "its server stopped answering")?
                    }
                    _ => self.inner.leases.forget(&id)?,
                }
            }
            return Ok(());
        }
        orphans.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        for job in orphans {
            if local() >= self.inner.max_jobs {
                break;
            }
            if self.inner.leases.claim(&job.id)? {
                self.requeue(job, "its server stopped answering")?;
            }
        }
        Ok(())
    }

    /// A job's last checkpoint (`None` when it has none, or it cannot be read: the job starts over).
    fn read_checkpoint(&self, id: &str) -> Result<Option<Checkpoint>> {
        let Some(raw) = self.inner.checkpoints.get(id.as_bytes())? else {
            return Ok(None);
        };
        let bytes = match (raw.strip_prefix(BLOB_POINTER), &self.inner.checkpoint_blobs) {
            (Some(sha), Some(blobs)) => {
                let sha = String::from_utf8_lossy(sha).into_owned();
                match blobs.path(&checkpoint_key(&sha), Some(&sha)) {
                    Ok(path) => std::fs::read(path)?,
                    Err(e) if e.kind == crate::error::ErrorKind::StoreUnavailable => return Err(e),
                    Err(e) => {
                        tracing::warn!(job = %id, "checkpoint unreadable, starting over: {}", e.message);
                        return Ok(None);
                    }
                }
            }
            (Some(_), None) => return Ok(None),
            (None, _) => raw.to_vec(),
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Keeps `ck` as job `id`'s checkpoint, durably, and drops the one it replaces.
    fn write_checkpoint(&self, id: &str, ck: &Checkpoint) -> Result<()> {
        let bytes = serde_json::to_vec(ck)?;
        let tree = &self.inner.checkpoints;
        let Some(blobs) = &self.inner.checkpoint_blobs else {
            tree.insert(id.as_bytes(), bytes)?;
            return tree.flush();
        };
        let sha = crate::zoo::teacher::sha256_hex(&bytes);
        blobs.put(&checkpoint_key(&sha), &bytes)?;
        let mut pointer = BLOB_POINTER.to_vec();
        pointer.extend(sha.as_bytes());
        let old = tree.get(id.as_bytes())?;
        tree.insert(id.as_bytes(), pointer)?;
        tree.flush()?;
        if let Some(old) = old.as_deref().and_then(|o| o.strip_prefix(BLOB_POINTER))
            && old != sha.as_bytes()
        {
            let _ = blobs.delete(&checkpoint_key(&String::from_utf8_lossy(old)));
        }
        Ok(())
    }

    /// Drops job `id`'s checkpoint (and its blob).
    fn remove_checkpoint(&self, id: &str) -> Result<()> {
        let tree = &self.inner.checkpoints;
        if let (Some(old), Some(blobs)) = (tree.get(id.as_bytes())?, &self.inner.checkpoint_blobs)
            && let Some(sha) = old.strip_prefix(BLOB_POINTER)
        {
            let _ = blobs.delete(&checkpoint_key(&String::from_utf8_lossy(sha)));
        }
        tree.remove(id.as_bytes())
    }

    pub fn students(&self) -> &StudentStore {
        &self.inner.students
    }

    fn read(&self, id: &str) -> Result<Job> {
        self.inner
            .jobs
            .get(id)?
            .ok_or_else(|| Error::not_found(format!("no job '{id}'")))
    }

    fn write(&self, job: &Job) -> Result<()> {
        self.inner.jobs.put(&job.id, job)?;
        self.inner.jobs.flush()
    }

    /// Persists and announces a job's new state.
    fn publish(&self, job: &Job, persist: bool) -> Result<()> {
        let written = if persist { self.write(job) } else { Ok(()) };
        // watchers see the job even when it could not be written (a full disk): a finished job stays
        // in memory until it is, so that it never looks running
        let mut live = self.inner.live.lock().expect("live lock");
        if let Some(tx) = live.get(&job.id) {
            tx.send_replace(job.clone());
        }
        if job.state.finished() && written.is_ok() {
            live.remove(&job.id);
            drop(live);
            let _ = self.inner.active.remove(job.id.as_bytes());
        }
        written
    }

    /// The job's latest state (in memory while it runs, from sled otherwise).
    pub fn get(&self, id: &str) -> Result<Job> {
        if let Some(tx) = self.inner.live.lock().expect("live lock").get(id) {
            return Ok(tx.borrow().clone());
        }
        self.read(id)
    }

    /// A page of jobs, newest first, each with its latest epoch only (GET the job for its whole
    /// history). Reads the jobs' list views (~1 KB a job), not the jobs themselves.
    pub fn list(&self, q: &JobQuery) -> Result<JobPage> {
        let paging = Paging {
            page_size: q.page_size,
            page_token: q.page_token.as_deref(),
        };
        // a running job's view is as of its last save: the live job is newer
        let live = |stored: Job| match self.inner.live.lock().expect("live lock").get(&stored.id) {
            Some(tx) => tx.borrow().clone().latest_epoch_only(),
            None => stored,
        };
        let keep = |job: &Job| {
            q.state.is_none_or(|s| s == job.state)
                && q.dataset_id.as_ref().is_none_or(|d| *d == job.dataset_id)
        };
        let filtered = q.state.is_some() || q.dataset_id.is_some();
        let (jobs, next_page_token, total) = self.inner.jobs.page(
            paging,
            live,
            filtered.then_some(&keep as &dyn Fn(&Job) -> bool),
        )?;
        Ok(JobPage {
            jobs,
            next_page_token,
            total,
        })
    }

    /// A receiver that sees every change of a job until it finishes (`None` when it already has).
    pub fn subscribe(&self, id: &str) -> Result<(Job, Option<watch::Receiver<Job>>)> {
        let live = self.inner.live.lock().expect("live lock");
        match live.get(id) {
            Some(tx) => Ok((tx.borrow().clone(), Some(tx.subscribe()))),
            None => {
                drop(live);
                let job = self.read(id)?;
                if job.state.finished() || !self.inner.shared {
                    return Ok((job, None));
                }
                Ok((job.clone(), Some(self.poll(job))))
            }
        }
    }

    /// A receiver of a job held by another server, fed by reading the database every
    /// [`POLL_EVERY`] until the job finishes or nobody listens.
    fn poll(&self, job: Job) -> watch::Receiver<Job> {
        let (tx, rx) = watch::channel(job);
        let Some(rt) = self.inner.runtime.clone() else {
            return rx;
        };
        let me = self.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(POLL_EVERY).await;
                if tx.is_closed() {
                    return;
                }
                let (m, id) = (me.clone(), tx.borrow().id.clone());
                let Ok(Ok(now)) = tokio::task::spawn_blocking(move || m.get(&id)).await else {
                    continue; // the database is unreachable for now: keep trying
                };
                let done = now.state.finished();
                tx.send_if_modified(|j| {
                    let changed = *j != now;
                    *j = now;
                    changed
                });
                if done {
                    return;
                }
            }
        });
        rx
    }

    fn new_id(&self) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let h = crate::zoo::teacher::sha256_hex(
            format!("{nanos}:{n}:{}", std::process::id()).as_bytes(),
        );
        format!("job_{}", &h[..16])
    }

    /// Checks a request (a bad one creates nothing) and queues it.
    pub fn submit(&self, req: DistillRequest) -> Result<Job> {
        let (info, ds) = self.inner.datasets.load_parsed(&req.dataset_id)?;
        let v = distill::validate(&self.inner.zoo, &ds, &req)?;
        let held = distill::held_teacher_classes(&self.inner.zoo, &req)?;
        distill::check_training_memory(&ds, &req, &v, &held, self.inner.job_memory)?;
        if let Some(eid) = &req.eval_dataset_id {
            let (_, eval) = self.inner.datasets.load_parsed(eid)?;
            distill::check_eval(&ds, &eval)?;
        }
        let job = Job {
            id: self.new_id(),
            state: JobState::Queued,
            phase: "queued".into(),
            progress: 0.0,
            dataset_id: info.id,
            request: req,
            student_id: None,
            teacher: None,
            epochs: Vec::new(),
            epochs_dropped: 0,
            error: None,
            created: now_unix(),
            started: None,
            finished: None,
            checkpoint_epoch: None,
            checkpoint_stage: None,
            restarts: 0,
            search: Vec::new(),
            search_stopped: None,
            picked: None,
            notes: Vec::new(),
            worker: None,
        };
        self.write(&job)?;
        self.inner.active.insert(job.id.as_bytes(), Vec::new())?;
        if self.inner.runs_jobs {
            self.inner.leases.claim(&job.id)?;
            self.enqueue(job.clone());
        } else {
            // left to the processes that run jobs
            self.inner.leases.enqueue(&job.id)?;
        }
        Ok(job)
    }

    /// Asks a job to stop. A queued job is cancelled at once; a running one at its next training step; one
    /// another server holds, by that server within a heartbeat.
    pub fn cancel(&self, id: &str) -> Result<Job> {
        let mut job = self.get(id)?;
        let local = self
            .inner
            .cancel
            .lock()
            .expect("cancel lock")
            .get(id)
            .cloned();
        match job.state {
            s if s.finished() => Err(Error::conflict(format!(
                "job '{id}' has already finished ({})",
                serde_json::to_value(s)?.as_str().unwrap_or_default()
            ))),
            JobState::Queued if local.is_some() || !self.inner.leases.held_elsewhere(id)? => {
                job.state = JobState::Cancelled;
                job.phase = "cancelled".into();
                job.finished = Some(now_unix());
                self.publish(&job, true)?;
                let _ = self.remove_checkpoint(id);
                Ok(job)
            }
            _ => {
                match local {
                    Some(f) => f.store(true, Ordering::Relaxed),
                    None => self.inner.cancels.insert(id.as_bytes(), Vec::new())?,
                }
                job.notes.push("cancellation requested".into());
                Ok(job)
            }
        }
    }

    fn enqueue(&self, job: Job) {
        let id = job.id.clone();
        let (tx, _) = watch::channel(job);
        self.inner
            .live
            .lock()
            .expect("live lock")
            .insert(id.clone(), tx);
        let flag = Arc::new(AtomicBool::new(false));
        self.inner
            .cancel
            .lock()
            .expect("cancel lock")
            .insert(id.clone(), flag.clone());
        let Some(rt) = self.inner.runtime.clone() else {
            tracing::warn!(job = %id, "no async runtime: the job stays queued");
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            let Ok(permit) = me.inner.slots.clone().acquire_owned().await else {
                return;
            };
            let me2 = me.clone();
            let id2 = id.clone();
            // set when this task is dropped unfinished, which only a runtime shutting down does: the
            // training then stops at its next step and leaves the job to resume (dropping a runtime
            // waits for its blocking threads, which would otherwise train on to the job's end)
            let abandoned = Arc::new(AtomicBool::new(false));
            let mut guard = SetOnDrop(Some(abandoned.clone()));
            let res = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                me2.execute(&id2, flag, abandoned)
            })
            .await;
            guard.0 = None;
            let failure = match res {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.message),
                Err(e) => Some(format!("the job's worker crashed: {e}")),
            };
            if let Some(msg) = failure
                && let Ok(mut job) = me.get(&id)
                && !job.state.finished()
            {
                job.state = JobState::Failed;
                job.error = Some(msg);
                job.finished = Some(now_unix());
                let _ = me.publish(&job, true);
                let _ = me.inner.leases.release(&id);
            }
            me.inner.cancel.lock().expect("cancel lock").remove(&id);
        });
    }

    /// Runs one job to its end (on a blocking thread), or until `abandoned` is set: then the job is left
    /// running, with its checkpoint, for the next start (or another process) to resume.
    fn execute(&self, id: &str, flag: Arc<AtomicBool>, abandoned: Arc<AtomicBool>) -> Result<()> {
        // another server may have taken the job over, finished or cancelled it while it waited here
        if !self.inner.leases.claim(id)? {
            self.inner.live.lock().expect("live lock").remove(id);
            return Ok(());
        }
        let mut job = self.read(id)?;
        if job.state != JobState::Queued {
            self.inner.live.lock().expect("live lock").remove(id);
            self.inner.leases.release(id)?;
            return Ok(());
        }
        if flag.load(Ordering::Relaxed) || self.inner.cancels.get(id.as_bytes())?.is_some() {
            job.state = JobState::Cancelled;
            job.phase = "cancelled".into();
            job.finished = Some(now_unix());
            return self.finish(&job);
        }
        job.state = JobState::Running;
        job.phase = "starting".into();
        job.started = Some(now_unix());
        job.worker = Some(self.inner.leases.owner.clone());
        self.publish(&job, true)?;
        let resume = self.read_checkpoint(id)?;
        if let Some(ck) = &resume {
            job.epochs = ck.history.clone();
            job.epochs_dropped = 0;
        }
        // a search re-runs its trainings before the checkpoint (seeded, so identically) and reports them again
        job.search.clear();
        let (info, ds) = self.inner.datasets.load_parsed(&job.dataset_id)?;
        // test rows: the job's eval dataset, else the test split the dataset came with
        let eval_id = job
            .request
            .eval_dataset_id
            .clone()
            .or(info.test_dataset_id.clone());
        let eval = match &eval_id {
            Some(id) => Some(self.inner.datasets.load_parsed(id)?.1),
            None => None,
        };
        let data = distill::TaskData {
            ds: &ds,
            sha256: &info.sha256,
            test: eval_id
                .zip(eval.as_ref())
                .map(|(dataset_id, ds)| distill::TestRows { dataset_id, ds }),
        };
        let mut p = JobProgress {
            m: self.clone(),
            job,
            flag,
            abandoned: abandoned.clone(),
            last_persist: Instant::now(),
            last_checkpoint: None,
        };
        let result = distill::run(
            &self.inner.zoo,
            &self.inner.outputs,
            &data,
            &p.job.request.clone(),
            resume,
            &mut p,
        );
        let mut job = p.job;
        if abandoned.load(Ordering::Relaxed) {
            tracing::info!(job = %id, "stopped with the process; it resumes from its checkpoint");
            return Ok(());
        }
        job.finished = Some(now_unix());
        match result {
            Ok(Some(outcome)) => {
                // intermediates first: the final card names them
                for inter in &outcome.intermediates {
                    self.inner.students.put(inter)?;
                }
                let card = self.inner.students.put(&outcome)?;
                if let Some(m) = &card.multihop {
                    job.search = m.trials.clone(); // with the kept hops marked
                    if job.request.method == distill::Method::Multihop {
                        job.search_stopped = Some(m.stopped.clone());
                    }
                }
                job.picked = card.selection.as_ref().map(|s| s.picked.clone());
                job.state = JobState::Succeeded;
                job.phase = "done".into();
                job.progress = 1.0;
                job.student_id = Some(card.id);
            }
            Ok(None) => {
                job.state = JobState::Cancelled;
                job.phase = "cancelled".into();
            }
            Err(e) => {
                job.state = JobState::Failed;
                job.error = Some(e.message);
            }
        }
        if !self.inner.leases.renew(id)? {
            // the lease ran out while this server was cut off, and another server runs the job now
            tracing::warn!(job = %id, "lost the lease before the job ended here; leaving it to its new holder");
            self.inner.live.lock().expect("live lock").remove(id);
            return Ok(());
        }
        self.finish(&job)
    }

    /// Records a job's final state and lets go of it.
    fn finish(&self, job: &Job) -> Result<()> {
        self.publish(job, true)?;
        let id = job.id.as_bytes();
        self.remove_checkpoint(&job.id)?;
        self.inner.checkpoints.flush()?;
        self.inner.active.remove(id)?;
        self.inner.cancels.remove(id)?;
        self.inner.leases.release(&job.id)?;
        Ok(())
    }

    /// Puts every job a previous process left unfinished back in the queue (or fails it), oldest first.
    /// Jobs another live server holds are left to it.
    fn recover(&self) -> Result<()> {
        // from the jobs' list views (~1 KB each, read one at a time); a whole job (up to ~250 KB) is read
        // only to change it
        let (mut unfinished, mut lost) = (Vec::new(), Vec::new());
        self.inner.jobs.for_each_view(|view| {
            match view.state {
                JobState::Queued | JobState::Running if !self.inner.shared => {
                    unfinished.push(view.id)
                }
                // shared: taken at a heartbeat, by whichever process has a free slot
                JobState::Queued | JobState::Running => {}
                JobState::Succeeded => {
                    let ok = view
                        .student_id
                        .as_deref()
                        .is_some_and(|s| self.inner.students.exists(s));
                    if !ok {
                        lost.push(view.id);
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        for id in lost {
            let mut job = self.read(&id)?;
            job.state = JobState::Failed;
            job.error = Some("the student this job produced is missing".into());
            self.write(&job)?;
        }
        let mut pending = Vec::new();
        for id in unfinished {
            self.inner.leases.take(&id)?;
            pending.push(self.read(&id)?);
        }
        pending.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        for job in pending {
            self.requeue(job, "the server stopped")?;
        }
        Ok(())
    }

    /// Queues here a job whose lease this server just took: a job that was running (`why` its holder is
    /// gone) resumes from its checkpoint, or fails after too many interruptions.
    fn requeue(&self, mut job: Job, why: &str) -> Result<()> {
        if job.state == JobState::Running {
            job.restarts += 1;
            let ck = self.read_checkpoint(&job.id)?;
            if job.restarts > MAX_RESTARTS {
                job.state = JobState::Failed;
                job.error = Some(format!(
                    "interrupted {} times ({why}); giving up",
                    job.restarts
                ));
                job.finished = Some(now_unix());
                self.write(&job)?;
                self.inner.active.remove(job.id.as_bytes())?;
                self.inner.leases.release(&job.id)?;
                return Ok(());
            }
            job.notes.push(match &ck {
                Some(c) => format!(
                    "{why} while this job ran; resumed from the checkpoint after epoch {}",
                    c.epoch
                ),
                None => format!(
                    "{why} while this job ran, before its first checkpoint; restarted from the \
                     beginning"
                ),
            });
            job.state = JobState::Queued;
            job.phase = "queued".into();
        }
        self.write(&job)?;
        tracing::info!(job = %job.id, restarts = job.restarts, "job re-queued: {why}");
        self.enqueue(job);
        Ok(())
    }
}

/// What a running job reports: every change goes to the watch channel, sled gets it at most every
/// `PERSIST_EVERY` (and at every phase change), checkpoints at most every `Pace::checkpoint_every`.
struct JobProgress {
    m: JobManager,
    job: Job,
    flag: Arc<AtomicBool>,
    /// See [`JobManager::execute`].
    abandoned: Arc<AtomicBool>,
    last_persist: Instant,
    last_checkpoint: Option<Instant>,
}

impl JobProgress {
    fn update(&mut self, force: bool) {
        let persist = force || self.last_persist.elapsed() >= PERSIST_EVERY;
        if persist {
            self.last_persist = Instant::now();
        }
        if let Err(e) = self.m.publish(&self.job, persist) {
            tracing::warn!(job = %self.job.id, "cannot record progress: {}", e.message);
        }
    }
}

impl distill::Progress for JobProgress {
    fn phase(&mut self, phase: &str, progress: f64) {
        self.job.phase = phase.into();
        self.job.progress = progress;
        self.update(true);
    }
    fn epoch(&mut self, phase: &str, m: &EpochMetrics, progress: f64) {
        self.job.progress = progress;
        if phase.starts_with("training") {
            self.job.epochs.push(m.clone());
            if self.job.epochs.len() > MAX_JOB_EPOCHS {
                // the oldest quarter at once, so that dropping stays cheap per epoch
                let n = MAX_JOB_EPOCHS / 4;
                self.job.epochs.drain(..n);
                self.job.epochs_dropped += n;
            }
        }
        self.update(false);
    }
    fn teacher(&mut self, t: &TeacherRef) {
        self.job.teacher = Some(t.clone());
        self.update(true);
    }
    fn trial(&mut self, t: &distill::HopTrial) {
        self.job.search.push(t.clone());
        self.update(true);
    }
    fn checkpoint(&mut self, make: &dyn Fn() -> Checkpoint) -> Result<()> {
        if self
            .last_checkpoint
            .is_some_and(|t| t.elapsed() < self.m.inner.checkpoint_every)
        {
            return Ok(());
        }
        self.last_checkpoint = Some(Instant::now());
        let ck = make();
        self.m.write_checkpoint(&self.job.id, &ck)?;
        self.job.checkpoint_epoch = Some(ck.epoch);
        self.job.checkpoint_stage = ck.history.last().and_then(|m| m.stage.clone());
        self.update(true);
        Ok(())
    }
    fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.abandoned.load(Ordering::Relaxed)
    }
}

/// Sets its flag when dropped (unless the flag was taken out first).
struct SetOnDrop(Option<Arc<AtomicBool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            f.store(true, Ordering::Relaxed);
        }
    }
}
