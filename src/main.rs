//! The `faculty` command: the server and the script-friendly commands that work without one.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faculty::{Config, onnx, store::Store, zoo};

#[derive(Parser)]
#[command(
    name = "faculty",
    version,
    about = "Find the most related ONNX teacher for a task and distill a student from it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API over a zoo directory.
    Serve(Config),
    /// Look at a zoo without a server.
    #[command(subcommand)]
    Zoo(ZooCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Rank a zoo's teachers for a dataset file (.npz, .csv or .zip of image folders), without a server.
    Rank {
        /// Zoo directory.
        #[arg(long, env = "FACULTY_ZOO", default_value = "zoo/teachers")]
        zoo: PathBuf,
        /// The task's dataset file.
        #[arg(long)]
        dataset: PathBuf,
        /// CSV: the label column.
        #[arg(long)]
        label_column: Option<String>,
        /// Class names as a JSON list (npz: index i names class i).
        #[arg(long)]
        labels: Option<String>,
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

#[derive(Subcommand)]
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
    /// Inspect one ONNX file: signature, labels, parameters, and whether faculty can use it.
    Inspect {
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_table(teachers: &[zoo::Teacher]) {
    println!(
        "{:<24} {:<8} {:>9} {:>8} {:<14} {:<16} LABELS",
        "ID", "USABLE", "PARAMS", "KB", "INPUT", "OUTPUT"
    );
    for t in teachers {
        let input = t
            .inputs
            .first()
            .map(|i| format!("{:?}", i.shape))
            .unwrap_or_default();
        let output = t
            .predictor
            .as_ref()
            .map(|p| match p.kind {
                onnx::OutputKind::Probabilities => p.output.clone(),
                k => format!("{} ({k:?})", p.output).to_lowercase(),
            })
            .unwrap_or_default();
        let mut labels = t
            .labels
            .iter()
            .take(6)
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        if t.labels.len() > 6 {
            labels.push_str(&format!(",… ({})", t.labels.len()));
        }
        if t.label_source == "index" && !t.labels.is_empty() {
            labels.push_str(" [indices]");
        }
        println!(
            "{:<24} {:<8} {:>9} {:>8} {:<14} {:<16} {}",
            t.id,
            if t.usable { "yes" } else { "NO" },
            t.params,
            t.bytes / 1024,
            input,
            output,
            if t.usable {
                labels
            } else {
                t.reason.clone().unwrap_or_default()
            }
        );
    }
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

fn print_ranking(r: &faculty::rank::Ranking) {
    println!(
        "dataset: {} rows ({} labeled); primary metric: {} ({} is better)",
        r.rows,
        r.labeled_rows,
        r.primary_metric,
        match r.directions.get(&r.primary_metric) {
            Some(faculty::rank::Direction::Lower) => "lower",
            _ => "higher",
        }
    );
    let cols: Vec<&String> = r.directions.keys().collect();
    print!("{:>4}  {:<24}", "RANK", "TEACHER");
    for c in &cols {
        print!(" {:>15}", c);
    }
    println!();
    for t in &r.results {
        let rank = t.rank.map_or("-".to_string(), |v| v.to_string());
        print!("{:>4}  {:<24}", rank, t.teacher_id);
        if !t.compatible {
            println!(" incompatible: {}", t.reason.as_deref().unwrap_or(""));
            continue;
        }
        for c in &cols {
            match t.scores.get(*c) {
                Some(v) => print!(" {:>15.4}", v),
                None => print!(" {:>15}", "n/a"),
            }
        }
        println!();
    }
    println!(
        "verdict: {}",
        if r.verdict.teacher_helps {
            "a teacher helps"
        } else {
            "no teacher is likely to help"
        }
    );
    println!("  {}", r.verdict.reason);
}

fn run(cli: Cli) -> faculty::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            // 8 MiB stacks: LAPACK routines keep large buffers on the stack of the blocking threads
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(8 << 20)
                .build()?;
            rt.block_on(faculty::api::serve(config))
        }
        Command::Openapi => {
            println!("{}", faculty::api::openapi::document());
            Ok(())
        }
        Command::Rank {
            zoo: dir,
            dataset,
            label_column,
            labels,
            teachers,
            metrics,
            primary_metric,
            json,
        } => {
            let bytes = std::fs::read(&dataset).map_err(|e| {
                faculty::Error::invalid_input(format!("{}: {e}", dataset.display()))
            })?;
            let labels = labels
                .map(|l| {
                    zoo::teacher::parse_labels(&l).ok_or_else(|| {
                        faculty::Error::invalid_input("--labels must be a JSON list of class names")
                    })
                })
                .transpose()?;
            let opts = faculty::data::ParseOptions {
                label_column,
                labels,
                max_bytes: 4 << 30,
            };
            let name = dataset.file_name().and_then(|s| s.to_str());
            let format = faculty::data::Format::detect(name, &bytes)?;
            let ds = faculty::data::parse(format, &bytes, &opts)?;
            let z = open_zoo(&dir)?;
            let req = faculty::rank::RankRequest {
                dataset_id: String::new(),
                teachers,
                metrics,
                primary_metric,
                recompute_scores: false,
            };
            let r = faculty::rank::rank(&z, None, &ds, &ds.sha256(), &req)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_ranking(&r);
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "faculty=info,tower_http=info,ort=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e.kind {
                faculty::ErrorKind::RuntimeUnavailable => 3,
                faculty::ErrorKind::InvalidInput
                | faculty::ErrorKind::InvalidModel
                | faculty::ErrorKind::NotFound => 2,
                _ => 1,
            })
        }
    }
}
