//! Headers of administration requests, as mqadmin and the dashboard send
//! them: topics (UPDATE_AND_CREATE_TOPIC 17, DELETE_TOPIC_IN_BROKER 215,
//! GET_TOPIC_CONFIG 351, GET_TOPIC_STATS_INFO 202), groups
//! (GET_CONSUME_STATS 208, QUERY_TOPIC_CONSUME_BY_WHO 300,
//! QUERY_TOPICS_BY_CONSUMER 343, DELETE_SUBSCRIPTIONGROUP 207) and
//! connections (GET_CONSUMER_CONNECTION_LIST 203,
//! GET_PRODUCER_CONNECTION_LIST 204); and Meridian's Raft leadership
//! transfer (RAFT_TRANSFER_LEADER 9001, no RocketMQ counterpart).

use crate::header::header;

/// `topicFilterType` values (Java's `TopicFilterType`).
pub const TOPIC_FILTER_TYPE_SINGLE_TAG: &str = "SINGLE_TAG";
pub const TOPIC_FILTER_TYPE_MULTI_TAG: &str = "MULTI_TAG";

header! {
    /// UPDATE_AND_CREATE_TOPIC: create a topic on a broker, or change it.
    pub struct CreateTopicRequestHeader {
        topic: String = "topic",
        /// The template topic (Java sends "TBW102").
        default_topic: String = "defaultTopic",
        read_queue_nums: i32 = "readQueueNums",
        write_queue_nums: i32 = "writeQueueNums",
        /// `body::perm` bits.
        perm: i32 = "perm",
        /// [`TOPIC_FILTER_TYPE_SINGLE_TAG`] or [`TOPIC_FILTER_TYPE_MULTI_TAG`].
        topic_filter_type: String = "topicFilterType",
        /// Topic sysFlag bits; absent means 0.
        topic_sys_flag: i32 = "topicSysFlag" or 0,
        /// An ordered (FIFO) topic.
        order: bool = "order" or false,
        /// 5.x topic attributes, as "+key=value,+key2=value2".
        attributes: Option<String> = "attributes",
    }
}

header! {
    /// DELETE_TOPIC_IN_BROKER.
    pub struct DeleteTopicRequestHeader {
        topic: String = "topic",
    }
}

header! {
    /// GET_TOPIC_CONFIG (answer body: the `TopicConfig`).
    pub struct GetTopicConfigRequestHeader {
        topic: String = "topic",
    }
}

header! {
    /// GET_CONSUME_STATS: a group's progress per queue (answer body:
    /// `ConsumeStats`), on one topic or on all it subscribes to.
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: Option<String> = "topic",
    }
}

header! {
    /// GET_TOPIC_STATS_INFO: a topic's offsets per queue (answer body:
    /// `TopicStatsTable`).
    pub struct GetTopicStatsInfoRequestHeader {
        topic: String = "topic",
    }
}

header! {
    /// QUERY_TOPIC_CONSUME_BY_WHO: the groups consuming a topic (answer
    /// body: `GroupList`).
    pub struct QueryTopicConsumeByWhoRequestHeader {
        topic: String = "topic",
    }
}

header! {
    /// QUERY_TOPICS_BY_CONSUMER: the topics a group consumes (answer body:
    /// `TopicList`).
    pub struct QueryTopicsByConsumerRequestHeader {
        group: String = "group",
    }
}

header! {
    /// GET_CONSUMER_CONNECTION_LIST: a group's connected clients (answer
    /// body: `ConsumerConnection`).
    pub struct GetConsumerConnectionListRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

header! {
    /// GET_PRODUCER_CONNECTION_LIST: a producer group's connected clients
    /// (answer body: `ProducerConnection`).
    pub struct GetProducerConnectionListRequestHeader {
        producer_group: String = "producerGroup",
    }
}

header! {
    /// DELETE_SUBSCRIPTIONGROUP.
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: String = "groupName",
        /// Also delete the group's stored offsets.
        clean_offset: bool = "cleanOffset" or false,
    }
}

