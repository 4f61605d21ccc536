//! Statistics bodies keyed by message queue: a group's progress
//! (GET_CONSUME_STATS → [`ConsumeStats`]) and a topic's offsets
//! (GET_TOPIC_STATS_INFO → [`TopicStatsTable`]).
//!
//! Java writes and reads these maps only in fastjson's dialect (queue
//! objects as keys), so on the wire use `to_json_bytes` and
//! `from_json_bytes`; serde gives a standard-JSON form with
//! `[queue, value]` pairs for everything else.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::body::fastjson::{self, mq_map};
use crate::body::lenient;
use crate::body::MessageQueue;
use crate::error::ProtocolError;

/// A consumer group's progress on each queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStats {
    /// Messages consumed per second.
    #[serde(deserialize_with = "lenient::f64")]
    pub consume_tps: f64,
    #[serde(with = "mq_map")]
    pub offset_table: HashMap<MessageQueue, OffsetWrapper>,
}

/// One queue's line of [`ConsumeStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    /// The queue's max offset.
    #[serde(deserialize_with = "lenient::i64")]
    pub broker_offset: i64,
    /// The group's committed offset.
    #[serde(deserialize_with = "lenient::i64")]
    pub consumer_offset: i64,
    /// Store time of the last consumed message (milliseconds).
    #[serde(deserialize_with = "lenient::i64")]
    pub last_timestamp: i64,
}

impl ConsumeStats {
    /// The group's total lag: the sum over queues of broker minus consumer offset.
    pub fn compute_total_diff(&self) -> i64 {
        self.offset_table
            .values()
            .map(|o| o.broker_offset - o.consumer_offset)
            .sum()
    }

    /// The body as Java writes it.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = b"{\"consumeTps\":".to_vec();
        fastjson::write_json(&mut out, &self.consume_tps);
        out.extend_from_slice(b",\"offsetTable\":");
        fastjson::write_mq_map(&mut out, &self.offset_table);
        out.push(b'}');
        out
    }

    /// Reads Java's shape, or the standard-JSON pairs.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        fastjson::from_fastjson_bytes(bytes)
    }
}

/// A topic's offsets on each queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicStatsTable {
    #[serde(with = "mq_map")]
    pub offset_table: HashMap<MessageQueue, TopicOffset>,
}

/// One queue's line of [`TopicStatsTable`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    /// Store time of the newest message (milliseconds).
    #[serde(deserialize_with = "lenient::i64")]
    pub last_update_timestamp: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub max_offset: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub min_offset: i64,
}

impl TopicStatsTable {
    /// The body as Java writes it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_stats_as_java_writes_them() {
        // A 5.x broker's answer, with pullOffset that Meridian does not model.
        let java = br#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"t"}:{"brokerOffset":100,"consumerOffset":90,"lastTimestamp":1700000000000,"pullOffset":95}}}"#;
        let stats = ConsumeStats::from_json_bytes(java).unwrap();
        assert_eq!(stats.consume_tps, 1.5);
        assert_eq!(stats.compute_total_diff(), 10);
        let ours = stats.to_json_bytes();
        assert_eq!(
            std::str::from_utf8(&ours).unwrap(),
            r#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"t"}:{"brokerOffset":100,"consumerOffset":90,"lastTimestamp":1700000000000}}}"#
        );
        assert_eq!(ConsumeStats::from_json_bytes(&ours).unwrap(), stats);
    }

    #[test]
    fn topic_stats_roundtrip_both_forms() {
        let mut t = TopicStatsTable::default();
        t.offset_table.insert(
            MessageQueue::new("t", "b", 3),
            TopicOffset {
                last_update_timestamp: 9,
                max_offset: 8,
                min_offset: 1,
            },
        );
        assert_eq!(
            TopicStatsTable::from_json_bytes(&t.to_json_bytes()).unwrap(),
            t
        );
        let std_json = serde_json::to_vec(&t).unwrap();
        assert_eq!(TopicStatsTable::from_json_bytes(&std_json).unwrap(), t);
    }
}
