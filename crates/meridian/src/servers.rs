//! Running the servers: configuration, start-up, the ready line, signals,
//! clean shutdown.

use std::path::{Path, PathBuf};

use anyhow::Context;
use meridian_broker::{Broker, BrokerConfig};
use meridian_namesrv::{NameServer, NamesrvConfig};
use meridian_remoting::conf::Conf;

fn load_conf(path: Option<&Path>) -> anyhow::Result<Conf> {
    match path {
        Some(p) => Conf::load(p).map_err(anyhow::Error::from),
        None => Ok(Conf::default()),
    }
}

fn warn_unknown(file: Option<&Path>, unknown: &[String]) {
    if !unknown.is_empty() {
        tracing::warn!(
            file = %file.map(|p| p.display().to_string()).unwrap_or_default(),
            keys = %unknown.join(", "),
            "unknown config keys ignored"
        );
    }
}

/// Name the keys that are accepted for RocketMQ compatibility but do
/// nothing in Meridian, so nobody believes they are in force.
fn warn_ignored(file: Option<&Path>, conf: &Conf) {
    let ignored = conf.ignored_keys();
    if !ignored.is_empty() {
        tracing::warn!(
            file = %file.map(|p| p.display().to_string()).unwrap_or_default(),
            keys = %ignored.join(", "),
            "config keys accepted for RocketMQ compatibility have no effect in Meridian"
        );
    }
}

/// Wait for SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Register with the name servers, retrying for a while: the broker is
/// "ready" once at least one of them routes to it.
async fn first_registration(broker: &Broker) -> bool {
    if broker.inner().config.namesrv_addrs.is_empty() {
        return true;
    }
    for _ in 0..50 {
        if broker.register_once().await > 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    false
}

pub async fn namesrv(config: Option<PathBuf>) -> anyhow::Result<()> {
    let mut conf = load_conf(config.as_deref())?;
    let (cfg, unknown) = NamesrvConfig::from_conf(&mut conf)?;
    warn_unknown(config.as_deref(), &unknown);
    warn_ignored(config.as_deref(), &conf);
    let ns = NameServer::start(cfg).await?;
    println!(
        "The Name Server boot success. listening on {}",
        ns.local_addr()
    );
    println!("meridian namesrv ready");
    shutdown_signal().await;
    ns.stop();
    tracing::info!("name server stopped");
    Ok(())
}

pub async fn relay(config: PathBuf) -> anyhow::Result<()> {
    let mut conf = load_conf(Some(&config))?;
    let (cfg, unknown) = meridian_relay::RelayConfig::from_conf(&mut conf)?;
    warn_unknown(Some(&config), &unknown);
    warn_ignored(Some(&config), &conf);
    let status = cfg
        .listen_port
        .map(|p| std::net::SocketAddr::from(([0, 0, 0, 0], p)));
    let name = cfg.replication_group.clone();
    let relay = meridian_relay::Relay::start(cfg, status).await?;
    match relay.status_addr() {
        Some(a) => println!("The relay[{name}] boot success. status on {a}"),
        None => println!("The relay[{name}] boot success."),
    }
    println!("meridian relay ready");
    shutdown_signal().await;
    relay.shutdown().await;
    tracing::info!("relay stopped");
    Ok(())
}

pub async fn broker(config: Option<PathBuf>, namesrv_addr: Option<String>) -> anyhow::Result<()> {
    let mut conf = load_conf(config.as_deref())?;
    if let Some(n) = namesrv_addr {
        conf.set("namesrvAddr", n);
    }
    let (cfg, unknown) = BrokerConfig::from_conf(&mut conf)?;
    warn_unknown(config.as_deref(), &unknown);
    warn_ignored(config.as_deref(), &conf);
    if cfg.namesrv_addrs.is_empty() {
        tracing::warn!(
            "no name server given (namesrvAddr or -n): clients will not find this broker"
        );
    }
    let name = cfg.broker_name.clone();
    let addr = cfg.broker_addr();
    let broker = Broker::start(cfg).await?;
    if !first_registration(&broker).await {
        tracing::warn!("no name server accepted the registration yet; retrying in the background");
    }
    println!("The broker[{name}, {addr}] boot success.");
    println!("meridian broker ready");
    shutdown_signal().await;
    broker.shutdown().await;
    Ok(())
}

pub async fn dev(
    data_dir: PathBuf,
    namesrv_port: u16,
    broker_port: u16,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let mut conf = load_conf(config.as_deref())?;
    // The embedded name server serves TLS as the broker does.
    let tls = meridian_remoting::tls::TlsSettings::from_conf(&mut conf.clone())?;
    let ns = NameServer::start(NamesrvConfig {
        listen_port: namesrv_port,
        listen_ip: "127.0.0.1".parse()?,
        tls,
        // The broker of `meridian dev` exports the metrics (one port).
        metrics: Default::default(),
        regions: None,
    })
    .await?;
    let ns_addr = format!("127.0.0.1:{}", ns.local_addr().port());

    let mut set_default = |k: &str, v: String| {
        if conf.str(k).is_none() {
            conf.set(k, v);
        }
    };
    set_default("storePathRootDir", data_dir.display().to_string());
    set_default("listenPort", broker_port.to_string());
    set_default("brokerIP1", "127.0.0.1".into());
    set_default("autoCreateTopicEnable", "true".into());
    // A lone dev broker has no slave: replication listens on any free port
    // rather than claiming brokerPort + 1.
    set_default("haListenPort", "0".into());
    conf.set("namesrvAddr", ns_addr.clone());
    let (cfg, unknown) = BrokerConfig::from_conf(&mut conf)?;
    warn_unknown(config.as_deref(), &unknown);
    warn_ignored(config.as_deref(), &conf);
    let broker_addr = cfg.broker_addr();
    let flush = format!("{:?}", cfg.store.flush_disk_type);
    let broker = Broker::start(cfg).await?;
    if !first_registration(&broker).await {
        anyhow::bail!("the broker could not register with the embedded name server");
    }
    println!("Meridian dev: name server and broker in one process");
    println!("  name server  {ns_addr}");
    println!(
        "  broker       {broker_addr}  (broker-a, DefaultCluster, {flush}, topic auto-create on)"
    );
    println!("  data         {}", data_dir.display());
    println!("Try:");
    println!("  meridian admin -n {ns_addr} updateTopic -t TopicTest -c DefaultCluster");
    println!("  meridian admin -n {ns_addr} clusterList");
    println!("  point a RocketMQ client at namesrvAddr={ns_addr} and send to TopicTest");
    println!("meridian dev ready");
    shutdown_signal().await;
    broker.shutdown().await;
    ns.stop();
    Ok(())
}
