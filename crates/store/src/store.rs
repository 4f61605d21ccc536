//! [`MessageStore`]: the store's public face. Puts append to the commit log
//! and write consume-queue and index entries under one short lock; gets
//! read consume queues and commit log without taking it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_protocol::message::{
    self, encode_record, parse_record, record_len, RecordRef, MAX_PROPERTIES_LEN,
    PROPERTY_SEPARATOR,
};
use meridian_protocol::message_id::create_offset_msg_id;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::checkpoint::{Checkpoint, QueueMark};
use crate::commit_log::{Appender, CommitLog, END_FILE_MIN_BLANK_LENGTH};
use crate::config::{message_delay_levels, FlushDiskType, StoreConfig};
use crate::consume_queue::{ConsumeQueue, CqEntry};
use crate::dispatch::{goes_to_index, goes_to_queue, has_key, index_keys, tags_code};
use crate::error::{PutError, StoreError};
use crate::index::IndexService;
use crate::recovery::{self, RecoveryReport};
use crate::retention;
use crate::stats::{Counters, StoreStats};
use crate::{flush, now_ms};

/// Commit-log bytes behind its end kept mapped in memory (consumers
/// reading near the head find them resident).
const HOT_COMMIT_LOG_BYTES: i64 = 16 * 1024 * 1024;
/// Commit-log bytes past its end faulted in ahead of the writer.
const PREFAULT_BYTES: usize = 16 * 1024 * 1024;
/// How often cold pages are released (see `Inner::release_cold_pages`).
pub(crate) const RELEASE_INTERVAL: Duration = Duration::from_millis(100);

/// How often the routine checkpoint forces the index to disk (consume
/// queues go every `checkpoint_interval_ms`). Forcing it write-protects
/// every page of hash slots it wrote back, and the next key that lands on
/// one faults it in again; the slots are spread over the whole table, so
/// at 20,000 msg/s a forced index was some 5,000 faults in the next few
/// hundred ms, on the path that answers sends. Between forcings the
/// checkpoint's `index_flushed` stays behind and recovery re-indexes from
/// there (RocketMQ forces an index file only when it is full).
pub(crate) const INDEX_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// When the checkpoints last forced the index, and how far: index entries
/// of every record below `below` are on disk. Kept under the checkpoint
/// lock, which every checkpoint holds.
#[derive(Default)]
pub(crate) struct IndexForced {
    below: i64,
    at: Option<Instant>,
}
/// Index entry bytes behind the newest kept mapped.
const HOT_INDEX_BYTES: usize = 4 * 1024 * 1024;
/// Consume-queue bytes behind each queue's newest entry kept mapped (3,276
/// entries: what consumers near the head read).
const HOT_QUEUE_BYTES: usize = 64 * 1024;

/// Longest topic name accepted (RocketMQ allows 255 for retry and DLQ topics).
pub const MAX_TOPIC_LEN: usize = 255;

/// A message to append.
#[derive(Debug, Clone)]
pub struct PutMessage {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub body: Bytes,
    /// Encoded properties (see `meridian_protocol::message::encode_properties`).
    /// Stored with a trailing `\x02`, added if missing.
    pub properties: String,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// `Some(o)`: store the message at queue offset `o` or not at all. A
    /// copy of another region's queue is the same stream at the same
    /// offsets, so a relayed record is appended only where its copy
    /// continues; an empty queue may start at `o`. A put whose messages do
    /// not all fit is refused whole ([`PutError::QueueOffsetMismatch`]).
    pub at_queue_offset: Option<i64>,
}

/// Where a message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub commit_log_offset: i64,
    /// Its offset in its queue (0 for prepared and rolled-back transaction
    /// messages, which get no queue entry).
    pub queue_offset: i64,
    pub wrote_bytes: i32,
    pub store_timestamp: i64,
    /// The offset message id.
    pub msg_id: String,
}

/// Outcome of a get, with RocketMQ's `GetMessageStatus` meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    /// `messages` holds at least one message.
    Found,
    /// Entries were there, but none passed the filter.
    NoMatchedMessage,
    /// The entries found point at records that are gone (retention).
    OffsetFoundNull,
    /// `offset` is beyond the queue's end.
    OffsetOverflowBadly,
    /// `offset` is exactly the queue's end: nothing new yet.
    OffsetOverflowOne,
    /// `offset` is below the queue's start.
    OffsetTooSmall,
    /// The queue is empty or does not exist.
    NoMessageInQueue,
}

/// A filter over a stored record's bytes (a property filter).
pub type RecordFilter<'a> = dyn Fn(&[u8]) -> bool + 'a;

/// Messages found by [`MessageStore::get_messages`].
#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    /// Where the consumer should read next.
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// The stored bytes of each record: zero-copy slices of the commit log,
    /// one shared buffer per segment read.
    pub messages: Vec<Bytes>,
    pub total_bytes: usize,
}

/// Asked by retention, off the async workers, whether the commit log may
/// start at the given offset (everything below deleted); may block.
pub type RetentionGate = Arc<dyn Fn(i64) -> bool + Send + Sync>;

/// Records a broker still needs, whatever their age or the disk's fill:
/// every queue of `topic` from the queue offset `from` names for it (a
/// queue it does not name, from its start). Retention keeps the segment
/// holding the first such record and every later one. See
/// [`MessageStore::set_retention_floor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionHold {
    pub topic: String,
    /// Queue id → first queue offset still needed.
    pub from: std::collections::BTreeMap<i32, i64>,
    /// What needs them, for the log ("timer messages waiting for their
    /// time").
    pub reason: &'static str,
}

/// Asked by retention, off the async workers, for the records still
/// needed. Must not call back into the store.
pub type RetentionFloor = Arc<dyn Fn() -> Vec<RetentionHold> + Send + Sync>;

/// Called after messages become readable: topic, queue id, new max offset.
pub type ArrivalListener = Arc<dyn Fn(&str, i32, i64) + Send + Sync>;

pub(crate) type QueueMap = HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>;

/// What the put lock protects.
pub(crate) struct Writer {
    pub appender: Appender,
    /// The writer's own copy of the queue map, so puts do not contend with
    /// readers on `Inner::queues`.
    pub queues: QueueMap,
    /// Past the readable offset lies part of a replicated record, waiting
    /// for the rest (see `replica`); puts must not write after it.
    pub replica_part: bool,
    /// Raft mode: queue offsets the leader handed out but not yet applied.
    pub assigned: crate::raft::Assigned,
}

