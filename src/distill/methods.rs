//! The methods as lessons: each turns a teacher's outputs on the dataset's rows into what the student is
//! taught ([`Lesson`]), and says how well the teacher itself does in the student's labels. `kd` gives soft
//! targets (same label names), `faculty` the teacher's probabilities with a label cost for the OT term
//! (any label space), and `transfer` a first lesson in the teacher's own label space (the student's trunk
//! mimics the teacher on every row) whose trunk then gets a new head fitted on the labeled rows. The
//! training itself is in `train`; the order of stages and the choice of what to deliver are in `mod.rs`.
use ndarray::{Array2, Axis};

use super::student::{Arch, ParamTensor, Params};
use super::train::{Lesson, Split, Term};
use crate::data::Parsed;
use crate::rank::{self, metrics};
use crate::zoo::Teacher;

/// For `kd`: position of each student class in the teacher's output, when the teacher names the same
/// classes (in any order).
pub fn kd_permutation(teacher: &Teacher, ds: &Parsed) -> Option<Vec<usize>> {
    metrics::same_classes(&teacher.labels, &ds.labels)
}

/// P(student class | teacher class) [C_t, C], estimated from the training rows with the label-name prior.
fn label_map(teacher: &Teacher, probs: &Array2<f32>, ds: &Parsed, split: &Split) -> Array2<f64> {
    let yl: Vec<usize> = split.train.iter().map(|&r| ds.y[r] as usize).collect();
    let prior = metrics::name_prior(&teacher.labels, &ds.labels, rank::NAME_PRIOR);
    // the training rows in f64 at once, without an f32 copy of them first
    let train = Array2::from_shape_fn((split.train.len(), probs.ncols()), |(i, k)| {
        f64::from(probs[[split.train[i], k]])
    });
    metrics::distillation_map(train.view(), &yl, ds.classes(), prior.as_ref())
}

/// Rows carried a block at a time: an f64 copy of a 1,000-class teacher's outputs on every row would
/// double what the job holds.
const CARRY_ROWS: usize = 4096;

/// The teacher's probabilities carried into the student's labels [N, C]: columns permuted for a teacher
/// with the same label names, else through the label map.
pub fn carried(teacher: &Teacher, probs: &Array2<f32>, ds: &Parsed, split: &Split) -> Array2<f32> {
    match kd_permutation(teacher, ds) {
        Some(perm) => {
            let mut target = probs.select(Axis(1), &perm);
            for mut r in target.rows_mut() {
                let s = r.sum().max(1e-12);
                r /= s;
            }
            target
        }
        None => {
            let map = label_map(teacher, probs, ds, split);
            let mut out = Array2::<f32>::zeros((probs.nrows(), map.ncols()));
            for (p, mut o) in probs
                .axis_chunks_iter(Axis(0), CARRY_ROWS)
                .zip(out.axis_chunks_iter_mut(Axis(0), CARRY_ROWS))
            {
                o.assign(&p.mapv(f64::from).dot(&map).mapv(|v| v as f32));
            }
            out
        }
    }
}

/// The teacher's probabilities `other` on rows outside the dataset (a test split) carried into the student's
/// labels the same way: the permutation, or the label map estimated from the dataset's training rows.
pub fn carry_other(
    teacher: &Teacher,
    probs: &Array2<f32>,
    ds: &Parsed,
    split: &Split,
    other: &Array2<f32>,
) -> Array2<f32> {
    match kd_permutation(teacher, ds) {
        Some(_) => carried(teacher, other, ds, split),
        None => other
            .mapv(f64::from)
            .dot(&label_map(teacher, probs, ds, split))
            .mapv(|v| v as f32),
    }
}

