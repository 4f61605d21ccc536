//! QUERY_ASSIGNMENT (400): a consumer that leaves rebalancing to the
//! broker (Java 5.x `clientRebalance=false`) asks which queues of a topic
//! are its own; the answer lists them, each with the way it is to be read
//! (PULL, or POP, which Meridian does not serve).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::body::heartbeat::MessageModel;
use crate::body::lenient::{self, java_enum};
use crate::body::MessageQueue;

java_enum! {
    /// How a consumer reads an assigned queue (`MessageRequestMode`).
    pub enum MessageRequestMode {
        /// Ordinary pulls with offsets the consumer commits.
        Pull = "PULL",
        /// POP consumption (RocketMQ 5): the broker keeps the offsets.
        Pop = "POP",
    }
    default Pull
}

/// QUERY_ASSIGNMENT's body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryAssignmentRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub consumer_group: String,
    pub message_model: MessageModel,
    /// The client's `AllocateMessageQueueStrategy.getName()`: `AVG`,
    /// `AVG_BY_CIRCLE`, …
    #[serde(deserialize_with = "lenient::string")]
    pub strategy_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

/// One assigned queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueueAssignment {
    #[serde(
        deserialize_with = "lenient::null_default",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub attachments: HashMap<String, String>,
    pub message_queue: MessageQueue,
    pub mode: MessageRequestMode,
}

/// QUERY_ASSIGNMENT's answer: the queues assigned to the asking client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryAssignmentResponseBody {
    #[serde(deserialize_with = "lenient::null_default")]
    pub message_queue_assignments: Vec<MessageQueueAssignment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_java_sends_and_writes_what_java_reads() {
        let java = br#"{"clientId":"10.0.0.1@1","consumerGroup":"g","messageModel":"CLUSTERING","strategyName":"AVG","topic":"T"}"#;
        let body: QueryAssignmentRequestBody = crate::body::decode_body(java).unwrap();
        assert_eq!(body.client_id, "10.0.0.1@1");
        assert_eq!(body.message_model, MessageModel::Clustering);
        assert_eq!(body.strategy_name, "AVG");
        let answer = QueryAssignmentResponseBody {
            message_queue_assignments: vec![MessageQueueAssignment {
                attachments: HashMap::new(),
                message_queue: MessageQueue::new("T", "broker-a", 3),
                mode: MessageRequestMode::Pull,
            }],
        };
        assert_eq!(
            String::from_utf8(crate::body::encode_body(&answer).unwrap()).unwrap(),
            r#"{"messageQueueAssignments":[{"messageQueue":{"brokerName":"broker-a","queueId":3,"topic":"T"},"mode":"PULL"}]}"#
        );
    }
}
