//! Meridian's own client, used by the admin CLI, the benchmark (and later
//! the relay). Its requests take the Java client's exact shape, so any
//! RocketMQ broker or name server accepts them.
//!
//! - [`admin`] — the operations behind `meridian admin`: routes, cluster
//!   info, topic admin, consumer progress, message queries, offset resets.
//! - [`producer`] — a minimal producer: route lookup and sends; the
//!   SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE request builders on their own.
//! - [`consumer`] — pull-consumer building blocks: the long-polling
//!   PULL_MESSAGE request, its answer's records, a queue's max offset.
//!
//! Applications are better served today by the established RocketMQ
//! clients; this one exists so Meridian's tools need nothing else.

pub mod admin;
pub mod consumer;
pub mod producer;

pub use admin::Admin;
pub use producer::Producer;

/// Errors of client operations.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error(transparent)]
    Remoting(#[from] meridian_remoting::RemotingError),
    #[error("{what} failed: code {code}: {remark}")]
    Broker {
        what: String,
        code: i32,
        remark: String,
    },
    #[error("cannot decode the answer to {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    pub(crate) fn broker(what: &str, r: &meridian_protocol::RemotingCommand) -> ClientError {
        ClientError::Broker {
            what: what.to_string(),
            code: r.code,
            remark: r.remark.clone().unwrap_or_default(),
        }
    }
}
