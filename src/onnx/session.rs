//! Inference: how to read class probabilities out of a model ([`Predictor`]), and a pool that creates each
//! model's ONNX Runtime session once and reuses it ([`SessionPool`]). All calls here block: callers on async
//! threads go through `spawn_blocking`.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayViewD, Axis};
use ort::session::Session;
use ort::value::{DynMapValueType, DynSequenceValueType, DynValue, TensorRef, ValueType};
use serde::{Deserialize, Serialize};

use super::adapt::RowFit;
use super::runtime::environment;
use crate::error::{Error, Result};

/// What the chosen output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A float tensor [N, K] whose rows are probability vectors.
    Probabilities,
    /// A float tensor [N, K] of unnormalised scores: faculty applies a softmax.
    Logits,
    /// A ZipMap (sequence of {class: probability} maps), as skl2onnx writes by default.
    Zipmap,
}

/// The element type of a model's input. faculty's rows are float32; other types get a converted copy
/// (integer types only when every value is a whole number in range: byte or token ids, not pixels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    #[default]
    Float32,
    Float64,
    Float16,
    Int32,
    Int64,
    Uint8,
}

impl InputType {
    /// The type named as in a signature (`float32`, `int64`, ...), if faculty can feed it.
    pub fn of(elem_type: &str) -> Option<Self> {
        Some(match elem_type {
            "float32" => Self::Float32,
            "float64" => Self::Float64,
            "float16" => Self::Float16,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "uint8" => Self::Uint8,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::Float16 => "float16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Uint8 => "uint8",
        }
    }

    /// Whether the type holds whole numbers only.
    pub fn is_integer(self) -> bool {
        matches!(self, Self::Int32 | Self::Int64 | Self::Uint8)
    }

    /// Why `values` cannot be fed as this type (a value out of its range, or not a whole number for an
    /// integer type), if so.
    pub fn misfit(self, values: &[f32]) -> Option<String> {
        if self == Self::Float16 {
            let max = half::f16::MAX.to_f32();
            let bad = values.iter().find(|v| v.abs() > max)?;
            return Some(format!(
                "the teacher's input is float16: rows must hold values within +-{max} (found {bad})"
            ));
        }
        let (lo, hi) = match self {
            Self::Float32 | Self::Float64 | Self::Float16 => return None,
            Self::Int32 => (i32::MIN as f32, i32::MAX as f32),
            Self::Int64 => (i64::MIN as f32, i64::MAX as f32),
            Self::Uint8 => (0.0, 256.0),
        };
        let ok = |v: f32| v.fract() == 0.0 && (lo..hi).contains(&v);
        if values.iter().fold(true, |all, &v| all & ok(v)) {
            return None;
        }
        let bad = values
            .iter()
            .find(|&&v| !ok(v))
            .copied()
            .unwrap_or(f32::NAN);
        Some(format!(
            "the teacher's input is {}: rows must hold whole numbers in its range (found {bad})",
            self.as_str()
        ))
    }

    /// `chunk` (float32, shape `shape`) as an input of this type: a view for float32, a converted copy
    /// otherwise (integers must be whole: see [`InputType::misfit`]).
    pub fn value<'a>(
        self,
        shape: Vec<i64>,
        chunk: &'a [f32],
    ) -> Result<ort::session::SessionInputValue<'a>> {
        if let Some(why) = self.misfit(chunk) {
            return Err(Error::invalid_input(why));
        }
        Ok(match self {
            Self::Float32 => TensorRef::from_array_view((shape, chunk))?.into(),
            Self::Float64 => {
                let v: Vec<f64> = chunk.iter().map(|&x| x as f64).collect();
                ort::value::Tensor::from_array((shape, v))?.into()
            }
            Self::Int32 => {
                let v: Vec<i32> = chunk.iter().map(|&x| x as i32).collect();
                ort::value::Tensor::from_array((shape, v))?.into()
            }
            Self::Int64 => {
                let v: Vec<i64> = chunk.iter().map(|&x| x as i64).collect();
                ort::value::Tensor::from_array((shape, v))?.into()
            }
            Self::Float16 => {
                let v: Vec<half::f16> = chunk.iter().map(|&x| half::f16::from_f32(x)).collect();
                ort::value::Tensor::from_array((shape, v))?.into()
            }
            Self::Uint8 => {
                let v: Vec<u8> = chunk.iter().map(|&x| x as u8).collect();
                ort::value::Tensor::from_array((shape, v))?.into()
            }
        })
    }
}

