//! The broker: request processors on top of the message store.
//!
//! - [`config`] — `broker.conf` keys.
//! - [`topics`] — topic configs, auto-creation, `topics.json`.
//! - [`offsets`] — consumer offsets, `consumerOffset.json`.
//! - [`clients`] — producers and consumer groups known from heartbeats.
//! - [`allocate`] — sharing a topic's queues among a group's members, for
//!   consumers that leave rebalancing to the broker.
//! - [`lock`] — queue locks for ordered consumption.
//! - [`long_poll`] — pulls that wait for the next message.
//! - [`delay`] — delayed messages and reconsume delays (`SCHEDULE_TOPIC_XXXX`).
//! - [`transaction`] — half messages, END_TRANSACTION, check-backs.
//! - [`timer`] — timer messages (`TIMER_DELIVER_MS` and the like).
//! - [`retention`] — what the store must keep for timers, delayed and
//!   half messages, whatever their age.
//! - [`register`] — registration with every name server.
//! - [`subscriptions`] — consumer groups' settings, `subscriptionGroup.json`.
//! - [`slave_sync`] — a slave copies topics, offsets and subscription
//!   groups from its master.
//! - [`raft_state`] — in Raft mode, topics, subscription groups and
//!   offsets committed through the Raft log.
//! - [`write`] — the one write path every stored message takes.
//! - [`processor`] — one file per family of remoting requests.
//!
//! [`Broker::start`] opens the store (recovering it), binds the port,
//! registers with the name servers and starts the background tasks;
//! [`Broker::shutdown`] undoes all of it in order.

pub mod acl;
pub mod allocate;
pub mod clients;
pub mod config;
pub mod delay;
pub mod filter;
pub mod lock;
pub mod long_poll;
pub mod metrics;
pub mod offsets;
pub mod processor;
pub mod raft_state;
pub mod register;
pub mod retention;
pub mod runtime_config;
pub mod slave_sync;
pub mod subscriptions;
#[cfg(test)]
mod test_util;
pub mod timer;
pub mod topics;
pub mod transaction;
pub mod write;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_remoting::RemotingClient;
use meridian_store::{MessageStore, RecoveryReport};

pub use config::{BrokerConfig, BrokerRole};
pub use write::{Replicas, Stored, WriteError};

pub use meridian_protocol::now_ms;

/// A broker table kept as a JSON file under `config/`: `None` if the file
/// is not there; a file that does not parse as `what` is an error naming
/// it.
pub fn load_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
) -> std::io::Result<Option<T>> {
    let Some(bytes) = meridian_store::config_file::load(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not valid {what} JSON: {e}", path.display()),
        )
    })
}

/// Write a broker table as JSON, crash-safely (temp file, fsync, rename).
pub fn persist_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    meridian_store::config_file::persist(path, &bytes)
}

/// A stored message to be stored again under another topic and queue (a
/// due delayed message, a retry, a dead letter): same body, flags, birth and
/// reconsume count; new properties; this broker as the store host.
pub fn store_again(
    m: &meridian_protocol::message::MessageExt,
    topic: String,
    queue_id: i32,
    properties: &[(String, String)],
    store_host: SocketAddr,
) -> meridian_store::PutMessage {
    meridian_store::PutMessage {
        topic,
        queue_id,
        flag: m.flag,
        body: m.body.clone(),
        properties: meridian_protocol::message::encode_properties(properties),
        sys_flag: m.sys_flag,
        born_timestamp: m.born_timestamp,
        born_host: m.born_host,
        store_host,
        reconsume_times: m.reconsume_times,
        prepared_transaction_offset: m.prepared_transaction_offset,
        at_queue_offset: None,
    }
}

/// The master of this broker's group, as the name servers last said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterInfo {
    /// The master's client address.
    pub addr: Option<String>,
    /// The master's replication address.
    pub ha_addr: Option<String>,
}

