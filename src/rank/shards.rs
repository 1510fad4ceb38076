//! Rankings fanned out over processes. With `--rank-shard-size N` a ranking request becomes a pending
//! ranking plus shards of N teachers in the shared state tables (`rank_pending`, `rank_shards`). Every
//! process with `--max-shards` above 0 (workers, and servers that work) claims shards under a lease
//! (the `rank_shard_leases` queue: on PostgreSQL the oldest unheld shard is taken with
//! `FOR UPDATE SKIP LOCKED`; renewed every `lease::HEARTBEAT`), scores their teachers into the metric memo
//! (keyed by teacher and dataset; the teachers' outputs are not kept, see `OutputCache::scores_only`)
//! and records their lines in the shard. The process that finishes the
//! last shard closes the ranking: it ranks every teacher from the memo (no inference) and stores the
//! ranking, create-only, under the id the request was given. A process killed mid-shard stops renewing
//! its lease; after `lease::TTL` another process takes the shard and scores it again. Until the ranking
//! closes, [`Shards::partial`] shows the lines scored so far.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{OutputCache, RankRequest, RankingStore, TeacherResult};
use crate::data::DatasetStore;
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::lease::{self, Leases};
use crate::store::{Store, Table};
use crate::zoo::Zoo;

/// A shard's attempts at most: one that failed (or whose process died) this often fails its ranking.
const MAX_ATTEMPTS: u32 = 4;
/// How often an idle shard runner looks for work.
const POLL: Duration = Duration::from_millis(150);
/// How often a process on the work queue (PostgreSQL) looks through the shards table for rankings whose
/// last shard was scored by a process that died before closing them (rare: the table holds every scored
/// line, so it is not read at every poll).
const ORPHAN_SWEEP: Duration = Duration::from_secs(2);

/// A ranking whose shards are being scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    id: String,
    dataset_id: String,
    /// The request, with `teachers` resolved to the list ranked.
    request: RankRequest,
    shard_keys: Vec<String>,
    /// Milliseconds since the Unix epoch.
    created_ms: u64,
    #[serde(default)]
    failed: Option<String>,
}

/// Some teachers of a pending ranking, and their lines once scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shard {
    ranking_id: String,
    index: usize,
    teachers: Vec<String>,
    /// How many times a process took it.
    attempts: u32,
    /// The process that took it last.
    worker: Option<String>,
    done: bool,
    /// The scored lines (no rank, ties or combined metrics: those need every teacher).
    results: Vec<TeacherResult>,
}

/// One shard of a ranking, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardSummary {
    pub index: usize,
    pub teachers: usize,
    /// The process that scored it (or is scoring it), `host:pid:tag`.
    pub worker: Option<String>,
    /// How many processes took it: above 1 when one died or failed mid-shard.
    pub attempts: u32,
    pub done: bool,
}

impl Shard {
    fn summary(&self) -> ShardSummary {
        ShardSummary {
            index: self.index,
            teachers: self.teachers.len(),
            worker: self.worker.clone(),
            attempts: self.attempts,
            done: self.done,
        }
    }
}

/// A ranking still being scored (`GET /v1/rankings/{id}` answers 202 with it).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartialRanking {
    pub id: String,
    pub dataset_id: String,
    pub primary_metric: String,
    /// `running`, or `failed` (see `error`).
    pub state: String,
    pub error: Option<String>,
    pub teachers: usize,
    /// Teachers scored so far (the lines in `results`).
    pub scored: usize,
    pub shards: Vec<ShardSummary>,
    /// The lines scored so far, best first by the primary metric among them; no ranks or ties yet.
    pub results: Vec<TeacherResult>,
}

