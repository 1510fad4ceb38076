//! The indexer on the real bundled zoo: what it reads from each kind of teacher, restarts that do not
//! re-hash, and rescans that report added / removed / changed / failed.
mod common;

use std::sync::Arc;

use faculty::onnx::{OutputKind, SessionPool};
use faculty::store::Store;
use faculty::zoo::{Teacher, Zoo};

fn open(sb: &common::Sandbox) -> (Store, Zoo) {
    let store = Store::open(&sb.state()).unwrap();
    let zoo = Zoo::open(sb.zoo(), &store, Arc::new(SessionPool::new(1)), 256).unwrap();
    (store, zoo)
}

fn by_id(all: &[Teacher], id: &str) -> Teacher {
    all.iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("{id} not indexed"))
        .clone()
}

#[test]
fn bundled_zoo_is_understood() {
    let sb = common::Sandbox::new();
    let (_s, zoo) = open(&sb);
    let report = zoo.rescan().unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let all = zoo.all().unwrap();
    assert!(all.len() >= 14);
    for t in &all {
        assert_eq!(t.sha256.len(), 64);
        assert!(t.bytes > 0 && t.params > 0, "{}", t.id);
        assert_eq!(t.labels.len(), t.num_classes.unwrap(), "{}", t.id);
        assert!(!t.inputs.is_empty() && !t.outputs.is_empty());
    }
    // versioned layout
    let cnn = by_id(&all, "mnist_cnn@2");
    assert_eq!(
        (cnn.name.as_str(), cnn.version.as_str()),
        ("mnist_cnn", "2")
    );
    assert_eq!(cnn.inputs[0].shape, vec![-1, 1, 28, 28]);
    assert_eq!(cnn.params, 52138);
    // labels: JSON list, comma list, namespaced key, sidecar card, classifier attribute
    assert_eq!(cnn.label_source, "metadata:labels");
    assert_eq!(
        by_id(&all, "mnist_lowdata_mlp").label_source,
        "metadata:classes"
    );
    let sub = by_id(&all, "mnist_04_cnn");
    assert_eq!(sub.label_source, "metadata:faculty.class_names");
    assert_eq!(sub.labels, vec!["0", "1", "2", "3", "4"]);
    let letters = by_id(&all, "letters_mlp");
    assert_eq!(letters.label_source, "card");
    assert_eq!(letters.labels.len(), 26);
    assert_eq!(letters.labels[0], "A");
    let rf = by_id(&all, "letters_rf");
    assert_eq!(rf.label_source, "classlabels");
    assert_eq!(rf.labels[25], "Z");
    assert_eq!(by_id(&all, "fashion_mlp").labels[9], "Ankle boot");
    // logits detected and recorded
    let mlp = by_id(&all, "mnist_mlp");
    assert!(mlp.softmax_applied);
    assert_eq!(mlp.predictor.as_ref().unwrap().kind, OutputKind::Logits);
    assert!(!cnn.softmax_applied);
    // ZipMap picked over the label output
    let lr = by_id(&all, "mnist_logreg");
    let p = lr.predictor.unwrap();
    assert_eq!(
        (p.output.as_str(), p.kind),
        ("output_probability", OutputKind::Zipmap)
    );
    assert_eq!(lr.outputs.len(), 2);
    // several outputs (label + probabilities): the probabilities by name
    assert_eq!(
        by_id(&all, "mnist_rf").predictor.unwrap().output,
        "probabilities"
    );
    // the third-party model: dynamic spatial dims pinned by its card, licence in provenance
    let td = by_id(&all, "text_direction@1");
    assert_eq!(
        td.predictor.as_ref().unwrap().input_shape,
        vec![-1, 3, 48, 192]
    );
    assert_eq!(td.labels, vec!["0", "180"]);
    assert_eq!(
        td.provenance.get("license").map(String::as_str),
        Some("Apache-2.0")
    );
}

