//! The broker's Prometheus metrics (see `meridian-metrics` for the
//! exporter and docs/operations.md for the list with meanings).
//!
//! Counted where they happen, one atomic add per request: messages and
//! bytes in by topic and message type, out by topic and consumer group,
//! dead-lettered messages, RPC latency (in front of every handler).
//! Read at scrape time by [`BrokerCollector`]: storage size and how far
//! flushing and dispatching are behind, connections, consumer lag per
//! group and topic, replication (slaves and Raft followers), Raft term
//! and role, relay copies, transactions and store totals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use meridian_metrics::prometheus_client::collector::Collector;
use meridian_metrics::prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use meridian_metrics::prometheus_client::metrics::counter::Counter;
use meridian_metrics::prometheus_client::metrics::family::Family;
use meridian_metrics::{Registry, RpcMetrics, Scrape, Unlabeled};

use crate::BrokerInner;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InLabels {
    pub topic: String,
    /// RocketMQ 5's message types: `Normal`, `Delay`, `Transaction`.
    pub message_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub topic: String,
    pub consumer_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    /// A slave's address or a Raft member (`n2`).
    replica: String,
}

/// RocketMQ 5's message types, in the order [`TopicCounts`] keeps them.
const MESSAGE_TYPES: [&str; 3] = ["Normal", "Delay", "Transaction"];

/// Messages and bytes, per message type: [messages, bytes] × 3.
type TopicCounts = [AtomicU64; 6];

/// Messages and bytes.
type GroupCounts = [AtomicU64; 2];

/// consumer group → topic → queue → offset.
type PullOffsets = HashMap<String, HashMap<String, BTreeMap<i32, i64>>>;

/// What the broker counts as it works. The counters of a send or a pull
/// are found under a read lock by the names the request already holds
/// (nothing is allocated once a topic or group has been seen) and added
/// to atomically.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    /// topic → counts by message type
    sent: RwLock<HashMap<String, Arc<TopicCounts>>>,
    /// consumer group → topic → counts
    pulled: RwLock<HashMap<String, HashMap<String, Arc<GroupCounts>>>>,
    send_to_dlq: Family<GroupLabels, Counter>,
    /// Raft: how often this member became or stopped being the leader.
    pub raft_role_changes: AtomicU64,
    /// Set once the exporter runs: request latency by code.
    rpc: parking_lot::Mutex<Option<Arc<RpcMetrics>>>,
    /// Messages per second in and out, for the runtime info.
    pub tps: TpsMeter,
    /// Per topic and group, for VIEW_BROKER_STATS_DATA.
    pub history: StatsHistory,
    /// When sampling began: the clock of `tps` and `history`.
    pub started: std::sync::OnceLock<std::time::Instant>,
    /// consumer group → topic → queue → where its last pull ended: with
    /// the committed offsets, what is in flight (RocketMQ 5's pull offset
    /// table).
    pull_offsets: parking_lot::Mutex<PullOffsets>,
}

impl BrokerMetrics {
    /// Messages stored for producers: `n` messages of `bytes` body bytes.
    pub fn sent(&self, topic: &str, message_type: &'static str, n: u64, bytes: u64) {
        let t = MESSAGE_TYPES
            .iter()
            .position(|m| *m == message_type)
            .unwrap_or(0);
        let add = |c: &TopicCounts| {
            c[2 * t].fetch_add(n, Ordering::Relaxed);
            c[2 * t + 1].fetch_add(bytes, Ordering::Relaxed);
        };
        if let Some(c) = self.sent.read().get(topic) {
            return add(c);
        }
        add(self.sent.write().entry(topic.to_string()).or_default());
    }

    /// Messages handed to a consumer group by a pull.
    pub fn pulled(&self, group: &str, topic: &str, n: u64, bytes: u64) {
        if n == 0 {
            return;
        }
        let add = |c: &GroupCounts| {
            c[0].fetch_add(n, Ordering::Relaxed);
            c[1].fetch_add(bytes, Ordering::Relaxed);
        };
        if let Some(c) = self.pulled.read().get(group).and_then(|t| t.get(topic)) {
            return add(c);
        }
        add(self
            .pulled
            .write()
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default());
    }

    /// A pull of `group` on `topic`/`queue` ended at `next`.
    pub fn pulled_to(&self, group: &str, topic: &str, queue: i32, next: i64) {
        let mut m = self.pull_offsets.lock();
        if let Some(q) = m.get_mut(group).and_then(|t| t.get_mut(topic)) {
            q.insert(queue, next);
            return;
        }
        m.entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .insert(queue, next);
    }

