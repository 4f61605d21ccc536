//! `meridian bench e2e`: producers and one pull task per queue at once.
//!
//! Consumers start at the end of every queue before the first send, so
//! they see exactly what this run sends. Each body carries its send time
//! (the intended one under `--rate`); the latency is from it to the moment
//! the pull that carried the message was answered. When producers stop,
//! consumers go on until they have received as many messages as were sent
//! or the grace period ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::args::{E2eArgs, Mode};
use crate::stamp::Stamp;
use crate::stats::{self, Live, Phases, Progress, MIB};
use crate::target;
use crate::{consume, produce, Report};

pub async fn run(args: E2eArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    let c = &args.common;
    let p = &args.producer;
    let admin = c.admin()?;
    let queues = Arc::new(target::produce_queues(&admin, &c.topic, p.queues, c.json).await?);
    let pools = c.pools()?;
    pools.connect_all(&queues).await?;
    let starts = target::max_offsets(&pools, &c.topic, &queues).await?;

    let phases = Phases::new(c.warmup(), c.duration());
    let stamp = Stamp::new();
    let sent_live = Arc::new(Live::default());
    let recv_live = Arc::new(Live::default());
    let grace = Duration::from_secs_f64(args.grace.max(0.0));
    let pull_until = phases.until.map(|u| u + grace);

    let (stop_tx, stop_rx) = watch::channel(false);
    let cplan = Arc::new(consume::Plan::new(
        &args.consumer,
        c.serialize_type.serialize_type(),
        &c.topic,
        phases,
        pull_until,
        Some(stamp),
        recv_live.clone(),
    ));
    let consumers = consume::spawn(&cplan, &pools, &queues, &starts, None, &stop_rx);
    let pplan = Arc::new(produce::Plan::new(
        p,
        c.serialize_type.serialize_type(),
        &c.topic,
        queues.clone(),
        Some(stamp),
        phases,
        sent_live.clone(),
        stop.clone(),
    )?);
    let progress = Progress::start(
        phases,
        vec![("sent", sent_live.clone()), ("received", recv_live.clone())],
    );
    let sent = produce::join(&pplan, produce::spawn(&pplan, &pools)).await;

    // Let the consumers catch up with what was sent, within the grace period.
    let catch_up_until = Instant::now() + grace;
    loop {
        let sent_n = sent_live.msgs.load(Ordering::Relaxed);
        let recv_n = recv_live.msgs.load(Ordering::Relaxed);
        if recv_n >= sent_n || Instant::now() >= catch_up_until || stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let mut received = stats::Tally::default();
    for h in consumers {
        if let Ok(t) = h.await {
            received.merge(t);
        }
    }
    progress.stop().await;
    pools.close_all();

    let window = stats::window(&phases, sent.finished_at);
    let first_error = sent.first_error.clone().or(received.first_error.clone());
    Ok(Report {
        command: "e2e",
        settings: {
            let mut s = produce::settings(c, p, queues.len());
            s["group"] = args.consumer.group.clone().into();
            s["pull_batch"] = args.consumer.pull_batch.into();
            s
        },
        duration_secs: window.as_secs_f64(),
        msgs_per_sec: stats::per_sec(received.msgs, window),
        mb_per_sec: stats::per_sec(received.bytes, window) / MIB,
        sent: Some(sent.msgs),
        received: Some(received.msgs),
        errors: sent.errors + received.errors,
        latency_ms: received.latency_ms(),
        latency_from: if p.rate.is_some() {
            "intended send time to receipt by the consumer (open loop)"
        } else {
            "send to receipt by the consumer"
        },
        send_msgs_per_sec: Some(stats::per_sec(sent.msgs, window)),
        send_latency_ms: (p.mode != Mode::Oneway).then(|| sent.latency_ms()),
        sent_total: Some(sent_live.msgs.load(Ordering::Relaxed)),
        received_total: Some(recv_live.msgs.load(Ordering::Relaxed)),
        first_error,
    })
}
