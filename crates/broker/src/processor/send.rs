//! SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE.
//!
//! The append to the commit log happens here, on the connection's reading
//! task, so the sends of one connection are stored in the order they were
//! sent. Under SYNC_FLUSH only the wait for the group commit is left for
//! later.

use std::sync::Arc;

use meridian_protocol::body::perm;
use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::send::{SendMessageRequestHeader, SendMessageResponseHeader};
use meridian_protocol::message::{
    decode_batch, decode_properties, encode_properties, find_property, property, set_property,
};
use meridian_protocol::RemotingCommand;
use meridian_remoting::{Connection, Reply};
use meridian_store::{PutError, PutMessage};

use super::{bad_header, error, reply_when_done, write_failed};
use crate::topics::{self, RETRY_GROUP_TOPIC_PREFIX, SCHEDULE_TOPIC};
use crate::{BrokerInner, Stored, WriteError};

pub fn process(b: &Arc<BrokerInner>, conn: &Arc<Connection>, req: RemotingCommand) -> Reply {
    match prepare(b, conn, &req) {
        Err(response) => Reply::Now(Some(response)),
        Ok((queue_id, msgs)) => {
            let counted = Counted::of(&msgs);
            // The write is handed over now, on the connection's reading
            // task, in arrival order; only the wait is left pending.
            let written = b.write(msgs);
            let region = b.config.region_id.clone();
            let b = Arc::clone(b);
            reply_when_done(async move {
                let written = written.await;
                if written.is_ok() {
                    counted.add_to(&b);
                }
                respond(&region, &req, queue_id, written)
            })
        }
    }
}

/// What a send counts as in the metrics: the producer's topic, RocketMQ
/// 5's message type, how many messages and body bytes; and, for a message
/// sent back past its reconsume limit, the group whose dead-letter topic
/// it went to.
pub(super) struct Counted {
    topic: String,
    message_type: &'static str,
    messages: u64,
    bytes: u64,
    dead_letter_of: Option<String>,
}

impl Counted {
    pub(super) fn of(msgs: &[PutMessage]) -> Counted {
        let Some(first) = msgs.first() else {
            return Counted {
                topic: String::new(),
                message_type: "Normal",
                messages: 0,
                bytes: 0,
                dead_letter_of: None,
            };
        };
        let real = || {
            find_property(&first.properties, property::REAL_TOPIC)
                .unwrap_or(&first.topic)
                .to_string()
        };
        let (topic, message_type) = match first.topic.as_str() {
            crate::transaction::HALF_TOPIC => (real(), "Transaction"),
            SCHEDULE_TOPIC | crate::timer::TIMER_TOPIC => (real(), "Delay"),
            t => (t.to_string(), "Normal"),
        };
        let dead_letter_of = topic
            .strip_prefix(topics::DLQ_GROUP_TOPIC_PREFIX)
            .map(str::to_string);
        // A dead letter counts under the topic it was first sent to.
        let topic = match (
            &dead_letter_of,
            find_property(&first.properties, property::RETRY_TOPIC),
        ) {
            (Some(_), Some(original)) => original.to_string(),
            _ => topic,
        };
        Counted {
            topic,
            message_type,
            messages: msgs.len() as u64,
            bytes: msgs.iter().map(|m| m.body.len() as u64).sum(),
            dead_letter_of,
        }
    }

    pub(super) fn add_to(&self, b: &BrokerInner) {
        match &self.dead_letter_of {
            Some(group) => b.metrics.dead_lettered(group, &self.topic),
            None => b
                .metrics
                .sent(&self.topic, self.message_type, self.messages, self.bytes),
        }
    }
}

