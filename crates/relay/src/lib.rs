//! `meridian relay`: copies chosen topics from one region's cluster into
//! another's, exactly once, in order, with the target as its own
//! checkpoint. A relay is a client of both clusters over the remoting
//! protocol; run one per direction of every link (two-way, chain, ring,
//! mesh, hub and spokes are all sets of one-way links).
//!
//! - [`config`] — `relay.conf`.
//! - [`topology`] — which origin queues the link carries and where each
//!   one's copy lives in the target, looked up again every few seconds.
//! - [`stream`] — one origin queue: pull from the source, append to the
//!   target's copy (RELAY_APPEND), pipelined.
//! - [`offsets`] — consumer offsets carried along the link, so a group
//!   that moves to the target region continues where it was.
//! - [`share`] — several relay processes of one `replicationGroup` on a
//!   link split its streams, and take over a dead one's.
//! - [`stats`] — per-stream counters: relayed, already present, lag.
//!
//! Why it is exact: a copy queue is the origin queue at the same offsets,
//! and the target stores a record only at the offset where its copy
//! continues. A record that reaches a region by two paths, or again after a
//! relay restarts, is refused as already present; a record never enters
//! its origin region again (the target refuses it, and the relay does not
//! send it).

pub mod config;
pub mod offsets;
pub mod share;
pub mod stats;
pub mod stream;
pub mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meridian_client::Admin;
use meridian_protocol::body::KVTable;
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::RemotingCommand;
use meridian_remoting::{Connection, Handler, RemotingClient, Reply};
use tokio::sync::watch;

pub use config::RelayConfig;
use stats::LinkStats;
use topology::{Plan, StreamKey};

/// What every stream of a link shares.
pub struct Shared {
    pub config: RelayConfig,
    /// Connections to the source's brokers.
    pub src: RemotingClient,
    /// Connections to the target's brokers.
    pub dst: RemotingClient,
    pub limiter: Limiter,
    pub stats: LinkStats,
    /// The topics the link relays now: a delayed message in
    /// `SCHEDULE_TOPIC_XXXX` travels whole only if its real topic is one.
    pub relayed: parking_lot::RwLock<std::collections::BTreeSet<String>>,
}

/// `maxTps`: at most this many records a second over the whole link.
pub struct Limiter {
    per_second: u64,
    state: tokio::sync::Mutex<(tokio::time::Instant, f64)>,
}

impl Limiter {
    pub fn new(per_second: u64) -> Limiter {
        Limiter {
            per_second,
            state: tokio::sync::Mutex::new((tokio::time::Instant::now(), per_second as f64)),
        }
    }

    /// Wait until `n` more records may go (a token bucket holding at most
    /// one second's worth).
    pub async fn acquire(&self, n: u64) {
        if self.per_second == 0 {
            return;
        }
        let rate = self.per_second as f64;
        let mut s = self.state.lock().await;
        let now = tokio::time::Instant::now();
        s.1 = (s.1 + now.duration_since(s.0).as_secs_f64() * rate).min(rate);
        s.0 = now;
        s.1 -= n as f64;
        if s.1 < 0.0 {
            let wait = Duration::from_secs_f64(-s.1 / rate);
            tokio::time::sleep(wait).await;
        }
    }
}

/// A running relay.
pub struct Relay {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    supervisor: tokio::task::JoinHandle<()>,
    status: Option<meridian_remoting::Server>,
    /// The Prometheus endpoint, when `metricsExporterType=PROM`.
    exporter: Option<meridian_metrics::Exporter>,
}

