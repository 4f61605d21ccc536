//! Headers of name-server requests: broker registration (REGISTER_BROKER
//! 103, UNREGISTER_BROKER 104, QUERY_DATA_VERSION 322, BROKER_HEARTBEAT
//! 904), routes (GET_ROUTEINFO_BY_TOPIC 105, DELETE_TOPIC_IN_NAMESRV 216,
//! REGISTER_TOPIC_IN_NAMESRV 217, GET_TOPICS_BY_CLUSTER 224), write
//! permission (WIPE_/ADD_WRITE_PERM_OF_BROKER) and the KV store (PUT_, GET_,
//! DELETE_KV_CONFIG, GET_KVLIST_BY_NAMESPACE).
//!
//! GET_BROKER_CLUSTER_INFO (106) and GET_ALL_TOPIC_LIST_FROM_NAMESERVER
//! (206) have no header fields.

use crate::header::header;

/// Ext field of a Meridian broker's REGISTER_BROKER in Raft mode: its Raft
/// term. A name server lists a group's master only from the highest term it
/// has seen, so a leader cut off from its group (whose term stays old) is
/// never listed over the new one. RocketMQ's brokers do not send it.
pub const RAFT_TERM_EXT: &str = "meridianRaftTerm";

header! {
    /// REGISTER_BROKER: a broker announces itself and its topics (body:
    /// `RegisterBrokerBody`). Sent every 30 s; it doubles as the heartbeat.
    pub struct RegisterBrokerRequestHeader {
        broker_name: String = "brokerName",
        /// "ip:port" where clients reach the broker.
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        /// "ip:port" of the broker's replication (HA) service.
        ha_server_addr: String = "haServerAddr",
        /// 0 for the master, > 0 for a slave.
        broker_id: i64 = "brokerId",
        /// How long the name server waits for the next registration before
        /// dropping the broker (5.x; absent: the name server's default, 120 s).
        heartbeat_timeout_millis: Option<i64> = "heartbeatTimeoutMillis",
        /// The body is deflate-compressed in RocketMQ's own layout.
        compressed: Option<bool> = "compressed",
        /// CRC32 of the body (4.9+; 0 or absent: not checked).
        body_crc32: Option<i32> = "bodyCrc32",
        /// The broker's region (its `regionId`), listed as the group's
        /// `zoneName` as RocketMQ 5 lists it; absent from older brokers.
        zone_name: Option<String> = "zoneName",
    }
}

header! {
    /// REGISTER_BROKER's answer: what a slave needs to follow its master.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: Option<String> = "haServerAddr",
        master_addr: Option<String> = "masterAddr",
    }
}

header! {
    /// UNREGISTER_BROKER: a broker shuts down cleanly.
    pub struct UnRegisterBrokerRequestHeader {
        broker_name: String = "brokerName",
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        broker_id: i64 = "brokerId",
    }
}

header! {
    /// QUERY_DATA_VERSION: has the name server seen this broker's current
    /// topic table (body: the broker's `DataVersion`)?
    pub struct QueryDataVersionRequestHeader {
        broker_name: String = "brokerName",
        broker_addr: String = "brokerAddr",
        cluster_name: String = "clusterName",
        broker_id: i64 = "brokerId",
    }
}

header! {
    /// QUERY_DATA_VERSION's answer.
    pub struct QueryDataVersionResponseHeader {
        changed: bool = "changed",
    }
}

header! {
    /// BROKER_HEARTBEAT (5.x): a lightweight liveness ping between full
    /// registrations.
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: String = "clusterName",
        broker_addr: String = "brokerAddr",
        broker_name: String = "brokerName",
        broker_id: Option<i64> = "brokerId",
        epoch: Option<i32> = "epoch",
        max_offset: Option<i64> = "maxOffset",
        confirm_offset: Option<i64> = "confirmOffset",
        heartbeat_timeout_mills: Option<i64> = "heartbeatTimeoutMills",
        election_priority: Option<i32> = "electionPriority",
    }
}

