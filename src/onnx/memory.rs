//! The process's memory budget for inference (`--memory-budget-mb`): each batch a teacher runs is sized
//! from what one row of that model was measured to cost at its peak, and freed memory is handed back to
//! the system before a batch that would not fit, so that resident memory stays under the budget.
//!
//! Why it is needed: ONNX Runtime (arena off) mallocs every intermediate tensor of a batch; a 1024-row
//! batch through a small CNN is 100-200 MB at its peak, and glibc keeps what is freed in its heaps. The
//! peak of one run is read from the kernel's high-water mark (`VmHWM`, reset through
//! `/proc/self/clear_refs`), so tensors that glibc mmapped and unmapped within the run are counted too;
//! the process's own peak survives the resets ([`peak_bytes`]). Linux only; elsewhere nothing is bounded.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The budget in bytes (0: none). Process-wide, as the allocator is: set once from the config.
static BUDGET: AtomicU64 = AtomicU64::new(0);
/// The largest high-water mark seen before a reset.
static PEAK: AtomicU64 = AtomicU64::new(0);
/// Per model key: the most one row added to resident memory at the peak of a run, and how many runs
/// were measured.
static LEARNED: Mutex<Option<HashMap<String, (u64, u32)>>> = Mutex::new(None);
/// One measurement at a time (a reset by one thread would hide another's peak).
static MEASURING: Mutex<()> = Mutex::new(());
/// Resident memory right after the latest hand-back of freed memory (0: none yet): what the process
/// holds for itself, the floor a batch's room is counted from.
static TRIMMED: AtomicU64 = AtomicU64::new(0);

/// Rows of the first run of a model not yet measured.
const PROBE_ROWS: usize = 64;
/// Runs measured per model; later runs reuse what was learned.
const MEASURED_RUNS: u32 = 4;

/// Sets the budget (bytes; 0: none).
pub fn set_budget(bytes: u64) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// The budget in bytes (0: none).
pub fn budget() -> u64 {
    BUDGET.load(Ordering::Relaxed)
}

/// This process's resident set size in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64)
}

/// Whether this process can read its resident memory (checked once).
fn resident_readable() -> bool {
    static READABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READABLE.get_or_init(|| resident_bytes().is_some())
}

/// The kernel's high-water mark of resident memory since the last reset, bytes.
fn high_water() -> Option<u64> {
    status_bytes("self", "VmHWM")
}

