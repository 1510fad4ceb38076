//! Judging the metrics against the measured ground truth (`zoo/ground_truth.json` and the task files in
//! `zoo/ground_truth/`, written by `zoo/ground_truth.py`). For every task and every draw of the labeled
//! shots, the zoo is ranked by every metric; per metric we report whether its top pick is within 1 point of
//! the best teacher's distilled-student accuracy, Spearman, Kendall tau-b and weighted tau against that
//! accuracy, and whether the verdict ("a teacher helps") was right. Per-draw values are averaged. The
//! truth is per task (a mean over draws), so the task-level answer is judged too: the consensus pick (the
//! teacher ranked first on the most draws) and the majority verdict.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ndarray::Axis;
use serde::{Deserialize, Serialize};

use super::gain::{self, GainSample};
use super::{
    Direction, Entry, METRICS, TeacherOutputs, TeacherResult, direction, finish, metrics, outputs,
};
use crate::data::Dataset;
use crate::data::npz::{NpyArray, read_npz};
use crate::error::{Error, Result};
use crate::zoo::Zoo;

#[derive(Debug, Deserialize)]
struct GtFile {
    /// The task data's folder, relative to the file; default: the file's name without `.json`.
    #[serde(default)]
    task_dir: Option<String>,
    tasks: Vec<GtTask>,
}

fn read_gt(gt_json: &Path) -> Result<GtFile> {
    Ok(serde_json::from_slice(&std::fs::read(gt_json)?)?)
}

/// Where a ground-truth file's task data (`<name>.npz`) lives.
pub fn task_dir(gt_json: &Path) -> Result<std::path::PathBuf> {
    Ok(match read_gt(gt_json)?.task_dir {
        Some(d) => gt_json.parent().unwrap_or(Path::new(".")).join(d),
        None => gt_json.with_extension(""),
    })
}

/// Per task, the teachers the ground truth measured.
pub fn task_teachers(gt_json: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    Ok(read_gt(gt_json)?
        .tasks
        .into_iter()
        .map(|t| (t.name, t.teacher_mean.into_keys().collect()))
        .collect())
}

#[derive(Debug, Deserialize)]
struct GtTask {
    name: String,
    kind: String,
    /// Per draw: a ground truth measured on fewer draws than the task file holds is judged on those.
    #[serde(default)]
    scratch: Vec<f64>,
    scratch_mean: f64,
    teacher_mean: BTreeMap<String, f64>,
    /// Per teacher, per draw (when the file has them): the measured student accuracy.
    #[serde(default)]
    teachers: BTreeMap<String, Vec<f64>>,
}

/// One metric on one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricOnTask {
    /// Fraction of draws whose top pick was within 1 point of the best teacher.
    pub top_within_1pt: f64,
    /// Mean ground-truth accuracy of the top pick over draws.
    pub top_pick_accuracy: f64,
    pub spearman: f64,
    pub kendall: f64,
    pub weighted_tau: f64,
    /// Fraction of draws whose verdict matched the ground truth.
    pub verdict_right: f64,
    /// Fraction of draws where the top set (rank 1 and the teachers `tied_with_top`) holds a teacher within
    /// 1 point of the best one.
    pub top_set_within_1pt: f64,
    /// Mean size of the top set.
    pub top_set_size: f64,
    /// Fraction of draws whose verdict was `confident`.
    pub verdict_confident: f64,
    /// Fraction of draws whose verdict was `confident` and wrong.
    pub confident_wrong: f64,
    /// The task's consensus pick: the teacher ranked first on the most draws (a tie in count goes to the
    /// higher mean score over draws). The ground truth is a mean over draws; this is the ranking's.
    pub consensus_pick: String,
    /// Whether the consensus pick is within 1 point of the best teacher.
    pub consensus_within_1pt: bool,
    /// Whether the verdict given on most draws (a tie goes to "a teacher helps") matches the ground truth.
    pub consensus_verdict_right: bool,
    /// Spearman of the metric's score averaged over the draws against the truth: the metric's own expected
    /// order, without the few-shot noise of any one draw. Its gain over `spearman` is the most that less
    /// noisy scores could buy; the rest of the gap to the truth is the metric's order itself.
    #[serde(default)]
    pub spearman_of_mean_score: f64,
}

/// One task's evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEval {
    pub task: String,
    pub kind: String,
    pub teachers: usize,
    pub best_teacher: String,
    pub best_accuracy: f64,
    pub scratch_accuracy: f64,
    pub teacher_helps: bool,
    pub metrics: BTreeMap<String, MetricOnTask>,
    /// How noisy the truth itself is (when the file has per-draw accuracies).
    #[serde(default)]
    pub truth_noise: Option<TruthNoise>,
}

/// The truth's own noise: a "ranker" that knew how every teacher's student came out on a draw, judged
/// like the metrics are. The truth is a mean over a few draws, so even this oracle does not reach 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TruthNoise {
    /// Mean over draws of Spearman(the draw's measured accuracies, the truth): the same judging as the
    /// metrics' (the draw is part of the mean it is compared with).
    pub own_draw_spearman: f64,
    /// The same against the mean of the other draws only.
    pub other_draws_spearman: f64,
    /// Standard deviation of the truth over teachers (how far apart the teachers are).
    pub truth_spread: f64,
    /// Split-half reliability of the truth: the correlation over teachers between the means of two halves
    /// of the draws, averaged over the splits and stepped up to all draws (Spearman-Brown).
    #[serde(default)]
    pub reliability: f64,
    /// sqrt(reliability): how closely the truth (a mean over the draws) tracks what infinitely many draws
    /// would give. Unlike the two Spearmans above, this one bounds a metric that predicts each teacher's
    /// expected student: it cannot be expected to agree with the truth better than the truth agrees with
    /// its own expectation.
    #[serde(default)]
    pub truth_vs_expected: f64,
}

