//! A real `faculty` process for the tests that need one (the CLI, the remote client, the example
//! script, the dashboard in a browser): spawned on a free loopback port and killed when dropped, with
//! plain HTTP/1.1 calls to it.
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// The `faculty` binary, run from the repository with a quiet log.
pub fn faculty() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faculty"));
    c.current_dir(super::repo())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "faculty=info");
    c
}

/// Checkpoints every 100 ms: a test that kills a job after its second checkpoint then finds one in
/// release builds too (the default of 2 s outlasts a whole short job there).
pub const FAST_CHECKPOINTS: [&str; 2] = ["--checkpoint-every-ms", "100"];

/// A server process that is killed when dropped, so a failing test never leaves one running (it would
/// also hold the test's output pipes open).
pub struct Server(pub std::process::Child);

impl std::ops::Deref for Server {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `faculty COMMAND` over `zoo` and the state directory `state`, with the state in PostgreSQL and the
/// blobs in S3 where the run says so (see `test_database_url`).
pub fn over_state(zoo: &std::path::Path, state: &std::path::Path, command: &[&str]) -> Command {
    let mut cmd = faculty();
    if let Some(url) = super::test_database_url(state) {
        cmd.env("FACULTY_DATABASE_URL", url);
    }
    if let Some(url) = super::test_blob_url(state) {
        cmd.env("FACULTY_BLOB_URL", url);
    }
    cmd.args(command)
        .arg("--zoo")
        .arg(zoo)
        .arg("--data-dir")
        .arg(state);
    cmd
}

/// A `faculty serve` process on a free loopback port; its log is drained in the background.
pub fn spawn_server(zoo: &std::path::Path, state: &std::path::Path) -> (Server, u16) {
    spawn_server_with(zoo, state, &[])
}

/// The same, with extra `serve` flags.
pub fn spawn_server_with(
    zoo: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> (Server, u16) {
    let mut child = over_state(zoo, state, &["serve", "--addr", "127.0.0.1:0"])
        .args(extra)
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
    (Server(child), port)
}

/// A `faculty worker` process over the same state as the servers spawned on `state`; its log is drained.
pub fn spawn_worker(zoo: &std::path::Path, state: &std::path::Path) -> Server {
    spawn_worker_with(zoo, state, &[])
}

/// The same, with extra `worker` flags.
pub fn spawn_worker_with(zoo: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> Server {
    let mut child = over_state(zoo, state, &["worker"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("worker exited before it was ready")
            .unwrap();
        if line.contains("faculty worker ready") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Server(child)
}

/// Uploads a dataset file's bytes as multipart: (status, body).
pub fn post_dataset(port: u16, name: &str, bytes: &[u8]) -> (u16, Vec<u8>) {
    let ct = format!("multipart/form-data; boundary={}", super::BOUNDARY);
    http(
        port,
        "POST",
        "/v1/datasets",
        &ct,
        &super::multipart(name, bytes, &[]),
    )
}

/// Uploads the bundled task `zoo/tasks/<file>` and returns the stored dataset (201 checked).
pub fn post_task(port: u16, file: &str) -> serde_json::Value {
    let task = std::fs::read(super::repo().join("zoo/tasks").join(file)).unwrap();
    let (status, ds) = post_dataset(port, file, &task);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&ds));
    serde_json::from_slice(&ds).unwrap()
}

/// One HTTP/1.1 request over loopback: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    let mut body = buf[split + 4..].to_vec();
    if head.to_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 4 + n..];
        }
        body = out;
    }
    (status, body)
}

pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    // no body for Null: a server that answers without reading a body closes the connection with the
    // body unread, and the kernel then resets it, which can cut a large answer short
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, b) = http(port, method, path, "application/json", text.as_bytes());
    (
        status,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
    )
}

pub fn wait_job(
    port: u16,
    id: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_until(port, &format!("/v1/jobs/{id}"), |_, j| until(j)).1
}

/// Submits a long KD job (400 epochs of `mlp:32` from `mnist_mlp`, no validation) on `dataset_id` to the
/// server on `port`, and waits, watching from `watch`, until it trains past its second checkpoint: the
/// job a kill test kills mid-training. Its id and the job as seen then.
pub fn long_job_mid_training(
    port: u16,
    watch: u16,
    dataset_id: &serde_json::Value,
) -> (String, serde_json::Value) {
    let (status, job) = http_json(
        port,
        "POST",
        "/v1/jobs",
        serde_json::json!({"dataset_id": dataset_id, "method": "kd", "teacher": "mnist_mlp",
                           "student": "mlp:32",
                           "config": {"max_epochs": 400, "val_fraction": 0.0, "cv_folds": 0}}),
    );
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let before = wait_job(watch, &id, |j| {
        j["phase"] == "training" && j["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 2)
    });
    assert!(
        before["checkpoint_epoch"].as_u64().unwrap() < 400,
        "the job finished before it could be killed"
    );
    (id, before)
}

/// Polls a job until it has ended (succeeded, failed or cancelled).
pub fn wait_finished(port: u16, id: &str) -> serde_json::Value {
    wait_job(port, id, |j| {
        j["state"]
            .as_str()
            .is_some_and(|s| s != "queued" && s != "running")
    })
}

/// The epoch numbers a job reports, in order.
pub fn epochs_of(job: &serde_json::Value) -> Vec<u64> {
    job["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect()
}

/// Polls `GET path` until `until` holds for (status, body); at most 300 s.
pub fn wait_until(
    port: u16,
    path: &str,
    until: impl Fn(u16, &serde_json::Value) -> bool,
) -> (u16, serde_json::Value) {
    let start = std::time::Instant::now();
    loop {
        let (status, j) = http_json(port, "GET", path, serde_json::Value::Null);
        if until(status, &j) {
            return (status, j);
        }
        assert!(
            start.elapsed().as_secs() < 300,
            "{path} never got there: {status} {j}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
