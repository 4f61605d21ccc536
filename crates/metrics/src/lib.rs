//! Prometheus metrics of every Meridian process: the exporter (an HTTP
//! endpoint answering `GET /metrics` in the OpenMetrics text format, set up
//! with RocketMQ 5's keys), the labels every series carries, and the RPC
//! latency that every remoting server records in front of its handlers.
//!
//! Each process builds one [`Registry`] with [`registry`], registers its own
//! metrics in it, and hands it to [`start`]. Counters and histograms are
//! updated where things happen (an atomic add); values that are cheaper to
//! read than to track — lags, sizes, connections — are read by the
//! process's refresh function just before each scrape is encoded.
//!
//! Names and labels follow RocketMQ 5's (`rocketmq_rpc_latency`, labels
//! `cluster`, `node_type`, `node_id`); Meridian's own series are named
//! `meridian_*`. The text format itself is written by `prometheus-client`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use meridian_protocol::RemotingCommand;
use meridian_remoting::conf::{Conf, ConfError};
use meridian_remoting::{Connection, Handler, Reply};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

pub use prometheus_client;
pub use prometheus_client::registry::Registry;

/// `metricsExporterType`: RocketMQ 5 knows DISABLE, OTLP_GRPC, PROM and
/// LOG; Meridian serves DISABLE and PROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterType {
    Disable,
    Prom,
}

/// The exporter's settings, read from broker.conf, namesrv.conf or
/// relay.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metricsExporterType` (DISABLE).
    pub exporter: ExporterType,
    /// `metricsPromExporterHost`: the address to listen on (all).
    pub host: IpAddr,
    /// `metricsPromExporterPort` (5557; 0 picks a free port).
    pub port: u16,
    /// `metricsLabel`: constant labels added to every series,
    /// `key:value,key:value`.
    pub labels: Vec<(String, String)>,
}

/// RocketMQ 5's default `metricsPromExporterPort`.
pub const DEFAULT_PORT: u16 = 5557;

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            exporter: ExporterType::Disable,
            host: IpAddr::from([0, 0, 0, 0]),
            port: DEFAULT_PORT,
            labels: Vec::new(),
        }
    }
}

impl MetricsConfig {
    /// Read the exporter keys from `conf`.
    pub fn from_conf(conf: &mut Conf) -> Result<MetricsConfig, ConfError> {
        let mut c = MetricsConfig::default();
        let invalid = |key: &str, value: &str, reason: &str| ConfError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if let Some(v) = conf.str("metricsExporterType") {
            c.exporter = match v.trim().to_ascii_uppercase().as_str() {
                "DISABLE" | "" => ExporterType::Disable,
                "PROM" => ExporterType::Prom,
                "OTLP_GRPC" | "LOG" => {
                    return Err(invalid(
                        "metricsExporterType",
                        &v,
                        "Meridian exports metrics for Prometheus only: use PROM (or DISABLE)",
                    ))
                }
                _ => {
                    return Err(invalid(
                        "metricsExporterType",
                        &v,
                        "expected DISABLE or PROM",
                    ))
                }
            };
        }
        if let Some(v) = conf.str("metricsPromExporterHost") {
            let v = v.trim();
            if !v.is_empty() {
                c.host = v
                    .parse()
                    .map_err(|_| invalid("metricsPromExporterHost", v, "not an IP address"))?;
            }
        }
        if let Some(p) = conf.get::<u16>("metricsPromExporterPort")? {
            c.port = p;
        }
        if let Some(v) = conf.str("metricsLabel") {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((k, val)) = pair.split_once(':') else {
                    return Err(invalid("metricsLabel", &v, "expected key:value,key:value"));
                };
                let k = k.trim();
                let name_ok = k
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !name_ok {
                    return Err(invalid(
                        "metricsLabel",
                        &v,
                        "a label name is letters, digits and '_', not starting with a digit",
                    ));
                }
                c.labels.push((k.to_string(), val.trim().to_string()));
            }
        }
        conf.accept(&[
            "metricsGrpcExporterTarget",
            "metricsGrpcExporterHeader",
            "metricGrpcExporterTimeOutInMills",
            "metricGrpcExporterIntervalInMills",
            "metricLoggingExporterIntervalInMills",
            "metricsInDelta",
        ]);
        Ok(c)
    }

    pub fn enabled(&self) -> bool {
        self.exporter == ExporterType::Prom
    }
}

