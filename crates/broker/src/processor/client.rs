//! Client membership: HEART_BEAT, UNREGISTER_CLIENT,
//! GET_CONSUMER_LIST_BY_GROUP, CHECK_CLIENT_CONFIG, and the queue locks of
//! ordered consumption.

use std::sync::Arc;
use std::time::Instant;

use meridian_protocol::body::{
    decode_body, perm, CheckClientRequestBody, GetConsumerListByGroupResponseBody, HeartbeatData,
    LockBatchRequestBody, LockBatchResponseBody, MessageModel, UnlockBatchRequestBody,
};
use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::consumer::{
    GetConsumerListByGroupRequestHeader, UnregisterClientRequestHeader,
};
use meridian_protocol::RemotingCommand;
use meridian_remoting::Connection;

use super::{bad_header, error, json_ok, ok};
use crate::clients::ClientChannel;
use crate::topics;
use crate::BrokerInner;

type Outcome = Result<RemotingCommand, RemotingCommand>;

/// CHECK_CLIENT_CONFIG: a consumer asks before it starts whether this
/// broker accepts its subscription, so a SQL92 expression that does not
/// parse, or a broker without `enablePropertyFilter`, fails the consumer's
/// start rather than its pulls.
pub fn check_client_config(b: &BrokerInner, req: &RemotingCommand) -> Outcome {
    let body: CheckClientRequestBody = decode_body(&req.body).map_err(|e| {
        error(
            req,
            rc::SYSTEM_ERROR,
            format!("invalid CHECK_CLIENT_CONFIG body: {e}"),
        )
    })?;
    let sub = &body.subscription_data;
    super::pull::compile(b, req, &sub.expression_type, &sub.sub_string)?;
    Ok(ok(req))
}

pub fn heartbeat(b: &Arc<BrokerInner>, conn: &Arc<Connection>, req: &RemotingCommand) -> Outcome {
    let hb: HeartbeatData = serde_json::from_slice(&req.body).map_err(|e| {
        error(
            req,
            rc::SYSTEM_ERROR,
            format!("invalid heartbeat body: {e}"),
        )
    })?;
    let channel = ClientChannel {
        client_id: hb.client_id.clone(),
        conn: conn.clone(),
        language: req.language.clone(),
        version: req.version,
        last_update: Instant::now(),
    };
    for c in &hb.consumer_data_set {
        if c.group_name.is_empty() {
            continue;
        }
        // A clustering group's failed messages come back through its retry
        // topic, which exists from the group's first heartbeat.
        // It gets the group's `retryQueueNums` (`updateSubGroup`).
        if c.message_model == MessageModel::Clustering {
            let queues = b
                .subscription_groups
                .get(&c.group_name)
                .map_or(1, |g| g.retry_queue_nums.max(1));
            let (_, created) = b.topics.ensure(
                &topics::retry_topic(&c.group_name),
                queues,
                perm::PERM_READ | perm::PERM_WRITE,
            );
            if created {
                b.register_soon();
            }
        }
        if b.clients.register_consumer(c, channel.clone()) {
            tracing::info!(group = %c.group_name, client = %hb.client_id, peer = %conn.peer(), "consumer joined");
            b.clients.notify_ids_changed(&c.group_name);
        }
    }
    for p in &hb.producer_data_set {
        if !p.group_name.is_empty() {
            b.clients.register_producer(&p.group_name, channel.clone());
        }
    }
    Ok(ok(req))
}

pub fn unregister(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = UnregisterClientRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    if let Some(g) = h.producer_group.as_deref().filter(|g| !g.is_empty()) {
        b.clients.unregister_producer(g, &h.client_id);
    }
    if let Some(g) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
        if b.clients.unregister_consumer(g, &h.client_id) {
            tracing::info!(group = g, client = %h.client_id, "consumer left");
            b.locks.release_client(g, &h.client_id);
            b.clients.notify_ids_changed(g);
        }
    }
    Ok(ok(req))
}

pub fn consumer_list(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetConsumerListByGroupRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    match b.clients.consumer_ids(&h.consumer_group) {
        Some(ids) if !ids.is_empty() => json_ok(
            req,
            &GetConsumerListByGroupResponseBody {
                consumer_id_list: ids,
            },
        ),
        _ => Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!("no consumer for this group, {}", h.consumer_group),
        )),
    }
}

pub fn lock_batch(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let body: LockBatchRequestBody = serde_json::from_slice(&req.body)
        .map_err(|e| error(req, rc::SYSTEM_ERROR, format!("invalid lock body: {e}")))?;
    let mqs: Vec<_> = body.mq_set.to_vec();
    let held = b
        .locks
        .try_lock_batch(&body.consumer_group, &mqs, &body.client_id);
    json_ok(
        req,
        &LockBatchResponseBody {
            lock_ok_mq_set: held.into_iter().collect(),
        },
    )
}

pub fn unlock_batch(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let body: UnlockBatchRequestBody = serde_json::from_slice(&req.body)
        .map_err(|e| error(req, rc::SYSTEM_ERROR, format!("invalid unlock body: {e}")))?;
    let mqs: Vec<_> = body.mq_set.to_vec();
    b.locks
        .unlock_batch(&body.consumer_group, &mqs, &body.client_id);
    Ok(ok(req))
}