/// Everything the processors share.
pub struct BrokerInner {
    pub config: BrokerConfig,
    pub store: Arc<MessageStore>,
    pub topics: topics::TopicConfigManager,
    pub offsets: offsets::ConsumerOffsetManager,
    pub clients: clients::ClientManager,
    pub locks: lock::RebalanceLockManager,
    pub long_poll: Arc<long_poll::LongPoll>,
    pub delay: Arc<delay::DelayService>,
    pub namesrv_client: RemotingClient,
    /// The address written into message ids and records.
    pub store_host: SocketAddr,
    /// Wakes the registration task for an immediate registration (a topic
    /// was created).
    pub register_now: tokio::sync::Notify,
    pub started: Instant,
    pub shutting_down: AtomicBool,
    /// Who the group's master is (learned from registrations).
    pub master: tokio::sync::watch::Sender<MasterInfo>,
    /// Replication: the master's stream to its slaves, or the slave's
    /// stream from its master. Inert in Raft mode.
    pub ha: Arc<meridian_ha::HaService>,
    /// Raft mode: this broker's member of its Raft group, which decides
    /// its role and through which every write goes.
    pub raft: Option<Arc<meridian_raft::node::RaftNode>>,
    /// Records relayed into this broker's copy queues.
    pub relay_counters: RelayCounters,
    /// Counted for the Prometheus endpoint (also when it is off: an atomic
    /// add per request).
    pub metrics: Arc<metrics::BrokerMetrics>,
    /// `brokerPermission` now (see `runtime_config`).
    pub broker_permission: std::sync::atomic::AtomicI32,
    /// Consumer groups' settings (`updateSubGroup`).
    pub subscription_groups: subscriptions::SubscriptionGroupManager,
    /// Held while a delayed message's delivery (here, or another region's
    /// relayed in) is checked against what is held and stored: one
    /// delivery per `MERIDIAN_SCHEDULED` identity.
    pub scheduled: tokio::sync::Mutex<()>,
    /// Half messages and their decisions.
    pub transactions: Arc<transaction::TransactionService>,
    /// Compiled SQL92 subscriptions (`enablePropertyFilter`).
    pub selectors: filter::SelectorCache,
    /// Timer messages waiting for their time (master only).
    pub timers: timer::TimerService,
    /// Access control, when `aclEnable=true`.
    pub acl: Option<Arc<acl::Acl>>,
    /// Raft mode: topic configs and consumer offsets through the Raft log.
    pub raft_state: Option<Arc<raft_state::RaftState>>,
    /// Held while the tables are written (see `persist_tables`).
    persisting: parking_lot::Mutex<()>,
}

/// What relays did to this broker's copy queues since it started.
#[derive(Default)]
pub struct RelayCounters {
    /// Records stored in copy queues.
    pub appended: std::sync::atomic::AtomicU64,
    /// Records refused as already present (a second path, a resend).
    pub present: std::sync::atomic::AtomicU64,
}

impl BrokerInner {
    /// Whether this broker holds a delivery, in `topic`, of the delayed
    /// message with this `MERIDIAN_SCHEDULED` identity.
    pub fn holds_scheduled(&self, topic: &str, identity: &str) -> bool {
        !self
            .store
            .query_by_key(topic, identity, 1, 0, i64::MAX)
            .is_empty()
    }

    /// Record what a name server said about the group's master.
    pub fn learn_master(&self, addr: Option<String>, ha_addr: Option<String>) {
        let own = self.config.broker_addr();
        let addr = addr.filter(|a| !a.is_empty() && *a != own);
        let ha_addr = ha_addr.filter(|a| !a.is_empty());
        self.master.send_if_modified(|cur| {
            // As RocketMQ: a name server that no longer knows the master
            // does not make a slave forget it; the slave keeps trying the
            // last master until another is named.
            let info = MasterInfo {
                addr: addr.clone().or_else(|| cur.addr.clone()),
                ha_addr: if self.config.ha_master_address.is_some() {
                    self.config.ha_master_address.clone()
                } else {
                    ha_addr.clone().or_else(|| cur.ha_addr.clone())
                },
            };
            if *cur != info {
                tracing::info!(master = ?info.addr, ha = ?info.ha_addr, "master of the group changed");
                *cur = info;
                true
            } else {
                false
            }
        });
    }