/// Which process a series comes from: RocketMQ 5's `cluster`, `node_type`
/// and `node_id` labels.
#[derive(Debug, Clone)]
pub struct Node {
    pub cluster: String,
    /// `broker`, `namesrv` or `relay`.
    pub node_type: &'static str,
    pub node_id: String,
}

/// A registry whose every series carries `node`'s labels and the
/// `metricsLabel` ones.
pub fn registry(node: &Node, config: &MetricsConfig) -> Registry {
    let mut labels: Vec<(
        std::borrow::Cow<'static, str>,
        std::borrow::Cow<'static, str>,
    )> = vec![
        ("cluster".into(), node.cluster.clone().into()),
        ("node_type".into(), node.node_type.into()),
        ("node_id".into(), node.node_id.clone().into()),
    ];
    for (k, v) in &config.labels {
        labels.push((k.clone().into(), v.clone().into()));
    }
    Registry::with_labels(labels.into_iter())
}

/// What the exporter calls before it encodes a scrape: set the gauges read
/// at scrape time.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// A running exporter; it stops when dropped.
pub struct Exporter {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Where it listens (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start the exporter `config` asks for (none when it is disabled).
pub async fn start(
    config: &MetricsConfig,
    registry: Arc<Registry>,
    refresh: Refresh,
) -> std::io::Result<Option<Exporter>> {
    if !config.enabled() {
        return Ok(None);
    }
    let addr = SocketAddr::new(config.host, config.port);
    let exporter = serve(addr, registry, refresh).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("metrics exporter cannot listen on {addr} (metricsPromExporterPort): {e}"),
        )
    })?;
    tracing::info!(addr = %exporter.local_addr(), "Prometheus metrics at http://{}/metrics", exporter.local_addr());
    Ok(Some(exporter))
}

/// Serve `GET /metrics` on `addr`.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    refresh: Refresh,
) -> std::io::Result<Exporter> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics exporter: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (registry, refresh) = (Arc::clone(&registry), Arc::clone(&refresh));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (registry, refresh) = (Arc::clone(&registry), Arc::clone(&refresh));
                    async move { Ok::<_, Infallible>(answer(&req, &registry, &refresh)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "metrics exporter: connection ended");
                }
            });
        }
    });
    Ok(Exporter { addr, task })
}

/// The OpenMetrics content type Prometheus asks for first.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn answer<B>(req: &Request<B>, registry: &Registry, refresh: &Refresh) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Meridian serves its metrics at /metrics\n".to_string(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".to_string(),
        );
    }
    refresh();
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(StatusCode::OK, CONTENT_TYPE, text),
        Err(e) => {
            tracing::error!(error = %e, "metrics exporter: cannot encode the metrics");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "cannot encode the metrics\n".to_string(),
            )
        }
    }
}

/// Labels of `rocketmq_rpc_latency`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub protocol_type: &'static str,
    pub request_code: i32,
    pub response_code: i32,
}

/// A histogram of fixed buckets updated with atomic adds only (no lock on
/// the request path), encoded at scrape time.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// One per bound, and one for larger values.
    buckets: Box<[AtomicU64]>,
    /// Sum of the observations, in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&le| v <= le)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Write this histogram's samples.
    pub fn encode(&self, mut m: MetricEncoder) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        m.encode_histogram::<NoLabelSet>(sum, self.count.load(Ordering::Relaxed), &buckets, None)
    }
}

/// Request latency by request and response code, as RocketMQ 5's
/// `rocketmq_rpc_latency` (milliseconds). A request looks its histogram up
/// under a read lock, by two integers, and adds atomically.
#[derive(Debug, Default)]
pub struct RpcMetrics {
    latency: RwLock<HashMap<(i32, i32), Arc<AtomicHistogram>>>,
}

