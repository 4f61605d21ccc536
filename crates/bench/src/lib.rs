//! `meridian bench`: load and measurement over the RocketMQ remoting
//! protocol, through `meridian-client`, so it drives any RocketMQ-compatible
//! broker (Meridian, Apache RocketMQ, rocketmq-rust) the same way.
//!
//! - [`args`] — the command line: RocketMQ's benchmark flags plus ours.
//! - [`target`] — the brokers under test: the topic's queues (created when
//!   missing), the connections tasks share, queue offsets.
//! - [`produce`] — producer tasks (sync, async, oneway, batch; closed loop or
//!   open loop at `--rate`), and `bench produce`.
//! - [`consume`] — one long-polling pull task per queue, and `bench consume`.
//! - [`e2e`] — both at once; latency from a send stamp in each body.
//! - [`relay_lag`] — a relay's lag, origin store to target store, read
//!   back from the copies a region holds.
//! - [`stamp`] — that stamp.
//! - [`stats`] — phases (warm-up, measurement), live counters and the
//!   once-a-second progress line, per-task HDR histograms merged at the end.
//!
//! The tool keeps its own cost per message small so that it does not bound
//! what it measures: routes are looked up and connections opened before the
//! load starts, bodies are allocated once and shared, and each task records
//! into its own histogram. On a small machine the tool still shares the CPU
//! with the broker; the report says what it measured, not why.

pub mod args;
pub mod consume;
pub mod e2e;
pub mod produce;
pub mod relay_lag;
pub mod stamp;
pub mod stats;
pub mod target;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

pub use args::{BenchArgs, BenchCommand};
use stats::LatencyMs;

/// What a run measured. With `--json` this is printed as one JSON object.
#[derive(Serialize, Debug)]
pub struct Report {
    /// "produce", "consume" or "e2e".
    pub command: &'static str,
    pub settings: serde_json::Value,
    /// Length of the measured window.
    pub duration_secs: f64,
    /// Messages per second: sent (produce), received (consume, e2e).
    pub msgs_per_sec: f64,
    /// Body bytes per second, in MiB (2^20 bytes).
    pub mb_per_sec: f64,
    /// Messages acknowledged in the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    /// Messages received in the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// Failed requests (sends or pulls) in the measured window.
    pub errors: u64,
    pub latency_ms: LatencyMs,
    /// What `latency_ms` measures.
    pub latency_from: &'static str,
    /// e2e: the producers' rate and send latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_msgs_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_latency_ms: Option<LatencyMs>,
    /// e2e: everything sent and received, warm-up and grace included; equal
    /// when nothing was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_total: Option<u64>,
    /// The first error seen, to tell a user what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Report {
    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} over {:.1} s: {}\n",
            self.command, self.duration_secs, self.settings
        );
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<14}{v}\n"));
        line("messages/s", format!("{:.0}", self.msgs_per_sec));
        line("MiB/s", format!("{:.2}", self.mb_per_sec));
        if let Some(s) = self.send_msgs_per_sec {
            line("sent/s", format!("{s:.0}"));
        }
        if let Some(n) = self.sent {
            line("sent", n.to_string());
        }
        if let Some(n) = self.received {
            line("received", n.to_string());
        }
        if let (Some(s), Some(r)) = (self.sent_total, self.received_total) {
            line("all sent", s.to_string());
            line("all received", r.to_string());
        }
        line("errors", self.errors.to_string());
        line(
            "latency",
            format!("{} ({})", fmt_latency(&self.latency_ms), self.latency_from),
        );
        if let Some(l) = &self.send_latency_ms {
            line("send latency", fmt_latency(l));
        }
        if let Some(e) = &self.first_error {
            line("first error", e.clone());
        }
        out
    }
}

fn fmt_latency(l: &LatencyMs) -> String {
    format!(
        "ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max
    )
}

/// Run `meridian bench <command>`: print the report on stdout (one JSON
/// object with `--json`), progress on stderr. Ctrl-C ends the run early and
/// still reports.
///
/// The load runs on a runtime of its own with `--client-threads` threads,
/// whatever runtime the caller runs on.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = match args.client_threads as usize {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    tokio::task::spawn_blocking(move || {
        let mut builder = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        let runtime = builder.enable_all().build()?;
        let result = runtime.block_on(run_here(args));
        // Connections and timers left behind must not hold the exit.
        runtime.shutdown_timeout(std::time::Duration::from_millis(200));
        result
    })
    .await?
}

/// [`run`] on the caller's runtime.
pub async fn run_here(args: BenchArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let (json, report) = match args.command {
        BenchCommand::Produce(a) => (a.common.json, produce::run(a, stop).await),
        BenchCommand::Consume(a) => (a.common.json, consume::run(a, stop).await),
        BenchCommand::E2e(a) => (a.common.json, e2e::run(a, stop).await),
        BenchCommand::RelayLag(a) => (a.json, relay_lag::run(a).await),
    };
    on_signal.abort();
    let report = report?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
