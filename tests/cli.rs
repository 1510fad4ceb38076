//! The `faculty` binary as scripts use it: `zoo list`, `zoo inspect`, `rank`, `distill`, `eval-ranking`, the
//! missing-runtime message, and a real `serve` process answering over loopback.
mod common;

use common::server::{
    FAST_CHECKPOINTS, Server, epochs_of, faculty, http, http_json, long_job_mid_training,
    post_dataset, post_task, spawn_server, spawn_server_with, wait_finished, wait_job,
};

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// Runs the command, requires success (showing stderr otherwise) and returns its output.
fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the command, requires success and parses its stdout as JSON.
fn json_of(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_slice(&run_ok(cmd).stdout).unwrap()
}

#[test]
fn zoo_list_json_and_table() {
    let v = json_of(faculty().args(["zoo", "list", "--json", "--zoo", "zoo/teachers"]));
    let teachers = v["teachers"].as_array().unwrap();
    assert!(teachers.len() >= 14);
    assert!(
        teachers
            .iter()
            .all(|t| t["usable"] == true && t["sha256"].as_str().unwrap().len() == 64)
    );
    let out = faculty().args(["zoo", "list"]).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.lines().next().unwrap().starts_with("ID"));
    assert!(
        table.contains("mnist_mlp") && table.contains("(logits)") && table.contains("(zipmap)"),
        "{table}"
    );
}

