//! Distillation: from a dataset, a method and (optionally) a teacher to a trained student exported as ONNX
//! with its card. `validate` does every cheap check up front, so a bad request is refused before any job
//! exists; `run` (its stages in `pipeline`) does the work (rank when the teacher is `auto`, teacher
//! outputs from the ranking cache, training, a scratch baseline on the same split, export, and an ONNX
//! Runtime parity and latency check). This module holds the request, the card, the trainer and export.
pub mod augment;
pub mod budget;
pub mod eval;
pub mod export;
pub mod fusion;
pub mod methods;
pub mod multihop;
mod pipeline;
pub mod select;
pub mod student;
pub mod train;
pub mod tree;
pub mod weight_fusion;
mod weighted;
pub mod weighting;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::data::{Parsed, RowsView};
use crate::error::{Error, Result};
use crate::rank::{self, OutputCache, RankRequest, outputs};
use crate::zoo::{Teacher, Zoo};
pub use budget::{Budget, BudgetCandidate, BudgetReport};
pub use fusion::{Fusion, FusionReport, TeacherSet};
use methods::kd_permutation;
pub use multihop::{HopTrial, MultihopOptions, MultihopReport};
pub use pipeline::run;
pub use select::{SelectionCandidate, SelectionReport};
pub use student::{Activation, Arch, StudentSpec};
pub use train::{Checkpoint, EpochMetrics, Lesson, Split, Start, Term, TrainConfig};
pub use weight_fusion::{WeightFusionOptions, WeightFusionReport};
pub use weighting::{ProbeReport, Weighting, WeightingReport};

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
    /// Representation transfer: the student's trunk learns to reproduce the teacher's outputs in the
    /// teacher's own label space on every row, then a new head is fitted on the labeled rows and the
    /// whole student fine-tuned with them.
    Transfer,
    /// The best of kd, faculty and transfer on the validation rows (each where it applies).
    Auto,
    /// A chain of intermediate students from the teacher to the student, searched on validation (see
    /// `multihop`); never worse than the best 1-hop answer on validation.
    Multihop,
    /// Several teachers (`teachers`) fused into one lesson (`fusion`, see `distill::fusion`).
    MultiTeacher,
    /// Teachers sharing one MLP architecture fused in weight space into one student of that
    /// architecture (`weight_fusion` settings; see `distill::weight_fusion`).
    WeightFusion,
}

impl Method {
    /// Whether `config.mixup_pool` applies: the methods whose lesson is the teacher's outputs on the pool.
    pub fn grows_pool(self) -> bool {
        matches!(self, Self::Kd | Self::Faculty)
    }

    /// Whether the method searches among trainings (of methods, or chains) and judges each.
    pub fn searches(self) -> bool {
        matches!(self, Self::Auto | Self::Multihop)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::Kd => "kd",
            Self::Faculty => "faculty",
            Self::Transfer => "transfer",
            Self::Auto => "auto",
            Self::Multihop => "multihop",
            Self::MultiTeacher => "multi_teacher",
            Self::WeightFusion => "weight_fusion",
        }
    }
}

/// The student as given: the compact string (`"mlp:256"`) or the object form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StudentArg {
    Text(String),
    Spec(StudentSpec),
    /// `{"auto": {"max_params": N, "max_latency_ms": T}}`: the largest student within the budget.
    Budget {
        auto: Budget,
    },
}

impl StudentArg {
    pub fn spec(&self) -> Result<StudentSpec> {
        match self {
            Self::Text(s) => StudentSpec::parse(s),
            Self::Spec(s) => s.check().map(|_| s.clone()),
            Self::Budget { .. } => Err(Error::invalid_input(
                "a budget ({\"auto\": ...}) chooses the job's student; here give a student spec",
            )),
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
    /// Sample weights from probes on the teacher's inner layers: `none` (default), `profweight` or
    /// `sratio` (needs a neural teacher), or `auto`: the teacher's hop is taught under each of the three
    /// the teacher allows and the best on validation is kept (with `method: auto`, every method under
    /// every weighting; with `multihop`, as `hop_weightings` listing all three).
    #[serde(default)]
    pub weighting: Weighting,
    /// The teacher's tensors the probes read (default: its deepest activation layers, up to 4).
    #[serde(default)]
    pub probes: Option<Vec<String>>,
    /// Rows to report test accuracy on (a stored dataset with the same row shape and class names; every
    /// row labeled). Default: the test split the dataset came with, if any.
    #[serde(default)]
    pub eval_dataset_id: Option<String>,
    /// Settings of the multihop search (method `multihop`; defaults when absent).
    #[serde(default)]
    pub multihop: Option<MultihopOptions>,
    /// The teachers of `multi_teacher`: a list of ids, or `"auto:K"` (the K best of the ranking that are
    /// expected to help).
    #[serde(default)]
    pub teachers: Option<TeacherSet>,
    /// How `multi_teacher` fuses its teachers (default `auto`: each rule, the best on validation).
    #[serde(default)]
    pub fusion: Option<Fusion>,
    /// Settings of `weight_fusion` (defaults when absent).
    #[serde(default)]
    pub weight_fusion: Option<WeightFusionOptions>,
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
            weighting: Weighting::None,
            probes: None,
            eval_dataset_id: None,
            multihop: None,
            teachers: None,
            fusion: None,
            weight_fusion: None,
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
    /// The delivered student.
    pub student: Option<f64>,
    /// The distilled student (the delivered one unless the scratch student was better).
    #[serde(default)]
    pub distilled: Option<f64>,
    /// A scratch student of the same architecture trained on the same split.
    pub scratch: Option<f64>,
    /// The teacher, carried into the student's labels.
    pub teacher: Option<f64>,
    pub validation_rows: usize,
    pub train_rows: usize,
    /// The dataset's own unlabeled rows.
    pub unlabeled_rows: usize,
    /// Mixup rows the teacher labeled for the pool (`config.mixup_pool`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mixup_rows: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    /// The teachers the job distilled from, first to last. When `delivered` is `scratch` the file learned
    /// from none of them (they are the teachers it was compared with; the ONNX metadata's `teachers` is
    /// then empty and `teachers_tried` lists them).
    pub teacher_chain: Vec<TeacherRef>,
    /// Which student the file holds: the distilled one, or the scratch baseline when distillation lost to
    /// it on the validation rows (the notes say by how much).
    #[serde(default)]
    pub delivered: Delivered,
    pub accuracy: Accuracy,
    /// How a budget chose the student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetReport>,
    /// Accuracies on the dataset's test split or the job's `eval_dataset_id` (rows never trained on),
    /// with 95% intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestReport>,
    /// Median ONNX Runtime latency for one row, one thread.
    pub latency_ms: f64,
    /// Largest |ONNX Runtime - burn| over the validation probabilities.
    pub onnx_max_abs_diff: f64,
    /// The delivered student's training (the scratch baseline's when it is delivered): the epoch kept,
    /// the epochs run, whether it stopped early, and every epoch's metrics.
    pub best_epoch: Option<usize>,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochMetrics>,
    /// Multi-teacher: every teacher with its weight and accuracy, the ensemble's, each rule tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<FusionReport>,
    /// Weight fusion: the shared architecture, every fused model measured, the mixing weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_fusion: Option<WeightFusionReport>,
    /// Multihop / auto: every candidate tried and the chain kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multihop: Option<MultihopReport>,
    /// How the delivered student was chosen (distilled or scratch, and for `auto` / `multihop` every
    /// trial above): cross-validation over the labeled rows or the validation split, with the estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<SelectionReport>,
    /// ProfWeight / SRatio: the probes, the simple model and the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighting: Option<WeightingReport>,
    /// A tree student's rules, one per leaf, readable (empty for networks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    pub config: TrainConfig,
    pub notes: Vec<String>,
    pub created: u64,
    pub faculty_version: String,
}

/// Which of the two trained students a job delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivered {
    #[default]
    Distilled,
    Scratch,
}

/// A finished distillation: the card and the ONNX bytes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub card: StudentCard,
    pub onnx: Vec<u8>,
    /// A multihop chain's intermediate students, teacher side first (stored as students too).
    pub intermediates: Vec<Outcome>,
}