/// What a shard runner needs to score and close rankings.
pub struct Work {
    pub zoo: Arc<Zoo>,
    pub datasets: Arc<DatasetStore>,
    pub cache: OutputCache,
    pub rankings: Arc<RankingStore>,
    pub shards: Shards,
    /// Shards this process's runners are scoring (a lease is per process, so its runners check here
    /// that no other runner of theirs has the shard).
    pub running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When this process last looked through the shards table on the work queue (see `ORPHAN_SWEEP`).
    pub swept: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The shard tables, seen from one process.
#[derive(Clone)]
pub struct Shards {
    pending: Table,
    shards: Table,
    leases: Arc<Leases>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shards {
    /// `owner` names this process in leases and shards (`host:pid:tag`).
    pub fn open(store: &Store, owner: &str) -> Result<Self> {
        Ok(Self {
            pending: store.tree("rank_pending")?,
            shards: store.tree("rank_shards")?,
            leases: Arc::new(Leases::open(store, "rank_shard_leases", owner.to_string())?),
        })
    }

    /// Checks a request (metrics, teacher ids) and queues its shards of `shard_size` teachers; returns
    /// the ranking's id.
    pub fn submit(
        &self,
        zoo: &Zoo,
        rankings: &RankingStore,
        dataset_id: &str,
        req: &RankRequest,
        shard_size: usize,
    ) -> Result<String> {
        super::check_metrics(req)?;
        let ids: Vec<String> = super::select_teachers(zoo, req)?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let primary = req
            .primary_metric
            .as_deref()
            .unwrap_or(super::DEFAULT_METRIC);
        let id = rankings.new_id(dataset_id, primary);
        let created_ms = now_ms();
        let shards: Vec<Shard> = ids
            .chunks(shard_size.max(1))
            .enumerate()
            .map(|(index, t)| Shard {
                ranking_id: id.clone(),
                index,
                teachers: t.to_vec(),
                attempts: 0,
                worker: None,
                done: false,
                results: Vec::new(),
            })
            .collect();
        // oldest ranking first when runners look through the table in key order
        let key = |s: &Shard| format!("{created_ms:013}/{id}/{:05}", s.index);
        let pending = Pending {
            id: id.clone(),
            dataset_id: dataset_id.to_string(),
            request: RankRequest {
                teachers: Some(ids),
                ..req.clone()
            },
            shard_keys: shards.iter().map(key).collect(),
            created_ms,
            failed: None,
        };
        self.pending.insert(&id, serde_json::to_vec(&pending)?)?;
        for s in &shards {
            self.shards.insert(key(s), serde_json::to_vec(s)?)?;
            self.leases.enqueue(&key(s))?;
        }
        if shards.is_empty() {
            // nothing to score: the ranking closes at once (no teachers)
            self.shards.flush()?;
        }
        tracing::info!(ranking = %id, shards = shards.len(), "ranking queued as shards");
        Ok(id)
    }

    fn pending(&self, id: &str) -> Result<Option<Pending>> {
        self.pending
            .get(id)?
            .map(|raw| Ok(serde_json::from_slice(&raw)?))
            .transpose()
    }

    fn shard(&self, key: &str) -> Result<Option<Shard>> {
        self.shards
            .get(key)?
            .map(|raw| Ok(serde_json::from_slice(&raw)?))
            .transpose()
    }

    /// Rewrites a shard if it is still as `old` was read; false when it changed meanwhile.
    fn swap(&self, key: &str, old: &[u8], new: &Shard) -> Result<bool> {
        self.shards
            .compare_and_swap(key, Some(old), Some(&serde_json::to_vec(new)?))
    }

    /// A ranking still being scored (or failed), with the lines scored so far; `None` when there is no
    /// such pending ranking (it closed, or never existed).
    pub fn partial(&self, id: &str) -> Result<Option<PartialRanking>> {
        let Some(p) = self.pending(id)? else {
            return Ok(None);
        };
        let shards: Vec<Shard> = p
            .shard_keys
            .iter()
            .filter_map(|k| self.shard(k).transpose())
            .collect::<Result<_>>()?;
        let primary = p
            .request
            .primary_metric
            .clone()
            .unwrap_or_else(|| super::DEFAULT_METRIC.to_string());
        let mut results: Vec<TeacherResult> =
            shards.iter().flat_map(|s| s.results.clone()).collect();
        let wanted: Vec<String> = super::COMBINED.iter().map(|c| c.0.to_string()).collect();
        super::add_combined(&mut results, &wanted);
        for r in &mut results {
            r.score = r.scores.get(&primary).copied();
        }
        super::sort_by_score(&mut results, &primary);
        Ok(Some(PartialRanking {
            id: p.id,
            dataset_id: p.dataset_id,
            primary_metric: primary,
            state: if p.failed.is_some() {
                "failed"
            } else {
                "running"
            }
            .into(),
            error: p.failed,
            teachers: p.request.teachers.as_ref().map_or(0, Vec::len),
            scored: results.len(),
            shards: shards.iter().map(Shard::summary).collect(),
            results,
        }))
    }

    /// Marks a pending ranking failed and drops its shards (the reason stays readable).
    fn fail(&self, id: &str, why: &str) -> Result<()> {
        if let Some(mut p) = self.pending(id)? {
            tracing::warn!(ranking = %id, "ranking failed: {why}");
            p.failed = Some(why.to_string());
            self.pending.insert(id, serde_json::to_vec(&p)?)?;
            for k in &p.shard_keys {
                self.shards.remove(k)?;
                self.leases.forget(k)?;
            }
        }
        Ok(())
    }
}

impl Work {
    /// Scores one shard that no live process holds, or closes a ranking whose shards are all scored;
    /// false when there was nothing to do.
    pub fn step(&self) -> Result<bool> {
        if self.shards.leases.is_queue() {
            // PostgreSQL: the oldest shard no live lease holds, taken with FOR UPDATE SKIP LOCKED
            if let Some(key) = self.shards.leases.claim_next()? {
                self.running
                    .lock()
                    .expect("running lock")
                    .insert(key.clone());
                let out = self.score(&key);
                self.running.lock().expect("running lock").remove(&key);
                return out.map(|()| true);
            }
            let mut swept = self.swept.lock().expect("swept lock");
            if swept.is_some_and(|t| t.elapsed() < ORPHAN_SWEEP) {
                return Ok(false);
            }
            *swept = Some(std::time::Instant::now());
        }
        let table = self.shards.shards.iter()?;
        let mut all_done: Vec<String> = Vec::new();
        let mut open: Vec<String> = Vec::new();
        for (k, raw) in &table {
            let key = String::from_utf8_lossy(k).into_owned();
            let Ok(s) = serde_json::from_slice::<Shard>(raw) else {
                continue;
            };
            if s.done {
                if !open.contains(&s.ranking_id) && !all_done.contains(&s.ranking_id) {
                    all_done.push(s.ranking_id.clone());
                }
                continue;
            }
            all_done.retain(|r| r != &s.ranking_id);
            open.push(s.ranking_id.clone());
            if self.shards.leases.is_queue() {
                continue; // taken from the queue above, not by looking through the table
            }
            if !self
                .running
                .lock()
                .expect("running lock")
                .insert(key.clone())
            {
                continue;
            }
            let claimed = (|| {
                Ok::<_, Error>(
                    !self.shards.leases.held_elsewhere(&key)? && self.shards.leases.claim(&key)?,
                )
            })();
            if !matches!(claimed, Ok(true)) {
                self.running.lock().expect("running lock").remove(&key);
                claimed?;
                continue;
            }
            let out = self.score(&key);
            self.running.lock().expect("running lock").remove(&key);
            return out.map(|()| true);
        }
        // rankings whose last shard was scored by a process that died before closing them
        for id in all_done {
            self.close(&id)?;
        }
        Ok(false)
    }

