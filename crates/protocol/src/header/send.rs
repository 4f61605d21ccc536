//! Headers of SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE
//! (320) and the reply variants (324, 325), and of their responses.
//!
//! The Java client sends SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE with the
//! same fields under one-letter names ("a" to "n", Java's
//! `SendMessageRequestHeaderV2`) to save bytes on every message. Some
//! clients (older rocketmq-client-go) send SEND_BATCH_MESSAGE with the long
//! names instead, so `parse` falls back to the other naming when the one the
//! code calls for is missing.

use crate::codes::request_code;
use crate::command::RemotingCommand;
use crate::error::ProtocolError;
use crate::header::{header, FieldValue};

/// The default topic name the Java client names in `defaultTopic`: the
/// template a broker with auto-create enabled copies for a new topic.
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";

/// A send request's header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendMessageRequestHeader {
    pub producer_group: String,
    pub topic: String,
    /// The template topic for auto-creation ([`AUTO_CREATE_TOPIC_KEY_TOPIC`]).
    pub default_topic: String,
    /// Queues an auto-created topic gets.
    pub default_topic_queue_nums: i32,
    pub queue_id: i32,
    /// Message sysFlag bits (compression, transaction type, batch).
    pub sys_flag: i32,
    pub born_timestamp: i64,
    /// The message's user flag.
    pub flag: i32,
    /// Message properties, each `name\u{1}value\u{2}`.
    pub properties: Option<String>,
    /// Set on retries sent back by consumers (`%RETRY%` topics).
    pub reconsume_times: Option<i32>,
    pub unit_mode: Option<bool>,
    pub batch: Option<bool>,
    /// A consumer's own retry limit, for messages sent back to a retry topic.
    pub max_reconsume_times: Option<i32>,
    /// The broker the client meant (the `bname` of 5.x clients).
    pub broker_name: Option<String>,
}

/// Java field names: (long name of SEND_MESSAGE, short name of V2).
const NAMES: [(&str, &str); 14] = [
    ("producerGroup", "a"),
    ("topic", "b"),
    ("defaultTopic", "c"),
    ("defaultTopicQueueNums", "d"),
    ("queueId", "e"),
    ("sysFlag", "f"),
    ("bornTimestamp", "g"),
    ("flag", "h"),
    ("properties", "i"),
    ("reconsumeTimes", "j"),
    ("unitMode", "k"),
    ("maxReconsumeTimes", "l"),
    ("batch", "m"),
    ("bname", "n"),
];

impl SendMessageRequestHeader {
    /// Reads the header of any send request: short names for
    /// SEND_MESSAGE_V2, SEND_BATCH_MESSAGE and SEND_REPLY_MESSAGE_V2, long
    /// names otherwise, each falling back to the other when its
    /// producer-group field is absent.
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, ProtocolError> {
        let short_first = matches!(
            cmd.code,
            request_code::SEND_MESSAGE_V2
                | request_code::SEND_BATCH_MESSAGE
                | request_code::SEND_REPLY_MESSAGE_V2
        );
        let has = |short: bool| {
            let key = if short { NAMES[0].1 } else { NAMES[0].0 };
            cmd.ext(key).is_some()
        };
        let short = if has(short_first) {
            short_first
        } else if has(!short_first) {
            !short_first
        } else {
            short_first
        };
        Self::parse_with(cmd, short)
    }

    fn parse_with(cmd: &RemotingCommand, short: bool) -> Result<Self, ProtocolError> {
        let k = |i: usize| if short { NAMES[i].1 } else { NAMES[i].0 };
        Ok(SendMessageRequestHeader {
            producer_group: FieldValue::read(cmd, k(0))?,
            topic: FieldValue::read(cmd, k(1))?,
            default_topic: FieldValue::read(cmd, k(2))?,
            default_topic_queue_nums: FieldValue::read(cmd, k(3))?,
            queue_id: FieldValue::read(cmd, k(4))?,
            sys_flag: FieldValue::read(cmd, k(5))?,
            born_timestamp: FieldValue::read(cmd, k(6))?,
            flag: FieldValue::read(cmd, k(7))?,
            properties: FieldValue::read(cmd, k(8))?,
            reconsume_times: FieldValue::read(cmd, k(9))?,
            unit_mode: FieldValue::read(cmd, k(10))?,
            max_reconsume_times: FieldValue::read(cmd, k(11))?,
            batch: FieldValue::read(cmd, k(12))?,
            broker_name: FieldValue::read(cmd, k(13))?,
        })
    }

    /// Writes the long-name form that goes with SEND_MESSAGE.
    pub fn write(&self, cmd: &mut RemotingCommand) {
        self.write_with(cmd, false);
    }

    /// Writes the one-letter form that goes with SEND_MESSAGE_V2 and
    /// SEND_BATCH_MESSAGE (what the Java client sends).
    pub fn write_v2(&self, cmd: &mut RemotingCommand) {
        self.write_with(cmd, true);
    }

