//! Prometheus metrics, with real processes: two regions (a name server and
//! a broker each) and a relay between them export `/metrics`
//! (`metricsExporterType=PROM`), a real Prometheus server (Debian's
//! `prometheus`, which `scripts/test` installs) scrapes them and loads
//! the alert rules in `ops/prometheus/alerts.yml`, and its HTTP API is asked
//! for the series that known traffic from stock clients must produce. The
//! Grafana dashboard and the alert rules are checked to name only series
//! the endpoints export.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{DefaultMQProducer, MQPushConsumer, SendStatus};
use support::regions::{Region, Relay};
use support::{free_port, message, push_consumer, start_producer, unique, Inbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `metricsExporterType=PROM` on a free port; returns the conf lines and
/// the port.
fn exporter() -> (String, u16) {
    let port = free_port();
    (
        format!("metricsExporterType=PROM\nmetricsPromExporterHost=127.0.0.1\nmetricsPromExporterPort={port}\n"),
        port,
    )
}

/// Two regions exporting metrics, and a relay from east to west for
/// `topic`: (east, west, relay, the four endpoints as `(name, port)`).
fn regions_with_metrics(
    topic: &str,
    dir: &Path,
) -> (Region, Region, Relay, Vec<(&'static str, u16)>) {
    let (ns_conf, ns_port) = exporter();
    // East's name server watches a west region (whose name server is not
    // running here): its region verdict families are exported too.
    let ns_conf = format!(
        "{ns_conf}regionId=east\nregionPeers=west=127.0.0.1:{}\nregionStatePath={}\n\
         regionProbeIntervalMs=200\nregionFailureTimeoutMs=1000\nregionCanaryIntervalMs=0\n",
        free_port(),
        dir.join("regionState.json").display()
    );
    let (east_conf, east_port) = exporter();
    let (west_conf, west_port) = exporter();
    let (relay_conf, relay_port) = exporter();
    let east = Region::start_with_namesrv("east", &ns_conf, &east_conf);
    let west = Region::start("west", &west_conf);
    east.create_topic(topic, 4);
    west.create_topic(topic, 4);
    let relay = Relay::start(dir, &east, &west, topic, &relay_conf);
    let endpoints = vec![
        ("east-namesrv", ns_port),
        ("east-broker", east_port),
        ("west-broker", west_port),
        ("relay", relay_port),
    ];
    (east, west, relay, endpoints)
}

/// `GET path` on 127.0.0.1:`port`; the status code and body.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no answer within 10 s"))??;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Percent-encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `targets` every second, with Meridian's
/// alert rules loaded; stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[(&str, u16)]) -> Prometheus {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/prometheus/alerts.yml");
        let targets: Vec<String> = targets
            .iter()
            .map(|(name, port)| {
                format!(
                    "      - targets: ['127.0.0.1:{port}']\n        labels: {{ endpoint: '{name}' }}"
                )
            })
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - '{}'\n\
                 scrape_configs:\n  - job_name: meridian\n    static_configs:\n{}\n",
                rules.display(),
                targets.join("\n")
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create prometheus.log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `prometheus` ({e}): install Debian's package `prometheus` (scripts/test does)")
            });
        Prometheus { child, port, log }
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(self.port, "/-/ready").await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An instant query: each series' labels and value.
    async fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let Ok((200, body)) = http_get(self.port, &path).await else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .filter_map(|s| {
                        let labels = s["metric"]
                            .as_object()?
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect();
                        let value = s["value"][1].as_str()?.parse().ok()?;
                        Some((labels, value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until `expr` has exactly one series whose value is `want`.
    async fn expect(&self, expr: &str, want: f64) {
        self.expect_between(expr, want, want).await
    }

    /// Wait until `expr` has exactly one series, of a value in `lo..=hi`.
    async fn expect_between(&self, expr: &str, lo: f64, hi: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.query(expr).await;
            if got.len() == 1 && got[0].1 >= lo - 1e-9 && got[0].1 <= hi + 1e-9 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus query `{expr}`: expected one series of value {lo}..={hi}, got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `n` messages of 100-byte bodies; returns the bodies.
async fn produce(producer: &DefaultMQProducer, topic: &str, from: usize, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for i in from..from + n {
        let body = format!("{i:0100}");
        let r = producer
            .send(message(topic, "TagA", &format!("k{i}"), &body, &[]))
            .await
            .expect("send")
            .expect("a send result");
        assert_eq!(r.send_status, SendStatus::SendOk);
        bodies.push(body);
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_brokers_name_servers_and_relays_and_sees_the_traffic() {
    let topic = unique("metrics");
    let group = unique("metrics-group");
    let dir = tempfile::tempdir().expect("temp dir");
    let (east, _west, _relay, endpoints) = regions_with_metrics(&topic, dir.path());
    let mut prometheus = Prometheus::start(dir.path(), &endpoints);
    prometheus.ready().await;

    // Known traffic: 40 messages of 100 bytes into east; a group
    // consumes them all and stops; 10 more arrive while it is away.
    let mut producer = start_producer(&east.namesrv()).await;
    let first = produce(&producer, &topic, 0, 40).await;
    let inbox = Inbox::new();
    let mut consumer = push_consumer(&east.namesrv(), &group).build();
    consumer.subscribe(&topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    inbox.expect_exactly_once(&first).await;
    consumer.shutdown().await;
    // It committed all it pulled before it stopped: nothing in flight.
    // (Checked before more messages arrive: a pull still waiting at the
    // broker when the client went away is answered with them, and counts.)
    prometheus.ready().await;
    prometheus
        .expect(
            &format!(
                "sum(rocketmq_consumer_inflight_messages{{node_id=\"broker-east\", topic=\"{topic}\", consumer_group=\"{group}\"}})"
            ),
            0.0,
        )
        .await;
    produce(&producer, &topic, 40, 10).await;

    // Every endpoint is scraped.
    prometheus
        .expect("count(up{job=\"meridian\"} == 1)", 4.0)
        .await;
    let t = format!("topic=\"{topic}\"");
    let g = format!("consumer_group=\"{group}\"");
    let east_broker = "node_type=\"broker\", node_id=\"broker-east\"";
    // In, by topic and message type, in messages and bytes.
    prometheus
        .expect(
            &format!(
                "sum(rocketmq_messages_in_total{{{east_broker}, {t}, message_type=\"Normal\"}})"
            ),
            50.0,
        )
        .await;
    prometheus
        .expect(
            &format!("sum(rocketmq_throughput_in_total{{{east_broker}, {t}}})"),
            5000.0,
        )
        .await;
    // Out to the group: every message, counted per pull answered (as
    // RocketMQ counts it), so a queue pulled again from an offset the
    // client had not committed yet counts again.
    prometheus
        .expect_between(
            &format!("sum(rocketmq_messages_out_total{{{east_broker}, {t}, {g}}})"),
            40.0,
            50.0,
        )
        .await;
    // The group's lag: the 10 sent while it was away, the oldest waiting
    // for some milliseconds.
    prometheus
        .expect(
            &format!("sum(rocketmq_consumer_lag_messages{{{east_broker}, {t}, {g}}})"),
            10.0,
        )
        .await;
    let waited = prometheus
        .query(&format!(
            "rocketmq_consumer_lag_latency{{{east_broker}, {t}, {g}}}"
        ))
        .await;
    assert!(
        waited.len() == 1 && waited[0].1 > 0.0,
        "lag latency of the group: {waited:?}"
    );
    // Sends answered SUCCESS, in the latency histogram by request code
    // (SEND_MESSAGE = 10, SEND_MESSAGE_V2 = 310) and response code.
    prometheus
        .expect(&format!("sum(rocketmq_rpc_latency_count{{{east_broker}, request_code=~\"10|310\", response_code=\"0\"}})"), 50.0)
        .await;
    // The relay copied all 50 to west, and is not behind.
    prometheus
        .expect(
            &format!("sum(meridian_relay_messages_total{{node_type=\"relay\", {t}}})"),
            50.0,
        )
        .await;
    prometheus
        .expect(
            &format!("sum(meridian_relay_lag_messages{{node_type=\"relay\", {t}}})"),
            0.0,
        )
        .await;
    prometheus
        .expect(
            "sum(meridian_relay_appended_total{node_type=\"broker\", node_id=\"broker-west\"})",
            50.0,
        )
        .await;
    // The name server routes one live broker of the cluster, and times
    // the brokers' registrations (REGISTER_BROKER = 103).
    prometheus
        .expect("meridian_namesrv_live_brokers{node_type=\"namesrv\", broker_cluster=\"DefaultCluster\"}", 1.0)
        .await;
    let registrations = prometheus
        .query("sum(rocketmq_rpc_latency_count{node_type=\"namesrv\", request_code=\"103\"})")
        .await;
    assert!(
        registrations.len() == 1 && registrations[0].1 >= 1.0,
        "registrations timed by the name server: {registrations:?}"
    );
    // The alert rules loaded and are evaluated: none fires here.
    let rules = http_get(prometheus.port, "/api/v1/rules")
        .await
        .expect("rules");
    let rules: serde_json::Value = serde_json::from_str(&rules.1).expect("rules JSON");
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .map(|g| g["rules"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    assert!(loaded >= 10, "alert rules loaded: {rules}");
    let firing = prometheus
        .query("ALERTS{alertstate=\"firing\", alertname!=\"MeridianDiskFilling\"}")
        .await;
    assert!(firing.is_empty(), "alerts firing: {firing:?}");
    producer.shutdown().await;
}

/// Metric names in `text` (`rocketmq_…` and `meridian_…` words).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("rocketmq_") || w.starts_with("meridian_"))
        .map(str::to_string)
        .collect()
}

/// The family a sample or query name belongs to: without the suffixes
/// the text format adds to counters and histograms.
fn family_of<'a>(name: &'a str, families: &BTreeSet<String>) -> Option<&'a str> {
    if families.contains(name) {
        return Some(name);
    }
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| families.contains(*base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alert_rules_name_only_exported_metrics() {
    let topic = unique("metrics-names");
    let dir = tempfile::tempdir().expect("temp dir");
    let (_east, _west, _relay, endpoints) = regions_with_metrics(&topic, dir.path());
    // Every family each endpoint describes (`# TYPE name kind`), also
    // those with no samples yet.
    let mut families = BTreeSet::new();
    for (name, port) in &endpoints {
        let deadline = Instant::now() + Duration::from_secs(30);
        let body = loop {
            match http_get(*port, "/metrics").await {
                Ok((200, body)) => break body,
                other => {
                    assert!(Instant::now() < deadline, "{name} /metrics: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let described: Vec<String> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        assert!(!described.is_empty(), "{name} describes no metric: {body}");
        families.extend(described);
    }
    for required in [
        "rocketmq_messages_in",
        "rocketmq_messages_out",
        "rocketmq_throughput_in",
        "rocketmq_throughput_out",
        "rocketmq_consumer_lag_messages",
        "rocketmq_consumer_lag_latency",
        "rocketmq_consumer_inflight_messages",
        "rocketmq_rpc_latency",
        "rocketmq_storage_size",
        "rocketmq_storage_flush_behind_bytes",
        "rocketmq_storage_dispatch_behind_bytes",
        "rocketmq_send_to_dlq_messages",
        "rocketmq_producer_connections",
        "rocketmq_consumer_connections",
        "meridian_ha_replication_lag_bytes",
        "meridian_ha_replication_lag_seconds",
        "meridian_raft_replication_lag_bytes",
        "meridian_raft_replication_lag_seconds",
        "meridian_raft_term",
        "meridian_raft_role_changes",
        "meridian_relay_messages",
        "meridian_relay_lag_messages",
        "meridian_relay_lag_seconds",
        "meridian_relay_present",
        "meridian_storage_flush_latency_seconds",
        "meridian_storage_page_cache_releases",
        "meridian_region_down",
        "meridian_region_failed",
        "meridian_region_failover_pending",
        "meridian_region_canary_age_seconds",
        "meridian_region_canary_lag_milliseconds",
        "meridian_region_moved",
    ] {
        assert!(
            families.contains(required),
            "no endpoint describes {required}: {families:?}"
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard =
        std::fs::read_to_string(root.join("ops/grafana/meridian.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut exprs = Vec::new();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            titles.push(panel["title"].as_str().unwrap_or_default().to_string());
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap_or_default().to_string());
        }
    }
    for section in [
        "Overview",
        "Per topic",
        "Per consumer group",
        "Replication inside a region",
        "Relay between regions",
        "Regions",
    ] {
        assert!(
            titles.iter().any(|t| t == section),
            "no `{section}` row in the dashboard: {titles:?}"
        );
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        exprs.push(var["definition"].as_str().unwrap_or_default().to_string());
    }
    let rules =
        std::fs::read_to_string(root.join("ops/prometheus/alerts.yml")).expect("alert rules");
    let rule_exprs: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert!(rule_exprs.len() >= 10, "alert rules: {rule_exprs:?}");
    let mut named = BTreeSet::new();
    for expr in exprs.iter().map(String::as_str).chain(rule_exprs) {
        for name in metric_names(expr) {
            assert!(
                family_of(&name, &families).is_some(),
                "`{expr}` names {name}, which no endpoint exports; exported: {families:?}"
            );
            named.insert(name);
        }
    }
    assert!(
        named.len() >= 25,
        "the dashboard and rules name only {named:?}"
    );
}
