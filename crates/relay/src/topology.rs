//! What a link relays, looked up from both clusters every
//! `routeRefreshIntervalMs`: every origin queue that the source region
//! serves for the chosen topics (its own queues, and the copies it holds of
//! other regions' queues), minus those that originate in the target region,
//! and where in the target each one's copy lives.
//!
//! A copy's place in the target: the broker that already holds it (its
//! topic config lists it), or else one chosen by a fixed hash of the origin
//! queue's name over the target's broker groups, so that every relay that
//! reaches the target by any path picks the same one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meridian_client::Admin;
use meridian_protocol::body::relay::CarriedOffset;
use meridian_protocol::body::{ClusterInfo, TopicConfig};
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::header::relay::RelayGetOffsetsRequestHeader;
use meridian_protocol::origin::{copy_queues, OriginQueue, REGION_CANARY_TOPIC};
use meridian_protocol::RemotingCommand;

use crate::config::RelayConfig;

/// The region a broker without a `zoneName` belongs to (RocketMQ's default
/// `regionId`).
pub const DEFAULT_REGION: &str = "DefaultRegion";

/// One origin queue to relay: where to read it and where its copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The source broker group and the address to read from (its master,
    /// or a slave while it has none).
    pub source_broker: String,
    pub source_addr: String,
    /// The queue id on the source broker (the origin's own id there, or the
    /// source's copy of it).
    pub source_queue: i32,
    /// The target broker group and its master's address.
    pub target_broker: String,
    pub target_addr: String,
    /// Own write queues of the topic at the source: how many the target
    /// gives the topic if it has to create it.
    pub write_queue_nums: i32,
}

/// A stream's name: its topic and origin queue.
pub type StreamKey = (String, OriginQueue);

/// The whole link as seen now.
#[derive(Debug, Default)]
pub struct LinkView {
    pub source_region: Option<String>,
    pub target_region: String,
    pub plans: BTreeMap<StreamKey, Plan>,
    /// Where a consumer offset of a source queue goes in the target:
    /// (topic, source address, source queue) → (target address, queue).
    /// The same origin queue in both regions, so the offset carries over
    /// unchanged: to the target's copy, or to the target's own queue when
    /// the origin is the target region.
    pub offset_targets: BTreeMap<(String, String, i32), (String, i32)>,
    /// Every source broker's address in use (where the relay group meets).
    pub source_addrs: BTreeSet<String>,
    /// The topics relayed, as chosen now.
    pub topics: BTreeSet<String>,
}

/// One cluster's broker groups: the address to use (master first) and the
/// region each belongs to.
struct Side {
    addrs: BTreeMap<String, String>,
    masters: BTreeSet<String>,
    regions: HashMap<String, String>,
}

impl Side {
    fn of(info: &ClusterInfo) -> Side {
        let mut side = Side {
            addrs: BTreeMap::new(),
            masters: BTreeSet::new(),
            regions: HashMap::new(),
        };
        for (name, data) in &info.broker_addr_table {
            if let Some((id, addr)) = data.broker_addrs.iter().next() {
                side.addrs.insert(name.clone(), addr.clone());
                if *id == meridian_protocol::body::route::MASTER_ID {
                    side.masters.insert(name.clone());
                }
            }
            let region = data
                .zone_name
                .clone()
                .filter(|z| !z.is_empty())
                .unwrap_or_else(|| DEFAULT_REGION.to_string());
            side.regions.insert(name.clone(), region);
        }
        side
    }
}

