//! Task datasets and rankings over HTTP: the three upload formats, every kind of bad input (each refused
//! with a 4xx JSON error that names the problem and leaves the stored datasets exactly as they were), and
//! ranking the bundled zoo with cached teacher outputs that survive a restart.
mod common;

use axum::http::StatusCode;
use common::*;

async fn post_dataset(app: &axum::Router, body: Vec<u8>) -> Reply {
    post_multipart(app, "/v1/datasets", body).await
}

/// An npz with x float32 [n, d] and y int64.
fn npz(x: &[f32], d: usize, y: &[i64]) -> Vec<u8> {
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let yb: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
    zip_of(&[
        ("x.npy", npy("<f4", &[x.len() / d, d], &xb)),
        ("y.npy", npy("<i8", &[y.len()], &yb)),
    ])
}

fn png(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([shade.wrapping_add((x * 7 + y * 3) as u8)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The stored datasets and the files behind them.
async fn state(
    app: &axum::Router,
    sb: &Sandbox,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, String>,
) {
    let list = get(app, "/v1/datasets").await.json();
    // the stored rows, and the files uploads are written to while they are parsed (none left behind)
    let mut files = std::collections::BTreeMap::new();
    for sub in ["datasets", "uploads"] {
        let dir = sb.state().join(sub);
        if dir.exists() {
            files.extend(
                snapshot_files(&dir)
                    .into_iter()
                    .map(|(k, v)| (format!("{sub}/{k}"), v)),
            );
        }
    }
    (list, files)
}

#[tokio::test(flavor = "multi_thread")]
async fn formats_parse_and_store_content_addressed() {
    let sb = Sandbox::new();
    let app = sb.app();
    // npz: the bundled task (uint8 images, -1 = unlabeled, label names inside)
    let bytes = std::fs::read(repo().join("zoo/tasks/mnist_10way_5shot.npz")).unwrap();
    let r = post_dataset(&app, multipart("mnist.npz", &bytes, &[])).await;
    let r = r.expect(201);
    let d = r.json();
    assert_eq!(d["rows"], 550);
    assert_eq!(d["labeled"], 50);
    assert_eq!(d["unlabeled"], 500);
    assert_eq!(d["row_shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(
        d["classes"][3],
        serde_json::json!({"name": "3", "count": 5})
    );
    // its x_test / y_test became a dataset of its own, all labeled
    let test_id = d["test_dataset_id"].as_str().unwrap();
    let t = get(&app, &format!("/v1/datasets/{test_id}")).await.json();
    assert_eq!(
        (t["rows"].as_u64(), t["labeled"].as_u64()),
        (Some(2000), Some(2000))
    );
    let id = d["id"].as_str().unwrap().to_string();
    // the same content again: same id, 200, nothing new on disk
    let again = post_dataset(&app, multipart("copy.npz", &bytes, &[])).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(
        get(&app, &format!("/v1/datasets/{id}")).await.json()["rows"],
        550
    );

    // csv: a custom label column, string classes, an empty label = unlabeled
    let csv = "a,b,kind\n1,2,cat\n1.5,2.5,dog\n0,1,\n3,4,cat\n";
    let r = post_dataset(
        &app,
        multipart("t.csv", csv.as_bytes(), &[("label_column", "kind")]),
    )
    .await;
    let r = r.expect(201);
    let d = r.json();
    assert_eq!(d["row_shape"], serde_json::json!([2]));
    assert_eq!(d["unlabeled"], 1);
    assert_eq!(
        d["classes"],
        serde_json::json!([{"name": "cat", "count": 2}, {"name": "dog", "count": 1}])
    );

    // zip of image folders, inside a top folder, with an unlabeled folder and macOS droppings
    let zip = zip_of(&[
        ("pets/cat/1.png", png(6, 5, 10)),
        ("pets/cat/2.png", png(6, 5, 40)),
        ("pets/dog/1.png", png(6, 5, 200)),
        ("pets/_unlabeled/9.png", png(6, 5, 90)),
        ("__MACOSX/pets/cat/._1.png", b"junk".to_vec()),
    ]);
    let r = post_dataset(&app, multipart("pets.zip", &zip, &[])).await;
    let r = r.expect(201);
    let d = r.json();
    assert_eq!(d["row_shape"], serde_json::json!([1, 5, 6]));
    assert_eq!(d["labeled"], 3);
    assert_eq!(d["unlabeled"], 1);
    // mnist, its test split, the csv and the zip
    assert_eq!(
        get(&app, "/v1/datasets").await.json()["datasets"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // paged newest first, each once, whatever the page size
    let all = walk_pages(&app, "/v1/datasets", "datasets", 1, 4).await;
    assert_eq!(
        walk_pages(&app, "/v1/datasets", "datasets", 3, 4).await,
        all
    );
    for bad in ["page_token=zz", "page_size=0", "page_size=501"] {
        let r = get(&app, &format!("/v1/datasets?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(String::from_utf8_lossy(&r.body).contains(bad.split('=').next().unwrap()));
    }
    assert_eq!(
        send(&app, "DELETE", &format!("/v1/datasets/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, &format!("/v1/datasets/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    // gone from the pages and the count too
    let left = walk_pages(&app, "/v1/datasets", "datasets", 2, 3).await;
    assert!(left.iter().all(|(_, d)| *d != id), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_datasets_are_refused_and_change_nothing() {
    let sb = Sandbox::new();
    let mut config = sb.config();
    config.max_upload_bytes = 300_000;
    let app = sb.app_with(config);
    // something stored already, which must survive every bad upload
    let ok = npz(&[0.0, 1.0, 1.0, 0.0], 2, &[0, 1]);
    assert_eq!(
        post_dataset(&app, multipart("ok.npz", &ok, &[]))
            .await
            .status,
        StatusCode::CREATED
    );
    let before = state(&app, &sb).await;

    let nan = npz(&[0.0, f32::NAN, 1.0, 0.0], 2, &[0, 1]);
    let inf = npz(&[0.0, f32::INFINITY, 1.0, 0.0], 2, &[0, 1]);
    let mismatch = npz(&[0.0, 1.0, 1.0, 0.0], 2, &[0, 1, 1]);
    let one_class = npz(&[0.0, 1.0, 1.0, 0.0], 2, &[0, 0]);
    let out_of_range = npz(&[0.0, 1.0, 1.0, 0.0], 2, &[0, 7]);
    let no_y = zip_of(&[("x.npy", npy("<f4", &[1, 1], &[0; 4]))]);
    let pickled = zip_of(&[
        ("x.npy", npy("|O", &[1], &[0; 8])),
        ("y.npy", npy("<i8", &[1], &[0; 8])),
    ]);
    let mut truncated = npz(&[0.0, 1.0, 1.0, 0.0], 2, &[0, 1]);
    truncated.truncate(truncated.len() / 2);
    let bomb_member = npy("<f4", &[500_000], &vec![0u8; 2_000_000]);
    let npz_bomb = zip_of(&[("x.npy", bomb_member), ("y.npy", npy("<i8", &[1], &[0; 8]))]);
    // 400 KB of uint8 pixels fit the 1.2 MB inflation limit, their 1.6 MB of float32 rows do not
    let pixels = zip_of(&[
        ("x.npy", npy("|u1", &[2, 200_000], &vec![0u8; 400_000])),
        (
            "y.npy",
            npy(
                "<i8",
                &[2],
                &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            ),
        ),
    ]);
    let png_bomb = zip_of(&[("a/1.png", vec![0u8; 3_000_000]), ("b/1.png", png(4, 4, 1))]);
    let traversal = zip_of(&[("../evil/1.png", png(4, 4, 1)), ("b/1.png", png(4, 4, 1))]);
    let undecodable = zip_of(&[
        ("a/1.png", b"\x89PNG not really".to_vec()),
        ("b/1.png", png(4, 4, 1)),
    ]);
    let sizes = zip_of(&[("a/1.png", png(4, 4, 1)), ("b/1.png", png(5, 4, 1))]);
    let loose = zip_of(&[("1.png", png(4, 4, 1)), ("b/1.png", png(4, 4, 1))]);
    let not_image = zip_of(&[("a/1.txt", b"hello".to_vec()), ("b/1.png", png(4, 4, 1))]);
    let huge = vec![b'1'; 400_000];
    // a 20 KB CSV of 1,001 one-row classes (20,000 of them, 889 KB, took a ranking to 5.5 GB)
    let many_classes: String = std::iter::once("a,b,label\n".to_string())
        .chain((0..1001).map(|i| format!("{},{},c{i}\n", i % 7, i % 5)))
        .collect();
    let labels_unused = ("labels", r#"["a","b","never seen"]"#);
    // (file name, bytes, form fields, status, text the error names)
    type Case<'a> = (
        &'a str,
        Vec<u8>,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("nan.npz", nan, vec![], StatusCode::BAD_REQUEST, "NaN"),
        ("inf.npz", inf, vec![], StatusCode::BAD_REQUEST, "infinity"),
        (
            "m.npz",
            mismatch,
            vec![],
            StatusCode::BAD_REQUEST,
            "2 rows but y has 3",
        ),
        (
            "many.csv",
            many_classes.into_bytes(),
            vec![],
            StatusCode::BAD_REQUEST,
            "the task has 1001 classes; faculty takes at most 1000",
        ),
        (
            "one.npz",
            one_class,
            vec![],
            StatusCode::BAD_REQUEST,
            "at least 2 classes",
        ),
        (
            "r.npz",
            out_of_range,
            vec![("labels", r#"["a","b"]"#)],
            StatusCode::BAD_REQUEST,
            "out of range",
        ),
        (
            "e.npz",
            npz(&[0.0, 1.0, 1.0, 0.0], 2, &[0, 1]),
            vec![labels_unused],
            StatusCode::BAD_REQUEST,
            "has no labeled rows",
        ),
        (
            "noy.npz",
            no_y,
            vec![],
            StatusCode::BAD_REQUEST,
            "no array named 'y'",
        ),
        (
            "p.npz",
            pickled,
            vec![],
            StatusCode::BAD_REQUEST,
            "object arrays",
        ),
        ("t.npz", truncated, vec![], StatusCode::BAD_REQUEST, "npz"),
        (
            "bomb.npz",
            npz_bomb,
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "inflates",
        ),
        (
            "pixels.npz",
            pixels,
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "as float32",
        ),
        (
            "ragged.csv",
            b"a,b,label\n1,2,x\n3,y\n".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "ragged",
        ),
        (
            "text.csv",
            b"a,b,label\n1,2,x\n3,abc,y\n".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "'abc' is not a number",
        ),
        (
            "nan.csv",
            b"a,b,label\n1,2,x\n3,NaN,y\n".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "NaN",
        ),
        (
            "one.csv",
            b"a,b,label\n1,2,x\n3,4,x\n".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "at least 2 classes",
        ),
        (
            "nolabel.csv",
            b"a,b\n1,2\n".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "no label column 'label'",
        ),
        (
            "bomb.zip",
            png_bomb,
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "inflates",
        ),
        (
            "trav.zip",
            traversal,
            vec![],
            StatusCode::BAD_REQUEST,
            "escapes the archive",
        ),
        (
            "bad.zip",
            undecodable,
            vec![],
            StatusCode::BAD_REQUEST,
            "cannot decode",
        ),
        (
            "sizes.zip",
            sizes,
            vec![],
            StatusCode::BAD_REQUEST,
            "differ in size",
        ),
        (
            "loose.zip",
            loose,
            vec![],
            StatusCode::BAD_REQUEST,
            "class folder",
        ),
        (
            "txt.zip",
            not_image,
            vec![],
            StatusCode::BAD_REQUEST,
            "not a .png",
        ),
        (
            "huge.csv",
            huge,
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            "empty.npz",
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "x.bin",
            vec![0xff, 0xfe, 0x00, 0x81],
            vec![],
            StatusCode::BAD_REQUEST,
            "unrecognised dataset format",
        ),
    ];
    for (name, bytes, fields, status, needle) in cases {
        let r = post_dataset(&app, multipart(name, &bytes, &fields)).await;
        let body = r.json();
        assert_eq!(r.status, status, "{name}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{name}: '{msg}' should mention '{needle}'"
        );
        assert!(body["kind"].is_string());
        assert_eq!(
            state(&app, &sb).await,
            before,
            "{name} changed the stored datasets"
        );
    }
    // a multipart body cut off mid-file, and one without the file field
    let mut cut = multipart("ok2.npz", &npz(&[5.0, 1.0, 1.0, 0.0], 2, &[0, 1]), &[]);
    cut.truncate(cut.len() - 60);
    assert_eq!(
        post_dataset(&app, cut).await.status,
        StatusCode::BAD_REQUEST
    );
    let nofile = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    );
    let r = post_dataset(&app, nofile.into_bytes()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("`file`"));
    assert_eq!(state(&app, &sb).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn rankings_recommend_cache_and_survive_restart() {
    let sb = Sandbox::new();
    let bytes = std::fs::read(repo().join("zoo/tasks/fashion_clothing_6way.npz")).unwrap();
    let (ranking, id) = {
        let app = sb.app();
        let ds = post_dataset(&app, multipart("fashion.npz", &bytes, &[]))
            .await
            .json();
        let id = ds["id"].as_str().unwrap().to_string();
        let r = post_json(
            &app,
            "/v1/rankings",
            serde_json::json!({ "dataset_id": id }),
        )
        .await;
        let r = r.expect(201);
        let rk = r.json();
        assert_eq!(rk["dataset_id"], id.as_str());
        let results = rk["results"].as_array().unwrap();
        // every teacher listed: the incompatible ones with a reason and no rank
        assert_eq!(
            results.len(),
            get(&app, "/v1/teachers").await.json()["total"]
                .as_u64()
                .unwrap() as usize
        );
        assert_eq!(results[0]["rank"], 1);
        assert!(
            results[0]["teacher_id"]
                .as_str()
                .unwrap()
                .starts_with("fashion_"),
            "{}",
            results[0]
        );
        let letters = results
            .iter()
            .find(|r| r["teacher_id"] == "letters_mlp")
            .unwrap();
        assert_eq!(letters["compatible"], false);
        assert!(letters["reason"].as_str().unwrap().contains("do not fit"));
        assert!(letters["rank"].is_null());
        let rf = results
            .iter()
            .find(|r| r["teacher_id"] == "mnist_rf")
            .unwrap();
        assert!(
            rf["scores"].get("logme").is_none(),
            "a forest has no penultimate layer"
        );
        assert!(rf["notes"].to_string().contains("soft-output metrics only"));
        let cnn = results
            .iter()
            .find(|r| r["teacher_id"] == "fashion_cnn@1")
            .unwrap();
        for m in [
            "leep",
            "nce",
            "logme",
            "hscore",
            "ot",
            "ot_pool",
            "ot_prototype",
        ] {
            assert!(
                cnn["scores"][m].is_number(),
                "{m} missing for a CNN teacher: {cnn}"
            );
        }
        // the task has a 500-row unlabeled pool: `ot_pool` adds the pool term (a disagreement rate) to
        // the labeled-row cost `ot`; a teacher of another domain disagrees with the ridge student on much
        // of the pool, the same-domain top pick on little of it
        let pool_term = |r: &serde_json::Value| {
            r["scores"]["ot_pool"].as_f64().unwrap() - r["scores"]["ot"].as_f64().unwrap()
        };
        let digits = results
            .iter()
            .find(|r| r["teacher_id"] == "mnist_mlp")
            .unwrap();
        assert!(
            (0.0..=1.0).contains(&pool_term(&results[0])),
            "{}",
            results[0]
        );
        assert!(
            pool_term(digits) > pool_term(&results[0]) + 0.2,
            "{digits} vs {}",
            results[0]
        );
        assert_eq!(rk["verdict"]["teacher_helps"], true, "{}", rk["verdict"]);
        // the verdict is the sign of the gain rule applied to its two estimates, and it shows the
        // scratch student's expected accuracy on a student's scale
        let v = &rk["verdict"];
        let (t, sc) = (
            v["teacher_estimate"].as_f64().unwrap(),
            v["scratch_estimate"].as_f64().unwrap(),
        );
        let g = v["expected_gain"].as_f64().unwrap();
        assert!(
            (g - faculty::rank::gain::GAIN.predict(t, sc)).abs() < 1e-12,
            "{v}"
        );
        assert!(g >= 0.0, "{v}");
        let es = &v["expected_scratch_accuracy"];
        let (e, lo, hi) = (
            es["estimate"].as_f64().unwrap(),
            es["low"].as_f64().unwrap(),
            es["high"].as_f64().unwrap(),
        );
        assert!(lo < e && e < hi && (0.0..=1.0).contains(&e), "{es}");
        assert_eq!(
            e,
            faculty::rank::expected::SCRATCH_FIT
                .predict_scratch(sc)
                .estimate
        );
        // ties with the top teacher: paired over the labeled rows; rank 1 has no gap, another domain's
        // teacher is far behind, and `tied_with_top` is exactly a gap under 2 standard errors
        assert!(results[0]["gap_z"].is_null(), "{}", results[0]);
        let mut tied = Vec::new();
        for r in results
            .iter()
            .filter(|r| r["rank"].as_u64().is_some_and(|k| k > 1))
        {
            let z = r["gap_z"]
                .as_f64()
                .unwrap_or_else(|| panic!("no gap_z: {r}"));
            assert_eq!(r["tied_with_top"], z < 2.0, "{r}");
            if z < 2.0 {
                tied.push(r["teacher_id"].clone());
            }
        }
        assert!(digits["gap_z"].as_f64().unwrap() > 2.0, "{digits}");
        assert_eq!(rk["verdict"]["tied"], serde_json::Value::from(tied));
        let z = rk["verdict"]["z"].as_f64().unwrap();
        assert_eq!(rk["verdict"]["confident"], z.abs() >= 2.0);
        assert!(
            z > 0.0,
            "the fashion teacher is ahead of the ridge student: {}",
            rk["verdict"]
        );
        assert!(
            rk["verdict"]["reason"]
                .as_str()
                .unwrap()
                .contains("leave-one-out")
        );
        let again = get(
            &app,
            &format!("/v1/rankings/{}", rk["id"].as_str().unwrap()),
        )
        .await
        .json();
        assert_eq!(again, rk);
        // bad requests
        let r = post_json(
            &app,
            "/v1/rankings",
            serde_json::json!({ "dataset_id": "ds_nope" }),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = post_json(
            &app,
            "/v1/rankings",
            serde_json::json!({ "dataset_id": id, "primary_metric": "vibes" }),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.json()["error"].as_str().unwrap().contains("vibes"));
        let r = post_json(
            &app,
            "/v1/rankings",
            serde_json::json!({ "dataset_id": id, "teachers": ["ghost"] }),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            get(&app, "/v1/rankings/rk_nope").await.status,
            StatusCode::NOT_FOUND
        );
        (rk, id)
    };
    // a restart: outputs come from the cache, results are identical
    let app = sb.app();
    let r = post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({ "dataset_id": id }),
    )
    .await
    .json();
    for (a, b) in r["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ranking["results"].as_array().unwrap())
    {
        assert_eq!(a["teacher_id"], b["teacher_id"]);
        assert_eq!(a["scores"], b["scores"]);
        // the per-row terms behind the ties are memoised with the scores
        assert_eq!(a["gap_z"], b["gap_z"]);
        assert_eq!(a["tied_with_top"], b["tied_with_top"]);
        if a["compatible"] == true {
            assert_eq!(
                a["cached"], true,
                "{} recomputed after restart",
                a["teacher_id"]
            );
        }
    }
    // recomputing every score from the cached outputs gives the memoised scores back
    let fresh = post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({ "dataset_id": id, "recompute_scores": true }),
    )
    .await
    .json();
    for (a, b) in fresh["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["results"].as_array().unwrap())
    {
        assert_eq!(a["teacher_id"], b["teacher_id"]);
        assert_eq!(a["scores"], b["scores"]);
        assert_eq!(a["notes"], b["notes"]);
    }
    assert_eq!(r["verdict"], ranking["verdict"]);
    // a chosen primary metric orders by that metric, lower-is-better respected
    let r = post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({ "dataset_id": id, "primary_metric": "ot", "metrics": ["ot", "leep"] }),
    )
    .await
    .json();
    assert_eq!(
        r["directions"],
        serde_json::json!({"leep": "higher", "ot": "lower"})
    );
    let scores: Vec<f64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["score"].as_f64())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_split_columns_and_zip_test_folders_set_test_rows_apart() {
    let sb = Sandbox::new();
    let app = sb.app();
    let csv = "f1,f2,label,split\n0.1,1.0,a,train\n0.2,1.1,a,\n0.9,0.1,b,train\n1.0,0.0,b,\n\
               0.15,1.05,a,test\n0.95,0.05,b,TEST\n0.5,0.5,,train\n";
    let r = post_dataset(&app, multipart("s.csv", csv.as_bytes(), &[])).await;
    let r = r.expect(201);
    let d = r.json();
    // the split column is not a feature; test rows leave the dataset for a test split of their own
    assert_eq!(d["row_shape"], serde_json::json!([2]));
    assert_eq!(
        (d["rows"].as_u64(), d["labeled"].as_u64()),
        (Some(5), Some(4)),
        "{d}"
    );
    let t = get(
        &app,
        &format!("/v1/datasets/{}", d["test_dataset_id"].as_str().unwrap()),
    )
    .await
    .json();
    assert_eq!(
        (t["rows"].as_u64(), t["labeled"].as_u64()),
        (Some(2), Some(2)),
        "{t}"
    );
    assert_eq!(
        t["classes"],
        d["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| serde_json::json!({"name": c["name"], "count": 1}))
            .collect::<serde_json::Value>()
    );
    // a bad split value or an unlabeled test row is refused and stores nothing
    let before = state(&app, &sb).await;
    for (bad, needle) in [
        (
            "f1,label,split\n0.1,a,validation\n0.2,b,train\n",
            "'validation' is neither train nor test",
        ),
        (
            "f1,label,split\n0.1,a,train\n0.2,b,train\n0.3,,test\n",
            "every test row needs a label",
        ),
    ] {
        let r = post_dataset(&app, multipart("bad.csv", bad.as_bytes(), &[])).await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(needle), "{text}");
    }
    assert_eq!(state(&app, &sb).await, before);
    // a zip's _test/<class>/ folders are its test split
    let zip = zip_of(&[
        ("cat/1.png", png(6, 5, 10)),
        ("dog/1.png", png(6, 5, 200)),
        ("_test/cat/2.png", png(6, 5, 20)),
        ("_test/dog/2.png", png(6, 5, 190)),
    ]);
    let d = post_dataset(&app, multipart("pets.zip", &zip, &[]))
        .await
        .json();
    assert_eq!(
        (d["rows"].as_u64(), d["labeled"].as_u64()),
        (Some(2), Some(2)),
        "{d}"
    );
    let t = get(
        &app,
        &format!("/v1/datasets/{}", d["test_dataset_id"].as_str().unwrap()),
    )
    .await
    .json();
    assert_eq!(
        (t["rows"].as_u64(), t["row_shape"].clone()),
        (Some(2), serde_json::json!([1, 5, 6]))
    );
    let bad = zip_of(&[
        ("cat/1.png", png(6, 5, 10)),
        ("dog/1.png", png(6, 5, 200)),
        ("_test/2.png", png(6, 5, 20)),
    ]);
    let r = post_dataset(&app, multipart("bad.zip", &bad, &[])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("test images need a class folder"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sharded_rankings_equal_one_process_rankings_and_show_their_progress() {
    let bytes = std::fs::read(repo().join("zoo/tasks/fashion_clothing_6way.npz")).unwrap();
    // the same task ranked by one process, and fanned out as shards of 4 teachers
    let (whole, sharded) = (Sandbox::new(), Sandbox::new());
    let mut config = sharded.config();
    config.rank_shard_size = 4;
    let mut answers = Vec::new();
    for app in [whole.app(), sharded.app_with(config)] {
        let ds = post_dataset(&app, multipart("fashion.npz", &bytes, &[]))
            .await
            .expect(201)
            .json();
        let r = post_json(
            &app,
            "/v1/rankings",
            serde_json::json!({ "dataset_id": ds["id"] }),
        )
        .await
        .expect(201)
        .json();
        answers.push((app, ds["id"].as_str().unwrap().to_string(), r));
    }
    let (_, _, one) = answers.remove(0);
    let (app, id, many) = answers.remove(0);
    assert!(one.get("shards").is_none(), "one process: no shards");
    let teachers = one["results"].as_array().unwrap().len();
    let shards = many["shards"].as_array().unwrap();
    assert_eq!(shards.len(), teachers.div_ceil(4), "{many}");
    assert!(
        shards
            .iter()
            .all(|s| s["done"] == true && s["attempts"] == 1)
    );
    for key in [
        "results",
        "verdict",
        "directions",
        "primary_metric",
        "labeled_rows",
    ] {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            for t in v.as_array_mut().into_iter().flatten() {
                // outputs were computed in both, but by the shard in the sharded one
                t.as_object_mut().unwrap().remove("cached");
            }
            v
        };
        assert_eq!(strip(&many[key]), strip(&one[key]), "{key} differs");
    }

    // without waiting: 202 with where to look, then the ranking once its shards are scored
    let r = post_json(
        &app,
        "/v1/rankings?wait=false",
        serde_json::json!({ "dataset_id": id, "recompute_scores": true, "primary_metric": "leep" }),
    )
    .await
    .expect(202);
    let at = r.headers["location"].to_str().unwrap().to_string();
    let partial = r.json();
    assert_eq!(partial["state"], "running");
    assert_eq!(partial["teachers"], teachers);
    let done = loop {
        let r = get(&app, &at).await;
        if r.status == StatusCode::OK {
            break r.json();
        }
        let p = r.expect(202).json();
        // lines scored so far come best first by the primary metric among them
        let scores: Vec<f64> = p["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["score"].as_f64())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{p}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done["primary_metric"], "leep");
    assert_eq!(done["results"][0]["rank"], 1);
    assert_eq!(
        get(&app, "/v1/rankings").await.json()["rankings"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // bad requests are refused before any shard is queued
    post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({ "dataset_id": id, "teachers": ["ghost"] }),
    )
    .await
    .expect_error(400, "ghost");
    post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({ "dataset_id": id, "primary_metric": "vibes" }),
    )
    .await
    .expect_error(400, "vibes");
    post_json(
        &app,
        "/v1/rankings",
        serde_json::json!({ "dataset_id": "ds_0000000000000000" }),
    )
    .await
    .expect(404);
    get(&app, "/v1/rankings/rk_nope").await.expect(404);

    // streamed: a teacher event per line as its shard is scored, then the ranking
    let r = post_json(
        &app,
        "/v1/rankings/stream",
        serde_json::json!({ "dataset_id": id, "primary_metric": "nce" }),
    )
    .await
    .expect(200);
    let text = String::from_utf8(r.body).unwrap();
    assert_eq!(text.matches("event: teacher").count(), teachers, "{text}");
    assert_eq!(text.matches("event: ranking").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dataset_bigger_than_a_ranking_needs_is_ranked_on_its_sample() {
    // 100 labeled rows of 16 features (the letters teachers' input) and 2,500 unlabeled ones: more
    // unlabeled rows than the pool term looks at, so the ranking reads a sample
    let (d, n) = (16, 2_600);
    let mut s = 7u64;
    let x: Vec<f32> = (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 16) as f32
        })
        .collect();
    let y: Vec<i64> = (0..n as i64)
        .map(|i| if i < 100 { i % 4 } else { -1 })
        .collect();
    let rows = faculty::rank::sample::pick(&y).expect("a sample");
    let pool = rows.iter().filter(|&&r| y[r] < 0).count();
    assert_eq!(rows.len() - pool, 100, "every labeled row");
    assert!(
        (1_000..=2_000).contains(&pool),
        "{pool} evenly spaced unlabeled rows"
    );
    let sub_x: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
        .collect();
    let sub_y: Vec<i64> = rows.iter().map(|&r| y[r]).collect();
    let teachers = serde_json::json!(["letters_mlp", "letters_rf", "letters_logreg", "mnist_mlp"]);
    let rank = |app: axum::Router, id: String| {
        let teachers = teachers.clone();
        async move {
            post_json(
                &app,
                "/v1/rankings",
                serde_json::json!({ "dataset_id": id, "teachers": teachers }),
            )
            .await
            .expect(201)
            .json()
        }
    };
    // the whole dataset, in one process and in shards of 2 teachers; the sample uploaded on its own
    let (sb, sharded) = (Sandbox::new(), Sandbox::new());
    let mut config = sharded.config();
    config.rank_shard_size = 2;
    let app = sb.app();
    let big = post_dataset(&app, multipart("big.npz", &npz(&x, d, &y), &[]))
        .await
        .expect(201)
        .json();
    let big_id = big["id"].as_str().unwrap().to_string();
    let one = rank(app.clone(), big_id.clone()).await;
    let app2 = sharded.app_with(config);
    post_dataset(&app2, multipart("big.npz", &npz(&x, d, &y), &[]))
        .await
        .expect(201);
    let many = rank(app2, big_id.clone()).await;
    let small = post_dataset(&app, multipart("sample.npz", &npz(&sub_x, d, &sub_y), &[]))
        .await
        .expect(201)
        .json();
    let alone = rank(app.clone(), small["id"].as_str().unwrap().to_string()).await;

    assert_eq!(one["dataset_id"], big_id.as_str());
    assert_eq!(
        one["sampled_from"],
        serde_json::json!({"labeled_rows": 100, "rows": 2_600})
    );
    assert_eq!(one["labeled_rows"], 100);
    assert_eq!(one["rows"], rows.len());
    assert!(alone.get("sampled_from").is_none(), "{alone}");
    assert!(
        one["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["rank"] == 1)
    );
    for (other, what) in [(&many, "sharded"), (&alone, "the sample uploaded alone")] {
        for key in ["results", "verdict", "labeled_rows", "rows"] {
            let strip = |v: &serde_json::Value| {
                let mut v = v.clone();
                for t in v.as_array_mut().into_iter().flatten() {
                    t.as_object_mut().unwrap().remove("cached");
                }
                v
            };
            assert_json_close(
                &strip(&other[key]),
                &strip(&one[key]),
                &format!("{what}: {key}"),
            );
        }
    }
    // ranked again: every teacher's scores from the cache, the same answer
    let again = rank(app.clone(), big_id.clone()).await;
    assert!(
        again["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["compatible"] == true)
            .all(|t| t["cached"] == true),
        "{again}"
    );
    assert_eq!(again["results"][0]["scores"], one["results"][0]["scores"]);
}