/// Milliseconds: RocketMQ 5's RPC latency buckets.
const RPC_BUCKETS_MS: [f64; 9] = [1.0, 3.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0];

impl RpcMetrics {
    /// Register `rocketmq_rpc_latency` in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<RpcMetrics> {
        let rpc = Arc::new(RpcMetrics::default());
        registry.register_collector(Box::new(RpcCollector(Arc::clone(&rpc))));
        rpc
    }

    /// Record one answered request.
    pub fn observe(&self, request_code: i32, response_code: i32, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let key = (request_code, response_code);
        if let Some(h) = self.latency.read().get(&key) {
            h.observe(ms);
            return;
        }
        self.latency
            .write()
            .entry(key)
            .or_insert_with(|| Arc::new(AtomicHistogram::new(&RPC_BUCKETS_MS)))
            .observe(ms);
    }
}

#[derive(Debug)]
struct RpcCollector(Arc<RpcMetrics>);

impl Collector for RpcCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut m = encoder.encode_descriptor(
            "rocketmq_rpc_latency",
            "Remoting request latency in milliseconds, by request and response code",
            None,
            MetricType::Histogram,
        )?;
        let mut all: Vec<((i32, i32), Arc<AtomicHistogram>)> = self
            .0
            .latency
            .read()
            .iter()
            .map(|(k, h)| (*k, Arc::clone(h)))
            .collect();
        all.sort_by_key(|(k, _)| *k);
        for ((request_code, response_code), h) in all {
            let labels = RpcLabels {
                protocol_type: "remoting",
                request_code,
                response_code,
            };
            h.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// `handler` with every answered request's latency recorded in `rpc`
/// (oneway requests, which get no answer, are not).
pub fn observed(handler: Arc<dyn Handler>, rpc: Arc<RpcMetrics>) -> Arc<dyn Handler> {
    Arc::new(Observed {
        inner: handler,
        rpc,
    })
}

struct Observed {
    inner: Arc<dyn Handler>,
    rpc: Arc<RpcMetrics>,
}

impl Handler for Observed {
    fn handle(&self, conn: &Arc<Connection>, request: RemotingCommand) -> Reply {
        let started = Instant::now();
        let code = request.code;
        match self.inner.handle(conn, request) {
            Reply::Now(response) => {
                if let Some(r) = &response {
                    self.rpc.observe(code, r.code, started.elapsed());
                }
                Reply::Now(response)
            }
            Reply::Later(fut) => {
                let rpc = Arc::clone(&self.rpc);
                Reply::Later(Box::pin(async move {
                    let response = fut.await;
                    if let Some(r) = &response {
                        rpc.observe(code, r.code, started.elapsed());
                    }
                    response
                }))
            }
        }
    }

    fn on_close(&self, conn: &Arc<Connection>) {
        self.inner.on_close(conn)
    }
}

/// Register `metric` so that every scrape describes it (`# HELP`, `# TYPE`)
/// even before it has a sample: a family with no label set yet is
/// otherwise left out, and a dashboard could not tell a metric that is
/// not exported from one that has not happened.
pub fn register_described<M>(
    registry: &mut Registry,
    name: &'static str,
    help: &'static str,
    metric: M,
) where
    M: EncodeMetric + fmt::Debug + Send + Sync + 'static,
{
    registry.register_collector(Box::new(Described { name, help, metric }));
}

#[derive(Debug)]
struct Described<M> {
    name: &'static str,
    help: &'static str,
    metric: M,
}

impl<M> Collector for Described<M>
where
    M: EncodeMetric + fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = encoder.encode_descriptor(self.name, self.help, None, self.metric.metric_type())?;
        self.metric.encode(m)
    }
}

/// The label set of a sample without labels of its own, in
/// [`Scrape::gauges`] and [`Scrape::counters`].
pub type Unlabeled = [(&'static str, &'static str); 0];

/// Values read at scrape time, written by a [`Collector`]: a thin layer
/// over `prometheus-client`'s descriptor encoder for the shapes Meridian
/// uses (a gauge or counter, alone or by labels).
///
/// [`Collector`]: prometheus_client::collector::Collector
pub struct Scrape<'a>(pub DescriptorEncoder<'a>);

