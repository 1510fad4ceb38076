//! Entropic optimal transport. `sinkhorn_log` (balanced, log-domain potentials with absorption
//! stabilisation, falling back to pure log-domain updates; optional epsilon scaling) returns the
//! plan, the transport cost <P, M> and the dual potentials; `sinkhorn_unbalanced` relaxes the marginals
//! with KL penalties (POT's `reg_type="kl"`); `sinkhorn_batch` solves many problems that share one cost
//! matrix, building the kernel exp(-M/eps) once. Conventions follow POT so fixtures compare directly:
//! P = diag(e^u) K diag(e^v), f = eps*u, g = eps*v.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::error::{Error, Result};

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct SinkhornOptions {
    /// Entropic regularisation (in the units of M).
    pub eps: f64,
    pub max_iter: usize,
    /// Stop when the column marginal's L2 error is below this.
    pub tol: f64,
    /// Epsilon scaling: start at `eps * eps_scaling_start`, divide by `eps_scaling_factor` per stage down
    /// to `eps`, warm-starting each stage from the last. `None` solves at `eps` directly.
    pub eps_scaling: Option<(f64, f64)>,
}

impl Default for SinkhornOptions {
    fn default() -> Self {
        Self {
            eps: 0.05,
            max_iter: 1000,
            tol: 1e-9,
            eps_scaling: None,
        }
    }
}

/// A solved problem.
#[derive(Debug, Clone)]
pub struct Solution {
    pub plan: Array2<f64>,
    /// <P, M> (no entropy term).
    pub cost: f64,
    /// Dual potentials: f = eps * log u, g = eps * log v.
    pub f: Array1<f64>,
    pub g: Array1<f64>,
    pub iterations: usize,
    /// Whether the marginal error went under `tol`.
    pub converged: bool,
}

fn check(a: ArrayView1<f64>, b: ArrayView1<f64>, m: ArrayView2<f64>, eps: f64) -> Result<()> {
    if m.dim() != (a.len(), b.len()) {
        return Err(Error::invalid_input(format!(
            "cost matrix is {:?} but the marginals have {} and {} entries",
            m.dim(),
            a.len(),
            b.len()
        )));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::invalid_input("eps must be positive and finite"));
    }
    if a.iter().chain(b.iter()).any(|v| *v < 0.0 || !v.is_finite())
        || m.iter().any(|v| !v.is_finite())
    {
        return Err(Error::invalid_input(
            "marginals must be non-negative and every value finite",
        ));
    }
    Ok(())
}

/// log(sum(exp(row))) with the max subtracted.
#[inline]
fn lse(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let mx = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if mx == f64::NEG_INFINITY {
        return mx;
    }
    mx + values.map(|v| (v - mx).exp()).sum::<f64>().ln()
}

fn ln(v: f64) -> f64 {
    if v > 0.0 { v.ln() } else { f64::NEG_INFINITY }
}

/// Runs log-domain Sinkhorn at one eps from potentials (u, v); `mr` = -M/eps. Returns iterations, converged.
#[allow(clippy::too_many_arguments)] // the kernel's state, passed apart so the caller keeps it between eps
fn iterate_log(
    loga: &Array1<f64>,
    logb: &Array1<f64>,
    mr: &Array2<f64>,
    u: &mut Array1<f64>,
    v: &mut Array1<f64>,
    max_iter: usize,
    tol: f64,
    b: ArrayView1<f64>,
) -> (usize, bool) {
    let (n, m) = mr.dim();
    let mrt = mr.t().as_standard_layout().into_owned();
    for it in 1..=max_iter {
        for j in 0..m {
            let col = mrt.row(j);
            v[j] = logb[j] - lse(col.iter().zip(u.iter()).map(|(x, ui)| x + ui));
        }
        for i in 0..n {
            let row = mr.row(i);
            u[i] = loga[i] - lse(row.iter().zip(v.iter()).map(|(x, vj)| x + vj));
        }
        if it % 10 == 0 || it == max_iter {
            // column marginal error of the current plan
            let mut err = 0.0;
            for j in 0..m {
                let s: f64 = (0..n).map(|i| (mr[[i, j]] + u[i] + v[j]).exp()).sum();
                err += (s - b[j]).powi(2);
            }
            if err.sqrt() < tol {
                return (it, true);
            }
        }
    }
    (max_iter, false)
}

