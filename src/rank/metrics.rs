//! Transferability scores of one teacher on one task, computed from the teacher's soft outputs `p` [N, C_t]
//! (and penultimate features `f` [N, D] where the teacher has a linear head) on the task's LABELED rows.
//! Each function documents its direction. ALGORITHMS.md sections 2-3 describe them; the OT score and the
//! verdict's estimates are cross-fitted (leave-one-out) so a teacher is not rewarded for fitting the labels
//! it is scored on.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use ndarray_linalg::{FactorizeC, InverseC, SolveC, UPLO};

use crate::error::{Error, Result};

/// Pseudo-count spread over the student classes of every teacher class in LEEP's, NCE's and `ot_pool`'s
/// maps, so an unseen teacher class maps uniformly instead of dividing by zero.
const SMOOTH: f64 = 1e-3;

/// Per-class sums of the rows of `a` ([C_s, D]) and per-class row counts.
fn class_sums(a: ArrayView2<f64>, y: &[usize], c_s: usize) -> (Array2<f64>, Vec<f64>) {
    let mut sums = Array2::<f64>::zeros((c_s, a.ncols()));
    let mut counts = vec![0.0; c_s];
    for (row, &c) in a.rows().into_iter().zip(y) {
        let mut s = sums.row_mut(c);
        s += &row;
        counts[c] += 1.0;
    }
    (sums, counts)
}

/// Soft joint counts J[i, j] = sum over rows of class j of p_i.
fn joint_counts(p: ArrayView2<f64>, y: &[usize], c_s: usize) -> Array2<f64> {
    class_sums(p, y, c_s).0.reversed_axes()
}

/// P(j | i) from joint counts, with the smoothing pseudo-count and an optional prior (added counts).
fn conditional(j: &Array2<f64>, prior: Option<&Array2<f64>>) -> Array2<f64> {
    conditional_smoothed(j, prior, SMOOTH)
}

/// The teacher-class -> student-class map P(j | i) [C_t, C_s] from the soft joint of the teacher's
/// outputs `p` on labeled rows with labels `y`, `smooth` pseudo-rows spread over the student classes and
/// an optional label-name prior (added counts). Distillation carries the teacher into the student's labels
/// with it.
pub fn label_map(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
    smooth: f64,
) -> Array2<f64> {
    conditional_smoothed(&joint_counts(p, y, c_s), prior, smooth)
}

fn conditional_smoothed(j: &Array2<f64>, prior: Option<&Array2<f64>>, smooth: f64) -> Array2<f64> {
    let c_s = j.ncols();
    conditional_spread(j, prior, &Array1::from_elem(c_s, smooth / c_s as f64))
}

/// P(j | i) from joint counts plus `pseudo[j]` counts in every teacher class's row and an optional prior.
fn conditional_spread(
    j: &Array2<f64>,
    prior: Option<&Array2<f64>>,
    pseudo: &Array1<f64>,
) -> Array2<f64> {
    let mut p = j.mapv(|v| v.max(0.0)) + pseudo.view().insert_axis(Axis(0));
    if let Some(pr) = prior {
        p += pr;
    }
    let s = p.sum_axis(Axis(1)).insert_axis(Axis(1));
    p / s
}

/// Pseudo-rows of every teacher class in the label map distillation carries a teacher through
/// (`distillation_map`).
const MAP_SMOOTH: f64 = 0.1;

/// The teacher-class -> student-class map distillation carries a teacher's outputs through (and the
/// label-map endpoint shows): 0.1 pseudo-rows per teacher class spread by Good-Turing (see
/// `label_map_good_turing`).
pub fn distillation_map(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
) -> Array2<f64> {
    label_map_good_turing(p, y, c_s, prior, MAP_SMOOTH)
}

/// Like [`label_map`], but the `smooth` pseudo-rows of a teacher class are spread over the student classes
/// by Good-Turing's estimate of where the teacher classes the labeled rows never showed belong: in
/// proportion to 1 + the number of teacher classes (by the teacher's top class) seen exactly once among
/// each student class's rows. A student class whose rows keep showing new teacher classes (consonants
/// among letters) has most of the teacher classes not yet seen; one whose rows repeat the same few
/// (vowels) has few. With uniform pseudo-rows an unseen teacher class maps evenly over the student classes.
/// The lean is weak where the classes are alike: on an even split (5 teacher classes per student class,
/// 10 rows each) a simulation finds it points the wrong way more often than the right one, by a few
/// points of probability (README, "Unseen teacher classes").
fn label_map_good_turing(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
    smooth: f64,
) -> Array2<f64> {
    let ones = Array1::from_iter(top_classes(p, y, c_s).iter().map(|m| 1.0 + singletons(m)));
    let pseudo = &ones * (smooth / ones.sum());
    conditional_spread(&joint_counts(p, y, c_s), prior, &pseudo)
}

/// LEEP (Nguyen et al. 2020): mean log-likelihood of the labels under the teacher's outputs pushed through
/// the empirical P(y | z). Higher is better.
pub fn leep(p: ArrayView2<f64>, y: &[usize], c_s: usize) -> f64 {
    mean(&leep_rows(p, y, c_s))
}

