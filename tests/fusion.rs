//! Many teachers, one student, over HTTP (router in process, real sled, real ONNX Runtime, real
//! training): multi-teacher fusion rules and weight-space fusion jobs, their cards, a mimic_all student
//! whose ONNX output is the mean of its heads, the scratch fallback, and every bad request refused with a
//! 4xx that names the problem and creates nothing.
mod common;

use axum::http::StatusCode;
use common::*;
use ndarray::{Array2, Axis};
use serde_json::json;

const SHARDS: [&str; 4] = [
    "mnist_mlp_shard1",
    "mnist_mlp_shard2",
    "mnist_mlp_shard3",
    "mnist_mlp_shard4",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fusion_requests_get_4xx_and_create_nothing() {
    let sb = Sandbox::new();
    let app = sb.app();
    let mnist = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let letters = upload_task(&app, "zoo/tasks/letters_26way.npz").await;
    let mt = |extra: serde_json::Value| {
        let mut b = json!({"dataset_id": mnist, "method": "multi_teacher"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(serde_json::Value, StatusCode, &str)> = vec![
        (
            mt(json!({"teachers": ["mnist_mlp", "mnist_cnn@2", "mnist_mlp"]})),
            StatusCode::BAD_REQUEST,
            "'mnist_mlp' is listed twice",
        ),
        (
            mt(json!({"teachers": ["mnist_mlp"]})),
            StatusCode::BAD_REQUEST,
            "at least 2 teachers",
        ),
        (mt(json!({})), StatusCode::BAD_REQUEST, "needs `teachers`"),
        (
            mt(json!({"teachers": "auto:99"})),
            StatusCode::BAD_REQUEST,
            "out of range",
        ),
        (
            mt(json!({"teachers": "auto:1"})),
            StatusCode::BAD_REQUEST,
            "at least 2",
        ),
        (
            mt(json!({"teachers": "best:3"})),
            StatusCode::BAD_REQUEST,
            "auto:K",
        ),
        (
            mt(json!({"teachers": ["mnist_mlp", "no_such_teacher"]})),
            StatusCode::NOT_FOUND,
            "no_such_teacher",
        ),
        (
            json!({"dataset_id": letters, "method": "multi_teacher",
                   "teachers": ["mnist_mlp", "fashion_mlp"]}),
            StatusCode::BAD_REQUEST,
            "teacher 'mnist_mlp' cannot teach",
        ),
        (
            mt(json!({"teachers": ["mnist_mlp", "mnist_cnn@2"], "fusion": "median"})),
            StatusCode::BAD_REQUEST,
            "median",
        ),
        (
            mt(
                json!({"teachers": ["mnist_mlp", "mnist_cnn@2"], "fusion": "mimic_all",
                      "student": "tree:3"}),
            ),
            StatusCode::BAD_REQUEST,
            "no heads",
        ),
        (
            mt(json!({"teachers": ["mnist_mlp", "mnist_cnn@2"], "teacher": "mnist_mlp"})),
            StatusCode::BAD_REQUEST,
            "not `teacher`",
        ),
        (
            mt(json!({"teachers": ["mnist_mlp", "mnist_cnn@2"], "weighting": "profweight"})),
            StatusCode::BAD_REQUEST,
            "fuses several",
        ),
        (
            json!({"dataset_id": mnist, "method": "faculty", "teachers": ["mnist_mlp", "mnist_cnn@2"]}),
            StatusCode::BAD_REQUEST,
            "for method multi_teacher",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion",
                   "teachers": ["mnist_mlp", "mnist_mlp_shard1"]}),
            StatusCode::BAD_REQUEST,
            "differs from the first teacher's",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": ["mnist_rf", "mnist_logreg"]}),
            StatusCode::BAD_REQUEST,
            "teacher 'mnist_rf'",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": ["mnist_cnn@2", "mnist_cnn@1"]}),
            StatusCode::BAD_REQUEST,
            "plain MLPs",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": "auto:2"}),
            StatusCode::BAD_REQUEST,
            "list them",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": SHARDS,
                   "student": "mlp:32"}),
            StatusCode::BAD_REQUEST,
            "own architecture (mlp:64:relu)",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": SHARDS,
                   "fusion": "mean"}),
            StatusCode::BAD_REQUEST,
            "fusion rules are for method multi_teacher",
        ),
        (
            json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": SHARDS,
                   "weight_fusion": {"align": "neurons"}}),
            StatusCode::BAD_REQUEST,
            "neurons",
        ),
        (
            json!({"dataset_id": mnist, "method": "kd", "teacher": "mnist_mlp",
                   "weight_fusion": {"align": "weights"}}),
            StatusCode::BAD_REQUEST,
            "for method weight_fusion",
        ),
    ];
    refuse_jobs(&app, cases).await;
}