/// How to turn a batch of rows into class probabilities [N, K] with one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Predictor {
    /// Graph input name.
    pub input: String,
    /// The input's element type (rows are converted from float32 when it is another).
    #[serde(default)]
    pub input_type: InputType,
    /// Input shape, -1 where dynamic (the first dimension is the batch).
    pub input_shape: Vec<i64>,
    /// Name of the output read as class scores.
    pub output: String,
    pub kind: OutputKind,
    pub num_classes: usize,
    /// A per-channel standardisation the model declares, applied to the rows as the model takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_norm: Option<ChannelNorm>,
    /// The batch the model file fixes, where faculty runs the model with its batch freed (see
    /// `onnx::batch`; checked when the model was inspected: the same outputs row for row on a batch of
    /// another size). `input_shape` then shows a dynamic batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freed_batch: Option<usize>,
}

/// An image model's declared per-channel input standardisation (`input_mean` / `input_std` with one
/// value per channel, as ImageNet classifiers expect of pixels in [0, 1]): each value minus its
/// channel's mean, over its channel's std, after any resize or channel change ([`super::adapt`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Whether the channel axis is the last of a row ([H, W, C]); else the first ([C, H, W]).
    pub last: bool,
}

impl ChannelNorm {
    /// The standardisation `mean` / `std` declares for an input of shape `input_shape` (batch first), if
    /// they hold one value per channel of an image input ([C, H, W] or [H, W, C]) and not one per value
    /// of the row (that standardisation is applied to the rows as they are).
    pub fn declared(mean: Vec<f32>, std: Vec<f32>, input_shape: &[i64]) -> Option<Self> {
        let c = mean.len() as i64;
        if c == 0 || std.len() != mean.len() || std.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
            return None;
        }
        let row = input_shape.get(1..)?;
        if row.iter().product::<i64>() == c {
            return None;
        }
        let last = match *row {
            [first, _, _] if first == c => false,
            [_, _, l] if l == c => true,
            _ => return None,
        };
        Some(Self { mean, std, last })
    }

    /// `rows` (flat, each of shape `row_shape` as the model takes it) standardised.
    fn apply(&self, rows: &[f32], row_shape: &[usize]) -> Vec<f32> {
        let c = self.mean.len();
        let row_len: usize = row_shape.iter().product();
        let plane = row_len / c;
        rows.iter()
            .enumerate()
            .map(|(i, &v)| {
                let k = if self.last {
                    i % c
                } else {
                    (i % row_len) / plane
                };
                (v - self.mean[k]) / self.std[k]
            })
            .collect()
    }
}

