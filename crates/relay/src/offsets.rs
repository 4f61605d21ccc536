//! Consumer offsets along a link. Every `offsetSyncIntervalMs` the relay
//! reads the committed offsets of the relayed topics from each source
//! broker (RELAY_GET_OFFSETS, with commit times) and hands them to the
//! target brokers (RELAY_PUT_OFFSETS) at the same origin queue: a copy
//! holds every record at its origin offset, so the number carries over
//! unchanged and a group that moves regions neither skips nor re-reads.
//! The target takes an offset only if it was committed later than its own
//! (a group consuming in the target region keeps its place), and keeps
//! the original commit time, so offsets travel on along chains and rings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use meridian_protocol::body::relay::CarriedOffset;
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::header::relay::RelayGetOffsetsRequestHeader;
use meridian_protocol::RemotingCommand;

use crate::Shared;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Carry every committed offset of the link once.
pub async fn carry(shared: &Shared, targets: &BTreeMap<(String, String, i32), (String, i32)>) {
    let mut by_source: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (topic, addr, _) in targets.keys() {
        by_source.entry(addr).or_default().insert(topic);
    }
    let mut out: BTreeMap<&str, Vec<CarriedOffset>> = BTreeMap::new();
    for (addr, topics) in by_source {
        let mut req = RemotingCommand::request(request_code::RELAY_GET_OFFSETS);
        RelayGetOffsetsRequestHeader {
            topics: topics.into_iter().collect::<Vec<_>>().join(","),
        }
        .write(&mut req);
        let list: Vec<CarriedOffset> = match shared.src.invoke(addr, req, TIMEOUT).await {
            Ok(r) if r.code == response_code::SUCCESS => match serde_json::from_slice(&r.body) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(source = addr, error = %e, "unreadable consumer offsets");
                    continue;
                }
            },
            Ok(r) => {
                tracing::debug!(source = addr, code = r.code, remark = ?r.remark, "source broker did not give its consumer offsets");
                continue;
            }
            Err(e) => {
                tracing::debug!(source = addr, error = %e, "cannot read consumer offsets");
                continue;
            }
        };
        for o in list {
            // The relay's own pulls commit nothing, but never carry its group.
            if o.group == shared.config.replication_group {
                continue;
            }
            if let Some((target, q)) = targets.get(&(o.topic.clone(), addr.to_string(), o.queue_id))
            {
                out.entry(target.as_str())
                    .or_default()
                    .push(CarriedOffset { queue_id: *q, ..o });
            }
        }
    }
    for (target, list) in out {
        let body = match serde_json::to_vec(&list) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let req = RemotingCommand::request(request_code::RELAY_PUT_OFFSETS).with_body(body);
        match shared.dst.invoke(target, req, TIMEOUT).await {
            Ok(r) if r.code == response_code::SUCCESS => {
                let taken: u64 = r.ext("taken").and_then(|v| v.parse().ok()).unwrap_or(0);
                shared
                    .stats
                    .offsets_carried
                    .fetch_add(taken, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(r) => {
                tracing::debug!(target, code = r.code, remark = ?r.remark, "target refused consumer offsets")
            }
            Err(e) => tracing::debug!(target, error = %e, "cannot carry consumer offsets"),
        }
    }
}
