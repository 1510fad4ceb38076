//! Distillation: from a dataset, a method and (optionally) a teacher to a trained student exported as ONNX
//! with its card. `validate` does every cheap check up front, so a bad request is refused before any job
//! exists; `run` does the work (rank when the teacher is `auto`, teacher outputs from the ranking cache,
//! training, a scratch baseline on the same split, export, and an ONNX Runtime parity and latency check).
pub mod eval;
pub mod export;
pub mod student;
pub mod train;

use std::time::Instant;

use ndarray::{Array2, Axis, s};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::rank::{self, OutputCache, RankRequest, metrics, outputs};
use crate::zoo::{Teacher, Zoo};
pub use student::{Activation, Arch, StudentSpec};
pub use train::{Checkpoint, EpochMetrics, Signal, Split, TrainConfig};

/// How the student learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Cross-entropy on the labeled rows only: the baseline.
    Scratch,
    /// Hinton knowledge distillation; the teacher must share the dataset's label names.
    Kd,
    /// Cross-label distillation: cross-entropy plus an OT term between the teacher's and the student's
    /// predictions through the teacher-to-student label cost.
    #[default]
    Faculty,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::Kd => "kd",
            Self::Faculty => "faculty",
        }
    }
}

/// The student as given: the compact string (`"mlp:256"`) or the object form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StudentArg {
    Text(String),
    Spec(StudentSpec),
}

impl StudentArg {
    pub fn spec(&self) -> Result<StudentSpec> {
        match self {
            Self::Text(s) => StudentSpec::parse(s),
            Self::Spec(s) => Ok(s.clone()),
        }
    }
}

fn auto() -> String {
    "auto".into()
}

/// What to distill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DistillRequest {
    pub dataset_id: String,
    #[serde(default)]
    pub method: Method,
    /// A teacher id, or `auto` for the ranking's recommendation (ignored by `scratch`).
    #[serde(default = "auto")]
    pub teacher: String,
    /// `linear`, `mlp[:W1,W2][:act]`, `cnn[:C1,C2][:HIDDEN]`, or `{"kind": "mlp", "hidden": [256]}`.
    #[serde(default)]
    pub student: Option<StudentArg>,
    #[serde(default)]
    pub config: TrainConfig,
    /// A name for the student (default: dataset name, method and spec).
    #[serde(default)]
    pub name: Option<String>,
}

impl DistillRequest {
    pub fn new(dataset_id: &str, method: Method, teacher: &str, student: &str) -> Self {
        Self {
            dataset_id: dataset_id.into(),
            method,
            teacher: teacher.into(),
            student: Some(StudentArg::Text(student.into())),
            config: TrainConfig::default(),
            name: None,
        }
    }
}

/// A teacher in a student's chain, with its accuracy on the validation rows (mapped into the student's
/// labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeacherRef {
    pub id: String,
    pub name: String,
    pub sha256: String,
    pub accuracy: Option<f64>,
    /// How it was chosen: `requested`, or `auto: rank 1 by <metric>`.
    pub selected_by: String,
}

/// Held-out (validation split) accuracies, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accuracy {
    pub student: Option<f64>,
    /// A scratch student of the same architecture trained on the same split.
    pub scratch: Option<f64>,
    /// The teacher, carried into the student's labels.
    pub teacher: Option<f64>,
    pub validation_rows: usize,
    pub train_rows: usize,
    pub unlabeled_rows: usize,
}

/// Everything known about a trained student (the card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StudentCard {
    /// `st_` + the first 16 hex digits of the ONNX file's sha256.
    pub id: String,
    pub name: String,
    pub dataset_id: String,
    pub method: Method,
    /// The student spec in its compact form.
    pub student: String,
    pub labels: Vec<String>,
    /// One row's shape: the ONNX input is [N, ..input_shape].
    pub input_shape: Vec<usize>,
    pub parameters: usize,
    pub file_size: u64,
    pub sha256: String,
    pub teacher_chain: Vec<TeacherRef>,
    pub accuracy: Accuracy,
    /// Median ONNX Runtime latency for one row, one thread.
    pub latency_ms: f64,
    /// Largest |ONNX Runtime - burn| over the validation probabilities.
    pub onnx_max_abs_diff: f64,
    pub best_epoch: Option<usize>,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochMetrics>,
    pub config: TrainConfig,
    pub notes: Vec<String>,
    pub created: u64,
    pub faculty_version: String,
}