    /// A message of `topic` that `group` failed too often, stored in the
    /// group's dead-letter topic.
    pub fn dead_lettered(&self, group: &str, topic: &str) {
        self.send_to_dlq
            .get_or_create(&GroupLabels {
                topic: topic.to_string(),
                consumer_group: group.to_string(),
            })
            .inc();
    }

    /// Register everything in `registry`, with the scrape-time values of
    /// `broker`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry, broker: Weak<BrokerInner>) {
        registry.register_collector(Box::new(TrafficCollector(Arc::clone(self))));
        meridian_metrics::register_described(
            registry,
            "rocketmq_send_to_dlq_messages",
            "Messages moved to a dead-letter topic, by original topic and consumer group",
            self.send_to_dlq.clone(),
        );
        *self.rpc.lock() = Some(RpcMetrics::register(registry));
        registry.register_collector(Box::new(BrokerCollector(broker)));
    }

    /// Request latency, once registered.
    pub fn rpc(&self) -> Option<Arc<RpcMetrics>> {
        self.rpc.lock().clone()
    }
}

/// Messages and bytes in and out, from [`BrokerMetrics`]' tables.
#[derive(Debug)]
struct TrafficCollector(Arc<BrokerMetrics>);

impl Collector for TrafficCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut s = Scrape(encoder);
        let (mut messages, mut bytes) = (Vec::new(), Vec::new());
        for (topic, c) in self.0.sent.read().iter() {
            for (t, message_type) in MESSAGE_TYPES.iter().enumerate() {
                let n = c[2 * t].load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let labels = InLabels {
                    topic: topic.clone(),
                    message_type,
                };
                messages.push((labels.clone(), n));
                bytes.push((labels, c[2 * t + 1].load(Ordering::Relaxed)));
            }
        }
        s.counters(
            "rocketmq_messages_in",
            "Messages stored for producers, by topic and message type",
            &messages,
        )?;
        s.counters(
            "rocketmq_throughput_in",
            "Body bytes stored for producers, by topic and message type",
            &bytes,
        )?;
        let (mut messages, mut bytes) = (Vec::new(), Vec::new());
        for (group, topics) in self.0.pulled.read().iter() {
            for (topic, c) in topics {
                let labels = GroupLabels {
                    topic: topic.clone(),
                    consumer_group: group.clone(),
                };
                messages.push((labels.clone(), c[0].load(Ordering::Relaxed)));
                bytes.push((labels, c[1].load(Ordering::Relaxed)));
            }
        }
        s.counters(
            "rocketmq_messages_out",
            "Messages delivered to consumers, by topic and consumer group",
            &messages,
        )?;
        s.counters(
            "rocketmq_throughput_out",
            "Bytes delivered to consumers (whole stored records), by topic and consumer group",
            &bytes,
        )
    }
}

/// The values read at scrape time.
#[derive(Debug)]
pub struct BrokerCollector(Weak<BrokerInner>);

impl Collector for BrokerCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(b) = self.0.upgrade() else {
            return Ok(());
        };
        let mut s = Scrape(encoder);
        storage(&b, &mut s)?;
        clients(&b, &mut s)?;
        consumer_lag(&b, &mut s)?;
        replication(&b, &mut s)?;
        others(&b, &mut s)
    }
}

