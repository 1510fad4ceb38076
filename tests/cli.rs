//! The `faculty` binary as scripts use it: `zoo list`, `zoo inspect`, the missing-runtime message, and a
//! real `serve` process answering over loopback.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn faculty() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faculty"));
    c.current_dir(common::repo())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "faculty=info");
    c
}

#[test]
fn zoo_list_json_and_table() {
    let out = faculty()
        .args(["zoo", "list", "--json", "--zoo", "zoo/teachers"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = faculty()
        .args(["zoo", "inspect", "--json", "zoo/teachers/mnist_mlp.onnx"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let mut child = faculty()
        .args(["serve", "--addr", "127.0.0.1:0", "--zoo"])
        .arg(sb.zoo())
        .arg("--data-dir")
        .arg(sb.state())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(at) = line.find("listening on http://127.0.0.1:") {
            let rest = &line[at + "listening on http://127.0.0.1:".len()..];
            break rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u16>()
                .unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop)); // keep draining the log
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /v1/teachers/mnist_cnn@1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert!(buf.contains("\"labels\":[\"0\",\"1\""), "{buf}");
    // state is on disk under --data-dir
    assert!(sb.state().join("state.sled").exists());
}

#[test]
fn rank_without_a_server() {
    // the tabular task: letters teachers are compatible (one standardises rows from its metadata),
    // image teachers are listed as incompatible
    let out = faculty()
        .args(["rank", "--dataset", "zoo/tasks/letters_26way.npz", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    // a bad dataset file is exit code 2 with a message
    let out = faculty()
        .args(["rank", "--dataset", "Cargo.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}