/// The bundled MNIST task and its test split.
fn mnist_task() -> (faculty::data::Dataset, faculty::data::Dataset) {
    let bytes = std::fs::read(repo().join("zoo/tasks/mnist_10way_5shot.npz")).unwrap();
    let opts = faculty::data::ParseOptions {
        max_bytes: 1 << 30,
        ..Default::default()
    };
    let (ds, test) = faculty::data::parse_with_test(
        faculty::data::Format::Npz,
        std::io::Cursor::new(bytes),
        &opts,
    )
    .unwrap();
    (ds, test.unwrap())
}

/// Progress that remembers every phase.
#[derive(Default)]
struct Phases(Vec<String>);
impl faculty::distill::Progress for Phases {
    fn phase(&mut self, phase: &str, _progress: f64) {
        self.0.push(phase.to_string());
    }
}

#[test]
fn multi_teacher_fuses_and_reports_every_teacher() {
    let sb = Sandbox::new();
    let (_store, zoo, cache) = library_zoo(&sb);
    let (ds, test) = mnist_task();
    let sha = ds.sha256();
    let (ds, test) = (
        faculty::data::Parsed::from(ds),
        faculty::data::Parsed::from(test),
    );
    let task = faculty::distill::TaskData {
        ds: &ds,
        sha256: &sha,
        test: Some(faculty::distill::TestRows {
            dataset_id: "test".into(),
            ds: &test,
        }),
    };
    // a same-label teacher (KD), a cross-label one (its label map) and a weaker one, weighted
    let req: faculty::distill::DistillRequest = serde_json::from_value(json!({
        "dataset_id": faculty::data::dataset_id(&sha), "method": "multi_teacher", "fusion": "weighted",
        "teachers": ["mnist_cnn@2", "mnist_04_cnn", "mnist_mlp_shard1"],
        "student": "mlp:32", "config": {"max_epochs": 5}}))
    .unwrap();
    let mut phases = Phases::default();
    let out = faculty::distill::run(&zoo, &cache, &task, &req, None, &mut phases)
        .unwrap()
        .unwrap();
    let card = serde_json::to_value(&out.card).unwrap();
    assert_eq!(card["method"], "multi_teacher");
    let f = &card["fusion"];
    assert_eq!(f["rule"], "weighted");
    let ts = f["teachers"].as_array().unwrap();
    assert_eq!(ts.len(), 3);
    let w: f64 = ts.iter().map(|t| t["weight"].as_f64().unwrap()).sum();
    assert!((w - 1.0).abs() < 1e-9, "{f}");
    assert_eq!(ts[1]["enters_by"], "faculty", "digits 0-4 only: {f}");
    assert_eq!(ts[0]["enters_by"], "kd");
    assert!(ts.iter().all(|t| t["accuracy"].is_number()), "{f}");
    assert!(f["ensemble_accuracy"].is_number());
    assert_eq!(card["teacher_chain"].as_array().unwrap().len(), 3);
    assert_eq!(card["accuracy"]["teacher"], f["ensemble_accuracy"]);
    // per-teacher progress while their outputs are computed
    for k in 1..=3 {
        assert!(
            phases
                .0
                .iter()
                .any(|p| p.starts_with(&format!("teacher outputs {k}/3: "))),
            "{:?}",
            phases.0
        );
    }
    // the ensemble's test accuracy with its interval
    assert!(
        card["test"]["teacher"]["accuracy"].as_f64().unwrap() > 0.8,
        "{card}"
    );
}

