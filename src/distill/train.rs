//! The training loop shared by every method: a stratified validation split, mini-batches that pair
//! labeled rows (cross-entropy) with rows from the distillation pool (labeled + unlabeled; the teacher
//! term), AdamW (fused, see [`AdamW`]) with warm-up and cosine decay, early stopping on validation accuracy, cancellation and
//! resumable checkpoints. The losses are tensor ops here; the OT term's gradient is the envelope
//! gradient from `ot::sinkhorn_batch` (see [`faculty_potentials`]).
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::student::{Arch, Net, Params, SplitMix};
use crate::data::RowsView;
use crate::error::{Error, Result};
use crate::ot::{SinkhornOptions, sinkhorn_batch_from};

/// Training settings (every field has a default; the job request may override any).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Most passes over the distillation pool (over the labeled rows for `scratch`).
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation result.
    pub patience: usize,
    pub batch_size: usize,
    /// Peak AdamW learning rate (linear warm-up over the first 5% of steps, cosine decay to 5% of it).
    pub lr: f64,
    pub weight_decay: f32,
    /// Share of each class's labeled rows held out for validation (classes with one row keep it).
    pub val_fraction: f64,
    /// KD: softmax temperature and the weight of the cross-entropy term.
    pub temperature: f32,
    pub alpha: f32,
    /// faculty: weight of the OT term and its entropic regularisation (the cost lies in [0, 1]).
    pub ot_weight: f32,
    pub ot_epsilon: f64,
    pub seed: u64,
    /// Deliver the scratch baseline instead of the distilled student when it is better on validation.
    pub scratch_fallback: bool,
    /// SRatio: rows whose probe-to-simple-model confidence ratio is above this are dropped.
    pub sratio_beta: f32,
    /// Choices between students (the method of `auto`, a multihop hop, the scratch fallback) are made by
    /// stratified k-fold cross-validation over the labeled rows with this many folds (0: on the
    /// validation split alone).
    pub cv_folds: usize,
    /// Cross-validation repeated with this many reshuffles (each labeled row judged this many times).
    pub cv_repeats: usize,
    /// Above this many labeled rows the validation split is large enough and decides alone.
    pub cv_max_labeled: usize,
    /// Where cross-validation decides and the student has a hidden layer narrower than its outputs
    /// (e.g. `mlp:2` for 10 classes), every training of the student (and of the scratch baseline), on
    /// each fold and the delivered one, runs this many times with different seeds and the lowest
    /// training loss is kept: such a network trained on few rows sometimes fails to train at all, and
    /// the folds must judge the procedure that is delivered (1: a single training).
    pub restarts: usize,
    /// `kd` and `faculty`: a distillation pool (labeled training rows + unlabeled rows) smaller than
    /// this is grown to it with mixup rows, each a random mix of two of its rows, labeled by the
    /// teacher (see `distill::augment`; 0: never).
    pub mixup_pool: usize,
    /// With `teacher: auto`, when the ranking's verdict is that no teacher is likely to help, the
    /// distilled student is delivered only if it beats the scratch baseline by at least this many
    /// standard errors of their paired difference on the rows that judged them (else the scratch student
    /// is): two noisy pieces of evidence, the verdict and the fallback's estimate, must both be overcome.
    pub no_help_margin_se: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_epochs: 100,
            patience: 25,
            batch_size: 128,
            lr: 3e-3,
            weight_decay: 1e-4,
            val_fraction: 0.2,
            temperature: 4.0,
            alpha: 0.5,
            ot_weight: 1.0,
            ot_epsilon: 0.02,
            seed: 0,
            scratch_fallback: true,
            sratio_beta: 3.0,
            cv_folds: 5,
            cv_repeats: 1,
            cv_max_labeled: 1000,
            restarts: 3,
            mixup_pool: 0,
            no_help_margin_se: 2.0,
        }
    }
}

impl TrainConfig {
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid_input(format!("config: {m}")));
        if self.max_epochs == 0 || self.max_epochs > 10_000 {
            return bad("max_epochs must be in 1..=10000");
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return bad("batch_size must be in 1..=65536");
        }
        if !(self.lr > 0.0 && self.lr < 10.0) {
            return bad("lr must be in (0, 10)");
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return bad("val_fraction must be in [0, 0.9)");
        }
        if !(self.temperature > 0.0 && self.temperature <= 100.0) {
            return bad("temperature must be in (0, 100]");
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return bad("alpha must be in [0, 1]");
        }
        if !(self.ot_weight >= 0.0 && self.ot_weight <= 100.0) {
            return bad("ot_weight must be in [0, 100]");
        }
        if !(self.ot_epsilon >= 1e-3 && self.ot_epsilon <= 10.0) {
            return bad("ot_epsilon must be in [0.001, 10]");
        }
        if !(self.sratio_beta > 0.0 && self.sratio_beta <= 1000.0) {
            return bad("sratio_beta must be in (0, 1000]");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay < 1.0) {
            return bad("weight_decay must be in [0, 1)");
        }
        if self.cv_folds == 1 || self.cv_folds > 20 {
            return bad("cv_folds must be 0 (the validation split decides) or in 2..=20");
        }
        if !(1..=10).contains(&self.cv_repeats) {
            return bad("cv_repeats must be in 1..=10");
        }
        if !(0.0..=10.0).contains(&self.no_help_margin_se) {
            return bad("no_help_margin_se must be in [0, 10]");
        }
        if self.mixup_pool > 100_000 {
            return bad("mixup_pool must be in 0..=100000");
        }
        if !(1..=10).contains(&self.restarts) {
            return bad("restarts must be in 1..=10");
        }
        Ok(())
    }
}

