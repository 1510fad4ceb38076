//! A distillation job from request to student, stage by stage (`run`): the teacher (ranked for `auto`)
//! and its outputs, mixup rows for a small pool, the scratch baseline and the sample weights, the
//! distilled student (one method, a search over methods, weightings and chains, or several teachers),
//! the fallback to scratch, the test rows, and export. The pieces (trainer, lessons, methods, export)
//! live in `distill` and its other modules; this one holds their order.

use ndarray::Axis;

use super::fusion::{self, Ensemble};
use super::multihop::{self, Intermediate, MultihopOptions};
use super::select::{self, Score, Selector};
use super::weight_fusion::{self, Family};
use super::weighted::{self, Variant};
use super::{
    Accuracy, Arch, Checkpoint, Delivered, DistillRequest, Fitted, FusionReport, Kind, Method,
    Model, MultihopReport, Outcome, Progress, Report, SelectionReport, Split, Student, StudentSpec,
    TaskData, Taught, TeacherRef, TestReport, Trainer, Validated, WeightFusionReport, Weighting,
    WeightingReport, accuracy_of, augment, export_intermediate, finish, methods, pick_teacher,
    restarts_for, teach, test_report, validate,
};
use crate::data::Parsed;
use crate::error::{Error, Result};
use crate::rank::{OutputCache, outputs};
use crate::zoo::{Teacher, Zoo};

