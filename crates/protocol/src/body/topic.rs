//! Topic bodies: a topic's configuration on a broker, the table of them that
//! a broker registers with name servers, and topic lists.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::body::lenient;

/// Permission bits of topics and brokers (Java's `PermName`).
pub mod perm {
    /// Consumers are routed to the topic's queues on this broker
    /// ("priority" in 5.x, rarely used).
    pub const PERM_PRIORITY: i32 = 0x1 << 3;
    /// The queues may be read.
    pub const PERM_READ: i32 = 0x1 << 2;
    /// The queues may be written.
    pub const PERM_WRITE: i32 = 0x1 << 1;
    /// A template topic: auto-created topics copy it (minus this bit).
    pub const PERM_INHERIT: i32 = 0x1;

    pub fn is_readable(perm: i32) -> bool {
        perm & PERM_READ != 0
    }

    pub fn is_writeable(perm: i32) -> bool {
        perm & PERM_WRITE != 0
    }

    pub fn is_inherited(perm: i32) -> bool {
        perm & PERM_INHERIT != 0
    }

    /// "RW-" style, as mqadmin prints it.
    pub fn to_string(perm: i32) -> String {
        let mut s = String::with_capacity(3);
        s.push(if is_readable(perm) { 'R' } else { '-' });
        s.push(if is_writeable(perm) { 'W' } else { '-' });
        s.push(if is_inherited(perm) { 'X' } else { '-' });
        s
    }
}

/// `topicFilterType` of ordinary topics.
pub const SINGLE_TAG: &str = "SINGLE_TAG";

/// A topic's configuration on one broker (Java's `TopicConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// 5.x attributes such as "message.type".
    #[serde(deserialize_with = "lenient::null_default")]
    pub attributes: HashMap<String, String>,
    /// An ordered (FIFO) topic.
    #[serde(deserialize_with = "lenient::bool")]
    pub order: bool,
    /// [`perm`] bits.
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    /// "SINGLE_TAG" or "MULTI_TAG".
    #[serde(deserialize_with = "lenient::string")]
    pub topic_filter_type: String,
    #[serde(deserialize_with = "lenient::string")]
    pub topic_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    /// Java's defaults: 16 read and 16 write queues, read-write, single tag.
    fn default() -> Self {
        TopicConfig {
            attributes: HashMap::new(),
            order: false,
            perm: perm::PERM_READ | perm::PERM_WRITE,
            read_queue_nums: 16,
            topic_filter_type: SINGLE_TAG.to_string(),
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: 16,
        }
    }
}

impl TopicConfig {
    /// A topic with Java's defaults.
    pub fn new(topic_name: impl Into<String>) -> Self {
        TopicConfig {
            topic_name: topic_name.into(),
            ..Default::default()
        }
    }
}

/// Which version of its topic table a broker has; bumped on every change
/// (Java's `DataVersion`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// Java's `AtomicLong`, which fastjson writes as a plain number.
    #[serde(deserialize_with = "lenient::i64")]
    pub counter: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub timestamp: i64,
}

impl DataVersion {
    /// The next version: counter + 1, stamped `now_ms`.
    pub fn next_version(&mut self, now_ms: i64) {
        self.counter += 1;
        self.timestamp = now_ms;
    }
}

/// A broker's topic table with its version (Java's
/// `TopicConfigSerializeWrapper`), as stored in `topics.json` and registered
/// with name servers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub data_version: DataVersion,
    #[serde(deserialize_with = "lenient::null_default")]
    pub topic_config_table: HashMap<String, TopicConfig>,
}

/// REGISTER_BROKER's body, uncompressed form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    #[serde(deserialize_with = "lenient::null_default")]
    pub filter_server_list: Vec<String>,
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

/// A list of topic names (GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
/// GET_TOPICS_BY_CLUSTER, QUERY_TOPICS_BY_CONSUMER, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    #[serde(deserialize_with = "lenient::null_default")]
    pub topic_list: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_java_register_body() {
        // As a 5.x broker writes it, with fields Meridian does not model.
        let json = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1},"topicConfigTable":{"TopicTest":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}},"topicQueueMappingInfoMap":{}}}"#;
        let body: RegisterBrokerBody = serde_json::from_str(json).unwrap();
        let w = &body.topic_config_serialize_wrapper;
        assert_eq!(w.data_version.counter, 3);
        assert_eq!(w.topic_config_table["TopicTest"].read_queue_nums, 4);
    }

    #[test]
    fn missing_topic_fields_take_java_defaults() {
        // A 4.x broker's TopicConfig has no attributes.
        let t: TopicConfig = serde_json::from_str(r#"{"topicName":"t","perm":"7"}"#).unwrap();
        assert_eq!(t.read_queue_nums, 16);
        assert_eq!(t.perm, 7);
        assert!(t.attributes.is_empty());
        assert_eq!(t.topic_filter_type, "SINGLE_TAG");
    }

    #[test]
    fn writes_java_shape() {
        let t = TopicConfig::new("t");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"attributes":{},"order":false,"perm":6,"readQueueNums":16,"topicFilterType":"SINGLE_TAG","topicName":"t","topicSysFlag":0,"writeQueueNums":16}"#
        );
        let list = TopicList {
            broker_addr: None,
            topic_list: ["b".to_string(), "a".to_string()].into(),
        };
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"{"topicList":["a","b"]}"#
        );
    }

    #[test]
    fn perm_bits() {
        assert_eq!(perm::to_string(perm::PERM_READ | perm::PERM_WRITE), "RW-");
        assert_eq!(perm::to_string(7), "RWX");
        assert!(!perm::is_writeable(perm::PERM_READ));
        let mut v = DataVersion::default();
        v.next_version(5);
        assert_eq!((v.counter, v.timestamp), (1, 5));
    }
}
