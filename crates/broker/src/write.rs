//! The one write path. Every message a broker stores — a client's send, a
//! send-back into `%RETRY%`, a delayed message coming due, a relayed copy
//! from another region — goes through [`BrokerInner::write`], so each gets
//! the same replication policy and the same refusals:
//!
//! - a plain master (or a store without replication) answers once the
//!   store has it (and, under SYNC_FLUSH, once it is flushed);
//! - a SYNC_MASTER answers once a slave holds it as well, unless the
//!   message says not to wait (`WAIT=false`);
//! - a Raft leader answers once a majority of its group holds it.
//!
//! The write is handed to the store (or the Raft group) before `write`
//! returns, so writes issued in order are stored in order; only the waiting
//! is left to the future.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use meridian_store::{PutMessage, PutResult};

use crate::{BrokerInner, BrokerRole};

type PutFuture = Pin<Box<dyn Future<Output = Result<Vec<PutResult>, WriteError>> + Send>>;

/// What [`BrokerInner::write`] returns.
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<Stored, WriteError>> + Send>>;

/// Where the messages of a write went, and how far they are replicated.
#[derive(Debug)]
pub struct Stored {
    pub results: Vec<PutResult>,
    pub replicas: Replicas,
}

/// How far a stored write is replicated, as far as the broker's role
/// promises anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicas {
    /// Everything the role promises: nothing more for a plain master, a
    /// slave's copy for a SYNC_MASTER, a majority in a Raft group.
    Held,
    /// A SYNC_MASTER's slave did not confirm in time (FLUSH_SLAVE_TIMEOUT).
    SlaveTimeout,
    /// A SYNC_MASTER has no slave in sync (SLAVE_NOT_AVAILABLE).
    NoSlave,
}

impl Replicas {
    /// The response code and remark of a write that was stored but not
    /// replicated as the role promises; `None` when it was.
    pub fn shortfall(self) -> Option<(i32, &'static str)> {
        use meridian_protocol::codes::response_code as rc;
        match self {
            Replicas::Held => None,
            Replicas::SlaveTimeout => Some((
                rc::FLUSH_SLAVE_TIMEOUT,
                "the message is stored on the master but the slave did not confirm it in time",
            )),
            Replicas::NoSlave => Some((
                rc::SLAVE_NOT_AVAILABLE,
                "the message is stored on the master but no slave is in sync",
            )),
        }
    }
}

impl Stored {
    /// Stored as durably as the broker's role promises.
    pub fn is_held(&self) -> bool {
        self.replicas == Replicas::Held
    }
}

/// Why a write through [`BrokerInner::write`] failed.
#[derive(Debug)]
pub enum WriteError {
    /// The store refused it.
    Put(meridian_store::PutError),
    /// A Raft member that is not (or no longer) the leader; nothing stored.
    NotLeader(String),
    /// Too many writes wait for their commit.
    Busy(String),
    /// The write may or may not be stored (leadership lost after it was
    /// written, or no commit in time).
    Unknown(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Put(e) => write!(f, "{e}"),
            WriteError::NotLeader(s) | WriteError::Busy(s) | WriteError::Unknown(s) => {
                f.write_str(s)
            }
        }
    }
}

