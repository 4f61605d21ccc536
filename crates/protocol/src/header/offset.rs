//! Headers of the offset requests: a consumer group's committed offsets
//! (QUERY_CONSUMER_OFFSET 14, UPDATE_CONSUMER_OFFSET 15) and a queue's
//! bounds (GET_MIN_OFFSET 31, GET_MAX_OFFSET 30, SEARCH_OFFSET_BY_TIMESTAMP
//! 29, GET_EARLIEST_MSG_STORETIME 32).

use crate::header::header;

header! {
    /// QUERY_CONSUMER_OFFSET: where a group stands in a queue.
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        /// Answer 0 instead of QUERY_NOT_FOUND when the group has no offset
        /// (5.x clients; absent means Java's default, true).
        set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
    }
}

header! {
    /// QUERY_CONSUMER_OFFSET's answer.
    pub struct QueryConsumerOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

header! {
    /// UPDATE_CONSUMER_OFFSET: store a group's offset (often oneway).
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        commit_offset: i64 = "commitOffset",
    }
}

header! {
    /// GET_MIN_OFFSET: the first offset still in a queue.
    pub struct GetMinOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
    }
}

header! {
    /// GET_MIN_OFFSET's answer.
    pub struct GetMinOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

header! {
    /// GET_MAX_OFFSET: the offset the next message of a queue will get.
    pub struct GetMaxOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
    }
}

header! {
    /// GET_MAX_OFFSET's answer.
    pub struct GetMaxOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP: the first offset of a queue stored at or
    /// after `timestamp` (milliseconds).
    pub struct SearchOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        timestamp: i64 = "timestamp",
    }
}

header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP's answer.
    pub struct SearchOffsetResponseHeader {
        offset: i64 = "offset",
    }
}

header! {
    /// GET_EARLIEST_MSG_STORETIME: when the oldest message of a queue was stored.
    pub struct GetEarliestMsgStoretimeRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
    }
}

header! {
    /// GET_EARLIEST_MSG_STORETIME's answer, in milliseconds.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        timestamp: i64 = "timestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemotingCommand;

    #[test]
    fn query_offset_roundtrip_and_optional_flag() {
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: "g".into(),
            topic: "t".into(),
            queue_id: 1,
            set_zero_if_not_found: Some(false),
        };
        let mut cmd = RemotingCommand::request(14);
        h.write(&mut cmd);
        assert_eq!(cmd.ext("setZeroIfNotFound"), Some("false"));
        assert_eq!(QueryConsumerOffsetRequestHeader::parse(&cmd).unwrap(), h);
        cmd.ext_fields.remove("setZeroIfNotFound");
        assert_eq!(
            QueryConsumerOffsetRequestHeader::parse(&cmd)
                .unwrap()
                .set_zero_if_not_found,
            None
        );
    }

    #[test]
    fn search_offset_from_go_client_with_capitalised_keys() {
        let cmd = RemotingCommand::request(29)
            .with_ext("Topic", "t")
            .with_ext("QueueId", "3")
            .with_ext("timestamp", "1700000000000");
        let h = SearchOffsetRequestHeader::parse(&cmd).unwrap();
        assert_eq!(
            (h.topic.as_str(), h.queue_id, h.timestamp),
            ("t", 3, 1_700_000_000_000)
        );
    }

    #[test]
    fn update_offset_requires_commit_offset() {
        let cmd = RemotingCommand::request(15)
            .with_ext("consumerGroup", "g")
            .with_ext("topic", "t")
            .with_ext("queueId", "0");
        assert_eq!(
            UpdateConsumerOffsetRequestHeader::parse(&cmd).unwrap_err(),
            crate::ProtocolError::MissingHeader("commitOffset")
        );
    }
}
