//! openraft's log storage over the commit log: each Raft entry is a run of
//! records at a commit-log position, and [`RaftIndex`] remembers, per log
//! index, where that run is and which term wrote it.
//!
//! - Leader: `append` gets [`MqData::Put`] and turns the messages into
//!   records at the write position ([`MessageStore::raft_append_put`]),
//!   keeping the per-message results for the apply that answers the send.
//! - Follower: `append` gets [`MqData::Records`], the leader's bytes, and
//!   writes them where the leader did ([`MessageStore::raft_append_entry`]).
//! - Both: the log reader builds entries back from the index and the
//!   commit log. Bytes past the committed end (`stable`) may still be cut,
//!   so they are copied under `tail`'s read lock; a cut takes it for
//!   writing. Bytes below are immutable and handed out zero-copy.
//! - Durability (`IOFlushed`): under SYNC_FLUSH an entry is acknowledged
//!   once the commit log and then the index are flushed past it; under
//!   ASYNC_FLUSH once written (it is in the page cache: it survives a
//!   process kill, not a power loss of a majority).

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use meridian_store::{MessageStore, PutError, PutResult};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, Membership, OptionalSend};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::files::{LogPos, MembershipLog, MembershipRecord, Meta, MetaFile, StoredVote, VoteFile};
use crate::index::{RaftIndex, Slot, SlotKind};
use crate::types::{Entry, LogId, MqData, MqRaft, Vote};

/// What a leader's append learnt about each send, kept until its entry is
/// applied (which answers the send).
pub(crate) type Outcome = Result<Vec<PutResult>, PutError>;

/// State shared by the log store, its readers and the state machine.
pub struct Shared {
    pub store: Arc<MessageStore>,
    pub index: RwLock<RaftIndex>,
    pub membership: Mutex<MembershipLog>,
    pub meta_file: MetaFile,
    pub meta: Mutex<Meta>,
    vote_file: VoteFile,
    vote: Mutex<Option<Vote>>,
    /// Held for reading while copying bytes past `stable`, for writing by a cut.
    tail: RwLock<()>,
    /// End of the entries known committed: never cut.
    pub stable: AtomicI64,
    /// Bumped by every cut: flush waits queued before it are void.
    generation: AtomicU64,
    pub(crate) outcomes: Mutex<HashMap<u64, Outcome>>,
    flush_tx: Option<mpsc::UnboundedSender<FlushWait>>,
    /// Byte budget of one AppendEntries (`raftMaxBytesPerAppend`).
    pub max_bytes_per_append: usize,
    /// The broker's tables for snapshots (set once the broker is built).
    pub state_hooks: std::sync::OnceLock<Arc<dyn StateHooks>>,
}

/// What the broker keeps beside the log, carried in snapshots so that a
/// re-seeded member has it although its records were purged.
pub trait StateHooks: Send + Sync {
    /// The tables as bytes.
    fn export(&self) -> Vec<u8>;
    /// Replace the tables with an export from the leader.
    fn import(&self, state: &[u8]) -> Result<(), String>;
}

struct FlushWait {
    end: i64,
    generation: u64,
    callback: IOFlushed<MqRaft>,
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new_term_index(term, index)
}

fn pos(id: &LogId) -> LogPos {
    LogPos {
        term: id.committed_leader_id().term,
        index: id.index(),
    }
}

