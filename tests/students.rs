//! Students end to end in the library: every architecture trains, exports to ONNX that ONNX Runtime runs
//! to within 1e-4 of burn and that passes `onnx.checker` (full check, Python `onnx` from .ort/py), training
//! is reproducible from a seed, and the OT term teaches across label spaces.
mod common;

use faculty::distill::student::{Arch, Net, StudentSpec};
use faculty::distill::train::{self, Flag, Lesson, Split, Start, Term, TrainConfig};
use faculty::distill::{export, onnx_accuracy, student_predictor};
use ndarray::{Array2, ArrayD, IxDyn};
use std::sync::atomic::AtomicBool;

/// Gaussian blobs: `classes` clusters in `d` dimensions, deterministic.
fn blobs(n: usize, d: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<i64>) {
    let mut rng = faculty::distill::student::SplitMix(seed);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| {
            (0..d)
                .map(|_| (rng.next_f64() * 4.0 - 2.0) as f32)
                .collect()
        })
        .collect();
    let mut x = Array2::zeros((n, d));
    let mut y = Vec::new();
    for i in 0..n {
        let c = i % classes;
        for j in 0..d {
            // sum of uniforms: roughly normal noise
            let noise: f64 = (0..4).map(|_| rng.next_f64() - 0.5).sum();
            x[[i, j]] = centres[c][j] + noise as f32 * 1.5;
        }
        y.push(c as i64);
    }
    (x, y)
}

