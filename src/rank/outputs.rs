//! Teacher outputs on a dataset (probabilities, and penultimate features plus classifier rows where the
//! teacher has a linear head), computed once per (teacher sha256, dataset sha256) and cached as
//! little-endian float32 blocks in the tree `outputs` (or, with an object store, in blobs the tree points
//! at), so re-ranking is near-instant and survives restarts.
//! Also how a dataset's rows are adapted to a teacher's input, or why they cannot be.
use ndarray::{Array2, ArrayViewD, CowArray, IxDyn};

use crate::data::{Dataset, RowStore, RowsView};
use crate::error::{Error, Result};
use crate::onnx::InputType;
use crate::store::Store;
use crate::zoo::{Teacher, Zoo};

/// What a teacher says about every row of a dataset.
#[derive(Debug, Clone)]
pub struct TeacherOutputs {
    /// [N, C_t]
    pub probs: Array2<f32>,
    /// Penultimate features [N, D] and classifier rows [C_t, D], when the graph has a linear head.
    pub penultimate: Option<(Array2<f32>, Array2<f32>)>,
}

/// How rows reach a teacher: `Ok(notes)` (adaptations applied, possibly none) or `Err(reason)`.
pub fn compatibility(
    teacher: &Teacher,
    ds: &Dataset<impl RowStore>,
) -> std::result::Result<Vec<String>, String> {
    let row_shape = &ds.row_shape()[..];
    let Some(pred) = teacher.predictor.as_ref().filter(|_| teacher.usable) else {
        return Err(format!(
            "teacher is not usable: {}",
            teacher.reason.as_deref().unwrap_or("unknown")
        ));
    };
    let fit = pred.fit_rows(row_shape).map_err(|e| e.message)?;
    let misfit = match ds.view() {
        _ if matches!(pred.input_type, InputType::Float32 | InputType::Float64) => None,
        RowsView::F32(x) => x.as_slice().and_then(|x| pred.input_type.misfit(x)),
        // bytes: the values that occur, once each
        RowsView::Bytes(x, values) => {
            let mut seen = [false; 256];
            x.iter().for_each(|&b| seen[b as usize] = true);
            let present: Vec<f32> = (0..256).filter(|&k| seen[k]).map(|k| values[k]).collect();
            pred.input_type.misfit(&present)
        }
    };
    if let Some(why) = misfit {
        return Err(why);
    }
    let mut notes = Vec::new();
    if pred.input_type != InputType::Float32 {
        notes.push(format!("rows converted to {}", pred.input_type.as_str()));
    }
    notes.extend(fit.describe(row_shape));
    if standardisation(teacher, row_shape.iter().product()).is_some() {
        notes.push("rows standardised with the teacher's input_mean / input_std metadata".into());
    }
    if let Some(n) = &pred.channel_norm {
        notes.push(format!(
            "rows standardised per channel with the teacher's input_mean {:?} / input_std {:?}",
            n.mean, n.std
        ));
    }
    Ok(notes)
}

/// The teacher's declared input standardisation (`input_mean` / `input_std` JSON lists in its metadata or
/// card), when it has one per feature.
pub(crate) fn standardisation(teacher: &Teacher, row_len: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    if teacher
        .predictor
        .as_ref()
        .is_some_and(|p| p.channel_norm.is_some())
    {
        // one value per channel: applied by the predictor to the rows as the model takes them
        return None;
    }
    let (m, s) = teacher.declared_standardisation()?;
    (m.len() == row_len && s.len() == row_len && s.iter().all(|v| *v > 0.0)).then_some((m, s))
}

/// The rows as the teacher takes them: `x` itself (not copied) unless the teacher declares a
/// standardisation, then a standardised copy. Rankings, distillation and `predict` all read rows this way.
pub(crate) fn adapt<'a>(teacher: &Teacher, x: ArrayViewD<'a, f32>) -> CowArray<'a, f32, IxDyn> {
    let n = x.shape()[0];
    let d = x.len() / n.max(1);
    match standardisation(teacher, d) {
        None => x.into(),
        Some((m, s)) => {
            let mut out = x.as_standard_layout().into_owned();
            for row in out.as_slice_mut().expect("standard layout").chunks_mut(d) {
                for ((v, mu), sd) in row.iter_mut().zip(&m).zip(&s) {
                    *v = (*v - mu) / sd;
                }
            }
            out.into()
        }
    }
}

