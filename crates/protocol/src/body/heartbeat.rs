//! The HEART_BEAT body: who a client is, and the producer and consumer
//! groups it belongs to with their subscriptions. Clients send it every 30 s
//! to every broker; brokers learn group membership from it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::body::lenient::{self, java_enum};

/// The subscription expression that matches every message.
pub const SUB_ALL: &str = "*";

/// `expressionType` of tag subscriptions.
pub const EXPRESSION_TYPE_TAG: &str = "TAG";

/// `expressionType` of SQL92 subscriptions.
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

/// A HEART_BEAT request body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// "ip@instance", unique per client process.
    #[serde(
        rename = "clientID",
        alias = "clientId",
        deserialize_with = "lenient::string"
    )]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::null_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    #[serde(deserialize_with = "lenient::null_default")]
    pub producer_data_set: Vec<ProducerData>,
}

/// A producer group the client belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
}

/// A consumer group the client belongs to, and what it subscribes to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
    pub message_model: MessageModel,
    #[serde(deserialize_with = "lenient::null_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(deserialize_with = "lenient::bool")]
    pub unit_mode: bool,
}

/// A CHECK_CLIENT_CONFIG request body: a consumer asks, before it starts,
/// whether the broker accepts one of its subscriptions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckClientRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub group: String,
    pub subscription_data: SubscriptionData,
}

/// One topic subscription of a consumer group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Filter-server class filtering (removed in RocketMQ 5).
    #[serde(deserialize_with = "lenient::bool")]
    pub class_filter_mode: bool,
    /// Hash codes of `tags_set` (Java `String.hashCode`), which is what the
    /// consume queue stores per message.
    #[serde(deserialize_with = "lenient::null_default")]
    pub code_set: BTreeSet<i32>,
    /// [`EXPRESSION_TYPE_TAG`] or [`EXPRESSION_TYPE_SQL92`].
    #[serde(deserialize_with = "lenient::string")]
    pub expression_type: String,
    /// The expression as the user wrote it: "*", "TagA || TagB", or SQL92.
    #[serde(deserialize_with = "lenient::string")]
    pub sub_string: String,
    /// When this subscription was made (milliseconds); pulls carry it so the
    /// broker can tell stale subscriptions.
    #[serde(deserialize_with = "lenient::i64")]
    pub sub_version: i64,
    #[serde(deserialize_with = "lenient::null_default")]
    pub tags_set: BTreeSet<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            code_set: BTreeSet::new(),
            expression_type: EXPRESSION_TYPE_TAG.to_string(),
            sub_string: String::new(),
            sub_version: 0,
            tags_set: BTreeSet::new(),
            topic: String::new(),
        }
    }
}

impl SubscriptionData {
    /// A tag subscription to `topic`, as Java's `FilterAPI` builds it: `"*"`
    /// or an empty expression subscribes to everything, otherwise the tags
    /// are the `||`-separated words of `expression`.
    pub fn by_tags(topic: &str, expression: &str, sub_version: i64) -> Self {
        let mut data = SubscriptionData {
            topic: topic.to_string(),
            sub_version,
            ..Default::default()
        };
        let expression = expression.trim();
        if expression.is_empty() || expression == SUB_ALL {
            data.sub_string = SUB_ALL.to_string();
            return data;
        }
        data.sub_string = expression.to_string();
        for tag in expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            data.code_set.insert(tag_code(tag));
            data.tags_set.insert(tag.to_string());
        }
        data
    }

    /// True when this subscription takes every message of its topic.
    pub fn is_sub_all(&self) -> bool {
        self.sub_string.trim().is_empty() || self.sub_string.trim() == SUB_ALL
    }
}

/// A tag's code as `code_set` holds it: Java's `String.hashCode`, the same
/// value a consume-queue entry stores as its tags code.
fn tag_code(tag: &str) -> i32 {
    // The hash is a Java int; the consume queue widens it to a long.
    crate::message::tags_hash_code(tag) as i32
}

java_enum! {
    /// Pull or push (`ConsumeType`).
    pub enum ConsumeType {
        /// The application pulls (`DefaultMQPullConsumer`, lite pull).
        ConsumeActively = "CONSUME_ACTIVELY" | "PULL",
        /// Messages are pushed to a listener (`DefaultMQPushConsumer`).
        ConsumePassively = "CONSUME_PASSIVELY" | "PUSH",
        /// POP consumption (5.x).
        ConsumePop = "CONSUME_POP" | "POP",
    }
    default ConsumePassively
}