/// The truth's noise from per-draw accuracies `measured[teacher][draw]` (teachers with every draw).
fn truth_noise(measured: &[&Vec<f64>], draws: usize) -> Option<TruthNoise> {
    if draws < 2 || measured.len() < 2 || measured.iter().any(|v| v.len() < draws) {
        return None;
    }
    let mean_without = |skip: Option<usize>| -> Vec<f64> {
        measured
            .iter()
            .map(|v| {
                let it = v[..draws]
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| Some(*d) != skip);
                let n = it.clone().count() as f64;
                it.map(|(_, a)| a).sum::<f64>() / n
            })
            .collect()
    };
    let truth = mean_without(None);
    let (mut own, mut other) = (0.0, 0.0);
    for d in 0..draws {
        let this: Vec<f64> = measured.iter().map(|v| v[d]).collect();
        own += spearman(&this, &truth) / draws as f64;
        other += spearman(&this, &mean_without(Some(d))) / draws as f64;
    }
    let m = metrics::mean(&truth);
    let spread = (truth.iter().map(|t| (t - m) * (t - m)).sum::<f64>() / truth.len() as f64).sqrt();
    let reliability = split_half_reliability(measured, draws);
    Some(TruthNoise {
        own_draw_spearman: own,
        other_draws_spearman: other,
        truth_spread: spread,
        reliability,
        truth_vs_expected: reliability.max(0.0).sqrt(),
    })
}

/// Split-half reliability of the mean over `draws` draws of `measured[teacher][draw]`: every split of the
/// draws into two halves (those holding draw 0, so each split once; up to 16 draws, beyond that the
/// rotations), the Pearson correlation over teachers of the two halves' means, averaged, then stepped up
/// from half the draws to all of them by Spearman-Brown, 2r / (1 + r).
fn split_half_reliability(measured: &[&Vec<f64>], draws: usize) -> f64 {
    let half = draws / 2;
    let splits: Vec<Vec<bool>> = if draws <= 16 {
        (0u32..1 << draws)
            .filter(|m| m & 1 == 1 && m.count_ones() as usize == half)
            .map(|m| (0..draws).map(|d| m >> d & 1 == 1).collect())
            .collect()
    } else {
        (0..half)
            .map(|i| (0..draws).map(|d| (d + draws - i) % draws < half).collect())
            .collect()
    };
    let mean_of = |v: &Vec<f64>, split: &[bool], side: bool| {
        let x: Vec<f64> = (0..draws)
            .filter(|&d| split[d] == side)
            .map(|d| v[d])
            .collect();
        metrics::mean(&x)
    };
    let r: Vec<f64> = splits
        .iter()
        .map(|sp| {
            let a: Vec<f64> = measured.iter().map(|v| mean_of(v, sp, true)).collect();
            let b: Vec<f64> = measured.iter().map(|v| mean_of(v, sp, false)).collect();
            pearson(&a, &b)
        })
        .filter(|r| r.is_finite())
        .collect();
    if r.is_empty() {
        return 0.0;
    }
    let r = metrics::mean(&r);
    2.0 * r / (1.0 + r)
}

/// The whole evaluation, with per-metric summaries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub tasks: Vec<TaskEval>,
    /// metric -> its summary over the tasks.
    pub summary: BTreeMap<String, MetricSummary>,
    /// The metric chosen leave-one-task-out, judged on each left-out task.
    #[serde(default)]
    pub held_out: Option<HeldOut>,
    /// The expected-accuracy calibration, held out by task (when the ground truth has per-draw accuracies).
    #[serde(default)]
    pub expected: Option<super::expected::CalibrationReport>,
    /// The scratch student's calibration, held out by task (one pair per draw).
    #[serde(default)]
    pub expected_scratch: Option<super::expected::CalibrationReport>,
    /// The verdict's gain rule, its error held out by task and its fit on every task (when the ground
    /// truth has per-draw accuracies). The verdict columns are held out: each task's verdicts come from
    /// the rule fitted on the other tasks.
    #[serde(default)]
    pub gain: Option<gain::GainReport>,
    /// Every draw's raw scores (JSON only): what a new combination or rule can be tried on offline.
    #[serde(default)]
    pub draws: Vec<DrawScores>,
}

/// One draw of one task: every teacher's score under every single metric, next to the truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrawScores {
    pub task: String,
    pub draw: usize,
    /// The ridge classifier's leave-one-out accuracy on the draw's labeled rows.
    pub scratch_estimate: f64,
    /// The measured scratch student's accuracy on this draw (when the file has it).
    pub scratch_measured: Option<f64>,
    pub teachers: Vec<TeacherScores>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeacherScores {
    pub teacher: String,
    pub scores: BTreeMap<String, f64>,
    /// The teacher's truth: its student's accuracy, the mean over draws.
    pub truth: f64,
    /// Its student's accuracy on this draw (when the file has it).
    pub measured: Option<f64>,
    /// Within noise of the default's rank 1 on this draw (see `TeacherResult::tied_with_top`); false
    /// for rank 1 itself.
    #[serde(default)]
    pub tied_with_top: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricSummary {
    pub mean_spearman: f64,
    pub mean_kendall: f64,
    pub mean_weighted_tau: f64,
    pub tasks_top_within_1pt: usize,
    pub tasks_verdict_right: usize,
    /// Tasks whose top set holds a teacher within 1 point of the best one in every draw.
    pub tasks_top_set_within_1pt: usize,
    pub mean_top_set_size: f64,
    /// Tasks with a confident verdict that was wrong in some draw.
    pub tasks_confident_wrong: usize,
    /// Tasks whose consensus pick (the teacher ranked first on most draws) is within 1 point of the best.
    pub tasks_consensus_within_1pt: usize,
    /// Tasks whose majority verdict is right.
    pub tasks_consensus_verdict_right: usize,
    /// Mean over tasks of `MetricOnTask::spearman_of_mean_score`.
    #[serde(default)]
    pub mean_spearman_of_mean_score: f64,
    pub tasks: usize,
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// Spearman's rho (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&metrics::average_ranks(a), &metrics::average_ranks(b))
}

/// Kendall's tau-b.
pub fn kendall(a: &[f64], b: &[f64]) -> f64 {
    weighted(a, b, |_, _| 1.0)
}

fn weighted(a: &[f64], b: &[f64], w: impl Fn(usize, usize) -> f64) -> f64 {
    let (mut s, mut ta, mut tb) = (0.0, 0.0, 0.0);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let (da, db) = ((a[i] - a[j]).signum(), (b[i] - b[j]).signum());
            let wij = w(i, j);
            if a[i] != a[j] {
                ta += wij;
            }
            if b[i] != b[j] {
                tb += wij;
            }
            if a[i] != a[j] && b[i] != b[j] {
                s += wij * da * db;
            }
        }
    }
    if ta == 0.0 || tb == 0.0 {
        0.0
    } else {
        s / (ta * tb).sqrt()
    }
}

