//! A broker's Prometheus endpoint, read the way Prometheus reads it, to
//! see which request codes a stock client actually sent.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{free_port, ClusterOpts};

/// `opts` with the Prometheus endpoint on a free port; and the port.
pub fn exported(opts: ClusterOpts) -> (ClusterOpts, u16) {
    let port = free_port();
    let opts = opts
        .broker_conf("metricsExporterType", "PROM")
        .broker_conf("metricsPromExporterHost", "127.0.0.1")
        .broker_conf("metricsPromExporterPort", &port.to_string());
    (opts, port)
}

/// `GET /metrics` on 127.0.0.1:`port`: the response, headers included.
pub async fn scrape(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("ask for metrics");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read metrics");
    String::from_utf8_lossy(&raw).into_owned()
}

/// How many requests with `request_code` the broker answered, as
/// (answered SUCCESS, answered anything else), from
/// `rocketmq_rpc_latency_count`.
pub fn answered(metrics: &str, request_code: i32) -> (u64, u64) {
    let code = format!("request_code=\"{request_code}\"");
    let (mut ok, mut failed) = (0, 0);
    for line in metrics.lines() {
        if !line.starts_with("rocketmq_rpc_latency_count{") || !line.contains(&code) {
            continue;
        }
        let n = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if line.contains("response_code=\"0\"") {
            ok += n;
        } else {
            failed += n;
        }
    }
    (ok, failed)
}

/// [`answered`], once the counts for `request_code` reach `expected` or
/// five seconds pass (a request is counted once its answer is written,
/// which can be after what it caused was seen elsewhere): the last counts
/// and the whole scrape.
pub async fn answered_eventually(
    port: u16,
    request_code: i32,
    expected: (u64, u64),
) -> ((u64, u64), String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let metrics = scrape(port).await;
        let counts = answered(&metrics, request_code);
        if counts == expected || std::time::Instant::now() >= deadline {
            return (counts, metrics);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