#[test]
fn restart_does_not_rehash_and_rescan_reports_every_change() {
    let sb = common::Sandbox::new();
    let n = {
        let (_s, zoo) = open(&sb);
        let r = zoo.rescan().unwrap();
        assert_eq!(r.hashed, r.added.len());
        r.added.len()
    };
    // a restart: the catalog is on disk, nothing is read again
    let (_s, zoo) = open(&sb);
    let r = zoo.rescan().unwrap();
    assert_eq!((r.hashed, r.unchanged), (0, n), "{r:?}");
    assert!(r.added.is_empty() && r.removed.is_empty() && r.changed.is_empty());

    // added (usable), added (broken), removed, changed
    std::fs::write(sb.zoo().join("tiny.onnx"), common::tiny_classifier()).unwrap();
    std::fs::write(sb.zoo().join("junk.onnx"), common::random_bytes(3000)).unwrap();
    std::fs::remove_file(sb.zoo().join("mnist_parity_mlp.onnx")).unwrap();
    std::fs::copy(
        sb.zoo().join("mnist_mlp.onnx"),
        sb.zoo().join("fashion_mlp.onnx"),
    )
    .unwrap();
    let r = zoo.rescan().unwrap();
    assert_eq!(r.added, vec!["junk", "tiny"]);
    assert_eq!(r.removed, vec!["mnist_parity_mlp"]);
    assert_eq!(r.changed, vec!["fashion_mlp"]);
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].id, "junk");
    assert!(
        r.failed[0].reason.contains("not an ONNX model"),
        "{}",
        r.failed[0].reason
    );
    assert_eq!(r.hashed, 3);
    let junk = zoo.get("junk").unwrap();
    assert!(!junk.usable && junk.reason.is_some());
    let tiny = zoo.get("tiny").unwrap();
    assert_eq!(tiny.labels, vec!["cat", "dog", "eel"]);
    assert_eq!(tiny.params, 15);
    // the changed file is re-hashed: it now has the other file's bytes
    assert_eq!(
        zoo.get("fashion_mlp").unwrap().sha256,
        zoo.get("mnist_mlp").unwrap().sha256
    );
}

#[test]
fn labels_fall_back_to_indices_and_are_marked() {
    use faculty::onnx::build::*;
    use prost::Message;
    let m = model(
        vec![
            node("Gemm", &["input", "W", "b"], "z", vec![]),
            node("Softmax", &["z"], "p", vec![attr_int("axis", 1)]),
        ],
        vec![
            tensor_f32("W", &[2, 3], &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5]),
            tensor_f32("b", &[3], &[0.0; 3]),
        ],
        vec![value_info("input", &[-1, 2])],
        vec![value_info("p", &[-1, 3])],
        &[("labels", "[\"only\", \"two\"]")],
    );
    let ident = faculty::zoo::teacher::Ident {
        id: "m".into(),
        name: "m".into(),
        version: "1".into(),
        path: "m.onnx".into(),
    };
    let t = faculty::zoo::inspect(&m.encode_to_vec(), ident, None, 1).teacher;
    assert!(t.usable, "{:?}", t.reason);
    assert_eq!(t.labels, vec!["0", "1", "2"]);
    assert_eq!(t.label_source, "index");
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("name 2 classes but the model outputs 3")),
        "{:?}",
        t.warnings
    );
}

