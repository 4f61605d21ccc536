//! mqadmin's commands that read and write single messages:
//! `queryMsgByUniqueKey`, `queryMsgByOffset`, `sendMessage`,
//! `consumeMessage`, `printMsg`, and the consumer-group offset commands
//! `cloneGroupOffset` and `skipAccumulatedMessage`.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use meridian_client::Admin;
use meridian_protocol::codes::response_code;
use serde_json::json;

use super::{find_by_key, message_json, print_message, print_table};

/// The group these commands pull and send as (RocketMQ's tools use
/// `TOOLS_CONSUMER` / a producer group of their own).
const TOOLS_GROUP: &str = "TOOLS_CONSUMER";

#[derive(Subcommand)]
pub enum MessageCommand {
    /// A message by its unique key (the client's msgId)
    #[command(name = "queryMsgByUniqueKey")]
    QueryMsgByUniqueKey {
        #[arg(short = 'i', long = "msgId")]
        id: String,
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// The message at one offset of one queue
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        #[arg(short = 'i', long = "queueId")]
        queue_id: i32,
        #[arg(short = 'o', long = "offset")]
        offset: i64,
    },
    /// Send one message (to a chosen queue with -b and -i)
    #[command(name = "sendMessage")]
    SendMessage {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'p', long = "body")]
        body: String,
        #[arg(short = 'k', long = "key")]
        key: Option<String>,
        #[arg(short = 'c', long = "tags")]
        tags: Option<String>,
        #[arg(short = 'b', long = "broker")]
        broker_name: Option<String>,
        #[arg(short = 'i', long = "qid", requires = "broker_name")]
        queue_id: Option<i32>,
    },
    /// Read messages of a topic (every queue, or one with -b and -i),
    /// without committing any offset
    #[command(name = "consumeMessage")]
    ConsumeMessage {
        #[arg(short = 't', long = "topic")]
        topic: String,
        #[arg(short = 'b', long = "brokerName")]
        broker_name: Option<String>,
        #[arg(short = 'i', long = "queueId", requires = "broker_name")]
        queue_id: Option<i32>,
        /// First offset to read (default: each queue's first)
        #[arg(short = 'o', long = "offset")]
        offset: Option<i64>,
        /// Most messages to print
        #[arg(short = 'c', long = "MessageNumber", default_value_t = 128)]
        count: usize,
    },
    /// Print every message of a topic stored in a time range (all of them
    /// by default), queue by queue
    #[command(name = "printMsg")]
    PrintMsg {
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Only messages whose tag is one of these (`TagA || TagB`, `*`)
        #[arg(short = 's', long = "subExpression", default_value = "*")]
        sub_expression: String,
        /// From (ms since the epoch, or `yyyy-MM-dd#HH:mm:ss:SSS`)
        #[arg(short = 'b', long = "beginTimestamp")]
        begin: Option<String>,
        /// Until (exclusive)
        #[arg(short = 'e', long = "endTimestamp")]
        end: Option<String>,
        /// Print the bodies (true by default)
        #[arg(short = 'd', long = "printBody", action = clap::ArgAction::Set, default_value_t = true)]
        print_body: bool,
    },
    /// Give a consumer group the offsets another group committed
    #[command(name = "cloneGroupOffset")]
    CloneGroupOffset {
        #[arg(short = 's', long = "srcGroup")]
        src: String,
        #[arg(short = 'd', long = "destGroup")]
        dest: String,
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Move a consumer group past everything stored on a topic
    #[command(name = "skipAccumulatedMessage")]
    SkipAccumulatedMessage {
        #[arg(short = 'g', long = "group")]
        group: String,
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
}

pub async fn run(admin: &Admin, json: bool, cmd: MessageCommand) -> anyhow::Result<()> {
    match cmd {
        MessageCommand::QueryMsgByUniqueKey { id, topic } => {
            let msg = find_by_key(admin, &topic, &id, true)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no message with unique key {id} in topic {topic}"))?;
            print_message(&msg, json)
        }
        MessageCommand::QueryMsgByOffset {
            topic,
            broker_name,
            queue_id,
            offset,
        } => {
            let addr = master_of(admin, &topic, &broker_name).await?;
            let (code, _, msgs) = admin
                .pull(&addr, TOOLS_GROUP, &topic, queue_id, offset, 1)
                .await?;
            match msgs.into_iter().next() {
                Some(m) if code == response_code::SUCCESS => print_message(&m, json),
                _ => bail!("no message at offset {offset} of {topic} queue {queue_id} on {broker_name} (pull answered {code})"),
            }
        }
        MessageCommand::SendMessage {
            topic,
            body,
            key,
            tags,
            broker_name,
            queue_id,
        } => {
            let producer =
                meridian_client::Producer::new(&admin.namesrv_addrs().join(";"), "TOOLS_PRODUCER");
            let msg = meridian_client::producer::Message {
                topic: topic.clone(),
                body: body.into_bytes().into(),
                tags,
                keys: key.into_iter().collect(),
                ..Default::default()
            };
            let r = match (broker_name, queue_id) {
                (Some(b), Some(q)) => {
                    let addr = master_of(admin, &topic, &b).await?;
                    producer.send_to(&addr, &b, q, &msg).await?
                }
                (Some(b), None) => bail!("-b {b} needs -i <queueId>"),
                _ => producer.send(&msg).await?,
            };
            if json {
                println!(
                    "{}",
                    json!({"brokerName": r.broker_name, "queueId": r.queue_id, "sendResult": r.status, "msgId": r.msg_id, "offsetMsgId": r.offset_msg_id, "queueOffset": r.queue_offset})
                );
            } else {
                print_table(
                    &["#Broker Name", "#QID", "#Send Result", "#MsgId"],
                    vec![vec![
                        r.broker_name,
                        r.queue_id.to_string(),
                        r.status.to_string(),
                        r.msg_id,
                    ]],
                );
            }
            Ok(())
        }
        MessageCommand::ConsumeMessage {
            topic,
            broker_name,
            queue_id,
            offset,
            count,
        } => {
            let queues = readable_queues(admin, &topic, broker_name.as_deref(), queue_id).await?;
            if queues.is_empty() {
                bail!("no readable queue of `{topic}` matches");
            }
            let mut printed = Vec::new();
            'queues: for (name, addr, id) in queues {
                let mut next = match offset {
                    Some(o) => o,
                    None => admin.min_offset(&addr, &topic, id).await?,
                };
                loop {
                    let want = (count - printed.len()).min(32) as i32;
                    let (code, after, msgs) = admin
                        .pull(&addr, TOOLS_GROUP, &topic, id, next, want)
                        .await?;
                    if code != response_code::SUCCESS || msgs.is_empty() {
                        break;
                    }
                    for m in msgs {
                        printed.push((name.clone(), m));
                        if printed.len() >= count {
                            break 'queues;
                        }
                    }
                    next = after;
                }
            }
            if json {
                let v: Vec<_> = printed.iter().map(|(_, m)| message_json(m)).collect();
                println!("{}", json!({"topic": topic, "messages": v}));
            } else {
                for (name, m) in &printed {
                    println!(
                        "Broker: {name}  Queue: {}  Offset: {}  MsgId: {}  Body: {}",
                        m.queue_id,
                        m.queue_offset,
                        message_json(m)["msgId"].as_str().unwrap_or_default(),
                        String::from_utf8_lossy(&m.body)
                    );
                }
                println!("{} message(s)", printed.len());
            }
            Ok(())
        }
        MessageCommand::PrintMsg {
            topic,
            sub_expression,
            begin,
            end,
            print_body,
        } => {
            let begin = begin.as_deref().map(super::parse_timestamp).transpose()?;
            let end = end.as_deref().map(super::parse_timestamp).transpose()?;
            let tags: Option<Vec<String>> = (sub_expression.trim() != "*").then(|| {
                sub_expression
                    .split("||")
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            });
            let mut printed = Vec::new();
            for (name, addr, id) in readable_queues(admin, &topic, None, None).await? {
                let addr = addr.as_str();
                let mut next = match begin {
                    Some(t) => admin.search_offset(addr, &topic, id, t).await?,
                    None => admin.min_offset(addr, &topic, id).await?,
                };
                'queue: loop {
                    let (code, after, msgs) =
                        admin.pull(addr, TOOLS_GROUP, &topic, id, next, 32).await?;
                    if code != response_code::SUCCESS || msgs.is_empty() {
                        break;
                    }
                    for m in msgs {
                        if end.is_some_and(|e| m.store_timestamp >= e) {
                            break 'queue;
                        }
                        let tag = m.tags().map(str::to_string);
                        if let Some(want) = &tags {
                            if !tag.as_ref().is_some_and(|t| want.contains(t)) {
                                continue;
                            }
                        }
                        printed.push((name.clone(), m));
                    }
                    next = after;
                }
            }
            if json {
                let v: Vec<_> = printed
                    .iter()
                    .map(|(_, m)| {
                        let mut v = message_json(m);
                        if !print_body {
                            v["body"] = serde_json::Value::Null;
                        }
                        v
                    })
                    .collect();
                println!("{}", json!({"topic": topic, "messages": v}));
            } else {
                for (name, m) in &printed {
                    let body = if print_body {
                        format!(" BODY: {}", String::from_utf8_lossy(&m.body))
                    } else {
                        String::new()
                    };
                    println!(
                        "MSGID: {} BROKER: {name} QUEUE: {} OFFSET: {} TAGS: {}{body}",
                        message_json(m)["msgId"].as_str().unwrap_or_default(),
                        m.queue_id,
                        m.queue_offset,
                        m.tags().unwrap_or(""),
                    );
                }
                println!("{} message(s)", printed.len());
            }
            Ok(())
        }
        MessageCommand::CloneGroupOffset { src, dest, topic } => {
            let mut cloned = 0;
            for (name, addr) in admin.topic_masters(&topic).await? {
                let stats = admin.consume_stats(&addr, &src, Some(&topic)).await?;
                for (mq, w) in stats.offset_table {
                    if w.consumer_offset < 0 {
                        continue;
                    }
                    admin
                        .update_consumer_offset(
                            &addr,
                            &dest,
                            &topic,
                            mq.queue_id,
                            w.consumer_offset,
                        )
                        .await?;
                    cloned += 1;
                    if !json {
                        println!(
                            "{name} queue {}: {} -> {dest}",
                            mq.queue_id, w.consumer_offset
                        );
                    }
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"srcGroup": src, "destGroup": dest, "topic": topic, "queues": cloned})
                );
            } else {
                println!("clone group offset success. srcGroup[{src}], destGroup={dest}, topic[{topic}], {cloned} queue(s)");
            }
            Ok(())
        }
        MessageCommand::SkipAccumulatedMessage { group, topic } => {
            let mut rows = Vec::new();
            for (name, addr) in admin.topic_masters(&topic).await? {
                // A negative time means "the end of each queue".
                for (queue, offset) in admin.reset_offset(&addr, &topic, &group, -1, true).await? {
                    rows.push((name.clone(), queue, offset));
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(b, q, o)| json!({"brokerName": b, "queueId": q, "offset": o}))
                    .collect();
                println!("{}", json!({"group": group, "topic": topic, "offsets": v}));
            } else {
                print_table(
                    &["#brokerName", "#queueId", "#offset"],
                    rows.iter()
                        .map(|(b, q, o)| vec![b.clone(), q.to_string(), o.to_string()])
                        .collect(),
                );
            }
            Ok(())
        }
    }
}

