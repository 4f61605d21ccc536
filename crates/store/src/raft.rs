//! The store under a Raft group (`meridian-raft`): the commit log is the
//! Raft log. Each entry's records are written once, at the commit log's
//! write position; what the Raft layer keeps besides is a small index of
//! terms and positions.
//!
//! Two fences split the commit log of a Raft member:
//!
//! - below the **readable** offset: entries appended to this member's log.
//!   The Raft layer reads them back to replicate them. The part past the
//!   commit point may still be cut ([`MessageStore::raft_truncate`]) when
//!   a new leader's log disagrees.
//! - below the **visible** offset: entries known committed and applied
//!   ([`MessageStore::raft_apply`]). Only these reach consume queues and
//!   the key index, and only these can be read by offset (message ids), so
//!   a consumer never sees a message that could later disappear, and a
//!   queue offset is never handed out twice.
//!
//! The leader assigns queue offsets when it writes an entry
//! ([`MessageStore::raft_append_put`]); followers write the leader's bytes
//! as they are ([`MessageStore::raft_append_entry`]). Every member derives
//! its consume queues from the same records at apply, so queues agree
//! across the group entry by entry.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use meridian_protocol::message_id::create_offset_msg_id;
use tokio::sync::watch;

use crate::commit_log::END_FILE_MIN_BLANK_LENGTH;
use crate::error::{PutError, StoreError};
use crate::recovery::check_record;
use crate::replica::Arrivals;
use crate::store::{MessageStore, PutMessage, PutResult};

/// Where one Raft entry's records went.
#[derive(Debug, Clone)]
pub struct RaftSpan {
    /// Commit-log offset of the first record.
    pub offset: i64,
    /// Bytes of all its records (a blank end-of-segment marker written
    /// before them is not part of the entry).
    pub size: i32,
    /// One per record, in order (leader appends only; empty otherwise).
    pub results: Vec<PutResult>,
}

impl RaftSpan {
    pub fn end(&self) -> i64 {
        self.offset + self.size as i64
    }
}

/// The leader's queue offsets handed out in the current term for entries
/// not yet applied. Lives in the put lock's `Writer`.
#[derive(Default)]
pub(crate) struct Assigned {
    term: u64,
    next: HashMap<String, HashMap<i32, i64>>,
}

impl MessageStore {
    /// Start Raft mode on a freshly opened store: entries at or past
    /// `visible_to` (the end of the last entry applied before the restart)
    /// leave consume queues and index again, to be applied anew once known
    /// committed. Call once, before any other `raft_` call.
    pub fn raft_open(&self, visible_to: i64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut checkpoint = inner.checkpoint_lock.lock();
        let mut guard = inner.writer.lock();
        let readable = inner.commit_log.readable_offset();
        let min = inner.commit_log.min_offset();
        let visible = visible_to.clamp(min, readable);
        if visible != visible_to {
            tracing::error!(
                applied_end = visible_to,
                log = ?(min, readable),
                "the Raft state says entries up to {visible_to} were applied, but the commit log \
                 holds [{min}, {readable}); the lost records were acknowledged by a majority and \
                 will be fetched from the leader"
            );
        }
        let dropped = inner.cut_derived_from(&mut guard, visible)?;
        if dropped > 0 {
            tracing::info!(
                visible,
                queue_entries = dropped,
                "queue entries of entries not yet known committed held back"
            );
        }
        inner.raft_visible.store(visible, Ordering::Release);
        drop(guard);
        inner
            .checkpoint_locked(&mut checkpoint, false)
            .map_err(|e| StoreError::io(inner.config.checkpoint_path(), e))
    }

    /// Re-seed an empty member: its commit log (holding no record) starts
    /// again at `offset`, where the leader's now starts after retention,
    /// and everything before it counts as applied. Refused when the log
    /// holds records or `offset` is not a segment start.
    pub fn raft_reseed(&self, offset: i64) -> Result<(), StoreError> {
        self.reset_empty_to(offset)?;
        self.inner.raft_visible.store(offset, Ordering::Release);
        Ok(())
    }