/// Creates a session for model bytes, and tells what the pool should count it at: the most of twice the
/// model's size plus a fixed overhead and what creating it added to resident memory. A model can unfold
/// far beyond its file: ResNet-50 from the onnx package's test data is 80 KB of `ConstantOfShape` nodes
/// whose session holds 238 MB of weights; counted by its file, a 256 MiB pool held any number of them.
/// (Another thread allocating meanwhile makes the estimate high, memory the allocator kept free makes it
/// low: an estimate, as the file's size was.)
pub fn load_session_sized(bytes: &[u8], intra_threads: usize) -> Result<(Session, u64)> {
    let before = super::memory::resident_bytes();
    let session = load_session(bytes, intra_threads)?;
    let grew = match (before, super::memory::resident_bytes()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    Ok((session, session_estimate(bytes.len(), grew)))
}

/// What the pool counts a session at: twice its model's `model_len` bytes plus a fixed overhead, or what
/// creating it was measured to add (`grew`) where that is at least [`LARGE_SESSION`] and more. Smaller
/// growth is mostly other threads' work (a ranking loads sessions while other teachers run), and
/// counted it would make a large zoo's pool keep fewer of the sessions its startup created.
pub fn session_estimate(model_len: usize, grew: u64) -> u64 {
    let file = 2 * model_len as u64 + SESSION_OVERHEAD;
    if grew >= LARGE_SESSION {
        file.max(grew)
    } else {
        file
    }
}

/// A session this large matters to resident memory: growth at a session's creation from this much up
/// counts in the pool's estimate, and evicting sessions estimated at this much hands memory back to
/// the system at once.
const LARGE_SESSION: u64 = 16 << 20;

/// Creates a session for model bytes; failures are the model's fault (kind `invalid_model`).
// the builder's closures return ONNX Runtime's own error type, large or not
#[allow(clippy::result_large_err)]
pub fn load_session(bytes: &[u8], intra_threads: usize) -> Result<Session> {
    let env = environment()?;
    let builder = Session::builder(env).map_err(Error::from)?;
    // Each session has its own intra-op pool, whose threads by default keep spinning after a run returns.
    // With many models (a ranking runs every teacher in turn) those spinning threads starved the next
    // session and faculty's own scoring: stopping them when a run returns halved the cold ranking
    // (benches/ranking.rs), at a cost of a few microseconds per call on back-to-back tiny batches.
    // No CPU memory arena: an arena keeps every session's peak activations (a 1024-row batch through a
    // CNN is tens of MB) for the session's life; with a pool of sessions that was most of the server's
    // memory after a ranking (measured: /proc/PID/status VmRSS, README "Memory").
    let mut builder = builder
        .with_intra_threads(threads_for(bytes, intra_threads))
        .and_then(|b| b.with_config_entry("session.force_spinning_stop", "1"))
        .and_then(|b| {
            b.with_execution_providers([ort::ep::CPU::default()
                .with_arena_allocator(false)
                .build()])
        })
        .and_then(|b| b.with_memory_pattern(false))
        .map_err(|e| Error::internal(format!("ONNX Runtime options: {e}")))?;
    builder
        .commit_from_memory(bytes)
        .map_err(|e| Error::invalid_model(format!("ONNX Runtime cannot load this model: {e}")))
}

/// The intra-op threads a model's session runs with: one for a model with tree-ensemble operators,
/// `intra_threads` (0: ONNX Runtime's default) for any other. With more than one thread ONNX Runtime
/// sums a forest's trees in another order for batches of 64 rows and more than for smaller ones (parallel
/// over rows, or over trees), so a row's probabilities moved in their last bits with the batch it landed
/// in (letters_rf: up to 1.8e-7), and the batch sizes the climb picks vary with the machine's load. With
/// one thread every batch sums the same way; forests are cheap to run (a 1,024-row batch of the bundled
/// ones takes 2-4 ms either way).
fn threads_for(bytes: &[u8], intra_threads: usize) -> usize {
    if memchr::memmem::find(bytes, b"TreeEnsemble").is_some() {
        1
    } else {
        intra_threads
    }
}

/// Row-wise numerically stable softmax, in place.
pub fn softmax_rows(a: &mut Array2<f32>) {
    for mut row in a.rows_mut() {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
}

/// Reads one output value as scores [n, K] (before any softmax).
pub fn extract_scores(value: &DynValue, kind: OutputKind, n: usize) -> Result<Array2<f32>> {
    let bad =
        |what: &str| Error::invalid_model(format!("output is not usable as class scores: {what}"));
    match kind {
        OutputKind::Zipmap => {
            let seq = value
                .view()
                .downcast::<DynSequenceValueType>()
                .map_err(|e| bad(&format!("expected a sequence of maps ({e})")))?;
            let maps = seq
                .try_extract_sequence::<DynMapValueType>()
                .map_err(|e| bad(&e.to_string()))?;
            let mut rows: Vec<Vec<f32>> = Vec::with_capacity(maps.len());
            for m in &maps {
                let row = match m.dtype() {
                    ValueType::Map {
                        key: ort::value::TensorElementType::String,
                        ..
                    } => {
                        let mut kv = m.try_extract_key_values::<String, f32>()?;
                        kv.sort_by(|a, b| a.0.cmp(&b.0));
                        kv.into_iter().map(|(_, v)| v).collect()
                    }
                    _ => {
                        let mut kv = m.try_extract_key_values::<i64, f32>()?;
                        kv.sort_by_key(|a| a.0);
                        kv.into_iter().map(|(_, v)| v).collect()
                    }
                };
                rows.push(row);
            }
            let k = rows.first().map_or(0, Vec::len);
            if rows.len() != n || rows.iter().any(|r| r.len() != k) {
                return Err(bad("ZipMap rows have different numbers of classes"));
            }
            Array2::from_shape_vec((n, k), rows.concat()).map_err(|e| bad(&e.to_string()))
        }
        OutputKind::Probabilities | OutputKind::Logits => {
            let (shape, data): (Vec<i64>, Vec<f32>) =
                if let Ok((s, d)) = value.try_extract_tensor::<f32>() {
                    (s.to_vec(), d.to_vec())
                } else if let Ok((s, d)) = value.try_extract_tensor::<f64>() {
                    (s.to_vec(), d.iter().map(|&v| v as f32).collect())
                } else if let Ok((s, d)) = value.try_extract_tensor::<half::f16>() {
                    (s.to_vec(), d.iter().map(|v| v.to_f32()).collect())
                } else {
                    return Err(bad("not a float tensor"));
                };
            if shape.first().copied() != Some(n as i64) || n == 0 {
                return Err(bad(&format!(
                    "shape {shape:?} does not start with the batch size {n}"
                )));
            }
            let k = data.len() / n;
            Array2::from_shape_vec((n, k), data).map_err(|e| bad(&e.to_string()))
        }
    }
}

/// Reads an inner float tensor [n, ...] as one row per input: [n, D] as it is, a feature map
/// [n, C, d1, ...] as its channel means [n, C] (what a linear probe can use with few rows).
pub fn extract_pooled(value: &DynValue, n: usize) -> Result<Array2<f32>> {
    let (shape, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| Error::invalid_model(format!("inner tensor is not float: {e}")))?;
    if shape.first().copied() != Some(n as i64) || n == 0 {
        return Err(Error::invalid_model(format!(
            "inner tensor of shape {shape:?} does not start with the batch size {n}"
        )));
    }
    let per_row = data.len() / n;
    if shape.len() <= 2 {
        return Ok(Array2::from_shape_vec((n, per_row), data.to_vec()).expect("n rows"));
    }
    let c = shape[1].max(1) as usize;
    let s = per_row / c;
    Ok(Array2::from_shape_fn((n, c), |(i, k)| {
        let block = &data[i * per_row + k * s..i * per_row + (k + 1) * s];
        block.iter().sum::<f32>() / s.max(1) as f32
    }))
}

impl Predictor {
    /// Elements in one input row (all dimensions after the batch), if every one is known.
    pub fn row_len(&self) -> Option<usize> {
        self.input_shape[1..]
            .iter()
            .try_fold(1usize, |acc, &d| (d > 0).then(|| acc * d as usize))
    }

    /// The batch size the model's input fixes (its first dimension, when that is a number, as in many
    /// models exported for one image at a time): every run then gets exactly that many rows, the last
    /// one padded with copies of its final row.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.input_shape
            .first()
            .filter(|&&d| d > 0)
            .map(|&d| d as usize)
    }

    /// How rows of shape `row_shape` reach this input (see [`super::adapt::fit`]).
    pub fn fit_rows(&self, row_shape: &[usize]) -> Result<RowFit> {
        super::adapt::fit(&self.input_shape, row_shape)
    }

    /// Class probabilities [N, K] for the rows of `x` (first axis = rows), at most `batch` rows per call
    /// (fewer where the memory budget says so; `key` names the model in the budget's measurements).
    pub fn predict(
        &self,
        session: &mut Session,
        key: &str,
        x: ArrayViewD<'_, f32>,
        batch: usize,
    ) -> Result<Array2<f32>> {
        Ok(self.predict_with_features(session, key, x, batch, &[])?.0)
    }

    /// Like [`Predictor::predict`], also reading the float outputs `features` of a model whose inner
    /// tensors were exposed (see `onnx::surgery`), one row per input each: [N, D] as they are, feature
    /// maps [N, C, ...] as channel means [N, C].
    pub fn predict_with_features(
        &self,
        session: &mut Session,
        key: &str,
        x: ArrayViewD<'_, f32>,
        batch: usize,
        features: &[String],
    ) -> Result<(Array2<f32>, Vec<Array2<f32>>)> {
        let n = x.len_of(Axis(0));
        let from_shape = x.shape()[1..].to_vec();
        let fit = self.fit_rows(&from_shape)?;
        let row_shape = fit.shape.clone();
        let in_len: usize = from_shape.iter().product();
        let x = x.as_standard_layout();
        let flat = x.as_slice().expect("standard layout is contiguous");
        // A branch-free fold over the contiguous slice vectorizes; an early-exit iterator over a
        // dynamic-rank view costs as much as a small model's inference.
        if !flat.iter().fold(true, |ok, v| ok & v.is_finite()) {
            return Err(Error::invalid_input(
                "input contains NaN or infinite values",
            ));
        }
        let row_len: usize = row_shape.iter().product();
        let mut out = Array2::<f32>::zeros((n, self.num_classes));
        let mut feats: Vec<Array2<f32>> = Vec::with_capacity(features.len());
        let batch = batch.max(1);
        let fixed = self.fixed_batch();
        let mut start = 0;
        while start < n {
            // a batch is as many rows as the model runs fastest (see `onnx::pace`) and, under the
            // memory budget, as fit (see `onnx::memory`); a model with a fixed batch gets exactly its
            // batch, padded
            let (m, run_rows, cap) = match fixed {
                Some(b) => (b.min(n - start), b, b),
                None => {
                    // the climb's ceiling is what the budget allows, so that it settles there
                    let mut room = super::memory::room(key);
                    let cap = room.cap_rows(batch);
                    let want = super::pace::rows(key, cap).min(n - start);
                    let allowed = room.plan_rows(want.max(2.min(batch)));
                    let m = allowed.min(want);
                    // one row runs as two (the second a copy): ONNX Runtime's matrix product takes
                    // another path for a single row, whose sums differ (Magika's probabilities by up to
                    // 8e-4), and a row's output must not depend on the batch it landed in
                    (m, if m == 1 && allowed >= 2 { 2 } else { m }, cap)
                }
            };
            let mut shape = vec![run_rows as i64];
            shape.extend(row_shape.iter().map(|&d| d as i64));
            let rows = &flat[start * in_len..(start + m) * in_len];
            // the batch's copies (resized, normalised, padded, the input tensor) are made inside the
            // measured run, so that what a row costs at the peak counts them too: a 28x28 grey row
            // resized for a 224x224 colour model is 192 times its size
            let outputs = super::memory::measured(key, run_rows, || -> Result<_> {
                let mut rows = fit.apply(rows, m, &from_shape);
                if let Some(norm) = &self.channel_norm {
                    rows = std::borrow::Cow::Owned(norm.apply(&rows, &row_shape));
                }
                let rows = &rows[..];
                let padded;
                let chunk = if run_rows > m {
                    let mut v = Vec::with_capacity(run_rows * row_len);
                    v.extend_from_slice(rows);
                    for _ in m..run_rows {
                        v.extend_from_slice(&rows[(m - 1) * row_len..]);
                    }
                    padded = v;
                    &padded[..]
                } else {
                    rows
                };
                let input = self.input_type.value(shape, chunk)?;
                let began = std::time::Instant::now();
                let out = session.run(ort::inputs![self.input.as_str() => input]);
                if fixed.is_none() {
                    super::pace::record(key, run_rows, began.elapsed(), cap);
                }
                Ok(out?)
            })?;
            let value = outputs.get(&self.output).ok_or_else(|| {
                Error::invalid_model(format!("model has no output named {}", self.output))
            })?;
            let first = |a: Array2<f32>| {
                if run_rows > m {
                    a.slice(ndarray::s![..m, ..]).to_owned()
                } else {
                    a
                }
            };
            let mut scores = first(extract_scores(value, self.kind, run_rows)?);
            if scores.ncols() != self.num_classes {
                return Err(Error::invalid_model(format!(
                    "model returned {} classes, its signature says {}",
                    scores.ncols(),
                    self.num_classes
                )));
            }
            if self.kind == OutputKind::Logits {
                softmax_rows(&mut scores);
            }
            if scores.iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid_model(
                    "model produced NaN or infinite outputs",
                ));
            }
            out.slice_mut(ndarray::s![start..start + m, ..])
                .assign(&scores);
            for (k, name) in features.iter().enumerate() {
                let value = outputs.get(name).ok_or_else(|| {
                    Error::invalid_model(format!("model has no output named {name}"))
                })?;
                let f = first(extract_pooled(value, run_rows)?);
                if feats.len() == k {
                    feats.push(Array2::zeros((n, f.ncols())));
                }
                if feats[k].ncols() != f.ncols() {
                    return Err(Error::invalid_model(
                        "feature width changed between batches",
                    ));
                }
                feats[k]
                    .slice_mut(ndarray::s![start..start + m, ..])
                    .assign(&f);
            }
            start += m;
        }
        Ok((out, feats))
    }
}