/// What the teacher says about the rows of the distillation pool (labeled training rows + unlabeled).
#[derive(Debug, Clone)]
pub enum Term {
    /// No teacher: cross-entropy on the labeled rows only.
    None,
    /// Soft targets in the student's label order, one row per dataset row [N, C] (KD: the loss is
    /// alpha * CE + (1 - alpha) * T^2 * KL(targets^T || student^T)).
    Soft { targets: Array2<f32> },
    /// The teacher's probabilities [N, C_t] and the cost between its labels and the student's
    /// [C_t, C] (values in [0, 1]): CE + ot_weight * OT_eps(teacher, student; cost).
    Transport {
        probs: Array2<f32>,
        cost: Array2<f64>,
    },
    /// Several teachers' terms at once (`loss_avg`): the mean of their losses, each in its own form.
    Many(Vec<Term>),
    /// One soft-target lesson per output head (`mimic_all`: head k mimics teacher k, each [N, C]); the
    /// labeled rows teach the mean of the heads.
    Heads(Vec<Array2<f32>>),
}

/// What the student is taught, row by row. Every method builds lessons; [`train`] only consumes them and
/// never asks which method made one.
#[derive(Debug, Clone)]
pub struct Lesson {
    /// Each dataset row's label in the student's label space (-1 = none): cross-entropy on
    /// `split.train`, validation on `split.val`.
    pub y: Vec<i64>,
    pub split: Split,
    /// The teacher term, on `split.train` + `split.unlabeled`.
    pub term: Term,
    /// Per-row sample weights (index = dataset row) for every term; `None` = all 1.
    pub weights: Option<Vec<f32>>,
    /// How many leading parameter tensors stay fixed (a transferred trunk while its new head is fitted).
    pub frozen: usize,
}

impl Lesson {
    /// Cross-entropy on the labeled rows alone.
    pub fn scratch(y: &[i64], split: &Split) -> Self {
        Self {
            y: y.to_vec(),
            split: split.clone(),
            term: Term::None,
            weights: None,
            frozen: 0,
        }
    }

    /// The number of classes the lesson teaches (its targets' width, or its labels' range).
    pub fn classes(&self) -> usize {
        match &self.term {
            Term::Soft { targets } => targets.ncols(),
            Term::Transport { cost, .. } => cost.ncols(),
            Term::Many(terms) => terms.first().map_or(0, |t| {
                Lesson {
                    term: t.clone(),
                    ..Self::scratch(&[], &self.split)
                }
                .classes()
            }),
            Term::Heads(targets) => targets.first().map_or(0, |t| t.ncols()),
            Term::None => self.y.iter().copied().max().map_or(0, |m| m as usize + 1),
        }
    }

    /// The rows the teacher term sees: the labeled training rows and the unlabeled pool.
    pub fn pool(&self) -> Vec<usize> {
        match self.term {
            Term::None => vec![],
            _ => {
                let mut p = self.split.train.clone();
                p.extend_from_slice(&self.split.unlabeled);
                p
            }
        }
    }
}

/// Where training starts.
#[derive(Debug, Clone, Default)]
pub enum Start {
    /// Seeded initialisation.
    #[default]
    Fresh,
    /// Given parameters (a transferred trunk, a previous hop, a stage's result).
    From(Params),
    /// A checkpoint of this same training.
    Resume(Checkpoint),
}

/// Labeled rows split for training and validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// Unlabeled rows (distillation pool only).
    pub unlabeled: Vec<usize>,
}

impl Split {
    /// Every row a student may learn from, in dataset order: the labeled training rows and the
    /// unlabeled pool (not the validation rows).
    pub fn fit_rows(&self) -> Vec<usize> {
        let mut r: Vec<usize> = self.train.iter().chain(&self.unlabeled).copied().collect();
        r.sort_unstable();
        r
    }

