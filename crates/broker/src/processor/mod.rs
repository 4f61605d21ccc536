//! The remoting requests a broker answers, one file per family, each with
//! the same shape: parse the header, apply, build the response.
//!
//! [`BrokerProcessor`] routes a request by its code. Unknown codes are
//! answered `REQUEST_CODE_NOT_SUPPORTED`, with the reason for codes known
//! clients send (`unsupported.rs`), and the connection stays open.
//!
//! Processors return `Result<response, error response>`: both sides are a
//! `RemotingCommand`, so `?` reads naturally and boxing the error side would
//! only add an allocation.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod assignment;
pub mod client;
pub mod offset;
pub mod pull;
pub mod query;
pub mod raft;
pub mod relay;
pub mod reply;
pub mod send;
pub mod send_back;
pub mod transaction;
pub mod unsupported;

use std::sync::Arc;

use meridian_protocol::codes::{request_code as rc, response_code};
use meridian_protocol::RemotingCommand;
use meridian_remoting::{Connection, Handler, Reply};

use crate::BrokerInner;

pub struct BrokerProcessor {
    broker: Arc<BrokerInner>,
}

impl BrokerProcessor {
    pub fn new(broker: Arc<BrokerInner>) -> Self {
        BrokerProcessor { broker }
    }
}

impl Handler for BrokerProcessor {
    fn handle(&self, conn: &Arc<Connection>, req: RemotingCommand) -> Reply {
        let b = &self.broker;
        let now =
            |r: Result<RemotingCommand, RemotingCommand>| Reply::Now(Some(r.unwrap_or_else(|e| e)));
        // Access control, in front of every handler: a refused request
        // changes nothing.
        if let Some(acl) = &b.acl {
            if let Err(why) = acl.check(conn.peer().ip(), &req) {
                tracing::info!(code = req.code, peer = %conn.peer(), %why, "request refused by ACL");
                return Reply::Now(
                    (!req.is_oneway()).then(|| error(&req, response_code::NO_PERMISSION, why)),
                );
            }
        }
        match req.code {
            rc::SEND_MESSAGE | rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE => {
                send::process(b, conn, req)
            }
            rc::SEND_REPLY_MESSAGE | rc::SEND_REPLY_MESSAGE_V2 => reply::process(b, conn, req),
            rc::PULL_MESSAGE | rc::LITE_PULL_MESSAGE => pull::process(b, req),
            rc::CONSUMER_SEND_MSG_BACK => send_back::process(b, conn, req),
            rc::HEART_BEAT => now(client::heartbeat(b, conn, &req)),
            rc::UNREGISTER_CLIENT => now(client::unregister(b, &req)),
            rc::CHECK_CLIENT_CONFIG => now(client::check_client_config(b, &req)),
            rc::GET_CONSUMER_LIST_BY_GROUP => now(client::consumer_list(b, &req)),
            rc::LOCK_BATCH_MQ => now(client::lock_batch(b, &req)),
            rc::QUERY_ASSIGNMENT => assignment::query(b, req),
            rc::UNLOCK_BATCH_MQ => now(client::unlock_batch(b, &req)),
            rc::QUERY_CONSUMER_OFFSET => now(offset::query_consumer_offset(b, &req)),
            rc::UPDATE_CONSUMER_OFFSET => synced(b, offset::update_consumer_offset(b, &req)),
            rc::GET_MAX_OFFSET => now(offset::max_offset(b, &req)),
            rc::GET_MIN_OFFSET => now(offset::min_offset(b, &req)),
            rc::SEARCH_OFFSET_BY_TIMESTAMP => now(offset::search_offset(b, &req)),
            rc::GET_EARLIEST_MSG_STORETIME => now(offset::earliest_store_time(b, &req)),
            rc::VIEW_MESSAGE_BY_ID => now(query::view_by_id(b, &req)),
            rc::QUERY_MESSAGE => now(query::query_by_key(b, &req)),
            rc::UPDATE_AND_CREATE_TOPIC => synced(b, admin::update_topic(b, &req)),
            rc::DELETE_TOPIC_IN_BROKER => synced(b, admin::delete_topic(b, &req)),
            rc::GET_ALL_TOPIC_CONFIG => now(admin::all_topic_config(b, &req)),
            rc::GET_ALL_CONSUMER_OFFSET => {
                Reply::Now(Some(ok(&req).with_body(b.offsets.to_json())))
            }
            rc::GET_ALL_DELAY_OFFSET => Reply::Now(Some(ok(&req).with_body(b.delay.to_json()))),
            rc::GET_BROKER_RUNTIME_INFO => now(admin::runtime_info(b, &req)),
            rc::GET_TOPIC_STATS_INFO => now(admin::topic_stats(b, &req)),
            rc::GET_CONSUME_STATS => now(admin::consume_stats(b, &req)),
            rc::QUERY_TOPIC_CONSUME_BY_WHO => now(admin::consumed_by_who(b, &req)),
            rc::GET_CONSUMER_CONNECTION_LIST => now(admin::consumer_connections(b, &req)),
            rc::GET_PRODUCER_CONNECTION_LIST => now(admin::producer_connections(b, &req)),
            rc::GET_CONSUMER_RUNNING_INFO => admin::consumer_running_info(b, req),
            rc::CONSUME_MESSAGE_DIRECTLY => admin::consume_message_directly(b, req),
            rc::VIEW_BROKER_STATS_DATA => now(admin::broker_stats_data(b, &req)),
            rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                synced(b, admin::update_subscription_group(b, &req))
            }
            rc::DELETE_SUBSCRIPTIONGROUP => synced(b, admin::delete_subscription_group(b, &req)),
            rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => now(admin::all_subscription_groups(b, &req)),
            rc::INVOKE_BROKER_TO_RESET_OFFSET => synced(b, admin::reset_offset(b, &req)),
            rc::GET_BROKER_CONFIG => now(admin::broker_config(b, &req)),
            rc::UPDATE_BROKER_CONFIG => now(admin::update_broker_config(b, &req)),
            rc::RAFT_TRANSFER_LEADER => raft::transfer_leader(b, req),
            rc::RAFT_CHANGE_MEMBERSHIP => raft::change_membership(b, req),
            rc::RELAY_APPEND => relay::append(b, req),
            rc::END_TRANSACTION => transaction::end(b, req),
            rc::RELAY_GET_OFFSETS => now(relay::get_offsets(b, &req)),
            rc::RELAY_PUT_OFFSETS => now(relay::put_offsets(b, &req)),
            code => {
                tracing::debug!(code, peer = %conn.peer(), "request code not supported");
                Reply::Now(Some(unsupported::answer(&req)))
            }
        }
    }

    fn on_close(&self, conn: &Arc<Connection>) {
        for group in self.broker.clients.connection_closed(conn.id()) {
            tracing::info!(group, peer = %conn.peer(), "consumer left (connection closed)");
            self.broker.clients.notify_ids_changed(&group);
        }
    }
}

