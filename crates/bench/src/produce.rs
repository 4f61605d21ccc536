//! Producer tasks, and `meridian bench produce`.
//!
//! Every mode runs the same loop: a task keeps up to `window` requests in
//! flight on its connection (1 for sync, batch and oneway; `--inflight` for
//! async), picks queues round-robin from its own starting point, and with
//! `--rate` issues each request at an intended time. Latency is measured
//! from that intended time (open loop, so a stall that delays later sends
//! shows in their latency instead of silently lowering the load). A task
//! woken up late by the timer by less than [`TIMER_SLACK`] is not charged
//! for it: that is the timer's error, not the broker's.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use meridian_client::producer::{batch_request, send_request, Message};
use meridian_protocol::codes::response_code;
use meridian_protocol::{RemotingCommand, SerializeType};
use meridian_remoting::{Connection, RemotingError};

use crate::args::{Mode, ProduceArgs, ProducerArgs};
use crate::stamp::{Stamp, STAMP_LEN};
use crate::stats::{self, Live, Phases, Progress, SharedLatencies, Tally, MIB};
use crate::target::{self, Conns, Pools, Queue};
use crate::Report;

/// Lateness of a timer wake-up that is not counted as latency.
pub const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Pause after a failed request before the task sends again.
const BACKOFF_BROKER_ERROR: Duration = Duration::from_millis(10);
const BACKOFF_CONNECTION_ERROR: Duration = Duration::from_millis(500);

/// What every producer task of a run shares.
pub struct Plan {
    pub topic: String,
    pub group: String,
    pub mode: Mode,
    /// Messages per request.
    pub per_request: usize,
    /// Requests in flight per task.
    pub window: usize,
    pub body: Bytes,
    /// Time between a task's requests (`--rate`), `None` for as fast as
    /// possible.
    pub interval: Option<Duration>,
    pub tasks: usize,
    pub timeout: Duration,
    pub serialize_type: SerializeType,
    pub queues: Arc<Vec<Queue>>,
    /// Stamp bodies with their send time (end-to-end runs).
    pub stamp: Option<Stamp>,
    pub phases: Phases,
    pub live: Arc<Live>,
    pub stop: Arc<AtomicBool>,
    /// Messages left to send (`-q`).
    pub budget: Option<AtomicI64>,
    /// The send latencies of every task (the tasks can be thousands).
    pub latency: SharedLatencies,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &ProducerArgs,
        serialize_type: SerializeType,
        topic: &str,
        queues: Arc<Vec<Queue>>,
        stamp: Option<Stamp>,
        phases: Phases,
        live: Arc<Live>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Plan> {
        if p.size == 0 {
            bail!("-s must be at least 1 byte");
        }
        if stamp.is_some() && p.size < STAMP_LEN {
            bail!("end-to-end runs need messages of at least {STAMP_LEN} bytes (-s)");
        }
        let per_request = if p.mode == Mode::Batch {
            p.batch as usize
        } else {
            1
        };
        let tasks = p.threads as usize;
        let interval = match p.rate {
            Some(r) if r > 0.0 => {
                let requests_per_task = r / per_request as f64 / tasks as f64;
                Some(Duration::from_secs_f64(1.0 / requests_per_task))
            }
            Some(_) => bail!("--rate must be positive"),
            None => None,
        };
        // Printable, like the Java benchmark's random alphanumeric body.
        let body: Vec<u8> = (0..p.size).map(|i| b'a' + (i % 26) as u8).collect();
        Ok(Plan {
            topic: topic.to_string(),
            group: p.producer_group.clone(),
            mode: p.mode,
            per_request,
            window: if p.mode == Mode::Async {
                p.inflight as usize
            } else {
                1
            },
            body: Bytes::from(body),
            interval,
            tasks,
            timeout: Duration::from_millis(p.send_timeout_ms),
            serialize_type,
            queues,
            stamp,
            phases,
            live,
            stop,
            budget: p.messages.map(|n| AtomicI64::new(n as i64)),
            latency: SharedLatencies::default(),
        })
    }

