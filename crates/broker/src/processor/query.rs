//! Looking messages up: by offset message id (VIEW_MESSAGE_BY_ID) and by
//! key or unique key (QUERY_MESSAGE).

use std::sync::Arc;

use bytes::BytesMut;
use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::query::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use meridian_protocol::RemotingCommand;

use super::{bad_header, error, ok};
use crate::BrokerInner;

type Outcome = Result<RemotingCommand, RemotingCommand>;

/// Most messages one query returns, whatever the client asks.
const MAX_QUERY_RESULTS: usize = 64;

pub fn view_by_id(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = ViewMessageRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    match b.store.read_record(h.offset) {
        Some(record) => Ok(ok(req).with_body(record)),
        None => Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!("can not find message by the offset: {}", h.offset),
        )),
    }
}

pub fn query_by_key(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Outcome {
    let h = QueryMessageRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let max = (h.max_num.max(1) as usize).min(MAX_QUERY_RESULTS);
    let end = if h.end_timestamp <= 0 {
        i64::MAX
    } else {
        h.end_timestamp
    };
    let offsets = b
        .store
        .query_by_key(&h.topic, &h.key, max, h.begin_timestamp, end);
    let mut body = BytesMut::new();
    let mut found = 0;
    for off in offsets {
        if let Some(record) = b.store.read_record(off) {
            body.extend_from_slice(&record);
            found += 1;
        }
    }
    if found == 0 {
        return Err(error(
            req,
            rc::QUERY_NOT_FOUND,
            format!("no message with key {} in topic {}", h.key, h.topic),
        ));
    }
    let mut response = ok(req).with_body(body.freeze());
    QueryMessageResponseHeader {
        index_last_update_timestamp: crate::now_ms(),
        index_last_update_phyoffset: b.store.max_commit_log_offset(),
    }
    .write(&mut response);
    Ok(response)
}