/// Trains, evaluates and exports a student. Returns `None` when cancelled. `resume` continues the
/// training its checkpoint belongs to.
pub fn run(
    zoo: &Zoo,
    cache: &OutputCache,
    task: &TaskData<'_>,
    req: &DistillRequest,
    resume: Option<Checkpoint>,
    progress: &mut dyn Progress,
) -> Result<Option<Outcome>> {
    let (ds, ds_sha) = (task.ds, task.sha256);
    let mut v = validate(zoo, ds, req)?;
    let cfg = &req.config;
    let mut notes = Vec::new();
    let c_s = ds.classes();
    // 1. the teacher (and, for `auto`, whether the ranking's verdict is that no teacher helps)
    let (teacher, no_teacher_helps) =
        choose_teacher(zoo, cache, task, req, &v, progress, &mut notes)?;
    // 2. split, the kind of student (weight fusion: the teachers' own architecture)
    let split = Split::stratified(&ds.y, c_s, cfg.val_fraction, cfg.seed);
    if split.val.is_empty() {
        notes.push(
            "no class has 2 labeled rows: no validation split, the last epoch is kept".into(),
        );
    }
    let family = v.family.take();
    let kind = match (&v.spec, &family) {
        (_, Some(f)) => Kind::Net(f.arch(ds)),
        (StudentSpec::Tree { depth }, _) => Kind::Tree(*depth),
        _ => Kind::Net(Arch::new(&v.spec, &ds.row_shape(), c_s, ds.view())?),
    };
    // the dataset with the teacher's mixup rows, when they are asked for (declared before the trainer
    // that reads it)
    let augmented: Parsed;
    let mut tr = Trainer::new(ds.view(), cfg, resume, progress);
    // 3. the teacher's outputs and its accuracy in the student's labels, mixup rows it labels, or
    //    several teachers for multi_teacher and weight fusion
    let mut chain = Vec::new();
    let mut taught = None;
    if let Some(t) = teacher {
        let (t, r) = teacher_outputs(
            &mut tr,
            zoo,
            cache,
            (task, req.method),
            &split,
            t,
            &mut notes,
        )?;
        chain.push(r);
        taught = Some(t);
    }
    let grown = match taught.as_mut() {
        Some(t) => grow_pool(&mut tr, zoo, ds, &split, req, t, &mut notes)?,
        None => None,
    };
    let (ds, split, mixup_rows) = match grown {
        Some((rows, split, n)) => {
            augmented = rows;
            tr.raw = augmented.view();
            (&augmented, split, n)
        }
        None => (ds, split, 0),
    };
    let ensemble = match (req.method, &req.teachers) {
        (Method::MultiTeacher | Method::WeightFusion, Some(set)) => {
            let e = fusion::gather(
                zoo,
                cache,
                ds,
                ds_sha,
                &set.parse()?,
                &split,
                &mut *tr.progress,
                &mut notes,
            )?;
            chain = e.chain(req.method.as_str());
            Some(e)
        }
        _ => None,
    };
    // 4. the scratch baseline (the fallback, and the simple model of ProfWeight / SRatio), the sample
    //    weights, then the distilled student, all on the same split; choices judged by `sel`
    let sel = Selector::new(&split, &ds.y, c_s, cfg);
    let job = Job {
        zoo,
        cache,
        req,
        ds,
        split: &split,
        sel: &sel,
        kind: &kind,
    };
    let has_ensemble = ensemble.is_some();
    let Some(grounds) =
        baseline_and_weights(&mut tr, &job, taught.as_mut(), has_ensemble, &mut notes)?
    else {
        return Ok(None);
    };
    let Grounds {
        base,
        variants,
        fold_base,
        weighting,
    } = grounds;
    let span = (if base.is_some() { 0.2 } else { 0.05 }, 0.95);
    let students = (ensemble.as_ref(), family.as_ref(), variants.as_slice());
    let Some(mut d) = distill_student(
        &mut tr,
        &job,
        task,
        taught.as_ref(),
        students,
        span,
        &mut notes,
    )?
    else {
        return Ok(None);
    };
    // the card's weighting is the one a search chose for the teacher's hop
    let weighting = d.weighting.take().unwrap_or(weighting);
    // both students on the validation rows, scored once: the card's accuracies, and what the fallback
    // compares when no cross-validation judged them
    let on_val = |m: &Model| {
        let mut s = Score::default();
        s.add(&tr.predict(m, &split.val), &ds.y, &split.val);
        s
    };
    let d_val = on_val(&d.fitted.model);
    let b_val = base.as_ref().map(|b| on_val(&b.model));
    let distilled = d_val.accuracy();
    let scratch_acc = b_val.as_ref().map_or(distilled, Score::accuracy);
    // 5. never worse than scratch: deliver the baseline when it won (on the folds that judged the
    //    distilled student, else on the validation rows)
    let (delivered, selection) = match b_val {
        Some(b_val) => {
            let judged = d.judged.take();
            let scores = (judged, fold_base, d_val, b_val);
            let Some((delivered, report)) = fall_back(
                &mut tr,
                &job,
                d.search.as_ref(),
                scores,
                no_teacher_helps,
                &mut notes,
            )?
            else {
                return Ok(None);
            };
            (delivered, Some(report))
        }
        None => (Delivered::Distilled, None),
    };
    let accuracy = Accuracy {
        student: if delivered == Delivered::Scratch {
            scratch_acc
        } else {
            distilled
        },
        distilled,
        scratch: scratch_acc,
        teacher: match (&d.fusion, &d.weight_fusion) {
            (Some(r), _) => r.ensemble_accuracy,
            (_, Some(r)) => r.ensemble_accuracy,
            _ => chain.first().and_then(|t| t.accuracy),
        },
        validation_rows: split.val.len(),
        train_rows: split.train.len(),
        unlabeled_rows: split.unlabeled.len() - mixup_rows,
        mixup_rows,
    };
    // 6. test rows, export, parity, latency
    tr.progress.phase("export", 0.96);
    let check_rows: Vec<usize> = if split.val.is_empty() {
        (0..ds.rows().min(256)).collect()
    } else {
        split.val.iter().copied().take(1024).collect()
    };
    let Fitted {
        model: distilled_model,
        training,
    } = d.fitted;
    let (base_model, base_training) = base.map(|b| (b.model, b.training)).unzip();
    // the card's epochs and history are the delivered student's
    let training = match (delivered, base_training) {
        (Delivered::Scratch, Some(t)) => t,
        _ => training,
    };
    let test = on_test_rows(
        &job,
        task,
        (taught.as_ref(), ensemble.as_ref(), d.fusion.as_mut()),
        (&distilled_model, base_model.as_ref(), delivered),
    )?;
    let model = match (delivered, base_model) {
        (Delivered::Scratch, Some(b)) => b,
        _ => distilled_model,
    };
    let mut intermediates = Vec::new();
    for (k, inter) in d.kept.into_iter().enumerate() {
        let at = (k + 1, check_rows.as_slice(), &accuracy);
        let out = export_intermediate(&tr, ds, ds_sha, req, inter, &chain, at)?;
        if let Some(r) = d.search.as_mut() {
            r.chain[k].student_id = Some(out.card.id.clone());
        }
        intermediates.push(out);
    }
    let expected = tr.predict(&model, &check_rows);
    let student = Student {
        spec: &v.spec,
        model: &model,
        expected,
        check_rows,
        delivered,
    };
    let report = Report {
        chain,
        accuracy,
        budget: v.budget.clone(),
        test,
        weighting,
        multihop: d.search,
        selection,
        fusion: d.fusion,
        weight_fusion: d.weight_fusion,
        notes,
    };
    let mut out = finish(ds, ds_sha, req, &student, training, report)?;
    out.intermediates = intermediates;
    tr.progress.phase("done", 1.0);
    Ok(Some(out))
}

