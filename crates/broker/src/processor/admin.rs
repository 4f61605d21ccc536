//! Administration: topics, statistics, consumer progress, offset resets,
//! runtime info.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use meridian_protocol::body::{
    Connection as ConnectionInfo, ConsumeStats, ConsumerConnection, KVTable, MessageQueue,
    OffsetWrapper, ProducerConnection, ResetOffsetBody, TopicConfig, TopicOffset, TopicStatsTable,
};
use meridian_protocol::codes::{request_code, response_code as rc};
use meridian_protocol::header::admin::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, GetProducerConnectionListRequestHeader,
    GetTopicStatsInfoRequestHeader, QueryTopicConsumeByWhoRequestHeader,
};
use meridian_protocol::header::consumer::ResetOffsetRequestHeader;
use meridian_protocol::RemotingCommand;

use super::{bad_header, error, json_ok, ok};
use crate::{topics, BrokerInner};

type Outcome = Result<RemotingCommand, RemotingCommand>;

pub fn update_topic(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = CreateTopicRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    topics::validate_topic(&h.topic).map_err(|e| error(req, rc::SYSTEM_ERROR, e))?;
    if h.topic == topics::AUTO_CREATE_TOPIC_KEY_TOPIC && !b.config.auto_create_topic_enable {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            "the default topic cannot be created while autoCreateTopicEnable=false",
        ));
    }
    if h.read_queue_nums <= 0
        || h.write_queue_nums <= 0
        || h.read_queue_nums > 1024
        || h.write_queue_nums > 1024
    {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            "readQueueNums and writeQueueNums must be between 1 and 1024",
        ));
    }
    let cfg = TopicConfig {
        topic_name: h.topic.clone(),
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_filter_type: h.topic_filter_type.clone(),
        topic_sys_flag: h.topic_sys_flag,
        order: h.order,
        ..Default::default()
    };
    let changed = b
        .topics
        .update_keeping_copies(cfg)
        .map_err(|e| error(req, rc::SYSTEM_ERROR, e))?;
    if changed {
        tracing::info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums, perm = h.perm, "topic updated");
        b.register_soon();
    }
    Ok(ok(req))
}

pub fn delete_topic(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = DeleteTopicRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    if b.topics.delete(&h.topic) {
        b.store.delete_topic(&h.topic);
        b.offsets.delete_topic(&h.topic);
        tracing::info!(topic = %h.topic, "topic deleted");
        b.register_soon();
    }
    Ok(ok(req))
}

pub fn all_topic_config(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    json_ok(req, &b.topics.wrapper())
}

