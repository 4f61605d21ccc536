//! QUERY_ASSIGNMENT: a consumer that leaves rebalancing to the broker (the
//! Java push consumer with `clientRebalance=false`, clustering and not
//! orderly) asks which queues of a topic are its own.
//!
//! The queues are the topic's readable queues on every broker group, as
//! the name servers route them to clients (a consumer asks one broker for
//! the whole topic, as with RocketMQ); the members are the group's clients
//! connected to this broker, sorted. Each member's share comes from the
//! strategy it names (`allocate.rs`), so the members' shares are disjoint
//! and cover every queue. Every queue is read in PULL mode: Meridian has
//! no POP consumption, so SET_MESSAGE_REQUEST_MODE is not served. A topic
//! that does not exist is TOPIC_NOT_EXIST, except a retry topic, which
//! gets no queues (see `assign`).

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::body::{
    decode_body, encode_body, perm, MessageModel, MessageQueue, MessageQueueAssignment,
    MessageRequestMode, QueryAssignmentRequestBody, QueryAssignmentResponseBody, TopicRouteData,
};
use meridian_protocol::codes::{request_code, response_code as rc};
use meridian_protocol::header::namesrv::GetRouteInfoRequestHeader;
use meridian_protocol::RemotingCommand;
use meridian_remoting::Reply;

use super::{error, ok, reply_when_done};
use crate::allocate;
use crate::topics::RETRY_GROUP_TOPIC_PREFIX;
use crate::BrokerInner;

/// How long one name server may take to answer a route look-up.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn query(b: &Arc<BrokerInner>, req: RemotingCommand) -> Reply {
    let body: QueryAssignmentRequestBody = match decode_body(&req.body) {
        Ok(body) => body,
        Err(e) => {
            return Reply::Now(Some(error(
                &req,
                rc::SYSTEM_ERROR,
                format!("invalid QUERY_ASSIGNMENT body: {e}"),
            )))
        }
    };
    let b = b.clone();
    reply_when_done(async move { assign(&b, &req, body).await.unwrap_or_else(|e| e) })
}

async fn assign(
    b: &BrokerInner,
    req: &RemotingCommand,
    body: QueryAssignmentRequestBody,
) -> Result<RemotingCommand, RemotingCommand> {
    if body.topic.is_empty() || body.consumer_group.is_empty() {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            "QUERY_ASSIGNMENT names no topic or no consumer group",
        ));
    }
    let strategy_name = match body.strategy_name.as_str() {
        "" => allocate::AVG,
        name => name,
    };
    let Some(strategy) = allocate::strategy(strategy_name) else {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!(
                "the broker does not allocate queues with strategy `{strategy_name}`; it serves {} and {}. Use one of them, or clientRebalance=true to allocate in the client",
                allocate::AVG,
                allocate::AVG_BY_CIRCLE
            ),
        ));
    };
    let queues = match readable_queues(b, &body.topic).await {
        Ok(queues) => queues,
        // A push consumer reading in PULL mode also subscribes its POP
        // retry topic (`%RETRY%<group>_<topic>`), which exists only once
        // POP is used, and its own retry topic may not be routed yet: no
        // queues for now, rather than an error that would make the client
        // rebalance every second.
        Err((rc::TOPIC_NOT_EXIST, _)) if body.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) => {
            Vec::new()
        }
        Err((code, why)) => return Err(error(req, code, why)),
    };
    let assigned = match body.message_model {
        MessageModel::Broadcasting => queues,
        MessageModel::Clustering => {
            let members = b
                .clients
                .consumer_ids(&body.consumer_group)
                .unwrap_or_default();
            let Some(index) = members.iter().position(|c| *c == body.client_id) else {
                return Err(error(
                    req,
                    rc::SYSTEM_ERROR,
                    format!(
                        "client `{}` is not a live member of consumer group `{}` on the broker[{}]: it gets queues once its heartbeat has arrived",
                        body.client_id,
                        body.consumer_group,
                        b.config.broker_addr()
                    ),
                ));
            };
            strategy(&queues, &members, index)
        }
    };
    let answer = QueryAssignmentResponseBody {
        message_queue_assignments: assigned
            .into_iter()
            .map(|message_queue| MessageQueueAssignment {
                message_queue,
                mode: MessageRequestMode::Pull,
                ..Default::default()
            })
            .collect(),
    };
    encode_body(&answer)
        .map(|bytes| ok(req).with_body(bytes))
        .map_err(|e| error(req, rc::SYSTEM_ERROR, e.to_string()))
}

/// Every readable queue of `topic` in the cluster, sorted as RocketMQ
/// sorts them (topic, broker, queue id), from the first name server that
/// answers; this broker's own topic config when it has no name server.
async fn readable_queues(b: &BrokerInner, topic: &str) -> Result<Vec<MessageQueue>, (i32, String)> {
    let c = &b.config;
    if c.namesrv_addrs.is_empty() {
        let Some(t) = b.topics.get(topic) else {
            return Err(not_exist(topic));
        };
        let readable = t.perm & perm::PERM_READ != 0;
        return Ok((0..if readable { t.read_queue_nums } else { 0 })
            .map(|q| MessageQueue::new(topic, &c.broker_name, q))
            .collect());
    }
    let mut failures = Vec::new();
    for addr in &c.namesrv_addrs {
        let mut ask = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC);
        GetRouteInfoRequestHeader {
            topic: topic.to_string(),
        }
        .write(&mut ask);
        match b.namesrv_client.invoke(addr, ask, ROUTE_TIMEOUT).await {
            Ok(r) if r.code == rc::SUCCESS => {
                let route: TopicRouteData = decode_body(&r.body).map_err(|e| {
                    (
                        rc::SYSTEM_ERROR,
                        format!("the route of topic {topic} from name server {addr} does not parse: {e}"),
                    )
                })?;
                let mut queues: Vec<MessageQueue> = route
                    .queue_datas
                    .iter()
                    .filter(|qd| qd.perm & perm::PERM_READ != 0)
                    .flat_map(|qd| {
                        (0..qd.read_queue_nums.max(0))
                            .map(|q| MessageQueue::new(topic, &qd.broker_name, q))
                    })
                    .collect();
                queues.sort();
                return Ok(queues);
            }
            Ok(r) if r.code == rc::TOPIC_NOT_EXIST => return Err(not_exist(topic)),
            Ok(r) => failures.push(format!(
                "{addr}: code {} {}",
                r.code,
                r.remark.unwrap_or_default()
            )),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err((
        rc::SYSTEM_ERROR,
        format!(
            "cannot read the route of topic {topic} from any name server ({})",
            failures.join("; ")
        ),
    ))
}

fn not_exist(topic: &str) -> (i32, String) {
    (
        rc::TOPIC_NOT_EXIST,
        format!("topic {topic} does not exist in this cluster: create it (updateTopic) or check its name"),
    )
}