/// What the stages after the teacher's outputs read: the request, the rows the students learn from
/// (mixup rows included) and their split, how choices are judged, and the kind of student.
struct Job<'x> {
    zoo: &'x Zoo,
    cache: &'x OutputCache,
    req: &'x DistillRequest,
    ds: &'x Parsed,
    split: &'x Split,
    sel: &'x Selector,
    kind: &'x Kind,
}

/// The job's teacher with why it was chosen (none for scratch and several teachers), and whether the
/// ranking's verdict (for `auto`) is that no teacher helps.
type Chosen = (Option<(Teacher, String)>, bool);

fn choose_teacher(
    zoo: &Zoo,
    cache: &OutputCache,
    task: &TaskData<'_>,
    req: &DistillRequest,
    v: &Validated,
    progress: &mut dyn Progress,
    notes: &mut Vec<String>,
) -> Result<Chosen> {
    match (&v.teacher, req.method) {
        (_, Method::Scratch | Method::MultiTeacher | Method::WeightFusion) => Ok((None, false)),
        (Some(t), _) => Ok((Some((t.clone(), "requested".to_string())), false)),
        (None, _) => {
            progress.phase("ranking", 0.0);
            let (t, why, helps) = pick_teacher(zoo, cache, task.ds, task.sha256, req, notes)?;
            Ok((Some((t, why)), !helps))
        }
    }
}

