//! Inference throughput (samples/s) of a CNN, an MLP and a tree-ensemble teacher from the bundled zoo at
//! batch 1, 64 and 1024, through faculty's own path (Predictor + pooled session). The rows are real
//! MNIST digits from zoo/tasks. `benches/inference_vs_python.sh` runs this and Python onnxruntime on the
//! same inputs and prints the ratio.
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use faculty::data::npz::read_npz;
use faculty::onnx::SessionPool;
use faculty::store::Store;
use faculty::zoo::Zoo;
use ndarray::Axis;

const TEACHERS: &[(&str, &str)] = &[
    ("cnn", "mnist_cnn@2"),
    ("mlp", "mnist_mlp"),
    ("tree", "mnist_rf"),
];
const BATCHES: &[usize] = &[1, 64, 1024];

fn threads() -> usize {
    std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let task = read_npz(
        &std::fs::read(root.join("zoo/tasks/mnist_10way_5shot.npz")).unwrap(),
        1 << 30,
    )
    .unwrap();
    let x = task["x_test"].to_f32().unwrap(); // [2000, 1, 28, 28] in [0, 1]
    let store = Store::temporary().unwrap();
    let pool = Arc::new(SessionPool::new(threads()));
    let zoo = Zoo::open(root.join("zoo/teachers"), &store, pool.clone(), 1024).unwrap();
    zoo.rescan().unwrap();
    let mut group = c.benchmark_group("inference");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for &(kind, id) in TEACHERS {
        let t = zoo.get(id).unwrap();
        let predictor = t.predictor.clone().unwrap();
        let session = pool
            .get(&t.sha256, &root.join("zoo/teachers").join(&t.path))
            .unwrap();
        for &b in BATCHES {
            let xb = x.slice_axis(Axis(0), (0..b).into()).to_owned();
            group.throughput(Throughput::Elements(b as u64));
            group.bench_with_input(BenchmarkId::new(kind, b), &xb, |bencher, xb| {
                let mut s = session.lock().unwrap();
                bencher.iter(|| {
                    predictor
                        .predict(&mut s, &t.sha256, xb.view(), 1024)
                        .unwrap()
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
