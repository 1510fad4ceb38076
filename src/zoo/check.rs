//! Models from outside (uploads) are first loaded and run in a child process, `faculty check-model`,
//! whose resident memory and time the server watches: a model that would take more memory than the
//! limit, run longer than the time limit, or crash ONNX Runtime is refused, and the server's own memory,
//! threads and life are never at stake. A few hundred bytes of ONNX can ask for any amount of either: a
//! `ConstantOfShape` of [30000, 30000] floats is 3.6 GB, folded when the session is created; one sized
//! by the batch costs gigabytes a row; a `Loop` can run a trillion times.
//!
//! The child does what the server does with a new teacher: inspect it (create the session, run the
//! 3-row probe), then run it the way a ranking does under the memory budget (a 64-row batch that
//! measures the cost of a row, then the largest batch the budget would plan).
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The subcommand of the `faculty` executable that runs a check.
pub const SUBCOMMAND: &str = "check-model";

/// How an uploaded model is checked: by which executable, within what memory and time.
#[derive(Debug)]
pub struct ModelCheck {
    exe: PathBuf,
    /// Resident memory the child may reach, bytes (0: no bound; time and crashes are still watched).
    max_bytes: u64,
    /// The inference budget the child plans its batches with, bytes.
    budget: u64,
    timeout: Duration,
    infer_batch: usize,
    /// One check at a time: several uploads at once do not each get the memory limit.
    one: Mutex<()>,
}

/// What a check measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// The child's peak resident memory, bytes (its own high-water mark).
    pub peak_bytes: u64,
    /// Rows of the largest batch it ran (0 for a model the inspection found unusable, which the
    /// server's own inspection then reports).
    pub rows: usize,
}

impl ModelCheck {
    /// A check run by `exe` (a `faculty` executable), planning batches of up to `infer_batch` rows under
    /// an inference budget of `budget` bytes (0: none), killed above `max_bytes` of resident memory (0:
    /// never) or after `timeout`.
    pub fn new(
        exe: PathBuf,
        budget: u64,
        max_bytes: u64,
        timeout: Duration,
        infer_batch: usize,
    ) -> Self {
        Self {
            exe,
            max_bytes,
            budget,
            timeout,
            infer_batch: infer_batch.max(1),
            one: Mutex::new(()),
        }
    }

    /// The `faculty` executable: this process's own when it is one, else one beside it or one
    /// directory up (a test binary in `target/*/deps` finds `target/*/faculty`).
    pub fn find_exe() -> Option<PathBuf> {
        let me = std::env::current_exe().ok()?;
        let name = format!("faculty{}", std::env::consts::EXE_SUFFIX);
        if me.file_name().is_some_and(|n| n == name.as_str()) {
            return Some(me);
        }
        let dir = me.parent()?;
        [dir.join(&name), dir.parent()?.join(&name)]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// Runs the check on the model file at `model` (with its card's text, if any). Refuses (422,
    /// `invalid_model`) a model that the child could not load and run within the limits; a model the
    /// child's inspection finds unusable passes, for the server's own inspection to name the problem.
    pub fn run(&self, model: &Path, card: Option<&str>) -> Result<CheckReport> {
        let _one = self.one.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = Command::new(&self.exe);
        cmd.arg(SUBCOMMAND)
            .arg(model)
            .arg("--budget-bytes")
            .arg(self.budget.to_string())
            .arg("--infer-batch")
            .arg(self.infer_batch.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = card {
            cmd.arg("--card").arg(c);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; the child dies with the thread that watches it (this
            // one, blocked in the loop below until the child ends), so a killed server leaves no check
            // running
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::internal(format!(
                "cannot start the model check ({}): {e}",
                self.exe.display()
            ))
        })?;
        // the pipes are drained as the child writes, so a chatty child never blocks on a full pipe
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        let start = Instant::now();
        let mut peak = 0u64;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            let rss =
                crate::onnx::memory::status_bytes(&child.id().to_string(), "VmRSS").unwrap_or(0);
            peak = peak.max(rss);
            if self.max_bytes > 0 && rss > self.max_bytes {
                kill(&mut child);
                return Err(Error::invalid_model(format!(
                    "the model needs more than {} MiB to load and run a probe batch (the server's limit: \
                     twice --memory-budget-mb); nothing was stored",
                    self.max_bytes >> 20
                )));
            }
            if start.elapsed() > self.timeout {
                kill(&mut child);
                return Err(Error::invalid_model(format!(
                    "the model did not load and run a probe batch within {} s \
                     (--model-check-timeout-s); nothing was stored",
                    self.timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if !status.success() {
            #[cfg(unix)]
            if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
                return Err(Error::invalid_model(format!(
                    "ONNX Runtime crashed on this model (signal {sig}) when the server loaded and ran \
                     it apart from itself; nothing was stored"
                )));
            }
            return Err(Error::internal(format!(
                "the model check failed ({status}): {}",
                err.lines().last().unwrap_or_default()
            )));
        }
        let mut report: CheckReport = serde_json::from_str(out.lines().last().unwrap_or_default())
            .map_err(|e| Error::internal(format!("the model check's report: {e}: {out}")))?;
        report.peak_bytes = report.peak_bytes.max(peak);
        Ok(report)
    }
}

/// The child's side: inspect the model as the server does, then run it as a ranking does under the
/// budget. Called by `faculty check-model`.
pub fn child(
    model: &Path,
    card: Option<&str>,
    budget: u64,
    infer_batch: usize,
) -> Result<CheckReport> {
    use crate::onnx::memory;
    memory::set_budget(budget);
    // the largest batch the server could run, not the one that would be fastest
    crate::onnx::pace::set_enabled(false);
    let bytes = std::fs::read(model)?;
    let ident = super::teacher::Ident {
        id: "check".into(),
        name: "check".into(),
        version: "1".into(),
        path: "check.onnx".into(),
    };
    let ins = super::teacher::inspect(&bytes, ident, card, 1);
    let (Some(mut session), Some(p), Some(row)) =
        (ins.session, ins.teacher.predictor, ins.probe_row)
    else {
        return Ok(CheckReport {
            peak_bytes: memory::peak_bytes().unwrap_or(0),
            rows: 0,
        });
    };
    drop(bytes);
    let run = |session: &mut ort::session::Session, rows: usize| -> Result<()> {
        let mut shape = vec![rows];
        shape.extend(&row);
        let x = super::teacher::probe_input(p.input_type, &shape);
        p.predict(session, "check", x.view(), rows)?;
        Ok(())
    };
    // a model with a fixed batch runs that batch every time: the inspection's probe already ran it
    if let Some(b) = p.fixed_batch() {
        return Ok(CheckReport {
            peak_bytes: memory::peak_bytes().unwrap_or(0),
            rows: b,
        });
    }
    // the first batch under a budget is a 64-row probe that measures a row's cost; the next is the
    // largest the server's inference would then run (the ceiling of its batch-size climb)
    let mut rows = infer_batch.min(64);
    run(&mut session, rows)?;
    let next = memory::room("check").cap_rows(infer_batch);
    if next > rows {
        rows = next;
        run(&mut session, rows)?;
    }
    Ok(CheckReport {
        peak_bytes: memory::peak_bytes().unwrap_or(0),
        rows,
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a pipe to its end on a thread of its own (the first 1 MiB kept, the rest read and dropped, so
/// the child never blocks on a full pipe).
fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut r) = r {
            let _ = (&mut r).take(1 << 20).read_to_end(&mut kept);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}
