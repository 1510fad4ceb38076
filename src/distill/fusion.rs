//! Many teachers, one student (`multi_teacher`). Which teachers: a list of ids, or `auto:K` (the K best
//! of the ranking that are expected to help). How their outputs become one lesson (`fusion`): the mean
//! of their probabilities, a mean weighted by relatedness from the ranking, plurality and Borda votes
//! (ties broken by summed probability), the mean of per-teacher distillation losses, or one head per
//! teacher on a shared trunk (`mimic_all`, the prediction is the mean of the heads); `auto` trains each
//! rule and keeps the best on validation. A teacher with the task's label names enters through KD (its
//! columns permuted), any other through its label map, carried into the task's labels as `faculty` does
//! (`loss_avg` keeps its OT term).
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use super::{
    Fitted, HopTrial, Kind, Method, Progress, TeacherRef, Trainer, accuracy_of, argmax, methods,
};
use crate::data::Parsed;
use crate::error::{Error, Result};
use crate::rank::{self, OutputCache, Ranking, outputs};
use crate::zoo::{Teacher, Zoo};

use super::train::{Lesson, Split, Term};

/// How the teachers' outputs are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Each rule below trained in turn; the best on validation is delivered.
    #[default]
    Auto,
    /// The mean of the teachers' probabilities (in the task's labels).
    Mean,
    /// Their mean weighted by relatedness: w_k proportional to exp(-z_k), z_k how many standard errors
    /// the best teacher of the set is ahead of teacher k in the ranking's primary metric.
    Weighted,
    /// The class most teachers predict (one-hot target).
    Plurality,
    /// The class with the most Borda points (C-1 for a teacher's first choice .. 0 for its last).
    Borda,
    /// The mean of the per-teacher distillation losses (KD for the task's labels, OT otherwise).
    LossAvg,
    /// One head per teacher on a shared trunk, each head mimics its teacher; the exported student
    /// predicts the mean of its heads.
    MimicAll,
}

impl Fusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Mean => "mean",
            Self::Weighted => "weighted",
            Self::Plurality => "plurality",
            Self::Borda => "borda",
            Self::LossAvg => "loss_avg",
            Self::MimicAll => "mimic_all",
        }
    }

    /// The rules `auto` tries, in order (ties on validation go to the earlier one).
    pub const RULES: [Fusion; 6] = [
        Self::Mean,
        Self::Weighted,
        Self::Plurality,
        Self::Borda,
        Self::LossAvg,
        Self::MimicAll,
    ];
}

/// The teachers of a multi-teacher job: a list of ids, or `"auto:K"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TeacherSet {
    Ids(Vec<String>),
    Text(String),
}

/// A teacher set as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Chosen {
    Ids(Vec<String>),
    /// The K best of the ranking that are expected to help.
    Auto(usize),
}

impl TeacherSet {
    pub fn parse(&self) -> Result<Chosen> {
        match self {
            Self::Ids(ids) => {
                if ids.len() < 2 {
                    return Err(Error::invalid_input(format!(
                        "multi_teacher needs at least 2 teachers; got {}",
                        ids.len()
                    )));
                }
                for (k, id) in ids.iter().enumerate() {
                    if ids[..k].contains(id) {
                        return Err(Error::invalid_input(format!(
                            "teacher '{id}' is listed twice in teachers"
                        )));
                    }
                }
                Ok(Chosen::Ids(ids.clone()))
            }
            Self::Text(s) => {
                let k = s
                    .strip_prefix("auto:")
                    .and_then(|k| k.parse::<usize>().ok())
                    .ok_or_else(|| {
                        Error::invalid_input(format!(
                            "teachers must be a list of teacher ids or \"auto:K\" (K >= 2); got \"{s}\""
                        ))
                    })?;
                if k < 2 {
                    return Err(Error::invalid_input(format!(
                        "teachers \"auto:{k}\": K must be at least 2"
                    )));
                }
                Ok(Chosen::Auto(k))
            }
        }
    }
}

/// One teacher of the set, as the card shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FusedTeacher {
    pub id: String,
    pub name: String,
    /// Its weight in `weighted` fusion (shown for every rule; they sum to 1).
    pub weight: f64,
    /// Its own accuracy on the validation rows, carried into the task's labels.
    pub accuracy: Option<f64>,
    /// And on the test rows, when the job has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Its ranking score (the primary metric) and how many standard errors the set's best is ahead.
    pub score: Option<f64>,
    pub gap_z: Option<f64>,
    /// `kd` (the task's label names) or `faculty` (carried through its label map).
    pub enters_by: Method,
}