    /// Write consumer offsets and delay cursors; in Raft mode then where
    /// applying state records stopped (read first: the files then hold at
    /// least what it says). One writer at a time: interleaved, a later
    /// cursor could be written last beside tables written before it was
    /// read, and two writers would share one temporary file.
    pub fn persist_tables(&self) {
        let _one = self.persisting.lock();
        let cursor = self.raft_state.as_ref().map(|s| s.cursor());
        self.offsets.persist();
        self.delay.persist();
        if let (Some(state), Some(cursor)) = (&self.raft_state, cursor) {
            state.persist(cursor);
        }
    }

    /// RocketMQ's answer to a client request this broker's
    /// `brokerPermission` does not allow (`what`: "sending", "pulling").
    pub fn forbids(&self, bit: i32, what: &str) -> Option<String> {
        let p = self
            .broker_permission
            .load(std::sync::atomic::Ordering::Acquire);
        (p & bit == 0).then(|| {
            format!(
                "the broker[{}] {what} message is forbidden (brokerPermission={p})",
                self.config.broker_addr()
            )
        })
    }

    /// A message the broker writes for itself (a transaction's op record,
    /// a Raft state record): born and stored here, queue 0.
    pub fn own_message(
        &self,
        topic: &str,
        body: bytes::Bytes,
        properties: String,
    ) -> meridian_store::PutMessage {
        meridian_store::PutMessage {
            topic: topic.to_string(),
            queue_id: 0,
            flag: 0,
            body,
            properties,
            sys_flag: 0,
            born_timestamp: now_ms(),
            born_host: self.store_host,
            store_host: self.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            at_queue_offset: None,
        }
    }

    /// A slave, or a Raft member that does not lead: it refuses writes.
    pub fn is_slave(&self) -> bool {
        match &self.raft {
            Some(node) => !node.role().borrow().leader,
            None => self.config.broker_role == BrokerRole::Slave,
        }
    }

    /// The role now: in Raft mode the leader acts as a SYNC_MASTER (a
    /// write is acknowledged once on a majority) and the others as slaves.
    pub fn broker_role(&self) -> BrokerRole {
        match &self.raft {
            Some(_) if self.is_slave() => BrokerRole::Slave,
            Some(_) => BrokerRole::SyncMaster,
            None => self.config.broker_role,
        }
    }

    /// The id registered with the name servers: in Raft mode 0 for the
    /// leader and the member's index + 1 for the others (`n0` → 1), as
    /// RocketMQ's DLedger mode does.
    pub fn broker_id(&self) -> i64 {
        match &self.raft {
            Some(node) if self.is_slave() => node.peers().self_id as i64 + 1,
            Some(_) => 0,
            None => self.config.broker_id,
        }
    }

    /// Ask for a registration with every name server now.
    pub fn register_soon(&self) {
        self.register_now.notify_one();
    }
}

/// A running broker.
pub struct Broker {
    inner: Arc<BrokerInner>,
    server: meridian_remoting::Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    recovery: RecoveryReport,
    /// The Prometheus endpoint, when `metricsExporterType=PROM`.
    exporter: Option<meridian_metrics::Exporter>,
}