/// What a running distillation tells its caller, and asks it.
pub trait Progress {
    /// Entering a phase; `progress` is the overall fraction done (0..1).
    fn phase(&mut self, _phase: &str, _progress: f64) {}
    /// An epoch of `phase` finished.
    fn epoch(&mut self, _phase: &str, _m: &EpochMetrics, _progress: f64) {}
    /// The teacher is known (after ranking, for `auto`).
    fn teacher(&mut self, _t: &TeacherRef) {}
    /// A candidate of a method search (`auto`, `multihop`) was trained and judged.
    fn trial(&mut self, _t: &HopTrial) {}
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
    /// How a budget chose the spec.
    pub budget: Option<BudgetReport>,
    /// `None` for scratch, and for `auto` until the ranking has run.
    pub teacher: Option<Teacher>,
    /// Weight fusion: the teachers' shared MLP, read once here.
    pub family: Option<weight_fusion::Family>,
    /// Multihop: the candidate intermediates' architectures, bound here (for the memory check).
    pub intermediates: Vec<StudentSpec>,
}

fn usable_for(
    zoo: &Zoo,
    t: &Teacher,
    ds: &Parsed,
    req: &DistillRequest,
) -> std::result::Result<(), String> {
    outputs::compatibility(t, ds)?;
    // `auto` leaves out a weighting the teacher cannot give (the card says so)
    if req.weighting != Weighting::Auto && weightings(req).iter().any(|w| *w != Weighting::None) {
        weighting::probe_layers(zoo, t, req.probes.as_deref()).map_err(|e| e.message)?;
    }
    if req.method == Method::Multihop
        && let Some(p) = target_params(req, ds)
        && p as u64 >= t.params
    {
        return Err(format!(
            "multihop needs a student smaller than the teacher; student '{}' has {p} parameters, \
             teacher '{}' {}",
            req.student
                .as_ref()
                .and_then(|s| s.spec().ok())
                .unwrap_or_default()
                .describe(),
            t.id,
            t.params
        ));
    }
    if req.method == Method::Kd && kd_permutation(t, ds).is_none() {
        return Err(format!(
            "kd needs a teacher with the dataset's label names {:?}; teacher '{}' has {:?} (method \
             faculty distills across label spaces)",
            ds.labels, t.id, t.labels
        ));
    }
    Ok(())
}

/// The sample weightings a job's teacher hop uses: multihop's `hop_weightings` (each tried), all of them
/// for `weighting: auto`, else the job's `weighting`.
fn weightings(req: &DistillRequest) -> Vec<Weighting> {
    if req.weighting == Weighting::Auto {
        return Weighting::CHOICES.to_vec();
    }
    req.multihop
        .as_ref()
        .filter(|_| req.method == Method::Multihop)
        .and_then(|o| o.hop_weightings.clone())
        .unwrap_or_else(|| vec![req.weighting])
}

/// The parameter count of the requested network student on this dataset (`None` for a tree or a bad
/// spec: a tree's size is known once grown).
fn target_params(req: &DistillRequest, ds: &Parsed) -> Option<usize> {
    let spec = req
        .student
        .as_ref()
        .map_or(Ok(StudentSpec::default()), StudentArg::spec)
        .ok()?;
    if matches!(spec, StudentSpec::Tree { .. }) {
        return None;
    }
    Arch::new(&spec, &ds.row_shape(), ds.classes(), ds.view().range(0..0))
        .ok()
        .map(|a| a.param_count())
}

/// Every check that needs no training: config, student spec against the rows, labeled rows, teacher
/// existence, compatibility and label space.
pub fn validate(zoo: &Zoo, ds: &Parsed, req: &DistillRequest) -> Result<Validated> {
    req.config.check()?;
    if req.method.grows_pool() {
        augment::check_size(ds, req.config.mixup_pool)?;
    }
    let (spec, budget) = match &req.student {
        Some(StudentArg::Budget { auto }) => {
            let (spec, report) = budget::choose(auto, ds)?;
            (spec, Some(report))
        }
        Some(arg) => (arg.spec()?, None),
        None => (StudentSpec::default(), None),
    };
    if !matches!(spec, StudentSpec::Tree { .. }) {
        Arch::new(&spec, &ds.row_shape(), ds.classes(), ds.view().range(0..0))?;
    }
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
    if req.method == Method::Transfer
        && matches!(spec, StudentSpec::Linear | StudentSpec::Tree { .. })
    {
        return Err(Error::invalid_input(format!(
            "method transfer needs a network student with a hidden layer (its trunk learns the \
             teacher's representation); student '{}' has none: use faculty or kd",
            spec.describe()
        )));
    }
    let mut intermediates = Vec::new();
    if req.method == Method::Multihop {
        let opts = req.multihop.clone().unwrap_or_default();
        opts.check()?;
        intermediates = opts
            .candidates(ds, zoo)?
            .into_iter()
            .map(|c| c.spec)
            .collect();
        if opts.hop_weightings.is_some() && req.weighting != Weighting::None {
            return Err(Error::invalid_input(format!(
                "weighting {} and multihop.hop_weightings both choose the teacher hop's weights; give \
                 one (hop_weightings tries each it lists)",
                req.weighting.as_str()
            )));
        }
    } else if req.multihop.is_some() {
        return Err(Error::invalid_input(format!(
            "multihop settings are for method multihop, not {}",
            req.method.as_str()
        )));
    }
    if matches!(req.method, Method::MultiTeacher | Method::WeightFusion) {
        return validate_multi(zoo, ds, req, spec, budget);
    }
    if req.weight_fusion.is_some() {
        return Err(Error::invalid_input(format!(
            "weight_fusion settings are for method weight_fusion, not {}",
            req.method.as_str()
        )));
    }
    if req.teachers.is_some() || req.fusion.is_some() {
        return Err(Error::invalid_input(format!(
            "teachers and fusion are for method multi_teacher, not {} (it takes one teacher)",
            req.method.as_str()
        )));
    }
    if req.method == Method::Scratch && req.weighting != Weighting::None {
        return Err(Error::invalid_input(format!(
            "weighting {} needs a teacher (its probes read the teacher's layers); method scratch has none",
            req.weighting.as_str()
        )));
    }
    if req.method == Method::Scratch {
        return Ok(Validated {
            spec,
            budget,
            teacher: None,
            family: None,
            intermediates,
        });
    }
    if req.teacher == "auto" {
        let all = zoo.all()?;
        if !all.iter().any(|t| usable_for(zoo, t, ds, req).is_ok()) {
            return Err(Error::invalid_input(format!(
                "no teacher in the zoo can teach this dataset with method {} and weighting {} (rows \
                 {:?}, labels {:?})",
                req.method.as_str(),
                req.weighting.as_str(),
                ds.row_shape(),
                ds.labels
            )));
        }
        return Ok(Validated {
            spec,
            budget,
            teacher: None,
            family: None,
            intermediates,
        });
    }
    let t = zoo.get(&req.teacher)?;
    usable_for(zoo, &t, ds, req).map_err(|r| {
        Error::invalid_input(format!("teacher '{}' cannot teach this dataset: {r}", t.id))
    })?;
    if req.method == Method::Multihop {
        let opts = req.multihop.clone().unwrap_or_default();
        if multihop::first_hop_methods(&opts, &t, ds, &spec).is_empty() {
            let asked: Vec<&str> = opts.hop_methods.iter().map(|m| m.as_str()).collect();
            return Err(Error::invalid_input(format!(
                "multihop: none of hop_methods [{}] applies to teacher '{}' and student '{}' (kd needs \
                 a teacher with the dataset's label names, transfer a network student with a hidden \
                 layer; faculty always applies)",
                asked.join(", "),
                t.id,
                spec.describe()
            )));
        }
    }
    Ok(Validated {
        spec,
        budget,
        teacher: Some(t),
        family: None,
        intermediates,
    })
}

