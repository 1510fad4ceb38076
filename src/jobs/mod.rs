//! Durable distillation jobs. A job is a row in the sled tree `jobs`; its training checkpoint is in
//! `checkpoints`; finished students are in `students` (see [`students`]). The manager runs at most
//! `max_jobs` at once on blocking threads (the rest wait, first come first served), streams every change
//! through a watch channel (the SSE endpoint reads it), cancels on request, and on start-up puts every job
//! a killed server left behind into a known state: queued again and resumed from its last checkpoint, or
//! failed with the reason.
pub mod students;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::data::DatasetStore;
use crate::distill::{self, Checkpoint, DistillRequest, EpochMetrics, TeacherRef};
use crate::error::{Error, Result};
use crate::rank::OutputCache;
use crate::store::{Store, now_unix};
use crate::zoo::Zoo;
pub use students::StudentStore;

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
    /// How many times a server restart interrupted this job.
    pub restarts: u32,
    /// Method searches (`auto`, `multihop`): every candidate trained so far, with its validation
    /// accuracy and the student's when taught by it.
    #[serde(default)]
    pub search: Vec<distill::HopTrial>,
    pub notes: Vec<String>,
}

/// A job shows at most this many epochs: every epoch publishes the job to its watchers, so a search of
/// thousands of epochs would otherwise copy and send an ever-longer list each time.
const MAX_JOB_EPOCHS: usize = 2000;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A restart may interrupt a job this many times before it is failed instead of resumed.
const MAX_RESTARTS: u32 = 3;
/// At most one checkpoint write per this interval.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// At most one progress write to sled per this interval (the watch channel sees every change).
const PERSIST_EVERY: Duration = Duration::from_millis(250);