/// Check the request and build what to store; `Err` is the response.
pub(super) fn prepare(
    b: &Arc<BrokerInner>,
    conn: &Arc<Connection>,
    req: &RemotingCommand,
) -> Result<(i32, Vec<PutMessage>), RemotingCommand> {
    let h = SendMessageRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    if let Some(why) = b.refuses_writes() {
        return Err(error(req, rc::SERVICE_NOT_AVAILABLE, why));
    }
    if let Some(why) = b.forbids(perm::PERM_WRITE, "sending") {
        return Err(error(req, rc::NO_PERMISSION, why));
    }
    if let Err(e) = topics::validate_topic(&h.topic) {
        return Err(error(req, rc::SYSTEM_ERROR, e));
    }
    let topic_cfg = match b.topics.get(&h.topic) {
        Some(c) => c,
        None => {
            let created = if h.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
                Some(
                    b.topics
                        .ensure(&h.topic, 1, perm::PERM_READ | perm::PERM_WRITE)
                        .0,
                )
            } else if !h.default_topic.is_empty() {
                b.topics
                    .create_in_send(&h.topic, &h.default_topic, h.default_topic_queue_nums, 0)
            } else {
                None
            };
            match created {
                Some(c) => {
                    b.register_soon();
                    c
                }
                None => {
                    return Err(error(
                        req,
                        rc::TOPIC_NOT_EXIST,
                        format!(
                            "topic[{}] not exist, apply first please! (auto-create is off on broker {})",
                            h.topic,
                            b.config.broker_addr()
                        ),
                    ))
                }
            }
        }
    };
    if topic_cfg.perm & perm::PERM_WRITE == 0 {
        return Err(error(
            req,
            rc::NO_PERMISSION,
            format!("the topic[{}] sending message is forbidden", h.topic),
        ));
    }
    let mut queue_id = h.queue_id;
    if queue_id < 0 {
        queue_id =
            (crate::now_ms().unsigned_abs() % topic_cfg.write_queue_nums.max(1) as u64) as i32;
    }
    if queue_id >= topic_cfg.write_queue_nums && queue_id >= topic_cfg.read_queue_nums {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!(
                "request queueId[{}] is illegal, topic {} has {} write queues",
                h.queue_id, h.topic, topic_cfg.write_queue_nums
            ),
        ));
    }
    let max = b.config.store.max_message_size;
    let born_host = conn.peer();
    // As RocketMQ's broker: every message stored here carries the region
    // it was first stored in.
    let region = &b.config.region_id;
    let base = |flag: i32, body: bytes::Bytes, mut properties: String| PutMessage {
        topic: h.topic.clone(),
        queue_id,
        flag,
        body,
        properties: {
            set_property(&mut properties, property::MSG_REGION, region);
            properties
        },
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host,
        store_host: b.store_host,
        reconsume_times: h.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
        at_queue_offset: None,
    };

    if req.code == meridian_protocol::codes::request_code::SEND_BATCH_MESSAGE
        || h.batch == Some(true)
    {
        if req.body.len() > max {
            return Err(too_big(req, req.body.len(), max));
        }
        let items = decode_batch(&req.body).map_err(|e| {
            error(
                req,
                rc::MESSAGE_ILLEGAL,
                format!("the batch body is malformed: {e}"),
            )
        })?;
        if items.is_empty() {
            return Err(error(req, rc::MESSAGE_ILLEGAL, "the batch is empty"));
        }
        let msgs = items
            .into_iter()
            .map(|i| base(i.flag, i.body, i.properties))
            .collect();
        return Ok((queue_id, msgs));
    }

    if req.body.len() > max {
        return Err(too_big(req, req.body.len(), max));
    }
    let properties = h.properties.clone().unwrap_or_default();
    let mut msg = base(h.flag, req.body.clone(), properties);
    // A request of request-reply: its responder addresses the reply to
    // this cluster's reply topic, named by CLUSTER (as RocketMQ's broker
    // stamps it).
    if find_property(&msg.properties, property::MESSAGE_REPLY_TO_CLIENT).is_some()
        && find_property(&msg.properties, property::CLUSTER).is_none()
    {
        set_property(
            &mut msg.properties,
            property::CLUSTER,
            &b.config.broker_cluster_name,
        );
    }

    // A client may send a failed message back by sending it to the retry
    // topic itself; past its reconsume limit it belongs in the dead-letter
    // topic, as with CONSUMER_SEND_MSG_BACK.
    if let Some(group) = h.topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
        let max_times = h
            .max_reconsume_times
            .unwrap_or(b.config.default_max_reconsume_times);
        if msg.reconsume_times > max_times {
            let dlq = topics::dlq_topic(group);
            b.topics.ensure(&dlq, 1, perm::PERM_READ | perm::PERM_WRITE);
            b.register_soon();
            msg.topic = dlq;
            msg.queue_id = 0;
            return Ok((0, vec![msg]));
        }
    }

    if find_property(&msg.properties, property::TRANSACTION_PREPARED)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        make_half(&mut msg);
        return Ok((queue_id, vec![msg]));
    }
    if msg.properties.contains(property::DELAY) {
        schedule_if_delayed(b, &mut msg);
    }
    // A delay level, when there is one, wins over timer properties.
    if msg.topic != SCHEDULE_TOPIC {
        crate::timer::schedule_if_timed(b, &mut msg)
            .map_err(|why| error(req, rc::MESSAGE_ILLEGAL, why))?;
    }
    Ok((queue_id, vec![msg]))
}