/// Sessions by key (a model's sha256, or a derived model's key), created on first use and reused; `run`
/// needs `&mut`, so each sits behind a mutex. The pool is bounded by a count and by estimated bytes
/// ([`session_estimate`]: twice the model's size plus a fixed overhead, or what creating the session
/// added to resident memory where that is large and more): past either, the least recently used sessions are dropped
/// (a caller still holding one keeps it until it is done) and reloaded on demand.
pub struct SessionPool {
    intra_threads: usize,
    max_sessions: usize,
    max_bytes: u64,
    inner: Mutex<Pooled>,
}

#[derive(Default)]
struct Pooled {
    sessions: HashMap<String, (Arc<Mutex<Session>>, u64, u64)>,
    clock: u64,
    bytes: u64,
}

/// A session's estimated memory beside its model bytes.
const SESSION_OVERHEAD: u64 = 2 << 20;

impl Default for SessionPool {
    fn default() -> Self {
        Self::new(0)
    }
}

impl SessionPool {
    /// A pool with the default bounds (64 sessions, 1 GiB estimated).
    pub fn new(intra_threads: usize) -> Self {
        Self::with_limits(intra_threads, 64, 1 << 30)
    }

    pub fn with_limits(intra_threads: usize, max_sessions: usize, max_bytes: u64) -> Self {
        Self {
            intra_threads,
            max_sessions: max_sessions.max(1),
            max_bytes,
            inner: Mutex::default(),
        }
    }