pub fn runtime_info(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let s = b.store.stats();
    let (producers, consumers) = b.clients.counts();
    let mut t = HashMap::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    put(
        "brokerVersionDesc",
        format!("Meridian {}", env!("CARGO_PKG_VERSION")),
    );
    put("brokerVersion", "453".into());
    put(
        "bootTimestamp",
        (crate::now_ms() - b.started.elapsed().as_millis() as i64).to_string(),
    );
    put("brokerRole", format!("{:?}", b.broker_role()));
    put("regionId", b.config.region_id.clone());
    let tx = &b.transactions;
    for (name, n) in [
        ("transactionCommittedTotal", &tx.committed),
        ("transactionRolledBackTotal", &tx.rolled_back),
        ("transactionCheckedTotal", &tx.checks_sent),
        ("transactionDiscardedTotal", &tx.discarded),
    ] {
        put(
            name,
            n.load(std::sync::atomic::Ordering::Relaxed).to_string(),
        );
    }
    put(
        "relayAppendedTotal",
        b.relay_counters
            .appended
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    );
    put(
        "relayPresentTotal",
        b.relay_counters
            .present
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    );
    put(
        "commitLogMinOffset",
        b.store.min_commit_log_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        b.store.max_commit_log_offset().to_string(),
    );
    put(
        "commitLogFlushedOffset",
        b.store.flushed_offset().to_string(),
    );
    let (put_tps, get_tps) = b.metrics.tps.rates();
    put("putTps", put_tps);
    put("getTransferedTps", get_tps);
    put("msgPutTotal", s.put_message_count.to_string());
    put("msgPutBytesTotal", s.put_message_bytes.to_string());
    put("msgPutFailures", s.put_failures.to_string());
    put("msgGetTotal", s.get_message_count.to_string());
    put("flushTimeouts", s.flush_timeouts.to_string());
    put("queueCount", s.queue_count.to_string());
    put("commitLogSegments", s.segment_count.to_string());
    put("flushCount", s.flush_count.to_string());
    put("commitLogDiskRatio", format!("{:.4}", s.disk_used_ratio));
    put("producerCount", producers.to_string());
    put("consumerCount", consumers.to_string());
    put("longPollWaiting", b.long_poll.waiting().to_string());
    if let Some(node) = &b.raft {
        let r = node.status();
        let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        put("raftGroup", r.group.clone());
        put("raftSelfId", format!("n{}", r.self_id));
        put("raftRole", r.state.clone());
        put("raftTerm", r.term.to_string());
        put(
            "raftLeaderId",
            r.leader_id.map_or(String::new(), |l| format!("n{l}")),
        );
        put("raftLastLogIndex", opt(r.last_log_index));
        put("raftCommitIndex", opt(r.committed_index));
        put("raftAppliedIndex", opt(r.applied_index));
        put("raftVisibleOffset", r.visible_offset.to_string());
        put("raftWriteOffset", r.write_offset.to_string());
        if let Some(ms) = r.millis_since_quorum_ack {
            put("raftMillisSinceQuorumAck", ms.to_string());
        }
        let ids = |s: std::collections::BTreeSet<u64>| {
            s.iter()
                .map(|i| format!("n{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        put("raftVoters", ids(node.voters()));
        put("raftLearners", ids(node.learners()));
        if let Some(settings) = &b.config.raft {
            for (id, zone) in &settings.zones {
                put(&format!("raftZone.n{id}"), zone.clone());
            }
            let members = settings.peers.members.len();
            for (zone, keeps) in crate::config::zone_loss_keeps_majority(&settings.zones, members) {
                put(
                    &format!("raftZoneLossKeepsMajority.{zone}"),
                    keeps.to_string(),
                );
            }
        }
        for (id, p) in &r.peers {
            put(&format!("raftPeer.n{id}.matchIndex"), opt(p.matched_index));
            put(&format!("raftPeer.n{id}.lagBytes"), p.lag_bytes.to_string());
            put(&format!("raftPeer.n{id}.lagMs"), p.lag_ms.to_string());
        }
    }
    let ha = b.ha.status();
    put("haRole", format!("{:?}", ha.role));
    if let Some(addr) = ha.listen_addr {
        put("haListenAddr", addr.to_string());
    }
    put("haConnectedSlaves", ha.slaves.len().to_string());
    put("haMaxOffset", ha.max_offset.to_string());
    for sl in &ha.slaves {
        put(
            &format!("haSlave.{}.ackOffset", sl.addr),
            sl.acked_offset.to_string(),
        );
        put(
            &format!("haSlave.{}.lagBytes", sl.addr),
            sl.lag_bytes.to_string(),
        );
        put(
            &format!("haSlave.{}.lastReportMs", sl.addr),
            sl.last_report_ms.to_string(),
        );
    }
    if let Some(lag) = ha.slaves.iter().map(|s| s.lag_bytes).min() {
        put("haSlaveLagBytes", lag.to_string());
    }
    if let Some(m) = &ha.master_addr {
        put("haMasterAddr", m.clone());
        put("haMasterConnected", ha.connected.to_string());
        put(
            "haLagBytes",
            (ha.master_offset_seen - ha.max_offset).max(0).to_string(),
        );
    }
    put(
        "flushDiskType",
        format!("{:?}", b.config.store.flush_disk_type),
    );
    json_ok(req, &KVTable { table: t })
}

fn queue_count(b: &BrokerInner, topic: &str) -> Option<i32> {
    b.topics
        .get(topic)
        .map(|c| c.read_queue_nums.max(c.write_queue_nums))
}

/// [`queue_count`], or TOPIC_NOT_EXIST for a topic this broker lacks.
fn existing_queue_count(
    b: &BrokerInner,
    req: &RemotingCommand,
    topic: &str,
) -> Result<i32, RemotingCommand> {
    queue_count(b, topic).ok_or_else(|| {
        error(
            req,
            rc::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist"),
        )
    })
}

fn mq(b: &BrokerInner, topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: topic.to_string(),
        broker_name: b.config.broker_name.clone(),
        queue_id,
    }
}

pub fn topic_stats(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetTopicStatsInfoRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let n = existing_queue_count(b, req, &h.topic)?;
    let mut table = TopicStatsTable::default();
    for q in 0..n {
        let max = b.store.max_offset_in_queue(&h.topic, q);
        let last = if max > 0 {
            b.store.store_time_at(&h.topic, q, max - 1).unwrap_or(0)
        } else {
            0
        };
        table.offset_table.insert(
            mq(b, &h.topic, q),
            TopicOffset {
                min_offset: b.store.min_offset_in_queue(&h.topic, q),
                max_offset: max,
                last_update_timestamp: last,
            },
        );
    }
    Ok(ok(req).with_body(table.to_json_bytes()))
}

pub fn consume_stats(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetConsumeStatsRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let topics: Vec<String> = match h.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_string()],
        None => {
            let mut set: BTreeSet<String> = b
                .offsets
                .topics_of_group(&h.consumer_group)
                .into_iter()
                .collect();
            if let Some(g) = b.clients.group(&h.consumer_group) {
                set.extend(g.subscriptions.keys().cloned());
            }
            set.into_iter().collect()
        }
    };
    let mut stats = ConsumeStats::default();
    for topic in topics {
        let Some(n) = queue_count(b, &topic) else {
            continue;
        };
        let committed = b.offsets.queue_offsets(&h.consumer_group, &topic);
        for q in 0..n {
            let broker_offset = b.store.max_offset_in_queue(&topic, q);
            let consumer_offset = committed.get(&q).copied().unwrap_or(-1);
            let last = if consumer_offset > 0 {
                b.store
                    .store_time_at(&topic, q, consumer_offset - 1)
                    .unwrap_or(0)
            } else {
                0
            };
            stats.offset_table.insert(
                mq(b, &topic, q),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    last_timestamp: last,
                },
            );
        }
    }
    Ok(ok(req).with_body(stats.to_json_bytes()))
}