/// Weighted tau (Vigna 2015) with additive hyperbolic weights 1/(r+1), r the rank by decreasing `a` (ties
/// broken by `b`) and by decreasing `b`, averaged over the two: swaps near the top cost more.
pub fn weighted_tau(a: &[f64], b: &[f64]) -> f64 {
    let rank_by = |x: &[f64], y: &[f64]| {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&i, &j| x[j].total_cmp(&x[i]).then(y[j].total_cmp(&y[i])));
        let mut r = vec![0usize; x.len()];
        for (pos, &i) in idx.iter().enumerate() {
            r[i] = pos;
        }
        r
    };
    let (ra, rb) = (rank_by(a, b), rank_by(b, a));
    let wa = weighted(a, b, |i, j| {
        1.0 / (ra[i] + 1) as f64 + 1.0 / (ra[j] + 1) as f64
    });
    let wb = weighted(a, b, |i, j| {
        1.0 / (rb[i] + 1) as f64 + 1.0 / (rb[j] + 1) as f64
    });
    (wa + wb) / 2.0
}

fn array_i64(arrays: &BTreeMap<String, NpyArray>, k: &str) -> Result<ndarray::ArrayD<i64>> {
    arrays
        .get(k)
        .ok_or_else(|| Error::invalid_input(format!("ground-truth file has no '{k}'")))?
        .to_i64()
}

/// One ground-truth task's data: the pool the draws index into, the held-out test rows, and per draw the
/// labeled and unlabeled row indices.
pub struct GroundTruthTask {
    pub pool: Dataset,
    pub x_test: ndarray::ArrayD<f32>,
    pub y_test: Vec<i64>,
    pub draws: Vec<(Vec<usize>, Vec<usize>)>,
}

/// Reads `<dir>/<name>.npz` as written by `zoo/ground_truth.py`.
pub fn load_task(dir: &Path, name: &str) -> Result<GroundTruthTask> {
    let bytes = std::fs::read(dir.join(format!("{name}.npz")))?;
    let arrays = read_npz(&bytes, 1 << 31)?;
    let get = |k: &str| {
        arrays
            .get(k)
            .ok_or_else(|| Error::invalid_input(format!("ground-truth file has no '{k}'")))
    };
    let labels = match arrays.get("labels") {
        Some(NpyArray::Str(l, _)) => l.clone(),
        _ => return Err(Error::invalid_input("ground-truth file has no label names")),
    };
    let rows_of = |a: &ndarray::ArrayD<i64>, d: usize| -> Vec<usize> {
        a.index_axis(Axis(0), d)
            .iter()
            .map(|&v| v as usize)
            .collect()
    };
    let labeled = array_i64(&arrays, "labeled")?;
    let unlabeled = array_i64(&arrays, "unlabeled")?;
    let draws = (0..labeled.shape()[0])
        .map(|d| (rows_of(&labeled, d), rows_of(&unlabeled, d)))
        .collect();
    Ok(GroundTruthTask {
        pool: Dataset {
            x: get("x")?.to_f32()?,
            y: array_i64(&arrays, "y")?.into_iter().collect(),
            labels,
        },
        x_test: get("x_test")?.to_f32()?,
        y_test: array_i64(&arrays, "y_test")?.into_iter().collect(),
        draws,
    })
}

/// A ground-truth task as the distillation evaluation needs it.
pub struct TaskHeader {
    pub name: String,
    pub kind: String,
    /// Whether the best teacher's mean accuracy beats the scratch mean.
    pub teacher_helps: bool,
}

/// The ground-truth file's tasks.
pub fn tasks(gt_json: &Path) -> Result<Vec<TaskHeader>> {
    let gt = read_gt(gt_json)?;
    Ok(gt
        .tasks
        .into_iter()
        .map(|t| {
            let best = t.teacher_mean.values().copied().fold(f64::MIN, f64::max);
            TaskHeader {
                teacher_helps: best > t.scratch_mean,
                name: t.name,
                kind: t.kind,
            }
        })
        .collect())
}

/// A task's draws, scored, waiting for the verdicts of a gain rule fitted without it.
struct Pending {
    /// Everything but the metrics, which wait for the verdicts.
    eval: TaskEval,
    teacher_mean: BTreeMap<String, f64>,
    per_metric: BTreeMap<String, Vec<[f64; 10]>>,
    picks: BTreeMap<String, Vec<DrawPick>>,
    evidence: BTreeMap<String, Vec<Option<super::VerdictEvidence>>>,
}

impl Pending {
    /// Fills every draw's verdict columns (right, confident, confident and wrong) and pick under `rule`.
    fn call_verdicts(&mut self, rule: &gain::GainFit) {
        for (m, rows) in &mut self.per_metric {
            let picks = self.picks.get_mut(m).expect("a pick per row");
            for ((row, pick), ev) in rows.iter_mut().zip(picks).zip(&self.evidence[m]) {
                let call = ev.as_ref().map(|e| e.call(rule));
                let helps = call.is_some_and(|c| c.helps);
                let confident = call.is_none_or(|c| c.confident);
                let right = helps == self.eval.teacher_helps;
                pick.helps = helps;
                row[5] = f64::from(u8::from(right));
                row[8] = f64::from(u8::from(confident));
                row[9] = f64::from(u8::from(confident && !right));
            }
        }
    }
}

