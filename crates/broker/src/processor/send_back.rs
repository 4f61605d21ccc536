//! CONSUMER_SEND_MSG_BACK: a consumer failed a message; store it again for
//! a later retry, or in the dead-letter topic once it has failed too often.
//!
//! The retry goes to `%RETRY%<group>` through the schedule topic with delay
//! level `3 + reconsumeTimes` (10 s, 30 s, 1 m, …) unless the client asked
//! for a level; past `maxReconsumeTimes` (16 by default) it goes to
//! `%DLQ%<group>`. The message keeps its properties — its UNIQ_KEY above
//! all, so the consumer sees the same message id — and records the topic it
//! first came from in `RETRY_TOPIC`.

use std::sync::Arc;

use meridian_protocol::body::perm;
use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::consumer::ConsumerSendMsgBackRequestHeader;
use meridian_protocol::message::{decode_properties, decode_record, property};
use meridian_protocol::RemotingCommand;
use meridian_remoting::{Connection, Reply};
use meridian_store::PutMessage;

use super::send::schedule_if_delayed;
use super::{bad_header, error, ok};
use crate::topics;
use crate::BrokerInner;

pub fn process(b: &Arc<BrokerInner>, _conn: &Arc<Connection>, req: RemotingCommand) -> Reply {
    let msg = match prepare(b, &req) {
        Ok(m) => m,
        Err(r) => return Reply::Now(Some(r)),
    };
    // Acknowledged only once stored as durably as a send would be: the
    // consumer forgets the message when this answers.
    // Counted only when it is dead-lettered (a retry is not a new message).
    let counted = msg
        .topic
        .starts_with(topics::DLQ_GROUP_TOPIC_PREFIX)
        .then(|| super::send::Counted::of(std::slice::from_ref(&msg)));
    let written = b.write(vec![msg]);
    let b = Arc::clone(b);
    Reply::Later(Box::pin(async move {
        Some(match written.await {
            Ok(stored) if stored.is_held() => {
                if let Some(c) = counted {
                    c.add_to(&b);
                }
                ok(&req)
            }
            Ok(stored) => error(
                &req,
                rc::SYSTEM_ERROR,
                format!(
                    "the message for retry is stored on the master but not replicated ({:?}); the consumer should keep it",
                    stored.replicas
                ),
            ),
            Err(e) => error(
                &req,
                rc::SYSTEM_ERROR,
                format!("cannot store the message for retry: {e}"),
            ),
        })
    }))
}

fn prepare(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Result<PutMessage, RemotingCommand> {
    let h = ConsumerSendMsgBackRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    if let Some(why) = b.forbids(perm::PERM_WRITE, "sending") {
        return Err(error(req, rc::NO_PERMISSION, why));
    }
    let record = b.store.read_record(h.offset).ok_or_else(|| {
        error(
            req,
            rc::SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        )
    })?;
    let (m, _) = decode_record(&record).map_err(|e| {
        error(
            req,
            rc::SYSTEM_ERROR,
            format!("stored message unreadable: {e}"),
        )
    })?;

    let mut props = decode_properties(&m.properties);
    let has = |props: &Vec<(String, String)>, k: &str| props.iter().any(|(key, _)| key == k);
    if !has(&props, property::RETRY_TOPIC) {
        props.push((property::RETRY_TOPIC.to_string(), m.topic.clone()));
    }
    if !has(&props, property::ORIGIN_MESSAGE_ID) {
        let origin = h
            .origin_msg_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                meridian_protocol::message_id::create_offset_msg_id(
                    m.store_host,
                    m.commit_log_offset,
                )
            });
        props.push((property::ORIGIN_MESSAGE_ID.to_string(), origin));
    }
    props.retain(|(k, _)| {
        k != property::DELAY && k != property::REAL_TOPIC && k != property::REAL_QID
    });

    // The group's settings (`updateSubGroup`): its retry limit unless the
    // client says its own, and how many retry queues it spreads over.
    let group_cfg = b.subscription_groups.get(&h.group);
    let max_times = h
        .max_reconsume_times
        .filter(|m| *m >= 0)
        .unwrap_or_else(|| {
            group_cfg
                .as_ref()
                .map_or(b.config.default_max_reconsume_times, |g| {
                    g.retry_max_times.clamp(0, i32::MAX as i64) as i32
                })
        });
    let retry_queues = group_cfg.as_ref().map_or(1, |g| g.retry_queue_nums.max(1));
    let reconsume_times = m.reconsume_times;
    let mut delay_level = h.delay_level;
    let (topic, to_dlq) = if reconsume_times >= max_times || delay_level < 0 {
        (topics::dlq_topic(&h.group), true)
    } else {
        if delay_level == 0 {
            delay_level = 3 + reconsume_times;
        }
        (topics::retry_topic(&h.group), false)
    };
    let queues = if to_dlq { 1 } else { retry_queues };
    let (cfg, created) = b
        .topics
        .ensure(&topic, queues, perm::PERM_READ | perm::PERM_WRITE);
    // Spread over the queues the topic has (made before the group's
    // settings changed, it keeps its count).
    let queue_id = if to_dlq {
        0
    } else {
        (crate::now_ms().unsigned_abs() % cfg.write_queue_nums.max(1) as u64) as i32
    };
    if created {
        b.register_soon();
    }
    if to_dlq {
        tracing::info!(group = %h.group, topic = %m.topic, reconsume_times, "message moved to the dead-letter topic");
    } else {
        props.push((property::DELAY.to_string(), delay_level.to_string()));
    }
    let mut msg = crate::store_again(&m, topic, queue_id, &props, b.store_host);
    msg.reconsume_times = reconsume_times + 1;
    msg.prepared_transaction_offset = 0;
    if !to_dlq {
        schedule_if_delayed(b, &mut msg);
    }
    Ok(msg)
}