/// A memory line (`VmRSS`, `VmHWM`, ...) of process `pid`'s `/proc/PID/status` (`self` for this one),
/// bytes (Linux; `None` elsewhere or once the process is gone).
pub fn status_bytes(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

/// Resets the high-water mark to the current RSS, keeping the old one in [`peak_bytes`].
fn reset_high_water() -> bool {
    if let Some(h) = high_water() {
        PEAK.fetch_max(h, Ordering::Relaxed);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The most resident memory this process has held, bytes (`None` off Linux).
pub fn peak_bytes() -> Option<u64> {
    Some(high_water()?.max(PEAK.load(Ordering::Relaxed)))
}

/// Hands memory that the allocator keeps after frees back to the system (a no-op off glibc); resident
/// memory after it.
pub fn trim() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists
    unsafe {
        libc::malloc_trim(0);
    }
    let rss = resident_bytes();
    if let Some(rss) = rss {
        TRIMMED.store(rss, Ordering::Relaxed);
    }
    rss
}

/// Bytes the allocator holds free (in its heaps, resident or not), 0 off glibc.
fn free_held() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 only reads the allocator's own statistics
    unsafe {
        return libc::mallinfo2().fordblks as u64;
    }
    #[allow(unreachable_code)]
    0
}

/// After a teacher's inference: hands freed memory back when resident memory is above two thirds of the
/// budget (below it nothing is done: trimming always made small rankings ~15% slower, the next teacher
/// faulting the pages in again).
pub fn release_freed_memory() {
    if let Some(rss) = resident_bytes() {
        trim_above_two_thirds(rss);
    }
}

/// Trims when `rss` is above two thirds of the budget (and there is one).
fn trim_above_two_thirds(rss: u64) {
    let b = budget();
    if b > 0 && rss > b / 3 * 2 {
        trim();
    }
}

fn learned(key: &str) -> (u64, u32) {
    let g = LEARNED.lock().expect("memory lock");
    g.as_ref()
        .and_then(|m| m.get(key).copied())
        .unwrap_or((0, 0))
}

/// What the budget leaves for the next batch of a model, from one reading of resident memory and of the
/// model's measured cost (the hot path sizes every batch with it: [`Room::cap_rows`] for the batch-size
/// climb's ceiling, then [`Room::plan_rows`] for the rows the climb picked under it).
pub struct Room {
    /// The budget, bytes (0: none).
    budget: u64,
    /// Resident memory when read (`None` with no budget, or off Linux: nothing is bounded then).
    rss: Option<u64>,
    /// The model's cost per row at its peak, bytes, and how many runs measured it (0: none yet).
    per_row: u64,
    runs: u32,
}

/// Reads what the budget leaves now for a batch of model `key`.
pub fn room(key: &str) -> Room {
    let budget = budget();
    let rss = (budget > 0).then(resident_bytes).flatten();
    let (per_row, runs) = if rss.is_some() { learned(key) } else { (0, 0) };
    Room {
        budget,
        rss,
        per_row,
        runs,
    }
}

impl Room {
    /// The most rows a batch should take, of `max`: half of what fits between the memory the process
    /// holds for itself (its resident memory after the latest hand-back of freed memory) and the
    /// budget, at the cost per row measured so far (`max` with no budget or before the first
    /// measurement), at least two. The batch-size climb (`onnx::pace`) takes it as its ceiling, so that
    /// it settles on a size the budget allows instead of asking for one that [`Room::plan_rows`] cuts
    /// every time; half, so that the memory a batch leaves in the allocator's heaps (reused by the next
    /// batch of the same size) leaves room for that next batch without handing it back first.
    pub fn cap_rows(&self, max: usize) -> usize {
        let Some(rss) = self.rss else {
            return max;
        };
        if self.runs == 0 {
            return max;
        }
        let trimmed = TRIMMED.load(Ordering::Relaxed);
        let held = if trimmed > 0 { rss.min(trimmed) } else { rss };
        let rows = (self.budget.saturating_sub(held) / 2 / self.per_row.max(1)) as usize;
        rows.clamp(2.min(max), max.max(1))
    }

    /// How many of `want` rows the next batch may take: all of them with no budget; else as many as fit
    /// under it at the cost per row measured so far (a first run probes a few rows), handing freed
    /// memory back first when they would not fit. At least one row.
    pub fn plan_rows(&mut self, want: usize) -> usize {
        let Some(rss) = self.rss else {
            return want;
        };
        if self.runs == 0 {
            trim_above_two_thirds(rss);
            return want.min(PROBE_ROWS);
        }
        let fits = |rss: u64| (self.budget.saturating_sub(rss) / self.per_row.max(1)) as usize;
        if fits(rss) >= want {
            return want;
        }
        let rss = trim().unwrap_or(rss);
        self.rss = Some(rss);
        fits(rss).clamp(1, want)
    }
}

/// Runs one batch of `rows` rows of model `key`, measuring its peak while the model is still being
/// learned (one measurement at a time: a model measured before skips its turn while another is under
/// way, a model never measured waits for it).
pub fn measured<T>(key: &str, rows: usize, run: impl FnOnce() -> T) -> T {
    let runs = learned(key).1;
    // nothing to measure with (no budget, or off Linux): no waiting either
    if budget() == 0 || runs >= MEASURED_RUNS || !resident_readable() {
        return run();
    }
    // a model not measured yet waits for its turn: run unmeasured, it would be planned a probe's rows
    // again and again, at whatever size the batch-size climb asks for (SqueezeNet at 224x224, ranked
    // beside another model being measured, climbed to 32 rows a call: 2.4 GB under a 384 MB budget)
    let _one = if runs == 0 {
        MEASURING.lock().unwrap_or_else(|e| e.into_inner())
    } else {
        let Ok(one) = MEASURING.try_lock() else {
            return run();
        };
        one
    };
    // a run that reuses memory the allocator kept free adds nothing to resident memory for it, and its
    // cost a row comes out low (SqueezeNet's, learned from 2-row runs so, planned 8-row calls that took
    // the process to 801 MB under a 384 MB budget). So before a model's first measurement, freed memory
    // is handed back when there is more of it than half the room left under the budget. Not always:
    // ranking the bundled zoo keeps 50-60 MB free against ~240 MB of room, and trimming before every
    // model's first run made its cold rankings ~25% slower (0.46-0.57 s against 0.35-0.46 s). Later
    // runs can only raise what the first learned. (`free_held` costs ~60 us.)
    let Some(mut before) = resident_bytes() else {
        return run();
    };
    if runs == 0 && free_held() > budget().saturating_sub(before) / 2 {
        before = trim().unwrap_or(before);
    }
    // where the high-water mark cannot be reset (no write access to clear_refs), the resident memory
    // after the run is the measure: a lower bound, as what was unmapped inside the run is missed
    let reset = reset_high_water();
    let out = run();
    let peak = if reset {
        high_water()
    } else {
        resident_bytes()
    };
    if let Some(peak) = peak {
        let per_row = peak.saturating_sub(before).div_ceil(rows.max(1) as u64);
        let mut g = LEARNED.lock().expect("memory lock");
        let e = g
            .get_or_insert_with(HashMap::new)
            .entry(key.to_string())
            .or_default();
        e.0 = e.0.max(per_row);
        e.1 += 1;
    }
    out
}

/// Forgets what was learned about a removed model.
pub fn forget(key: &str) {
    if let Some(m) = LEARNED.lock().expect("memory lock").as_mut() {
        m.retain(|k, _| k != key && !k.starts_with(&format!("{key}#")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_sized_from_the_measured_peak_per_row() {
        const KEY: &str = "memory-unit-test";
        // no budget: every row at once, nothing measured
        assert_eq!(room(KEY).plan_rows(1000), 1000);
        let rss = resident_bytes().unwrap();
        set_budget(rss + (256 << 20));
        // unknown model: a probe
        assert_eq!(room(KEY).plan_rows(1000), PROBE_ROWS);
        // a run that touches 64 MiB for 64 rows: about 1 MiB per row. Freed memory is handed back first,
        // so the pages are new; a run is retried while another test's inference holds the measurement.
        for _ in 0..100 {
            trim();
            let v = measured(KEY, 64, || {
                let mut v = vec![0u8; 64 << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                v
            });
            drop(v);
            if learned(KEY).1 > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (per_row, runs) = learned(KEY);
        assert_eq!(runs, 1);
        // at least half of it (other threads of the test process may free memory meanwhile)
        assert!(per_row >= (32 << 20) / 64, "{per_row}");
        // ~256 MiB of room at >= 512 KiB a row: at most ~512 rows (some slack), and at least one
        let n = room(KEY).plan_rows(100_000);
        assert!((1..=1024).contains(&n), "{n}");
        // the batch-size climb's ceiling: half the room, at least two rows, at most what is asked
        let c = room(KEY).cap_rows(100_000);
        assert!((2..=512).contains(&c), "{c}");
        assert_eq!(room(KEY).cap_rows(3), 3.min(c));
        assert_eq!(room("memory-unit-test-unknown").cap_rows(777), 777);
        assert!(peak_bytes().unwrap() >= rss);
        forget(KEY);
        assert_eq!(learned(KEY), (0, 0));
        // while another run is measured, a model measured before runs at once, unmeasured; a model
        // never measured waits, then is measured
        const NEW: &str = "memory-unit-test-new";
        let (tx, rx) = std::sync::mpsc::channel();
        let one = MEASURING.lock().unwrap();
        let waiting = std::thread::spawn(move || {
            measured(NEW, 2, || tx.send(()).unwrap());
            learned(NEW)
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "an unmeasured model ran beside another's measurement"
        );
        drop(one);
        rx.recv().unwrap();
        assert_eq!(waiting.join().unwrap().1, 1);
        let one = MEASURING.lock().unwrap();
        let mut ran = false;
        measured(NEW, 2, || ran = true);
        assert!(ran);
        assert_eq!(learned(NEW).1, 1, "measured beside another's measurement");
        drop(one);
        forget(NEW);
        set_budget(0);
    }
}
