//! Shared test helpers: a private copy of the bundled zoo, an app over a temporary state directory, HTTP
//! calls to it over a loopback socket, multipart bodies, hostile model fixtures, and state snapshots.
#![allow(dead_code)]

pub mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use faculty::Config;
use faculty::api::{AppState, router};
use http_body_util::BodyExt;
use prost::Message;
use std::future::IntoFuture;

pub const BOUNDARY: &str = "faculty-test-boundary-7f3a";

/// The repository root: cargo's `CARGO_MANIFEST_DIR` when the test runs under `cargo test`, else the
/// directory the binary was built from. Read at run time first, so that a test binary from a shared build
/// cache built in another checkout (which cargo may judge fresh) reads this checkout's files.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == faculty::zoo::ORIGIN_FILE {
            continue; // a copy is a zoo directory of its own
        }
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A temporary copy of the bundled zoo plus an empty state directory.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("zoo/teachers"), &dir.path().join("zoo"));
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Self { dir }
    }
    pub fn zoo(&self) -> PathBuf {
        self.dir.path().join("zoo")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn config(&self) -> Config {
        let mut c = Config::new(self.zoo(), self.state());
        c.database_url = test_database_url(&self.state());
        c.blob_url = test_blob_url(&self.state());
        c
    }
    pub fn app(&self) -> axum::Router {
        self.app_with(self.config())
    }
    pub fn app_with(&self, config: Config) -> axum::Router {
        router(AppState::open(config).expect("app state"))
    }
}

/// The sandbox's zoo, scanned, with an output cache, in a temporary store of their own (for tests of the
/// library without a server).
pub fn library_zoo(
    sb: &Sandbox,
) -> (
    faculty::store::Store,
    faculty::zoo::Zoo,
    faculty::rank::OutputCache,
) {
    let (store, zoo) = scanned_zoo(sb, 64);
    let cache = faculty::rank::OutputCache::open(&store).unwrap();
    (store, zoo, cache)
}

/// The sandbox's zoo, scanned, in a temporary store of its own, running at most `batch` rows a call.
pub fn scanned_zoo(sb: &Sandbox, batch: usize) -> (faculty::store::Store, faculty::zoo::Zoo) {
    scanned_zoo_threads(sb, batch, 1)
}

/// [`scanned_zoo`] whose sessions run on `threads` intra-op threads.
pub fn scanned_zoo_threads(
    sb: &Sandbox,
    batch: usize,
    threads: usize,
) -> (faculty::store::Store, faculty::zoo::Zoo) {
    let store = faculty::store::Store::temporary().unwrap();
    let zoo = faculty::zoo::Zoo::open(
        sb.zoo(),
        &store,
        std::sync::Arc::new(faculty::onnx::SessionPool::new(threads)),
        batch,
    )
    .unwrap();
    zoo.rescan().unwrap();
    (store, zoo)
}

/// With `FACULTY_TEST_DATABASE_URL` set (`make test` sets it for its second pass, over the servers of
/// `scripts/dev-cluster.sh`), the state of the server over `state` lives in PostgreSQL, in a schema of its
/// own named after the state directory (a restart over the same directory finds the same state).
pub fn test_database_url(state: &Path) -> Option<String> {
    let url = std::env::var("FACULTY_TEST_DATABASE_URL").ok()?;
    let hash = faculty::zoo::teacher::sha256_hex(state.display().to_string().as_bytes());
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}schema=t_{}", &hash[..16]))
}

/// With `FACULTY_TEST_BLOB_URL` set (`s3://BUCKET?endpoint=...`), the blobs of the server over `state`
/// live in that object store, under a prefix of their own named after the state directory.
pub fn test_blob_url(state: &Path) -> Option<String> {
    let url = std::env::var("FACULTY_TEST_BLOB_URL").ok()?;
    let hash = faculty::zoo::teacher::sha256_hex(state.display().to_string().as_bytes());
    let (bucket, query) = url.split_once('?').unwrap_or((&url, ""));
    Some(format!("{bucket}/t_{}?{query}", &hash[..16]))
}

/// Whether this run keeps state in PostgreSQL (see [`test_database_url`]).
pub fn on_postgres() -> bool {
    std::env::var_os("FACULTY_TEST_DATABASE_URL").is_some()
}

/// For tests of several processes over one database: true (and says so) when this run is not make
/// test's PostgreSQL pass.
pub fn skipped_off_postgres() -> bool {
    if on_postgres() {
        return false;
    }
    eprintln!("skipped: runs in make test's PostgreSQL pass (FACULTY_TEST_DATABASE_URL)");
    true
}