pub(crate) fn from_pos(p: &LogPos) -> LogId {
    log_id(p.term, p.index)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Shared {
    /// `sync_flush`: acknowledge entries only once flushed (SYNC_FLUSH).
    /// Call inside a Tokio runtime (the flush waiter is a task).
    pub fn new(
        store: Arc<MessageStore>,
        index: RaftIndex,
        membership: MembershipLog,
        meta_file: MetaFile,
        vote_file: VoteFile,
        sync_flush: bool,
        max_bytes_per_append: usize,
    ) -> io::Result<Arc<Shared>> {
        let meta = meta_file.load()?;
        let vote = vote_file.load()?.map(|v| {
            let voted_for = v.voted_for.unwrap_or_default();
            if v.committed {
                Vote::new_committed(v.term, voted_for)
            } else {
                Vote::new(v.term, voted_for)
            }
        });
        let stable = store.raft_visible();
        let (flush_tx, flush_rx) = if sync_flush {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            store,
            index: RwLock::new(index),
            membership: Mutex::new(membership),
            meta_file,
            meta: Mutex::new(meta),
            vote_file,
            vote: Mutex::new(vote),
            tail: RwLock::new(()),
            stable: AtomicI64::new(stable),
            generation: AtomicU64::new(0),
            state_hooks: std::sync::OnceLock::new(),
            outcomes: Mutex::new(HashMap::new()),
            flush_tx,
            max_bytes_per_append,
        });
        if let Some(rx) = flush_rx {
            tokio::spawn(flush_waiter(Arc::downgrade(&shared), rx));
        }
        Ok(shared)
    }

    /// Write `meta` to disk (a 1 s timer and shutdown call this; it may
    /// lag, never lead).
    pub fn persist_meta(&self) -> io::Result<()> {
        let meta = self.meta.lock().clone();
        self.meta_file.save(&meta)
    }

    /// The entry at `index`, built from the index and the commit log.
    fn entry(&self, index: u64, slot: &Slot) -> io::Result<Entry> {
        let id = log_id(slot.term, index);
        let payload = match slot.kind {
            SlotKind::Records => {
                let copy = slot.end() > self.stable.load(Ordering::Acquire);
                let bytes = self
                    .store
                    .raft_read(slot.offset, slot.size as usize, copy)
                    .ok_or_else(|| {
                        invalid(format!(
                            "log entry {index} (commit log [{}, {})) is not in the commit log",
                            slot.offset,
                            slot.end()
                        ))
                    })?;
                EntryPayload::Normal(MqData::Records {
                    offset: slot.offset,
                    bytes,
                })
            }
            SlotKind::Blank | SlotKind::Rejected => EntryPayload::Blank,
            SlotKind::Membership => {
                let m = self.membership.lock();
                let rec = m.get(index).ok_or_else(|| {
                    invalid(format!("membership of log entry {index} is missing"))
                })?;
                EntryPayload::Membership(to_membership(rec))
            }
        };
        Ok(Entry {
            log_id: id,
            payload,
        })
    }

    /// Entries `[start, end)`, stopping once `max_bytes` of records are
    /// collected (at least one entry).
    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> io::Result<Vec<Entry>> {
        let _tail = self.tail.read();
        let index = self.index.read();
        let start = start.max(index.first_index());
        let end = end.min(index.next_index());
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for i in start..end {
            let slot = index
                .get(i)
                .ok_or_else(|| invalid(format!("log entry {i} is missing from the index")))?;
            bytes += slot.size.max(0) as usize;
            out.push(self.entry(i, &slot)?);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn append_one(&self, entry: Entry) -> io::Result<Slot> {
        let term = entry.log_id.committed_leader_id().term;
        let index = entry.log_id.index();
        let store = &self.store;
        let slot = match entry.payload {
            EntryPayload::Normal(MqData::Put(p)) => {
                let mut msgs = p.take().unwrap_or_default();
                let count = msgs.len() as u32;
                match store.raft_append_put(term, &mut msgs) {
                    Ok(span) => {
                        let slot = Slot {
                            offset: span.offset,
                            size: span.size,
                            kind: SlotKind::Records,
                            term,
                            count,
                        };
                        self.outcomes.lock().insert(index, Ok(span.results));
                        slot
                    }
                    Err(PutError::Io(e)) => return Err(e),
                    Err(e) => {
                        self.outcomes.lock().insert(index, Err(e));
                        Slot {
                            offset: store.raft_write_position(),
                            size: 0,
                            kind: SlotKind::Rejected,
                            term,
                            count: 0,
                        }
                    }
                }
            }
            EntryPayload::Normal(MqData::Records { offset, bytes }) => {
                let span = store
                    .raft_append_entry(offset, &bytes)
                    .map_err(|e| match e {
                        PutError::Io(e) => e,
                        e => invalid(format!("log entry {index} refused: {e}")),
                    })?;
                Slot {
                    offset: span.offset,
                    size: span.size,
                    kind: SlotKind::Records,
                    term,
                    count: count_records(&bytes),
                }
            }
            EntryPayload::Blank => Slot {
                offset: store.raft_write_position(),
                size: 0,
                kind: SlotKind::Blank,
                term,
                count: 0,
            },
            EntryPayload::Membership(m) => {
                self.membership.lock().append(to_record(index, term, &m))?;
                Slot {
                    offset: store.raft_write_position(),
                    size: 0,
                    kind: SlotKind::Membership,
                    term,
                    count: 0,
                }
            }
        };
        self.index.write().append(index, slot)?;
        Ok(slot)
    }
}

/// Records in a run of whole records.
fn count_records(bytes: &[u8]) -> u32 {
    let mut n = 0;
    let mut at = 0usize;
    while at + 4 <= bytes.len() {
        let size = i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if size <= 0 {
            break;
        }
        at += size as usize;
        n += 1;
    }
    n
}

/// A membership as the `membership` file keeps it.
pub(crate) fn to_record(
    index: u64,
    term: u64,
    m: &Membership<u64, openraft::EmptyNode>,
) -> MembershipRecord {
    MembershipRecord {
        index,
        term,
        voters: m
            .get_joint_config()
            .iter()
            .map(|s| s.iter().copied().collect())
            .collect(),
        learners: m.learner_ids().collect(),
    }
}

pub(crate) fn to_membership(rec: &MembershipRecord) -> Membership<u64, openraft::EmptyNode> {
    Membership::new_with_defaults(
        rec.voters
            .iter()
            .map(|s| s.iter().copied().collect())
            .collect(),
        rec.learners.iter().copied(),
    )
}

/// Completes SYNC_FLUSH acknowledgements in order, once the commit log and
/// then the index are on disk past each entry.
async fn flush_waiter(shared: std::sync::Weak<Shared>, mut rx: mpsc::UnboundedReceiver<FlushWait>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let Some(s) = shared.upgrade() else { return };
        let generation = s.generation.load(Ordering::Acquire);
        let end = batch
            .iter()
            .filter(|w| w.generation == generation)
            .map(|w| w.end)
            .max();
        let mut result = Ok(());
        if let Some(end) = end {
            let mut flushed = s.store.flushed_watch();
            loop {
                s.store.request_flush();
                if s.generation.load(Ordering::Acquire) != generation {
                    break; // cut meanwhile: these waits are void
                }
                let wait = flushed.wait_for(|&f| f >= end);
                match tokio::time::timeout(std::time::Duration::from_millis(100), wait).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(_)) => {
                        result = Err(io::Error::other("the store stopped"));
                        break;
                    }
                    Err(_) => continue,
                }
            }
            if result.is_ok() {
                let index = &s.index;
                result = tokio::task::block_in_place(|| index.read().flush());
            }
        }
        let generation = s.generation.load(Ordering::Acquire);
        for w in batch.drain(..) {
            // Waits queued before a cut are void: their entries are gone
            // and openraft ignores completions it has moved past.
            if w.generation != generation {
                continue;
            }
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            w.callback.io_completed(r);
        }
        drop(s);
    }
}