/// The teacher's outputs on every row (through the ranking cache) and what the card says of it.
fn teacher_outputs(
    tr: &mut Trainer<'_>,
    zoo: &Zoo,
    cache: &OutputCache,
    (task, method): (&TaskData<'_>, Method),
    split: &Split,
    (t, selected_by): (Teacher, String),
    notes: &mut Vec<String>,
) -> Result<(Taught, TeacherRef)> {
    let ds = task.ds;
    tr.progress.phase("teacher outputs", 0.02);
    let (o, hit) = outputs::cached(zoo, Some(cache), &t, ds, task.sha256)?;
    if !hit {
        crate::onnx::release_freed_memory();
    }
    notes.push(format!(
        "teacher outputs {} the ranking cache",
        if hit { "read from" } else { "computed into" }
    ));
    let carried = methods::carried(&t, &o.probs, ds, split);
    if matches!(method, Method::Kd | Method::Faculty) {
        notes.extend(methods::unseen_classes_note(&t, &o.probs, ds, split));
    }
    let r = TeacherRef {
        id: t.id.clone(),
        name: t.name.clone(),
        sha256: t.sha256.clone(),
        accuracy: accuracy_of(&carried.select(Axis(0), &split.val), &ds.y, &split.val),
        selected_by,
    };
    tr.progress.teacher(&r);
    let taught = Taught {
        teacher: t,
        probs: o.probs.into(),
        carried: carried.into(),
        weights: None,
    };
    Ok((taught, r))
}

/// Mixup rows the teacher labels, added to the pool when it is smaller than `mixup_pool` (and the
/// method learns from a pool): the grown rows, their split and how many rows were made. `None` when
/// the pool stays as it is.
fn grow_pool(
    tr: &mut Trainer<'_>,
    zoo: &Zoo,
    ds: &Parsed,
    split: &Split,
    req: &DistillRequest,
    t: &mut Taught,
    notes: &mut Vec<String>,
) -> Result<Option<(Parsed, Split, usize)>> {
    let cfg = &req.config;
    let fit = split.fit_rows();
    if fit.len() >= cfg.mixup_pool || !req.method.grows_pool() {
        return Ok(None);
    }
    tr.progress.phase("teacher outputs on mixup rows", 0.03);
    let want = cfg.mixup_pool - fit.len();
    let synth = augment::unlabeled_like(ds, augment::mixup(ds, &fit, want, cfg.seed));
    // what was made (none from fewer than 2 rows), so the counts stay true
    let n = synth.rows();
    let o = outputs::compute(zoo, &t.teacher, &synth)?;
    t.probs = ndarray::concatenate(Axis(0), &[t.probs.view(), o.probs.view()])
        .map_err(|e| Error::internal(format!("teacher outputs: {e}")))?
        .into();
    let augmented = augment::joined(ds, &synth);
    let split = Split::stratified(&augmented.y, ds.classes(), cfg.val_fraction, cfg.seed);
    t.carried = methods::carried(&t.teacher, &t.probs, &augmented, &split).into();
    notes.push(format!(
        "the distillation pool ({} rows) was grown to {} with {n} mixup rows labeled by the teacher \
         (config mixup_pool)",
        fit.len(),
        cfg.mixup_pool
    ));
    Ok(Some((augmented, split, n)))
}

/// What the distilled student is measured against and taught with: the scratch baseline on the split,
/// every weighting the teacher's hop may use (on the split and on every fold), the baseline on the
/// folds when fold weights needed it, and the card's weighting report.
struct Grounds {
    base: Option<Fitted>,
    variants: Vec<Variant>,
    fold_base: Option<(Vec<Fitted>, Score)>,
    weighting: Option<WeightingReport>,
}

/// The scratch baseline (for any job with a teacher or several), then the teacher's sample weights
/// (the job's own weighting goes on `taught`). `None` when cancelled.
fn baseline_and_weights(
    tr: &mut Trainer<'_>,
    job: &Job<'_>,
    taught: Option<&mut Taught>,
    has_ensemble: bool,
    notes: &mut Vec<String>,
) -> Result<Option<Grounds>> {
    let mut out = Grounds {
        base: None,
        variants: Vec::new(),
        fold_base: None,
        weighting: None,
    };
    if !has_ensemble && taught.is_none() {
        return Ok(Some(out));
    }
    let kind = job.kind;
    let Some(base) = tr.baseline(
        kind,
        (&job.ds.y, job.split),
        job.sel.restarts(),
        (0.05, 0.15),
    )?
    else {
        return Ok(None);
    };
    if let Some(t) = taught {
        let Some(p) = weighted::prepare(
            tr,
            job.zoo,
            job.ds,
            job.req,
            t,
            (&base, kind),
            (job.split, job.sel),
            notes,
        )?
        else {
            return Ok(None);
        };
        // the job's own weighting (the only one unless a search tries several)
        t.weights = p.variants[0].split.weights.clone();
        out.weighting = p.variants[0].report.clone();
        out.variants = p.variants;
        out.fold_base = p.fold_base;
    }
    out.base = Some(base);
    Ok(Some(out))
}

/// The distilled student and what its training found.
struct Distilled {
    fitted: Fitted,
    /// A search's report (`auto`, `multihop`, `weighting: auto`) and its chain's kept intermediates.
    search: Option<MultihopReport>,
    kept: Vec<Intermediate>,
    fusion: Option<FusionReport>,
    weight_fusion: Option<WeightFusionReport>,
    /// Its estimate when the selector's folds judged it (else its validation accuracy decides).
    judged: Option<Score>,
    /// The card's weighting when a search chose it for the teacher's hop.
    weighting: Option<Option<WeightingReport>>,
}

impl Distilled {
    fn plain(fitted: Fitted) -> Self {
        Self {
            fitted,
            search: None,
            kept: Vec::new(),
            fusion: None,
            weight_fusion: None,
            judged: None,
            weighting: None,
        }
    }
}

/// Trains the distilled student (the scratch one for `scratch`) by the request's method: weight
/// fusion, several teachers, a search (over methods, chains, or a fixed method's weightings), a fixed
/// method judged on the folds, or one training. `None` when cancelled.
fn distill_student(
    tr: &mut Trainer<'_>,
    job: &Job<'_>,
    task: &TaskData<'_>,
    taught: Option<&Taught>,
    (ensemble, family, variants): (Option<&Ensemble>, Option<&Family>, &[Variant]),
    span: (f64, f64),
    notes: &mut Vec<String>,
) -> Result<Option<Distilled>> {
    let req = job.req;
    match (req.method, taught) {
        (Method::WeightFusion, _) => {
            let (ens, fam) = (
                ensemble.expect("gathered above"),
                family.expect("read above"),
            );
            weight_fused(tr, job, task, (ens, fam), span)
        }
        (Method::MultiTeacher, _) => {
            let ens = ensemble.expect("gathered above");
            let rule = req.fusion.unwrap_or_default();
            let (ds, split) = (job.ds, job.split);
            let Some((f, r)) = fusion::teach(tr, ens, ds, split, job.kind, rule, span)? else {
                return Ok(None);
            };
            Ok(Some(Distilled {
                fusion: Some(r),
                ..Distilled::plain(f)
            }))
        }
        (m, Some(_)) if m.searches() || req.weighting == Weighting::Auto => {
            searched(tr, job, variants, span, notes)
        }
        (_, Some(t)) if job.sel.cv => judged_fixed(tr, job, t, &variants[0]),
        _ => {
            let f = teach(tr, req.method, taught, job.ds, job.split, job.kind, span)?;
            Ok(f.map(Distilled::plain))
        }
    }
}

/// Weight fusion of the teachers' MLPs (with the ensemble's test accuracies when the task has test rows).
fn weight_fused(
    tr: &mut Trainer<'_>,
    job: &Job<'_>,
    task: &TaskData<'_>,
    (ens, fam): (&Ensemble, &Family),
    span: (f64, f64),
) -> Result<Option<Distilled>> {
    let Kind::Net(arch) = job.kind else {
        return Err(Error::internal("weight fusion builds a network"));
    };
    let opts = job.req.weight_fusion.clone().unwrap_or_default();
    let test = task.test.as_ref().map(|t| t.ds);
    let (ds, split) = (job.ds, job.split);
    let Some((f, mut r)) = weight_fusion::fuse(tr, fam, ens, ds, split, arch, &opts, test, span)?
    else {
        return Ok(None);
    };
    if let Some(t) = &task.test {
        let (p, each) = fusion::ensemble_on(job.zoo, job.cache, ens, ds, split, t.ds)?;
        let all: Vec<usize> = (0..t.ds.rows()).collect();
        r.ensemble_test_accuracy = accuracy_of(&p, &t.ds.y, &all);
        for (m, a) in r.teachers.iter_mut().zip(each) {
            m.test_accuracy = Some(a);
        }
    }
    Ok(Some(Distilled {
        weight_fusion: Some(r),
        ..Distilled::plain(f)
    }))
}

/// A search: over methods (`auto`), chains (`multihop`), or a fixed method's weightings
/// (`weighting: auto`), one-hop answers being chains without intermediates.
fn searched(
    tr: &mut Trainer<'_>,
    job: &Job<'_>,
    variants: &[Variant],
    span: (f64, f64),
    notes: &mut Vec<String>,
) -> Result<Option<Distilled>> {
    let opts = match job.req.method {
        Method::Multihop => job.req.multihop.clone().unwrap_or_default(),
        Method::Auto => MultihopOptions {
            max_hops: 0,
            ..Default::default()
        },
        m => MultihopOptions {
            max_hops: 0,
            hop_methods: vec![m],
            ..Default::default()
        },
    };
    let target_params = match job.kind {
        Kind::Net(a) => a.param_count(),
        Kind::Tree(_) => 0,
    };
    let cands = opts.candidates(job.ds, job.zoo)?;
    let found = multihop::search(
        tr,
        job.ds,
        job.split,
        job.sel,
        job.kind,
        target_params,
        (&opts, cands, variants),
        span,
    )?;
    let Some((fitted, report, kept, score)) = found else {
        return Ok(None);
    };
    let weighting = variants
        .iter()
        .find(|v| v.weighting == report.one_hop_weighting)
        .and_then(|v| v.report.clone());
    notes.extend(report.weighting_note.clone());
    Ok(Some(Distilled {
        fitted,
        // on the split alone the score is the delivered student's validation accuracy
        judged: job.sel.cv.then_some(score),
        weighting: Some(weighting),
        search: Some(report),
        kept,
        fusion: None,
        weight_fusion: None,
    }))
}

/// A fixed method: judged on the folds (for the fallback), each fold weighted on its own, then
/// trained on the split with the job's lesson.
fn judged_fixed(
    tr: &mut Trainer<'_>,
    job: &Job<'_>,
    taught: &Taught,
    variant: &Variant,
) -> Result<Option<Distilled>> {
    let (req, sel, kind, ds) = (job.req, job.sel, job.kind, job.ds);
    let step = 0.6 / sel.folds.len() as f64;
    tr.tag = Some(req.method.as_str().to_string());
    let Some((_, score)) = tr.judge(sel, &ds.y, |tr, fold, k| {
        let at = 0.2 + step * k as f64;
        let t = variant.on(k);
        tr.restarted(kind, sel.restarts(), (at, at + step), |tr, span| {
            teach(tr, req.method, Some(t), ds, fold, kind, span)
        })
    })?
    else {
        return Ok(None);
    };
    tr.tag = None;
    let Some(f) = tr.restarted(kind, sel.restarts(), (0.8, 0.95), |tr, span| {
        teach(tr, req.method, Some(taught), ds, job.split, kind, span)
    })?
    else {
        return Ok(None);
    };
    Ok(Some(Distilled {
        judged: Some(score),
        ..Distilled::plain(f)
    }))
}

/// The distilled and the scratch students' scores: on the folds when they judged the distilled one
/// (the baseline's fold trainings, when fold weights already needed them), and on the validation rows.
type Scores = (Option<Score>, Option<(Vec<Fitted>, Score)>, Score, Score);

/// Never worse than scratch: which student to deliver, and the card's selection report (with the
/// note when scratch wins). `None` when cancelled.
fn fall_back(
    tr: &mut Trainer<'_>,
    job: &Job<'_>,
    search: Option<&MultihopReport>,
    (judged, fold_base, d_val, b_val): Scores,
    no_teacher_helps: bool,
    notes: &mut Vec<String>,
) -> Result<Option<(Delivered, SelectionReport)>> {
    let (req, sel, kind, ds) = (job.req, job.sel, job.kind, job.ds);
    let cfg = &req.config;
    let (mut report, d_score, b_score) = match judged {
        Some(d) => {
            let b = match fold_base {
                Some((_, b)) => b,
                None => {
                    let Some((_, b)) = tr.baseline_on_folds(sel, &ds.y, kind, 0.95)? else {
                        return Ok(None);
                    };
                    b
                }
            };
            (sel.report(), d, b)
        }
        None => (Selector::on_split(job.split).report(), d_val, b_val),
    };
    let (d, b) = (d_score.accuracy(), b_score.accuracy());
    let name = match search {
        Some(r) if !r.chain.is_empty() => {
            format!("{} (a chain of {})", req.method.as_str(), r.chain.len() + 1)
        }
        Some(r) => {
            let chosen = multihop::method_label(r.one_hop_method, r.one_hop_weighting);
            if req.method.searches() {
                format!("{} ({chosen})", req.method.as_str())
            } else {
                // a fixed method searched over weightings (`weighting: auto`)
                chosen
            }
        }
        None => req.method.as_str().to_string(),
    };
    report.restarts = restarts_for(kind, report.restarts);
    report.candidates = vec![
        select::SelectionCandidate { name, accuracy: d },
        select::SelectionCandidate {
            name: "scratch".into(),
            accuracy: b,
        },
    ];
    let fallback =
        select::Fallback::judge(&d_score, &b_score, no_teacher_helps, cfg.no_help_margin_se);
    let mut delivered = Delivered::Distilled;
    if cfg.scratch_fallback && b > d {
        notes.push(format!(
            "the scratch student beat the distilled one on {} ({:.1}% vs {:.1}%): delivered the \
             scratch student (config scratch_fallback: false keeps the distilled one)",
            report.estimator,
            100.0 * b.unwrap_or(0.0),
            100.0 * d.unwrap_or(0.0)
        ));
        delivered = Delivered::Scratch;
    } else if let Some(f) = fallback
        .as_ref()
        .filter(|f| cfg.scratch_fallback && f.short_of_margin())
    {
        let by = if f.gain > 0.0 {
            format!(
                "beat the scratch one by {:.1} points (standard error {:.1}; {} standard errors, \
                 {:.1} points, needed)",
                100.0 * f.gain,
                100.0 * f.gain_se,
                cfg.no_help_margin_se,
                100.0 * f.required_gain
            )
        } else {
            "tied with the scratch one (a tie goes to scratch here)".to_string()
        };
        notes.push(format!(
            "the ranking's verdict is that no teacher helps, and the distilled student {by} on {}: \
             delivered the scratch student (config no_help_margin_se: 0 keeps the better of the two)",
            report.estimator
        ));
        delivered = Delivered::Scratch;
    }
    report.fallback = fallback;
    report.picked = report.candidates[usize::from(delivered == Delivered::Scratch)]
        .name
        .clone();
    Ok(Some((delivered, report)))
}

/// The test report when the task has test rows: both students, and the teacher carried into the
/// task's labels (the ensemble for several teachers, whose members' test accuracies go on `fusion`).
fn on_test_rows(
    job: &Job<'_>,
    task: &TaskData<'_>,
    (taught, ensemble, fusion): (
        Option<&Taught>,
        Option<&Ensemble>,
        Option<&mut FusionReport>,
    ),
    students: (&Model, Option<&Model>, Delivered),
) -> Result<Option<TestReport>> {
    let Some(t) = &task.test else {
        return Ok(None);
    };
    let (zoo, cache, ds, split) = (job.zoo, job.cache, job.ds, job.split);
    let teacher = match (taught, ensemble) {
        (Some(tt), _) => {
            let (o, _) = outputs::cached(zoo, Some(cache), &tt.teacher, t.ds, &t.ds.sha256())?;
            Some(methods::carry_other(
                &tt.teacher,
                &tt.probs,
                ds,
                split,
                &o.probs,
            ))
        }
        (None, Some(e)) => {
            let (p, each) = fusion::ensemble_on(zoo, cache, e, ds, split, t.ds)?;
            if let Some(r) = fusion {
                for (m, a) in r.teachers.iter_mut().zip(each) {
                    m.test_accuracy = Some(a);
                }
            }
            Some(p)
        }
        _ => None,
    };
    Ok(Some(test_report(t, students, teacher.as_ref())))
}
