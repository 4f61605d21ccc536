//! Producers and consumers known from their heartbeats.
//!
//! A consumer group's members are the clients that sent a heartbeat naming
//! the group in the last two minutes and whose connection is still open.
//! Whenever membership changes, every member is told with
//! `NOTIFY_CONSUMER_IDS_CHANGED` so that it rebalances at once rather than
//! at its next periodic rebalance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, SubscriptionData,
};
use meridian_protocol::codes::request_code;
use meridian_protocol::RemotingCommand;
use meridian_remoting::Connection;
use parking_lot::RwLock;

/// A client silent for this long is dropped (RocketMQ's channel expiry).
pub const CLIENT_EXPIRY: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct ClientChannel {
    pub client_id: String,
    pub conn: Arc<Connection>,
    pub language: String,
    pub version: i32,
    pub last_update: Instant,
}

#[derive(Clone)]
pub struct ConsumerGroup {
    pub clients: BTreeMap<String, ClientChannel>,
    pub subscriptions: HashMap<String, SubscriptionData>,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub last_update: Instant,
}

#[derive(Default)]
pub struct ClientManager {
    consumers: RwLock<HashMap<String, ConsumerGroup>>,
    producers: RwLock<HashMap<String, BTreeMap<String, ClientChannel>>>,
}

impl ClientManager {
    /// Record a consumer heartbeat. Returns true when the group's members
    /// changed (a new client), so they must be told.
    pub fn register_consumer(&self, data: &ConsumerData, channel: ClientChannel) -> bool {
        let mut groups = self.consumers.write();
        let group = groups
            .entry(data.group_name.clone())
            .or_insert_with(|| ConsumerGroup {
                clients: BTreeMap::new(),
                subscriptions: HashMap::new(),
                consume_type: data.consume_type,
                message_model: data.message_model,
                consume_from_where: data.consume_from_where,
                last_update: Instant::now(),
            });
        group.consume_type = data.consume_type;
        group.message_model = data.message_model;
        group.consume_from_where = data.consume_from_where;
        group.last_update = Instant::now();
        let is_new = match group.clients.get(&channel.client_id) {
            Some(old) => old.conn.id() != channel.conn.id(),
            None => true,
        };
        group.clients.insert(channel.client_id.clone(), channel);
        for sub in &data.subscription_data_set {
            let keep = match group.subscriptions.get(&sub.topic) {
                Some(old) => old.sub_version > sub.sub_version,
                None => false,
            };
            if !keep {
                group.subscriptions.insert(sub.topic.clone(), sub.clone());
            }
        }
        is_new
    }

    pub fn register_producer(&self, group: &str, channel: ClientChannel) {
        self.producers
            .write()
            .entry(group.to_string())
            .or_default()
            .insert(channel.client_id.clone(), channel);
    }

    /// Every connected producer of `group`.
    pub fn producers_of(&self, group: &str) -> Vec<ClientChannel> {
        self.producers
            .read()
            .get(group)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A connected producer of `group`: the one heard from most recently.
    pub fn producer_channel(&self, group: &str) -> Option<ClientChannel> {
        self.producers
            .read()
            .get(group)?
            .values()
            .max_by_key(|c| c.last_update)
            .cloned()
    }

    /// The connection of the client with this id (`ip@instance`), as a
    /// producer or a consumer: the one heard from most recently.
    pub fn channel_of_client(&self, client_id: &str) -> Option<ClientChannel> {
        let producers = self.producers.read();
        let consumers = self.consumers.read();
        producers
            .values()
            .filter_map(|g| g.get(client_id))
            .chain(consumers.values().filter_map(|g| g.clients.get(client_id)))
            .max_by_key(|c| c.last_update)
            .cloned()
    }

    /// Remove a client from a consumer group. Returns true when it was a
    /// member.
    pub fn unregister_consumer(&self, group: &str, client_id: &str) -> bool {
        let mut groups = self.consumers.write();
        let Some(g) = groups.get_mut(group) else {
            return false;
        };
        let removed = g.clients.remove(client_id).is_some();
        if g.clients.is_empty() {
            groups.remove(group);
        }
        removed
    }

    pub fn unregister_producer(&self, group: &str, client_id: &str) {
        let mut producers = self.producers.write();
        if let Some(g) = producers.get_mut(group) {
            g.remove(client_id);
            if g.is_empty() {
                producers.remove(group);
            }
        }
    }

    /// Forget every client on a closed connection. Returns the consumer
    /// groups that lost a member.
    pub fn connection_closed(&self, conn_id: u64) -> Vec<String> {
        self.remove_where(|c| c.conn.id() == conn_id)
    }

    /// Forget clients silent past [`CLIENT_EXPIRY`]. Returns the consumer
    /// groups that lost a member.
    pub fn expire(&self) -> Vec<String> {
        let now = Instant::now();
        self.remove_where(|c| {
            now.duration_since(c.last_update) > CLIENT_EXPIRY || c.conn.is_closed()
        })
    }

    fn remove_where(&self, pred: impl Fn(&ClientChannel) -> bool) -> Vec<String> {
        let mut changed = Vec::new();
        {
            let mut groups = self.consumers.write();
            for (name, g) in groups.iter_mut() {
                let before = g.clients.len();
                g.clients.retain(|_, c| !pred(c));
                if g.clients.len() != before {
                    changed.push(name.clone());
                }
            }
            groups.retain(|_, g| !g.clients.is_empty());
        }
        let mut producers = self.producers.write();
        for g in producers.values_mut() {
            g.retain(|_, c| !pred(c));
        }
        producers.retain(|_, g| !g.is_empty());
        changed
    }

    pub fn consumer_ids(&self, group: &str) -> Option<Vec<String>> {
        self.consumers
            .read()
            .get(group)
            .map(|g| g.clients.keys().cloned().collect())
    }

    pub fn group(&self, group: &str) -> Option<ConsumerGroup> {
        self.consumers.read().get(group).cloned()
    }

    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.consumers
            .read()
            .get(group)
            .and_then(|g| g.subscriptions.get(topic).cloned())
    }

    /// Groups whose members subscribe to `topic`.
    pub fn groups_subscribing(&self, topic: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .consumers
            .read()
            .iter()
            .filter(|(_, g)| g.subscriptions.contains_key(topic))
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    pub fn consumer_group_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.consumers.read().keys().cloned().collect();
        v.sort();
        v
    }

    pub fn counts(&self) -> (usize, usize) {
        let c = self
            .consumers
            .read()
            .values()
            .map(|g| g.clients.len())
            .sum();
        let p = self.producers.read().values().map(|g| g.len()).sum();
        (p, c)
    }

    /// Tell every member of `group` that membership changed (oneway, best
    /// effort: a member that misses it rebalances on its own timer).
    pub fn notify_ids_changed(&self, group: &str) {
        let Some(g) = self.group(group) else {
            return;
        };
        for c in g.clients.values() {
            let req = RemotingCommand::request(request_code::NOTIFY_CONSUMER_IDS_CHANGED)
                .with_ext("consumerGroup", group);
            let conn = c.conn.clone();
            tokio::spawn(async move {
                if let Err(e) = conn.invoke_oneway(req).await {
                    tracing::debug!(peer = %conn.peer(), error = %e, "cannot notify consumer");
                }
            });
        }
    }
}