impl Relay {
    /// Start relaying. `status_addr`, if given, serves
    /// GET_BROKER_RUNTIME_INFO with the link's counters.
    pub async fn start(
        config: RelayConfig,
        status_addr: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Relay> {
        let connector = config
            .tls
            .connector()
            .map_err(|e| anyhow::anyhow!("relay TLS: {e}"))?;
        let acceptor = config
            .tls
            .acceptor()
            .map_err(|e| anyhow::anyhow!("relay TLS (status port): {e}"))?;
        // The link's look-ups (name servers, topic configs, offsets) go
        // over the same TLS and with the same credentials as its records.
        let src_admin = Admin::new(&config.src_namesrv)
            .with_security(config.src_credentials.clone(), connector.clone());
        let dst_admin = Admin::new(&config.dest_namesrv)
            .with_security(config.dest_credentials.clone(), connector.clone());
        let shared = Arc::new(Shared {
            limiter: Limiter::new(config.max_tps),
            src: RemotingClient::new()
                .with_connector(connector.clone())
                .with_credentials(config.src_credentials.clone()),
            dst: RemotingClient::new()
                .with_connector(connector)
                .with_credentials(config.dest_credentials.clone()),
            config,
            stats: LinkStats::default(),
            relayed: Default::default(),
        });
        let status = match status_addr {
            Some(addr) => Some(
                meridian_remoting::server::serve_with(
                    addr,
                    Arc::new(StatusHandler {
                        shared: shared.clone(),
                    }),
                    Default::default(),
                    acceptor,
                )
                .await
                .map_err(|e| anyhow::anyhow!("the relay cannot listen on {addr}: {e}"))?,
            ),
            None => None,
        };
        let exporter = if shared.config.metrics.enabled() {
            let node = meridian_metrics::Node {
                cluster: shared.config.replication_group.clone(),
                node_type: "relay",
                node_id: shared.config.replication_group.clone(),
            };
            let mut registry = meridian_metrics::registry(&node, &shared.config.metrics);
            registry.register_collector(Box::new(RelayCollector(Arc::downgrade(&shared))));
            meridian_metrics::start(&shared.config.metrics, Arc::new(registry), Arc::new(|| {}))
                .await?
        } else {
            None
        };
        let (stop, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(shared.clone(), src_admin, dst_admin, stop_rx));
        Ok(Relay {
            shared,
            stop,
            supervisor,
            status,
            exporter,
        })
    }

    /// Where the Prometheus endpoint listens, when it runs.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.exporter.as_ref().map(|e| e.local_addr())
    }

    /// Where the status port listens.
    pub fn status_addr(&self) -> Option<std::net::SocketAddr> {
        self.status.as_ref().map(|s| s.local_addr())
    }

    /// The link's counters (see [`stats::LinkStats::table`]).
    pub fn stats(&self) -> std::collections::BTreeMap<String, String> {
        self.shared.stats.table()
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
        if let Some(s) = &self.status {
            s.stop();
        }
        self.shared.src.close_all();
        self.shared.dst.close_all();
    }
}

