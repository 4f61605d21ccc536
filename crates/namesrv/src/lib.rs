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
}

impl NameServer {
    /// Bind and start serving.
    pub async fn start(config: NamesrvConfig) -> anyhow::Result<NameServer> {
        let routes = Arc::new(routes::RouteTable::default());
        let handler = Arc::new(processor::NamesrvProcessor::new(routes.clone()));
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
        tracing::info!(addr = %server.local_addr(), "name server listening");
        Ok(NameServer {
            server,
            routes,
            scan,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn routes(&self) -> &Arc<routes::RouteTable> {
        &self.routes
    }

    pub fn stop(&self) {
        self.server.stop();
        self.scan.abort();
    }
}