/// Rows turned into floats a block at a time when they are held as bytes, at most this many bytes of
/// floats (a teacher runs over each block in turn; float rows run in one go).
const BLOCK_BYTES: usize = 64 << 20;

/// Runs `run` over the rows of `ds` shaped as the dataset's rows, adapted to the teacher, a block at a
/// time when they are bytes, and stacks each of its outputs' blocks.
fn by_blocks(
    teacher: &Teacher,
    ds: &Dataset<impl RowStore>,
    block_bytes: usize,
    mut run: impl FnMut(ArrayViewD<'_, f32>) -> Result<Vec<Array2<f32>>>,
) -> Result<Vec<Array2<f32>>> {
    let mut shape = ds.x.dims().to_vec();
    let mut parts: Vec<Vec<Array2<f32>>> = Vec::new();
    ds.view().for_blocks(block_bytes, |range, x| {
        shape[0] = range.len();
        let x = x
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| Error::internal(format!("rows of shape {shape:?}: {e}")))?;
        parts.push(run(adapt(teacher, x).view())?);
        Ok::<_, Error>(())
    })?;
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one block"));
    }
    (0..parts.first().map_or(0, Vec::len))
        .map(|k| {
            let views: Vec<_> = parts.iter().map(|p| p[k].view()).collect();
            ndarray::concatenate(ndarray::Axis(0), &views)
                .map_err(|e| Error::internal(format!("stacking output blocks: {e}")))
        })
        .collect()
}

/// Runs a teacher over every row of a dataset.
pub fn compute(
    zoo: &Zoo,
    teacher: &Teacher,
    ds: &Dataset<impl RowStore>,
) -> Result<TeacherOutputs> {
    compute_in_blocks(zoo, teacher, ds, BLOCK_BYTES)
}

/// [`compute`] with rows held as bytes turned into floats at most `block_bytes` at a time.
pub fn compute_in_blocks(
    zoo: &Zoo,
    teacher: &Teacher,
    ds: &Dataset<impl RowStore>,
    block_bytes: usize,
) -> Result<TeacherOutputs> {
    compatibility(teacher, ds).map_err(Error::invalid_input)?;
    let mut head = None;
    let mut out = by_blocks(teacher, ds, block_bytes, |x| {
        let (probs, pen) = zoo.predict_with_penultimate(&teacher.id, x)?;
        Ok(match pen {
            Some((f, w)) => {
                head = Some(w);
                vec![probs, f]
            }
            None => vec![probs],
        })
    })?;
    let penultimate = head.map(|w| (out.pop().expect("features"), w));
    Ok(TeacherOutputs {
        probs: out.pop().expect("probabilities"),
        penultimate,
    })
}

/// A teacher's inner tensors `names` on every row of a dataset (for probes; see
/// `Zoo::predict_inner`).
pub fn inner(
    zoo: &Zoo,
    teacher: &Teacher,
    ds: &Dataset<impl RowStore>,
    names: &[String],
) -> Result<Vec<Array2<f32>>> {
    compatibility(teacher, ds).map_err(Error::invalid_input)?;
    by_blocks(teacher, ds, BLOCK_BYTES, |x| {
        zoo.predict_inner(&teacher.id, x, names)
    })
}

/// A teacher's metrics on a dataset and the notes scoring produced, kept so re-ranking is a lookup.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScoreMemo {
    pub scores: std::collections::BTreeMap<String, f64>,
    pub notes: Vec<String>,
    /// Per-row terms for the paired tests (ties, the verdict's confidence).
    #[serde(default)]
    pub rows: Option<super::RowTerms>,
}

