//! Counting: the run's phases (warm-up, measurement), live counters for the
//! progress line, one [`Tally`] per task merged at the end, and the report.
//!
//! Tasks touch shared state only through a few relaxed atomic adds per
//! request; latencies go into each task's own HDR histogram, so recording
//! never contends.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds (longer ones are clamped): one hour, in
/// microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// When the run started, when measuring starts, when it ends.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub start: Instant,
    pub measure_from: Instant,
    /// `None`: no time limit.
    pub until: Option<Instant>,
}

impl Phases {
    pub fn new(warmup: Duration, duration: Option<Duration>) -> Phases {
        let start = Instant::now();
        let measure_from = start + warmup;
        Phases {
            start,
            measure_from,
            until: duration.map(|d| measure_from + d),
        }
    }

    /// Whether an event at `t` counts.
    pub fn measured(&self, t: Instant) -> bool {
        t >= self.measure_from && self.until.is_none_or(|u| t <= u)
    }

    pub fn over(&self, t: Instant) -> bool {
        self.until.is_some_and(|u| t >= u)
    }
}

/// Totals since the start, read once a second by the progress line.
#[derive(Default, Debug)]
pub struct Live {
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn ok(&self, msgs: u64, bytes: u64) {
        self.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.msgs.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// What one task counted inside the measured window.
#[derive(Debug, Default)]
pub struct Tally {
    pub msgs: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Latencies in microseconds; made at the first one recorded (a task
    /// that records into [`SharedLatencies`] never makes one).
    latency: Option<Histogram<u64>>,
    pub first_error: Option<String>,
    /// When the task stopped (its last request answered).
    pub finished_at: Option<Instant>,
}

/// A latency histogram in microseconds, 3 significant digits. It starts
/// small and grows to the largest value recorded: one that covered an hour
/// from the start took about 180 KiB, and thousands of producer tasks
/// zeroing theirs as the load started held up the run's first second.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits are valid")
}

/// Record `d` in `h`, in microseconds (clamped to 1 µs .. 1 hour).
pub fn record_latency(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    // The histogram grows as needed; only an allocation failure refuses.
    let _ = h.record(us);
}

/// Latencies recorded at a time, per task, into [`SharedLatencies`].
const LATENCY_BATCH: usize = 64;

/// The latencies of many tasks in one histogram. Each task collects its
/// own in a [`LatencyBatch`] and adds them under the lock a batch at a
/// time. For producer runs of thousands of tasks: a histogram per task was
/// memory to allocate and zero while the load was already due.
pub struct SharedLatencies(parking_lot::Mutex<Histogram<u64>>);

impl Default for SharedLatencies {
    fn default() -> Self {
        SharedLatencies(parking_lot::Mutex::new(new_histogram()))
    }
}

impl SharedLatencies {
    /// A task's batch; what it holds is added when it fills up and when
    /// it is dropped.
    pub fn batch(&self) -> LatencyBatch<'_> {
        LatencyBatch {
            into: self,
            pending: Vec::with_capacity(LATENCY_BATCH),
        }
    }

    /// Add every latency recorded so far to `tally`.
    pub fn add_to(&self, tally: &mut Tally) {
        tally.add_latencies(&self.0.lock());
    }
}

/// One task's latencies on their way into [`SharedLatencies`].
pub struct LatencyBatch<'a> {
    into: &'a SharedLatencies,
    pending: Vec<Duration>,
}

impl LatencyBatch<'_> {
    pub fn record(&mut self, d: Duration) {
        self.pending.push(d);
        if self.pending.len() >= LATENCY_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut h = self.into.0.lock();
        for d in self.pending.drain(..) {
            record_latency(&mut h, d);
        }
    }
}

impl Drop for LatencyBatch<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Tally {
    pub fn record_latency(&mut self, d: Duration) {
        record_latency(self.latency.get_or_insert_with(new_histogram), d);
    }

    /// Add the latencies of `h`.
    pub fn add_latencies(&mut self, h: &Histogram<u64>) {
        if !h.is_empty() {
            // Both grow as needed: only an allocation failure refuses.
            let _ = self.latency.get_or_insert_with(new_histogram).add(h);
        }
    }

    /// Percentiles of the latencies recorded (zeros when none were).
    pub fn latency_ms(&self) -> LatencyMs {
        self.latency
            .as_ref()
            .map_or_else(LatencyMs::default, LatencyMs::of)
    }