/// The log store handed to openraft.
pub struct CommitLogRaft {
    pub shared: Arc<Shared>,
}

/// The log reader handed to replication tasks.
#[derive(Clone)]
pub struct CommitLogReader {
    shared: Arc<Shared>,
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<MqRaft> for CommitLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        self.shared.entries(start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(*self.shared.vote.lock())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.shared
            .entries(start, end, self.shared.max_bytes_per_append)
    }
}

impl RaftLogReader<MqRaft> for CommitLogRaft {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        self.shared.entries(start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(*self.shared.vote.lock())
    }
}

impl RaftLogStorage<MqRaft> for CommitLogRaft {
    type LogReader = CommitLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<MqRaft>, io::Error> {
        let purged = self.shared.meta.lock().purged.as_ref().map(from_pos);
        let last = self
            .shared
            .index
            .read()
            .last()
            .map(|(i, slot)| log_id(slot.term, i))
            .or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        CommitLogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let stored = StoredVote {
            term: vote.leader_id.term,
            voted_for: Some(vote.leader_id.voted_for),
            committed: vote.committed,
        };
        let s = &self.shared;
        tokio::task::block_in_place(|| s.vote_file.save(&stored))?;
        *s.vote.lock() = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let s = &self.shared;
        if let Some(id) = &committed {
            if let Some(slot) = s.index.read().get(id.index()) {
                s.stable.fetch_max(slot.end(), Ordering::AcqRel);
            }
        }
        s.meta.lock().committed = committed.as_ref().map(pos);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.meta.lock().committed.as_ref().map(from_pos))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<MqRaft>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let s = &self.shared;
        let mut end = None;
        for entry in entries {
            let slot = s.append_one(entry)?;
            end = Some(slot.end());
        }
        match (&s.flush_tx, end) {
            (Some(tx), Some(end)) => {
                let wait = FlushWait {
                    end,
                    generation: s.generation.load(Ordering::Acquire),
                    callback,
                };
                if let Err(mpsc::error::SendError(w)) = tx.send(wait) {
                    w.callback
                        .io_completed(Err(io::Error::other("the flush waiter stopped")));
                }
            }
            _ => callback.io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let s = &self.shared;
        let _tail = s.tail.write();
        let mut index = s.index.write();
        let keep = last.as_ref().map(|id| id.index());
        let first_gone = keep.map_or(index.first_index(), |k| k + 1);
        if first_gone >= index.next_index() {
            return Ok(());
        }
        let end = match keep.and_then(|k| index.get(k)) {
            Some(slot) => slot.end(),
            None => match index.get(first_gone) {
                Some(slot) => slot.offset,
                None => return Ok(()),
            },
        };
        s.generation.fetch_add(1, Ordering::AcqRel);
        s.store
            .raft_truncate(end)
            .map_err(|e| io::Error::other(e.to_string()))?;
        index.truncate_after(keep)?;
        s.membership.lock().truncate_after(keep)?;
        s.outcomes
            .lock()
            .retain(|&i, _| keep.is_some_and(|k| i <= k));
        tracing::warn!(
            after = ?keep,
            commit_log_end = end,
            "Raft log cut: entries past it disagreed with the leader's"
        );
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let s = &self.shared;
        s.index.write().purge_to(log_id.index())?;
        s.meta.lock().purged = Some(pos(&log_id));
        s.persist_meta()
    }
}