pub fn consumed_by_who(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = QueryTopicConsumeByWhoRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let mut groups: BTreeSet<String> = b.offsets.groups_of_topic(&h.topic).into_iter().collect();
    groups.extend(b.clients.groups_subscribing(&h.topic));
    json_ok(req, &serde_json::json!({ "groupList": groups }))
}

pub fn consumer_connections(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetConsumerConnectionListRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let Some(g) = b.clients.group(&h.consumer_group) else {
        return Err(error(
            req,
            rc::CONSUMER_NOT_ONLINE,
            format!("the consumer group[{}] not online", h.consumer_group),
        ));
    };
    let mut cc = ConsumerConnection {
        consume_type: g.consume_type,
        message_model: g.message_model,
        consume_from_where: g.consume_from_where,
        ..Default::default()
    };
    for c in g.clients.values() {
        cc.connection_set.push(ConnectionInfo {
            client_id: c.client_id.clone(),
            client_addr: c.conn.peer().to_string(),
            language: c.language.clone(),
            version: c.version,
        });
    }
    cc.subscription_table = g.subscriptions.clone().into_iter().collect();
    json_ok(req, &cc)
}

/// GET_PRODUCER_CONNECTION_LIST: the producers of a group that send
/// heartbeats here.
pub fn producer_connections(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetProducerConnectionListRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let producers = b.clients.producers_of(&h.producer_group);
    if producers.is_empty() {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!("the producer group[{}] not exist", h.producer_group),
        ));
    }
    let body = ProducerConnection {
        connection_set: producers
            .into_iter()
            .map(|c| ConnectionInfo {
                client_addr: c.conn.peer().to_string(),
                client_id: c.client_id,
                language: c.language,
                version: c.version,
            })
            .collect(),
    };
    json_ok(req, &body)
}