impl Scrape<'_> {
    /// One gauge without labels.
    pub fn gauge<V: EncodeGaugeValue>(&mut self, name: &str, help: &str, v: V) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        m.encode_gauge(&v)
    }

    /// A gauge per label set. The family is described even when it has
    /// no samples, so a scrape always lists every family.
    pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(L, V)],
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in samples {
            m.encode_family(labels)?.encode_gauge(v)?;
        }
        Ok(())
    }

    /// One counter without labels; `name` without `_total`, which the
    /// format adds.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        m.encode_counter::<NoLabelSet, u64, u64>(&v, None)
    }

    /// A counter per label set (described even with no samples).
    pub fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(L, u64)],
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in samples {
            m.encode_family(labels)?
                .encode_counter::<NoLabelSet, u64, u64>(v, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Result<MetricsConfig, ConfError> {
        MetricsConfig::from_conf(&mut Conf::parse(text))
    }

    #[test]
    fn rocketmq_keys_set_the_exporter() {
        assert!(!conf("").unwrap().enabled());
        let c = conf(
            "metricsExporterType=PROM\nmetricsPromExporterHost=127.0.0.1\n\
             metricsPromExporterPort=9557\nmetricsLabel=region:east, dc:a1\n",
        )
        .unwrap();
        assert!(c.enabled());
        assert_eq!(c.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.port, 9557);
        assert_eq!(
            c.labels,
            vec![
                ("region".to_string(), "east".to_string()),
                ("dc".to_string(), "a1".to_string())
            ]
        );
        assert_eq!(conf("metricsExporterType=prom").unwrap().port, DEFAULT_PORT);
    }

    #[test]
    fn exporters_meridian_lacks_and_bad_values_are_refused_by_key() {
        for (text, key) in [
            ("metricsExporterType=OTLP_GRPC", "metricsExporterType"),
            ("metricsExporterType=FILE", "metricsExporterType"),
            ("metricsPromExporterHost=east", "metricsPromExporterHost"),
            ("metricsPromExporterPort=70000", "metricsPromExporterPort"),
            ("metricsLabel=region", "metricsLabel"),
            ("metricsLabel=9x:y", "metricsLabel"),
        ] {
            let e = conf(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_endpoint_serves_described_families_with_the_node_labels() {
        let node = Node {
            cluster: "c1".into(),
            node_type: "broker",
            node_id: "broker-a".into(),
        };
        let config = conf("metricsLabel=region:east").unwrap();
        let mut registry = registry(&node, &config);
        let rpc = RpcMetrics::register(&mut registry);
        let refreshed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&refreshed);
        let exporter = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(registry),
            Arc::new(move || {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
        )
        .await
        .unwrap();
        // Described before any request was timed.
        let before = get(exporter.local_addr(), "/metrics").await;
        assert!(
            before.starts_with("HTTP/1.0 200") || before.starts_with("HTTP/1.1 200"),
            "{before}"
        );
        assert!(
            before.contains("# TYPE rocketmq_rpc_latency histogram"),
            "{before}"
        );
        rpc.observe(310, 0, Duration::from_millis(2));
        let after = get(exporter.local_addr(), "/metrics").await;
        let count_line = after
            .lines()
            .find(|l| l.starts_with("rocketmq_rpc_latency_count"))
            .unwrap_or_else(|| panic!("{after}"));
        for label in [
            "cluster=\"c1\"",
            "node_type=\"broker\"",
            "node_id=\"broker-a\"",
            "region=\"east\"",
            "request_code=\"310\"",
            "response_code=\"0\"",
        ] {
            assert!(count_line.contains(label), "{label} missing: {count_line}");
        }
        assert!(count_line.ends_with(" 1"), "{count_line}");
        assert_eq!(refreshed.load(std::sync::atomic::Ordering::SeqCst), 2);
        let elsewhere = get(exporter.local_addr(), "/").await;
        assert!(elsewhere.contains(" 404 "), "{elsewhere}");
    }
}