/// The checks of a multi-teacher request: its teacher set, fusion rule and what it cannot combine with.
fn validate_multi(
    zoo: &Zoo,
    ds: &Parsed,
    req: &DistillRequest,
    spec: StudentSpec,
    budget: Option<BudgetReport>,
) -> Result<Validated> {
    let refuse = |m: String| Err(Error::invalid_input(m));
    let m = req.method.as_str();
    if req.method == Method::WeightFusion && req.fusion.is_some() {
        return refuse(
            "fusion rules are for method multi_teacher; weight_fusion takes weight_fusion settings"
                .into(),
        );
    }
    if req.method == Method::MultiTeacher && req.weight_fusion.is_some() {
        return refuse("weight_fusion settings are for method weight_fusion".into());
    }
    if req.teacher != "auto" {
        return refuse(format!(
            "method {m} takes its teachers in `teachers` (a list of ids or \"auto:K\"), \
             not `teacher` ('{}')",
            req.teacher
        ));
    }
    if let Some(o) = &req.weight_fusion {
        o.check()?;
    }
    if req.weighting != Weighting::None {
        return refuse(format!(
            "weighting {} is for one teacher; method {m} fuses several",
            req.weighting.as_str()
        ));
    }
    if req.fusion == Some(Fusion::MimicAll) && matches!(spec, StudentSpec::Tree { .. }) {
        return refuse(
            "fusion mimic_all gives a network one head per teacher; a tree student has no heads: use mean, weighted, plurality, borda or loss_avg"
                .into(),
        );
    }
    let Some(set) = &req.teachers else {
        return refuse(format!(
            "method {m} needs `teachers`: a list of at least 2 teacher ids{}",
            if req.method == Method::MultiTeacher {
                ", or \"auto:K\""
            } else {
                ""
            }
        ));
    };
    let chosen = set.parse()?;
    let teachers = fusion::validate_set(zoo, ds, &chosen)?;
    if req.method == Method::WeightFusion {
        if matches!(chosen, fusion::Chosen::Auto(_)) {
            return refuse(
                "weight_fusion needs teachers that share one architecture: list them (teachers: \
                 [ids]); auto:K is for multi_teacher"
                    .into(),
            );
        }
        let fam = weight_fusion::family(zoo, &teachers, ds)?;
        if req.student.is_some() && spec != fam.spec {
            return refuse(format!(
                "weight_fusion builds a student of the teachers' own architecture ({}); leave student \
                 out or give that one, not '{}'",
                fam.spec.describe(),
                spec.describe()
            ));
        }
        return Ok(Validated {
            spec: fam.spec.clone(),
            budget: None,
            teacher: None,
            family: Some(fam),
            intermediates: Vec::new(),
        });
    }
    Ok(Validated {
        spec,
        budget,
        teacher: None,
        family: None,
        intermediates: Vec::new(),
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

/// Hooks for one training inside `run`: progress mapped onto [from, to], the stage's name on its epochs,
/// and checkpoints of the delivered student's trainings tagged with their stage.
struct StageHooks<'a> {
    p: &'a mut dyn Progress,
    phase: &'a str,
    index: usize,
    span: (f64, f64),
    /// Stop (as if cancelled) when this instant passes: a search's time budget.
    deadline: Option<std::time::Instant>,
}

impl StageHooks<'_> {
    fn stage_name(&self) -> Option<String> {
        self.phase.strip_prefix("training: ").map(String::from)
    }
}

impl train::Hooks for StageHooks<'_> {
    fn on_epoch(
        &mut self,
        m: &EpochMetrics,
        total: usize,
        ck: &dyn Fn() -> Checkpoint,
    ) -> Result<()> {
        let (from, to) = self.span;
        let f = from + (to - from) * (m.epoch as f64 / total.max(1) as f64);
        let mut m = m.clone();
        m.stage = self.stage_name();
        self.p.epoch(self.phase, &m, f.min(to));
        if self.phase != BASELINE {
            let (index, name) = (self.index, self.stage_name());
            self.p.checkpoint(&|| {
                let mut c = ck();
                c.stage = index;
                for m in &mut c.history {
                    m.stage.clone_from(&name);
                }
                c
            })?;
        }
        Ok(())
    }
    fn keep_going(&self) -> bool {
        !self.p.cancelled() && self.deadline.is_none_or(|d| std::time::Instant::now() < d)
    }
}

/// The phase of the scratch baseline: never checkpointed (it is cheap to redo).
const BASELINE: &str = "baseline";

/// How many of `n` restarts a student of `kind` gets: all for a network with a hidden layer narrower
/// than its outputs, else one (a tree has no seed, a linear or wide student rarely fails to train).
fn restarts_for(kind: &Kind, n: usize) -> usize {
    match kind {
        Kind::Net(a) if a.is_bottleneck() => n.max(1),
        _ => 1,
    }
}

