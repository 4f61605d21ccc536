//! Offsets: the consumer offsets a group commits, and the queue offsets
//! clients ask for (min, max, by time).

use std::sync::Arc;

use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::offset::{
    GetEarliestMsgStoretimeRequestHeader, GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader,
    QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use meridian_protocol::RemotingCommand;

use super::{bad_header, error, ok};
use crate::BrokerInner;

type Outcome = Result<RemotingCommand, RemotingCommand>;

fn with_offset(req: &RemotingCommand, offset: i64) -> RemotingCommand {
    ok(req).with_ext("offset", offset)
}

pub fn query_consumer_offset(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = QueryConsumerOffsetRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    if let Some(state) = &b.raft_state {
        // A new leader answers with every commit made before its term.
        state.catch_up(b);
    }
    match b.offsets.query(&h.consumer_group, &h.topic, h.queue_id) {
        Some(offset) => Ok(with_offset(req, offset)),
        None if h.set_zero_if_not_found == Some(true) => Ok(with_offset(req, 0)),
        // "Not found" lets the client apply its consume-from-where.
        None => Err(error(
            req,
            rc::QUERY_NOT_FOUND,
            "Not found, maybe this group consumer boot first",
        )),
    }
}

pub fn update_consumer_offset(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = UpdateConsumerOffsetRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    b.offsets
        .commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    Ok(ok(req))
}

pub fn max_offset(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetMaxOffsetRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    Ok(with_offset(
        req,
        b.store.max_offset_in_queue(&h.topic, h.queue_id),
    ))
}

pub fn min_offset(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetMinOffsetRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    Ok(with_offset(
        req,
        b.store.min_offset_in_queue(&h.topic, h.queue_id),
    ))
}

pub fn search_offset(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = SearchOffsetRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    Ok(with_offset(
        req,
        b.store.offset_by_time(&h.topic, h.queue_id, h.timestamp),
    ))
}

pub fn earliest_store_time(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = GetEarliestMsgStoretimeRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    match b.store.earliest_store_time(&h.topic, h.queue_id) {
        Some(t) => Ok(ok(req).with_ext("timestamp", t)),
        None => Err(error(req, rc::SYSTEM_ERROR, "the queue has no message")),
    }
}