    fn request(&self, q: &Queue, msgs: &mut [Message], at: Instant) -> RemotingCommand {
        if let Some(stamp) = &self.stamp {
            for m in msgs.iter_mut() {
                m.body = stamp.body(&self.body, at);
            }
        }
        let mut req = if self.mode == Mode::Batch {
            // Every message of `msgs` is a copy of one template, so they
            // share one topic; an error here is a bug.
            batch_request(&self.group, &q.broker_name, q.queue_id, msgs)
                .map(|(req, _)| req)
                .expect("batch messages share one topic")
        } else {
            send_request(&self.group, &q.broker_name, q.queue_id, &msgs[0]).0
        };
        req.serialize_type = self.serialize_type;
        req
    }

    /// Take `n` messages from the `-q` budget; false when it is spent.
    fn take_budget(&self, n: usize) -> bool {
        match &self.budget {
            Some(b) => b.fetch_sub(n as i64, Ordering::Relaxed) >= n as i64,
            None => true,
        }
    }
}

/// One finished request.
struct Done {
    latency_from: Instant,
    done: Instant,
    outcome: Result<(), (String, bool)>,
}

async fn send(
    conn: Arc<Connection>,
    req: RemotingCommand,
    oneway: bool,
    timeout: Duration,
    latency_from: Instant,
) -> Done {
    let outcome = if oneway {
        conn.invoke_oneway(req)
            .await
            .map_err(|e| (e.to_string(), true))
    } else {
        match conn.invoke(req, timeout).await {
            Ok(r) if r.code == response_code::SUCCESS => Ok(()),
            Ok(r) => Err((
                format!(
                    "broker answered code {}: {}",
                    r.code,
                    r.remark.unwrap_or_default()
                ),
                false,
            )),
            Err(e) => {
                let lost = matches!(
                    e,
                    RemotingError::Closed { .. } | RemotingError::Connect { .. }
                );
                Err((e.to_string(), lost))
            }
        }
    };
    Done {
        latency_from,
        done: Instant::now(),
        outcome,
    }
}

/// One producer task; returns what it counted in the measured window.
pub async fn task(plan: Arc<Plan>, idx: usize, mut conns: Conns) -> Tally {
    let phases = plan.phases;
    let oneway = plan.mode == Mode::Oneway;
    let msg_bytes = (plan.body.len() * plan.per_request) as u64;
    let template = Message {
        topic: plan.topic.clone(),
        body: plan.body.clone(),
        ..Default::default()
    };
    let mut msgs = vec![template; plan.per_request];
    let mut tally = Tally::default();
    let mut latencies = plan.latency.batch();
    let mut inflight = FuturesUnordered::new();
    // Tasks start spread over one interval, not all at once.
    let mut next_due = plan
        .interval
        .map(|iv| phases.start + iv.mul_f64(idx as f64 / plan.tasks as f64));
    let mut next_queue = idx;
    let mut pause_until: Option<Instant> = None;
    let mut stopping = false;

    let mut record = |d: Done, pause_until: &mut Option<Instant>| match d.outcome {
        Ok(()) => {
            plan.live.ok(plan.per_request as u64, msg_bytes);
            if phases.measured(d.done) {
                tally.msgs += plan.per_request as u64;
                tally.bytes += msg_bytes;
                if !oneway {
                    latencies.record(d.done.duration_since(d.latency_from));
                }
            }
        }
        Err((e, lost)) => {
            plan.live.error();
            if phases.measured(d.done) {
                tally.errors += 1;
            }
            if tally.first_error.is_none() {
                tally.first_error = Some(e);
            }
            let backoff = if lost {
                BACKOFF_CONNECTION_ERROR
            } else {
                BACKOFF_BROKER_ERROR
            };
            *pause_until = Some(d.done + backoff);
        }
    };

    loop {
        let now = Instant::now();
        if !stopping && (plan.stop.load(Ordering::Relaxed) || phases.over(now)) {
            stopping = true;
        }
        if !stopping && inflight.len() < plan.window {
            let mut ready_at = pause_until.unwrap_or(now).max(now);
            if let Some(due) = next_due {
                ready_at = ready_at.max(due);
            }
            if ready_at > now {
                // Not yet: wait for the time to send, or for an answer, but
                // never past the end of the run.
                let mut wake = ready_at.min(now + Duration::from_millis(100));
                if let Some(u) = phases.until {
                    wake = wake.min(u);
                }
                let sleep = tokio::time::sleep_until(wake.into());
                if inflight.is_empty() {
                    sleep.await;
                } else {
                    tokio::select! {
                        _ = sleep => {}
                        Some(d) = inflight.next() => record(d, &mut pause_until),
                    }
                }
                continue;
            }
            if !plan.take_budget(plan.per_request) {
                stopping = true;
                continue;
            }
            let intended = next_due.unwrap_or(now);
            if let (Some(iv), Some(due)) = (plan.interval, next_due.as_mut()) {
                *due += iv;
            }
            let latency_from = if plan.interval.is_some() {
                now.min(intended + TIMER_SLACK)
            } else {
                now
            };
            let q = &plan.queues[next_queue % plan.queues.len()];
            next_queue += 1;
            let conn = match conns.get(&q.addr).await {
                Ok(c) => c,
                Err(e) => {
                    record(
                        Done {
                            latency_from,
                            done: Instant::now(),
                            outcome: Err((e.to_string(), true)),
                        },
                        &mut pause_until,
                    );
                    continue;
                }
            };
            let req = plan.request(q, &mut msgs, latency_from);
            inflight.push(send(conn, req, oneway, plan.timeout, latency_from));
            continue;
        }
        match inflight.next().await {
            Some(d) => record(d, &mut pause_until),
            None => break,
        }
    }
    tally.finished_at = Some(Instant::now());
    tally
}

