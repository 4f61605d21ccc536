//! The master side: accept slaves on the HA port, stream each one the
//! commit log from the offset it reports, and keep the best offset a
//! connected slave has acknowledged, for SYNC_MASTER sends.
//!
//! Each connection runs two halves side by side: one reads the slave's
//! 8-byte reports, the other pushes frames. The pusher wakes when the
//! store's max offset moves (a watch channel, so no polling) and sends at
//! most `transfer_batch_size` bytes a frame, never past a segment end;
//! when there is nothing to send it sends an empty frame every heartbeat
//! interval. A connection closes when the slave is silent for the
//! housekeeping interval, reads nothing for as long, or reports an offset
//! that cannot be right.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use meridian_remoting::tls::NetStream;
use meridian_store::MessageStore;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use crate::config::HaConfig;
use crate::service::SlaveStatus;
use crate::wire::{decode_report, FrameHeader, REPORT_LEN};
use crate::{now_ms, stopped};

/// Most connections the HA port holds open at once (slaves, and anything
/// else that connected); more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 64;

/// What the master knows of its slaves.
pub(crate) struct MasterShared {
    pub local_addr: SocketAddr,
    /// The best offset acknowledged by a connected slave (0 with none).
    acked_tx: watch::Sender<i64>,
    /// Slaves that have reported (a connection counts from its first
    /// valid report on).
    connected: AtomicUsize,
    /// Open connections, reported or not.
    open: AtomicUsize,
    slaves: Mutex<HashMap<u64, SlaveEntry>>,
    next_id: AtomicU64,
}

struct SlaveEntry {
    addr: SocketAddr,
    start_offset: i64,
    acked: i64,
    last_report_ms: i64,
}

impl MasterShared {
    pub fn new(local_addr: SocketAddr) -> Self {
        MasterShared {
            local_addr,
            acked_tx: watch::channel(0).0,
            connected: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            slaves: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn acked(&self) -> watch::Receiver<i64> {
        self.acked_tx.subscribe()
    }

    pub fn acked_offset(&self) -> i64 {
        *self.acked_tx.borrow()
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }

    /// A slave's first report: it counts as connected from now on.
    fn register(&self, id: u64, addr: SocketAddr, offset: i64) {
        let mut slaves = self.slaves.lock();
        slaves.insert(
            id,
            SlaveEntry {
                addr,
                start_offset: offset,
                acked: offset,
                last_report_ms: now_ms(),
            },
        );
        self.connected.store(slaves.len(), Ordering::Release);
        self.raise_acked(offset);
    }

    fn report(&self, id: u64, offset: i64) {
        let mut slaves = self.slaves.lock();
        if let Some(e) = slaves.get_mut(&id) {
            e.acked = e.acked.max(offset);
            e.last_report_ms = now_ms();
            let acked = e.acked;
            self.raise_acked(acked);
        }
    }

    fn raise_acked(&self, offset: i64) {
        self.acked_tx.send_if_modified(|best| {
            let higher = offset > *best;
            if higher {
                *best = offset;
            }
            higher
        });
    }

    /// A connection ended: the best offset is now that of the slaves left.
    fn remove(&self, id: u64) {
        let mut slaves = self.slaves.lock();
        if slaves.remove(&id).is_none() {
            return;
        }
        self.connected.store(slaves.len(), Ordering::Release);
        let best = slaves.values().map(|e| e.acked).max().unwrap_or(0);
        self.acked_tx.send_replace(best);
    }

    pub fn status(&self, master_max: i64) -> Vec<SlaveStatus> {
        let slaves = self.slaves.lock();
        let mut out: Vec<SlaveStatus> = slaves
            .values()
            .map(|e| SlaveStatus {
                addr: e.addr,
                start_offset: e.start_offset,
                acked_offset: e.acked,
                lag_bytes: (master_max - e.acked).max(0),
                last_report_ms: e.last_report_ms,
            })
            .collect();
        out.sort_by_key(|s| s.addr);
        out
    }
}

/// Why a connection ended, and how loudly to say so.
enum Closed {
    /// The slave closed it.
    ByPeer,
    /// Something went wrong on the way (timeouts, I/O, bad bytes).
    Failed(String),
    /// The slave's state needs an operator.
    Refused(String),
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<MasterShared>,
    store: Arc<MessageStore>,
    config: HaConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut shutdown) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: let it pass.
                tracing::warn!(error = %e, "HA port cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, "HA port already holds {MAX_CONNECTIONS} connections; closing a new one");
            continue;
        }
        tracing::info!(%peer, "HA connection accepted");
        let (shared, store, config, shutdown) = (
            Arc::clone(&shared),
            Arc::clone(&store),
            config.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            match config.acceptor.accept(stream).await {
                Ok(stream) => serve(shared, store, config, stream, peer, shutdown).await,
                Err(e) => {
                    shared.open.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, error = %e, "HA connection closed before replication");
                }
            }
        });
    }
}