    pub fn intra_threads(&self) -> usize {
        self.intra_threads
    }

    /// How many sessions are loaded and their estimated bytes.
    pub fn usage(&self) -> (usize, u64) {
        let p = self.inner.lock().expect("pool lock");
        (p.sessions.len(), p.bytes)
    }

    fn lookup(&self, key: &str) -> Option<Arc<Mutex<Session>>> {
        let mut p = self.inner.lock().expect("pool lock");
        p.clock += 1;
        let now = p.clock;
        p.sessions.get_mut(key).map(|e| {
            e.2 = now;
            e.0.clone()
        })
    }

    /// Adds a session (the first one wins a race) and evicts the least recently used beyond the bounds.
    fn put(&self, key: &str, session: Session, est: u64) -> Arc<Mutex<Session>> {
        let mut p = self.inner.lock().expect("pool lock");
        p.clock += 1;
        let now = p.clock;
        if let Some(e) = p.sessions.get_mut(key) {
            e.2 = now;
            return e.0.clone();
        }
        let s = Arc::new(Mutex::new(session));
        p.sessions.insert(key.into(), (s.clone(), est, now));
        p.bytes += est;
        let mut evicted = Vec::new();
        while p.sessions.len() > 1
            && (p.sessions.len() > self.max_sessions || p.bytes > self.max_bytes)
        {
            let Some(oldest) = p
                .sessions
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, b, _)) = p.sessions.remove(&oldest) {
                p.bytes -= b;
                evicted.push((old, b));
            }
        }
        drop(p);
        // a large session dropped here (no caller still holds it) hands its memory back to the system:
        // the allocator would keep it, and the pool's bound would bound nothing resident. Small ones do
        // not: a cold ranking of 200 small teachers evicts one at almost every load
        let freed: u64 = evicted.iter().map(|e| e.1).sum();
        drop(evicted);
        if freed >= LARGE_SESSION {
            tracing::debug!(model = key, freed, "session pool full");
            super::memory::trim();
        }
        s
    }

    /// Keeps an already created session (e.g. the one the indexer validated the model with), counted at
    /// `est` bytes ([`session_estimate`]).
    pub fn insert(&self, sha256: &str, session: Session, est: u64) {
        self.put(sha256, session, est);
    }

    /// The session for this model, loading `path` the first time (or after it was evicted).
    pub fn get(&self, sha256: &str, path: &Path) -> Result<Arc<Mutex<Session>>> {
        if let Some(s) = self.lookup(sha256) {
            return Ok(s);
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
        let (session, est) = load_session_sized(&bytes, self.intra_threads)?;
        Ok(self.put(sha256, session, est))
    }

    /// The session stored under `key`, created from `bytes()` the first time (derived models, such as a
    /// teacher with its penultimate layer exposed or its batch freed).
    pub fn get_or_load(
        &self,
        key: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Mutex<Session>>> {
        if let Some(s) = self.lookup(key) {
            return Ok(s);
        }
        let b = bytes()?;
        let (session, est) = load_session_sized(&b, self.intra_threads)?;
        Ok(self.put(key, session, est))
    }

    /// Drops the session of a removed or replaced model.
    pub fn evict(&self, sha256: &str) {
        let mut p = self.inner.lock().expect("pool lock");
        let keys: Vec<String> = p
            .sessions
            .keys()
            .filter(|k| k.as_str() == sha256 || k.starts_with(&format!("{sha256}#")))
            .cloned()
            .collect();
        for k in keys {
            if let Some((_, b, _)) = p.sessions.remove(&k) {
                p.bytes -= b;
            }
        }
        super::memory::forget(sha256);
        super::pace::forget(sha256);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::adapt::Adapt;

    fn tiny() -> Vec<u8> {
        prost::Message::encode_to_vec(&crate::onnx::build::linear_classifier(
            &[1.0, 0.0, 0.0, 1.0],
            &[0.0, 0.0],
            2,
            &["a", "b"],
        ))
    }

    /// A classifier of channel-last [2, 2, 3] images (flattened into a linear layer of 12 -> 2) whose
    /// scores depend on where every value lands, with a fixed batch of `batch` rows (or a dynamic one).
    fn channels_last_model(batch: i64) -> (Vec<u8>, Predictor) {
        use crate::onnx::build::*;
        let w: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let m = model(
            vec![
                node("Flatten", &["input"], "flat", vec![attr_int("axis", 1)]),
                node("Gemm", &["flat", "W", "b"], "logits", vec![]),
                node("Softmax", &["logits"], "probs", vec![attr_int("axis", 1)]),
            ],
            vec![
                tensor_f32("W", &[12, 2], &w),
                tensor_f32("b", &[2], &[0.0, 0.1]),
            ],
            vec![value_info("input", &[batch, 2, 2, 3])],
            vec![value_info("probs", &[batch, 2])],
            &[],
        );
        let p = Predictor {
            input: "input".into(),
            input_type: InputType::Float32,
            input_shape: vec![batch, 2, 2, 3],
            output: "probs".into(),
            kind: OutputKind::Probabilities,
            num_classes: 2,
            channel_norm: None,
            freed_batch: None,
        };
        (prost::Message::encode_to_vec(&m), p)
    }

    #[test]
    fn image_rows_reach_a_channel_last_input_transposed_and_a_fixed_batch_padded() {
        let hwc = ndarray::Array4::from_shape_fn((5, 2, 2, 3), |(r, h, w, c)| {
            ((r * 12 + h * 6 + w * 3 + c) as f32 * 0.37).sin()
        });
        let chw = hwc
            .clone()
            .permuted_axes([0, 3, 1, 2])
            .as_standard_layout()
            .into_owned();
        for batch in [-1, 1, 3] {
            let (bytes, p) = channels_last_model(batch);
            let mut session = load_session(&bytes, 1).unwrap();
            let want = p
                .predict(&mut session, "t", hwc.view().into_dyn(), 64)
                .unwrap();
            let fit = p.fit_rows(&[3, 2, 2]).unwrap();
            assert_eq!(
                (fit.shape, fit.adapt),
                (vec![2, 2, 3], Adapt::MoveChannels { to_last: true })
            );
            let got = p
                .predict(&mut session, "t", chw.view().into_dyn(), 64)
                .unwrap();
            assert_eq!(got, want, "batch {batch}");
            // the same values merely reshaped would score differently
            let reshaped = chw.clone().into_shape_with_order((5, 2, 2, 3)).unwrap();
            let wrong = p
                .predict(&mut session, "t", reshaped.view().into_dyn(), 64)
                .unwrap();
            assert!((&wrong - &want).mapv(f32::abs).sum() > 1e-3);
        }
        // channel-last rows to a channel-first input, and shapes that only a reshape fits
        let p = Predictor {
            input_shape: vec![-1, 3, -1, -1],
            ..channels_last_model(-1).1
        };
        let fit = p.fit_rows(&[32, 32, 3]).unwrap();
        assert_eq!(
            (fit.shape, fit.adapt),
            (vec![3, 32, 32], Adapt::MoveChannels { to_last: false })
        );
        let p = Predictor {
            input_shape: vec![-1, 12],
            ..p
        };
        let fit = p.fit_rows(&[3, 2, 2]).unwrap();
        assert_eq!((fit.shape, fit.adapt), (vec![12], Adapt::Keep));
    }

    #[test]
    fn the_pool_drops_the_least_recently_used_beyond_its_bounds() {
        let pool = SessionPool::with_limits(1, 2, 1 << 30);
        let loads = std::cell::Cell::new(0);
        let load = || {
            loads.set(loads.get() + 1);
            Ok(tiny())
        };
        pool.get_or_load("a", load).unwrap();
        pool.get_or_load("b", load).unwrap();
        pool.get_or_load("a", load).unwrap(); // a is now the most recent
        assert_eq!(loads.get(), 2);
        pool.get_or_load("c", load).unwrap(); // evicts b
        assert_eq!(pool.usage().0, 2);
        pool.get_or_load("a", load).unwrap();
        assert_eq!(loads.get(), 3, "a stayed loaded");
        pool.get_or_load("b", load).unwrap();
        assert_eq!(loads.get(), 4, "b was reloaded");
        // a byte bound: each tiny session is estimated at 2 MiB and change, so 5 MiB holds two
        let small = SessionPool::with_limits(1, 100, 5 << 20);
        for k in ["x", "y", "z", "w"] {
            small.get_or_load(k, || Ok(tiny())).unwrap();
        }
        let (n, bytes) = small.usage();
        assert_eq!(n, 2);
        assert!(bytes <= 5 << 20);
        small.evict("w");
        assert_eq!(small.usage().0, 1);
    }

    /// A few hundred bytes of ONNX whose session holds `len` floats: a `ConstantOfShape` that ONNX
    /// Runtime folds into an initializer when the session is created (it feeds an `Add` with the input's
    /// sum, so it stays one), summed into the logits times zero.
    fn unfolding(len: i64) -> Vec<u8> {
        use crate::onnx::build::*;
        use crate::onnx::proto::{AttributeProto, attribute_proto::AttributeType};
        let ones = AttributeProto {
            name: Some("value".into()),
            r#type: Some(AttributeType::Tensor as i32),
            t: Some(tensor_f32("one", &[1], &[1.0])),
            ..Default::default()
        };
        let keep = || vec![attr_int("keepdims", 0)];
        prost::Message::encode_to_vec(&model(
            vec![
                node("ConstantOfShape", &["big_shape"], "big", vec![ones]),
                node("ReduceSum", &["input"], "s", keep()),
                node("Add", &["big", "s"], "bs", vec![]),
                node("ReduceSum", &["bs"], "total", keep()),
                node("Mul", &["total", "nothing"], "zero", vec![]),
                node("Gemm", &["input", "W", "b"], "logits", vec![]),
                node("Add", &["logits", "zero"], "logits_z", vec![]),
                node(
                    "Softmax",
                    &["logits_z"],
                    "probabilities",
                    vec![attr_int("axis", 1)],
                ),
            ],
            vec![
                tensor_i64("big_shape", &[len]),
                tensor_f32("nothing", &[], &[0.0]),
                tensor_f32("W", &[2, 2], &[1.0, 0.0, 0.0, 1.0]),
                tensor_f32("b", &[2], &[0.0, 0.0]),
            ],
            vec![value_info("input", &[-1, 2])],
            vec![value_info("probabilities", &[-1, 2])],
            &[("labels", "[\"a\",\"b\"]")],
        ))
    }

    #[test]
    fn a_session_is_counted_at_what_it_unfolds_to() {
        if crate::onnx::memory::resident_bytes().is_none() {
            return; // nothing to measure with off Linux
        }
        // 64 MB of floats from a few hundred bytes; counted by its file it was 2 MiB
        let bytes = unfolding(16 << 20);
        assert!(bytes.len() < 1000, "{}", bytes.len());
        // other tests of this process free memory meanwhile, which can hide some of either session's
        // growth: a few tries, each with a fresh pool
        let mut seen = vec![];
        for _ in 0..8 {
            let pool = SessionPool::with_limits(1, 64, 100 << 20);
            pool.get_or_load("a", || Ok(bytes.clone())).unwrap();
            let est = pool.usage().1;
            // a second one does not fit beside it under 100 MiB
            pool.get_or_load("b", || Ok(bytes.clone())).unwrap();
            seen.push((est, pool.usage()));
            if est >= 32 << 20 && pool.usage().0 == 1 {
                break;
            }
        }
        let (est, (sessions, _)) = *seen.last().unwrap();
        assert!(
            est >= 32 << 20 && sessions == 1,
            "(first session's estimate, (sessions, bytes)) per try: {seen:?}"
        );
        // and it runs
        let mut session = load_session(&bytes, 1).unwrap();
        let x = ndarray::Array2::<f32>::zeros((2, 2));
        let out = session
            .run(ort::inputs!["input" => ort::value::Tensor::from_array(x).unwrap()])
            .unwrap();
        assert!(out.get("probabilities").is_some());
    }
}
