//! Name server configuration (`namesrv.conf`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::regions::{parse_peers, parse_standby, FailoverMode, RegionConfig};

use meridian_remoting::conf::{Conf, ConfError};
use meridian_remoting::tls::TlsSettings;

#[derive(Clone, Debug)]
pub struct NamesrvConfig {
    /// `listenPort`, default 9876.
    pub listen_port: u16,
    /// Address to bind; all interfaces by default.
    pub listen_ip: IpAddr,
    /// `tls.*`: TLS on the listening port.
    pub tls: TlsSettings,
    /// `metricsExporterType=PROM` and the other exporter keys.
    pub metrics: meridian_metrics::MetricsConfig,
    /// `regionId`, `regionPeers` and the other region keys; `None` without
    /// `regionPeers` (a name server that knows no other region).
    pub regions: Option<crate::regions::RegionConfig>,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_port: 9876,
            listen_ip: IpAddr::from([0, 0, 0, 0]),
            tls: TlsSettings::default(),
            metrics: Default::default(),
            regions: None,
        }
    }
}

impl NamesrvConfig {
    /// The settings as GET_NAMESRV_CONFIG shows them.
    pub fn to_properties(&self) -> String {
        let mode = match self.tls.server_mode {
            meridian_remoting::tls::TlsMode::Disabled => "disabled",
            meridian_remoting::tls::TlsMode::Permissive => "permissive",
            meridian_remoting::tls::TlsMode::Enforcing => "enforcing",
        };
        format!(
            "listenPort={}\nbindAddress={}\ntls.server.mode={mode}\nmetricsExporterType={}\nmetricsPromExporterPort={}\n",
            self.listen_port,
            self.listen_ip,
            if self.metrics.enabled() { "PROM" } else { "DISABLE" },
            self.metrics.port,
        )
    }

    /// Read the keys this server knows from `conf`; returns the config and
    /// the keys it does not know (for a start-up warning).
    pub fn from_conf(conf: &mut Conf) -> Result<(NamesrvConfig, Vec<String>), ConfError> {
        let mut c = NamesrvConfig::default();
        if let Some(p) = conf.get::<u16>("listenPort")? {
            c.listen_port = p;
        }
        if let Some(ip) = conf.get::<IpAddr>("bindAddress")? {
            c.listen_ip = ip;
        }
        c.tls = TlsSettings::from_conf(conf)?;
        c.metrics = meridian_metrics::MetricsConfig::from_conf(conf)?;
        c.regions = region_config(conf)?;
        conf.refuse_if_on(
            &["aclEnable", "authenticationEnabled", "authorizationEnabled"],
            "Meridian's name server does not check access (RocketMQ's does not either); brokers do, with aclEnable in broker.conf",
        )?;
        // Accepted for compatibility with RocketMQ's file; Meridian keeps no
        // KV config on disk and has no product-environment switch.
        conf.accept(&[
            "rocketmqHome",
            "kvConfigPath",
            "configStorePath",
            "productEnvName",
            "clusterTest",
            "orderMessageEnable",
            "serverWorkerThreads",
            "serverCallbackExecutorThreads",
            "serverSelectorThreads",
            "serverOnewaySemaphoreValue",
            "serverAsyncSemaphoreValue",
            "serverChannelMaxIdleTimeSeconds",
            "serverSocketSndBufSize",
            "serverSocketRcvBufSize",
            "serverPooledByteBufAllocatorEnable",
            "useEpollNativeSelector",
        ]);
        Ok((c, conf.unknown_keys()))
    }
}

/// The region keys; `None` when `regionPeers` is not set.
fn region_config(conf: &mut Conf) -> Result<Option<RegionConfig>, ConfError> {
    let invalid = |key: &str, value: String, reason: String| ConfError::Invalid {
        key: key.into(),
        value,
        reason,
    };
    let region = conf.str("regionId");
    let Some(peers_text) = conf.str("regionPeers") else {
        for key in [
            "regionStandby",
            "failoverMode",
            "regionProbeIntervalMs",
            "regionFailureTimeoutMs",
            "regionCanaryIntervalMs",
            "regionStatePath",
        ] {
            if conf.str(key).is_some() {
                return Err(invalid(
                    key,
                    String::new(),
                    "only meaningful with regionPeers (the other regions' name servers)".into(),
                ));
            }
        }
        return Ok(None);
    };
    let mut c = RegionConfig::default();
    match region {
        Some(r) if !r.trim().is_empty() => c.region = r.trim().to_string(),
        _ => return Err(ConfError::Missing("regionId".into())),
    }
    c.peers =
        parse_peers(&peers_text).map_err(|e| invalid("regionPeers", peers_text.clone(), e))?;
    if c.peers.contains_key(&c.region) {
        return Err(invalid(
            "regionPeers",
            peers_text,
            format!("lists this name server's own region `{}`", c.region),
        ));
    }
    if let Some(t) = conf.str("regionStandby") {
        c.standby = parse_standby(&t).map_err(|e| invalid("regionStandby", t.clone(), e))?;
        let known = |r: &String| r == &c.region || c.peers.contains_key(r);
        if let Some((a, b)) = c.standby.iter().find(|(a, b)| !known(a) || !known(b)) {
            return Err(invalid(
                "regionStandby",
                t.clone(),
                format!("`{a}:{b}` names a region that is neither regionId nor in regionPeers"),
            ));
        }
    }
    if let Some(m) = conf.get::<FailoverMode>("failoverMode")? {
        c.mode = m;
    }
    let ms = |conf: &mut Conf, key: &str, d: Duration, min: u64| -> Result<Duration, ConfError> {
        match conf.get::<u64>(key)? {
            None => Ok(d),
            Some(v) if v >= min => Ok(Duration::from_millis(v)),
            Some(v) => Err(invalid(key, v.to_string(), format!("at least {min}"))),
        }
    };
    c.probe_interval = ms(conf, "regionProbeIntervalMs", c.probe_interval, 100)?;
    c.failure_timeout = ms(conf, "regionFailureTimeoutMs", c.failure_timeout, 1000)?;
    c.canary_interval = ms(conf, "regionCanaryIntervalMs", c.canary_interval, 0)?;
    if c.failure_timeout < c.probe_interval * 2 {
        return Err(invalid(
            "regionFailureTimeoutMs",
            c.failure_timeout.as_millis().to_string(),
            "must be at least two regionProbeIntervalMs".into(),
        ));
    }
    if let Some(p) = conf.str("regionStatePath") {
        c.state_path = PathBuf::from(p);
    }
    Ok(Some(c))
}
