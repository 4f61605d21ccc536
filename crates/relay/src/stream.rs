//! One origin queue's stream from the source to its copy in the target.
//!
//! The copy says where it continues (RELAY_APPEND with an empty body), so
//! the target is the checkpoint: a relay that was killed, or whose target
//! lost its tail, starts again from what the target holds. Records are
//! pulled from that offset and appended in batches with several appends in
//! flight on one connection (queued in order, so the target stores them in
//! order); an answer that says the copy continues elsewhere than expected
//! (another path got there first, or a gap) drops what is in flight and
//! resumes from there. Nothing can be stored twice: the target stores a
//! record only at the offset where its copy continues.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meridian_client::consumer::{Pull, PullResult, PullStatus};
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::header::relay::{RelayAppendRequestHeader, RelayAppendResponseHeader};
use meridian_protocol::message::{
    body_crc, find_property, parse_record, property, RecordRef, RecordView,
};
use meridian_protocol::RemotingCommand;
use tokio::sync::watch;

use crate::stats::StreamStats;
use crate::topology::{Plan, StreamKey, SCHEDULE_TOPIC};
use crate::Shared;

/// How long an append may take before the stream starts over.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pull waits at the source for new records.
const LONG_POLL: Duration = Duration::from_secs(2);
/// Pause after a failure before trying again.
const BACKOFF: Duration = Duration::from_millis(500);

/// Relay one stream until `plan` is dropped by the supervisor.
pub async fn run(
    shared: Arc<Shared>,
    key: StreamKey,
    mut plan: watch::Receiver<Plan>,
    stats: Arc<StreamStats>,
) {
    let (topic, origin) = &key;
    loop {
        let p = plan.borrow_and_update().clone();
        match relay(&shared, topic, origin, &p, &mut plan, &stats).await {
            Ok(()) => {} // the plan changed: start over with the new one
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, origin = %origin, error = %e, "relay stream interrupted; resuming from the target's position");
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF) => {}
                    r = plan.changed() => if r.is_err() { return },
                }
            }
        }
        if plan.has_changed().is_err() {
            return;
        }
    }
}

struct InFlight {
    /// The offset the copy continues at once this append is stored.
    end: i64,
    /// Origin store time of its last record.
    last_store_ms: i64,
    response: std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<RemotingCommand, meridian_remoting::RemotingError>,
                > + Send,
        >,
    >,
}

async fn relay(
    shared: &Arc<Shared>,
    topic: &str,
    origin: &meridian_protocol::origin::OriginQueue,
    p: &Plan,
    plan: &mut watch::Receiver<Plan>,
    stats: &StreamStats,
) -> anyhow::Result<()> {
    let target = shared.dst.connection(&p.target_addr).await?;
    let request = |body: Bytes| {
        let mut req = RemotingCommand::request(request_code::RELAY_APPEND).with_body(body);
        RelayAppendRequestHeader {
            topic: topic.to_string(),
            origin_region: origin.region.clone(),
            origin_broker: origin.broker.clone(),
            origin_queue_id: origin.queue_id,
            write_queue_nums: Some(p.write_queue_nums),
        }
        .write(&mut req);
        req
    };
    // Where the copy continues: the target is the checkpoint.
    let probe = target.invoke(request(Bytes::new()), APPEND_TIMEOUT).await?;
    let mut expected = appended(&probe)?.next_offset;
    stats.copy_next.store(expected, Ordering::Relaxed);
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    loop {
        if plan.has_changed().unwrap_or(true) {
            return Ok(());
        }
        // Send what the source has while there is room in the pipeline;
        // with appends in flight, wait for whichever comes first: the
        // oldest append's answer, or new records at the source. (Waiting
        // only for answers would hold new records back a round trip.)
        let room = inflight.len() < shared.config.pipeline_depth;
        let batch = match inflight.front_mut() {
            None => {
                Some(collect(shared, topic, origin, p, expected, Some(LONG_POLL), stats).await?)
            }
            Some(front) if room => tokio::select! {
                biased;
                r = &mut front.response => {
                    let f = inflight.pop_front().expect("the front append");
                    answered(p, f, r?, &mut inflight, &mut expected, stats)?;
                    None
                }
                b = collect(shared, topic, origin, p, expected, Some(LONG_POLL), stats) => Some(b?),
            },
            Some(front) => {
                let r = (&mut front.response).await;
                let f = inflight.pop_front().expect("the front append");
                answered(p, f, r?, &mut inflight, &mut expected, stats)?;
                None
            }
        };
        let Some(b) = batch else { continue };
        match b {
            Batch::Gap(next) => {
                tracing::warn!(topic, origin = %origin, copy_next = expected, source_min = next, "the source has deleted records the copy does not hold yet");
                expected = next;
                stats.source_gap.store(true, Ordering::Relaxed);
            }
            Batch::Nothing => {}
            Batch::Records {
                n,
                last,
                last_store_ms,
                body,
            } => {
                shared.limiter.acquire(n).await;
                let response = target.invoke_queued(request(body), APPEND_TIMEOUT)?;
                inflight.push_back(InFlight {
                    end: last + 1,
                    last_store_ms,
                    response: Box::pin(response),
                });
                expected = last + 1;
            }
        }
    }
}

