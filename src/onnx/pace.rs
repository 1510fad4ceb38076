//! Batch sizes chosen by measured speed: how many rows a model's inference call takes is tuned per model
//! from the time its calls take a row. Bigger is not faster on a CPU: ONNX Runtime's time a row for the
//! bundled 28x28 CNNs is 4.6 us at 64 rows a call and 20 us at 1,024 (the batch's activations leave the
//! cache), for ShuffleNet at 224x224 1.4 ms at 1 to 4 rows and 4.2 ms at 64, while a small MLP is 15 times
//! faster at 64 rows than at 1 (the per-call cost; `python3` with the same session options, 2 cores). So
//! each model starts at two rows a call (never one: ONNX Runtime sums a single row's matrix product in
//! another order, which moves Magika's probabilities by up to 8e-4, and a row's output must not depend
//! on the batch it landed in; `Predictor::predict` pads a lone row) and climbs a ladder of sizes four
//! times apart (2, 8, 32, 128, ..., the allowance itself last) until two steps in a row are not at
//! least 10% faster a row (a step that is not gets a second call, against a one-off delay), then keeps
//! the fastest for the process's life. Starting small costs a small model microseconds and spares a
//! large one its slowest sizes. The memory budget (`onnx::memory`) is the climb's ceiling (a size it
//! would cut is never tried: the ceiling is the last step) and still caps every batch; only calls of
//! the size being tried are timed, the first call of a model not at all (it pays the session's one-time
//! set-up).
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A step up the ladder is taken when its time a row is below this share of the best so far.
const BETTER: f64 = 0.9;
/// The first size on the ladder.
const FIRST: usize = 2;
/// Sizes on the ladder are this many times apart.
const STEP: usize = 4;
/// Calls a size that is not faster gets before it counts as not faster.
const TRIES: u32 = 2;
/// Steps in a row that are not faster before the climb stops: a forest is no faster a row at 64 rows than
/// at 16, then 1.4 times faster at 256 and 1.6 times at 1,024.
const MISSES: u32 = 2;

/// Whether batches are sized by speed (else as large as allowed: the model check measures the largest).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// What is known of one model's speed.
#[derive(Debug, Clone, Default)]
struct Pace {
    /// The size being tried (0: not started).
    trying: usize,
    /// Calls of it timed so far, and the fastest of them (seconds a row).
    tries: u32,
    fastest: f64,
    /// Whether a call was seen before (the first one of the model is not timed).
    warm: bool,
    /// Steps in a row that were not faster.
    misses: u32,
    /// The fastest size measured and its seconds a row.
    best: Option<(usize, f64)>,
    /// The climb is over: `best` is kept.
    settled: bool,
}

impl Pace {
    /// Rows of the next call, with at most `max` rows allowed.
    fn rows(&mut self, max: usize) -> usize {
        if self.trying == 0 {
            self.trying = FIRST;
        }
        // the ceiling (the memory budget's) moved below the size being tried: the ceiling is tried
        // instead, and is the climb's last step
        if !self.settled && self.trying > max.max(1) {
            self.trying = max.max(1);
            self.tries = 0;
        }
        let rows = match (self.settled, self.best) {
            (true, Some((b, _))) => b,
            _ => self.trying,
        };
        rows.clamp(1, max.max(1))
    }

    /// Learns from one call of `rows` rows that took `took`, when at most `max` rows were allowed;
    /// whether the climb just ended.
    fn record(&mut self, rows: usize, took: Duration, max: usize) -> bool {
        if self.settled || rows != self.trying {
            return false;
        }
        if !self.warm {
            self.warm = true;
            return false;
        }
        let per_row = took.as_secs_f64() / rows as f64;
        self.fastest = if self.tries == 0 {
            per_row
        } else {
            self.fastest.min(per_row)
        };
        self.tries += 1;
        let faster = self.best.is_none_or(|(_, t)| self.fastest < BETTER * t);
        if !faster && self.tries < TRIES {
            return false;
        }
        if faster {
            self.best = Some((rows, self.fastest));
            self.misses = 0;
        } else {
            self.misses += 1;
        }
        // the last step is the allowance itself, when the ladder would pass it
        if self.misses >= MISSES || rows >= max {
            self.settled = true;
        } else {
            self.trying = (rows * STEP).min(max);
            self.tries = 0;
        }
        self.settled
    }
}

static PACES: Mutex<Option<HashMap<String, Pace>>> = Mutex::new(None);

fn with<T>(key: &str, f: impl FnOnce(&mut Pace) -> T) -> T {
    let mut g = PACES.lock().expect("pace lock");
    f(g.get_or_insert_with(HashMap::new)
        .entry(key.to_string())
        .or_default())
}

/// Rows of model `key`'s next call when at most `max` are wanted (at least one).
pub fn rows(key: &str, max: usize) -> usize {
    if !ENABLED.load(Ordering::Relaxed) {
        return max.max(1);
    }
    with(key, |p| p.rows(max))
}