/// The same iteration as [`iterate_log`], run on the kernel K = exp(-M/eps + lu_i + lv_j) with scalings
/// (u, v) that are absorbed into the log potentials (lu, lv) whenever they leave [1e-13, 1e13]
/// (Schmitzer's absorption stabilisation): one exponential per entry per absorption instead of per
/// iteration, so an iteration is two matrix-vector products. Returns `None` (potentials left at their last
/// valid value) when the kernel under/overflows anyway, and the caller falls back to the log domain.
fn iterate_stabilized(
    a: ArrayView1<f64>,
    b: ArrayView1<f64>,
    mr: &Array2<f64>,
    lu: &mut Array1<f64>,
    lv: &mut Array1<f64>,
    max_iter: usize,
    tol: f64,
) -> Option<(usize, bool)> {
    const BOUND: f64 = 30.0;
    let (n, m) = mr.dim();
    let build = |lu: &Array1<f64>, lv: &Array1<f64>| {
        let mut k = mr.clone();
        for ((i, j), x) in k.indexed_iter_mut() {
            *x = (*x + lu[i] + lv[j]).exp();
        }
        k
    };
    let mut k = build(lu, lv);
    let (mut u, mut v) = (vec![1.0f64; n], vec![1.0f64; m]);
    let (mut ktu, mut kv) = (vec![0.0f64; m], vec![0.0f64; n]);
    let absorb = |lu: &mut Array1<f64>, lv: &mut Array1<f64>, u: &[f64], v: &[f64]| {
        for (l, x) in lu.iter_mut().zip(u) {
            *l += ln(*x);
        }
        for (l, x) in lv.iter_mut().zip(v) {
            *l += ln(*x);
        }
    };
    for it in 1..=max_iter + 1 {
        ktu.fill(0.0);
        for (i, row) in k.rows().into_iter().enumerate() {
            let ui = u[i];
            if ui != 0.0 {
                for (t, x) in ktu.iter_mut().zip(row) {
                    *t += x * ui;
                }
            }
        }
        // the column marginal of the plan after iteration it-1
        if it > 1 && ((it - 1) % 10 == 0 || it == max_iter + 1) {
            let err = v
                .iter()
                .zip(&ktu)
                .zip(b.iter())
                .map(|((vj, t), bj)| (vj * t - bj).powi(2))
                .sum::<f64>()
                .sqrt();
            if err < tol || it == max_iter + 1 {
                absorb(lu, lv, &u, &v);
                return Some((it - 1, err < tol));
            }
        }
        for j in 0..m {
            v[j] = if b[j] > 0.0 { b[j] / ktu[j] } else { 0.0 };
        }
        for (i, row) in k.rows().into_iter().enumerate() {
            kv[i] = row.iter().zip(&v).map(|(x, y)| x * y).sum();
            u[i] = if a[i] > 0.0 { a[i] / kv[i] } else { 0.0 };
        }
        let live = |x: &f64| *x != 0.0;
        if !u.iter().chain(&v).all(|x| x.is_finite())
            || u.iter().zip(a.iter()).any(|(x, ai)| *ai > 0.0 && !live(x))
        {
            return None;
        }
        let big = u
            .iter()
            .chain(&v)
            .filter(|x| live(x))
            .any(|x| x.ln().abs() > BOUND);
        if big {
            absorb(lu, lv, &u, &v);
            k = build(lu, lv);
            u.fill(1.0);
            v.fill(1.0);
            for (x, ai) in u.iter_mut().zip(a.iter()) {
                if *ai <= 0.0 {
                    *x = 0.0;
                }
            }
        }
    }
    unreachable!("the loop returns at max_iter + 1")
}

/// Stabilised kernel iterations, or the log domain when the kernel cannot represent the problem.
#[allow(clippy::too_many_arguments)]
fn iterate(
    a: ArrayView1<f64>,
    b: ArrayView1<f64>,
    loga: &Array1<f64>,
    logb: &Array1<f64>,
    mr: &Array2<f64>,
    u: &mut Array1<f64>,
    v: &mut Array1<f64>,
    max_iter: usize,
    tol: f64,
) -> (usize, bool) {
    let (su, sv) = (u.clone(), v.clone());
    match iterate_stabilized(a, b, mr, u, v, max_iter, tol) {
        Some(r) => r,
        None => {
            *u = su;
            *v = sv;
            iterate_log(loga, logb, mr, u, v, max_iter, tol, b)
        }
    }
}

fn assemble(
    m: ArrayView2<f64>,
    mr: &Array2<f64>,
    u: Array1<f64>,
    v: Array1<f64>,
    eps: f64,
    iterations: usize,
    converged: bool,
) -> Solution {
    let mut plan = mr.clone();
    for ((i, j), p) in plan.indexed_iter_mut() {
        *p = (*p + u[i] + v[j]).exp();
    }
    let cost = (&plan * &m).sum();
    Solution {
        plan,
        cost,
        f: u * eps,
        g: v * eps,
        iterations,
        converged,
    }
}

