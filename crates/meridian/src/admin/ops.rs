//! The mqadmin commands of day-to-day operation: write permission of a
//! broker group (`wipeWritePerm`, `addWritePerm`, `updateTopicPerm`),
//! broker settings (`getBrokerConfig`, `updateBrokerConfig`), who is
//! connected (`consumerConnection`, `producerConnection`) and where a topic
//! lives (`topicClusterList`). Names, flags and output as mqadmin's.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail};
use clap::Subcommand;
use meridian_client::Admin;
use serde_json::json;

use super::{broker_or_cluster, print_table};

#[derive(Subcommand)]
pub enum OpsCommand {
    /// Route no more writes to a broker group: every name server lists its
    /// queues read-only (drain it before maintenance)
    #[command(name = "wipeWritePerm")]
    WipeWritePerm {
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
    },
    /// Route writes to a broker group again
    #[command(name = "addWritePerm")]
    AddWritePerm {
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
    },
    /// A broker's settings (every master of a cluster with -c)
    #[command(name = "getBrokerConfig")]
    GetBrokerConfig {
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
    /// Change a broker setting at run time (brokerPermission); it is kept
    /// across restarts. Other keys are refused: set them in broker.conf
    #[command(name = "updateBrokerConfig")]
    UpdateBrokerConfig {
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'k', long = "key")]
        key: String,
        #[arg(short = 'v', long = "value")]
        value: String,
    },
    /// A consumer group's clients, subscriptions and consume settings
    #[command(name = "consumerConnection")]
    ConsumerConnection {
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Ask this broker (default: the brokers of the group's retry topic)
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
    },
    /// What each consumer of a group reports about itself (its running
    /// info: settings, subscriptions, queues it holds), asked through a
    /// broker; the whole report of one client with -i
    #[command(name = "consumerStatus")]
    ConsumerStatus {
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        #[arg(short = 'i', long = "clientId")]
        client_id: Option<String>,
        /// Ask for the client's thread stacks too (Java clients)
        #[arg(short = 's', long = "jstackEnable")]
        jstack: bool,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
    },
    /// A producer group's clients, as the brokers of a topic see them
    #[command(name = "producerConnection")]
    ProducerConnection {
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Change a topic's permission (2 write, 4 read, 6 both) on a broker
    /// or on every master of a cluster
    #[command(name = "updateTopicPerm")]
    UpdateTopicPerm {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'p', long = "perm")]
        perm: i32,
    },
    /// Master/slave replication: each master's slaves, what they hold and
    /// how far behind they are (a cluster's masters with -c)
    #[command(name = "haStatus")]
    HaStatus {
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
    /// Every name server's settings
    #[command(name = "getNamesrvConfig")]
    GetNamesrvConfig,
    /// Name server settings do not change at run time: says so
    #[command(name = "updateNamesrvConfig")]
    UpdateNamesrvConfig {
        #[arg(short = 'k', long = "key")]
        key: String,
        #[arg(short = 'v', long = "value")]
        value: String,
    },
    /// Every consumer group's progress on one broker: per queue, the
    /// broker's offset, the group's, and the difference
    #[command(name = "brokerConsumeStats")]
    BrokerConsumeStats {
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
        /// Only rows at least this far behind
        #[arg(short = 'l', long = "level", default_value_t = 0)]
        level: i64,
    },
    /// Send round trip to every master of a cluster (every cluster
    /// without -c): -a messages of -s bytes each, to the topic each broker
    /// serves under its own name
    #[command(name = "clusterRT")]
    ClusterRt {
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'a', long = "amount", default_value_t = 100)]
        amount: usize,
        #[arg(short = 's', long = "size", default_value_t = 128)]
        size: usize,
    },
    /// Create or change a consumer group's settings on a broker or on
    /// every master of a cluster; settings not given keep their value
    #[command(name = "updateSubGroup")]
    UpdateSubGroup {
        #[arg(short = 'g', long = "groupName")]
        group: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        /// The group may pull
        #[arg(short = 's', long = "consumeEnable")]
        consume_enable: Option<bool>,
        #[arg(short = 'm', long = "consumeFromMinEnable")]
        consume_from_min_enable: Option<bool>,
        /// The group may consume in broadcast mode
        #[arg(short = 'd', long = "consumeBroadcastEnable")]
        consume_broadcast_enable: Option<bool>,
        /// Queues of its retry topic
        #[arg(short = 'q', long = "retryQueueNums")]
        retry_queue_nums: Option<i32>,
        /// Failures before a message is dead-lettered (unless the client
        /// says its own limit)
        #[arg(short = 'r', long = "retryMaxTimes")]
        retry_max_times: Option<i64>,
        #[arg(short = 'i', long = "brokerId")]
        broker_id: Option<i64>,
        #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly")]
        which_broker_when_consume_slowly: Option<i64>,
        #[arg(short = 'a', long = "notifyConsumerIdsChanged")]
        notify_consumer_ids_changed: Option<bool>,
    },
    /// Remove a consumer group's settings (and its offsets with -r true)
    #[command(name = "deleteSubGroup")]
    DeleteSubGroup {
        #[arg(short = 'g', long = "groupName")]
        group: String,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'r', long = "removeOffset", action = clap::ArgAction::Set, default_value_t = false)]
        remove_offset: bool,
    },
    /// Per topic and consumer group: messages waiting, messages a second
    /// in and out over the last minute, and messages in and out over the
    /// last day
    #[command(name = "statsAll")]
    StatsAll {
        /// Only this topic
        #[arg(short = 't', long = "topic")]
        topic: Option<String>,
        /// Only topics that took or gave messages in the last minute
        #[arg(short = 'a', long = "activeTopic")]
        active: bool,
    },
    /// The clusters a topic is on
    #[command(name = "topicClusterList")]
    TopicClusterList {
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
}

