//! Expected student accuracy: how accurate the default student (`mlp:256`, method `faculty`, never worse
//! than scratch on validation) is likely to be when taught by a teacher, from two leave-one-out estimates
//! the ranking already has: the teacher carried into the task's labels (`mapped_accuracy`) and a ridge
//! classifier on the labeled rows alone (the verdict's scratch estimate). A least-squares fit of the
//! measured student accuracy on [1, mapped, scratch, max(mapped, scratch)], with an 80% interval from the
//! fit's residual quantiles; fitted by `faculty eval-ranking --ground-truth zoo/ground_truth_faculty.json`,
//! which also reports it held out by task (fit on the other tasks, judged on the left-out one). The same
//! kind of fit on [1, scratch] gives the scratch student's expected accuracy ([`SCRATCH_FIT`]): the ridge
//! estimate is not on a student's scale (with one labeled row a class it is 0, as every held-out row is its
//! class's only one), so a teacher's expected student is compared with the expected scratch student.
use serde::{Deserialize, Serialize};

/// The fit on every ground-truth task (`eval-ranking --ground-truth zoo/ground_truth_faculty.json`,
/// 2026-12-06, the truth re-measured with the Good-Turing label map and the mapped accuracy through the
/// distiller's map; 915 pairs on 19 tasks): coefficients of [1, mapped, scratch, max(mapped, scratch)],
/// then the 10th and 90th percentiles of the residuals held out by task.
pub const FIT: Calibration = Calibration {
    coef: [0.3266, 0.0152, 0.0107, 0.4738],
    low: -0.112,
    high: 0.119,
};

/// The scratch student's calibration (the same truth and command, 57 draws of 19 tasks; held out by task
/// off by 8.7 points, 79% inside the interval, where the ridge estimate itself is off by 12.5):
/// coefficients of [1, scratch] (the other two are 0), then the residual percentiles held out by task.
pub const SCRATCH_FIT: Calibration = Calibration {
    coef: [0.361, 0.4526, 0.0, 0.0],
    low: -0.121,
    high: 0.133,
};

/// A fitted calibration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub coef: [f64; 4],
    /// Residual quantiles (measured - predicted) that bound the 80% interval.
    pub low: f64,
    pub high: f64,
}

/// A teacher's expected student accuracy with its 80% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExpectedAccuracy {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// A taught student's features, or (`mapped` `None`) the scratch student's: [1, scratch, 0, 0].
fn features(mapped: Option<f64>, scratch: f64) -> [f64; 4] {
    match mapped {
        Some(m) => [1.0, m, scratch, m.max(scratch)],
        None => [1.0, scratch, 0.0, 0.0],
    }
}

impl Calibration {
    /// The expected accuracy for a teacher whose mapped accuracy is `mapped` on a task whose scratch
    /// estimate is `scratch` (both leave-one-out, 0..1).
    pub fn predict(&self, mapped: f64, scratch: f64) -> ExpectedAccuracy {
        self.predict_pair(Some(mapped), scratch)
    }

    /// The scratch student's expected accuracy on a task whose scratch estimate is `scratch` (a
    /// calibration fitted on scratch students, [`SCRATCH_FIT`]).
    pub fn predict_scratch(&self, scratch: f64) -> ExpectedAccuracy {
        self.predict_pair(None, scratch)
    }

    fn predict_pair(&self, mapped: Option<f64>, scratch: f64) -> ExpectedAccuracy {
        let x = features(mapped, scratch);
        let e: f64 = x.iter().zip(&self.coef).map(|(a, b)| a * b).sum();
        let e = e.clamp(0.0, 1.0);
        ExpectedAccuracy {
            estimate: e,
            low: (e + self.low).clamp(0.0, 1.0),
            high: (e + self.high).clamp(0.0, 1.0),
        }
    }
}

/// One measured (task, draw, teacher): the ranking's two estimates and the student's test accuracy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pair {
    pub task: String,
    pub teacher: String,
    /// `None`: the scratch student's pair (its own calibration).
    pub mapped: Option<f64>,
    pub scratch: f64,
    pub measured: f64,
}

