//! The state database as a fault: down at start (a clear error and a non-zero exit, never a panic) and
//! down while serving (503 `store_unavailable` with the reason, then recovery without a restart when it is
//! back). The second runs in `make test`'s PostgreSQL pass, through a TCP relay the test cuts and restores.
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;

/// `faculty serve` over the bundled zoo and `database_url`, expected to exit at start.
fn serve_once(database_url: &str) -> std::process::Output {
    serve_with(&["--database-url", database_url])
}

/// `faculty serve` over the bundled zoo with `flags`, expected to exit at start.
fn serve_with(flags: &[&str]) -> std::process::Output {
    run_once(&[&["serve", "--addr", "127.0.0.1:0"], flags].concat())
}

/// `faculty ARGS` over the bundled zoo and a fresh state, without the cluster's variables, expected to
/// exit at start.
fn run_once(args: &[&str]) -> std::process::Output {
    let sb = Sandbox::new();
    server::faculty()
        .args(args)
        .arg("--zoo")
        .arg(sb.zoo())
        .arg("--data-dir")
        .arg(sb.state())
        .env_remove("FACULTY_DATABASE_URL")
        .env_remove("FACULTY_BLOB_URL")
        .output()
        .unwrap()
}

/// A loopback port nothing listens on (bound, noted, closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_database_that_is_down_at_start_is_a_clear_error_and_exit_code_4() {
    let port = closed_port();
    let out = serve_once(&format!(
        "postgres://faculty:secret@127.0.0.1:{port}/faculty"
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the state database 127.0.0.1:{port}/faculty is unavailable"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[test]
fn an_object_store_that_is_down_at_start_is_a_clear_error_and_exit_code_4() {
    let port = closed_port();
    let out = serve_with(&[
        "--blob-url",
        &format!("s3://faculty?endpoint=http://127.0.0.1:{port}"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_database_url_that_is_not_one_is_refused_by_name() {
    let out = serve_once("postgres://h/db?schema=Robert');drop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("schema"), "{stderr}");
}

#[test]
fn a_worker_without_a_shared_database_is_refused_by_name() {
    let out = run_once(&["worker"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    // and a server that would leave its jobs to workers it cannot have
    let out = serve_with(&["--max-jobs", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--max-jobs 0"), "{stderr}");
}

/// A loopback TCP relay to the database that can be cut (every connection closed, the port refused) and
/// restored on the same port.
struct Relay {
    port: u16,
    target: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Self {
            port: listener.local_addr().unwrap().port(),
            target: target.to_owned(),
            up: Arc::new(AtomicBool::new(true)),
            conns: Arc::default(),
        };
        r.serve(listener);
        r
    }

    fn serve(&self, listener: TcpListener) {
        let (up, conns, target) = (self.up.clone(), self.conns.clone(), self.target.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        std::thread::sleep(std::time::Duration::from_millis(100)); // the accept loop sees the flag
    }

    fn restore(&mut self) {
        self.up = Arc::new(AtomicBool::new(true));
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_while_serving_is_503_with_the_reason_then_recovers() {
    let Some(url) = std::env::var("FACULTY_TEST_DATABASE_URL").ok() else {
        eprintln!("skipped: runs in make test's PostgreSQL pass (FACULTY_TEST_DATABASE_URL)");
        return;
    };
    // postgres://user:password@HOST:PORT/db...
    let at = url.rfind('@').expect("URL with credentials") + 1;
    let end = at + url[at..].find('/').expect("URL with a database");
    let mut relay = Relay::start(&url[at..end]);
    let sb = Sandbox::new();
    let mut config = sb.config();
    let relayed = format!("{}127.0.0.1:{}{}", &url[..at], relay.port, &url[end..]);
    config.database_url = test_database_url(&sb.state())
        .map(|u| u.replacen(&url, &relayed, 1))
        .filter(|u| u.contains(&format!(":{}/", relay.port)));
    assert!(config.database_url.is_some());
    let app = sb.app_with(config);
    let before = get(&app, "/v1/teachers").await.expect(200).json();
    get(&app, "/healthz").await.expect(200);

    relay.cut();
    for uri in ["/v1/teachers", "/healthz", "/v1/datasets"] {
        let r = get(&app, uri).await;
        assert_eq!(
            r.status.as_u16(),
            503,
            "{uri}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["kind"], "store_unavailable", "{uri}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("state database"),
            "{uri}: {}",
            r.json()
        );
        assert!(r.headers.contains_key("retry-after"), "{uri}");
    }

    relay.restore();
    let after = get(&app, "/v1/teachers").await.expect(200).json();
    assert_eq!(before, after, "the catalog came back as it was");
    get(&app, "/healthz").await.expect(200);
}

/// The table operations every part of faculty relies on, checked on sled and, in the PostgreSQL pass,
/// on PostgreSQL: the same answers from both.
#[test]
fn tables_behave_the_same_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![faculty::store::Store::open(dir.path()).unwrap()];
    if let Some(url) = test_database_url(dir.path()) {
        stores.push(faculty::store::Store::connect(&url).unwrap());
    }
    for store in stores {
        let kind = store.kind();
        let t = store.tree("conformance").unwrap();
        let other = store.tree("conformance_other").unwrap();
        assert!(t.get(b"a").unwrap().is_none(), "{kind}");
        t.insert(b"b", b"2".to_vec()).unwrap();
        t.insert(b"a", b"1".to_vec()).unwrap();
        t.insert(b"c\xff", vec![0u8, 255, 7]).unwrap();
        t.insert(b"a", b"one".to_vec()).unwrap(); // overwrite
        other.insert(b"a", b"elsewhere".to_vec()).unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"one"[..]), "{kind}");
        let all = t.iter().unwrap();
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"c\xff"], "{kind}: byte order");
        assert_eq!(all[2].1, [0u8, 255, 7], "{kind}: binary values");
        assert_eq!(
            t.keys_in(&b"a\x00"[..]..&b"c"[..]).unwrap(),
            [b"b".to_vec()],
            "{kind}"
        );
        let mut batch = faculty::store::Batch::default();
        batch.insert(b"d", b"4".to_vec());
        batch.remove(b"b");
        t.apply_batch(batch).unwrap();
        let keys: Vec<Vec<u8>> = t.iter().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [b"a".to_vec(), b"c\xff".to_vec(), b"d".to_vec()],
            "{kind}"
        );
        t.remove(b"a").unwrap();
        t.remove(b"never there").unwrap();
        assert!(t.get(b"a").unwrap().is_none(), "{kind}");
        assert_eq!(
            other.get(b"a").unwrap().as_deref(),
            Some(&b"elsewhere"[..]),
            "{kind}"
        );
        // eight writers race for one new key: exactly one wins, and its value is the one kept
        let winners: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let t = t.clone();
                    s.spawn(move || t.insert_new(b"race", vec![i as u8]).unwrap().then_some(i))
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.len(), 1, "{kind}: {winners:?}");
        assert_eq!(
            t.get(b"race").unwrap().as_deref(),
            Some(&[winners[0] as u8][..]),
            "{kind}"
        );
        // one new key and its companions, all or nothing, racing as above
        let winners: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let t = t.clone();
                    s.spawn(move || {
                        let also = vec![(format!("~with/{i}").into_bytes(), vec![i as u8])];
                        t.insert_new_with(b"race2", vec![i as u8], also)
                            .unwrap()
                            .then_some(i)
                    })
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.len(), 1, "{kind}: {winners:?}");
        let with = t.range(&b"~with/"[..]..&b"~with0"[..]).unwrap();
        assert_eq!(
            with,
            [(
                format!("~with/{}", winners[0]).into_bytes(),
                vec![winners[0] as u8]
            )],
            "{kind}: only the winner's companion is written"
        );
        // every pair in order, a few at a time (PostgreSQL pages through them: more than one page here)
        for i in 0..70u8 {
            t.insert([b'p', i], vec![i]).unwrap();
        }
        let mut seen = Vec::new();
        t.for_each(|k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, t.iter().unwrap(), "{kind}");
        assert_eq!(seen.len(), 70 + 5, "{kind}");
        // the last keys of a range first, at most so many, and how many there are (a list's pages)
        let (lo, hi) = (&[b'p', 10][..], &[b'p', 60][..]);
        let last: Vec<Vec<u8>> = (55..60u8).rev().map(|i| vec![b'p', i]).collect();
        assert_eq!(t.keys_rev(lo..hi, 5).unwrap(), last, "{kind}");
        assert_eq!(t.keys_rev(lo..hi, 500).unwrap().len(), 50, "{kind}");
        assert_eq!(t.count(lo..hi).unwrap(), 50, "{kind}");
        assert_eq!(t.count(&b"q"[..]..&b"r"[..]).unwrap(), 0, "{kind}");
        let mut seen = Vec::new();
        t.for_each_in(Some(lo..hi), |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, t.range(lo..hi).unwrap(), "{kind}: more than a page");
        store.flush().unwrap();
        store.ping().unwrap();
    }
}

/// A blob changed in the object store behind faculty's back (same key, other bytes) is refused when it
/// is fetched, not served; the record and the other datasets are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_sha256_is_refused() {
    let sb = Sandbox::new();
    let Some(blob_url) = test_blob_url(&sb.state()) else {
        eprintln!("skipped: runs in make test's object store pass (FACULTY_TEST_BLOB_URL)");
        return;
    };
    let app = sb.app();
    let id = upload_task(&app, "zoo/tasks/mnist_10way_5shot.npz").await;
    get(&app, &format!("/v1/datasets/{id}/samples"))
        .await
        .expect(200);
    let sha = get(&app, &format!("/v1/datasets/{id}"))
        .await
        .expect(200)
        .json()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // another client of the same bucket replaces the rows (its own cache directory); pixels are kept
    // one byte each
    let other = tempfile::tempdir().unwrap();
    let tamper = faculty::store::Blobs::open(Some(&blob_url), other.path(), 16).unwrap();
    let key = format!("datasets/{sha}.px8");
    assert!(tamper.exists(&key).unwrap(), "{key}");
    let mut rows = std::fs::read(tamper.path(&key, None).unwrap()).unwrap();
    rows[0] ^= 0x40;
    tamper.delete(&key).unwrap();
    assert!(tamper.put(&key, &rows).unwrap());
    // this server's cached copy ages out (as on another machine, or after eviction)
    std::fs::remove_file(sb.state().join("blob-cache").join(&key)).unwrap();
    let r = get(&app, &format!("/v1/datasets/{id}/samples")).await;
    assert_eq!(
        r.status.as_u16(),
        500,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        !sb.state().join("blob-cache").join(&key).exists(),
        "a refused blob is never cached"
    );
    // the record is intact
    get(&app, &format!("/v1/datasets/{id}")).await.expect(200);
}

/// The work queue on PostgreSQL: eight processes claiming at once (FOR UPDATE SKIP LOCKED) each get
/// different items, every item once, oldest first; a held item is nobody else's until its holder lets it
/// go.
#[test]
fn the_work_queue_hands_each_item_to_exactly_one_claimer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = test_database_url(dir.path()) else {
        eprintln!("skipped: runs in make test's PostgreSQL pass (FACULTY_TEST_DATABASE_URL)");
        return;
    };
    let store = faculty::store::Store::connect(&url).unwrap();
    let lease = |owner: &str| {
        faculty::jobs::lease::Leases::open(&store, "conformance_queue", owner.into()).unwrap()
    };
    let first = lease("first");
    assert!(first.is_queue());
    let items: Vec<String> = (0..40).map(|i| format!("item-{i:02}")).collect();
    for id in &items {
        first.enqueue(id).unwrap();
    }
    first.enqueue("item-00").unwrap(); // twice: still one item
    assert_eq!(
        first.claim_next().unwrap().as_deref(),
        Some("item-00"),
        "oldest first"
    );
    let claimed: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|k| {
                let mine = lease(&format!("p{k}"));
                s.spawn(move || {
                    std::iter::from_fn(|| mine.claim_next().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = claimed.clone();
    sorted.sort();
    assert_eq!(sorted, items[1..], "every other item once, none twice");
    // held items are nobody else's; a released one is gone; one held by nobody is free again
    let (a, b) = (lease("p0"), lease("intruder"));
    assert!(b.claim_next().unwrap().is_none());
    assert!(!b.claim(&claimed[0]).unwrap(), "held by its claimer");
    assert!(first.held_elsewhere("item-01").unwrap());
    assert!(!b.renew("item-00").unwrap(), "only the holder renews");
    assert!(first.renew("item-00").unwrap());
    first.release("item-00").unwrap();
    assert!(!a.held_elsewhere("item-00").unwrap());
    b.enqueue("late").unwrap();
    assert_eq!(b.claim_next().unwrap().as_deref(), Some("late"));
    assert!(a.held_elsewhere("late").unwrap());
    b.forget("late").unwrap();
    assert!(!a.held_elsewhere("late").unwrap());
}