/// Restart k's seed is the job's seed plus k - 1 times this.
const RESTART_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The trainings of one job: the rows, the config, the checkpoint to resume, progress.
struct Trainer<'a> {
    /// The rows as they are (flat). A tree reads them so; a network standardises each batch its way.
    raw: RowsView<'a>,
    cfg: &'a TrainConfig,
    resume: Option<Checkpoint>,
    progress: &'a mut dyn Progress,
    /// The number of the next training. A job's trainings run in the same order every time (they are
    /// seeded), so a checkpoint names the training it belongs to by this number.
    next: usize,
    /// What a search is training now (shown in the phase, e.g. `training: 1-hop kd`).
    tag: Option<String>,
    /// The cross-validation fold being trained (number, count): its trainings' phases and stages say
    /// `(fold k/n)`.
    fold: Option<(usize, usize)>,
    /// The restart being trained (number from 1, count): seeded differently, phases say `(restart k/n)`.
    restart: Option<(usize, usize)>,
    /// When the job started, and when the trainings running now must stop (a search's time budget:
    /// they end as if cancelled, and `out_of_time` tells the two apart).
    started: std::time::Instant,
    deadline: Option<std::time::Instant>,
}

impl<'a> Trainer<'a> {
    /// A trainer over `raw` starting a job (or resuming it from `resume`): nothing trained yet.
    fn new(
        raw: RowsView<'a>,
        cfg: &'a TrainConfig,
        resume: Option<Checkpoint>,
        progress: &'a mut dyn Progress,
    ) -> Self {
        Self {
            raw,
            cfg,
            resume,
            progress,
            next: 0,
            tag: None,
            fold: None,
            restart: None,
            started: std::time::Instant::now(),
            deadline: None,
        }
    }
}

impl Trainer<'_> {
    /// How many trainings ahead of the next one the checkpoint to resume is (0 without one): a method
    /// whose trainings each start from the previous one's result may skip that many.
    fn resume_ahead(&self) -> usize {
        self.resume
            .as_ref()
            .and_then(|c| c.stage.checked_sub(self.next))
            .unwrap_or(0)
    }

    /// Skips the next training (its result is superseded by the checkpoint being resumed).
    fn skip(&mut self) {
        self.next += 1;
    }

    /// One training (resumed from the checkpoint when it is this training's), with its phase shown to
    /// the caller and progress over `span`. `None` when cancelled.
    fn stage(
        &mut self,
        phase: &str,
        arch: &Arch,
        lesson: &Lesson,
        start: Start,
        cfg: &TrainConfig,
        span: (f64, f64),
    ) -> Result<Option<train::Trained>> {
        let index = if phase == BASELINE {
            usize::MAX
        } else {
            self.next += 1;
            self.next - 1
        };
        let phase = &self.fold_phase(phase);
        // the checkpoint of this training: same number and same stage (a search cut by its time
        // budget may number its trainings differently when replayed after a restart)
        let name = phase.strip_prefix("training: ");
        let start = match self.resume.take_if(|c| {
            c.stage == index
                && phase != BASELINE
                && c.history.last().is_none_or(|m| m.stage.as_deref() == name)
        }) {
            Some(ck) => Start::Resume(ck),
            None => start,
        };
        self.progress.phase(phase, span.0);
        let reseeded;
        let cfg = match self.restart {
            Some((k, _)) if k > 1 => {
                reseeded = TrainConfig {
                    seed: cfg
                        .seed
                        .wrapping_add(RESTART_SEED.wrapping_mul(k as u64 - 1)),
                    ..cfg.clone()
                };
                &reseeded
            }
            _ => cfg,
        };
        let mut hooks = StageHooks {
            p: &mut *self.progress,
            phase,
            index,
            span,
            deadline: self.deadline,
        };
        let mut t = train::train(arch, self.raw, lesson, cfg, start, &mut hooks)?;
        if t.cancelled {
            return Ok(None);
        }
        let name = hooks.stage_name();
        for m in &mut t.history {
            m.stage = name.clone();
        }
        Ok(Some(t))
    }

    /// Whether the trainings stopped because the deadline passed (not cancelled).
    fn out_of_time(&self) -> bool {
        !self.progress.cancelled()
            && self
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// `phase` with the fold being trained, if any (the baseline keeps its name: it is never
    /// checkpointed).
    fn fold_phase(&self, phase: &str) -> String {
        let phase = match self.fold {
            Some((k, n)) if phase != BASELINE => format!("{phase} (fold {k}/{n})"),
            _ => phase.to_string(),
        };
        match self.restart {
            // an untagged training gets a stage of its own, so that each restart's epochs are told apart
            Some((k, n)) if phase == "training" => format!("training: restart {k}/{n}"),
            Some((k, n)) => format!("{phase} (restart {k}/{n})"),
            None => phase,
        }
    }

    /// Trains a student `n` times over `span` (`fit` gets its share), each seeded differently, and
    /// keeps the one whose training reached the lowest loss; once unless `restarts_for` says it is
    /// worth it. `None` when cancelled.
    fn restarted(
        &mut self,
        kind: &Kind,
        n: usize,
        (from, to): (f64, f64),
        mut fit: impl FnMut(&mut Self, (f64, f64)) -> Result<Option<Fitted>>,
    ) -> Result<Option<Fitted>> {
        let n = restarts_for(kind, n);
        let step = (to - from) / n as f64;
        let mut best: Option<(f64, Fitted)> = None;
        for k in 0..n {
            self.restart = (n > 1).then_some((k + 1, n));
            let at = from + step * k as f64;
            let fitted = fit(self, (at, at + step));
            self.restart = None;
            let Some(f) = fitted? else {
                return Ok(None);
            };
            let loss = f.training.lowest_loss();
            if best.as_ref().is_none_or(|b| loss < b.0) {
                best = Some((loss, f));
            }
        }
        Ok(best.map(|b| b.1))
    }

    /// Class probabilities of a trained student on dataset rows `rows`.
    fn predict(&self, m: &Model, rows: &[usize]) -> Array2<f32> {
        match m {
            Model::Net { arch, params } => {
                let net = student::Net::from_params(arch, params, &burn::tensor::Device::flex());
                train::predict(&net, arch, self.raw, rows)
            }
            Model::Tree(t) => t.predict(self.raw, rows),
        }
    }

    /// A trained student's accuracy on `rows` (`None` without rows).
    fn accuracy(&self, m: &Model, y: &[i64], rows: &[usize]) -> Option<f64> {
        accuracy_of(&self.predict(m, rows), y, rows)
    }

    /// The scratch baseline (a student of the labeled rows alone) on `split`, the lowest-loss of
    /// `restarts` trainings over `span`. `None` when cancelled.
    fn baseline(
        &mut self,
        kind: &Kind,
        (y, split): (&[i64], &Split),
        restarts: usize,
        span: (f64, f64),
    ) -> Result<Option<Fitted>> {
        let lesson = Lesson::scratch(y, split);
        self.restarted(kind, restarts, span, |tr, span| {
            tr.learn(kind, &lesson, BASELINE, span)
        })
    }

    /// The scratch baseline on every fold of `sel` (progress held at `at`), judged like any student
    /// there. `None` when cancelled.
    fn baseline_on_folds(
        &mut self,
        sel: &select::Selector,
        y: &[i64],
        kind: &Kind,
        at: f64,
    ) -> Result<Option<(Vec<Fitted>, select::Score)>> {
        self.judge(sel, y, |tr, fold, _| {
            tr.baseline(kind, (y, fold), sel.restarts(), (at, at))
        })
    }

    /// Trains `fit` once per fold of `sel` (it gets the fold and its number) and pools the folds'
    /// held-out accuracy. Returns the fold models with the score; `None` when cancelled.
    fn judge(
        &mut self,
        sel: &select::Selector,
        y: &[i64],
        mut fit: impl FnMut(&mut Self, &Split, usize) -> Result<Option<Fitted>>,
    ) -> Result<Option<(Vec<Fitted>, select::Score)>> {
        let (mut models, mut score) = (Vec::new(), select::Score::default());
        for (k, fold) in sel.folds.iter().enumerate() {
            self.fold = sel.cv.then_some((k + 1, sel.folds.len()));
            let fitted = fit(self, fold, k);
            self.fold = None;
            let Some(f) = fitted? else {
                return Ok(None);
            };
            score.add(&self.predict(&f.model, &fold.val), y, &fold.val);
            models.push(f);
        }
        Ok(Some((models, score)))
    }

    /// Teaches `lesson` to a student of `kind`: one training of a network, or growing a tree.
    fn learn(
        &mut self,
        kind: &Kind,
        lesson: &Lesson,
        phase: &str,
        span: (f64, f64),
    ) -> Result<Option<Fitted>> {
        self.learn_from(kind, None, lesson, phase, span)
    }

    /// `learn`, a network started from `start` when given (a zoo model's weights) instead of a seeded
    /// initialisation.
    fn learn_from(
        &mut self,
        kind: &Kind,
        start: Option<&student::Params>,
        lesson: &Lesson,
        phase: &str,
        span: (f64, f64),
    ) -> Result<Option<Fitted>> {
        match kind {
            Kind::Net(arch) => {
                let cfg = self.cfg;
                let start = start.map_or(Start::Fresh, |p| Start::From(p.clone()));
                let t = self.stage(phase, arch, lesson, start, cfg, span)?;
                Ok(t.map(|t| Fitted::net(arch, t)))
            }
            Kind::Tree(depth) => {
                self.progress.phase(&self.fold_phase(phase), span.0);
                let classes = lesson.classes();
                let tl = tree::TreeLesson::from_lesson(lesson, classes);
                let t = tree::Tree::fit(self.raw, &tl, classes, *depth);
                Ok(Some(Fitted {
                    model: Model::Tree(t),
                    training: Training::default(),
                }))
            }
        }
    }
}

