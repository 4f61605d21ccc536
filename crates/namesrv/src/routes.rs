//! The route table: which brokers exist, which topics each serves, and which
//! broker of a group is the master.
//!
//! One lock guards the whole table. Registrations arrive a few times a
//! minute per broker and route queries are cheap copies, so a finer scheme
//! would buy nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use meridian_protocol::body::{BrokerData, ClusterInfo, QueueData, TopicConfig, TopicRouteData};
use parking_lot::Mutex;

/// A broker is dropped when it has not registered for this long (unless it
/// asked for another timeout when it registered).
pub const DEFAULT_BROKER_EXPIRY: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct LiveBroker {
    last_update: Instant,
    expiry: Duration,
    connection_id: Option<u64>,
    ha_server_addr: String,
    cluster: String,
    broker_name: String,
    broker_id: i64,
}

#[derive(Default, Debug)]
struct Tables {
    /// topic → brokerName → queues
    topic_queues: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// brokerName → addresses by broker id
    brokers: BTreeMap<String, BrokerData>,
    /// cluster → broker names
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// brokerName → (Raft term, address) of its listed master, for Raft
    /// groups (registrations that carry a term).
    master_terms: HashMap<String, (u64, String)>,
    /// broker address → liveness
    live: HashMap<String, LiveBroker>,
    /// Broker names whose write permission an operator wiped
    /// (WIPE_WRITE_PERM_OF_BROKER): their queues are routed read-only until
    /// ADD_WRITE_PERM_OF_BROKER, whatever the brokers register. Kept in
    /// memory, as RocketMQ's name server keeps it: a restarted name server
    /// routes writes to them again (a broker's own `brokerPermission`
    /// persists).
    write_wiped: BTreeSet<String>,
}

/// What a registration tells the name server.
pub struct Registration<'a> {
    pub cluster: &'a str,
    pub broker_name: &'a str,
    pub broker_addr: &'a str,
    pub broker_id: i64,
    pub ha_server_addr: &'a str,
    /// The broker's region, if it says (`zoneName`).
    pub zone_name: Option<&'a str>,
    pub topics: &'a HashMap<String, TopicConfig>,
    pub connection_id: Option<u64>,
    pub expiry: Option<Duration>,
    /// A Raft member's term (Meridian's `meridianRaftTerm`).
    pub raft_term: Option<u64>,
}

/// What the broker is told back: the group's master and its HA address.
pub struct RegisterResult {
    pub master_addr: Option<String>,
    pub ha_server_addr: Option<String>,
}

#[derive(Default)]
pub struct RouteTable {
    tables: Mutex<Tables>,
}

impl RouteTable {
    /// Register a broker or refresh its registration.
    pub fn register(&self, reg: Registration<'_>) -> RegisterResult {
        let mut t = self.tables.lock();
        if reg.broker_id == 0 {
            if let Some(term) = reg.raft_term {
                match t.master_terms.get(reg.broker_name) {
                    Some((newer, addr)) if *newer > term && addr != reg.broker_addr => {
                        // A leader of an older term (cut off from its group,
                        // not yet aware of the election): not listed.
                        tracing::warn!(
                            broker = reg.broker_name,
                            addr = reg.broker_addr,
                            term,
                            master = %addr,
                            master_term = newer,
                            "registration as master from an older Raft term ignored"
                        );
                        let master_addr = Some(addr.clone());
                        let ha_server_addr = t.live.get(addr).map(|l| l.ha_server_addr.clone());
                        return RegisterResult {
                            master_addr,
                            ha_server_addr,
                        };
                    }
                    _ => {
                        t.master_terms.insert(
                            reg.broker_name.to_string(),
                            (term, reg.broker_addr.to_string()),
                        );
                    }
                }
            }
        }
        t.clusters
            .entry(reg.cluster.to_string())
            .or_default()
            .insert(reg.broker_name.to_string());

        let data = t
            .brokers
            .entry(reg.broker_name.to_string())
            .or_insert_with(|| BrokerData {
                cluster: reg.cluster.to_string(),
                broker_name: reg.broker_name.to_string(),
                broker_addrs: BTreeMap::new(),
                ..Default::default()
            });
        // A broker that moved to another id (a slave promoted to master)
        // must not stay listed under its old id too.
        if let Some(zone) = reg.zone_name.filter(|z| !z.is_empty()) {
            if data.zone_name.as_deref() != Some(zone) {
                data.zone_name = Some(zone.to_string());
            }
        }
        data.broker_addrs
            .retain(|id, addr| *id == reg.broker_id || addr != reg.broker_addr);
        let first_time = data
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.to_string())
            .as_deref()
            != Some(reg.broker_addr);
        if first_time {
            tracing::info!(
                cluster = reg.cluster,
                broker = reg.broker_name,
                id = reg.broker_id,
                addr = reg.broker_addr,
                "broker registered"
            );
        }