/// What the source has from an offset on.
enum Batch {
    /// Nothing yet.
    Nothing,
    /// The source deleted records up to here before the copy held them.
    Gap(i64),
    /// `n` records back to back, the last at `last`.
    Records {
        n: u64,
        last: i64,
        last_store_ms: i64,
        body: Bytes,
    },
}

/// Up to `relayPullBatchSize` records from `from` on, read with as many
/// pulls as that takes (a broker gives at most 32 records per pull, as
/// RocketMQ's does); the first pull waits up to `wait` for a record.
async fn collect(
    shared: &Shared,
    topic: &str,
    origin: &meridian_protocol::origin::OriginQueue,
    p: &Plan,
    from: i64,
    wait: Option<Duration>,
    stats: &StreamStats,
) -> anyhow::Result<Batch> {
    let mut body = BytesMut::new();
    let (mut n, mut last, mut last_store_ms) = (0u64, from - 1, 0);
    let filter = &shared.config.tag_filter;
    // Every record travels whole unless a tag filter is set or this is the
    // schedule topic (whose records travel whole only for relayed topics).
    let schedule = topic == SCHEDULE_TOPIC;
    let whole = filter.is_all() && !schedule;
    let relayed = schedule.then(|| shared.relayed.read().clone());
    while (n as i32) < shared.config.pull_batch {
        let want = shared.config.pull_batch - n as i32;
        let pulled = pull(shared, topic, p, last + 1, want, wait.filter(|_| n == 0)).await?;
        stats.source_max.store(pulled.max_offset, Ordering::Relaxed);
        match pulled.status {
            PullStatus::Found => {}
            PullStatus::NoNewMessage => break,
            PullStatus::OffsetIllegal | PullStatus::Retry => {
                if n == 0 && pulled.next_offset > from {
                    // Only an empty copy can start there.
                    return Ok(Batch::Gap(pulled.next_offset));
                }
                break;
            }
        }
        let before = n;
        let mut rest: &[u8] = &pulled.records;
        while !rest.is_empty() {
            let r = parse_record(rest).map_err(|e| {
                anyhow::anyhow!("the source sent an unreadable record of {topic} {origin}: {e}")
            })?;
            let (record, tail) = rest.split_at((r.total_size as usize).min(rest.len()));
            rest = tail;
            n += 1;
            last = r.queue_offset;
            last_store_ms = r.store_timestamp;
            if whole {
                continue;
            }
            let props = r.properties_str().unwrap_or_default();
            let carried = find_property(props, property::FILTERED).is_some()
                || ((filter.is_all() || filter.carries(find_property(props, property::TAGS)))
                    && relayed.as_ref().is_none_or(|set| {
                        find_property(props, property::REAL_TOPIC).is_some_and(|t| set.contains(t))
                    }));
            if carried {
                body.extend_from_slice(record);
            } else {
                placeholder(&r, props, &mut body)?;
            }
        }
        if n == before {
            break;
        }
        if whole {
            body.extend_from_slice(&pulled.records);
        }
    }
    Ok(if n == 0 {
        Batch::Nothing
    } else {
        Batch::Records {
            n,
            last,
            last_store_ms,
            body: body.freeze(),
        }
    })
}

