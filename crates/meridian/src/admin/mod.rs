//! `meridian admin`: the mqadmin commands operators use most, with
//! mqadmin's names and flags. Readable tables by default, `--json` for
//! scripts.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use meridian_client::admin::{NotLeader, RaftTransfer};
use meridian_client::Admin;
use meridian_protocol::body::TopicConfig;
use meridian_protocol::message::{decode_properties, MessageExt};
use meridian_protocol::message_id::decode_offset_msg_id;
use serde_json::json;

mod messages;
mod ops;
mod regions;

#[derive(Args)]
pub struct AdminArgs {
    /// Name server address(es), `;`-separated.
    #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR", global = true)]
    namesrv: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Sign requests with this account (brokers with `aclEnable=true`).
    #[arg(long = "accessKey", env = "MERIDIAN_ACCESS_KEY", global = true)]
    access_key: Option<String>,
    /// The account's secret key.
    #[arg(
        long = "secretKey",
        env = "MERIDIAN_SECRET_KEY",
        global = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

/// TLS for a command-line client (admin, bench).
#[derive(Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Connect with TLS (as RocketMQ's clients with tls.enable=true).
    #[arg(long, global = true)]
    pub tls: bool,
    /// Verify servers against this CA (PEM); without it any server
    /// certificate is accepted (RocketMQ's tls.client.authServer=false).
    #[arg(long = "tlsTrustCertPath", global = true, requires = "tls")]
    pub tls_trust: Option<std::path::PathBuf>,
    /// Present this certificate (PEM) for servers that require one.
    #[arg(long = "tlsCertPath", global = true, requires = "tls")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The key of --tlsCertPath (unencrypted PEM).
    #[arg(long = "tlsKeyPath", global = true, requires = "tls")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn connector(&self) -> anyhow::Result<meridian_remoting::tls::Connector> {
        if !self.tls {
            return Ok(Default::default());
        }
        Ok(meridian_remoting::tls::client_connector(
            self.tls_trust.is_some(),
            self.tls_trust.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )?)
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    #[command(flatten)]
    Ops(ops::OpsCommand),
    #[command(flatten)]
    Regions(regions::RegionCommand),
    #[command(flatten)]
    Messages(messages::MessageCommand),
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
        /// With -d: hand the message to this group's consumer
        #[arg(short = 'g', long = "consumerGroup", requires = "client_id")]
        group: Option<String>,
        /// The consumer (client id) to hand the message to, which consumes
        /// it again and says how it went
        #[arg(short = 'd', long = "clientId", requires = "group")]
        client_id: Option<String>,
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
    /// Raft groups: each member's role, term and log indexes, and (from the
    /// leader) how far each member lags. Every member the name server lists
    /// for a cluster (-c), for the group of one member (-b), or everywhere.
    #[command(name = "raftStatus")]
    RaftStatus {
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
        /// Any member of the group to show.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
    },
    /// Hand the leadership of a Raft group to another member.
    #[command(name = "transferLeader")]
    TransferLeader {
        /// Any member of the group; the request goes on to the leader.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
        /// The member to lead, as in dLegerSelfId (e.g. n2).
        #[arg(short = 't', long = "to")]
        to: String,
    },
    /// Add a member to a running Raft group: every member learns its
    /// address, the leader adds it as a learner and waits until it holds
    /// the whole log, then makes it a voter. Start the new broker first,
    /// with raftJoinGroup=true.
    #[command(name = "addRaftMember")]
    AddRaftMember {
        /// Any member of the group.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
        /// The new member's id (dLegerSelfId, e.g. n3).
        #[arg(short = 'i', long = "id")]
        id: String,
        /// The new member's Raft address (its dLegerPeers entry).
        #[arg(short = 'a', long = "addr")]
        addr: String,
        /// Leave it a learner (it receives the log but does not vote).
        #[arg(long = "learnerOnly")]
        learner_only: bool,
    },
    /// Take a member out of a Raft group (a dead one too).
    #[command(name = "removeRaftMember")]
    RemoveRaftMember {
        /// Any member of the group.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
        /// The member to remove (e.g. n2).
        #[arg(short = 'i', long = "id")]
        id: String,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let namesrv = args
        .namesrv
        .ok_or_else(|| anyhow!("give the name server with -n host:port (or NAMESRV_ADDR)"))?;
    let credentials = match (&args.access_key, &args.secret_key) {
        (Some(ak), Some(sk)) => Some(meridian_remoting::acl::Credentials::new(ak, sk)),
        (Some(_), None) => anyhow::bail!("--accessKey needs --secretKey"),
        _ => None,
    };
    let connector = args.tls.connector()?;
    let admin = Admin::new(&namesrv).with_security(credentials.clone(), connector.clone());
    let json = args.json;
    match args.command {
        AdminCommand::Ops(cmd) => ops::run(&admin, json, cmd).await?,
        AdminCommand::Regions(cmd) => {
            let r = regions::Regions {
                admin: &admin,
                credentials: credentials.clone(),
                connector: connector.clone(),
            };
            regions::run(r, json, cmd).await?
        }
        AdminCommand::Messages(cmd) => messages::run(&admin, json, cmd).await?,
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
                        let mut rt = admin.runtime_info(addr).await.unwrap_or_default();
                        if let Some(zone) = &b.zone_name {
                            rt.entry("regionId".into()).or_insert_with(|| zone.clone());
                        }
                        rows.push((cluster.clone(), name.clone(), *id, addr.clone(), rt));
                    }
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(c, n, id, a, rt)| json!({"cluster": c, "brokerName": n, "brokerId": id, "addr": a, "regionId": rt.get("regionId"), "runtime": rt}))
                    .collect();
                println!("{}", json!({"brokers": v}));
            } else {
                print_table(
                    &[
                        "#Cluster Name",
                        "#Region",
                        "#Broker Name",
                        "#BID",
                        "#Addr",
                        "#Version",
                        "#InTPS",
                        "#OutTPS",
                        "#Put Total",
                        "#Commit Log Max",
                    ],
                    rows.iter()
                        .map(|(c, n, id, a, rt)| {
                            vec![
                                c.clone(),
                                rt.get("regionId").cloned().unwrap_or_default(),
                                n.clone(),
                                id.to_string(),
                                a.clone(),
                                rt.get("brokerVersionDesc").cloned().unwrap_or_default(),
                                first_rate(rt.get("putTps")),
                                first_rate(rt.get("getTransferedTps")),
                                rt.get("msgPutTotal").cloned().unwrap_or_default(),
                                rt.get("commitLogMaxOffset").cloned().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        AdminCommand::ConsumerProgress { group, topic } => {
            let brokers = group_masters(&admin, &group, topic.as_deref()).await?;
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
        AdminCommand::QueryMsgById {
            id,
            group: Some(group),
            client_id: Some(client_id),
            ..
        } => {
            let (addr, _) = decode_offset_msg_id(&id)
                .map_err(|e| anyhow!("`{id}` is not an offset message id: {e}"))?;
            let body = admin
                .consume_message_directly(&addr.to_string(), &group, &client_id, &id)
                .await?;
            let text = String::from_utf8_lossy(&body).to_string();
            if json {
                let v: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
                println!(
                    "{}",
                    json!({"msgId": id, "consumerGroup": group, "clientId": client_id, "result": v})
                );
            } else {
                println!("{text}");
            }
        }
        AdminCommand::QueryMsgById { id, topic, .. } => {
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
        AdminCommand::RaftStatus { cluster, broker } => {
            raft_status(
                Arc::new(Admin::new(&namesrv).with_credentials(credentials)),
                cluster,
                broker,
                json,
            )
            .await?;
        }
        AdminCommand::TransferLeader { broker, to } => {
            transfer_leader(&admin, &broker, &to, json).await?;
        }
        AdminCommand::AddRaftMember {
            broker,
            id,
            addr,
            learner_only,
        } => {
            add_raft_member(&admin, &broker, &id, &addr, learner_only, json).await?;
        }
        AdminCommand::RemoveRaftMember { broker, id } => {
            let voters = on_raft_leader(&admin, &broker, "remove", &id, None).await?;
            print_membership(json, "removeRaftMember", &id, &voters);
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
/// The masters that know consumer group `group`, by broker name: those
/// of its retry topic (and of `topic`, when given), else every master the
/// name server knows.
async fn group_masters(
    admin: &Admin,
    group: &str,
    topic: Option<&str>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let retry = format!("%RETRY%{group}");
    let mut brokers = BTreeMap::new();
    for t in std::iter::once(retry.as_str()).chain(topic) {
        if let Ok(masters) = admin.topic_masters(t).await {
            brokers.extend(masters);
        }
    }
    if brokers.is_empty() {
        for (name, b) in admin.cluster_info().await?.broker_addr_table {
            if let Some(a) = b.broker_addrs.get(&0) {
                brokers.insert(name, a.clone());
            }
        }
    }
    Ok(brokers)
}

/// The 10-second rate of a runtime-info `putTps`-style value
/// (`"10s 1min 10min"`).
fn first_rate(v: Option<&String>) -> String {
    v.and_then(|v| v.split_whitespace().next())
        .unwrap_or("-")
        .to_string()
}

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

/// One member of a Raft group as `raftStatus` shows it: where the name
/// server lists it, and its runtime info (`None` when it did not answer).
struct RaftMember {
    broker_name: String,
    broker_id: i64,
    addr: String,
    runtime: Option<BTreeMap<String, String>>,
}

impl RaftMember {
    fn get(&self, key: &str) -> Option<&str> {
        self.runtime.as_ref()?.get(key).map(String::as_str)
    }

    /// A number from the runtime info; absent, unparsable and -1 (what a
    /// member reports for "none yet") are `None`.
    fn num(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok().filter(|&v| v >= 0)
    }

    fn is_raft(&self) -> bool {
        self.get("raftGroup").is_some()
    }

    /// The Raft group, or the broker name for a member that did not answer
    /// (`dLegerGroup` defaults to `brokerName`).
    fn group(&self) -> &str {
        self.get("raftGroup").unwrap_or(&self.broker_name)
    }
}

/// `raftStatus`: ask every listed member for its runtime info at once and
/// print a row per Raft member; members that do not answer are rows too.
async fn raft_status(
    admin: Arc<Admin>,
    cluster: Option<String>,
    broker: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let info = admin.cluster_info().await?;
    let names: Vec<String> = match (&broker, &cluster) {
        (Some(b), _) => info
            .broker_addr_table
            .iter()
            .filter(|(_, d)| d.broker_addrs.values().any(|a| a == b))
            .map(|(n, _)| n.clone())
            .collect(),
        (None, Some(c)) => info
            .cluster_addr_table
            .get(c)
            .ok_or_else(|| {
                anyhow!("cluster `{c}` is not known to the name server (see `clusterList`)")
            })?
            .iter()
            .cloned()
            .collect(),
        (None, None) => info.broker_addr_table.keys().cloned().collect(),
    };
    let mut targets: Vec<(String, i64, String)> = Vec::new();
    for name in &names {
        if let Some(d) = info.broker_addr_table.get(name) {
            for (id, addr) in &d.broker_addrs {
                targets.push((name.clone(), *id, addr.clone()));
            }
        }
    }
    if let (Some(b), true) = (&broker, targets.is_empty()) {
        // Not registered (yet): show what it says about itself.
        targets.push(("-".into(), -1, b.clone()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, _, addr)) in targets.iter().enumerate() {
        let (admin, addr) = (admin.clone(), addr.clone());
        tasks.spawn(async move { (i, admin.runtime_info(&addr).await.ok()) });
    }
    let mut runtimes = vec![None; targets.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, rt) = done?;
        runtimes[i] = rt;
    }
    let mut members: Vec<RaftMember> = targets
        .into_iter()
        .zip(runtimes)
        .map(|((broker_name, broker_id, addr), runtime)| RaftMember {
            broker_name,
            broker_id,
            addr,
            runtime,
        })
        // Brokers that answer without Raft keys are master/slave brokers.
        .filter(|m| m.runtime.is_none() || m.is_raft())
        .collect();
    if !members.iter().any(RaftMember::is_raft) {
        if members.is_empty() {
            let what = match (&broker, &cluster) {
                (Some(b), _) => format!("broker {b} is not a Raft member"),
                (None, Some(c)) => format!("no broker of cluster {c} is a Raft member"),
                (None, None) => "no broker the name server lists is a Raft member".to_string(),
            };
            bail!(
                "{what}: Raft groups are brokers with enableDLegerCommitLog=true \
                 (see `brokerStatus` for master/slave brokers)"
            );
        }
        let addrs: Vec<&str> = members.iter().map(|m| m.addr.as_str()).collect();
        bail!(
            "no Raft member answered; unreachable: {} (is the broker running, and is the \
             address its listenPort?)",
            addrs.join(", ")
        );
    }
    members.sort_by(|a, b| {
        (a.group(), a.get("raftSelfId"), &a.addr).cmp(&(b.group(), b.get("raftSelfId"), &b.addr))
    });
    // Per group, the leader with the highest term: its view of each member.
    let mut leaders: BTreeMap<&str, &RaftMember> = BTreeMap::new();
    for m in members
        .iter()
        .filter(|m| m.get("raftRole") == Some("Leader"))
    {
        let e = leaders.entry(m.group()).or_insert(m);
        if m.num("raftTerm") > e.num("raftTerm") {
            *e = m;
        }
    }
    let peer = |m: &RaftMember, what: &str| -> Option<i64> {
        let leader = leaders.get(m.group())?;
        leader.num(&format!("raftPeer.{}.{what}", m.get("raftSelfId")?))
    };
    let rows: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            json!({
                "brokerName": m.broker_name,
                "brokerId": m.broker_id,
                "addr": m.addr,
                "reachable": m.runtime.is_some(),
                "group": m.get("raftGroup"),
                "selfId": m.get("raftSelfId"),
                "zone": m.get("raftSelfId").and_then(|id| m.get(&format!("raftZone.{id}"))),
                "role": m.get("raftRole").unwrap_or("Unreachable"),
                "term": m.num("raftTerm"),
                "leaderId": m.get("raftLeaderId").filter(|l| !l.is_empty()),
                "lastLogIndex": m.num("raftLastLogIndex"),
                "commitIndex": m.num("raftCommitIndex"),
                "appliedIndex": m.num("raftAppliedIndex"),
                "matchIndex": peer(m, "matchIndex"),
                "lagBytes": peer(m, "lagBytes"),
                "lagSeconds": peer(m, "lagMs").map(|ms| (ms as f64 / 100.0).round() / 10.0),
            })
        })
        .collect();
    // Per group, from any member that answered: each zone's members and
    // whether the group keeps a majority without it (`raftZones`).
    let mut zones: BTreeMap<&str, BTreeMap<String, (Vec<String>, bool)>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.runtime.is_some()) {
        if zones.contains_key(m.group()) {
            continue;
        }
        let rt = m.runtime.as_ref().expect("answered");
        let mut per: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
        for (k, zone) in rt {
            if let Some(id) = k.strip_prefix("raftZone.") {
                per.entry(zone.clone()).or_default().0.push(id.to_string());
            }
        }
        if per.is_empty() {
            continue;
        }
        for (zone, (_, keeps)) in per.iter_mut() {
            *keeps = m.get(&format!("raftZoneLossKeepsMajority.{zone}")) == Some("true");
        }
        zones.insert(m.group(), per);
    }
    if json {
        let zones: BTreeMap<&str, serde_json::Value> = zones
            .iter()
            .map(|(g, per)| {
                let v: BTreeMap<&String, serde_json::Value> = per
                    .iter()
                    .map(|(z, (ids, keeps))| {
                        (z, json!({ "members": ids, "lossKeepsMajority": keeps }))
                    })
                    .collect();
                (*g, json!(v))
            })
            .collect();
        println!("{}", json!({ "members": rows, "zones": zones }));
        return Ok(());
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    };
    let columns = [
        ("#Broker Name", "brokerName"),
        ("#Group", "group"),
        ("#Self", "selfId"),
        ("#Zone", "zone"),
        ("#Addr", "addr"),
        ("#BID", "brokerId"),
        ("#Role", "role"),
        ("#Term", "term"),
        ("#Leader", "leaderId"),
        ("#Last Log", "lastLogIndex"),
        ("#Commit", "commitIndex"),
        ("#Applied", "appliedIndex"),
        ("#Match", "matchIndex"),
        ("#Lag Bytes", "lagBytes"),
        ("#Lag(s)", "lagSeconds"),
    ];
    print_table(
        &columns.map(|c| c.0),
        rows.iter()
            .map(|r| columns.iter().map(|(_, k)| cell(&r[*k])).collect())
            .collect(),
    );
    for (group, per) in &zones {
        let parts: Vec<String> = per
            .iter()
            .map(|(z, (ids, keeps))| {
                let verdict = if *keeps {
                    "keeps writing"
                } else {
                    "STOPS writes"
                };
                format!("{z} ({}): losing it {verdict}", ids.join(" "))
            })
            .collect();
        println!("Raft group {group} zones: {}", parts.join("; "));
    }
    Ok(())
}

/// `transferLeader`: ask the member at `addr`; a member that does not
/// lead names the leader, whose address is looked up and asked instead.
async fn transfer_leader(admin: &Admin, addr: &str, to: &str, json: bool) -> anyhow::Result<()> {
    let mut target = addr.to_string();
    // Each hop follows a member's word on who leads; leadership that keeps
    // moving while we chase it is reported rather than followed forever.
    for _ in 0..4 {
        match admin.raft_transfer_leader(&target, to).await? {
            RaftTransfer::Done {
                group,
                leader_id,
                term,
            } => {
                let leader_addr = find_raft_member(admin, &target, &group, &leader_id).await;
                if json {
                    let v = json!({
                        "group": group,
                        "leaderId": leader_id,
                        "leaderAddr": leader_addr,
                        "term": term,
                        "sentTo": target,
                    });
                    println!("{v}");
                } else {
                    let at = leader_addr.map(|a| format!(" ({a})")).unwrap_or_default();
                    println!(
                        "transferLeader success: {leader_id}{at} leads Raft group {group} in \
                         term {term}"
                    );
                }
                return Ok(());
            }
            RaftTransfer::NotLeader {
                group,
                leader_id: Some(leader),
                remark,
            } => {
                let next = find_raft_member(admin, &target, &group, &leader)
                    .await
                    .ok_or_else(|| {
                        anyhow!(
                            "{remark}\nno broker registered with the name server reports \
                             being {leader} of Raft group {group}; check `meridian admin \
                             raftStatus` and give the leader's address with -b"
                        )
                    })?;
                if next == target {
                    bail!(
                        "{remark}\n(the member at {next} reports being {leader} but refuses as \
                         not the leader; try again in a few seconds)"
                    );
                }
                eprintln!(
                    "{target} is not the leader of Raft group {group}; asking leader {leader} \
                     at {next}"
                );
                target = next;
            }
            RaftTransfer::NotLeader {
                leader_id: None,
                remark,
                ..
            } => bail!("{remark}"),
        }
    }
    bail!("the leadership of the Raft group kept moving while the request followed it; try again")
}

/// The address of member `id` (`n2`) of Raft `group`: among the brokers
/// registered under the same name as the member at `near` (id 0, the
/// master, first), else among all registered brokers, the one whose
/// runtime info says it is `id` of `group`. Retried for a few seconds, as
/// a new leader registers moments after it is elected.
/// Send a leader-only membership action, starting at `addr` and following
/// members' word on who leads; returns the voters after it.
async fn on_raft_leader(
    admin: &Admin,
    addr: &str,
    action: &str,
    id: &str,
    node_addr: Option<&str>,
) -> anyhow::Result<String> {
    let mut target = addr.to_string();
    for _ in 0..4 {
        match admin
            .raft_change_membership(&target, action, id, node_addr)
            .await?
        {
            Ok(voters) => return Ok(voters),
            Err(NotLeader {
                group,
                leader_id: Some(leader),
                ..
            }) => {
                target = find_raft_member(admin, &target, &group, &leader)
                    .await
                    .ok_or_else(|| anyhow!("the leader {leader} of Raft group {group} is not registered with the name server"))?;
            }
            Err(NotLeader { remark, .. }) => bail!("{remark}"),
        }
    }
    bail!("the Raft group's leadership kept moving; try again")
}

fn print_membership(json: bool, what: &str, id: &str, voters: &str) {
    if json {
        println!(
            "{}",
            json!({ "member": id, "voters": voters.split(',').collect::<Vec<_>>() })
        );
    } else {
        println!("{what} success: {id}; voters now {voters}");
    }
}

/// `addRaftMember`: the address to every member the name server lists for
/// the group, then a learner on the leader, then a voter.
async fn add_raft_member(
    admin: &Admin,
    broker: &str,
    id: &str,
    node_addr: &str,
    learner_only: bool,
    json: bool,
) -> anyhow::Result<()> {
    let info = admin.cluster_info().await?;
    let members: Vec<String> = info
        .broker_addr_table
        .values()
        .filter(|d| d.broker_addrs.values().any(|a| a == broker))
        .flat_map(|d| d.broker_addrs.values().cloned())
        .collect();
    if members.is_empty() {
        bail!("broker {broker} is not registered with the name server");
    }
    for m in &members {
        match admin
            .raft_change_membership(m, "addPeer", id, Some(node_addr))
            .await
        {
            Ok(_) => {}
            Err(e) => eprintln!("warning: member {m} did not take the address of {id}: {e}"),
        }
    }
    on_raft_leader(admin, broker, "addLearner", id, Some(node_addr)).await?;
    let voters = if learner_only {
        "(unchanged; added as a learner)".to_string()
    } else {
        on_raft_leader(admin, broker, "promote", id, None).await?
    };
    print_membership(json, "addRaftMember", id, &voters);
    Ok(())
}

async fn find_raft_member(admin: &Admin, near: &str, group: &str, id: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Ok(info) = admin.cluster_info().await {
            let mut names: Vec<&String> = info.broker_addr_table.keys().collect();
            // The member's own broker name first.
            names.sort_by_key(|n| {
                !info.broker_addr_table[*n]
                    .broker_addrs
                    .values()
                    .any(|a| a == near)
            });
            for name in names {
                // BTreeMap order: brokerId 0 first.
                for addr in info.broker_addr_table[name].broker_addrs.values() {
                    let Ok(rt) = admin.runtime_info(addr).await else {
                        continue;
                    };
                    if rt.get("raftGroup").map(String::as_str) == Some(group)
                        && rt.get("raftSelfId").map(String::as_str) == Some(id)
                    {
                        return Some(addr.clone());
                    }
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
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
        // The region it was first stored in and, for a copy relayed from
        // there, its origin queue and offset.
        "region": props.get("MSG_REGION"),
        "origin": props.get("MERIDIAN_ORIGIN"),
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
        (
            "Region",
            prop(&props, "MSG_REGION").unwrap_or("").to_string(),
        ),
        (
            "Origin",
            match prop(&props, "MERIDIAN_ORIGIN") {
                Some(o) => format!("{o} (relayed copy)"),
                None => "stored here first".to_string(),
            },
        ),
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
