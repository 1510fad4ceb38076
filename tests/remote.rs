//! Scripts on another machine than the server: the CLI with `--server URL` (zoo, datasets, rank,
//! distill with its progress bar, jobs, students, downloads checked by sha256) and
//! `examples/shop_zoo.py` (standard-library Python), both against a real `faculty serve` process,
//! including refused requests (the server's message printed, a non-zero exit).
mod common;

use std::process::Output;

use common::server::{faculty, http_json, spawn_server, spawn_server_with};
use serde_json::Value;

fn sha256_file(p: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_cli_talks_to_a_server_with_server_url() {
    let sb = common::Sandbox::new();
    let (_server, port) = spawn_server(&sb.zoo(), &sb.state());
    let url = format!("http://127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let remote = || {
        let mut c = faculty();
        c.env("FACULTY_SERVER", &url);
        c
    };

    // the zoo: the same table and JSON as the local command, from the server
    let local: Value = serde_json::from_slice(
        &ok(faculty()
            .args(["zoo", "list", "--json", "--zoo"])
            .arg(sb.zoo())
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    let listed: Value = serde_json::from_slice(
        &ok(remote().args(["zoo", "list", "--json"]).output().unwrap()).stdout,
    )
    .unwrap();
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v["teachers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&listed), ids(&local));
    let table = stdout(&ok(faculty()
        .args(["--server", &url, "zoo", "list"])
        .output()
        .unwrap()));
    assert!(
        table.starts_with("ID ") && table.contains("fashion_footwear_cnn"),
        "{table}"
    );

    // a dataset, a ranking by file (uploaded first) and by id
    let task = common::repo().join("zoo/tasks/fashion_clothing_6way.npz");
    let ds: Value = serde_json::from_slice(
        &ok(remote()
            .args(["datasets", "upload", "--json"])
            .arg(&task)
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    let ds_id = ds["id"].as_str().unwrap().to_string();
    assert_eq!(ds["labeled"], 60);
    let listed = stdout(&ok(remote().args(["datasets", "list"]).output().unwrap()));
    assert!(listed.contains(&ds_id), "{listed}");
    let ranking: Value = serde_json::from_slice(
        &ok(remote()
            .args(["rank", "--json", "--dataset"])
            .arg(&task)
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(ranking["dataset_id"], ds_id.as_str());
    let stored = http_json(
        port,
        "GET",
        &format!("/v1/rankings/{}", ranking["id"].as_str().unwrap()),
        Value::Null,
    )
    .1;
    assert_eq!(
        stored["results"], ranking["results"],
        "the CLI printed the server's ranking"
    );
    let o = ok(remote()
        .args(["rank", "--dataset", &ds_id])
        .output()
        .unwrap());
    let table = stdout(&o);
    assert!(
        table.contains("RANK") && table.contains("verdict:"),
        "{table}"
    );
    let n = ranking["results"].as_array().unwrap().len();
    assert!(
        stderr(&o).contains(&format!("scored {n}/{n} teachers")),
        "streamed progress: {}",
        stderr(&o)
    );

    // stored rankings and a label map
    let rk = ranking["id"].as_str().unwrap();
    let listed = stdout(&ok(remote()
        .args(["rankings", "list", "--dataset", &ds_id])
        .output()
        .unwrap()));
    assert!(listed.contains(rk), "{listed}");
    let shown = stdout(&ok(remote()
        .args(["rankings", "show", rk])
        .output()
        .unwrap()));
    assert!(shown.contains("verdict:"), "{shown}");
    let map = stdout(&ok(remote()
        .args(["rankings", "label-map", rk, "fashion_cnn@1"])
        .output()
        .unwrap()));
    assert!(
        map.contains("TASK CLASS") && map.contains("Trouser"),
        "{map}"
    );
    let o = remote()
        .args(["rankings", "label-map", rk, "letters_mlp"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read this dataset's rows"),
        "{}",
        stderr(&o)
    );

    // distill on the server: the progress bar fed by the job's events, the student downloaded and checked
    let out = tmp.path().join("student.onnx");
    let o = ok(remote()
        .args([
            "distill",
            "--dataset",
            &ds_id,
            "--student",
            "mlp:32",
            "--config",
            r#"{"max_epochs": 15}"#,
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap());
    let (so, se) = (stdout(&o), stderr(&o));
    assert!(
        se.contains("queued on the server") && se.contains("] "),
        "a progress bar: {se}"
    );
    assert!(
        se.contains("training epoch"),
        "epochs arrive as events: {se}"
    );
    assert!(
        so.contains("validation accuracy") && so.contains("test accuracy"),
        "{so}"
    );
    let card: Value =
        serde_json::from_slice(&std::fs::read(out.with_extension("card.json")).unwrap()).unwrap();
    assert_eq!(sha256_file(&out), card["sha256"].as_str().unwrap());
    let student = card["id"].as_str().unwrap().to_string();

    // jobs and students
    let jobs = stdout(&ok(remote().args(["jobs", "list"]).output().unwrap()));
    assert!(
        jobs.contains("succeeded") && jobs.contains(&student),
        "{jobs}"
    );
    let job_id = jobs
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let job: Value = serde_json::from_slice(
        &ok(remote()
            .args(["jobs", "status", &job_id, "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(job["state"], "succeeded");
    // the plain status says what the job delivered
    let picked = job["picked"]
        .as_str()
        .expect("a job with a baseline says what it delivered");
    let status = stdout(&ok(remote()
        .args(["jobs", "status", &job_id])
        .output()
        .unwrap()));
    assert!(status.contains(&format!("delivered: {picked}")), "{status}");
    let students = stdout(&ok(remote().args(["students", "list"]).output().unwrap()));
    assert!(students.contains(&student), "{students}");
    let again = tmp.path().join("again.onnx");
    let o = ok(remote()
        .args(["students", "download", &student, "--out"])
        .arg(&again)
        .output()
        .unwrap());
    assert!(stdout(&o).contains("verified"));
    assert_eq!(sha256_file(&again), card["sha256"].as_str().unwrap());
    let teacher = tmp.path().join("t.onnx");
    ok(remote()
        .args(["zoo", "download", "mnist_logreg", "--out"])
        .arg(&teacher)
        .output()
        .unwrap());
    assert_eq!(
        std::fs::read(&teacher).unwrap(),
        std::fs::read(sb.zoo().join("mnist_logreg.onnx")).unwrap()
    );

    // a job to cancel, followed until it ends: cancelled is a non-zero exit
    let (_, long) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds_id, "method": "scratch", "student": "mlp:1024,1024", "config": {"max_epochs": 10000, "patience": 10000}}),
    );
    let long = long["id"].as_str().unwrap().to_string();
    common::server::wait_job(port, &long, |j| j["state"] == "running");
    let cancelled = stdout(&ok(remote()
        .args(["jobs", "cancel", &long])
        .output()
        .unwrap()));
    assert!(cancelled.contains(&long), "{cancelled}");
    let o = remote()
        .args(["jobs", "status", &long, "--follow"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("cancelled"),
        "{}",
        stderr(&o)
    );

    // refused requests: the server's message, a non-zero exit, nothing stored
    let bad = tmp.path().join("broken.csv");
    std::fs::write(&bad, "label,a\ncat,1\ndog,NaN\n").unwrap();
    let o = remote()
        .args(["rank", "--dataset"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("the server refused the request (400)") && e.contains("NaN"),
        "{e}"
    );
    let o = remote()
        .args(["jobs", "status", "job_nope"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("(404)"), "{}", stderr(&o));
    let o = remote()
        .args([
            "distill",
            "--dataset",
            &ds_id,
            "--teacher",
            "no_such_teacher",
            "--out",
        ])
        .arg(tmp.path().join("x.onnx"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("no_such_teacher"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("x.onnx").exists());
    let o = faculty()
        .args(["jobs", "list"])
        .env_remove("FACULTY_SERVER")
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("--server URL"),
        "{}",
        stderr(&o)
    );
    let o = faculty()
        .args(["--server", "http://127.0.0.1:1", "jobs", "list"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("cannot reach the server"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_remote_cli_sends_its_token() {
    let sb = common::Sandbox::new();
    let token = "remote-cli-token-0123456789";
    let (_server, port) = spawn_server_with(&sb.zoo(), &sb.state(), &["--api-tokens", token]);
    let url = format!("http://127.0.0.1:{port}");
    let model = common::repo().join("zoo/teachers/letters_logreg.onnx");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("shopped.onnx");
    std::fs::copy(&model, &copy).unwrap();
    let o = faculty()
        .args(["--server", &url, "zoo", "upload"])
        .arg(&copy)
        .env_remove("FACULTY_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("(401)") && stderr(&o).contains("Bearer"),
        "{}",
        stderr(&o)
    );
    let o = ok(faculty()
        .args(["--server", &url, "zoo", "upload", "--version", "2"])
        .arg(&copy)
        .env("FACULTY_TOKEN", token)
        .output()
        .unwrap());
    assert!(stdout(&o).contains("shopped@2"), "{}", stdout(&o));
}

#[test]
fn the_example_script_shops_the_zoo() {
    let sb = common::Sandbox::new();
    let (_server, port) = spawn_server(&sb.zoo(), &sb.state());
    let url = format!("http://127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("student.onnx");
    let script = common::repo().join("examples/shop_zoo.py");
    let o = ok(std::process::Command::new("python3")
        .arg(&script)
        .args(["--server", &url, "--max-epochs", "15", "--dataset"])
        .arg(common::repo().join("zoo/tasks/fashion_clothing_6way.npz"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap());
    let so = stdout(&o);
    assert!(
        so.contains(&format!("zoo: {} teachers", common::bundled_teachers()))
            && so.contains("label map:"),
        "{so}"
    );
    assert!(
        so.contains("running: training"),
        "progress from the events: {so}"
    );
    let line = so.lines().last().unwrap();
    assert!(line.contains("verified"), "{so}");
    let students = http_json(port, "GET", "/v1/students", Value::Null).1;
    let card = &students["students"][0];
    assert_eq!(sha256_file(&out), card["sha256"].as_str().unwrap());
    assert!(line.contains(card["sha256"].as_str().unwrap()));

    // a refused request: the server's error on stderr, exit status 1, nothing stored
    let bad = tmp.path().join("broken.csv");
    std::fs::write(&bad, "label,a\ncat,1\ndog,NaN\n").unwrap();
    let before = http_json(port, "GET", "/v1/datasets", Value::Null).1;
    let o = std::process::Command::new("python3")
        .arg(&script)
        .args(["--server", &url, "--dataset"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("POST /v1/datasets was refused (400 invalid_input") && e.contains("NaN"),
        "{e}"
    );
    assert_eq!(
        http_json(port, "GET", "/v1/datasets", Value::Null).1,
        before
    );
}