header! {
    /// GET_ROUTEINFO_BY_TOPIC: which brokers serve a topic.
    pub struct GetRouteInfoRequestHeader {
        topic: String = "topic",
    }
}

header! {
    /// DELETE_TOPIC_IN_NAMESRV: forget a topic's routes (in one cluster, or
    /// in all).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String = "topic",
        cluster_name: Option<String> = "clusterName",
    }
}

header! {
    /// REGISTER_TOPIC_IN_NAMESRV: add routes for a topic (body: `TopicRouteData`).
    pub struct RegisterTopicRequestHeader {
        topic: String = "topic",
    }
}

header! {
    /// GET_TOPICS_BY_CLUSTER: the topics served by a cluster's brokers.
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String = "cluster",
    }
}

header! {
    /// WIPE_WRITE_PERM_OF_BROKER: stop routing writes to a broker (before
    /// taking it down).
    pub struct WipeWritePermOfBrokerRequestHeader {
        broker_name: String = "brokerName",
    }
}

header! {
    /// WIPE_WRITE_PERM_OF_BROKER's answer.
    pub struct WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: i32 = "wipeTopicCount",
    }
}

header! {
    /// ADD_WRITE_PERM_OF_BROKER: route writes to a broker again.
    pub struct AddWritePermOfBrokerRequestHeader {
        broker_name: String = "brokerName",
    }
}

header! {
    /// ADD_WRITE_PERM_OF_BROKER's answer.
    pub struct AddWritePermOfBrokerResponseHeader {
        add_topic_count: i32 = "addTopicCount",
    }
}

header! {
    /// PUT_KV_CONFIG.
    pub struct PutKVConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
        value: String = "value",
    }
}

header! {
    /// GET_KV_CONFIG.
    pub struct GetKVConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
    }
}

header! {
    /// GET_KV_CONFIG's answer.
    pub struct GetKVConfigResponseHeader {
        value: Option<String> = "value",
    }
}

header! {
    /// DELETE_KV_CONFIG.
    pub struct DeleteKVConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
    }
}

header! {
    /// GET_KVLIST_BY_NAMESPACE (answer body: `KVTable`).
    pub struct GetKVListByNamespaceRequestHeader {
        namespace: String = "namespace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemotingCommand;

    #[test]
    fn register_broker_from_a_java_broker() {
        let cmd = RemotingCommand::request(103)
            .with_ext("brokerName", "broker-a")
            .with_ext("brokerAddr", "10.0.0.1:10911")
            .with_ext("clusterName", "DefaultCluster")
            .with_ext("haServerAddr", "10.0.0.1:10912")
            .with_ext("brokerId", "0")
            .with_ext("heartbeatTimeoutMillis", "120000")
            .with_ext("enableActingMaster", "false")
            .with_ext("compressed", "false")
            .with_ext("bodyCrc32", "-12345");
        let h = RegisterBrokerRequestHeader::parse(&cmd).unwrap();
        assert_eq!(h.broker_id, 0);
        assert_eq!(h.heartbeat_timeout_millis, Some(120_000));
        assert_eq!(h.compressed, Some(false));
        assert_eq!(h.body_crc32, Some(-12345));

        // A 4.x broker sends neither heartbeatTimeoutMillis nor enableActingMaster.
        let mut cmd = cmd;
        cmd.ext_fields.remove("heartbeatTimeoutMillis");
        assert_eq!(
            RegisterBrokerRequestHeader::parse(&cmd)
                .unwrap()
                .heartbeat_timeout_millis,
            None
        );
    }

    #[test]
    fn register_response_leaves_out_absent_addresses() {
        let h = RegisterBrokerResponseHeader {
            ha_server_addr: None,
            master_addr: Some("10.0.0.1:10911".into()),
        };
        let mut cmd = RemotingCommand::response(0, None);
        h.write(&mut cmd);
        assert_eq!(cmd.ext_fields.len(), 1);
        assert_eq!(RegisterBrokerResponseHeader::parse(&cmd).unwrap(), h);
    }
}
