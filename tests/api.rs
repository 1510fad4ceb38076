//! The REST API over real HTTP on loopback (each call serves the app on a fresh port), plus one request
//! written byte by byte, as a client without an HTTP library would send it.
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;

#[tokio::test]
async fn list_filter_paginate_and_show() {
    let sb = Sandbox::new();
    let app = sb.app();
    let r = get(&app, "/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");

    let all = get(&app, "/v1/teachers").await.json();
    let teachers = all["teachers"].as_array().unwrap();
    assert!(teachers.len() >= 14);
    assert!(all["next_page_token"].is_null());
    for t in teachers {
        for key in [
            "id", "name", "version", "sha256", "bytes", "params", "labels", "inputs", "outputs",
            "usable",
        ] {
            assert!(!t[key].is_null(), "{key} missing in {}", t["id"]);
        }
        assert_eq!(t["inputs"][0]["shape"][0], -1, "dynamic batch shows as -1");
    }
    // pagination walks every teacher exactly once
    let mut seen = vec![];
    let mut uri = "/v1/teachers?page_size=5".to_string();
    loop {
        let page = get(&app, &uri).await.json();
        seen.extend(
            page["teachers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        match page["next_page_token"].as_str() {
            Some(tok) => uri = format!("/v1/teachers?page_size=5&page_token={tok}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), teachers.len());
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["teachers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    // filters
    let fl = get(&app, "/v1/teachers?input_shape=1,28,28").await.json();
    assert!(
        ids(&fl).iter().all(|id| id.contains("cnn")),
        "{:?}",
        ids(&fl)
    );
    assert_eq!(
        ids(&get(&app, "/v1/teachers?input_shape=16").await.json()),
        vec![
            "letters_am_logreg",
            "letters_logreg",
            "letters_lowdata_rf",
            "letters_mlp",
            "letters_rf"
        ]
    );
    assert_eq!(
        ids(&get(&app, "/v1/teachers?label=Sneaker").await.json()),
        vec![
            "fashion_cnn@1",
            "fashion_cnn_shard1",
            "fashion_cnn_shard2",
            "fashion_cnn_shard3",
            "fashion_footwear_cnn",
            "fashion_mlp"
        ]
    );
    assert_eq!(
        ids(&get(&app, "/v1/teachers?q=PaddleOCR").await.json()),
        vec!["text_direction@1"]
    );
    // bad parameters are 400 JSON
    for bad in [
        "/v1/teachers?page_size=0",
        "/v1/teachers?page_token=zz",
        "/v1/teachers?input_shape=a,b",
        "/v1/teachers?usable=maybe",
    ] {
        let r = get(&app, bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json()["kind"], "invalid_input");
    }
    let one = get(&app, "/v1/teachers/mnist_cnn@2").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["labels"][3], "3");
    let missing = get(&app, "/v1/teachers/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["kind"], "not_found");
    assert_eq!(get(&app, "/v2/whatever").await.json()["kind"], "not_found");
}

#[tokio::test]
async fn download_with_etag() {
    let sb = Sandbox::new();
    let app = sb.app();
    let t = get(&app, "/v1/teachers/mnist_logreg").await.json();
    let sha = t["sha256"].as_str().unwrap();
    let r = get(&app, "/v1/teachers/mnist_logreg/model.onnx").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["etag"], format!("\"{sha}\""));
    assert_eq!(faculty::zoo::teacher::sha256_hex(&r.body), sha);
    assert_eq!(
        r.body,
        std::fs::read(sb.zoo().join("mnist_logreg.onnx")).unwrap()
    );
    let req = Request::get("/v1/teachers/mnist_logreg/model.onnx")
        .header("if-none-match", format!("\"{sha}\""))
        .body(Body::empty())
        .unwrap();
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    // a file changed behind the catalog's back is not served under the old ETag
    std::fs::write(sb.zoo().join("mnist_logreg.onnx"), b"changed").unwrap();
    let r = get(&app, "/v1/teachers/mnist_logreg/model.onnx").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["error"].as_str().unwrap().contains("rescan"));
}

#[tokio::test]
async fn upload_predict_delete_rescan() {
    let sb = Sandbox::new();
    let app = sb.app();
    let bytes = tiny_classifier();
    let sha = faculty::zoo::teacher::sha256_hex(&bytes);
    let r = upload(
        &app,
        multipart("tiny.onnx", &bytes, &[("version", "3"), ("sha256", &sha)]),
    )
    .await;
    let r = r.expect(201);
    let t = r.json();
    assert_eq!(t["id"], "tiny@3");
    assert_eq!(t["labels"], serde_json::json!(["cat", "dog", "eel"]));
    // the file lands in the zoo directory, or with an object store (make test's cluster pass) there
    let in_store = test_blob_url(&sb.state()).is_some();
    if in_store {
        assert_eq!(t["path"], format!("teachers/{sha}.onnx"));
    } else {
        assert!(sb.zoo().join("tiny/3/model.onnx").is_file());
    }
    assert_eq!(
        get(&app, "/v1/teachers/tiny@3").await.status,
        StatusCode::OK
    );
    // the same id again is a conflict
    let r = upload(&app, multipart("tiny.onnx", &bytes, &[("version", "3")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // labels given at upload land in a card and on the teacher
    let r = upload(
        &app,
        multipart(
            "x.onnx",
            &bytes,
            &[("name", "pets"), ("labels", "[\"a\",\"b\",\"c\"]")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["label_source"], "card");
    assert!(in_store || sb.zoo().join("pets.card.json").is_file());
    // predict: rows reshaped to the input, probabilities per row
    let r = post_json(
        &app,
        "/v1/teachers/tiny@3/predict",
        serde_json::json!({"inputs": [[1, 2, 3, 4], [0, 0, 0, 1]]}),
    )
    .await;
    let r = r.expect(200);
    let p = r.json();
    assert_eq!(p["probabilities"].as_array().unwrap().len(), 2);
    let s: f64 = p["probabilities"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((s - 1.0).abs() < 1e-5);
    let r = post_json(
        &app,
        "/v1/teachers/tiny@3/predict",
        serde_json::json!({"inputs": [[1, 2, 3]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("do not fit"));
    let r = post_json(
        &app,
        "/v1/teachers/tiny@3/predict",
        serde_json::json!({"rows": []}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // image teacher takes flat rows of 784
    let row: Vec<f32> = (0..784).map(|i| (i % 7) as f32 / 7.0).collect();
    let r = post_json(
        &app,
        "/v1/teachers/mnist_cnn@2/predict",
        serde_json::json!({"inputs": [row]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["standardised"], false);
    // a teacher that declares its input standardisation gets rows as a dataset holds them: the row
    // mean + k * std predicts what the standardised row k gives with `raw`
    let t = get(&app, "/v1/teachers/letters_mlp")
        .await
        .expect(200)
        .json();
    let stat = |k: &str| -> Vec<f64> {
        serde_json::from_str(t["provenance"][k].as_str().unwrap()).unwrap()
    };
    let (mean, std) = (stat("input_mean"), stat("input_std"));
    let z: Vec<f64> = (0..16).map(|i| (i as f64 - 7.5) / 5.0).collect();
    let as_held: Vec<f64> = (0..16).map(|i| mean[i] + z[i] * std[i]).collect();
    // (standardised?, probabilities of the one row)
    let predict = async |row: &[f64], raw: bool| {
        let body = serde_json::json!({"inputs": [row], "raw": raw});
        let r = post_json(&app, "/v1/teachers/letters_mlp/predict", body)
            .await
            .expect(200)
            .json();
        let p: Vec<f64> = serde_json::from_value(r["probabilities"][0].clone()).unwrap();
        (r["standardised"].as_bool().unwrap(), p)
    };
    let (held_std, a) = predict(&as_held, false).await;
    let (raw_std, b) = predict(&z, true).await;
    assert!(held_std && !raw_std);
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4),
        "{a:?} vs {b:?}"
    );
    // a JSON body over the limit: 413 naming it, and the server still answers
    let big = serde_json::json!({"inputs": vec![vec![0.123_456_f32; 784]; 400]});
    post_json(&app, "/v1/teachers/mnist_cnn@2/predict", big)
        .await
        .expect_error(413, "at most 2 MiB");
    // and the standardisation matters: the same numbers fed raw give another answer
    let (_, unstd) = predict(&as_held, true).await;
    assert!(unstd.iter().zip(&a).any(|(x, y)| (x - y).abs() > 0.05));
    // delete removes file and entry; rescan sees a file dropped in by hand
    assert_eq!(
        send(&app, "DELETE", "/v1/teachers/tiny@3").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(!sb.zoo().join("tiny").exists());
    assert_eq!(
        get(&app, "/v1/teachers/tiny@3").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "DELETE", "/v1/teachers/tiny@3").await.status,
        StatusCode::NOT_FOUND
    );
    std::fs::write(sb.zoo().join("dropped.onnx"), &bytes).unwrap();
    let r = send(&app, "POST", "/v1/zoo/rescan").await.json();
    assert_eq!(r["added"], serde_json::json!(["dropped"]));
    assert_eq!(r["hashed"], 1);
}

/// With a blob store (a directory here; the object store in make test's cluster pass), deleting a stored
/// teacher removes its blob once no other id holds the same bytes, and a blob that an interrupted delete
/// left aside is put back by a rescan.
#[tokio::test]
async fn deleting_the_last_stored_teacher_of_a_blob_removes_the_blob() {
    let sb = Sandbox::new();
    let mut config = sb.config();
    let url = config
        .blob_url
        .get_or_insert_with(|| sb.state().join("shared-blobs").display().to_string())
        .clone();
    config.trash_grace_s = 5;
    let app = sb.app_with(config);
    let other = tempfile::tempdir().unwrap();
    let blobs = faculty::store::Blobs::open(Some(&url), other.path(), 16).unwrap();
    let bytes = tiny_classifier();
    let sha = faculty::zoo::teacher::sha256_hex(&bytes);
    let key = format!("teachers/{sha}.onnx");
    for name in ["first", "second"] {
        let r = upload(&app, multipart("tiny.onnx", &bytes, &[("name", name)])).await;
        assert_eq!(r.expect(201).json()["path"], key);
    }
    assert!(blobs.exists(&key).unwrap());
    // another id holds the same bytes: the blob stays, and that teacher still predicts
    assert_eq!(
        send(&app, "DELETE", "/v1/teachers/first").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(blobs.exists(&key).unwrap());
    let rows = serde_json::json!({"inputs": [[1, 2, 3, 4]]});
    post_json(&app, "/v1/teachers/second/predict", rows.clone())
        .await
        .expect(200);
    // the last one: the blob goes, nothing is left aside
    assert_eq!(
        send(&app, "DELETE", "/v1/teachers/second").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(!blobs.exists(&key).unwrap());
    assert!(!blobs.exists(&format!("trash/{key}")).unwrap());
    // the same bytes uploaded again are stored again
    upload(&app, multipart("tiny.onnx", &bytes, &[("name", "third")]))
        .await
        .expect(201);
    assert!(blobs.exists(&key).unwrap());
    post_json(&app, "/v1/teachers/third/predict", rows.clone())
        .await
        .expect(200);
    // a delete interrupted with the blob moved aside: the rescan puts it back and keeps the teacher
    assert!(blobs.rename(&key, &format!("trash/{key}")).unwrap());
    let r = send(&app, "POST", "/v1/zoo/rescan").await.json();
    assert_eq!(r["missing"], serde_json::json!([]), "{r}");
    assert!(blobs.exists(&key).unwrap());
    post_json(&app, "/v1/teachers/third/predict", rows.clone())
        .await
        .expect(200);
    // blobs interrupted deletions left aside: one no teacher holds, and a second copy of one a teacher
    // holds. Young, they stay (a deletion in progress may still put them back); past the grace period a
    // rescan removes both, and the teacher keeps its own blob
    let orphan = format!(
        "trash/teachers/{}.onnx",
        faculty::zoo::teacher::sha256_hex(b"orphan")
    );
    blobs.put(&orphan, b"orphan").unwrap();
    blobs.put(&format!("trash/{key}"), &bytes).unwrap();
    let r = send(&app, "POST", "/v1/zoo/rescan").await.json();
    assert_eq!(r["trash_removed"], 0, "{r}");
    assert!(blobs.exists(&orphan).unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    let r = send(&app, "POST", "/v1/zoo/rescan").await.json();
    assert_eq!(r["trash_removed"], 2, "{r}");
    assert_eq!(r["missing"], serde_json::json!([]), "{r}");
    assert!(!blobs.exists(&orphan).unwrap());
    assert!(!blobs.exists(&format!("trash/{key}")).unwrap());
    assert!(blobs.exists(&key).unwrap());
    post_json(&app, "/v1/teachers/third/predict", rows)
        .await
        .expect(200);
}

/// Models whose input is float64, int64, float16 or uint8 get converted rows; integer inputs whole
/// numbers in range only, float16 values within its range.
#[tokio::test]
async fn other_input_types_are_converted() {
    let sb = Sandbox::new();
    let app = sb.app();
    let rows = serde_json::json!({"inputs": [[1.0, 0.0, 2.0, 3.0], [0.0, 4.0, 1.0, 1.0]]});
    let r = upload(&app, multipart("tiny.onnx", &tiny_classifier(), &[])).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let want = post_json(&app, "/v1/teachers/tiny/predict", rows.clone())
        .await
        .json();
    for ty in ["float64", "int64", "float16", "uint8"] {
        let r = upload(
            &app,
            multipart(&format!("{ty}.onnx"), &exotic_model(ty), &[]),
        )
        .await;
        let r = r.expect(201);
        let t = r.json();
        assert_eq!(t["predictor"]["input_type"], ty, "{t}");
        // float16 probabilities are read as probabilities, not as logits to soften again
        assert_eq!(t["softmax_applied"], false, "{t}");
        assert!(
            t["warnings"].to_string().contains("converted from float32"),
            "{t}"
        );
        let got = post_json(&app, &format!("/v1/teachers/{ty}/predict"), rows.clone()).await;
        let got = got.expect(200);
        let got = got.json();
        for (a, b) in got["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .zip(want["probabilities"].as_array().unwrap())
        {
            for (a, b) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
                assert!(
                    // a float16 output keeps 3 significant digits
                    (a.as_f64().unwrap() - b.as_f64().unwrap()).abs()
                        < if ty == "float16" { 1e-3 } else { 1e-5 },
                    "{ty}: {got} vs {want}"
                );
            }
        }
    }
    // a model exported with a fixed batch (of 1, or of 3 for these 2 rows) runs with its batch freed
    // where that gives the same outputs row for row (a Reshape to the fixed batch rewritten); one that
    // mixes the rows of a batch runs its fixed batch, that many rows at a time
    for (kind, freed) in [
        ("batch1", Some(1)),
        ("batch3", Some(3)),
        ("batch1_reshape", Some(1)),
        ("batch1_mixing", None),
    ] {
        let t = upload(
            &app,
            multipart(&format!("{kind}.onnx"), &exotic_model(kind), &[]),
        )
        .await
        .expect(201)
        .json();
        assert_eq!(t["usable"], true, "{t}");
        let warnings = t["warnings"].to_string();
        assert!(warnings.contains("fixes the batch"), "{t}");
        let p = &t["predictor"];
        match freed {
            Some(b) => {
                assert_eq!(p["freed_batch"], b, "{t}");
                assert_eq!(p["input_shape"][0], -1, "{t}");
                assert!(warnings.contains("with the batch freed"), "{t}");
            }
            None => {
                assert!(p.get("freed_batch").is_none(), "{t}");
                assert_eq!(p["input_shape"][0], 1, "{t}");
                assert!(warnings.contains("of a batch of 2 differs"), "{t}");
            }
        }
        let got = post_json(&app, &format!("/v1/teachers/{kind}/predict"), rows.clone()).await;
        assert_eq!(
            got.expect(200).json()["probabilities"],
            want["probabilities"],
            "{kind}"
        );
    }
    // an integer input refuses rows that are not whole numbers, naming the problem
    let r = post_json(
        &app,
        "/v1/teachers/int64/predict",
        serde_json::json!({"inputs": [[0.5, 0.0, 1.0, 1.0]]}),
    )
    .await;
    r.expect_error(400, "whole numbers");
    for (ty, row, why) in [
        (
            "uint8",
            [256.0, 0.0, 1.0, 1.0],
            "whole numbers in its range (found 256)",
        ),
        (
            "float16",
            [1e6, 0.0, 1.0, 1.0],
            "within +-65504 (found 1000000)",
        ),
    ] {
        post_json(
            &app,
            &format!("/v1/teachers/{ty}/predict"),
            serde_json::json!({ "inputs": [row] }),
        )
        .await
        .expect_error(400, why);
    }
}

/// An image model's per-channel `input_mean` / `input_std` is applied to the rows as the model takes
/// them: the same probabilities as a model with the standardisation in its graph, on [3, 4, 4] rows and
/// on grey [1, 2, 2] rows resized and copied to its three channels; `raw` skips it.
#[tokio::test]
async fn an_image_models_per_channel_standardisation_is_applied() {
    let sb = Sandbox::new();
    let app = sb.app();
    for kind in ["declared", "baked", "plain"] {
        let t = upload(
            &app,
            multipart(&format!("{kind}.onnx"), &image_model(kind), &[]),
        )
        .await
        .expect(201)
        .json();
        assert_eq!(
            t["predictor"]["channel_norm"].is_object(),
            kind == "declared",
            "{t}"
        );
    }
    let probs = |r: Reply| r.expect(200).json()["probabilities"].clone();
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        a.as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .zip(
                b.as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r.as_array().unwrap()),
            )
            .all(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5)
    };
    let colour: Vec<f32> = (0..48).map(|i| (i as f32 * 0.29).sin().abs()).collect();
    let rows = serde_json::json!({ "inputs": [colour] });
    let declared = post_json(&app, "/v1/teachers/declared/predict", rows.clone()).await;
    assert_eq!(declared.json()["standardised"], true);
    let declared = probs(declared);
    let baked = probs(post_json(&app, "/v1/teachers/baked/predict", rows.clone()).await);
    assert!(close(&declared, &baked), "{declared} vs {baked}");
    let raw = probs(
        post_json(
            &app,
            "/v1/teachers/declared/predict",
            serde_json::json!({ "inputs": [colour], "raw": true }),
        )
        .await,
    );
    let plain = probs(post_json(&app, "/v1/teachers/plain/predict", rows).await);
    assert!(
        close(&raw, &plain) && !close(&raw, &declared),
        "{raw} vs {plain}"
    );
    // a grey dataset of [1, 2, 2] images, ranked: resized, copied to 3 channels, then standardised
    let grey: Vec<u8> = (0..8 * 4)
        .flat_map(|i| ((i % 7) as f32 / 7.0).to_le_bytes())
        .collect();
    let y: Vec<u8> = (0..8i64).flat_map(|i| (i % 2).to_le_bytes()).collect();
    let npz = zip_of(&[
        ("x.npy", npy("<f4", &[8, 1, 2, 2], &grey)),
        ("y.npy", npy("<i8", &[8], &y)),
    ]);
    let r = post_multipart(&app, "/v1/datasets", multipart("grey.npz", &npz, &[])).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let ds = r.json()["id"].clone();
    let r = post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({"dataset_id": ds, "teachers": ["declared", "baked"]}),
    )
    .await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let rk = r.json();
    let results = rk["results"].as_array().unwrap();
    let by = |id: &str| {
        results
            .iter()
            .find(|r| r["teacher_id"] == id)
            .unwrap()
            .clone()
    };
    let (d, b) = (by("declared"), by("baked"));
    assert!(
        d["notes"].to_string().contains("resized to [3, 4, 4]")
            && d["notes"].to_string().contains("standardised per channel"),
        "{d}"
    );
    for metric in ["leep", "nce", "mapped_accuracy"] {
        let (x, z) = (
            d["scores"][metric].as_f64().unwrap(),
            b["scores"][metric].as_f64().unwrap(),
        );
        assert!((x - z).abs() < 1e-4, "{metric}: {x} vs {z}");
    }
}

/// Every bad upload gets a clear 4xx JSON error, and the zoo directory and the catalog are unchanged.
#[tokio::test]
async fn bad_uploads_are_refused_and_change_nothing() {
    let sb = Sandbox::new();
    let mut config = sb.config();
    config.max_upload_bytes = 100_000;
    let app = sb.app_with(config);
    let files_before = snapshot_files(&sb.zoo());
    let catalog_before = get(&app, "/v1/teachers").await.body;
    let real = std::fs::read(sb.zoo().join("fashion_cnn/1/model.onnx")).unwrap();
    let small_real = std::fs::read(sb.zoo().join("mnist_logreg.onnx")).unwrap();
    let tiny = tiny_classifier();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("random bytes", multipart("junk.onnx", &random_bytes(5000), &[]), StatusCode::UNPROCESSABLE_ENTITY, "not an ONNX model"),
        ("truncated ONNX", multipart("half.onnx", &small_real[..small_real.len() / 2], &[]), StatusCode::UNPROCESSABLE_ENTITY, "ONNX"),
        ("unknown operator", multipart("op.onnx", &unknown_operator_model(), &[]), StatusCode::UNPROCESSABLE_ENTITY, "FacultyNoSuchOp"),
        ("no classifier output", multipart("reg.onnx", &regression_model(), &[]), StatusCode::UNPROCESSABLE_ENTITY, "no classifier-like output"),
        ("external data", multipart("ext.onnx", &exotic_model("external"), &[]), StatusCode::UNPROCESSABLE_ENTITY, "external data files (W in 'weights.bin')"),
        ("int8 input", multipart("i8.onnx", &exotic_model("int8"), &[]), StatusCode::UNPROCESSABLE_ENTITY, "is int8; faculty feeds teachers float32, float64, float16, int32, int64 or uint8"),
        ("two inputs", multipart("two.onnx", &exotic_model("two_inputs"), &[]), StatusCode::UNPROCESSABLE_ENTITY, "exactly one input"),
        ("../ in file name", multipart("../evil.onnx", &tiny, &[]), StatusCode::BAD_REQUEST, "single path component"),
        ("../ in name field", multipart("ok.onnx", &tiny, &[("name", "../evil")]), StatusCode::BAD_REQUEST, "not allowed"),
        ("absolute name", multipart("/etc/evil.onnx", &tiny, &[]), StatusCode::BAD_REQUEST, "single path component"),
        ("traversal in version", multipart("ok.onnx", &tiny, &[("version", "../../x")]), StatusCode::BAD_REQUEST, "not allowed"),
        ("over the limit", multipart("big.onnx", &real, &[]), StatusCode::PAYLOAD_TOO_LARGE, "limit"),
        ("sha256 mismatch", multipart("ok.onnx", &tiny, &[("sha256", &"0".repeat(64))]), StatusCode::BAD_REQUEST, "sha256 mismatch"),
        ("labels do not fit", multipart("ok.onnx", &tiny, &[("labels", "[\"a\",\"b\"]")]), StatusCode::BAD_REQUEST, "outputs 3"),
        ("empty file", multipart("ok.onnx", b"", &[]), StatusCode::BAD_REQUEST, "empty"),
        ("no file field", format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n").into_bytes(), StatusCode::BAD_REQUEST, "`file` is missing"),
        ("truncated multipart", multipart("ok.onnx", &tiny, &[])[..300].to_vec(), StatusCode::BAD_REQUEST, "multipart"),
        ("existing id", multipart("mnist_mlp.onnx", &tiny, &[]), StatusCode::CONFLICT, "already exists"),
    ];
    for (what, body, status, needle) in cases {
        let r = upload(&app, body).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let j = r.json();
        let msg = j["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{what}: error '{msg}' lacks '{needle}'"
        );
        assert!(j["kind"].is_string(), "{what}");
        assert_eq!(
            snapshot_files(&sb.zoo()),
            files_before,
            "{what} changed the zoo directory"
        );
        assert_eq!(
            get(&app, "/v1/teachers").await.body,
            catalog_before,
            "{what} changed the catalog"
        );
    }
    assert!(!sb.dir.path().join("evil.onnx").exists());
    // a wrong content type is refused the same way
    let req = Request::post("/v1/teachers")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["kind"], "invalid_input");
}

/// A few hundred bytes of ONNX can ask for gigabytes or hours: an upload is loaded and run in a child
/// process first, and refused when that process goes past twice the memory budget or the time limit.
/// Loaded in the server's own process, the first two would take 1.6 GB (at session creation) and 4.8
/// GB (on the 3-row probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_models_are_refused_apart_from_the_server() {
    let sb = Sandbox::new();
    let mut config = sb.config();
    // long enough for a cold start of the checking process (a freshly built binary and ONNX Runtime,
    // then the memory bomb's fill): at 3 s the memory bomb was refused by the clock on a fresh-clone CI run
    config.model_check_timeout_s = 8;
    let app = sb.app_with(config);
    let files_before = snapshot_files(&sb.zoo());
    let catalog_before = get(&app, "/v1/teachers").await.body;
    for (kind, needle) in [
        (
            "memory",
            "needs more than 768 MiB to load and run a probe batch",
        ),
        (
            "memory_per_row",
            "needs more than 768 MiB to load and run a probe batch",
        ),
        ("time", "did not load and run a probe batch within 8 s"),
        // these pass any probe in [0, 1): refused for what the rows' values would make them do
        (
            "value_memory",
            "output size of its ConstantOfShape node 'big' (input 0) depends on the values of the model's input",
        ),
        (
            "value_branch",
            "the branch of its If node 'big' (input 0) depends on the values of the model's input",
        ),
    ] {
        let body = hostile_model(kind);
        assert!(body.len() < 1000, "{kind}: {} bytes", body.len());
        let started = std::time::Instant::now();
        let r = upload(&app, multipart(&format!("{kind}.onnx"), &body, &[])).await;
        assert_eq!(r.json()["kind"], "invalid_model", "{kind}");
        r.expect_error(422, needle);
        assert!(
            started.elapsed().as_secs() < 30,
            "{kind}: {:?}",
            started.elapsed()
        );
        assert_eq!(snapshot_files(&sb.zoo()), files_before, "{kind}");
        assert_eq!(
            get(&app, "/v1/teachers").await.body,
            catalog_before,
            "{kind}"
        );
    }
    // a taken id is refused before the check runs (the time bomb would take 8 s)
    let started = std::time::Instant::now();
    upload(
        &app,
        multipart("mnist_mlp.onnx", &hostile_model("time"), &[]),
    )
    .await
    .expect_error(409, "already exists");
    assert!(
        started.elapsed().as_secs_f64() < 2.5,
        "{:?}",
        started.elapsed()
    );
    // the server itself never held what the models asked for
    let health = get(&app, "/healthz").await.json();
    let peak = health["peak_resident_mb"].as_u64().unwrap();
    assert!(peak < 1200, "this process's peak: {peak} MB");
    // an honest model passes the same check
    let r = upload(&app, multipart("honest.onnx", &tiny_classifier(), &[])).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn openapi_is_served_and_matches_the_checked_in_copy() {
    let sb = Sandbox::new();
    let app = sb.app();
    let served = get(&app, "/openapi.json").await.json();
    for path in [
        "/v1/teachers",
        "/v1/teachers/{id}",
        "/v1/teachers/{id}/model.onnx",
        "/v1/zoo/rescan",
        "/healthz",
    ] {
        assert!(
            served["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let generated = faculty::api::openapi::document();
    let file = repo().join("openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, format!("{generated}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "openapi.json is stale: run `make openapi`"
    );
}

#[tokio::test]
async fn a_hand_written_request_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sb = Sandbox::new();
    let app = sb.app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/teachers?page_size=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    let body = &buf[buf.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["teachers"].as_array().unwrap().len(), 2);
    assert!(v["next_page_token"].is_string());
    server.abort();
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_policy_that_keeps_it_on_the_server() {
    let sb = Sandbox::new();
    let app = sb.app();
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = String::from_utf8(page.body).unwrap();
    // every script and stylesheet the page names is one of the server's files
    for (attr, at) in html
        .match_indices("src=\"")
        .chain(html.match_indices("href=\""))
    {
        let url: String = html[attr + at.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert!(
            url.starts_with('/') || url.starts_with('#'),
            "the page refers to {url}"
        );
        if url.starts_with("/static/") {
            assert_eq!(get(&app, &url).await.status, StatusCode::OK, "{url}");
        }
    }
    let js = get(&app, "/static/app.js").await;
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let lic = get(&app, "/static/vendor/uplot/LICENSE").await;
    assert!(String::from_utf8(lic.body).unwrap().contains("MIT License"));
    let missing = get(&app, "/static/../Cargo.toml").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["kind"], "not_found");
}

#[tokio::test]
async fn label_maps_and_sample_images() {
    let sb = Sandbox::new();
    let app = sb.app();
    let ds = upload_task(&app, "zoo/tasks/fashion_clothing_6way.npz").await;
    let r = post_json(&app, "/v1/rankings", serde_json::json!({"dataset_id": ds})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let rk = r.json()["id"].as_str().unwrap().to_string();
    let recommended = r.json()["results"][0]["teacher_id"].clone();
    // every compatible teacher has an expected student accuracy inside its interval, no other one has
    for t in r.json()["results"].as_array().unwrap() {
        let e = &t["expected_accuracy"];
        if t["compatible"] == true {
            let (x, lo, hi) = (
                e["estimate"].as_f64().unwrap(),
                e["low"].as_f64().unwrap(),
                e["high"].as_f64().unwrap(),
            );
            assert!(0.0 <= lo && lo <= x && x <= hi && hi <= 1.0, "{t}");
        } else {
            assert!(e.is_null(), "{t}");
        }
    }

    // the ranking is listed, with its recommendation; other datasets' lists are empty; bad limits refused
    let list = get(&app, "/v1/rankings").await.json();
    assert_eq!(list["rankings"][0]["id"], rk.as_str());
    assert_eq!(list["rankings"][0]["recommended"], recommended);
    assert_eq!(list["rankings"][0]["dataset_id"], ds.as_str());
    let none = get(&app, "/v1/rankings?dataset_id=ds_0000000000000000")
        .await
        .json();
    assert_eq!(none["rankings"].as_array().unwrap().len(), 0);
    assert_eq!(
        get(&app, "/v1/rankings?limit=0").await.status,
        StatusCode::BAD_REQUEST
    );
    // paged: two more rankings, walked one at a time, newest first, each once
    let mut ids = vec![rk.clone()];
    for _ in 0..2 {
        let r = post_json(&app, "/v1/rankings", serde_json::json!({"dataset_id": ds})).await;
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let seen = walk_pages(&app, "/v1/rankings", "rankings", 1, 3).await;
    let mut listed: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    get(&app, "/v1/rankings?page_token=zz")
        .await
        .expect_error(400, "page_token");

    // the fashion teacher names the task's six classes: each is taught by itself
    let m = get(
        &app,
        &format!("/v1/rankings/{rk}/teachers/fashion_cnn@1/label_map"),
    )
    .await;
    let m = m.expect(200);
    let m = m.json();
    assert_eq!(m["task_labels"].as_array().unwrap().len(), 6);
    assert_eq!(m["teacher_labels"].as_array().unwrap().len(), 10);
    assert_eq!(m["labeled_rows"], 60);
    let plan: Vec<Vec<f64>> = serde_json::from_value(m["plan"].clone()).unwrap();
    let total: f64 = plan.iter().flatten().sum();
    assert!((total - 1.0).abs() < 1e-6, "the plan sums to {total}");
    for row in serde_json::from_value::<Vec<Vec<f64>>>(m["conditional"].clone()).unwrap() {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    }
    let pairs = m["pairs"].as_array().unwrap();
    let same = pairs
        .iter()
        .filter(|p| p["teacher_class"] == p["task_class"])
        .count();
    assert!(
        same >= 5,
        "a same-label teacher maps class to class: {pairs:?}"
    );
    assert_eq!(m["name_matches"].as_array().unwrap().len(), 6);

    // refusals: unknown ranking, a teacher not in it, one that cannot read the rows
    let r = get(
        &app,
        "/v1/rankings/rk_nope/teachers/fashion_cnn@1/label_map",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(
        &app,
        &format!("/v1/rankings/{rk}/teachers/nobody/label_map"),
    )
    .await;
    r.expect_error(404, "not in ranking");
    let r = get(
        &app,
        &format!("/v1/rankings/{rk}/teachers/letters_mlp/label_map"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("cannot read this dataset's rows")
    );

    // sample images: 28x28 grayscale, up to 4 per class; rows that are not images are refused
    let s = get(&app, &format!("/v1/datasets/{ds}/samples?per_class=4"))
        .await
        .json();
    assert_eq!(
        (
            s["channels"].as_u64(),
            s["height"].as_u64(),
            s["width"].as_u64()
        ),
        (Some(1), Some(28), Some(28))
    );
    let samples = s["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 24);
    assert_eq!(samples[0]["pixels"].as_array().unwrap().len(), 784);
    let letters = upload_task(&app, "zoo/tasks/letters_26way.npz").await;
    let r = get(&app, &format!("/v1/datasets/{letters}/samples")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("not images"));
    let r = get(&app, &format!("/v1/datasets/{ds}/samples?per_class=lots")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_ranking_sends_each_teacher_then_the_ranking() {
    let sb = Sandbox::new();
    let app = sb.app();
    let ds = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    let r = post_json(
        &app,
        "/v1/rankings/stream",
        serde_json::json!({"dataset_id": ds}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = String::from_utf8(r.body).unwrap();
    let events: Vec<(String, serde_json::Value)> = body
        .split("\n\n")
        .filter(|b| b.contains("data:"))
        .map(|b| {
            let field = |k: &str| {
                b.lines()
                    .filter_map(|l| l.strip_prefix(k))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            (
                field("event:"),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect();
    let (last, teachers) = events.split_last().unwrap();
    assert_eq!(last.0, "ranking", "{body}");
    let ranking = &last.1;
    let n = ranking["results"].as_array().unwrap().len();
    assert_eq!(teachers.len(), n, "one event per teacher");
    // incompatible teachers come first (no inference needed), counts rise to the total
    let first_compatible = teachers
        .iter()
        .position(|(_, e)| e["teacher"]["compatible"] == true)
        .unwrap();
    assert!(
        teachers[..first_compatible]
            .iter()
            .all(|(_, e)| e["teacher"]["reason"].is_string())
    );
    assert!(
        teachers[first_compatible..]
            .iter()
            .all(|(_, e)| e["teacher"]["compatible"] == true)
    );
    for (i, (kind, e)) in teachers.iter().enumerate() {
        assert_eq!(kind, "teacher");
        assert_eq!(
            (e["done"].as_u64(), e["total"].as_u64()),
            (Some(i as u64 + 1), Some(n as u64))
        );
    }
    // each teacher's streamed scores are the final ones (the final line adds the combined metrics, which
    // need every teacher); the ranking is stored
    for (_, e) in teachers {
        let t = &e["teacher"];
        let fin = ranking["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["teacher_id"] == t["teacher_id"])
            .unwrap();
        for (k, v) in t["scores"].as_object().unwrap() {
            assert_eq!(&fin["scores"][k], v, "{k}");
        }
        if t["compatible"] == true {
            assert!(fin["scores"]["ot+leep+nce"].is_number(), "{fin}");
        }
    }
    let stored = get(
        &app,
        &format!("/v1/rankings/{}", ranking["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(stored.json()["results"], ranking["results"]);

    // wrong from the start: a 4xx, not a stream
    let r = post_json(
        &app,
        "/v1/rankings/stream",
        serde_json::json!({"dataset_id": "ds_nope"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = post_json(
        &app,
        "/v1/rankings/stream",
        serde_json::json!({"dataset_id": ds, "primary_metric": "vibes"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // wrong only once ranking starts (an unknown teacher): an error event
    let r = post_json(
        &app,
        "/v1/rankings/stream",
        serde_json::json!({"dataset_id": ds, "teachers": ["nobody"]}),
    )
    .await;
    let body = String::from_utf8(r.body).unwrap();
    assert!(
        body.contains("event: error") && body.contains("no teacher 'nobody'"),
        "{body}"
    );
}
