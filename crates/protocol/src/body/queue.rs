//! [`MessageQueue`] and the bodies that list queues: LOCK_BATCH_MQ and
//! UNLOCK_BATCH_MQ, with which orderly consumers take exclusive ownership of
//! queues on a broker.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::body::lenient;

/// One queue of a topic on one broker group.
///
/// Fields are declared in fastjson's (alphabetical) order so that a queue
/// used as a map key serializes exactly as Java writes it; ordering is
/// Java's: topic, then broker, then queue id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    #[serde(deserialize_with = "lenient::string")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub queue_id: i32,
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            broker_name: broker_name.into(),
            queue_id,
            topic: topic.into(),
        }
    }
}

impl Ord for MessageQueue {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.topic, &self.broker_name, self.queue_id).cmp(&(
            &other.topic,
            &other.broker_name,
            other.queue_id,
        ))
    }
}

impl PartialOrd for MessageQueue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for MessageQueue {
    /// As Java's `toString`, which appears in RocketMQ logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

/// LOCK_BATCH_MQ's body: lock these queues for this client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub consumer_group: String,
    #[serde(deserialize_with = "lenient::null_default")]
    pub mq_set: Vec<MessageQueue>,
    /// Lock on this broker only, without asking its replicas (5.x).
    #[serde(deserialize_with = "lenient::bool")]
    pub only_this_broker: bool,
}

/// LOCK_BATCH_MQ's answer: the queues now locked by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", deserialize_with = "lenient::null_default")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// UNLOCK_BATCH_MQ's body: release these queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnlockBatchRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub consumer_group: String,
    #[serde(deserialize_with = "lenient::null_default")]
    pub mq_set: Vec<MessageQueue>,
    #[serde(deserialize_with = "lenient::bool")]
    pub only_this_broker: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_body_without_only_this_broker() {
        // 4.x clients do not send onlyThisBroker.
        let json = r#"{"clientId":"10.0.0.5@1","consumerGroup":"cg","mqSet":[{"brokerName":"b","queueId":1,"topic":"t"},{"topic":"t","brokerName":"b","queueId":"2"}]}"#;
        let body: LockBatchRequestBody = serde_json::from_str(json).unwrap();
        assert!(!body.only_this_broker);
        assert_eq!(
            body.mq_set,
            vec![
                MessageQueue::new("t", "b", 1),
                MessageQueue::new("t", "b", 2)
            ]
        );
    }

    #[test]
    fn lock_response_uses_java_name() {
        let body = LockBatchResponseBody {
            lock_ok_mq_set: vec![MessageQueue::new("t", "b", 0)],
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"lockOKMQSet":[{"brokerName":"b","queueId":0,"topic":"t"}]}"#
        );
        assert_eq!(
            serde_json::from_str::<LockBatchResponseBody>(&json).unwrap(),
            body
        );
    }

    #[test]
    fn queues_order_like_java() {
        let mut v = [
            MessageQueue::new("b", "a", 0),
            MessageQueue::new("a", "z", 1),
            MessageQueue::new("a", "z", 0),
        ];
        v.sort();
        assert_eq!(v[0], MessageQueue::new("a", "z", 0));
        assert_eq!(v[2].topic, "b");
        assert_eq!(
            v[0].to_string(),
            "MessageQueue [topic=a, brokerName=z, queueId=0]"
        );
    }
}