/// A transactional message's first phase: stored as a half message,
/// invisible to consumers until END_TRANSACTION commits it (see
/// [`crate::transaction`]).
/// The half topic is one of the broker's system topics (`topics.rs`).
fn make_half(msg: &mut PutMessage) {
    let mut props = decode_properties(&msg.properties);
    props.retain(|(k, _)| k != property::REAL_TOPIC && k != property::REAL_QID);
    props.push((property::REAL_TOPIC.to_string(), msg.topic.clone()));
    props.push((property::REAL_QID.to_string(), msg.queue_id.to_string()));
    msg.properties = encode_properties(&props);
    msg.topic = crate::transaction::HALF_TOPIC.to_string();
    msg.queue_id = 0;
    msg.sys_flag = meridian_protocol::message::sys_flag::reset_transaction_value(
        msg.sys_flag,
        meridian_protocol::message::sys_flag::TRANSACTION_NOT_TYPE,
    );
}

/// A message with a positive DELAY level goes to the schedule topic first,
/// carrying its real topic and queue.
pub fn schedule_if_delayed(b: &BrokerInner, msg: &mut PutMessage) {
    let mut props = decode_properties(&msg.properties);
    let level = props
        .iter()
        .find(|(k, _)| k == property::DELAY)
        .and_then(|(_, v)| v.trim().parse::<i32>().ok())
        .unwrap_or(0);
    if level <= 0 || msg.topic == SCHEDULE_TOPIC {
        return;
    }
    let level = level.min(b.delay.max_level());
    props.retain(|(k, _)| {
        k != property::DELAY && k != property::REAL_TOPIC && k != property::REAL_QID
    });
    props.push((property::DELAY.to_string(), level.to_string()));
    props.push((property::REAL_TOPIC.to_string(), msg.topic.clone()));
    props.push((property::REAL_QID.to_string(), msg.queue_id.to_string()));
    msg.properties = encode_properties(&props);
    msg.topic = SCHEDULE_TOPIC.to_string();
    msg.queue_id = level - 1;
}

fn too_big(req: &RemotingCommand, size: usize, max: usize) -> RemotingCommand {
    error(
        req,
        rc::MESSAGE_ILLEGAL,
        format!("the message body size {size} is over the limit (maxMessageSize = {max} bytes)"),
    )
}

pub(super) fn respond(
    region: &str,
    req: &RemotingCommand,
    queue_id: i32,
    result: Result<Stored, WriteError>,
) -> RemotingCommand {
    let (code, remark, results) = match result {
        Ok(Stored { results, replicas }) => match replicas.shortfall() {
            None => (rc::SUCCESS, None, results),
            Some((code, why)) => (code, Some(why.to_string()), results),
        },
        // Stored, with its place known: the client gets the ids.
        Err(WriteError::Put(PutError::FlushTimeout(r))) => (
            rc::FLUSH_DISK_TIMEOUT,
            Some("the message is stored but was not flushed to disk in time".to_string()),
            vec![r],
        ),
        Err(e) => return write_failed(req, e),
    };
    let Some(first) = results.first() else {
        return error(req, rc::SYSTEM_ERROR, "nothing was stored");
    };
    let msg_id = if results.len() == 1 {
        first.msg_id.clone()
    } else {
        results
            .iter()
            .map(|r| r.msg_id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut response = req.response_to(code, remark);
    SendMessageResponseHeader {
        msg_id,
        queue_id,
        queue_offset: first.queue_offset,
        transaction_id: None,
        batch_uniq_id: None,
    }
    .write(&mut response);
    response.set_ext("MSG_REGION", region);
    response.set_ext("TRACE_ON", "true");
    response
}