/// Look the link up every `routeRefreshIntervalMs`; start a stream for
/// every origin queue that appears, tell streams whose source or target
/// moved, stop those that are gone.
async fn supervise(shared: Arc<Shared>, src: Admin, dst: Admin, mut stop: watch::Receiver<bool>) {
    let mut streams: HashMap<StreamKey, (watch::Sender<Plan>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut summary = tokio::time::interval(Duration::from_secs(30));
    let mut last_error: Option<String> = None;
    let mut offset_sync =
        tokio::time::interval(Duration::from_millis(shared.config.offset_sync_ms));
    let mut offset_targets = Default::default();
    let mut membership: Option<share::Membership> = None;
    loop {
        match topology::look_up(&shared.config, &src, &dst).await {
            Ok(mut view) => {
                // This process's share of the link.
                let m = match membership.take() {
                    Some(m) if m.region == view.target_region => m,
                    _ => share::Membership::new(
                        &shared.config.replication_group,
                        &view.target_region,
                    ),
                };
                let members = m.members(&shared, &view.source_addrs).await;
                if *shared.stats.members.lock() != members {
                    tracing::info!(group = %m.group, me = %m.client_id, ?members, "relay group members");
                    *shared.stats.members.lock() = members.clone();
                }
                view.plans
                    .retain(|(topic, origin), _| m.owns(&members, &format!("{topic}/{origin}")));
                view.offset_targets
                    .retain(|(topic, addr, q), _| m.owns(&members, &format!("{topic}@{addr}/{q}")));
                membership = Some(m);
                *shared.relayed.write() = std::mem::take(&mut view.topics);
                offset_targets = std::mem::take(&mut view.offset_targets);
                if last_error.take().is_some() || streams.is_empty() && !view.plans.is_empty() {
                    tracing::info!(
                        source_region = ?view.source_region,
                        target_region = %view.target_region,
                        streams = view.plans.len(),
                        "relay link up"
                    );
                }
                streams.retain(|key, (_, task)| {
                    let keep = view.plans.contains_key(key) && !task.is_finished();
                    if !keep {
                        tracing::info!(topic = %key.0, origin = %key.1, "stream no longer relayed");
                        task.abort();
                    }
                    keep
                });
                for (key, plan) in view.plans {
                    match streams.get(&key) {
                        Some((tx, _)) => {
                            tx.send_if_modified(|cur| {
                                let changed = *cur != plan;
                                if changed {
                                    tracing::info!(topic = %key.0, origin = %key.1, source = %plan.source_addr, target = %plan.target_addr, "stream moved");
                                    *cur = plan.clone();
                                }
                                changed
                            });
                        }
                        None => {
                            tracing::info!(topic = %key.0, origin = %key.1, source = %plan.source_addr, target = %plan.target_addr, "stream started");
                            let (tx, rx) = watch::channel(plan);
                            let stats = shared.stats.stream(&key);
                            let task =
                                tokio::spawn(stream::run(shared.clone(), key.clone(), rx, stats));
                            streams.insert(key, (tx, task));
                        }
                    }
                }
                shared.stats.retain(|k| streams.contains_key(k));
            }
            Err(e) => {
                // A TLS-only server closes a plaintext connection without
                // an answer; say what that most likely means.
                let closed = matches!(
                    e.downcast_ref::<meridian_client::ClientError>(),
                    Some(meridian_client::ClientError::Remoting(
                        meridian_remoting::RemotingError::Closed { .. }
                    ))
                );
                let mut e = e.to_string();
                if closed && !shared.config.tls.links_use_tls() {
                    e.push_str(
                        " (a server whose tls.server.mode is enforcing closes plaintext connections: set tls.enable=true in relay.conf)",
                    );
                }
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot look up the relay link; streams keep their last plan");
                }
                last_error = Some(e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(shared.config.refresh_ms)) => {}
            _ = offset_sync.tick() => {
                offsets::carry(&shared, &offset_targets).await;
            }
            _ = summary.tick() => {
                let t = shared.stats.table();
                let totals: Vec<String> = t
                    .iter()
                    .filter(|(k, _)| k.matches('.').count() == 2)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                tracing::info!(streams = streams.len(), "{}", totals.join(" "));
            }
            _ = stop.changed() => break,
        }
    }
    for (_, (_, task)) in streams {
        task.abort();
    }
}

/// The status port: GET_BROKER_RUNTIME_INFO answers the link's counters.
struct StatusHandler {
    shared: Arc<Shared>,
}

impl Handler for StatusHandler {
    fn handle(&self, _conn: &Arc<Connection>, req: RemotingCommand) -> Reply {
        let response = match req.code {
            request_code::GET_BROKER_RUNTIME_INFO => {
                let mut table: HashMap<String, String> =
                    self.shared.stats.table().into_iter().collect();
                table.insert(
                    "replicationGroup".into(),
                    self.shared.config.replication_group.clone(),
                );
                table.insert(
                    "srcClusterAddr".into(),
                    self.shared.config.src_namesrv.clone(),
                );
                table.insert(
                    "destClusterAddr".into(),
                    self.shared.config.dest_namesrv.clone(),
                );
                match serde_json::to_vec(&KVTable { table }) {
                    Ok(body) => req
                        .response_to(response_code::SUCCESS, None)
                        .with_body(body),
                    Err(e) => req.response_to(response_code::SYSTEM_ERROR, Some(e.to_string())),
                }
            }
            code => req.response_to(
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(
                    "the relay's status port does not serve request code {code}"
                )),
            ),
        };
        Reply::Now(Some(response))
    }
}

/// The relay's values read at scrape time, per link and topic.
struct RelayCollector(std::sync::Weak<Shared>);

impl std::fmt::Debug for RelayCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct LinkTopic {
    /// The link: `replicationGroup`, one per source and target pair.
    link: String,
    topic: String,
}

impl meridian_metrics::prometheus_client::collector::Collector for RelayCollector {
    fn encode(
        &self,
        encoder: meridian_metrics::prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let Some(shared) = self.0.upgrade() else {
            return Ok(());
        };
        let link = &shared.config.replication_group;
        let (mut relayed, mut present, mut lag, mut lag_s) = (vec![], vec![], vec![], vec![]);
        for (topic, (a, p, l, ms)) in shared.stats.per_topic() {
            let labels = LinkTopic {
                link: link.clone(),
                topic,
            };
            relayed.push((labels.clone(), a));
            present.push((labels.clone(), p));
            lag.push((labels.clone(), l));
            lag_s.push((labels, ms as f64 / 1000.0));
        }
        let mut s = meridian_metrics::Scrape(encoder);
        s.counters(
            "meridian_relay_messages",
            "Records this relay stored in the target's copy queues, by link and topic",
            &relayed,
        )?;
        s.counters(
            "meridian_relay_present",
            "Records the target already held (another path, a resend), by link and topic",
            &present,
        )?;
        s.gauges(
            "meridian_relay_lag_messages",
            "Records in the source not yet in the target's copy, by link and topic",
            &lag,
        )?;
        s.gauges(
            "meridian_relay_lag_seconds",
            "Source store time to target store time of the last record relayed, by link and topic (0 when caught up)",
            &lag_s,
        )?;
        s.counter(
            "meridian_relay_offsets_carried",
            "Consumer offsets carried to the target",
            shared
                .stats
                .offsets_carried
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}
