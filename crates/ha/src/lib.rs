//! meridian-ha: master/slave replication, RocketMQ's classic HA.
//!
//! A slave connects to its master's HA port (`haListenPort`), reports its
//! max commit-log offset, and receives the master's commit log from there
//! as raw bytes, which it appends as they are: both stores end up
//! byte-identical, record for record at the same offsets. A SYNC_MASTER
//! answers a send once a slave has reported holding it. The wire format is
//! RocketMQ 4's, so a Meridian slave follows a Java master and the other
//! way round. A tour of the modules:
//!
//! - [`service`]: [`HaService`], what the broker holds as master or slave:
//!   start, point a slave at its master, wait for a slave's ack, status.
//! - [`config`]: [`HaConfig`], with `broker.conf` names and defaults.
//! - [`wire`]: the two messages on the HA port (a slave's 8-byte offset
//!   report; a master's 12-byte frame header and commit-log bytes).
//! - `master`: accepts slaves, streams each one the log as soon as it
//!   grows, collects their acks.
//! - `slave`: connects, reports, appends what arrives, reconnects.
//!
//! The store does the byte work: `MessageStore::read_commit_log` on the
//! master, `append_replicated` (which checks and dispatches whole records)
//! and `reset_empty_to` on the slave. Both stores need the same
//! `mappedFileSizeCommitLog`.
//!
//! What needs an operator: a slave whose commit log goes further than its
//! master's (it held data the master lost) is refused by the master, with
//! an error naming both offsets in the master's log, and keeps being
//! refused until its store is cut back (`truncate_commit_log`) or emptied;
//! so is a slave whose data ends before the master's oldest segment. An
//! empty slave needs nothing: it starts at the master's oldest segment.

pub mod config;
mod master;
pub mod service;
mod slave;
pub mod wire;

pub use config::HaConfig;
pub use master::MAX_CONNECTIONS;
pub use service::{HaRole, HaService, HaStatus, SlaveAck, SlaveStatus};

pub(crate) use meridian_protocol::now_ms;

/// Resolves once shutdown is signalled (or its sender is gone).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