/// A finished distillation: the card and the ONNX bytes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub card: StudentCard,
    pub onnx: Vec<u8>,
}

/// What a running distillation tells its caller, and asks it.
pub trait Progress {
    /// Entering a phase; `progress` is the overall fraction done (0..1).
    fn phase(&mut self, _phase: &str, _progress: f64) {}
    /// An epoch of `phase` finished.
    fn epoch(&mut self, _phase: &str, _m: &EpochMetrics, _progress: f64) {}
    /// The teacher is known (after ranking, for `auto`).
    fn teacher(&mut self, _t: &TeacherRef) {}
    /// An epoch of the main training ended: `make` builds a checkpoint to keep for a restart (call it
    /// only when one is due; it copies the parameters and the history).
    fn checkpoint(&mut self, _make: &dyn Fn() -> Checkpoint) -> Result<()> {
        Ok(())
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that nobody watches.
pub struct Quiet;
impl Progress for Quiet {}

/// The teacher request after validation.
#[derive(Debug, Clone)]
pub struct Validated {
    pub spec: StudentSpec,
    /// `None` for scratch, and for `auto` until the ranking has run.
    pub teacher: Option<Teacher>,
}

/// For `kd`: position of each student class in the teacher's output, when the teacher names the same
/// classes (in any order).
fn kd_permutation(teacher: &Teacher, ds: &Dataset) -> Option<Vec<usize>> {
    let norm = |s: &str| s.trim().to_lowercase();
    if teacher.labels.len() != ds.labels.len() {
        return None;
    }
    ds.labels
        .iter()
        .map(|l| teacher.labels.iter().position(|t| norm(t) == norm(l)))
        .collect()
}

fn usable_for(t: &Teacher, ds: &Dataset, method: Method) -> std::result::Result<(), String> {
    outputs::compatibility(t, &ds.row_shape())?;
    if method == Method::Kd && kd_permutation(t, ds).is_none() {
        return Err(format!(
            "kd needs a teacher with the dataset's label names {:?}; teacher '{}' has {:?} (method \
             faculty distills across label spaces)",
            ds.labels, t.id, t.labels
        ));
    }
    Ok(())
}

/// Every check that needs no training: config, student spec against the rows, labeled rows, teacher
/// existence, compatibility and label space.
pub fn validate(zoo: &Zoo, ds: &Dataset, req: &DistillRequest) -> Result<Validated> {
    req.config.check()?;
    let spec = req
        .student
        .as_ref()
        .map(StudentArg::spec)
        .transpose()?
        .unwrap_or_default();
    Arch::new(
        &spec,
        &ds.row_shape(),
        ds.classes(),
        ds.flat().slice(s![..0, ..]),
    )?;
    let counts = ds.class_counts();
    if counts.iter().sum::<usize>() == 0 {
        return Err(Error::invalid_input(
            "the dataset has no labeled rows; a student needs some",
        ));
    }
    if counts.iter().filter(|c| **c > 0).count() < 2 {
        return Err(Error::invalid_input(
            "a student needs labeled rows of at least 2 classes",
        ));
    }
    if req.method == Method::Scratch {
        return Ok(Validated {
            spec,
            teacher: None,
        });
    }
    if req.teacher == "auto" {
        let all = zoo.all()?;
        if !all.iter().any(|t| usable_for(t, ds, req.method).is_ok()) {
            return Err(Error::invalid_input(format!(
                "no teacher in the zoo can teach this dataset with method {} (rows {:?}, labels {:?})",
                req.method.as_str(),
                ds.row_shape(),
                ds.labels
            )));
        }
        return Ok(Validated {
            spec,
            teacher: None,
        });
    }
    let t = zoo.get(&req.teacher)?;
    usable_for(&t, ds, req.method).map_err(|r| {
        Error::invalid_input(format!("teacher '{}' cannot teach this dataset: {r}", t.id))
    })?;
    Ok(Validated {
        spec,
        teacher: Some(t),
    })
}

/// Index of the largest value (first on ties).
pub fn argmax(v: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// Smoothing (pseudo-rows) of the teacher-to-student label map used for distillation.
const MAP_SMOOTH: f64 = 0.1;

/// Hooks for one training run inside `run`: progress mapped onto [from, to], checkpoints optional.
struct Stage<'a> {
    p: &'a mut dyn Progress,
    phase: &'static str,
    from: f64,
    to: f64,
    checkpoints: bool,
}

impl train::Hooks for Stage<'_> {
    fn on_epoch(
        &mut self,
        m: &EpochMetrics,
        total: usize,
        ck: &dyn Fn() -> Checkpoint,
    ) -> Result<()> {
        let f = self.from + (self.to - self.from) * (m.epoch as f64 / total.max(1) as f64);
        self.p.epoch(self.phase, m, f.min(self.to));
        if self.checkpoints {
            self.p.checkpoint(ck)?;
        }
        Ok(())
    }
    fn keep_going(&self) -> bool {
        !self.p.cancelled()
    }
}

/// Trains, evaluates and exports a student. Returns `None` when cancelled. `resume` continues the main
/// training from a checkpoint.
pub fn run(
    zoo: &Zoo,
    cache: &OutputCache,
    ds: &Dataset,
    ds_sha: &str,
    req: &DistillRequest,
    resume: Option<Checkpoint>,
    progress: &mut dyn Progress,
) -> Result<Option<Outcome>> {
    let v = validate(zoo, ds, req)?;
    let cfg = &req.config;
    let mut notes = Vec::new();
    let c_s = ds.classes();
    let dataset_id = crate::data::dataset_id(ds_sha);
    // 1. the teacher
    let (teacher, selected_by) = match (&v.teacher, req.method) {
        (_, Method::Scratch) => (None, String::new()),
        (Some(t), _) => (Some(t.clone()), "requested".to_string()),
        (None, method) => {
            progress.phase("ranking", 0.0);
            let ranking = rank::rank(
                zoo,
                Some(cache),
                ds,
                ds_sha,
                &RankRequest {
                    dataset_id: dataset_id.clone(),
                    ..Default::default()
                },
            )?;
            let pick = ranking
                .results
                .iter()
                .filter(|r| r.rank.is_some())
                .find(|r| {
                    zoo.get(&r.teacher_id)
                        .is_ok_and(|t| usable_for(&t, ds, method).is_ok())
                })
                .ok_or_else(|| Error::invalid_input("no compatible teacher to distill from"))?;
            if !ranking.verdict.teacher_helps {
                notes.push(format!(
                    "the ranking's verdict is that no teacher is likely to help ({}); distilled from \
                     the top pick anyway, compare with the scratch accuracy",
                    ranking.verdict.reason
                ));
            }
            (
                Some(zoo.get(&pick.teacher_id)?),
                format!(
                    "auto: rank {} by {} ({:.4})",
                    pick.rank.unwrap_or(0),
                    ranking.primary_metric,
                    pick.score.unwrap_or(f64::NAN)
                ),
            )
        }
    };
    // 2. data, split, architecture
    let split = Split::stratified(&ds.y, c_s, cfg.val_fraction, cfg.seed);
    if split.val.is_empty() {
        notes.push(
            "no class has 2 labeled rows: no validation split, the last epoch is kept".into(),
        );
    }
    let arch = Arch::new(&v.spec, &ds.row_shape(), c_s, ds.flat())?;
    let mut x = ds.flat().to_owned();
    arch.standardise(&mut x);
    // 3. the teacher's signal
    let mut chain = Vec::new();
    let signal = match &teacher {
        None => Signal::None,
        Some(t) => {
            progress.phase("teacher outputs", 0.02);
            let (o, hit) = outputs::cached(zoo, Some(cache), t, ds, ds_sha)?;
            notes.push(format!(
                "teacher outputs {} the ranking cache",
                if hit { "read from" } else { "computed into" }
            ));
            // the signal, and the teacher's predictions in the student's labels on the validation rows
            let (signal, mapped_val) = match req.method {
                Method::Kd => {
                    let perm = kd_permutation(t, ds).expect("validated");
                    let mut target = o.probs.select(Axis(1), &perm);
                    for mut r in target.rows_mut() {
                        let s = r.sum().max(1e-12);
                        r /= s;
                    }
                    let mapped_val = target.select(Axis(0), &split.val);
                    (Signal::Kd { target }, mapped_val)
                }
                _ => {
                    let p = o.probs.mapv(f64::from);
                    let yl: Vec<usize> = split.train.iter().map(|&r| ds.y[r] as usize).collect();
                    let prior = metrics::name_prior(&t.labels, &ds.labels, rank::NAME_PRIOR);
                    let map = metrics::label_map(
                        p.select(Axis(0), &split.train).view(),
                        &yl,
                        c_s,
                        prior.as_ref(),
                        MAP_SMOOTH,
                    );
                    let mapped_val = p.select(Axis(0), &split.val).dot(&map).mapv(|v| v as f32);
                    (
                        Signal::Faculty {
                            probs: p,
                            cost: map.mapv(|v| 1.0 - v),
                        },
                        mapped_val,
                    )
                }
            };
            let acc = accuracy_of(&mapped_val, &ds.y, &split.val);
            let r = TeacherRef {
                id: t.id.clone(),
                name: t.name.clone(),
                sha256: t.sha256.clone(),
                accuracy: acc,
                selected_by: selected_by.clone(),
            };
            progress.teacher(&r);
            chain.push(r);
            signal
        }
    };
    // 4. train
    let main_to = if teacher.is_some() { 0.85 } else { 0.95 };
    progress.phase("training", 0.05);
    let trained = train::train(
        &arch,
        x.view(),
        &ds.y,
        &signal,
        &split,
        cfg,
        resume,
        &mut Stage {
            p: progress,
            phase: "training",
            from: 0.05,
            to: main_to,
            checkpoints: true,
        },
    )?;
    if trained.cancelled {
        return Ok(None);
    }
    let dev = burn::tensor::Device::flex();
    let net = student::Net::from_params(&arch, &trained.params, &dev);
    let student_acc = (!split.val.is_empty())
        .then(|| {
            accuracy_of(
                &train::predict(&net, &arch, x.view(), &split.val),
                &ds.y,
                &split.val,
            )
        })
        .flatten();
    // 5. the scratch baseline on the same split
    let scratch_acc = if teacher.is_none() {
        student_acc
    } else {
        progress.phase("baseline", main_to);
        let base = train::train(
            &arch,
            x.view(),
            &ds.y,
            &Signal::None,
            &split,
            cfg,
            None,
            &mut Stage {
                p: progress,
                phase: "baseline",
                from: main_to,
                to: 0.95,
                checkpoints: false,
            },
        )?;
        if base.cancelled {
            return Ok(None);
        }
        let bnet = student::Net::from_params(&arch, &base.params, &dev);
        accuracy_of(
            &train::predict(&bnet, &arch, x.view(), &split.val),
            &ds.y,
            &split.val,
        )
    };
    // 6. export, parity, latency
    progress.phase("export", 0.96);
    let accuracy = Accuracy {
        student: student_acc,
        scratch: scratch_acc,
        teacher: chain.first().and_then(|t| t.accuracy),
        validation_rows: split.val.len(),
        train_rows: split.train.len(),
        unlabeled_rows: split.unlabeled.len(),
    };
    let created = crate::store::now_unix();
    let labels_json = serde_json::to_string(&ds.labels)?;
    let chain_json = serde_json::to_string(&chain)?;
    let acc_json = serde_json::to_string(&accuracy)?;
    let spec_s = v.spec.describe();
    let created_s = created.to_string();
    let meta: Vec<(&str, &str)> = vec![
        ("labels", &labels_json),
        ("method", req.method.as_str()),
        ("teachers", &chain_json),
        ("metrics", &acc_json),
        ("student", &spec_s),
        ("dataset_sha256", ds_sha),
        ("created", &created_s),
        ("faculty_version", env!("CARGO_PKG_VERSION")),
        ("producer", "faculty"),
    ];
    let onnx = export::to_onnx(&arch, &trained.params, &meta);
    let check_rows: Vec<usize> = if split.val.is_empty() {
        (0..ds.rows().min(256)).collect()
    } else {
        split.val.iter().copied().take(1024).collect()
    };
    let burn_p = train::predict(&net, &arch, x.view(), &check_rows);
    let (ort_p, latency_ms) = ort_check(&onnx, ds, &check_rows, c_s)?;
    let diff = (&ort_p - &burn_p).iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    if diff > 1e-3 {
        return Err(Error::internal(format!(
            "the exported ONNX model disagrees with the trained model by {diff:.2e}"
        )));
    }
    let sha256 = crate::zoo::teacher::sha256_hex(&onnx);
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("{} {} {}", &dataset_id, req.method.as_str(), spec_s));
    let card = StudentCard {
        id: format!("st_{}", &sha256[..16]),
        name,
        dataset_id,
        method: req.method,
        student: spec_s,
        labels: ds.labels.clone(),
        input_shape: ds.row_shape(),
        parameters: arch.param_count(),
        file_size: onnx.len() as u64,
        sha256,
        teacher_chain: chain,
        accuracy,
        latency_ms,
        onnx_max_abs_diff: diff,
        best_epoch: trained.best.as_ref().map(|b| b.epoch),
        epochs_run: trained.history.len(),
        stopped_early: trained.stopped_early,
        history: trained.history,
        config: cfg.clone(),
        notes,
        created,
        faculty_version: env!("CARGO_PKG_VERSION").into(),
    };
    progress.phase("done", 1.0);
    Ok(Some(Outcome { card, onnx }))
}