/// FNV-1a: a hash every relay process computes alike (std's hasher is
/// seeded per process).
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Look the link up.
pub async fn look_up(cfg: &RelayConfig, src: &Admin, dst: &Admin) -> anyhow::Result<LinkView> {
    let src_side = Side::of(&src.cluster_info().await?);
    let dst_side = Side::of(&dst.cluster_info().await?);
    let mut dst_regions: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &dst_side.masters {
        if let Some(r) = dst_side.regions.get(name) {
            *dst_regions.entry(r).or_default() += 1;
        }
    }
    let Some(target_region) = dst_regions
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(r, _)| r.to_string())
    else {
        anyhow::bail!(
            "the target cluster ({}) has no master broker registered",
            cfg.dest_namesrv
        );
    };
    if dst_regions.len() > 1 {
        tracing::warn!(regions = ?dst_regions, "the target cluster's brokers name several regions; relaying into {target_region}");
    }
    let mut topics: BTreeSet<String> = cfg.topics.names.iter().cloned().collect();
    let all = src.topic_list().await?;
    // The name servers' canaries travel every link (see docs/regions.md).
    if all.contains(REGION_CANARY_TOPIC) {
        topics.insert(REGION_CANARY_TOPIC.to_string());
    }
    if cfg.topics.has_patterns() || cfg.group_topics {
        for t in &all {
            if cfg.topics.matches(t) {
                topics.insert(t.clone());
            }
        }
        if cfg.group_topics {
            let masters: Vec<&String> = src_side
                .masters
                .iter()
                .filter_map(|n| src_side.addrs.get(n))
                .collect();
            for g in consuming_groups(src, &masters, &topics).await {
                for t in [format!("{RETRY_PREFIX}{g}"), format!("{DLQ_PREFIX}{g}")] {
                    if all.contains(&t) {
                        topics.insert(t);
                    }
                }
            }
            // Delayed messages and retries waiting for their time: the
            // stream carries only those of relayed topics.
            topics.insert(SCHEDULE_TOPIC.to_string());
        }
    }

    // Topic configs of every target master (where copies already live).
    let mut dst_configs: BTreeMap<String, HashMap<String, TopicConfig>> = BTreeMap::new();
    for name in &dst_side.masters {
        let addr = &dst_side.addrs[name];
        match dst.all_topic_config(addr).await {
            Ok(c) => {
                dst_configs.insert(name.clone(), c);
            }
            Err(e) => {
                tracing::warn!(broker = %name, addr, error = %e, "cannot read the target broker's topics")
            }
        }
    }
    let mut src_configs: HashMap<String, HashMap<String, TopicConfig>> = HashMap::new();
    let mut view = LinkView {
        source_region: None,
        target_region: target_region.clone(),
        plans: BTreeMap::new(),
        offset_targets: BTreeMap::new(),
        source_addrs: src_side.addrs.values().cloned().collect(),
        topics: topics.clone(),
    };
    for topic in topics {
        let Some(route) = src.own_route(&topic).await? else {
            continue;
        };
        for qd in &route.queue_datas {
            let Some(addr) = src_side.addrs.get(&qd.broker_name) else {
                continue;
            };
            if !src_configs.contains_key(addr) {
                match src.all_topic_config(addr).await {
                    Ok(c) => {
                        src_configs.insert(addr.clone(), c);
                    }
                    Err(e) => {
                        tracing::warn!(broker = %qd.broker_name, addr, error = %e, "cannot read the source broker's topics");
                        continue;
                    }
                }
            }
            let cfg = src_configs.get(addr).and_then(|c| c.get(&topic));
            let copies = cfg.map(|c| copy_queues(&c.attributes)).unwrap_or_default();
            let write_queue_nums = cfg.map_or(qd.write_queue_nums, |c| c.write_queue_nums);
            let read_queue_nums = cfg.map_or(qd.read_queue_nums, |c| c.read_queue_nums);
            let region = src_side
                .regions
                .get(&qd.broker_name)
                .cloned()
                .unwrap_or_else(|| DEFAULT_REGION.to_string());
            view.source_region.get_or_insert_with(|| region.clone());
            for q in 0..read_queue_nums {
                let origin = copies
                    .get(&q)
                    .cloned()
                    .unwrap_or_else(|| OriginQueue::new(&region, &qd.broker_name, q));
                if origin.region == target_region {
                    // Back home: the target's own queue of that origin.
                    if let Some(a) = dst_side.addrs.get(&origin.broker) {
                        view.offset_targets.insert(
                            (topic.clone(), addr.clone(), q),
                            (a.clone(), origin.queue_id),
                        );
                    }
                    continue;
                }
                if let Some(found) = copy_in(&topic, &origin, &dst_side, &dst_configs) {
                    view.offset_targets
                        .insert((topic.clone(), addr.clone(), q), found);
                }
                let Some((target_broker, target_addr)) =
                    place(&topic, &origin, &dst_side, &dst_configs)
                else {
                    continue;
                };
                view.plans.insert(
                    (topic.clone(), origin),
                    Plan {
                        source_broker: qd.broker_name.clone(),
                        source_addr: addr.clone(),
                        source_queue: q,
                        target_broker,
                        target_addr,
                        write_queue_nums,
                    },
                );
            }
        }
    }
    Ok(view)
}