/// One rule trained (all of them under `auto`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FusionTrial {
    pub rule: Fusion,
    /// The fused teachers' own accuracy on the validation rows under this rule.
    pub ensemble_accuracy: Option<f64>,
    /// The student's.
    pub val_accuracy: Option<f64>,
    pub chosen: bool,
}

/// What fusion did, for the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FusionReport {
    /// The rule delivered.
    pub rule: Fusion,
    pub teachers: Vec<FusedTeacher>,
    /// The ensemble (mean of the teachers' probabilities) on the validation rows.
    pub ensemble_accuracy: Option<f64>,
    pub trials: Vec<FusionTrial>,
    /// How the teachers and their weights were chosen.
    pub how: String,
}

/// A teacher of the set with its outputs on the dataset's rows.
pub(super) struct Member {
    pub teacher: Teacher,
    /// In its own labels [N, C_t], and carried into the task's [N, C].
    pub probs: Array2<f32>,
    pub carried: Array2<f32>,
    pub info: FusedTeacher,
}

/// The teachers of a job with their outputs, weights and ranking.
pub(super) struct Ensemble {
    pub members: Vec<Member>,
    pub how: String,
}

impl Ensemble {
    /// The teachers as the card's chain lists them.
    pub fn chain(&self, selected_by: &str) -> Vec<TeacherRef> {
        self.members
            .iter()
            .map(|m| TeacherRef {
                id: m.teacher.id.clone(),
                name: m.teacher.name.clone(),
                sha256: m.teacher.sha256.clone(),
                accuracy: m.info.accuracy,
                selected_by: selected_by.to_string(),
            })
            .collect()
    }

    /// The fused prediction of `rule` on every row, in the task's labels [N, C] (the mean for the rules
    /// that fuse losses or heads rather than outputs).
    pub fn fused(&self, rule: Fusion) -> Array2<f32> {
        let carried: Vec<&Array2<f32>> = self.members.iter().map(|m| &m.carried).collect();
        match rule {
            Fusion::Weighted => {
                let w: Vec<f32> = self.members.iter().map(|m| m.info.weight as f32).collect();
                weighted_mean(&carried, &w)
            }
            Fusion::Plurality => vote(&carried, Votes::Plurality),
            Fusion::Borda => vote(&carried, Votes::Borda),
            _ => {
                let w = vec![1.0 / carried.len() as f32; carried.len()];
                weighted_mean(&carried, &w)
            }
        }
    }

    /// The lesson of `rule` on `split`.
    pub fn lesson(&self, rule: Fusion, ds: &Parsed, split: &Split) -> Lesson {
        let base = Lesson::scratch(&ds.y, split);
        let term = match rule {
            Fusion::LossAvg => Term::Many(
                self.members
                    .iter()
                    .map(|m| match m.info.enters_by {
                        Method::Kd => methods::kd(&m.teacher, &m.probs, ds, split).term,
                        _ => methods::faculty(&m.teacher, &m.probs, ds, split).term,
                    })
                    .collect(),
            ),
            Fusion::MimicAll => {
                Term::Heads(self.members.iter().map(|m| m.carried.clone()).collect())
            }
            r => Term::Soft {
                targets: self.fused(r),
            },
        };
        Lesson { term, ..base }
    }
}

/// Sum of w_k * p_k.
fn weighted_mean(ps: &[&Array2<f32>], w: &[f32]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(ps[0].raw_dim());
    for (p, &wk) in ps.iter().zip(w) {
        out.scaled_add(wk, p);
    }
    out
}

enum Votes {
    Plurality,
    Borda,
}

/// One-hot targets of the vote's winner per row; ties go to the larger summed probability.
fn vote(ps: &[&Array2<f32>], how: Votes) -> Array2<f32> {
    let (n, c) = ps[0].dim();
    let mut out = Array2::<f32>::zeros((n, c));
    for r in 0..n {
        let mut points = vec![0f64; c];
        let mut summed = vec![0f64; c];
        for p in ps {
            let row = p.row(r);
            for (j, v) in row.iter().enumerate() {
                summed[j] += f64::from(*v);
            }
            match how {
                Votes::Plurality => points[argmax(row.iter().copied())] += 1.0,
                Votes::Borda => {
                    let mut order: Vec<usize> = (0..c).collect();
                    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                    for (place, &j) in order.iter().enumerate() {
                        points[j] += (c - 1 - place) as f64;
                    }
                }
            }
        }
        let mut best = 0;
        for j in 1..c {
            if (points[j], summed[j]) > (points[best], summed[best]) {
                best = j;
            }
        }
        out[[r, best]] = 1.0;
    }
    out
}

