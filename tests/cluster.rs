//! Two `faculty serve` processes over one PostgreSQL database and one object store (make test's cluster
//! pass): what one server stores the other reads, and a job whose server is killed (SIGKILL) mid-training
//! is taken over by the other and finishes there, resumed from its checkpoint, once; two servers that
//! neither train nor score and three `faculty worker` processes, of which one is killed mid-shard and one
//! mid-job: the ranking and the job finish on the third, nothing lost or repeated.
mod common;

use common::server::*;
use common::*;

#[test]
fn two_servers_share_their_state_and_a_killed_servers_job_finishes_on_the_other() {
    if skipped_off_postgres() {
        return;
    }
    let sb = Sandbox::new();
    // one state (the schema and blob prefix follow the state directory), two servers
    let (mut a, pa) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let (mut b, pb) = spawn_server_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS);
    let ds = post_task(pa, "mnist_10way_5shot.npz");

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
    let (id, _) = long_job_mid_training(pa, pb, &ds["id"]);
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();

    // B takes it over once A's lease runs out, and finishes it from the checkpoint
    let fin = wait_finished(pb, &id);
    assert_eq!(fin["state"], "succeeded", "{fin}");
    assert_eq!(fin["restarts"], 1, "{fin}");
    let notes = fin["notes"].to_string();
    assert!(
        notes.contains(
            "its server stopped answering while this job ran; resumed from the checkpoint"
        ),
        "{notes}"
    );
    let epochs = epochs_of(&fin);
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

/// `rows` random rows shaped like MNIST's, the first 50 labeled (5 per class of 10), as `.npz`: a task
/// whose ranking takes long enough (inference over every row, per teacher) to kill a worker mid-shard.
fn slow_task(rows: usize) -> Vec<u8> {
    let x: Vec<u8> = random_bytes(rows * 784)
        .into_iter()
        .flat_map(|b| (f32::from(b) / 255.0).to_le_bytes())
        .collect();
    let y: Vec<u8> = (0..rows)
        .flat_map(|i| (if i < 50 { (i % 10) as i64 } else { -1 }).to_le_bytes())
        .collect();
    zip_of(&[
        ("x.npy", npy("<f4", &[rows, 1, 28, 28], &x)),
        ("y.npy", npy("<i8", &[rows], &y)),
    ])
}