#[test]
fn predict_refuses_nan_and_wrong_shapes() {
    let sb = common::Sandbox::new();
    let (_s, zoo) = open(&sb);
    zoo.rescan().unwrap();
    let mut x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[3, 784]));
    let p = zoo.predict("mnist_cnn@2", x.view()).unwrap(); // [N,784] reshaped to [N,1,28,28]
    assert_eq!(p.shape(), &[3, 10]);
    x[[1, 5]] = f32::NAN;
    let e = zoo.predict("mnist_cnn@2", x.view()).unwrap_err();
    assert_eq!(e.kind, faculty::ErrorKind::InvalidInput);
    assert!(e.message.contains("NaN"));
    x[[1, 5]] = f32::INFINITY;
    assert!(zoo.predict("mnist_mlp", x.view()).is_err());
    let wrong = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, 16]));
    let e = zoo.predict("mnist_cnn@2", wrong.view()).unwrap_err();
    assert!(e.message.contains("do not fit"), "{}", e.message);
    assert_eq!(
        zoo.predict("letters_mlp", wrong.view()).unwrap().shape(),
        &[2, 26]
    );
    assert_eq!(
        zoo.predict("nope", wrong.view()).unwrap_err().kind,
        faculty::ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_dynamic_dimensions_is_usable_without_a_card() {
    let sb = common::Sandbox::new();
    std::fs::remove_file(sb.zoo().join("text_direction/1/card.json")).unwrap();
    let app = sb.app();
    let t = common::get(&app, "/v1/teachers/text_direction@1")
        .await
        .json();
    assert_eq!(t["usable"], true, "{t}");
    assert_eq!(
        t["predictor"]["input_shape"],
        serde_json::json!([-1, 3, -1, -1]),
        "{t}"
    );
    assert!(
        t["warnings"].to_string().contains("dynamic dimensions"),
        "{t}"
    );
    // a dataset of [3, 48, 192] rows: the teacher is compatible and ranked
    let n = 12;
    let mut s: u32 = 1;
    let x: Vec<u8> = (0..n * 3 * 48 * 192)
        .flat_map(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((s >> 16) as f32 / 65536.0).to_le_bytes()
        })
        .collect();
    let y: Vec<u8> = (0..n as i64).flat_map(|i| (i % 2).to_le_bytes()).collect();
    let npz = common::zip_of(&[
        ("x.npy", common::npy("<f4", &[n, 3, 48, 192], &x)),
        ("y.npy", common::npy("<i8", &[n], &y)),
    ]);
    let res = &rank_with_one(
        &app,
        common::multipart("lines.npz", &npz, &[]),
        "text_direction@1",
    )
    .await;
    assert_eq!(res["compatible"], true, "{res}");
    assert_eq!(res["rank"], 1, "{res}");
    // grey images (half the size: its sides are dynamic) reach it with grey copied to 3 channels
    let grey = common::zip_of(&[
        (
            "x.npy",
            common::npy("<f4", &[n, 1, 24, 96], &x[..n * 24 * 96 * 4]),
        ),
        ("y.npy", common::npy("<i8", &[n], &y)),
    ]);
    let res = &rank_with_one(
        &app,
        common::multipart("grey.npz", &grey, &[]),
        "text_direction@1",
    )
    .await;
    assert_eq!(res["compatible"], true, "{res}");
    assert!(
        res["notes"]
            .to_string()
            .contains("image rows [1, 24, 96] given as [3, 24, 96] (grey copied to 3 channels)"),
        "{res}"
    );
    // rows that do not fit the symbolic shape are refused with the reason
    let flat = common::zip_of(&[
        ("x.npy", common::npy("<f4", &[n, 16], &x[..n * 16 * 4])),
        ("y.npy", common::npy("<i8", &[n], &y)),
    ]);
    let res = &rank_with_one(
        &app,
        common::multipart("flat.npz", &flat, &[]),
        "text_direction@1",
    )
    .await;
    assert_eq!(res["compatible"], false, "{res}");
    assert!(
        res["reason"].as_str().unwrap().contains("do not fit"),
        "{res}"
    );
}

/// Magika's model input for a file's bytes (its feature layout v2, as in `zoo/add_file_type.py`): the
/// first 4096 bytes without leading whitespace, their first 1024 padded at the end with 256, then the last
/// 4096 without trailing whitespace, their last 1024 padded at the front with 256.
fn magika_features(data: &[u8]) -> Vec<f32> {
    let n = data.len().min(4096);
    let beg = data[..n].trim_ascii_start();
    let end = data[data.len() - n..].trim_ascii_end();
    let beg = &beg[..beg.len().min(1024)];
    let end = &end[end.len().saturating_sub(1024)..];
    let mut row: Vec<f32> = beg.iter().map(|&b| b as f32).collect();
    row.resize(1024, 256.0);
    row.extend(std::iter::repeat_n(256.0, 1024 - end.len()));
    row.extend(end.iter().map(|&b| b as f32));
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_model_with_integer_inputs_is_usable() {
    let sb = common::Sandbox::new();
    let app = sb.app();
    let t = common::get(&app, "/v1/teachers/file_type@1").await.json();
    assert_eq!(t["usable"], true, "{t}");
    assert_eq!(t["predictor"]["input_type"], "int32", "{t}");
    assert_eq!(t["labels"].as_array().unwrap().len(), 214);
    assert_eq!(t["provenance"]["license"], "Apache-2.0");
    assert!(t["warnings"].to_string().contains("int32"), "{t}");
    // a file-type task made from this repository's own files, six per kind
    let kinds = [
        ("rust", ".rs"),
        ("python", ".py"),
        ("shell", ".sh"),
        ("markdown", ".md"),
        ("json", ".json"),
        ("png", ".png"),
    ];
    let mut all = Vec::new();
    let mut stack = vec![common::repo()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if p.is_dir() && !hidden && e.file_name() != "target" {
                stack.push(p);
            } else if p.is_file() {
                all.push(p);
            }
        }
    }
    all.sort();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (k, (_, ext)) in kinds.iter().enumerate() {
        let files: Vec<_> = all
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(ext))
            .collect();
        assert!(files.len() >= 2, "the repository has too few {ext} files");
        for f in files.iter().take(6) {
            x.extend(magika_features(&std::fs::read(f).unwrap()));
            y.push(k as i64);
        }
    }
    let n = y.len();
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let yb: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
    let npz = common::zip_of(&[
        ("x.npy", common::npy("<f4", &[n, 2048], &xb)),
        ("y.npy", common::npy("<i8", &[n], &yb)),
    ]);
    let labels: Vec<&str> = kinds.iter().map(|k| k.0).collect();
    let labels = serde_json::to_string(&labels).unwrap();
    let body = common::multipart("files.npz", &npz, &[("labels", labels.as_str())]);
    let res = &rank_with_one(&app, body, "file_type@1").await;
    assert_eq!(res["compatible"], true, "{res}");
    assert!(
        res["notes"].to_string().contains("converted to int32"),
        "{res}"
    );
    // the teacher knows these files: its predictions, read in the task's label names
    let p = common::post_json(
        &app,
        "/v1/teachers/file_type@1/predict",
        serde_json::json!({"inputs": x.chunks(2048).map(|r| r.to_vec()).collect::<Vec<_>>()}),
    )
    .await
    .json();
    let names = p["labels"].as_array().unwrap();
    let right = p["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&y)
        .filter(|(i, k)| names[i.as_u64().unwrap() as usize] == kinds[**k as usize].0)
        .count();
    assert!(right * 10 >= n * 8, "{right} of {n} files recognised: {p}");
    // rows that are not whole numbers do not fit an integer input: incompatible, with the reason
    let halves: Vec<u8> = x.iter().flat_map(|v| (v + 0.5).to_le_bytes()).collect();
    let npz = common::zip_of(&[
        ("x.npy", common::npy("<f4", &[n, 2048], &halves)),
        ("y.npy", common::npy("<i8", &[n], &yb)),
    ]);
    let res = &rank_with_one(
        &app,
        common::multipart("halves.npz", &npz, &[]),
        "file_type@1",
    )
    .await;
    assert_eq!(res["compatible"], false, "{res}");
    assert!(res["reason"].to_string().contains("whole numbers"), "{res}");
}