/// One draw's ranking, as the consensus needs it: the top pick, the verdict, every teacher's signed score
/// (higher is better).
struct DrawPick {
    top: String,
    helps: bool,
    scores: BTreeMap<String, f64>,
}

/// The task-level answer over draws: the teacher ranked first on the most draws (a tie in count goes to
/// the higher mean signed score) and the majority verdict (a tie goes to "a teacher helps", as within a
/// draw).
fn consensus(draws: &[DrawPick]) -> (String, bool) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for d in draws {
        *count.entry(&d.top).or_default() += 1;
    }
    let means = mean_scores(draws);
    let mean_score = |id: &str| means.get(id).copied().unwrap_or(0.0);
    let pick = count
        .iter()
        .max_by(|a, b| {
            a.1.cmp(b.1)
                .then(mean_score(a.0).total_cmp(&mean_score(b.0)))
        })
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    let helps = 2 * draws.iter().filter(|d| d.helps).count() >= draws.len();
    (pick, helps)
}

/// Every teacher's signed score averaged over the draws that scored it.
fn mean_scores(draws: &[DrawPick]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (id, s) in draws.iter().flat_map(|d| &d.scores) {
        let e = sums.entry(id.clone()).or_default();
        e.0 += s;
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(id, (s, n))| (id, s / n as f64))
        .collect()
}