/// Per-message facts worked out before taking the put lock.
pub(crate) struct Prepared {
    pub size: usize,
    body_crc: i32,
    to_queue: bool,
    to_index: bool,
    wait: bool,
}

/// Where one message went, reported from inside the put lock.
#[derive(Clone, Copy)]
pub(crate) struct Appended {
    pub offset: i64,
    pub queue_offset: i64,
    pub size: usize,
    pub store_ts: i64,
}

pub(crate) struct Inner {
    pub config: StoreConfig,
    pub delay_levels: Vec<u64>,
    pub commit_log: CommitLog,
    /// Readers' view of the consume queues.
    pub queues: RwLock<QueueMap>,
    pub writer: Mutex<Writer>,
    pub index: Mutex<IndexService>,
    /// Serializes commit-log flushes.
    pub flush_lock: Mutex<()>,
    /// Serializes checkpoints, and holds what they know of the index.
    pub checkpoint_lock: Mutex<IndexForced>,
    pub flushed_tx: watch::Sender<i64>,
    /// The readable offset, for those who follow the log (replication).
    pub max_offset_tx: watch::Sender<i64>,
    pub flush_pending: AtomicBool,
    pub flusher: OnceLock<Thread>,
    pub checkpointer: OnceLock<Thread>,
    pub retainer: OnceLock<Thread>,
    pub shutdown: AtomicBool,
    pub counters: Counters,
    pub listener: RwLock<Option<ArrivalListener>>,
    pub disk_full: AtomicBool,
    pub disk_ratio_bits: AtomicU64,
    /// Raft mode (`raft`): end of the applied entries, which alone reach
    /// consume queues and lookups; `i64::MAX` outside Raft mode.
    pub raft_visible: AtomicI64,
    /// Asked before retention deletes segments below an offset (see
    /// [`MessageStore::set_retention_gate`]).
    pub retention_gate: RwLock<Option<RetentionGate>>,
    /// Records retention must keep (see
    /// [`MessageStore::set_retention_floor`]).
    pub retention_floor: RwLock<Option<RetentionFloor>>,
    /// When retention last warned that a hold kept segments, and which.
    pub retention_warned: Mutex<(i64, String)>,
    /// Held (flock) for the life of the store.
    pub _lock_file: File,
}

/// The message store. `Send + Sync`; share it behind the `Arc` that
/// [`MessageStore::open`] returns. Dropping the last reference shuts it down.
pub struct MessageStore {
    pub(crate) inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root_dir", &self.inner.config.root_dir)
            .field("max_offset", &self.inner.commit_log.readable_offset())
            .finish()
    }
}

fn lock_dir(path: &Path) -> Result<File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StoreError::Locked(path.to_path_buf()));
        }
    }
    Ok(file)
}