pub fn reset_offset(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = ResetOffsetRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let n = existing_queue_count(b, req, &h.topic)?;
    let mut body = ResetOffsetBody::default();
    for q in 0..n {
        let target = if h.timestamp < 0 {
            b.store.max_offset_in_queue(&h.topic, q)
        } else {
            b.store.offset_by_time(&h.topic, q, h.timestamp)
        };
        let current = b.offsets.query(&h.group, &h.topic, q);
        // Without force, only move a group backwards (to re-consume).
        let apply = h.is_force || current.map(|c| target < c).unwrap_or(true);
        let offset = if apply {
            target
        } else {
            current.unwrap_or(target)
        };
        b.offsets.commit(&h.group, &h.topic, q, offset);
        body.offset_table.insert(mq(b, &h.topic, q), offset);
    }
    b.offsets.persist();
    // Running consumers hold offsets in memory; tell them, or their next
    // commit would undo the reset.
    if let Some(g) = b.clients.group(&h.group) {
        let bytes = body.to_json_bytes();
        for c in g.clients.values() {
            let request = RemotingCommand::request(request_code::RESET_CONSUMER_CLIENT_OFFSET)
                .with_ext("topic", &h.topic)
                .with_ext("group", &h.group)
                .with_ext("timestamp", h.timestamp)
                .with_body(bytes.clone());
            let conn = c.conn.clone();
            tokio::spawn(async move {
                let _ = conn.invoke_oneway(request).await;
            });
        }
    }
    tracing::info!(group = %h.group, topic = %h.topic, timestamp = h.timestamp, "consumer offsets reset");
    Ok(ok(req).with_body(body.to_json_bytes()))
}

pub fn broker_config(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let c = &b.config;
    let role = match b.broker_role() {
        crate::config::BrokerRole::AsyncMaster => "ASYNC_MASTER",
        crate::config::BrokerRole::SyncMaster => "SYNC_MASTER",
        crate::config::BrokerRole::Slave => "SLAVE",
    };
    let flush = match c.store.flush_disk_type {
        meridian_store::FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        meridian_store::FlushDiskType::SyncFlush => "SYNC_FLUSH",
    };
    let permission = b
        .broker_permission
        .load(std::sync::atomic::Ordering::Acquire);
    let pairs: Vec<(&str, String)> = vec![
        ("brokerClusterName", c.broker_cluster_name.clone()),
        ("brokerName", c.broker_name.clone()),
        ("brokerId", b.broker_id().to_string()),
        ("brokerRole", role.to_string()),
        ("brokerPermission", permission.to_string()),
        ("regionId", c.region_id.clone()),
        ("brokerIP1", c.broker_ip1.to_string()),
        ("listenPort", c.listen_port.to_string()),
        ("haListenPort", c.ha_listen_port.to_string()),
        ("namesrvAddr", c.namesrv_addrs.join(";")),
        ("storePathRootDir", c.store.root_dir.display().to_string()),
        ("flushDiskType", flush.to_string()),
        (
            "mappedFileSizeCommitLog",
            c.store.mapped_file_size_commit_log.to_string(),
        ),
        (
            "autoCreateTopicEnable",
            c.auto_create_topic_enable.to_string(),
        ),
        (
            "autoCreateSubscriptionGroup",
            c.auto_create_subscription_group.to_string(),
        ),
        (
            "defaultTopicQueueNums",
            c.default_topic_queue_nums.to_string(),
        ),
        ("maxMessageSize", c.store.max_message_size.to_string()),
        ("enableDLegerCommitLog", c.raft.is_some().to_string()),
        ("aclEnable", b.acl.is_some().to_string()),
        (
            "metricsExporterType",
            if c.metrics.enabled() {
                "PROM"
            } else {
                "DISABLE"
            }
            .to_string(),
        ),
    ];
    let text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    Ok(ok(req).with_body(text.into_bytes()))
}

