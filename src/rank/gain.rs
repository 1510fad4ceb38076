//! The verdict's expected gain: how much more accurate a student distilled from a teacher is expected to be
//! than one trained on the labeled rows alone, from the two leave-one-out estimates the ranking already has
//! (the teacher carried into the task's labels, `mapped_accuracy`, and the ridge scratch estimate). A
//! least-squares fit of the measured gain (the ground truth's KD student minus its scratch student, same
//! draw) on [1, mapped, scratch] over every (task, draw, teacher); `faculty eval-ranking` fits it on
//! `zoo/ground_truth.json` and judges the verdicts it gives held out by task (each task's verdicts from the
//! fit on the other tasks). Comparing the two estimates directly (gain = mapped - scratch) said "helps"
//! where a mediocre teacher beat a weak ridge estimate by more than its students beat scratch.
use serde::{Deserialize, Serialize};

use super::expected::{distinct, least_squares};

/// The fit on every ground-truth task (`faculty eval-ranking`, 2026-12-06, 3,050 (draw, teacher) pairs on
/// 19 tasks): coefficients of [1, mapped, scratch].
pub const GAIN: GainFit = GainFit {
    coef: [-0.165, 0.418, -0.179],
};

/// The most labeled rows of any ground-truth task the rule was fitted on (`letters_26way`, 10 a class):
/// with more, the verdict says the rule extrapolates.
pub const FITTED_UP_TO_ROWS: usize = 260;

/// A fitted gain rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GainFit {
    pub coef: [f64; 3],
}

impl GainFit {
    /// The expected gain (accuracy, -1..1) of a student taught by a teacher whose mapped accuracy is
    /// `mapped` over a scratch student, on a task whose scratch estimate is `scratch`.
    pub fn predict(&self, mapped: f64, scratch: f64) -> f64 {
        let [a, b, c] = self.coef;
        a + b * mapped + c * scratch
    }

    /// How many standard errors the expected gain is from 0, paired over the labeled rows: each row's
    /// term is the rule applied to its two leave-one-out hits (teacher, scratch), so the z of the rule
    /// `mapped - scratch` is the plain paired z of the two hit rates.
    pub fn z(&self, teacher_hits: &[f64], scratch_hits: &[f64]) -> Option<f64> {
        let [a, b, c] = self.coef;
        let t: Vec<f64> = teacher_hits.iter().map(|h| a + b * h).collect();
        let s: Vec<f64> = scratch_hits.iter().map(|h| -c * h).collect();
        super::metrics::paired_z(&t, &s)
    }
}

/// One measured (task, draw, teacher): the ranking's two estimates and the student's gain over scratch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GainSample {
    pub task: String,
    pub mapped: f64,
    pub scratch: f64,
    pub gain: f64,
}

/// The least-squares fit on the samples whose task is not `without`; `None` with fewer than 8 of them.
pub fn fit(samples: &[GainSample], without: Option<&str>) -> Option<GainFit> {
    let on: Vec<&GainSample> = samples
        .iter()
        .filter(|s| without != Some(s.task.as_str()))
        .collect();
    if on.len() < 8 {
        return None;
    }
    let coef = least_squares(on.iter().map(|s| ([1.0, s.mapped, s.scratch], s.gain)))?;
    Some(GainFit { coef })
}

/// The gain fit judged held out by task, and fitted on every task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GainReport {
    pub samples: usize,
    /// Held out by task: mean |measured gain - expected gain| over the samples of the tasks the other
    /// tasks could fit a rule for (`None` when none could: a lone task).
    pub held_out_mae: Option<f64>,
    /// The fit on every task (what [`GAIN`] holds).
    pub fit: GainFit,
}

/// Leave-one-task-out error of the fit, then the fit on all samples.
pub fn evaluate(samples: &[GainSample]) -> Option<GainReport> {
    let tasks = distinct(samples.iter().map(|s| s.task.as_str()));
    let (mut err, mut n) = (0.0, 0usize);
    for t in &tasks {
        let Some(f) = fit(samples, Some(t)) else {
            continue;
        };
        for s in samples.iter().filter(|s| s.task == *t) {
            err += (s.gain - f.predict(s.mapped, s.scratch)).abs();
            n += 1;
        }
    }
    Some(GainReport {
        samples: samples.len(),
        held_out_mae: (n > 0).then(|| err / n as f64),
        fit: fit(samples, None)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_linear_rule_and_its_z_generalises_the_paired_z() {
        let samples: Vec<GainSample> = (0..40)
            .map(|i| {
                let (m, s) = ((i % 10) as f64 / 10.0, ((i * 7) % 10) as f64 / 12.0);
                GainSample {
                    task: format!("t{}", i % 4),
                    mapped: m,
                    scratch: s,
                    gain: -0.1 + 0.5 * m - 0.2 * s,
                }
            })
            .collect();
        let r = evaluate(&samples).unwrap();
        for (got, want) in r.fit.coef.iter().zip([-0.1, 0.5, -0.2]) {
            assert!((got - want).abs() < 1e-4, "{:?}", r.fit);
        }
        assert!(r.held_out_mae.unwrap() < 1e-4);
        // one task: fitted, but nothing to hold it out against
        let lone: Vec<GainSample> = samples.iter().filter(|s| s.task == "t0").cloned().collect();
        let r = evaluate(&lone).unwrap();
        assert_eq!((r.samples, r.held_out_mae), (10, None));
        assert!(fit(&samples[..7], None).is_none());
        // the rule mapped - scratch gives the plain paired z
        let (t, s) = ([1.0, 1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0, 1.0]);
        let plain = GainFit {
            coef: [0.0, 1.0, -1.0],
        };
        assert_eq!(plain.z(&t, &s), super::super::metrics::paired_z(&t, &s));
        // a rule that needs a bigger lead turns the same rows into a lean against the teacher
        assert!(GAIN.z(&[1.0, 0.0, 0.0, 0.0, 1.0], &[1.0; 5]).unwrap() < 0.0);
    }
}
