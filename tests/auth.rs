//! Tokens for writes (router in process, real sled, real ONNX Runtime): with tokens configured every
//! write endpoint is refused without a token (401 + WWW-Authenticate), with an unknown one (401) and with
//! a role too low (403), and allowed with the right role; reads stay open unless required; refusals
//! change nothing. Also: 429 answers carry Retry-After after a bounded wait.
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;

const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn tokens_file(sb: &Sandbox) -> String {
    let f = sb.dir.path().join("tokens");
    std::fs::write(
        &f,
        format!("# roles\nread {READ}\nwrite {WRITE}\nadmin {ADMIN}\n"),
    )
    .unwrap();
    f.to_string_lossy().into_owned()
}

async fn as_(app: &axum::Router, method: &str, uri: &str, token: Option<&str>) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    call(app, b.body(Body::from("{}")).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_token_of_the_right_role() {
    let sb = Sandbox::new();
    let mut cfg = sb.config();
    cfg.api_tokens = Some(tokens_file(&sb));
    let app = sb.app_with(cfg);
    let before = snapshot_files(&sb.zoo());
    // (method, uri, the lowest role allowed)
    let writes = [
        ("POST", "/v1/teachers", ADMIN),
        ("DELETE", "/v1/teachers/mnist_logreg", ADMIN),
        ("POST", "/v1/zoo/rescan", ADMIN),
        ("POST", "/v1/datasets", WRITE),
        ("DELETE", "/v1/datasets/ds_0000000000000000", WRITE),
        ("POST", "/v1/rankings", WRITE),
        ("POST", "/v1/jobs", WRITE),
        ("POST", "/v1/jobs/job_0000000000000000/cancel", WRITE),
        ("DELETE", "/v1/students/st_0000000000000000", WRITE),
    ];
    for (method, uri, lowest) in writes {
        let none = as_(&app, method, uri, None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"faculty\"");
        assert_eq!(none.json()["kind"], "unauthorized");
        let wrong = as_(&app, method, uri, Some("not-a-token-at-all-0000")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        let low = as_(&app, method, uri, Some(READ)).await;
        assert_eq!(low.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert!(
            String::from_utf8_lossy(&low.body).contains("the token has role read"),
            "{method} {uri}"
        );
        if lowest == ADMIN {
            let w = as_(&app, method, uri, Some(WRITE)).await;
            assert_eq!(w.status, StatusCode::FORBIDDEN, "{method} {uri}");
        }
        // the right role passes the gate (the empty request itself may then be refused, never 401/403)
        let ok = as_(&app, method, uri, Some(lowest)).await;
        assert!(
            ok.status != StatusCode::UNAUTHORIZED && ok.status != StatusCode::FORBIDDEN,
            "{method} {uri}: {}",
            ok.status
        );
    }
    // the refused deletes changed nothing; the allowed admin delete did remove the teacher
    let after = snapshot_files(&sb.zoo());
    assert!(!after.keys().any(|k| k.contains("mnist_logreg")));
    assert_eq!(before.len(), after.len() + 1);
    // reads stay open by default, predictions too
    assert_eq!(get(&app, "/v1/teachers").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/v1/jobs").await.status, StatusCode::OK);
    let p = post_json(
        &app,
        "/v1/teachers/letters_logreg/predict",
        serde_json::json!({"inputs": [vec![0.0f32; 16]]}),
    )
    .await;
    p.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_can_require_a_token_and_one_token_is_admin() {
    let sb = Sandbox::new();
    let mut cfg = sb.config();
    cfg.api_tokens = Some(ADMIN.into());
    cfg.require_token_for_reads = true;
    let app = sb.app_with(cfg);
    assert_eq!(
        as_(&app, "GET", "/v1/teachers", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        as_(&app, "GET", "/v1/teachers", Some(ADMIN)).await.status,
        StatusCode::OK
    );
    // the dashboard's page and files hold no data: open, so the page can ask for the token
    for open in ["/", "/static/app.js", "/static/style.css"] {
        assert_eq!(
            as_(&app, "GET", open, None).await.status,
            StatusCode::OK,
            "{open}"
        );
    }
    assert_eq!(
        as_(&app, "GET", "/healthz", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = as_(&app, "POST", "/v1/zoo/rescan", Some(ADMIN)).await;
    r.expect(200);
    // a too-short token is refused at start, with the reason
    let mut bad = sb.config();
    bad.api_tokens = Some("short".into());
    let e = faculty::api::AppState::open(bad).err().unwrap();
    assert!(
        e.message.contains("at least 16 characters"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_answers_429_with_retry_after() {
    let sb = Sandbox::new();
    let mut cfg = sb.config();
    cfg.max_blocking = 1;
    cfg.queue_wait_ms = 50;
    let st = faculty::api::AppState::open(cfg).unwrap();
    let holder = st.clone();
    let busy = tokio::spawn(async move {
        holder
            .blocking(|| {
                std::thread::sleep(std::time::Duration::from_millis(800));
                Ok(())
            })
            .await
            .map_err(|e| e.0.message)
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let refused = st.blocking(|| Ok(())).await.expect_err("no slot left");
    let res = axum::response::IntoResponse::into_response(refused);
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    busy.await.unwrap().unwrap();
    // a request that waits less than queue_wait_ms for the slot is served
    let holder = st.clone();
    let short = tokio::spawn(async move {
        holder
            .blocking(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                Ok(())
            })
            .await
            .map_err(|e| e.0.message)
    });
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    assert!(st.blocking(|| Ok(())).await.is_ok());
    short.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_dataset_loads_share_a_memory_budget() {
    let sb = Sandbox::new();
    let mut cfg = sb.config();
    cfg.upload_memory_mb = 200;
    cfg.queue_wait_ms = 100;
    let st = faculty::api::AppState::open(cfg).unwrap();
    let app = faculty::api::router(st.clone());
    let task = std::fs::read(repo().join("zoo/tasks/letters_26way.npz")).unwrap();
    // the whole budget held (as by uploads being parsed): a new upload waits, then gets 429
    let held = st.dataset_memory(200 << 20).await.unwrap();
    let r = post_multipart(&app, "/v1/datasets", multipart("l.npz", &task, &[])).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["retry-after"], "1");
    assert!(String::from_utf8_lossy(&r.body).contains("--upload-memory-mb"));
    assert_eq!(
        get(&app, "/v1/datasets").await.json()["datasets"],
        serde_json::json!([])
    );
    // released: the upload goes through
    drop(held);
    let r = post_multipart(&app, "/v1/datasets", multipart("l.npz", &task, &[])).await;
    let id = r.expect(201).json()["id"].as_str().unwrap().to_string();
    // held again: a job request and a ranking (each loads the dataset) wait, then get 429, and create
    // nothing
    let held = st.dataset_memory(200 << 20).await.unwrap();
    let job = serde_json::json!({"dataset_id": id, "method": "scratch", "student": "linear"});
    let r = post_json(&app, "/v1/jobs", job.clone()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(String::from_utf8_lossy(&r.body).contains("datasets being loaded"));
    let r = post_json(&app, "/v1/rankings", serde_json::json!({"dataset_id": id})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        get(&app, "/v1/jobs").await.json()["jobs"],
        serde_json::json!([])
    );
    assert_eq!(
        get(&app, "/v1/rankings").await.json()["rankings"],
        serde_json::json!([])
    );
    drop(held);
    post_json(&app, "/v1/jobs", job.clone()).await.expect(202);
    post_json(&app, "/v1/rankings", serde_json::json!({"dataset_id": id}))
        .await
        .expect(201);
}
