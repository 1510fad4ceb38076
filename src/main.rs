//! The `faculty` command: the server, the script-friendly commands that work without one, and (with
//! `--server URL`) the same commands against a running server (`cli::remote`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faculty::{Config, onnx, store::Store, zoo};

mod cli;

use cli::print::{Bar, print_card, print_ranking, print_table};

#[derive(Parser)]
#[command(
    name = "faculty",
    version,
    about = "Find the most related ONNX teacher for a task and distill a student from it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A running faculty server (e.g. http://127.0.0.1:8080): zoo list / upload / download, datasets,
    /// rank, distill, jobs and students then talk to it over REST instead of opening local files.
    #[arg(long, global = true, env = "FACULTY_SERVER")]
    server: Option<String>,
    /// The server's API token (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "FACULTY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API over a zoo directory.
    Serve(Config),
    /// Run distillation jobs from the shared queue, without serving HTTP: any number of workers, on any
    /// machine that reaches the database (--database-url) and the blobs (--blob-url, or a shared data
    /// directory). Servers started with --max-jobs 0 leave every job to them.
    Worker(Config),
    /// Look at a zoo without a server.
    #[command(subcommand)]
    Zoo(ZooCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// A server's task datasets (needs --server).
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// A server's stored rankings and label maps (needs --server).
    #[command(subcommand)]
    Rankings(RankingsCommand),
    /// A server's distillation jobs (needs --server).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// A server's students (needs --server).
    #[command(subcommand)]
    Students(StudentsCommand),
    /// Rank a zoo's teachers for a dataset file (.npz, .csv or .zip of image folders), locally or (with
    /// --server) on a server.
    Rank {
        #[command(flatten)]
        task: TaskArgs,
        /// Only these teachers (comma-separated ids).
        #[arg(long, value_delimiter = ',')]
        teachers: Option<Vec<String>>,
        /// Only these metrics (comma-separated).
        #[arg(long, value_delimiter = ',')]
        metrics: Option<Vec<String>>,
        /// The metric that orders the teachers.
        #[arg(long)]
        primary_metric: Option<String>,
        /// Print JSON (the same ranking object as the REST API).
        #[arg(long)]
        json: bool,
    },
    /// Distill a student from a dataset file, locally or (with --server) as a job on a server, with a
    /// progress bar; writes the ONNX file and its card (`<out>.card.json`).
    Distill {
        #[command(flatten)]
        task: TaskArgs,
        #[command(flatten)]
        how: DistillArgs,
        /// Where to write the student.
        #[arg(long, default_value = "student.onnx")]
        out: PathBuf,
        /// Print the card as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Load and run an uploaded model apart from the server (the server starts this itself and watches
    /// its memory and time; prints what it measured as JSON).
    #[command(name = faculty::zoo::check::SUBCOMMAND, hide = true)]
    CheckModel {
        model: PathBuf,
        /// The model's card (JSON text).
        #[arg(long)]
        card: Option<String>,
        /// The inference budget batches are planned under, bytes (0: none).
        #[arg(long, default_value_t = 0)]
        budget_bytes: u64,
        #[arg(long, default_value_t = 1024)]
        infer_batch: usize,
    },
    /// Mutation-fuzz every parser of user bytes (npy, npz, csv, image zip, ONNX, cards); exits non-zero
    /// on a finding and writes each finding's input to --out.
    Fuzz {
        /// Inputs per parser.
        #[arg(long, default_value_t = 100_000)]
        iterations: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// An input slower than this is a finding (a hang), ms.
        #[arg(long, default_value_t = 5000)]
        slow_ms: u64,
        /// Only these parsers (comma-separated: npy, npz, csv, image zip, onnx, card).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        #[arg(long, default_value = "fuzz-findings")]
        out: PathBuf,
    },
    /// Distill on every ground-truth task (the chosen methods with teacher auto, and scratch) and print
    /// test accuracies; with --truth, measure a ground truth with faculty's own distiller.
    EvalDistill {
        /// Zoo directory.
        #[arg(long, env = "FACULTY_ZOO", default_value = "zoo/teachers")]
        zoo: PathBuf,
        /// The ground-truth file written by zoo/ground_truth.py.
        #[arg(long, default_value = "zoo/ground_truth.json")]
        ground_truth: PathBuf,
        #[arg(long, default_value = "mlp:256")]
        student: String,
        /// Only these tasks (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tasks: Option<Vec<String>>,
        /// Distill on the first N draws of labeled shots of each task.
        #[arg(long, default_value_t = 3)]
        draws: usize,
        /// Also distill with a forced teacher: TASK=TEACHER (repeatable).
        #[arg(long = "with")]
        with: Vec<String>,
        /// Methods run with teacher auto beside scratch (comma-separated: kd, faculty, transfer, auto,
        /// multihop; `METHOD+profweight` or `METHOD+sratio` adds sample weights, `METHOD+auto` tries
        /// each weighting and keeps the best, as `weighting: auto`).
        #[arg(long, value_delimiter = ',', default_value = "faculty")]
        methods: Vec<String>,
        /// Training settings as JSON for every run, e.g. '{"ot_epsilon": 0.1}'.
        #[arg(long)]
        config: Option<String>,
        /// Instead of each task's draws of few shots: N labeled rows per draw, sampled from the task's
        /// rows (seeded by the draw), with up to 500 others as the unlabeled pool; tasks with too few
        /// rows are left out.
        #[arg(long)]
        labeled: Option<usize>,
        /// The unlabeled pool of every draw: up to N of the task's rows that are not the draw's labeled
        /// ones (a seeded sample), instead of the draw's own pool (or 500 with --labeled).
        #[arg(long)]
        pool: Option<usize>,
        /// Instead: measure a ground truth with faculty's own distiller (a faculty student from every
        /// teacher the ground truth lists, per task and draw) and write it to this file, for
        /// `eval-ranking --ground-truth`.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Write every draw's card into this folder (`TASK.METHOD.DRAW.card.json`).
        #[arg(long)]
        cards: Option<PathBuf>,
        /// Multihop settings as JSON for the multihop runs, e.g. '{"max_time_factor": 0}' (default: the
        /// product's).
        #[arg(long)]
        multihop: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Judge every ranking metric against the measured ground truth (zoo/ground_truth.json).
    EvalRanking {
        /// Zoo directory.
        #[arg(long, env = "FACULTY_ZOO", default_value = "zoo/teachers")]
        zoo: PathBuf,
        /// The ground-truth file written by zoo/ground_truth.py.
        #[arg(long, default_value = "zoo/ground_truth.json")]
        ground_truth: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How to distill: the job's settings, locally or on a server.
#[derive(clap::Args)]
struct DistillArgs {
    /// scratch, kd, faculty, transfer, auto (the best of kd / faculty / transfer on validation),
    /// multihop or multi_teacher.
    #[arg(long, default_value = "faculty")]
    method: String,
    /// multi_teacher: teacher ids (comma-separated) or auto:K (the K best of the ranking that are
    /// expected to help).
    #[arg(long)]
    teachers: Option<String>,
    /// multi_teacher: mean, weighted, plurality, borda, loss_avg, mimic_all or auto (each, the best
    /// on validation).
    #[arg(long)]
    fusion: Option<String>,
    /// weight_fusion settings as JSON, e.g. '{"align": "weights", "fine_tune_epochs": 0}'.
    #[arg(long)]
    weight_fusion: Option<String>,
    /// Sample weights from probes on the teacher's layers: none, profweight, sratio, or auto (each
    /// tried for the teacher's hop, the best on validation kept).
    #[arg(long, default_value = "none")]
    weighting: String,
    /// Multihop settings as JSON, e.g. '{"max_hops": 2, "candidates": ["mlp:64", "mlp:16"]}';
    /// candidates may name zoo models ('["letters_mlp", "mlp:16"]') or be "zoo".
    #[arg(long)]
    multihop: Option<String>,
    /// A teacher id, or auto (the ranking's recommendation).
    #[arg(long, default_value = "auto")]
    teacher: String,
    /// linear, mlp[:W1,W2][:relu|tanh|sigmoid], cnn[:C1,C2][:HIDDEN] or tree[:DEPTH] (default
    /// mlp:256; weight_fusion: the teachers' own architecture).
    #[arg(long)]
    student: Option<String>,
    /// Training settings as JSON, e.g. '{"max_epochs": 50, "seed": 3}'.
    #[arg(long)]
    config: Option<String>,
}

/// A zoo and a task dataset file, as the one-shot commands take them.
#[derive(clap::Args)]
struct TaskArgs {
    /// Zoo directory.
    #[arg(long, env = "FACULTY_ZOO", default_value = "zoo/teachers")]
    zoo: PathBuf,
    /// The task's dataset file (.npz, .csv or .zip of image folders); with --server also the id of a
    /// stored dataset (ds_...).
    #[arg(long)]
    dataset: PathBuf,
    /// CSV: the label column.
    #[arg(long)]
    label_column: Option<String>,
    /// Class names as a JSON list (npz: index i names class i).
    #[arg(long)]
    labels: Option<String>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum ZooCommand {
    /// List the teachers of a zoo directory.
    List {
        /// Zoo directory.
        #[arg(long, env = "FACULTY_ZOO", default_value = "zoo/teachers")]
        zoo: PathBuf,
        /// Print JSON (the same teacher objects as the REST API).
        #[arg(long)]
        json: bool,
    },
    /// Upload an ONNX classifier to a server's zoo (needs --server and an admin token where tokens are
    /// configured).
    Upload {
        file: PathBuf,
        /// Version (default 1).
        #[arg(long)]
        version: Option<String>,
        /// Class names as a JSON list.
        #[arg(long)]
        labels: Option<String>,
        /// Name (default: the file name without .onnx).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a teacher's ONNX file from a server (sha256 checked; needs --server).
    Download {
        id: String,
        /// Where to write it (default: <id>.onnx).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import a zoo directory (flat `*.onnx` and/or `<name>/<version>/model.onnx`, with cards) into the
    /// object store (--blob-url) and the shared catalog (--database-url), so servers and workers on any
    /// machine use its teachers without a copy of the directory. Replaces catalog entries of the same id.
    Push {
        /// The zoo directory to import.
        dir: PathBuf,
        #[command(flatten)]
        config: faculty::config::Config,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect one ONNX file: signature, labels, parameters, and whether faculty can use it.
    Inspect {
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Upload a dataset file (.npz, .csv or .zip of image folders).
    Upload {
        file: PathBuf,
        /// CSV: the label column.
        #[arg(long)]
        label_column: Option<String>,
        /// Class names as a JSON list.
        #[arg(long)]
        labels: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the stored datasets, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// At most this many datasets (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum RankingsCommand {
    /// List stored rankings, newest first.
    List {
        /// Only this dataset's.
        #[arg(long)]
        dataset: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// At most this many rankings (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a stored ranking.
    Show {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A teacher's label map on a ranking's dataset: which of its classes teach which of the task's.
    LabelMap {
        id: String,
        teacher: String,
        /// Print JSON (with the transport plan, P(task class | teacher class) and the OT cost).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many jobs (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One job's state; with --follow, a progress bar until it finishes.
    Status {
        id: String,
        /// Follow the job's events until it finishes.
        #[arg(long)]
        follow: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job.
    Cancel { id: String },
}

#[derive(Subcommand)]
enum StudentsCommand {
    /// List students, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// At most this many students (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Download a student's ONNX file (sha256 checked) and its card (`<out>.card.json`).
    Download {
        id: String,
        /// Where to write it (default: <id>.onnx).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the card as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A zoo indexed into a throwaway store, so a one-shot command never fights a server for the database.
fn open_zoo(dir: &std::path::Path) -> faculty::Result<zoo::Zoo> {
    onnx::environment()?;
    let store = Store::temporary()?;
    let z = zoo::Zoo::open(
        dir,
        &store,
        std::sync::Arc::new(onnx::SessionPool::new(0)),
        1024,
    )?;
    z.rescan()?;
    Ok(z)
}

/// `faculty zoo push`: the directory's teachers into the configured object store and catalog.
fn push_zoo(
    config: &faculty::config::Config,
    dir: &std::path::Path,
) -> faculty::Result<zoo::RescanReport> {
    let (Some(_), Some(url)) = (&config.database_url, &config.blob_url) else {
        return Err(faculty::Error::invalid_input(
            "zoo push needs the shared state (--database-url) and object store (--blob-url) to push into",
        ));
    };
    onnx::environment()?;
    let store = Store::from_config(config.database_url.as_deref(), &config.data_dir)?;
    let blobs = faculty::store::Blobs::open(Some(url), &config.data_dir, config.blob_cache_mb)?;
    let z = zoo::Zoo::open(
        dir,
        &store,
        std::sync::Arc::new(onnx::SessionPool::new(config.intra_threads)),
        config.infer_batch,
    )?
    .with_blobs(std::sync::Arc::new(blobs));
    z.push(dir)
}

/// The task's dataset file parsed the way the server parses an upload, and the test split it may carry
/// (npz `x_test` / `y_test`); `uint8` pixels stay bytes.
fn read_parsed(
    task: &TaskArgs,
) -> faculty::Result<(faculty::data::Parsed, Option<faculty::data::Parsed>)> {
    let path = &task.dataset;
    let file = std::fs::File::open(path)
        .map_err(|e| faculty::Error::invalid_input(format!("{}: {e}", path.display())))?;
    let mut src = std::io::BufReader::new(file);
    let labels = task
        .labels
        .as_deref()
        .map(|l| {
            zoo::teacher::parse_labels(l).ok_or_else(|| {
                faculty::Error::invalid_input("--labels must be a JSON list of class names")
            })
        })
        .transpose()?;
    let opts = faculty::data::ParseOptions {
        label_column: task.label_column.clone(),
        labels,
        max_bytes: 4 << 30,
    };
    let name = path.file_name().and_then(|s| s.to_str());
    let format = faculty::data::Format::detect_from(name, &mut src)?;
    faculty::data::parse_upload(format, src, &opts)
}

/// The job a `distill` command asks for (dataset id left empty), named after the dataset file.
fn distill_request(
    how: &DistillArgs,
    task: &TaskArgs,
) -> faculty::Result<faculty::distill::DistillRequest> {
    let method: faculty::distill::Method =
        serde_json::from_value(serde_json::Value::String(how.method.clone())).map_err(|_| {
            faculty::Error::invalid_input(format!(
                "unknown method '{}'; use scratch, kd, faculty, transfer, auto, multihop, \
             multi_teacher or weight_fusion",
                how.method
            ))
        })?;
    let mut req = faculty::distill::DistillRequest::new(
        "",
        method,
        &how.teacher,
        how.student.as_deref().unwrap_or("mlp:256"),
    );
    if how.student.is_none() && method == faculty::distill::Method::WeightFusion {
        req.student = None;
    }
    req.config = parse_config(how.config.clone())?;
    req.weighting = serde_json::from_value(serde_json::Value::String(how.weighting.clone()))
        .map_err(|_| {
            faculty::Error::invalid_input(format!(
                "unknown weighting '{}'; use none, profweight, sratio or auto",
                how.weighting
            ))
        })?;
    req.teachers = how.teachers.clone().map(|t| {
        if t.starts_with("auto:") {
            faculty::distill::TeacherSet::Text(t)
        } else {
            faculty::distill::TeacherSet::Ids(t.split(',').map(|s| s.trim().to_string()).collect())
        }
    });
    req.fusion = how
        .fusion
        .as_ref()
        .map(|f| {
            serde_json::from_value(serde_json::Value::String(f.to_string())).map_err(|_| {
                faculty::Error::invalid_input(format!(
                    "unknown fusion '{f}'; use mean, weighted, plurality, borda, loss_avg, \
                     mimic_all or auto"
                ))
            })
        })
        .transpose()?;
    req.weight_fusion = how
        .weight_fusion
        .as_ref()
        .map(|m| {
            serde_json::from_str(m).map_err(|e| {
                faculty::Error::invalid_input(format!("--weight-fusion is not valid: {e}"))
            })
        })
        .transpose()?;
    req.multihop = parse_multihop(how.multihop.as_deref())?;
    req.name = task
        .dataset
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| format!("{s} {}", method.as_str()));
    Ok(req)
}

/// `--multihop JSON` (distill and eval-distill).
fn parse_multihop(
    json: Option<&str>,
) -> faculty::Result<Option<faculty::distill::MultihopOptions>> {
    json.map(|m| {
        serde_json::from_str(m)
            .map_err(|e| faculty::Error::invalid_input(format!("--multihop is not valid: {e}")))
    })
    .transpose()
}

/// Training settings from a `--config` JSON string (defaults when absent).
fn parse_config(config: Option<String>) -> faculty::Result<faculty::distill::TrainConfig> {
    match config {
        Some(c) => serde_json::from_str(&c)
            .map_err(|e| faculty::Error::invalid_input(format!("--config: {e}"))),
        None => Ok(Default::default()),
    }
}

fn run(cli: Cli) -> faculty::Result<()> {
    let client = cli
        .server
        .as_deref()
        .map(|url| faculty::client::Client::new(url, cli.token.clone()))
        .transpose()?;
    let needs_server = |what: &str| {
        faculty::Error::invalid_input(format!(
            "`faculty {what}` talks to a server: pass --server URL (or set FACULTY_SERVER)"
        ))
    };
    match cli.command {
        Command::Datasets(cmd) => {
            cli::remote::datasets(&client.ok_or_else(|| needs_server("datasets"))?, cmd)
        }
        Command::Rankings(cmd) => {
            cli::remote::rankings(&client.ok_or_else(|| needs_server("rankings"))?, cmd)
        }
        Command::Jobs(cmd) => cli::remote::jobs(&client.ok_or_else(|| needs_server("jobs"))?, cmd),
        Command::Students(cmd) => {
            cli::remote::students(&client.ok_or_else(|| needs_server("students"))?, cmd)
        }
        Command::Zoo(ZooCommand::Upload {
            file,
            version,
            labels,
            name,
            json,
        }) => cli::remote::zoo_upload(
            &client.ok_or_else(|| needs_server("zoo upload"))?,
            &file,
            version,
            labels,
            name,
            json,
        ),
        Command::Zoo(ZooCommand::Push { dir, config, json }) => {
            let report = push_zoo(&config, &dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "pushed {}: {} added, {} changed, {} unchanged, {} refused",
                    dir.display(),
                    report.added.len(),
                    report.changed.len(),
                    report.unchanged,
                    report.failed.len()
                );
                for f in &report.failed {
                    println!("  {}: {}", f.id, f.reason);
                }
            }
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(faculty::Error::invalid_model(format!(
                    "{} teachers were not usable and were not pushed",
                    report.failed.len()
                )))
            }
        }
        Command::Zoo(ZooCommand::Download { id, out }) => cli::remote::zoo_download(
            &client.ok_or_else(|| needs_server("zoo download"))?,
            &id,
            out,
        ),
        Command::Serve(config) => until_signal(faculty::api::serve(config)),
        Command::Worker(config) => until_signal(faculty::api::work(config)),
        Command::Openapi => {
            println!("{}", faculty::api::openapi::document());
            Ok(())
        }
        Command::Rank {
            task,
            teachers,
            metrics,
            primary_metric,
            json,
        } => {
            if let Some(c) = client {
                return cli::remote::rank(&c, &task, teachers, metrics, primary_metric, json);
            }
            // a big file's rows become floats only where the ranking's sample reads them
            let rows = faculty::rank::RankRows::from_parsed(read_parsed(&task)?.0);
            let z = open_zoo(&task.zoo)?;
            let req = faculty::rank::RankRequest {
                dataset_id: String::new(),
                teachers,
                metrics,
                primary_metric,
                recompute_scores: false,
            };
            let r = faculty::rank::rank(&z, None, &rows, &req)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_ranking(&r);
            }
            Ok(())
        }
        Command::Distill {
            task,
            how,
            out,
            json,
        } => {
            if let Some(c) = client {
                return cli::remote::distill(&c, &task, &how, &out, json);
            }
            let (ds, test) = read_parsed(&task)?;
            let mut req = distill_request(&how, &task)?;
            let z = open_zoo(&task.zoo)?;
            let store = Store::temporary()?;
            let cache = faculty::rank::OutputCache::open(&store)?;
            let sha = ds.sha256();
            req.dataset_id = faculty::data::dataset_id(&sha);
            let mut bar = Bar {
                last: std::time::Instant::now(),
            };
            let data = faculty::distill::TaskData {
                ds: &ds,
                sha256: &sha,
                test: test.as_ref().map(|t| faculty::distill::TestRows {
                    dataset_id: "the file's x_test / y_test".into(),
                    ds: t,
                }),
            };
            let outcome = faculty::distill::run(&z, &cache, &data, &req, None, &mut bar)?
                .ok_or_else(|| faculty::Error::internal("cancelled"))?;
            std::fs::write(&out, &outcome.onnx)?;
            for (k, inter) in outcome.intermediates.iter().enumerate() {
                std::fs::write(
                    out.with_extension(format!("hop{}.onnx", k + 1)),
                    &inter.onnx,
                )?;
            }
            let card_path = out.with_extension("card.json");
            std::fs::write(&card_path, serde_json::to_vec_pretty(&outcome.card)?)?;
            print_card(&outcome.card, &out, &card_path, json)
        }
        Command::CheckModel {
            model,
            card,
            budget_bytes,
            infer_batch,
        } => {
            let report = zoo::check::child(&model, card.as_deref(), budget_bytes, infer_batch)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Fuzz {
            iterations,
            seed,
            slow_ms,
            only,
            out,
        } => {
            let models = [
                "zoo/teachers/letters_logreg.onnx",
                "zoo/teachers/letters_mlp.onnx",
            ]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
            let mut found = 0;
            println!("| parser | inputs | slowest | findings |\n|---|---:|---:|---:|");
            let corpus = faculty::fuzz::synthetic_corpus(models);
            let web = faculty::fuzz::multipart_target(&corpus)?;
            for t in faculty::fuzz::targets(corpus).into_iter().chain([web]) {
                if only
                    .as_ref()
                    .is_some_and(|o| !o.iter().any(|n| n == t.name))
                {
                    continue;
                }
                let s = faculty::fuzz::run(
                    &t,
                    iterations,
                    seed,
                    std::time::Duration::from_millis(slow_ms),
                );
                println!(
                    "| {} | {} | {:.1} ms | {} |",
                    s.target,
                    s.inputs,
                    s.slowest.as_secs_f64() * 1e3,
                    s.findings.len()
                );
                for f in &s.findings {
                    std::fs::create_dir_all(&out)?;
                    let p = out.join(format!(
                        "{}-{}.bin",
                        f.target.replace(' ', "_"),
                        f.iteration
                    ));
                    std::fs::write(&p, &f.input)?;
                    eprintln!(
                        "finding in {} at input {}: {} ({})",
                        f.target,
                        f.iteration,
                        f.what,
                        p.display()
                    );
                }
                found += s.findings.len();
            }
            if found > 0 {
                return Err(faculty::Error::internal(format!("{found} fuzz findings")));
            }
            Ok(())
        }
        Command::EvalDistill {
            zoo: dir,
            ground_truth,
            student,
            tasks,
            draws,
            with,
            methods,
            config,
            labeled,
            pool,
            truth,
            cards,
            multihop,
            json,
        } => {
            let z = open_zoo(&dir)?;
            let word = |w: &str| serde_json::Value::String(w.to_string());
            let methods = methods
                .iter()
                .map(|m| {
                    let (method, weighting) = m.split_once('+').unwrap_or((m, "none"));
                    let bad = || faculty::Error::invalid_input(format!("unknown method '{m}'"));
                    Ok((
                        serde_json::from_value(word(method)).map_err(|_| bad())?,
                        serde_json::from_value(word(weighting)).map_err(|_| bad())?,
                    ))
                })
                .collect::<faculty::Result<Vec<_>>>()?;
            let scope = faculty::distill::eval::Scope {
                tasks,
                draws,
                methods,
                labeled,
                pool,
                cards,
                multihop: parse_multihop(multihop.as_deref())?,
            };
            if scope.multihop.is_some()
                && !scope
                    .methods
                    .iter()
                    .any(|m| m.0 == faculty::distill::Method::Multihop)
            {
                return Err(faculty::Error::invalid_input(
                    "--multihop sets the multihop runs' settings: add multihop to --methods",
                ));
            }
            if let Some(d) = &scope.cards {
                std::fs::create_dir_all(d)?;
            }
            let config = parse_config(config)?;
            if let Some(out) = truth {
                // the task data stays where it is; the new file names that folder relative to itself
                let data = std::path::absolute(faculty::rank::eval::task_dir(&ground_truth)?)?;
                let home = std::path::absolute(&out)?;
                let home = home.parent().unwrap_or(std::path::Path::new("/"));
                let data = data.strip_prefix(home).unwrap_or(&data);
                let t = faculty::distill::eval::truth(
                    &z,
                    &ground_truth,
                    &data.to_string_lossy(),
                    &student,
                    &config,
                    &scope,
                    |t| eprintln!("{t} ..."),
                )?;
                std::fs::write(&out, serde_json::to_vec_pretty(&t)?)?;
                eprintln!("wrote {}", out.display());
                return Ok(());
            }
            let extra = with
                .iter()
                .map(|w| {
                    w.split_once('=')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| faculty::Error::invalid_input("--with takes TASK=TEACHER"))
                })
                .collect::<faculty::Result<Vec<_>>>()?;
            let lines = faculty::distill::eval::evaluate(
                &z,
                &ground_truth,
                &student,
                &config,
                &scope,
                &extra,
                |t| eprintln!("{t} ..."),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                print!("{}", faculty::distill::eval::render(&lines));
            }
            Ok(())
        }
        Command::EvalRanking {
            zoo: dir,
            ground_truth,
            json,
        } => {
            let z = open_zoo(&dir)?;
            let report = faculty::rank::eval::evaluate(&z, &ground_truth, |t| {
                eprintln!("evaluating {t} ...")
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", faculty::rank::eval::render(&report));
            }
            Ok(())
        }
        Command::Zoo(ZooCommand::List { zoo: dir, json }) => {
            if let Some(c) = client {
                return cli::remote::zoo_list(&c, json);
            }
            let z = open_zoo(&dir)?;
            let all = z.all()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "teachers": all }))?
                );
            } else {
                print_table(&all);
            }
            Ok(())
        }
        Command::Zoo(ZooCommand::Inspect { file, json }) => {
            onnx::environment()?;
            let bytes = std::fs::read(&file)
                .map_err(|e| faculty::Error::invalid_input(format!("{}: {e}", file.display())))?;
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("model")
                .to_string();
            let card_path = file.with_file_name(format!("{stem}.card.json"));
            let card = std::fs::read_to_string(&card_path).ok();
            let ident = zoo::teacher::Ident {
                id: zoo::scan::teacher_id(&stem, None),
                name: stem,
                version: "1".into(),
                path: file.display().to_string(),
            };
            let t = zoo::inspect(&bytes, ident, card.as_deref(), 0).teacher;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print_table(std::slice::from_ref(&t));
                for w in &t.warnings {
                    println!("warning: {w}");
                }
            }
            if t.usable {
                Ok(())
            } else {
                Err(faculty::Error::invalid_model(t.reason.unwrap_or_default()))
            }
        }
    }
}

/// The runtime of the long-running commands (serve, worker). 8 MiB stacks: LAPACK routines keep large
/// buffers on the stack of the blocking threads.
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
}

/// Runs a server or worker until SIGINT / SIGTERM, then exits within seconds. Dropping the runtime would
/// wait for every blocking task, and a running job is one: a SIGTERMed server went on training until its
/// job ended (minutes to hours). A job stopped here is resumed from its last checkpoint by the next start
/// (or, sharing a database, by another process once its lease lapses), as after a kill.
fn until_signal(
    serve: impl std::future::Future<Output = faculty::Result<()>>,
) -> faculty::Result<()> {
    let runtime = server_runtime()?;
    let out = runtime.block_on(serve);
    tracing::info!("shutting down: running jobs resume from their checkpoints on the next start");
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    out
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "faculty=info,tower_http=info,ort=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        // a command piped into `head` ends quietly, as Unix tools do, instead of panicking on the
        // closed pipe (the server keeps Rust's default: a socket's EPIPE is an error, not a signal)
        // SAFETY: setting a signal's disposition to the default before any thread is started
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e.kind {
                faculty::ErrorKind::RuntimeUnavailable => 3,
                faculty::ErrorKind::StoreUnavailable => 4,
                faculty::ErrorKind::InvalidInput
                | faculty::ErrorKind::InvalidModel
                | faculty::ErrorKind::NotFound => 2,
                _ => 1,
            })
        }
    }
}
