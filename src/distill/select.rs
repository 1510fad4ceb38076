//! How a job chooses between students trained on few labeled rows: the method of `auto`, a multihop hop,
//! the scratch fallback. A 20% validation split is 12 rows on a 60-row task, where one row is 8 points,
//! so by default every candidate is trained once per fold of a stratified k-fold cross-validation over
//! the labeled rows (the unlabeled pool on the training side of every fold), judged on all its folds'
//! held-out rows pooled, and only the chosen one is trained again on the job's own split and delivered.
//! Above `cv_max_labeled` labeled rows, or with `cv_folds: 0`, the validation split decides alone and the
//! candidates trained on it are the ones delivered.
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::train::{Split, TrainConfig};

/// The folds candidates are judged on.
pub struct Selector {
    /// Cross-validation folds, or the job's own split alone.
    pub folds: Vec<Split>,
    /// Whether `folds` are cross-validation folds (else `folds[0]` is the job's split, and what is
    /// trained on it can be delivered as it is).
    pub cv: bool,
    k: usize,
    repeats: usize,
    /// Seeded trainings behind the delivered student (`restarts` with cross-validation, else 1).
    restarts: usize,
}

impl Selector {
    /// Cross-validation when the config asks for it and the job has at most `cv_max_labeled` labeled
    /// rows (at least two folds with held-out rows), else the job's split.
    pub fn new(split: &Split, y: &[i64], classes: usize, cfg: &TrainConfig) -> Self {
        let labeled = split.train.len() + split.val.len();
        if cfg.cv_folds >= 2 && labeled <= cfg.cv_max_labeled {
            let k = cfg.cv_folds.min(labeled);
            let folds = Split::folds(y, classes, k, cfg.cv_repeats, cfg.seed);
            if folds.len() >= 2 {
                return Self {
                    folds,
                    cv: true,
                    k,
                    repeats: cfg.cv_repeats,
                    restarts: cfg.restarts,
                };
            }
        }
        Self::on_split(split)
    }

    /// The job's split alone: its validation rows judge.
    pub fn on_split(split: &Split) -> Self {
        Self {
            folds: vec![split.clone()],
            cv: false,
            k: 1,
            repeats: 1,
            restarts: 1,
        }
    }

    /// How many seeded trainings each training of the student (and of the baseline) is the best of,
    /// on every fold and when delivered: the config's `restarts` where cross-validation decides, else one
    /// (the split's many rows make a failed training rare and a repeated one costly).
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    /// An empty report naming the estimator, for the candidates to be added to.
    pub fn report(&self) -> SelectionReport {
        SelectionReport {
            estimator: if self.cv {
                format!(
                    "stratified {}-fold cross-validation over the labeled rows{}",
                    self.k,
                    if self.repeats > 1 {
                        format!(", repeated {} times", self.repeats)
                    } else {
                        String::new()
                    }
                )
            } else {
                "the validation split".into()
            },
            folds: self.k,
            repeats: self.repeats,
            rows: self.folds.iter().map(|f| f.val.len()).sum(),
            restarts: self.restarts,
            candidates: vec![],
            picked: String::new(),
            fallback: None,
        }
    }
}

/// Held-out hits pooled over folds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Score {
    /// Per held-out row, in the folds' order: whether the prediction was right (candidates judged on
    /// the same folds can be compared row by row).
    pub correct: Vec<bool>,
}

impl Score {
    /// Adds predictions `p` (row k predicts dataset row `rows[k]`) against labels `y`.
    pub fn add(&mut self, p: &Array2<f32>, y: &[i64], rows: &[usize]) {
        self.correct.extend(
            rows.iter()
                .zip(p.rows())
                .map(|(r, pr)| super::argmax(pr.iter().copied()) as i64 == y[*r]),
        );
    }

    /// Held-out rows judged.
    pub fn rows(&self) -> usize {
        self.correct.len()
    }

    /// Held-out rows predicted right.
    pub fn hits(&self) -> usize {
        self.correct.iter().filter(|&&c| c).count()
    }

    /// The pooled accuracy (`None` without rows).
    pub fn accuracy(&self) -> Option<f64> {
        (self.rows() > 0).then(|| self.hits() as f64 / self.rows() as f64)
    }

    /// How much more accurate this candidate is than `other` on the same held-out rows, and the
    /// standard error of that difference (paired by row); `None` unless both were judged on the same
    /// rows.
    pub fn gain_over(&self, other: &Score) -> Option<(f64, f64)> {
        let n = self.correct.len();
        if n < 2 || other.correct.len() != n {
            return None;
        }
        let d: Vec<f64> = self
            .correct
            .iter()
            .zip(&other.correct)
            .map(|(&a, &b)| f64::from(u8::from(a)) - f64::from(u8::from(b)))
            .collect();
        let mean = d.iter().sum::<f64>() / n as f64;
        Some((mean, crate::rank::metrics::standard_error(&d)))
    }

