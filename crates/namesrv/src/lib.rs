//! The name server: the registry that tells clients which brokers serve a
//! topic.
//!
//! - [`config`] — `namesrv.conf` keys.
//! - [`routes`] — the route table: brokers, clusters, topics and their
//!   queues, and when each broker was last heard from.
//! - [`processor`] — the remoting requests the name server answers.
//!
//! The name server keeps nothing on disk: brokers register every 30 s and
//! whenever their topics change, so a restarted name server is complete
//! again within one registration period. Run several; brokers register with
//! each.

pub mod config;
pub mod processor;
pub mod regions;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::NamesrvConfig;

/// A running name server.
pub struct NameServer {
    server: meridian_remoting::Server,
    routes: Arc<routes::RouteTable>,
    scan: tokio::task::JoinHandle<()>,
    regions: Option<(Arc<regions::Regions>, tokio::task::JoinHandle<()>)>,
    /// The Prometheus endpoint, when `metricsExporterType=PROM`.
    exporter: Option<meridian_metrics::Exporter>,
}

impl NameServer {
    /// Bind and start serving.
    pub async fn start(config: NamesrvConfig) -> anyhow::Result<NameServer> {
        let routes = Arc::new(routes::RouteTable::default());
        let regions = match &config.regions {
            Some(cfg) => {
                let connector = config
                    .tls
                    .connector()
                    .map_err(|e| anyhow::anyhow!("name server TLS: {e}"))?;
                let ip = if config.listen_ip.is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    config.listen_ip
                };
                let me = format!("{ip}:{}", config.listen_port);
                Some(Arc::new(regions::Regions::new(
                    cfg.clone(),
                    me,
                    routes.clone(),
                    connector,
                )?))
            }
            None => None,
        };
        let mut handler: Arc<dyn meridian_remoting::Handler> = Arc::new(
            processor::NamesrvProcessor::new(routes.clone())
                .with_config(config.to_properties())
                .with_regions(regions.clone()),
        );
        let exporter = if config.metrics.enabled() {
            let node = meridian_metrics::Node {
                cluster: String::new(),
                node_type: "namesrv",
                node_id: format!("namesrv-{}", config.listen_port),
            };
            let mut registry = meridian_metrics::registry(&node, &config.metrics);
            handler = meridian_metrics::observed(
                handler,
                meridian_metrics::RpcMetrics::register(&mut registry),
            );
            registry.register_collector(Box::new(RouteCollector(
                Arc::downgrade(&routes),
                regions.as_ref().map(Arc::downgrade),
            )));
            meridian_metrics::start(&config.metrics, Arc::new(registry), Arc::new(|| {})).await?
        } else {
            None
        };
        let addr = SocketAddr::new(config.listen_ip, config.listen_port);
        let acceptor = config
            .tls
            .acceptor()
            .map_err(|e| anyhow::anyhow!("name server TLS: {e}"))?;
        let server =
            meridian_remoting::server::serve_with(addr, handler, Default::default(), acceptor)
                .await
                .map_err(|e| anyhow::anyhow!("name server cannot listen on {addr}: {e}"))?;
        let scan_routes = routes.clone();
        let scan = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                scan_routes.expire_silent_brokers();
            }
        });
        let regions = regions.map(|r| {
            let task = tokio::spawn(r.clone().run());
            (r, task)
        });
        tracing::info!(addr = %server.local_addr(), "name server listening");
        Ok(NameServer {
            server,
            routes,
            scan,
            regions,
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

    pub fn routes(&self) -> &Arc<routes::RouteTable> {
        &self.routes
    }

    /// This name server's part in the regions, with `regionPeers`.
    pub fn regions(&self) -> Option<&Arc<regions::Regions>> {
        self.regions.as_ref().map(|(r, _)| r)
    }

    pub fn stop(&self) {
        self.server.stop();
        self.scan.abort();
        if let Some((_, task)) = &self.regions {
            task.abort();
        }
    }
}

/// The name server's values read at scrape time: brokers and topics it
/// routes, by cluster; with regions, its view of each other region and the
/// verdicts.
struct RouteCollector(
    std::sync::Weak<routes::RouteTable>,
    Option<std::sync::Weak<regions::Regions>>,
);

impl std::fmt::Debug for RouteCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RegionLabels {
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct MovedLabels {
    region: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ClusterLabels {
    broker_cluster: String,
}

impl meridian_metrics::prometheus_client::collector::Collector for RouteCollector {
    fn encode(
        &self,
        encoder: meridian_metrics::prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let Some(routes) = self.0.upgrade() else {
            return Ok(());
        };
        let mut per_cluster: std::collections::BTreeMap<String, i64> = Default::default();
        for (_, cluster, _, _) in routes.live_brokers() {
            *per_cluster.entry(cluster).or_default() += 1;
        }
        let brokers: Vec<(ClusterLabels, i64)> = per_cluster
            .into_iter()
            .map(|(broker_cluster, n)| (ClusterLabels { broker_cluster }, n))
            .collect();
        let mut s = meridian_metrics::Scrape(encoder);
        s.gauges(
            "meridian_namesrv_live_brokers",
            "Broker processes registered and not expired, by cluster",
            &brokers,
        )?;
        s.gauge(
            "meridian_namesrv_topics",
            "Topics this name server routes",
            routes.topics().len() as i64,
        )?;
        let Some(regions) = self.1.as_ref().and_then(|r| r.upgrade()) else {
            return Ok(());
        };
        let status = regions.status();
        let per_region = |f: &dyn Fn(&str) -> i64| -> Vec<(RegionLabels, i64)> {
            status
                .verdicts
                .keys()
                .map(|r| (RegionLabels { region: r.clone() }, f(r)))
                .collect()
        };
        let view = |r: &str| status.report.views.get(r).cloned().unwrap_or_default();
        s.gauges(
            "meridian_region_down",
            "1 when every signal of the region (name servers, brokers, canary) has been silent for regionFailureTimeoutMs, as this name server sees it",
            &per_region(&|r| view(r).down as i64),
        )?;
        s.gauges(
            "meridian_region_failed",
            "1 when observers of a majority of all regions see the region down (the verdict)",
            &per_region(&|r| status.verdicts[r].failed as i64),
        )?;
        s.gauges(
            "meridian_region_failover_pending",
            "1 when the region failed and its clients are not yet moved (semi and manual modes wait for meridian admin switchover)",
            &per_region(&|r| status.verdicts[r].pending as i64),
        )?;
        s.gauges(
            "meridian_region_canary_age_seconds",
            "Seconds since the newest canary of the region arrived here (-1: none yet)",
            &per_region(&|r| {
                let seen = view(r).canary_seen_ms;
                if seen > 0 {
                    (status.report.now_ms - seen) / 1000
                } else {
                    -1
                }
            }),
        )?;
        s.gauges(
            "meridian_region_canary_lag_milliseconds",
            "Send to arrival of the newest canary of the region: the relays' end-to-end lag into this region",
            &per_region(&|r| {
                let v = view(r);
                if v.canary_seen_ms > 0 {
                    v.canary_seen_ms - v.canary_sent_ms
                } else {
                    0
                }
            }),
        )?;
        let moved: Vec<(MovedLabels, i64)> = status
            .report
            .state
            .moved
            .iter()
            .map(|(r, t)| {
                (
                    MovedLabels {
                        region: r.clone(),
                        target: t.clone(),
                    },
                    1,
                )
            })
            .collect();
        s.gauges(
            "meridian_region_moved",
            "1 for each region whose clients are routed to another region (target)",
            &moved,
        )?;
        s.gauge(
            "meridian_region_routing_epoch",
            "Epoch of the region routing state this name server holds",
            status.report.state.epoch as i64,
        )
    }
}