/// Balanced entropic OT in the log domain (POT `ot.bregman.sinkhorn_log`).
pub fn sinkhorn_log(
    a: ArrayView1<f64>,
    b: ArrayView1<f64>,
    m: ArrayView2<f64>,
    opts: &SinkhornOptions,
) -> Result<Solution> {
    check(a, b, m, opts.eps)?;
    let loga = a.mapv(ln);
    let logb = b.mapv(ln);
    let (mut u, mut v) = (Array1::zeros(a.len()), Array1::zeros(b.len()));
    let mut total = 0;
    if let Some((start, factor)) = opts.eps_scaling {
        let factor = factor.max(1.01);
        let mut eps = opts.eps * start.max(1.0);
        let mut prev = eps;
        while eps > opts.eps * factor {
            // keep f, g (not u, v) across stages: u = f / eps
            u.mapv_inplace(|x| x * prev / eps);
            v.mapv_inplace(|x| x * prev / eps);
            let mr = m.mapv(|x| -x / eps);
            total += iterate(a, b, &loga, &logb, &mr, &mut u, &mut v, 50, opts.tol).0;
            prev = eps;
            eps /= factor;
        }
        u.mapv_inplace(|x| x * prev / opts.eps);
        v.mapv_inplace(|x| x * prev / opts.eps);
    }
    let mr = m.mapv(|x| -x / opts.eps);
    let (it, converged) = iterate(
        a,
        b,
        &loga,
        &logb,
        &mr,
        &mut u,
        &mut v,
        opts.max_iter,
        opts.tol,
    );
    Ok(assemble(m, &mr, u, v, opts.eps, total + it, converged))
}

/// Unbalanced entropic OT with KL-relaxed marginals of strength `reg_m` (POT
/// `ot.unbalanced.sinkhorn_unbalanced`, `reg_type="kl"`: the reference measure is a b^T), in the log domain.
pub fn sinkhorn_unbalanced(
    a: ArrayView1<f64>,
    b: ArrayView1<f64>,
    m: ArrayView2<f64>,
    reg_m: f64,
    opts: &SinkhornOptions,
) -> Result<Solution> {
    check(a, b, m, opts.eps)?;
    if reg_m.is_nan() || reg_m <= 0.0 {
        return Err(Error::invalid_input("reg_m must be positive"));
    }
    let fi = if reg_m.is_infinite() {
        1.0
    } else {
        reg_m / (reg_m + opts.eps)
    };
    let (loga, logb) = (a.mapv(ln), b.mapv(ln));
    // log K = -M/eps + log a_i + log b_j
    let mut lk = m.mapv(|x| -x / opts.eps);
    for ((i, j), x) in lk.indexed_iter_mut() {
        *x += loga[i] + logb[j];
    }
    let lkt = lk.t().as_standard_layout().into_owned();
    let (n, k) = lk.dim();
    let (mut u, mut v) = (Array1::<f64>::zeros(n), Array1::<f64>::zeros(k));
    let mut iterations = opts.max_iter;
    let mut converged = false;
    for it in 1..=opts.max_iter {
        let (pu, pv) = (u.clone(), v.clone());
        for i in 0..n {
            u[i] = fi * (loga[i] - lse(lk.row(i).iter().zip(v.iter()).map(|(x, y)| x + y)));
        }
        for j in 0..k {
            v[j] = fi * (logb[j] - lse(lkt.row(j).iter().zip(u.iter()).map(|(x, y)| x + y)));
        }
        // POT's criterion on the scalings u = e^log u
        let rel = |new: &Array1<f64>, old: &Array1<f64>| {
            let d = new
                .iter()
                .zip(old.iter())
                .map(|(a, b)| (a.exp() - b.exp()).abs())
                .fold(0.0, f64::max);
            let s = new
                .iter()
                .chain(old.iter())
                .map(|x| x.exp())
                .fold(1.0, f64::max);
            d / s
        };
        if 0.5 * (rel(&u, &pu) + rel(&v, &pv)) < opts.tol {
            iterations = it;
            converged = true;
            break;
        }
    }
    Ok(assemble(m, &lk, u, v, opts.eps, iterations, converged))
}

/// Many balanced problems with one cost matrix: row k of `a` and `b` are problem k's marginals. The kernel
/// exp(-M/eps) is built once and each problem costs O(iterations * n * m) multiply-adds. A problem whose
/// scalings under- or overflow is re-solved in the log domain, so the answer is always finite.
/// Returns each problem's transport cost <P_k, M> and student-side potential g_k.
pub fn sinkhorn_batch(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    m: ArrayView2<f64>,
    opts: &SinkhornOptions,
) -> Result<(Array1<f64>, Array2<f64>)> {
    sinkhorn_batch_from(a, b, m, opts, None)
}