/// The `q`-quantile of `v` (linear interpolation; `v` non-empty).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < v.len() {
        v[i] * (1.0 - f) + v[i + 1] * f
    } else {
        v[i]
    }
}

/// Least squares (ridge 1e-6 on the normal equations) of `measured` on the features, with the
/// in-sample residuals' 10th / 90th percentiles; `None` with fewer than 8 pairs.
fn fit_in_sample(pairs: &[&Pair]) -> Option<Calibration> {
    if pairs.len() < 8 {
        return None;
    }
    let coef = least_squares(
        pairs
            .iter()
            .map(|p| (features(p.mapped, p.scratch), p.measured)),
    )?;
    let raw = Calibration {
        coef,
        low: 0.0,
        high: 0.0,
    };
    let mut res: Vec<f64> = pairs
        .iter()
        .map(|p| p.measured - raw.predict_pair(p.mapped, p.scratch).estimate)
        .collect();
    Some(Calibration {
        coef,
        low: quantile(&mut res, 0.1),
        high: quantile(&mut res, 0.9),
    })
}

/// The least-squares fit on `pairs`, with the interval from residuals held out by task: each task's pairs
/// predicted by the fit on the other tasks. In-sample residuals made the interval too narrow for a new
/// task (an 80% interval covered 60% of held-out pairs): most of the error is a task's own shift.
pub fn fit(pairs: &[&Pair]) -> Option<Calibration> {
    let all = fit_in_sample(pairs)?;
    let tasks = distinct(pairs.iter().map(|p| p.task.as_str()));
    if tasks.len() < 3 {
        return Some(all);
    }
    let mut res = Vec::new();
    for t in &tasks {
        let rest: Vec<&Pair> = pairs.iter().copied().filter(|p| p.task != *t).collect();
        let c = fit_in_sample(&rest)?;
        res.extend(
            pairs
                .iter()
                .filter(|p| p.task == *t)
                .map(|p| p.measured - c.predict_pair(p.mapped, p.scratch).estimate),
        );
    }
    Some(Calibration {
        low: quantile(&mut res, 0.1),
        high: quantile(&mut res, 0.9),
        ..all
    })
}