    /// A seeded stratified split of the labeled rows (`y >= 0`).
    pub fn stratified(y: &[i64], classes: usize, val_fraction: f64, seed: u64) -> Self {
        let mut rng = SplitMix(seed.wrapping_add(17));
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for c in 0..classes as i64 {
            let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
            rng.shuffle(&mut rows);
            let k = if rows.len() >= 2 {
                ((rows.len() as f64 * val_fraction).round() as usize)
                    .max(usize::from(val_fraction > 0.0))
                    .min(rows.len() - 1)
            } else {
                0
            };
            val.extend_from_slice(&rows[..k]);
            train.extend_from_slice(&rows[k..]);
        }
        train.sort_unstable();
        val.sort_unstable();
        let unlabeled = (0..y.len()).filter(|&i| y[i] < 0).collect();
        Self {
            train,
            val,
            unlabeled,
        }
    }

    /// Repeated stratified k-fold splits of the labeled rows: each repeat reshuffles every class and deals
    /// its rows round-robin over the folds (continuing where the previous class stopped, so folds differ
    /// in size by at most one row); fold f validates on its rows and trains on the others. The unlabeled
    /// pool is on the training side of every fold. Folds without rows are left out.
    pub fn folds(y: &[i64], classes: usize, k: usize, repeats: usize, seed: u64) -> Vec<Self> {
        let unlabeled: Vec<usize> = (0..y.len()).filter(|&i| y[i] < 0).collect();
        let mut out = Vec::new();
        for r in 0..repeats as u64 {
            let mut rng = SplitMix(seed.wrapping_add(0x5eed_f01d).wrapping_add(r * 7919));
            let mut fold_of = vec![usize::MAX; y.len()];
            let mut next = 0;
            for c in 0..classes as i64 {
                let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
                rng.shuffle(&mut rows);
                for (i, &row) in rows.iter().enumerate() {
                    fold_of[row] = (next + i) % k;
                }
                next = (next + rows.len()) % k;
            }
            for f in 0..k {
                let (val, train): (Vec<usize>, Vec<usize>) = (0..y.len())
                    .filter(|&i| fold_of[i] != usize::MAX)
                    .partition(|&i| fold_of[i] == f);
                if !val.is_empty() {
                    out.push(Self {
                        train,
                        val,
                        unlabeled: unlabeled.clone(),
                    });
                }
            }
        }
        out
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    /// The teacher term's share of the loss (KD's KL or the OT cost), when there is one.
    pub distill_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub lr: f64,
    /// The stage of a method with several trainings (`transfer`: mimic, head, fine-tune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// Everything needed to continue training after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Which training of the job this is (methods with several stages resume the right one).
    #[serde(default)]
    pub stage: usize,
    /// The next epoch to run.
    pub epoch: usize,
    pub params: Params,
    pub best: Option<(Params, EpochMetrics)>,
    pub history: Vec<EpochMetrics>,
}

/// What the loop reports to its caller; `on_epoch` may build (by calling `ck`) and persist a checkpoint. Returning `false` from
/// `keep_going` stops training (cancellation).
pub trait Hooks {
    fn on_epoch(
        &mut self,
        _m: &EpochMetrics,
        _total_epochs: usize,
        _ck: &dyn Fn() -> Checkpoint,
    ) -> Result<()> {
        Ok(())
    }
    fn keep_going(&self) -> bool {
        true
    }
}

/// Hooks that only watch a cancel flag.
pub struct Flag<'a>(pub &'a AtomicBool);

impl Hooks for Flag<'_> {
    fn keep_going(&self) -> bool {
        !self.0.load(Ordering::Relaxed)
    }
}

/// The trained student.
#[derive(Debug, Clone)]
pub struct Trained {
    pub params: Params,
    /// The epoch whose parameters were kept (best validation result).
    pub best: Option<EpochMetrics>,
    pub history: Vec<EpochMetrics>,
    pub stopped_early: bool,
    pub cancelled: bool,
}

fn device() -> Device {
    keep_freed_memory();
    Device::flex().autodiff()
}

/// Training allocates and frees the same large buffers (activations, gradients, parameters) every step.
/// glibc serves blocks over 128 KiB with fresh `mmap`s, so each step paid page faults on every one (a
/// tenth of an epoch, measured with perf). Raising the mmap and trim thresholds keeps freed blocks for
/// reuse. Process-wide and idempotent; glibc only.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        ONCE.call_once(|| unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 << 20);
            mallopt(M_TRIM_THRESHOLD, 512 << 20);
        });
    }
}

fn gather(x: ArrayView2<'_, f32>, rows: &[usize]) -> Vec<f32> {
    let d = x.ncols();
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        let row = x.row(r);
        match row.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(row.iter()),
        }
    }
    out
}