fn storage(b: &BrokerInner, s: &mut Scrape) -> std::fmt::Result {
    let st = b.store.stats();
    let max = st.commit_log_max_offset;
    s.gauge(
        "rocketmq_storage_size",
        "Bytes of commit log held (max offset minus min offset)",
        (max - st.commit_log_min_offset).max(0),
    )?;
    s.gauge(
        "rocketmq_storage_flush_behind_bytes",
        "Commit-log bytes written but not yet flushed to disk",
        (max - st.flushed_offset).max(0),
    )?;
    // Records are dispatched to consume queues and the index as they are
    // appended; in Raft mode, written records wait for their commit before
    // they are dispatched and readable.
    let dispatch_behind = b.raft.as_ref().map_or(0, |n| {
        let r = n.status();
        (r.write_offset - r.visible_offset).max(0)
    });
    s.gauge(
        "rocketmq_storage_dispatch_behind_bytes",
        "Commit-log bytes written but not yet dispatched to consume queues (Raft: not yet committed)",
        dispatch_behind,
    )?;
    s.gauge(
        "meridian_storage_disk_used_ratio",
        "Used fraction of the filesystem holding the commit log",
        st.disk_used_ratio,
    )?;
    s.counter(
        "meridian_storage_put_messages",
        "Messages appended to the commit log, every topic included",
        st.put_message_count,
    )?;
    s.counter(
        "meridian_storage_flushes",
        "Commit-log flushes (one fdatasync each)",
        st.flush_count,
    )?;
    s.counter(
        "meridian_storage_flush_timeouts",
        "SYNC_FLUSH writes not on disk within syncFlushTimeout",
        st.flush_timeouts,
    )?;
    let mut m = s.0.encode_descriptor(
        "meridian_storage_flush_latency_seconds",
        "Commit-log flushes (fdatasync of the new bytes) by how long they took",
        None,
        meridian_metrics::prometheus_client::metrics::MetricType::Histogram,
    )?;
    let buckets: Vec<(f64, u64)> = meridian_store::stats::FLUSH_BUCKETS_SECS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(st.flush_latency_buckets.iter().copied())
        .collect();
    m.encode_histogram::<Unlabeled>(st.flush_latency_sum_secs, st.flush_count, &buckets, None)?;
    s.counter(
        "meridian_storage_page_cache_releases",
        "Passes that handed cold commit-log and index pages back to the page cache",
        st.page_cache_releases,
    )?;
    s.counter(
        "meridian_storage_segments_deleted",
        "Commit-log segments deleted by retention",
        st.segments_deleted,
    )
}

fn clients(b: &BrokerInner, s: &mut Scrape) -> std::fmt::Result {
    let (producers, consumers) = b.clients.counts();
    s.gauge(
        "rocketmq_producer_connections",
        "Producer clients registered by heartbeat",
        producers as i64,
    )?;
    s.gauge(
        "rocketmq_consumer_connections",
        "Consumer clients registered by heartbeat",
        consumers as i64,
    )
}

/// Per group and topic with committed offsets here: messages not yet
/// consumed, and how long the oldest of them has waited (ms).
fn consumer_lag(b: &BrokerInner, s: &mut Scrape) -> std::fmt::Result {
    let now = crate::now_ms();
    let mut lag = Vec::new();
    let mut latency = Vec::new();
    for (key, queues) in b.offsets.snapshot() {
        let Some((topic, group)) = key.split_once('@') else {
            continue;
        };
        if !b.topics.contains(topic) {
            continue;
        }
        let (mut behind, mut oldest) = (0i64, 0i64);
        for (q, committed) in queues {
            let max = b.store.max_offset_in_queue(topic, q);
            let from = committed.max(b.store.min_offset_in_queue(topic, q));
            if max > from {
                behind += max - from;
                if let Some(t) = b.store.store_time_at(topic, q, from) {
                    oldest = oldest.max(now - t);
                }
            }
        }
        let labels = GroupLabels {
            topic: topic.to_string(),
            consumer_group: group.to_string(),
        };
        lag.push((labels.clone(), behind));
        latency.push((labels, oldest.max(0)));
    }
    s.gauges(
        "rocketmq_consumer_lag_messages",
        "Messages stored but not yet consumed (committed), by consumer group and topic",
        &lag,
    )?;
    // In flight: pulled and not yet committed, per group and topic.
    let pulled: Vec<(String, String, BTreeMap<i32, i64>)> = b
        .metrics
        .pull_offsets
        .lock()
        .iter()
        .flat_map(|(g, topics)| {
            topics
                .iter()
                .map(move |(t, q)| (g.clone(), t.clone(), q.clone()))
        })
        .collect();
    let inflight: Vec<(GroupLabels, i64)> = pulled
        .into_iter()
        .map(|(group, topic, queues)| {
            let committed = b.offsets.queue_offsets(&group, &topic);
            let n: i64 = queues
                .iter()
                .map(|(q, next)| (next - committed.get(q).copied().unwrap_or(*next)).max(0))
                .sum();
            (
                GroupLabels {
                    topic,
                    consumer_group: group,
                },
                n,
            )
        })
        .collect();
    s.gauges(
        "rocketmq_consumer_inflight_messages",
        "Messages pulled by a consumer group and not yet committed, by consumer group and topic",
        &inflight,
    )?;
    s.gauges(
        "rocketmq_consumer_lag_latency",
        "Milliseconds the oldest unconsumed message has waited, by consumer group and topic",
        &latency,
    )
}

