//! Student training speed. `training/mlp_784_256_10_epoch`: one epoch of an MLP 784-256-10 (ReLU) on
//! 10,000 rows, batch 128, AdamW (lr 3e-3, weight decay 1e-4), cross-entropy: 79 optimiser steps through
//! faculty's training loop (`distill::train::train`, scratch method, no validation split).
//! `benches/training_vs_python.sh` runs this and the same epoch in PyTorch (CPU) and prints the ratio.
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use faculty::distill::student::{Arch, SplitMix, StudentSpec};
use faculty::distill::train::{Flag, Lesson, Split, Start, TrainConfig, train};
use ndarray::Array2;

fn bench(c: &mut Criterion) {
    let (n, d, k) = (10_000, 784, 10);
    let mut rng = SplitMix(1);
    let x = Array2::from_shape_fn((n, d), |_| rng.next_f64() as f32);
    let y: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
    let arch = Arch::new(
        &StudentSpec::parse("mlp:256:relu").unwrap(),
        &[d],
        k,
        x.view().into(),
    )
    .unwrap();
    let split = Split::stratified(&y, k, 0.0, 0);
    let cfg = TrainConfig {
        max_epochs: 1,
        batch_size: 128,
        lr: 3e-3,
        weight_decay: 1e-4,
        val_fraction: 0.0,
        ..Default::default()
    };
    let stop = AtomicBool::new(false);
    let mut g = c.benchmark_group("training");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("mlp_784_256_10_epoch", |b| {
        b.iter(|| {
            train(
                &arch,
                x.view().into(),
                &Lesson::scratch(&y, &split),
                &cfg,
                Start::Fresh,
                &mut Flag(&stop),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