/// UPDATE_BROKER_CONFIG: the body's `key=value` lines, for the keys that
/// change at run time (see `runtime_config`).
pub fn update_broker_config(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    match crate::runtime_config::update(b, &req.body) {
        Ok(keys) => {
            tracing::info!(keys = ?keys, "broker config updated at run time");
            Ok(ok(req))
        }
        Err(why) => Err(error(req, rc::SYSTEM_ERROR, why)),
    }
}

/// GET_CONSUMER_RUNNING_INFO from an admin tool: asked of the consumer
/// itself, on its connection to this broker, and its answer (the client's
/// `ConsumerRunningInfo`) passed back as it came.
pub fn consumer_running_info(
    b: &Arc<BrokerInner>,
    req: RemotingCommand,
) -> meridian_remoting::Reply {
    use meridian_protocol::header::consumer::GetConsumerRunningInfoRequestHeader;
    let h = match GetConsumerRunningInfoRequestHeader::parse(&req) {
        Ok(h) => h,
        Err(e) => return meridian_remoting::Reply::Now(Some(bad_header(&req, e))),
    };
    let online = b
        .clients
        .group(&h.consumer_group)
        .is_some_and(|g| g.clients.contains_key(&h.client_id));
    let channel = b.clients.channel_of_client(&h.client_id).filter(|_| online);
    let Some(channel) = channel else {
        return meridian_remoting::Reply::Now(Some(error(
            &req,
            rc::SYSTEM_ERROR,
            format!(
                "The Consumer <{}> <{}> not online",
                h.consumer_group, h.client_id
            ),
        )));
    };
    let mut ask = RemotingCommand::request(request_code::GET_CONSUMER_RUNNING_INFO);
    h.write(&mut ask);
    forward_to_client(req, channel, ask)
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: a group's settings (body: the
/// `SubscriptionGroupConfig` JSON).
pub fn update_subscription_group(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let cfg: meridian_protocol::body::SubscriptionGroupConfig = serde_json::from_slice(&req.body)
        .map_err(|e| {
        error(
            req,
            rc::SYSTEM_ERROR,
            format!("the body is not a subscription group config: {e}"),
        )
    })?;
    if cfg.group_name.trim().is_empty() {
        return Err(error(req, rc::SYSTEM_ERROR, "groupName is empty"));
    }
    if !(1..=64).contains(&cfg.retry_queue_nums) || cfg.retry_max_times < 0 {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            "retryQueueNums must be 1 to 64 and retryMaxTimes at least 0",
        ));
    }
    tracing::info!(group = %cfg.group_name, consume_enable = cfg.consume_enable, broadcast = cfg.consume_broadcast_enable, retry_queues = cfg.retry_queue_nums, retry_max = cfg.retry_max_times, "subscription group updated");
    b.subscription_groups.upsert(cfg);
    Ok(ok(req))
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: every group's settings. In Raft
/// mode, with every state record visible here applied first, as offset
/// queries do: a new leader lists every change answered before its term.
pub fn all_subscription_groups(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    if let Some(state) = &b.raft_state {
        state.catch_up(b);
    }
    json_ok(req, &b.subscription_groups.wrapper())
}

/// DELETE_SUBSCRIPTIONGROUP: forget a group's settings (and, with
/// `cleanOffset`, its committed offsets on this broker).
pub fn delete_subscription_group(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = meridian_protocol::header::admin::DeleteSubscriptionGroupRequestHeader::parse(req)
        .map_err(|e| bad_header(req, e))?;
    let removed = b.subscription_groups.delete(&h.group_name);
    if h.clean_offset {
        b.offsets.delete_group(&h.group_name);
    }
    tracing::info!(group = %h.group_name, removed, clean_offset = h.clean_offset, "subscription group deleted");
    Ok(ok(req))
}

