//! `bench relay-lag`: how long after its origin region stored a record the
//! region under test stored its copy. Every copy a relay appends carries
//! its origin's store time (`MERIDIAN_ORIGIN_TS`) and gets this region's
//! own store time, both taken from the brokers' clocks; on one machine (or
//! with clocks in sync) their difference is the relay's lag, source store
//! to target store, whatever the relay did in between.
//!
//! It reads every copy queue of the topic on every master, from the first
//! record to the last, and takes the records whose origin stored them at or
//! after `--since-ms` (so a load's warm-up can be left out).

use std::time::Duration;

use clap::Args;
use meridian_client::Admin;
use meridian_protocol::codes::response_code;
use meridian_protocol::message::property;
use meridian_protocol::origin::copy_queues;
use serde_json::json;

use crate::stats::{new_histogram, LatencyMs};
use crate::Report;

/// `meridian bench relay-lag`.
#[derive(Args, Debug, Clone)]
pub struct RelayLagArgs {
    /// Name server address(es) of the region holding the copies.
    #[arg(
        short = 'n',
        long = "namesrv",
        visible_alias = "namesrvAddr",
        default_value = "127.0.0.1:9876"
    )]
    pub namesrv: String,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    pub topic: String,
    /// Read this broker (`host:port`) instead of the topic's masters as the
    /// name server lists them (e.g. to bypass a proxy in front of them).
    #[arg(short = 'b', long = "broker")]
    pub broker: Option<String>,
    /// Only records their origin stored at or after this time (ms since
    /// the epoch).
    #[arg(long, default_value_t = 0)]
    pub since_ms: i64,
    /// Only records their origin stored before this time (ms since the
    /// epoch); 0 = no bound.
    #[arg(long, default_value_t = 0)]
    pub until_ms: i64,
    /// Print only one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Records per pull.
const PULL: i32 = 256;

pub async fn run(a: RelayLagArgs) -> anyhow::Result<Report> {
    let admin = Admin::new(&a.namesrv);
    let brokers = match &a.broker {
        Some(b) => vec![(b.clone(), b.clone())],
        None => admin.topic_masters(&a.topic).await?,
    };
    let mut reads = Vec::new();
    for (broker, addr) in brokers {
        let configs = admin.all_topic_config(&addr).await?;
        let Some(cfg) = configs.get(&a.topic) else {
            continue;
        };
        for (queue, origin) in copy_queues(&cfg.attributes) {
            let (admin, a, broker, addr) = (&admin, &a, broker.clone(), addr.clone());
            reads.push(async move {
                read_copy(admin, a, &addr, queue)
                    .await
                    .map_err(|e| anyhow::anyhow!("{broker} queue {queue} ({origin}): {e}"))
            });
        }
    }
    let copies = reads.len();
    let mut lag = new_histogram();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for r in futures::future::join_all(reads).await {
        let (h, f, l) = r?;
        let _ = lag.add(&h);
        first = first.min(f);
        last = last.max(l);
    }
    if copies == 0 {
        anyhow::bail!(
            "no broker of {} holds copies of other regions' queues of `{}`",
            a.namesrv,
            a.topic
        );
    }
    let span = if last > first {
        Duration::from_millis((last - first) as u64)
    } else {
        Duration::ZERO
    };
    let n = lag.len();
    Ok(Report {
        command: "relay-lag",
        settings: json!({
            "namesrv": a.namesrv,
            "topic": a.topic,
            "since_ms": a.since_ms,
            "until_ms": a.until_ms,
            "copy_queues": copies,
        }),
        duration_secs: span.as_secs_f64(),
        msgs_per_sec: crate::stats::per_sec(n, span),
        mb_per_sec: 0.0,
        sent: None,
        received: Some(n),
        errors: 0,
        latency_ms: LatencyMs::of(&lag),
        latency_from: "origin store to this region's store (copy records)",
        send_msgs_per_sec: None,
        send_latency_ms: None,
        sent_total: None,
        received_total: None,
        first_error: None,
    })
}

/// One copy queue's lags, and the first and last origin store time taken.
async fn read_copy(
    admin: &Admin,
    a: &RelayLagArgs,
    addr: &str,
    queue: i32,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, i64, i64)> {
    let mut lag = new_histogram();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut offset = 0;
    loop {
        let (code, next, msgs) = admin
            .pull(addr, "meridian_relay_lag", &a.topic, queue, offset, PULL)
            .await?;
        if msgs.is_empty() {
            if code != response_code::SUCCESS && next > offset {
                offset = next; // the copy starts later
                continue;
            }
            break;
        }
        for m in &msgs {
            let Some(at) = m
                .property(property::ORIGIN_STORE_TIME)
                .and_then(|v| v.parse::<i64>().ok())
            else {
                continue;
            };
            if at < a.since_ms || (a.until_ms > 0 && at >= a.until_ms) {
                continue;
            }
            first = first.min(at);
            last = last.max(at);
            let ms = (m.store_timestamp - at).max(0) as u64;
            let _ = lag.record((ms * 1000).clamp(1, lag.high()));
        }
        offset = next;
    }
    Ok((lag, first, last))
}