/// Append to `out` a placeholder for the record `r` that the tag filter
/// leaves out: the same queue offset and times, no body, and of its
/// properties only where it came from, marked `MERIDIAN_FILTERED`.
fn placeholder(r: &RecordView<'_>, props: &str, out: &mut BytesMut) -> anyhow::Result<()> {
    let kept = meridian_protocol::origin::placeholder_properties(props);
    let topic = r.topic_str().unwrap_or_default();
    let rec = RecordRef {
        topic,
        queue_id: r.queue_id,
        flag: r.flag,
        queue_offset: r.queue_offset,
        commit_log_offset: r.commit_log_offset,
        sys_flag: r.sys_flag,
        born_timestamp: r.born_timestamp,
        born_host: r.born_host,
        store_timestamp: r.store_timestamp,
        store_host: r.store_host,
        reconsume_times: r.reconsume_times,
        prepared_transaction_offset: r.prepared_transaction_offset,
        body: &[],
        body_crc: body_crc(&[]),
        properties: &kept,
    };
    out.extend_from_slice(&rec.encode_to_vec()?);
    Ok(())
}

/// Take the target's answer to the oldest append in flight.
fn answered(
    p: &Plan,
    f: InFlight,
    r: RemotingCommand,
    inflight: &mut VecDeque<InFlight>,
    expected: &mut i64,
    stats: &StreamStats,
) -> anyhow::Result<()> {
    let h = appended(&r)?;
    stats
        .appended
        .fetch_add(h.appended.max(0) as u64, Ordering::Relaxed);
    stats
        .present
        .fetch_add(h.present.max(0) as u64, Ordering::Relaxed);
    stats.copy_next.store(h.next_offset, Ordering::Relaxed);
    if h.appended > 0 {
        stats.lag_ms.store(
            (meridian_protocol::now_ms() - f.last_store_ms).max(0),
            Ordering::Relaxed,
        );
    }
    if r.code != response_code::SUCCESS {
        // Stored, but not yet replicated as the target promises: send
        // again from where the target says; it answers "present" for what
        // it holds.
        anyhow::bail!(
            "target {} answered code {}: {}",
            p.target_addr,
            r.code,
            r.remark.unwrap_or_default()
        );
    }
    if h.next_offset != f.end {
        // Another path got there first, or the copy has a gap before this
        // batch: what is in flight no longer fits.
        inflight.clear();
        *expected = h.next_offset;
    }
    stats.source_gap.store(false, Ordering::Relaxed);
    Ok(())
}

/// The answer to an append: its header, or the error it carries.
fn appended(r: &RemotingCommand) -> anyhow::Result<RelayAppendResponseHeader> {
    match RelayAppendResponseHeader::parse(r) {
        Ok(h) => Ok(h),
        Err(_) => anyhow::bail!(
            "the target refused the append: code {}: {}",
            r.code,
            r.remark.clone().unwrap_or_default()
        ),
    }
}

async fn pull(
    shared: &Shared,
    topic: &str,
    p: &Plan,
    offset: i64,
    max_msgs: i32,
    wait: Option<Duration>,
) -> anyhow::Result<PullResult> {
    let pull = Pull {
        group: &shared.config.replication_group,
        topic,
        broker_name: &p.source_broker,
        queue_id: p.source_queue,
        offset,
        max_msgs,
        suspend: wait,
    };
    let mut req = pull.request();
    // A copy read onwards keeps its placeholders, so its offsets stay whole.
    req.set_ext(meridian_protocol::origin::PULL_PLACEHOLDERS_EXT, "true");
    let r = shared
        .src
        .invoke(&p.source_addr, req, pull.timeout())
        .await?;
    Ok(PullResult::from_response(r)?)
}