/// What kind of student a job builds.
enum Kind {
    Net(Arch),
    Tree(usize),
}

/// A trained student of either kind.
enum Model {
    Net { arch: Arch, params: student::Params },
    Tree(tree::Tree),
}

impl Model {
    fn parameters(&self) -> usize {
        match self {
            Self::Net { arch, .. } => arch.param_count(),
            Self::Tree(t) => t.parameters(),
        }
    }
}

/// How a student's training went (empty for a tree: it has no epochs).
#[derive(Default)]
struct Training {
    best: Option<EpochMetrics>,
    history: Vec<EpochMetrics>,
    stopped_early: bool,
}

/// A trained student and its training.
struct Fitted {
    model: Model,
    training: Training,
}

impl Training {
    /// The lowest training loss of the last stage's epochs (a transfer's earlier stages learn other
    /// targets); 0 for a tree: nothing to compare.
    fn lowest_loss(&self) -> f64 {
        let Some(last) = self.history.last() else {
            return 0.0;
        };
        self.history
            .iter()
            .filter(|m| m.stage == last.stage)
            .map(|m| m.train_loss)
            .filter(|l| l.is_finite())
            .fold(f64::INFINITY, f64::min)
    }
}

impl Fitted {
    fn net(arch: &Arch, t: train::Trained) -> Self {
        Self {
            model: Model::Net {
                arch: arch.clone(),
                params: t.params,
            },
            training: Training {
                best: t.best,
                history: t.history,
                stopped_early: t.stopped_early,
            },
        }
    }
}

/// Fine-tuning a transferred student (after its head is fitted) runs at this share of the learning rate,
/// so that a few labeled rows adjust the trunk rather than overwrite it.
const FINE_TUNE_LR: f64 = 0.1;

/// `transfer`: mimic the teacher in its own label space (stage 0), fit a new head on the labeled rows
/// with the trunk fixed (stage 1), fine-tune everything on them at a lower rate (stage 2); delivers the
/// fine-tuned student unless the fitted head alone was better on validation.
fn transfer(
    tr: &mut Trainer<'_>,
    taught: &Taught,
    ds: &Parsed,
    split: &Split,
    arch: &Arch,
    (from, to): (f64, f64),
) -> Result<Option<train::Trained>> {
    let (probs, weights) = (&taught.probs, &taught.weights);
    let cfg = tr.cfg.clone();
    // the checkpoint skips stages only when it is one of this transfer's three trainings; a later one
    // (another fold, another method) redoes them all, as the first run did
    let at = Some(tr.resume_ahead()).filter(|&a| a < 3).unwrap_or(0);
    let third = (to - from) / 3.0;
    let mut history = Vec::new();
    let head_start = if at == 0 {
        let teacher_arch = Arch {
            classes: probs.ncols(),
            ..arch.clone()
        };
        let lesson = Lesson {
            weights: weights.clone(),
            ..methods::mimic(probs, split)
        };
        let span = (from, from + third);
        let Some(m) = tr.stage(
            "training: mimic",
            &teacher_arch,
            &lesson,
            Start::Fresh,
            &cfg,
            span,
        )?
        else {
            return Ok(None);
        };
        history.extend(m.history);
        Start::From(methods::with_new_head(&m.params, arch, cfg.seed))
    } else {
        tr.skip();
        Start::Fresh
    };
    let scratch = Lesson {
        weights: weights.clone(),
        ..Lesson::scratch(&ds.y, split)
    };
    let head = if at <= 1 {
        let lesson = Lesson {
            frozen: arch.init(0).len() - 2,
            ..scratch.clone()
        };
        let span = (from + third, from + 2.0 * third);
        let Some(h) = tr.stage("training: head", arch, &lesson, head_start, &cfg, span)? else {
            return Ok(None);
        };
        history.extend(h.history.iter().cloned());
        Some(h)
    } else {
        tr.skip();
        None
    };
    let tune_cfg = TrainConfig {
        lr: cfg.lr * FINE_TUNE_LR,
        ..cfg.clone()
    };
    let tune_start = head
        .as_ref()
        .map_or(Start::Fresh, |h| Start::From(h.params.clone()));
    let span = (from + 2.0 * third, to);
    let Some(tune) = tr.stage(
        "training: fine-tune",
        arch,
        &scratch,
        tune_start,
        &tune_cfg,
        span,
    )?
    else {
        return Ok(None);
    };
    history.extend(tune.history.iter().cloned());
    let acc = |t: &train::Trained| t.best.as_ref().and_then(|b| b.val_accuracy);
    let keep = match head {
        Some(h) if acc(&h) > acc(&tune) => h,
        _ => tune,
    };
    Ok(Some(train::Trained { history, ..keep }))
}