/// AdamW (decoupled weight decay, bias-corrected moments; PyTorch's `torch.optim.AdamW` update) fused
/// into one pass over each parameter's values. The parameters move between this update and burn's
/// module (which computes the gradients) without copies.
struct AdamW {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
    weight_decay: f32,
    /// Leading parameter tensors left untouched.
    frozen: usize,
}

impl AdamW {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    fn new(params: &Params, weight_decay: f32, frozen: usize) -> Self {
        let zeros = || params.iter().map(|p| vec![0.0; p.values.len()]).collect();
        Self {
            m: zeros(),
            v: zeros(),
            t: 0,
            weight_decay,
            frozen,
        }
    }

    fn step(&mut self, params: &mut [TensorData], grads: &[TensorData], lr: f64) {
        self.t += 1;
        let lr = lr as f32;
        // PyTorch's arrangement: w -= (lr / c1) * m / (sqrt(v) / sqrt(c2) + eps), one division
        let c1 = 1.0 - Self::BETA1.powi(self.t);
        let c2 = 1.0 - Self::BETA2.powi(self.t);
        let k = AdamStep {
            step_size: lr / c1,
            inv_sqrt_c2: 1.0 / c2.sqrt(),
            decay: 1.0 - lr * self.weight_decay,
        };
        for (i, p) in params.iter_mut().enumerate().skip(self.frozen) {
            let w = p.as_mut_slice::<f32>().expect("float parameters");
            let g = grads[i].as_slice::<f32>().expect("float gradients");
            // chunks of 16K values: the large layers are shared between the cores, the rest stay on one
            const CHUNK: usize = 1 << 14;
            let chunks = w
                .par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(self.m[i].par_chunks_mut(CHUNK))
                .zip(self.v[i].par_chunks_mut(CHUNK));
            chunks.for_each(|(((w, g), m), v)| k.run(w, g, m, v));
        }
    }
}

/// One AdamW update over matching slices of weights, gradients and moments. The loop is compiled
/// three times (AVX-512, AVX2+FMA, baseline) and the widest the CPU has is chosen at run time: the
/// release build targets baseline x86-64, whose 4-wide loop made the update a tenth of an epoch.
#[derive(Clone, Copy)]
struct AdamStep {
    step_size: f32,
    inv_sqrt_c2: f32,
    decay: f32,
}

impl AdamStep {
    #[inline(always)]
    fn body(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        const B1: f32 = AdamW::BETA1;
        const B2: f32 = AdamW::BETA2;
        // zipped iterators: no bounds checks, so the loop vectorises
        for ((w, g), (m, v)) in w.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            let denom = v.sqrt() * self.inv_sqrt_c2 + AdamW::EPS;
            *w = *w * self.decay - self.step_size * *m / denom;
        }
    }

    fn run(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            fn avx512(k: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
                k.body(w, g, m, v)
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2(k: AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
                k.body(w, g, m, v)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature
                return unsafe { avx512(self, w, g, m, v) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has the features
                return unsafe { avx2(self, w, g, m, v) };
            }
        }
        self.body(w, g, m, v)
    }
}

fn matrix(v: Vec<f32>, rows: usize, cols: usize, dev: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, [rows, cols]), dev)
}

/// Learning rate at `step` of `total`: 5% linear warm-up, then cosine decay to 5% of the peak.
pub fn lr_at(peak: f64, step: usize, total: usize) -> f64 {
    let warm = (total / 20).max(1);
    if step < warm {
        return peak * (step + 1) as f64 / warm as f64;
    }
    let t = (step - warm) as f64 / (total - warm).max(1) as f64;
    peak * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
}

/// The envelope gradient of the entropic OT cost W(p, q; M) with respect to the student marginal q:
/// the student-side dual potential g, centred per row (only its component tangent to the simplex
/// matters). Returns (mean cost, centred potentials [B, C]). `start`: each row's potentials from the
/// row's previous visit (the student moved a little since), where Sinkhorn starts instead of from zero.
pub fn faculty_potentials(
    p: ArrayView2<'_, f64>,
    q: ArrayView2<'_, f64>,
    cost: ArrayView2<'_, f64>,
    eps: f64,
    start: Option<ArrayView2<'_, f64>>,
) -> Result<(f64, Array2<f64>)> {
    // keep every student class reachable: a zero marginal entry has an unbounded potential
    let mut q = q.mapv(|v| v.max(1e-9));
    for mut r in q.rows_mut() {
        let s = r.sum();
        r /= s;
    }
    let opts = SinkhornOptions {
        eps,
        max_iter: 200,
        tol: 1e-6,
        eps_scaling: None,
    };
    let (costs, mut g) = sinkhorn_batch_from(p, q.view(), cost, &opts, start)?;
    let mean = g
        .mean_axis(Axis(1))
        .expect("non-empty")
        .insert_axis(Axis(1));
    g -= &mean;
    Ok((costs.mean().unwrap_or(0.0), g))
}