/// Checks a multi-teacher request's teachers against the zoo and the rows (no training, no ranking).
pub(super) fn validate_set(zoo: &Zoo, ds: &Parsed, set: &Chosen) -> Result<Vec<Teacher>> {
    match set {
        Chosen::Ids(ids) => {
            let mut out = Vec::new();
            for id in ids {
                let t = zoo.get(id)?;
                outputs::compatibility(&t, ds).map_err(|r| {
                    Error::invalid_input(format!("teacher '{id}' cannot teach this dataset: {r}"))
                })?;
                out.push(t);
            }
            Ok(out)
        }
        Chosen::Auto(k) => {
            let fit = zoo
                .all()?
                .into_iter()
                .filter(|t| outputs::compatibility(t, ds).is_ok())
                .count();
            if fit < 2 {
                return Err(Error::invalid_input(format!(
                    "teachers \"auto:{k}\": {fit} teacher(s) in the zoo fit these rows {:?}; \
                     multi_teacher needs 2",
                    ds.row_shape()
                )));
            }
            if *k > fit {
                return Err(Error::invalid_input(format!(
                    "teachers \"auto:{k}\": K is out of range, {fit} teachers in the zoo fit these rows"
                )));
            }
            Ok(vec![])
        }
    }
}

/// Ranks the set (or the zoo for `auto:K`), picks the teachers, computes their outputs (showing
/// progress per teacher), carries them into the task's labels and weighs them.
#[allow(clippy::too_many_arguments)]
pub(super) fn gather(
    zoo: &Zoo,
    cache: &OutputCache,
    ds: &Parsed,
    ds_sha: &str,
    set: &Chosen,
    split: &Split,
    progress: &mut dyn Progress,
    notes: &mut Vec<String>,
) -> Result<Ensemble> {
    progress.phase("ranking", 0.0);
    let ids = match set {
        Chosen::Ids(ids) => Some(ids.clone()),
        Chosen::Auto(_) => None,
    };
    let ranking = super::rank_for(zoo, cache, ds, ds_sha, ids)?;
    let (picked, how) = match set {
        Chosen::Ids(ids) => (ids.clone(), "requested".to_string()),
        Chosen::Auto(k) => pick_auto(&ranking, *k, notes),
    };
    let mut members = Vec::new();
    let k = picked.len();
    for (i, id) in picked.iter().enumerate() {
        let t = zoo.get(id)?;
        progress.phase(
            &format!("teacher outputs {}/{k}: {id}", i + 1),
            0.02 + 0.03 * i as f64 / k as f64,
        );
        let (o, _) = outputs::cached(zoo, Some(cache), &t, ds, ds_sha)?;
        let carried = methods::carried(&t, &o.probs, ds, split);
        let result = ranking.results.iter().find(|r| r.teacher_id == *id);
        let enters_by = if methods::kd_permutation(&t, ds).is_some() {
            Method::Kd
        } else {
            Method::Faculty
        };
        let info = FusedTeacher {
            id: t.id.clone(),
            name: t.name.clone(),
            weight: 0.0,
            accuracy: accuracy_of(&carried.select(Axis(0), &split.val), &ds.y, &split.val),
            test_accuracy: None,
            score: result.and_then(|r| r.score),
            gap_z: result.and_then(|r| {
                if r.rank == Some(1) {
                    Some(0.0)
                } else {
                    r.gap_z
                }
            }),
            enters_by,
        };
        members.push(Member {
            teacher: t,
            probs: o.probs,
            carried,
            info,
        });
    }
    let weights = relatedness(&members);
    let equal = weights.is_none();
    for (m, w) in members
        .iter_mut()
        .zip(weights.unwrap_or_else(|| vec![1.0 / k as f64; k]))
    {
        m.info.weight = w;
    }
    let how = format!(
        "{how}; weights exp(-z) normalised, z = standard errors behind the set's best by {}{}",
        ranking.primary_metric,
        if equal {
            " (not available for this metric: equal weights)"
        } else {
            ""
        }
    );
    Ok(Ensemble { members, how })
}