/// The `outputs` tree (memos, and the outputs themselves unless they live in the blob store).
#[derive(Clone)]
pub struct OutputCache {
    tree: crate::store::Table,
    /// With a blob store, outputs of at least `inline_below` bytes are blobs `outputs/<sha256>.f32` and
    /// the tree holds `blob:<sha256>` pointers to them (a teacher's outputs on a big dataset are
    /// megabytes: the database holds only what it must, and sled keeps in memory what it holds).
    blobs: Option<std::sync::Arc<crate::store::Blobs>>,
    inline_below: usize,
    /// Outputs on their way to the blob store (written behind, so that a put does not hold up the next
    /// teacher's inference), by tree key.
    writes: std::sync::Arc<Writes>,
    /// Whether `put` keeps outputs (false: only score memos are kept, see [`OutputCache::scores_only`]).
    keep_outputs: bool,
}

/// Blob writes in flight: readable while they are, waited for by `flush`.
#[derive(Default)]
struct Writes {
    pending: std::sync::Mutex<std::collections::HashMap<Vec<u8>, std::sync::Arc<Vec<u8>>>>,
    done: std::sync::Condvar,
}

/// Outputs smaller than this stay in the tree when the blob store is the data directory's files (a
/// bundled task's are 0.1-0.4 MB; a 10,000-row ranking sample's are megabytes).
pub const INLINE_MAX: usize = 1 << 20;

/// Blob writes in flight at most (each holds one teacher's outputs).
const MAX_PENDING: usize = 8;

/// How a tree entry points at outputs kept in the blob store.
const BLOB_POINTER: &[u8] = b"blob:";

/// The tree entry of outputs kept as blob `sha256`.
fn pointer(sha256: &str) -> Vec<u8> {
    [BLOB_POINTER, sha256.as_bytes()].concat()
}

/// The key that marks the tree as walked by [`OutputCache::move_to_blobs`] (for a threshold).
const MOVED_TO_BLOBS: &str = "moved to blobs:";

fn outputs_key(sha256: &str) -> String {
    format!("outputs/{sha256}.f32")
}

fn push(buf: &mut Vec<u8>, a: &Array2<f32>) {
    buf.extend((a.nrows() as u64).to_le_bytes());
    buf.extend((a.ncols() as u64).to_le_bytes());
    for v in a.iter() {
        buf.extend(v.to_le_bytes());
    }
}

fn take(buf: &mut &[u8]) -> Option<Array2<f32>> {
    let rd = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize;
    if buf.len() < 16 {
        return None;
    }
    let (r, c) = (rd(&buf[..8]), rd(&buf[8..16]));
    let len = r.checked_mul(c)?.checked_mul(4)?;
    let body = buf.get(16..16 + len)?;
    let v = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    *buf = &buf[16 + len..];
    Array2::from_shape_vec((r, c), v).ok()
}

/// The memo keys' current prefixes. A change to what a memo holds bumps its version; entries under an
/// older prefix (the families below) are removed when the cache is opened.
const SCORES: &str = "scores:v3:";
const SCRATCH: &str = "scratch:v3:";
const MEMO_FAMILIES: [(&str, &str); 2] = [("scores:", SCORES), ("scratch:", SCRATCH)];

impl OutputCache {
    pub fn open(store: &Store) -> Result<Self> {
        let cache = Self {
            tree: store.tree("outputs")?,
            blobs: None,
            inline_below: 0,
            writes: Default::default(),
            keep_outputs: true,
        };
        let stale = cache.drop_stale_memos()?;
        if stale > 0 {
            tracing::info!(stale, "removed score memos written by an older version");
        }
        Ok(cache)
    }

