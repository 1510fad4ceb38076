//! Ranking and OT speed. `ranking/cold`: a 16-teacher zoo (the bundled one minus four tabular teachers)
//! ranked for 2,000 labeled MNIST rows with no cached outputs (every teacher runs, features included);
//! `ranking/warm`: the same again (outputs and per-teacher scores cached: what re-ranking costs);
//! `ranking/warm_rescore`: outputs cached, every metric recomputed from them. `sinkhorn/100x100`: one log-domain solve;
//! `sinkhorn/batch_10000x10x10`: 10,000 10x10 problems sharing a cost matrix. The OT problems come from a
//! 32-bit LCG that `benches/ranking_python.py` reproduces, so POT solves the very same problems.
//! `benches/ranking_vs_python.sh` runs this and the Python side and prints the ratios. `BENCH_INFER_BATCH`
//! overrides the rows per ONNX Runtime call (default: the server's `infer_batch`).
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use faculty::config::Config;
use faculty::data::Dataset;
use faculty::data::npz::read_npz;
use faculty::onnx::SessionPool;
use faculty::ot::{self, SinkhornOptions};
use faculty::rank::{OutputCache, RankRequest, rank};
use faculty::store::Store;
use faculty::zoo::Zoo;
use ndarray::{Array1, Array2};

/// Left out to make a 16-teacher zoo.
pub const LEFT_OUT: &[&str] = &[
    "letters_am_logreg.onnx",
    "letters_lowdata_rf.onnx",
    "letters_logreg.onnx",
    "digits8x8_logreg.onnx",
];

fn threads() -> usize {
    std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The LCG both sides use: uniform in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = (self.0 * 1664525 + 1013904223) % (1 << 32);
        self.0 as f64 / (1u64 << 32) as f64
    }
    fn simplex(&mut self, n: usize) -> Array1<f64> {
        let v: Array1<f64> = (0..n).map(|_| self.next() + 0.05).collect();
        let s = v.sum();
        v / s
    }
    fn matrix(&mut self, n: usize, m: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, m), |_| self.next())
    }
}

fn copy_zoo(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if LEFT_OUT.contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_zoo(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let task = read_npz(
        &std::fs::read(root.join("zoo/ground_truth/mnist_10way.npz")).unwrap(),
        1 << 30,
    )
    .unwrap();
    let ds = Dataset {
        x: task["x"].to_f32().unwrap(),
        y: task["y"].to_i64().unwrap().into_iter().collect(),
        labels: (0..10).map(|i| i.to_string()).collect(),
    }
    .validate()
    .unwrap();
    assert_eq!(ds.rows(), 2000);
    let sha = ds.sha256();
    let dir = tempfile::tempdir().unwrap();
    copy_zoo(&root.join("zoo/teachers"), dir.path());
    let store = Store::temporary().unwrap();
    let zoo = Zoo::open(
        dir.path(),
        &store,
        Arc::new(SessionPool::new(threads())),
        std::env::var("BENCH_INFER_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Config::new("", "").infer_batch),
    )
    .unwrap();
    zoo.rescan().unwrap();
    // the bundled zoo grows; the figures are for whatever it holds (16 teachers when the README's first
    // table was measured)
    eprintln!("ranking over {} teachers", zoo.all().unwrap().len());
    let req = RankRequest::default();
    let ds = faculty::data::Parsed::from(ds);
    let rows = faculty::rank::RankRows::of(&ds, &sha);
    let mut g = c.benchmark_group("ranking");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .sample_size(10);
    g.bench_function("cold", |b| {
        b.iter(|| rank(&zoo, None, &rows, &req).unwrap())
    });
    let cache = OutputCache::open(&store).unwrap();
    rank(&zoo, Some(&cache), &rows, &req).unwrap();
    g.bench_function("warm", |b| {
        b.iter(|| rank(&zoo, Some(&cache), &rows, &req).unwrap())
    });
    let rescore = RankRequest {
        recompute_scores: true,
        ..RankRequest::default()
    };
    g.bench_function("warm_rescore", |b| {
        b.iter(|| rank(&zoo, Some(&cache), &rows, &rescore).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("sinkhorn");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let mut rng = Lcg(42);
    let (a, b, m) = (rng.simplex(100), rng.simplex(100), rng.matrix(100, 100));
    let opts = SinkhornOptions {
        eps: 0.05,
        max_iter: 1000,
        tol: 1e-9,
        eps_scaling: None,
    };
    g.bench_function("100x100", |bn| {
        bn.iter(|| ot::sinkhorn_log(a.view(), b.view(), m.view(), &opts).unwrap())
    });
    let m10 = rng.matrix(10, 10);
    let a10 = Array2::from_shape_fn((10_000, 10), |_| rng.next() + 0.05);
    let b10 = Array2::from_shape_fn((10_000, 10), |_| rng.next() + 0.05);
    let norm = |x: Array2<f64>| {
        let s = x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
        x / s
    };
    let (a10, b10) = (norm(a10), norm(b10));
    g.bench_function("batch_10000x10x10", |bn| {
        bn.iter(|| ot::sinkhorn_batch(a10.view(), b10.view(), m10.view(), &opts).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