    /// `gain_over`, or where the two were not judged on the same rows the difference of their
    /// accuracies with no standard error.
    pub fn gain_or_difference(&self, other: &Score) -> (f64, f64) {
        self.gain_over(other).unwrap_or((
            self.accuracy().unwrap_or(0.0) - other.accuracy().unwrap_or(0.0),
            0.0,
        ))
    }
}

/// The gain, in standard errors, that the best of `k` candidates must show over what it would replace
/// under the one-standard-error rule: the rule's one-sided level for one candidate, 1 - Phi(1) = 0.159,
/// shared among the `k` (Bonferroni), because picking the largest of several noisy gains is itself a
/// source of gain. 1 for one candidate; 1.62 for three, 1.94 for six.
pub fn one_se_for_best_of(k: usize) -> f64 {
    let level = upper_tail(1.0) / k.max(1) as f64;
    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if upper_tail(mid) > level {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The standard normal's upper tail, 1 - Phi(z), for z >= 0 (Abramowitz and Stegun 7.1.26 for erfc,
/// absolute error under 1e-7).
fn upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// How the job's choices were made, on the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SelectionReport {
    /// What judged the candidates: cross-validation or the validation split.
    pub estimator: String,
    pub folds: usize,
    pub repeats: usize,
    /// Held-out labeled rows behind each estimate (pooled over folds and repeats).
    pub rows: usize,
    /// The delivered student (and each fold's) is the one of this many seeded trainings that reached
    /// the lowest training loss (config `restarts`, for a network with a hidden layer narrower than its
    /// outputs where cross-validation decides; else 1).
    #[serde(default = "one")]
    pub restarts: usize,
    /// The candidates the delivered student was chosen from, with their estimated accuracy.
    pub candidates: Vec<SelectionCandidate>,
    /// The candidate delivered.
    pub picked: String,
    /// The scratch fallback: how much more accurate the distilled student was than the scratch one on
    /// the rows that judged them, the standard error of that gain (paired by row), and the gain it
    /// needed to be delivered (0, or `no_help_margin_se` standard errors when the ranking's verdict was
    /// that no teacher helps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// The numbers behind the scratch fallback (see [`SelectionReport::fallback`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fallback {
    pub gain: f64,
    pub gain_se: f64,
    pub required_gain: f64,
    /// The ranking's verdict said no teacher is likely to help (`teacher: auto`).
    pub no_teacher_helps: bool,
    /// The margin asked for then, in standard errors (config `no_help_margin_se`).
    pub margin_se: f64,
}

impl Fallback {
    /// The distilled student's gain over the scratch one on the rows that judged both; `None` unless
    /// they were judged on the same (at least 2) rows.
    pub fn judge(
        distilled: &Score,
        scratch: &Score,
        no_teacher_helps: bool,
        margin_se: f64,
    ) -> Option<Self> {
        let (gain, gain_se) = distilled.gain_over(scratch)?;
        Some(Self {
            gain,
            gain_se,
            required_gain: if no_teacher_helps {
                margin_se * gain_se
            } else {
                0.0
            },
            no_teacher_helps,
            margin_se,
        })
    }

    /// Whether the scratch student is delivered because the ranking's verdict said no teacher helps and
    /// the distilled student did not beat scratch by the margin (a tie goes to scratch: the verdict
    /// already leans that way). A margin of 0 leaves the choice to the estimates alone.
    pub fn short_of_margin(&self) -> bool {
        self.no_teacher_helps && self.margin_se > 0.0 && self.gain <= self.required_gain
    }
}

fn one() -> usize {
    1
}

/// One candidate of a choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SelectionCandidate {
    pub name: String,
    pub accuracy: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_se_rule_asks_more_of_the_best_of_several() {
        // the normal's tail against known values
        for (z, tail) in [
            (0.0, 0.5),
            (1.0, 0.158_655),
            (1.959_964, 0.025),
            (3.0, 0.001_350),
        ] {
            assert!(
                (upper_tail(z) - tail).abs() < 1e-6,
                "{z}: {}",
                upper_tail(z)
            );
        }
        assert!((one_se_for_best_of(1) - 1.0).abs() < 1e-6);
        assert!((one_se_for_best_of(0) - 1.0).abs() < 1e-6);
        let (three, six) = (one_se_for_best_of(3), one_se_for_best_of(6));
        assert!((three - 1.617).abs() < 0.002, "{three}");
        assert!((six - 1.936).abs() < 0.002, "{six}");
    }

    #[test]
    fn a_gain_is_paired_by_row_with_its_standard_error() {
        let score = |c: &[bool]| Score {
            correct: c.to_vec(),
        };
        let a = score(&[true, true, true, false]);
        let b = score(&[true, false, true, false]);
        let (g, se) = a.gain_over(&b).unwrap();
        assert!((g - 0.25).abs() < 1e-12);
        // differences 0, 1, 0, 0: sd 0.5, so the standard error is 0.5 / 2
        assert!((se - 0.25).abs() < 1e-12, "{se}");
        assert_eq!(a.gain_over(&score(&[true])), None, "other rows");
        assert_eq!(a.gain_over(&a), Some((0.0, 0.0)));
    }

    #[test]
    fn folds_are_stratified_disjoint_and_cover_every_labeled_row_once_per_repeat() {
        // 3 classes of 7, 5 and 1 rows, and 4 unlabeled rows
        let mut y: Vec<i64> = [vec![0; 7], vec![1; 5], vec![2; 1], vec![-1; 4]].concat();
        y.rotate_left(5);
        let folds = Split::folds(&y, 3, 5, 2, 3);
        assert_eq!(folds.len(), 10);
        for rep in folds.chunks(5) {
            let mut seen: Vec<usize> = rep.iter().flat_map(|f| f.val.clone()).collect();
            seen.sort_unstable();
            let labeled: Vec<usize> = (0..y.len()).filter(|&i| y[i] >= 0).collect();
            assert_eq!(seen, labeled, "every labeled row held out once per repeat");
            for f in rep {
                assert!(f.val.iter().all(|r| !f.train.contains(r)));
                assert_eq!(f.train.len() + f.val.len(), 13);
                assert_eq!(f.unlabeled.len(), 4);
                // 13 rows over 5 folds: 2 or 3 held out each; class 0 (7 rows) 1 or 2 per fold
                assert!((2..=3).contains(&f.val.len()), "{f:?}");
                let c0 = f.val.iter().filter(|&&r| y[r] == 0).count();
                assert!((1..=2).contains(&c0), "{f:?}");
            }
        }
        assert_ne!(folds[0].val, folds[5].val, "a repeat reshuffles");
        assert_eq!(folds, Split::folds(&y, 3, 5, 2, 3), "seeded");
    }

    #[test]
    fn the_selector_falls_back_to_the_split_when_asked_or_when_rows_are_many() {
        let y: Vec<i64> = (0..40).map(|i| i % 2).collect();
        let split = Split::stratified(&y, 2, 0.2, 0);
        let cv = Selector::new(&split, &y, 2, &TrainConfig::default());
        assert!(cv.cv && cv.folds.len() == 5);
        assert_eq!(cv.report().rows, 40);
        for cfg in [
            TrainConfig {
                cv_folds: 0,
                ..Default::default()
            },
            TrainConfig {
                cv_max_labeled: 39,
                ..Default::default()
            },
        ] {
            let s = Selector::new(&split, &y, 2, &cfg);
            assert!(!s.cv && s.folds == vec![split.clone()]);
            assert_eq!(s.report().rows, split.val.len());
        }
    }

    #[test]
    fn a_verdict_of_no_help_asks_the_distilled_student_for_a_margin() {
        // the first `right` of `n` rows right
        let score = |right: usize, n: usize| Score {
            correct: (0..n).map(|i| i < right).collect(),
        };
        // 40 rows: the distilled student right on 30, scratch on 27 (3 more rows right, none worse)
        let d = score(30, 40);
        let s = score(27, 40);
        let f = Fallback::judge(&d, &s, false, 2.0).unwrap();
        assert!((f.gain - 0.075).abs() < 1e-12 && f.gain_se > 0.0);
        assert_eq!(f.required_gain, 0.0);
        assert!(
            !f.short_of_margin(),
            "without the verdict any gain is enough"
        );
        let f = Fallback::judge(&d, &s, true, 2.0).unwrap();
        assert!((f.required_gain - 2.0 * f.gain_se).abs() < 1e-12);
        assert!(f.gain < f.required_gain && f.short_of_margin(), "{f:?}");
        assert!(
            !Fallback::judge(&d, &s, true, 0.0)
                .unwrap()
                .short_of_margin()
        );
        // a large gain clears the margin; a tie does not (it goes to scratch)
        let far = score(38, 40);
        assert!(
            !Fallback::judge(&far, &s, true, 2.0)
                .unwrap()
                .short_of_margin()
        );
        assert!(
            Fallback::judge(&s, &s, true, 2.0)
                .unwrap()
                .short_of_margin()
        );
        // not judged on the same rows: nothing to say
        assert!(Fallback::judge(&d, &score(3, 3), true, 2.0).is_none());
    }

    #[test]
    fn scores_pool_hits_over_folds() {
        let mut s = Score::default();
        assert_eq!(s.accuracy(), None);
        let p = ndarray::array![[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4]];
        s.add(&p, &[0, 1, 1, 1], &[0, 2, 3]); // predicts 0, 1, 0 for labels 0, 1, 1
        s.add(&p.slice(ndarray::s![..1, ..]).to_owned(), &[1], &[0]);
        assert_eq!((s.hits(), s.rows()), (2, 4));
        assert_eq!(s.accuracy(), Some(0.5));
    }
}
