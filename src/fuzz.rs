//! Mutation fuzzing of every parser that takes user bytes: npy / npz, csv, image zips, ONNX models and
//! their sidecar cards. Inputs are seeded mutations of real files (bit flips, interesting bytes, inserted,
//! deleted, duplicated and spliced ranges, truncations); each parser must return `Ok` or an error for
//! every one: a panic or an input that takes longer than `slow` is a finding, kept with the seed that
//! reproduces it. Memory is bounded by the parsers' own budgets (a small `max_bytes` here). The short run
//! is in the tests; `cargo run --release -- fuzz --iterations 100000` is the long one.
use std::time::{Duration, Instant};

use crate::data::{Format, ParseOptions};

/// A parser run on one input; what it returns is ignored (only a panic or a hang is a finding).
pub type Parse = Box<dyn Fn(&[u8]) + Send + Sync>;

/// A parser under test: a name and a function from bytes to "it answered" (its result is ignored).
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub run: Parse,
}

/// What went wrong on one input.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: &'static str,
    pub iteration: u64,
    pub what: String,
    pub input: Vec<u8>,
}

/// A run's summary for one target.
#[derive(Debug, Clone)]
pub struct Summary {
    pub target: &'static str,
    pub inputs: u64,
    pub slowest: Duration,
    pub findings: Vec<Finding>,
}

/// SplitMix64: small, seeded, good enough to drive mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'0', b'-', b',', b'\n', b'"', b'(', b')', b'\'',
];