#[test]
fn two_servers_and_three_workers_lose_nothing_when_workers_die_mid_shard_and_mid_job() {
    if skipped_off_postgres() {
        return;
    }
    let sb = Sandbox::new();
    // two servers that neither train nor score: rankings fan out as shards of 3 teachers
    let flags = [
        "--max-jobs",
        "0",
        "--max-shards",
        "0",
        "--rank-shard-size",
        "3",
        FAST_CHECKPOINTS[0],
        FAST_CHECKPOINTS[1],
    ];
    let (mut a, pa) = spawn_server_with(&sb.zoo(), &sb.state(), &flags);
    let (mut b, pb) = spawn_server_with(&sb.zoo(), &sb.state(), &flags);
    let mut workers: Vec<Option<Server>> = (0..3)
        .map(|_| Some(spawn_worker_with(&sb.zoo(), &sb.state(), &FAST_CHECKPOINTS)))
        .collect();
    let tags: Vec<String> = workers
        .iter()
        .map(|w| format!(":{}:", w.as_ref().unwrap().id()))
        .collect();
    let worker_of = |holder: &str| {
        tags.iter()
            .position(|t| holder.contains(t.as_str()))
            .unwrap_or_else(|| panic!("held by {holder}, not by a worker {tags:?}"))
    };
    let ds = post_task(pa, "mnist_10way_5shot.npz");
    let (status, slow) = post_dataset(pa, "slow.npz", &slow_task(4000));
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&slow));
    let slow: serde_json::Value = serde_json::from_slice(&slow).unwrap();

    // a long job submitted to A runs on a worker
    let (job_id, before) = long_job_mid_training(pa, pb, &ds["id"]);
    let job_worker = worker_of(before["worker"].as_str().unwrap());

    // a ranking asked of A, watched on B: a worker other than the job's is killed while it scores a
    // shard
    let (status, rk) = http_json(
        pa,
        "POST",
        "/v1/rankings?wait=false",
        serde_json::json!({"dataset_id": slow["id"]}),
    );
    assert_eq!(status, 202, "{rk}");
    let id = rk["id"].as_str().unwrap().to_string();
    let shard_of = |r: &serde_json::Value| {
        r["shards"].as_array().and_then(|shards| {
            shards.iter().find_map(|s| {
                let w = s["worker"].as_str()?;
                (s["done"] == false && worker_of(w) != job_worker)
                    .then(|| (s["index"].as_u64().unwrap(), worker_of(w)))
            })
        })
    };
    let (_, running) = wait_until(pb, &format!("/v1/rankings/{id}"), |status, r| {
        status == 202 && shard_of(r).is_some()
    });
    let (shard, shard_worker) = shard_of(&running).unwrap();
    let mut killed = workers[shard_worker].take().unwrap();
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    let mut killed = workers[job_worker].take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let survivor = (0..3).find(|&k| workers[k].is_some()).unwrap();

    // the ranking closes, complete, and reads the same on both servers
    let (status, on_b) = wait_until(pb, &format!("/v1/rankings/{id}"), |status, _| status != 202);
    assert_eq!(status, 200, "{on_b}");
    let (status, on_a) = http_json(
        pa,
        "GET",
        &format!("/v1/rankings/{id}"),
        serde_json::Value::Null,
    );
    assert_eq!(status, 200);
    assert_eq!(on_a, on_b);
    let mut ids: Vec<&str> = on_b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["teacher_id"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "a teacher listed twice: {on_b}");
    assert_eq!(n, bundled_teachers(), "every teacher ranked once");
    assert_eq!(on_b["results"][0]["rank"], 1);
    let s = &on_b["shards"][shard as usize];
    assert_eq!(
        s["attempts"], 2,
        "the killed worker's shard was taken again: {s}"
    );
    assert!(s["done"].as_bool().unwrap());
    assert_eq!(worker_of(s["worker"].as_str().unwrap()), survivor, "{s}");
    let (_, list) = http_json(pb, "GET", "/v1/rankings", serde_json::Value::Null);
    assert_eq!(list["rankings"].as_array().unwrap().len(), 1, "{list}");

    // the job finishes on the surviving worker, from its checkpoint, every epoch once
    let fin = wait_finished(pb, &job_id);
    assert_eq!(fin["state"], "succeeded", "{fin}");
    assert_eq!(fin["restarts"], 1, "{fin}");
    assert_eq!(
        worker_of(fin["worker"].as_str().unwrap()),
        survivor,
        "{fin}"
    );
    let epochs = epochs_of(&fin);
    assert_eq!(
        epochs,
        (1..=400).collect::<Vec<_>>(),
        "nothing lost, nothing repeated"
    );
    let (_, students) = http_json(pa, "GET", "/v1/students", serde_json::Value::Null);
    assert_eq!(
        students["students"].as_array().unwrap().len(),
        1,
        "{students}"
    );
    drop(workers);
    a.kill().unwrap();
    a.wait().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn two_servers_uploading_the_same_teacher_at_once_end_with_one_teacher() {
    if skipped_off_postgres() {
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
    for port in [pa, pb] {
        let (status, file) = http(port, "GET", "/v1/teachers/dup/model.onnx", "", b"");
        assert_eq!(status, 200);
        assert_eq!(
            faculty::zoo::teacher::sha256_hex(&file),
            sha,
            "the stored file is the winner's"
        );
    }
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

#[test]
fn a_pushed_zoo_and_uploads_live_in_the_object_store_for_servers_without_the_files() {
    if skipped_off_postgres() {
        return;
    }
    let sb = Sandbox::new();
    // a zoo directory of two usable teachers (one versioned, with a card) and one that is not a model
    let src = tempfile::tempdir().unwrap();
    let bundled = repo().join("zoo/teachers");
    std::fs::copy(
        bundled.join("letters_mlp.onnx"),
        src.path().join("letters_mlp.onnx"),
    )
    .unwrap();
    std::fs::copy(
        bundled.join("letters_mlp.card.json"),
        src.path().join("letters_mlp.card.json"),
    )
    .unwrap();
    std::fs::create_dir_all(src.path().join("digits/2")).unwrap();
    std::fs::copy(
        bundled.join("digits8x8_logreg.onnx"),
        src.path().join("digits/2/model.onnx"),
    )
    .unwrap();
    std::fs::write(src.path().join("junk.onnx"), random_bytes(2000)).unwrap();
    let empty = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let push = || {
        over_state(empty[0].path(), &sb.state(), &["zoo", "push"])
            .arg(src.path())
            .arg("--json")
            .output()
            .unwrap()
    };
    let out = push();
    assert!(!out.status.success(), "a refused teacher makes push fail");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["added"],
        serde_json::json!(["digits@2", "letters_mlp"]),
        "{report}"
    );
    assert_eq!(report["failed"][0]["id"], "junk", "{report}");

    // two servers over empty zoo directories serve the pushed teachers
    let (mut a, pa) = spawn_server(empty[0].path(), &sb.state());
    let (mut b, pb) = spawn_server(empty[1].path(), &sb.state());
    let (_, list) = http_json(pa, "GET", "/v1/teachers", serde_json::Value::Null);
    assert_eq!(list["total"], 2, "{list}");
    let letters = list["teachers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "letters_mlp")
        .unwrap()
        .clone();
    assert!(
        letters["path"].as_str().unwrap().starts_with("teachers/"),
        "{letters}"
    );
    assert_eq!(
        letters["labels"].as_array().unwrap().len(),
        26,
        "the card came along"
    );
    let row = serde_json::json!({"inputs": [vec![0.5; 16]]});
    let (status, on_a) = http_json(pa, "POST", "/v1/teachers/letters_mlp/predict", row.clone());
    assert_eq!(status, 200, "{on_a}");
    let (status, on_b) = http_json(pb, "POST", "/v1/teachers/letters_mlp/predict", row);
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_a["probabilities"], on_b["probabilities"]);

    let ds = post_task(pb, "letters_26way.npz");
    let (status, rk) = http_json(
        pb,
        "POST",
        "/v1/rankings",
        serde_json::json!({"dataset_id": ds["id"]}),
    );
    assert_eq!(status, 201, "{rk}");
    assert_eq!(rk["results"][0]["teacher_id"], "letters_mlp", "{rk}");

    // an upload to A lands in the store, not in A's directory, and B predicts with it
    let bytes = tiny_classifier();
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, up) = http(
        pa,
        "POST",
        "/v1/teachers",
        &ct,
        &multipart("tiny.onnx", &bytes, &[]),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&up));
    assert_eq!(
        std::fs::read_dir(empty[0].path())
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0
    );
    let (status, p) = http_json(
        pb,
        "POST",
        "/v1/teachers/tiny/predict",
        serde_json::json!({"inputs": [[1, 2, 3, 4]]}),
    );
    assert_eq!(status, 200, "{p}");
    let (status, download) = http(pb, "GET", "/v1/teachers/tiny/model.onnx", "", b"");
    assert_eq!(status, 200);
    assert_eq!(download, bytes);
    // rescans keep the stored teachers; pushing again changes nothing
    let (_, scan) = http_json(pb, "POST", "/v1/zoo/rescan", serde_json::Value::Null);
    assert_eq!(scan["stored"], 3, "{scan}");
    assert_eq!(scan["removed"], serde_json::json!([]), "{scan}");
    let report: serde_json::Value = serde_json::from_slice(&push().stdout).unwrap();
    assert_eq!(report["unchanged"], 2, "{report}");
    // a delete on B is a delete everywhere
    let (status, _) = http(pb, "DELETE", "/v1/teachers/tiny", "", b"");
    assert_eq!(status, 204);
    let (status, _) = http(pa, "GET", "/v1/teachers/tiny", "", b"");
    assert_eq!(status, 404);
    a.kill().unwrap();
    a.wait().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn servers_with_their_own_zoo_directories_over_one_catalog_leave_each_others_teachers_alone() {
    if skipped_off_postgres() {
        return;
    }
    let sb = Sandbox::new();
    // A serves the bundled zoo; B its own directory: `tiny`, two other files under ids A's zoo has (one
    // of another size, one of the same size with one byte changed), a copy of one of A's teachers as a
    // copy baked into an image is (same bytes, same modification time), and one as `git clone` makes
    // (same bytes, a new modification time)
    let own = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("tiny.onnx"), tiny_classifier()).unwrap();
    std::fs::write(own.path().join("mnist_mlp.onnx"), tiny_classifier()).unwrap();
    let mut changed = std::fs::read(sb.zoo().join("mnist_logreg.onnx")).unwrap();
    *changed.last_mut().unwrap() ^= 1;
    std::fs::write(own.path().join("mnist_logreg.onnx"), changed).unwrap();
    std::fs::copy(
        sb.zoo().join("letters_logreg.onnx"),
        own.path().join("letters_logreg.onnx"),
    )
    .unwrap();
    for f in ["letters_mlp.onnx", "letters_mlp.card.json"] {
        let (from, to) = (sb.zoo().join(f), own.path().join(f));
        std::fs::copy(&from, &to).unwrap();
        let mtime = std::fs::metadata(&from).unwrap().modified().unwrap();
        std::fs::File::options()
            .append(true)
            .open(&to)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    let (mut a, pa) = spawn_server(&sb.zoo(), &sb.state());
    let (mut b, pb) = spawn_server(own.path(), &sb.state());
    let bundled = bundled_teachers();
    let total =
        |port| http_json(port, "GET", "/v1/teachers", serde_json::Value::Null).1["total"].clone();
    // B's start did not remove A's teachers (it used to: they are not in B's directory)
    assert_eq!(total(pa), bundled);
    assert_eq!(
        total(pb),
        3,
        "B serves only what it can read: tiny and its copies of letters_mlp and letters_logreg"
    );
    let (_, scan) = http_json(pb, "POST", "/v1/zoo/rescan", serde_json::Value::Null);
    assert_eq!(scan["foreign"], bundled - 2, "{scan}");
    assert_eq!(scan["unchanged"], 3, "{scan}");
    assert_eq!(scan["removed"], serde_json::json!([]), "{scan}");
    assert_eq!(
        scan["shadowed"],
        serde_json::json!(["mnist_logreg", "mnist_mlp"]),
        "{scan}"
    );
    // the two same-size files B's start read (the copy with a new time, the one with a byte changed)
    // are not read again while their stamps stay; touched, the copy is read once more, then not
    assert_eq!(scan["hashed"], 0, "{scan}");
    std::fs::File::options()
        .append(true)
        .open(own.path().join("letters_logreg.onnx"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    for hashed in [1, 0] {
        let (_, scan) = http_json(pb, "POST", "/v1/zoo/rescan", serde_json::Value::Null);
        assert_eq!(scan["hashed"], hashed, "{scan}");
        assert_eq!(scan["unchanged"], 3, "{scan}");
    }
    let (_, scan) = http_json(pa, "POST", "/v1/zoo/rescan", serde_json::Value::Null);
    assert_eq!(scan["foreign"], 1, "{scan}");
    assert_eq!(scan["removed"], serde_json::json!([]), "{scan}");
    assert_eq!(scan["unchanged"], bundled, "{scan}");

    // B names the reason for A's teachers, and cannot delete or overwrite them
    let (status, body) = http(pb, "GET", "/v1/teachers/mnist_mlp", "", b"");
    assert_eq!(status, 404);
    assert!(
        String::from_utf8_lossy(&body).contains("another server's zoo directory"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = http(pb, "DELETE", "/v1/teachers/mnist_mlp", "", b"");
    assert_eq!(status, 404);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, _) = http(
        pb,
        "POST",
        "/v1/teachers",
        &ct,
        &multipart("mnist_mlp.onnx", &tiny_classifier(), &[]),
    );
    assert_eq!(status, 409);
    let (status, p) = http_json(
        pa,
        "POST",
        "/v1/teachers/mnist_mlp/predict",
        serde_json::json!({"inputs": [vec![0.0; 784]]}),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["probabilities"][0].as_array().unwrap().len(), 10);
    let (status, p) = http_json(
        pb,
        "POST",
        "/v1/teachers/tiny/predict",
        serde_json::json!({"inputs": [[1, 2, 3, 4]]}),
    );
    assert_eq!(status, 200, "{p}");
    // B reads its copies: the one with A's modification time and the one with a new time
    for id in ["letters_mlp", "letters_logreg"] {
        let (status, p) = http_json(
            pb,
            "POST",
            &format!("/v1/teachers/{id}/predict"),
            serde_json::json!({"inputs": [vec![0.5; 16]]}),
        );
        assert_eq!(status, 200, "B reads its copy of {id}: {p}");
    }
    let (status, _) = http(pb, "GET", "/v1/teachers/mnist_logreg", "", b"");
    assert_eq!(status, 404, "a file with other bytes is not a copy");
    // a ranking on B ranks what B can read, and does not fail on A's teachers
    let ds = post_task(pb, "mnist_10way_5shot.npz");
    let (status, rk) = http_json(
        pb,
        "POST",
        "/v1/rankings",
        serde_json::json!({"dataset_id": ds["id"]}),
    );
    assert_eq!(status, 201, "{rk}");
    assert_eq!(rk["results"].as_array().unwrap().len(), 3, "{rk}");
    // A's restart finds its catalog as it left it
    a.kill().unwrap();
    a.wait().unwrap();
    let (mut a, pa) = spawn_server(&sb.zoo(), &sb.state());
    assert_eq!(total(pa), bundled);
    a.kill().unwrap();
    a.wait().unwrap();
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn a_ranking_whose_last_shard_was_scored_by_a_process_that_died_before_closing_it_is_closed_by_another()
 {
    if skipped_off_postgres() {
        return;
    }
    let sb = Sandbox::new();
    // a server that queues shards but scores none
    let (mut a, pa) = spawn_server_with(
        &sb.zoo(),
        &sb.state(),
        &[
            "--max-jobs",
            "0",
            "--max-shards",
            "0",
            "--rank-shard-size",
            "10",
        ],
    );
    let ds = post_task(pa, "mnist_10way_5shot.npz");
    let (status, rk) = http_json(
        pa,
        "POST",
        "/v1/rankings?wait=false",
        serde_json::json!({"dataset_id": ds["id"]}),
    );
    assert_eq!(status, 202, "{rk}");
    let id = rk["id"].as_str().unwrap().to_string();
    // the state a process leaves when it dies between scoring the last shard and closing the ranking:
    // every shard done (its lines not needed: closing ranks from the memo, or scores what is missing)
    // and out of the work queue
    let store = faculty::store::Store::connect(&test_database_url(&sb.state()).unwrap()).unwrap();
    let shards = store.tree("rank_shards").unwrap();
    let leases =
        faculty::jobs::lease::Leases::open(&store, "rank_shard_leases", "test:0:dead".into())
            .unwrap();
    let mut keys = 0;
    for (k, v) in shards.iter().unwrap() {
        let mut s: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(s["ranking_id"], id.as_str());
        s["done"] = true.into();
        s["attempts"] = 1.into();
        s["worker"] = "test:0:dead".into();
        shards.insert(&k, serde_json::to_vec(&s).unwrap()).unwrap();
        leases.forget(std::str::from_utf8(&k).unwrap()).unwrap();
        keys += 1;
    }
    assert_eq!(keys, bundled_teachers().div_ceil(10));
    let (status, _) = http_json(
        pa,
        "GET",
        &format!("/v1/rankings/{id}"),
        serde_json::Value::Null,
    );
    assert_eq!(status, 202, "nobody closes it yet");
    // a worker finds nothing to claim, and closes the ranking in its sweep of the shards table
    let mut w = spawn_worker(&sb.zoo(), &sb.state());
    let (status, closed) = wait_until(pa, &format!("/v1/rankings/{id}"), |status, _| status != 202);
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        closed["results"].as_array().unwrap().len(),
        bundled_teachers(),
        "{closed}"
    );
    assert_eq!(closed["results"][0]["rank"], 1);
    assert_eq!(closed["shards"].as_array().unwrap().len(), keys);
    // the closer drops the shards once the ranking is stored
    let start = std::time::Instant::now();
    while !shards.iter().unwrap().is_empty() {
        assert!(
            start.elapsed().as_secs() < 30,
            "the shards were never dropped"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    w.kill().unwrap();
    w.wait().unwrap();
    a.kill().unwrap();
    a.wait().unwrap();
}