        // The master's topic list is the group's; a slave's registration
        // only refreshes its liveness.
        if reg.broker_id == 0 {
            for (topic, cfg) in reg.topics {
                let q = QueueData {
                    broker_name: reg.broker_name.to_string(),
                    read_queue_nums: cfg.read_queue_nums,
                    write_queue_nums: cfg.write_queue_nums,
                    perm: cfg.perm,
                    topic_sys_flag: cfg.topic_sys_flag,
                };
                t.topic_queues
                    .entry(topic.clone())
                    .or_default()
                    .insert(reg.broker_name.to_string(), q);
            }
            // Topics the master no longer has were deleted there.
            let name = reg.broker_name;
            t.topic_queues.retain(|topic, by_broker| {
                if !reg.topics.contains_key(topic) {
                    by_broker.remove(name);
                }
                !by_broker.is_empty()
            });
        }

        t.live.insert(
            reg.broker_addr.to_string(),
            LiveBroker {
                last_update: Instant::now(),
                expiry: reg.expiry.unwrap_or(DEFAULT_BROKER_EXPIRY),
                connection_id: reg.connection_id,
                ha_server_addr: reg.ha_server_addr.to_string(),
                cluster: reg.cluster.to_string(),
                broker_name: reg.broker_name.to_string(),
                broker_id: reg.broker_id,
            },
        );