/// An error response with `code` and a remark; the `Err` side of every
/// processor's result.
pub fn error(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    req.response_to(code, Some(remark.into()))
}

/// A header that does not parse is the client's mistake: say which field.
pub fn bad_header(req: &RemotingCommand, e: meridian_protocol::ProtocolError) -> RemotingCommand {
    error(
        req,
        response_code::SYSTEM_ERROR,
        format!("invalid request header: {e}"),
    )
}

/// The response to a write that stored nothing (or, for a flush timeout,
/// whose durability is unknown): the same code and remark for every
/// request that writes.
pub fn write_failed(req: &RemotingCommand, e: crate::WriteError) -> RemotingCommand {
    use crate::WriteError;
    use meridian_store::PutError;
    match e {
        WriteError::NotLeader(why) => error(req, response_code::SERVICE_NOT_AVAILABLE, why),
        WriteError::Busy(why) => error(req, response_code::SYSTEM_BUSY, why),
        WriteError::Unknown(why) => error(
            req,
            response_code::FLUSH_SLAVE_TIMEOUT,
            format!("the message may not be stored on a majority of the Raft group: {why}"),
        ),
        WriteError::Put(PutError::FlushTimeout(_)) => error(
            req,
            response_code::FLUSH_DISK_TIMEOUT,
            "the message is stored but was not flushed to disk in time",
        ),
        WriteError::Put(PutError::MessageIllegal(why)) => {
            error(req, response_code::MESSAGE_ILLEGAL, why)
        }
        WriteError::Put(PutError::DiskFull) => error(
            req,
            response_code::SERVICE_NOT_AVAILABLE,
            "the broker's disk is full; messages are refused until space is freed",
        ),
        WriteError::Put(PutError::ServiceNotAvailable(why)) => {
            error(req, response_code::SERVICE_NOT_AVAILABLE, why)
        }
        WriteError::Put(e @ PutError::QueueOffsetMismatch { .. }) => {
            error(req, response_code::SYSTEM_ERROR, e.to_string())
        }
        WriteError::Put(PutError::Io(e)) => {
            tracing::error!(error = %e, "store write failed");
            error(
                req,
                response_code::SYSTEM_ERROR,
                format!("store write failed: {e}"),
            )
        }
    }
}

/// Answer `outcome`; on a Raft leader only once the topic, subscription
/// group and offset changes it made are committed through the Raft log
/// (see `raft_state`), so an answered change survives a change of leader.
fn synced(b: &Arc<BrokerInner>, outcome: Result<RemotingCommand, RemotingCommand>) -> Reply {
    let resp = match outcome {
        Ok(resp) => resp,
        Err(e) => return Reply::Now(Some(e)),
    };
    let Some(state) = b.raft_state.clone() else {
        return Reply::Now(Some(resp));
    };
    if b.is_slave() {
        return Reply::Now(Some(resp));
    }
    let b = b.clone();
    reply_when_done(async move {
        match state.sync(&b).await {
            Ok(()) => resp,
            Err(why) => {
                let mut resp = resp;
                resp.code = response_code::SYSTEM_ERROR;
                resp.remark = Some(format!(
                    "changed on this broker but not committed through the Raft group: {why}"
                ));
                resp
            }
        }
    })
}

/// Answer with `fut`: at once if it is already done (a write that needed no
/// waiting), else once it is.
pub fn reply_when_done(
    fut: impl std::future::Future<Output = RemotingCommand> + Send + 'static,
) -> Reply {
    let mut fut = Box::pin(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => Reply::Now(Some(r)),
        std::task::Poll::Pending => Reply::Later(Box::pin(async move { Some(fut.await) })),
    }
}

pub fn ok(req: &RemotingCommand) -> RemotingCommand {
    req.response_to(response_code::SUCCESS, None)
}

pub fn json_ok<T: serde::Serialize>(
    req: &RemotingCommand,
    body: &T,
) -> Result<RemotingCommand, RemotingCommand> {
    serde_json::to_vec(body)
        .map(|bytes| ok(req).with_body(bytes))
        .map_err(|e| {
            error(
                req,
                response_code::SYSTEM_ERROR,
                format!("cannot encode response: {e}"),
            )
        })
}