    /// A far-behind member re-seeded from the leader's snapshot: every
    /// record it holds goes (all are in the leader's log before `offset`'s
    /// entries, or were never committed), with the consume queues and key
    /// index built from them, and the log starts again at `offset` as in
    /// [`Self::raft_reseed`].
    pub fn raft_discard_and_reseed(&self, offset: i64) -> Result<(), StoreError> {
        let (min, readable) = (
            self.min_commit_log_offset(),
            self.inner.commit_log.readable_offset(),
        );
        self.restart_log_at(offset, true)?;
        {
            let mut w = self.inner.writer.lock();
            w.assigned = Default::default();
            self.inner.raft_visible.store(offset, Ordering::Release);
        }
        tracing::warn!(
            discarded_from = min,
            discarded_to = readable,
            offset,
            "this member's records were discarded for the leader's log"
        );
        Ok(())
    }

    /// Whether [`Self::raft_open`] put this store in Raft mode.
    pub fn is_raft(&self) -> bool {
        self.inner.raft_visible.load(Ordering::Acquire) != i64::MAX
    }

    /// End of the entries applied: what consumers may see.
    pub fn raft_visible(&self) -> i64 {
        self.inner.raft_visible.load(Ordering::Acquire)
    }

    /// Check messages before they are submitted to Raft, so that the
    /// append inside Raft normally succeeds. Completes their properties as
    /// the append would. Returns the bytes their records will take.
    pub fn raft_check_put(&self, msgs: &mut [PutMessage]) -> Result<usize, PutError> {
        let inner = &self.inner;
        let mut total = 0usize;
        for m in msgs.iter_mut() {
            total += inner.prepare(m)?.size;
        }
        if total + END_FILE_MIN_BLANK_LENGTH > inner.commit_log.segment_size() {
            return Err(PutError::MessageIllegal(format!(
                "batch of {total} bytes does not fit in a commit-log segment of {}",
                inner.commit_log.segment_size()
            )));
        }
        if inner.disk_full.load(Ordering::Relaxed) {
            return Err(PutError::DiskFull);
        }
        Ok(total)
    }

    /// The leader writes a new entry of `term`: `msgs` become records at the
    /// write position, with queue offsets following those handed out
    /// before. Nothing reaches consume queues until [`Self::raft_apply`].
    pub fn raft_append_put(
        &self,
        term: u64,
        msgs: &mut [PutMessage],
    ) -> Result<RaftSpan, PutError> {
        let inner = &self.inner;
        let preps = msgs
            .iter_mut()
            .map(|m| inner.prepare(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut spans = Vec::with_capacity(msgs.len());
        let end = inner.append_raft(term, msgs, &preps, |_, a| spans.push(a))?;
        let first = spans.first().map_or(end, |a| a.offset);
        let results = msgs
            .iter()
            .zip(&spans)
            .map(|(m, a)| PutResult {
                commit_log_offset: a.offset,
                queue_offset: a.queue_offset,
                wrote_bytes: a.size as i32,
                store_timestamp: a.store_ts,
                msg_id: create_offset_msg_id(m.store_host, a.offset),
            })
            .collect();
        Ok(RaftSpan {
            offset: first,
            size: (end - first) as i32,
            results,
        })
    }

    /// A follower writes an entry received from the leader: `bytes` are the
    /// leader's records starting at commit-log `offset`. `offset` must be
    /// the write position, or the next segment's start when the leader
    /// rolled (the current segment then ends with a blank marker, written
    /// here as the leader wrote it). Every record is checked as recovery
    /// checks it; nothing is written if one fails.
    pub fn raft_append_entry(&self, offset: i64, bytes: &[u8]) -> Result<RaftSpan, PutError> {
        let inner = &self.inner;
        let log = &inner.commit_log;
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(PutError::ServiceNotAvailable(
                "the message store is shut down".into(),
            ));
        }
        let mut guard = inner.writer.lock();
        let w = &mut *guard;
        let position = w.appender.write_offset();
        if bytes.is_empty() {
            return Ok(RaftSpan {
                offset: position,
                size: 0,
                results: Vec::new(),
            });
        }
        // Check the records before writing anything.
        let mut at = 0usize;
        while at < bytes.len() {
            let rest = &bytes[at..];
            if rest.len() < 4 {
                return Err(PutError::MessageIllegal(format!(
                    "entry at {offset} ends in {} stray bytes",
                    rest.len()
                )));
            }
            let size = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s > 0 && s <= rest.len())
                .ok_or_else(|| {
                    PutError::MessageIllegal(format!(
                        "entry at {offset}: record at +{at} claims {size} bytes, {} remain",
                        rest.len()
                    ))
                })?;
            check_record(&rest[..size], offset + at as i64).map_err(|why| {
                PutError::MessageIllegal(format!("entry at {offset}: record at +{at}: {why}"))
            })?;
            at += size;
        }
        if offset != position {
            let seg_size = log.segment_size() as i64;
            let next_start = (position / seg_size + 1) * seg_size;
            if offset != next_start || next_start - position < END_FILE_MIN_BLANK_LENGTH as i64 {
                return Err(PutError::MessageIllegal(format!(
                    "entry starts at commit-log offset {offset} but this member's log goes on at \
                     {position} (do all members have the same mappedFileSizeCommitLog?)"
                )));
            }
        }
        if bytes.len() + END_FILE_MIN_BLANK_LENGTH > log.segment_size() {
            return Err(PutError::MessageIllegal(format!(
                "entry of {} bytes does not fit in a commit-log segment",
                bytes.len()
            )));
        }
        // `reserve` rolls exactly where the leader's did: the entry does not
        // fit in what is left of the segment.
        let (seg, pos) = log.reserve(&mut w.appender, bytes.len())?;
        let start = w.appender.write_offset();
        if start != offset {
            // Cannot happen after the check above unless the sizes differ.
            return Err(PutError::MessageIllegal(format!(
                "entry starts at commit-log offset {offset} but would be written at {start}"
            )));
        }
        // SAFETY: beyond the readable offset, put lock held.
        unsafe { seg.slice_mut(pos, bytes.len()) }.copy_from_slice(bytes);
        w.appender.advance(bytes.len());
        let end = w.appender.write_offset();
        log.publish(end);
        inner.announce_max_offset(end);
        Ok(RaftSpan {
            offset,
            size: bytes.len() as i32,
            results: Vec::new(),
        })
    }