fn replication(b: &BrokerInner, s: &mut Scrape) -> std::fmt::Result {
    let ha = b.ha.status();
    let slaves: Vec<(PeerLabels, i64)> = ha
        .slaves
        .iter()
        .map(|sl| {
            (
                PeerLabels {
                    replica: sl.addr.to_string(),
                },
                sl.lag_bytes.max(0),
            )
        })
        .collect();
    s.gauges(
        "meridian_ha_replication_lag_bytes",
        "Master: commit-log bytes each connected slave lacks",
        &slaves,
    )?;
    // Seconds: since the store time of the first record the slave lacks.
    let now = crate::now_ms();
    let slave_secs: Vec<(PeerLabels, f64)> = ha
        .slaves
        .iter()
        .map(|sl| {
            let ms = if sl.lag_bytes > 0 {
                b.store
                    .read_record(sl.acked_offset)
                    .and_then(|r| {
                        meridian_protocol::message::parse_record(&r)
                            .ok()
                            .map(|v| v.store_timestamp)
                    })
                    .map_or(0, |t| (now - t).max(0))
            } else {
                0
            };
            (
                PeerLabels {
                    replica: sl.addr.to_string(),
                },
                ms as f64 / 1000.0,
            )
        })
        .collect();
    s.gauges(
        "meridian_ha_replication_lag_seconds",
        "Master: seconds since the store time of the first record each connected slave lacks (0 when it lacks none)",
        &slave_secs,
    )?;
    // A slave's view of its master (no samples on a master).
    let following = ha.master_addr.is_some();
    let one = |v: i64| -> Vec<(Unlabeled, i64)> {
        if following {
            vec![([], v)]
        } else {
            vec![]
        }
    };
    s.gauges(
        "meridian_ha_slave_behind_bytes",
        "Slave: commit-log bytes the master has sent beyond what is stored here",
        &one((ha.master_offset_seen - ha.max_offset).max(0)),
    )?;
    s.gauges(
        "meridian_ha_slave_connected",
        "Slave: 1 while connected to its master",
        &one(i64::from(ha.connected)),
    )?;
    // Raft: no samples outside Raft mode.
    let r = b.raft.as_ref().map(|n| n.status());
    let one = |f: &dyn Fn(&meridian_raft::node::RaftStatus) -> i64| -> Vec<(Unlabeled, i64)> {
        r.iter().map(|r| ([], f(r))).collect()
    };
    s.gauges(
        "meridian_raft_term",
        "Raft term this member is in",
        &one(&|r| r.term as i64),
    )?;
    s.gauges(
        "meridian_raft_leader",
        "1 while this member leads its Raft group",
        &one(&|r| i64::from(r.leader_id == Some(r.self_id))),
    )?;
    s.gauges(
        "meridian_raft_has_leader",
        "1 while this member knows a leader of its group",
        &one(&|r| i64::from(r.leader_id.is_some())),
    )?;
    let changes: Vec<(Unlabeled, u64)> = r
        .iter()
        .map(|_| ([], b.metrics.raft_role_changes.load(Ordering::Relaxed)))
        .collect();
    s.counters(
        "meridian_raft_role_changes",
        "Times this member became or stopped being the leader",
        &changes,
    )?;
    let mut bytes = Vec::new();
    let mut millis = Vec::new();
    if let Some(r) = &r {
        for (id, p) in &r.peers {
            if *id == r.self_id {
                continue;
            }
            let labels = PeerLabels {
                replica: format!("n{id}"),
            };
            bytes.push((labels.clone(), p.lag_bytes.max(0)));
            millis.push((labels, p.lag_ms as f64 / 1000.0));
        }
    }
    s.gauges(
        "meridian_raft_replication_lag_bytes",
        "Leader: commit-log bytes each member lacks",
        &bytes,
    )?;
    s.gauges(
        "meridian_raft_replication_lag_seconds",
        "Leader: seconds since the store time of the first record each member lacks",
        &millis,
    )
}

fn others(b: &BrokerInner, s: &mut Scrape) -> std::fmt::Result {
    s.counter(
        "meridian_relay_appended",
        "Relayed records stored in copy queues here",
        b.relay_counters.appended.load(Ordering::Relaxed),
    )?;
    s.counter(
        "meridian_relay_present",
        "Relayed records refused as already present (a second path, a resend)",
        b.relay_counters.present.load(Ordering::Relaxed),
    )?;
    let tx = &b.transactions;
    s.counter(
        "meridian_transactions_committed",
        "Transactional messages committed",
        tx.committed.load(Ordering::Relaxed),
    )?;
    s.counter(
        "meridian_transactions_rolled_back",
        "Transactional messages rolled back",
        tx.rolled_back.load(Ordering::Relaxed),
    )?;
    s.counter(
        "meridian_transaction_checks",
        "CHECK_TRANSACTION_STATE requests sent to producers",
        tx.checks_sent.load(Ordering::Relaxed),
    )?;
    s.counter(
        "meridian_transactions_discarded",
        "Half messages discarded after transactionCheckMax check-backs",
        tx.discarded.load(Ordering::Relaxed),
    )
}