header! {
    /// RAFT_TRANSFER_LEADER (Meridian only): ask a Raft member to hand the
    /// leadership of its group to member `toNodeId`. Only the leader acts
    /// on it; other members answer with [`RaftTransferLeaderResponseHeader`]
    /// naming the leader they know of.
    pub struct RaftTransferLeaderRequestHeader {
        /// The member to lead, as in `dLegerSelfId` (`n2`).
        to_node_id: String = "toNodeId",
    }
}

header! {
    /// RAFT_CHANGE_MEMBERSHIP (Meridian only): `addPeer` tells a member
    /// where member `nodeId` listens (`addr`); `addLearner` (leader only)
    /// adds it as a learner and answers once it holds the whole log;
    /// `promote` (leader only) makes a learner a voter; `remove` (leader
    /// only) takes a member out. A member that does not lead answers the
    /// leader-only actions with [`RaftTransferLeaderResponseHeader`] naming
    /// the leader.
    pub struct RaftChangeMembershipRequestHeader {
        action: String = "action",
        /// The member, as in `dLegerSelfId` (`n3`).
        node_id: String = "nodeId",
        /// Its Raft address (`host:port`).
        addr: Option<String> = "addr",
    }
}

header! {
    /// The answer to RAFT_TRANSFER_LEADER, on success and on refusal.
    pub struct RaftTransferLeaderResponseHeader {
        /// `dLegerGroup` of the member that answered.
        raft_group: Option<String> = "raftGroup",
        /// The leader the answering member knows of (`n1`), absent when it
        /// knows none: after SUCCESS the new leader; on a member that does
        /// not lead (SERVICE_NOT_AVAILABLE), where to send the request.
        leader_id: Option<String> = "leaderId",
        /// The answering member's Raft term.
        term: Option<i64> = "raftTerm",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemotingCommand;

    #[test]
    fn create_topic_as_mqadmin_sends_it() {
        let cmd = RemotingCommand::request(17)
            .with_ext("topic", "orders")
            .with_ext("defaultTopic", "TBW102")
            .with_ext("readQueueNums", "8")
            .with_ext("writeQueueNums", "8")
            .with_ext("perm", "6")
            .with_ext("topicFilterType", "SINGLE_TAG")
            .with_ext("topicSysFlag", "0")
            .with_ext("order", "false")
            .with_ext("force", "false");
        let h = CreateTopicRequestHeader::parse(&cmd).unwrap();
        assert_eq!((h.read_queue_nums, h.write_queue_nums, h.perm), (8, 8, 6));
        assert_eq!(h.topic_sys_flag, 0);
        assert!(!h.order);
        assert_eq!(h.attributes, None);
        let mut again = RemotingCommand::request(17);
        h.write(&mut again);
        assert_eq!(CreateTopicRequestHeader::parse(&again).unwrap(), h);
    }

    #[test]
    fn consume_stats_topic_is_optional() {
        let cmd = RemotingCommand::request(208).with_ext("consumerGroup", "g");
        let h = GetConsumeStatsRequestHeader::parse(&cmd).unwrap();
        assert_eq!(h.topic, None);
    }

    #[test]
    fn raft_transfer_leader_round_trip() {
        let mut cmd = RemotingCommand::request(crate::codes::request_code::RAFT_TRANSFER_LEADER);
        RaftTransferLeaderRequestHeader {
            to_node_id: "n2".into(),
        }
        .write(&mut cmd);
        assert_eq!(cmd.ext("toNodeId"), Some("n2"));
        let h = RaftTransferLeaderRequestHeader::parse(&cmd).unwrap();
        assert_eq!(h.to_node_id, "n2");
        assert!(RaftTransferLeaderRequestHeader::parse(&RemotingCommand::request(9001)).is_err());
        let r = RaftTransferLeaderResponseHeader::parse(&RemotingCommand::request(0)).unwrap();
        assert_eq!(r, RaftTransferLeaderResponseHeader::default());
    }
}
