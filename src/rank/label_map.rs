//! The label map of one teacher on one task: which of the teacher's classes teach which of the task's.
//! From the teacher's (cached) outputs on the task's labeled rows: the transport plan of the OT score
//! (with a one-hot target the only feasible plan moves row n's mass p_n to its label, so
//! plan[i, j] = sum over rows of class j of p_n[i] / N), the conditional P(task j | teacher i) that
//! distillation carries the teacher's outputs through (`metrics::distillation_map`: the label-name prior,
//! and a teacher class no labeled row shows leaning where Good-Turing says the unseen classes are;
//! distillation estimates it on its training rows, this on all labeled rows), and the OT cost
//! 1 - P(j | i). Served at `GET /v1/rankings/{id}/teachers/{teacher_id}/label_map`.
use serde::{Deserialize, Serialize};

use super::metrics;
use super::outputs::{self, OutputCache};
use crate::error::{Error, Result};
use crate::zoo::{Teacher, Zoo};

/// Where most of a task class's mass comes from.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LabelPair {
    /// The teacher's class.
    pub teacher_class: String,
    /// The task's class.
    pub task_class: String,
    /// Share of the task class's rows' teacher mass on this teacher class (0..1).
    pub share: f64,
    /// P(task class | teacher class): how surely this teacher class means this task class.
    pub conditional: f64,
}

/// A teacher's label map on a task.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LabelMap {
    pub teacher_id: String,
    pub dataset_id: String,
    /// The teacher's class names (rows of the matrices).
    pub teacher_labels: Vec<String>,
    /// The task's class names (columns of the matrices).
    pub task_labels: Vec<String>,
    /// The transport plan [teacher class][task class]; sums to 1 over all cells.
    pub plan: Vec<Vec<f64>>,
    /// P(task class | teacher class) [teacher class][task class]; each row sums to 1.
    pub conditional: Vec<Vec<f64>>,
    /// The OT cost 1 - P(task class | teacher class).
    pub cost: Vec<Vec<f64>>,
    /// For each task class, the teacher class that carries most of its mass.
    pub pairs: Vec<LabelPair>,
    /// Teacher and task classes with the same name (the label-name prior applies to these).
    pub name_matches: Vec<(String, String)>,
    /// Labeled rows the map was estimated from.
    pub labeled_rows: usize,
}

/// The OT score's plan with a one-hot target: row n's mass p_n moved to its label, over N.
pub fn transport_plan(
    p: ndarray::ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
) -> ndarray::Array2<f64> {
    let mut plan = ndarray::Array2::<f64>::zeros((p.ncols(), c_s));
    for (row, &j) in p.rows().into_iter().zip(y) {
        let mut col = plan.column_mut(j);
        col += &row;
    }
    plan / y.len().max(1) as f64
}

fn rows(a: &ndarray::Array2<f64>) -> Vec<Vec<f64>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

/// The label map of `teacher` on the rows a ranking looks at (outputs from the cache when there).
pub fn label_map(
    zoo: &Zoo,
    cache: Option<&OutputCache>,
    teacher: &Teacher,
    ranked: &super::RankRows<'_>,
) -> Result<LabelMap> {
    let ds: &crate::data::Parsed = &ranked.ds;
    if let Err(reason) = outputs::compatibility(teacher, ds) {
        return Err(Error::invalid_input(format!(
            "teacher '{}' cannot read this dataset's rows, so it has no label map: {reason}",
            teacher.id
        )));
    }
    let (out, _) = outputs::cached(zoo, cache, teacher, ds, &ranked.cache_key())?;
    let labeled = ds.labeled();
    let y: Vec<usize> = labeled.iter().map(|&i| ds.y[i] as usize).collect();
    let p = out.probs.select(ndarray::Axis(0), &labeled).mapv(f64::from);
    let c_s = ds.classes();
    let c_t = p.ncols();
    let mut teacher_labels = teacher.labels.clone();
    teacher_labels.resize_with(c_t, String::new);
    for (i, l) in teacher_labels.iter_mut().enumerate() {
        if l.is_empty() {
            *l = format!("class {i}");
        }
    }
    let plan = transport_plan(p.view(), &y, c_s);
    let prior = metrics::name_prior(&teacher_labels, &ds.labels, super::NAME_PRIOR);
    let cond = metrics::distillation_map(p.view(), &y, c_s, prior.as_ref());
    let pairs = (0..c_s)
        .map(|j| {
            let col = plan.column(j);
            let total = col.sum().max(1e-300);
            let (i, m) = col
                .iter()
                .enumerate()
                .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            LabelPair {
                teacher_class: teacher_labels[i].clone(),
                task_class: ds.labels[j].clone(),
                share: m / total,
                conditional: cond[[i, j]],
            }
        })
        .collect();
    // the pairs the label-name prior put its pseudo-counts on
    let name_matches = prior
        .iter()
        .flat_map(|m| m.indexed_iter())
        .filter(|(_, v)| **v > 0.0)
        .map(|((i, j), _)| (teacher_labels[i].clone(), ds.labels[j].clone()))
        .collect();
    Ok(LabelMap {
        teacher_id: teacher.id.clone(),
        dataset_id: crate::data::dataset_id(&ranked.sha256),
        teacher_labels,
        task_labels: ds.labels.clone(),
        cost: rows(&cond.mapv(|v| 1.0 - v)),
        conditional: rows(&cond),
        plan: rows(&plan),
        pairs,
        name_matches,
        labeled_rows: y.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_sums_to_one_and_follows_the_mass() {
        // teacher class 0 fires on task class 1 rows and class 1 on task class 0 rows
        let p = ndarray::array![[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]];
        let y = [1usize, 1, 0, 0];
        let plan = transport_plan(p.view(), &y, 2);
        assert!((plan.sum() - 1.0).abs() < 1e-12);
        assert!((plan[[0, 1]] - 1.7 / 4.0).abs() < 1e-12, "{plan}");
        assert!((plan[[1, 0]] - 1.6 / 4.0).abs() < 1e-12, "{plan}");
        assert!(plan[[0, 0]] < plan[[1, 0]] && plan[[1, 1]] < plan[[0, 1]]);
    }
}
