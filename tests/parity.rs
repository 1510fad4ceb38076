//! Every bundled teacher, run through faculty's inference path, matches Python onnxruntime's probabilities
//! (committed by the zoo builder in zoo/reference) to 1e-5.
mod common;

use faculty::data::npz::read_npz;

#[test]
fn every_bundled_teacher_matches_python_onnxruntime() {
    let sb = common::Sandbox::new();
    // Batch 5 forces several ONNX Runtime calls per reference batch of 16 rows.
    let (_store, zoo) = common::scanned_zoo(&sb, 5);
    let teachers = zoo.all().unwrap();
    assert!(
        teachers.len() >= 14,
        "the bundled zoo has {} teachers",
        teachers.len()
    );
    let mut checked = 0;
    for t in &teachers {
        assert!(t.usable, "{} unusable: {:?}", t.id, t.reason);
        let path = common::repo().join(format!("zoo/reference/{}.npz", t.id));
        let arrays = read_npz(&std::fs::read(&path).unwrap(), 1 << 30).unwrap();
        let x = arrays["x"].to_f32().unwrap();
        let want = arrays["probs"].to_f32().unwrap();
        let got = zoo.predict(&t.id, x.view()).unwrap();
        assert_eq!(got.shape(), want.shape(), "{}", t.id);
        let max_diff = common::max_abs_diff(&got, &want);
        assert!(
            max_diff <= 1e-5,
            "{}: max |faculty - python| = {max_diff:e}",
            t.id
        );
        // rows are probability vectors, including for the logits and ZipMap teachers
        for row in got.rows() {
            assert!(
                (row.sum() - 1.0).abs() < 1e-4,
                "{}: row sums to {}",
                t.id,
                row.sum()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, teachers.len());
}

/// A row's probabilities do not depend on the batch it lands in: ONNX Runtime sums a lone row's matrix
/// product in another order (Magika's row 14 moves by 8e-4 alone), so faculty never runs one row alone
/// where the model takes more.
#[test]
fn a_row_scores_the_same_alone_and_in_a_batch() {
    let sb = common::Sandbox::new();
    let (_store, zoo) = common::scanned_zoo(&sb, 64);
    let path = common::repo().join("zoo/reference/file_type@1.npz");
    let arrays = read_npz(&std::fs::read(&path).unwrap(), 1 << 30).unwrap();
    let x = arrays["x"].to_f32().unwrap();
    let all = zoo.predict("file_type@1", x.view()).unwrap();
    for i in 0..x.shape()[0] {
        let alone = zoo
            .predict(
                "file_type@1",
                x.slice_axis(ndarray::Axis(0), (i..i + 1).into()),
            )
            .unwrap();
        let diff = common::max_abs_diff(alone.row(0), all.row(i));
        assert!(
            diff <= 1e-5,
            "row {i}: alone vs in a batch differ by {diff:e}"
        );
    }
}

/// A forest's probabilities are the same to the last bit whatever batch a row lands in, with several
/// intra-op threads too: ONNX Runtime parallelises a tree ensemble over trees for small batches and over
/// rows from 64 rows up, and the two sum a row's trees in different orders; faculty runs forests on one
/// thread (a row's outputs must not depend on the batch it landed in; see `onnx::session::threads_for`).
#[test]
fn a_forest_scores_the_same_in_small_and_large_batches() {
    // batches as large as each zoo allows (32 rows, then one of 512), not sized by speed
    faculty::onnx::pace::set_enabled(false);
    let sb = common::Sandbox::new();
    let path = common::repo().join("zoo/tasks/letters_26way.npz");
    let arrays = read_npz(&std::fs::read(&path).unwrap(), 1 << 30).unwrap();
    let x = arrays["x"].to_f32().unwrap();
    let x = x.slice_axis(ndarray::Axis(0), (0..512).into());
    let (_s, small) = common::scanned_zoo_threads(&sb, 32, 2);
    let (_l, large) = common::scanned_zoo_threads(&sb, 512, 2);
    let a = small.predict("letters_rf", x.view()).unwrap();
    let b = large.predict("letters_rf", x.view()).unwrap();
    let differ = a.iter().zip(b.iter()).filter(|(p, q)| p != q).count();
    assert_eq!(
        differ, 0,
        "{differ} probabilities differ between batch sizes"
    );
}