/// The teacher a job learns from, with its outputs on the dataset's rows.
/// A clone shares the outputs (a multihop search holds one per sample weighting it tries).
#[derive(Clone)]
struct Taught {
    teacher: Teacher,
    /// Its probabilities in its own labels [N, C_t], and carried into the student's labels [N, C].
    probs: std::sync::Arc<Array2<f32>>,
    carried: std::sync::Arc<Array2<f32>>,
    /// ProfWeight / SRatio sample weights per dataset row, when asked for.
    weights: Option<Vec<f32>>,
}

/// The default ranking of `teachers` (the whole zoo for `None`) on the dataset, through the cache.
fn rank_for(
    zoo: &Zoo,
    cache: &OutputCache,
    ds: &Parsed,
    ds_sha: &str,
    teachers: Option<Vec<String>>,
) -> Result<rank::Ranking> {
    rank::rank(
        zoo,
        Some(cache),
        &rank::RankRows::of(ds, ds_sha),
        &RankRequest {
            dataset_id: crate::data::dataset_id(ds_sha),
            teachers,
            ..Default::default()
        },
    )
}

/// Picks the ranking's best teacher usable for `method` (for `teacher: auto`), with how it was chosen.
fn pick_teacher(
    zoo: &Zoo,
    cache: &OutputCache,
    ds: &Parsed,
    ds_sha: &str,
    req: &DistillRequest,
    notes: &mut Vec<String>,
) -> Result<(Teacher, String, bool)> {
    let ranking = rank_for(zoo, cache, ds, ds_sha, None)?;
    let pick = ranking
        .results
        .iter()
        .filter(|r| r.rank.is_some())
        .find(|r| {
            zoo.get(&r.teacher_id)
                .is_ok_and(|t| usable_for(zoo, &t, ds, req).is_ok())
        })
        .ok_or_else(|| Error::invalid_input("no compatible teacher to distill from"))?;
    if !ranking.verdict.teacher_helps {
        notes.push(format!(
            "the ranking's verdict is that no teacher is likely to help ({}); distilled from the top \
             pick anyway, and kept the scratch student unless the distilled one beat it by {} standard \
             errors (config no_help_margin_se)",
            ranking.verdict.reason, req.config.no_help_margin_se
        ));
    }
    let why = format!(
        "auto: rank {} by {} ({:.4})",
        pick.rank.unwrap_or(0),
        ranking.primary_metric,
        pick.score.unwrap_or(f64::NAN)
    );
    Ok((
        zoo.get(&pick.teacher_id)?,
        why,
        ranking.verdict.teacher_helps,
    ))
}

/// Trains the distilled student (or the scratch one for `scratch`). `None` when cancelled.
fn teach(
    tr: &mut Trainer<'_>,
    method: Method,
    taught: Option<&Taught>,
    ds: &Parsed,
    split: &Split,
    kind: &Kind,
    span: (f64, f64),
) -> Result<Option<Fitted>> {
    if let (Method::Transfer, Some(t)) = (method, taught) {
        let Kind::Net(arch) = kind else {
            return Err(Error::invalid_input(
                "method transfer needs a network student",
            ));
        };
        let trained = transfer(tr, t, ds, split, arch, span)?;
        return Ok(trained.map(|t| Fitted::net(arch, t)));
    }
    let lesson = lesson_of(method, taught, ds, split);
    let phase = tr
        .tag
        .as_ref()
        .map_or("training".to_string(), |t| format!("training: {t}"));
    tr.learn(kind, &lesson, &phase, span)
}

/// The lesson of a one-training method (`kd`, `faculty`; scratch without a teacher), with the job's
/// sample weights. Not for `transfer`, which trains in stages (`teach` runs it; a zoo intermediate's
/// first hop turns it into kd or faculty).
fn lesson_of(method: Method, taught: Option<&Taught>, ds: &Parsed, split: &Split) -> Lesson {
    debug_assert!(method != Method::Transfer, "transfer has no single lesson");
    let mut lesson = match (method, taught) {
        (Method::Kd, Some(t)) => methods::kd(&t.teacher, &t.probs, ds, split),
        (Method::Faculty, Some(t)) => methods::faculty(&t.teacher, &t.probs, ds, split),
        _ => Lesson::scratch(&ds.y, split),
    };
    lesson.weights = taught.and_then(|t| t.weights.clone());
    lesson
}

/// Classes of each teacher whose outputs a job holds on every row: the named teacher's; every teacher's
/// of a multi-teacher set (`auto:K`: the K usable teachers with the most classes); for `auto`, the
/// most any usable teacher has (the ranking may choose any); none for scratch.
pub fn held_teacher_classes(zoo: &Zoo, req: &DistillRequest) -> Result<Vec<usize>> {
    if req.method == Method::Scratch {
        return Ok(Vec::new());
    }
    let classes = |t: &Teacher| t.num_classes.unwrap_or(0);
    // the usable teachers' class counts, most first: read from the catalog only where `auto` needs them
    let largest = |k: usize| -> Result<Vec<usize>> {
        let mut usable: Vec<usize> = zoo
            .all()?
            .iter()
            .filter(|t| t.usable)
            .map(classes)
            .collect();
        usable.sort_unstable_by(|a, b| b.cmp(a));
        usable.truncate(k);
        Ok(usable)
    };
    if let Some(set) = &req.teachers {
        return match set.parse()? {
            fusion::Chosen::Ids(ids) => ids
                .iter()
                .map(|id| zoo.get(id).map(|t| classes(&t)))
                .collect(),
            fusion::Chosen::Auto(k) => largest(k),
        };
    }
    Ok(if req.teacher == "auto" {
        largest(1)?
    } else {
        vec![classes(&zoo.get(&req.teacher)?)]
    })
}