/// One mutated input from the seeds.
fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let n = v.len();
        match rng.below(8) {
            0 if n > 0 => {
                let i = rng.below(n);
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(n + 1);
                let k = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            3 if n > 0 => {
                let i = rng.below(n);
                let k = 1 + rng.below((n - i).min(64));
                v.drain(i..i + k);
            }
            4 if n > 0 => {
                let i = rng.below(n);
                let k = 1 + rng.below((n - i).min(64));
                let dup = v[i..i + k].to_vec();
                let at = rng.below(n + 1);
                v.splice(at..at, dup);
            }
            5 if n > 0 => v.truncate(rng.below(n)),
            6 => {
                // splice the tail of another seed
                let other = &seeds[rng.below(seeds.len())];
                let i = rng.below(n + 1);
                let j = rng.below(other.len() + 1);
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            _ if n >= 4 => {
                // a little-endian length or count field blown up
                let i = rng.below(n - 3);
                let val = [0u32, 1, 0xffff, 0x7fff_ffff, 0xffff_ffff][rng.below(5)];
                v[i..i + 4].copy_from_slice(&val.to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

/// Runs `iterations` mutated inputs through the target; `slow` marks an input that took too long.
pub fn run(target: &Target, iterations: u64, seed: u64, slow: Duration) -> Summary {
    let mut rng = Rng(seed ^ 0x00FA_C017);
    let mut summary = Summary {
        target: target.name,
        inputs: 0,
        slowest: Duration::ZERO,
        findings: vec![],
    };
    // the seeds themselves first
    let mut inputs: Box<dyn Iterator<Item = Vec<u8>>> = Box::new(target.seeds.clone().into_iter());
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..iterations {
        let input = inputs
            .next()
            .unwrap_or_else(|| mutate(&target.seeds, &mut rng));
        let start = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(&input)));
        let took = start.elapsed();
        summary.inputs += 1;
        summary.slowest = summary.slowest.max(took);
        let what = match r {
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(()) if took > slow => Some(format!("slow: {took:?}")),
            Ok(()) => None,
        };
        if let Some(what) = what {
            summary.findings.push(Finding {
                target: target.name,
                iteration: i,
                what,
                input,
            });
            if summary.findings.len() >= 10 {
                break;
            }
        }
    }
    std::panic::set_hook(prev);
    summary
}

fn dataset_target(name: &'static str, format: Format, seeds: Vec<Vec<u8>>) -> Target {
    let opts = ParseOptions {
        max_bytes: 16 << 20,
        ..Default::default()
    };
    Target {
        name,
        seeds,
        run: Box::new(move |b| {
            let _ = crate::data::parse_with_test(format, std::io::Cursor::new(b), &opts);
        }),
    }
}

/// Every parser of user bytes, seeded with the given files (npy, npz, csv, image zip, ONNX, card).
pub struct Corpus {
    pub npy: Vec<Vec<u8>>,
    pub npz: Vec<Vec<u8>>,
    pub csv: Vec<Vec<u8>>,
    pub zip: Vec<Vec<u8>>,
    pub onnx: Vec<Vec<u8>>,
    pub cards: Vec<Vec<u8>>,
}

pub fn targets(c: Corpus) -> Vec<Target> {
    let onnx_seeds = c.onnx.clone();
    let card_model = c.onnx.first().cloned().unwrap_or_default();
    let ident = || crate::zoo::teacher::Ident {
        id: "fuzz".into(),
        name: "fuzz".into(),
        version: "1".into(),
        path: "fuzz.onnx".into(),
    };
    vec![
        Target {
            name: "npy",
            seeds: c.npy,
            run: Box::new(|b| {
                let _ = crate::data::npz::parse_npy(b).map(|a| a.to_f32());
            }),
        },
        dataset_target("npz", Format::Npz, c.npz),
        dataset_target("csv", Format::Csv, c.csv),
        dataset_target("image zip", Format::Zip, c.zip),
        Target {
            name: "onnx",
            seeds: onnx_seeds,
            run: Box::new(move |b| {
                // what an upload goes through: the graph read for value-sized tensors, then inspected
                if let Ok(m) = crate::onnx::graph::decode(b) {
                    let _ = crate::onnx::sizes::value_dependent(&m);
                }
                let _ = crate::zoo::teacher::inspect(b, ident(), None, 1);
            }),
        },
        Target {
            name: "card",
            seeds: c.cards,
            run: Box::new(move |b| {
                let card = String::from_utf8_lossy(b);
                let _ = crate::zoo::teacher::inspect(&card_model, ident(), Some(&card), 1);
            }),
        },
    ]
}

/// A `.npy` file: a header for `descr` and `shape` (padded as NumPy pads it), then the raw data.
pub fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (h.len() + 11) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(data);
    out
}

/// A zip archive of the members, deflated or stored.
pub fn zip(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = ::zip::write::SimpleFileOptions::default().compression_method(if deflate {
        ::zip::CompressionMethod::Deflated
    } else {
        ::zip::CompressionMethod::Stored
    });
    for (name, bytes) in members {
        w.start_file(*name, opts).expect("zip member");
        std::io::Write::write_all(&mut w, bytes).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

fn png(seed: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y * 3) as u8 ^ seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// Small valid files of every kind, built here (plus `models`: real ONNX files to add to the seeds).
pub fn synthetic_corpus(models: Vec<Vec<u8>>) -> Corpus {
    let f4: Vec<u8> = (0..24)
        .flat_map(|i| (i as f32 * 0.25).to_le_bytes())
        .collect();
    let y: Vec<u8> = [0i64, 1, -1, 1, 0, -1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let x = npy("<f4", &[6, 4], &f4);
    let yy = npy("<i8", &[6], &y);
    let labels = npy(
        "<U3",
        &[2],
        &[
            b'c', 0, 0, 0, b'a', 0, 0, 0, b't', 0, 0, 0, b'd', 0, 0, 0, b'o', 0, 0, 0, b'g', 0, 0,
            0,
        ],
    );
    let u1 = npy("|u1", &[6, 2, 2], &[7u8; 24]);
    let yt = npy("<i8", &[2], &[0u8; 16]);
    let xt = npy("<f4", &[2, 4], &f4[..32]);
    let npys = vec![x.clone(), yy.clone(), labels.clone(), u1.clone()];
    let npzs = vec![
        zip(&[("x.npy", x.clone()), ("y.npy", yy.clone())], true),
        zip(
            &[
                ("x.npy", x.clone()),
                ("y.npy", yy.clone()),
                ("labels.npy", labels),
                ("x_test.npy", xt),
                ("y_test.npy", yt),
            ],
            false,
        ),
        zip(&[("x.npy", u1), ("y.npy", yy)], true),
    ];
    let csvs = vec![
        b"a,b,label\n1,2,cat\n3,4,dog\n5,6,\n7,8,cat\n".to_vec(),
        b"f1,f2,label,split\n0.5,1e3,x,train\n-1,2,y,test\n3,\"4\",x,\n1,1,y,train\n".to_vec(),
    ];
    let zips = vec![
        zip(
            &[
                ("cat/a.png", png(1)),
                ("dog/b.png", png(2)),
                ("_unlabeled/c.png", png(3)),
                ("_test/cat/d.png", png(4)),
            ],
            true,
        ),
        zip(&[("x/1.png", png(5)), ("y/2.png", png(6))], false),
    ];
    let tiny = prost::Message::encode_to_vec(&crate::onnx::build::linear_classifier(
        &[1.0, -1.0, 0.5, 0.25],
        &[0.0, 0.1],
        2,
        &["cat", "dog"],
    ));
    let mut onnx = vec![tiny];
    onnx.extend(models);
    let cards = vec![
        br#"{"labels": ["cat", "dog"], "description": "x", "license": "MIT"}"#.to_vec(),
        br#"{"labels": [0, 1], "input_shape": [2], "extra": {"a": [1, 2]}}"#.to_vec(),
    ];
    Corpus {
        npy: npys,
        npz: npzs,
        csv: csvs,
        zip: zips,
        onnx,
        cards,
    }
}

const BOUNDARY: &str = "fuzz-boundary-1b2c";

/// A `multipart/form-data` body with `boundary`: text `fields`, then `file` with the given name and bytes
/// (what a client uploads; the tests build theirs with it too).
pub fn multipart_with(
    boundary: &str,
    name: &str,
    bytes: &[u8],
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    b.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend(bytes);
    b.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

/// Dataset and teacher uploads over real HTTP on loopback: a server on an empty zoo in a temporary
/// directory gets each mutated multipart body; any answer of 500 or more, or none within 10 s, is a
/// finding (a panic in the closure).
pub fn multipart_target(c: &Corpus) -> crate::Result<Target> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("zoo"))?;
    let mut cfg = crate::Config::new(dir.path().join("zoo"), dir.path().join("state"));
    cfg.max_upload_bytes = 4 << 20;
    let state = crate::api::AppState::open(cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    rt.spawn(async move {
        let _ = axum::serve(listener, crate::api::router(state)).await;
    });
    let mut seeds = Vec::new();
    for (name, set) in [("d.npz", &c.npz), ("d.csv", &c.csv), ("d.zip", &c.zip)] {
        for b in set {
            seeds.push(multipart_with(BOUNDARY, name, b, &[("name", "fuzz")]));
        }
    }
    seeds.push(multipart_with(
        BOUNDARY,
        "d.csv",
        &c.csv[0],
        &[("label_column", "label"), ("labels", "[\"cat\",\"dog\"]")],
    ));
    seeds.push(multipart_with(
        BOUNDARY,
        "m.onnx",
        &c.onnx[0],
        &[("version", "1"), ("labels", "[\"a\",\"b\"]")],
    ));
    Ok(Target {
        name: "multipart",
        seeds,
        run: Box::new(move |body| {
            let _keep = (&rt, &dir);
            use std::io::{Read, Write};
            let path = if body.windows(6).any(|w| w == b".onnx\"") {
                "/v1/teachers"
            } else {
                "/v1/datasets"
            };
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; \
                 boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).expect("write");
            let _ = s.write_all(body);
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            let status: u16 = String::from_utf8_lossy(&reply)
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            assert!(
                (200..500).contains(&status),
                "the server answered {status}: {}",
                String::from_utf8_lossy(&reply[..reply.len().min(300)])
            );
        }),
    })
}