impl Broker {
    /// Open the store, bind, and start serving. Returns once the port is
    /// bound; the first registration runs in the background (see
    /// [`Broker::register_once`]).
    pub async fn start(mut config: BrokerConfig) -> anyhow::Result<Broker> {
        runtime_config::apply_saved(&mut config).map_err(|e| anyhow::anyhow!(e))?;
        let delay_levels = meridian_store::message_delay_levels(&config.store.message_delay_level)
            .map_err(|e| anyhow::anyhow!("messageDelayLevel: {e}"))?;
        let store_config = config.store.clone();
        let (store, recovery) =
            tokio::task::spawn_blocking(move || MessageStore::open(store_config))
                .await?
                .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
        tracing::info!("{recovery}");
        let topics = topics::TopicConfigManager::open(&config, delay_levels.len())?;
        let offsets = offsets::ConsumerOffsetManager::open(&config.store.root_dir)?;
        let subscription_groups =
            subscriptions::SubscriptionGroupManager::open(&config.store.root_dir)?;
        let long_poll = long_poll::LongPoll::new(config.max_long_poll_waiters);
        let delay = delay::DelayService::open(&config.store.root_dir, delay_levels)?;
        let transactions = transaction::TransactionService::open(&config.store.root_dir)?;
        let acceptor = config
            .tls
            .acceptor()
            .map_err(|e| anyhow::anyhow!("broker TLS: {e}"))?;
        let connector = config
            .tls
            .connector()
            .map_err(|e| anyhow::anyhow!("broker TLS (its own links): {e}"))?;
        let acl = match &config.acl_file {
            Some(path) => Some(Arc::new(acl::Acl::open(path).map_err(|e| {
                anyhow::anyhow!("aclEnable=true but the accounts cannot be read: {e}")
            })?)),
            None => None,
        };
        let store_host = SocketAddr::new(config.broker_ip1, config.listen_port);
        let peer_acceptor = config
            .tls
            .peer_acceptor()
            .map_err(|e| anyhow::anyhow!("broker TLS (HA and Raft): {e}"))?;
        let peer_connector = config
            .tls
            .peer_connector()
            .map_err(|e| anyhow::anyhow!("broker TLS (links to other brokers): {e}"))?;
        let ha_config = meridian_ha::HaConfig {
            listen_addr: SocketAddr::new(config.listen_ip, config.ha_listen_port),
            acceptor: peer_acceptor.clone(),
            connector: peer_connector.clone(),
            ..Default::default()
        };
        let ha = if config.broker_role == BrokerRole::Slave || config.raft.is_some() {
            // In Raft mode the slave side is never given a master: inert.
            meridian_ha::HaService::start_slave(store.clone(), ha_config)
        } else {
            meridian_ha::HaService::start_master(store.clone(), ha_config)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen for slaves on haListenPort {}: {e}",
                        config.ha_listen_port
                    )
                })?
        };
        let raft_state = match &config.raft {
            None => None,
            Some(_) => Some(Arc::new(
                raft_state::RaftState::open(&config.store.root_dir)
                    .map_err(|e| anyhow::anyhow!("cannot read the Raft state cursor: {e}"))?,
            )),
        };
        let raft = match &config.raft {
            None => None,
            Some(r) => {
                let mut opts = meridian_raft::node::RaftOptions::new(
                    r.peers.clone(),
                    config.store.root_dir.join("raft"),
                    config.store.mapped_file_size_commit_log,
                );
                opts.heartbeat_ms = r.heartbeat_ms;
                opts.election_timeout_min_ms = r.election_timeout_min_ms;
                opts.election_timeout_max_ms = r.election_timeout_max_ms;
                opts.max_bytes_per_append = r.max_bytes_per_append;
                opts.max_inflight = r.max_inflight_sends;
                opts.preferred_leader = r.preferred_leader_id;
                opts.join = r.join;
                opts.acceptor = peer_acceptor.clone();
                opts.connector = peer_connector.clone();
                opts.sync_flush =
                    config.store.flush_disk_type == meridian_store::FlushDiskType::SyncFlush;
                opts.commit_timeout = Duration::from_millis(config.store.sync_flush_timeout_ms);
                let node = meridian_raft::node::RaftNode::start(store.clone(), opts)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot start the Raft member: {e}"))?;
                Some(node)
            }
        };
        {
            let lp = long_poll.clone();
            store.set_arrival_listener(Arc::new(move |topic: &str, qid: i32, max: i64| {
                lp.arrived(topic, qid, max)
            }));
        }
        let broker_permission = config.broker_permission;
        let inner = Arc::new(BrokerInner {
            config,
            store,
            topics,
            offsets,
            clients: clients::ClientManager::default(),
            locks: lock::RebalanceLockManager::default(),
            long_poll,
            delay,
            namesrv_client: RemotingClient::new().with_connector(connector),
            store_host,
            register_now: tokio::sync::Notify::new(),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            master: tokio::sync::watch::channel(MasterInfo::default()).0,
            ha,
            raft,
            relay_counters: RelayCounters::default(),
            metrics: Default::default(),
            broker_permission: std::sync::atomic::AtomicI32::new(broker_permission),
            subscription_groups,
            scheduled: tokio::sync::Mutex::new(()),
            transactions,
            selectors: filter::SelectorCache::default(),
            timers: timer::TimerService::default(),
            acl,
            raft_state,
            persisting: parking_lot::Mutex::new(()),
        });
        retention::install(&inner);
        if let Some(node) = &inner.raft {
            node.set_state_hooks(Arc::new(raft_state::SnapshotTables(Arc::downgrade(&inner))));
        }
        let bind = SocketAddr::new(inner.config.listen_ip, inner.config.listen_port);
        let mut handler: Arc<dyn meridian_remoting::Handler> =
            Arc::new(processor::BrokerProcessor::new(inner.clone()));
        let exporter = if inner.config.metrics.enabled() {
            let c = &inner.config;
            let node = meridian_metrics::Node {
                cluster: c.broker_cluster_name.clone(),
                node_type: "broker",
                // As RocketMQ 5: the broker group's name; Prometheus's
                // `instance` tells the members of a group apart.
                node_id: c.broker_name.clone(),
            };
            let mut registry = meridian_metrics::registry(&node, &c.metrics);
            inner
                .metrics
                .register(&mut registry, Arc::downgrade(&inner));
            if let Some(rpc) = inner.metrics.rpc() {
                handler = meridian_metrics::observed(handler, rpc);
            }
            meridian_metrics::start(&c.metrics, Arc::new(registry), Arc::new(|| {})).await?
        } else {
            None
        };
        let server =
            meridian_remoting::server::serve_with(bind, handler, Default::default(), acceptor)
                .await
                .map_err(|e| anyhow::anyhow!("broker cannot listen on {bind}: {e}"))?;
        tracing::info!(addr = %server.local_addr(), advertised = %inner.config.broker_addr(), "broker listening");

        let mut tasks = vec![
            tokio::spawn(register::run(inner.clone())),
            tokio::spawn(housekeeping(inner.clone())),
            tokio::spawn(sample_tps(inner.clone())),
        ];
        if let Some(acl) = &inner.acl {
            tasks.push(tokio::spawn(acl::watch(acl.clone())));
        }
        if let Some(node) = &inner.raft {
            // The role changes with the Raft group: both loops check it.
            tasks.push(tokio::spawn(slave_sync::run(inner.clone())));
            tasks.push(tokio::spawn(delay::run(inner.clone())));
            tasks.push(tokio::spawn(transaction::run(inner.clone())));
            tasks.push(tokio::spawn(follow_raft_role(inner.clone(), node.role())));
            tasks.push(tokio::spawn(raft_state::run(inner.clone())));
        } else if inner.is_slave() {
            tasks.push(tokio::spawn(slave_sync::run(inner.clone())));
            tasks.push(tokio::spawn(follow_master(inner.clone())));
            // Only follows the decisions, for the retention floor.
            tasks.push(tokio::spawn(transaction::run(inner.clone())));
        } else {
            // Only the master delivers delayed messages and checks half
            // messages; a slave receives the results through replication.
            tasks.push(tokio::spawn(delay::run(inner.clone())));
            tasks.push(tokio::spawn(transaction::run(inner.clone())));
        }
        Ok(Broker {
            inner,
            server,
            tasks,
            recovery,
            exporter,
        })
    }

    /// Where the Prometheus endpoint listens, when it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.exporter.as_ref().map(|e| e.local_addr())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn inner(&self) -> &Arc<BrokerInner> {
        &self.inner
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Register with every name server now; returns how many accepted.
    pub async fn register_once(&self) -> usize {
        register::register_all(&self.inner).await
    }

    /// Stop accepting, unregister, persist offsets, flush and close the
    /// store.
    pub async fn shutdown(self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.server.stop();
        register::unregister_all(&self.inner).await;
        for t in &self.tasks {
            t.abort();
        }
        self.inner.ha.shutdown();
        if let Some(node) = &self.inner.raft {
            node.shutdown().await;
        }
        self.inner.persist_tables();
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        tracing::info!("broker stopped");
    }
}