        let master_addr = t
            .brokers
            .get(reg.broker_name)
            .and_then(|b| b.broker_addrs.get(&0).cloned());
        let ha_server_addr = master_addr
            .as_ref()
            .and_then(|m| t.live.get(m))
            .map(|l| l.ha_server_addr.clone());
        RegisterResult {
            master_addr,
            ha_server_addr,
        }
    }

    /// Remove one broker address (it unregistered, expired or disconnected).
    pub fn unregister(&self, broker_addr: &str, reason: &str) {
        let mut t = self.tables.lock();
        remove_broker(&mut t, broker_addr, reason);
    }

    /// Remove the brokers whose registration connection has closed.
    pub fn connection_closed(&self, connection_id: u64) {
        let mut t = self.tables.lock();
        let gone: Vec<String> = t
            .live
            .iter()
            .filter(|(_, l)| l.connection_id == Some(connection_id))
            .map(|(a, _)| a.clone())
            .collect();
        for addr in gone {
            remove_broker(&mut t, &addr, "its connection closed");
        }
    }

    /// Drop brokers that have been silent past their expiry.
    pub fn expire_silent_brokers(&self) {
        let mut t = self.tables.lock();
        let now = Instant::now();
        let expired: Vec<String> = t
            .live
            .iter()
            .filter(|(_, l)| now.duration_since(l.last_update) > l.expiry)
            .map(|(a, _)| a.clone())
            .collect();
        for addr in expired {
            remove_broker(&mut t, &addr, "it stopped registering");
        }
    }

    /// Stop routing writes to broker group `broker_name` (mqadmin
    /// `wipeWritePerm`); returns how many topics it serves.
    pub fn wipe_write_perm(&self, broker_name: &str) -> usize {
        let mut t = self.tables.lock();
        t.write_wiped.insert(broker_name.to_string());
        tracing::info!(
            broker = broker_name,
            "write permission wiped: routes list the broker's queues read-only"
        );
        topics_served(&t, broker_name)
    }

    /// Route writes to `broker_name` again (mqadmin `addWritePerm`);
    /// returns how many topics it serves.
    pub fn add_write_perm(&self, broker_name: &str) -> usize {
        let mut t = self.tables.lock();
        if t.write_wiped.remove(broker_name) {
            tracing::info!(broker = broker_name, "write permission added back");
        }
        topics_served(&t, broker_name)
    }

    /// The route of `topic`, or `None` when no live broker serves it.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let t = self.tables.lock();
        let by_broker = t.topic_queues.get(topic)?;
        let mut route = TopicRouteData::default();
        for (name, q) in by_broker {
            if let Some(b) = t.brokers.get(name) {
                if !b.broker_addrs.is_empty() {
                    let mut q = q.clone();
                    if t.write_wiped.contains(name) {
                        q.perm &= !meridian_protocol::body::perm::PERM_WRITE;
                    }
                    route.queue_datas.push(q);
                    route.broker_datas.push(b.clone());
                }
            }
        }
        if route.queue_datas.is_empty() {
            None
        } else {
            Some(route)
        }
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        let t = self.tables.lock();
        let mut info = ClusterInfo::default();
        for (name, b) in &t.brokers {
            info.broker_addr_table.insert(name.clone(), b.clone());
        }
        for (cluster, names) in &t.clusters {
            info.cluster_addr_table
                .insert(cluster.clone(), names.iter().cloned().collect());
        }
        info
    }

    pub fn topics(&self) -> BTreeSet<String> {
        self.tables.lock().topic_queues.keys().cloned().collect()
    }

    /// Topics served by any broker of `cluster`.
    pub fn topics_of_cluster(&self, cluster: &str) -> BTreeSet<String> {
        let t = self.tables.lock();
        let Some(names) = t.clusters.get(cluster) else {
            return BTreeSet::new();
        };
        t.topic_queues
            .iter()
            .filter(|(_, by)| by.keys().any(|n| names.contains(n)))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Forget a topic (everywhere, or only on the brokers of `cluster`).
    pub fn delete_topic(&self, topic: &str, cluster: Option<&str>) {
        let mut t = self.tables.lock();
        match cluster {
            None => {
                t.topic_queues.remove(topic);
            }
            Some(c) => {
                let names = t.clusters.get(c).cloned().unwrap_or_default();
                if let Some(by) = t.topic_queues.get_mut(topic) {
                    by.retain(|name, _| !names.contains(name));
                    if by.is_empty() {
                        t.topic_queues.remove(topic);
                    }
                }
            }
        }
    }

    /// The live brokers of groups registered in `region` (their zone), or
    /// with no region: `(brokerName, address, brokerId)`.
    pub fn brokers_of_region(&self, region: &str) -> Vec<(String, String, i64)> {
        let t = self.tables.lock();
        let mut v: Vec<_> = t
            .live
            .iter()
            .filter(|(_, l)| {
                t.brokers.get(&l.broker_name).is_none_or(|b| {
                    b.zone_name
                        .as_deref()
                        .is_none_or(|z| z.is_empty() || z == region)
                })
            })
            .map(|(a, l)| (l.broker_name.clone(), a.clone(), l.broker_id))
            .collect();
        v.sort();
        v
    }

    /// Live broker addresses with their cluster, name and id (for tests and
    /// admin).
    pub fn live_brokers(&self) -> Vec<(String, String, String, i64)> {
        let t = self.tables.lock();
        let mut v: Vec<_> = t
            .live
            .iter()
            .map(|(a, l)| {
                (
                    a.clone(),
                    l.cluster.clone(),
                    l.broker_name.clone(),
                    l.broker_id,
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn remove_broker(t: &mut Tables, broker_addr: &str, reason: &str) {
    let Some(live) = t.live.remove(broker_addr) else {
        return;
    };
    tracing::info!(addr = broker_addr, broker = %live.broker_name, reason, "broker removed from routes");
    // The term of a master that is gone no longer bars anyone (a group
    // rebuilt from empty stores starts again at term 1).
    if t.master_terms
        .get(&live.broker_name)
        .is_some_and(|(_, a)| a == broker_addr)
    {
        t.master_terms.remove(&live.broker_name);
    }
    let mut group_empty = false;
    if let Some(b) = t.brokers.get_mut(&live.broker_name) {
        b.broker_addrs
            .retain(|id, addr| !(*id == live.broker_id && addr == broker_addr));
        group_empty = b.broker_addrs.is_empty();
    }
    if group_empty {
        t.brokers.remove(&live.broker_name);
        if let Some(names) = t.clusters.get_mut(&live.cluster) {
            names.remove(&live.broker_name);
            if names.is_empty() {
                t.clusters.remove(&live.cluster);
            }
        }
        t.topic_queues.retain(|_, by| {
            by.remove(&live.broker_name);
            !by.is_empty()
        });
    }
}

/// Topics broker group `broker_name` serves.
fn topics_served(t: &Tables, broker_name: &str) -> usize {
    t.topic_queues
        .values()
        .filter(|by_broker| by_broker.contains_key(broker_name))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> HashMap<String, TopicConfig> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    TopicConfig {
                        topic_name: n.to_string(),
                        read_queue_nums: 4,
                        write_queue_nums: 4,
                        perm: 6,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn reg<'a>(
        addr: &'a str,
        id: i64,
        topics: &'a HashMap<String, TopicConfig>,
        conn: u64,
    ) -> Registration<'a> {
        Registration {
            cluster: "DefaultCluster",
            broker_name: "broker-a",
            broker_addr: addr,
            broker_id: id,
            ha_server_addr: "",
            zone_name: None,
            topics,
            connection_id: Some(conn),
            expiry: None,
            raft_term: None,
        }
    }

    #[test]
    fn a_leader_of_an_older_raft_term_is_not_listed_over_the_new_one() {
        let table = RouteTable::default();
        let t = topics(&["orders"]);
        let master = |table: &RouteTable| {
            table.route("orders").unwrap().broker_datas[0]
                .broker_addrs
                .get(&0)
                .cloned()
        };
        table.register(Registration {
            raft_term: Some(3),
            ..reg("10.0.0.1:10911", 0, &t, 1)
        });
        // The new leader (term 4) takes the master slot...
        let r = table.register(Registration {
            raft_term: Some(4),
            ..reg("10.0.0.2:10911", 0, &t, 2)
        });
        assert_eq!(r.master_addr.as_deref(), Some("10.0.0.2:10911"));
        // ...and the old one, still believing it leads, cannot take it back;
        // it is told who the master is.
        let r = table.register(Registration {
            raft_term: Some(3),
            ..reg("10.0.0.1:10911", 0, &t, 1)
        });
        assert_eq!(r.master_addr.as_deref(), Some("10.0.0.2:10911"));
        assert_eq!(master(&table).as_deref(), Some("10.0.0.2:10911"));
        // Once the new master is gone, its term bars nobody.
        table.unregister("10.0.0.2:10911", "test");
        table.register(Registration {
            raft_term: Some(1),
            ..reg("10.0.0.3:10911", 0, &t, 3)
        });
        assert_eq!(master(&table).as_deref(), Some("10.0.0.3:10911"));
    }

    #[test]
    fn registered_topic_has_a_route_until_the_broker_goes() {
        let table = RouteTable::default();
        let t = topics(&["orders", "TBW102"]);
        table.register(reg("127.0.0.1:10911", 0, &t, 7));
        let route = table.route("orders").expect("route");
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(
            route.broker_datas[0]
                .broker_addrs
                .get(&0)
                .map(String::as_str),
            Some("127.0.0.1:10911")
        );
        table.connection_closed(7);
        assert!(table.route("orders").is_none());
        assert!(table.cluster_info().broker_addr_table.is_empty());
    }

    #[test]
    fn topics_dropped_by_the_master_leave_the_route() {
        let table = RouteTable::default();
        let t1 = topics(&["a", "b"]);
        table.register(reg("127.0.0.1:10911", 0, &t1, 1));
        let t2 = topics(&["a"]);
        table.register(reg("127.0.0.1:10911", 0, &t2, 1));
        assert!(table.route("a").is_some());
        assert!(table.route("b").is_none());
    }

    #[test]
    fn slave_is_listed_and_survives_master_loss() {
        let table = RouteTable::default();
        let t = topics(&["a"]);
        table.register(reg("127.0.0.1:10911", 0, &t, 1));
        table.register(reg("127.0.0.1:10921", 1, &t, 2));
        let r = table.route("a").unwrap();
        assert_eq!(r.broker_datas[0].broker_addrs.len(), 2);
        table.connection_closed(1);
        let r = table.route("a").unwrap();
        assert_eq!(
            r.broker_datas[0]
                .broker_addrs
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![1]
        );
    }
}
