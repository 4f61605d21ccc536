//! Headers of consumer-group requests: membership (GET_CONSUMER_LIST_BY_GROUP
//! 38, UNREGISTER_CLIENT 35, NOTIFY_CONSUMER_IDS_CHANGED 40), retries
//! (CONSUMER_SEND_MSG_BACK 36), offset resets (INVOKE_BROKER_TO_RESET_OFFSET
//! 222, RESET_CONSUMER_CLIENT_OFFSET 220) and status (GET_CONSUMER_STATUS_*,
//! GET_CONSUMER_RUNNING_INFO, QUERY_CONSUME_TIME_SPAN).
//!
//! LOCK_BATCH_MQ, UNLOCK_BATCH_MQ and HEART_BEAT have no header fields;
//! their bodies are in [`crate::body`].

use crate::header::header;

header! {
    /// GET_CONSUMER_LIST_BY_GROUP: the client IDs of a group's members.
    pub struct GetConsumerListByGroupRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

header! {
    /// UNREGISTER_CLIENT: a client leaves its producer and/or consumer group.
    pub struct UnregisterClientRequestHeader {
        client_id: String = "clientID",
        producer_group: Option<String> = "producerGroup",
        consumer_group: Option<String> = "consumerGroup",
    }
}

header! {
    /// CONSUMER_SEND_MSG_BACK: a consumer failed to process a message; the
    /// broker stores it again on the group's retry topic (or dead-letter
    /// topic once it has been retried too often).
    pub struct ConsumerSendMsgBackRequestHeader {
        /// The failed message's commit-log offset.
        offset: i64 = "offset",
        /// The consumer group.
        group: String = "group",
        /// 0: the broker picks the delay from the retry count; > 0: that
        /// delay level; -1: straight to the dead-letter topic.
        delay_level: i32 = "delayLevel",
        origin_msg_id: Option<String> = "originMsgId",
        origin_topic: Option<String> = "originTopic",
        unit_mode: bool = "unitMode" or false,
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
    }
}

header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (broker to consumer): rebalance now.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (admin to broker) and
    /// RESET_CONSUMER_CLIENT_OFFSET (broker to consumer, with a
    /// `ResetOffsetBody`): move a group's offsets on a topic back or forward
    /// to `timestamp`.
    pub struct ResetOffsetRequestHeader {
        topic: String = "topic",
        group: String = "group",
        /// Milliseconds; the offsets become those of the first messages
        /// stored at or after it.
        timestamp: i64 = "timestamp",
        /// Also move offsets forward (false: only ever move them back).
        is_force: bool = "isForce" or false,
    }
}

header! {
    /// INVOKE_BROKER_TO_GET_CONSUMER_STATUS (admin to broker) and
    /// GET_CONSUMER_STATUS_FROM_CLIENT (broker to consumer).
    pub struct GetConsumerStatusRequestHeader {
        topic: String = "topic",
        group: String = "group",
        /// Only this client, when given.
        client_addr: Option<String> = "clientAddr",
    }
}

header! {
    /// GET_CONSUMER_RUNNING_INFO (admin to broker, broker to consumer).
    pub struct GetConsumerRunningInfoRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: String = "clientId",
        jstack_enable: bool = "jstackEnable" or false,
    }
}

header! {
    /// CONSUME_MESSAGE_DIRECTLY (admin to broker, broker to consumer): hand
    /// one stored message to one consumer (body, to the consumer: the
    /// stored record).
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: String = "clientId",
        msg_id: String = "msgId",
        broker_name: Option<String> = "brokerName",
        topic: Option<String> = "topic",
    }
}

header! {
    /// QUERY_CONSUME_TIME_SPAN: per queue, the time range of stored messages
    /// and how far the group has consumed.
    pub struct QueryConsumeTimeSpanRequestHeader {
        topic: String = "topic",
        group: String = "group",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemotingCommand;

    #[test]
    fn unregister_uses_java_client_id_key() {
        let h = UnregisterClientRequestHeader {
            client_id: "10.0.0.1@1234".into(),
            producer_group: None,
            consumer_group: Some("cg".into()),
        };
        let mut cmd = RemotingCommand::request(35);
        h.write(&mut cmd);
        assert_eq!(cmd.ext("clientID"), Some("10.0.0.1@1234"));
        assert_eq!(cmd.ext_fields.len(), 2);
        assert_eq!(UnregisterClientRequestHeader::parse(&cmd).unwrap(), h);
    }

    #[test]
    fn send_back_defaults() {
        let cmd = RemotingCommand::request(36)
            .with_ext("offset", "1024")
            .with_ext("group", "cg")
            .with_ext("delayLevel", "0")
            .with_ext("originMsgId", "ABC")
            .with_ext("originTopic", "t");
        let h = ConsumerSendMsgBackRequestHeader::parse(&cmd).unwrap();
        assert!(!h.unit_mode);
        assert_eq!(h.max_reconsume_times, None);
        let mut again = RemotingCommand::request(36);
        h.write(&mut again);
        // Java always writes its primitive unitMode.
        assert_eq!(again.ext("unitMode"), Some("false"));
    }

    #[test]
    fn reset_offset_uses_is_force_key() {
        let h = ResetOffsetRequestHeader {
            topic: "t".into(),
            group: "g".into(),
            timestamp: 5,
            is_force: true,
        };
        let mut cmd = RemotingCommand::request(222);
        h.write(&mut cmd);
        assert_eq!(cmd.ext("isForce"), Some("true"));
        assert_eq!(ResetOffsetRequestHeader::parse(&cmd).unwrap(), h);
    }
}