/// Sizes batches by speed (`true`, the default) or as large as allowed (`false`: for the model check,
/// which must run the largest batch the server could).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Learns from a call of model `key` of `rows` rows that took `took`, when at most `max` rows per call
/// are allowed. Calls of another size than the one being tried (a dataset's last rows, a batch the
/// memory budget cut) teach nothing.
pub fn record(key: &str, rows: usize, took: Duration, max: usize) {
    if let Some((rows, secs)) = with(key, |p| {
        p.record(rows, took, max).then_some(p.best).flatten()
    }) {
        tracing::debug!(
            model = key,
            rows,
            us_a_row = secs * 1e6,
            "batch size settled"
        );
    }
}

/// Forgets a removed model.
pub fn forget(key: &str) {
    if let Some(m) = PACES.lock().expect("pace lock").as_mut() {
        m.retain(|k, _| k != key && !k.starts_with(&format!("{key}#")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size a model settles on when a call of r rows takes `cost(r)` seconds, and the calls it took.
    fn settle(cost: impl Fn(usize) -> f64, max: usize) -> (usize, usize) {
        let mut p = Pace::default();
        let mut calls = 0;
        while !p.settled && calls < 100 {
            let r = p.rows(max);
            p.record(r, Duration::from_secs_f64(cost(r)), max);
            calls += 1;
        }
        (p.rows(max), calls)
    }

    /// A cost curve from measured microseconds a row at 1, 4, 16, 64, 256 and 1024 rows (a size between
    /// them costs what the nearest measured size below it does).
    fn curve(us: [f64; 6]) -> impl Fn(usize) -> f64 {
        move |r: usize| us[(r.trailing_zeros() / 2).min(5) as usize] * 1e-6 * r as f64
    }

    #[test]
    fn the_fastest_size_a_row_is_kept() {
        // the measured curves: a small MLP, the bundled CNNs, ShuffleNet and ResNet-50 at 224x224
        let mlp = curve([8.9, 2.2, 1.2, 0.7, 0.6, 0.6]);
        assert_eq!(settle(&mlp, 1024).0, 512);
        assert_eq!(settle(curve([21.6, 8.1, 5.7, 4.6, 5.6, 20.5]), 1024).0, 128);
        assert_eq!(
            settle(
                curve([1420.0, 1450.0, 1850.0, 4240.0, 6000.0, 6000.0]),
                1024
            )
            .0,
            2
        );
        assert_eq!(
            settle(curve([18520.0, 17230.0, 19000.0, 20390.0, 2e4, 2e4]), 1024).0,
            2
        );
        // the bundled random forest: flat from 16 to 64 rows, faster again at 256 and 1,024
        assert_eq!(
            settle(curve([5.67, 2.41, 1.57, 1.55, 1.14, 0.98]), 1024).0,
            1024
        );
        // per-call overhead only: as large as allowed, and no larger
        let overhead = |r: usize| 1e-3 + 1e-6 * r as f64;
        assert_eq!(settle(overhead, 1024), (1024, 7));
        assert_eq!(settle(overhead, 300).0, 300);
        assert_eq!(settle(&mlp, 3).0, 2, "the allowance is the last step");
    }

    #[test]
    fn a_one_off_delay_does_not_end_the_climb() {
        let mut p = Pace::default();
        let mut calls = 0;
        while !p.settled {
            let r = p.rows(1024);
            calls += 1;
            // the first timed call at 32 rows is slowed down 10x
            let slow = if r == 32 && p.tries == 0 && p.trying == 32 {
                10.0
            } else {
                1.0
            };
            p.record(
                r,
                Duration::from_secs_f64(slow * (1e-3 + 1e-6 * r as f64)),
                1024,
            );
        }
        assert_eq!(p.rows(1024), 1024, "after {calls} calls");
    }

    #[test]
    fn calls_of_another_size_teach_nothing() {
        let mut p = Pace::default();
        assert_eq!(p.rows(1000), 2);
        p.record(2, Duration::from_secs(1), 1000); // warm-up
        p.record(10, Duration::from_secs(100), 1000); // a last partial batch
        assert!(p.best.is_none());
        p.record(2, Duration::from_millis(2), 1000);
        assert_eq!(p.best, Some((2, 1e-3)));
        assert_eq!(p.rows(1000), 8);
    }

    #[test]
    fn a_ceiling_below_the_size_tried_is_the_last_step() {
        let mut p = Pace::default();
        let cost = |r: usize| Duration::from_secs_f64(1e-3 + 1e-6 * r as f64);
        for _ in 0..2 {
            let r = p.rows(1000);
            p.record(r, cost(r), 1000);
        }
        assert_eq!(p.rows(1000), 8);
        // the memory budget now allows 5 rows: 5 is tried (not 8, cut to 5 every call and never timed)
        assert_eq!(p.rows(5), 5);
        p.record(5, cost(5), 5);
        assert!(p.settled);
        assert_eq!(p.rows(1000), 5);
        // a size settled on is still cut by a lower ceiling
        assert_eq!(p.rows(3), 3);
    }
}