/// Evaluates every metric on every ground-truth task. `gt_json` is `zoo/ground_truth.json` (the task files
/// are next to it in `ground_truth/`) or another truth over the same tasks (`task_dir` names their folder).
pub fn evaluate(zoo: &Zoo, gt_json: &Path, progress: impl Fn(&str)) -> Result<EvalReport> {
    let gt = read_gt(gt_json)?;
    let dir = task_dir(gt_json)?;
    let metric_names: Vec<String> = METRICS.iter().map(|m| m.0.to_string()).collect();
    let all = zoo.all()?;
    let mut tasks = Vec::new();
    let mut pending = Vec::new();
    let mut pairs = Vec::new();
    let mut gains = Vec::new();
    let mut draw_scores = Vec::new();
    for task in &gt.tasks {
        progress(&task.name);
        let GroundTruthTask {
            pool,
            draws: mut draw_rows,
            ..
        } = load_task(&dir, &task.name)?;
        if !task.scratch.is_empty() {
            draw_rows.truncate(task.scratch.len());
        }
        // every teacher's outputs on the whole pool, once
        let mut full: Vec<Entry> = Vec::new();
        for t in all.iter().filter(|t| task.teacher_mean.contains_key(&t.id)) {
            let mut r = TeacherResult::unscored(t);
            r.mark_compatible(
                outputs::compatibility(t, &pool).map_err(Error::invalid_input)?,
                &t.labels,
                &pool.labels,
            );
            let o = outputs::compute(zoo, t, &pool)?;
            full.push((r, Some((o, t.labels.clone()))));
        }
        let truth_of = |id: &str| task.teacher_mean[id];
        let (best_id, best) = task
            .teacher_mean
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k.clone(), *v))
            .ok_or_else(|| Error::invalid_input("a ground-truth task has no teachers"))?;
        let helps = best > task.scratch_mean;
        let mut per_metric: BTreeMap<String, Vec<[f64; 10]>> = BTreeMap::new();
        let mut picks: BTreeMap<String, Vec<DrawPick>> = BTreeMap::new();
        // per metric and draw: what the verdict rests on (called once the gain rule is fitted without
        // this task)
        let mut evidence: BTreeMap<String, Vec<Option<super::VerdictEvidence>>> = BTreeMap::new();
        for (d, (lab, unl)) in draw_rows.iter().enumerate() {
            let rows: Vec<usize> = lab.iter().chain(unl).copied().collect();
            let ds = pool.subset(&rows, lab.len());
            let entries: Vec<Entry> = full
                .iter()
                .map(|(r, o)| {
                    let o = o.as_ref().map(|(o, l)| {
                        (
                            TeacherOutputs {
                                probs: o.probs.select(Axis(0), &rows),
                                penultimate: o
                                    .penultimate
                                    .as_ref()
                                    .map(|(f, w)| (f.select(Axis(0), &rows), w.clone())),
                            },
                            l.clone(),
                        )
                    });
                    (r.clone(), o)
                })
                .collect();
            let scratch = super::scratch_estimate(&ds)?;
            let pool = super::pool(&ds)?;
            for m in &metric_names {
                let ranking = finish(
                    m,
                    &metric_names,
                    entries.clone(),
                    &ds,
                    Some(scratch.clone()),
                    pool.as_ref(),
                )?;
                let scored: Vec<&TeacherResult> = ranking
                    .results
                    .iter()
                    .filter(|r| r.score.is_some())
                    .collect();
                if scored.len() < 2 {
                    continue;
                }
                let sign = if direction(m) == Some(Direction::Lower) {
                    -1.0
                } else {
                    1.0
                };
                if m == super::DEFAULT_METRIC {
                    draw_scores.push(DrawScores {
                        task: task.name.clone(),
                        draw: d,
                        scratch_estimate: scratch.accuracy(),
                        scratch_measured: task.scratch.get(d).copied(),
                        teachers: scored
                            .iter()
                            .map(|r| TeacherScores {
                                teacher: r.teacher_id.clone(),
                                scores: r.scores.clone(),
                                truth: truth_of(&r.teacher_id),
                                measured: task
                                    .teachers
                                    .get(&r.teacher_id)
                                    .and_then(|v| v.get(d))
                                    .copied(),
                                tied_with_top: r.tied_with_top,
                            })
                            .collect(),
                    });
                    for r in &scored {
                        let measured = task.teachers.get(&r.teacher_id).and_then(|v| v.get(d));
                        if let (Some(&measured), Some(&mapped)) =
                            (measured, r.scores.get("mapped_accuracy"))
                        {
                            pairs.push(super::expected::Pair {
                                task: task.name.clone(),
                                teacher: r.teacher_id.clone(),
                                mapped: Some(mapped),
                                scratch: scratch.accuracy(),
                                measured,
                            });
                            if let Some(&s) = task.scratch.get(d) {
                                gains.push(GainSample {
                                    task: task.name.clone(),
                                    mapped,
                                    scratch: scratch.accuracy(),
                                    gain: measured - s,
                                });
                            }
                        }
                    }
                }
                let mut s: Vec<f64> = scored.iter().map(|r| sign * r.score.unwrap()).collect();
                // the ranking's order: its rank 1 first even where it was moved up from the top set
                let high = s.iter().copied().fold(f64::MIN, f64::max);
                if s[0] < high {
                    s[0] = high + 1.0;
                }
                let t: Vec<f64> = scored.iter().map(|r| truth_of(&r.teacher_id)).collect();
                let top = truth_of(&scored[0].teacher_id);
                let top_set: Vec<f64> = scored
                    .iter()
                    .filter(|r| r.rank == Some(1) || r.tied_with_top)
                    .map(|r| truth_of(&r.teacher_id))
                    .collect();
                let set_best = top_set.iter().copied().fold(f64::MIN, f64::max);
                evidence.entry(m.clone()).or_default().push(
                    ranking
                        .results
                        .iter()
                        .find(|r| r.rank == Some(1))
                        .map(|top| super::VerdictEvidence::of(top, &scratch)),
                );
                // the verdict columns and `helps` are filled in by `call_verdicts`
                picks.entry(m.clone()).or_default().push(DrawPick {
                    top: scored[0].teacher_id.clone(),
                    helps: false,
                    scores: scored
                        .iter()
                        .map(|r| r.teacher_id.clone())
                        .zip(s.iter().copied())
                        .collect(),
                });
                per_metric.entry(m.clone()).or_default().push([
                    f64::from(u8::from(best - top <= 0.01 + 1e-9)),
                    top,
                    spearman(&s, &t),
                    kendall(&s, &t),
                    weighted_tau(&s, &t),
                    0.0,
                    f64::from(u8::from(best - set_best <= 0.01 + 1e-9)),
                    top_set.len() as f64,
                    0.0,
                    0.0,
                ]);
            }
        }
        pending.push(Pending {
            eval: TaskEval {
                task: task.name.clone(),
                kind: task.kind.clone(),
                teachers: full.len(),
                best_teacher: best_id,
                best_accuracy: best,
                scratch_accuracy: task.scratch_mean,
                teacher_helps: helps,
                metrics: BTreeMap::new(),
                truth_noise: truth_noise(
                    &full
                        .iter()
                        .filter_map(|(r, _)| task.teachers.get(&r.teacher_id))
                        .collect::<Vec<_>>(),
                    draw_rows.len(),
                ),
            },
            teacher_mean: task.teacher_mean.clone(),
            per_metric,
            picks,
            evidence,
        });
    }
    // each task's verdicts under the gain rule fitted on the other tasks (the constant one without
    // per-draw measurements to fit on)
    for p in &mut pending {
        let rule = gain::fit(&gains, Some(&p.eval.task)).unwrap_or(gain::GAIN);
        p.call_verdicts(&rule);
    }
    for p in pending {
        let Pending {
            mut eval,
            teacher_mean,
            per_metric,
            picks,
            ..
        } = p;
        let (best, helps) = (eval.best_accuracy, eval.teacher_helps);
        let truth_of = |id: &str| teacher_mean[id];
        eval.metrics = per_metric
            .into_iter()
            .map(|(m, v)| {
                let mean = |k: usize| v.iter().map(|r| r[k]).sum::<f64>() / v.len() as f64;
                let (pick, majority_helps) = consensus(&picks[&m]);
                let consensus_within_1pt = best - truth_of(&pick) <= 0.01 + 1e-9;
                let means = mean_scores(&picks[&m]);
                let (ids, mean_scores): (Vec<&String>, Vec<f64>) = means.iter().unzip();
                let truths: Vec<f64> = ids.iter().map(|id| truth_of(id)).collect();
                (
                    m,
                    MetricOnTask {
                        consensus_pick: pick,
                        consensus_within_1pt,
                        consensus_verdict_right: majority_helps == helps,
                        top_within_1pt: mean(0),
                        top_pick_accuracy: mean(1),
                        spearman: mean(2),
                        kendall: mean(3),
                        weighted_tau: mean(4),
                        verdict_right: mean(5),
                        top_set_within_1pt: mean(6),
                        top_set_size: mean(7),
                        verdict_confident: mean(8),
                        confident_wrong: mean(9),
                        spearman_of_mean_score: spearman(&mean_scores, &truths),
                    },
                )
            })
            .collect();
        tasks.push(eval);
    }
    let mut summary = BTreeMap::new();
    for m in metric_names.iter().cloned() {
        let on: Vec<&MetricOnTask> = tasks.iter().filter_map(|t| t.metrics.get(&m)).collect();
        if let Some(v) = summarise(&on) {
            summary.insert(m, v);
        }
    }
    let held_out = held_out_selection(&tasks);
    let scratch_pairs: Vec<super::expected::Pair> = draw_scores
        .iter()
        .filter_map(|d| {
            Some(super::expected::Pair {
                task: d.task.clone(),
                teacher: "scratch".into(),
                mapped: None,
                scratch: d.scratch_estimate,
                measured: d.scratch_measured?,
            })
        })
        .collect();
    Ok(EvalReport {
        tasks,
        summary,
        held_out,
        expected: super::expected::evaluate(&pairs),
        expected_scratch: super::expected::evaluate(&scratch_pairs),
        gain: gain::evaluate(&gains),
        draws: draw_scores,
    })
}