/// Per-row cross-entropy [B].
fn cross_entropy_rows(logits: Tensor<2>, y: &[usize], dev: &Device) -> Tensor<1> {
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(y.iter().map(|&v| v as i64).collect::<Vec<_>>(), [y.len()]),
        dev,
    );
    let lp = log_softmax(logits, 1);
    lp.gather(1, idx.unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1)
        .neg()
}

/// Validation accuracy and mean cross-entropy of `net` on rows `rows`.
fn evaluate(net: &Net, arch: &Arch, x: RowsView<'_>, y: &[i64], rows: &[usize]) -> (f64, f64) {
    let probs = predict(net, arch, x, rows);
    let mut correct = 0usize;
    let mut loss = 0.0;
    for (k, &r) in rows.iter().enumerate() {
        let row = probs.row(k);
        let t = y[r] as usize;
        if super::argmax(row.iter().copied()) == t {
            correct += 1;
        }
        loss -= f64::from(row[t].max(1e-12)).ln();
    }
    let n = rows.len().max(1) as f64;
    (correct as f64 / n, loss / n)
}

/// Class probabilities of `net` for the given rows of raw flat rows `x` (standardised for `arch` chunk by
/// chunk).
pub fn predict(net: &Net, arch: &Arch, x: RowsView<'_>, rows: &[usize]) -> Array2<f32> {
    let dev = Device::flex();
    let net = net.valid();
    let mut out = Array2::zeros((rows.len(), arch.classes));
    for (c, chunk) in rows.chunks(1024).enumerate() {
        let mut xb = Vec::new();
        arch.gather_standardised(x, chunk, &mut xb);
        let xb = matrix(xb, chunk.len(), x.ncols(), &dev);
        let p = softmax(net.forward(arch, xb), 1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("float output");
        let block = Array2::from_shape_vec((chunk.len(), arch.classes), p).expect("shape");
        out.slice_mut(ndarray::s![c * 1024..c * 1024 + chunk.len(), ..])
            .assign(&block);
    }
    out
}

/// The per-row weights of `rows` as a [B] tensor scaled to mean 1 over the batch, or `None` without
/// weights (every row counts the same).
fn batch_weights(weights: Option<&[f32]>, rows: &[usize], dev: &Device) -> Option<Tensor<1>> {
    let w = weights?;
    let v: Vec<f32> = rows.iter().map(|&r| w[r].max(0.0)).collect();
    let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
    let v = if mean > 0.0 {
        v.into_iter().map(|x| x / mean).collect()
    } else {
        vec![1.0; rows.len()]
    };
    Some(Tensor::from_data(TensorData::new(v, [rows.len()]), dev))
}

/// The mean of per-row losses [B], weighted when weights are given.
fn row_mean(per_row: Tensor<1>, w: &Option<Tensor<1>>) -> Tensor<1> {
    match w {
        Some(w) => (per_row * w.clone()).mean(),
        None => per_row.mean(),
    }
}

/// The teacher at temperature t, softmax(log p / t), once for every row.
pub(super) fn soften(targets: &Array2<f32>, t: f32) -> Array2<f32> {
    let mut soft = targets.mapv(|v| v.max(1e-8).ln() / t);
    for mut r in soft.rows_mut() {
        let m = r.fold(f32::MIN, |a, b| a.max(*b));
        r.mapv_inplace(|v| (v - m).exp());
        let s = r.sum();
        r /= s;
    }
    soft
}

/// A teacher term made ready for training: soft targets at the temperature, once for every row.
enum Prepared<'a> {
    None,
    Soft(Array2<f32>),
    Transport {
        probs: &'a Array2<f32>,
        cost: &'a Array2<f64>,
        /// Each pool row's potentials at its latest visit (zeros before the first): the next epoch's
        /// Sinkhorn starts there (a letters job's solves: 52.2 iterations on average from zero, 22.8 so).
        warm: std::sync::Mutex<Array2<f64>>,
    },
    Many(Vec<Prepared<'a>>),
    Heads(Vec<Array2<f32>>),
}

fn prepare(term: &Term, t: f32) -> Prepared<'_> {
    match term {
        Term::None => Prepared::None,
        Term::Soft { targets } => Prepared::Soft(soften(targets, t)),
        Term::Transport { probs, cost } => Prepared::Transport {
            probs,
            cost,
            warm: std::sync::Mutex::new(Array2::zeros((probs.nrows(), cost.ncols()))),
        },
        Term::Many(terms) => Prepared::Many(terms.iter().map(|x| prepare(x, t)).collect()),
        Term::Heads(targets) => Prepared::Heads(targets.iter().map(|x| soften(x, t)).collect()),
    }
}

/// The student's outputs on the pool rows of a batch.
struct Batch<'a> {
    /// The prediction's logits [B, C].
    logits: Tensor<2>,
    /// Every head's logits [B, heads * C].
    heads: Tensor<2>,
    rows: &'a [usize],
    weights: &'a Option<Tensor<1>>,
}

