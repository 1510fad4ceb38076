//! Distillation judged on the ground-truth tasks (`zoo/ground_truth.json`): for every task and draw of the
//! labeled shots, a `faculty` student with `teacher: auto` and a `scratch` student of the same
//! architecture, both measured on the task's held-out test rows in ONNX Runtime (the exported file, as a
//! user would run it). Extra (task, teacher) pairs force a teacher, e.g. a coarse teacher for a fine task.
use std::path::Path;

use serde::Serialize;

use super::{DistillRequest, Method, Quiet, onnx_accuracy, run};
use crate::error::{Error, Result};
use crate::rank::OutputCache;
use crate::rank::eval::{load_task, tasks};
use crate::store::Store;
use crate::zoo::Zoo;

/// One (task, method, teacher) line.
#[derive(Debug, Clone, Serialize)]
pub struct EvalLine {
    pub task: String,
    pub kind: String,
    pub method: String,
    /// `auto` or the forced teacher id.
    pub teacher: String,
    /// The teacher each draw used.
    pub chosen: Vec<String>,
    /// Test accuracy per draw.
    pub accuracy: Vec<f64>,
    pub mean: f64,
    /// The matching scratch student's mean.
    pub scratch_mean: f64,
    /// What the ground truth says: does the best teacher beat scratch?
    pub gt_teacher_helps: bool,
    pub seconds: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs the evaluation. `extra` lists (task, teacher id) pairs to distill with a forced teacher.
pub fn evaluate(
    zoo: &Zoo,
    gt_json: &Path,
    student: &str,
    config: &super::TrainConfig,
    only: Option<&[String]>,
    extra: &[(String, String)],
    progress: impl Fn(&str),
) -> Result<Vec<EvalLine>> {
    let dir = gt_json.with_extension("");
    let store = Store::temporary()?;
    let cache = OutputCache::open(&store)?;
    let mut lines = Vec::new();
    for (name, kind, _, _, helps) in tasks(gt_json)? {
        if only.is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let task = load_task(&dir, &name)?;
        let c = task.pool.classes();
        let mut runs: Vec<(Method, String)> = vec![
            (Method::Scratch, "-".into()),
            (Method::Faculty, "auto".into()),
        ];
        runs.extend(
            extra
                .iter()
                .filter(|e| e.0 == name)
                .map(|e| (Method::Faculty, e.1.clone())),
        );
        let mut scratch_mean = f64::NAN;
        for (method, teacher) in runs {
            progress(&format!("{name}: {} teacher {teacher}", method.as_str()));
            let start = std::time::Instant::now();
            let (mut acc, mut chosen) = (Vec::new(), Vec::new());
            for (lab, unl) in &task.draws {
                let rows: Vec<usize> = lab.iter().chain(unl).copied().collect();
                let ds = task.pool.subset(&rows, lab.len());
                let sha = ds.sha256();
                let mut req =
                    DistillRequest::new(&crate::data::dataset_id(&sha), method, &teacher, student);
                req.config = config.clone();
                let out = run(zoo, &cache, &ds, &sha, &req, None, &mut Quiet)?
                    .ok_or_else(|| Error::internal("evaluation run was cancelled"))?;
                acc.push(onnx_accuracy(
                    &out.onnx,
                    task.x_test.view(),
                    &task.y_test,
                    c,
                )?);
                chosen.push(
                    out.card
                        .teacher_chain
                        .first()
                        .map_or("-".to_string(), |t| t.id.clone()),
                );
            }
            let m = mean(&acc);
            if method == Method::Scratch {
                scratch_mean = m;
            }
            lines.push(EvalLine {
                task: name.clone(),
                kind: kind.clone(),
                method: method.as_str().into(),
                teacher,
                chosen,
                accuracy: acc,
                mean: m,
                scratch_mean,
                gt_teacher_helps: helps,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
    }
    Ok(lines)
}

/// The evaluation as a markdown table.
pub fn render(lines: &[EvalLine]) -> String {
    let mut s = String::from(
        "| task | kind | method | teacher | test accuracy (mean of draws) | vs scratch | ground truth: a teacher helps | teacher per draw |\n|---|---|---|---|---:|---:|---|---|\n",
    );
    for l in lines {
        let delta = if l.method == "scratch" {
            "-".to_string()
        } else {
            format!("{:+.1} pts", 100.0 * (l.mean - l.scratch_mean))
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} |\n",
            l.task,
            l.kind,
            l.method,
            l.teacher,
            l.mean,
            delta,
            if l.gt_teacher_helps { "yes" } else { "no" },
            l.chosen.join(", ")
        ));
    }
    s
}
