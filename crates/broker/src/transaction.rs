//! Transactional messages, RocketMQ's two-phase way.
//!
//! A half message (`TRAN_MSG=true`) is stored in `RMQ_SYS_TRANS_HALF_TOPIC`
//! queue 0, its real topic and queue in `REAL_TOPIC` / `REAL_QID`, where no
//! consumer subscribes. END_TRANSACTION decides it: a commit stores the
//! message in its real topic and queue, a rollback stores nothing; either
//! way an *op record* in `RMQ_SYS_TRANS_OP_HALF_TOPIC` (body: the half
//! message's queue offset) marks it decided. The commit and its op record
//! are one batch of one write, and both replicate like any write
//! (SYNC_MASTER slave, Raft majority). A kill -9 can still fall between
//! the two records of the batch; a commit is therefore also looked up by
//! identity (the half message's UNIQ_KEY in the real topic, pointing back
//! at the half message) before it is made, so a check-back after such a
//! crash writes only the missing mark, never a second copy.
//!
//! Undecided half messages older than `transactionTimeOut` (or their own
//! `CHECK_IMMUNITY_TIME_IN_SECONDS`) are checked: CHECK_TRANSACTION_STATE,
//! with the message as body, to a live producer of their group
//! (`PGROUP`), every `transactionCheckInterval`, at most
//! `transactionCheckMax` times (a round with no producer of the group
//! connected sends nothing and counts nothing: a half message is never
//! discarded for want of a producer to ask); then the message is
//! discarded: an op
//! record, a copy in `TRANS_CHECK_MAX_TIME_TOPIC` (queryable by key), a log
//! line and `transactionDiscardedTotal` in brokerStatus.
//!
//! What is decided is derived from the op queue, read again by whichever
//! broker leads, so a new master or Raft leader knows every decision the
//! old one made. Check counts live in `config/transaction.json` of the
//! broker that checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::codes::request_code;
use meridian_protocol::header::transaction::CheckTransactionStateRequestHeader;
use meridian_protocol::message::{
    decode_properties, decode_record, encode_properties, find_property, property, sys_flag,
    MessageExt,
};
use meridian_protocol::RemotingCommand;
use meridian_store::PutMessage;
use serde::{Deserialize, Serialize};

use crate::BrokerInner;

/// Where half messages wait (RocketMQ's name).
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where decisions are recorded (RocketMQ's name).
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where discarded half messages are kept (RocketMQ's name).
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The op records' tag (RocketMQ's "remove" tag).
const OP_TAG: &str = "d";
/// A message's own check timeout, in seconds.
const CHECK_IMMUNITY: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Half messages looked at per round.
const SCAN: i32 = 4096;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    /// Every half message below this queue offset is decided.
    #[serde(default)]
    half_cursor: i64,
    /// Checks sent per undecided half message (queue offset).
    #[serde(default)]
    checks: BTreeMap<i64, Check>,
}

#[derive(Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    times: u32,
    last_ms: i64,
}

#[derive(Default)]
struct State {
    file: StateFile,
    /// Where reading the op queue continues.
    op_next: i64,
    /// Decided half messages at or above the cursor.
    decided: BTreeSet<i64>,
    dirty: bool,
}

pub struct TransactionService {
    path: PathBuf,
    /// Held while a decision is looked up and made: one decision per half
    /// message, whether it comes from its producer or a check-back.
    state: tokio::sync::Mutex<State>,
    pub committed: AtomicU64,
    pub rolled_back: AtomicU64,
    pub discarded: AtomicU64,
    pub checks_sent: AtomicU64,
}

/// The producer's verdict (END_TRANSACTION's `commitOrRollback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Commit,
    Rollback,
    Unknown,
}