/// Relatedness weights from the ranking's paired gaps, or `None` when the primary metric has none.
fn relatedness(members: &[Member]) -> Option<Vec<f64>> {
    let z: Option<Vec<f64>> = members.iter().map(|m| m.info.gap_z).collect();
    let z = z?;
    let least = z.iter().copied().fold(f64::INFINITY, f64::min);
    let e: Vec<f64> = z.iter().map(|v| (-(v - least)).exp()).collect();
    let s: f64 = e.iter().sum();
    Some(e.into_iter().map(|v| v / s).collect())
}

/// The `k` best-ranked teachers that are expected to help (their leave-one-out accuracy carried into
/// the task's labels at least the labeled-rows-only estimate); topped up with the next best when fewer
/// than 2 are.
fn pick_auto(ranking: &Ranking, k: usize, notes: &mut Vec<String>) -> (Vec<String>, String) {
    let scratch = ranking.verdict.scratch_estimate.unwrap_or(0.0);
    let mut ranked: Vec<_> = ranking
        .results
        .iter()
        .filter(|r| r.rank.is_some())
        .collect();
    ranked.sort_by_key(|r| r.rank);
    let helps = |r: &&rank::TeacherResult| {
        r.scores
            .get("mapped_accuracy")
            .is_some_and(|a| *a >= scratch)
    };
    let mut picked: Vec<String> = ranked
        .iter()
        .filter(|r| helps(r))
        .take(k)
        .map(|r| r.teacher_id.clone())
        .collect();
    if picked.len() < 2 {
        for r in &ranked {
            if picked.len() >= 2 {
                break;
            }
            if !picked.contains(&r.teacher_id) {
                picked.push(r.teacher_id.clone());
            }
        }
        notes.push(format!(
            "fewer than 2 teachers are expected to help by the ranking (leave-one-out accuracy at least \
             the labeled-rows-only {:.1}%): took the best-ranked ones anyway",
            100.0 * scratch
        ));
    } else if picked.len() < k {
        notes.push(format!(
            "auto:{k}: only {} teachers are expected to help by the ranking; fused those",
            picked.len()
        ));
    }
    (
        picked,
        format!(
            "auto:{k}: the best by {} expected to help",
            ranking.primary_metric
        ),
    )
}

/// Trains the student under `rule` (every rule under `auto`, keeping the best on validation). Returns
/// the student and the report, `None` when cancelled.
pub(super) fn teach(
    tr: &mut Trainer<'_>,
    ens: &Ensemble,
    ds: &Parsed,
    split: &Split,
    kind: &Kind,
    rule: Fusion,
    (from, to): (f64, f64),
) -> Result<Option<(Fitted, FusionReport)>> {
    let rules: Vec<Fusion> = match rule {
        Fusion::Auto => Fusion::RULES
            .into_iter()
            .filter(|r| *r != Fusion::MimicAll || matches!(kind, Kind::Net(_)))
            .collect(),
        r => vec![r],
    };
    let step = (to - from) / rules.len() as f64;
    // the best on validation accuracy, then on validation loss (a few validation rows tie often)
    let mut best: Option<(Fitted, (Option<f64>, f64), usize)> = None;
    let mut trials = Vec::new();
    for (i, &r) in rules.iter().enumerate() {
        let lesson = ens.lesson(r, ds, split);
        let heads_kind;
        let k = match (r, kind) {
            (Fusion::MimicAll, Kind::Net(a)) => {
                heads_kind = Kind::Net(super::Arch {
                    heads: ens.members.len(),
                    ..a.clone()
                });
                &heads_kind
            }
            _ => kind,
        };
        let phase = format!("training: fusion {}", r.as_str());
        let span = (from + step * i as f64, from + step * (i + 1) as f64);
        let Some(f) = tr.learn(k, &lesson, &phase, span)? else {
            return Ok(None);
        };
        let acc = tr.accuracy(&f.model, &ds.y, &split.val);
        let fused = ens.fused(r);
        let trial = FusionTrial {
            rule: r,
            ensemble_accuracy: accuracy_of(&fused.select(Axis(0), &split.val), &ds.y, &split.val),
            val_accuracy: acc,
            chosen: false,
        };
        tr.progress.trial(&HopTrial {
            hop: 1,
            model: format!("fusion {}", r.as_str()),
            parameters: f.model.parameters(),
            method: Method::MultiTeacher,
            weighting: Default::default(),
            val_accuracy: acc,
            student_val_accuracy: acc,
            kept: false,
            student_id: None,
            gain: None,
            gain_se: None,
        });
        trials.push(trial);
        let loss = f
            .training
            .best
            .as_ref()
            .and_then(|b| b.val_loss)
            .unwrap_or(f64::INFINITY);
        let key = (acc, -loss);
        if best.as_ref().is_none_or(|b| key > b.1) {
            best = Some((f, key, i));
        }
    }
    let (fitted, _, at) = best.expect("at least one rule");
    trials[at].chosen = true;
    let mean = ens.fused(Fusion::Mean);
    let report = FusionReport {
        rule: rules[at],
        teachers: ens.members.iter().map(|m| m.info.clone()).collect(),
        ensemble_accuracy: accuracy_of(&mean.select(Axis(0), &split.val), &ds.y, &split.val),
        trials,
        how: ens.how.clone(),
    };
    Ok(Some((fitted, report)))
}

