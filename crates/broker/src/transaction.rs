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
//! Undecided half messages are checked once `transactionTimeOut` has
//! passed since they were stored (or their own, longer,
//! `CHECK_IMMUNITY_TIME_IN_SECONDS`; as in RocketMQ 5, a shorter, negative
//! or unreadable one means `transactionTimeOut`): CHECK_TRANSACTION_STATE,
//! with the message as body, to a live producer of their group
//! (`PGROUP`), every `transactionCheckInterval`, at most
//! `transactionCheckMax` times (a round with no producer of the group
//! connected sends nothing and counts nothing: a half message is never
//! discarded for want of a producer to ask); then the message is
//! discarded: an op record, a copy in `TRANS_CHECK_MAX_TIME_TOPIC`
//! (queryable by key), a log line and `transactionDiscardedTotal` in
//! brokerStatus. One still undecided after `fileReservedTime` is discarded
//! the same way, as RocketMQ does.
//!
//! Each round of checks goes on where the last one stopped and reads a
//! bounded number of undecided half messages (`SCAN`); decided ones are
//! passed over without reading. So a half message that stays undecided
//! for long delays no check of those after it. It does hold the *floor*
//! (`half_cursor`, the first undecided half message): retention keeps its
//! commit-log segment and every later one until it is decided or
//! discarded (see `retention.rs`).
//!
//! What is decided is derived from the op queue, read again by whichever
//! broker leads, so a new master or Raft leader knows every decision the
//! old one made; slaves and followers read it too, for their own floor.
//! Decisions above the floor are held as runs of queue offsets, so memory
//! grows with the undecided half messages, not with the decided ones.
//! Check counts and the cursors live in `config/transaction.json` of the
//! broker that checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
/// Undecided half messages read per round (decided ones are passed over
/// without reading): a pass over `n` undecided ones takes `n / SCAN`
/// rounds of a second.
#[cfg(not(test))]
const SCAN: usize = 4096;
#[cfg(test)]
const SCAN: usize = 8;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    /// Every half message below this queue offset is decided: the first
    /// undecided one.
    #[serde(default)]
    half_cursor: i64,
    /// Where the next round of checks goes on (back to `half_cursor` once
    /// a pass reaches the end of the queue).
    #[serde(default)]
    check_cursor: i64,
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
    /// Decided half messages at or above the floor.
    decided: Decided,
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
    /// `half_cursor`, for retention (read off the async workers).
    floor: AtomicI64,
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
            floor: AtomicI64::new(file.half_cursor),
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

    /// Every record of the half queue from this queue offset on is still
    /// needed: the first undecided half message (retention keeps it).
    pub fn retention_floor(&self) -> i64 {
        self.floor.load(Ordering::Acquire)
    }

    /// A slave or Raft follower: take in the decisions replicated here and
    /// move the floor past them, so this broker's retention keeps what an
    /// undecided half message needs, and no more.
    async fn follow(&self, b: &Arc<BrokerInner>) {
        let mut st = self.state.lock().await;
        read_ops(b, &mut st);
        self.advance_floor(b, &mut st);
        self.persist(&mut st);
    }

    /// One round of check-backs and discards. It continues where the last
    /// one stopped and reads at most `SCAN` undecided half messages,
    /// going back to the floor once it reaches the end of the queue: every
    /// undecided half message is looked at once a pass, however many
    /// undecided ones come before it.
    async fn check(&self, b: &Arc<BrokerInner>) {
        let mut st = self.state.lock().await;
        read_ops(b, &mut st);
        self.advance_floor(b, &mut st);
        let now = crate::now_ms();
        let end = b.store.max_offset_in_queue(HALF_TOPIC, 0);
        let mut offset = st.file.check_cursor.max(st.file.half_cursor);
        if offset >= end {
            offset = st.file.half_cursor;
        }
        let mut looked = 0;
        'round: while offset < end && looked < SCAN {
            // Decided runs are passed over without reading them.
            if let Some(run_end) = st.decided.run_end(offset) {
                offset = run_end;
                continue;
            }
            let undecided = st.decided.next_start(offset).unwrap_or(end).min(end) - offset;
            let want = undecided.min(32).min((SCAN - looked) as i64) as i32;
            let got = b
                .store
                .get_messages(HALF_TOPIC, 0, offset, want, 1024 * 1024, &|_| true);
            if got.messages.is_empty() {
                if got.next_begin_offset > offset {
                    // Gone to retention: on from where the queue starts.
                    offset = got.next_begin_offset;
                    continue;
                }
                break;
            }
            for record in &got.messages {
                looked += 1;
                let Ok((m, _)) = decode_record(record) else {
                    offset += 1;
                    continue;
                };
                offset = m.queue_offset + 1;
                if is_decided(&st, m.queue_offset) {
                    continue;
                }
                if !self.check_one(b, &mut st, &m, record, now).await {
                    // A write failed: this one again next round.
                    offset = m.queue_offset;
                    break 'round;
                }
            }
        }
        self.advance_floor(b, &mut st);
        // A pass that reached the end starts again at the floor.
        let next = if offset >= end {
            st.file.half_cursor
        } else {
            offset
        };
        if st.file.check_cursor != next {
            st.file.check_cursor = next;
            st.dirty = true;
        }
        self.persist(&mut st);
    }

    /// Look at one undecided half message: not due yet, a check-back, or
    /// its discard. False if a write failed.
    async fn check_one(
        &self,
        b: &Arc<BrokerInner>,
        st: &mut State,
        m: &MessageExt,
        record: &[u8],
        now: i64,
    ) -> bool {
        let age = now - m.store_timestamp;
        // As RocketMQ: undecided no longer than a commit-log segment is
        // kept, so an abandoned half message does not hold retention back
        // for ever.
        let reserved_ms =
            (b.config.store.file_reserved_time_hours as i64).saturating_mul(3_600_000);
        let expired = age > reserved_ms;
        if !expired
            && age < check_after_ms(m.property(CHECK_IMMUNITY), b.config.transaction_timeout_ms)
        {
            return true;
        }
        let c = st
            .file
            .checks
            .get(&m.queue_offset)
            .copied()
            .unwrap_or_default();
        if expired || c.times >= b.config.transaction_check_max {
            let msgs = vec![discarded(b, m), op_record(b, m.queue_offset)];
            if let Err(e) = b.write(msgs).await {
                tracing::warn!(error = ?e, "cannot discard a half message; will retry");
                return false;
            }
            let why = if expired {
                "older than fileReservedTime"
            } else {
                "its producer never decided it"
            };
            tracing::warn!(
                producer_group = m.property(property::PRODUCER_GROUP).unwrap_or_default(),
                topic = m.property(property::REAL_TOPIC).unwrap_or_default(),
                uniq_key = m.uniq_key().unwrap_or_default(),
                checks = c.times,
                age_ms = age,
                "half message discarded: {why} (kept in {CHECK_MAX_TOPIC})"
            );
            decide(st, m.queue_offset);
            self.discarded.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if c.times > 0 && now - c.last_ms < b.config.transaction_check_interval_ms as i64 {
            return true;
        }
        if !send_check(b, m, record) {
            // Nobody to ask: not counted, so a half message is never
            // discarded for want of a connected producer.
            return true;
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
        true
    }

    /// Move the floor past the decided half messages at its start, and
    /// past records retention removed.
    fn advance_floor(&self, b: &BrokerInner, st: &mut State) {
        let min = b.store.min_offset_in_queue(HALF_TOPIC, 0);
        let floor = st.decided.advance(st.file.half_cursor.max(min));
        if floor != st.file.half_cursor {
            st.file.half_cursor = floor;
            // Check counts below it are of no use any more.
            st.file.checks = st.file.checks.split_off(&floor);
            st.dirty = true;
        }
        self.floor.store(floor, Ordering::Release);
    }

    fn persist(&self, st: &mut State) {
        if !st.dirty {
            return;
        }
        st.dirty = false;
        if let Err(e) = crate::persist_json(&self.path, &st.file) {
            st.dirty = true;
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist transaction state");
        }
    }
}

/// When an undecided half message is first checked, in ms after it was
/// stored: its own `CHECK_IMMUNITY_TIME_IN_SECONDS`, but never before
/// `transactionTimeOut` (RocketMQ 5's rule), so -1, 0, a negative or an
/// unreadable value all mean `transactionTimeOut`.
fn check_after_ms(immunity: Option<&str>, transaction_timeout_ms: u64) -> i64 {
    let own = immunity
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(0, |s| s.saturating_mul(1000));
    own.max(transaction_timeout_ms.min(i64::MAX as u64) as i64)
}

fn is_decided(st: &State, half_offset: i64) -> bool {
    half_offset < st.file.half_cursor || st.decided.contains(half_offset)
}

fn decide(st: &mut State, half_offset: i64) {
    if half_offset >= st.file.half_cursor {
        st.decided.insert(half_offset);
    }
    st.file.checks.remove(&half_offset);
}

/// Decided half messages at or above the floor, as runs `[start, end)` of
/// queue offsets. Decisions come roughly in the order of the half
/// messages, so runs merge: their number grows with the undecided half
/// messages between them, not with the decisions.
#[derive(Default)]
struct Decided(BTreeMap<i64, i64>);

impl Decided {
    fn contains(&self, o: i64) -> bool {
        self.run_end(o).is_some()
    }

    /// The end of the run holding `o`.
    fn run_end(&self, o: i64) -> Option<i64> {
        self.0
            .range(..=o)
            .next_back()
            .and_then(|(_, &end)| (o < end).then_some(end))
    }

    /// The start of the first run after `o`.
    fn next_start(&self, o: i64) -> Option<i64> {
        self.0.range(o + 1..).next().map(|(&start, _)| start)
    }

    fn insert(&mut self, o: i64) {
        if self.contains(o) {
            return;
        }
        let start = match self.0.range(..o).next_back() {
            Some((&s, &e)) if e == o => s,
            _ => o,
        };
        let end = self.0.remove(&(o + 1)).unwrap_or(o + 1);
        self.0.insert(start, end);
        debug_assert!(self
            .0
            .range(..start)
            .next_back()
            .is_none_or(|(_, &e)| e < start));
    }

    /// Forget the runs that start at or below `floor`; the floor moved past
    /// them.
    fn advance(&mut self, mut floor: i64) -> i64 {
        while let Some((&start, &end)) = self.0.first_key_value() {
            if start > floor {
                break;
            }
            self.0.remove(&start);
            floor = floor.max(end);
        }
        floor
    }

    /// Runs held in memory.
    #[cfg(test)]
    fn runs(&self) -> usize {
        self.0.len()
    }
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

/// The check-back loop: once a second, on the master or Raft leader; a
/// slave or follower only follows the decisions, for its retention floor.
pub async fn run(inner: Arc<BrokerInner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if inner.is_slave() {
            inner.transactions.follow(&inner).await;
            continue;
        }
        inner.transactions.check(&inner).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::test_util::broker;

    /// Store a half message of group `g` for topic `T`, keyed by its body,
    /// with `extra` properties.
    async fn half(b: &Arc<BrokerInner>, body: &str, extra: &[(&str, &str)]) {
        let mut props = vec![
            (property::PRODUCER_GROUP.to_string(), "g".to_string()),
            (property::REAL_TOPIC.to_string(), "T".to_string()),
            (property::REAL_QID.to_string(), "0".to_string()),
            (property::KEYS.to_string(), body.to_string()),
        ];
        props.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let msg = b.own_message(
            HALF_TOPIC,
            bytes::Bytes::from(body.to_string()),
            encode_properties(&props),
        );
        b.write(vec![msg]).await.expect("half message stored");
    }

    /// Whether the half message keyed `key` was discarded.
    fn discarded_key(b: &BrokerInner, key: &str) -> bool {
        !b.store
            .query_by_key(CHECK_MAX_TOPIC, key, 1, 0, i64::MAX)
            .is_empty()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_undecided_half_message_is_reached_however_many_wait_before_it() {
        let dir = tempfile::tempdir().unwrap();
        // Due at once, and discarded at the first look: what a round
        // reaches is counted without a producer.
        let broker = broker(dir.path(), |c| {
            c.transaction_timeout_ms = 0;
            c.transaction_check_max = 0;
        })
        .await;
        let b = broker.inner().clone();
        let tx = &b.transactions;
        // One undecided for an hour, then many more than a round reads.
        half(&b, "immune", &[(CHECK_IMMUNITY, "3600")]).await;
        let n = 100;
        assert!(n > 4 * SCAN as u64);
        for i in 0..n {
            half(&b, &format!("m-{i}"), &[]).await;
        }
        for _ in 0..(n as usize / SCAN + 3) {
            tx.check(&b).await;
        }
        assert_eq!(
            tx.discarded.load(Ordering::Relaxed),
            n,
            "every half message after the one that stays undecided was reached"
        );
        assert!(!discarded_key(&b, "immune"));
        // The one left undecided holds the floor; the decisions after it
        // are one run in memory, not a hundred entries.
        let st = tx.state.lock().await;
        assert_eq!(st.file.half_cursor, 0);
        assert_eq!(tx.retention_floor(), 0);
        assert_eq!(st.decided.runs(), 1);
        drop(st);
        broker.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_message_is_checked_once_its_immunity_ends_and_never_before_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path(), |c| {
            c.transaction_timeout_ms = 1000;
            c.transaction_check_max = 0;
        })
        .await;
        let b = broker.inner().clone();
        let tx = &b.transactions;
        let stored = Instant::now();
        half(&b, "immune-3s", &[(CHECK_IMMUNITY, "3")]).await;
        for (key, value) in [("minus-one", "-1"), ("zero", "0"), ("garbage", "soon")] {
            half(&b, key, &[(CHECK_IMMUNITY, value)]).await;
        }
        // None is due before transactionTimeOut.
        tx.check(&b).await;
        if stored.elapsed() < Duration::from_millis(900) {
            assert_eq!(tx.discarded.load(Ordering::Relaxed), 0);
        }
        // After it, those whose immunity is shorter or invalid are.
        tokio::time::sleep(Duration::from_millis(1300).saturating_sub(stored.elapsed())).await;
        tx.check(&b).await;
        for key in ["minus-one", "zero", "garbage"] {
            assert!(
                discarded_key(&b, key),
                "{key} was not checked after transactionTimeOut"
            );
        }
        if stored.elapsed() < Duration::from_millis(2900) {
            assert!(
                !discarded_key(&b, "immune-3s"),
                "checked within its immunity"
            );
        }
        // The immune one, once its immunity is over.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !discarded_key(&b, "immune-3s") {
            assert!(
                Instant::now() < deadline,
                "never checked after its immunity ended"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.check(&b).await;
        }
        assert!(stored.elapsed() >= Duration::from_secs(3));
        broker.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_message_undecided_past_file_reserved_time_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        // Kept no longer than a segment: zero hours here.
        let broker = broker(dir.path(), |c| c.store.file_reserved_time_hours = 0).await;
        let b = broker.inner().clone();
        let tx = &b.transactions;
        half(&b, "abandoned", &[(CHECK_IMMUNITY, "3600")]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.check(&b).await;
        assert!(discarded_key(&b, "abandoned"));
        assert_eq!(tx.retention_floor(), 1, "the floor moved past it");
        broker.shutdown().await;
    }

    #[test]
    fn immunity_is_never_shorter_than_the_timeout() {
        assert_eq!(check_after_ms(None, 6000), 6000);
        assert_eq!(check_after_ms(Some("60"), 6000), 60_000);
        assert_eq!(check_after_ms(Some(" 7 "), 6000), 7000);
        for short in ["-1", "0", "2", "-5", "soon", ""] {
            assert_eq!(check_after_ms(Some(short), 6000), 6000, "{short}");
        }
        assert_eq!(check_after_ms(Some("9223372036854775807"), 0), i64::MAX);
    }

    #[test]
    fn decisions_merge_into_runs() {
        let mut d = Decided::default();
        for o in [5, 7, 6, 3, 9, 8] {
            d.insert(o);
        }
        // 3, 5..=9
        assert_eq!(d.runs(), 2);
        assert!(d.contains(3) && !d.contains(4) && d.contains(9) && !d.contains(10));
        assert_eq!(d.run_end(6), Some(10));
        assert_eq!(d.run_end(4), None);
        assert_eq!(d.next_start(3), Some(5));
        assert_eq!(d.next_start(5), None);
        d.insert(4);
        assert_eq!(d.runs(), 1);
        assert_eq!(d.advance(2), 2, "a run above the floor stays");
        assert_eq!(d.advance(3), 10);
        assert_eq!(d.runs(), 0);
    }
}