/// The master address of broker group `broker_name`, from `topic`'s route.
async fn master_of(admin: &Admin, topic: &str, broker_name: &str) -> anyhow::Result<String> {
    let route = route_of(admin, topic).await?;
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == broker_name)
        .and_then(|b| b.master_addr())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("broker `{broker_name}` does not serve `{topic}` or has no master"))
}

async fn route_of(
    admin: &Admin,
    topic: &str,
) -> anyhow::Result<meridian_protocol::body::TopicRouteData> {
    admin
        .route(topic)
        .await?
        .ok_or_else(|| anyhow!("no route for topic `{topic}`"))
}

/// `topic`'s readable queues, as (broker name, master address, queue id),
/// of one broker group and one queue when given.
async fn readable_queues(
    admin: &Admin,
    topic: &str,
    broker_name: Option<&str>,
    queue_id: Option<i32>,
) -> anyhow::Result<Vec<(String, String, i32)>> {
    let route = route_of(admin, topic).await?;
    let mut queues = Vec::new();
    for q in &route.queue_datas {
        if broker_name.is_some_and(|b| b != q.broker_name) {
            continue;
        }
        let Some(addr) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.master_addr())
        else {
            continue;
        };
        for id in 0..q.read_queue_nums {
            if queue_id.is_none_or(|want| want == id) {
                queues.push((q.broker_name.clone(), addr.to_string(), id));
            }
        }
    }
    Ok(queues)
}
