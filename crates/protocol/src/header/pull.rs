//! Headers of PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361), and of their
//! responses, plus the bits of the pull request's `sysFlag`.

use crate::header::header;

header! {
    /// A pull request's header.
    pub struct PullMessageRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        /// The consume-queue offset to read from.
        queue_offset: i64 = "queueOffset",
        max_msg_nums: i32 = "maxMsgNums",
        /// [`pull_sys_flag`] bits.
        sys_flag: i32 = "sysFlag",
        /// The consumer's committed offset, piggybacked to save a round trip
        /// (when [`pull_sys_flag::COMMIT_OFFSET`] is set).
        commit_offset: i64 = "commitOffset",
        /// How long the broker may hold the request when there is nothing
        /// new (long polling), when [`pull_sys_flag::SUSPEND`] is set.
        suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        /// The subscription expression (a tag expression like "TagA || TagB",
        /// or SQL92) when [`pull_sys_flag::SUBSCRIPTION`] is set.
        subscription: Option<String> = "subscription",
        /// The version of the subscription the consumer pulls with.
        sub_version: i64 = "subVersion",
        /// "TAG" or "SQL92"; absent means TAG.
        expression_type: Option<String> = "expressionType",
        max_msg_bytes: Option<i32> = "maxMsgBytes",
        /// The broker the client meant (`bname`, sent by 5.x clients).
        broker_name: Option<String> = "bname",
    }
}

header! {
    /// A pull response's header (on FOUND, NOT_FOUND, RETRY and OFFSET_MOVED).
    pub struct PullMessageResponseHeader {
        /// Which broker of the group to pull from next: 0 the master, or a
        /// slave's id when the master is falling behind on memory.
        suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        next_begin_offset: i64 = "nextBeginOffset",
        min_offset: i64 = "minOffset",
        max_offset: i64 = "maxOffset",
    }
}

/// Bits of [`PullMessageRequestHeader::sys_flag`] (Java's `PullSysFlag`).
pub mod pull_sys_flag {
    /// `commit_offset` carries the consumer's committed offset.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// The broker may hold the request until messages arrive.
    pub const SUSPEND: i32 = 0x1 << 1;
    /// `subscription` carries the subscription expression.
    pub const SUBSCRIPTION: i32 = 0x1 << 2;
    /// Class filter mode (filter servers, removed in RocketMQ 5).
    pub const CLASS_FILTER: i32 = 0x1 << 3;
    /// Sent by the lite pull consumer.
    pub const LITE_PULL_MESSAGE: i32 = 0x1 << 4;

    /// The flag for the given options.
    pub fn build(
        commit_offset: bool,
        suspend: bool,
        subscription: bool,
        class_filter: bool,
    ) -> i32 {
        let mut flag = 0;
        if commit_offset {
            flag |= COMMIT_OFFSET;
        }
        if suspend {
            flag |= SUSPEND;
        }
        if subscription {
            flag |= SUBSCRIPTION;
        }
        if class_filter {
            flag |= CLASS_FILTER;
        }
        flag
    }

    pub fn has_commit_offset(flag: i32) -> bool {
        flag & COMMIT_OFFSET != 0
    }

    pub fn has_suspend(flag: i32) -> bool {
        flag & SUSPEND != 0
    }

    pub fn has_subscription(flag: i32) -> bool {
        flag & SUBSCRIPTION != 0
    }

    pub fn has_class_filter(flag: i32) -> bool {
        flag & CLASS_FILTER != 0
    }

    pub fn has_lite_pull(flag: i32) -> bool {
        flag & LITE_PULL_MESSAGE != 0
    }

    /// The flag without COMMIT_OFFSET: what a broker does when a slave
    /// serves the pull and must not store the consumer's offset.
    pub fn clear_commit_offset(flag: i32) -> i32 {
        flag & !COMMIT_OFFSET
    }

    /// The flag without SUSPEND.
    pub fn clear_suspend(flag: i32) -> i32 {
        flag & !SUSPEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::request_code;
    use crate::RemotingCommand;

    #[test]
    fn parses_a_java_pull_request() {
        let cmd = RemotingCommand::request(request_code::PULL_MESSAGE)
            .with_ext("consumerGroup", "cg")
            .with_ext("topic", "TopicTest")
            .with_ext("queueId", "0")
            .with_ext("queueOffset", "128")
            .with_ext("maxMsgNums", "32")
            .with_ext("sysFlag", "7")
            .with_ext("commitOffset", "120")
            .with_ext("suspendTimeoutMillis", "15000")
            .with_ext("subscription", "*")
            .with_ext("subVersion", "1700000000000")
            .with_ext("expressionType", "TAG")
            .with_ext("bname", "broker-a");
        let h = PullMessageRequestHeader::parse(&cmd).unwrap();
        assert_eq!(h.queue_offset, 128);
        assert_eq!(h.suspend_timeout_millis, 15000);
        assert!(pull_sys_flag::has_commit_offset(h.sys_flag));
        assert!(pull_sys_flag::has_suspend(h.sys_flag));
        assert!(pull_sys_flag::has_subscription(h.sys_flag));
        assert!(!pull_sys_flag::has_class_filter(h.sys_flag));
        assert_eq!(h.max_msg_bytes, None);
        assert_eq!(h.broker_name.as_deref(), Some("broker-a"));

        let mut again = RemotingCommand::request(request_code::PULL_MESSAGE);
        h.write(&mut again);
        assert_eq!(again.ext_fields, cmd.ext_fields);
    }

    #[test]
    fn sys_flag_bits() {
        assert_eq!(pull_sys_flag::build(true, true, true, false), 7);
        assert_eq!(pull_sys_flag::build(false, true, false, true), 10);
        assert_eq!(pull_sys_flag::clear_commit_offset(7), 6);
        assert_eq!(pull_sys_flag::clear_suspend(7), 5);
    }

    #[test]
    fn response_header_roundtrip() {
        let h = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 160,
            min_offset: 0,
            max_offset: 160,
        };
        let mut cmd = RemotingCommand::response(0, None);
        h.write(&mut cmd);
        assert_eq!(PullMessageResponseHeader::parse(&cmd).unwrap(), h);
    }
}