/// Leave-one-task-out choice of the metric: for each task, the metric (single or combined) with the best
/// mean Spearman on the other tasks, judged on the left-out task. What a default chosen on the ground
/// truth is worth on a task it was not chosen on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    /// Per task: the metric chosen on the other tasks, and how it did on this one.
    pub per_task: Vec<(String, String, MetricOnTask)>,
    pub summary: MetricSummary,
}

fn held_out_selection(tasks: &[TaskEval]) -> Option<HeldOut> {
    let names: BTreeSet<&String> = tasks.iter().flat_map(|t| t.metrics.keys()).collect();
    let mut per_task = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let mean_elsewhere = |m: &String| {
            let v: Vec<f64> = tasks
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, o)| o.metrics.get(m).map(|x| x.spearman))
                .collect();
            // a metric missing on a task (too few teachers with features) counts as 0 there
            v.iter().sum::<f64>() / (tasks.len() - 1).max(1) as f64
        };
        let scored: Vec<(&String, f64)> = names
            .iter()
            .filter(|m| t.metrics.contains_key(**m))
            .map(|m| (*m, mean_elsewhere(m)))
            .collect();
        let (chosen, _) = scored
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(a.0)))?;
        per_task.push((
            t.task.clone(),
            chosen.to_string(),
            t.metrics[chosen.as_str()].clone(),
        ));
    }
    let on: Vec<&MetricOnTask> = per_task.iter().map(|x| &x.2).collect();
    Some(HeldOut {
        summary: summarise(&on)?,
        per_task,
    })
}

