//! Distillation jobs over HTTP (router in process, real sled, real ONNX Runtime, real training): the whole
//! life of a job with its server-sent events, the student card and download, bad requests that create
//! nothing, the queue and cancellation. The SIGKILL restart test is in `cli.rs` (it needs the process).
mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use serde_json::json;

async fn upload_task(app: &axum::Router, path: &str) -> String {
    let bytes = std::fs::read(repo().join(path)).unwrap();
    let r = upload_dataset(app, &bytes, path.rsplit('/').next().unwrap()).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

async fn upload_dataset(app: &axum::Router, bytes: &[u8], name: &str) -> Reply {
    post_multipart(app, "/v1/datasets", multipart(name, bytes, &[])).await
}

async fn wait_for(
    app: &axum::Router,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let j = get(app, &format!("/v1/jobs/{id}")).await.json();
        if done(&j) {
            return j;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "job stuck: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_trains_streams_and_leaves_a_student() {
    let sb = Sandbox::new();
    let app = sb.app();
    let ds = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let r = post_json(
        &app,
        "/v1/jobs",
        json!({"dataset_id": ds, "method": "faculty", "teacher": "auto", "student": "mlp:64",
               "config": {"max_epochs": 12}}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let job = r.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["state"], "queued");
    assert_eq!(job["progress"], 0.0);
    // the event stream: the job object at every change, ending with the final state
    let ev = get(&app, &format!("/v1/jobs/{id}/events")).await;
    assert_eq!(ev.status, StatusCode::OK);
    assert!(
        ev.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8(ev.body).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert!(text.contains("event: job"));
    assert!(events.len() >= 3, "{text}");
    assert_eq!(events.last().unwrap()["state"], "succeeded");
    let progress: Vec<f64> = events
        .iter()
        .map(|e| e["progress"].as_f64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[1] >= w[0] - 1e-9),
        "{progress:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["phase"] == "training" && !e["epochs"].as_array().unwrap().is_empty())
    );
    // the job
    let j = get(&app, &format!("/v1/jobs/{id}")).await.json();
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["progress"], 1.0);
    let epochs = j["epochs"].as_array().unwrap();
    assert!(!epochs.is_empty() && epochs.len() <= 12);
    assert!(epochs[0]["train_loss"].as_f64().unwrap().is_finite());
    assert!(epochs[0]["val_accuracy"].as_f64().is_some());
    assert!(
        j["teacher"]["selected_by"]
            .as_str()
            .unwrap()
            .starts_with("auto")
    );
    let sid = j["student_id"].as_str().unwrap().to_string();
    // the card
    let list = get(&app, "/v1/students").await.json();
    assert_eq!(list["students"][0]["id"], sid.as_str());
    let card = get(&app, &format!("/v1/students/{sid}")).await.json();
    for k in ["student", "scratch", "teacher"] {
        let v = card["accuracy"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k}: {card}");
    }
    assert_eq!(card["parameters"], 784 * 64 + 64 + 64 * 10 + 10);
    assert!(card["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(card["onnx_max_abs_diff"].as_f64().unwrap() < 1e-4);
    assert_eq!(card["teacher_chain"][0]["id"], j["teacher"]["id"]);
    // the file: ETag is the sha256, If-None-Match gives 304, metadata carries the card's facts
    let dl = get(&app, &format!("/v1/students/{sid}/model.onnx")).await;
    assert_eq!(dl.status, StatusCode::OK);
    let sha = faculty::zoo::teacher::sha256_hex(&dl.body);
    assert_eq!(dl.headers["etag"].to_str().unwrap(), format!("\"{sha}\""));
    assert_eq!(card["sha256"], sha.as_str());
    assert_eq!(card["file_size"], dl.body.len());
    let req = axum::http::Request::get(format!("/v1/students/{sid}/model.onnx"))
        .header("if-none-match", format!("\"{sha}\""))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(call(&app, req).await.status, StatusCode::NOT_MODIFIED);
    let model = faculty::onnx::graph::decode(&dl.body).unwrap();
    let meta: std::collections::BTreeMap<String, String> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap()))
        .collect();
    for k in [
        "labels",
        "method",
        "teachers",
        "metrics",
        "created",
        "faculty_version",
    ] {
        assert!(meta.contains_key(k), "metadata lacks {k}: {meta:?}");
    }
    assert_eq!(meta["method"], "faculty");
    assert!(meta["teachers"].contains(j["teacher"]["sha256"].as_str().unwrap()));
    // the events of a finished job: one event, then the stream ends
    let ev = get(&app, &format!("/v1/jobs/{id}/events")).await;
    assert_eq!(
        String::from_utf8(ev.body).unwrap().matches("data:").count(),
        1
    );
    // the zoo can take the student back as a teacher: it is a valid classifier to faculty itself
    let r = post_multipart(
        &app,
        "/v1/teachers",
        multipart("student.onnx", &dl.body, &[("name", "my_student")]),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["labels"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_get_4xx_and_create_nothing() {
    let sb = Sandbox::new();
    let app = sb.app();
    let mnist = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let letters = upload_task(&app, "zoo/tasks/letters_26way.npz").await;
    let clothing = upload_task(&app, "zoo/tasks/fashion_clothing_6way.npz").await;
    let cases: Vec<(serde_json::Value, StatusCode, &str)> = vec![
        (
            json!({"dataset_id": "ds_0000000000000000"}),
            StatusCode::NOT_FOUND,
            "ds_0000000000000000",
        ),
        (
            json!({"dataset_id": mnist, "teacher": "no_such_teacher"}),
            StatusCode::NOT_FOUND,
            "no_such_teacher",
        ),
        (
            json!({"dataset_id": mnist, "teacher": "letters_mlp"}),
            StatusCode::BAD_REQUEST,
            "cannot teach",
        ),
        (
            json!({"dataset_id": mnist, "method": "kd", "teacher": "fashion_mlp"}),
            StatusCode::BAD_REQUEST,
            "label names",
        ),
        (
            json!({"dataset_id": letters, "student": "cnn:8,16"}),
            StatusCode::BAD_REQUEST,
            "rows",
        ),
        (
            json!({"dataset_id": mnist, "student": "transformer:12"}),
            StatusCode::BAD_REQUEST,
            "unknown student",
        ),
        (
            json!({"dataset_id": mnist, "student": "mlp:0"}),
            StatusCode::BAD_REQUEST,
            "width",
        ),
        (
            json!({"dataset_id": mnist, "student": {"kind": "cnn", "channels": [8, 8, 8, 8, 8, 8]}}),
            StatusCode::BAD_REQUEST,
            "blocks",
        ),
        (
            json!({"dataset_id": mnist, "method": "distill"}),
            StatusCode::BAD_REQUEST,
            "method",
        ),
        (
            json!({"dataset_id": mnist, "config": {"lr": -1.0}}),
            StatusCode::BAD_REQUEST,
            "lr",
        ),
        (
            json!({"dataset_id": mnist, "config": {"max_epochs": 0}}),
            StatusCode::BAD_REQUEST,
            "max_epochs",
        ),
        (
            json!({"dataset_id": mnist, "config": {"learning_rate": 0.1}}),
            StatusCode::BAD_REQUEST,
            "learning_rate",
        ),
        (
            json!({"dataset_id": clothing, "method": "kd", "teacher": "auto"}),
            StatusCode::BAD_REQUEST,
            "no teacher",
        ),
        (
            json!({"method": "faculty"}),
            StatusCode::BAD_REQUEST,
            "dataset_id",
        ),
    ];
    for (body, status, needle) in cases {
        let r = post_json(&app, "/v1/jobs", body.clone()).await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, status, "{body}: {text}");
        assert!(
            text.contains(needle),
            "{body}: {text} should name '{needle}'"
        );
        assert!(
            r.json()["error"].is_string() && r.json()["kind"].is_string(),
            "{text}"
        );
        assert_eq!(
            get(&app, "/v1/jobs").await.json()["jobs"],
            json!([]),
            "{body} created a job"
        );
        assert_eq!(
            get(&app, "/v1/students").await.json()["students"],
            json!([])
        );
    }
    // zero labeled rows: refused at upload already, so no job can name such a dataset
    let x: Vec<u8> = (0..40).map(|i| i as u8).collect();
    let yb: Vec<u8> = [-1i64; 10].iter().flat_map(|v| v.to_le_bytes()).collect();
    let unlabeled = zip_of(&[
        ("x.npy", npy("|u1", &[10, 4], &x)),
        ("y.npy", npy("<i8", &[10], &yb)),
    ]);
    let r = upload_dataset(&app, &unlabeled, "unlabeled.npz").await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // and the library refuses one built by hand
    let zoo_dir = sb.zoo();
    let store = faculty::store::Store::temporary().unwrap();
    let zoo = faculty::zoo::Zoo::open(
        &zoo_dir,
        &store,
        std::sync::Arc::new(faculty::onnx::SessionPool::new(1)),
        64,
    )
    .unwrap();
    zoo.rescan().unwrap();
    let ds = faculty::data::Dataset {
        x: ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 784])),
        y: vec![-1; 4],
        labels: vec!["a".into(), "b".into()],
    };
    let req = faculty::distill::DistillRequest::new(
        "x",
        faculty::distill::Method::Scratch,
        "auto",
        "mlp",
    );
    let e = faculty::distill::validate(&zoo, &ds, &req).unwrap_err();
    assert!(e.message.contains("no labeled rows"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_queue_and_cancel() {
    let sb = Sandbox::new();
    let mut config = sb.config();
    config.max_jobs = 1;
    let app = sb.app_with(config);
    let ds = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let long = json!({"dataset_id": ds, "method": "scratch", "student": "mlp:32",
                      "config": {"max_epochs": 10000, "patience": 10000}});
    let first = post_json(&app, "/v1/jobs", long.clone()).await.json();
    let second = post_json(&app, "/v1/jobs", long).await.json();
    let (a, b) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    wait_for(&app, a, |j| {
        j["state"] == "running" && !j["epochs"].as_array().unwrap().is_empty()
    })
    .await;
    // one slot: the second waits
    assert_eq!(
        get(&app, &format!("/v1/jobs/{b}")).await.json()["state"],
        "queued"
    );
    let listed = get(&app, "/v1/jobs").await.json();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2);
    // cancelling the queued one is immediate
    let r = post_json(&app, &format!("/v1/jobs/{b}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "cancelled");
    // the running one stops at its next step
    let r = post_json(&app, &format!("/v1/jobs/{a}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = wait_for(&app, a, |j| j["state"] != "running").await;
    assert_eq!(j["state"], "cancelled", "{j}");
    assert!(j["student_id"].is_null());
    // a finished job cannot be cancelled; an unknown one is 404
    let r = post_json(&app, &format!("/v1/jobs/{a}/cancel"), json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = post_json(&app, "/v1/jobs/job_0123456789abcdef/cancel", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/v1/students").await.json()["students"],
        json!([])
    );
    assert_eq!(
        get(&app, "/v1/students/st_0123456789abcdef").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/v1/students/../../etc/model.onnx").await.status,
        StatusCode::NOT_FOUND
    );
}
