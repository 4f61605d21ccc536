//! Outgoing connections, one per remote address, made on first use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::RemotingCommand;
use parking_lot::Mutex;

use crate::acl::Credentials;
use crate::connection::{self, Connection, ConnectionLimits, Handler, Reply};
use crate::tls::Connector;
use crate::RemotingError;

/// Requests the remote side sends us are answered by this handler; by
/// default they are answered REQUEST_CODE_NOT_SUPPORTED.
struct NotSupported;

impl Handler for NotSupported {
    fn handle(&self, _conn: &Arc<Connection>, request: RemotingCommand) -> Reply {
        Reply::Now(Some(request.response_to(
            meridian_protocol::codes::response_code::REQUEST_CODE_NOT_SUPPORTED,
            format!(
                "request code {} is not supported by this client",
                request.code
            ),
        )))
    }
}

/// A pool of connections keyed by "host:port".
pub struct RemotingClient {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    connect_lock: tokio::sync::Mutex<()>,
    handler: Arc<dyn Handler>,
    limits: ConnectionLimits,
    connect_timeout: Duration,
    /// Signs every request this client sends (RocketMQ's ACL).
    credentials: Option<Credentials>,
    /// Plaintext or TLS.
    connector: Connector,
}

impl Default for RemotingClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RemotingClient {
    pub fn new() -> Self {
        Self::with_handler(Arc::new(NotSupported))
    }

    /// Open connections with `connector` (TLS when it is one).
    pub fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = connector;
        self
    }

    /// Sign every request with `credentials` (for brokers with
    /// `aclEnable=true`).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// A client whose connections serve requests from the remote side with
    /// `handler`.
    pub fn with_handler(handler: Arc<dyn Handler>) -> Self {
        RemotingClient {
            connections: Mutex::new(HashMap::new()),
            connect_lock: tokio::sync::Mutex::new(()),
            handler,
            limits: ConnectionLimits::default(),
            connect_timeout: Duration::from_secs(3),
            credentials: None,
            connector: Connector::default(),
        }
    }

    /// The open connection to `addr`, connecting if there is none.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>, RemotingError> {
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        let _guard = self.connect_lock.lock().await;
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        let stream = self
            .connector
            .connect(addr, self.connect_timeout)
            .await
            .map_err(|source| RemotingError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let peer: SocketAddr = stream
            .peer_addr()
            .map_err(|source| RemotingError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let conn = connection::spawn(stream, peer, self.handler.clone(), self.limits);
        if let Some(c) = &self.credentials {
            conn.sign_with(c.clone());
        }
        self.connections
            .lock()
            .insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    fn live(&self, addr: &str) -> Option<Arc<Connection>> {
        let mut map = self.connections.lock();
        match map.get(addr) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                map.remove(addr);
                None
            }
            None => None,
        }
    }

    /// Send `request` to `addr` and wait up to `timeout` for the response.
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let conn = self.connection(addr).await?;
        conn.invoke(request, timeout).await
    }

    /// Send `request` to `addr` without waiting for a response.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<(), RemotingError> {
        let conn = self.connection(addr).await?;
        conn.invoke_oneway(request).await
    }

    /// Close every connection.
    pub fn close_all(&self) {
        for (_, c) in self.connections.lock().drain() {
            c.close();
        }
    }
}