/// KL(soft^T || student^T) per pool row, soft already at the temperature, `z` the logits.
fn kl_rows(soft: &Array2<f32>, z: Tensor<2>, rows: &[usize], t: f32, dev: &Device) -> Tensor<1> {
    let c = soft.ncols();
    let pt = matrix(gather(soft.view(), rows), rows.len(), c, dev);
    let log_pt = pt.clone().clamp_min(1e-8).log();
    (pt * (log_pt - log_softmax(z / t, 1)))
        .sum_dim(1)
        .squeeze_dim::<1>(1)
}

/// A teacher term on one batch: the weight it leaves the labeled rows' cross-entropy, the tensor to
/// differentiate, the term's own value (the epoch's `distill_loss`) and what it adds to the objective
/// (the epoch's `train_loss`).
struct TermLoss {
    ce_weight: f32,
    loss: Tensor<1>,
    value: f64,
    objective: f64,
}

fn teacher_loss(
    p: &Prepared<'_>,
    b: Batch<'_>,
    cfg: &TrainConfig,
    c: usize,
    dev: &Device,
) -> Result<TermLoss> {
    let t = cfg.temperature;
    let kd_scale = (1.0 - cfg.alpha) * t * t;
    match p {
        Prepared::None => Ok(TermLoss {
            ce_weight: 1.0,
            loss: Tensor::zeros([1], dev),
            value: 0.0,
            objective: 0.0,
        }),
        Prepared::Soft(soft) => {
            let kl = row_mean(kl_rows(soft, b.logits, b.rows, t, dev), b.weights);
            let v = f64::from(kl.clone().into_scalar::<f32>());
            Ok(TermLoss {
                ce_weight: cfg.alpha,
                loss: kl * kd_scale,
                value: v,
                objective: v * f64::from(kd_scale),
            })
        }
        Prepared::Heads(softs) => {
            let k = softs.len() as f32;
            let mut total: Option<Tensor<1>> = None;
            for (h, soft) in softs.iter().enumerate() {
                let z = b.heads.clone().narrow(1, h * c, c);
                let kl = row_mean(kl_rows(soft, z, b.rows, t, dev), b.weights) / k;
                total = Some(match total {
                    Some(a) => a + kl,
                    None => kl,
                });
            }
            let kl = total.unwrap_or_else(|| Tensor::zeros([1], dev));
            let v = f64::from(kl.clone().into_scalar::<f32>());
            Ok(TermLoss {
                ce_weight: cfg.alpha,
                loss: kl * kd_scale,
                value: v,
                objective: v * f64::from(kd_scale),
            })
        }
        Prepared::Transport { probs, cost, warm } => {
            let n = b.rows.len();
            let q = softmax(b.logits, 1);
            let qv = q
                .clone()
                .detach()
                .into_data()
                .try_to_vec::<f32>()
                .expect("floats");
            let q64 = Array2::from_shape_vec((n, c), qv.into_iter().map(f64::from).collect())
                .expect("shape");
            let p = probs.select(Axis(0), b.rows).mapv(f64::from);
            let mut warm = warm.lock().expect("warm start");
            let start = warm.select(Axis(0), b.rows);
            let (w, g) = faculty_potentials(
                p.view(),
                q64.view(),
                cost.view(),
                cfg.ot_epsilon,
                Some(start.view()),
            )?;
            for (&r, row) in b.rows.iter().zip(g.rows()) {
                warm.row_mut(r).assign(&row);
            }
            drop(warm);
            let gt = matrix(g.iter().map(|v| *v as f32).collect(), n, c, dev);
            // d/dq of sum(q * g) is g: the envelope gradient of W at the current q
            let surrogate = row_mean((q * gt).sum_dim(1).squeeze_dim::<1>(1), b.weights);
            // the surrogate has W's gradient, not its value (the potentials are centred, so it can be
            // negative): the reported loss counts the transport cost itself
            Ok(TermLoss {
                ce_weight: 1.0,
                loss: surrogate * cfg.ot_weight,
                value: w,
                objective: w * f64::from(cfg.ot_weight),
            })
        }
        Prepared::Many(terms) => {
            let k = terms.len().max(1) as f32;
            let (mut ce_w, mut v, mut obj) = (0.0, 0.0, 0.0);
            let mut total: Option<Tensor<1>> = None;
            for term in terms {
                let one = Batch {
                    logits: b.logits.clone(),
                    heads: b.heads.clone(),
                    rows: b.rows,
                    weights: b.weights,
                };
                let t = teacher_loss(term, one, cfg, c, dev)?;
                ce_w += t.ce_weight / k;
                v += t.value / f64::from(k);
                obj += t.objective / f64::from(k);
                let l = t.loss / k;
                total = Some(match total {
                    Some(a) => a + l,
                    None => l,
                });
            }
            Ok(TermLoss {
                ce_weight: ce_w,
                loss: total.unwrap_or_else(|| Tensor::zeros([1], dev)),
                value: v,
                objective: obj,
            })
        }
    }
}