/// A metric's figures over the tasks it was judged on.
fn summarise(on: &[&MetricOnTask]) -> Option<MetricSummary> {
    if on.is_empty() {
        return None;
    }
    let mean = |f: fn(&MetricOnTask) -> f64| on.iter().map(|x| f(x)).sum::<f64>() / on.len() as f64;
    Some(MetricSummary {
        mean_spearman: mean(|x| x.spearman),
        mean_kendall: mean(|x| x.kendall),
        mean_weighted_tau: mean(|x| x.weighted_tau),
        tasks_top_within_1pt: on.iter().filter(|x| x.top_within_1pt == 1.0).count(),
        tasks_verdict_right: on.iter().filter(|x| x.verdict_right == 1.0).count(),
        tasks_top_set_within_1pt: on.iter().filter(|x| x.top_set_within_1pt == 1.0).count(),
        mean_top_set_size: mean(|x| x.top_set_size),
        tasks_confident_wrong: on.iter().filter(|x| x.confident_wrong > 0.0).count(),
        tasks_consensus_within_1pt: on.iter().filter(|x| x.consensus_within_1pt).count(),
        tasks_consensus_verdict_right: on.iter().filter(|x| x.consensus_verdict_right).count(),
        mean_spearman_of_mean_score: mean(|x| x.spearman_of_mean_score),
        tasks: on.len(),
    })
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The report as Markdown tables: one per task (metric columns), then the summary.
pub fn render(r: &EvalReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let metrics: Vec<&String> = r.summary.keys().collect();
    for t in &r.tasks {
        let _ = writeln!(
            s,
            "\n### {} ({}; {} teachers; best {} = {:.3}; scratch {:.3}; a teacher helps: {})\n",
            t.task,
            t.kind,
            t.teachers,
            t.best_teacher,
            t.best_accuracy,
            t.scratch_accuracy,
            t.teacher_helps
        );
        let _ = writeln!(
            s,
            "| metric | top pick within 1 pt | top pick acc | Spearman | Kendall | weighted tau | verdict right | top set within 1 pt | top set size | verdict confident | confident & wrong | consensus pick | consensus within 1 pt | majority verdict right |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
        );
        for m in &metrics {
            if let Some(v) = t.metrics.get(*m) {
                let _ = writeln!(
                    s,
                    "| {m} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
                    v.top_within_1pt,
                    v.top_pick_accuracy,
                    v.spearman,
                    v.kendall,
                    v.weighted_tau,
                    v.verdict_right,
                    v.top_set_within_1pt,
                    v.top_set_size,
                    v.verdict_confident,
                    v.confident_wrong,
                    v.consensus_pick,
                    yes_no(v.consensus_within_1pt),
                    yes_no(v.consensus_verdict_right)
                );
            }
        }
    }
    let _ = writeln!(s, "\n### Summary over {} tasks\n", r.tasks.len());
    let _ = writeln!(
        s,
        "| metric | mean Spearman | its score averaged over draws: mean Spearman | mean Kendall | mean weighted tau | tasks: top pick within 1 pt (every draw) | tasks: verdict right (every draw) | tasks: top set within 1 pt (every draw) | mean top set size | tasks: a confident verdict wrong | tasks: consensus pick within 1 pt | tasks: majority verdict right |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (m, v) in &r.summary {
        let _ = writeln!(
            s,
            "| {m} | {:.3} | {:.3} | {:.3} | {:.3} | {}/{} | {}/{} | {}/{} | {:.2} | {}/{} | {}/{} | {}/{} |",
            v.mean_spearman,
            v.mean_spearman_of_mean_score,
            v.mean_kendall,
            v.mean_weighted_tau,
            v.tasks_top_within_1pt,
            v.tasks,
            v.tasks_verdict_right,
            v.tasks,
            v.tasks_top_set_within_1pt,
            v.tasks,
            v.mean_top_set_size,
            v.tasks_confident_wrong,
            v.tasks,
            v.tasks_consensus_within_1pt,
            v.tasks,
            v.tasks_consensus_verdict_right,
            v.tasks
        );
    }
    if let Some(h) = &r.held_out {
        let _ = writeln!(
            s,
            "\n### The metric chosen on the other tasks (leave one task out), judged on the left-out one\n"
        );
        let _ = writeln!(
            s,
            "| left-out task | chosen | Spearman | its score averaged over draws | top pick within 1 pt (draws) | top pick: points below the best teacher (mean over draws) | consensus pick within 1 pt | verdict right (draws) | majority verdict right | the truth vs its expectation (split-half) | one draw's own students |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|");
        let task = |t: &str| r.tasks.iter().find(|x| x.task == t);
        let noise = |t: &str| task(t).and_then(|x| x.truth_noise.as_ref());
        // what the top pick costs against the best teacher, in points (the goal's "within 1 pt" as a size)
        let below = |t: &str, v: &MetricOnTask| {
            task(t).map(|x| {
                (
                    x.teacher_helps,
                    // (the mean of picks that are all the best one can fall a rounding error above it)
                    (100.0 * (x.best_accuracy - v.top_pick_accuracy)).max(0.0),
                )
            })
        };
        for (t, m, v) in &h.per_task {
            let _ = writeln!(
                s,
                "| {t} | {m} | {:.3} | {:.3} | {:.2} | {} | {} | {:.2} | {} | {} | {} |",
                v.spearman,
                v.spearman_of_mean_score,
                v.top_within_1pt,
                below(t, v).map_or("-".into(), |b| format!("{:.1}", b.1)),
                yes_no(v.consensus_within_1pt),
                v.verdict_right,
                yes_no(v.consensus_verdict_right),
                noise(t).map_or("-".into(), |n| format!("{:.3}", n.truth_vs_expected)),
                noise(t).map_or("-".into(), |n| format!("{:.3}", n.own_draw_spearman))
            );
        }
        let noise_mean = |f: fn(&TruthNoise) -> f64| {
            let v: Vec<f64> = h
                .per_task
                .iter()
                .filter_map(|(t, _, _)| noise(t).map(f))
                .collect();
            if v.len() == h.per_task.len() {
                format!("{:.3}", metrics::mean(&v))
            } else {
                "-".into()
            }
        };
        let v = &h.summary;
        let leep = r.summary.get("leep").map_or(f64::NAN, |l| l.mean_spearman);
        // one standard error over tasks, of the mean and of the paired difference to LEEP
        let held: Vec<f64> = h.per_task.iter().map(|x| x.2.spearman).collect();
        let diff: Vec<f64> = h
            .per_task
            .iter()
            .filter_map(|(t, _, m)| {
                let l = r.tasks.iter().find(|x| &x.task == t)?.metrics.get("leep")?;
                Some(m.spearman - l.spearman)
            })
            .collect();
        let belows: Vec<(bool, f64)> = h
            .per_task
            .iter()
            .filter_map(|(t, _, m)| below(t, m))
            .collect();
        let helps: Vec<f64> = belows.iter().filter(|b| b.0).map(|b| b.1).collect();
        let all: Vec<f64> = belows.iter().map(|b| b.1).collect();
        let _ = writeln!(
            s,
            "| **held out** | | {:.3} ± {:.3} ({:+.3} ± {:.3} vs leep's {:.3}, paired by task) | {:.3} | {}/{} tasks every draw | {:.2} (the {} tasks where a teacher helps: {:.2}, at most {:.1}) | {}/{} tasks | {}/{} tasks every draw | {}/{} tasks | {} | {} |",
            v.mean_spearman,
            metrics::standard_error(&held),
            metrics::mean(&diff),
            metrics::standard_error(&diff),
            leep,
            v.mean_spearman_of_mean_score,
            v.tasks_top_within_1pt,
            v.tasks,
            metrics::mean(&all),
            helps.len(),
            metrics::mean(&helps),
            helps.iter().cloned().fold(0.0, f64::max),
            v.tasks_consensus_within_1pt,
            v.tasks,
            v.tasks_verdict_right,
            v.tasks,
            v.tasks_consensus_verdict_right,
            v.tasks,
            noise_mean(|n| n.truth_vs_expected),
            noise_mean(|n| n.own_draw_spearman)
        );
        let _ = writeln!(
            s,
            "\n± is one standard error over the tasks. \"Its score averaged over draws\" ranks the teachers by the chosen \
             metric's score averaged over the task's draws: the metric's own expected order, free of any one draw's \
             few-shot noise. Its gain over the Spearman is the most that less noisy scores (more labeled rows) could \
             buy; what stays below the next column is the metric's order differing from the students'. \"The truth vs its expectation\" is the square root \
             of the truth's split-half reliability: how closely the truth (a mean over the draws) tracks what \
             infinitely many draws would give, which roughly bounds the agreement any metric can be expected to reach. \
             \"One draw's own students\" is what a ranker that knew how every teacher's student came out on one draw \
             scores, judged like the metrics: it shows how much one draw's outcome varies, and is not a bound \
             (a metric predicting the expected student can exceed it)."
        );
    }
    if let Some(e) = &r.expected {
        let _ = writeln!(
            s,
            "\n### Expected student accuracy, held out by task ({} pairs of (draw, teacher) on {} tasks)\n",
            e.pairs, e.tasks
        );
        let _ = writeln!(
            s,
            "| left-out task | pairs | mean abs error | inside the 80% interval |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for (t, n, mae, cov) in &e.per_task {
            let _ = writeln!(
                s,
                "| {t} | {n} | {:.1} pts | {:.0}% |",
                100.0 * mae,
                100.0 * cov
            );
        }
        let _ = writeln!(
            s,
            "| **all** | {} | {:.1} pts | {:.0}% |\n\nWithout a fit: the scratch estimate is off by {:.1} pts, the mapped accuracy by {:.1} pts. \
             Fit on every task: coefficients of [1, mapped, scratch, max] {:?}, residual 10th / 90th percentiles {:.3} / {:.3}.",
            e.pairs,
            100.0 * e.held_out_mae,
            100.0 * e.held_out_coverage,
            100.0 * e.mae_scratch_estimate,
            100.0 * e.mae_mapped_accuracy.unwrap_or(f64::NAN),
            e.fit.coef.map(|c| (c * 1e4).round() / 1e4),
            e.fit.low,
            e.fit.high
        );
    }
    if let Some(e) = &r.expected_scratch {
        let _ = writeln!(
            s,
            "\nThe scratch student, held out by task ({} draws): off by {:.1} pts, {:.0}% inside the 80% interval \
             (the ridge estimate itself is off by {:.1} pts). Fit on every task: coefficients of [1, scratch] \
             {:?}, residual 10th / 90th percentiles {:.3} / {:.3}.",
            e.pairs,
            100.0 * e.held_out_mae,
            100.0 * e.held_out_coverage,
            100.0 * e.mae_scratch_estimate,
            [e.fit.coef[0], e.fit.coef[1]].map(|c| (c * 1e4).round() / 1e4),
            e.fit.low,
            e.fit.high
        );
    }
    if let Some(g) = &r.gain {
        let _ = writeln!(
            s,
            "\n### The verdict's gain rule\n\nThe verdict says a teacher helps when the gain it expects from the \
             recommended teacher, a least-squares fit of the measured gain (the teacher's student minus the \
             scratch student, same draw) on [1, mapped, scratch] over {} (draw, teacher) pairs, is at least 0. \
             Every verdict column above is held out: a task's verdicts come from the rule fitted on the other \
             tasks. Held out, the expected gain is off by {} pts. Fit on every task: coefficients {:?}.",
            g.samples,
            g.held_out_mae
                .map_or("(no other task to fit on)".into(), |e| format!(
                    "{:.1}",
                    100.0 * e
                )),
            g.fit.coef.map(|c| (c * 1e3).round() / 1e3),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_correlations_match_known_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [5.0, 6.0, 7.0, 8.0, 7.0];
        // scipy.stats: spearmanr -> 0.8207826816681233, kendalltau (tau-b) -> 0.7378647873726218
        assert!((spearman(&a, &b) - 0.8207826816681233).abs() < 1e-12);
        assert!((kendall(&a, &b) - 0.7378647873726218).abs() < 1e-12);
        assert!((weighted_tau(&a, &a) - 1.0).abs() < 1e-12);
        let rev: Vec<f64> = a.iter().rev().copied().collect();
        assert!((weighted_tau(&a, &rev) + 1.0).abs() < 1e-12);
    }

    fn draw(top: &str, helps: bool, scores: &[(&str, f64)]) -> DrawPick {
        DrawPick {
            top: top.into(),
            helps,
            scores: scores.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn consensus_is_the_most_frequent_pick_then_the_higher_mean_score() {
        let d = [
            draw("a", true, &[("a", 0.9), ("b", 0.1)]),
            draw("b", false, &[("a", 0.1), ("b", 0.2)]),
            draw("b", false, &[("a", 0.1), ("b", 0.2)]),
        ];
        assert_eq!(consensus(&d), ("b".to_string(), false));
        // one pick each: "a" has the higher mean score (0.5 vs 0.15); 1 of 2 verdicts says helps -> helps
        assert_eq!(consensus(&d[..2]), ("a".to_string(), true));
        let flipped = [
            draw("a", true, &[("a", 0.1), ("b", 0.9)]),
            draw("b", true, &[("a", 0.1), ("b", 0.9)]),
        ];
        assert_eq!(consensus(&flipped).0, "b");
    }

    #[test]
    fn truth_noise_is_one_for_repeatable_students_and_lower_for_noisy_ones() {
        // three teachers whose students come out the same on every draw: the oracle is perfect
        let (a, b, c) = (
            vec![0.9, 0.9, 0.9],
            vec![0.5, 0.5, 0.5],
            vec![0.7, 0.7, 0.7],
        );
        let n = truth_noise(&[&a, &b, &c], 3).unwrap();
        assert!((n.own_draw_spearman - 1.0).abs() < 1e-12);
        assert!((n.other_draws_spearman - 1.0).abs() < 1e-12);
        // draws that disagree on the order of two close teachers
        let (a, b, c) = (
            vec![0.9, 0.9, 0.9],
            vec![0.71, 0.69, 0.72],
            vec![0.70, 0.72, 0.69],
        );
        let n = truth_noise(&[&a, &b, &c], 3).unwrap();
        assert!(n.own_draw_spearman < 1.0 && n.other_draws_spearman < n.own_draw_spearman);
        // split-half reliability: 1 for repeatable students; for students whose draws are noise around
        // spread-out means, below 1 and rising with the spread
        let rep = [vec![0.9; 4], vec![0.5; 4], vec![0.7; 4]];
        let rep: Vec<&Vec<f64>> = rep.iter().collect();
        assert!((split_half_reliability(&rep, 4) - 1.0).abs() < 1e-12);
        let noise = [0.02, -0.03, 0.01, 0.03, -0.02, -0.01];
        let noisy = |gap: f64| -> Vec<Vec<f64>> {
            (0..4)
                .map(|t| {
                    (0..6)
                        .map(|d| gap * t as f64 + noise[(d + 2 * t) % 6])
                        .collect()
                })
                .collect()
        };
        let (close, far) = (noisy(0.01), noisy(0.1));
        let rel = |v: &Vec<Vec<f64>>| split_half_reliability(&v.iter().collect::<Vec<_>>(), 6);
        assert!(
            rel(&close) < rel(&far) && rel(&far) < 1.0,
            "{} {}",
            rel(&close),
            rel(&far)
        );
        assert!(rel(&far) > 0.9);
        let n = truth_noise(&rep, 4).unwrap();
        assert!((n.truth_vs_expected - 1.0).abs() < 1e-12);
        // fewer than two draws, or a teacher short of draws: no estimate
        assert!(truth_noise(&[&a, &b], 1).is_none());
        assert!(truth_noise(&[&a, &vec![0.5]], 3).is_none());
        // sd([1, 2, 3, 4]) = 1.2909944, over sqrt(4)
        assert!(
            (metrics::standard_error(&[1.0, 2.0, 3.0, 4.0]) - 0.6454972243679028).abs() < 1e-12
        );
        assert_eq!(metrics::standard_error(&[1.0]), 0.0);
    }
}
