//! The teacher's lesson under each sample weighting a job tries (its `weighting`, every one for `auto`,
//! multihop's `hop_weightings`): ProfWeight / SRatio weights on the job's split and, where
//! cross-validation judges, on every fold from probes and a simple model that never saw that fold's
//! held-out labels. Weights made once from all the labeled rows let each fold's judgement see its own
//! answers: SRatio keeps the pool rows that a scratch model trained on those very labels agrees with,
//! and on `tree:4` students it was chosen on folds where it looked 3-17 points better and lost up to 33
//! points on the test rows.
use super::select::{Score, Selector};
use super::weighting::{self, Weighting, WeightingReport};
use super::{DistillRequest, Fitted, Kind, Split, Taught, Trainer, methods};
use crate::data::Parsed;
use crate::error::{Error, ErrorKind, Result};
use crate::rank::outputs;
use crate::zoo::Zoo;

/// The teacher's lesson under one weighting.
pub(super) struct Variant {
    pub weighting: Weighting,
    /// On the job's split (what a delivered student learns from), with the card's report (`None`
    /// unweighted).
    pub split: Taught,
    pub report: Option<WeightingReport>,
    /// On each of the selector's folds, weighted without that fold's held-out labels (`[split]` when
    /// the split alone judges).
    pub folds: Vec<Taught>,
}

impl Variant {
    /// The lesson on fold `k` of the selector.
    pub fn on(&self, k: usize) -> &Taught {
        &self.folds[k]
    }
}

/// One weighting's weights on the split (with the card's report; `None` unweighted) and on each fold.
struct Weighed {
    weighting: Weighting,
    on_split: Option<(Vec<f32>, WeightingReport)>,
    on_folds: Vec<Vec<f32>>,
}

/// Every weighting's lesson, and the scratch baseline on the folds when weighting needed it (the
/// fallback's judgement reuses it).
pub(super) struct Prepared {
    pub variants: Vec<Variant>,
    pub fold_base: Option<(Vec<Fitted>, Score)>,
}