const RETRY_PREFIX: &str = "%RETRY%";
/// RocketMQ's topic of messages waiting for their delay.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
const DLQ_PREFIX: &str = "%DLQ%";

/// The consumer groups with a committed offset on any of `topics` at any
/// of the source brokers `addrs` (whose retry and dead-letter topics
/// travel with the topics, so a group that moves regions finds its
/// retries and dead letters there too).
async fn consuming_groups(
    src: &Admin,
    addrs: &[&String],
    topics: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut groups = BTreeSet::new();
    let plain: Vec<&str> = topics
        .iter()
        .filter(|t| !t.starts_with(RETRY_PREFIX) && !t.starts_with(DLQ_PREFIX))
        .map(String::as_str)
        .collect();
    if plain.is_empty() {
        return groups;
    }
    for addr in addrs {
        let mut req = RemotingCommand::request(request_code::RELAY_GET_OFFSETS);
        RelayGetOffsetsRequestHeader {
            topics: plain.join(","),
        }
        .write(&mut req);
        match src.call(addr, req).await {
            Ok(r) if r.code == response_code::SUCCESS => {
                let list: Vec<CarriedOffset> = serde_json::from_slice(&r.body).unwrap_or_default();
                groups.extend(list.into_iter().map(|o| o.group));
            }
            Ok(r) => {
                tracing::debug!(addr = %addr, code = r.code, remark = ?r.remark, "no consumer offsets from the source broker")
            }
            Err(e) => tracing::debug!(addr = %addr, error = %e, "cannot read consumer offsets"),
        }
    }
    groups
}

/// The target broker group and queue id of an existing copy of `origin`.
fn existing_copy<'a>(
    topic: &str,
    origin: &OriginQueue,
    configs: &'a BTreeMap<String, HashMap<String, TopicConfig>>,
) -> Option<(&'a String, i32)> {
    configs.iter().find_map(|(name, topics)| {
        let (q, _) = copy_queues(&topics.get(topic)?.attributes)
            .into_iter()
            .find(|(_, o)| o == origin)?;
        Some((name, q))
    })
}

/// The target address and queue id of an existing copy of `origin`.
fn copy_in(
    topic: &str,
    origin: &OriginQueue,
    dst: &Side,
    configs: &BTreeMap<String, HashMap<String, TopicConfig>>,
) -> Option<(String, i32)> {
    let (name, q) = existing_copy(topic, origin, configs)?;
    Some((dst.addrs.get(name)?.clone(), q))
}

/// Where the copy of `origin` lives in the target, or goes.
fn place(
    topic: &str,
    origin: &OriginQueue,
    dst: &Side,
    configs: &BTreeMap<String, HashMap<String, TopicConfig>>,
) -> Option<(String, String)> {
    if let Some((name, _)) = existing_copy(topic, origin, configs) {
        return Some((name.clone(), dst.addrs.get(name)?.clone()));
    }
    // Broker groups that have the topic, or else every master.
    let with_topic: Vec<&String> = configs
        .iter()
        .filter(|(_, t)| t.contains_key(topic))
        .map(|(n, _)| n)
        .collect();
    let candidates: Vec<&String> = if with_topic.is_empty() {
        dst.masters.iter().collect()
    } else {
        with_topic
    };
    if candidates.is_empty() {
        return None;
    }
    let name = candidates[(stable_hash(&origin.to_string()) % candidates.len() as u64) as usize];
    Some((name.clone(), dst.addrs.get(name)?.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_same_in_every_process() {
        // FNV-1a test vectors.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