/// Uploads a dataset (a multipart body) and ranks it with one teacher: that teacher's result line.
async fn rank_with_one(app: &axum::Router, body: Vec<u8>, teacher: &str) -> serde_json::Value {
    let r = common::post_multipart(app, "/v1/datasets", body).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let ds = r.json()["id"].as_str().unwrap().to_string();
    let rk = common::post_json(
        app,
        "/v1/rankings",
        serde_json::json!({"dataset_id": ds, "teachers": [teacher]}),
    )
    .await;
    assert!(
        rk.status.is_success(),
        "{}",
        String::from_utf8_lossy(&rk.body)
    );
    rk.json()["results"][0].clone()
}

/// `zoo push` of a directory whose teacher changed bytes under the same id: the new blob goes in, and the
/// old one leaves the blob store (no other id holds it); pushing it again changes nothing.
#[test]
fn a_pushed_teacher_replaced_by_other_bytes_leaves_no_old_blob() {
    let sb = common::Sandbox::new();
    let store = Store::from_config(
        common::test_database_url(&sb.state()).as_deref(),
        &sb.state(),
    )
    .unwrap();
    let url = common::test_blob_url(&sb.state())
        .unwrap_or_else(|| sb.state().join("shared-blobs").display().to_string());
    let blobs = Arc::new(faculty::store::Blobs::open(Some(&url), &sb.state(), 16).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let zoo = Zoo::open(dir.path(), &store, Arc::new(SessionPool::new(1)), 256)
        .unwrap()
        .with_blobs(blobs.clone());
    let (old, new) = (
        common::tiny_classifier(),
        std::fs::read(common::repo().join("zoo/teachers/mnist_logreg.onnx")).unwrap(),
    );
    let key = |b: &[u8]| format!("teachers/{}.onnx", faculty::zoo::teacher::sha256_hex(b));
    std::fs::write(dir.path().join("pet.onnx"), &old).unwrap();
    assert_eq!(zoo.push(dir.path()).unwrap().added, ["pet"]);
    assert!(blobs.exists(&key(&old)).unwrap());
    std::fs::write(dir.path().join("pet.onnx"), &new).unwrap();
    assert_eq!(zoo.push(dir.path()).unwrap().changed, ["pet"]);
    assert!(blobs.exists(&key(&new)).unwrap());
    assert!(
        !blobs.exists(&key(&old)).unwrap(),
        "the replaced blob stayed"
    );
    assert_eq!(zoo.push(dir.path()).unwrap().unchanged, 1);
    assert!(blobs.exists(&key(&new)).unwrap());
}