/// Why a verdict could not be applied.
#[derive(Debug)]
pub enum EndError {
    /// No half message of that producer group at that offset.
    NotFound(String),
    /// The write failed; the half message stays undecided.
    Write(crate::WriteError),
    /// Stored, but not replicated as the role promises.
    Replicas(i32, &'static str),
}

impl TransactionService {
    pub fn open(root: &std::path::Path) -> std::io::Result<Arc<TransactionService>> {
        let path = root.join("config").join("transaction.json");
        let file: StateFile = crate::load_json(&path, "transaction state")?.unwrap_or_default();
        Ok(Arc::new(TransactionService {
            path,
            state: tokio::sync::Mutex::new(State {
                file,
                ..Default::default()
            }),
            committed: AtomicU64::new(0),
            rolled_back: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            checks_sent: AtomicU64::new(0),
        }))
    }

    /// Apply a producer's verdict on the half message at `commit_log_offset`.
    /// A verdict on a message already decided changes nothing.
    pub async fn end(
        &self,
        b: &Arc<BrokerInner>,
        producer_group: &str,
        commit_log_offset: i64,
        verdict: Verdict,
    ) -> Result<(), EndError> {
        let mut st = self.state.lock().await;
        read_ops(b, &mut st);
        let half = read_half(b, commit_log_offset).ok_or_else(|| {
            EndError::NotFound(format!(
                "no half message at commit-log offset {commit_log_offset}"
            ))
        })?;
        let group = half.property(property::PRODUCER_GROUP).unwrap_or_default();
        if group != producer_group {
            return Err(EndError::NotFound(format!(
                "the half message at {commit_log_offset} belongs to producer group `{group}`, not `{producer_group}`"
            )));
        }
        if is_decided(&st, half.queue_offset) {
            return Ok(());
        }
        let msgs = match verdict {
            Verdict::Unknown => return Ok(()),
            // Stored already, its op record lost to a crash between the
            // two: only the mark is missing.
            Verdict::Commit if already_committed(b, &half) => {
                tracing::info!(
                    uniq_key = half.uniq_key().unwrap_or_default(),
                    "half message found committed without its op record (a crash between the two); marking it decided"
                );
                vec![op_record(b, half.queue_offset)]
            }
            Verdict::Commit => vec![committed(b, &half), op_record(b, half.queue_offset)],
            Verdict::Rollback => vec![op_record(b, half.queue_offset)],
        };
        let stored = b.write(msgs).await.map_err(EndError::Write)?;
        // The op record is in: decided, whatever the replicas say (the
        // producer is told, and the records replicate or the write is
        // retried by nobody; a check-back finds it decided).
        decide(&mut st, half.queue_offset);
        st.dirty = true;
        match verdict {
            Verdict::Commit => &self.committed,
            _ => &self.rolled_back,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some((code, why)) = stored.replicas.shortfall() {
            return Err(EndError::Replicas(code, why));
        }
        Ok(())
    }

    /// One round of check-backs and discards.
    async fn check(&self, b: &Arc<BrokerInner>) {
        let mut st = self.state.lock().await;
        read_ops(b, &mut st);
        let now = crate::now_ms();
        let mut offset = st.file.half_cursor;
        let end = b.store.max_offset_in_queue(HALF_TOPIC, 0);
        let min = b.store.min_offset_in_queue(HALF_TOPIC, 0);
        if offset < min {
            offset = min;
            st.file.half_cursor = min;
        }
        let mut scanned = 0;
        while offset < end && scanned < SCAN {
            let got = b
                .store
                .get_messages(HALF_TOPIC, 0, offset, 32, 1024 * 1024, &|_| true);
            if got.messages.is_empty() {
                break;
            }
            for record in &got.messages {
                scanned += 1;
                let Ok((m, _)) = decode_record(record) else {
                    offset += 1;
                    continue;
                };
                offset = m.queue_offset + 1;
                if is_decided(&st, m.queue_offset) {
                    continue;
                }
                let timeout = m
                    .property(CHECK_IMMUNITY)
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .map(|s| s.saturating_mul(1000))
                    .unwrap_or(b.config.transaction_timeout_ms as i64);
                if now - m.store_timestamp < timeout {
                    continue;
                }
                let c = st
                    .file
                    .checks
                    .get(&m.queue_offset)
                    .copied()
                    .unwrap_or_default();
                if c.times >= b.config.transaction_check_max {
                    let msgs = vec![discarded(b, &m), op_record(b, m.queue_offset)];
                    match b.write(msgs).await {
                        Ok(_) => {
                            tracing::warn!(
                                producer_group = m.property(property::PRODUCER_GROUP).unwrap_or_default(),
                                topic = m.property(property::REAL_TOPIC).unwrap_or_default(),
                                uniq_key = m.uniq_key().unwrap_or_default(),
                                checks = c.times,
                                "half message discarded: its producer never decided it (kept in {CHECK_MAX_TOPIC})"
                            );
                            decide(&mut st, m.queue_offset);
                            self.discarded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(error = ?e, "cannot discard a half message; will retry");
                            return;
                        }
                    }
                    continue;
                }
                if c.times > 0 && now - c.last_ms < b.config.transaction_check_interval_ms as i64 {
                    continue;
                }
                if !send_check(b, &m, record) {
                    // Nobody to ask: not counted, so a half message is
                    // never discarded for want of a connected producer.
                    continue;
                }
                self.checks_sent.fetch_add(1, Ordering::Relaxed);
                st.file.checks.insert(
                    m.queue_offset,
                    Check {
                        times: c.times + 1,
                        last_ms: now,
                    },
                );
                st.dirty = true;
            }
        }
        // The cursor passes what is decided.
        let mut cursor = st.file.half_cursor.max(min);
        while st.decided.remove(&cursor) {
            st.file.checks.remove(&cursor);
            cursor += 1;
            st.dirty = true;
        }
        st.file.half_cursor = cursor;
        if st.dirty {
            st.dirty = false;
            let result = crate::persist_json(&self.path, &st.file);
            if let Err(e) = result {
                st.dirty = true;
                tracing::error!(path = %self.path.display(), error = %e, "cannot persist transaction state");
            }
        }
    }
}

fn is_decided(st: &State, half_offset: i64) -> bool {
    half_offset < st.file.half_cursor || st.decided.contains(&half_offset)
}

fn decide(st: &mut State, half_offset: i64) {
    if half_offset >= st.file.half_cursor {
        st.decided.insert(half_offset);
    }
    st.file.checks.remove(&half_offset);
}

/// Take in the op records stored since the last read (all of them after a
/// restart or a change of leader).
fn read_ops(b: &BrokerInner, st: &mut State) {
    let min = b.store.min_offset_in_queue(OP_TOPIC, 0);
    if st.op_next < min {
        st.op_next = min;
    }
    loop {
        let got = b
            .store
            .get_messages(OP_TOPIC, 0, st.op_next, 32, 1024 * 1024, &|_| true);
        if got.messages.is_empty() {
            return;
        }
        for record in &got.messages {
            if let Ok((m, _)) = decode_record(record) {
                st.op_next = m.queue_offset + 1;
                for o in std::str::from_utf8(&m.body)
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|v| v.trim().parse::<i64>().ok())
                {
                    decide(st, o);
                }
            } else {
                st.op_next += 1;
            }
        }
    }
}

/// The half message at `commit_log_offset`, if that is one.
fn read_half(b: &BrokerInner, commit_log_offset: i64) -> Option<MessageExt> {
    let bytes = b.store.read_record(commit_log_offset)?;
    let (m, _) = decode_record(&bytes).ok()?;
    (m.topic == HALF_TOPIC && m.commit_log_offset == commit_log_offset).then_some(m)
}

/// Whether the half message's commit is stored already: a record of its
/// real topic with its UNIQ_KEY whose prepared-transaction offset is the
/// half message's.
fn already_committed(b: &BrokerInner, half: &MessageExt) -> bool {
    let (Some(uniq), Some(topic)) = (half.uniq_key(), half.property(property::REAL_TOPIC)) else {
        return false;
    };
    b.store
        .query_by_key(topic, uniq, 32, 0, i64::MAX)
        .into_iter()
        .filter_map(|offset| b.store.read_record(offset))
        .filter_map(|bytes| decode_record(&bytes).ok().map(|(m, _)| m))
        .any(|m| m.topic == topic && m.prepared_transaction_offset == half.commit_log_offset)
}

/// The message a commit stores: the half message in its real topic and
/// queue, marked committed.
fn committed(b: &BrokerInner, half: &MessageExt) -> PutMessage {
    let mut props = decode_properties(&half.properties);
    let topic = find_property(&half.properties, property::REAL_TOPIC)
        .unwrap_or_default()
        .to_string();
    let queue = find_property(&half.properties, property::REAL_QID)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    let queues = b
        .topics
        .get(&topic)
        .map_or(1, |c| c.write_queue_nums.max(1));
    props.retain(|(k, _)| k != property::REAL_TOPIC && k != property::REAL_QID);
    let mut put = crate::store_again(half, topic, queue.rem_euclid(queues), &props, b.store_host);
    put.sys_flag =
        sys_flag::reset_transaction_value(half.sys_flag, sys_flag::TRANSACTION_COMMIT_TYPE);
    put.prepared_transaction_offset = half.commit_log_offset;
    put
}

/// A discarded half message, kept where an operator can find it.
fn discarded(b: &BrokerInner, half: &MessageExt) -> PutMessage {
    let props = decode_properties(&half.properties);
    let (_, created) = b.topics.ensure(
        CHECK_MAX_TOPIC,
        1,
        meridian_protocol::body::perm::PERM_READ | meridian_protocol::body::perm::PERM_WRITE,
    );
    if created {
        b.register_soon();
    }
    crate::store_again(half, CHECK_MAX_TOPIC.to_string(), 0, &props, b.store_host)
}

/// The op record that marks the half message at `half_offset` decided.
fn op_record(b: &BrokerInner, half_offset: i64) -> PutMessage {
    b.own_message(
        OP_TOPIC,
        bytes::Bytes::from(half_offset.to_string()),
        encode_properties(&[(property::TAGS.to_string(), OP_TAG.to_string())]),
    )
}

/// Ask a producer of the half message's group what became of it (oneway;
/// its answer is an END_TRANSACTION). False if no producer of the group is
/// connected.
fn send_check(b: &BrokerInner, half: &MessageExt, record: &[u8]) -> bool {
    let group = half.property(property::PRODUCER_GROUP).unwrap_or_default();
    let Some(channel) = b.clients.producer_channel(group) else {
        tracing::debug!(
            group,
            "no producer of the group is connected to check a half message"
        );
        return false;
    };
    // The producer sees the message as it was sent: its real topic.
    let mut m = match decode_record(record) {
        Ok((m, _)) => m,
        Err(_) => return false,
    };
    if let Some(t) = half.property(property::REAL_TOPIC) {
        m.topic = t.to_string();
    }
    if let Some(q) = half
        .property(property::REAL_QID)
        .and_then(|v| v.parse().ok())
    {
        m.queue_id = q;
    }
    let Ok(body) = m.encode() else {
        return false;
    };
    let uniq = half.uniq_key().map(str::to_string);
    let mut req = RemotingCommand::request(request_code::CHECK_TRANSACTION_STATE).with_body(body);
    CheckTransactionStateRequestHeader {
        topic: Some(m.topic.clone()),
        tran_state_table_offset: half.queue_offset,
        commit_log_offset: half.commit_log_offset,
        msg_id: uniq.clone(),
        transaction_id: uniq,
        offset_msg_id: Some(half.offset_msg_id()),
    }
    .write(&mut req);
    tokio::spawn(async move {
        if let Err(e) = channel.conn.invoke_oneway(req).await {
            tracing::debug!(peer = %channel.conn.peer(), error = %e, "cannot send a transaction check");
        }
    });
    true
}

/// The check-back loop: once a second, on the master or Raft leader.
pub async fn run(inner: Arc<BrokerInner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if inner.is_slave() {
            continue;
        }
        inner.transactions.check(&inner).await;
    }
}