    /// `len` bytes of the log from `offset`, among those appended. Copied
    /// when `copy` (bytes a cut may still change), zero-copy otherwise.
    pub fn raft_read(&self, offset: i64, len: usize, copy: bool) -> Option<Bytes> {
        let log = &self.inner.commit_log;
        if copy {
            log.with_slice(offset, len, Bytes::copy_from_slice)
        } else {
            log.read(offset, len)
        }
    }

    /// Store time of the record at `offset` among those appended (for
    /// replication lag in seconds).
    pub fn raft_store_time_at(&self, offset: i64) -> Option<i64> {
        let rec = self.inner.commit_log.read_record(offset)?;
        meridian_protocol::message::parse_record(&rec)
            .ok()
            .map(|v| v.store_timestamp)
    }

    /// Where the next entry goes (after a roll, the next segment's start).
    pub fn raft_write_position(&self) -> i64 {
        self.inner.writer.lock().appender.write_offset()
    }

    /// Cut this member's log back to `end` (where an entry ends): a
    /// follower whose uncommitted tail disagrees with the new leader's.
    /// Refused below the visible offset: applied entries never go.
    pub fn raft_truncate(&self, end: i64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let log = &inner.commit_log;
        let mut guard = inner.writer.lock();
        let w = &mut *guard;
        let visible = inner.raft_visible.load(Ordering::Acquire);
        if end < visible {
            return Err(StoreError::Refused(format!(
                "cannot cut the commit log at {end}: entries up to {visible} are applied"
            )));
        }
        let position = w.appender.write_offset();
        if end >= position {
            return Ok(());
        }
        let _flush = inner.flush_lock.lock();
        log.cut_in_place(end, position)
            .map_err(|e| StoreError::io(&inner.config.commit_log_dir, e))?;
        w.appender = log.appender_at(end);
        w.assigned = Default::default();
        inner.flushed_tx.send_replace(log.flushed_offset());
        inner.announce_max_offset(end);
        tracing::warn!(
            offset = end,
            bytes = position - end,
            "uncommitted commit-log tail cut"
        );
        Ok(())
    }