/// The weightings the job tries, the first being the job's own, each on the split (`base`: the scratch
/// baseline trained on it) and on the selector's folds. A weighting that cannot weigh the rows (SRatio
/// dropping every row) is left out when the job tries several, with a note; an error otherwise. `None`
/// when cancelled.
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    tr: &mut Trainer<'_>,
    zoo: &Zoo,
    ds: &Parsed,
    req: &DistillRequest,
    taught: &Taught,
    (base, kind): (&Fitted, &Kind),
    (split, sel): (&Split, &Selector),
    notes: &mut Vec<String>,
) -> Result<Option<Prepared>> {
    let mut listed = super::weightings(req);
    // the probe layers, read from the teacher's graph once (none needed unweighted)
    let names = if listed.iter().all(|w| *w == Weighting::None) {
        None
    } else {
        match weighting::probe_layers(zoo, &taught.teacher, req.probes.as_deref()) {
            Ok(names) => Some(names),
            Err(_) if req.weighting == Weighting::Auto => {
                notes.push(format!(
                    "weighting auto: teacher '{}' has no inner layers a probe can read (a forest or \
                     a linear model), so its hop was taught unweighted",
                    taught.teacher.id
                ));
                listed = vec![Weighting::None];
                None
            }
            Err(e) => return Err(e),
        }
    };
    let unweighted = |w: Weighting| Variant {
        weighting: w,
        split: taught.clone(),
        report: None,
        folds: vec![taught.clone(); sel.folds.len()],
    };
    let Some(names) = names else {
        return Ok(Some(Prepared {
            variants: listed.into_iter().map(unweighted).collect(),
            fold_base: None,
        }));
    };
    // the probes' features and labels, read once for every weighting and fold
    tr.progress.phase("probes", 0.15);
    let feats = outputs::inner(zoo, &taught.teacher, ds, &names)?;
    let layers: Vec<_> = names.into_iter().zip(feats).collect();
    let (classes, seed, beta) = (ds.classes(), req.config.seed, req.config.sratio_beta);
    // the probes' labels (the teacher's on the pool, carried by the label map of the rows a split or
    // fold trains on), the probes, and the simple model's probabilities on those rows
    let probe = |tr: &Trainer<'_>, model: &Fitted, on: &Split| -> Result<_> {
        let carried = methods::carried(&taught.teacher, &taught.probs, ds, on);
        let y = weighting::probe_labels(&carried, &ds.y);
        let rows = on.fit_rows();
        let probed = weighting::probe_all(&layers, &rows, &y, classes, seed)?;
        Ok((probed, tr.predict(&model.model, &rows), y))
    };
    let several = listed.len() > 1;
    let mut left_out = Vec::new();
    // a weighting that fails on the split or on a fold is left out (when there are others)
    let mut keep =
        |w: Weighting, r: Result<(Vec<f32>, WeightingReport)>, fold: Option<usize>| match r {
            Ok(x) => Ok(Some(x)),
            Err(e) if several && e.kind == ErrorKind::InvalidInput => {
                left_out.push(format!(
                    "weighting {} was not tried: {}{}",
                    w.as_str(),
                    e.message,
                    fold.map(|k| format!(" (on fold {} of the cross-validation)", k + 1))
                        .unwrap_or_default()
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        };
    let (probed, simple, y) = probe(tr, base, split)?;
    let mut found: Vec<Weighed> = Vec::new();
    for &w in &listed {
        let on_split = if w == Weighting::None {
            None
        } else {
            match keep(w, weighting::weights(w, &probed, &y, &simple, beta), None)? {
                Some(x) => Some(x),
                None => continue,
            }
        };
        found.push(Weighed {
            weighting: w,
            on_split,
            on_folds: Vec::new(),
        });
    }
    let mut fold_base = None;
    if sel.cv && found.iter().any(|f| f.on_split.is_some()) {
        // the scratch baseline on every fold: the simple model of that fold's weights
        let Some(b) = tr.baseline_on_folds(sel, &ds.y, kind, 0.15)? else {
            return Ok(None);
        };
        for (k, (fold, model)) in sel.folds.iter().zip(&b.0).enumerate() {
            tr.progress.phase(
                &format!("probes (fold {}/{})", k + 1, sel.folds.len()),
                0.15,
            );
            let (probed, simple, y) = probe(tr, model, fold)?;
            let mut failed = Vec::new();
            for f in found.iter_mut().filter(|f| f.on_split.is_some()) {
                let r = weighting::weights(f.weighting, &probed, &y, &simple, beta);
                match keep(f.weighting, r, Some(k))? {
                    Some((ws, _)) => f.on_folds.push(ws),
                    None => failed.push(f.weighting),
                }
            }
            found.retain(|f| !failed.contains(&f.weighting));
        }
        fold_base = Some(b);
    }
    if found.is_empty() {
        return Err(Error::invalid_input(format!(
            "no weighting tried can weigh this dataset's rows ({})",
            left_out.join("; ")
        )));
    }
    notes.extend(left_out);
    let with = |ws: Vec<f32>| Taught {
        weights: Some(ws),
        ..taught.clone()
    };
    let variants = found
        .into_iter()
        .map(|f| match f.on_split {
            None => unweighted(f.weighting),
            Some((ws, report)) => {
                let split_taught = with(ws);
                Variant {
                    weighting: f.weighting,
                    folds: if sel.cv {
                        f.on_folds.into_iter().map(with).collect()
                    } else {
                        vec![split_taught.clone()]
                    },
                    split: split_taught,
                    report: Some(report),
                }
            }
        })
        .collect();
    Ok(Some(Prepared {
        variants,
        fold_base,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::{Format, ParseOptions, parse};
    use crate::distill::student::Arch;
    use crate::distill::{Method, Quiet, TrainConfig};
    use crate::onnx::SessionPool;
    use crate::store::Store;

    fn repo(p: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    /// A fold's weights are made from the rows it trains on alone: relabelling the rows one fold holds
    /// out changes the weights on the job's split (those rows are on its training side) but not that
    /// fold's, so the fold's judgement of a weighted student never saw the labels it is judged on.
    #[test]
    fn a_folds_weights_never_see_the_labels_it_is_judged_on() {
        crate::onnx::environment().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            repo("zoo/teachers/mnist_mlp.onnx"),
            dir.path().join("mnist_mlp.onnx"),
        )
        .unwrap();
        let store = Store::temporary().unwrap();
        let zoo = Zoo::open(dir.path(), &store, Arc::new(SessionPool::new(1)), 256).unwrap();
        zoo.rescan().unwrap();
        let bytes = std::fs::read(repo("zoo/tasks/mnist_10way_5shot.npz")).unwrap();
        let opts = ParseOptions {
            max_bytes: 1 << 30,
            ..ParseOptions::default()
        };
        let ds: Parsed = parse(Format::Npz, bytes, &opts).unwrap().into();
        let teacher = zoo.get("mnist_mlp").unwrap();
        let (o, _) = outputs::cached(&zoo, None, &teacher, &ds, "").unwrap();
        let cfg = TrainConfig {
            max_epochs: 3,
            restarts: 1,
            ..TrainConfig::default()
        };
        let c = ds.classes();
        let split = Split::stratified(&ds.y, c, cfg.val_fraction, cfg.seed);
        let sel = Selector::new(&split, &ds.y, c, &cfg);
        assert!(sel.cv && sel.folds.len() == 5);
        let mut req = DistillRequest::new("", Method::Kd, "mnist_mlp", "mlp:8");
        req.config = cfg.clone();
        req.weighting = Weighting::Auto;
        // the job's profweight and sratio weights on the split and on fold 1, with the labels `y`
        let weights_with = |y: Vec<i64>| {
            let ds = Parsed { y, ..ds.clone() };
            let spec = req.student.as_ref().unwrap().spec().unwrap();
            let kind = Kind::Net(Arch::new(&spec, &ds.row_shape(), c, ds.view()).unwrap());
            let taught = Taught {
                teacher: teacher.clone(),
                carried: methods::carried(&teacher, &o.probs, &ds, &split).into(),
                probs: Arc::new(o.probs.clone()),
                weights: None,
            };
            let mut quiet = Quiet;
            let mut tr = Trainer::new(ds.view(), &cfg, None, &mut quiet);
            let base = tr
                .baseline(&kind, (&ds.y, &split), 1, (0.0, 0.1))
                .unwrap()
                .unwrap();
            let mut notes = Vec::new();
            let p = prepare(
                &mut tr,
                &zoo,
                &ds,
                &req,
                &taught,
                (&base, &kind),
                (&split, &sel),
                &mut notes,
            )
            .unwrap()
            .unwrap();
            assert!(p.fold_base.is_some());
            p.variants
                .iter()
                .filter(|v| v.weighting != Weighting::None)
                .map(|v| {
                    (
                        v.split.weights.clone().unwrap(),
                        v.on(0).weights.clone().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let before = weights_with(ds.y.clone());
        let mut y = ds.y.clone();
        for &r in &sel.folds[0].val {
            y[r] = (y[r] + 1) % c as i64;
        }
        let after = weights_with(y);
        assert_eq!(before.len(), 2, "profweight and sratio");
        let most = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        for ((split_a, fold_a), (split_b, fold_b)) in before.iter().zip(&after) {
            assert!(
                most(split_a, split_b) > 0.1,
                "the split's weights read those labels"
            );
            assert!(
                most(fold_a, fold_b) < 1e-4,
                "the fold's weights did not: {}",
                most(fold_a, fold_b)
            );
        }
    }
}
