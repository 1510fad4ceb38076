//! Distillation judged on the ground-truth tasks (`zoo/ground_truth.json`): for every task and draw of the
//! labeled shots, a `faculty` student with `teacher: auto` and a `scratch` student of the same
//! architecture, both measured on the task's held-out test rows in ONNX Runtime (the exported file, as a
//! user would run it). Extra (task, teacher) pairs force a teacher, e.g. a coarse teacher for a fine task.
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{DistillRequest, Method, Quiet, onnx_accuracy, run};
use crate::error::{Error, Result};
use crate::rank::OutputCache;
use crate::rank::eval::{GroundTruthTask, TaskHeader, load_task, tasks};
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
    /// Test accuracy per draw (the delivered student).
    pub accuracy: Vec<f64>,
    /// What each draw delivered: `scratch`, the method, or for `auto` / `multihop` the 1-hop method
    /// chosen (`chain of K` when a multihop chain was kept).
    pub picked: Vec<String>,
    /// Test accuracy per draw of the distilled student, delivered or not (the delivered one's for
    /// `scratch`).
    pub distilled: Vec<f64>,
    /// Per draw, the numbers behind the scratch fallback (the card's `selection.fallback`): the
    /// distilled student's gain over scratch where they were judged, its standard error, and whether
    /// the ranking's verdict was that no teacher helps.
    pub fallback: Vec<Option<super::select::Fallback>>,
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

/// Which of a ground truth's tasks, how many of each task's draws (the first ones), and which methods
/// (with teacher `auto`, beside scratch) to distill.
pub struct Scope {
    pub tasks: Option<Vec<String>>,
    pub draws: usize,
    pub methods: Vec<(Method, super::Weighting)>,
    /// Instead of the task's own draws of shots: this many labeled rows per draw (a seeded sample of the
    /// task's rows) and up to [`POOL_WITH_LABELED`] of the others as the unlabeled pool. Tasks with
    /// fewer rows than that are left out.
    pub labeled: Option<usize>,
    /// The unlabeled pool of every draw: up to this many of the task's rows that are not the draw's
    /// labeled ones (a seeded sample), instead of the draw's own pool (or [`POOL_WITH_LABELED`]).
    pub pool: Option<usize>,
    /// Where to write every draw's card (`TASK.METHOD.DRAW.card.json`), to see what a job chose and why.
    pub cards: Option<std::path::PathBuf>,
    /// The multihop runs' settings (`None`: the product's defaults).
    pub multihop: Option<super::MultihopOptions>,
}

/// The unlabeled pool beside `--labeled` rows.
pub const POOL_WITH_LABELED: usize = 500;

impl Scope {
    /// The task's data with at most `draws` draws; `None` when the task is not selected.
    fn load(&self, dir: &Path, name: &str) -> Result<Option<GroundTruthTask>> {
        if self
            .tasks
            .as_ref()
            .is_some_and(|o| !o.iter().any(|t| t == name))
        {
            return Ok(None);
        }
        let mut task = load_task(dir, name)?;
        if let Some(n) = self.labeled {
            let rows = task.pool.rows();
            if rows < n + POOL_WITH_LABELED.min(100) {
                return Ok(None);
            }
            task.draws = (0..self.draws as u64)
                .map(|d| {
                    let mut perm: Vec<usize> = (0..rows).collect();
                    super::student::SplitMix(0x1abe_11ed + d).shuffle(&mut perm);
                    let unl = perm[n..rows.min(n + POOL_WITH_LABELED)].to_vec();
                    perm.truncate(n);
                    (perm, unl)
                })
                .collect();
        }
        task.draws.truncate(self.draws);
        if let Some(n) = self.pool {
            let rows = task.pool.rows();
            for (d, (labeled, unl)) in task.draws.iter_mut().enumerate() {
                let taken: std::collections::HashSet<usize> = labeled.iter().copied().collect();
                let mut others: Vec<usize> = (0..rows).filter(|i| !taken.contains(i)).collect();
                super::student::SplitMix(0x9001 + d as u64).shuffle(&mut others);
                others.truncate(n);
                *unl = others;
            }
        }
        Ok(Some(task))
    }
}