    /// Keeps outputs in `blobs` (an object store shared by every server, or the data directory's
    /// files) instead of the tree.
    pub fn with_blobs(mut self, blobs: std::sync::Arc<crate::store::Blobs>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Keeps outputs smaller than `bytes` in the tree all the same (with [`OutputCache::with_blobs`]).
    pub fn inline_below(mut self, bytes: usize) -> Self {
        self.inline_below = bytes;
        self
    }

    /// Moves outputs of at least `inline_below` bytes that an earlier version kept in the tree to the
    /// blob store (at start: a restarted server's sled held every output it had cached in memory); returns
    /// how many. One entry is read at a time, and the tree is walked once: a marker records that it was.
    pub fn move_to_blobs(&self) -> Result<usize> {
        let Some(blobs) = &self.blobs else {
            return Ok(0);
        };
        let done = format!("{MOVED_TO_BLOBS}{}", self.inline_below);
        if self.tree.get(&done)?.is_some() {
            return Ok(0);
        }
        let mut moved = 0;
        for key in self.tree.keys_in(&b""[..]..&[0xff][..])? {
            if MEMO_FAMILIES
                .iter()
                .any(|(f, _)| key.starts_with(f.as_bytes()))
            {
                continue;
            }
            let Some(v) = self.tree.get(&key)? else {
                continue;
            };
            if v.starts_with(BLOB_POINTER) || v.len() < self.inline_below {
                continue;
            }
            let sha = crate::zoo::teacher::sha256_hex(&v);
            blobs.put(&outputs_key(&sha), &v)?;
            drop(v);
            self.tree.insert(&key, pointer(&sha))?;
            moved += 1;
        }
        self.tree.insert(&done, b"".as_slice())?;
        self.tree.flush()?;
        Ok(moved)
    }

    /// The same cache, keeping score memos but not the outputs they were computed from (ranking shards:
    /// a ranking needs only the memos, and a 200-teacher ranking of 2,000 rows would otherwise write
    /// 100 MB of outputs to the object store; a job or label map that needs a teacher's outputs computes
    /// and keeps them then).
    pub fn scores_only(&self) -> Self {
        Self {
            keep_outputs: false,
            ..self.clone()
        }
    }

    /// Removes memo entries under a retired key version; returns how many. Only the key ranges around
    /// the current prefix are visited, so startup does not read the live memos.
    fn drop_stale_memos(&self) -> Result<usize> {
        // the first key after every key that starts with `p` (prefixes here end in ':', never 0xff)
        let after = |p: &str| {
            let mut b = p.as_bytes().to_vec();
            *b.last_mut().expect("non-empty prefix") += 1;
            b
        };
        let mut n = 0;
        for (family, current) in MEMO_FAMILIES {
            let mut stale = self.tree.keys_in(family.as_bytes()..current.as_bytes())?;
            let (from, to) = (after(current), after(family));
            stale.extend(self.tree.keys_in(&from[..]..&to[..])?);
            for k in stale {
                self.tree.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn key(teacher_sha: &str, dataset_sha: &str) -> Vec<u8> {
        format!("{teacher_sha}:{dataset_sha}").into_bytes()
    }

    pub fn get(&self, teacher_sha: &str, dataset_sha: &str) -> Result<Option<TeacherOutputs>> {
        let key = Self::key(teacher_sha, dataset_sha);
        let in_flight = self
            .writes
            .pending
            .lock()
            .expect("writes lock")
            .get(&key)
            .cloned();
        // read in place (the table's own buffer, or the write in flight): no copy on the re-ranking path
        let stored;
        let raw: &[u8] = match &in_flight {
            Some(buf) => buf,
            None => {
                stored = self.tree.get(&key)?;
                match &stored {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
        };
        let fetched;
        let mut b: &[u8] = raw;
        if let Some(sha) = raw.strip_prefix(BLOB_POINTER) {
            let Some(blobs) = &self.blobs else {
                return Ok(None); // kept in an object store this process was not given: recomputed
            };
            let sha = String::from_utf8_lossy(sha).into_owned();
            fetched = match blobs.path(&outputs_key(&sha), Some(&sha)) {
                Ok(path) => match std::fs::read(path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e.into()),
                },
                // gone or corrupt in the store: recomputed (a corrupt blob was reported by the fetch)
                Err(e) if e.kind != crate::error::ErrorKind::StoreUnavailable => return Ok(None),
                Err(e) => return Err(e),
            };
            // a file changed since it was written (on disk, or in the object store's cache) is recomputed
            if crate::zoo::teacher::sha256_hex(&fetched) != sha {
                tracing::warn!(blob = %outputs_key(&sha), "cached teacher outputs do not match their hash; recomputing");
                return Ok(None);
            }
            b = &fetched;
        }
        let decoded = (|| {
            let probs = take(&mut b)?;
            let penultimate = match b.first()? {
                0 => None,
                _ => {
                    b = &b[1..];
                    Some((take(&mut b)?, take(&mut b)?))
                }
            };
            Some(TeacherOutputs { probs, penultimate })
        })();
        // an unreadable entry is recomputed, never trusted
        Ok(decoded)
    }

    pub fn put(&self, teacher_sha: &str, dataset_sha: &str, o: &TeacherOutputs) -> Result<()> {
        if !self.keep_outputs {
            return Ok(());
        }
        let mut buf = Vec::new();
        push(&mut buf, &o.probs);
        match &o.penultimate {
            None => buf.push(0),
            Some((f, w)) => {
                buf.push(1);
                push(&mut buf, f);
                push(&mut buf, w);
            }
        }
        let key = Self::key(teacher_sha, dataset_sha);
        let Some(blobs) = self
            .blobs
            .clone()
            .filter(|_| buf.len() >= self.inline_below)
        else {
            self.tree.insert(key, buf)?;
            return Ok(());
        };
        let buf = std::sync::Arc::new(buf);
        {
            let mut p = self.writes.pending.lock().expect("writes lock");
            while p.len() >= MAX_PENDING {
                p = self.writes.done.wait(p).expect("writes lock");
            }
            p.insert(key.clone(), buf.clone());
        }
        let (writes, tree) = (self.writes.clone(), self.tree.clone());
        std::thread::spawn(move || {
            let sha = crate::zoo::teacher::sha256_hex(&buf);
            let stored = blobs
                .put(&outputs_key(&sha), &buf)
                .and_then(|_| tree.insert(&key, pointer(&sha)));
            if let Err(e) = stored {
                // a cache entry lost: the outputs are computed again when next needed
                tracing::warn!(
                    "cannot keep teacher outputs in the blob store: {}",
                    e.message
                );
            }
            writes.pending.lock().expect("writes lock").remove(&key);
            writes.done.notify_all();
        });
        Ok(())
    }

    /// Every metric of a (teacher, dataset) pair, computed once.
    pub fn scores(&self, teacher_sha: &str, dataset_sha: &str) -> Result<Option<ScoreMemo>> {
        Ok(self
            .tree
            .get(format!("{SCORES}{teacher_sha}:{dataset_sha}"))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub fn put_scores(&self, teacher_sha: &str, dataset_sha: &str, m: &ScoreMemo) -> Result<()> {
        self.tree.insert(
            format!("{SCORES}{teacher_sha}:{dataset_sha}"),
            serde_json::to_vec(m)?,
        )?;
        Ok(())
    }

    /// The verdict's scratch estimate for a dataset (it does not depend on the teachers).
    pub fn scratch(&self, dataset_sha: &str) -> Result<Option<super::ScratchEstimate>> {
        Ok(self
            .tree
            .get(format!("{SCRATCH}{dataset_sha}"))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub fn put_scratch(&self, dataset_sha: &str, v: &super::ScratchEstimate) -> Result<()> {
        self.tree
            .insert(format!("{SCRATCH}{dataset_sha}"), serde_json::to_vec(v)?)?;
        Ok(())
    }

    /// Makes the cache durable (called once per ranking, not per teacher).
    pub fn flush(&self) -> Result<()> {
        let mut p = self.writes.pending.lock().expect("writes lock");
        while !p.is_empty() {
            p = self.writes.done.wait(p).expect("writes lock");
        }
        drop(p);
        self.tree.flush()?;
        Ok(())
    }
}

/// The outputs from the cache, or computed and cached. The bool says whether they came from the cache.
pub fn cached(
    zoo: &Zoo,
    cache: Option<&OutputCache>,
    teacher: &Teacher,
    ds: &Dataset<impl RowStore>,
    ds_sha: &str,
) -> Result<(TeacherOutputs, bool)> {
    if let Some(c) = cache
        && let Some(o) = c.get(&teacher.sha256, ds_sha)?
        && o.probs.nrows() == ds.rows()
    {
        return Ok((o, true));
    }
    let o = compute(zoo, teacher, ds)?;
    if let Some(c) = cache {
        c.put(&teacher.sha256, ds_sha, &o)?;
    }
    Ok((o, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_the_cache_drops_memos_of_older_versions_only() {
        let store = Store::temporary().unwrap();
        let tree = store.tree("outputs").unwrap();
        for k in [
            "scores:v1:aa:bb",
            "scores:v2:aa:bb",
            "scores:v4:aa:bb",
            "scratch:bb",
            "scores:v3:aa:bb",
            "scratch:v2:bb",
            "scratch:v3:bb",
            "aa:bb",
            "scores;",
        ] {
            tree.insert(k, b"x".as_slice()).unwrap();
        }
        let cache = OutputCache::open(&store).unwrap();
        let keys: Vec<String> = cache
            .tree
            .iter()
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            keys,
            ["aa:bb", "scores:v3:aa:bb", "scores;", "scratch:v3:bb"]
        );
        assert_eq!(cache.drop_stale_memos().unwrap(), 0);
    }

    #[test]
    fn big_outputs_go_to_files_small_ones_stay_in_the_table_and_a_changed_file_is_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::temporary().unwrap();
        let blobs = std::sync::Arc::new(crate::store::Blobs::open(None, dir.path(), 0).unwrap());
        let outputs = |rows: usize| TeacherOutputs {
            probs: Array2::from_shape_fn((rows, 3), |(r, c)| (r * 3 + c) as f32),
            penultimate: Some((
                Array2::from_shape_fn((rows, 2), |(r, c)| (r + c) as f32),
                Array2::eye(2),
            )),
        };
        let (big, small) = (outputs(1000), outputs(10));
        // an earlier version kept both in the table
        let old = OutputCache::open(&store).unwrap();
        old.put("t", "big", &big).unwrap();
        old.put("t", "small", &small).unwrap();
        old.put_scores(
            "t",
            "big",
            &ScoreMemo {
                scores: Default::default(),
                notes: vec![],
                rows: None,
            },
        )
        .unwrap();
        let cache = OutputCache::open(&store)
            .unwrap()
            .with_blobs(blobs)
            .inline_below(4096);
        assert_eq!(cache.move_to_blobs().unwrap(), 1, "the big one moves, once");
        assert_eq!(cache.move_to_blobs().unwrap(), 0);
        let files = || -> Vec<std::path::PathBuf> {
            std::fs::read_dir(dir.path().join("outputs"))
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default()
        };
        assert_eq!(files().len(), 1);
        let raw = cache
            .tree
            .get(OutputCache::key("t", "big"))
            .unwrap()
            .unwrap();
        assert!(raw.starts_with(BLOB_POINTER) && raw.len() < 100);
        let same = |a: &TeacherOutputs, b: &TeacherOutputs| {
            a.probs == b.probs && a.penultimate == b.penultimate
        };
        assert!(same(&cache.get("t", "big").unwrap().unwrap(), &big));
        assert!(same(&cache.get("t", "small").unwrap().unwrap(), &small));
        assert!(cache.scores("t", "big").unwrap().is_some(), "memos stay");
        // new outputs: by size
        cache.put("u", "big", &big).unwrap();
        cache.put("u", "small", &small).unwrap();
        cache.flush().unwrap();
        assert_eq!(files().len(), 1, "the same bytes are one file");
        let raw = cache
            .tree
            .get(OutputCache::key("u", "small"))
            .unwrap()
            .unwrap();
        assert!(!raw.starts_with(BLOB_POINTER));
        assert!(same(&cache.get("u", "big").unwrap().unwrap(), &big));
        // a file changed or gone since: computed again, not trusted
        let file = &files()[0];
        let mut bytes = std::fs::read(file).unwrap();
        bytes[40] ^= 1;
        std::fs::write(file, &bytes).unwrap();
        assert!(cache.get("u", "big").unwrap().is_none());
        std::fs::remove_file(file).unwrap();
        assert!(cache.get("t", "big").unwrap().is_none());
    }
}