pub async fn run(admin: &Admin, json: bool, cmd: OpsCommand) -> anyhow::Result<()> {
    match cmd {
        OpsCommand::WipeWritePerm { broker_name } => {
            write_perm(admin, json, &broker_name, false).await
        }
        OpsCommand::AddWritePerm { broker_name } => {
            write_perm(admin, json, &broker_name, true).await
        }
        OpsCommand::GetBrokerConfig { broker, cluster } => {
            let mut all = BTreeMap::new();
            for addr in broker_or_cluster(admin, broker, cluster).await? {
                let cfg = admin.broker_config(&addr).await?;
                all.insert(addr, cfg);
            }
            print_configs(json, &all)
        }
        OpsCommand::UpdateBrokerConfig {
            broker,
            cluster,
            key,
            value,
        } => {
            let targets = broker_or_cluster(admin, broker, cluster).await?;
            for addr in &targets {
                admin.update_broker_config(addr, &key, &value).await?;
                if !json {
                    println!("update broker config success, {addr}");
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"brokers": targets, "key": key, "value": value})
                );
            }
            Ok(())
        }
        OpsCommand::ConsumerConnection { group, broker } => {
            consumer_connection(admin, json, &group, broker).await
        }
        OpsCommand::ConsumerStatus {
            group,
            client_id,
            jstack,
            broker,
        } => {
            let (addr, cc) = find_consumer_group(admin, &group, broker).await?;
            let clients: Vec<String> = match client_id {
                Some(id) => vec![id],
                None => cc
                    .connection_set
                    .iter()
                    .map(|c| c.client_id.clone())
                    .collect(),
            };
            let mut reports = Vec::new();
            for id in &clients {
                let body = admin.consumer_running_info(&addr, &group, id, jstack).await;
                reports.push((id.clone(), body));
            }
            if json {
                let v: Vec<_> = reports
                    .iter()
                    .map(|(id, r)| match r {
                        Ok(body) => {
                            let text = String::from_utf8_lossy(body).to_string();
                            let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
                            json!({"clientId": id, "runningInfo": parsed.unwrap_or(serde_json::Value::String(text))})
                        }
                        Err(e) => json!({"clientId": id, "error": e.to_string()}),
                    })
                    .collect();
                println!("{}", json!({"consumerGroup": group, "clients": v}));
            } else if reports.len() == 1 {
                let (id, r) = &reports[0];
                match r {
                    Ok(body) => println!("{}", String::from_utf8_lossy(body)),
                    Err(e) => bail!("{id}: {e}"),
                }
            } else {
                print_table(
                    &["#Index", "#ClientId", "#RunningInfo"],
                    reports
                        .iter()
                        .enumerate()
                        .map(|(i, (id, r))| {
                            vec![
                                format!("{:03}", i + 1),
                                id.clone(),
                                match r {
                                    Ok(b) => format!("{} bytes (show it with -i {id})", b.len()),
                                    Err(e) => format!("no answer: {e}"),
                                },
                            ]
                        })
                        .collect(),
                );
            }
            if reports.iter().any(|(_, r)| r.is_err()) && reports.len() == 1 {
                bail!("the client did not answer");
            }
            Ok(())
        }
        OpsCommand::ProducerConnection { group, topic } => {
            let mut seen = BTreeMap::new();
            let mut last_error = None;
            for (_, addr) in admin.topic_masters(&topic).await? {
                match admin.producer_connection(&addr, &group).await {
                    Ok(pc) => {
                        for c in pc.connection_set {
                            seen.insert(c.client_id.clone(), c);
                        }
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if seen.is_empty() {
                return Err(match last_error {
                    Some(e) => anyhow!(e),
                    None => anyhow!("no broker serves topic `{topic}`"),
                });
            }
            if json {
                println!(
                    "{}",
                    json!({"producerGroup": group, "connectionSet": seen.values().collect::<Vec<_>>()})
                );
            } else {
                for (i, c) in seen.values().enumerate() {
                    println!(
                        "{:04}  {:<32} {:<22} {:<8} {}",
                        i + 1,
                        c.client_id,
                        c.client_addr,
                        c.language,
                        version_name(c.version)
                    );
                }
            }
            Ok(())
        }
        OpsCommand::UpdateTopicPerm {
            topic,
            broker,
            cluster,
            perm,
        } => {
            use meridian_protocol::body::perm::{PERM_READ, PERM_WRITE};
            if perm & !(PERM_READ | PERM_WRITE) != 0 {
                bail!("-p {perm}: expected 2 (write), 4 (read) or 6 (both)");
            }
            let targets = broker_or_cluster(admin, broker, cluster).await?;
            for addr in &targets {
                let mut cfg = admin
                    .all_topic_config(addr)
                    .await?
                    .remove(&topic)
                    .ok_or_else(|| anyhow!("topic `{topic}` does not exist on {addr}"))?;
                let old = cfg.perm;
                cfg.perm = perm;
                admin.update_topic(addr, &cfg).await?;
                if !json {
                    println!("update topic perm from {old} to {perm} in {addr} success.");
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"topic": topic, "brokers": targets, "perm": perm})
                );
            }
            Ok(())
        }
        OpsCommand::HaStatus { broker, cluster } => {
            let mut rows = Vec::new();
            for addr in broker_or_cluster(admin, broker, cluster).await? {
                let rt = admin.runtime_info(&addr).await?;
                let max = rt.get("haMaxOffset").cloned().unwrap_or_default();
                let slaves: BTreeSet<&str> = rt
                    .keys()
                    .filter_map(|k| k.strip_prefix("haSlave."))
                    .filter_map(|k| k.rsplit_once('.').map(|(a, _)| a))
                    .collect();
                if slaves.is_empty() {
                    rows.push(vec![
                        addr.clone(),
                        max.clone(),
                        "0".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
                for slave in &slaves {
                    let get = |f: &str| {
                        rt.get(&format!("haSlave.{slave}.{f}"))
                            .cloned()
                            .unwrap_or_default()
                    };
                    rows.push(vec![
                        addr.clone(),
                        max.clone(),
                        slaves.len().to_string(),
                        slave.to_string(),
                        get("ackOffset"),
                        get("lagBytes"),
                    ]);
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| json!({"masterAddr": r[0], "masterCommitLogMaxOffset": r[1], "slaveNum": r[2], "slaveAddr": r[3], "slaveAckOffset": r[4], "diff": r[5]}))
                    .collect();
                println!("{}", json!({"ha": v}));
            } else {
                print_table(
                    &[
                        "#MasterAddr",
                        "#MasterCommitLogMaxOffset",
                        "#SlaveNum",
                        "#SlaveAddr",
                        "#SlaveAckOffset",
                        "#Diff",
                    ],
                    rows,
                );
            }
            Ok(())
        }
        OpsCommand::GetNamesrvConfig => {
            let mut all = BTreeMap::new();
            for ns in admin.namesrv_addrs().to_vec() {
                let cfg = admin.namesrv_config(&ns).await?;
                all.insert(ns, cfg);
            }
            print_configs(json, &all)
        }
        OpsCommand::UpdateNamesrvConfig { key, value } => {
            for ns in admin.namesrv_addrs().to_vec() {
                admin.update_namesrv_config(&ns, &key, &value).await?;
            }
            Ok(())
        }
        OpsCommand::BrokerConsumeStats { broker, level } => {
            let mut rows = Vec::new();
            for key in admin.all_consumer_offsets(&broker).await?.keys() {
                let Some((topic, group)) = key.split_once('@') else {
                    continue;
                };
                let stats = admin.consume_stats(&broker, group, Some(topic)).await?;
                for (mq, w) in stats.offset_table {
                    let diff = (w.broker_offset - w.consumer_offset.max(0)).max(0);
                    if diff >= level {
                        rows.push((
                            topic.to_string(),
                            group.to_string(),
                            mq.broker_name,
                            mq.queue_id,
                            w.broker_offset,
                            w.consumer_offset,
                            diff,
                            w.last_timestamp,
                        ));
                    }
                }
            }
            rows.sort();
            let total: i64 = rows.iter().map(|r| r.6).sum();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(t, g, b, q, bo, co, d, ts)| json!({"topic": t, "group": g, "brokerName": b, "queueId": q, "brokerOffset": bo, "consumerOffset": co, "diff": d, "lastTimestamp": ts}))
                    .collect();
                println!(
                    "{}",
                    json!({"brokerAddr": broker, "consumeStats": v, "totalDiff": total})
                );
            } else {
                print_table(
                    &[
                        "#Topic",
                        "#Group",
                        "#Broker Name",
                        "#QID",
                        "#Broker Offset",
                        "#Consumer Offset",
                        "#Diff",
                        "#LastTime",
                    ],
                    rows.iter()
                        .map(|(t, g, b, q, bo, co, d, ts)| {
                            vec![
                                t.clone(),
                                g.clone(),
                                b.clone(),
                                q.to_string(),
                                bo.to_string(),
                                co.to_string(),
                                d.to_string(),
                                super::format_ts(*ts),
                            ]
                        })
                        .collect(),
                );
                println!("\nDiff Total: {total}");
            }
            Ok(())
        }
        OpsCommand::ClusterRt {
            cluster,
            amount,
            size,
        } => {
            let info = admin.cluster_info().await?;
            let producer = meridian_client::Producer::new(
                &admin.namesrv_addrs().join(";"),
                "TOOLS_CLUSTER_RT",
            );
            let mut rows = Vec::new();
            for (c, names) in &info.cluster_addr_table {
                if cluster.as_deref().is_some_and(|want| want != c) {
                    continue;
                }
                for name in names {
                    let Some(addr) = info
                        .broker_addr_table
                        .get(name)
                        .and_then(|b| b.broker_addrs.get(&0))
                    else {
                        continue;
                    };
                    let msg = meridian_client::producer::Message {
                        topic: name.clone(),
                        body: vec![b'x'; size].into(),
                        ..Default::default()
                    };
                    let (mut ok, mut failed, mut took) = (0u64, 0u64, std::time::Duration::ZERO);
                    for _ in 0..amount {
                        let started = std::time::Instant::now();
                        match producer.send_to(addr, name, 0, &msg).await {
                            Ok(_) => {
                                ok += 1;
                                took += started.elapsed();
                            }
                            Err(_) => failed += 1,
                        }
                    }
                    let rt = if ok > 0 {
                        took.as_secs_f64() * 1000.0 / ok as f64
                    } else {
                        f64::NAN
                    };
                    rows.push((c.clone(), name.clone(), rt, ok, failed));
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(c, b, rt, ok, f)| json!({"cluster": c, "brokerName": b, "rtMs": rt, "successCount": ok, "failCount": f}))
                    .collect();
                println!("{}", json!({"clusterRT": v}));
            } else {
                print_table(
                    &[
                        "#Cluster Name",
                        "#Broker Name",
                        "#RT(ms)",
                        "#successCount",
                        "#failCount",
                    ],
                    rows.iter()
                        .map(|(c, b, rt, ok, f)| {
                            vec![
                                c.clone(),
                                b.clone(),
                                format!("{rt:.2}"),
                                ok.to_string(),
                                f.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(())
        }
        OpsCommand::UpdateSubGroup {
            group,
            broker,
            cluster,
            consume_enable,
            consume_from_min_enable,
            consume_broadcast_enable,
            retry_queue_nums,
            retry_max_times,
            broker_id,
            which_broker_when_consume_slowly,
            notify_consumer_ids_changed,
        } => {
            let targets = broker_or_cluster(admin, broker, cluster).await?;
            let mut written = Vec::new();
            for addr in &targets {
                let mut cfg = admin
                    .subscription_groups(addr)
                    .await?
                    .subscription_group_table
                    .remove(&group)
                    .unwrap_or_else(|| {
                        meridian_protocol::body::SubscriptionGroupConfig::new(group.clone())
                    });
                if let Some(v) = consume_enable {
                    cfg.consume_enable = v;
                }
                if let Some(v) = consume_from_min_enable {
                    cfg.consume_from_min_enable = v;
                }
                if let Some(v) = consume_broadcast_enable {
                    cfg.consume_broadcast_enable = v;
                }
                if let Some(v) = retry_queue_nums {
                    cfg.retry_queue_nums = v;
                }
                if let Some(v) = retry_max_times {
                    cfg.retry_max_times = v;
                }
                if let Some(v) = broker_id {
                    cfg.broker_id = v;
                }
                if let Some(v) = which_broker_when_consume_slowly {
                    cfg.which_broker_when_consume_slowly = v;
                }
                if let Some(v) = notify_consumer_ids_changed {
                    cfg.notify_consumer_ids_changed_enable = v;
                }
                admin.update_subscription_group(addr, &cfg).await?;
                if !json {
                    println!("create subscription group to {addr} success.");
                    println!("{}", serde_json::to_string(&cfg)?);
                }
                written.push(cfg);
            }
            if json {
                println!("{}", json!({"brokers": targets, "configs": written}));
            }
            Ok(())
        }
        OpsCommand::DeleteSubGroup {
            group,
            broker,
            cluster,
            remove_offset,
        } => {
            let targets = broker_or_cluster(admin, broker, cluster).await?;
            for addr in &targets {
                admin
                    .delete_subscription_group(addr, &group, remove_offset)
                    .await?;
                if !json {
                    println!("delete subscription group [{group}] from broker [{addr}] success.");
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"group": group, "brokers": targets, "removeOffset": remove_offset})
                );
            }
            Ok(())
        }
        OpsCommand::StatsAll { topic, active } => {
            let topics: Vec<String> = match topic {
                Some(t) => vec![t],
                None => admin
                    .topic_list()
                    .await?
                    .into_iter()
                    .filter(|t| !is_system_topic(t))
                    .collect(),
            };
            let mut rows = Vec::new();
            for t in topics {
                let masters = admin.topic_masters(&t).await.unwrap_or_default();
                let (mut in_tps, mut in_day) = (0.0, 0u64);
                let mut groups = BTreeSet::new();
                for (_, addr) in &masters {
                    if let Ok(w) = admin.broker_stats(addr, "TOPIC_PUT_NUMS", &t).await {
                        in_tps += w[0].1;
                        in_day += w[2].0;
                    }
                    groups.extend(admin.consumed_by_who(addr, &t).await.unwrap_or_default());
                }
                if groups.is_empty() {
                    rows.push((t.clone(), String::new(), 0i64, in_tps, 0.0, in_day, 0u64));
                }
                for g in groups {
                    let (mut out_tps, mut out_day, mut waiting) = (0.0, 0u64, 0i64);
                    for (_, addr) in &masters {
                        if let Ok(w) = admin
                            .broker_stats(addr, "GROUP_GET_NUMS", &format!("{t}@{g}"))
                            .await
                        {
                            out_tps += w[0].1;
                            out_day += w[2].0;
                        }
                        if let Ok(cs) = admin.consume_stats(addr, &g, Some(&t)).await {
                            waiting += cs
                                .offset_table
                                .values()
                                .map(|w| (w.broker_offset - w.consumer_offset.max(0)).max(0))
                                .sum::<i64>();
                        }
                    }
                    rows.push((t.clone(), g, waiting, in_tps, out_tps, in_day, out_day));
                }
            }
            if active {
                rows.retain(|r| r.3 > 0.0 || r.4 > 0.0);
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(t, g, acc, i, o, id, od)| json!({"topic": t, "consumerGroup": g, "accumulation": acc, "inTps": i, "outTps": o, "inMsg24Hour": id, "outMsg24Hour": od}))
                    .collect();
                println!("{}", json!({"stats": v}));
            } else {
                print_table(
                    &[
                        "#Topic",
                        "#Consumer Group",
                        "#Accumulation",
                        "#InTPS",
                        "#OutTPS",
                        "#InMsg24Hour",
                        "#OutMsg24Hour",
                    ],
                    rows.iter()
                        .map(|(t, g, acc, i, o, id, od)| {
                            vec![
                                t.clone(),
                                g.clone(),
                                acc.to_string(),
                                format!("{i:.2}"),
                                format!("{o:.2}"),
                                id.to_string(),
                                od.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(())
        }
        OpsCommand::TopicClusterList { topic } => {
            let route = admin
                .route(&topic)
                .await?
                .ok_or_else(|| anyhow!("no route for topic `{topic}`"))?;
            let names: BTreeSet<String> = route
                .broker_datas
                .iter()
                .map(|b| b.broker_name.clone())
                .collect();
            let info = admin.cluster_info().await?;
            let clusters: BTreeSet<String> = info
                .cluster_addr_table
                .iter()
                .filter(|(_, brokers)| brokers.iter().any(|b| names.contains(b)))
                .map(|(c, _)| c.clone())
                .collect();
            if json {
                println!("{}", json!({"topic": topic, "clusters": clusters}));
            } else {
                for c in clusters {
                    println!("{c}");
                }
            }
            Ok(())
        }
    }
}

/// `wipeWritePerm` / `addWritePerm` on every name server given with -n,
/// as mqadmin does.
async fn write_perm(
    admin: &Admin,
    json: bool,
    broker_name: &str,
    write: bool,
) -> anyhow::Result<()> {
    let what = if write { "add" } else { "wipe" };
    let mut results = Vec::new();
    let mut failed = 0;
    for ns in admin.namesrv_addrs().to_vec() {
        match admin.set_write_perm(&ns, broker_name, write).await {
            Ok(n) => {
                if !json {
                    println!(
                        "{what} write perm of broker[{broker_name}] in name server[{ns}] OK, {n}"
                    );
                }
                results.push(json!({"namesrv": ns, "topics": n}));
            }
            Err(e) => {
                failed += 1;
                if !json {
                    println!("{what} write perm of broker[{broker_name}] in name server[{ns}] Failed: {e}");
                }
                results.push(json!({"namesrv": ns, "error": e.to_string()}));
            }
        }
    }
    if json {
        println!(
            "{}",
            json!({"brokerName": broker_name, "write": write, "nameServers": results})
        );
    }
    if failed > 0 {
        bail!("{failed} name server(s) did not take the change");
    }
    Ok(())
}

/// A broker that knows consumer group `group` (the one given, else the
/// brokers of its retry topic, else every master), and what it knows.
async fn find_consumer_group(
    admin: &Admin,
    group: &str,
    broker: Option<String>,
) -> anyhow::Result<(String, meridian_protocol::body::ConsumerConnection)> {
    let brokers = match broker {
        Some(b) => vec![b],
        None => super::group_masters(admin, group, None)
            .await?
            .into_values()
            .collect(),
    };
    let mut last_error = None;
    for addr in brokers {
        match admin.consumer_connection(&addr, group).await {
            Ok(cc) => return Ok((addr, cc)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => anyhow!(e),
        None => anyhow!("no broker found to ask about consumer group `{group}`"),
    })
}

async fn consumer_connection(
    admin: &Admin,
    json: bool,
    group: &str,
    broker: Option<String>,
) -> anyhow::Result<()> {
    let (_, cc) = find_consumer_group(admin, group, broker).await?;
    if json {
        println!("{}", serde_json::to_string(&cc)?);
        return Ok(());
    }
    print_table(
        &["#ClientId", "#ClientAddr", "#Language", "#Version"],
        cc.connection_set
            .iter()
            .map(|c| {
                vec![
                    c.client_id.clone(),
                    c.client_addr.clone(),
                    c.language.clone(),
                    version_name(c.version),
                ]
            })
            .collect(),
    );
    println!("\nBelow is subscription:");
    for (i, (topic, sub)) in cc.subscription_table.iter().enumerate() {
        println!(
            "{:03}  Topic: {topic:<40} SubExpression: {}",
            i + 1,
            sub.sub_string
        );
    }
    println!();
    println!("ConsumeType: {:?}", cc.consume_type);
    println!("MessageModel: {:?}", cc.message_model);
    println!("ConsumeFromWhere: {:?}", cc.consume_from_where);
    Ok(())
}

/// A client's version: the ordinal of RocketMQ's `MQVersion.Version` it
/// sends (401 is V4_9_4).
fn version_name(v: i32) -> String {
    v.to_string()
}

/// Topics of the broker's own (retry, dead-letter, system): statsAll
/// leaves them out unless asked for one with -t.
fn is_system_topic(t: &str) -> bool {
    t.starts_with("%RETRY%")
        || t.starts_with("%DLQ%")
        || t.starts_with("rmq_sys")
        || t.starts_with("RMQ_SYS")
        || t.starts_with("SCHEDULE_TOPIC")
        || t.ends_with("_REPLY_TOPIC")
        || matches!(
            t,
            "TBW102"
                | "BenchmarkTest"
                | "SELF_TEST_TOPIC"
                | "OFFSET_MOVED_EVENT"
                | "TRANS_CHECK_MAX_TIME_TOPIC"
        )
}

/// Servers' settings as mqadmin prints them: a `====addr====` line, then
/// `key = value` lines; or one JSON document by address.
fn print_configs(
    json: bool,
    all: &BTreeMap<String, BTreeMap<String, String>>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(all)?);
        return Ok(());
    }
    for (addr, cfg) in all {
        println!("============{addr}============");
        for (k, v) in cfg {
            println!("{k:<50}=  {v}");
        }
    }
    Ok(())
}
