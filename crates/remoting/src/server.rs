//! Accepting connections.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::connection::{self, ConnectionLimits, Handler};

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

/// Bind `addr` and serve every connection with `handler`.
pub async fn serve(
    addr: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: ConnectionLimits,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        tracing::debug!(%peer, "connection accepted");
                        connection::spawn(stream, peer, handler.clone(), limits);
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