impl BrokerInner {
    /// Why this broker takes no writes now (a slave, a Raft follower, or
    /// shutting down), or `None` when it does.
    pub fn refuses_writes(&self) -> Option<String> {
        if self.is_slave() {
            return Some(match &self.raft {
                Some(node) => match node.role().borrow().leader_id {
                    Some(id) => format!(
                        "the broker[{}] is a follower of Raft group {}; n{id} leads it",
                        self.config.broker_addr(),
                        node.peers().group
                    ),
                    None => format!(
                        "the broker[{}] is a follower of Raft group {}, which has no leader yet",
                        self.config.broker_addr(),
                        node.peers().group
                    ),
                },
                None => format!(
                    "the broker[{}] is a slave; send to its master",
                    self.config.broker_addr()
                ),
            });
        }
        if self
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Some("the broker is shutting down".into());
        }
        None
    }

    /// Store messages as the broker's role promises (see the module
    /// documentation). The messages are handed over before this returns.
    pub fn write(&self, msgs: Vec<PutMessage>) -> WriteFuture {
        // A SYNC_MASTER answers only once its slave holds the messages
        // (RocketMQ 4's rule), unless they say not to wait. A Raft
        // leader's writes are acknowledged once on a majority by `put`.
        let slave_wait = (self.raft.is_none()
            && self.config.broker_role == BrokerRole::SyncMaster
            && msgs
                .iter()
                .all(|m| meridian_protocol::message::waits_for_store(&m.properties)))
        .then(|| {
            (
                self.ha.clone(),
                Duration::from_millis(self.config.store.sync_flush_timeout_ms),
            )
        });
        let written = self.put(msgs);
        Box::pin(async move {
            let results = written.await?;
            let mut replicas = Replicas::Held;
            if let (Some((ha, timeout)), Some(last)) = (slave_wait, results.last()) {
                let end = last.commit_log_offset + last.wrote_bytes as i64;
                replicas = match ha.wait_for_slave(end, timeout).await {
                    meridian_ha::SlaveAck::Acked => Replicas::Held,
                    meridian_ha::SlaveAck::Timeout => Replicas::SlaveTimeout,
                    meridian_ha::SlaveAck::NoSlave => Replicas::NoSlave,
                };
            }
            Ok(Stored { results, replicas })
        })
    }

    /// Wait until a write that was stored without the replication its role
    /// promises is replicated after all; false if the broker shuts down
    /// first or stops being a SYNC_MASTER.
    pub async fn wait_replicated(&self, stored: &Stored) -> bool {
        let Some(last) = stored.results.last() else {
            return true;
        };
        let end = last.commit_log_offset + last.wrote_bytes as i64;
        let timeout = Duration::from_millis(self.config.store.sync_flush_timeout_ms.max(1_000));
        loop {
            if self
                .shutting_down
                .load(std::sync::atomic::Ordering::Acquire)
                || self.config.broker_role != BrokerRole::SyncMaster
            {
                return false;
            }
            match self.ha.wait_for_slave(end, timeout).await {
                meridian_ha::SlaveAck::Acked => return true,
                meridian_ha::SlaveAck::Timeout => {}
                meridian_ha::SlaveAck::NoSlave => tokio::time::sleep(timeout).await,
            }
        }
    }

    /// Store messages: in the local store, or through the Raft group. The
    /// write is handed over before this returns (so writes issued in order
    /// are stored in order); the future waits for the flush or commit.
    fn put(&self, msgs: Vec<meridian_store::PutMessage>) -> PutFuture {
        use meridian_raft::node::{SendOutcome, SubmitError};
        let Some(node) = &self.raft else {
            let store = self.store.clone();
            let mut fut = Box::pin(async move {
                if msgs.len() == 1 {
                    let mut msgs = msgs;
                    let m = msgs.pop().expect("one message");
                    store.put_message(m).await.map(|r| vec![r])
                } else {
                    store.put_messages(msgs).await
                }
            });
            // Poll once now: the append happens here, in call order.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            return match std::future::Future::poll(fut.as_mut(), &mut cx) {
                std::task::Poll::Ready(r) => {
                    Box::pin(std::future::ready(r.map_err(WriteError::Put)))
                }
                std::task::Poll::Pending => {
                    Box::pin(async move { fut.await.map_err(WriteError::Put) })
                }
            };
        };
        let leader_hint = |id: Option<u64>| match id {
            Some(id) => format!(
                "broker {} is not the leader of Raft group {}; n{id} is",
                self.config.broker_addr(),
                node.peers().group
            ),
            None => format!(
                "broker {} is not the leader of Raft group {}, and no leader is known yet",
                self.config.broker_addr(),
                node.peers().group
            ),
        };
        match node.submit(msgs) {
            Err(SubmitError::NotLeader(id)) => {
                let e = WriteError::NotLeader(leader_hint(id));
                Box::pin(std::future::ready(Err(e)))
            }
            Err(SubmitError::Busy(n)) => Box::pin(std::future::ready(Err(WriteError::Busy(
                format!("{n} sends are waiting for their commit (raftMaxInflightSends)"),
            )))),
            Err(SubmitError::Refused(e)) => Box::pin(std::future::ready(Err(WriteError::Put(e)))),
            Ok(fut) => {
                let not_leader = leader_hint(None);
                Box::pin(async move {
                    match fut.await {
                        SendOutcome::Stored(r) => Ok(r),
                        SendOutcome::Rejected(e) => Err(WriteError::Put(e)),
                        SendOutcome::NotLeader(_) => Err(WriteError::NotLeader(not_leader)),
                        SendOutcome::Unknown(why) => Err(WriteError::Unknown(why)),
                    }
                })
            }
        }
    }
}
