//! Routing bodies served by name servers: a topic's route
//! (GET_ROUTEINFO_BY_TOPIC) and the cluster map (GET_BROKER_CLUSTER_INFO).
//!
//! Java name servers before 4.9.4, and later ones answering old clients,
//! write broker addresses fastjson-style with unquoted numeric keys
//! (`{0:"addr"}`); read such answers with [`crate::body::decode_body`].
//! Meridian writes standard JSON (`{"0":"addr"}`), which every Java client
//! reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::body::lenient;

/// The broker id of a group's master; slaves have ids above it.
pub const MASTER_ID: i64 = 0;

/// Where a topic lives: its queues per broker group, and the brokers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    #[serde(deserialize_with = "lenient::null_default")]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address (unused since RocketMQ 5; always empty).
    #[serde(deserialize_with = "lenient::null_default")]
    pub filter_server_table: HashMap<String, Vec<String>>,
    /// For ordered topics: "brokerName:queueNums;..." from the name server's KV store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(deserialize_with = "lenient::null_default")]
    pub queue_datas: Vec<QueueData>,
}

/// A topic's queues on one broker group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    #[serde(deserialize_with = "lenient::string")]
    pub broker_name: String,
    /// `body::perm` bits.
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
}

/// A broker group: its name, cluster and the address of each member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Addresses by broker id ([`MASTER_ID`] for the master).
    #[serde(deserialize_with = "lenient::null_default")]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(deserialize_with = "lenient::string")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub cluster: String,
    /// RocketMQ 5's acting-master flag. Always written: some clients
    /// (rocketmq-client-rust) refuse a route without it.
    #[serde(deserialize_with = "lenient::bool")]
    pub enable_acting_master: bool,
    /// The group's region (RocketMQ 5's `zoneName`; Meridian's brokers
    /// report their `regionId`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::null_default"
    )]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The master's address, if the group has a live master.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// Every broker group and cluster a name server knows (GET_BROKER_CLUSTER_INFO).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    /// Broker groups by broker name.
    #[serde(deserialize_with = "lenient::null_default")]
    pub broker_addr_table: HashMap<String, BrokerData>,
    /// Broker names by cluster name.
    #[serde(deserialize_with = "lenient::null_default")]
    pub cluster_addr_table: HashMap<String, BTreeSet<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::decode_body;

    const JAVA_ROUTE_FASTJSON: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    #[test]
    fn writes_standard_json_with_quoted_ids() {
        let route: TopicRouteData = decode_body(JAVA_ROUTE_FASTJSON.as_bytes()).unwrap();
        let json = serde_json::to_string(&route).unwrap();
        assert_eq!(
            json,
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        );
        let back: TopicRouteData = serde_json::from_str(&json).unwrap();
        assert_eq!(back, route);
    }

    #[test]
    fn reads_java_fastjson_route() {
        let route: TopicRouteData = decode_body(JAVA_ROUTE_FASTJSON.as_bytes()).unwrap();
        assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
        assert_eq!(
            route.broker_datas[0]
                .broker_addrs
                .get(&1)
                .map(String::as_str),
            Some("10.0.0.2:10911")
        );
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(route.order_topic_conf, None);
        // Standard JSON alone cannot read it.
        assert!(serde_json::from_str::<TopicRouteData>(JAVA_ROUTE_FASTJSON).is_err());
    }

    #[test]
    fn reads_cluster_info() {
        let json = r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911"},"brokerName":"broker-a","cluster":"c"}},"clusterAddrTable":{"c":["broker-a"]}}"#;
        let info: ClusterInfo = decode_body(json.as_bytes()).unwrap();
        assert_eq!(
            info.cluster_addr_table["c"]
                .iter()
                .next()
                .map(String::as_str),
            Some("broker-a")
        );
        assert_eq!(
            info.broker_addr_table["broker-a"].master_addr(),
            Some("10.0.0.1:10911")
        );
    }
}