/// Spawn `plan.tasks` producer tasks over `pools`.
pub fn spawn(plan: &Arc<Plan>, pools: &Pools) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..plan.tasks)
        .map(|i| tokio::spawn(task(plan.clone(), i, pools.for_task(i))))
        .collect()
}

/// Wait for tasks and merge what they counted, with `plan`'s latencies.
pub async fn join(plan: &Plan, handles: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for h in handles {
        if let Ok(t) = h.await {
            all.merge(t);
        }
    }
    plan.latency.add_to(&mut all);
    all
}

/// `meridian bench produce`.
pub async fn run(args: ProduceArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    let c = &args.common;
    let p = &args.producer;
    let admin = c.admin()?;
    let queues = Arc::new(target::produce_queues(&admin, &c.topic, p.queues, c.json).await?);
    let pools = c.pools()?;
    pools.connect_all(&queues).await?;

    let phases = Phases::new(c.warmup(), c.duration());
    let live = Arc::new(Live::default());
    let plan = Arc::new(Plan::new(
        p,
        c.serialize_type.serialize_type(),
        &c.topic,
        queues.clone(),
        None,
        phases,
        live.clone(),
        stop,
    )?);
    let progress = Progress::start(phases, vec![("sent", live)]);
    let tally = join(&plan, spawn(&plan, &pools)).await;
    progress.stop().await;
    pools.close_all();

    let window = stats::window(&phases, tally.finished_at);
    let latency = tally.latency_ms();
    Ok(Report {
        command: "produce",
        settings: settings(c, p, queues.len()),
        duration_secs: window.as_secs_f64(),
        msgs_per_sec: stats::per_sec(tally.msgs, window),
        mb_per_sec: stats::per_sec(tally.bytes, window) / MIB,
        sent: Some(tally.msgs),
        received: None,
        errors: tally.errors,
        latency_ms: latency,
        latency_from: if p.mode == Mode::Oneway {
            "not measured: oneway requests have no answer"
        } else if p.rate.is_some() {
            "intended send time to answer (open loop)"
        } else {
            "send to answer"
        },
        send_msgs_per_sec: None,
        send_latency_ms: None,
        sent_total: None,
        received_total: None,
        first_error: tally.first_error,
    })
}

/// The settings echoed in a report.
pub fn settings(c: &crate::args::CommonArgs, p: &ProducerArgs, queues: usize) -> serde_json::Value {
    serde_json::json!({
        "namesrv": c.namesrv,
        "topic": c.topic,
        "queues": queues,
        "connections": c.connections,
        "threads": p.threads,
        "size": p.size,
        "mode": p.mode.name(),
        "batch": if p.mode == Mode::Batch { Some(p.batch) } else { None },
        "inflight": if p.mode == Mode::Async { Some(p.inflight) } else { None },
        "rate": p.rate,
        "messages": p.messages,
        "serialize_type": c.serialize_type.serialize_type().java_name(),
        "warmup_secs": c.warmup,
        "duration_secs": c.duration,
    })
}