impl MessageStore {
    /// Open (or create) the store under `config.root_dir`: recover the
    /// commit log and derived files, then start the flush thread and the
    /// retention task.
    pub fn open(config: StoreConfig) -> Result<(Arc<MessageStore>, RecoveryReport), StoreError> {
        config.validate().map_err(StoreError::Config)?;
        let delay_levels =
            message_delay_levels(&config.message_delay_level).map_err(StoreError::Config)?;
        std::fs::create_dir_all(&config.root_dir)
            .map_err(|e| StoreError::io(&config.root_dir, e))?;
        let lock_file = lock_dir(&config.lock_path())?;

        let recovered = recovery::recover(&config, &delay_levels)?;
        let report = recovered.report;
        if report.truncated_at.is_some() || !report.rebuilt_queues.is_empty() {
            tracing::warn!("{report}");
        } else {
            tracing::info!("{report}");
        }
        let flushed = recovered.commit_log.flushed_offset();
        let (flushed_tx, _) = watch::channel(flushed);
        let (max_offset_tx, _) = watch::channel(recovered.commit_log.readable_offset());
        let inner = Arc::new(Inner {
            delay_levels,
            commit_log: recovered.commit_log,
            queues: RwLock::new(recovered.queues.clone()),
            writer: Mutex::new(Writer {
                appender: recovered.appender,
                queues: recovered.queues,
                replica_part: false,
                assigned: Default::default(),
            }),
            index: Mutex::new(recovered.index),
            flush_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(IndexForced::default()),
            flushed_tx,
            max_offset_tx,
            flush_pending: AtomicBool::new(false),
            flusher: OnceLock::new(),
            checkpointer: OnceLock::new(),
            retainer: OnceLock::new(),
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
            listener: RwLock::new(None),
            disk_full: AtomicBool::new(false),
            disk_ratio_bits: AtomicU64::new(0f64.to_bits()),
            raft_visible: AtomicI64::new(i64::MAX),
            retention_gate: RwLock::new(None),
            retention_floor: RwLock::new(None),
            retention_warned: Mutex::new((0, String::new())),
            _lock_file: lock_file,
            config,
        });
        // Derived files now agree with the commit log: record that before
        // accepting writes, so a crash right away recovers from here.
        inner
            .checkpoint(false)
            .map_err(|e| StoreError::io(inner.config.checkpoint_path(), e))?;
        retention::check_disk(&inner);

        let spawn = |name: &str, f: fn(Arc<Inner>), inner: &Arc<Inner>| {
            let inner = Arc::clone(inner);
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || f(inner))
                .map_err(|e| StoreError::io(name, e))
        };
        let flusher = spawn("store-flush", flush::run, &inner)?;
        let _ = inner.flusher.set(flusher.thread().clone());
        let checkpointer = spawn("store-checkpoint", flush::run_checkpoints, &inner)?;
        let _ = inner.checkpointer.set(checkpointer.thread().clone());
        let retainer = spawn("store-retention", retention::run, &inner)?;
        let _ = inner.retainer.set(retainer.thread().clone());
        let store = Arc::new(MessageStore {
            inner,
            threads: Mutex::new(vec![flusher, checkpointer, retainer]),
        });
        Ok((store, report))
    }

    /// Append one message. Under SYNC_FLUSH (and unless its WAIT property
    /// says otherwise) returns once it is on disk, or `FlushTimeout`.
    /// Call from a Tokio runtime.
    pub async fn put_message(&self, mut msg: PutMessage) -> Result<PutResult, PutError> {
        let inner = &self.inner;
        Counters::add(&inner.counters.put_calls, 1);
        let prep = inner
            .prepare(&mut msg)
            .inspect_err(|_| inner.count_failure())?;
        let mut appended = None;
        let end = inner
            .append(
                std::slice::from_ref(&msg),
                std::slice::from_ref(&prep),
                |_, a| appended = Some(a),
            )
            .inspect_err(|_| inner.count_failure())?;
        let a = appended
            .ok_or_else(|| PutError::ServiceNotAvailable("append reported nothing".into()))?;
        let result = PutResult {
            commit_log_offset: a.offset,
            queue_offset: a.queue_offset,
            wrote_bytes: a.size as i32,
            store_timestamp: a.store_ts,
            msg_id: create_offset_msg_id(msg.store_host, a.offset),
        };
        if prep.to_queue {
            inner.notify_arrival(&msg.topic, msg.queue_id, a.queue_offset + 1);
        }
        if prep.wait && !inner.wait_flushed(end).await {
            return Err(PutError::FlushTimeout(result));
        }
        Ok(result)
    }

    /// Append a batch with one lock acquisition: the records are contiguous
    /// in one segment, in order, and a SYNC_FLUSH batch waits for one flush.
    /// On `FlushTimeout` the result describes the batch: offsets, queue
    /// offset and store time of the first message, total bytes, and the
    /// messages' ids joined by commas (as RocketMQ reports a batch).
    pub async fn put_messages(
        &self,
        mut msgs: Vec<PutMessage>,
    ) -> Result<Vec<PutResult>, PutError> {
        let inner = &self.inner;
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        Counters::add(&inner.counters.put_calls, 1);
        let preps = msgs
            .iter_mut()
            .map(|m| inner.prepare(m))
            .collect::<Result<Vec<_>, _>>()
            .inspect_err(|_| inner.count_failure())?;
        let mut appended = Vec::with_capacity(msgs.len());
        let end = inner
            .append(&msgs, &preps, |_, a| appended.push(a))
            .inspect_err(|_| inner.count_failure())?;
        let results: Vec<PutResult> = msgs
            .iter()
            .zip(&appended)
            .map(|(m, a)| PutResult {
                commit_log_offset: a.offset,
                queue_offset: a.queue_offset,
                wrote_bytes: a.size as i32,
                store_timestamp: a.store_ts,
                msg_id: create_offset_msg_id(m.store_host, a.offset),
            })
            .collect();
        // One wake-up per queue per batch, with the queue's final offset.
        let mut woken: Vec<(&str, i32, i64)> = Vec::new();
        for ((m, p), a) in msgs.iter().zip(&preps).zip(&appended) {
            if !p.to_queue {
                continue;
            }
            match woken
                .iter_mut()
                .find(|(t, q, _)| *t == m.topic && *q == m.queue_id)
            {
                Some(w) => w.2 = w.2.max(a.queue_offset + 1),
                None => woken.push((&m.topic, m.queue_id, a.queue_offset + 1)),
            }
        }
        for (topic, queue_id, max) in woken {
            inner.notify_arrival(topic, queue_id, max);
        }
        if preps.iter().any(|p| p.wait) && !inner.wait_flushed(end).await {
            let first = &results[0];
            return Err(PutError::FlushTimeout(PutResult {
                commit_log_offset: first.commit_log_offset,
                queue_offset: first.queue_offset,
                wrote_bytes: results.iter().map(|r| r.wrote_bytes).sum(),
                store_timestamp: first.store_timestamp,
                msg_id: results
                    .iter()
                    .map(|r| r.msg_id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            }));
        }
        Ok(results)
    }

    /// Read up to `max_msgs` messages (and about `max_bytes`) of a queue
    /// from `offset`, keeping those whose tag code passes `filter`. Never
    /// blocks on writers.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: i32,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetResult {
        self.get_messages_matching(topic, queue_id, offset, max_msgs, max_bytes, filter, None)
    }

    /// As [`Store::get_messages`], with a second filter over each stored
    /// record whose tag code passed (a property filter); it sees the
    /// record's bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn get_messages_matching(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: i32,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
        record_filter: Option<&RecordFilter<'_>>,
    ) -> GetResult {
        let result = self.inner.get_messages(
            topic,
            queue_id,
            offset,
            max_msgs,
            max_bytes,
            filter,
            record_filter,
        );
        let c = &self.inner.counters;
        if result.status == GetStatus::Found {
            Counters::add(&c.get_found, 1);
            Counters::add(&c.get_message_count, result.messages.len() as u64);
        } else {
            Counters::add(&c.get_miss, 1);
        }
        result
    }

    /// The next offset to be written in a queue (0 if it has none).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .queue(topic, queue_id)
            .map_or(0, |q| q.max_offset())
    }

    /// The oldest offset still readable in a queue (0 if it has none).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .queue(topic, queue_id)
            .map_or(0, |q| q.min_offset())
    }

    /// The first offset whose store time is at or after `timestamp_ms`; the
    /// max offset if there is none, the min offset if all are later.
    pub fn offset_by_time(&self, topic: &str, queue_id: i32, timestamp_ms: i64) -> i64 {
        let Some(cq) = self.inner.queue(topic, queue_id) else {
            return 0;
        };
        let (mut lo, mut hi) = (cq.min_offset(), cq.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.inner.store_time_of(&cq, mid) {
                Some(t) if t >= timestamp_ms => hi = mid,
                _ => lo = mid + 1,
            }
        }
        lo
    }

    /// Store time of the oldest message still in a queue.
    pub fn earliest_store_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let cq = self.inner.queue(topic, queue_id)?;
        self.inner.store_time_of(&cq, cq.min_offset())
    }

    /// Store time of the message at `offset` of a queue.
    pub fn store_time_at(&self, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        let cq = self.inner.queue(topic, queue_id)?;
        self.inner.store_time_of(&cq, offset)
    }

    /// The exact stored bytes of the record at `commit_log_offset`.
    pub fn read_record(&self, commit_log_offset: i64) -> Option<Bytes> {
        if commit_log_offset >= self.inner.raft_visible.load(Ordering::Acquire) {
            return None;
        }
        self.inner.commit_log.read_record(commit_log_offset)
    }

    /// `size` stored bytes at `commit_log_offset` (one record, or several
    /// contiguous ones within a segment).
    pub fn read_record_at(&self, commit_log_offset: i64, size: i32) -> Option<Bytes> {
        let size = usize::try_from(size).ok().filter(|&s| s > 0)?;
        let visible = self.inner.raft_visible.load(Ordering::Acquire);
        if commit_log_offset.saturating_add(size as i64) > visible {
            return None;
        }
        self.inner.commit_log.read(commit_log_offset, size)
    }

    /// Commit-log offsets of messages of `topic` carrying `key` in KEYS or
    /// as UNIQ_KEY, stored within `[begin_ts, end_ts]`: newest first, at
    /// most `max_num`. Each one is checked against the record itself.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ts: i64,
        end_ts: i64,
    ) -> Vec<i64> {
        if max_num == 0 || key.is_empty() {
            return Vec::new();
        }
        let candidates = self.inner.index.lock().candidates(
            topic,
            key,
            begin_ts,
            end_ts,
            max_num.saturating_mul(2).saturating_add(16),
        );
        let mut out: Vec<i64> = Vec::new();
        for offset in candidates {
            if out.len() >= max_num {
                break;
            }
            if out.contains(&offset) {
                continue;
            }
            let Some(bytes) = self.read_record(offset) else {
                continue;
            };
            let Ok(view) = parse_record(&bytes) else {
                continue;
            };
            let matches = view.commit_log_offset == offset
                && view.topic == topic.as_bytes()
                && view.store_timestamp >= begin_ts
                && view.store_timestamp <= end_ts
                && view.properties_str().is_some_and(|p| has_key(p, key));
            if matches {
                out.push(offset);
            }
        }
        out
    }

    /// Drop a topic's consume queues (its records stay in the commit log
    /// until retention removes them).
    pub fn delete_topic(&self, topic: &str) {
        // Under the put lock, so a concurrent put cannot recreate the queue
        // files while the old ones are being removed.
        let mut w = self.inner.writer.lock();
        let removed = w.queues.remove(topic);
        self.inner.queues.write().remove(topic);
        if let Some(queues) = removed {
            for cq in queues.values() {
                if let Err(e) = cq.wipe() {
                    tracing::warn!(topic, queue_id = cq.queue_id(), error = %e, "could not delete consume-queue files");
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.inner.config.consume_queue_dir().join(topic));
        drop(w);
        // So recovery does not bring the queues back from an older checkpoint.
        if let Err(e) = self.inner.checkpoint(false) {
            tracing::warn!(error = %e, "could not write checkpoint after deleting topic {topic}");
        }
    }

    /// Let `gate` veto retention: before segments go, it is asked whether
    /// the log may start at the first kept segment (a Raft member purges
    /// its Raft log up to there first).
    /// `None` removes it (the gate's owner is going away).
    pub fn set_retention_gate(&self, gate: Option<RetentionGate>) {
        *self.inner.retention_gate.write() = gate;
    }

    /// Tell retention which records are still needed, however old and
    /// however full the disk: it never deletes a segment holding one, nor
    /// any later segment, and logs when that holds expired segments back.
    /// `None` removes it.
    pub fn set_retention_floor(&self, floor: Option<RetentionFloor>) {
        *self.inner.retention_floor.write() = floor;
    }

    /// The commit-log offset from which retention keeps everything now:
    /// the first record still needed (see [`Self::set_retention_floor`]),
    /// or the end of what is dispatched to consume queues.
    pub fn retention_floor(&self) -> i64 {
        retention::floor(&self.inner).offset
    }

    /// Install the callback run after messages become readable (once per
    /// put, or once per queue for a batch), for long-poll wake-ups.
    pub fn set_arrival_listener(&self, f: ArrivalListener) {
        *self.inner.listener.write() = Some(f);
    }

    /// Where the next record will be written.
    pub fn max_commit_log_offset(&self) -> i64 {
        self.inner.commit_log.readable_offset()
    }

    /// Follow [`Self::max_commit_log_offset`]: the receiver sees each new
    /// end of the readable commit log (replication pushes from it).
    pub fn subscribe_max_offset(&self) -> watch::Receiver<i64> {
        self.inner.max_offset_tx.subscribe()
    }

    /// The oldest commit-log offset still kept.
    pub fn min_commit_log_offset(&self) -> i64 {
        self.inner.commit_log.min_offset()
    }

    /// Everything below is on disk.
    pub fn flushed_offset(&self) -> i64 {
        self.inner.commit_log.flushed_offset()
    }

    /// Counters and sizes for GET_BROKER_RUNTIME_INFO.
    pub fn stats(&self) -> StoreStats {
        let i = &self.inner;
        let c = &i.counters;
        StoreStats {
            put_message_count: Counters::get(&c.put_message_count),
            put_message_bytes: Counters::get(&c.put_message_bytes),
            put_calls: Counters::get(&c.put_calls),
            put_failures: Counters::get(&c.put_failures),
            flush_timeouts: Counters::get(&c.flush_timeouts),
            get_found: Counters::get(&c.get_found),
            get_miss: Counters::get(&c.get_miss),
            get_message_count: Counters::get(&c.get_message_count),
            flush_count: Counters::get(&c.flush_count),
            flush_latency_buckets: c.flush_buckets.iter().map(Counters::get).collect(),
            flush_latency_sum_secs: Counters::get(&c.flush_nanos) as f64 / 1e9,
            page_cache_releases: Counters::get(&c.page_cache_releases),
            commit_log_min_offset: i.commit_log.min_offset(),
            commit_log_max_offset: i.commit_log.readable_offset(),
            flushed_offset: i.commit_log.flushed_offset(),
            disk_used_ratio: retention::disk_used_ratio(&i.config.commit_log_dir)
                .unwrap_or_else(|_| f64::from_bits(i.disk_ratio_bits.load(Ordering::Relaxed))),
            queue_count: i.queues.read().values().map(HashMap::len).sum(),
            segment_count: i.commit_log.segments().len(),
            segments_deleted: Counters::get(&c.segments_deleted),
        }
    }

    /// Force the commit log, consume queues and index to disk and write the
    /// checkpoint.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.checkpoint(false)
    }

    /// Run a retention pass now: delete commit-log segments older than
    /// `file_reserved_time_hours` (any age when `force`, oldest first, as
    /// when the disk is over `disk_max_used_space_ratio`), then the
    /// consume-queue and index files below the new minimum. Returns the
    /// number of segments deleted.
    pub fn delete_expired_files(&self, force: bool) -> io::Result<usize> {
        retention::clean(&self.inner, force)
    }

    /// Flush everything, stop the threads, write a clean checkpoint. Puts
    /// after this fail with `ServiceNotAvailable`. Idempotent.
    pub fn shutdown(&self) {
        if self.inner.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        let threads = [
            self.inner.flusher.get(),
            self.inner.checkpointer.get(),
            self.inner.retainer.get(),
        ];
        for t in threads.into_iter().flatten() {
            t.unpark();
        }
        for handle in self.threads.lock().drain(..) {
            let _ = handle.join();
        }
        // Taking the put lock once waits for any put still inside it; new
        // ones see the flag.
        drop(self.inner.writer.lock());
        if let Err(e) = self.inner.checkpoint(true) {
            tracing::error!(error = %e, "final flush at shutdown failed");
        }
    }

    /// Every consume queue: (topic, queue id).
    pub fn topics_and_queues(&self) -> Vec<(String, i32)> {
        let queues = self.inner.queues.read();
        let mut out: Vec<(String, i32)> = queues
            .iter()
            .flat_map(|(t, qs)| qs.keys().map(move |q| (t.clone(), *q)))
            .collect();
        out.sort();
        out
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn count_failure(&self) {
        Counters::add(&self.counters.put_failures, 1);
    }

    pub(crate) fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    /// Check a message and work out what can be known before the lock.
    pub(crate) fn prepare(&self, msg: &mut PutMessage) -> Result<Prepared, PutError> {
        let illegal = |s: String| Err(PutError::MessageIllegal(s));
        check_topic_name(&msg.topic).map_err(PutError::MessageIllegal)?;
        if msg.queue_id < 0 {
            return illegal(format!("queue id {} is negative", msg.queue_id));
        }
        if msg.body.len() > self.config.max_message_size {
            return illegal(format!(
                "message body is {} bytes; the limit (maxMessageSize) is {}",
                msg.body.len(),
                self.config.max_message_size
            ));
        }
        // The properties end in a non-zero byte (their final separator), and
        // a topic has no NUL, which lets recovery tell a torn, zero-filled
        // tail from a record.
        if !msg.properties.is_empty() && !msg.properties.ends_with(PROPERTY_SEPARATOR) {
            msg.properties.push(PROPERTY_SEPARATOR);
        }
        if msg.properties.len() > MAX_PROPERTIES_LEN {
            return illegal(format!(
                "properties are {} bytes; at most {MAX_PROPERTIES_LEN} are allowed",
                msg.properties.len()
            ));
        }
        let size = record_len(
            msg.born_host.is_ipv6(),
            msg.store_host.is_ipv6(),
            msg.body.len(),
            msg.topic.len(),
            msg.properties.len(),
        );
        if size + END_FILE_MIN_BLANK_LENGTH > self.commit_log.segment_size() {
            return illegal(format!(
                "record of {size} bytes does not fit in a commit-log segment of {}",
                self.commit_log.segment_size()
            ));
        }
        let wait = self.config.flush_disk_type == FlushDiskType::SyncFlush
            && message::waits_for_store(&msg.properties);
        Ok(Prepared {
            size,
            body_crc: message::body_crc(&msg.body),
            to_queue: goes_to_queue(msg.sys_flag),
            to_index: goes_to_index(msg.sys_flag),
            wait,
        })
    }

    /// Append messages contiguously under the put lock; `out(i, ..)` learns
    /// where message `i` went. Returns the commit-log offset just past them.
    fn append(
        &self,
        msgs: &[PutMessage],
        preps: &[Prepared],
        out: impl FnMut(usize, Appended),
    ) -> Result<i64, PutError> {
        if self.raft_visible.load(Ordering::Acquire) != i64::MAX {
            return Err(PutError::ServiceNotAvailable(
                "this store is a Raft member's: writes go through the Raft group".into(),
            ));
        }
        self.append_with(None, msgs, preps, out)
    }

    /// A Raft leader's append of one entry in `term` (see `raft`): records
    /// only; queue entries and index keys come when it is applied.
    pub(crate) fn append_raft(
        &self,
        term: u64,
        msgs: &[PutMessage],
        preps: &[Prepared],
        out: impl FnMut(usize, Appended),
    ) -> Result<i64, PutError> {
        self.append_with(Some(term), msgs, preps, out)
    }

    fn append_with(
        &self,
        raft_term: Option<u64>,
        msgs: &[PutMessage],
        preps: &[Prepared],
        mut out: impl FnMut(usize, Appended),
    ) -> Result<i64, PutError> {
        debug_assert_eq!(msgs.len(), preps.len());
        if self.shutdown.load(Ordering::Acquire) {
            return Err(PutError::ServiceNotAvailable(
                "the message store is shut down".into(),
            ));
        }
        if self.disk_full.load(Ordering::Relaxed) {
            return Err(PutError::DiskFull);
        }
        let total: usize = preps.iter().map(|p| p.size).sum();
        if total + END_FILE_MIN_BLANK_LENGTH > self.commit_log.segment_size() {
            return Err(PutError::MessageIllegal(format!(
                "batch of {total} bytes does not fit in a commit-log segment of {}",
                self.commit_log.segment_size()
            )));
        }
        let mut guard = self.writer.lock();
        if self.shutdown.load(Ordering::Acquire) {
            return Err(PutError::ServiceNotAvailable(
                "the message store is shut down".into(),
            ));
        }
        let w = &mut *guard;
        if w.replica_part {
            return Err(PutError::ServiceNotAvailable(format!(
                "the commit log ends in a partly replicated record at offset {}; \
                 this store is a replica until that record is complete or cut off",
                self.commit_log.readable_offset()
            )));
        }
        if let Some(term) = raft_term {
            if w.assigned.term() != term {
                // A new leader: entries appended before its term may not be
                // applied yet; their queue offsets are taken.
                let visible = self.raft_visible.load(Ordering::Acquire);
                let readable = self.commit_log.readable_offset();
                w.assigned =
                    crate::raft::Assigned::rebuild(term, &self.commit_log, visible, readable);
            }
        }
        if msgs.iter().any(|m| m.at_queue_offset.is_some()) {
            self.check_queue_offsets(w, raft_term.is_some(), msgs, preps)?;
        }
        let (seg, pos) = self.commit_log.reserve(&mut w.appender, total)?;
        let base = w.appender.write_offset();
        let store_ts = now_ms();
        let mut index = self.index.lock();
        let mut cursor = 0usize;
        for (i, (msg, prep)) in msgs.iter().zip(preps).enumerate() {
            let cq = writer_queue(
                &mut w.queues,
                &self.queues,
                &self.config,
                &msg.topic,
                msg.queue_id,
            );
            // `at_queue_offset` was checked above: it is the queue's next
            // offset, or the first of an empty queue.
            let queue_offset = match (prep.to_queue, raft_term) {
                (false, _) => 0,
                (true, None) => msg.at_queue_offset.unwrap_or_else(|| cq.next_offset()),
                (true, Some(_)) => {
                    let applied = cq.next_offset();
                    let q = msg
                        .at_queue_offset
                        .unwrap_or_else(|| w.assigned.next(&msg.topic, msg.queue_id, applied));
                    w.assigned.set(&msg.topic, msg.queue_id, q + 1);
                    q
                }
            };
            let offset = base + cursor as i64;
            let rec = RecordRef {
                topic: &msg.topic,
                queue_id: msg.queue_id,
                flag: msg.flag,
                queue_offset,
                commit_log_offset: offset,
                sys_flag: msg.sys_flag,
                born_timestamp: msg.born_timestamp,
                born_host: msg.born_host,
                store_timestamp: store_ts,
                store_host: msg.store_host,
                reconsume_times: msg.reconsume_times,
                prepared_transaction_offset: msg.prepared_transaction_offset,
                body: &msg.body,
                body_crc: prep.body_crc,
                properties: &msg.properties,
            };
            // SAFETY: [pos, pos + total) lies beyond the readable offset and
            // we hold the put lock, so nothing else touches it.
            let dst = unsafe { seg.slice_mut(pos + cursor, prep.size) };
            let step = encode_record(&rec, dst)
                .map_err(|e| PutError::MessageIllegal(e.to_string()))
                .and_then(|_| {
                    if raft_term.is_some() {
                        return Ok(());
                    }
                    if prep.to_queue {
                        let tags =
                            tags_code(&msg.topic, &msg.properties, store_ts, &self.delay_levels);
                        cq.put(
                            queue_offset,
                            CqEntry {
                                offset,
                                size: prep.size as i32,
                                tags_code: tags,
                            },
                        )?;
                    }
                    if prep.to_index {
                        for key in index_keys(&msg.properties) {
                            index.add(&msg.topic, key, offset, store_ts)?;
                        }
                    }
                    Ok(())
                });
            if let Err(e) = step {
                // Nothing was published: forget the queue offsets handed out.
                for m in &msgs[..=i] {
                    if let Some(q) = w
                        .queues
                        .get(m.topic.as_str())
                        .and_then(|qs| qs.get(&m.queue_id))
                    {
                        q.rewind();
                    }
                }
                return Err(e);
            }
            out(
                i,
                Appended {
                    offset,
                    queue_offset,
                    size: prep.size,
                    store_ts,
                },
            );
            cursor += prep.size;
        }
        debug_assert_eq!(cursor, total);
        if raft_term.is_none() {
            index.covered_to(base + total as i64);
        }
        drop(index);
        w.appender.advance(total);
        let end = w.appender.write_offset();
        // Records first, then the queue entries that point at them.
        self.commit_log.publish(end);
        for (msg, prep) in msgs.iter().zip(preps) {
            if prep.to_queue && raft_term.is_none() {
                if let Some(q) = w
                    .queues
                    .get(msg.topic.as_str())
                    .and_then(|qs| qs.get(&msg.queue_id))
                {
                    q.publish(q.next_offset());
                }
            }
        }
        self.announce_max_offset(end);
        drop(guard);
        Counters::add(&self.counters.put_message_count, msgs.len() as u64);
        Counters::add(&self.counters.put_message_bytes, total as u64);
        Ok(end)
    }

    /// Before anything is written: does every message with an
    /// `at_queue_offset` land exactly there? Put lock held.
    fn check_queue_offsets(
        &self,
        w: &Writer,
        raft: bool,
        msgs: &[PutMessage],
        preps: &[Prepared],
    ) -> Result<(), PutError> {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for (msg, prep) in msgs.iter().zip(preps) {
            if !prep.to_queue {
                continue;
            }
            let key = (msg.topic.as_str(), msg.queue_id);
            let n = match next.get(&key) {
                Some(&n) => n,
                None => {
                    let cq = w
                        .queues
                        .get(msg.topic.as_str())
                        .and_then(|qs| qs.get(&msg.queue_id))
                        .cloned()
                        .or_else(|| self.queue(&msg.topic, msg.queue_id));
                    let (applied, min) = cq
                        .as_ref()
                        .map_or((0, 0), |q| (q.next_offset(), q.min_offset()));
                    let n = if raft {
                        w.assigned.next(&msg.topic, msg.queue_id, applied)
                    } else {
                        applied
                    };
                    // An empty queue (new, or emptied by retention) may
                    // start wherever its first message says.
                    match msg.at_queue_offset {
                        Some(want) if n == min && want > n => want,
                        _ => n,
                    }
                }
            };
            let at = match msg.at_queue_offset {
                Some(want) if want != n => {
                    return Err(PutError::QueueOffsetMismatch {
                        topic: msg.topic.clone(),
                        queue_id: msg.queue_id,
                        wanted: want,
                        next: n,
                    })
                }
                _ => n,
            };
            next.insert(key, at + 1);
        }
        Ok(())
    }

    /// Tell followers of the log that it now ends at `end`. Put lock held,
    /// so the values sent only grow (between cuts).
    pub(crate) fn announce_max_offset(&self, end: i64) {
        self.max_offset_tx.send_if_modified(|cur| {
            let changed = *cur != end;
            *cur = end;
            changed
        });
    }

    pub(crate) fn notify_arrival(&self, topic: &str, queue_id: i32, max_offset: i64) {
        let listener = self.listener.read().clone();
        if let Some(f) = listener {
            f(topic, queue_id, max_offset);
        }
    }

    /// Wait (async) until the commit log is on disk up to `end`.
    async fn wait_flushed(&self, end: i64) -> bool {
        if self.commit_log.flushed_offset() >= end {
            return true;
        }
        self.request_flush();
        let mut rx = self.flushed_tx.subscribe();
        let timeout = Duration::from_millis(self.config.sync_flush_timeout_ms);
        let ok = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|&f| f >= end)).await,
            Ok(Ok(_))
        );
        if !ok {
            Counters::add(&self.counters.flush_timeouts, 1);
        }
        ok
    }

    /// Wake the flush thread unless a flush is already requested.
    pub(crate) fn request_flush(&self) {
        if !self.flush_pending.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.flusher.get() {
                t.unpark();
            }
        }
    }

    /// Force new commit-log bytes to disk and tell waiting puts. A
    /// periodic flush under ASYNC_FLUSH (`periodic`) leaves the page being
    /// appended to for later (see `CommitLog::flush`).
    pub(crate) fn flush_commit_log(&self, periodic: bool) -> io::Result<()> {
        let whole_pages = periodic && self.config.flush_disk_type == FlushDiskType::AsyncFlush;
        let _g = self.flush_lock.lock();
        let before = self.commit_log.flushed_offset();
        let started = std::time::Instant::now();
        let after = self.commit_log.flush(whole_pages)?;
        if after > before {
            self.counters.flushed(started.elapsed());
        }
        self.flushed_tx.send_replace(after);
        Ok(())
    }

    /// Force everything to disk and record it in the checkpoint.
    pub(crate) fn checkpoint(&self, clean_shutdown: bool) -> io::Result<()> {
        let mut forced = self.checkpoint_lock.lock();
        self.checkpoint_locked(&mut forced, clean_shutdown)
    }

    /// What the checkpoint thread does every `checkpoint_interval_ms`: the
    /// commit log and consume queues to disk, the index only every
    /// [`INDEX_FLUSH_INTERVAL`], then the checkpoint.
    pub(crate) fn routine_checkpoint(&self) -> io::Result<()> {
        let mut forced = self.checkpoint_lock.lock();
        let due = forced
            .at
            .is_none_or(|at| at.elapsed() >= INDEX_FLUSH_INTERVAL);
        self.checkpoint_with(&mut forced, false, due)
    }

    /// [`Inner::checkpoint`] with the checkpoint lock already held
    /// (`forced` is what it guards).
    pub(crate) fn checkpoint_locked(
        &self,
        forced: &mut IndexForced,
        clean_shutdown: bool,
    ) -> io::Result<()> {
        self.checkpoint_with(forced, clean_shutdown, true)
    }

    fn checkpoint_with(
        &self,
        forced: &mut IndexForced,
        clean_shutdown: bool,
        flush_index: bool,
    ) -> io::Result<()> {
        // A consistent cut: commit-log end and queue ends at the same instant.
        // Only `Arc` clones under the put lock; names are copied after.
        let (derived, ends) = {
            let w = self.writer.lock();
            let ends: Vec<(Arc<ConsumeQueue>, i64)> = w
                .queues
                .values()
                .flat_map(|qs| qs.values())
                .map(|cq| (Arc::clone(cq), cq.max_offset()))
                .collect();
            // The readable offset, not the write position: a replica may
            // hold part of a record past it that is not dispatched yet.
            (self.commit_log.readable_offset(), ends)
        };
        let queues = ends
            .iter()
            .map(|(cq, max)| QueueMark {
                topic: cq.topic().to_string(),
                queue_id: cq.queue_id(),
                max_offset: *max,
            })
            .collect();
        self.flush_commit_log(!clean_shutdown)?;
        for cq in self.all_queues() {
            cq.flush()?;
        }
        let (targets, index_begin) = {
            let index = self.index.lock();
            (
                flush_index.then(|| index.flush_targets()),
                index.begin_offset(),
            )
        };
        if let Some(targets) = targets {
            for (map, used) in targets {
                map.flush_range_paced(0, used)?;
            }
            *forced = IndexForced {
                below: derived,
                at: Some(Instant::now()),
            };
        }
        // Unless forced just now, what is known durable stays where it was (a
        // truncation below it forces the index, so it is never past the end).
        let index_flushed = forced.below.min(derived);
        Checkpoint {
            version: Checkpoint::VERSION,
            commit_log_flushed: self.commit_log.flushed_offset(),
            derived_flushed: derived,
            index_flushed: Some(index_flushed),
            index_begin,
            clean_shutdown,
            timestamp_ms: now_ms(),
            queues,
        }
        .persist(&self.config.checkpoint_path())
    }

    /// Keep the broker's resident memory small: mapped pages of the commit
    /// log more than [`HOT_COMMIT_LOG_BYTES`] behind its end, of older
    /// index entries and of older consume-queue entries, are released every [`RELEASE_INTERVAL`] by the
    /// checkpoint thread. They stay in the page cache (dirty ones included:
    /// the mapping is shared), so a consumer reading old messages maps them
    /// again with a minor fault. Without this, every page ever written or
    /// read stays counted in the process's RSS.
    pub(crate) fn release_cold_pages(&self) {
        // Ahead of the writer: fault the next pages in now, off the put
        // path (see `MappedFile::prefault`).
        let end = self.commit_log.readable_offset();
        if let Some(seg) = self.commit_log.segment_for(end) {
            let pos = (end - seg.start()) as usize;
            seg.prefault(pos, PREFAULT_BYTES);
        }
        let keep_from = end - HOT_COMMIT_LOG_BYTES;
        let mut released = false;
        for seg in self.commit_log.segments() {
            if seg.start() >= keep_from {
                break;
            }
            let upto = (keep_from.min(seg.end()) - seg.start()) as usize;
            seg.release(0, upto);
            released = true;
        }
        let cold = self.index.lock().cold_ranges(HOT_INDEX_BYTES);
        for (map, pos, len) in cold {
            map.release(pos, len);
            released = true;
        }
        if released {
            Counters::add(&self.counters.page_cache_releases, 1);
        }
        for cq in self.all_queues() {
            cq.release_cold(HOT_QUEUE_BYTES);
        }
    }

    /// Every consume queue, taken out of the map (its lock is not held
    /// while the caller works on them).
    pub(crate) fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .values()
            .flat_map(|qs| qs.values().cloned())
            .collect()
    }

    /// Store time of message `q` of a queue, read from its record.
    fn store_time_of(&self, cq: &ConsumeQueue, q: i64) -> Option<i64> {
        let e = cq.entry(q).filter(CqEntry::is_valid)?;
        self.commit_log
            .with_slice(e.offset, e.size as usize, |rec| {
                let sys_flag = i32::from_be_bytes(rec.get(36..40)?.try_into().ok()?);
                let at = message::store_timestamp_position(sys_flag);
                Some(i64::from_be_bytes(rec.get(at..at + 8)?.try_into().ok()?))
            })?
    }

    #[allow(clippy::too_many_arguments)]
    fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: i32,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
        record_filter: Option<&RecordFilter<'_>>,
    ) -> GetResult {
        let mut result = GetResult {
            status: GetStatus::NoMessageInQueue,
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            total_bytes: 0,
        };
        let Some(cq) = self.queue(topic, queue_id) else {
            return result;
        };
        let (min, max) = (cq.min_offset(), cq.max_offset());
        result.min_offset = min;
        result.max_offset = max;
        if max == 0 {
            return result;
        }
        if offset < min {
            result.status = GetStatus::OffsetTooSmall;
            result.next_begin_offset = min;
            return result;
        }
        if offset == max {
            result.status = GetStatus::OffsetOverflowOne;
            result.next_begin_offset = offset;
            return result;
        }
        if offset > max {
            result.status = GetStatus::OffsetOverflowBadly;
            result.next_begin_offset = max;
            return result;
        }
        let max_count =
            (max_msgs.max(1) as usize).min(self.config.max_transfer_count_per_get.max(1));
        let byte_limit = max_bytes
            .max(100)
            .min(self.config.max_transfer_bytes_per_get);
        // How many entries one get may look at while filtering (RocketMQ's
        // maxFilterMessageSize of 16000 bytes of entries).
        let scan_limit = 800usize.max(max_count);
        let commit_log_min = self.commit_log.min_offset();
        let mut next = offset;
        let mut found: Vec<(i64, CqEntry)> = Vec::new();
        let mut total = 0usize;
        let mut gone = false;
        cq.for_each_from(offset, scan_limit, |q, e| {
            if !e.is_valid() {
                next = q + 1;
                return true;
            }
            let size = e.size as usize;
            if e.offset < commit_log_min {
                gone = true;
                next = q + 1;
                return true;
            }
            if !filter(e.tags_code) {
                next = q + 1;
                return true;
            }
            if let Some(f) = record_filter {
                // A record that cannot be read is passed on; materialize
                // decides what to do with it.
                let keep = self
                    .commit_log
                    .with_slice(e.offset, size, f)
                    .unwrap_or(true);
                if !keep {
                    next = q + 1;
                    return true;
                }
            }
            if !found.is_empty() && (found.len() + 1 > max_count || total + size > byte_limit) {
                return false;
            }
            next = q + 1;
            found.push((q, e));
            total += size;
            true
        });
        result.next_begin_offset = next;
        self.materialize(queue_id, &found, &mut result);
        result.status = if !result.messages.is_empty() {
            GetStatus::Found
        } else if gone {
            GetStatus::OffsetFoundNull
        } else {
            GetStatus::NoMatchedMessage
        };
        result
    }

    /// Turn entries into record bytes: one zero-copy buffer per segment,
    /// sliced per record.
    fn materialize(&self, queue_id: i32, entries: &[(i64, CqEntry)], result: &mut GetResult) {
        let seg_size = self.commit_log.segment_size() as i64;
        let mut i = 0;
        while i < entries.len() {
            let seg_no = entries[i].1.offset / seg_size;
            let mut j = i;
            while j < entries.len() && entries[j].1.offset / seg_size == seg_no {
                j += 1;
            }
            let lo = entries[i].1.offset;
            let hi = entries[i..j]
                .iter()
                .map(|(_, e)| e.end())
                .max()
                .unwrap_or(lo);
            if let Some(buf) = self.commit_log.read(lo, (hi - lo) as usize) {
                for (q, e) in &entries[i..j] {
                    let at = (e.offset - lo) as usize;
                    let rec = buf.slice(at..at + e.size as usize);
                    // A queue entry must point at a record of its own size.
                    if be_i32(&rec, 0) != Some(e.size) {
                        tracing::warn!(
                            offset = e.offset,
                            "consume-queue entry does not point at a record; skipped"
                        );
                        continue;
                    }
                    debug_assert_eq!(
                        be_i32(&rec, 12),
                        Some(queue_id),
                        "entry points at another queue's record"
                    );
                    debug_assert_eq!(
                        rec.get(20..28)
                            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
                        Some(*q),
                        "entry points at a record with another queue offset"
                    );
                    result.total_bytes += rec.len();
                    result.messages.push(rec);
                }
            }
            i = j;
        }
    }
}

