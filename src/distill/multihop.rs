//! Multihop distillation (Dhurandhar & Pedapati): knowledge goes from a complex teacher to a simple student
//! through intermediate students of decreasing capacity. The paper gives no algorithm; this is the greedy
//! search of `shared/ALGORITHMS.md` section 5, judged on the validation rows:
//! 1. the 1-hop answer: the target student taught by the teacher with each hop method (kd, faculty,
//!    transfer; each only where it applies), the best kept. It is always a candidate, so the chain chosen
//!    is never worse than 1-hop on validation;
//! 2. each hop: every candidate intermediate strictly between the target and the current model in
//!    parameters is taught by the current model (the teacher with the best 1-hop method for the first hop,
//!    KD on an intermediate's predictions after that) and looked ahead: the target student is taught by it
//!    with KD. The best look-ahead is kept as the next hop when it beats the best so far by `min_gain`
//!    points; otherwise the search stops. At most `max_hops` intermediates.
//!
//! Every training is numbered by the trainer in the same order each run, so a restarted job redoes the
//! trainings before its checkpoint (seeded, so identically) and resumes the one it was in.
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::select::{Score, Selector};
use super::student::{Arch, Params, StudentSpec};
use super::weight_fusion::{self, ZooNet};
use super::weighted::Variant;
use super::weighting::Weighting;
use super::{Fitted, Kind, Method, StudentArg, Taught, Trainer, methods};
use crate::data::Parsed;
use crate::error::{Error, Result};
use crate::zoo::Zoo;

/// The multihop search's settings (`multihop` in a job request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MultihopOptions {
    /// Most intermediate models between the teacher and the student (1..=5).
    pub max_hops: usize,
    /// A hop is kept only when the student it leads to gains at least this many points on the held-out
    /// rows (and, with `one_se`, more than one standard error of that gain).
    pub min_gain: f64,
    /// The one-standard-error rule: a hop must also gain more than one standard error of the
    /// difference, paired by held-out row (within noise, the shorter chain is kept); as the hop is the
    /// best of the candidates tried, more than that for several (1.62 standard errors for the best of
    /// three: the rule's level shared among them). The same rule keeps the best unweighted 1-hop answer
    /// unless a weighted one (`hop_weightings`, `weighting: auto`) beats it by more than that for the
    /// best of the weighted trials.
    pub one_se: bool,
    /// Intermediate models to try: `"auto"` (one-hidden-layer MLPs whose size lies between the
    /// student's and the teacher's, at most three), `"zoo"` (the zoo's models that can be one and
    /// whose size lies between, at most three), or a list of student specs and zoo model ids. A zoo
    /// model can be one when it is a plain MLP or linear model that fits the rows, in any label space:
    /// it starts from its own weights, with a new output layer unless it names the task's labels, and
    /// is taught like the others.
    pub candidates: Candidates,
    /// Methods tried for the teacher's own hop (kd only where the label names match; transfer only for
    /// students with a hidden layer).
    pub hop_methods: Vec<Method>,
    /// Sample weightings tried with each of `hop_methods` for the teacher's own hop (none, profweight,
    /// sratio: the teacher's probes, as the job's `weighting`); the best pair is the 1-hop answer and
    /// teaches the first intermediate, and its weights stay on the later hops. Default: the job's
    /// `weighting` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop_weightings: Option<Vec<Weighting>>,
    /// Time budget: the search through intermediates (with the chain's retraining) may take at most
    /// this many times as long as the job took up to the end of its 1-hop answer, so that the whole
    /// job costs about this many times a 1-hop job. A candidate still training when the time runs out
    /// is dropped; those finished still count. Where it cuts the search, how far the search got
    /// depends on the machine's speed and load (two runs of a seeded job can differ). 0: no limit (a
    /// reproducible search).
    pub max_time_factor: f64,
}

impl Default for MultihopOptions {
    fn default() -> Self {
        Self {
            max_hops: 3,
            min_gain: 0.5,
            one_se: true,
            candidates: Candidates::Word("auto".into()),
            hop_methods: vec![Method::Kd, Method::Faculty, Method::Transfer],
            hop_weightings: None,
            max_time_factor: 4.0,
        }
    }
}

