//! Subscription groups: a consumer group's settings on a broker
//! (RocketMQ's `SubscriptionGroupConfig`), the body of
//! UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, and the table GET_ALL_SUBSCRIPTIONGROUP_CONFIG
//! answers (`subscriptionGroup.json` on disk).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DataVersion;

/// One consumer group's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    /// The group may pull at all.
    pub consume_enable: bool,
    /// A new group starts from the queue's first message.
    pub consume_from_min_enable: bool,
    /// The group may consume in broadcast mode.
    pub consume_broadcast_enable: bool,
    /// Queues of the group's retry topic `%RETRY%<group>`.
    pub retry_queue_nums: i32,
    /// Failures before a message goes to `%DLQ%<group>` (a client that
    /// says its own limit in the send-back overrides it).
    pub retry_max_times: i64,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    pub group_sys_flag: i32,
    pub consume_timeout_minute: i32,
}

impl Default for SubscriptionGroupConfig {
    /// RocketMQ's defaults.
    fn default() -> Self {
        SubscriptionGroupConfig {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
        }
    }
}

impl SubscriptionGroupConfig {
    pub fn new(group: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group.into(),
            ..Default::default()
        }
    }
}

/// Every group's settings and the table's version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    pub data_version: DataVersion,
}
