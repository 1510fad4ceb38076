//! Two `faculty serve` processes over one PostgreSQL database and one object store (make test's cluster
//! pass): what one server stores the other reads, and a job whose server is killed (SIGKILL) mid-training
//! is taken over by the other and finishes there, resumed from its checkpoint, once; the same with
//! `faculty worker` processes running the jobs of a server that runs none.
mod common;

use common::server::*;
use common::*;

#[test]
fn two_servers_share_their_state_and_a_killed_servers_job_finishes_on_the_other() {
    if !on_postgres() {
        eprintln!("skipped: runs in make test's PostgreSQL pass (FACULTY_TEST_DATABASE_URL)");
        return;
    }
    let sb = Sandbox::new();
    // one state (the schema and blob prefix follow the state directory), two servers
    let (mut a, pa) = spawn_server(&sb.zoo(), &sb.state());
    let (mut b, pb) = spawn_server(&sb.zoo(), &sb.state());
    let task = std::fs::read(repo().join("zoo/tasks/mnist_10way_5shot.npz")).unwrap();
    let (status, ds) = post_dataset(pa, "mnist.npz", &task);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&ds));
    let ds: serde_json::Value = serde_json::from_slice(&ds).unwrap();

    // a ranking made on A is read, complete, on B
    let (status, rk) = http_json(
        pa,
        "POST",
        "/v1/rankings",
        serde_json::json!({"dataset_id": ds["id"]}),
    );
    assert_eq!(status, 201, "{rk}");
    let (status, on_b) = http_json(
        pb,
        "GET",
        &format!("/v1/rankings/{}", rk["id"].as_str().unwrap()),
        serde_json::Value::Null,
    );
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_b["results"], rk["results"]);
    assert!(!rk["results"].as_array().unwrap().is_empty());

    // a long job submitted to A, watched from B, A killed after its first checkpoints
    let (status, job) = http_json(
        pa,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds["id"], "method": "kd", "teacher": "mnist_mlp",
                           "student": "mlp:32",
                           "config": {"max_epochs": 400, "val_fraction": 0.0, "cv_folds": 0}}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let before = wait_job(pb, &id, |j| {
        j["phase"] == "training" && j["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 2)
    });
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    assert!(before["checkpoint_epoch"].as_u64().unwrap() < 400);

    // B takes it over once A's lease runs out, and finishes it from the checkpoint
    let fin = wait_job(pb, &id, |j| {
        j["state"]
            .as_str()
            .is_some_and(|s| s != "queued" && s != "running")
    });
    assert_eq!(fin["state"], "succeeded", "{fin}");
    assert_eq!(fin["restarts"], 1, "{fin}");
    let notes = fin["notes"].to_string();
    assert!(
        notes.contains(
            "its server stopped answering while this job ran; resumed from the checkpoint"
        ),
        "{notes}"
    );
    let epochs: Vec<u64> = fin["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(
        epochs,
        (1..=400).collect::<Vec<_>>(),
        "nothing lost, nothing repeated"
    );
    // one student, downloadable from B byte for byte
    let (_, students) = http_json(pb, "GET", "/v1/students", serde_json::Value::Null);
    let students = students["students"].as_array().unwrap();
    assert_eq!(students.len(), 1, "{students:?}");
    assert_eq!(students[0]["id"], fin["student_id"]);
    let (status, file) = http(
        pb,
        "GET",
        &format!(
            "/v1/students/{}/model.onnx",
            students[0]["id"].as_str().unwrap()
        ),
        "text/plain",
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        faculty::zoo::teacher::sha256_hex(&file),
        students[0]["sha256"].as_str().unwrap()
    );
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn workers_run_a_servers_jobs_and_a_killed_workers_job_finishes_on_another() {
    if !on_postgres() {
        eprintln!("skipped: runs in make test's PostgreSQL pass (FACULTY_TEST_DATABASE_URL)");
        return;
    }
    let sb = Sandbox::new();
    let (mut server, port) = spawn_server_with(&sb.zoo(), &sb.state(), &["--max-jobs", "0"]);
    let workers = [
        spawn_worker(&sb.zoo(), &sb.state()),
        spawn_worker(&sb.zoo(), &sb.state()),
    ];
    let pids: Vec<String> = workers.iter().map(|w| format!(":{}:", w.id())).collect();
    let task = std::fs::read(repo().join("zoo/tasks/mnist_10way_5shot.npz")).unwrap();
    let (status, ds) = post_dataset(port, "mnist.npz", &task);
    assert_eq!(status, 201);
    let ds: serde_json::Value = serde_json::from_slice(&ds).unwrap();
    let (status, job) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds["id"], "method": "kd", "teacher": "mnist_mlp",
                           "student": "mlp:32",
                           "config": {"max_epochs": 400, "val_fraction": 0.0, "cv_folds": 0}}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let before = wait_job(port, &id, |j| {
        j["phase"] == "training" && j["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 2)
    });
    let first = before["worker"].as_str().unwrap().to_string();
    let which = pids
        .iter()
        .position(|p| first.contains(p.as_str()))
        .unwrap_or_else(|| panic!("run by {first}, not by a worker {pids:?}"));
    let [w0, w1] = workers;
    let (mut killed, mut other) = if which == 0 { (w0, w1) } else { (w1, w0) };
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    let fin = wait_job(port, &id, |j| {
        j["state"]
            .as_str()
            .is_some_and(|s| s != "queued" && s != "running")
    });
    assert_eq!(fin["state"], "succeeded", "{fin}");
    assert_eq!(fin["restarts"], 1, "{fin}");
    assert!(
        fin["worker"].as_str().unwrap().contains(&pids[1 - which]),
        "finished by the other worker: {fin}"
    );
    let epochs: Vec<u64> = fin["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(
        epochs,
        (1..=400).collect::<Vec<_>>(),
        "nothing lost, nothing repeated"
    );
    let (_, students) = http_json(port, "GET", "/v1/students", serde_json::Value::Null);
    assert_eq!(
        students["students"].as_array().unwrap().len(),
        1,
        "{students}"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn two_servers_uploading_the_same_teacher_at_once_end_with_one_teacher() {
    if !on_postgres() {
        eprintln!("skipped: runs in make test's PostgreSQL pass (FACULTY_TEST_DATABASE_URL)");
        return;
    }
    let sb = Sandbox::new();
    let (mut a, pa) = spawn_server(&sb.zoo(), &sb.state());
    let (mut b, pb) = spawn_server(&sb.zoo(), &sb.state());
    // four uploads of one name at once, two different models among them: exactly one wins, and the
    // catalog, the file and every server agree on which
    let models: Vec<Vec<u8>> = ["digits8x8_logreg.onnx", "letters_logreg.onnx"]
        .iter()
        .map(|f| std::fs::read(repo().join("zoo/teachers").join(f)).unwrap())
        .collect();
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let hs: Vec<_> = [(pa, 0), (pb, 1), (pa, 1), (pb, 0)]
            .into_iter()
            .map(|(p, m)| {
                let (body, ct) = (multipart("dup.onnx", &models[m], &[]), &ct);
                s.spawn(move || {
                    let (status, b) = http(p, "POST", "/v1/teachers", ct, &body);
                    (status, serde_json::from_slice(&b).unwrap_or_default())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.1)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|r| r.0 == 201 || r.0 == 409),
        "{results:?}"
    );
    let sha = won[0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(
        faculty::zoo::teacher::sha256_hex(&std::fs::read(sb.zoo().join("dup.onnx")).unwrap()),
        sha,
        "the file on disk is the winner's"
    );
    for port in [pa, pb] {
        let (_, list) = http_json(
            port,
            "GET",
            "/v1/teachers?page_size=500",
            serde_json::Value::Null,
        );
        let dups: Vec<&serde_json::Value> = list["teachers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["name"] == "dup")
            .collect();
        assert_eq!(dups.len(), 1, "{dups:?}");
        assert_eq!(dups[0]["sha256"], sha.as_str());
    }
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = (a.wait(), b.wait());
}