async fn serve(
    shared: Arc<MasterShared>,
    store: Arc<MessageStore>,
    config: HaConfig,
    stream: NetStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (start_tx, start_rx) = watch::channel(None);
    let ended = tokio::select! {
        r = read_reports(&mut rd, &shared, &store, &config, id, peer, &start_tx) => r,
        r = push(&mut wr, &store, &config, start_rx, peer) => r,
        _ = stopped(&mut shutdown) => Ok(()),
    };
    // The slave stops counting before it can see the connection close.
    shared.remove(id);
    shared.open.fetch_sub(1, Ordering::AcqRel);
    drop((rd, wr));
    match ended {
        Ok(()) => {}
        Err(Closed::ByPeer) => tracing::info!(%peer, "slave closed its HA connection"),
        Err(Closed::Failed(why)) => {
            tracing::warn!(%peer, "closing HA connection: {why}")
        }
        Err(Closed::Refused(why)) => {
            tracing::error!(%peer, "closing HA connection: {why}")
        }
    }
}

/// Read the slave's reports: the first says where to start, the others
/// acknowledge what arrived.
async fn read_reports(
    rd: &mut ReadHalf<NetStream>,
    shared: &MasterShared,
    store: &MessageStore,
    config: &HaConfig,
    id: u64,
    peer: SocketAddr,
    start_tx: &watch::Sender<Option<i64>>,
) -> Result<(), Closed> {
    let limit = config.housekeeping_interval;
    let mut buf = [0u8; REPORT_LEN];
    let mut first = true;
    loop {
        match timeout(limit, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Closed::ByPeer)
            }
            Ok(Err(e)) => return Err(Closed::Failed(format!("read failed: {e}"))),
            Err(_) => {
                return Err(Closed::Failed(format!(
                    "no report from the slave for {limit:?} (haHousekeepingInterval)"
                )))
            }
        }
        let offset = decode_report(buf);
        let max = store.max_commit_log_offset();
        if offset < 0 {
            return Err(Closed::Failed(format!(
                "the slave reported a negative offset {offset}"
            )));
        }
        if offset > max {
            let why = format!(
                "the slave reports commit-log offset {offset} but this master's commit log \
                 ends at {max}"
            );
            if first {
                return Err(Closed::Refused(format!(
                    "{why}: the slave holds data this master does not have. An operator must \
                     stop the slave and cut its store back to at most {max} (or empty it) \
                     before it can replicate from this master"
                )));
            }
            return Err(Closed::Failed(why));
        }
        if first {
            first = false;
            tracing::info!(%peer, offset, "slave asks for the commit log from offset {offset}");
            shared.register(id, peer, offset);
            start_tx.send_replace(Some(offset));
        } else {
            shared.report(id, offset);
        }
    }
}

/// Push the commit log to the slave from where it asked.
async fn push(
    wr: &mut WriteHalf<NetStream>,
    store: &MessageStore,
    config: &HaConfig,
    mut start_rx: watch::Receiver<Option<i64>>,
    peer: SocketAddr,
) -> Result<(), Closed> {
    let requested = match start_rx.wait_for(Option::is_some).await {
        Ok(v) => v.unwrap_or(0),
        Err(_) => return Ok(()),
    };
    let min = store.min_commit_log_offset();
    let mut next = requested;
    if requested < min {
        // An empty slave (offset 0) starts at the oldest data this master
        // keeps; the first frame's offset tells it where that is. A slave
        // with data that ends before it cannot go on; it says so and
        // closes when it sees the frame.
        if requested != 0 {
            tracing::warn!(%peer, requested, min, "slave's commit log ends before this master's oldest data");
        }
        next = min;
    }
    let mut follow = store.subscribe_max_offset();
    let mut last_write: Option<Instant> = None;
    loop {
        follow.borrow_and_update();
        let chunk = store
            .read_commit_log(next, config.transfer_batch_size)
            .ok_or_else(|| {
                Closed::Refused(format!(
                    "the stream to the slave is at offset {next}, which this master does not \
                     hold (it holds [{}, {}))",
                    store.min_commit_log_offset(),
                    store.max_commit_log_offset()
                ))
            })?;
        if !chunk.is_empty() {
            let header = FrameHeader {
                offset: next,
                len: chunk.len(),
            };
            next += chunk.len() as i64;
            send(wr, Buf::chain(&header.encode()[..], chunk), config).await?;
            last_write = Some(Instant::now());
            continue;
        }
        let due = match last_write {
            Some(at) if at.elapsed() < config.heartbeat_interval => at + config.heartbeat_interval,
            _ => {
                let heartbeat = FrameHeader {
                    offset: next,
                    len: 0,
                };
                send(wr, &heartbeat.encode()[..], config).await?;
                last_write = Some(Instant::now());
                continue;
            }
        };
        tokio::select! {
            changed = follow.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(due) => {}
        }
    }
}

async fn send(
    wr: &mut WriteHalf<NetStream>,
    mut buf: impl Buf,
    config: &HaConfig,
) -> Result<(), Closed> {
    let limit = config.housekeeping_interval;
    match timeout(limit, wr.write_all_buf(&mut buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Closed::Failed(format!("write failed: {e}"))),
        Err(_) => Err(Closed::Failed(format!(
            "the slave took nothing for {limit:?} (haHousekeepingInterval)"
        ))),
    }
}
