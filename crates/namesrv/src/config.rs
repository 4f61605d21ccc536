//! Name server configuration (`namesrv.conf`).

use std::net::IpAddr;

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
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_port: 9876,
            listen_ip: IpAddr::from([0, 0, 0, 0]),
            tls: TlsSettings::default(),
            metrics: Default::default(),
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
