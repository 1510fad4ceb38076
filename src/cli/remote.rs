//! The CLI against a running server (`--server URL` or `FACULTY_SERVER`): the same tables, `--json` and
//! progress bar as the local commands, fed by the REST API (`faculty::client`). A refused request
//! prints the server's message and exits non-zero like a local error of the same kind.
use std::path::{Path, PathBuf};

use faculty::Result;
use faculty::client::Client;
use faculty::distill::{Progress, StudentCard};
use faculty::jobs::{Job, JobState};
use faculty::rank::RankingSummary;

use crate::{
    DatasetsCommand, DistillArgs, JobsCommand, RankingsCommand, StudentsCommand, TaskArgs,
};

fn json_out(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `--dataset` on a server: a stored dataset's id as it is, a file uploaded first.
fn dataset_id(c: &Client, task: &TaskArgs) -> Result<String> {
    let d = &task.dataset;
    let text = d.to_string_lossy();
    if !d.exists() && text.starts_with("ds_") && !text.contains('/') {
        return Ok(text.into_owned());
    }
    let info = c.upload_dataset(d, task.label_column.as_deref(), task.labels.as_deref())?;
    eprintln!(
        "dataset {} uploaded as {} ({} rows, {} labeled)",
        d.display(),
        info.id,
        info.rows,
        info.labeled
    );
    Ok(info.id)
}

pub fn zoo_list(c: &Client, json: bool) -> Result<()> {
    let all = c.teachers()?;
    if json {
        return json_out(&serde_json::json!({ "teachers": all }));
    }
    super::print::print_table(&all);
    Ok(())
}

pub fn zoo_upload(
    c: &Client,
    file: &Path,
    version: Option<String>,
    labels: Option<String>,
    name: Option<String>,
    json: bool,
) -> Result<()> {
    let mut fields = Vec::new();
    for (k, v) in [("version", &version), ("labels", &labels), ("name", &name)] {
        if let Some(v) = v {
            fields.push((k, v.as_str()));
        }
    }
    let t: faculty::zoo::Teacher = c.upload("/v1/teachers", file, &fields)?;
    if json {
        return json_out(&t);
    }
    super::print::print_table(std::slice::from_ref(&t));
    Ok(())
}

pub fn zoo_download(c: &Client, id: &str, out: Option<PathBuf>) -> Result<()> {
    let t: faculty::zoo::Teacher = c.get(&format!("/v1/teachers/{id}"))?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.onnx", t.id.replace('@', "-v"))));
    let sha = c.download(
        &format!("/v1/teachers/{id}/model.onnx"),
        &out,
        Some(&t.sha256),
    )?;
    println!("{} -> {} (sha256 {sha}, verified)", t.id, out.display());
    Ok(())
}

pub fn datasets(c: &Client, cmd: DatasetsCommand) -> Result<()> {
    match cmd {
        DatasetsCommand::Upload {
            file,
            label_column,
            labels,
            json,
        } => {
            let d = c.upload_dataset(&file, label_column.as_deref(), labels.as_deref())?;
            if json {
                return json_out(&d);
            }
            println!(
                "{}: {} rows ({} labeled, {} unlabeled), {} classes, rows of shape {:?}{}",
                d.id,
                d.rows,
                d.labeled,
                d.unlabeled,
                d.classes.len(),
                d.row_shape,
                d.test_dataset_id
                    .as_deref()
                    .map_or(String::new(), |t| format!(", test split {t}"))
            );
            Ok(())
        }
        DatasetsCommand::List { json, limit } => {
            let (datasets, total) =
                c.newest::<faculty::data::DatasetInfo>("/v1/datasets", "datasets", limit.max(1))?;
            if json {
                return json_out(&serde_json::json!({"datasets": datasets, "total": total}));
            }
            println!(
                "{:<20} {:<6} {:>8} {:>8} {:>8} {:<14} NAME",
                "ID", "FORMAT", "ROWS", "LABELED", "CLASSES", "ROW SHAPE"
            );
            for d in &datasets {
                println!(
                    "{:<20} {:<6} {:>8} {:>8} {:>8} {:<14} {}",
                    d.id,
                    format!("{:?}", d.format).to_lowercase(),
                    d.rows,
                    d.labeled,
                    d.classes.len(),
                    format!("{:?}", d.row_shape),
                    d.name
                );
            }
            more_than_shown(datasets.len(), total, "datasets");
            Ok(())
        }
    }
}

pub fn rank(
    c: &Client,
    task: &TaskArgs,
    teachers: Option<Vec<String>>,
    metrics: Option<Vec<String>>,
    primary_metric: Option<String>,
    json: bool,
) -> Result<()> {
    let req = faculty::rank::RankRequest {
        dataset_id: dataset_id(c, task)?,
        teachers,
        metrics,
        primary_metric,
        recompute_scores: false,
    };
    let bar = super::print::Bar {
        last: std::time::Instant::now(),
    };
    let r = c.rank_streamed(&req, |t, done, total| {
        bar.draw(
            done as f64 / total.max(1) as f64,
            &format!("scored {done}/{total} teachers ({})", t.teacher_id),
        );
    })?;
    eprintln!();
    if json {
        return json_out(&r);
    }
    println!("ranking {}", r.id);
    super::print::print_ranking(&r);
    Ok(())
}

pub fn rankings(c: &Client, cmd: RankingsCommand) -> Result<()> {
    match cmd {
        RankingsCommand::List {
            dataset,
            json,
            limit,
        } => {
            let path = match &dataset {
                Some(d) => format!("/v1/rankings?dataset_id={d}"),
                None => "/v1/rankings".to_string(),
            };
            let (rankings, total) = c.newest::<RankingSummary>(&path, "rankings", limit.max(1))?;
            if json {
                return json_out(&serde_json::json!({"rankings": rankings, "total": total}));
            }
            println!(
                "{:<20} {:<20} {:<24} {:<16} {:>10} METRIC",
                "ID", "DATASET", "RECOMMENDED", "VERDICT", "COMPATIBLE"
            );
            for r in &rankings {
                println!(
                    "{:<20} {:<20} {:<24} {:<16} {:>10} {}",
                    r.id,
                    r.dataset_id,
                    r.recommended.as_deref().unwrap_or("-"),
                    match (r.teacher_helps, r.confident) {
                        (true, true) => "teacher helps",
                        (true, false) => "teacher (lean)",
                        (false, true) => "scratch",
                        (false, false) => "scratch (lean)",
                    },
                    format!("{}/{}", r.compatible, r.teachers),
                    r.primary_metric
                );
            }
            more_than_shown(rankings.len(), total, "rankings");
            Ok(())
        }
        RankingsCommand::Show { id, json } => {
            let r: faculty::rank::Ranking = c.get(&format!("/v1/rankings/{id}"))?;
            if json {
                return json_out(&r);
            }
            println!("ranking {}", r.id);
            super::print::print_ranking(&r);
            Ok(())
        }
        RankingsCommand::LabelMap { id, teacher, json } => {
            let m: faculty::rank::label_map::LabelMap =
                c.get(&format!("/v1/rankings/{id}/teachers/{teacher}/label_map"))?;
            if json {
                return json_out(&m);
            }
            println!(
                "label map of {} on {} ({} labeled rows): which teacher class teaches each task class",
                m.teacher_id, m.dataset_id, m.labeled_rows
            );
            println!(
                "{:<24} {:<24} {:>8} {:>18}",
                "TASK CLASS", "TEACHER CLASS", "SHARE", "P(TASK | TEACHER)"
            );
            for p in &m.pairs {
                println!(
                    "{:<24} {:<24} {:>7.1}% {:>18.2}",
                    p.task_class,
                    p.teacher_class,
                    100.0 * p.share,
                    p.conditional
                );
            }
            Ok(())
        }
    }
}

/// Draws a job's updates on the progress bar: phase and epoch changes, the teacher once known, every new
/// search trial.
struct JobBar {
    bar: super::print::Bar,
    phase: String,
    epochs: usize,
    teacher: bool,
    trials: usize,
}

impl JobBar {
    fn new() -> Self {
        Self {
            bar: super::print::Bar {
                last: std::time::Instant::now(),
            },
            phase: String::new(),
            epochs: 0,
            teacher: false,
            trials: 0,
        }
    }

    fn update(&mut self, j: &Job) {
        if let (Some(t), false) = (&j.teacher, self.teacher) {
            self.teacher = true;
            self.bar.teacher(t);
        }
        for t in j.search.iter().skip(self.trials) {
            self.bar.trial(t);
        }
        self.trials = j.search.len();
        // counted with the epochs no longer in the job (a long job keeps its latest ones; events sent for
        // a progress display carry the latest only)
        let seen = j.epochs_dropped + j.epochs.len();
        if seen > self.epochs
            && let Some(m) = j.epochs.last()
        {
            self.epochs = seen;
            self.bar.epoch(&j.phase, m, j.progress);
        } else if j.phase != self.phase {
            self.phase = j.phase.clone();
            self.bar.phase(&j.phase, j.progress);
        }
        if j.state.finished() && j.phase != "done" {
            eprintln!();
        }
    }
}

/// A finished job's outcome: `Ok` when it succeeded, else its error as a non-zero exit.
fn outcome(j: &Job) -> Result<()> {
    match j.state {
        JobState::Succeeded => Ok(()),
        JobState::Cancelled => Err(faculty::Error::new(
            faculty::ErrorKind::Conflict,
            format!("job {} was cancelled", j.id),
        )),
        _ => Err(faculty::Error::internal(format!(
            "job {} {}: {}",
            j.id,
            if j.state == JobState::Failed {
                "failed"
            } else {
                "did not finish"
            },
            j.error.as_deref().unwrap_or("no reason given")
        ))),
    }
}

pub fn distill(
    c: &Client,
    task: &TaskArgs,
    how: &DistillArgs,
    out: &Path,
    json: bool,
) -> Result<()> {
    let mut req = crate::distill_request(how, task)?;
    req.dataset_id = dataset_id(c, task)?;
    let job = c.submit(&req)?;
    eprintln!("job {} queued on the server", job.id);
    let mut bar = JobBar::new();
    let job = c.follow(&job.id, |j| bar.update(j))?;
    outcome(&job)?;
    let id = job
        .student_id
        .ok_or_else(|| faculty::Error::internal("the job succeeded without a student"))?;
    let card = c.download_student(&id, out)?;
    let card_path = out.with_extension("card.json");
    std::fs::write(&card_path, serde_json::to_vec_pretty(&card)?)?;
    super::print::print_card(&card, out, &card_path, json)
}

fn job_line(j: &Job) {
    println!(
        "{:<20} {:<10} {:<13} {:<26} {:>5.0}% {:<18} {}",
        j.id,
        format!("{:?}", j.state).to_lowercase(),
        j.request.method.as_str(),
        j.teacher
            .as_ref()
            .map_or(j.request.teacher.as_str(), |t| t.id.as_str()),
        100.0 * j.progress,
        j.dataset_id,
        j.student_id.as_deref().or(j.error.as_deref()).unwrap_or("")
    );
}

/// Says on stderr when a list printed fewer items than the server holds.
fn more_than_shown(shown: usize, total: usize, what: &str) {
    if shown < total {
        eprintln!("{shown} of {total} {what} shown (newest first; --limit for more)");
    }
}

fn job_header() {
    println!(
        "{:<20} {:<10} {:<13} {:<26} {:>6} {:<18} STUDENT / ERROR",
        "ID", "STATE", "METHOD", "TEACHER", "DONE", "DATASET"
    );
}

pub fn jobs(c: &Client, cmd: JobsCommand) -> Result<()> {
    match cmd {
        JobsCommand::List { json, state, limit } => {
            let path = match &state {
                Some(s) => format!("/v1/jobs?state={s}"),
                None => "/v1/jobs".into(),
            };
            let (jobs, total) = c.newest::<Job>(&path, "jobs", limit.max(1))?;
            if json {
                return json_out(&serde_json::json!({"jobs": jobs, "total": total}));
            }
            job_header();
            jobs.iter().for_each(job_line);
            more_than_shown(jobs.len(), total, "jobs");
            Ok(())
        }
        JobsCommand::Status { id, follow, json } => {
            let job: Job = if follow {
                let mut bar = JobBar::new();
                c.follow(&id, |j| bar.update(j))?
            } else if json {
                c.get(&format!("/v1/jobs/{id}"))?
            } else {
                c.get(&format!("/v1/jobs/{id}?epochs=latest"))?
            };
            if json {
                json_out(&job)?;
            } else {
                job_header();
                job_line(&job);
                // a finished job: what it delivered, and why its search ended
                if let Some(p) = &job.picked {
                    println!("delivered: {p}");
                }
                if let Some(s) = &job.search_stopped {
                    println!("search stopped: {s}");
                }
            }
            if follow { outcome(&job) } else { Ok(()) }
        }
        JobsCommand::Cancel { id } => {
            let job: Job = c.post(&format!("/v1/jobs/{id}/cancel"), &serde_json::json!({}))?;
            job_header();
            job_line(&job);
            Ok(())
        }
    }
}

pub fn students(c: &Client, cmd: StudentsCommand) -> Result<()> {
    match cmd {
        StudentsCommand::List { json, limit } => {
            let (students, total) =
                c.newest::<StudentCard>("/v1/students", "students", limit.max(1))?;
            if json {
                return json_out(&serde_json::json!({"students": students, "total": total}));
            }
            let pct =
                |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
            println!(
                "{:<20} {:<13} {:<12} {:>9} {:>8} {:>8} {:>8} NAME",
                "ID", "METHOD", "STUDENT", "PARAMS", "ACC", "SCRATCH", "TEACHER"
            );
            for s in &students {
                // held-out test accuracy where there is a test split, else validation
                let (acc, scratch, teacher) = match &s.test {
                    Some(t) => (
                        Some(t.student.accuracy),
                        t.scratch.as_ref().map(|e| e.accuracy),
                        t.teacher.as_ref().map(|e| e.accuracy),
                    ),
                    None => (s.accuracy.student, s.accuracy.scratch, s.accuracy.teacher),
                };
                println!(
                    "{:<20} {:<13} {:<12} {:>9} {:>8} {:>8} {:>8} {}",
                    s.id,
                    s.method.as_str(),
                    s.student,
                    s.parameters,
                    pct(acc),
                    pct(scratch),
                    pct(teacher),
                    s.name
                );
            }
            more_than_shown(students.len(), total, "students");
            Ok(())
        }
        StudentsCommand::Download { id, out, json } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{id}.onnx")));
            let card = c.download_student(&id, &out)?;
            let card_path = out.with_extension("card.json");
            std::fs::write(&card_path, serde_json::to_vec_pretty(&card)?)?;
            if json {
                return json_out(&card);
            }
            println!(
                "{} -> {} (sha256 {}, verified); card: {}",
                card.id,
                out.display(),
                card.sha256,
                card_path.display()
            );
            Ok(())
        }
    }
}
