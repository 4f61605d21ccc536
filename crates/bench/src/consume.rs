//! Pull tasks, and `meridian bench consume`.
//!
//! One task per queue, as the Java consumer runs one pull request per
//! queue: so as many pulls are in flight as the topic has queues. Each pull
//! is a long poll (the broker holds it up to 15 s when the queue has
//! nothing new) with the subscription `*`. Records are parsed in place and
//! counted; for end-to-end runs each body's send stamp gives the latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_client::consumer::{Pull, PullResult, PullStatus, BROKER_SUSPEND_MAX_TIME};
use meridian_protocol::SerializeType;
use tokio::sync::watch;

use crate::args::{ConsumeArgs, ConsumerArgs};
use crate::stamp::Stamp;
use crate::stats::{self, Live, Phases, Progress, Tally, MIB};
use crate::target::{self, Conns, Pools, Queue};
use crate::Report;

/// Pause after a failed pull before the next one.
const BACKOFF: Duration = Duration::from_millis(100);

/// What every pull task of a run shares.
pub struct Plan {
    pub group: String,
    pub topic: String,
    pub pull_batch: i32,
    pub serialize_type: SerializeType,
    pub phases: Phases,
    /// Pulls stop here (for end-to-end runs, after a grace period).
    pub pull_until: Option<Instant>,
    /// End-to-end runs: read send stamps; latency is stamp to receipt.
    /// Otherwise latency is a pull's round trip (pulls that found
    /// messages only).
    pub stamp: Option<Stamp>,
    pub live: Arc<Live>,
}

impl Plan {
    pub fn new(
        c: &ConsumerArgs,
        serialize_type: SerializeType,
        topic: &str,
        phases: Phases,
        pull_until: Option<Instant>,
        stamp: Option<Stamp>,
        live: Arc<Live>,
    ) -> Plan {
        Plan {
            group: c.group.clone(),
            topic: topic.to_string(),
            pull_batch: c.pull_batch,
            serialize_type,
            phases,
            pull_until,
            stamp,
            live,
        }
    }
}

/// Pull queue `q` from `offset` until the run ends, `stop` turns true, or
/// (with `stop_at`) the queue is read up to that offset.
pub async fn task(
    plan: Arc<Plan>,
    q: Queue,
    mut conns: Conns,
    mut offset: i64,
    stop_at: Option<i64>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let phases = plan.phases;
    let mut tally = Tally::default();
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let until = plan.pull_until.unwrap_or(far);
    loop {
        if *stop.borrow() || Instant::now() >= until {
            break;
        }
        if stop_at.is_some_and(|end| offset >= end) {
            break;
        }
        let conn = match conns.get(&q.addr).await {
            Ok(c) => c,
            Err(e) => {
                fail(&mut tally, &plan, e.to_string());
                pause(BACKOFF, until, &mut stop).await;
                continue;
            }
        };
        let pull = Pull {
            group: &plan.group,
            topic: &plan.topic,
            broker_name: &q.broker_name,
            queue_id: q.queue_id,
            offset,
            max_msgs: plan.pull_batch,
            suspend: Some(BROKER_SUSPEND_MAX_TIME),
        };
        let mut req = pull.request();
        req.serialize_type = plan.serialize_type;
        let sent_at = Instant::now();
        let answer = tokio::select! {
            r = conn.invoke(req, pull.timeout()) => r,
            _ = tokio::time::sleep_until(until.into()) => break,
            _ = stop.changed() => break,
        };
        let now = Instant::now();
        let result = match answer {
            Ok(r) => PullResult::from_response(r).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                fail(&mut tally, &plan, e);
                pause(BACKOFF, until, &mut stop).await;
                continue;
            }
        };
        match res.status {
            PullStatus::Found => {
                let (mut n, mut bytes) = (0u64, 0u64);
                for rec in res.iter() {
                    match rec {
                        Ok(v) => {
                            n += 1;
                            bytes += v.body.len() as u64;
                            if let Some(sent) = plan.stamp.as_ref().and_then(|s| s.read(v.body)) {
                                if sent >= phases.measure_from {
                                    tally.record_latency(now.saturating_duration_since(sent));
                                }
                            }
                        }
                        Err(e) => fail(&mut tally, &plan, format!("bad record in a pull: {e}")),
                    }
                }
                plan.live.ok(n, bytes);
                if phases.measured(now) {
                    tally.msgs += n;
                    tally.bytes += bytes;
                    if plan.stamp.is_none() {
                        tally.record_latency(now.duration_since(sent_at));
                    }
                }
                offset = if res.next_offset > offset {
                    res.next_offset
                } else {
                    offset + n as i64
                };
            }
            PullStatus::NoNewMessage | PullStatus::OffsetIllegal => offset = res.next_offset,
            PullStatus::Retry => {}
        }
    }
    tally.finished_at = Some(Instant::now());
    tally
}