/// LEEP's per-row terms (log-likelihood of each row's label); LEEP is their mean.
pub fn leep_rows(p: ArrayView2<f64>, y: &[usize], c_s: usize) -> Vec<f64> {
    let cond = conditional(&joint_counts(p, y, c_s), None);
    let q = p.dot(&cond);
    y.iter()
        .enumerate()
        .map(|(n, &c)| q[[n, c]].max(1e-300).ln())
        .collect()
}

/// The mean of per-row terms (0 for none).
pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The standard error of the mean of `v`: its sample standard deviation (n - 1) over sqrt(n); 0 for
/// fewer than two values.
pub fn standard_error(v: &[f64]) -> f64 {
    let n = v.len();
    if n < 2 {
        return 0.0;
    }
    let m = mean(v);
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// How many standard errors `a` is above `b` on average, paired row by row (the same rows scored two
/// ways): mean(a - b) / (sd(a - b) / sqrt(n)), clamped to +-99 (a difference with no spread at all).
/// `None` with fewer than two rows.
pub fn paired_z(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (m, se) = (mean(&d), standard_error(&d));
    Some(if se > 1e-12 {
        (m / se).clamp(-99.0, 99.0)
    } else if m.abs() <= 1e-12 {
        0.0
    } else {
        99.0 * m.signum()
    })
}

/// NCE (Tran et al. 2019): -H(Y | Z), Z the teacher's hard prediction. Higher is better (max 0).
pub fn nce(p: ArrayView2<f64>, y: &[usize], c_s: usize) -> f64 {
    let c_t = p.ncols();
    let mut joint = Array2::<f64>::zeros((c_t, c_s));
    for (row, &c) in p.rows().into_iter().zip(y) {
        let z = argmax(row);
        joint[[z, c]] += 1.0;
    }
    let n = y.len() as f64;
    let mut h = 0.0;
    for i in 0..c_t {
        let pz: f64 = joint.row(i).sum();
        for j in 0..c_s {
            let v = joint[[i, j]];
            if v > 0.0 {
                h += v / n * (v / pz).ln();
            }
        }
    }
    h
}

pub(crate) fn argmax(row: ArrayView1<f64>) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Cross-fitted label maps in closed form, the distiller's map ([`distillation_map`]) left one row out:
/// leaving row n out changes only column y_n of the joint counts and, through its top teacher class, the
/// singleton count of class y_n that spreads the pseudo-rows, so P(j | i) without row n is
/// (J[i, j] - [j = y_n] p_n[i] + prior[i, j] + g_n[j]) / (R_i - p_n[i] + s + Pr_i), with R and Pr the
/// row sums of J and of the prior, s = [`MAP_SMOOTH`] and g_n the Good-Turing spread of s without row n.
/// No per-row matrices are built.
struct LooMap {
    /// J + prior.
    joint: Array2<f64>,
    /// Row sums of J + prior, plus s.
    row_sums: Array1<f64>,
    /// Per student class, how many labeled rows have each teacher class as their top class.
    seen: Vec<std::collections::HashMap<usize, usize>>,
    /// Per student class, its singletons among `seen` (with all rows in).
    ones: Vec<f64>,
}

impl LooMap {
    fn new(p: ArrayView2<f64>, y: &[usize], c_s: usize, prior: Option<&Array2<f64>>) -> Self {
        let mut joint = joint_counts(p, y, c_s);
        if let Some(pr) = prior {
            joint += pr;
        }
        let row_sums = joint.sum_axis(Axis(1)) + MAP_SMOOTH;
        let seen = top_classes(p, y, c_s);
        let ones = seen.iter().map(singletons).collect();
        Self {
            joint,
            row_sums,
            seen,
            ones,
        }
    }

    /// The pseudo-rows per student class with row n (top teacher class `top`, label `yn`) left out: only
    /// class `yn`'s singleton count moves (its teacher class seen once is gone, or seen twice becomes a
    /// singleton).
    fn pseudo(&self, top: usize, yn: usize) -> Vec<f64> {
        let mut w: Vec<f64> = self.ones.iter().map(|k| 1.0 + k).collect();
        match self.seen[yn].get(&top) {
            Some(1) => w[yn] -= 1.0,
            Some(2) => w[yn] += 1.0,
            _ => {}
        }
        let total: f64 = w.iter().sum();
        w.iter().map(|v| v * MAP_SMOOTH / total).collect()
    }

    /// P(j | i) with row n (probabilities `pn`, label `yn`, its [`Self::pseudo`] rows) left out.
    #[inline]
    fn cond(&self, i: usize, j: usize, pn: &ArrayView1<f64>, yn: usize, pseudo: &[f64]) -> f64 {
        let own = if j == yn { pn[i] } else { 0.0 };
        let num = (self.joint[[i, j]] - own).max(0.0) + pseudo[j];
        num / (self.row_sums[i] - pn[i]).max(1e-300)
    }
}

/// Per student class, how many of its rows have each teacher class as their top class.
fn top_classes(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
) -> Vec<std::collections::HashMap<usize, usize>> {
    let mut seen = vec![std::collections::HashMap::<usize, usize>::new(); c_s];
    for (row, &c) in p.rows().into_iter().zip(y) {
        *seen[c].entry(argmax(row)).or_default() += 1;
    }
    seen
}

/// How many teacher classes are the top class of exactly one of a student class's rows.
fn singletons(m: &std::collections::HashMap<usize, usize>) -> f64 {
    m.values().filter(|&&k| k == 1).count() as f64
}

/// Where each of the task's classes is in the teacher's output when the teacher names exactly the task's
/// classes, in any order (case and surrounding space ignored); `None` otherwise.
pub fn same_classes(teacher: &[String], task: &[String]) -> Option<Vec<usize>> {
    let norm = |s: &str| s.trim().to_lowercase();
    if teacher.len() != task.len() {
        return None;
    }
    task.iter()
        .map(|l| teacher.iter().position(|t| norm(t) == norm(l)))
        .collect()
}

/// A prior pseudo-count matrix from label names: `strength` on (i, j) when teacher class i and student
/// class j have the same name (case and surrounding space ignored). `None` when no names match.
pub fn name_prior(teacher: &[String], student: &[String], strength: f64) -> Option<Array2<f64>> {
    let norm = |s: &str| s.trim().to_lowercase();
    let mut m = Array2::zeros((teacher.len(), student.len()));
    let mut any = false;
    for (i, t) in teacher.iter().enumerate() {
        for (j, s) in student.iter().enumerate() {
            if norm(t) == norm(s) {
                m[[i, j]] = strength;
                any = true;
            }
        }
    }
    any.then_some(m)
}

/// The OT relatedness score with the data-driven cost of ALGORITHMS.md 2a (M[i, j] = 1 - P(j | i)),
/// cross-fitted leave-one-out, optionally with a label-name prior (2c) in P(j | i), P(j | i) being the map
/// distillation trains with ([`distillation_map`], left one row out). With a one-hot target
/// the only feasible plan is P[:, y] = p, so W = sum_i p_i M[i, y] exactly. Returns the mean transport
/// cost: LOWER is better; 1 - cost is the expected probability the mapped teacher gives the true label.
pub fn ot_data(p: ArrayView2<f64>, y: &[usize], c_s: usize, prior: Option<&Array2<f64>>) -> f64 {
    mean(&ot_data_rows(p, y, c_s, prior))
}

/// The OT score's per-row transport costs; [`ot_data`] is their mean.
pub fn ot_data_rows(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
) -> Vec<f64> {
    let map = LooMap::new(p, y, c_s, prior);
    y.iter()
        .enumerate()
        .map(|(n, &yn)| {
            let pn = p.row(n);
            let ps = map.pseudo(argmax(pn), yn);
            (0..p.ncols())
                .map(|i| pn[i] * (1.0 - map.cond(i, yn, &pn, yn, &ps)))
                .sum::<f64>()
        })
        .collect()
}

/// Leave-one-out accuracy of the teacher's outputs mapped through P(j | i): what the teacher, carried into
/// the student's label space, gets right on rows it was not fitted on. With a label-name prior (the one
/// `ot` uses) a class whose only labeled row is held out still maps from the teacher's class of the same
/// name; without it such a row is always a miss (one shot per class scored 0 for every teacher).
pub fn mapped_accuracy(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
) -> f64 {
    mean(&mapped_hits(p, y, c_s, prior))
}

/// Per labeled row, 1 when the mapped teacher (leave-one-out) gets it right, else 0.
pub fn mapped_hits(
    p: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
) -> Vec<f64> {
    let map = LooMap::new(p, y, c_s, prior);
    let mut q = vec![0.0; c_s];
    let mut hits = Vec::with_capacity(y.len());
    for (n, &yn) in y.iter().enumerate() {
        let pn = p.row(n);
        let ps = map.pseudo(argmax(pn), yn);
        q.fill(0.0);
        for i in 0..p.ncols() {
            if pn[i] == 0.0 {
                continue;
            }
            for (j, qj) in q.iter_mut().enumerate() {
                *qj += pn[i] * map.cond(i, j, &pn, yn, &ps);
            }
        }
        hits.push(f64::from(u8::from(
            argmax(ndarray::ArrayView1::from(&q[..])) == yn,
        )));
    }
    hits
}

/// The OT score with the prototype cost of ALGORITHMS.md 2b: M[i, j] = 1 - cos(w_i, mu_j), w_i the
/// teacher's classifier row and mu_j the mean penultimate feature of student class j (leave-one-out).
/// LOWER is better.
pub fn ot_prototype(
    p: ArrayView2<f64>,
    f: ArrayView2<f64>,
    w: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
) -> f64 {
    let (sums, counts) = class_sums(f, y, c_s);
    let wn: Vec<f64> = w
        .rows()
        .into_iter()
        .map(|r| r.dot(&r).sqrt().max(1e-12))
        .collect();
    let mut total = 0.0;
    for (n, &c) in y.iter().enumerate() {
        // prototype of the row's own class without the row
        let k = counts[c] - 1.0;
        let mu: Array1<f64> = if k > 0.0 {
            (&sums.row(c) - &f.row(n)) / k
        } else {
            sums.row(c).to_owned()
        };
        let mun = mu.dot(&mu).sqrt().max(1e-12);
        let cost: f64 = w
            .rows()
            .into_iter()
            .enumerate()
            .map(|(i, wi)| p[[n, i]] * (1.0 - wi.dot(&mu) / (wn[i] * mun)))
            .sum();
        total += cost;
    }
    total / y.len() as f64
}

unsafe extern "C" {
    fn openblas_set_num_threads(n: std::ffi::c_int);
}

/// OpenBLAS's own thread pool spins in `sched_yield` on these small (D <= a few hundred) problems and
/// fights ONNX Runtime's threads; faculty parallelises across requests instead. Called before any LAPACK
/// use; the first call wins.
fn single_threaded_blas() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: a plain setter in the linked OpenBLAS, called once before concurrent LAPACK use.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// Eigendecomposition of a symmetric matrix (its lower triangle is read): eigenvalues ascending and the
/// eigenvectors as columns, like `ndarray_linalg::Eigh`, but by LAPACK's divide-and-conquer `dsyevd`:
/// `Eigh`'s `dsyev` (QR iterations) was a fifth of re-scoring a zoo from cached outputs.
pub fn eigh_sym(a: &Array2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    use std::ffi::{c_char, c_int};
    single_threaded_blas();
    let n = a.nrows();
    if n != a.ncols() {
        return Err(Error::internal("eigh_sym: the matrix is not square"));
    }
    if n == 0 {
        return Ok((Array1::zeros(0), Array2::zeros((0, 0))));
    }
    // row-major symmetric = column-major symmetric; LAPACK leaves eigenvector j in column j, which the
    // row-major buffer holds as row j, hence the transpose at the end
    let mut buf: Vec<f64> = a.iter().copied().collect();
    let mut w = vec![0.0f64; n];
    let ni = n as c_int;
    let (jobz, uplo) = (b'V' as c_char, b'U' as c_char);
    // one call shape for the workspace query (sizes -1) and the solve
    let mut dsyevd = |work: &mut [f64], lwork: c_int, iwork: &mut [c_int], liwork: c_int| {
        let mut info: c_int = 0;
        // SAFETY: buffers sized as LAPACK documents (n*n matrix, n eigenvalues; the workspace slices
        // hold at least lwork / liwork values, or one for the query)
        unsafe {
            lapack_sys::dsyevd_(
                &jobz,
                &uplo,
                &ni,
                buf.as_mut_ptr(),
                &ni,
                w.as_mut_ptr(),
                work.as_mut_ptr(),
                &lwork,
                iwork.as_mut_ptr(),
                &liwork,
                &mut info,
            );
        }
        info
    };
    let (mut wq, mut iwq) = ([0.0f64], [0 as c_int]);
    let info = dsyevd(&mut wq, -1, &mut iwq, -1);
    if info != 0 {
        return Err(Error::internal(format!(
            "dsyevd workspace query failed ({info})"
        )));
    }
    let (lwork, liwork) = (wq[0] as c_int, iwq[0]);
    let mut work = vec![0.0f64; lwork.max(1) as usize];
    let mut iwork = vec![0 as c_int; liwork.max(1) as usize];
    let info = dsyevd(&mut work, lwork, &mut iwork, liwork);
    if info != 0 {
        return Err(Error::internal(format!(
            "eigendecomposition did not converge ({info})"
        )));
    }
    let v = Array2::from_shape_vec((n, n), buf)
        .expect("n*n values")
        .reversed_axes();
    Ok((Array1::from(w), v.as_standard_layout().into_owned()))
}

/// Inverse of a positive-definite matrix by Cholesky (several times faster than an eigensolver), falling
/// back to [`sym_inverse`] when the factorisation fails numerically.
fn pd_inverse(a: &Array2<f64>, what: &str) -> Result<Array2<f64>> {
    single_threaded_blas();
    match a.invc() {
        Ok(inv) => Ok(inv),
        Err(_) => sym_inverse(a, what),
    }
}

/// A^-1 B for a symmetric positive-definite A: one Cholesky factorisation and a solve per column of B
/// (a third of the work of inverting), the eigendecomposition when A is not numerically definite.
fn pd_solve(a: &Array2<f64>, b: &Array2<f64>, what: &str) -> Result<Array2<f64>> {
    single_threaded_blas();
    let Ok(f) = a.factorizec(UPLO::Lower) else {
        return Ok(sym_inverse(a, what)?.dot(b));
    };
    let mut x = Array2::zeros(b.raw_dim());
    for (j, col) in b.columns().into_iter().enumerate() {
        let sol = f
            .solvec(&col.to_owned())
            .map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
        x.column_mut(j).assign(&sol);
    }
    Ok(x)
}

/// Inverse of a symmetric positive-definite matrix through its eigendecomposition. (LAPACK's LU `getrf`
/// in OpenBLAS recurses with large stack frames and overflows the 2 MiB stacks of tokio's blocking
/// threads; the symmetric eigensolver does not.)
fn sym_inverse(a: &Array2<f64>, what: &str) -> Result<Array2<f64>> {
    single_threaded_blas();
    let (s, v) = eigh_sym(a)
        .map_err(|e| Error::internal(format!("{what}: eigendecomposition failed: {e}")))?;
    let top = s.iter().copied().fold(0.0, f64::max);
    let inv_s = s.mapv(|x| if x > top * 1e-12 { 1.0 / x } else { 0.0 });
    Ok((&v * &inv_s).dot(&v.t()))
}

/// What LogME and H-score need from penultimate features, in one pass: the Gram matrix F^T F and the
/// per-class feature sums and counts (one-hot targets make F^T y_k the class-k sum).
pub struct FeatureStats {
    pub n: usize,
    pub gram: Array2<f64>,
    pub sums: Array2<f64>,
    pub counts: Vec<f64>,
}

impl FeatureStats {
    pub fn new(f: ArrayView2<f64>, y: &[usize], c_s: usize) -> Self {
        Self::with_gram(f, y, c_s, f.t().dot(&f))
    }

    /// With a Gram matrix computed elsewhere (e.g. in float32 from the cached features, twice as fast).
    pub fn with_gram(f: ArrayView2<f64>, y: &[usize], c_s: usize, gram: Array2<f64>) -> Self {
        let (sums, counts) = class_sums(f, y, c_s);
        Self {
            n: f.nrows(),
            gram,
            sums,
            counts,
        }
    }
}

/// LogME (You et al. 2021): the per-row log evidence of a Bayesian linear model on the features,
/// averaged over one-vs-rest class targets, by the fixed-point iteration on (alpha, beta). Higher is better.
pub fn logme(f: ArrayView2<f64>, y: &[usize], c_s: usize) -> Result<f64> {
    logme_stats(&FeatureStats::new(f, y, c_s))
}

/// LogME from precomputed [`FeatureStats`]: everything is D-dimensional, whatever N is.
pub fn logme_stats(st: &FeatureStats) -> Result<f64> {
    single_threaded_blas();
    let d = st.gram.nrows();
    let (nf, df) = (st.n as f64, d as f64);
    let (s, v) = eigh_sym(&st.gram)
        .map_err(|e| Error::internal(format!("LogME eigendecomposition: {e}")))?;
    let s = s.mapv(|x| x.max(0.0));
    let c_s = st.counts.len();
    let mut total = 0.0;
    for c in 0..c_s {
        let fty = st.sums.row(c).to_owned();
        let yy = st.counts[c];
        let tmp = v.t().dot(&fty);
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let mut lam = alpha / beta;
        let (mut alpha_de, mut beta_de) = (0.0, 0.0);
        for _ in 0..11 {
            let gamma: f64 = s.iter().map(|&si| si / (si + lam)).sum();
            let scale: Array1<f64> = s.mapv(|si| beta / (alpha + beta * si));
            let m = v.dot(&(&tmp * &scale));
            alpha_de = m.dot(&m);
            alpha = gamma / (alpha_de + 1e-5);
            // ||y - F m||^2 = y.y - 2 m.F^T y + m^T F^T F m
            beta_de = (yy - 2.0 * m.dot(&fty) + m.dot(&st.gram.dot(&m))).max(0.0);
            beta = (nf - gamma) / (beta_de + 1e-5);
            let new_lam = alpha / beta;
            let done = ((new_lam - lam) / lam).abs() < 0.01;
            lam = new_lam;
            if done {
                break;
            }
        }
        let evidence = df / 2.0 * alpha.ln() + nf / 2.0 * beta.ln()
            - 0.5 * s.iter().map(|&si| (alpha + beta * si).ln()).sum::<f64>()
            - beta / 2.0 * (beta_de + 1e-5)
            - alpha / 2.0 * (alpha_de + 1e-5)
            - nf / 2.0 * (2.0 * std::f64::consts::PI).ln();
        total += evidence / nf;
    }
    Ok(total / c_s as f64)
}

/// H-score (Bao et al. 2019) with shrinkage for few rows: tr(cov(f)^-1 cov(E[f | y])), the feature
/// covariance shrunk toward its scaled identity by D / (N + D). Higher is better.
pub fn hscore(f: ArrayView2<f64>, y: &[usize], c_s: usize) -> Result<f64> {
    hscore_stats(&FeatureStats::new(f, y, c_s))
}

/// H-score from precomputed [`FeatureStats`].
pub fn hscore_stats(st: &FeatureStats) -> Result<f64> {
    let (n, d) = (st.n as f64, st.gram.nrows());
    let mean = st.sums.sum_axis(Axis(0)) / n;
    let outer = |a: &Array1<f64>| {
        let col = a.view().insert_axis(Axis(1));
        col.dot(&col.t())
    };
    let cov = &st.gram / n - &outer(&mean);
    let shrink = d as f64 / (n + d as f64);
    let tr = cov.diag().sum() / d as f64;
    let reg = cov * (1.0 - shrink) + Array2::<f64>::eye(d) * (shrink * tr.max(1e-12));
    let mut cov_g = Array2::<f64>::zeros((d, d));
    for (c, &k) in st.counts.iter().enumerate() {
        if k > 0.0 {
            let dm = &st.sums.row(c) / k - &mean;
            cov_g = cov_g + outer(&dm) * (k / n);
        }
    }
    // reg is positive definite (shrunk toward a positive multiple of I)
    let inv = pd_inverse(&reg, "H-score")?;
    Ok(inv.dot(&cov_g).diag().sum())
}

/// Column standardisation fitted on `x` (sd floored at 1e-3), scaled by 1/sqrt(D) so one ridge penalty
/// means the same at any row width.
fn standardiser(x: ArrayView2<f64>) -> impl Fn(ArrayView2<f64>) -> Array2<f64> {
    let d = x.ncols() as f64;
    let mean = x.mean_axis(Axis(0)).expect("rows");
    let sd = x.std_axis(Axis(0), 0.0).mapv(|s| s.max(1e-3) * d.sqrt());
    move |a| (&a - &mean) / &sd
}

/// One-hot targets [N, C_s], centred, and their column means.
fn centred_onehot(y: &[usize], c_s: usize) -> (Array2<f64>, Array1<f64>) {
    let mut t = Array2::<f64>::zeros((y.len(), c_s));
    for (i, &c) in y.iter().enumerate() {
        t[[i, c]] = 1.0;
    }
    let tmean = t.mean_axis(Axis(0)).expect("rows");
    (t - &tmean, tmean)
}

/// Leave-one-out accuracy of a ridge classifier on the raw (standardised) rows: a cheap estimate of what
/// the student learns from the labeled rows alone, for the verdict. Uses the dual (kernel) form when there
/// are fewer rows than features.
pub fn scratch_accuracy(x: ArrayView2<f64>, y: &[usize], c_s: usize, lambda: f64) -> Result<f64> {
    Ok(mean(&scratch_hits(x, y, c_s, lambda)?))
}

/// How many of `y` fall in each of the `c_s` classes.
pub fn class_counts(y: &[usize], c_s: usize) -> Vec<usize> {
    let mut count = vec![0usize; c_s];
    for &c in y {
        count[c] += 1;
    }
    count
}

/// Per row of `x`, 1 when the ridge classifier of [`scratch_accuracy`] gets it right held out, else 0.
pub fn scratch_hits(x: ArrayView2<f64>, y: &[usize], c_s: usize, lambda: f64) -> Result<Vec<f64>> {
    let (n, d) = x.dim();
    let xs = standardiser(x)(x);
    let (tc, tmean) = centred_onehot(y, c_s);
    // hat matrix H = X (X^T X + l I)^-1 X^T = K (K + l I)^-1
    let hat = if n <= d {
        let k = xs.dot(&xs.t());
        let inv = pd_inverse(&(&k + &(Array2::<f64>::eye(n) * lambda)), "ridge")?;
        k.dot(&inv)
    } else {
        let g = xs.t().dot(&xs);
        let inv = pd_inverse(&(&g + &(Array2::<f64>::eye(d) * lambda)), "ridge")?;
        xs.dot(&inv).dot(&xs.t())
    };
    let pred = hat.dot(&tc);
    let count = class_counts(y, c_s);
    Ok((0..n)
        .map(|i| {
            // a row whose class has no other labeled row: a classifier that never saw the class cannot
            // predict it (the formula below would, when every other class scores below the absent one's 0)
            if count[y[i]] < 2 {
                return 0.0;
            }
            let h = hat[[i, i]].min(1.0 - 1e-9);
            // leave-one-out prediction for ridge: (yhat - h y) / (1 - h)
            let row: Array1<f64> = (&pred.row(i) - &(&tc.row(i) * h)) / (1.0 - h) + &tmean;
            f64::from(u8::from(argmax(row.view()) == y[i]))
        })
        .collect())
}

/// The decisions on the `pool` rows of the same ridge classifier as [`scratch_accuracy`], trained on all
/// the labeled rows `x`: what a student that learned from the labeled rows alone predicts there.
pub fn ridge_decisions(
    x: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    pool: ArrayView2<f64>,
    lambda: f64,
) -> Result<Vec<usize>> {
    let (n, d) = x.dim();
    let st = standardiser(x);
    let (xs, ps) = (st(x), st(pool));
    let (tc, tmean) = centred_onehot(y, c_s);
    // the Gram matrix in float32 (twice the speed; a ridge decision does not need more)
    let xf = xs.mapv(|v| v as f32);
    let w = if n <= d {
        let k = xf.dot(&xf.t()).mapv(f64::from);
        let a = pd_solve(&(&k + &(Array2::<f64>::eye(n) * lambda)), &tc, "ridge")?;
        // the primal weights X^T A [D, C_s], so the pool is one thin product
        xs.t().dot(&a)
    } else {
        let g = xf.t().dot(&xf).mapv(f64::from);
        pd_solve(
            &(&g + &(Array2::<f64>::eye(d) * lambda)),
            &xs.t().dot(&tc),
            "ridge",
        )?
    };
    let pred = ps.dot(&w) + &tmean;
    Ok(pred.rows().into_iter().map(argmax).collect())
}

/// The pool term of the `ot_pool` score: on the unlabeled rows, the teacher's decision carried into the task's
/// labels (argmax of p P(j | i), the map fitted on all labeled rows, which the pool rows are not part of)
/// transported onto the decision `cheap` of a student trained on the labeled rows alone, with the 0/1
/// cost; between two one-hot distributions that is the fraction of rows where they disagree. LOWER is
/// better.
pub fn ot_pool(
    p_lab: ArrayView2<f64>,
    y: &[usize],
    c_s: usize,
    prior: Option<&Array2<f64>>,
    p_pool: ArrayView2<f64>,
    cheap: &[usize],
) -> f64 {
    let map = label_map(p_lab, y, c_s, prior, SMOOTH);
    let q = p_pool.dot(&map);
    let differ = q
        .rows()
        .into_iter()
        .zip(cheap)
        .filter(|(row, c)| argmax(*row) != **c)
        .count();
    differ as f64 / cheap.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ot_data_bounds_leep_and_perfect_teachers_score_well() {
        // a teacher that is right and confident on a 2-class task
        let p = array![[0.95, 0.05], [0.9, 0.1], [0.1, 0.9], [0.05, 0.95]];
        let y = [0, 0, 1, 1];
        let good = ot_data(p.view(), &y, 2, None);
        let bad_p = array![[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]];
        let bad = ot_data(bad_p.view(), &y, 2, None);
        assert!(good < 0.25 && bad > 0.45, "good {good} bad {bad}");
        // Jensen: the log-cost version of the score bounds -LEEP from above; the linear one is below 1
        assert!(leep(p.view(), &y, 2) > leep(bad_p.view(), &y, 2));
        assert!(nce(p.view(), &y, 2) > nce(bad_p.view(), &y, 2) - 1e-12);
        assert_eq!(mapped_accuracy(p.view(), &y, 2, None), 1.0);
    }

    #[test]
    fn per_row_terms_average_to_the_scores_and_paired_z_is_a_paired_t() {
        let p = array![
            [0.7, 0.3],
            [0.6, 0.4],
            [0.45, 0.55],
            [0.2, 0.8],
            [0.55, 0.45]
        ];
        let y = [0, 0, 1, 1, 1];
        let rows = ot_data_rows(p.view(), &y, 2, None);
        let m = rows.iter().sum::<f64>() / 5.0;
        assert!((ot_data(p.view(), &y, 2, None) - m).abs() < 1e-15);
        let l = leep_rows(p.view(), &y, 2);
        assert!((leep(p.view(), &y, 2) - l.iter().sum::<f64>() / 5.0).abs() < 1e-15);
        let h = mapped_hits(p.view(), &y, 2, None);
        assert!(h.iter().all(|&v| v == 0.0 || v == 1.0));
        assert!(
            (mapped_accuracy(p.view(), &y, 2, None) - h.iter().sum::<f64>() / 5.0).abs() < 1e-15
        );
        // scipy.stats.ttest_rel([1, 2, 3, 5], [0, 2, 1, 2]).statistic = 2.32379000772445
        let z = paired_z(&[1.0, 2.0, 3.0, 5.0], &[0.0, 2.0, 1.0, 2.0]).unwrap();
        assert!((z - 2.32379000772445).abs() < 1e-12, "{z}");
        assert_eq!(paired_z(&[1.0, 2.0], &[1.0, 2.0]), Some(0.0));
        assert_eq!(paired_z(&[2.0, 3.0], &[1.0, 2.0]), Some(99.0));
        assert_eq!(paired_z(&[1.0], &[0.0]), None);
    }

    #[test]
    fn good_turing_sends_unseen_teacher_classes_where_new_ones_keep_appearing() {
        // five teacher classes, two student classes: class 0's rows show teacher classes 0, 1, 2 once
        // each (three singletons), class 1's rows show teacher class 3 three times (none); teacher class
        // 4 is never any row's top class
        let hot = |i: usize| Array1::from_shape_fn(5, |k| if k == i { 0.96 } else { 0.01 });
        let rows = [0, 1, 2, 3, 3, 3].map(hot);
        let p =
            ndarray::stack(Axis(0), &rows.iter().map(|r| r.view()).collect::<Vec<_>>()).unwrap();
        let y = [0, 0, 0, 1, 1, 1];
        let gt = label_map_good_turing(p.view(), &y, 2, None, 0.1);
        let flat = label_map(p.view(), &y, 2, None, 0.1);
        // the pseudo-rows split 4 : 1 (one plus the singletons), so the unseen class leans to class 0
        // as far as its small soft counts (0.03 on each side) allow
        let want = (0.03 + 0.08) / (0.06 + 0.1);
        assert!((gt[[4, 0]] - want).abs() < 1e-12, "{}", gt[[4, 0]]);
        assert!((flat[[4, 0]] - 0.5).abs() < 1e-12);
        // where the rows speak, the spread barely matters
        assert!(gt[[3, 1]] > 0.9 && gt[[0, 0]] > 0.85, "{gt:?}");
        for r in gt.rows() {
            assert!((r.sum() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn one_shot_per_class_maps_through_the_label_names() {
        // a confident teacher, right on every row, one labeled row per class
        let p = array![[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]];
        let y = [0, 1, 2];
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let prior = name_prior(&names, &names, 2.0);
        // leaving a class's only row out leaves nothing to map it from
        assert_eq!(mapped_accuracy(p.view(), &y, 3, None), 0.0);
        assert_eq!(mapped_accuracy(p.view(), &y, 3, prior.as_ref()), 1.0);
        // names that do not match give no prior
        let other: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        assert!(name_prior(&other, &names, 2.0).is_none());
    }

    #[test]
    fn same_classes_maps_a_reordered_label_space_and_nothing_else() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let task = v(&["even", "odd"]);
        assert_eq!(
            same_classes(&v(&[" Odd", "EVEN "]), &task),
            Some(vec![1, 0])
        );
        // a superset, a subset and another label space are not the task's classes
        assert_eq!(same_classes(&v(&["even", "odd", "zero"]), &task), None);
        assert_eq!(same_classes(&v(&["even"]), &task), None);
        assert_eq!(same_classes(&v(&["even", "prime"]), &task), None);
    }

    #[test]
    fn pool_term_counts_disagreements_with_the_ridge_student() {
        // two well separated blobs; the ridge student trained on 4 labeled rows gets the pool right
        let x = array![[0.0, 0.1], [0.1, 0.0], [1.0, 0.9], [0.9, 1.0]];
        let y = [0, 0, 1, 1];
        let u = array![[0.05, 0.0], [0.0, 0.2], [1.0, 1.0], [0.95, 0.8], [0.8, 0.9]];
        let cheap = ridge_decisions(x.view(), &y, 2, u.view(), 1.0).unwrap();
        assert_eq!(cheap, vec![0, 0, 1, 1, 1]);
        // a teacher with swapped class names is carried through P(j | i): no disagreement
        let p_lab = array![[0.1, 0.9], [0.2, 0.8], [0.9, 0.1], [0.8, 0.2]];
        let p_pool = array![[0.1, 0.9], [0.3, 0.7], [0.9, 0.1], [0.7, 0.3], [0.6, 0.4]];
        assert_eq!(
            ot_pool(p_lab.view(), &y, 2, None, p_pool.view(), &cheap),
            0.0
        );
        // one that is wrong on two pool rows pays 2/5
        let p_bad = array![[0.9, 0.1], [0.3, 0.7], [0.1, 0.9], [0.7, 0.3], [0.6, 0.4]];
        let c = ot_pool(p_lab.view(), &y, 2, None, p_bad.view(), &cheap);
        assert!((c - 0.4).abs() < 1e-12, "{c}");
    }

    #[test]
    fn feature_metrics_prefer_separable_features() {
        let y: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let sep = Array2::from_shape_fn((40, 3), |(i, j)| {
            (if i % 2 == 0 { 1.0 } else { -1.0 }) * (j as f64 + 1.0)
                + ((i * 7 + j) % 5) as f64 * 0.05
        });
        let noise = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 13 + j * 7) % 11) as f64 / 11.0);
        assert!(logme(sep.view(), &y, 2).unwrap() > logme(noise.view(), &y, 2).unwrap());
        assert!(hscore(sep.view(), &y, 2).unwrap() > hscore(noise.view(), &y, 2).unwrap());
        assert!(scratch_accuracy(sep.view(), &y, 2, 1.0).unwrap() > 0.95);
    }
}

#[cfg(test)]
mod eigh_tests {
    use super::*;
    use ndarray_linalg::{Eigh, UPLO};

    #[test]
    fn dsyevd_matches_dsyev() {
        let n = 40;
        let mut x = 0.3f64;
        let b = Array2::from_shape_fn((n, n + 7), |_| {
            x = (x * 3.7 + 0.11) % 1.0;
            x - 0.5
        });
        let a = b.dot(&b.t());
        let (s, v) = eigh_sym(&a).unwrap();
        let (s2, _) = a.eigh(UPLO::Lower).unwrap();
        for (p, q) in s.iter().zip(&s2) {
            assert!((p - q).abs() < 1e-9 * s2[n - 1], "{p} vs {q}");
        }
        // A v_j = s_j v_j, and V is orthonormal
        let av = a.dot(&v);
        let err = (&av - &(&v * &s))
            .mapv(f64::abs)
            .fold(0.0f64, |m, &e| m.max(e));
        assert!(err < 1e-9 * s2[n - 1], "residual {err}");
        let i = v.t().dot(&v) - Array2::<f64>::eye(n);
        assert!(i.mapv(f64::abs).fold(0.0f64, |m, &e| m.max(e)) < 1e-10);
    }

    #[test]
    fn scores_that_differ_in_their_last_digits_tie() {
        // two copies of one teacher run in batches of other sizes, and a third teacher
        let v = [-0.933571496705464, -0.5, -0.9335714972324664];
        assert_eq!(ranks_tied(&v, 1e-6), vec![0.5, 2.0, 0.5]);
        assert_eq!(average_ranks(&v), vec![1.0, 2.0, 0.0]);
        assert_eq!(
            average_ranks(&[1.0, 3.0, 2.0, 2.0]),
            vec![0.0, 3.0, 1.5, 1.5]
        );
        // a real gap of 1e-5 does not tie
        assert_eq!(ranks_tied(&[0.50001, 0.5], 1e-6), vec![1.0, 0.0]);
    }
}

/// Average ranks (0-based, ties share the mean of their positions; ascending values get ascending
/// ranks).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    ranks_tied(v, 0.0)
}

/// [`average_ranks`] where values within `tie` (relative) of the first of a run of sorted values tie
/// with it.
pub fn ranks_tied(v: &[f64], tie: f64) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let tie = |a: f64, b: f64| a == b || (a - b).abs() <= tie * a.abs().max(b.abs());
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && tie(v[idx[j + 1]], v[idx[i]]) {
            j += 1;
        }
        for k in i..=j {
            r[idx[k]] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}