/// Runs the evaluation. `extra` lists (task, teacher id) pairs to distill with a forced teacher.
pub fn evaluate(
    zoo: &Zoo,
    gt_json: &Path,
    student: &str,
    config: &super::TrainConfig,
    scope: &Scope,
    extra: &[(String, String)],
    progress: impl Fn(&str),
) -> Result<Vec<EvalLine>> {
    let dir = crate::rank::eval::task_dir(gt_json)?;
    let store = Store::temporary()?;
    let cache = OutputCache::open(&store)?;
    let mut lines = Vec::new();
    for TaskHeader {
        name,
        kind,
        teacher_helps: helps,
    } in tasks(gt_json)?
    {
        let Some(task) = scope.load(&dir, &name)? else {
            continue;
        };
        let none = super::Weighting::None;
        let mut runs: Vec<(Method, super::Weighting, String)> =
            vec![(Method::Scratch, none, "-".into())];
        runs.extend(
            scope
                .methods
                .iter()
                .map(|(m, w)| (*m, *w, "auto".to_string())),
        );
        runs.extend(
            extra
                .iter()
                .filter(|e| e.0 == name)
                .map(|e| (Method::Faculty, none, e.1.clone())),
        );
        let mut scratch_mean = f64::NAN;
        for (method, weighting, teacher) in runs {
            let label = super::multihop::method_label(method, weighting);
            progress(&format!("{name}: {label} teacher {teacher}"));
            let start = std::time::Instant::now();
            let mut req = DistillRequest::new("", method, &teacher, student);
            req.config = config.clone();
            req.weighting = weighting;
            if method == Method::Multihop {
                req.multihop = scope.multihop.clone();
            }
            let cards = scope
                .cards
                .as_ref()
                .map(|d| d.join(format!("{name}.{}", label.replace(['+', ':'], "_"))));
            let draws = match distill_draws(zoo, &cache, &task, &req, cards.as_deref()) {
                // a method that does not apply to the task (kd without a teacher naming its classes)
                Err(e)
                    if e.kind == crate::error::ErrorKind::InvalidInput
                        && method != Method::Scratch =>
                {
                    progress(&format!("{name}: {label} skipped: {}", e.message));
                    continue;
                }
                r => r?,
            };
            let acc: Vec<f64> = draws.iter().map(|d| d.accuracy).collect();
            let m = mean(&acc);
            if method == Method::Scratch {
                scratch_mean = m;
            }
            lines.push(EvalLine {
                task: name.clone(),
                kind: kind.clone(),
                method: label,
                teacher,
                chosen: draws.iter().map(|d| d.chosen.clone()).collect(),
                picked: draws.iter().map(|d| d.picked.clone()).collect(),
                distilled: draws.iter().map(|d| d.distilled).collect(),
                fallback: draws.iter().map(|d| d.fallback.clone()).collect(),
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

/// One draw's student.
struct Draw {
    /// Test accuracy of the delivered ONNX file in ONNX Runtime.
    accuracy: f64,
    /// The teacher used (`-` without one).
    chosen: String,
    /// What was delivered (see [`EvalLine::picked`]).
    picked: String,
    /// Test accuracy of the distilled student (before the scratch fallback).
    distilled: f64,
    fallback: Option<super::select::Fallback>,
}

/// Distills one student per draw of the task's labeled shots and scores each on the held-out test rows
/// (the exported ONNX file in ONNX Runtime; the distilled student on the card's test report).
fn distill_draws(
    zoo: &Zoo,
    cache: &OutputCache,
    task: &GroundTruthTask,
    template: &DistillRequest,
    cards: Option<&Path>,
) -> Result<Vec<Draw>> {
    let c = task.pool.classes();
    let test = crate::data::Parsed {
        x: crate::data::Rows::F32(task.x_test.clone()),
        y: task.y_test.clone(),
        labels: task.pool.labels.clone(),
    };
    let mut out = Vec::new();
    for (draw, (lab, unl)) in task.draws.iter().enumerate() {
        let rows: Vec<usize> = lab.iter().chain(unl).copied().collect();
        let ds = crate::data::Parsed::from(task.pool.subset(&rows, lab.len()));
        let sha = ds.sha256();
        let req = DistillRequest {
            dataset_id: crate::data::dataset_id(&sha),
            ..template.clone()
        };
        let data = super::TaskData {
            ds: &ds,
            sha256: &sha,
            test: Some(super::TestRows {
                dataset_id: "test".into(),
                ds: &test,
            }),
        };
        let out_ = run(zoo, cache, &data, &req, None, &mut Quiet)?
            .ok_or_else(|| Error::internal("evaluation run was cancelled"))?;
        let card = &out_.card;
        if let Some(stem) = cards {
            let mut path = stem.as_os_str().to_owned();
            path.push(format!(".{draw}.card.json"));
            std::fs::write(path, serde_json::to_vec_pretty(card)?)?;
        }
        let accuracy = onnx_accuracy(&out_.onnx, task.x_test.view(), &task.y_test, c)?;
        let picked = match (card.delivered, &card.multihop) {
            (super::Delivered::Scratch, _) => "scratch".to_string(),
            (_, Some(r)) if !r.chain.is_empty() => format!("chain of {}", r.chain.len() + 1),
            (_, Some(r)) => r.one_hop_method.as_str().to_string(),
            _ => card.method.as_str().to_string(),
        };
        let distilled = card
            .test
            .as_ref()
            .and_then(|t| t.distilled.as_ref())
            .map_or(accuracy, |e| e.accuracy);
        out.push(Draw {
            accuracy,
            chosen: card
                .teacher_chain
                .first()
                .map_or("-".to_string(), |t| t.id.clone()),
            picked,
            distilled,
            fallback: card.selection.as_ref().and_then(|s| s.fallback.clone()),
        });
    }
    Ok(out)
}

/// One task of a ground truth measured with faculty's own distillation: test accuracy per draw of a
/// scratch student and of a `faculty` student from every compatible teacher. Same fields as
/// `zoo/ground_truth.json`'s tasks, so `eval-ranking --ground-truth` reads it.
#[derive(Debug, Clone, Serialize)]
pub struct TruthTask {
    pub name: String,
    pub kind: String,
    pub scratch: Vec<f64>,
    pub teachers: BTreeMap<String, Vec<f64>>,
    pub scratch_mean: f64,
    pub teacher_mean: BTreeMap<String, f64>,
    pub best_teacher_mean: f64,
    pub teacher_helps: bool,
}

/// The whole file: where the task data lives (relative to the file) and how it was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub task_dir: String,
    pub protocol: String,
    pub student: String,
    pub config: super::TrainConfig,
    pub tasks: Vec<TruthTask>,
}

/// Measures the ground truth with faculty's own distiller: on every task and draw, a scratch student and
/// a `faculty` student from every teacher the task's inputs fit (the teachers `zoo/ground_truth.json`
/// lists for the task, so both truths cover the same pairs). `task_dir` is the task data's folder as the
/// written file should name it (relative to that file).
pub fn truth(
    zoo: &Zoo,
    gt_json: &Path,
    task_dir: &str,
    student: &str,
    config: &super::TrainConfig,
    scope: &Scope,
    progress: impl Fn(&str),
) -> Result<Truth> {
    let dir = crate::rank::eval::task_dir(gt_json)?;
    let listed = crate::rank::eval::task_teachers(gt_json)?;
    let store = Store::temporary()?;
    let cache = OutputCache::open(&store)?;
    let mut tasks_out = Vec::new();
    for TaskHeader { name, kind, .. } in tasks(gt_json)? {
        let Some(task) = scope.load(&dir, &name)? else {
            continue;
        };
        progress(&format!("{name}: scratch"));
        let request = |method: Method, teacher: &str| DistillRequest {
            config: config.clone(),
            ..DistillRequest::new("", method, teacher, student)
        };
        let accuracies = |req: &DistillRequest| -> Result<Vec<f64>> {
            Ok(distill_draws(zoo, &cache, &task, req, None)?
                .iter()
                .map(|d| d.accuracy)
                .collect())
        };
        let scratch = accuracies(&request(Method::Scratch, "-"))?;
        let mut teachers = BTreeMap::new();
        for id in listed.get(&name).into_iter().flatten() {
            progress(&format!("{name}: faculty from {id}"));
            let acc = accuracies(&request(Method::Faculty, id))?;
            teachers.insert(id.clone(), acc);
        }
        let teacher_mean: BTreeMap<String, f64> =
            teachers.iter().map(|(k, v)| (k.clone(), mean(v))).collect();
        let best = teacher_mean.values().copied().fold(f64::MIN, f64::max);
        let scratch_mean = mean(&scratch);
        tasks_out.push(TruthTask {
            name,
            kind,
            scratch,
            teachers,
            scratch_mean,
            best_teacher_mean: best,
            teacher_helps: best > scratch_mean,
            teacher_mean,
        });
    }
    Ok(Truth {
        task_dir: task_dir.into(),
        protocol: format!(
            "faculty's own distillation: per task and draw of labeled shots (the draws of {}), a scratch \
             student and a `faculty` student (CE + OT through the label map, labeled + unlabeled rows) from \
             each teacher, student `{student}`, the training config below; accuracy on the task's test rows \
             by the exported ONNX file in ONNX Runtime",
            gt_json.display()
        ),
        student: student.into(),
        config: config.clone(),
        tasks: tasks_out,
    })
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