/// Every file under the zoo directory with its sha256 (staging leftovers included).
pub fn snapshot_files(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(
                    rel,
                    faculty::zoo::teacher::sha256_hex(&std::fs::read(&p).unwrap()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The reply, after checking its status (the body is in the failure message).
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Checks an error reply: its status and that its `error` message names the problem.
    #[track_caller]
    pub fn expect_error(self, status: u16, needle: &str) {
        let r = self.expect(status);
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(needle), "error '{msg}' lacks '{needle}'");
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `req` (a path-only URI) to `app` over a real HTTP/1.1 connection on loopback: the app is served on
/// a fresh port for this one request, as `faculty serve` serves it, and is shut down (its copy of the
/// state released) before the reply returns, so a test may drop its app and reopen the same state.
pub async fn call(app: &axum::Router, mut req: Request<Body>) -> Reply {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app.clone())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    *req.uri_mut() = format!("http://{addr}{}", req.uri()).parse().unwrap();
    req.headers_mut()
        .insert("connection", "close".parse().unwrap());
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    drop(client);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(app: &axum::Router, uri: &str) -> Reply {
    call(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub async fn send(app: &axum::Router, method: &str, uri: &str) -> Reply {
    call(
        app,
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

pub async fn post_json(app: &axum::Router, uri: &str, body: serde_json::Value) -> Reply {
    let req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    call(app, req).await
}

/// A multipart body: `file` with the given file name and bytes, plus text fields.
pub fn multipart(filename: &str, bytes: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    faculty::fuzz::multipart_with(BOUNDARY, filename, bytes, fields)
}

/// Uploads a teacher (a body from [`multipart`]).
pub async fn upload(app: &axum::Router, body: Vec<u8>) -> Reply {
    post_multipart(app, "/v1/teachers", body).await
}

/// POSTs a multipart body from [`multipart`] to `uri`.
pub async fn post_multipart(app: &axum::Router, uri: &str, body: Vec<u8>) -> Reply {
    let req = Request::post(uri)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    call(app, req).await
}

/// `a` and `b` are the same JSON but for numbers' last digits (within 1e-5, relative): rankings of one
/// dataset by one zoo, whose scores change by ~1e-9 (up to ~1e-7 for LogME) with the batch sizes
/// inference chose by measured speed (`onnx::pace`). `what` names the comparison in a failure.
/// The largest absolute difference between two arrays (or rows) of as many values, in the same order.
pub fn max_abs_diff<'a, A, B>(a: A, b: B) -> f32
where
    A: IntoIterator<Item = &'a f32, IntoIter: ExactSizeIterator>,
    B: IntoIterator<Item = &'a f32, IntoIter: ExactSizeIterator>,
{
    let (a, b) = (a.into_iter(), b.into_iter());
    assert_eq!(a.len(), b.len(), "arrays of different sizes");
    a.zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

pub fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                x == y || (x - y).abs() <= 1e-5 * x.abs().max(y.abs()),
                "{what}: {x} vs {y}"
            );
        }
        (V::Array(x), V::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{what}: {a} vs {b}");
            for (k, (x, y)) in x.iter().zip(y).enumerate() {
                assert_json_close(x, y, &format!("{what}[{k}]"));
            }
        }
        (V::Object(x), V::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{what}: {a} vs {b}"
            );
            for (k, v) in x {
                assert_json_close(v, &y[k], &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{what}"),
    }
}

/// A small usable classifier (4 features, 3 classes).
pub fn tiny_classifier() -> Vec<u8> {
    let w: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    faculty::onnx::build::linear_classifier(&w, &[0.1, -0.2, 0.05], 4, &["cat", "dog", "eel"])
        .encode_to_vec()
}

/// Variants of the tiny classifier that real exporters produce and faculty cannot use as they are:
/// `external` (weights in an external data file), `float64` (a double input), `two_inputs`.
pub fn exotic_model(kind: &str) -> Vec<u8> {
    use faculty::onnx::build::*;
    use faculty::onnx::proto::{
        ModelProto, NodeProto, StringStringEntryProto, tensor_proto::DataType,
    };
    let mut m = ModelProto::decode(tiny_classifier().as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    match kind {
        "external" => {
            let w = &mut g.initializer[0];
            w.raw_data = None;
            w.float_data.clear();
            w.data_location = Some(1);
            w.external_data = vec![StringStringEntryProto {
                key: Some("location".into()),
                value: Some("weights.bin".into()),
            }];
        }
        "float64" | "float16" | "int64" | "uint8" | "int8" => {
            // an input of another type cast to float before the layer: a valid model ONNX Runtime loads
            let ty = match kind {
                "float64" => DataType::Double,
                "float16" => DataType::Float16,
                "uint8" => DataType::Uint8,
                "int8" => DataType::Int8,
                _ => DataType::Int64,
            };
            g.input[0] = typed_value_info("input", &[-1, 4], ty);
            g.node[0].input[0] = "input_f".into();
            g.node.insert(
                0,
                node("Cast", &["input"], "input_f", vec![attr_int("to", 1)]),
            );
            if kind == "float16" {
                // and a float16 output, as a model converted to half precision has
                let last = g.node.len() - 1;
                g.node[last].output[0] = "probabilities_f".into();
                g.node.push(NodeProto {
                    name: Some("to_half".into()),
                    ..node(
                        "Cast",
                        &["probabilities_f"],
                        "probabilities",
                        vec![attr_int("to", DataType::Float16 as i64)],
                    )
                });
                g.output[0] = typed_value_info("probabilities", &[-1, 3], DataType::Float16);
            }
        }
        "two_inputs" => g.input.push(value_info("mask", &[-1, 4])),
        // exported for a fixed batch (1 as many image classifiers are, or 3); `batch1_reshape` reshapes
        // its input to [1, 4] first, as exporters write a flatten; `batch1_mixing` adds to each row its
        // difference from the batch's mean row, nothing at a batch of 1 but a mix of rows at any other
        "batch1" | "batch3" | "batch1_reshape" | "batch1_mixing" => {
            let b = if kind == "batch3" { 3 } else { 1 };
            g.input[0] = value_info("input", &[b, 4]);
            g.output[0] = value_info(g.output[0].name.as_deref().unwrap(), &[b, 3]);
            g.node[0].input[0] = "input_x".into();
            let first = if kind == "batch1_reshape" {
                g.initializer.push(tensor_i64("flat_shape", &[1, 4]));
                vec![node("Reshape", &["input", "flat_shape"], "input_x", vec![])]
            } else if kind == "batch1_mixing" {
                vec![
                    node(
                        "ReduceMean",
                        &["input"],
                        "mean",
                        vec![attr_ints("axes", &[0]), attr_int("keepdims", 1)],
                    ),
                    node("Sub", &["input", "mean"], "deviation", vec![]),
                    node("Add", &["input", "deviation"], "input_x", vec![]),
                ]
            } else {
                vec![node("Identity", &["input"], "input_x", vec![])]
            };
            g.node.splice(0..0, first);
        }
        other => panic!("no exotic model {other}"),
    }
    m.encode_to_vec()
}

/// A classifier of [3, 4, 4] images (channel-first; flattened into a linear layer to 3 classes):
/// `declared` carries `input_mean` / `input_std` per channel in its metadata, `baked` subtracts and
/// divides by the same numbers in its graph instead, `plain` has neither.
pub fn image_model(kind: &str) -> Vec<u8> {
    use faculty::onnx::build::*;
    let (mean, std) = ([0.5f32, 0.1, 0.2], [0.5f32, 2.0, 1.0]);
    let w: Vec<f32> = (0..48 * 3)
        .map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0)
        .collect();
    let mut nodes = vec![
        node("Flatten", &["x"], "flat", vec![attr_int("axis", 1)]),
        node("Gemm", &["flat", "W", "b"], "logits", vec![]),
        node(
            "Softmax",
            &["logits"],
            "probabilities",
            vec![attr_int("axis", 1)],
        ),
    ];
    let mut inits = vec![
        tensor_f32("W", &[48, 3], &w),
        tensor_f32("b", &[3], &[0.0, 0.1, -0.1]),
    ];
    if kind == "baked" {
        nodes.splice(
            0..0,
            [
                node("Sub", &["input", "mean"], "centred", vec![]),
                node("Div", &["centred", "std"], "x", vec![]),
            ],
        );
        inits.push(tensor_f32("mean", &[1, 3, 1, 1], &mean));
        inits.push(tensor_f32("std", &[1, 3, 1, 1], &std));
    } else {
        nodes[0].input[0] = "input".into();
    }
    let (m, s) = (
        serde_json::to_string(&mean).unwrap(),
        serde_json::to_string(&std).unwrap(),
    );
    let metadata: Vec<(&str, &str)> = match kind {
        "declared" => vec![("input_mean", &m), ("input_std", &s)],
        _ => vec![],
    };
    model(
        nodes,
        inits,
        vec![value_info("input", &[-1, 3, 4, 4])],
        vec![value_info("probabilities", &[-1, 3])],
        &metadata,
    )
    .encode_to_vec()
}

/// A model that uses an operator ONNX Runtime does not have.
pub fn unknown_operator_model() -> Vec<u8> {
    use faculty::onnx::build::*;
    model(
        vec![node("FacultyNoSuchOp", &["input"], "probabilities", vec![])],
        vec![],
        vec![value_info("input", &[-1, 4])],
        vec![value_info("probabilities", &[-1, 3])],
        &[],
    )
    .encode_to_vec()
}

/// Hostile models: the tiny classifier plus a term that is always 0 but costs what the kind asks for:
/// `memory` 1.6 GB of ones folded when the session is created, `memory_per_row` 1.6 GB per input row,
/// `time` a loop of 2^40 additions, `value_memory` 1.6 GB once an input value passes 2 (nothing on
/// probe rows in [0, 1)), `value_branch` the same through an `If` on the input's values.
pub fn hostile_model(kind: &str) -> Vec<u8> {
    use faculty::onnx::build::*;
    use faculty::onnx::proto::{
        AttributeProto, GraphProto, ModelProto, attribute_proto::AttributeType,
        tensor_proto::DataType,
    };
    let mut m = ModelProto::decode(tiny_classifier().as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let ones = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(tensor_f32("one", &[1], &[1.0])),
        ..Default::default()
    };
    let mut extra = match kind {
        "memory" => {
            g.initializer
                .push(tensor_i64("big_shape", &[20_000, 20_000]));
            vec![node("ConstantOfShape", &["big_shape"], "big", vec![ones])]
        }
        "memory_per_row" => {
            g.initializer.push(tensor_i64("zero_i", &[0]));
            g.initializer.push(tensor_i64("one_i", &[1]));
            g.initializer.push(tensor_i64("side", &[20_000]));
            vec![
                node("Shape", &["input"], "in_shape", vec![]),
                node("Slice", &["in_shape", "zero_i", "one_i"], "rows", vec![]),
                node("Mul", &["rows", "side"], "tall", vec![]),
                node(
                    "Concat",
                    &["tall", "side"],
                    "big_shape",
                    vec![attr_int("axis", 0)],
                ),
                node("ConstantOfShape", &["big_shape"], "big", vec![ones]),
            ]
        }
        "time" => {
            g.initializer.push(faculty::onnx::proto::TensorProto {
                dims: vec![],
                ..tensor_i64("trips", &[1 << 40])
            });
            g.initializer.push(faculty::onnx::proto::TensorProto {
                name: Some("go".into()),
                data_type: Some(DataType::Bool as i32),
                raw_data: Some(vec![1]),
                ..Default::default()
            });
            g.initializer.push(tensor_f32("start", &[], &[0.0]));
            let body = GraphProto {
                name: Some("body".into()),
                node: vec![
                    node("Identity", &["cond_in"], "cond_out", vec![]),
                    node("Add", &["v_in", "step"], "v_out", vec![]),
                ],
                initializer: vec![tensor_f32("step", &[], &[1.0])],
                input: vec![
                    typed_value_info("i", &[], DataType::Int64),
                    typed_value_info("cond_in", &[], DataType::Bool),
                    value_info("v_in", &[]),
                ],
                output: vec![
                    typed_value_info("cond_out", &[], DataType::Bool),
                    value_info("v_out", &[]),
                ],
                ..Default::default()
            };
            let mut l = node(
                "Loop",
                &["trips", "go", "start"],
                "big",
                vec![AttributeProto {
                    name: Some("body".into()),
                    r#type: Some(AttributeType::Graph as i32),
                    g: Some(body),
                    ..Default::default()
                }],
            );
            l.output = vec!["big".into()];
            vec![l]
        }
        // sized by the rows' values: nothing on probe rows in [0, 1), 1.6 GB once a value passes 2
        "value_memory" | "value_branch" => {
            g.initializer.push(tensor_f32("two", &[], &[2.0]));
            g.initializer.push(tensor_i64("side", &[20_000]));
            let mut nodes = vec![
                node("ReduceMax", &["input"], "mx", vec![attr_int("keepdims", 0)]),
                node("Greater", &["mx", "two"], "high", vec![]),
            ];
            let bomb = |shape: &str| node("ConstantOfShape", &[shape], "big", vec![ones.clone()]);
            if kind == "value_memory" {
                nodes.extend([
                    node("Cast", &["high"], "high_i", vec![attr_int("to", 7)]),
                    node("Mul", &["high_i", "side"], "tall", vec![]),
                    node(
                        "Concat",
                        &["tall", "side"],
                        "big_shape",
                        vec![attr_int("axis", 0)],
                    ),
                    bomb("big_shape"),
                ]);
            } else {
                // the probe takes the small branch; a dataset's rows the other
                let branch = |name: &str, side: i64| {
                    let mut b = bomb("shape");
                    b.output = vec![format!("{name}_out")];
                    GraphProto {
                        name: Some(name.into()),
                        node: vec![b],
                        initializer: vec![tensor_i64("shape", &[side, side])],
                        output: vec![value_info(&format!("{name}_out"), &[-1, -1])],
                        ..Default::default()
                    }
                };
                let graph = |name: &str, g: GraphProto| AttributeProto {
                    name: Some(name.into()),
                    r#type: Some(AttributeType::Graph as i32),
                    g: Some(g),
                    ..Default::default()
                };
                nodes.push(node(
                    "If",
                    &["high"],
                    "big",
                    vec![
                        graph("then_branch", branch("then", 20_000)),
                        graph("else_branch", branch("else", 1)),
                    ],
                ));
            }
            nodes
        }
        other => panic!("no hostile model {other}"),
    };
    g.initializer.push(tensor_f32("nothing", &[], &[0.0]));
    extra.extend([
        node(
            "ReduceSum",
            &["big"],
            "total",
            vec![attr_int("keepdims", 0)],
        ),
        node("Mul", &["total", "nothing"], "zero", vec![]),
        node("Add", &["logits", "zero"], "logits_z", vec![]),
    ]);
    // softmax reads the sum plus 0
    let softmax = g
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("Softmax"))
        .unwrap();
    softmax.input[0] = "logits_z".into();
    let at = g.node.len() - 1;
    g.node.splice(at..at, extra);
    m.encode_to_vec()
}

/// A regression model: one float per row, nothing classifier-like.
pub fn regression_model() -> Vec<u8> {
    use faculty::onnx::build::*;
    model(
        vec![node("Gemm", &["input", "W", "b"], "y", vec![])],
        vec![
            tensor_f32("W", &[4, 1], &[0.5, -0.5, 1.0, 2.0]),
            tensor_f32("b", &[1], &[0.0]),
        ],
        vec![value_info("input", &[-1, 4])],
        vec![value_info("y", &[-1, 1])],
        &[],
    )
    .encode_to_vec()
}

/// Deterministic junk.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

/// A `.npy` member: header for `descr` and `shape`, then the raw little-endian data.
pub fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    faculty::fuzz::npy(descr, shape, data)
}

/// A deflated zip archive of the given members.
pub fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    faculty::fuzz::zip(members, true)
}

// ------------------------------------------------------------------------------------------- jobs
/// Uploads a dataset file of the repository and returns its id.
pub async fn upload_task(app: &axum::Router, path: &str) -> String {
    let bytes = std::fs::read(repo().join(path)).unwrap();
    let r = upload_dataset(app, &bytes, path.rsplit('/').next().unwrap()).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

pub async fn upload_dataset(app: &axum::Router, bytes: &[u8], name: &str) -> Reply {
    post_multipart(app, "/v1/datasets", multipart(name, bytes, &[])).await
}

/// Polls a job until `done` says so (at most 300 s).
/// Walks a list paged newest first (`path` has no query) `size` at a time: every item's (`created`, id),
/// in the order served, after checking each page's size and `total` (= `expected`) and that the order is
/// newest first.
pub async fn walk_pages(
    app: &axum::Router,
    path: &str,
    field: &str,
    size: usize,
    expected: usize,
) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = get(app, &format!("{path}?page_size={size}{token}"))
            .await
            .json();
        assert_eq!(page["total"], expected, "{path}: {page}");
        let items = page[field].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= size, "{path}: {page}");
        seen.extend(items.iter().map(|j| {
            (
                j["created"].as_u64().unwrap(),
                j["id"].as_str().unwrap().to_string(),
            )
        }));
        match page["next_page_token"].as_str() {
            Some(t) => token = format!("&page_token={t}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected, "{path}: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "{path}: not newest first: {seen:?}"
    );
    seen
}

pub async fn wait_for(
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

/// Runs a job to its end and returns (job, card).
pub async fn run_job(
    app: &axum::Router,
    body: serde_json::Value,
) -> (serde_json::Value, serde_json::Value) {
    let r = post_json(app, "/v1/jobs", body.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{body}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let id = r.json()["id"].as_str().unwrap().to_string();
    let j = wait_for(app, &id, |j| {
        j["state"] != "queued" && j["state"] != "running"
    })
    .await;
    assert_eq!(j["state"], "succeeded", "{j}");
    let card = get(
        app,
        &format!("/v1/students/{}", j["student_id"].as_str().unwrap()),
    )
    .await
    .json();
    (j, card)
}

/// A 3-class task in 4 dimensions (well separated blobs), as an npz with a test split; `liar` makes the
/// teachers that are confidently wrong on it.
pub fn misleading_teacher_task() -> Vec<u8> {
    let (n, labeled) = (330usize, 30usize);
    let mut s: u64 = 7;
    let mut noise = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.0
    };
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = i % 3;
        for f in 0..4 {
            x.push(if f == c { 3.0 } else { 0.0 } + noise());
        }
        y.push(if i < labeled { c as i64 } else { -1 });
    }
    let (mut xt, mut yt) = (Vec::new(), Vec::new());
    for i in 0..150usize {
        for f in 0..4 {
            xt.push(if f == i % 3 { 3.0f32 } else { 0.0 } + noise());
        }
        yt.push((i % 3) as i64);
    }
    let bytes = |v: &[f32]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let ints = |v: &[i64]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    zip_of(&[
        ("x.npy", npy("<f4", &[n, 4], &bytes(&x))),
        ("y.npy", npy("<i8", &[n], &ints(&y))),
        ("x_test.npy", npy("<f4", &[150, 4], &bytes(&xt))),
        ("y_test.npy", npy("<i8", &[150], &ints(&yt))),
    ])
}

/// A linear teacher that is confidently wrong on the misleading task: column k of W reads feature
/// (k + 2) % 3, so rows of class c get class (c + 1) % 3; `scale` sets its confidence (and its bytes).
pub fn liar(scale: f32) -> Vec<u8> {
    let mut w = vec![0f32; 4 * 3];
    for k in 0..3 {
        w[((k + 2) % 3) * 3 + k] = scale;
    }
    let teacher = faculty::onnx::build::linear_classifier(&w, &[0.0; 3], 4, &["cat", "dog", "eel"]);
    prost::Message::encode_to_vec(&teacher)
}

/// A linear teacher for the misleading task: `w[f][k]` is feature f's weight for class k.
pub fn blob_teacher(w: [[f32; 3]; 4]) -> Vec<u8> {
    let flat: Vec<f32> = w.iter().flatten().copied().collect();
    let teacher =
        faculty::onnx::build::linear_classifier(&flat, &[0.0; 3], 4, &["cat", "dog", "eel"]);
    prost::Message::encode_to_vec(&teacher)
}

/// Uploads confidently wrong teachers (name, confidence) and the misleading task; returns the dataset id.
pub async fn upload_misleading(app: &axum::Router, liars: &[(&str, f32)]) -> String {
    let npz = misleading_teacher_task();
    for (name, scale) in liars {
        let r = post_multipart(
            app,
            "/v1/teachers",
            multipart(&format!("{name}.onnx"), &liar(*scale), &[("name", name)]),
        )
        .await;
        r.expect(201);
    }
    let labels = [("labels", "[\"cat\", \"dog\", \"eel\"]")];
    let r = post_multipart(app, "/v1/datasets", multipart("blobs.npz", &npz, &labels)).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

/// Posts each job request and checks it is refused with `status`, a JSON error naming `needle`, and that
/// no job or student exists afterwards.
pub async fn refuse_jobs(app: &axum::Router, cases: Vec<(serde_json::Value, StatusCode, &str)>) {
    for (body, status, needle) in cases {
        let r = post_json(app, "/v1/jobs", body.clone()).await;
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
            get(app, "/v1/jobs").await.json()["jobs"],
            serde_json::json!([]),
            "{body} created a job"
        );
        assert_eq!(
            get(app, "/v1/students").await.json()["students"],
            serde_json::json!([])
        );
    }
}

/// How many teachers the bundled zoo has (its `zoo/teachers.json`).
pub fn bundled_teachers() -> usize {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("zoo/teachers.json")).unwrap()).unwrap();
    meta["teachers"].as_array().unwrap().len()
}
