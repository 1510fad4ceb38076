//! The OT solvers against POT's answers on committed fixtures, and their invariants on random problems.
use faculty::ot::{self, SinkhornOptions};
use ndarray::{Array1, Array2};
use proptest::prelude::*;

fn arr2(v: &[Vec<f64>]) -> Array2<f64> {
    Array2::from_shape_fn((v.len(), v[0].len()), |(i, j)| v[i][j])
}

fn max_abs(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ot_pot.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn vecf(v: &serde_json::Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn matf(v: &serde_json::Value) -> Array2<f64> {
    arr2(&serde_json::from_value::<Vec<Vec<f64>>>(v.clone()).unwrap())
}

#[test]
fn solvers_agree_with_pot() {
    for (k, c) in cases().iter().enumerate() {
        let a = Array1::from(vecf(&c["a"]));
        let b = Array1::from(vecf(&c["b"]));
        let m = matf(&c["M"]);
        let eps = c["eps"].as_f64().unwrap();
        let opts = SinkhornOptions {
            eps,
            max_iter: 20000,
            tol: 1e-12,
            eps_scaling: None,
        };
        let s = ot::sinkhorn_log(a.view(), b.view(), m.view(), &opts).unwrap();
        let err = max_abs(&s.plan, &matf(&c["sinkhorn_plan"]));
        assert!(
            err < 1e-8,
            "case {k}: sinkhorn plan differs from POT by {err}"
        );
        assert!(
            (s.cost - c["sinkhorn_cost"].as_f64().unwrap()).abs() < 1e-8,
            "case {k}: cost"
        );
        // epsilon scaling reaches the same solution
        let scaled = SinkhornOptions {
            eps_scaling: Some((64.0, 4.0)),
            ..opts
        };
        let s2 = ot::sinkhorn_log(a.view(), b.view(), m.view(), &scaled).unwrap();
        assert!(
            max_abs(&s2.plan, &s.plan) < 1e-8,
            "case {k}: eps scaling changed the plan"
        );
        let u = ot::sinkhorn_unbalanced(
            a.view(),
            b.view(),
            m.view(),
            c["unbalanced_reg_m"].as_f64().unwrap(),
            &opts,
        )
        .unwrap();
        let err = max_abs(&u.plan, &matf(&c["unbalanced_plan"]));
        assert!(
            err < 1e-7,
            "case {k}: unbalanced plan differs from POT by {err}"
        );
        let e = ot::emd(a.view(), b.view(), m.view()).unwrap();
        let want = c["emd_cost"].as_f64().unwrap();
        assert!(
            (e.cost - want).abs() < 1e-10,
            "case {k}: emd cost {} vs POT {want}",
            e.cost
        );
        // the batched solver, fed the same problem twice
        let ab = ndarray::stack![ndarray::Axis(0), a, a];
        let bb = ndarray::stack![ndarray::Axis(0), b, b];
        let (costs, g) = ot::sinkhorn_batch(ab.view(), bb.view(), m.view(), &opts).unwrap();
        for cst in costs {
            assert!(
                (cst - s.cost).abs() < 1e-7,
                "case {k}: batched cost {cst} vs {}",
                s.cost
            );
        }
        // started from potentials (its own answer shifted, or unusable numbers) it reaches the same
        // answer; starting potentials of the wrong shape are refused
        let mut starts = g.clone() + 3.0;
        starts.row_mut(1).fill(f64::NAN);
        starts[[1, 0]] = 1e6;
        let (costs, g2) =
            ot::sinkhorn_batch_from(ab.view(), bb.view(), m.view(), &opts, Some(starts.view()))
                .unwrap();
        for cst in costs {
            assert!(
                (cst - s.cost).abs() < 1e-7,
                "case {k}: batched cost from potentials {cst} vs {}",
                s.cost
            );
        }
        let centred = |g: &ndarray::Array2<f64>| {
            let mean = g
                .mean_axis(ndarray::Axis(1))
                .unwrap()
                .insert_axis(ndarray::Axis(1));
            g - &mean
        };
        let moved = max_abs(&centred(&g2), &centred(&g));
        assert!(
            moved < 1e-5,
            "case {k}: potentials from a start moved by {moved}"
        );
        let wrong = ndarray::Array2::<f64>::zeros((3, m.ncols()));
        assert!(
            ot::sinkhorn_batch_from(ab.view(), bb.view(), m.view(), &opts, Some(wrong.view()))
                .is_err()
        );
    }
}

fn simplex(v: Vec<f64>) -> Array1<f64> {
    let s: f64 = v.iter().sum();
    Array1::from(v) / s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sinkhorn_invariants(
        av in prop::collection::vec(0.01f64..1.0, 2..12),
        bv in prop::collection::vec(0.01f64..1.0, 2..12),
        seed in 0u64..1000,
        eps in 0.02f64..1.0,
    ) {
        let (a, b) = (simplex(av), simplex(bv));
        let (n, k) = (a.len(), b.len());
        let m = Array2::from_shape_fn((n, k), |(i, j)| (((i * 31 + j * 17) as u64 * 2654435761 + seed) % 1000) as f64 / 1000.0);
        let opts = SinkhornOptions { eps, max_iter: 20000, tol: 1e-10, eps_scaling: None };
        let s = ot::sinkhorn_log(a.view(), b.view(), m.view(), &opts).unwrap();
        prop_assert!(s.plan.iter().all(|&p| p >= 0.0));
        let (r, c) = ot::marginals(&s.plan);
        prop_assert!((&r - &a).iter().all(|x| x.abs() < 1e-7), "row marginals");
        // the column marginals hold once it converged; a small eps with a tiny column mass can need more
        // than max_iter sweeps (eps 0.02, a column of mass 0.008: 6e-5 off after 20,000), and then it must
        // say so rather than claim convergence
        if s.converged {
            prop_assert!((&c - &b).iter().all(|x| x.abs() < 1e-7), "column marginals");
        } else {
            prop_assert_eq!(s.iterations, opts.max_iter);
            prop_assert!((&c - &b).iter().all(|x| x.abs() < 1e-3), "column marginals far off");
        }
        // the entropic plan is feasible, so it costs at least the exact optimum and at most max M
        let e = ot::emd(a.view(), b.view(), m.view()).unwrap();
        let mmax = m.iter().copied().fold(0.0, f64::max);
        prop_assert!(s.cost >= e.cost - 1e-9 && s.cost <= mmax + 1e-9);
        let (er, ec) = ot::marginals(&e.plan);
        prop_assert!((&er - &a).iter().all(|x| x.abs() < 1e-9) && (&ec - &b).iter().all(|x| x.abs() < 1e-9));
        prop_assert!(e.plan.iter().all(|&p| p >= 0.0));
        // the exact cost is a lower bound on the cost of the independent plan a b^T
        let indep: f64 = (0..n).flat_map(|i| (0..k).map(move |j| (i, j))).map(|(i, j)| a[i] * b[j] * m[[i, j]]).sum();
        prop_assert!(e.cost <= indep + 1e-12);
    }
}

#[test]
fn tiny_epsilon_falls_back_to_the_log_domain_and_approaches_exact_ot() {
    // exp(-M/eps) underflows to 0 at eps = 1e-3: the kernel iterations cannot run, the log domain can
    let (n, k) = (6, 5);
    let a = simplex((0..n).map(|i| 1.0 + i as f64).collect());
    let b = simplex((0..k).map(|j| 2.0 + (j % 3) as f64).collect());
    let m = Array2::from_shape_fn((n, k), |(i, j)| {
        0.5 + 0.5 * ((i as f64) - (j as f64)).abs() / 6.0
    });
    let opts = SinkhornOptions {
        eps: 1e-3,
        max_iter: 50_000,
        tol: 1e-9,
        eps_scaling: Some((100.0, 2.0)),
    };
    let s = ot::sinkhorn_log(a.view(), b.view(), m.view(), &opts).unwrap();
    assert!(s.plan.iter().all(|p| p.is_finite() && *p >= 0.0));
    let (r, c) = ot::marginals(&s.plan);
    assert!((&r - &a).iter().all(|x| x.abs() < 1e-6) && (&c - &b).iter().all(|x| x.abs() < 1e-6));
    let e = ot::emd(a.view(), b.view(), m.view()).unwrap();
    assert!(
        s.cost >= e.cost - 1e-9 && s.cost - e.cost < 5e-3,
        "entropic {} exact {}",
        s.cost,
        e.cost
    );
    assert!(s.f.iter().chain(s.g.iter()).all(|x| x.is_finite()));
}