/// Raft mode: register at once whenever the role changes, so the name
/// servers route writes to the new leader (id 0) within moments.
async fn follow_raft_role(
    inner: Arc<BrokerInner>,
    mut role: tokio::sync::watch::Receiver<meridian_raft::node::Role>,
) {
    let mut was = *role.borrow_and_update();
    loop {
        if role.changed().await.is_err() {
            return;
        }
        let now = *role.borrow_and_update();
        // A new leader elsewhere matters too: a follower learns the
        // leader's address from the registration's answer, and copies
        // topics and offsets from there.
        if now.leader != was.leader || now.leader_id != was.leader_id {
            if now.leader != was.leader {
                inner
                    .metrics
                    .raft_role_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    leader = now.leader,
                    term = now.term,
                    broker_id = inner.broker_id(),
                    "Raft role changed; registering with the name servers"
                );
            }
            if now.leader && !was.leader {
                // Every state record of earlier terms is visible now (the
                // blank entry is applied): take them all before the name
                // servers list this member as master, so clients routed
                // here meet the group's topics and subscription groups.
                if let Some(state) = &inner.raft_state {
                    state.catch_up(&inner);
                }
                // Delay cursors copied from the old leader are the best
                // there is; keep them (offsets came through the log).
                inner.persist_tables();
            }
            was = now;
            inner.register_soon();
        }
    }
}