/// [`sinkhorn_batch`] started from potentials: row k of `g0` is problem k's student-side potential
/// from an earlier solve of a nearby problem (any constant shift of a row is the same start), where
/// the iterations would otherwise start from g = 0. A problem that changed little since converges in
/// a fraction of the iterations; it stops at the same tolerance either way.
pub fn sinkhorn_batch_from(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    m: ArrayView2<f64>,
    opts: &SinkhornOptions,
    g0: Option<ArrayView2<f64>>,
) -> Result<(Array1<f64>, Array2<f64>)> {
    let (n, k) = m.dim();
    if a.dim().1 != n || b.dim().1 != k || a.nrows() != b.nrows() {
        return Err(Error::invalid_input(format!(
            "batch marginals {:?} and {:?} do not fit a {n}x{k} cost matrix",
            a.dim(),
            b.dim()
        )));
    }
    check(a.row(0), b.row(0), m, opts.eps)
        .or_else(|e| if a.nrows() == 0 { Ok(()) } else { Err(e) })?;
    if let Some(g0) = &g0
        && g0.dim() != (a.nrows(), k)
    {
        return Err(Error::invalid_input(format!(
            "starting potentials {:?} do not fit {} problems of {k} classes",
            g0.dim(),
            a.nrows()
        )));
    }
    // the kernel and kernel * cost as contiguous rows: the iterations below are dot products and
    // row updates over slices, which vectorize (a batch of 26-class problems, the faculty loss of a
    // letters job, spent ~90% of the job here at 2.4 us an iteration over ndarray row iterators)
    let kern: Vec<f64> = m.iter().map(|x| (-x / opts.eps).exp()).collect();
    let km: Vec<f64> = kern.iter().zip(m.iter()).map(|(x, c)| x * c).collect();
    let mut costs = Array1::zeros(a.nrows());
    let mut gs = Array2::zeros((a.nrows(), k));
    let mut u = vec![1.0; n];
    let mut v = vec![1.0; k];
    let mut ktu = vec![0.0; k];
    let (mut ap, mut bp) = (vec![0.0; n], vec![0.0; k]);
    for p in 0..a.nrows() {
        ap.iter_mut().zip(a.row(p)).for_each(|(x, y)| *x = *y);
        bp.iter_mut().zip(b.row(p)).for_each(|(x, y)| *x = *y);
        u.fill(1.0);
        match &g0 {
            Some(g0) => {
                for (vj, &g) in v.iter_mut().zip(g0.row(p)) {
                    let s = (g / opts.eps).exp();
                    *vj = if s.is_finite() && s > 0.0 { s } else { 1.0 };
                }
            }
            None => v.fill(1.0),
        }
        let mut ok = true;
        for it in 1..=opts.max_iter {
            for ((ui, &ai), row) in u.iter_mut().zip(&ap).zip(kern.chunks_exact(k)) {
                *ui = if ai > 0.0 { ai / dot(row, &v) } else { 0.0 };
            }
            ktu.fill(0.0);
            for (&ui, row) in u.iter().zip(kern.chunks_exact(k)) {
                for (t, x) in ktu.iter_mut().zip(row) {
                    *t += x * ui;
                }
            }
            let mut err = 0.0;
            for ((vj, &tj), &bj) in v.iter_mut().zip(&ktu).zip(&bp) {
                err += (*vj * tj - bj).powi(2);
                *vj = if bj > 0.0 { bj / tj } else { 0.0 };
            }
            if !u.iter().chain(v.iter()).all(|x| x.is_finite()) {
                ok = false;
                break;
            }
            if err.sqrt() < opts.tol && it > 1 {
                break;
            }
        }
        if ok {
            costs[p] = u
                .iter()
                .zip(km.chunks_exact(k))
                .map(|(&ui, row)| ui * dot(row, &v))
                .sum();
            for j in 0..k {
                gs[[p, j]] = opts.eps * ln(v[j]);
            }
        } else {
            let s = sinkhorn_log(a.row(p), b.row(p), m, opts)?;
            costs[p] = s.cost;
            gs.row_mut(p).assign(&s.g);
        }
    }
    Ok((costs, gs))
}

/// The dot product of two equally long slices, in four running sums (one sum is a chain of dependent
/// additions that cannot vectorize).
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (xs, ys) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xs.zip(ys) {
        for l in 0..4 {
            acc[l] += a[l] * b[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Scales M to [0, 1] (by its range) so one eps means the same for every cost matrix.
pub fn normalize_cost(m: &Array2<f64>) -> Array2<f64> {
    let lo = m.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi - lo < 1e-300 {
        return Array2::zeros(m.dim());
    }
    m.mapv(|x| (x - lo) / (hi - lo))
}

/// Row and column sums of a plan (for tests and callers that check marginals).
pub fn marginals(plan: &Array2<f64>) -> (Array1<f64>, Array1<f64>) {
    (plan.sum_axis(Axis(1)), plan.sum_axis(Axis(0)))
}