    /// Entries up to commit-log offset `to` are committed and applied:
    /// dispatch their records to consume queues and index, make them
    /// visible, and wake long-polling consumers. Idempotent.
    pub fn raft_apply(&self, to: i64) -> Result<(), PutError> {
        let inner = &self.inner;
        let mut guard = inner.writer.lock();
        let w = &mut *guard;
        let from = inner.raft_visible.load(Ordering::Acquire);
        let to = to.min(inner.commit_log.readable_offset());
        if to <= from {
            return Ok(());
        }
        let mut arrivals = Arrivals::new();
        let (end, rejected) = inner.dispatch_replicated(w, from, to, &mut arrivals);
        for (topic, queue_id, _) in &arrivals {
            if let Some(cq) = w.queues.get(topic.as_str()).and_then(|qs| qs.get(queue_id)) {
                cq.publish(cq.next_offset());
            }
        }
        inner.raft_visible.store(end, Ordering::Release);
        drop(guard);
        for (topic, queue_id, max) in &arrivals {
            inner.notify_arrival(topic, *queue_id, *max);
        }
        match rejected {
            None => Ok(()),
            Some(why) => Err(PutError::MessageIllegal(format!(
                "committed records at commit-log offset {end} cannot be dispatched: {why}"
            ))),
        }
    }

    /// Follow the flushed offset (SYNC_FLUSH members acknowledge entries
    /// once flushed).
    pub fn flushed_watch(&self) -> watch::Receiver<i64> {
        self.inner.flushed_tx.subscribe()
    }

    /// Ask the flush thread for a flush now.
    pub fn request_flush(&self) {
        self.inner.request_flush();
    }
}

impl Assigned {
    /// The queue offsets handed out in `[from, to)` of the log (appended,
    /// not yet applied entries), for a leader starting `term`.
    pub(crate) fn rebuild(
        term: u64,
        log: &crate::commit_log::CommitLog,
        from: i64,
        to: i64,
    ) -> Assigned {
        let mut a = Assigned {
            term,
            next: HashMap::new(),
        };
        let mut at = from;
        while at < to {
            let Some(size) = log.record_size_at(at) else {
                // A blank end-of-segment marker (or the end): next segment.
                let seg = log.segment_size() as i64;
                at = (at / seg + 1) * seg;
                continue;
            };
            if let Some(rec) = log.read(at, size) {
                if let Ok(v) = meridian_protocol::message::parse_record(&rec) {
                    if crate::dispatch::goes_to_queue(v.sys_flag) {
                        if let Some(topic) = v.topic_str() {
                            a.set(topic, v.queue_id, v.queue_offset + 1);
                        }
                    }
                }
            }
            at += size as i64;
        }
        a
    }

    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    /// The next queue offset to hand out for a queue whose applied entries
    /// end at `applied`.
    pub(crate) fn next(&self, topic: &str, queue_id: i32, applied: i64) -> i64 {
        self.next
            .get(topic)
            .and_then(|qs| qs.get(&queue_id))
            .map_or(applied, |&n| n.max(applied))
    }