/// The task names, sorted, each once (the folds of a leave-one-task-out evaluation).
pub(crate) fn distinct<'a>(tasks: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = tasks.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Least squares of `y` on `x` (ridge 1e-6 on the normal equations); `None` when they are singular.
pub(crate) fn least_squares<const N: usize>(
    samples: impl Iterator<Item = ([f64; N], f64)>,
) -> Option<[f64; N]> {
    let mut a = [[0.0f64; N]; N];
    let mut b = [0.0f64; N];
    for (x, y) in samples {
        for i in 0..N {
            for j in 0..N {
                a[i][j] += x[i] * x[j];
            }
            b[i] += x[i] * y;
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-6;
    }
    solve(a, b)
}

/// Gaussian elimination with partial pivoting.
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for c in 0..N {
        let p = (c..N).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..N {
            let (f, pivot) = (a[r][c] / a[c][c], a[c]);
            for (x, y) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * y;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; N];
    for r in (0..N).rev() {
        let s: f64 = (r + 1..N).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// The calibration judged held out by task, and fitted on every task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationReport {
    pub pairs: usize,
    pub tasks: usize,
    /// Held out by task: mean |measured - expected|.
    pub held_out_mae: f64,
    /// Held out by task: the fraction of pairs whose measured accuracy is inside the 80% interval.
    pub held_out_coverage: f64,
    /// The same two, per left-out task: (task, pairs, MAE, coverage).
    pub per_task: Vec<(String, usize, f64, f64)>,
    /// For comparison: mean |measured - scratch estimate| and |measured - mapped accuracy| (no fit).
    pub mae_scratch_estimate: f64,
    /// `None` for the scratch student's calibration.
    pub mae_mapped_accuracy: Option<f64>,
    /// The fit on every task (what [`FIT`] holds).
    pub fit: Calibration,
}

/// Leave-one-task-out evaluation, then the fit on all pairs.
pub fn evaluate(pairs: &[Pair]) -> Option<CalibrationReport> {
    let tasks = distinct(pairs.iter().map(|p| p.task.as_str()));
    let mut per_task = Vec::new();
    let (mut err, mut inside, mut n) = (0.0, 0usize, 0usize);
    for t in &tasks {
        let train: Vec<&Pair> = pairs.iter().filter(|p| p.task != *t).collect();
        let c = fit(&train)?;
        let test: Vec<&Pair> = pairs.iter().filter(|p| p.task == *t).collect();
        let (mut e, mut k) = (0.0, 0usize);
        for p in &test {
            let x = c.predict_pair(p.mapped, p.scratch);
            e += (p.measured - x.estimate).abs();
            k += usize::from(p.measured >= x.low && p.measured <= x.high);
        }
        per_task.push((
            t.to_string(),
            test.len(),
            e / test.len().max(1) as f64,
            k as f64 / test.len().max(1) as f64,
        ));
        err += e;
        inside += k;
        n += test.len();
    }
    let all: Vec<&Pair> = pairs.iter().collect();
    let mae = |f: fn(&Pair) -> f64| {
        pairs.iter().map(|p| (p.measured - f(p)).abs()).sum::<f64>() / pairs.len().max(1) as f64
    };
    Some(CalibrationReport {
        pairs: n,
        tasks: tasks.len(),
        held_out_mae: err / n.max(1) as f64,
        held_out_coverage: inside as f64 / n.max(1) as f64,
        per_task,
        mae_scratch_estimate: mae(|p| p.scratch),
        mae_mapped_accuracy: pairs
            .iter()
            .all(|p| p.mapped.is_some())
            .then(|| mae(|p| p.mapped.unwrap_or_default())),
        fit: fit(&all)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_linear_rule_and_its_spread() {
        // measured = 0.1 + 0.5 * max(m, s) + 0.3 * s, plus a +-0.02 alternation
        let pairs: Vec<Pair> = (0..40)
            .map(|i| {
                let (m, s) = ((i % 10) as f64 / 10.0, ((i * 7) % 10) as f64 / 12.0);
                Pair {
                    task: format!("t{}", i % 4),
                    teacher: String::new(),
                    mapped: Some(m),
                    scratch: s,
                    measured: 0.1
                        + 0.5 * m.max(s)
                        + 0.3 * s
                        + if i % 2 == 0 { 0.02 } else { -0.02 },
                }
            })
            .collect();
        let r = evaluate(&pairs).unwrap();
        let p = r.fit.predict(0.5, 0.2);
        assert!((p.estimate - (0.1 + 0.25 + 0.06)).abs() < 0.02, "{p:?}");
        assert!(
            r.fit.low < 0.0 && r.fit.high > 0.0 && r.fit.high - r.fit.low < 0.1,
            "{:?}",
            r.fit
        );
        assert!(r.held_out_mae < 0.03, "{}", r.held_out_mae);
        assert_eq!(r.tasks, 4);
        assert_eq!(r.pairs, 40);
        // the scratch student's calibration: [1, scratch] alone, no mapped accuracy to compare with
        let scratch: Vec<Pair> = pairs
            .iter()
            .map(|p| Pair {
                mapped: None,
                measured: 0.3 + 0.5 * p.scratch,
                ..p.clone()
            })
            .collect();
        let r = evaluate(&scratch).unwrap();
        assert!(
            (r.fit.predict_scratch(0.4).estimate - 0.5).abs() < 1e-4,
            "{:?}",
            r.fit
        );
        assert!(r.fit.coef[2].abs() < 1e-4 && r.fit.coef[3].abs() < 1e-4);
        assert_eq!(r.mae_mapped_accuracy, None);
        // with one labeled row a class the ridge estimate is 0; the scratch student is not
        assert!(SCRATCH_FIT.predict_scratch(0.0).estimate > 0.3);
    }
}
