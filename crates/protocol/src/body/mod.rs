//! JSON bodies of admin, routing and group-management commands.
//!
//! Each type is a serde struct with Java's field names (camelCase), read
//! forgivingly — missing fields take Java's defaults, unknown fields are
//! ignored, numbers may come as strings, nulls as defaults, enums as names
//! or ordinals — and written in the shape Java writes (fields in fastjson's
//! alphabetical order). Types with maps keyed by message queue also have
//! `to_json_bytes`/`from_json_bytes` for fastjson's non-standard shape,
//! which is the only one Java reads for them.
//!
//! - [`heartbeat`] has HEART_BEAT's body (groups and subscriptions).
//! - [`route`] has topic routes and the cluster map.
//! - [`topic`] has topic configs, the registered topic table, topic lists
//!   and [`perm`].
//! - [`queue`] has [`MessageQueue`] and queue locking.
//! - [`assignment`] has QUERY_ASSIGNMENT's bodies (queues the broker
//!   assigns to a consumer).
//! - [`consumer`] has group members, connections, offset resets, time spans.
//! - [`stats`] has consume and topic statistics.
//! - [`kv`] has [`KVTable`].
//! - [`fastjson`] reads fastjson's dialect ([`parse_fastjson`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ProtocolError;

pub mod assignment;
pub mod consumer;
pub mod fastjson;
pub mod heartbeat;
pub mod kv;
pub(crate) mod lenient;
pub mod queue;
pub mod relay;
pub mod route;
pub mod stats;
pub mod subscription;
pub mod topic;

pub use assignment::{
    MessageQueueAssignment, MessageRequestMode, QueryAssignmentRequestBody,
    QueryAssignmentResponseBody,
};
pub use consumer::{
    Connection, ConsumerConnection, GetConsumerListByGroupResponseBody, GroupList,
    ProducerConnection, QueryConsumeTimeSpanBody, QueueTimeSpan, ResetOffsetBody,
};
pub use fastjson::parse_fastjson;
pub use heartbeat::{
    CheckClientRequestBody, ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData,
    MessageModel, ProducerData, SubscriptionData,
};
pub use kv::KVTable;
pub use queue::{
    LockBatchRequestBody, LockBatchResponseBody, MessageQueue, UnlockBatchRequestBody,
};
pub use route::{BrokerData, ClusterInfo, QueueData, TopicRouteData};
pub use stats::{ConsumeStats, OffsetWrapper, TopicOffset, TopicStatsTable};
pub use subscription::{SubscriptionGroupConfig, SubscriptionGroupWrapper};
pub use topic::{
    perm, DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, TopicList,
};

/// Reads a JSON body: standard JSON, or, failing that, fastjson's dialect
/// (unquoted numeric keys, as in routes from older Java name servers, and
/// object keys). Use this for bodies from Java peers.
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(standard) => {
            let value = parse_fastjson(bytes)
                .map_err(|_| ProtocolError::InvalidBody(standard.to_string()))?;
            serde_json::from_value(value).map_err(|e| ProtocolError::InvalidBody(e.to_string()))
        }
    }
}

/// Writes a body as standard JSON.
pub fn encode_body<T: Serialize>(body: &T) -> Result<Vec<u8>, ProtocolError> {
    serde_json::to_vec(body).map_err(|e| ProtocolError::Unencodable(format!("JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_body_reports_what_is_wrong() {
        let err = decode_body::<TopicList>(b"{\"topicList\":").unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidBody(_)));
        let err = decode_body::<TopicList>(b"{\"topicList\":5}").unwrap_err();
        assert!(err.to_string().contains("invalid body"), "{err}");
        assert!(decode_body::<TopicList>(b"garbage\xff").is_err());
    }
}