/// Refuses a job whose networks (the student, and a multihop job's intermediates) are expected to take
/// more than `limit` bytes to train ([`Arch::training_bytes`], plus the outputs of the teachers whose
/// classes `teacher_classes` lists and their soft targets in the task's classes, on every row; 0: no
/// limit). A 120-byte request for `mlp:8192,8192,8192,8192,8192,8192,8192,8192` took a server past
/// 9 GB before this check.
pub fn check_training_memory(
    ds: &Parsed,
    req: &DistillRequest,
    v: &Validated,
    teacher_classes: &[usize],
    limit: u64,
) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    let mut specs = vec![v.spec.clone()];
    specs.extend(v.intermediates.iter().cloned());
    let labeled = ds.class_counts().iter().sum();
    for spec in specs
        .iter()
        .filter(|s| !matches!(s, StudentSpec::Tree { .. }))
    {
        let arch = Arch::new(spec, &ds.row_shape(), ds.classes(), ds.view().range(0..0))?;
        // each teacher's outputs on every row: 16 bytes a value as measured (README "Memory": the
        // outputs, the ranking cache's copy, the lesson's, the label map's f64 rows), and 8 a row and
        // class of the task for what is carried into its classes: 48 MB for one 10-class teacher on
        // 200,000 rows of a 10-class task, 3.2 GB for an ImageNet one
        let targets: u64 = teacher_classes
            .iter()
            .map(|&k| (ds.rows() * (16 * k + 8 * ds.classes())) as u64)
            .sum();
        let need = arch.training_bytes(req.config.batch_size, labeled, ds.rows()) + targets;
        if need > limit {
            let (what, remedy) = if 2 * targets > need {
                (
                    format!(
                        "the teachers' outputs on its {} rows ({} classes) take about {} MiB",
                        ds.rows(),
                        teacher_classes
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(" + "),
                        targets >> 20
                    ),
                    "fewer rows or a teacher with fewer classes",
                )
            } else {
                (
                    format!(
                        "student '{}' has {} parameters",
                        spec.describe(),
                        arch.param_count()
                    ),
                    "a smaller student or batch size",
                )
            };
            return Err(Error::invalid_input(format!(
                "{what}; training it on these rows (batch_size {}) is expected to take about {} MiB, \
                 more than this server allows a job (--job-memory-mb {}): choose {remedy}",
                req.config.batch_size,
                need >> 20,
                limit >> 20
            )));
        }
    }
    Ok(())
}

/// Checks that `eval` can measure students of `ds`: the same class names in the same order, the same row
/// shape, every row labeled.
pub fn check_eval(ds: &Parsed, eval: &Parsed) -> Result<()> {
    if eval.labels != ds.labels {
        return Err(Error::invalid_input(format!(
            "the eval dataset's classes {:?} differ from the dataset's {:?}",
            eval.labels, ds.labels
        )));
    }
    eval.clone()
        .validate_test(&ds.row_shape())
        .map(|_| ())
        .map_err(|e| Error::invalid_input(format!("eval dataset: {}", e.message)))
}

/// The data of a job: the dataset (with its sha256) and the rows to report test accuracy on.
pub struct TaskData<'a> {
    pub ds: &'a Parsed,
    pub sha256: &'a str,
    pub test: Option<TestRows<'a>>,
}

/// Labeled rows never trained on, from a stored dataset.
pub struct TestRows<'a> {
    pub dataset_id: String,
    pub ds: &'a Parsed,
}

/// An accuracy on test rows with its 95% interval (Wilson score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Estimate {
    pub accuracy: f64,
    pub low: f64,
    pub high: f64,
}

impl Estimate {
    /// `hits` of `n` with the Wilson 95% interval.
    pub fn wilson(hits: usize, n: usize) -> Self {
        let (p, n) = (hits as f64 / n.max(1) as f64, n.max(1) as f64);
        let z2 = 1.96f64 * 1.96;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = 1.96 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
        Self {
            accuracy: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }
}

/// Test accuracies, side by side, and where the rows come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestReport {
    pub dataset_id: String,
    pub rows: usize,
    /// The delivered student.
    pub student: Estimate,
    /// The distilled and the scratch student (in faculty, before export), when there is a teacher.
    pub distilled: Option<Estimate>,
    pub scratch: Option<Estimate>,
    /// The teacher carried into the task's labels (the map estimated from the training rows).
    pub teacher: Option<Estimate>,
    pub note: String,
}

/// Class probabilities of a trained student on rows `x` from outside the job's dataset.
fn predict_external(m: &Model, x: RowsView<'_>) -> Array2<f32> {
    let rows: Vec<usize> = (0..x.nrows()).collect();
    match m {
        Model::Net { arch, params } => {
            let net = student::Net::from_params(arch, params, &burn::tensor::Device::flex());
            train::predict(&net, arch, x, &rows)
        }
        Model::Tree(t) => t.predict(x, &rows),
    }
}

/// Test accuracies of the distilled and scratch students (and which one is delivered) and the teacher
/// (its predictions on the test rows, carried into the task's labels; the ensemble's for several).
fn test_report(
    t: &TestRows<'_>,
    (distilled, scratch, delivered): (&Model, Option<&Model>, Delivered),
    teacher: Option<&Array2<f32>>,
) -> TestReport {
    let all: Vec<usize> = (0..t.ds.rows()).collect();
    let est = |p: &Array2<f32>| {
        let hits = p
            .rows()
            .into_iter()
            .zip(&t.ds.y)
            .filter(|(r, y)| argmax(r.iter().copied()) as i64 == **y)
            .count();
        Estimate::wilson(hits, all.len())
    };
    let d = est(&predict_external(distilled, t.ds.view()));
    let sc = scratch.map(|m| est(&predict_external(m, t.ds.view())));
    let teacher = teacher.map(est);
    let student = match (delivered, &sc) {
        (Delivered::Scratch, Some(s)) => s.clone(),
        _ => d.clone(),
    };
    TestReport {
        dataset_id: t.dataset_id.clone(),
        rows: all.len(),
        student,
        distilled: scratch.is_some().then_some(d),
        scratch: sc,
        teacher,
        note: format!(
            "{} labeled rows of dataset {} that no training or choice saw; 95% intervals by the Wilson score",
            all.len(),
            t.dataset_id
        ),
    }
}

/// The student to export, with its own predictions on `check_rows` for the ONNX Runtime parity check.
struct Student<'a> {
    spec: &'a StudentSpec,
    model: &'a Model,
    expected: Array2<f32>,
    check_rows: Vec<usize>,
    delivered: Delivered,
}

/// What the card says beside the student itself.
struct Report {
    chain: Vec<TeacherRef>,
    accuracy: Accuracy,
    budget: Option<BudgetReport>,
    test: Option<TestReport>,
    weighting: Option<WeightingReport>,
    multihop: Option<MultihopReport>,
    selection: Option<SelectionReport>,
    fusion: Option<FusionReport>,
    weight_fusion: Option<WeightFusionReport>,
    notes: Vec<String>,
}

/// Exports the `k`-th kept intermediate of a multihop chain as a student of its own; `check_rows` are
/// the parity rows and `job` the job's own accuracies (the split's row counts, the teacher's accuracy).
fn export_intermediate(
    tr: &Trainer<'_>,
    ds: &Parsed,
    ds_sha: &str,
    req: &DistillRequest,
    inter: multihop::Intermediate,
    chain: &[TeacherRef],
    (k, check_rows, job): (usize, &[usize], &Accuracy),
) -> Result<Outcome> {
    let multihop::Intermediate {
        spec,
        zoo,
        fitted: Fitted { model, training },
        trial,
    } = inter;
    let spec_s = spec.describe();
    let sub = DistillRequest {
        student: Some(StudentArg::Text(spec_s.clone())),
        name: Some(format!(
            "{} multihop intermediate {k} ({spec_s})",
            crate::data::dataset_id(ds_sha)
        )),
        ..req.clone()
    };
    let student = Student {
        spec: &spec,
        model: &model,
        expected: tr.predict(&model, check_rows),
        check_rows: check_rows.to_vec(),
        delivered: Delivered::Distilled,
    };
    // the same split as the job's, so the same row counts and teacher accuracy
    let accuracy = Accuracy {
        student: trial.val_accuracy,
        distilled: trial.val_accuracy,
        scratch: None,
        ..job.clone()
    };
    let mut from = if k == 1 {
        format!("the teacher with {}", trial.method.as_str())
    } else {
        format!("intermediate {} with kd", k - 1)
    };
    if let Some(id) = zoo {
        from = format!("{from}, starting from the weights of zoo model '{id}'");
    }
    let report = Report {
        chain: chain.to_vec(),
        accuracy,
        budget: None,
        test: None,
        weighting: None,
        multihop: None,
        selection: None,
        fusion: None,
        weight_fusion: None,
        notes: vec![format!(
            "intermediate {k} of a multihop chain: taught by {from}; the delivered student learned \
             from the last intermediate (its card has the whole search)"
        )],
    };
    finish(ds, ds_sha, &sub, &student, training, report)
}