struct Inner {
    jobs: sled::Tree,
    checkpoints: sled::Tree,
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
        max_jobs: usize,
    ) -> Result<Self> {
        let m = Self {
            inner: Arc::new(Inner {
                jobs: store.tree("jobs")?,
                checkpoints: store.tree("checkpoints")?,
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
        Ok(m)
    }

    pub fn students(&self) -> &StudentStore {
        &self.inner.students
    }

    fn read(&self, id: &str) -> Result<Job> {
        let v = self
            .inner
            .jobs
            .get(id.as_bytes())?
            .ok_or_else(|| Error::not_found(format!("no job '{id}'")))?;
        Ok(serde_json::from_slice(&v)?)
    }

    fn write(&self, job: &Job) -> Result<()> {
        self.inner
            .jobs
            .insert(job.id.as_bytes(), serde_json::to_vec(job)?)?;
        self.inner.jobs.flush()?;
        Ok(())
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

    /// Every job, newest first.
    pub fn list(&self) -> Result<Vec<Job>> {
        let live = self.inner.live.lock().expect("live lock");
        let mut v = Vec::new();
        for kv in self.inner.jobs.iter() {
            let (_, val) = kv?;
            let stored: Job = serde_json::from_slice(&val)?;
            v.push(match live.get(&stored.id) {
                Some(tx) => tx.borrow().clone(),
                None => stored,
            });
        }
        drop(live);
        v.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    /// A receiver that sees every change of a job until it finishes (`None` when it already has).
    pub fn subscribe(&self, id: &str) -> Result<(Job, Option<watch::Receiver<Job>>)> {
        let live = self.inner.live.lock().expect("live lock");
        match live.get(id) {
            Some(tx) => Ok((tx.borrow().clone(), Some(tx.subscribe()))),
            None => {
                drop(live);
                Ok((self.read(id)?, None))
            }
        }
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
        let (info, ds) = self.inner.datasets.load(&req.dataset_id)?;
        distill::validate(&self.inner.zoo, &ds, &req)?;
        if let Some(eid) = &req.eval_dataset_id {
            let (_, eval) = self.inner.datasets.load(eid)?;
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
            restarts: 0,
            search: Vec::new(),
            notes: Vec::new(),
        };
        self.write(&job)?;
        self.enqueue(job.clone());
        Ok(job)
    }

    /// Asks a job to stop. A queued job is cancelled at once; a running one at its next training step.
    pub fn cancel(&self, id: &str) -> Result<Job> {
        let mut job = self.get(id)?;
        match job.state {
            s if s.finished() => Err(Error::conflict(format!(
                "job '{id}' has already finished ({})",
                serde_json::to_value(s)?.as_str().unwrap_or_default()
            ))),
            JobState::Queued => {
                job.state = JobState::Cancelled;
                job.phase = "cancelled".into();
                job.finished = Some(now_unix());
                self.publish(&job, true)?;
                let _ = self.inner.checkpoints.remove(id.as_bytes());
                Ok(job)
            }
            _ => {
                if let Some(f) = self.inner.cancel.lock().expect("cancel lock").get(id) {
                    f.store(true, Ordering::Relaxed);
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
            let res = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                me2.execute(&id2, flag)
            })
            .await;
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
            }
            me.inner.cancel.lock().expect("cancel lock").remove(&id);
        });
    }

    /// Runs one job to its end (on a blocking thread).
    fn execute(&self, id: &str, flag: Arc<AtomicBool>) -> Result<()> {
        let mut job = self.get(id)?;
        if job.state != JobState::Queued {
            return Ok(());
        }
        job.state = JobState::Running;
        job.phase = "starting".into();
        job.started = Some(now_unix());
        self.publish(&job, true)?;
        let resume: Option<Checkpoint> = match self.inner.checkpoints.get(id.as_bytes())? {
            Some(v) => serde_json::from_slice(&v).ok(),
            None => None,
        };
        if let Some(ck) = &resume {
            job.epochs = ck.history.clone();
            job.epochs_dropped = 0;
        }
        // a search re-runs its trainings before the checkpoint (seeded, so identically) and reports them again
        job.search.clear();
        let (info, ds) = self.inner.datasets.load(&job.dataset_id)?;
        // test rows: the job's eval dataset, else the test split the dataset came with
        let eval_id = job
            .request
            .eval_dataset_id
            .clone()
            .or(info.test_dataset_id.clone());
        let eval = match &eval_id {
            Some(id) => Some(self.inner.datasets.load(id)?.1),
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
                }
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
        self.publish(&job, true)?;
        self.inner.checkpoints.remove(id.as_bytes())?;
        self.inner.checkpoints.flush()?;
        Ok(())
    }

    /// Puts every job a previous process left unfinished back in the queue (or fails it), oldest first.
    fn recover(&self) -> Result<()> {
        let mut pending = Vec::new();
        for kv in self.inner.jobs.iter() {
            let (_, v) = kv?;
            let mut job: Job = serde_json::from_slice(&v)?;
            match job.state {
                JobState::Queued | JobState::Running => {
                    if job.state == JobState::Running {
                        job.restarts += 1;
                        let ck: Option<Checkpoint> = self
                            .inner
                            .checkpoints
                            .get(job.id.as_bytes())?
                            .and_then(|v| serde_json::from_slice(&v).ok());
                        if job.restarts > MAX_RESTARTS {
                            job.state = JobState::Failed;
                            job.error = Some(format!(
                                "interrupted by {} server restarts; giving up",
                                job.restarts
                            ));
                            job.finished = Some(now_unix());
                            self.write(&job)?;
                            continue;
                        }
                        job.notes.push(match &ck {
                            Some(c) => format!(
                                "the server stopped while this job ran; resumed from the checkpoint after epoch {}",
                                c.epoch
                            ),
                            None => "the server stopped while this job ran, before its first \
                                     checkpoint; restarted from the beginning"
                                .into(),
                        });
                        job.state = JobState::Queued;
                        job.phase = "queued".into();
                    }
                    pending.push(job);
                }
                JobState::Succeeded => {
                    let ok = job
                        .student_id
                        .as_deref()
                        .is_some_and(|s| self.inner.students.exists(s));
                    if !ok {
                        job.state = JobState::Failed;
                        job.error = Some("the student this job produced is missing".into());
                        self.write(&job)?;
                    }
                }
                _ => {}
            }
        }
        pending.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        for job in pending {
            self.write(&job)?;
            tracing::info!(job = %job.id, restarts = job.restarts, "job re-queued after restart");
            self.enqueue(job);
        }
        Ok(())
    }
}

/// What a running job reports: every change goes to the watch channel, sled gets it at most every
/// `PERSIST_EVERY` (and at every phase change), checkpoints at most every `CHECKPOINT_EVERY`.
struct JobProgress {
    m: JobManager,
    job: Job,
    flag: Arc<AtomicBool>,
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
            .is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY)
        {
            return Ok(());
        }
        self.last_checkpoint = Some(Instant::now());
        let ck = make();
        let tree = &self.m.inner.checkpoints;
        tree.insert(self.job.id.as_bytes(), serde_json::to_vec(&ck)?)?;
        tree.flush()?;
        self.job.checkpoint_epoch = Some(ck.epoch);
        self.update(true);
        Ok(())
    }
    fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}
