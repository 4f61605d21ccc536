//! Bodies about consumer groups and client connections: group members
//! (GET_CONSUMER_LIST_BY_GROUP), connections (GET_CONSUMER_CONNECTION_LIST,
//! GET_PRODUCER_CONNECTION_LIST), groups of a topic (QUERY_TOPIC_CONSUME_BY_WHO),
//! offset resets (RESET_CONSUMER_CLIENT_OFFSET) and consume time spans
//! (QUERY_CONSUME_TIME_SPAN).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::body::fastjson::{self, mq_map};
use crate::body::heartbeat::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};
use crate::body::lenient;
use crate::body::MessageQueue;
use crate::error::ProtocolError;

/// GET_CONSUMER_LIST_BY_GROUP's answer: the client IDs of the group's members.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetConsumerListByGroupResponseBody {
    #[serde(deserialize_with = "lenient::null_default")]
    pub consumer_id_list: Vec<String>,
}

/// One client connection of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    #[serde(deserialize_with = "lenient::string")]
    pub client_addr: String,
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    /// The client's `LanguageCode` name.
    #[serde(deserialize_with = "lenient::language")]
    pub language: String,
    /// The client's `MQVersion` ordinal.
    #[serde(deserialize_with = "lenient::i32")]
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    #[serde(deserialize_with = "lenient::null_default")]
    pub connection_set: Vec<Connection>,
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    /// Subscriptions by topic.
    #[serde(deserialize_with = "lenient::null_default")]
    pub subscription_table: HashMap<String, SubscriptionData>,
}

/// GET_PRODUCER_CONNECTION_LIST's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    #[serde(deserialize_with = "lenient::null_default")]
    pub connection_set: Vec<Connection>,
}

/// A set of group names (QUERY_TOPIC_CONSUME_BY_WHO's answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    #[serde(deserialize_with = "lenient::null_default")]
    pub group_list: BTreeSet<String>,
}

/// RESET_CONSUMER_CLIENT_OFFSET's body (and INVOKE_BROKER_TO_RESET_OFFSET's
/// answer): the new offset of each queue.
///
/// Java keys this map by queue, which only fastjson's dialect can write: use
/// [`ResetOffsetBody::to_json_bytes`] and [`ResetOffsetBody::from_json_bytes`]
/// on the wire. Serde gives a standard-JSON form with `[queue, offset]` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResetOffsetBody {
    #[serde(with = "mq_map")]
    pub offset_table: HashMap<MessageQueue, i64>,
}

impl ResetOffsetBody {
    /// The body as Java writes it: `{"offsetTable":{{queue}:offset,...}}`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = b"{\"offsetTable\":".to_vec();
        fastjson::write_mq_map(&mut out, &self.offset_table);
        out.push(b'}');
        out
    }

    /// Reads Java's shape, or the standard-JSON pairs.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        fastjson::from_fastjson_bytes(bytes)
    }
}

/// QUERY_CONSUME_TIME_SPAN's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryConsumeTimeSpanBody {
    #[serde(deserialize_with = "lenient::null_default")]
    pub consume_time_span_set: Vec<QueueTimeSpan>,
}

/// For one queue: the store times of its oldest and newest messages and of
/// the group's next message (milliseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueTimeSpan {
    #[serde(deserialize_with = "lenient::i64")]
    pub consume_time_stamp: i64,
    /// How far the group lags behind the newest message.
    #[serde(deserialize_with = "lenient::i64")]
    pub delay_time: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub max_time_stamp: i64,
    pub message_queue: MessageQueue,
    #[serde(deserialize_with = "lenient::i64")]
    pub min_time_stamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_offset_body_in_fastjson_shape() {
        let mut body = ResetOffsetBody::default();
        body.offset_table.insert(MessageQueue::new("t", "b", 1), 20);
        body.offset_table.insert(MessageQueue::new("t", "b", 0), 10);
        let bytes = body.to_json_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:10,{"brokerName":"b","queueId":1,"topic":"t"}:20}}"#
        );
        assert_eq!(ResetOffsetBody::from_json_bytes(&bytes).unwrap(), body);

        // The standard-JSON pair form reads back too.
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"offsetTable":[[{"brokerName":"b","queueId":0,"topic":"t"},10],[{"brokerName":"b","queueId":1,"topic":"t"},20]]}"#
        );
        assert_eq!(
            ResetOffsetBody::from_json_bytes(json.as_bytes()).unwrap(),
            body
        );
        assert_eq!(
            serde_json::from_str::<ResetOffsetBody>(&json).unwrap(),
            body
        );
    }

    #[test]
    fn bad_queue_keys_are_errors() {
        assert!(ResetOffsetBody::from_json_bytes(br#"{"offsetTable":{"nonsense":1}}"#).is_err());
        assert!(ResetOffsetBody::from_json_bytes(br#"{"offsetTable":[[1]]}"#).is_err());
        assert!(ResetOffsetBody::from_json_bytes(br#"{"offsetTable":7}"#).is_err());
        assert!(ResetOffsetBody::from_json_bytes(br#"{"offsetTable":null}"#)
            .unwrap()
            .offset_table
            .is_empty());
    }

    #[test]
    fn connection_language_as_name_or_number() {
        let c: ConsumerConnection = serde_json::from_str(
            r#"{"connectionSet":[{"clientAddr":"1.2.3.4:5","clientId":"x","language":"JAVA","version":401},{"clientId":"y","language":9}],"consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionTable":{"t":{"topic":"t","subString":"*"}}}"#,
        )
        .unwrap();
        assert_eq!(c.connection_set[0].language, "JAVA");
        assert_eq!(c.connection_set[1].language, "GO");
        assert_eq!(c.subscription_table["t"].sub_string, "*");
    }
}
