//! The slave side: connect to the master's HA address, report this store's
//! max commit-log offset, and append what the master streams back.
//!
//! A session runs two halves side by side: one reads frames and appends
//! them to the store ([`MessageStore::append_replicated`], which checks and
//! dispatches whole records), the other reports the new write position
//! whenever it moves and at least every heartbeat interval. A session ends
//! on any error (the master's log is refused, the master goes silent for
//! the housekeeping interval, the connection drops); the slave connects
//! again after a pause that grows from 1 s to 5 s while sessions fail, and
//! at once when the master's address changes.
//!
//! An empty store follows the master's first frame wherever it starts
//! ([`MessageStore::reset_empty_to`]): a master whose oldest segments are
//! gone starts an empty slave at its oldest kept segment. A store with data
//! that does not continue exactly where the master's stream starts is not
//! touched: the session ends with an error naming both offsets.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_remoting::tls::NetStream;
use meridian_store::MessageStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::timeout;

use crate::config::HaConfig;
use crate::wire::{encode_report, FrameHeader, HEADER_LEN, MAX_BODY};
use crate::{now_ms, stopped};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A restarted master is found again within a second: a connect attempt
/// costs one SYN, so there is no reason to wait RocketMQ's 5 s.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Socket read buffer: a few frames of the default batch size.
const READ_BUFFER: usize = 128 * 1024;

/// What the slave knows of its master.
pub(crate) struct SlaveShared {
    pub master_addr: watch::Sender<Option<String>>,
    /// A session is up and the master has sent a frame.
    pub connected: AtomicBool,
    /// End of the last frame received: how far the master's stream came.
    pub master_offset_seen: AtomicI64,
    pub last_contact_ms: AtomicI64,
    /// The offset last reported to the master.
    pub reported: AtomicI64,
}

impl SlaveShared {
    pub fn new() -> Self {
        SlaveShared {
            master_addr: watch::channel(None).0,
            connected: AtomicBool::new(false),
            master_offset_seen: AtomicI64::new(0),
            last_contact_ms: AtomicI64::new(0),
            reported: AtomicI64::new(0),
        }
    }
}

pub(crate) async fn run(
    shared: Arc<SlaveShared>,
    store: Arc<MessageStore>,
    config: HaConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut addr_rx = shared.master_addr.subscribe();
    let mut delay = RECONNECT_MIN;
    loop {
        let Some(addr) = addr_rx.borrow_and_update().clone() else {
            tokio::select! {
                changed = addr_rx.changed() => if changed.is_err() { return },
                _ = stopped(&mut shutdown) => return,
            }
            continue;
        };
        let mut heard = false;
        let ended = tokio::select! {
            r = session(&shared, &store, &config, &addr, &mut heard) => Some(r),
            changed = addr_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                None
            }
            _ = stopped(&mut shutdown) => {
                shared.connected.store(false, Ordering::Release);
                return;
            }
        };
        shared.connected.store(false, Ordering::Release);
        let why = match ended {
            None => {
                tracing::info!(old = %addr, "master HA address changed; leaving the old master");
                delay = RECONNECT_MIN;
                continue;
            }
            Some(Ok(())) => "the session ended".to_string(),
            Some(Err(why)) => why,
        };
        if heard {
            delay = RECONNECT_MIN;
        }
        tracing::warn!(master = %addr, "replication from the master stopped: {why}; connecting again in {delay:?}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            changed = addr_rx.changed() => if changed.is_err() { return },
            _ = stopped(&mut shutdown) => return,
        }
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

/// One connection to the master, until it fails.
async fn session(
    shared: &SlaveShared,
    store: &Arc<MessageStore>,
    config: &HaConfig,
    addr: &str,
    heard: &mut bool,
) -> Result<(), String> {
    let stream = match config.connector.connect(addr, CONNECT_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => return Err(format!("cannot connect: {e}")),
    };
    let (rd, wr) = tokio::io::split(stream);
    let start = store.max_commit_log_offset();
    tracing::info!(master = %addr, offset = start, "connected to the master; replicating from offset {start}");
    let (position_tx, position_rx) = watch::channel(start);
    tokio::select! {
        r = receive(rd, shared, store, config, start, &position_tx, heard) => r,
        r = report(wr, shared, config, position_rx) => r,
    }
}

/// Read frames and append their bytes; publish the new write position.
async fn receive(
    rd: ReadHalf<NetStream>,
    shared: &SlaveShared,
    store: &Arc<MessageStore>,
    config: &HaConfig,
    start: i64,
    position: &watch::Sender<i64>,
    heard: &mut bool,
) -> Result<(), String> {
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let limit = config.housekeeping_interval;
    let mut expected = start;
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; HEADER_LEN];
        read_exact(&mut rd, &mut header, limit, *heard).await?;
        let frame = FrameHeader::decode(header, MAX_BODY)?;
        if frame.offset != expected {
            let empty = store.max_commit_log_offset() == store.min_commit_log_offset();
            if !(empty && expected == store.max_commit_log_offset()) {
                return Err(format!(
                    "the master sends its commit log from offset {} but this slave's goes on \
                     at offset {expected}; an operator must cut this slave's store back or \
                     empty it",
                    frame.offset
                ));
            }
            // A fresh slave starts where the master's data starts.
            let s = Arc::clone(store);
            let at = frame.offset;
            tokio::task::spawn_blocking(move || s.reset_empty_to(at))
                .await
                .map_err(|e| format!("starting the commit log at offset {at} failed: {e}"))?
                .map_err(|e| e.to_string())?;
            tracing::info!(
                offset = at,
                "empty store starts at the master's oldest data"
            );
            expected = at;
        }
        body.resize(frame.len, 0);
        read_exact(&mut rd, &mut body, limit, true).await?;
        *heard = true;
        shared.connected.store(true, Ordering::Release);
        shared.last_contact_ms.store(now_ms(), Ordering::Relaxed);
        shared
            .master_offset_seen
            .fetch_max(frame.offset + frame.len as i64, Ordering::Relaxed);
        if frame.len > 0 {
            expected = store
                .append_replicated(frame.offset, &body)
                .map_err(|e| format!("the store refused the master's bytes: {e}"))?;
            position.send_replace(expected);
        }
    }
}

async fn read_exact(
    rd: &mut BufReader<ReadHalf<NetStream>>,
    buf: &mut [u8],
    limit: Duration,
    heard: bool,
) -> Result<(), String> {
    match timeout(limit, rd.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(if heard {
            "the master closed the connection".to_string()
        } else {
            "the master closed the connection before sending anything (its log says why; \
             a slave that is ahead of its master is refused)"
                .to_string()
        }),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Err(_) => Err(format!(
            "nothing from the master for {limit:?} (haHousekeepingInterval)"
        )),
    }
}

/// Report the write position: at once, whenever it moves, and at least
/// every heartbeat interval.
async fn report(
    mut wr: WriteHalf<NetStream>,
    shared: &SlaveShared,
    config: &HaConfig,
    mut position: watch::Receiver<i64>,
) -> Result<(), String> {
    let limit = config.housekeeping_interval;
    loop {
        let at = *position.borrow_and_update();
        shared.reported.store(at, Ordering::Relaxed);
        match timeout(limit, wr.write_all(&encode_report(at))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("report failed: {e}")),
            Err(_) => return Err(format!("the master took no report for {limit:?}")),
        }
        tokio::select! {
            changed = position.changed() => if changed.is_err() { return Ok(()) },
            _ = tokio::time::sleep(config.heartbeat_interval) => {}
        }
    }
}