#[test]
fn zoo_inspect_good_and_bad() {
    let t = json_of(faculty().args(["zoo", "inspect", "--json", "zoo/teachers/mnist_mlp.onnx"]));
    assert_eq!(t["softmax_applied"], true);
    assert_eq!(t["num_classes"], 10);
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, common::random_bytes(777)).unwrap();
    let out = faculty()
        .args(["zoo", "inspect"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an ONNX model"));
}

#[test]
fn missing_runtime_says_how_to_install_it() {
    let out = faculty()
        .args(["zoo", "list"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ONNX Runtime 1.31.1 was not found") && err.contains("make setup"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "one clear message: {err}"
    );
}

#[test]
fn serve_process_answers_over_loopback() {
    let sb = common::Sandbox::new();
    let (mut child, port) = spawn_server(&sb.zoo(), &sb.state());
    let (status, body) = http(port, "GET", "/v1/teachers/mnist_cnn@1", "text/plain", b"");
    child.kill().unwrap();
    child.wait().unwrap();
    let buf = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{buf}");
    assert!(buf.contains("\"labels\":[\"0\",\"1\""), "{buf}");
    // state is on disk under --data-dir, or in PostgreSQL when the run says so
    assert_eq!(
        sb.state().join("state.sled").exists(),
        !common::on_postgres()
    );
}

/// SIGTERM (what a service manager or Kubernetes sends) stops a server within seconds even while it
/// trains; the job resumes on the next start as after a kill. It used to train on until the job ended.
#[test]
fn a_sigtermed_server_exits_promptly_mid_job_and_the_job_resumes() {
    let sb = common::Sandbox::new();
    let (mut child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let ds = post_task(port, "mnist_10way_5shot.npz");
    // a job of 10,000 epochs (minutes), signalled once it has checkpointed
    let (status, job) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds["id"], "method": "kd", "teacher": "mnist_mlp",
                           "student": "mlp:32",
                           "config": {"max_epochs": 10_000, "patience": 10_000,
                                      "val_fraction": 0.0, "cv_folds": 0}}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    wait_job(port, &id, |j| {
        j["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 2)
    });
    // SAFETY: signalling our own child process
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let asked = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            asked.elapsed().as_secs() < 15,
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let (_child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let after = wait_job(port, &id, |j| j["restarts"] == 1 && j["state"] == "running");
    assert!(
        after["notes"]
            .to_string()
            .contains("resumed from the checkpoint after epoch"),
        "{after}"
    );
    let (status, _) = http_json(
        port,
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        serde_json::Value::Null,
    );
    assert_eq!(status, 200);
    assert_eq!(wait_finished(port, &id)["state"], "cancelled");
}

#[test]
fn a_killed_server_resumes_its_jobs_and_keeps_its_students() {
    let sb = common::Sandbox::new();
    let (mut child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let task = std::fs::read("zoo/tasks/mnist_10way_5shot.npz").unwrap();
    let body = common::multipart("mnist.npz", &task, &[]);
    let ct = format!("multipart/form-data; boundary={}", common::BOUNDARY);
    let (status, ds) = http(port, "POST", "/v1/datasets", &ct, &body);
    assert_eq!(status, 201);
    let ds: serde_json::Value = serde_json::from_slice(&ds).unwrap();
    // a short job that finishes before the kill: its student must survive
    let (status, done) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds["id"], "method": "scratch", "student": "mlp:16",
                           "config": {"max_epochs": 3}}),
    );
    assert_eq!(status, 202, "{done}");
    let done = wait_job(port, done["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    let student = done["student_id"].as_str().unwrap().to_string();
    // a long job, killed mid-training after its first checkpoint
    let (id, _) = long_job_mid_training(port, port, &ds["id"]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // restart on the same state directory
    let (mut child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    // (on PostgreSQL the new process cannot know the old one is gone: it takes the job over once the
    // old lease runs out, within seconds)
    let after = wait_job(port, &id, |j| j["restarts"] == 1);
    assert!(
        ["queued", "running", "succeeded"].contains(&after["state"].as_str().unwrap()),
        "{after}"
    );
    assert_eq!(after["restarts"], 1, "{after}");
    let note = after["notes"].to_string();
    assert!(
        note.contains("resumed from the checkpoint after epoch"),
        "{note}"
    );
    let fin = wait_finished(port, &id);
    assert_eq!(fin["state"], "succeeded", "{fin}");
    // the epochs continue the checkpoint's history rather than starting over
    let epochs = epochs_of(&fin);
    assert_eq!(epochs, (1..=400).collect::<Vec<_>>());
    // the student finished before the kill is still listed and downloadable, byte for byte
    let (_, card) = http_json(
        port,
        "GET",
        &format!("/v1/students/{student}"),
        serde_json::Value::Null,
    );
    let (status, file) = http(
        port,
        "GET",
        &format!("/v1/students/{student}/model.onnx"),
        "text/plain",
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        faculty::zoo::teacher::sha256_hex(&file),
        card["sha256"].as_str().unwrap()
    );
    let (_, done_after) = http_json(
        port,
        "GET",
        &format!("/v1/jobs/{}", done["id"].as_str().unwrap()),
        serde_json::Value::Null,
    );
    assert_eq!(done_after["state"], "succeeded");
    child.kill().unwrap();
    child.wait().unwrap();
    // a student file lost while the server was down (here: deleted from the directory store): at the
    // next start the job that claims it says so instead of pointing at nothing
    if common::test_blob_url(&sb.state()).is_none() {
        std::fs::remove_file(sb.state().join(format!("students/{student}.onnx"))).unwrap();
        let (mut child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
        let (_, lost) = http_json(
            port,
            "GET",
            &format!("/v1/jobs/{}", done["id"].as_str().unwrap()),
            serde_json::Value::Null,
        );
        assert_eq!(lost["state"], "failed", "{lost}");
        assert_eq!(lost["error"], "the student this job produced is missing");
        let (_, listed) = http_json(
            port,
            "GET",
            "/v1/jobs?state=failed",
            serde_json::Value::Null,
        );
        assert_eq!(listed["jobs"][0]["id"], done["id"], "{listed}");
        let (_, kept) = http_json(
            port,
            "GET",
            &format!("/v1/jobs/{id}"),
            serde_json::Value::Null,
        );
        assert_eq!(kept["state"], "succeeded", "{kept}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_killed_server_resumes_a_multihop_chain_inside_its_hop() {
    let sb = common::Sandbox::new();
    let (mut child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let ds = post_task(port, "letters_26way.npz");
    let (status, job) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds["id"], "method": "multihop", "teacher": "letters_rf",
                           "student": "tree:10",
                           "multihop": {"candidates": ["mlp:256"], "hop_methods": ["kd"], "min_gain": 0,
                                        "max_time_factor": 0},
                           "config": {"max_epochs": 300, "patience": 300, "cv_folds": 2}}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    // killed inside the hop's training on the second cross-validation fold (after the 1-hop answer and
    // the first fold), after a checkpoint of it
    let stage = "intermediate 1 mlp:256:relu via kd (fold 2/2)";
    let hop = format!("training: {stage}");
    // a checkpoint of this fold's training (the job names the training its checkpoint belongs to: until
    // this fold writes its own, the last one is the first fold's)
    let before = wait_job(port, &id, |j| {
        j["phase"] == hop.as_str()
            && j["checkpoint_stage"] == stage
            && j["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 2)
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(before["search"].as_array().unwrap().len(), 1, "{before}");
    let ck = before["checkpoint_epoch"].as_u64().unwrap();
    let (mut child, port) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let fin = wait_finished(port, &id);
    assert_eq!(fin["state"], "succeeded", "{fin}");
    assert_eq!(fin["restarts"], 1);
    // resumed from the checkpoint seen, or a later one of the same fold written before the kill landed
    let notes = fin["notes"].to_string();
    let resumed: u64 = notes
        .split("after epoch ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume note: {notes}"));
    assert!(
        (ck..=300).contains(&resumed),
        "seen {ck}, resumed {resumed}: {notes}"
    );
    // the hop's training went on from its checkpoint: its epochs run 1..=300 once, not twice
    let epochs: Vec<u64> = fin["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stage"] == "intermediate 1 mlp:256:relu via kd (fold 2/2)")
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, (1..=300).collect::<Vec<_>>());
    // the search is whole: the 1-hop answer (redone, seeded) and the hop's candidate
    let models: Vec<&str> = fin["search"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["tree:10", "mlp:256:relu"], "{fin}");
    assert_eq!(
        fin["search"][0], before["search"][0],
        "the redone 1-hop answer is the same"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn distill_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("student.onnx");
    let out = faculty()
        .args([
            "distill",
            "--dataset",
            "zoo/tasks/letters_26way.npz",
            "--method",
            "faculty",
            "--teacher",
            "auto",
            "--student",
            "mlp:64",
            "--config",
            r#"{"max_epochs": 8, "cv_folds": 2}"#,
            "--out",
        ])
        .arg(&out_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("training epoch") && err.contains('%'),
        "a progress bar: {err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("validation accuracy") && text.contains("teacher: letters_"),
        "{text}"
    );
    let bytes = std::fs::read(&out_path).unwrap();
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("student.card.json")).unwrap())
            .unwrap();
    assert_eq!(card["sha256"], faculty::zoo::teacher::sha256_hex(&bytes));
    assert_eq!(card["labels"].as_array().unwrap().len(), 26);
    // the file is a classifier faculty itself can index
    run_ok(faculty().args(["zoo", "inspect", "--json"]).arg(&out_path));
    // a bad method is exit code 2 with a message
    let out = faculty()
        .args([
            "distill",
            "--dataset",
            "zoo/tasks/letters_26way.npz",
            "--method",
            "magic",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown method"));
}

#[test]
fn rank_without_a_server() {
    // the tabular task: letters teachers are compatible (one standardises rows from its metadata),
    // image teachers are listed as incompatible
    let r = json_of(faculty().args(["rank", "--dataset", "zoo/tasks/letters_26way.npz", "--json"]));
    let results = r["results"].as_array().unwrap();
    assert_eq!(results[0]["rank"], 1);
    assert!(
        results[0]["teacher_id"]
            .as_str()
            .unwrap()
            .starts_with("letters_")
    );
    let mlp = results
        .iter()
        .find(|t| t["teacher_id"] == "letters_mlp")
        .unwrap();
    assert!(mlp["notes"].to_string().contains("input_mean"), "{mlp}");
    // a teacher of the task's own 26 letters is said to be one; the a-m teacher (13 of them) is not
    assert!(
        mlp["notes"]
            .to_string()
            .contains("names exactly the task's 26 classes"),
        "{mlp}"
    );
    let am = results
        .iter()
        .find(|t| t["teacher_id"] == "letters_am_logreg")
        .unwrap();
    assert_eq!(am["compatible"], true, "{am}");
    assert!(!am["notes"].to_string().contains("names exactly"), "{am}");
    assert!(
        results
            .iter()
            .any(|t| t["compatible"] == false && t["reason"].is_string())
    );
    assert_eq!(r["verdict"]["teacher_helps"], true);
    // table output, another primary metric
    let out = faculty()
        .args([
            "rank",
            "--dataset",
            "zoo/tasks/letters_26way.npz",
            "--primary-metric",
            "ot",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("primary metric: ot (lower is better)") && text.contains("verdict:"),
        "{text}"
    );
    // the teachers' notes are listed under the table
    assert!(
        text.lines().any(|l| l.starts_with("  letters_mlp: ")
            && l.contains("input_mean")
            && l.contains("names exactly the task's 26 classes")),
        "{text}"
    );
    // a bad dataset file is exit code 2 with a message
    let out = faculty()
        .args(["rank", "--dataset", "Cargo.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}

#[test]
fn eval_ranking_judges_each_draw_and_the_task() {
    // the coarse Fashion task alone (10 draws, 13 teachers), read from the committed ground truth
    let repo = common::repo();
    let mut gt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("zoo/ground_truth.json")).unwrap())
            .unwrap();
    let tasks = gt["tasks"].as_array_mut().unwrap();
    tasks.retain(|t| t["name"] == "fashion_3way_coarse");
    let truth: std::collections::BTreeMap<String, f64> =
        serde_json::from_value(tasks[0]["teacher_mean"].clone()).unwrap();
    gt["task_dir"] = repo.join("zoo/ground_truth").to_str().unwrap().into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coarse.json");
    std::fs::write(&file, gt.to_string()).unwrap();
    let r = json_of(
        faculty()
            .args(["eval-ranking", "--json", "--ground-truth"])
            .arg(&file),
    );
    let task = &r["tasks"][0];
    assert_eq!(task["task"], "fashion_3way_coarse");
    let best = truth.values().copied().fold(f64::MIN, f64::max);
    assert_eq!(task["best_accuracy"].as_f64().unwrap(), best);
    for (m, v) in task["metrics"].as_object().unwrap() {
        let pick = v["consensus_pick"].as_str().unwrap();
        let within = best - truth[pick] <= 0.01 + 1e-9;
        assert_eq!(v["consensus_within_1pt"], within, "{m}: {v}");
        for k in ["top_within_1pt", "verdict_right", "top_set_within_1pt"] {
            let f = v[k].as_f64().unwrap();
            // a fraction of 10 draws
            assert!(
                (0.0..=1.0).contains(&f) && (f * 10.0 - (f * 10.0).round()).abs() < 1e-9,
                "{m} {k}: {f}"
            );
        }
    }
    // the default metric on this task: the order tracks the truth, the consensus pick and the top set
    // hold a teacher within 1 point, and the majority verdict ("a teacher helps") is right
    let ot = &task["metrics"]["ot"];
    assert!(ot["spearman"].as_f64().unwrap() >= 0.85, "{ot}");
    assert_eq!(ot["consensus_within_1pt"], true, "{ot}");
    assert_eq!(ot["top_set_within_1pt"], 1.0, "{ot}");
    assert_eq!(ot["consensus_verdict_right"], true, "{ot}");
    let s = &r["summary"]["ot"];
    assert_eq!(s["tasks"], 1);
    assert_eq!(s["tasks_consensus_within_1pt"], 1);
    // the verdict's gain rule, fitted on every (draw, teacher) measured (a lone task's verdicts use the
    // product's rule: there is no other task to fit one on)
    assert_eq!(r["gain"]["samples"], 130, "{}", r["gain"]);
    assert_eq!(r["gain"]["fit"]["coef"].as_array().unwrap().len(), 3);
    // the truth's own noise, and every draw's raw scores next to the measured students
    let noise = task["truth_noise"]["own_draw_spearman"].as_f64().unwrap();
    assert!(noise > 0.5 && noise <= 1.0, "{noise}");
    // the truth tracks its own expectation (split-half), and the metric's draw-averaged order is reported
    let tracks = task["truth_noise"]["truth_vs_expected"].as_f64().unwrap();
    assert!(tracks > 0.5 && tracks <= 1.0 + 1e-12, "{tracks}");
    let averaged = ot["spearman_of_mean_score"].as_f64().unwrap();
    assert!(averaged > 0.5 && averaged <= 1.0 + 1e-12, "{averaged}");
    let draws = r["draws"].as_array().unwrap();
    assert_eq!(draws.len(), 10);
    for (d, draw) in draws.iter().enumerate() {
        assert_eq!(draw["draw"], d);
        let teachers = draw["teachers"].as_array().unwrap();
        assert_eq!(teachers.len(), truth.len());
        for t in teachers {
            assert_eq!(
                t["truth"].as_f64().unwrap(),
                truth[t["teacher"].as_str().unwrap()]
            );
            assert!(
                t["scores"]["leep"].is_f64() && t["measured"].is_f64(),
                "{t}"
            );
        }
    }
}

#[test]
fn eval_distill_runs_multihop_with_the_settings_given_and_keeps_the_cards() {
    // one draw of the binary letters task, a depth-2 tree, multihop with one teaching method and one
    // candidate, no time limit
    let dir = tempfile::tempdir().unwrap();
    let cards = dir.path().join("cards");
    let lines = json_of(faculty().args(["eval-distill", "--json", "--student", "tree:2"]).args([
        "--methods",
        "multihop",
        "--draws",
        "1",
        "--tasks",
        "letters_vowel_2way",
        "--multihop",
        r#"{"max_hops": 1, "hop_methods": ["faculty"], "candidates": ["mlp:4"], "max_time_factor": 0}"#,
        "--cards",
        cards.to_str().unwrap(),
    ]));
    let methods: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["scratch", "multihop"], "{lines}");
    let card: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cards.join("letters_vowel_2way.multihop.0.card.json")).unwrap(),
    )
    .unwrap();
    let m = &card["multihop"];
    assert_eq!(
        m["options"]["hop_methods"],
        serde_json::json!(["faculty"]),
        "{m}"
    );
    assert_eq!(m["options"]["max_time_factor"], 0.0, "{m}");
    // the 1-hop answer by faculty alone, then the one candidate (the default would try kd, faculty and
    // transfer, then up to three automatic candidates within 4x the time)
    let trials: Vec<(u64, &str, &str)> = m["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["hop"].as_u64().unwrap(),
                t["model"].as_str().unwrap(),
                t["method"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        trials,
        [(1, "tree:2", "faculty"), (2, "mlp:4:relu", "faculty")],
        "{m}"
    );
    // settings that do not parse: a clear error, nothing run
    let out = faculty()
        .args([
            "eval-distill",
            "--methods",
            "multihop",
            "--multihop",
            "{\"max_hops\": \"two\"}",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--multihop is not valid"), "{err}");
    // settings for runs that are not asked for
    let out = faculty()
        .args(["eval-distill", "--methods", "faculty", "--multihop", "{}"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("add multihop to --methods"), "{err}");
}

/// The stderr lines of a `faculty serve` process, as they come (a thread reads them).
fn log_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Whether a log line containing `needle` arrives within 60 s.
fn log_has(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn serving_a_public_address_without_tokens_warns() {
    let sb = common::Sandbox::new();
    let serve = |extra: &[&str]| {
        let mut child = faculty()
            .args(["serve", "--addr", "0.0.0.0:0", "--zoo"])
            .arg(sb.zoo())
            .arg("--data-dir")
            .arg(sb.state())
            .args(extra)
            .env_remove("FACULTY_API_TOKENS")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = log_lines(&mut child);
        (Server(child), rx)
    };
    let (_s, rx) = serve(&[]);
    assert!(log_has(&rx, "WARNING: faculty serves 0.0.0.0"));
    drop(_s);
    // with a token it starts quietly: the listening line, and no warning before the first request
    let (_s, rx) = serve(&["--api-tokens", "0123456789abcdef-token"]);
    assert!(log_has(&rx, "listening on"));
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(2))
            .map_or(true, |l| !l.contains("WARNING")),
        "warned with a token"
    );
}

#[test]
fn a_killed_upload_leaves_nothing_after_restart() {
    let sb = common::Sandbox::new();
    let (mut child, port) = spawn_server(&sb.zoo(), &sb.state());
    let (_, list) = http(port, "GET", "/v1/teachers?page_size=200", "text/plain", b"");
    let before: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let catalog_before = common::snapshot_files(&sb.zoo());
    // a teacher upload of 8 MB, of which 1 MB is sent before the server is killed
    let head = format!(
        "--{}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.onnx\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        common::BOUNDARY
    );
    let total = head.len() + (8 << 20);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/teachers HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={}\r\n\
         Content-Length: {total}\r\n\r\n{head}",
        common::BOUNDARY
    )
    .unwrap();
    s.write_all(&common::random_bytes(1 << 20)).unwrap();
    s.flush().unwrap();
    let staging = sb.zoo().join(".faculty-staging");
    let partial = || {
        std::fs::read_dir(&staging).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                .count()
        })
    };
    let start = std::time::Instant::now();
    while partial() == 0 {
        assert!(
            start.elapsed().as_secs() < 30,
            "the upload never reached staging"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, mid-upload
    child.wait().unwrap();
    drop(s);
    assert!(partial() > 0, "the kill left a partial staging file");
    // restarted: the leftover is removed, the catalog and the zoo are as they were
    let (_child, port) = spawn_server(&sb.zoo(), &sb.state());
    assert_eq!(partial(), 0, "staging leftovers after restart");
    let (_, list) = http(port, "GET", "/v1/teachers?page_size=200", "text/plain", b"");
    let after: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(before["teachers"], after["teachers"]);
    let mut catalog_after = common::snapshot_files(&sb.zoo());
    catalog_after.retain(|k, _| !k.contains(".faculty-staging"));
    let mut catalog_before = catalog_before;
    catalog_before.retain(|k, _| !k.contains(".faculty-staging"));
    assert_eq!(catalog_before, catalog_after);
}

/// A server's peak resident memory so far, MB: its own figure (`GET /healthz`), which survives the
/// resets of the kernel's VmHWM that the inference memory budget makes.
fn peak_mb(port: u16) -> u64 {
    let (_, body) = http(port, "GET", "/healthz", "text/plain", b"");
    let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
    h["peak_resident_mb"].as_u64().expect("a peak on Linux")
}

#[test]
fn decompression_bombs_are_refused_in_bounded_memory() {
    let sb = common::Sandbox::new();
    let (_child, port) = spawn_server(&sb.zoo(), &sb.state());
    let ct = format!("multipart/form-data; boundary={}", common::BOUNDARY);
    // warm up with a real dataset, so the baseline includes a parse
    let task = std::fs::read("zoo/tasks/mnist_10way_5shot.npz").unwrap();
    let (status, _) = post_dataset(port, "m.npz", &task);
    assert_eq!(status, 201);
    let bombs: Vec<(&str, Vec<u8>)> = ["bomb_padded.npz", "bomb_declared.npz", "bomb_images.zip"]
        .iter()
        .map(|f| {
            let b = std::fs::read(common::repo().join("tests/fixtures").join(f)).unwrap();
            (*f, common::multipart(f, &b, &[]))
        })
        .collect();
    for (name, body) in &bombs {
        let base = peak_mb(port);
        let (status, reply) = http(port, "POST", "/v1/datasets", &ct, body);
        let text = String::from_utf8_lossy(&reply);
        assert!(status == 413 || status == 400, "{name}: {status} {text}");
        let grew = peak_mb(port).saturating_sub(base);
        assert!(grew < 100, "{name}: peak RSS grew {grew} MB ({text})");
    }
    // eight at once
    let base = peak_mb(port);
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let body = bombs[k % bombs.len()].1.clone();
            let ct = ct.clone();
            std::thread::spawn(move || http(port, "POST", "/v1/datasets", &ct, &body).0)
        })
        .collect();
    for t in threads {
        let status = t.join().unwrap();
        assert!(status == 413 || status == 400 || status == 429, "{status}");
    }
    let grew = peak_mb(port).saturating_sub(base);
    assert!(grew < 500, "8 bombs at once: peak RSS grew {grew} MB");
    // nothing was stored but the real dataset and its test split
    let (_, list) = http(port, "GET", "/v1/datasets", "text/plain", b"");
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(list["datasets"].as_array().unwrap().len(), 2, "{list}");
}

/// Checking a job request loads its dataset: eight requests at once on a 100 MB dataset (as floats)
/// held eight copies (on 250 MB, a 1.96 GB peak). They now take turns in the dataset memory that uploads
/// share (`--upload-memory-mb`), and each still gets its answer.
#[test]
fn job_requests_at_once_take_turns_in_the_dataset_memory() {
    let sb = common::Sandbox::new();
    let (_child, port) = spawn_server_with(
        &sb.zoo(),
        &sb.state(),
        &["--upload-memory-mb", "128", "--queue-wait-ms", "60000"],
    );
    // 32,000 rows of 784 float32 values that no byte holds (100 MB), labels 0..9
    let (n, d) = (32_000usize, 784usize);
    let mut rng = faculty::distill::student::SplitMix(7);
    let x: Vec<u8> = (0..n * d)
        .flat_map(|_| (0.25 + rng.next_f64() as f32).to_le_bytes())
        .collect();
    let y: Vec<u8> = (0..n as i64).flat_map(|i| (i % 10).to_le_bytes()).collect();
    let file = common::zip_of(&[
        ("x.npy", common::npy("<f4", &[n, d], &x)),
        ("y.npy", common::npy("<i8", &[n], &y)),
    ]);
    drop(x);
    let (status, ds) = post_dataset(port, "big.npz", &file);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&ds));
    drop(file);
    let id = serde_json::from_slice::<serde_json::Value>(&ds).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = peak_mb(port);
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let body = format!(
                r#"{{"dataset_id": "{id}", "method": "scratch", "student": "linear", "config": {{"seed": {k}, "max_epochs": 1}}}}"#
            );
            std::thread::spawn(move || {
                http(port, "POST", "/v1/jobs", "application/json", body.as_bytes())
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    }
    let grew = peak_mb(port).saturating_sub(base);
    eprintln!("8 job requests at once: peak RSS grew {grew} MB");
    assert!(
        grew < 350,
        "8 job requests at once: peak RSS grew {grew} MB"
    );
}

/// A tmpfs mounted for the test's life (unmounted when dropped).
struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `path` until a write fails with "no space".
fn fill(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "{e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_is_a_clear_error_and_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    let _guard = Tmpfs(disk.clone());
    let zoo = disk.join("zoo");
    std::fs::create_dir_all(&zoo).unwrap();
    for f in [
        "letters_logreg.onnx",
        "letters_mlp.onnx",
        "letters_mlp.card.json",
    ] {
        std::fs::copy(common::repo().join("zoo/teachers").join(f), zoo.join(f)).unwrap();
    }
    let (_child, port) = spawn_server_with(&zoo, &disk.join("state"), &["--min-free-disk-mb", "8"]);
    let ct = format!("multipart/form-data; boundary={}", common::BOUNDARY);
    let letters = std::fs::read("zoo/tasks/letters_26way.npz").unwrap();
    let (status, ds) = post_dataset(port, "l.npz", &letters);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&ds));
    let ds: serde_json::Value = serde_json::from_slice(&ds).unwrap();
    let listing = || {
        let (_, b) = http(port, "GET", "/v1/datasets", "text/plain", b"");
        let (_, t) = http(port, "GET", "/v1/teachers", "text/plain", b"");
        (b, t)
    };
    let before = listing();
    // the disk filled by something else, to 4 MB short of the server's 8 MB reserve
    fill(&disk.join("filler"));
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .open(disk.join("filler"))
        .unwrap();
    let len = filler.metadata().unwrap().len();
    filler.set_len(len.saturating_sub(4 << 20)).unwrap();
    drop(filler);
    // a dataset upload: 507 with the reason, nothing stored
    let mnist = std::fs::read("zoo/tasks/mnist_10way_5shot.npz").unwrap();
    let (status, body) = post_dataset(port, "m.npz", &mnist);
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 507, "{text}");
    assert!(text.contains("disk is nearly full"), "{text}");
    // a teacher upload: 507 too, no staging leftovers
    let model = std::fs::read(common::repo().join("zoo/teachers/letters_am_logreg.onnx")).unwrap();
    let (status, body) = http(
        port,
        "POST",
        "/v1/teachers",
        &ct,
        &common::multipart("rf2.onnx", &model, &[]),
    );
    assert_eq!(status, 507, "{}", String::from_utf8_lossy(&body));
    let staged = std::fs::read_dir(zoo.join(".faculty-staging")).map_or(0, |d| d.count());
    assert_eq!(staged, 0, "a staging file was left");
    // a job: refused with 507, or failed with the reason
    let (status, job) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": ds["id"], "method": "scratch", "student": "mlp:8",
                           "config": {"max_epochs": 3}}),
    );
    if status == 202 {
        let j = wait_job(port, job["id"].as_str().unwrap(), |j| {
            j["state"] == "failed" || j["state"] == "succeeded"
        });
        assert_eq!(j["state"], "failed", "{j}");
        assert!(j["error"].as_str().unwrap().contains("disk is"), "{j}");
    } else {
        assert_eq!(status, 507, "{job}");
    }
    // the server keeps serving, the state is as it was
    assert_eq!(listing(), before);
    // and once there is room again, uploads work
    std::fs::remove_file(disk.join("filler")).unwrap();
    let (status, body) = post_dataset(port, "m.npz", &mnist);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn a_ranking_killed_midway_leaves_a_cache_that_ranks_correctly() {
    // a zoo of 60 teachers (the bundled flat ones, each copy a distinct file) so a cold ranking is long
    let sb = common::Sandbox::new();
    let big = sb.dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let flat: Vec<_> = std::fs::read_dir(sb.zoo())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    for k in 0..60 {
        let src = &flat[k % flat.len()];
        let mut bytes = std::fs::read(src).unwrap();
        let doc = format!("copy {k}");
        bytes.extend([0x32, doc.len() as u8]);
        bytes.extend(doc.as_bytes());
        let stem = src.file_stem().unwrap().to_string_lossy();
        std::fs::write(big.join(format!("{stem}_c{k:02}.onnx")), bytes).unwrap();
        let card = src.with_extension("card.json");
        if card.exists() {
            std::fs::copy(&card, big.join(format!("{stem}_c{k:02}.card.json"))).unwrap();
        }
    }
    let task = std::fs::read("zoo/tasks/mnist_10way_5shot.npz").unwrap();
    let rank = |port: u16, ds: &serde_json::Value| {
        let (status, r) = http_json(
            port,
            "POST",
            "/v1/rankings",
            serde_json::json!({"dataset_id": ds["id"]}),
        );
        assert_eq!(status, 201, "{r}");
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["teacher_id"].clone(),
                    t["rank"].clone(),
                    t["scores"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let upload = |port: u16| {
        let (status, ds) = post_dataset(port, "m.npz", &task);
        assert!(status == 201 || status == 200);
        serde_json::from_slice::<serde_json::Value>(&ds).unwrap()
    };
    // the reference: a ranking on a fresh state
    let reference = {
        let (_s, port) = spawn_server(&big, &sb.dir.path().join("fresh"));
        rank(port, &upload(port))
    };
    // killed in the middle of a cold ranking, then restarted on the same state
    let state = sb.state();
    let (mut child, port) = spawn_server(&big, &state);
    let ds = upload(port);
    let body = serde_json::json!({"dataset_id": ds["id"]}).to_string();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = write!(
            s,
            "POST /v1/rankings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.read_to_end(&mut Vec::new());
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap(); // SIGKILL mid-ranking
    child.wait().unwrap();
    let (_s, port) = spawn_server(&big, &state);
    let resumed = rank(port, &ds);
    // the same teachers in the same places, and the same scores but for their last digits (batch sizes
    // are chosen by measured speed, and a forest's probabilities change by ~1e-9 with them)
    let json = |r: Vec<(serde_json::Value, serde_json::Value, serde_json::Value)>| {
        serde_json::Value::Array(
            r.into_iter()
                .map(|(a, b, c)| serde_json::json!([a, b, c]))
                .collect(),
        )
    };
    common::assert_json_close(&json(resumed), &json(reference), "resumed ranking");
}