/// Messages per second stored and delivered, over the last 10 s, 1 min
/// and 10 min (RocketMQ's `putTps` and `getTransferedTps` in the runtime
/// info, which `clusterList` shows). Sampled once a second.
#[derive(Debug, Default)]
pub struct TpsMeter {
    /// (seconds since start, messages stored, messages delivered), oldest
    /// first, at most 601.
    samples: parking_lot::Mutex<std::collections::VecDeque<(f64, u64, u64)>>,
}

/// The windows, in seconds.
const TPS_WINDOWS: [f64; 3] = [10.0, 60.0, 600.0];

impl TpsMeter {
    pub fn sample(&self, at_secs: f64, put: u64, got: u64) {
        let mut s = self.samples.lock();
        s.push_back((at_secs, put, got));
        while s.len() > 601 {
            s.pop_front();
        }
    }

    /// (stored, delivered) per second over each window, as RocketMQ
    /// writes them: `"%.2f %.2f %.2f"`.
    pub fn rates(&self) -> (String, String) {
        let s = self.samples.lock();
        let Some(&(now, put, got)) = s.back() else {
            return ("0.00 0.00 0.00".into(), "0.00 0.00 0.00".into());
        };
        let rate = |window: f64, pick: fn(&(f64, u64, u64)) -> u64, last: u64| {
            // The oldest sample inside the window (the first one if the
            // broker has not run that long).
            let from = s
                .iter()
                .find(|x| now - x.0 <= window + 0.5)
                .copied()
                .unwrap_or((now, put, got));
            let secs = now - from.0;
            if secs <= 0.0 {
                0.0
            } else {
                last.saturating_sub(pick(&from)) as f64 / secs
            }
        };
        let fmt = |pick: fn(&(f64, u64, u64)) -> u64, last: u64| {
            TPS_WINDOWS
                .iter()
                .map(|w| format!("{:.2}", rate(*w, pick, last)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        (fmt(|x| x.1, put), fmt(|x| x.2, got))
    }
}

/// Per-key message counts over the last minute, hour and day, for
/// VIEW_BROKER_STATS_DATA (`meridian admin statsAll`): snapshots of the
/// cumulative counters every 10 s for the minute, every 10 min for the
/// hour and the day.
#[derive(Debug, Default)]
pub struct StatsHistory {
    inner: parking_lot::Mutex<StatsRings>,
}

#[derive(Debug, Default)]
struct StatsRings {
    /// (seconds since start, counts by `TOPIC_PUT_NUMS@topic` /
    /// `GROUP_GET_NUMS@topic@group`), oldest first.
    fine: std::collections::VecDeque<(f64, HashMap<String, u64>)>,
    coarse: std::collections::VecDeque<(f64, HashMap<String, u64>)>,
}

/// One window's figures: messages, and messages a second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    pub sum: u64,
    pub tps: f64,
}

impl StatsHistory {
    /// Take a snapshot of `m`'s counters at `at` seconds since start.
    pub fn sample(&self, at: f64, m: &BrokerMetrics) {
        let mut now = HashMap::new();
        for (topic, c) in m.sent.read().iter() {
            let n: u64 = (0..MESSAGE_TYPES.len())
                .map(|t| c[2 * t].load(Ordering::Relaxed))
                .sum();
            now.insert(format!("TOPIC_PUT_NUMS@{topic}"), n);
        }
        for (group, topics) in m.pulled.read().iter() {
            for (topic, c) in topics {
                now.insert(
                    format!("GROUP_GET_NUMS@{topic}@{group}"),
                    c[0].load(Ordering::Relaxed),
                );
            }
        }
        let mut r = self.inner.lock();
        if r.fine.back().is_none_or(|(t, _)| at - t >= 10.0) {
            r.fine.push_back((at, now.clone()));
            while r.fine.len() > 8 {
                r.fine.pop_front();
            }
        }
        if r.coarse.back().is_none_or(|(t, _)| at - t >= 600.0) {
            r.coarse.push_back((at, now));
            while r.coarse.len() > 24 * 6 + 2 {
                r.coarse.pop_front();
            }
        }
    }

    /// The minute, hour and day of `stats_name`@`key` (RocketMQ's names:
    /// `TOPIC_PUT_NUMS` by topic, `GROUP_GET_NUMS` by `topic@group`), up to
    /// `now` where the counter stands at `current`.
    pub fn windows(&self, stats_name: &str, key: &str, now: f64, current: u64) -> [WindowStats; 3] {
        let id = format!("{stats_name}@{key}");
        let r = self.inner.lock();
        let over = |ring: &std::collections::VecDeque<(f64, HashMap<String, u64>)>, window: f64| {
            // The oldest snapshot within the window; counters start at 0
            // with the broker, so a window longer than its life counts from 0.
            let (from_t, from_n) = ring
                .iter()
                .find(|(t, _)| now - t <= window + 1.0)
                .map(|(t, counts)| (*t, counts.get(&id).copied().unwrap_or(0)))
                .unwrap_or((now, current));
            let sum = current.saturating_sub(from_n);
            let secs = (now - from_t).max(1.0);
            WindowStats {
                sum,
                tps: sum as f64 / secs,
            }
        };
        [
            over(&r.fine, 60.0),
            over(&r.coarse, 3600.0),
            over(&r.coarse, 86_400.0),
        ]
    }
}

impl BrokerMetrics {
    /// The cumulative count behind a `stats_name`@`key`.
    pub fn count_of(&self, stats_name: &str, key: &str) -> Option<u64> {
        match stats_name {
            "TOPIC_PUT_NUMS" => self.sent.read().get(key).map(|c| {
                (0..MESSAGE_TYPES.len())
                    .map(|t| c[2 * t].load(Ordering::Relaxed))
                    .sum()
            }),
            "GROUP_GET_NUMS" => {
                let (topic, group) = key.split_once('@')?;
                Some(
                    self.pulled
                        .read()
                        .get(group)
                        .and_then(|t| t.get(topic))
                        .map_or(0, |c| c[0].load(Ordering::Relaxed)),
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_cover_ten_seconds_a_minute_and_ten_minutes() {
        let m = TpsMeter::default();
        assert_eq!(m.rates().0, "0.00 0.00 0.00");
        // 100 stored a second for 10 minutes, then 1,000 a second for
        // the last 10 s; 50 delivered a second throughout.
        let mut put = 0;
        for t in 0..=610u64 {
            m.sample(t as f64, put, 50 * t);
            put += if t >= 600 { 1_000 } else { 100 };
        }
        let (put_tps, get_tps) = m.rates();
        let put: Vec<f64> = put_tps.split(' ').map(|v| v.parse().unwrap()).collect();
        assert_eq!(put[0], 1_000.0, "{put_tps}");
        assert!(
            (put[1] - (10.0 * 1_000.0 + 50.0 * 100.0) / 60.0).abs() < 0.01,
            "{put_tps}"
        );
        assert!(
            (put[2] - (10.0 * 1_000.0 + 590.0 * 100.0) / 600.0).abs() < 0.01,
            "{put_tps}"
        );
        assert_eq!(get_tps, "50.00 50.00 50.00");
    }

    #[test]
    fn stats_windows_count_the_last_minute_hour_and_day() {
        let m = BrokerMetrics::default();
        let h = StatsHistory::default();
        // 10 messages a second for two hours.
        for t in 0..=7_200u64 {
            if t > 0 {
                m.sent("T", "Normal", 10, 100);
                m.pulled("G", "T", 5, 50);
            }
            h.sample(t as f64, &m);
        }
        let now = m.count_of("TOPIC_PUT_NUMS", "T").unwrap();
        assert_eq!(now, 72_000);
        let [minute, hour, day] = h.windows("TOPIC_PUT_NUMS", "T", 7_200.0, now);
        assert_eq!((minute.sum, minute.tps), (600, 10.0));
        assert_eq!((hour.sum, hour.tps), (36_000, 10.0));
        // The broker has run two hours: the day counts from its start.
        assert_eq!(day.sum, 72_000);
        let out = m.count_of("GROUP_GET_NUMS", "T@G").unwrap();
        assert_eq!(h.windows("GROUP_GET_NUMS", "T@G", 7_200.0, out)[0].sum, 300);
        assert_eq!(m.count_of("TOPIC_PUT_NUMS", "other"), None);
    }
}