fn fail(tally: &mut Tally, plan: &Plan, e: String) {
    plan.live.error();
    if plan.phases.measured(Instant::now()) {
        tally.errors += 1;
    }
    if tally.first_error.is_none() {
        tally.first_error = Some(e);
    }
}

async fn pause(d: Duration, until: Instant, stop: &mut watch::Receiver<bool>) {
    let wake = (Instant::now() + d).min(until);
    tokio::select! {
        _ = tokio::time::sleep_until(wake.into()) => {}
        _ = stop.changed() => {}
    }
}

/// Spawn one pull task per queue, queue `i` on connection `i mod n`.
pub fn spawn(
    plan: &Arc<Plan>,
    pools: &Pools,
    queues: &[Queue],
    starts: &[i64],
    stop_at: Option<&[i64]>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    queues
        .iter()
        .enumerate()
        .map(|(i, q)| {
            tokio::spawn(task(
                plan.clone(),
                q.clone(),
                pools.for_task(i),
                starts[i],
                stop_at.map(|s| s[i]),
                stop.clone(),
            ))
        })
        .collect()
}

/// `meridian bench consume`.
pub async fn run(args: ConsumeArgs, stop_flag: Arc<AtomicBool>) -> anyhow::Result<Report> {
    let c = &args.common;
    let admin = c.admin()?;
    let queues = target::consume_queues(&admin, &c.topic).await?;
    let pools = c.pools()?;
    pools.connect_all(&queues).await?;
    let ends = target::max_offsets(&pools, &c.topic, &queues).await?;
    let (starts, stop_at) = if args.from_start {
        (vec![0; queues.len()], Some(ends.as_slice()))
    } else {
        (ends.clone(), None)
    };
    if args.from_start && !c.json {
        eprintln!(
            "consuming a backlog of {} messages in {} queues",
            ends.iter().sum::<i64>(),
            queues.len()
        );
    }

    let phases = Phases::new(c.warmup(), c.duration());
    let live = Arc::new(Live::default());
    let plan = Arc::new(Plan::new(
        &args.consumer,
        c.serialize_type.serialize_type(),
        &c.topic,
        phases,
        phases.until,
        None,
        live.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let handles = spawn(&plan, &pools, &queues, &starts, stop_at, &stop_rx);
    let progress = Progress::start(phases, vec![("received", live)]);
    let watcher = tokio::spawn(async move {
        while !stop_flag.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop_tx.send(true);
    });
    let mut tally = Tally::default();
    for h in handles {
        if let Ok(t) = h.await {
            tally.merge(t);
        }
    }
    watcher.abort();
    progress.stop().await;
    pools.close_all();

    let window = stats::window(&phases, tally.finished_at);
    Ok(Report {
        command: "consume",
        settings: serde_json::json!({
            "namesrv": c.namesrv,
            "topic": c.topic,
            "queues": queues.len(),
            "connections": c.connections,
            "group": args.consumer.group,
            "pull_batch": args.consumer.pull_batch,
            "from_start": args.from_start,
            "serialize_type": c.serialize_type.serialize_type().java_name(),
            "backlog": if args.from_start { Some(ends.iter().sum::<i64>()) } else { None },
            "warmup_secs": c.warmup,
            "duration_secs": c.duration,
        }),
        duration_secs: window.as_secs_f64(),
        msgs_per_sec: stats::per_sec(tally.msgs, window),
        mb_per_sec: stats::per_sec(tally.bytes, window) / MIB,
        sent: None,
        received: Some(tally.msgs),
        errors: tally.errors,
        latency_ms: tally.latency_ms(),
        latency_from: "pull round trip (pulls that found messages)",
        send_msgs_per_sec: None,
        send_latency_ms: None,
        sent_total: None,
        received_total: None,
        first_error: tally.first_error,
    })
}