/// A note for the card when the teacher reads rows the student learns from (at least 1% of them) as
/// classes that are no labeled training row's top class: what those rows are taught is the label map's
/// guess for classes no label speaks for. `None` for a teacher with the task's label names.
pub fn unseen_classes_note(
    teacher: &Teacher,
    probs: &Array2<f32>,
    ds: &Parsed,
    split: &Split,
) -> Option<String> {
    if kd_permutation(teacher, ds).is_some() {
        return None;
    }
    let top = |r: usize| super::argmax(probs.row(r).iter().copied());
    let seen: std::collections::HashSet<usize> = split.train.iter().map(|&r| top(r)).collect();
    let fit = split.fit_rows();
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for &r in &fit {
        let t = top(r);
        if !seen.contains(&t) {
            *counts.entry(t).or_default() += 1;
        }
    }
    let affected: usize = counts.values().sum();
    if affected == 0 || affected * 100 < fit.len() {
        return None;
    }
    let map = label_map(teacher, probs, ds, split);
    let mut sent = vec![0usize; ds.classes()];
    for &i in counts.keys() {
        sent[metrics::argmax(map.row(i))] += 1;
    }
    let mut by_rows: Vec<(usize, usize)> = counts.into_iter().collect();
    by_rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let name = |i: usize| {
        teacher
            .labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class {i}"))
    };
    let mut names: Vec<String> = by_rows.iter().take(8).map(|&(i, _)| name(i)).collect();
    if by_rows.len() > 8 {
        names.push(format!("{} more", by_rows.len() - 8));
    }
    let sent: Vec<String> = sent
        .iter()
        .enumerate()
        .filter(|&(_, &k)| k > 0)
        .map(|(j, k)| format!("{k} to '{}'", ds.labels[j]))
        .collect();
    Some(format!(
        "the teacher reads {affected} of the {} rows the student learns from ({:.0}%) as classes no labeled \
         training row shows ({}): no label says what those are, so the label map guesses from the \
         teacher's soft outputs and a Good-Turing lean (it sends {}); labeling a few of those rows pins \
         them down",
        fit.len(),
        100.0 * affected as f64 / fit.len() as f64,
        names.join(", "),
        sent.join(", ")
    ))
}

/// `kd`: the teacher's probabilities in the student's label order as soft targets.
pub fn kd(teacher: &Teacher, probs: &Array2<f32>, ds: &Parsed, split: &Split) -> Lesson {
    Lesson {
        term: Term::Soft {
            targets: carried(teacher, probs, ds, split),
        },
        ..Lesson::scratch(&ds.y, split)
    }
}

/// `faculty`: the teacher's probabilities in its own labels and the label cost 1 - P(student | teacher)
/// for the OT term.
pub fn faculty(teacher: &Teacher, probs: &Array2<f32>, ds: &Parsed, split: &Split) -> Lesson {
    Lesson {
        term: Term::Transport {
            cost: label_map(teacher, probs, ds, split).mapv(|v| 1.0 - v),
            probs: probs.clone(),
        },
        ..Lesson::scratch(&ds.y, split)
    }
}

/// `transfer`, first stage: in the teacher's label space, every row (labeled, unlabeled) is labeled with
/// the teacher's top class and taught the teacher's probabilities as soft targets; validation measures
/// agreement with the teacher on the validation rows.
pub fn mimic(probs: &Array2<f32>, split: &Split) -> Lesson {
    let y: Vec<i64> = probs
        .rows()
        .into_iter()
        .map(|r| super::argmax(r.iter().copied()) as i64)
        .collect();
    Lesson {
        y,
        split: Split {
            train: split.fit_rows(),
            val: split.val.clone(),
            unlabeled: vec![],
        },
        term: Term::Soft {
            targets: probs.clone(),
        },
        weights: None,
        frozen: 0,
    }
}

/// A trunk's parameters (every tensor but the last layer's) with a new, seeded head for `arch`.
pub fn with_new_head(trunk: &Params, arch: &Arch, seed: u64) -> Params {
    let fresh = arch.init(seed);
    let n = fresh.len();
    trunk[..n - 2]
        .iter()
        .cloned()
        .chain(fresh[n - 2..].iter().cloned())
        .collect::<Vec<ParamTensor>>()
}
