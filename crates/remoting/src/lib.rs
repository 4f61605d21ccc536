//! The remoting transport: RocketMQ remoting frames over TCP connections.
//!
//! - [`connection`] — one socket: a reader that decodes frames, a writer task
//!   that batches outgoing frames into few syscalls, request/response
//!   correlation by `opaque`, and a bound on requests in flight.
//! - [`server`] — accepts connections and hands requests to a [`Handler`].
//! - [`client`] — connections to remote addresses, made on first use and
//!   reused; `invoke` sends a request and awaits its response.
//!
//! Both sides of a connection can send requests: brokers send
//! `NOTIFY_CONSUMER_IDS_CHANGED` to clients, clients send everything else.

pub mod acl;
pub mod client;
pub mod conf;
pub mod connection;
pub mod server;
pub mod tls;

pub use client::RemotingClient;
pub use connection::{Connection, ConnectionLimits, Handler, Reply};
pub use server::{serve, Server};

/// Errors a request can end with, as seen by the side that sent it.
#[derive(thiserror::Error, Debug)]
pub enum RemotingError {
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("request to {addr} timed out after {millis} ms")]
    Timeout { addr: String, millis: u64 },
    #[error("connection to {addr} closed before the response arrived")]
    Closed { addr: String },
    #[error("too many requests in flight on the connection to {addr}")]
    Busy { addr: String },
}