/// VIEW_BROKER_STATS_DATA: messages stored for a topic (`TOPIC_PUT_NUMS`,
/// key `topic`) or delivered to a group (`GROUP_GET_NUMS`, key
/// `topic@group`) over the last minute, hour and day.
pub fn broker_stats_data(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let name = req.ext("statsName").unwrap_or_default().to_string();
    let key = req.ext("statsKey").unwrap_or_default().to_string();
    let Some(current) = b.metrics.count_of(&name, &key) else {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!("The stats <{name}> <{key}> not exist"),
        ));
    };
    let now = b
        .metrics
        .started
        .get()
        .map_or(0.0, |s| s.elapsed().as_secs_f64());
    let [minute, hour, day] = b.metrics.history.windows(&name, &key, now, current);
    let item = |w: crate::metrics::WindowStats| serde_json::json!({"sum": w.sum, "tps": w.tps, "avgpt": 0.0});
    json_ok(
        req,
        &serde_json::json!({"statsMinute": item(minute), "statsHour": item(hour), "statsDay": item(day)}),
    )
}

/// CONSUME_MESSAGE_DIRECTLY from an admin tool: the stored message named
/// by `msgId` (an offset message id of this broker) is handed to the
/// consumer `clientId` of the group on its connection, and its answer (a
/// `ConsumeMessageDirectlyResult`) passed back as it came.
pub fn consume_message_directly(
    b: &Arc<BrokerInner>,
    req: RemotingCommand,
) -> meridian_remoting::Reply {
    use meridian_protocol::header::consumer::ConsumeMessageDirectlyResultRequestHeader;
    let now = |r: RemotingCommand| meridian_remoting::Reply::Now(Some(r));
    let h = match ConsumeMessageDirectlyResultRequestHeader::parse(&req) {
        Ok(h) => h,
        Err(e) => return now(bad_header(&req, e)),
    };
    let record = meridian_protocol::message_id::decode_offset_msg_id(&h.msg_id)
        .ok()
        .and_then(|(_, offset)| b.store.read_record(offset));
    let Some(record) = record else {
        return now(error(
            &req,
            rc::SYSTEM_ERROR,
            format!(
                "no message with offset message id {} on this broker",
                h.msg_id
            ),
        ));
    };
    let online = b
        .clients
        .group(&h.consumer_group)
        .is_some_and(|g| g.clients.contains_key(&h.client_id));
    let Some(channel) = b.clients.channel_of_client(&h.client_id).filter(|_| online) else {
        return now(error(
            &req,
            rc::SYSTEM_ERROR,
            format!(
                "The Consumer <{}> <{}> not online",
                h.consumer_group, h.client_id
            ),
        ));
    };
    let mut ask =
        RemotingCommand::request(request_code::CONSUME_MESSAGE_DIRECTLY).with_body(record);
    ConsumeMessageDirectlyResultRequestHeader {
        broker_name: Some(b.config.broker_name.clone()),
        ..h
    }
    .write(&mut ask);
    forward_to_client(req, channel, ask)
}

/// Send `ask` to a client on its connection and answer `req` with what it
/// answers (code, remark, body), or with an error naming the client.
fn forward_to_client(
    req: RemotingCommand,
    channel: crate::clients::ClientChannel,
    ask: RemotingCommand,
) -> meridian_remoting::Reply {
    meridian_remoting::Reply::Later(Box::pin(async move {
        Some(
            match channel
                .conn
                .invoke(ask, std::time::Duration::from_secs(5))
                .await
            {
                Ok(answer) => {
                    let mut r = req.response_to(answer.code, answer.remark);
                    r.body = answer.body;
                    r
                }
                Err(e) => error(
                    &req,
                    rc::SYSTEM_ERROR,
                    format!(
                        "the consumer {} at {} did not answer: {e}",
                        channel.client_id,
                        channel.conn.peer()
                    ),
                ),
            },
        )
    }))
}
