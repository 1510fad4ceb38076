//! Sample reweighting from a neural teacher's inner layers: ProfWeight and SRatio (`weighting` on a job).
//! Linear probes read activation tensors of the teacher (exposed by graph surgery, `onnx::surgery`; feature
//! maps enter as channel means). Each probe is a softmax regression in the student's label space, trained
//! with faculty's own trainer and cross-fitted over two folds, so a row's probe confidence comes from a
//! probe that never saw the row. The rows are the labeled training rows with their labels and the
//! unlabeled pool with the teacher's label (its top class carried into the student's labels).
//! - ProfWeight: a row's weight is the mean, over the probes at least as accurate as the simple model, of
//!   the probe's probability of the row's label (the best probe alone when none is).
//! - SRatio: that confidence divided by the simple model's own probability of the label; rows whose ratio
//!   is above `sratio_beta` are dropped (weight 0), the rest keep the ratio as weight.
//!
//! - `auto` (a request's choice, never a lesson's): the teacher's hop is taught under each of none,
//!   ProfWeight and SRatio, and the best on validation is delivered (`distill::run`, through the method
//!   search).
//!
//! The simple model is the job's scratch baseline (labeled rows only).
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use super::student::{Arch, Net, SplitMix, StudentSpec};
use super::train::{self, Flag, Lesson, Split, Start, TrainConfig};
use crate::error::{Error, Result};
use crate::onnx::surgery;
use crate::zoo::{Teacher, Zoo};

/// How rows are weighted in a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Every row counts the same.
    #[default]
    None,
    /// ProfWeight: the teacher's probe confidence in the row's label.
    Profweight,
    /// SRatio: probe confidence over the simple model's confidence, hard rows dropped.
    Sratio,
    /// Try none, ProfWeight and SRatio (those the teacher allows) for the teacher's hop and keep the best
    /// on validation.
    Auto,
}

impl Weighting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Profweight => "profweight",
            Self::Sratio => "sratio",
            Self::Auto => "auto",
        }
    }

    /// The weightings a lesson can carry (what `auto` tries).
    pub const CHOICES: [Weighting; 3] = [Self::None, Self::Profweight, Self::Sratio];
}

/// Probes read at most this many layers by default (the deepest ones).
const DEFAULT_PROBES: usize = 4;

/// One probe as the card shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProbeReport {
    /// The teacher's tensor the probe reads.
    pub tensor: String,
    /// Features it reads (channel means for feature maps).
    pub features: usize,
    /// Cross-fitted accuracy on the weighted rows (labels as described in the report).
    pub accuracy: f64,
    /// Whether its confidences enter the weights.
    pub used: bool,
}

/// What the weighting did, for the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WeightingReport {
    pub kind: Weighting,
    pub probes: Vec<ProbeReport>,
    /// The simple model's accuracy on the same rows (in-sample on the labeled rows).
    pub simple_accuracy: f64,
    /// Rows weighted (labeled training rows + unlabeled pool).
    pub rows: usize,
    /// SRatio: rows dropped for a ratio above `sratio_beta`.
    pub dropped: usize,
    /// Smallest, mean and largest weight over the kept rows.
    pub weight_min: f64,
    pub weight_mean: f64,
    pub weight_max: f64,
    pub note: String,
}

/// The probe layers for `teacher`: the requested tensors (each must be a probe candidate), or the deepest
/// few. Refuses a teacher without usable inner layers, with the reason.
pub fn probe_layers(
    zoo: &Zoo,
    teacher: &Teacher,
    requested: Option<&[String]>,
) -> Result<Vec<String>> {
    let output = teacher
        .predictor
        .as_ref()
        .map(|p| p.output.clone())
        .unwrap_or_default();
    let all = surgery::probe_tensors(&zoo.graph(&teacher.id)?, &output);
    if all.is_empty() {
        return Err(Error::invalid_input(format!(
            "teacher '{}' has no inner layers a probe can read (ProfWeight and SRatio need a neural \
             teacher with activation layers; a linear model or a forest has none): use weighting none \
             (with multihop, leave profweight and sratio out of hop_weightings)",
            teacher.id
        )));
    }
    match requested {
        Some(names) if !names.is_empty() => {
            if let Some(bad) = names.iter().find(|n| !all.contains(n)) {
                return Err(Error::invalid_input(format!(
                    "teacher '{}' has no probe layer '{bad}'; its layers are {all:?}",
                    teacher.id
                )));
            }
            Ok(names.to_vec())
        }
        _ => Ok(all[all.len().saturating_sub(DEFAULT_PROBES)..].to_vec()),
    }
}