/// Cycles through rows in a freshly shuffled order each pass.
struct Batches {
    order: Vec<usize>,
    at: usize,
}

impl Batches {
    fn new(rows: &[usize]) -> Self {
        Self {
            order: rows.to_vec(),
            at: rows.len(),
        }
    }
    fn next(&mut self, k: usize, rng: &mut SplitMix) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k && !self.order.is_empty() {
            if self.at >= self.order.len() {
                rng.shuffle(&mut self.order);
                self.at = 0;
            }
            out.push(self.order[self.at]);
            self.at += 1;
        }
        out
    }
}

/// Trains a student on a lesson. `x` holds every row as stored ([N, D]); batches are standardised for
/// `arch` as they are gathered.
pub fn train(
    arch: &Arch,
    x: RowsView<'_>,
    lesson: &Lesson,
    cfg: &TrainConfig,
    start: Start,
    hooks: &mut dyn Hooks,
) -> Result<Trained> {
    cfg.check()?;
    let (y, split) = (&lesson.y, &lesson.split);
    if split.train.is_empty() {
        return Err(Error::invalid_input("no labeled rows to train on"));
    }
    let dev = device();
    let c = arch.classes;
    let d = x.ncols();
    let mut rng = SplitMix(cfg.seed.wrapping_mul(31).wrapping_add(7));
    let (start, mut params, mut best, mut history) = match start {
        Start::Resume(ck) => (ck.epoch, ck.params, ck.best, ck.history),
        Start::From(p) => (0, p, None, Vec::new()),
        Start::Fresh => (0, arch.init(cfg.seed), None, Vec::new()),
    };
    let mut opt = AdamW::new(&params, cfg.weight_decay, lesson.frozen);
    // the parameters while an epoch runs: moved into the module for each step and back out for the update
    let mut state: Vec<TensorData> = params.iter().map(|p| p.to_data()).collect();
    let pool = lesson.pool();
    let n_epoch_rows = if pool.is_empty() {
        split.train.len()
    } else {
        pool.len()
    };
    let bl = cfg.batch_size.min(split.train.len());
    let bd = cfg.batch_size.min(pool.len());
    let steps_per_epoch = n_epoch_rows.div_ceil(cfg.batch_size).max(1);
    let total = steps_per_epoch * cfg.max_epochs;
    let mut labeled = Batches::new(&split.train);
    let mut pooled = Batches::new(&pool);
    let prepared = prepare(&lesson.term, cfg.temperature);
    let weights = lesson.weights.as_deref();
    let mut stopped_early = false;
    let mut cancelled = false;
    let mut epoch = start;
    while epoch < cfg.max_epochs {
        let mut loss_sum = 0.0;
        let mut distill_sum = 0.0;
        let mut lr = cfg.lr;
        for s in 0..steps_per_epoch {
            if !hooks.keep_going() {
                cancelled = true;
                break;
            }
            let lab = labeled.next(bl, &mut rng);
            let dis = pooled.next(bd, &mut rng);
            let mut xb = Vec::new();
            arch.gather_standardised(x, &lab, &mut xb);
            arch.gather_standardised(x, &dis, &mut xb);
            let net = Net::from_data(arch, std::mem::take(&mut state), &dev);
            let raw = net.forward_heads(arch, matrix(xb, lab.len() + dis.len(), d, &dev));
            let logits = super::student::mix_heads(raw.clone(), arch);
            let yl: Vec<usize> = lab.iter().map(|&r| y[r] as usize).collect();
            let wl = batch_weights(weights, &lab, &dev);
            let ce = row_mean(
                cross_entropy_rows(logits.clone().narrow(0, 0, lab.len()), &yl, &dev),
                &wl,
            );
            let wd = batch_weights(weights, &dis, &dev);
            let ce_value = f64::from(ce.clone().into_scalar::<f32>());
            let (loss, distill, objective) = match &prepared {
                Prepared::None => (ce, None, ce_value),
                p => {
                    let n = lab.len();
                    let at = Batch {
                        logits: logits.narrow(0, n, dis.len()),
                        heads: raw.narrow(0, n, dis.len()),
                        rows: &dis,
                        weights: &wd,
                    };
                    let t = teacher_loss(p, at, cfg, c, &dev)?;
                    let objective = ce_value * f64::from(t.ce_weight) + t.objective;
                    (ce * t.ce_weight + t.loss, Some(t.value), objective)
                }
            };
            lr = lr_at(cfg.lr, epoch * steps_per_epoch + s, total);
            loss_sum += objective;
            distill_sum += distill.unwrap_or(0.0);
            let grads = net.grads(loss.backward());
            state = net.into_data();
            opt.step(&mut state, &grads, lr);
        }
        for (p, d) in params.iter_mut().zip(&state) {
            p.values
                .copy_from_slice(d.as_slice::<f32>().expect("float parameters"));
        }
        if cancelled {
            break;
        }
        let (val_accuracy, val_loss) = if split.val.is_empty() {
            (None, None)
        } else {
            let net = Net::from_params(arch, &params, &Device::flex());
            let (a, l) = evaluate(&net, arch, x, y, &split.val);
            (Some(a), Some(l))
        };
        if !(loss_sum.is_finite()) {
            return Err(Error::invalid_input(
                "training diverged (the loss is not finite); try a lower lr",
            ));
        }
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / steps_per_epoch as f64,
            distill_loss: (!matches!(lesson.term, Term::None))
                .then(|| distill_sum / steps_per_epoch as f64),
            val_accuracy,
            val_loss,
            lr,
            stage: None,
        };
        if better(&m, best.as_ref().map(|b| &b.1)) {
            best = Some((params.clone(), m.clone()));
        }
        history.push(m.clone());
        epoch += 1;
        let ck = || Checkpoint {
            stage: 0,
            epoch,
            params: params.clone(),
            best: best.clone(),
            history: history.clone(),
        };
        hooks.on_epoch(&m, cfg.max_epochs, &ck)?;
        let best_epoch = best.as_ref().map(|b| b.1.epoch).unwrap_or(0);
        if epoch - best_epoch >= cfg.patience && epoch < cfg.max_epochs {
            stopped_early = true;
            break;
        }
    }
    let (params, best_m) = match best {
        Some((p, m)) => (p, Some(m)),
        None => (params, None),
    };
    Ok(Trained {
        params,
        best: best_m,
        history,
        stopped_early,
        cancelled,
    })
}

