//! [`HaService`]: what the broker holds, as master or as slave; and what
//! it reports ([`HaStatus`], [`SlaveAck`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meridian_store::MessageStore;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::HaConfig;
use crate::master::{self, MasterShared};
use crate::slave::{self, SlaveShared};

/// How often a waiting SYNC_MASTER send checks that a slave is still
/// connected.
const SLAVE_LOSS_CHECK: Duration = Duration::from_millis(50);

/// How a SYNC_MASTER send's wait for its slave ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaveAck {
    /// A slave holds everything up to the send's end offset: SEND_OK.
    Acked,
    /// A slave is connected but did not get there in time:
    /// FLUSH_SLAVE_TIMEOUT.
    Timeout,
    /// No slave is connected, or the best one is more than
    /// `max_gap_not_in_sync` behind (or this is not a master):
    /// SLAVE_NOT_AVAILABLE.
    NoSlave,
}

/// Which side of the stream a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaRole {
    Master,
    Slave,
}

/// A master's view of one connected slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveStatus {
    pub addr: SocketAddr,
    /// The offset the slave asked to start from when it connected.
    pub start_offset: i64,
    /// The highest offset it has reported holding.
    pub acked_offset: i64,
    /// How far it is behind this master's max offset, in bytes.
    pub lag_bytes: i64,
    /// When it last reported, ms since the Unix epoch.
    pub last_report_ms: i64,
}

/// Replication state, for admin commands and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaStatus {
    pub role: HaRole,
    /// This store's max commit-log offset.
    pub max_offset: i64,
    /// Master: the address slaves connect to.
    pub listen_addr: Option<SocketAddr>,
    /// Master: each connected slave.
    pub slaves: Vec<SlaveStatus>,
    /// Slave: the master HA address it follows, if it knows one.
    pub master_addr: Option<String>,
    /// Slave: connected to that master now (and it has sent something).
    pub connected: bool,
    /// Slave: how far the master's stream has come (the end of the last
    /// frame received); the lag is this minus `max_offset`, give or take
    /// a frame in flight.
    pub master_offset_seen: i64,
    /// Slave: when the master was last heard from, ms since the Unix epoch
    /// (0: never).
    pub last_master_contact_ms: i64,
}

enum Role {
    Master(Arc<MasterShared>),
    Slave(Arc<SlaveShared>),
}

/// Master/slave replication of one store. Dropping the last reference
/// shuts it down.
pub struct HaService {
    store: Arc<MessageStore>,
    config: HaConfig,
    role: Role,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for HaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaService")
            .field("role", &self.role_kind())
            .field("listen_addr", &self.local_addr())
            .finish()
    }
}

impl HaService {
    /// Serve `store`'s commit log to slaves: bind `config.listen_addr`
    /// (port 0 picks one; see [`Self::local_addr`]) and accept slaves.
    pub async fn start_master(
        store: Arc<MessageStore>,
        config: HaConfig,
    ) -> std::io::Result<Arc<HaService>> {
        let config = config.sanitized();
        let listener = TcpListener::bind(config.listen_addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(MasterShared::new(local_addr));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(master::accept_loop(
            listener,
            Arc::clone(&shared),
            Arc::clone(&store),
            config.clone(),
            shutdown_rx,
        ));
        tracing::info!(%local_addr, "HA master listening for slaves");
        Ok(Arc::new(HaService {
            store,
            config,
            role: Role::Master(shared),
            shutdown,
            tasks: Mutex::new(vec![task]),
        }))
    }

    /// Replicate `store` from a master, once [`Self::set_master_ha_addr`]
    /// names one. Call from within a Tokio runtime.
    pub fn start_slave(store: Arc<MessageStore>, config: HaConfig) -> Arc<HaService> {
        let config = config.sanitized();
        let shared = Arc::new(SlaveShared::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(slave::run(
            Arc::clone(&shared),
            Arc::clone(&store),
            config.clone(),
            shutdown_rx,
        ));
        Arc::new(HaService {
            store,
            config,
            role: Role::Slave(shared),
            shutdown,
            tasks: Mutex::new(vec![task]),
        })
    }

    /// Master: the address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.role {
            Role::Master(m) => Some(m.local_addr),
            Role::Slave(_) => None,
        }
    }

