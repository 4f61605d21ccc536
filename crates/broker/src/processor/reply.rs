//! SEND_REPLY_MESSAGE / SEND_REPLY_MESSAGE_V2: the responder's half of
//! RocketMQ's request-reply.
//!
//! A requester (`producer.request(...)`) sends a message carrying
//! `CORRELATION_ID`, `REPLY_TO_CLIENT` (its client id) and `TTL`; the
//! broker stamps `CLUSTER` on it (see `send.rs`). The responder builds its
//! reply for `<CLUSTER>_REPLY_TOPIC` with the same correlation id and
//! sends it with one of these codes. The broker pushes the reply at once to
//! the requester's connection (PUSH_REPLY_MESSAGE_TO_CLIENT), where the
//! client completes the waiting request, and stores it in the reply topic.
//! A reply whose requester is not connected here is answered SYSTEM_ERROR
//! saying so (as RocketMQ does): the responder learns that nobody heard it.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::codes::{request_code, response_code as rc};
use meridian_protocol::header::send::SendMessageRequestHeader;
use meridian_protocol::message::{find_property, property, set_property};
use meridian_protocol::RemotingCommand;
use meridian_remoting::{Connection, Reply};
use meridian_store::PutMessage;

use super::send::{prepare, respond};
use super::{bad_header, error};
use crate::BrokerInner;

/// How long the requester's client has to take the pushed reply.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

pub fn process(b: &Arc<BrokerInner>, conn: &Arc<Connection>, req: RemotingCommand) -> Reply {
    let h = match SendMessageRequestHeader::parse(&req) {
        Ok(h) => h,
        Err(e) => return Reply::Now(Some(bad_header(&req, e))),
    };
    let (queue_id, mut msgs) = match prepare(b, conn, &req) {
        Ok(ok) => ok,
        Err(response) => return Reply::Now(Some(response)),
    };
    let Some(msg) = msgs.pop().filter(|_| msgs.is_empty()) else {
        return Reply::Now(Some(error(
            &req,
            rc::MESSAGE_ILLEGAL,
            "a reply is one message, not a batch",
        )));
    };
    let b = b.clone();
    Reply::Later(Box::pin(async move {
        let pushed = push(&b, &h, &msg).await;
        let written = b.write(vec![msg]).await;
        Some(match pushed {
            Ok(()) => respond(&b.config.region_id, &req, queue_id, written),
            Err(why) => {
                tracing::warn!(%why, "reply not delivered to its requester");
                error(&req, rc::SYSTEM_ERROR, why)
            }
        })
    }))
}

/// Hand the reply to the requester's connection.
async fn push(
    b: &BrokerInner,
    h: &SendMessageRequestHeader,
    msg: &PutMessage,
) -> Result<(), String> {
    let Some(requester) =
        find_property(&msg.properties, property::MESSAGE_REPLY_TO_CLIENT).filter(|c| !c.is_empty())
    else {
        return Err(format!(
            "the reply carries no {} property: it does not say whom to reply to",
            property::MESSAGE_REPLY_TO_CLIENT
        ));
    };
    let Some(channel) = b.clients.channel_of_client(requester) else {
        return Err(format!(
            "push reply message fail: the requester {requester} is not connected to broker {}",
            b.config.broker_addr()
        ));
    };
    let mut properties = msg.properties.clone();
    set_property(
        &mut properties,
        property::PUSH_REPLY_TIME,
        &crate::now_ms().to_string(),
    );
    let mut push = RemotingCommand::request(request_code::PUSH_REPLY_MESSAGE_TO_CLIENT)
        .with_body(msg.body.clone());
    for (key, value) in [
        ("producerGroup", h.producer_group.clone()),
        ("topic", msg.topic.clone()),
        ("defaultTopic", h.default_topic.clone()),
        (
            "defaultTopicQueueNums",
            h.default_topic_queue_nums.to_string(),
        ),
        ("queueId", msg.queue_id.to_string()),
        ("sysFlag", msg.sys_flag.to_string()),
        ("bornTimestamp", msg.born_timestamp.to_string()),
        ("flag", msg.flag.to_string()),
        ("properties", properties),
        ("reconsumeTimes", msg.reconsume_times.to_string()),
        ("unitMode", h.unit_mode.unwrap_or(false).to_string()),
        ("bornHost", msg.born_host.to_string()),
        ("storeHost", b.config.broker_addr()),
        ("storeTimestamp", crate::now_ms().to_string()),
    ] {
        push.set_ext(key, value);
    }
    match channel.conn.invoke(push, PUSH_TIMEOUT).await {
        Ok(r) if r.code == rc::SUCCESS => Ok(()),
        Ok(r) => Err(format!(
            "push reply message to {requester} fail: the client answered {} {}",
            r.code,
            r.remark.unwrap_or_default()
        )),
        Err(e) => Err(format!("push reply message to {requester} fail: {e}")),
    }
}