/// Whether epoch `m` beats the best so far: higher validation accuracy, then lower validation loss;
/// without validation rows the last epoch is the model.
pub fn better(m: &EpochMetrics, best: Option<&EpochMetrics>) -> bool {
    match best {
        None => true,
        Some(b) => match (m.val_accuracy, b.val_accuracy) {
            (Some(a), Some(ba)) => {
                a > ba + 1e-12 || ((a - ba).abs() <= 1e-12 && m.val_loss < b.val_loss)
            }
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::{SinkhornOptions, sinkhorn_log};
    use ndarray::array;

    #[test]
    fn envelope_gradient_matches_finite_differences() {
        // d W(p, q) / d q along a simplex direction equals <g - mean(g), direction>
        let p = array![[0.6, 0.3, 0.1]];
        let q = array![[0.2, 0.5, 0.3]];
        let m = array![[0.0, 0.9, 0.4], [0.7, 0.1, 0.8], [0.5, 0.6, 0.2]];
        let eps = 0.1;
        let (_, g) = faculty_potentials(p.view(), q.view(), m.view(), eps, None).unwrap();
        let opts = SinkhornOptions {
            eps,
            max_iter: 10_000,
            tol: 1e-13,
            eps_scaling: None,
        };
        // the dual objective <p, f> + <q, g> is W plus eps * entropy terms; its derivative in q is g
        let dual = |qq: ndarray::Array1<f64>| {
            let s = sinkhorn_log(p.row(0), qq.view(), m.view(), &opts).unwrap();
            s.f.dot(&p.row(0)) + s.g.dot(&qq)
        };
        let dir = array![1.0, -0.5, -0.5];
        let h = 1e-5;
        let fd = (dual(&q.row(0) + &(&dir * h)) - dual(&q.row(0) - &(&dir * h))) / (2.0 * h);
        let an = g.row(0).dot(&dir);
        assert!(
            (fd - an).abs() < 1e-3,
            "finite difference {fd} vs envelope {an}"
        );
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let y: Vec<i64> = (0..50)
            .map(|i| if i % 10 == 9 { -1 } else { i % 3 })
            .collect();
        let s = Split::stratified(&y, 3, 0.2, 1);
        assert_eq!(s, Split::stratified(&y, 3, 0.2, 1));
        assert_eq!(s.unlabeled.len(), 5);
        assert_eq!(s.train.len() + s.val.len(), 45);
        for c in 0..3 {
            assert!(s.val.iter().any(|&i| y[i] == c));
        }
    }

    #[test]
    fn lr_schedule_warms_up_and_decays() {
        assert!(lr_at(1.0, 0, 100) < 0.5);
        assert!((lr_at(1.0, 5, 100) - 1.0).abs() < 1e-9);
        assert!((lr_at(1.0, 99, 100) - 0.05).abs() < 0.01);
    }
}