    /// Slave: follow the master at `addr` ("host:port", its `haServerAddr`),
    /// reconnecting if it differs from the one followed now; `None`
    /// disconnects. Ignored by a master.
    pub fn set_master_ha_addr(&self, addr: Option<String>) {
        let Role::Slave(s) = &self.role else {
            return;
        };
        let addr = addr.filter(|a| !a.trim().is_empty());
        s.master_addr.send_if_modified(|cur| {
            if *cur == addr {
                return false;
            }
            tracing::info!(old = ?cur, new = ?addr, "master HA address set");
            *cur = addr;
            true
        });
    }

    /// Master, SYNC_MASTER: wait until a slave holds the commit log up to
    /// `end_offset` (a send's end), for at most `timeout`. `NoSlave` at once
    /// if no slave is connected or the best one is more than
    /// `max_gap_not_in_sync` bytes short of `end_offset`. Cheap per call:
    /// one watch channel carries the best acknowledged offset.
    pub async fn wait_for_slave(&self, end_offset: i64, timeout: Duration) -> SlaveAck {
        let Role::Master(m) = &self.role else {
            return SlaveAck::NoSlave;
        };
        if *self.shutdown.borrow() || m.connected() == 0 {
            return SlaveAck::NoSlave;
        }
        let mut acked = m.acked();
        let best = *acked.borrow_and_update();
        if best >= end_offset {
            return SlaveAck::Acked;
        }
        if end_offset - best > self.config.max_gap_not_in_sync {
            return SlaveAck::NoSlave;
        }
        // Wait for the ack, but give up at once if the last slave goes:
        // a send should not hang for the whole timeout on a dead slave.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut check = tokio::time::interval(SLAVE_LOSS_CHECK);
        loop {
            tokio::select! {
                r = acked.wait_for(|&a| a >= end_offset) => {
                    return if r.is_ok() { SlaveAck::Acked } else { SlaveAck::NoSlave };
                }
                _ = tokio::time::sleep_until(deadline) => return SlaveAck::Timeout,
                _ = check.tick() => {
                    if m.connected() == 0 || *self.shutdown.borrow() {
                        return SlaveAck::NoSlave;
                    }
                }
            }
        }
    }

    /// Master: the best offset a connected slave has acknowledged (0 with
    /// none). Slave: the offset it last reported to its master.
    pub fn slave_acked_offset(&self) -> i64 {
        match &self.role {
            Role::Master(m) => m.acked_offset(),
            Role::Slave(s) => s.reported.load(Ordering::Relaxed),
        }
    }

    /// Master: slaves connected now (counted from their first report).
    pub fn connected_slaves(&self) -> usize {
        match &self.role {
            Role::Master(m) => m.connected(),
            Role::Slave(_) => 0,
        }
    }

    pub fn status(&self) -> HaStatus {
        let max_offset = self.store.max_commit_log_offset();
        let mut status = HaStatus {
            role: self.role_kind(),
            max_offset,
            listen_addr: self.local_addr(),
            slaves: Vec::new(),
            master_addr: None,
            connected: false,
            master_offset_seen: 0,
            last_master_contact_ms: 0,
        };
        match &self.role {
            Role::Master(m) => status.slaves = m.status(max_offset),
            Role::Slave(s) => {
                status.master_addr = s.master_addr.borrow().clone();
                status.connected = s.connected.load(Ordering::Acquire);
                status.master_offset_seen = s.master_offset_seen.load(Ordering::Relaxed);
                status.last_master_contact_ms = s.last_contact_ms.load(Ordering::Relaxed);
            }
        }
        status
    }

    /// Stop: close the port and every connection. Idempotent.
    pub fn shutdown(&self) {
        if self.shutdown.send_replace(true) {
            return;
        }
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        tracing::info!(role = ?self.role_kind(), "HA service stopped");
    }

    fn role_kind(&self) -> HaRole {
        match self.role {
            Role::Master(_) => HaRole::Master,
            Role::Slave(_) => HaRole::Slave,
        }
    }
}

impl Drop for HaService {
    fn drop(&mut self) {
        self.shutdown();
    }
}
