//! `meridian admin`: the mqadmin commands operators use most, with
//! mqadmin's names and flags. Readable tables by default, `--json` for
//! scripts.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use meridian_client::Admin;
use meridian_protocol::body::TopicConfig;
use meridian_protocol::message::{decode_properties, MessageExt};
use meridian_protocol::message_id::decode_offset_msg_id;
use serde_json::json;

#[derive(Args)]
pub struct AdminArgs {
    /// Name server address(es), `;`-separated.
    #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR", global = true)]
    namesrv: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create or update a topic on every master of a cluster (-c) or on one broker (-b).
    #[command(name = "updateTopic")]
    UpdateTopic {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
        read: i32,
        #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
        write: i32,
        /// 2 write, 4 read, 6 read and write.
        #[arg(short = 'p', long = "perm", default_value_t = 6)]
        perm: i32,
        #[arg(short = 'o', long = "order", default_value_t = false)]
        order: bool,
    },
    /// Delete a topic from a cluster's brokers and from the name servers.
    #[command(name = "deleteTopic")]
    DeleteTopic {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'c', long = "clusterName")]
        cluster: String,
    },
    /// Every topic the name server knows.
    #[command(name = "topicList")]
    TopicList,
    /// A topic's route.
    #[command(name = "topicRoute")]
    TopicRoute {
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Min and max offset of each queue of a topic.
    #[command(name = "topicStatus")]
    TopicStatus {
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Clusters, their brokers and their throughput.
    #[command(name = "clusterList")]
    ClusterList,
    /// Per-queue broker offset, consumer offset and lag of a consumer group.
    #[command(name = "consumerProgress")]
    ConsumerProgress {
        #[arg(short = 'g', long = "groupName")]
        group: String,
        #[arg(short = 't', long = "topicName")]
        topic: Option<String>,
    },
    /// A message by its offset message id (or, with -t, by its unique key).
    #[command(name = "queryMsgById")]
    QueryMsgById {
        #[arg(short = 'i', long = "msgId")]
        id: String,
        #[arg(short = 't', long = "topic")]
        topic: Option<String>,
    },
    /// Messages of a topic by key.
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'k', long = "msgKey")]
        key: String,
    },
    /// Move a consumer group's offsets to a point in time.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime {
        #[arg(short = 'g', long = "group")]
        group: String,
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Milliseconds since the epoch, `now`, or yyyy-MM-dd#HH:mm:ss:SSS (UTC).
        #[arg(short = 's', long = "timestamp")]
        timestamp: String,
        /// Also move offsets forward.
        #[arg(short = 'f', long = "force", default_value = "true")]
        force: String,
    },
    /// A broker's runtime figures.
    #[command(name = "brokerStatus")]
    BrokerStatus {
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let namesrv = args
        .namesrv
        .ok_or_else(|| anyhow!("give the name server with -n host:port (or NAMESRV_ADDR)"))?;
    let admin = Admin::new(&namesrv);
    let json = args.json;
    match args.command {
        AdminCommand::UpdateTopic {
            topic,
            cluster,
            broker,
            read,
            write,
            perm,
            order,
        } => {
            let cfg = TopicConfig {
                topic_name: topic.clone(),
                read_queue_nums: read,
                write_queue_nums: write,
                perm,
                order,
                ..Default::default()
            };
            let targets = broker_or_cluster(&admin, broker, cluster).await?;
            if targets.is_empty() {
                bail!("no master broker found to create the topic on");
            }
            for addr in &targets {
                admin.update_topic(addr, &cfg).await?;
                if !json {
                    println!("create topic to {addr} success.");
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"topic": topic, "brokers": targets, "readQueueNums": read, "writeQueueNums": write, "perm": perm})
                );
            } else {
                println!("{}", serde_json::to_string(&cfg)?);
            }
        }
        AdminCommand::DeleteTopic { topic, cluster } => {
            for (_, addr) in admin.master_addrs(&cluster).await? {
                admin.delete_topic_in_broker(&addr, &topic).await?;
            }
            admin
                .delete_topic_in_namesrv(&topic, Some(&cluster))
                .await?;
            if json {
                println!(
                    "{}",
                    json!({"topic": topic, "cluster": cluster, "deleted": true})
                );
            } else {
                println!("delete topic [{topic}] from cluster [{cluster}] success.");
            }
        }
        AdminCommand::TopicList => {
            let topics = admin.topic_list().await?;
            if json {
                println!("{}", json!({"topicList": topics}));
            } else {
                for t in topics {
                    println!("{t}");
                }
            }
        }
        AdminCommand::TopicRoute { topic } => {
            let route = admin
                .route(&topic)
                .await?
                .ok_or_else(|| anyhow!("no route for topic `{topic}`"))?;
            println!("{}", serde_json::to_string_pretty(&route)?);
        }
        AdminCommand::TopicStatus { topic } => {
            let mut rows = Vec::new();
            for (name, addr) in admin.topic_masters(&topic).await? {
                let stats = admin.topic_stats(&addr, &topic).await?;
                let mut entries: Vec<_> = stats.offset_table.into_iter().collect();
                entries.sort_by_key(|(mq, _)| mq.queue_id);
                for (mq, off) in entries {
                    rows.push((
                        name.clone(),
                        mq.queue_id,
                        off.min_offset,
                        off.max_offset,
                        off.last_update_timestamp,
                    ));
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(b, q, min, max, t)| json!({"brokerName": b, "queueId": q, "minOffset": min, "maxOffset": max, "lastUpdateTimestamp": t}))
                    .collect();
                println!("{}", json!({"topic": topic, "queues": v}));
            } else {
                print_table(
                    &[
                        "#Broker Name",
                        "#QID",
                        "#Min Offset",
                        "#Max Offset",
                        "#Last Updated",
                    ],
                    rows.iter()
                        .map(|(b, q, min, max, t)| {
                            vec![
                                b.clone(),
                                q.to_string(),
                                min.to_string(),
                                max.to_string(),
                                format_ts(*t),
                            ]
                        })
                        .collect(),
                );
            }
        }
        AdminCommand::ClusterList => {
            let info = admin.cluster_info().await?;
            let mut rows = Vec::new();
            for (cluster, names) in &info.cluster_addr_table {
                for name in names {
                    let Some(b) = info.broker_addr_table.get(name) else {
                        continue;
                    };
                    for (id, addr) in &b.broker_addrs {
                        let rt = admin.runtime_info(addr).await.unwrap_or_default();
                        rows.push((cluster.clone(), name.clone(), *id, addr.clone(), rt));
                    }
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(c, n, id, a, rt)| json!({"cluster": c, "brokerName": n, "brokerId": id, "addr": a, "runtime": rt}))
                    .collect();
                println!("{}", json!({"brokers": v}));
            } else {
                print_table(
                    &[
                        "#Cluster Name",
                        "#Broker Name",
                        "#BID",
                        "#Addr",
                        "#Version",
                        "#Put Total",
                        "#Commit Log Max",
                    ],
                    rows.iter()
                        .map(|(c, n, id, a, rt)| {
                            vec![
                                c.clone(),
                                n.clone(),
                                id.to_string(),
                                a.clone(),
                                rt.get("brokerVersionDesc").cloned().unwrap_or_default(),
                                rt.get("msgPutTotal").cloned().unwrap_or_default(),
                                rt.get("commitLogMaxOffset").cloned().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        AdminCommand::ConsumerProgress { group, topic } => {
            let retry = format!("%RETRY%{group}");
            let mut brokers: BTreeMap<String, String> = BTreeMap::new();
            for t in [Some(retry.clone()), topic.clone()].into_iter().flatten() {
                if let Ok(masters) = admin.topic_masters(&t).await {
                    brokers.extend(masters);
                }
            }
            if brokers.is_empty() {
                // No topic to route by: ask every master the name server knows.
                let info = admin.cluster_info().await?;
                for (name, b) in info.broker_addr_table {
                    if let Some(a) = b.broker_addrs.get(&0) {
                        brokers.insert(name, a.clone());
                    }
                }
            }
            let mut rows = Vec::new();
            for (name, addr) in &brokers {
                let stats = admin.consume_stats(addr, &group, topic.as_deref()).await?;
                for (mq, w) in stats.offset_table {
                    rows.push((
                        mq.topic,
                        name.clone(),
                        mq.queue_id,
                        w.broker_offset,
                        w.consumer_offset,
                        w.last_timestamp,
                    ));
                }
            }
            rows.sort();
            let lag = |b: i64, c: i64| if c < 0 { b } else { (b - c).max(0) };
            let total: i64 = rows.iter().map(|r| lag(r.3, r.4)).sum();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(t, b, q, bo, co, ts)| json!({"topic": t, "brokerName": b, "queueId": q, "brokerOffset": bo, "consumerOffset": co, "lag": lag(*bo, *co), "lastTimestamp": ts}))
                    .collect();
                println!(
                    "{}",
                    json!({"group": group, "queues": v, "totalLag": total})
                );
            } else {
                print_table(
                    &[
                        "#Topic",
                        "#Broker Name",
                        "#QID",
                        "#Broker Offset",
                        "#Consumer Offset",
                        "#Diff",
                        "#LastTime",
                    ],
                    rows.iter()
                        .map(|(t, b, q, bo, co, ts)| {
                            vec![
                                t.clone(),
                                b.clone(),
                                q.to_string(),
                                bo.to_string(),
                                co.to_string(),
                                lag(*bo, *co).to_string(),
                                format_ts(*ts),
                            ]
                        })
                        .collect(),
                );
                println!();
                println!("Diff Total: {total}");
            }
        }
        AdminCommand::QueryMsgById { id, topic } => {
            let msg = match decode_offset_msg_id(&id) {
                Ok((addr, offset)) => match admin.view_message(&addr.to_string(), offset).await {
                    Ok(m) => Some(m),
                    Err(e) if topic.is_none() => return Err(e.into()),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            let msg = match msg {
                Some(m) => m,
                None => {
                    let topic = topic.ok_or_else(|| {
                        anyhow!("`{id}` is not an offset message id; give the topic with -t to look it up as a unique key")
                    })?;
                    find_by_key(&admin, &topic, &id, true)
                        .await?
                        .into_iter()
                        .next()
                        .ok_or_else(|| anyhow!("no message with id {id} in topic {topic}"))?
                }
            };
            print_message(&msg, json)?;
        }
        AdminCommand::QueryMsgByKey { topic, key } => {
            let msgs = find_by_key(&admin, &topic, &key, false).await?;
            if json {
                let v: Vec<_> = msgs.iter().map(message_json).collect();
                println!("{}", json!({"topic": topic, "key": key, "messages": v}));
            } else {
                print_table(
                    &["#Message ID", "#QID", "#Offset"],
                    msgs.iter()
                        .map(|m| {
                            vec![
                                display_id(m),
                                m.queue_id.to_string(),
                                m.queue_offset.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
            if msgs.is_empty() {
                bail!("no message with key {key} in topic {topic}");
            }
        }
        AdminCommand::ResetOffsetByTime {
            group,
            topic,
            timestamp,
            force,
        } => {
            let ts = parse_timestamp(&timestamp)?;
            let force = !force.eq_ignore_ascii_case("false");
            let mut rows = Vec::new();
            for (name, addr) in admin.topic_masters(&topic).await? {
                for (q, off) in admin.reset_offset(&addr, &topic, &group, ts, force).await? {
                    rows.push((name.clone(), q, off));
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(b, q, o)| json!({"brokerName": b, "queueId": q, "offset": o}))
                    .collect();
                println!(
                    "{}",
                    json!({"group": group, "topic": topic, "timestamp": ts, "offsets": v})
                );
            } else {
                print_table(
                    &["#brokerName", "#queueId", "#offset"],
                    rows.iter()
                        .map(|(b, q, o)| vec![b.clone(), q.to_string(), o.to_string()])
                        .collect(),
                );
            }
        }
        AdminCommand::BrokerStatus { broker, cluster } => {
            let addrs = broker_or_cluster(&admin, broker, cluster).await?;
            let mut all = BTreeMap::new();
            for a in addrs {
                all.insert(a.clone(), admin.runtime_info(&a).await?);
            }
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for (addr, kv) in all {
                    for (k, v) in kv {
                        println!("{addr:<22} {k:<32}: {v}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// mqadmin's `-b brokerAddr | -c clusterName`: that broker, or every
/// master of the cluster.
async fn broker_or_cluster(
    admin: &Admin,
    broker: Option<String>,
    cluster: Option<String>,
) -> anyhow::Result<Vec<String>> {
    Ok(match (broker, cluster) {
        (Some(b), _) => vec![b],
        (None, Some(c)) => admin
            .master_addrs(&c)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
        (None, None) => bail!("give -b brokerAddr or -c clusterName"),
    })
}

async fn find_by_key(
    admin: &Admin,
    topic: &str,
    key: &str,
    unique: bool,
) -> anyhow::Result<Vec<MessageExt>> {
    let mut out = Vec::new();
    for (_, addr) in admin.topic_masters(topic).await? {
        out.extend(
            admin
                .query_message(&addr, topic, key, 64, unique)
                .await
                .with_context(|| format!("query on broker {addr}"))?,
        );
    }
    Ok(out)
}

fn prop<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn display_id(m: &MessageExt) -> String {
    let props = decode_properties(&m.properties);
    prop(&props, "UNIQ_KEY")
        .map(str::to_string)
        .unwrap_or_else(|| {
            meridian_protocol::message_id::create_offset_msg_id(m.store_host, m.commit_log_offset)
        })
}

fn message_json(m: &MessageExt) -> serde_json::Value {
    let props: BTreeMap<String, String> = decode_properties(&m.properties).into_iter().collect();
    json!({
        "msgId": display_id(m),
        "offsetMsgId": meridian_protocol::message_id::create_offset_msg_id(m.store_host, m.commit_log_offset),
        "topic": m.topic,
        "queueId": m.queue_id,
        "queueOffset": m.queue_offset,
        "commitLogOffset": m.commit_log_offset,
        "tags": props.get("TAGS"),
        "keys": props.get("KEYS"),
        "reconsumeTimes": m.reconsume_times,
        "bornTimestamp": m.born_timestamp,
        "storeTimestamp": m.store_timestamp,
        "bornHost": m.born_host.to_string(),
        "storeHost": m.store_host.to_string(),
        "sysFlag": m.sys_flag,
        "properties": props,
        "bodyLength": m.body.len(),
        "body": String::from_utf8_lossy(&m.body),
    })
}

fn print_message(m: &MessageExt, json: bool) -> anyhow::Result<()> {
    let v = message_json(m);
    if json {
        println!("{v}");
        return Ok(());
    }
    let props = decode_properties(&m.properties);
    let rows = [
        (
            "OffsetID",
            v["offsetMsgId"].as_str().unwrap_or_default().to_string(),
        ),
        ("Topic", m.topic.clone()),
        ("Tags", format!("[{}]", prop(&props, "TAGS").unwrap_or(""))),
        ("Keys", format!("[{}]", prop(&props, "KEYS").unwrap_or(""))),
        ("Queue ID", m.queue_id.to_string()),
        ("Queue Offset", m.queue_offset.to_string()),
        ("CommitLog Offset", m.commit_log_offset.to_string()),
        ("Reconsume Times", m.reconsume_times.to_string()),
        ("Born Timestamp", format_ts(m.born_timestamp)),
        ("Store Timestamp", format_ts(m.store_timestamp)),
        ("Born Host", m.born_host.to_string()),
        ("Store Host", m.store_host.to_string()),
        ("System Flag", m.sys_flag.to_string()),
        ("Properties", format!("{:?}", props)),
        (
            "Message Body",
            String::from_utf8_lossy(&m.body).into_owned(),
        ),
    ];
    for (k, val) in rows {
        println!("{k:<20}: {val}");
    }
    Ok(())
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `yyyy-MM-dd HH:mm:ss.SSS` in UTC; `-` for 0.
fn format_ts(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

// Howard Hinnant's days-from-civil algorithms (public domain).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// mqadmin's timestamp forms: milliseconds, `now`, or
/// `yyyy-MM-dd#HH:mm:ss:SSS` (read as UTC).
fn parse_timestamp(s: &str) -> anyhow::Result<i64> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(meridian_protocol::now_ms());
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || anyhow!("timestamp `{s}`: use milliseconds, `now`, or yyyy-MM-dd#HH:mm:ss:SSS");
    let (date, time) = s.split_once('#').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if d.len() != 3 || t.len() < 3 {
        return Err(bad());
    }
    let days = days_from_civil(d[0], d[1], d[2]);
    Ok(((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) + t.get(3).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let ms = parse_timestamp("2026-11-25#12:34:56:789").unwrap();
        assert_eq!(format_ts(ms), "2026-11-25 12:34:56.789");
        assert_eq!(parse_timestamp("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(parse_timestamp("yesterday").is_err());
    }
}