java_enum! {
    /// How a group shares messages (`MessageModel`).
    pub enum MessageModel {
        /// Every member gets every message.
        Broadcasting = "BROADCASTING",
        /// Each message goes to one member.
        Clustering = "CLUSTERING",
    }
    default Clustering
}

java_enum! {
    /// Where a new consumer group starts (`ConsumeFromWhere`), including the
    /// values Java deprecated, which old clients still send.
    pub enum ConsumeFromWhere {
        ConsumeFromLastOffset = "CONSUME_FROM_LAST_OFFSET",
        ConsumeFromLastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        ConsumeFromMinOffset = "CONSUME_FROM_MIN_OFFSET",
        ConsumeFromMaxOffset = "CONSUME_FROM_MAX_OFFSET",
        ConsumeFromFirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        ConsumeFromTimestamp = "CONSUME_FROM_TIMESTAMP",
    }
    default ConsumeFromLastOffset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_java_heartbeat() {
        let json = r#"{"clientID":"10.0.0.5@12345","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"TopicTest"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%cg"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;
        let hb: HeartbeatData = serde_json::from_str(json).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@12345");
        assert_eq!(hb.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
        let c = &hb.consumer_data_set[0];
        assert_eq!(
            c.consume_from_where,
            ConsumeFromWhere::ConsumeFromFirstOffset
        );
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscription_data_set.len(), 2);
        assert_eq!(
            c.subscription_data_set[0].code_set.iter().next(),
            Some(&tag_code("TagA"))
        );
    }

    #[test]
    fn reads_numeric_enums_and_missing_sets() {
        // As C++ clients send it: enums as ordinals, sets left out.
        let json = r#"{"clientID":"c","consumerDataSet":[{"groupName":"g","consumeType":1,"messageModel":0,"consumeFromWhere":"4","subscriptionDataSet":[{"topic":"t","subString":"*"}]}]}"#;
        let hb: HeartbeatData = serde_json::from_str(json).unwrap();
        assert!(hb.producer_data_set.is_empty());
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(
            c.consume_from_where,
            ConsumeFromWhere::ConsumeFromFirstOffset
        );
        let s = &c.subscription_data_set[0];
        assert!(s.tags_set.is_empty() && s.code_set.is_empty());
        assert_eq!(s.expression_type, "TAG");
        assert!(!c.unit_mode);

        let hb: HeartbeatData =
            serde_json::from_str(r#"{"clientID":"c","consumerDataSet":null}"#).unwrap();
        assert!(hb.consumer_data_set.is_empty());
        let c: ConsumerData = serde_json::from_str(
            r#"{"consumeType":"push","messageModel":null,"consumeFromWhere":2}"#,
        )
        .unwrap();
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromMinOffset);
    }

    #[test]
    fn unknown_enum_values_are_errors() {
        assert!(serde_json::from_str::<ConsumerData>(r#"{"consumeType":"SOMETIMES"}"#).is_err());
        assert!(serde_json::from_str::<ConsumerData>(r#"{"messageModel":7}"#).is_err());
        assert!(serde_json::from_str::<ConsumerData>(r#"{"consumeFromWhere":-1}"#).is_err());
    }

    #[test]
    fn writes_java_names_and_shape() {
        let hb = HeartbeatData {
            client_id: "c".into(),
            producer_data_set: vec![ProducerData {
                group_name: "pg".into(),
            }],
            consumer_data_set: vec![ConsumerData {
                group_name: "cg".into(),
                subscription_data_set: vec![SubscriptionData::by_tags("t", "A || B", 7)],
                ..Default::default()
            }],
        };
        let json = serde_json::to_string(&hb).unwrap();
        assert_eq!(
            json,
            r#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[65,66],"expressionType":"TAG","subString":"A || B","subVersion":7,"tagsSet":["A","B"],"topic":"t"}],"unitMode":false}],"producerDataSet":[{"groupName":"pg"}]}"#
        );
        let back: HeartbeatData = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hb);
    }

    #[test]
    fn tag_codes_match_java() {
        // "TagA".hashCode() in Java.
        assert_eq!(tag_code("TagA"), 2_598_919);
        assert_eq!(tag_code(""), 0);
        // Overflow wraps as in Java: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(tag_code("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn subscribe_all() {
        let s = SubscriptionData::by_tags("t", " * ", 0);
        assert_eq!(s.sub_string, "*");
        assert!(s.is_sub_all() && s.tags_set.is_empty());
    }
}