/// Whether `topic` may name a topic: not empty, at most [`MAX_TOPIC_LEN`]
/// bytes, and usable as a directory name that stays inside consumequeue/.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic is empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic is {} bytes; at most {MAX_TOPIC_LEN} are allowed",
            topic.len()
        ));
    }
    if topic.contains(['/', '\\', '\0']) || topic == "." || topic == ".." {
        return Err(format!(
            "topic {topic:?} contains characters not allowed in a topic name"
        ));
    }
    Ok(())
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The writer's queue for (topic, queue id), created on first use.
pub(crate) fn writer_queue<'a>(
    queues: &'a mut QueueMap,
    shared: &RwLock<QueueMap>,
    config: &StoreConfig,
    topic: &str,
    queue_id: i32,
) -> &'a Arc<ConsumeQueue> {
    if !queues
        .get(topic)
        .is_some_and(|qs| qs.contains_key(&queue_id))
    {
        let cq = Arc::new(ConsumeQueue::new(
            &config.consume_queue_dir(),
            topic,
            queue_id,
            config.consume_queue_entries_per_file,
        ));
        shared
            .write()
            .entry(topic.to_string())
            .or_default()
            .insert(queue_id, Arc::clone(&cq));
        queues
            .entry(topic.to_string())
            .or_default()
            .insert(queue_id, cq);
    }
    &queues[topic][&queue_id]
}
