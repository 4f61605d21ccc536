//! Accepting connections.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::connection::{self, ConnectionLimits, Handler};
use crate::tls::{Acceptor, TlsMode};

/// A running listener. Dropping it does not stop it; call [`Server::stop`].
pub struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting new connections. Existing ones stay until they close.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Bind `addr` and serve every connection with `handler`, plaintext only.
pub async fn serve(
    addr: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: ConnectionLimits,
) -> std::io::Result<Server> {
    serve_with(addr, handler, limits, Acceptor::default()).await
}

/// Bind `addr` and serve every connection with `handler`, plaintext or TLS
/// as `acceptor` says.
pub async fn serve_with(
    addr: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: ConnectionLimits,
    acceptor: Acceptor,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracing::debug!(%peer, "connection accepted");
                        if acceptor.mode() == TlsMode::Disabled {
                            let _ = stream.set_nodelay(true);
                            connection::spawn(stream, peer, handler.clone(), limits);
                            continue;
                        }
                        // Telling TLS from plaintext waits for the first
                        // byte: off the accept loop.
                        let (acceptor, handler) = (acceptor.clone(), handler.clone());
                        tokio::spawn(async move {
                            match acceptor.accept(stream).await {
                                Ok(s) => {
                                    connection::spawn(s, peer, handler, limits);
                                }
                                Err(e) => tracing::info!(%peer, error = %e, "connection closed"),
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = stop_rx.changed() => break,
            }
        }
    });
    Ok(Server {
        local_addr,
        stop: stop_tx,
    })
}