    pub(crate) fn set(&mut self, topic: &str, queue_id: i32, next: i64) {
        match self.next.get_mut(topic) {
            Some(qs) => {
                qs.insert(queue_id, next);
            }
            None => {
                self.next
                    .insert(topic.to_string(), HashMap::from([(queue_id, next)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    use crate::test_util::{config, msg};

    fn open(dir: &std::path::Path, visible: i64) -> Arc<MessageStore> {
        let (s, _) = MessageStore::open(config(dir)).unwrap();
        s.raft_open(visible).unwrap();
        s
    }

    /// (queue offset, commit-log offset, body) of every pullable message.
    fn pullable(s: &MessageStore, queue_id: i32) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let r = s.get_messages("T", queue_id, from, 32, usize::MAX, &|_| true);
            if r.messages.is_empty() {
                return out;
            }
            for m in &r.messages {
                let v = meridian_protocol::message::parse_record(m).unwrap();
                out.push((v.queue_offset, v.commit_log_offset));
            }
            from = r.next_begin_offset;
        }
    }

    fn log_bytes(s: &MessageStore) -> Vec<u8> {
        let end = s.raft_write_position();
        let mut out = Vec::new();
        let mut at = 0;
        while at < end {
            let chunk = s.read_commit_log(at, usize::MAX).unwrap();
            assert!(!chunk.is_empty());
            at += chunk.len() as i64;
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// Leader-style entries on A, copied into B: identical logs and queues
    /// (segment rolls included); nothing pullable before apply.
    #[test]
    fn follower_copies_leader_byte_for_byte() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(da.path(), 0), open(db.path(), 0));
        let mut spans = Vec::new();
        for i in 0..150 {
            let mut batch: Vec<PutMessage> = (0..1 + i % 3).map(|j| msg(i * 3 + j)).collect();
            let span = a.raft_append_put(1, &mut batch).unwrap();
            assert_eq!(span.results.len(), batch.len());
            spans.push(span);
        }
        assert!(a.raft_write_position() > 2 * 64 * 1024, "segments rolled");
        assert!(pullable(&a, 0).is_empty(), "nothing visible before apply");
        assert!(a.read_record(spans[0].offset).is_none());
        for span in &spans {
            let bytes = a.raft_read(span.offset, span.size as usize, true).unwrap();
            let got = b.raft_append_entry(span.offset, &bytes).unwrap();
            assert_eq!((got.offset, got.size), (span.offset, span.size));
        }
        assert!(pullable(&b, 1).is_empty());
        let half = spans[75].end();
        a.raft_apply(half).unwrap();
        b.raft_apply(half).unwrap();
        let visible_a = pullable(&a, 0);
        assert!(!visible_a.is_empty());
        assert!(visible_a.iter().all(|&(_, off)| off < half));
        let end = spans.last().unwrap().end();
        a.raft_apply(end).unwrap();
        b.raft_apply(end).unwrap();
        a.raft_apply(end).unwrap(); // idempotent
        for q in 0..2 {
            let (qa, qb) = (pullable(&a, q), pullable(&b, q));
            assert_eq!(qa, qb);
            let offsets: Vec<i64> = qa.iter().map(|e| e.0).collect();
            assert_eq!(
                offsets,
                (0..qa.len() as i64).collect::<Vec<_>>(),
                "gap-free"
            );
        }
        assert_eq!(log_bytes(&a), log_bytes(&b));
        let total: usize = spans.iter().map(|s| s.results.len()).sum();
        assert_eq!(pullable(&a, 0).len() + pullable(&a, 1).len(), total);
        assert_eq!(a.query_by_key("T", "k4", 10, 0, i64::MAX).len(), 1);
        assert!(a.read_record(spans[0].offset).is_some());
    }

    /// A cut below the visible offset is refused; after a cut, a new term's
    /// entries take the same queue offsets again.
    #[test]
    fn cut_and_reuse_queue_offsets() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 0);
        let mut spans = Vec::new();
        for i in 0..10 {
            spans.push(s.raft_append_put(1, &mut [msg(2 * i)]).unwrap());
        }
        s.raft_apply(spans[4].end()).unwrap();
        assert!(s.raft_truncate(spans[3].end()).is_err());
        s.raft_truncate(spans[6].end()).unwrap();
        assert_eq!(s.raft_write_position(), spans[6].end());
        let again = s.raft_append_put(2, &mut [msg(100)]).unwrap();
        assert_eq!(again.offset, spans[6].end());
        assert_eq!(again.results[0].queue_offset, 7);
        // An entry at the wrong position is refused.
        let bytes = s
            .raft_read(again.offset, again.size as usize, true)
            .unwrap();
        assert!(s.raft_append_entry(again.offset, &bytes).is_err());
        s.raft_apply(again.end()).unwrap();
        let q = pullable(&s, 0);
        assert_eq!(q.len(), 8);
        assert_eq!(q[7].1, again.offset);
    }

    /// Reopening holds back queue entries at or past the applied end, and
    /// applying them again publishes the same entries.
    #[test]
    fn reopen_publishes_only_the_applied() {
        let d = tempfile::tempdir().unwrap();
        let mut spans = Vec::new();
        {
            let s = open(d.path(), 0);
            for i in 0..10 {
                spans.push(s.raft_append_put(1, &mut [msg(2 * i)]).unwrap());
            }
            s.raft_apply(spans[9].end()).unwrap();
            s.shutdown();
        }
        let s = open(d.path(), spans[5].end());
        assert_eq!(pullable(&s, 0).len(), 6);
        assert_eq!(s.raft_visible(), spans[5].end());
        assert!(s.query_by_key("T", "k14", 10, 0, i64::MAX).is_empty());
        s.raft_apply(spans[9].end()).unwrap();
        assert_eq!(pullable(&s, 0).len(), 10);
        assert_eq!(s.query_by_key("T", "k14", 10, 0, i64::MAX).len(), 1);
        // Plain puts are refused in Raft mode.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(s.put_message(msg(1))).is_err());
    }
}
