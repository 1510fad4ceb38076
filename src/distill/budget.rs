//! Student budgets: `student: {"auto": {"max_params": N, "max_latency_ms": T}}` picks the largest network
//! student that fits both, from a fixed family (CNNs for image rows, one-hidden-layer MLPs, linear), by
//! parameter count (exact) and latency (the untrained student exported to ONNX and timed in ONNX Runtime on
//! this machine: one row, one thread, the median of 20 runs). A budget nothing fits is refused with the
//! smallest student's size and latency.
use serde::{Deserialize, Serialize};

use super::export;
use super::student::{Arch, StudentSpec};
use crate::data::Parsed;
use crate::error::{Error, Result};

/// Limits on the student (either may be absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub max_params: Option<usize>,
    pub max_latency_ms: Option<f64>,
}

/// One candidate as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetCandidate {
    pub student: String,
    pub parameters: usize,
    /// Measured only for candidates within `max_params`.
    pub latency_ms: Option<f64>,
    pub fits: bool,
}

/// The choice, for the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetReport {
    pub budget: Budget,
    pub chosen: String,
    /// Largest first; the search stops at the first that fits.
    pub candidates: Vec<BudgetCandidate>,
}

impl Budget {
    fn check(&self) -> Result<()> {
        if self.max_params.is_none() && self.max_latency_ms.is_none() {
            return Err(Error::invalid_input(
                "a student budget needs max_params, max_latency_ms or both",
            ));
        }
        if self.max_params == Some(0) || self.max_latency_ms.is_some_and(|t| t.is_nan() || t <= 0.0)
        {
            return Err(Error::invalid_input(
                "max_params and max_latency_ms must be positive",
            ));
        }
        Ok(())
    }
}

/// The family a budget chooses from, largest first, bound to the dataset (specs that do not fit its rows
/// are left out).
fn family(ds: &Parsed) -> Vec<(StudentSpec, Arch)> {
    let mut specs: Vec<StudentSpec> =
        ["cnn:32,64:128", "cnn:16,32:64", "cnn:8,16:32", "cnn:4,8:16"]
            .iter()
            .map(|s| StudentSpec::parse(s).expect("valid spec"))
            .collect();
    specs.extend(
        [1024usize, 512, 256, 128, 64, 32, 16, 8, 4, 2]
            .iter()
            .map(|&w| StudentSpec::Mlp {
                hidden: vec![w],
                activation: Default::default(),
            }),
    );
    specs.push(StudentSpec::Linear);
    let none = ds.view().range(0..0);
    let mut out: Vec<(StudentSpec, Arch)> = specs
        .into_iter()
        .filter_map(|spec| {
            let arch = Arch::new(&spec, &ds.row_shape(), ds.classes(), none).ok()?;
            Some((spec, arch))
        })
        .collect();
    out.sort_by_key(|(_, a)| std::cmp::Reverse(a.param_count()));
    out
}

/// Median single-row latency of an ONNX student, in milliseconds.
pub fn latency_ms(onnx: &[u8], ds: &Parsed) -> Result<f64> {
    let mut session = crate::onnx::session::load_session(onnx, 1)?;
    let pred = super::student_predictor(&ds.row_shape(), ds.classes());
    let one = ds.select_rows(&[0]);
    median_latency_ms(&mut session, &pred, one.view())
}

/// Median time of one-row predictions (20 runs after 5 warm-up runs), in milliseconds.
pub fn median_latency_ms(
    session: &mut ort::session::Session,
    pred: &crate::onnx::Predictor,
    one: ndarray::ArrayViewD<'_, f32>,
) -> Result<f64> {
    let mut times = Vec::new();
    for k in 0..25 {
        let t = std::time::Instant::now();
        pred.predict(session, "latency-probe", one.view(), 1)?;
        if k >= 5 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The largest student of the family within the budget.
pub fn choose(budget: &Budget, ds: &Parsed) -> Result<(StudentSpec, BudgetReport)> {
    budget.check()?;
    let mut candidates = Vec::new();
    let fam = family(ds);
    let mut smallest = None;
    for (spec, arch) in &fam {
        let params = arch.param_count();
        let mut c = BudgetCandidate {
            student: spec.describe(),
            parameters: params,
            latency_ms: None,
            fits: false,
        };
        if budget.max_params.is_none_or(|m| params <= m) || Some(spec) == fam.last().map(|f| &f.0) {
            let ms = match budget.max_latency_ms {
                Some(_) => Some(latency_ms(&export::to_onnx(arch, &arch.init(0), &[]), ds)?),
                None => None,
            };
            c.latency_ms = ms;
            c.fits = budget.max_params.is_none_or(|m| params <= m)
                && budget
                    .max_latency_ms
                    .is_none_or(|t| ms.is_some_and(|ms| ms <= t));
        }
        smallest = Some(c.clone());
        let fits = c.fits;
        candidates.push(c);
        if fits {
            return Ok((
                spec.clone(),
                BudgetReport {
                    budget: budget.clone(),
                    chosen: spec.describe(),
                    candidates,
                },
            ));
        }
    }
    let s = smallest.expect("linear always fits the rows");
    Err(Error::invalid_input(format!(
        "no student fits the budget (max_params {}, max_latency_ms {}): the smallest, {}, has {} \
         parameters{}",
        budget.max_params.map_or("none".into(), |m| m.to_string()),
        budget
            .max_latency_ms
            .map_or("none".into(), |m| m.to_string()),
        s.student,
        s.parameters,
        s.latency_ms.map_or(String::new(), |ms| format!(
            " and {ms:.4} ms latency on this machine"
        ))
    )))
}