fn checker(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("student.onnx");
    std::fs::write(&path, bytes).unwrap();
    let py = common::repo().join(".ort/py");
    let out = std::process::Command::new("python3")
        .env("PYTHONPATH", py)
        .args([
            "-c",
            "import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "onnx.checker failed (run scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Trains `spec` briefly on rows of shape `row_shape`, exports it, and checks ORT against burn and the
/// ONNX checker.
fn export_roundtrip(spec: &str, row_shape: &[usize]) {
    let d: usize = row_shape.iter().product();
    let (mut x, y) = blobs(120, d, 3, 5);
    if row_shape.len() == 3 {
        // images: class c lights up band c of rows, on top of the noise
        let (h, w) = (row_shape[1], row_shape[2]);
        for (i, c) in y.iter().enumerate() {
            for r in 0..h {
                for k in 0..w {
                    let band = (r * 3 / h) as i64 == *c;
                    x[[i, r * w + k]] = x[[i, r * w + k]] * 0.3 + if band { 2.0 } else { 0.0 };
                }
            }
        }
    }
    let spec = StudentSpec::parse(spec).unwrap();
    let arch = Arch::new(&spec, row_shape, 3, x.view().into()).unwrap();
    let split = Split::stratified(&y, 3, 0.2, 0);
    let cfg = TrainConfig {
        max_epochs: 25,
        ..Default::default()
    };
    let stop = AtomicBool::new(false);
    let t = train::train(
        &arch,
        x.view().into(),
        &Lesson::scratch(&y, &split),
        &cfg,
        Start::Fresh,
        &mut Flag(&stop),
    )
    .unwrap();
    let onnx = export::to_onnx(&arch, &t.params, &[("labels", "[\"a\",\"b\",\"c\"]")]);
    checker(&onnx);
    let net = Net::from_params(&arch, &t.params, &burn::tensor::Device::flex());
    let rows: Vec<usize> = (0..x.nrows()).collect();
    let burn_p = train::predict(&net, &arch, x.view().into(), &rows);
    let mut shape = vec![x.nrows()];
    shape.extend_from_slice(row_shape);
    let raw = ArrayD::from_shape_vec(IxDyn(&shape), x.iter().copied().collect()).unwrap();
    let mut session = faculty::onnx::session::load_session(&onnx, 1).unwrap();
    let ort_p = student_predictor(row_shape, 3)
        .predict(&mut session, "student", raw.view(), 64)
        .unwrap();
    let diff = common::max_abs_diff(&ort_p, &burn_p);
    assert!(diff < 1e-4, "{spec:?}: ORT and burn differ by {diff}");
    // the probabilities are not trivially equal: the model learned something
    let acc = onnx_accuracy(&onnx, raw.view(), &y, 3).unwrap();
    assert!(acc > 0.5, "{spec:?} accuracy {acc}");
}

#[test]
fn linear_student_exports_and_matches() {
    export_roundtrip("linear", &[20]);
}

#[test]
fn mlp_student_exports_and_matches() {
    export_roundtrip("mlp:32,16:tanh", &[20]);
}

#[test]
fn cnn_student_exports_and_matches() {
    export_roundtrip("cnn:4,8:16", &[1, 8, 8]);
}

/// Trains a tree of `depth` on `x` (rows of `row_shape`) with labels `y`, exports it, runs the checker, and
/// returns the largest |ONNX Runtime - tree| probability difference.
fn tree_parity(
    x: &Array2<f32>,
    y: &[i64],
    classes: usize,
    depth: usize,
    row_shape: &[usize],
) -> f32 {
    use faculty::distill::tree::{Tree, TreeLesson};
    let split = Split::stratified(y, classes, 0.0, 0);
    let lesson = Lesson::scratch(y, &split);
    let tree = Tree::fit(
        x.view().into(),
        &TreeLesson::from_lesson(&lesson, classes),
        classes,
        depth,
    );
    let onnx = tree.to_onnx(row_shape, &[]);
    checker(&onnx);
    let rows: Vec<usize> = (0..x.nrows()).collect();
    let own = tree.predict(x.view().into(), &rows);
    let mut shape = vec![x.nrows()];
    shape.extend_from_slice(row_shape);
    let raw = ArrayD::from_shape_vec(IxDyn(&shape), x.iter().copied().collect()).unwrap();
    let mut session = faculty::onnx::session::load_session(&onnx, 1).unwrap();
    let ort = student_predictor(row_shape, classes)
        .predict(&mut session, "student", raw.view(), 64)
        .unwrap();
    common::max_abs_diff(&ort, &own)
}

#[test]
fn tree_parity_holds_with_many_classes_and_integer_features() {
    for (classes, depth) in [(26, 3), (26, 6), (10, 4), (2, 5)] {
        let (x, y) = blobs(520, 16, classes, 13);
        let x = x.mapv(|v| (v * 2.0).round());
        let diff = tree_parity(&x, &y, classes, depth, &[16]);
        assert!(diff < 1e-6, "{classes} classes, depth {depth}: {diff}");
    }
}

#[test]
fn tree_student_exports_and_matches() {
    // a depth-3 tree on image-shaped rows: the ONNX file flattens them itself, passes the full checker,
    // and ONNX Runtime's TreeEnsembleClassifier gives the tree's own probabilities
    use faculty::distill::tree::{Tree, TreeLesson};
    let (x, y) = blobs(150, 16, 3, 11);
    let split = Split::stratified(&y, 3, 0.0, 0);
    let lesson = Lesson::scratch(&y, &split);
    let tree = Tree::fit(x.view().into(), &TreeLesson::from_lesson(&lesson, 3), 3, 3);
    assert!(tree.nodes.len() > 3, "the tree should split: {tree:?}");
    let onnx = tree.to_onnx(&[1, 4, 4], &[("labels", "[\"a\",\"b\",\"c\"]")]);
    checker(&onnx);
    let rows: Vec<usize> = (0..x.nrows()).collect();
    let own = tree.predict(x.view().into(), &rows);
    let raw =
        ArrayD::from_shape_vec(IxDyn(&[x.nrows(), 1, 4, 4]), x.iter().copied().collect()).unwrap();
    let mut session = faculty::onnx::session::load_session(&onnx, 1).unwrap();
    let ort = student_predictor(&[1, 4, 4], 3)
        .predict(&mut session, "student", raw.view(), 64)
        .unwrap();
    let diff = common::max_abs_diff(&ort, &own);
    assert!(diff < 1e-6, "ONNX Runtime vs the tree: {diff}");
    let acc = onnx_accuracy(&onnx, raw.view(), &y, 3).unwrap();
    assert!(
        acc > 0.8,
        "training accuracy of a depth-3 tree on blobs: {acc}"
    );
    let rules = tree.rules(&[1, 4, 4], &["a".into(), "b".into(), "c".into()]);
    assert_eq!(rules.len(), tree.nodes.len().div_ceil(2));
    assert!(rules[0].starts_with("if x[0,"), "{rules:?}");
}

#[test]
fn training_is_reproducible_from_the_seed() {
    let (x, y) = blobs(90, 10, 3, 9);
    let arch = Arch::new(
        &StudentSpec::parse("mlp:16").unwrap(),
        &[10],
        3,
        x.view().into(),
    )
    .unwrap();
    let split = Split::stratified(&y, 3, 0.2, 0);
    let stop = AtomicBool::new(false);
    let run = |seed| {
        let cfg = TrainConfig {
            max_epochs: 4,
            seed,
            ..Default::default()
        };
        train::train(
            &arch,
            x.view().into(),
            &Lesson::scratch(&y, &split),
            &cfg,
            Start::Fresh,
            &mut Flag(&stop),
        )
        .unwrap()
        .params
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn the_ot_term_teaches_across_label_spaces() {
    // a 6-class problem; the student sees 2 labeled rows per class, the teacher knows 6 classes under
    // other names and in another order: only the OT term through the cost can carry its knowledge
    let (x, y_full) = blobs(600, 8, 6, 21);
    let labeled: Vec<usize> = (0..12).collect();
    let y: Vec<i64> = (0..600)
        .map(|i| if i < 12 { y_full[i] } else { -1 })
        .collect();
    let perm = [3usize, 5, 0, 1, 4, 2];
    let mut probs = Array2::<f32>::from_elem((600, 6), 0.02);
    for i in 0..600 {
        probs[[i, perm[y_full[i] as usize]]] = 0.9;
    }
    // cost: 0 where the teacher's class is the student's, 1 elsewhere (what the label map learns)
    let mut cost = Array2::<f64>::ones((6, 6));
    for (s, &t) in perm.iter().enumerate() {
        cost[[t, s]] = 0.0;
    }
    let arch = Arch::new(
        &StudentSpec::parse("mlp:32").unwrap(),
        &[8],
        6,
        x.view().into(),
    )
    .unwrap();
    let split = Split::stratified(&y, 6, 0.0, 0);
    assert_eq!(split.train, labeled);
    let cfg = TrainConfig {
        max_epochs: 30,
        ..Default::default()
    };
    let stop = AtomicBool::new(false);
    let test: Vec<usize> = (12..600).collect();
    let acc = |term: Term| {
        let lesson = Lesson {
            term,
            ..Lesson::scratch(&y, &split)
        };
        let t = train::train(
            &arch,
            x.view().into(),
            &lesson,
            &cfg,
            Start::Fresh,
            &mut Flag(&stop),
        )
        .unwrap();
        let net = Net::from_params(&arch, &t.params, &burn::tensor::Device::flex());
        let p = train::predict(&net, &arch, x.view().into(), &test);
        let hits = test
            .iter()
            .enumerate()
            .filter(|(k, r)| {
                faculty::distill::argmax(p.row(*k).iter().copied()) as i64 == y_full[**r]
            })
            .count();
        (hits as f64 / test.len() as f64, t.history)
    };
    let (scratch, _) = acc(Term::None);
    let (faculty, history) = acc(Term::Transport { probs, cost });
    eprintln!("scratch {scratch:.3}, faculty {faculty:.3}");
    // the reported loss is the objective's value (cross-entropy + the transport cost, both >= 0), not the
    // value of the surrogate whose gradient training follows (centred potentials: it can be negative)
    for m in &history {
        let w = m.distill_loss.unwrap();
        assert!((0.0..=1.0).contains(&w), "transport cost {w}");
        assert!(
            m.train_loss >= w,
            "epoch {}: train loss {} < its transport cost {w}",
            m.epoch,
            m.train_loss
        );
    }
    assert!(faculty > 0.8, "faculty accuracy {faculty}");
    assert!(
        faculty > scratch + 0.02,
        "faculty {faculty} vs scratch {scratch}"
    );
}

/// The bundled 5-shot MNIST task as an upload parses it (uint8 pixels), with its test split.
fn mnist_task() -> (faculty::data::Parsed, Option<faculty::data::Parsed>) {
    use faculty::data::{Format, ParseOptions, parse_upload};
    let file = std::fs::read(common::repo().join("zoo/tasks/mnist_10way_5shot.npz")).unwrap();
    let opts = ParseOptions {
        max_bytes: 1 << 30,
        ..Default::default()
    };
    parse_upload(Format::Npz, std::io::Cursor::new(file), &opts).unwrap()
}

/// A local distillation run to its end (not cancelled).
fn distill(
    zoo: &faculty::zoo::Zoo,
    cache: &faculty::rank::OutputCache,
    data: &faculty::distill::TaskData<'_>,
    req: &faculty::distill::DistillRequest,
) -> faculty::distill::Outcome {
    faculty::distill::run(zoo, cache, data, req, None, &mut faculty::distill::Quiet)
        .unwrap()
        .unwrap()
}

/// A job holds a stored image dataset a byte a pixel (`DatasetStore::load_parsed`), not as floats four
/// times its size. Every step that reads rows (the teacher's outputs, a block at a time; standardisation
/// statistics; batches; the exported student's check in ONNX Runtime; a tree's splits) must see the
/// floats the bytes stand for: students come out bit for bit the same as from the floats.
#[test]
fn rows_held_as_bytes_teach_the_students_their_floats_teach() {
    use faculty::data::{Parsed, Rows};
    let sb = common::Sandbox::new();
    let (px, px_test) = mnist_task();
    let px_test = px_test.unwrap();
    assert!(matches!(px.x, Rows::Px8(_)), "the task's pixels are uint8");
    let floats = Parsed::from(px.clone().into_f32());
    let float_test = Parsed::from(px_test.clone().into_f32());
    let sha = px.sha256();
    assert_eq!(sha, floats.sha256());
    // a fresh zoo and output cache each time, so the teacher runs on the rows given
    let open = || common::library_zoo(&sb);
    // the teacher's outputs: the floats in one go, the bytes in blocks of 100 rows
    let (_store, zoo, _) = open();
    let t = zoo.get("mnist_cnn@2").unwrap();
    let whole = faculty::rank::outputs::compute(&zoo, &t, &floats).unwrap();
    let blocks = faculty::rank::outputs::compute_in_blocks(&zoo, &t, &px, 100 * 784 * 4).unwrap();
    let gap = |a: &Array2<f32>, b: &Array2<f32>| {
        assert_eq!(a.dim(), b.dim());
        common::max_abs_diff(a, b)
    };
    assert!(gap(&whole.probs, &blocks.probs) <= 1e-6);
    let (wf, ww) = whole.penultimate.as_ref().unwrap();
    let (bf, bw) = blocks.penultimate.as_ref().unwrap();
    assert!(gap(wf, bf) <= 1e-5 && ww == bw);
    for (method, student) in [
        ("faculty", "cnn:4:16"),
        ("kd", "mlp:16"),
        ("faculty", "tree:3"),
    ] {
        let req: faculty::distill::DistillRequest = serde_json::from_value(serde_json::json!({
            "dataset_id": faculty::data::dataset_id(&sha), "method": method, "teacher": "mnist_cnn@2",
            "student": student, "config": {"max_epochs": 3}}))
        .unwrap();
        let run = |ds: &Parsed, test: &Parsed| {
            let (_store, zoo, cache) = open();
            let data = faculty::distill::TaskData {
                ds,
                sha256: &sha,
                test: Some(faculty::distill::TestRows {
                    dataset_id: "test".into(),
                    ds: test,
                }),
            };
            distill(&zoo, &cache, &data, &req)
        };
        let (a, b) = (run(&floats, &float_test), run(&px, &px_test));
        // the same graph and weights (the metadata holds the time it was made)
        let graph = |o: &faculty::distill::Outcome| {
            faculty::onnx::graph::decode(&o.onnx)
                .unwrap()
                .graph
                .unwrap()
        };
        assert!(
            graph(&a) == graph(&b),
            "{method} {student}: the students differ"
        );
        assert_eq!(
            serde_json::to_value(&a.card.test).unwrap(),
            serde_json::to_value(&b.card.test).unwrap()
        );
    }
}

/// `config.mixup_pool` grows a small distillation pool with mixup rows the teacher labels: the card counts
/// them apart from the dataset's own rows and says so in its notes, the split is the one without them,
/// and the student still exports and matches ONNX Runtime. Off (0), nothing changes.
#[test]
fn mixup_rows_grow_the_pool_and_the_card_counts_them() {
    use faculty::data::Parsed;
    let sb = common::Sandbox::new();
    let ds = Parsed::from(mnist_task().0.into_f32());
    let sha = ds.sha256();
    let (_store, zoo, cache) = common::library_zoo(&sb);
    let run = |method: &str, pool: usize| {
        let req: faculty::distill::DistillRequest = serde_json::from_value(serde_json::json!({
            "dataset_id": faculty::data::dataset_id(&sha), "method": method, "teacher": "mnist_cnn@2",
            "student": "mlp:16", "config": {"max_epochs": 2, "cv_folds": 0, "mixup_pool": pool}}))
        .unwrap();
        let data = faculty::distill::TaskData {
            ds: &ds,
            sha256: &sha,
            test: None,
        };
        distill(&zoo, &cache, &data, &req).card
    };
    let fit = (ds.labeled().len() - 10) + (ds.rows() - ds.labeled().len());
    let plain = run("faculty", 0);
    for method in ["faculty", "kd"] {
        let card = run(method, fit + 700);
        let a = &card.accuracy;
        assert_eq!(a.mixup_rows, 700, "{method}: {a:?}");
        assert_eq!(
            (a.train_rows, a.validation_rows, a.unlabeled_rows),
            (
                plain.accuracy.train_rows,
                plain.accuracy.validation_rows,
                plain.accuracy.unlabeled_rows
            )
        );
        assert!(
            card.notes.iter().any(|n| n.contains("700 mixup rows")),
            "{:?}",
            card.notes
        );
        assert!(card.onnx_max_abs_diff < 1e-4);
        assert_eq!(card.history.len(), 2);
    }
    assert_eq!(plain.accuracy.mixup_rows, 0);
    assert!(!plain.notes.iter().any(|n| n.contains("mixup")));
    // a pool already as large gets none
    assert_eq!(run("faculty", fit).accuracy.mixup_rows, 0);
}