/// The ensemble (mean of the carried probabilities) on rows outside the dataset (every one labeled), and
/// each teacher's accuracy on them, for the test report.
pub(super) fn ensemble_on(
    zoo: &Zoo,
    cache: &OutputCache,
    ens: &Ensemble,
    ds: &Parsed,
    split: &Split,
    other: &Parsed,
) -> Result<(Array2<f32>, Vec<f64>)> {
    let mut out: Option<Array2<f32>> = None;
    let mut each = Vec::new();
    let k = ens.members.len() as f32;
    let all: Vec<usize> = (0..other.rows()).collect();
    for m in &ens.members {
        let (o, _) = outputs::cached(zoo, Some(cache), &m.teacher, other, &other.sha256())?;
        let c = methods::carry_other(&m.teacher, &m.probs, ds, split, &o.probs);
        each.push(accuracy_of(&c, &other.y, &all).unwrap_or(0.0));
        let c = c / k;
        out = Some(match out {
            Some(a) => a + c,
            None => c,
        });
    }
    let mean = out.ok_or_else(|| Error::internal("an ensemble without teachers"))?;
    Ok((mean, each))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn votes_break_ties_by_summed_probability() {
        // row 0: plurality 2 votes for class 1; row 1: one vote each, class 2 has more probability
        let a = array![[0.1f32, 0.6, 0.3], [0.5, 0.2, 0.3]];
        let b = array![[0.2f32, 0.5, 0.3], [0.1, 0.3, 0.6]];
        let c = array![[0.7f32, 0.2, 0.1], [0.2, 0.4, 0.4]];
        let p = vote(&[&a, &b, &c], Votes::Plurality);
        assert_eq!(p.row(0).to_vec(), vec![0.0, 1.0, 0.0]);
        // row 1: votes 0 (a), 2 (b), 1 or 2 (c: tie 0.4/0.4 -> argmax first = 1): 1 each; summed
        // probabilities 0.8, 0.9, 1.3 -> class 2
        assert_eq!(p.row(1).to_vec(), vec![0.0, 0.0, 1.0]);
        // Borda row 0: a ranks 1,2,0; b 1,2,0; c 0,1,2 -> points 0:2, 1:5, 2:2 -> class 1
        let bo = vote(&[&a, &b, &c], Votes::Borda);
        assert_eq!(bo.row(0).to_vec(), vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn teacher_sets_parse_and_refuse() {
        let ok = TeacherSet::Ids(vec!["a".into(), "b".into()])
            .parse()
            .unwrap();
        assert_eq!(ok, Chosen::Ids(vec!["a".into(), "b".into()]));
        assert_eq!(
            TeacherSet::Text("auto:3".into()).parse().unwrap(),
            Chosen::Auto(3)
        );
        for bad in [
            TeacherSet::Ids(vec!["a".into()]),
            TeacherSet::Ids(vec!["a".into(), "b".into(), "a".into()]),
            TeacherSet::Text("auto:1".into()),
            TeacherSet::Text("auto:x".into()),
            TeacherSet::Text("best".into()),
        ] {
            assert!(bad.parse().is_err(), "{bad:?}");
        }
    }
}