/// `"auto"` or a list of student specs and zoo model ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Candidates {
    Word(String),
    List(Vec<StudentArg>),
}

impl MultihopOptions {
    /// Checks the ranges and the candidate specs (not yet against the rows).
    pub fn check(&self) -> Result<()> {
        if !(1..=5).contains(&self.max_hops) {
            return Err(Error::invalid_input(format!(
                "multihop: max_hops {} is out of range 1..=5",
                self.max_hops
            )));
        }
        if !(self.min_gain >= 0.0 && self.min_gain <= 100.0) {
            return Err(Error::invalid_input(
                "multihop: min_gain must be in [0, 100] points",
            ));
        }
        if !(self.max_time_factor == 0.0
            || (self.max_time_factor >= 1.0 && self.max_time_factor <= 1000.0))
        {
            return Err(Error::invalid_input(
                "multihop: max_time_factor must be 0 (no limit) or in [1, 1000]",
            ));
        }
        if self.hop_methods.is_empty()
            || self
                .hop_methods
                .iter()
                .any(|m| !matches!(m, Method::Kd | Method::Faculty | Method::Transfer))
        {
            return Err(Error::invalid_input(
                "multihop: hop_methods must be a non-empty list of kd, faculty and transfer",
            ));
        }
        if let Some(ws) = &self.hop_weightings {
            let mut seen = ws.clone();
            seen.sort_by_key(|w| w.as_str());
            seen.dedup();
            if ws.is_empty() || seen.len() != ws.len() {
                return Err(Error::invalid_input(
                    "multihop: hop_weightings must be a non-empty list of none, profweight and sratio, \
                     each at most once",
                ));
            }
        }
        match &self.candidates {
            Candidates::Word(w) if w == "auto" || w == "zoo" => Ok(()),
            Candidates::Word(w) => Err(Error::invalid_input(format!(
                "multihop: candidates must be \"auto\", \"zoo\" or a list of student specs and zoo \
                 model ids, not '{w}'"
            ))),
            Candidates::List(l) => {
                for c in l {
                    // a text that is not a student spec may be a zoo model's id (bound with the zoo)
                    let Ok(spec) = c.spec() else {
                        if matches!(c, StudentArg::Text(_)) {
                            continue;
                        }
                        return c.spec().map(|_| ());
                    };
                    if matches!(spec, StudentSpec::Tree { .. }) {
                        return Err(Error::invalid_input(
                            "multihop: an intermediate must be a network (a tree cannot teach the \
                             next hop's trunk); trees can be the final student",
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// The candidate intermediates bound to the dataset (and, for zoo ids, to the zoo), largest first;
    /// each must fit the rows.
    pub fn candidates(&self, ds: &Parsed, zoo: &Zoo) -> Result<Vec<Candidate>> {
        let args: Vec<StudentArg> = match &self.candidates {
            Candidates::List(l) => l.clone(),
            Candidates::Word(w) if w == "zoo" => {
                // every zoo model that can be one, in any label space
                let mut out: Vec<Candidate> = zoo
                    .all()?
                    .iter()
                    .filter_map(|t| {
                        let not_spec = Error::invalid_input("");
                        Candidate::from_zoo(zoo, &t.id, ds, not_spec).ok()
                    })
                    .collect();
                out.sort_by(|a, b| {
                    b.params
                        .cmp(&a.params)
                        .then_with(|| a.describe().cmp(&b.describe()))
                });
                return Ok(out);
            }
            Candidates::Word(_) => AUTO_WIDTHS
                .iter()
                .map(|&w| {
                    StudentArg::Spec(StudentSpec::Mlp {
                        hidden: vec![w],
                        activation: Default::default(),
                    })
                })
                .collect(),
        };
        let mut out = Vec::new();
        for arg in args {
            let cand = match (arg.spec(), &arg) {
                (Ok(spec), _) => {
                    // the parameter count needs the rows' shape, not their values (no pass over the
                    // dataset)
                    let arch =
                        Arch::new(&spec, &ds.row_shape(), ds.classes(), ds.view().range(0..0))
                            .map_err(|e| {
                                Error::invalid_input(format!(
                                    "multihop candidate '{}' does not fit the rows: {}",
                                    spec.describe(),
                                    e.message
                                ))
                            })?;
                    Candidate {
                        params: arch.param_count(),
                        spec,
                        zoo: None,
                    }
                }
                (Err(e), StudentArg::Text(id)) => Candidate::from_zoo(zoo, id, ds, e)?,
                (Err(e), _) => return Err(e),
            };
            out.push(cand);
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.params));
        Ok(out)
    }
}

/// A candidate intermediate: a constructed student, or a zoo model started from its own weights.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub spec: StudentSpec,
    pub params: usize,
    /// The zoo model it starts from (its id and weights).
    pub zoo: Option<(String, ZooNet)>,
}

impl Candidate {
    /// Binds a zoo id; `not_spec` is why the text is not a student spec, said when it is no model either.
    fn from_zoo(zoo: &Zoo, id: &str, ds: &Parsed, not_spec: Error) -> Result<Self> {
        let t = zoo.get(id).map_err(|_| {
            Error::invalid_input(format!(
                "multihop candidate '{id}' is neither a student spec nor a zoo model ({})",
                not_spec.message
            ))
        })?;
        let refuse = |why: String| {
            Error::invalid_input(format!(
                "multihop candidate '{id}' cannot be an intermediate: {why}"
            ))
        };
        crate::rank::outputs::compatibility(&t, ds).map_err(&refuse)?;
        let net = weight_fusion::read_net(zoo, &t, ds).map_err(|why| {
            refuse(format!(
                "{why} (a zoo intermediate is trained further, starting from its weights, so it must be a plain MLP or \
                 linear model)"
            ))
        })?;
        Ok(Self {
            spec: net.spec.clone(),
            params: net.arch(ds).param_count(),
            zoo: Some((t.id.clone(), net)),
        })
    }

    /// How the card and the job name it: the spec, or the zoo id with its spec.
    pub fn describe(&self) -> String {
        match &self.zoo {
            Some((id, _)) => format!("{id} ({})", self.spec.describe()),
            None => self.spec.describe(),
        }
    }

    /// The architecture it is trained as (a zoo model keeps its own input standardisation) and the
    /// parameters it starts from (`None`: a seeded initialisation).
    fn kind(&self, ds: &Parsed, seed: u64) -> Result<(Kind, Option<Params>)> {
        Ok(match &self.zoo {
            Some((_, net)) => (Kind::Net(net.arch(ds)), Some(net.start(ds, seed))),
            None => (
                Kind::Net(Arch::new(
                    &self.spec,
                    &ds.row_shape(),
                    ds.classes(),
                    ds.view(),
                )?),
                None,
            ),
        })
    }
}

/// Hidden widths of the automatic candidates (those between the student and the teacher are used).
const AUTO_WIDTHS: &[usize] = &[1024, 512, 256, 128, 64, 32, 16, 8];
/// At most this many automatic (or zoo) candidates per hop (the largest, the smallest and one between).
const AUTO_MAX: usize = 3;

/// One trained candidate of the search, as the job and the card show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HopTrial {
    /// 1 for the teacher's own hop to the student (the 1-hop answer), k+1 for the k-th intermediate.
    pub hop: usize,
    /// The model trained: an intermediate's spec, or the student's for the 1-hop answer.
    pub model: String,
    pub parameters: usize,
    /// How it was taught by the model before it.
    pub method: Method,
    /// The sample weighting of the teacher's lesson it learned from (absent: none).
    #[serde(default, skip_serializing_if = "is_none_weighting")]
    pub weighting: Weighting,
    /// Its own estimated accuracy (cross-validated, or on the validation split: see `selection`).
    pub val_accuracy: Option<f64>,
    /// The student's estimated accuracy when taught by it (look-ahead; the same as `val_accuracy` for
    /// the 1-hop answer).
    pub student_val_accuracy: Option<f64>,
    /// Kept in the chain.
    pub kept: bool,
    /// For the best candidate of a hop, the one the rule judged: its student's estimated accuracy
    /// minus the shorter chain's, paired by held-out row, and that difference's standard error. For the
    /// best 1-hop trial when it is weighted: its estimate minus the best unweighted trial's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain_se: Option<f64>,
    /// A kept intermediate's own student id (it is stored and downloadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_id: Option<String>,
}

/// What the search did, for the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MultihopReport {
    /// Every candidate trained, in order.
    pub trials: Vec<HopTrial>,
    /// The intermediates kept, teacher side first (empty: the 1-hop answer won).
    pub chain: Vec<HopTrial>,
    /// The best 1-hop estimate and the delivered chain's (the job's selection estimator: cross-validation
    /// or the validation split; `selection` on the card says which).
    pub one_hop_accuracy: Option<f64>,
    pub chain_accuracy: Option<f64>,
    /// The method of the best 1-hop answer (it also teaches the first intermediate).
    #[serde(default = "default_method")]
    pub one_hop_method: Method,
    /// The sample weighting of the best 1-hop answer (`hop_weightings`; it stays on every hop).
    #[serde(default, skip_serializing_if = "is_none_weighting")]
    pub one_hop_weighting: Weighting,
    /// Why the 1-hop answer is unweighted although a weighted trial scored higher: its gain was within
    /// the one-standard-error rule for the best of the weighted trials (`one_se`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighting_note: Option<String>,
    /// Why the search ended (no candidate gained `min_gain`, `max_hops` reached, no smaller candidate,
    /// or the time budget ran out, with the candidates it left untried).
    #[serde(default)]
    pub stopped: String,
    /// The time budget of the search through intermediates, in seconds (`max_time_factor` times the
    /// time to the 1-hop answer; absent without a limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget_s: Option<f64>,
    pub options: MultihopOptions,
}

fn default_method() -> Method {
    Method::Faculty
}

fn is_none_weighting(w: &Weighting) -> bool {
    *w == Weighting::None
}

/// An intermediate kept in the chain, to be stored as a student of its own.
pub(super) struct Intermediate {
    pub(super) spec: StudentSpec,
    /// The zoo model it started from.
    pub(super) zoo: Option<String>,
    pub(super) fitted: Fitted,
    pub(super) trial: HopTrial,
}

/// A hop method with its weighting as the CLI, the logs and the card name it: `kd`, `kd+profweight`.
pub fn method_label(m: Method, w: Weighting) -> String {
    match w {
        Weighting::None => m.as_str().to_string(),
        w => format!("{}+{}", m.as_str(), w.as_str()),
    }
}

/// The methods the teacher's hop to a `target` student can use: kd where the teacher names the
/// dataset's labels, transfer for a network with a hidden layer, faculty always.
pub(super) fn first_hop_methods(
    opts: &MultihopOptions,
    teacher: &crate::zoo::Teacher,
    ds: &Parsed,
    target: &StudentSpec,
) -> Vec<Method> {
    opts.hop_methods
        .iter()
        .copied()
        .filter(|m| match m {
            Method::Kd => methods::kd_permutation(teacher, ds).is_some(),
            Method::Transfer => !matches!(target, StudentSpec::Linear | StudentSpec::Tree { .. }),
            _ => true,
        })
        .collect()
}

/// Spreads progress over the trainings the search may run.
struct Spans {
    at: f64,
    step: f64,
}

impl Spans {
    fn next(&mut self) -> (f64, f64) {
        let s = (self.at, self.at + self.step);
        self.at += self.step;
        s
    }
}

/// The best candidate of a round: what it is, its models on every fold, the student each taught, and
/// the student's score.
struct RoundBest {
    cand: Candidate,
    trial: HopTrial,
    /// Where `trial` stands in the search's list of trials.
    at: usize,
    inters: Vec<Fitted>,
    students: Vec<Fitted>,
    score: Score,
    /// One fold's time to train the intermediate: what retraining it on the job's split will cost.
    retrain: Duration,
}

/// What the search found: the delivered student, the report, the kept intermediates and the delivered
/// student's estimate.
pub(super) type Found = (Fitted, MultihopReport, Vec<Intermediate>, Score);

/// Runs the search, every candidate judged on the selector's folds (each fold has its own chain, so no
/// fold's held-out rows taught anything it is judged on). With cross-validation the chosen chain is
/// trained again on the job's split; without it the models trained on the split are delivered. `None`
/// when cancelled.
#[allow(clippy::too_many_arguments)]
pub(super) fn search(
    tr: &mut Trainer<'_>,
    ds: &Parsed,
    split: &super::Split,
    sel: &Selector,
    target: &Kind,
    target_params: usize,
    (opts, cands, variants): (&MultihopOptions, Vec<Candidate>, &[Variant]),
    (from, to): (f64, f64),
) -> Result<Option<Found>> {
    // the teacher's lesson under each weighting tried (one, the job's, unless several are asked for)
    let Some(taught) = variants.first().map(|v| &v.split) else {
        return Err(Error::internal("a search needs the teacher's lesson"));
    };
    let target_spec = match target {
        Kind::Net(a) => a.spec.clone(),
        Kind::Tree(d) => StudentSpec::Tree { depth: *d },
    };
    let one_hop = first_hop_methods(opts, &taught.teacher, ds, &target_spec);
    if one_hop.is_empty() {
        return Err(Error::invalid_input(
            "multihop: none of hop_methods applies to this teacher and student",
        ));
    }
    let teacher_params = taught.teacher.params as usize;
    let all: Vec<Candidate> = cands
        .into_iter()
        .filter(|c| c.params > target_params && c.params < teacher_params)
        .collect();
    let pool = match opts.candidates {
        // the largest, the smallest and one between
        Candidates::Word(_) if all.len() > AUTO_MAX => {
            vec![
                all[0].clone(),
                all[all.len() / 2].clone(),
                all[all.len() - 1].clone(),
            ]
        }
        _ => all,
    };
    let folds = sel.folds.len();
    let hops = opts.max_hops.min(pool.len());
    let planned = (one_hop.len() * variants.len() + 2 * pool.len() * hops) * folds
        + if sel.cv { hops + 1 } else { 0 };
    let mut spans = Spans {
        at: from,
        step: (to - from) / planned.max(1) as f64,
    };
    let mut trials = Vec::new();
    // 1. the 1-hop answer: every method under every weighting. Only the best trial and the best
    //    unweighted one stay in memory (the rule below may choose between them).
    let mut judged: Vec<Option<(Vec<Fitted>, Score)>> = Vec::new();
    let mut tried: Vec<(Method, usize)> = Vec::new();
    let (mut best, mut best_plain): (Option<usize>, Option<usize>) = (None, None);
    for &m in &one_hop {
        for (v, variant) in variants.iter().enumerate() {
            let w = variant.weighting;
            let name = method_label(m, w);
            let Some((models, score)) = tr.judge(sel, &ds.y, |tr, fold, k| {
                tr.tag = Some(format!("1-hop {name}"));
                let taught = variant.on(k);
                tr.restarted(target, sel.restarts(), spans.next(), |tr, span| {
                    super::teach(tr, m, Some(taught), ds, fold, target, span)
                })
            })?
            else {
                return Ok(None);
            };
            let t = HopTrial {
                hop: 1,
                model: target_describe(target),
                parameters: models[0].model.parameters(),
                method: m,
                weighting: w,
                val_accuracy: score.accuracy(),
                student_val_accuracy: score.accuracy(),
                kept: false,
                student_id: None,
                gain: None,
                gain_se: None,
            };
            tr.progress.trial(&t);
            trials.push(t);
            let i = judged.len();
            let acc = score.accuracy();
            judged.push(Some((models, score)));
            tried.push((m, v));
            let beats = |b: Option<usize>| b.is_none_or(|b| acc > trials[b].val_accuracy);
            if beats(best) {
                best = Some(i);
            }
            if w == Weighting::None && beats(best_plain) {
                best_plain = Some(i);
            }
            for (j, e) in judged.iter_mut().enumerate() {
                if Some(j) != best && Some(j) != best_plain {
                    *e = None;
                }
            }
        }
    }
    let mut chosen_trial = best.expect("at least one method");
    // a weighted answer replaces the best unweighted one only when it is ahead by more than the noise of
    // picking the best of the weighted trials (the one-standard-error rule, as for a hop)
    let mut weighting_note = None;
    let weighted = trials
        .iter()
        .filter(|t| t.weighting != Weighting::None)
        .count();
    if let Some(p) = best_plain.filter(|&p| opts.one_se && p != chosen_trial) {
        let score = |i: usize| &judged[i].as_ref().expect("kept above").1;
        let (gain, se) = score(chosen_trial).gain_or_difference(score(p));
        let z = super::select::one_se_for_best_of(weighted);
        let t = &trials[chosen_trial];
        let (label, plain) = (
            method_label(t.method, t.weighting),
            trials[p].method.as_str(),
        );
        if gain <= z * se {
            weighting_note = Some(format!(
                "{label} was estimated {:+.1} points over {plain} ({:.1} points standard error of \
                 the paired difference), not more than {z:.2} standard errors (the \
                 one-standard-error rule for the best of {weighted} weighted trials): the \
                 unweighted {plain} was kept",
                100.0 * gain,
                100.0 * se
            ));
        }
        let t = &mut trials[chosen_trial];
        (t.gain, t.gain_se) = (Some(gain), Some(se));
        if weighting_note.is_some() {
            chosen_trial = p;
        }
    }
    let (mut best_students, one_hop_score) = judged[chosen_trial].take().expect("kept above");
    let (first_method, chosen) = tried[chosen_trial];
    let first = &variants[chosen];
    let (first_weighting, taught) = (first.weighting, &first.split);
    let mut best_score = one_hop_score.clone();
    // 2. hops through intermediates: each fold's chain so far (empty: the teacher teaches), within
    //    the time budget (the chosen chain's retraining reserved as its links are kept)
    let budget = (opts.max_time_factor > 0.0 && opts.max_hops > 0)
        .then(|| tr.started.elapsed().mul_f64(opts.max_time_factor - 1.0));
    let mut deadline = budget.map(|b| Instant::now() + b);
    let mut stopped = None;
    let mut chain: Vec<RoundBest> = Vec::new();
    let mut current_params = teacher_params;
    for hop in 1..=opts.max_hops {
        let mut round: Option<RoundBest> = None;
        let mut tried = 0;
        // smallest first: the cheapest candidates are the ones a tight budget still tries
        let todo: Vec<&Candidate> = pool
            .iter()
            .rev()
            .filter(|c| c.params < current_params)
            .collect();
        for (i, cand) in todo.iter().enumerate() {
            tr.deadline = deadline;
            let judged = if tr.out_of_time() {
                None
            } else {
                let (kind, start) = cand.kind(ds, tr.cfg.seed)?;
                let method = if chain.is_empty() {
                    start_method(first_method, start.is_some(), taught, ds)
                } else {
                    Method::Kd
                };
                let (mut inters, mut inter_score) = (Vec::new(), Score::default());
                let mut inter_time = Duration::ZERO;
                tr.judge(sel, &ds.y, |tr, fold, k| {
                    tr.tag = Some(format!(
                        "intermediate {hop} {} via {}",
                        cand.describe(),
                        method.as_str()
                    ));
                    let prev = chain.last().map(|c| &c.inters[k]);
                    let taught = first.on(k);
                    let t0 = Instant::now();
                    let inter = taught_by(
                        tr,
                        prev,
                        (method, taught),
                        ds,
                        fold,
                        (&kind, start.as_ref()),
                        spans.next(),
                    )?;
                    inter_time += t0.elapsed();
                    let Some(inter) = inter else {
                        return Ok(None);
                    };
                    inter_score.add(&tr.predict(&inter.model, &fold.val), &ds.y, &fold.val);
                    tr.tag = Some(format!("look-ahead from {}", cand.describe()));
                    let student = tr.restarted(target, sel.restarts(), spans.next(), |tr, span| {
                        taught_by(
                            tr,
                            Some(&inter),
                            (method, taught),
                            ds,
                            fold,
                            (target, None),
                            span,
                        )
                    });
                    inters.push(inter);
                    student
                })?
                .map(|(students, score)| {
                    let trial = HopTrial {
                        hop: hop + 1,
                        model: cand.describe(),
                        parameters: cand.params,
                        method,
                        weighting: first_weighting,
                        val_accuracy: inter_score.accuracy(),
                        student_val_accuracy: score.accuracy(),
                        kept: false,
                        student_id: None,
                        gain: None,
                        gain_se: None,
                    };
                    let retrain = inter_time.div_f64(sel.folds.len() as f64);
                    (trial, inters, students, score, retrain)
                })
            };
            tr.deadline = None;
            let Some((trial, inters, students, score, retrain)) = judged else {
                if tr.progress.cancelled() {
                    return Ok(None);
                }
                let left: Vec<String> = todo[i..].iter().map(|c| c.describe()).collect();
                stopped = Some(format!(
                    "the time budget ran out while trying intermediate {hop} ({} not tried or not \
                     finished; the budget is {}x the 1-hop answer's time: multihop.max_time_factor, 0 \
                     for no limit)",
                    left.join(", "),
                    opts.max_time_factor
                ));
                break;
            };
            tr.progress.trial(&trial);
            trials.push(trial.clone());
            tried += 1;
            if round
                .as_ref()
                .is_none_or(|r| score.accuracy() > r.score.accuracy())
            {
                round = Some(RoundBest {
                    cand: (*cand).clone(),
                    trial,
                    at: trials.len() - 1,
                    inters,
                    students,
                    score,
                    retrain,
                });
            }
        }
        let Some(mut kept) = round else {
            stopped.get_or_insert_with(|| {
                format!("intermediate {hop}: no candidate is smaller than the model before it")
            });
            break;
        };
        // the one-standard-error rule: a hop is kept only when its gain is also larger than the noise
        // of the difference on these held-out rows (with 60 rows one row is 1.7 points)
        let (gain, se) = kept.score.gain_or_difference(&best_score);
        (kept.trial.gain, kept.trial.gain_se) = (Some(gain), Some(se));
        trials[kept.at] = kept.trial.clone();
        // the best of `tried` candidates: the rule asks for more than one standard error then (and a
        // tie goes to the shorter chain)
        let z = super::select::one_se_for_best_of(tried);
        let too_small = gain * 100.0 < opts.min_gain || gain <= 0.0;
        if too_small || (opts.one_se && gain <= z * se) {
            stopped.get_or_insert_with(|| {
                let why = if too_small {
                    format!("less than min_gain {}", opts.min_gain)
                } else {
                    format!(
                        "not more than {z:.2} standard errors of the paired difference ({:.1} points \
                         each; the one-standard-error rule for the best of {tried} candidates): the \
                         shorter chain is kept",
                        100.0 * se
                    )
                };
                format!(
                    "intermediate {hop} (hop {}): the best candidate ({}) gained {:+.1} points, {why}",
                    hop + 1,
                    kept.trial.model,
                    100.0 * gain,
                )
            });
            break;
        }
        kept.trial.kept = true;
        trials[kept.at].kept = true;
        current_params = kept.trial.parameters;
        best_students = std::mem::take(&mut kept.students);
        best_score = kept.score.clone();
        deadline = deadline.map(|d| d.checked_sub(kept.retrain).unwrap_or(d));
        chain.push(kept);
        if stopped.is_some() {
            break;
        }
    }
    let stopped = stopped.unwrap_or_else(|| match opts.max_hops {
        0 => "1-hop only".into(),
        n => format!("max_hops {n} reached"),
    });
    // 3. the chosen chain on the job's split
    let (student, kept) = if sel.cv {
        let Some(f) = retrain(
            tr,
            taught,
            ds,
            split,
            target,
            (first_method, sel.restarts()),
            &chain,
            &mut spans,
        )?
        else {
            return Ok(None);
        };
        f
    } else {
        let kept = chain
            .into_iter()
            .map(|c| Intermediate {
                spec: c.cand.spec,
                zoo: c.cand.zoo.map(|z| z.0),
                fitted: c.inters.into_iter().next().expect("one fold"),
                trial: c.trial,
            })
            .collect();
        (best_students.into_iter().next().expect("one fold"), kept)
    };
    tr.tag = None;
    let report = MultihopReport {
        trials,
        chain: kept.iter().map(|i| i.trial.clone()).collect(),
        one_hop_accuracy: one_hop_score.accuracy(),
        chain_accuracy: best_score.accuracy(),
        one_hop_method: first_method,
        one_hop_weighting: first_weighting,
        weighting_note,
        stopped,
        time_budget_s: budget.map(|b| b.as_secs_f64()),
        options: opts.clone(),
    };
    Ok(Some((student, report, kept, best_score)))
}

/// Trains the chosen chain on the job's split: its intermediates in order (the first taught by the
/// teacher with `first`, the others by KD), then the student from the last (the teacher with `first`
/// for an empty chain), the lowest-loss of `restarts` trainings as on the folds. `None` when cancelled.
#[allow(clippy::too_many_arguments)]
fn retrain(
    tr: &mut Trainer<'_>,
    taught: &Taught,
    ds: &Parsed,
    split: &super::Split,
    target: &Kind,
    (first, restarts): (Method, usize),
    chain: &[RoundBest],
    spans: &mut Spans,
) -> Result<Option<(Fitted, Vec<Intermediate>)>> {
    let mut kept: Vec<Intermediate> = Vec::new();
    for (k, c) in chain.iter().enumerate() {
        let (kind, start) = c.cand.kind(ds, tr.cfg.seed)?;
        tr.tag = Some(format!("chain {} {}", k + 1, c.cand.describe()));
        let prev = kept.last().map(|i| &i.fitted);
        let Some(fitted) = taught_by(
            tr,
            prev,
            (c.trial.method, taught),
            ds,
            split,
            (&kind, start.as_ref()),
            spans.next(),
        )?
        else {
            return Ok(None);
        };
        kept.push(Intermediate {
            spec: c.cand.spec.clone(),
            zoo: c.cand.zoo.as_ref().map(|z| z.0.clone()),
            fitted,
            trial: c.trial.clone(),
        });
    }
    tr.tag = Some(match kept.last() {
        None => format!("chosen {}", first.as_str()),
        Some(_) => "chosen student".into(),
    });
    let prev = kept.last().map(|i| &i.fitted);
    let student = tr.restarted(target, restarts, spans.next(), |tr, span| {
        taught_by(tr, prev, (first, taught), ds, split, (target, None), span)
    })?;
    Ok(student.map(|s| (s, kept)))
}

/// Teaches a student of `kind` on `split` from the model before it in a chain: the teacher with the
/// method `from.0` when there is none, else KD on that model's predictions; a network starts from
/// `start` when given (a zoo intermediate's own weights). The phase is `training: ` and the trainer's
/// tag. `None` when cancelled.
fn taught_by(
    tr: &mut Trainer<'_>,
    prev: Option<&Fitted>,
    (method, taught): (Method, &Taught),
    ds: &Parsed,
    split: &super::Split,
    (kind, start): (&Kind, Option<&Params>),
    span: (f64, f64),
) -> Result<Option<Fitted>> {
    if prev.is_none() && start.is_none() {
        return super::teach(tr, method, Some(taught), ds, split, kind, span);
    }
    let lesson = match prev {
        None => super::lesson_of(method, Some(taught), ds, split),
        Some(p) => lesson_from(tr, p, taught, ds, split),
    };
    let phase = format!("training: {}", tr.tag.clone().unwrap_or_default());
    tr.learn_from(kind, start, &lesson, &phase, span)
}

/// How the teacher teaches a first intermediate: the 1-hop answer's method, except that a zoo model
/// started from its own weights is taught with a one-training lesson (`transfer` would relearn its
/// trunk from scratch): kd where the teacher names the task's labels, faculty otherwise.
fn start_method(first: Method, from_zoo: bool, taught: &Taught, ds: &Parsed) -> Method {
    match first {
        Method::Transfer if from_zoo => {
            if methods::kd_permutation(&taught.teacher, ds).is_some() {
                Method::Kd
            } else {
                Method::Faculty
            }
        }
        m => m,
    }
}

/// KD from a trained student's predictions on every row (with the job's sample weights).
fn lesson_from(
    tr: &Trainer<'_>,
    from: &Fitted,
    taught: &Taught,
    ds: &Parsed,
    split: &super::Split,
) -> super::Lesson {
    let all: Vec<usize> = (0..ds.rows()).collect();
    super::Lesson {
        term: super::Term::Soft {
            targets: tr.predict(&from.model, &all),
        },
        weights: taught.weights.clone(),
        ..super::Lesson::scratch(&ds.y, split)
    }
}

fn target_describe(k: &Kind) -> String {
    match k {
        Kind::Net(a) => a.spec.describe(),
        Kind::Tree(d) => StudentSpec::Tree { depth: *d }.describe(),
    }
}