    /// Scores the shard at `key`, whose lease this process holds, lets the lease go, and closes the
    /// ranking if that was its last shard. A shard that fails fails its ranking.
    fn score(&self, key: &str) -> Result<()> {
        let Some(raw) = self.shards.shards.get(key)? else {
            // the shard was gone (its ranking closed or failed): nothing to do
            self.shards.leases.forget(key)?;
            return Ok(());
        };
        let s: Shard = serde_json::from_slice(&raw)?;
        let ranking = s.ranking_id.clone();
        match self.run(key, &raw, s) {
            Ok(()) => self.shards.leases.release(key)?,
            Err(e) if e.kind == ErrorKind::StoreUnavailable => return Err(e),
            Err(e) => self.shards.fail(&ranking, &e.message)?,
        }
        self.close(&ranking)
    }

    /// Scores shard `s` (stored at `key` as `raw`), whose lease this process holds.
    fn run(&self, key: &str, raw: &[u8], mut s: Shard) -> Result<()> {
        let sh = &self.shards;
        if s.done {
            return Ok(());
        }
        let Some(p) = sh.pending(&s.ranking_id)? else {
            return Ok(());
        };
        if s.attempts >= MAX_ATTEMPTS {
            return Err(Error::internal(format!(
                "shard {} of ranking {} was taken {} times without finishing (its processes died or \
                 failed)",
                s.index, s.ranking_id, s.attempts
            )));
        }
        s.attempts += 1;
        s.worker = Some(sh.leases.owner.clone());
        if !sh.swap(key, raw, &s)? {
            return Ok(());
        }
        // the lease is renewed while the shard is scored
        let stop = Arc::new(AtomicBool::new(false));
        let renew = {
            let (stop, leases, key) = (stop.clone(), sh.leases.clone(), key.to_string());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(lease::HEARTBEAT);
                    if !stop.load(Ordering::Relaxed) && !leases.renew(&key).unwrap_or(true) {
                        tracing::warn!(shard = %key, "lost this shard's lease; another process scores it too");
                    }
                }
            })
        };
        let scored = (|| {
            let rows = super::RankRows::load(&self.datasets, &p.dataset_id)?;
            let req = RankRequest {
                teachers: Some(s.teachers.clone()),
                metrics: None,
                primary_metric: None,
                ..p.request.clone()
            };
            let memos = self.cache.scores_only();
            super::rank(&self.zoo, Some(&memos), &rows, &req)
        })();
        stop.store(true, Ordering::Relaxed);
        renew.thread().unpark();
        let _ = renew.join();
        let ranked = scored?;
        let Some(now) = sh.shards.get(key)? else {
            return Ok(());
        };
        let mut s: Shard = serde_json::from_slice(&now)?;
        if s.done {
            return Ok(());
        }
        s.done = true;
        s.worker = Some(sh.leases.owner.clone());
        s.results = ranked.results.into_iter().map(shard_line).collect();
        sh.swap(key, &now, &s)?;
        tracing::info!(ranking = %s.ranking_id, shard = s.index, teachers = s.teachers.len(), "shard scored");
        Ok(())
    }

    /// Closes ranking `id` if every shard is scored: ranks all its teachers from the memo and stores the
    /// ranking (once, whoever closes it), then drops the shards.
    fn close(&self, id: &str) -> Result<()> {
        let sh = &self.shards;
        let Some(p) = sh.pending(id)? else {
            return Ok(());
        };
        if p.failed.is_some() {
            return Ok(());
        }
        let mut shards = Vec::new();
        for k in &p.shard_keys {
            match sh.shard(k)? {
                Some(s) if s.done => shards.push(s),
                _ => return Ok(()),
            }
        }
        if self.rankings.get(id).is_err() {
            let rows = super::RankRows::load(&self.datasets, &p.dataset_id)?;
            let req = RankRequest {
                recompute_scores: false,
                ..p.request.clone()
            };
            let mut r = super::rank(&self.zoo, Some(&self.cache), &rows, &req)?;
            for line in &mut r.results {
                line.cached = shards
                    .iter()
                    .flat_map(|s| &s.results)
                    .find(|l| l.teacher_id == line.teacher_id)
                    .is_none_or(|l| l.cached);
            }
            r.id = id.to_string();
            r.created = p.created_ms / 1000;
            r.elapsed_ms = now_ms().saturating_sub(p.created_ms);
            r.shards = shards.iter().map(Shard::summary).collect();
            if self.rankings.insert_new(&r)? {
                tracing::info!(ranking = %id, ms = r.elapsed_ms, shards = shards.len(), "ranking closed");
            }
        }
        for k in &p.shard_keys {
            sh.shards.remove(k)?;
            sh.leases.forget(k)?;
        }
        sh.pending.remove(id)?;
        Ok(())
    }
}

/// A shard's line: what holds among its teachers only (rank, ties, combined metrics) is left out.
fn shard_line(mut r: TeacherResult) -> TeacherResult {
    r.rank = None;
    r.score = None;
    r.gap_z = None;
    r.tied_with_top = false;
    r.expected_accuracy = None;
    r.scores
        .retain(|k, _| !super::COMBINED.iter().any(|c| c.0 == k));
    r
}

/// Starts `n` threads that score shards and close rankings until `work` is dropped.
pub fn start_runners(work: &Arc<Work>, n: usize) {
    for i in 0..n {
        let weak: Weak<Work> = Arc::downgrade(work);
        let spawned = std::thread::Builder::new()
            .name(format!("faculty-shards-{i}"))
            .spawn(move || {
                loop {
                    let Some(w) = weak.upgrade() else { return };
                    let idle = match w.step() {
                        Ok(did) => !did,
                        Err(e) => {
                            tracing::warn!("ranking shards: {}", e.message);
                            true
                        }
                    };
                    drop(w);
                    if idle {
                        std::thread::sleep(POLL);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a shard runner: {e}");
        }
    }
}