/// Exports the student to ONNX, checks it in ONNX Runtime against its own predictions, and writes its
/// card. `training` says how the distilled student's training went.
fn finish(
    ds: &Parsed,
    ds_sha: &str,
    req: &DistillRequest,
    s: &Student<'_>,
    training: Training,
    report: Report,
) -> Result<Outcome> {
    let Report {
        chain,
        accuracy,
        budget,
        test,
        weighting,
        multihop,
        selection,
        fusion,
        weight_fusion,
        notes,
    } = report;
    let dataset_id = crate::data::dataset_id(ds_sha);
    let created = crate::store::now_unix();
    let labels_json = serde_json::to_string(&ds.labels)?;
    // the file's lineage: a delivered scratch student learned from no teacher (the teachers tried are
    // kept apart, so the file still says what was compared)
    let (chain_json, tried_json) = match s.delivered {
        Delivered::Distilled => (serde_json::to_string(&chain)?, String::new()),
        Delivered::Scratch => ("[]".to_string(), serde_json::to_string(&chain)?),
    };
    let acc_json = serde_json::to_string(&accuracy)?;
    let spec_s = s.spec.describe();
    let created_s = created.to_string();
    let method = match s.delivered {
        Delivered::Distilled => req.method.as_str(),
        Delivered::Scratch => "scratch",
    };
    let mut meta: Vec<(&str, &str)> = vec![
        ("labels", &labels_json),
        ("method", method),
        ("teachers", &chain_json),
        ("metrics", &acc_json),
        ("student", &spec_s),
        ("dataset_sha256", ds_sha),
        ("created", &created_s),
        ("faculty_version", env!("CARGO_PKG_VERSION")),
        ("producer", "faculty"),
    ];
    if !tried_json.is_empty() {
        meta.push(("teachers_tried", &tried_json));
    }
    let (onnx, rules) = match s.model {
        Model::Net { arch, params } => (export::to_onnx(arch, params, &meta), vec![]),
        Model::Tree(t) => (
            t.to_onnx(&ds.row_shape(), &meta),
            t.rules(&ds.row_shape(), &ds.labels),
        ),
    };
    let (ort_p, latency_ms) = ort_check(&onnx, ds, &s.check_rows, ds.classes())?;
    let diff = (&ort_p - &s.expected)
        .iter()
        .fold(0f32, |m, v| m.max(v.abs())) as f64;
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
        parameters: s.model.parameters(),
        file_size: onnx.len() as u64,
        sha256,
        teacher_chain: chain,
        delivered: s.delivered,
        accuracy,
        budget,
        test,
        latency_ms,
        onnx_max_abs_diff: diff,
        best_epoch: training.best.as_ref().map(|b| b.epoch),
        epochs_run: training.history.len(),
        stopped_early: training.stopped_early,
        history: training.history,
        multihop,
        selection,
        fusion,
        weight_fusion,
        weighting,
        rules,
        config: req.config.clone(),
        notes,
        created,
        faculty_version: env!("CARGO_PKG_VERSION").into(),
    };
    Ok(Outcome {
        card,
        onnx,
        intermediates: vec![],
    })
}

/// Accuracy of predictions `p` on dataset rows `rows` (row k of `p` predicts row `rows[k]`).
fn accuracy_of(p: &Array2<f32>, y: &[i64], rows: &[usize]) -> Option<f64> {
    let mut s = select::Score::default();
    s.add(p, y, rows);
    s.accuracy()
}

/// Runs the exported model in ONNX Runtime on `rows` (raw, unstandardised: the graph standardises) and
/// measures the median single-row latency.
fn ort_check(
    onnx: &[u8],
    ds: &Parsed,
    rows: &[usize],
    classes: usize,
) -> Result<(Array2<f32>, f64)> {
    let mut session = crate::onnx::session::load_session(onnx, 1)?;
    let pred = student_predictor(&ds.row_shape(), classes);
    let x = ds.select_rows(rows);
    let p = with_student_key(onnx, |key| pred.predict(&mut session, key, x.view(), 1024))?;
    let one = ds.select_rows(&rows[..1]);
    Ok((
        p,
        budget::median_latency_ms(&mut session, &pred, one.view())?,
    ))
}

/// Runs `f` with a key of the exported student `onnx`'s own for the memory budget and the batch-size
/// climb (what one student's calls teach them is not another's: jobs check students of every size, at
/// once), forgotten after.
fn with_student_key<T>(onnx: &[u8], f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let key = format!("student-check#{}", crate::zoo::teacher::sha256_hex(onnx));
    let out = f(&key);
    crate::onnx::memory::forget(&key);
    crate::onnx::pace::forget(&key);
    out
}

/// How to run an exported student (input `input` [N, ..row_shape], output `probabilities`).
pub fn student_predictor(row_shape: &[usize], classes: usize) -> crate::onnx::Predictor {
    let mut shape = vec![-1i64];
    shape.extend(row_shape.iter().map(|&d| d as i64));
    crate::onnx::Predictor {
        input: "input".into(),
        input_type: crate::onnx::InputType::Float32,
        input_shape: shape,
        output: "probabilities".into(),
        kind: crate::onnx::OutputKind::Probabilities,
        num_classes: classes,
        channel_norm: None,
        freed_batch: None,
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
    let p = with_student_key(onnx, |key| pred.predict(&mut session, key, x, 1024))?;
    let rows: Vec<usize> = (0..y.len()).collect();
    Ok(accuracy_of(&p, y, &rows).unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::Estimate;

    #[test]
    fn wilson_intervals_match_known_values() {
        // statsmodels proportion_confint(50, 100, method="wilson") = (0.40383, 0.59617)
        let e = Estimate::wilson(50, 100);
        assert!(
            (e.low - 0.40383).abs() < 1e-4 && (e.high - 0.59617).abs() < 1e-4,
            "{e:?}"
        );
        // (0, 10): (0, 0.27753); (10, 10): (0.72247, 1)
        let z = Estimate::wilson(0, 10);
        assert!(z.low == 0.0 && (z.high - 0.27753).abs() < 1e-4, "{z:?}");
        let a = Estimate::wilson(10, 10);
        assert!((a.low - 0.72247).abs() < 1e-4 && a.high == 1.0, "{a:?}");
    }
}