/// A slave streams the commit log from whichever master the name servers
/// name.
async fn follow_master(inner: Arc<BrokerInner>) {
    let mut master = inner.master.subscribe();
    if let Some(fixed) = inner.config.ha_master_address.clone() {
        inner.ha.set_master_ha_addr(Some(fixed));
    }
    loop {
        let ha_addr = master.borrow_and_update().ha_addr.clone();
        if ha_addr.is_some() {
            inner.ha.set_master_ha_addr(ha_addr);
        }
        if master.changed().await.is_err() {
            return;
        }
    }
}

/// Periodic chores: persist offsets, drop silent clients.
/// Once a second: how many messages were stored and delivered so far,
/// for the runtime info's rates (`putTps`, `getTransferedTps`).
async fn sample_tps(inner: Arc<BrokerInner>) {
    let started = *inner.metrics.started.get_or_init(std::time::Instant::now);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let st = inner.store.stats();
        let at = started.elapsed().as_secs_f64();
        inner
            .metrics
            .tps
            .sample(at, st.put_message_count, st.get_message_count);
        inner.metrics.history.sample(at, &inner.metrics);
    }
}

async fn housekeeping(inner: Arc<BrokerInner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let i = inner.clone();
        let _ = tokio::task::spawn_blocking(move || i.persist_tables()).await;
        for group in inner.clients.expire() {
            inner.clients.notify_ids_changed(&group);
        }
    }
}