/// Accuracy of predictions `p` on dataset rows `rows` (row k of `p` predicts row `rows[k]`).
fn accuracy_of(p: &Array2<f32>, y: &[i64], rows: &[usize]) -> Option<f64> {
    if rows.is_empty() {
        return None;
    }
    let hits = rows
        .iter()
        .zip(p.rows())
        .filter(|(r, pr)| argmax(pr.iter().copied()) as i64 == y[**r])
        .count();
    Some(hits as f64 / rows.len() as f64)
}

/// Runs the exported model in ONNX Runtime on `rows` (raw, unstandardised: the graph standardises) and
/// measures the median single-row latency.
fn ort_check(
    onnx: &[u8],
    ds: &Dataset,
    rows: &[usize],
    classes: usize,
) -> Result<(Array2<f32>, f64)> {
    let mut session = crate::onnx::session::load_session(onnx, 1)?;
    let pred = student_predictor(&ds.row_shape(), classes);
    let x = ds.x.select(Axis(0), rows);
    let p = pred.predict(&mut session, x.view(), 1024)?;
    let one = ds.x.select(Axis(0), &rows[..1]);
    let mut times = Vec::new();
    for k in 0..25 {
        let t = Instant::now();
        pred.predict(&mut session, one.view(), 1)?;
        if k >= 5 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((p, times[times.len() / 2]))
}

/// How to run an exported student (input `input` [N, ..row_shape], output `probabilities`).
pub fn student_predictor(row_shape: &[usize], classes: usize) -> crate::onnx::Predictor {
    let mut shape = vec![-1i64];
    shape.extend(row_shape.iter().map(|&d| d as i64));
    crate::onnx::Predictor {
        input: "input".into(),
        input_shape: shape,
        output: "probabilities".into(),
        kind: crate::onnx::OutputKind::Probabilities,
        num_classes: classes,
    }
}

/// Accuracy of an exported student on rows `x` (first axis = rows) with labels `y`, in ONNX Runtime.
pub fn onnx_accuracy(
    onnx: &[u8],
    x: ndarray::ArrayViewD<'_, f32>,
    y: &[i64],
    classes: usize,
) -> Result<f64> {
    let mut session = crate::onnx::session::load_session(onnx, 0)?;
    let pred = student_predictor(&x.shape()[1..], classes);
    let p = pred.predict(&mut session, x, 1024)?;
    let rows: Vec<usize> = (0..y.len()).collect();
    Ok(accuracy_of(&p, y, &rows).unwrap_or(0.0))
}