/// Reads a float initializer of a model.
fn init(m: &faculty::onnx::proto::ModelProto, name: &str) -> Vec<f32> {
    let t = m
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"));
    t.raw_data
        .as_ref()
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mimic_all_student_predicts_the_mean_of_its_heads() {
    let sb = Sandbox::new();
    let app = sb.app();
    let mnist = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let (_, card) = run_job(
        &app,
        json!({"dataset_id": mnist, "method": "multi_teacher", "fusion": "mimic_all",
               "teachers": ["mnist_cnn@2", "mnist_mlp_shard1", "mnist_mlp_shard2"],
               "student": "mlp:16", "config": {"max_epochs": 4, "scratch_fallback": false}}),
    )
    .await;
    assert_eq!(card["fusion"]["rule"], "mimic_all");
    assert_eq!(card["delivered"], "distilled");
    // one head per teacher: the last layer has 3 x 10 outputs
    assert_eq!(card["parameters"], 784 * 16 + 16 + 16 * 30 + 30, "{card}");
    let sid = card["id"].as_str().unwrap();
    let bytes = get(&app, &format!("/v1/students/{sid}/model.onnx"))
        .await
        .body;
    let model = faculty::onnx::graph::decode(&bytes).unwrap();
    // the heads computed here from the initializers, then their mean
    let ds = mnist_task().0;
    let rows = 64;
    let x = ds.flat().slice(ndarray::s![..rows, ..]).to_owned();
    let (mean, std) = (init(&model, "input_mean"), init(&model, "input_std"));
    let xs = Array2::from_shape_fn(x.dim(), |(r, c)| {
        let k = if mean.len() == 1 { 0 } else { c };
        (x[[r, c]] - mean[k]) / std[k]
    });
    let w0 = Array2::from_shape_vec((784, 16), init(&model, "dense0.weight")).unwrap();
    let b0 = ndarray::Array1::from(init(&model, "dense0.bias"));
    let w1 = Array2::from_shape_vec((16, 30), init(&model, "dense1.weight")).unwrap();
    let b1 = ndarray::Array1::from(init(&model, "dense1.bias"));
    let h = (xs.dot(&w0) + &b0).mapv(|v| v.max(0.0));
    let z = h.dot(&w1) + &b1;
    let mut expected = Array2::<f32>::zeros((rows, 10));
    for r in 0..rows {
        for head in 0..3 {
            let zs = z
                .row(r)
                .slice(ndarray::s![head * 10..(head + 1) * 10])
                .to_owned();
            let m = zs.fold(f32::MIN, |a, b| a.max(*b));
            let e = zs.mapv(|v| (v - m).exp());
            let p = &e / e.sum();
            for c in 0..10 {
                expected[[r, c]] += p[c] / 3.0;
            }
        }
    }
    // ONNX Runtime's output of the downloaded file
    let mut session = faculty::onnx::session::load_session(&bytes, 1).unwrap();
    let pred = faculty::distill::student_predictor(&ds.row_shape(), 10);
    let got = pred
        .predict(
            &mut session,
            "student",
            ds.x.select(Axis(0), &(0..rows).collect::<Vec<_>>()).view(),
            64,
        )
        .unwrap();
    let diff = common::max_abs_diff(&got, &expected);
    assert!(
        diff < 1e-5,
        "ONNX output differs from the mean of the heads by {diff}"
    );
    // and the heads differ from each other (they mimic different teachers)
    let head = |k: usize| z.slice(ndarray::s![.., k * 10..(k + 1) * 10]).to_owned();
    assert!((&head(0) - &head(1)).iter().any(|v| v.abs() > 1e-3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_fusion_aligns_averages_and_fine_tunes() {
    let sb = Sandbox::new();
    let app = sb.app();
    let mnist = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let (_, card) = run_job(
        &app,
        json!({"dataset_id": mnist, "method": "weight_fusion", "teachers": SHARDS,
               "config": {"scratch_fallback": false}}),
    )
    .await;
    assert_eq!(card["method"], "weight_fusion");
    assert_eq!(card["student"], "mlp:64:relu");
    assert_eq!(card["parameters"], 784 * 64 + 64 + 64 * 10 + 10);
    let w = &card["weight_fusion"];
    let names: Vec<&str> = w["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "plain average",
            "aligned average",
            "learned combination",
            "fine-tuned"
        ]
    );
    let test = |k: usize| w["candidates"][k]["test_accuracy"].as_f64().unwrap();
    // aligned averaging beats plain averaging on 2000 test rows, one-shot
    assert!(test(1) > test(0) + 0.05, "{w}");
    assert_eq!(
        w["mixing"].as_array().unwrap().len(),
        2,
        "one row per layer"
    );
    assert_eq!(w["teachers"].as_array().unwrap().len(), 4);
    assert!(w["ensemble_test_accuracy"].as_f64().unwrap() > 0.8, "{w}");
    assert!(card["onnx_max_abs_diff"].as_f64().unwrap() < 1e-4);
    assert_eq!(
        w["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["chosen"] == true)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_students_are_never_worse_than_scratch() {
    let sb = Sandbox::new();
    let app = sb.app();
    let ds = upload_misleading(&app, &[("liar", 4.0), ("liar2", 5.0)]).await;
    for body in [
        json!({"dataset_id": ds, "method": "multi_teacher", "teachers": ["liar", "liar2"],
               "fusion": "mean", "student": "mlp:16", "config": {"max_epochs": 30}}),
        json!({"dataset_id": ds, "method": "weight_fusion", "teachers": ["liar", "liar2"],
               "config": {"max_epochs": 30}}),
    ] {
        let (_, card) = run_job(&app, body.clone()).await;
        let acc = &card["accuracy"];
        assert!(acc["teacher"].as_f64().unwrap() < 0.01, "{body}: {acc}");
        assert_eq!(card["delivered"], "scratch", "{body}: {card}");
        assert_eq!(acc["student"], acc["scratch"]);
        let t = &card["test"];
        assert!(
            t["student"]["accuracy"].as_f64().unwrap()
                > t["distilled"]["accuracy"].as_f64().unwrap() + 0.3,
            "{body}: {t}"
        );
    }
}