/// Cross-fitted probabilities of each row's label under a softmax probe on `feats` (rows of the dataset),
/// over `rows` with labels `y` (per dataset row). Returns the confidence per entry of `rows` and the
/// probe's accuracy.
fn probe(
    feats: &Array2<f32>,
    rows: &[usize],
    y: &[i64],
    classes: usize,
    seed: u64,
) -> Result<(Vec<f32>, f64)> {
    let d = feats.ncols();
    let arch = Arch::new(&StudentSpec::Linear, &[d], classes, feats.view().into())?;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    SplitMix(seed ^ 0x5eed).shuffle(&mut order);
    let half = order.len() / 2;
    let folds = [&order[..half], &order[half..]];
    let cfg = TrainConfig {
        max_epochs: 60,
        patience: 60,
        lr: 1e-2,
        weight_decay: 1e-3,
        val_fraction: 0.0,
        seed,
        ..TrainConfig::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut conf = vec![0f32; rows.len()];
    let mut hits = 0usize;
    for k in 0..2 {
        let (fit, held) = (folds[k], folds[1 - k]);
        if fit.is_empty() || held.is_empty() {
            continue;
        }
        let mut train_rows: Vec<usize> = fit.iter().map(|&i| rows[i]).collect();
        train_rows.sort_unstable();
        let split = Split {
            train: train_rows,
            val: vec![],
            unlabeled: vec![],
        };
        let t = train::train(
            &arch,
            feats.view().into(),
            &Lesson::scratch(y, &split),
            &cfg,
            Start::Fresh,
            &mut Flag(&stop),
        )?;
        let net = Net::from_params(&arch, &t.params, &burn::tensor::Device::flex());
        let held_rows: Vec<usize> = held.iter().map(|&i| rows[i]).collect();
        let p = train::predict(&net, &arch, feats.view().into(), &held_rows);
        for (j, &i) in held.iter().enumerate() {
            let label = y[rows[i]] as usize;
            conf[i] = p[[j, label]];
            hits += usize::from(super::argmax(p.row(j).iter().copied()) == label);
        }
    }
    Ok((conf, hits as f64 / rows.len().max(1) as f64))
}

/// Cross-fitted probe confidences in each row's label, one probe per layer: what both ProfWeight and
/// SRatio weights are made of, so one probing serves every weighting of the same rows.
pub struct Probed {
    /// The probed rows (dataset rows).
    rows: Vec<usize>,
    /// Per layer: its name, features, the confidence per entry of `rows` and the probe's accuracy.
    layers: Vec<(String, usize, Vec<f32>, f64)>,
}

/// Probes every layer (`layers`: one feature matrix per layer, rows = dataset rows, with its name) on
/// `rows` with labels `y` (per dataset row: true on labeled rows, the teacher's elsewhere).
pub fn probe_all(
    layers: &[(String, Array2<f32>)],
    rows: &[usize],
    y: &[i64],
    classes: usize,
    seed: u64,
) -> Result<Probed> {
    let mut out = Vec::new();
    for (k, (name, feats)) in layers.iter().enumerate() {
        let (conf, accuracy) = probe(feats, rows, y, classes, seed.wrapping_add(k as u64))?;
        out.push((name.clone(), feats.ncols(), conf, accuracy));
    }
    Ok(Probed {
        rows: rows.to_vec(),
        layers: out,
    })
}

/// Per-row weights (index = dataset row; 1 outside the probed rows) of `kind` and the report, from the
/// probes and the simple model's probabilities on the probed rows (`simple`, row k for the k-th), with
/// the SRatio threshold `beta`.
pub fn weights(
    kind: Weighting,
    probed: &Probed,
    y: &[i64],
    simple: &Array2<f32>,
    beta: f32,
) -> Result<(Vec<f32>, WeightingReport)> {
    if kind == Weighting::Auto {
        return Err(Error::internal(
            "weighting auto chooses among weightings; a lesson carries one",
        ));
    }
    let rows = &probed.rows;
    let n_rows = y.len();
    let labels: Vec<usize> = rows.iter().map(|&r| y[r] as usize).collect();
    let simple_conf: Vec<f32> = labels
        .iter()
        .enumerate()
        .map(|(k, &l)| simple[[k, l]])
        .collect();
    let simple_hits = labels
        .iter()
        .enumerate()
        .filter(|(k, l)| super::argmax(simple.row(*k).iter().copied()) == **l)
        .count();
    let simple_accuracy = simple_hits as f64 / labels.len().max(1) as f64;
    let mut probes: Vec<ProbeReport> = probed
        .layers
        .iter()
        .map(|(name, features, _, accuracy)| ProbeReport {
            tensor: name.clone(),
            features: *features,
            accuracy: *accuracy,
            used: *accuracy >= simple_accuracy,
        })
        .collect();
    let confs: Vec<&Vec<f32>> = probed.layers.iter().map(|l| &l.2).collect();
    if !probes.iter().any(|p| p.used)
        && let Some(best) =
            (0..probes.len()).max_by(|a, b| probes[*a].accuracy.total_cmp(&probes[*b].accuracy))
    {
        probes[best].used = true;
    }
    let used: Vec<usize> = (0..probes.len()).filter(|&k| probes[k].used).collect();
    let mean_conf: Vec<f32> = (0..rows.len())
        .map(|i| used.iter().map(|&k| confs[k][i]).sum::<f32>() / used.len().max(1) as f32)
        .collect();
    let mut out = vec![1f32; n_rows];
    let mut dropped = 0;
    for (i, &r) in rows.iter().enumerate() {
        out[r] = match kind {
            Weighting::None | Weighting::Auto => 1.0,
            Weighting::Profweight => mean_conf[i],
            Weighting::Sratio => {
                let ratio = mean_conf[i] / simple_conf[i].max(1e-6);
                if ratio > beta {
                    dropped += 1;
                    0.0
                } else {
                    ratio
                }
            }
        };
    }
    let kept: Vec<f64> = rows
        .iter()
        .map(|&r| f64::from(out[r]))
        .filter(|v| *v > 0.0)
        .collect();
    let stat = |f: fn(f64, f64) -> f64, init: f64| kept.iter().copied().fold(init, f);
    let report = WeightingReport {
        kind,
        probes,
        simple_accuracy,
        rows: rows.len(),
        dropped,
        weight_min: if kept.is_empty() { 0.0 } else { stat(f64::min, f64::INFINITY) },
        weight_mean: kept.iter().sum::<f64>() / kept.len().max(1) as f64,
        weight_max: stat(f64::max, 0.0),
        note: "probes are trained and weights computed on the labeled training rows (true labels) and \
               the unlabeled pool (the teacher's top class carried into the task's labels); probes are \
               cross-fitted over two folds; where cross-validation judges the student, each fold's \
               weights come from probes and a scratch model trained without that fold's held-out rows"
            .into(),
    };
    if kept.is_empty() {
        return Err(Error::invalid_input(format!(
            "sratio dropped every row (all ratios above sratio_beta {}); raise it",
            beta
        )));
    }
    Ok((out, report))
}

/// The teacher's top class per dataset row, carried into the student's labels, with true labels where
/// the dataset has them: the labels the probes learn.
pub fn probe_labels(carried: &Array2<f32>, y: &[i64]) -> Vec<i64> {
    carried
        .axis_iter(Axis(0))
        .zip(y)
        .map(|(p, &t)| {
            if t >= 0 {
                t
            } else {
                super::argmax(p.iter().copied()) as i64
            }
        })
        .collect()
}