    pub fn note_error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.msgs += other.msgs;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if let Some(h) = &other.latency {
            self.add_latencies(h);
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.finished_at = match (self.finished_at, other.finished_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Merge the tallies of finished tasks.
pub fn merge_all(tallies: impl IntoIterator<Item = Tally>) -> Tally {
    let mut all = Tally::default();
    for t in tallies {
        all.merge(t);
    }
    all
}

/// Latency percentiles in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    /// Samples behind the figures.
    pub count: u64,
}

impl LatencyMs {
    pub fn of(h: &Histogram<u64>) -> LatencyMs {
        if h.is_empty() {
            return LatencyMs::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyMs {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
            count: h.len(),
        }
    }
}

/// The measured window's length: to the deadline, or to when the last task
/// finished if they all finished before it (`-q`, a consumed backlog).
pub fn window(phases: &Phases, finished_at: Option<Instant>) -> Duration {
    let end = match (phases.until, finished_at) {
        (Some(u), Some(f)) => u.min(f),
        (Some(u), None) => u,
        (None, Some(f)) => f,
        (None, None) => Instant::now(),
    };
    end.saturating_duration_since(phases.measure_from)
}

pub fn per_sec(n: u64, window: Duration) -> f64 {
    let s = window.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// Prints a line on stderr once a second until stopped: rates over the last
/// second and error totals, for each named counter set.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(phases: Phases, sets: Vec<(&'static str, Arc<Live>)>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut last: Vec<(u64, u64, u64)> = sets.iter().map(|(_, l)| l.snapshot()).collect();
            let mut last_t = Instant::now();
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            loop {
                tick.tick().await;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let now = Instant::now();
                let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
                let mut line =
                    format!("[{:>5.0}s]", now.duration_since(phases.start).as_secs_f64());
                for ((name, live), prev) in sets.iter().zip(last.iter_mut()) {
                    let cur = live.snapshot();
                    let _ = write!(
                        line,
                        "  {name} {:>9.0} msg/s {:>8.2} MiB/s errors {}",
                        (cur.0 - prev.0) as f64 / dt,
                        (cur.1 - prev.1) as f64 / dt / MIB,
                        cur.2
                    );
                    *prev = cur;
                }
                if now < phases.measure_from {
                    line.push_str("  (warm-up)");
                }
                eprintln!("{line}");
                last_t = now;
            }
        });
        Progress { stop, handle }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.abort();
        let _ = self.handle.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_percentiles() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        for ms in 1..=50 {
            a.record_latency(Duration::from_millis(ms));
        }
        for ms in 51..=100 {
            b.record_latency(Duration::from_millis(ms));
        }
        b.note_error(|| "boom".into());
        let all = merge_all([a, b]);
        let l = all.latency_ms();
        assert_eq!(l.count, 100);
        assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99 - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
        assert_eq!(all.errors, 1);
        assert_eq!(all.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn every_latency_of_every_batch_reaches_the_shared_histogram() {
        let shared = SharedLatencies::default();
        // One batch fills up twice and ends part full; one never fills.
        let mut a = shared.batch();
        for ms in 1..=150 {
            a.record(Duration::from_millis(ms));
        }
        let mut b = shared.batch();
        for ms in 151..=160 {
            b.record(Duration::from_millis(ms));
        }
        drop(a);
        drop(b);
        let mut all = Tally::default();
        shared.add_to(&mut all);
        let l = all.latency_ms();
        assert_eq!(l.count, 160);
        assert!((l.max - 160.0).abs() < 0.2, "{l:?}");
        assert!((l.p50 - 80.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn a_tally_without_latencies_reports_none() {
        let all = merge_all([Tally::default(), Tally::default()]);
        assert_eq!(all.latency_ms(), LatencyMs::default());
    }

    #[test]
    fn window_ends_at_the_deadline_or_when_tasks_finished() {
        let p = Phases::new(Duration::from_secs(1), Some(Duration::from_secs(10)));
        assert_eq!(window(&p, None), Duration::from_secs(10));
        assert_eq!(
            window(&p, Some(p.measure_from + Duration::from_secs(4))),
            Duration::from_secs(4)
        );
        assert_eq!(
            window(&p, Some(p.measure_from + Duration::from_secs(40))),
            Duration::from_secs(10)
        );
        assert!(p.measured(p.measure_from));
        assert!(!p.measured(p.start));
        assert!(p.over(p.measure_from + Duration::from_secs(10)));
        assert_eq!(LatencyMs::of(&new_histogram()), LatencyMs::default());
    }
}