    fn write_with(&self, cmd: &mut RemotingCommand, short: bool) {
        let k = |i: usize| if short { NAMES[i].1 } else { NAMES[i].0 };
        self.producer_group.write(cmd, k(0));
        self.topic.write(cmd, k(1));
        self.default_topic.write(cmd, k(2));
        self.default_topic_queue_nums.write(cmd, k(3));
        self.queue_id.write(cmd, k(4));
        self.sys_flag.write(cmd, k(5));
        self.born_timestamp.write(cmd, k(6));
        self.flag.write(cmd, k(7));
        self.properties.write(cmd, k(8));
        self.reconsume_times.write(cmd, k(9));
        self.unit_mode.write(cmd, k(10));
        self.max_reconsume_times.write(cmd, k(11));
        self.batch.write(cmd, k(12));
        self.broker_name.write(cmd, k(13));
    }
}

header! {
    /// The header of a successful send's response.
    pub struct SendMessageResponseHeader {
        /// The offset message ID (broker address + commit-log offset), hex.
        msg_id: String = "msgId",
        queue_id: i32 = "queueId",
        queue_offset: i64 = "queueOffset",
        transaction_id: Option<String> = "transactionId",
        /// The unique IDs of a batch's messages, comma-separated.
        batch_uniq_id: Option<String> = "batchUniqId",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: "pg".into(),
            topic: "TopicTest".into(),
            default_topic: AUTO_CREATE_TOPIC_KEY_TOPIC.into(),
            default_topic_queue_nums: 4,
            queue_id: 2,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: Some("KEYS\u{1}k1\u{2}".into()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: None,
            max_reconsume_times: None,
            broker_name: Some("broker-a".into()),
        }
    }

    #[test]
    fn parses_what_the_java_client_sends_as_v2() {
        // As the Java client writes it: only non-null fields, one-letter names.
        let cmd = RemotingCommand::request(request_code::SEND_MESSAGE_V2)
            .with_ext("a", "please_rename_unique_group_name")
            .with_ext("b", "TopicTest")
            .with_ext("c", "TBW102")
            .with_ext("d", "4")
            .with_ext("e", "1")
            .with_ext("f", "0")
            .with_ext("g", "1700000000123")
            .with_ext("h", "0")
            .with_ext(
                "i",
                "UNIQ_KEY\u{1}AC11000100002A9F0000000000000000\u{2}WAIT\u{1}true\u{2}",
            )
            .with_ext("j", "0")
            .with_ext("k", "false")
            .with_ext("m", "false")
            .with_ext("n", "broker-a");
        let h = SendMessageRequestHeader::parse(&cmd).unwrap();
        assert_eq!(h.producer_group, "please_rename_unique_group_name");
        assert_eq!(h.topic, "TopicTest");
        assert_eq!(h.default_topic_queue_nums, 4);
        assert_eq!(h.queue_id, 1);
        assert_eq!(h.born_timestamp, 1_700_000_000_123);
        assert_eq!(h.unit_mode, Some(false));
        assert_eq!(h.batch, Some(false));
        assert_eq!(h.max_reconsume_times, None);
        assert_eq!(h.broker_name.as_deref(), Some("broker-a"));
        assert!(h.properties.unwrap().starts_with("UNIQ_KEY\u{1}"));
    }

    #[test]
    fn v1_and_v2_roundtrip() {
        let h = sample();
        let mut v1 = RemotingCommand::request(request_code::SEND_MESSAGE);
        h.write(&mut v1);
        assert_eq!(v1.ext("producerGroup"), Some("pg"));
        assert_eq!(v1.ext("bname"), Some("broker-a"));
        assert_eq!(v1.ext("batch"), None);
        assert_eq!(SendMessageRequestHeader::parse(&v1).unwrap(), h);

        let mut v2 = RemotingCommand::request(request_code::SEND_MESSAGE_V2);
        h.write_v2(&mut v2);
        assert_eq!(v2.ext("a"), Some("pg"));
        assert_eq!(v2.ext("g"), Some("1700000000000"));
        assert_eq!(v2.ext("producerGroup"), None);
        assert_eq!(SendMessageRequestHeader::parse(&v2).unwrap(), h);
    }

    #[test]
    fn batch_with_long_names_is_accepted() {
        // Older rocketmq-client-go sends SEND_BATCH_MESSAGE with long names.
        let mut cmd = RemotingCommand::request(request_code::SEND_BATCH_MESSAGE);
        sample().write(&mut cmd);
        assert_eq!(SendMessageRequestHeader::parse(&cmd).unwrap(), sample());
        // And SEND_MESSAGE with short names.
        let mut cmd = RemotingCommand::request(request_code::SEND_MESSAGE);
        sample().write_v2(&mut cmd);
        assert_eq!(SendMessageRequestHeader::parse(&cmd).unwrap(), sample());
    }

    #[test]
    fn missing_required_field_is_named() {
        let mut cmd = RemotingCommand::request(request_code::SEND_MESSAGE_V2);
        sample().write_v2(&mut cmd);
        cmd.ext_fields.remove("b");
        assert_eq!(
            SendMessageRequestHeader::parse(&cmd).unwrap_err(),
            ProtocolError::MissingHeader("b")
        );
    }

    #[test]
    fn response_header_roundtrip() {
        let h = SendMessageResponseHeader {
            msg_id: "0A0000010000271F0000000000000000".into(),
            queue_id: 3,
            queue_offset: 99,
            transaction_id: None,
            batch_uniq_id: None,
        };
        let mut cmd = RemotingCommand::response(0, None);
        h.write(&mut cmd);
        assert_eq!(cmd.ext_fields.len(), 3);
        assert_eq!(SendMessageResponseHeader::parse(&cmd).unwrap(), h);
    }
}
