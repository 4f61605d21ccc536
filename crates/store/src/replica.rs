//! The store as a replica sees it: the commit log read and written as raw
//! bytes, the way RocketMQ's master/slave stream carries it (the
//! `meridian-ha` crate speaks that protocol on top of these calls).
//!
//! - [`MessageStore::read_commit_log`]: what a master sends, zero-copy.
//! - [`MessageStore::append_replicated`]: what a slave does with it.
//! - [`MessageStore::reset_empty_to`]: an empty slave starts where the
//!   master's oldest segment starts.
//! - [`MessageStore::truncate_commit_log`]: cut the log back.
//!
//! A replica's commit log is byte-for-byte its master's, blank
//! end-of-segment markers included, so a record sits at the same offset on
//! both and message ids, pull offsets and consumer offsets mean the same
//! thing on either. That needs the same segment size on both
//! (`mapped_file_size_commit_log` = the master's `mappedFileSizeCommitLog`;
//! a mismatch is caught at the first segment end and the data refused), and
//! the same `messageDelayLevel` for the tag codes of `SCHEDULE_TOPIC_XXXX`.
//!
//! Received bytes go into the commit log at once but are published (made
//! readable, dispatched to consume queues and the key index, announced to
//! arrival listeners) only as whole records that pass the checks recovery
//! applies. So everything below the readable offset is a checked record on
//! a replica too, and a part of a record received last waits, past the
//! readable offset, for the rest. A crash loses that part (recovery cuts
//! it) and the replica asks for it again.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use meridian_protocol::message::{
    RecordView, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2,
};

use crate::commit_log::END_FILE_MIN_BLANK_LENGTH;
use crate::config::FlushDiskType;
use crate::consume_queue::CqEntry;
use crate::dispatch::{goes_to_index, goes_to_queue, index_keys, tags_code};
use crate::error::{PutError, StoreError};
use crate::index::IndexService;
use crate::recovery::check_record;
use crate::store::{check_topic_name, writer_queue, Inner, MessageStore, Writer};

/// Largest queue offset a replicated record may carry: far beyond any real
/// queue, and small enough that its byte position in a consume-queue file
/// cannot overflow.
const MAX_QUEUE_OFFSET: i64 = i64::MAX / 64;

/// Queues that got entries in one append, with their new ends.
pub(crate) type Arrivals = Vec<(String, i32, i64)>;

impl MessageStore {
    /// Raw commit-log bytes from `from`: at most `max_bytes`, up to the
    /// readable end, never past the end of the segment holding `from` (ask
    /// again from the next segment's start; a blank end-of-segment marker
    /// and the rest of its segment are part of the bytes). Empty at the
    /// max offset; `None` below the min offset or past the max. Zero-copy.
    pub fn read_commit_log(&self, from: i64, max_bytes: usize) -> Option<Bytes> {
        self.inner.commit_log.read_chunk(from, max_bytes)
    }

    /// A slave's append: write `data`, bytes of the master's commit log that
    /// start at `offset`, exactly as they are. Returns the new write
    /// position, which is where the next bytes must start.
    ///
    /// `offset` must be the write position: the store's max commit-log
    /// offset plus the part of a record an earlier call left (see the
    /// module doc). It may also be the max commit-log offset itself, which
    /// drops such a part: a new stream starts at the last whole record.
    /// Anything else is refused with an error naming both offsets.
    ///
    /// `data` may end anywhere, mid-record included; it goes on in the next
    /// segment at each segment end, where the master's did (the segment
    /// sizes must match). Every whole record is checked as recovery checks
    /// it (magic, sizes, body CRC, its own offset in the physical-offset
    /// field, topic name) and then dispatched to consume queues and index
    /// and announced to the arrival listener. At the first record that
    /// fails, the records before it are kept and published, the rest is
    /// dropped, and the error says where and why (`MessageIllegal`).
    ///
    /// Never waits for the disk: under SYNC_FLUSH it asks the flush thread
    /// for a flush; under ASYNC_FLUSH the periodic flush covers the bytes.
    pub fn append_replicated(&self, offset: i64, data: &[u8]) -> Result<i64, PutError> {
        let inner = &self.inner;
        let closed = || PutError::ServiceNotAvailable("the message store is shut down".into());
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(closed());
        }
        if inner.disk_full.load(Ordering::Relaxed) {
            return Err(PutError::DiskFull);
        }
        let mut guard = inner.writer.lock();
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(closed());
        }
        let w = &mut *guard;
        let log = &inner.commit_log;
        let readable = log.readable_offset();
        let position = w.appender.write_offset();
        if offset != position {
            if offset != readable {
                return Err(PutError::MessageIllegal(format!(
                    "replicated bytes start at commit-log offset {offset} but this store's \
                     commit log goes on at offset {position}"
                )));
            }
            // A new stream from the last whole record: the part of a record
            // an earlier stream left is not needed any more.
            inner.drop_tail(w, readable)?;
        }
        if data.is_empty() {
            return Ok(w.appender.write_offset());
        }
        if let Err(e) = log.write_raw(&mut w.appender, data) {
            inner.drop_tail_logged(w, readable);
            return Err(PutError::Io(e));
        }
        let written = w.appender.write_offset();
        let mut arrivals = Arrivals::new();
        let (end, rejected) = inner.dispatch_replicated(w, readable, written, &mut arrivals);
        if end > readable {
            // Records first, then the queue entries that point at them.
            log.publish(end);
            for (topic, queue_id, _) in &arrivals {
                if let Some(cq) = w.queues.get(topic.as_str()).and_then(|qs| qs.get(queue_id)) {
                    cq.publish(cq.next_offset());
                }
            }
            inner.announce_max_offset(end);
        }
        w.replica_part = written > end;
        let result = match rejected {
            None => Ok(written),
            Some(why) => {
                inner.drop_tail_logged(w, end);
                Err(PutError::MessageIllegal(format!(
                    "replicated data refused at commit-log offset {end}: {why}"
                )))
            }
        };
        drop(guard);
        for (topic, queue_id, max) in &arrivals {
            inner.notify_arrival(topic, *queue_id, *max);
        }
        if end > readable && inner.config.flush_disk_type == FlushDiskType::SyncFlush {
            inner.request_flush();
        }
        result
    }

    /// Make an empty store's commit log start at `offset`, which must be a
    /// multiple of the segment size: a fresh slave joining a master whose
    /// oldest segments are gone starts where the master's oldest kept
    /// segment starts. Survives a restart (the segment file at `offset` is
    /// created now). Refused if the commit log holds any record.
    /// Blocking (file creation, fsync): call it off the async workers.
    pub fn reset_empty_to(&self, offset: i64) -> Result<(), StoreError> {
        self.restart_log_at(offset, false)
    }

    /// [`Self::reset_empty_to`], or with `discard` the same for a store
    /// that holds records: they go, with the consume queues and the key
    /// index built from them. Readers still holding old segments keep
    /// valid bytes until they let go.
    pub(crate) fn restart_log_at(&self, offset: i64, discard: bool) -> Result<(), StoreError> {
        let inner = &self.inner;
        let log = &inner.commit_log;
        let seg_size = log.segment_size() as i64;
        if offset < 0 || offset % seg_size != 0 {
            return Err(StoreError::Refused(format!(
                "cannot start the commit log at offset {offset}: it is not a multiple of the \
                 segment size {seg_size} (mapped_file_size_commit_log must equal the master's \
                 mappedFileSizeCommitLog)"
            )));
        }
        let io_err = |e| StoreError::io(&inner.config.commit_log_dir, e);
        let mut checkpoint = inner.checkpoint_lock.lock();
        let mut guard = inner.writer.lock();
        let w = &mut *guard;
        let flush = inner.flush_lock.lock();
        let (min, readable) = (log.min_offset(), log.readable_offset());
        if readable != min && !discard {
            return Err(StoreError::Refused(format!(
                "cannot start the commit log at offset {offset}: it is not empty, it holds \
                 [{min}, {readable})"
            )));
        }
        let position = w.appender.write_offset();
        let in_place = log.segment_for(offset).is_some_and(|s| s.start() == offset);
        if readable == min
            && offset == readable
            && position == readable
            && (in_place || offset == 0)
        {
            return Ok(());
        }
        inner.drop_tail(w, readable).map_err(io_err)?;
        // No record, so no queue holds an entry; queues left empty by a
        // cut go, so they start again wherever the new records say.
        let topics: Vec<String> = w.queues.keys().cloned().collect();
        for cq in w.queues.values().flat_map(|qs| qs.values()) {
            cq.wipe().map_err(io_err)?;
        }
        w.queues.clear();
        inner.queues.write().clear();
        for topic in topics {
            let _ = std::fs::remove_dir_all(inner.config.consume_queue_dir().join(topic));
        }
        log.restart_at(offset).map_err(io_err)?;
        w.appender = log.appender_at(offset);
        {
            let mut index = inner.index.lock();
            let index_err = |e| StoreError::io(inner.config.index_dir(), e);
            // Without records no index file covers anything (with records
            // discarded, none may).
            index.truncate(offset.min(min)).map_err(index_err)?;
            index.delete_expired(offset).map_err(index_err)?;
        }
        inner.flushed_tx.send_replace(log.flushed_offset());
        inner.announce_max_offset(offset);
        drop(flush);
        drop(guard);
        tracing::info!(
            offset,
            "empty commit log restarted at a replication source's offset"
        );
        inner
            .checkpoint_locked(&mut checkpoint, false)
            .map_err(io_err)
    }

    /// Cut the commit log back to `to`, which must be where a record (or a
    /// blank end-of-segment marker) starts, or a segment start, between the
    /// min and max offsets. Consume-queue entries and index coverage past
    /// `to` go too, and a checkpoint records the new end, so a restart
    /// comes back to it. A slave that is ahead of its master, or a Raft
    /// follower with a divergent tail, needs this.
    ///
    /// The segment holding `to` is rewritten (its bytes below `to` are
    /// copied to a new file that replaces it), so a cut costs up to one
    /// segment of I/O, and puts wait meanwhile. Readers still holding
    /// records past `to` keep valid bytes. Consume-queue slots past the cut
    /// are cleared in place once the queue's end has moved back: a get that
    /// read the old end just before may find an entry gone, and skips it.
    /// Blocking: call it off the async workers.
    pub fn truncate_commit_log(&self, to: i64) -> Result<(), StoreError> {
        let inner = &self.inner;
        let log = &inner.commit_log;
        let io_err = |e| StoreError::io(&inner.config.commit_log_dir, e);
        let mut checkpoint = inner.checkpoint_lock.lock();
        let mut guard = inner.writer.lock();
        let w = &mut *guard;
        let flush = inner.flush_lock.lock();
        let (min, readable) = (log.min_offset(), log.readable_offset());
        if to < min || to > readable {
            return Err(StoreError::Refused(format!(
                "cannot cut the commit log at offset {to}: it holds [{min}, {readable})"
            )));
        }
        if to < readable && !inner.entry_starts_at(to) {
            return Err(StoreError::Refused(format!(
                "cannot cut the commit log at offset {to}: no record starts there"
            )));
        }
        inner.drop_tail(w, readable).map_err(io_err)?;
        if to < readable {
            log.cut_back(to).map_err(io_err)?;
        }
        w.appender = log.appender_at(to);
        let dropped = inner.cut_derived_from(w, to)?;
        inner.flushed_tx.send_replace(log.flushed_offset());
        inner.announce_max_offset(to);
        drop(flush);
        drop(guard);
        tracing::warn!(
            offset = to,
            bytes = readable - to,
            queue_entries = dropped,
            "commit log cut back"
        );
        inner
            .checkpoint_locked(&mut checkpoint, false)
            .map_err(io_err)
    }
}

impl Inner {
    /// Drop the consume-queue entries and index coverage of records at or
    /// past commit-log offset `to`. Returns how many queue entries went.
    /// Put lock held (`w`).
    pub(crate) fn cut_derived_from(&self, w: &mut Writer, to: i64) -> Result<i64, StoreError> {
        let io_err = |e| StoreError::io(self.config.consume_queue_dir(), e);
        let mut dropped = 0i64;
        for cq in w.queues.values().flat_map(|qs| qs.values()) {
            let (lo, hi) = (cq.min_offset(), cq.max_offset());
            // Entries follow the commit log's order: find the first one at
            // or past `to`.
            let (mut a, mut b) = (lo, hi);
            while a < b {
                let mid = a + (b - a) / 2;
                match cq.entry(mid) {
                    Some(e) if e.is_valid() && e.offset >= to => b = mid,
                    _ => a = mid + 1,
                }
            }
            if a < hi {
                dropped += hi - a;
                // Readers stop at the new end before the slots are cleared.
                cq.set_range(lo.min(a), a);
                cq.truncate_to(a).map_err(io_err)?;
            }
        }
        self.index
            .lock()
            .truncate(to)
            .map_err(|e| StoreError::io(self.config.index_dir(), e))?;
        Ok(dropped)
    }

    /// Drop the unpublished bytes from `from` to the write position and put
    /// the writer back at `from`. Put lock held (`w`).
    fn drop_tail(&self, w: &mut Writer, from: i64) -> std::io::Result<()> {
        let to = w.appender.write_offset();
        let dropped = self.commit_log.drop_unpublished(from, to);
        w.appender = self.commit_log.appender_at(from);
        w.replica_part = false;
        dropped
    }

    /// [`Self::drop_tail`] on an error path: a failure to delete a segment
    /// file is logged; the bytes are zeroed and the writer is back anyway.
    fn drop_tail_logged(&self, w: &mut Writer, from: i64) {
        if let Err(e) = self.drop_tail(w, from) {
            tracing::error!(offset = from, error = %e, "could not remove a dropped replicated tail's segment");
        }
    }

    /// Check and dispatch the whole records in `[from, to)`, unpublished
    /// bytes written by a replica. Returns where the last accepted record
    /// (or blank marker) ends, and why the next one was refused, if one
    /// was. Put lock held (`w`).
    pub(crate) fn dispatch_replicated(
        &self,
        w: &mut Writer,
        from: i64,
        to: i64,
        arrivals: &mut Arrivals,
    ) -> (i64, Option<String>) {
        let log = &self.commit_log;
        let seg_size = log.segment_size();
        let mut index = self.index.lock();
        let mut cursor = from;
        while cursor < to {
            let Some(seg) = log.segment_for(cursor) else {
                return (cursor, Some("no commit-log segment holds it".into()));
            };
            let pos = (cursor - seg.start()) as usize;
            let remaining = seg.size() - pos;
            let avail = (to.min(seg.end()) - cursor) as usize;
            if remaining < END_FILE_MIN_BLANK_LENGTH {
                // Too little room for a record: the segment ends here, as
                // recovery reads it.
                if avail < remaining {
                    break;
                }
                cursor = seg.end();
                continue;
            }
            if avail < END_FILE_MIN_BLANK_LENGTH {
                break;
            }
            // SAFETY: [pos, pos + avail) lies at or past the readable offset
            // and the put lock is held, so no other thread touches it.
            let bytes = unsafe { seg.slice(pos, avail) };
            let total = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let magic = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            if magic == BLANK_MAGIC_CODE {
                if total as i64 != remaining as i64 {
                    return (
                        cursor,
                        Some(format!(
                            "a blank end-of-segment marker claims {total} bytes but {remaining} \
                             remain in this store's segment of {seg_size} bytes; \
                             mapped_file_size_commit_log must equal the master's \
                             mappedFileSizeCommitLog"
                        )),
                    );
                }
                if avail < remaining {
                    break;
                }
                cursor = seg.end();
                continue;
            }
            if total <= 0 {
                return (
                    cursor,
                    Some(format!("no record starts here (size field {total})")),
                );
            }
            if total as usize + END_FILE_MIN_BLANK_LENGTH > remaining {
                return (
                    cursor,
                    Some(format!(
                        "a record of {total} bytes does not fit in the {remaining} bytes left in \
                         this store's segment of {seg_size} bytes (is mapped_file_size_commit_log \
                         the master's mappedFileSizeCommitLog?)"
                    )),
                );
            }
            let size = total as usize;
            if avail < size {
                break;
            }
            let view = match check_record(&bytes[..size], cursor) {
                Ok(v) => v,
                Err(why) => return (cursor, Some(why)),
            };
            if let Err(why) = self.dispatch_one(w, &mut index, &view, cursor, arrivals) {
                return (cursor, Some(why));
            }
            cursor += size as i64;
        }
        (cursor, None)
    }

    /// Consume-queue and index entries of one checked replicated record.
    /// The consume-queue entry is written last, so a record refused here
    /// leaves no entry behind.
    fn dispatch_one(
        &self,
        w: &mut Writer,
        index: &mut IndexService,
        view: &RecordView<'_>,
        offset: i64,
        arrivals: &mut Arrivals,
    ) -> Result<(), String> {
        let topic = view.topic_str().unwrap_or("");
        let props = view.properties_str().unwrap_or("");
        check_topic_name(topic)?;
        if view.queue_id < 0 {
            return Err(format!("queue id {} is negative", view.queue_id));
        }
        let to_queue = goes_to_queue(view.sys_flag);
        let q = view.queue_offset;
        if to_queue && !(0..=MAX_QUEUE_OFFSET).contains(&q) {
            return Err(format!("queue offset {q} is out of range"));
        }
        // Like the put path, every record makes its queue exist, even one
        // that gets no entry (a prepared transaction message).
        let cq = writer_queue(
            &mut w.queues,
            &self.queues,
            &self.config,
            topic,
            view.queue_id,
        );
        let cq = if to_queue {
            let next = cq.next_offset();
            if q < next && q != 0 {
                return Err(format!(
                    "queue offset {q} of {topic}/{} is below the queue's end {next}",
                    view.queue_id
                ));
            }
            Some(std::sync::Arc::clone(cq))
        } else {
            None
        };
        if goes_to_index(view.sys_flag) {
            for key in index_keys(props) {
                index
                    .add(topic, key, offset, view.store_timestamp)
                    .map_err(|e| format!("index write failed: {e}"))?;
            }
        }
        index.covered_to(offset + view.total_size as i64);
        let Some(cq) = cq else {
            return Ok(());
        };
        let next = cq.next_offset();
        if q < next {
            // The master deleted the topic and it was created again: its
            // queues start over at 0, and so do the replica's.
            tracing::warn!(
                topic,
                queue_id = view.queue_id,
                "replicated queue starts over at offset 0; dropping the replica's old entries"
            );
            cq.wipe()
                .map_err(|e| format!("consume-queue write failed: {e}"))?;
        } else if q > next && next > cq.min_offset() {
            tracing::warn!(
                topic,
                queue_id = view.queue_id,
                from = next,
                to = q,
                "replicated queue skips offsets"
            );
        }
        let entry = CqEntry {
            offset,
            size: view.total_size,
            tags_code: tags_code(topic, props, view.store_timestamp, &self.delay_levels),
        };
        cq.put(q, entry)
            .map_err(|e| format!("consume-queue write failed: {e}"))?;
        match arrivals
            .iter_mut()
            .find(|(t, id, _)| t == topic && *id == view.queue_id)
        {
            Some(a) => a.2 = q + 1,
            None => arrivals.push((topic.to_string(), view.queue_id, q + 1)),
        }
        Ok(())
    }

    /// Whether a record or a blank marker starts at published offset `at`.
    fn entry_starts_at(&self, at: i64) -> bool {
        let log = &self.commit_log;
        let head = log.with_slice(at, 8, |h| {
            (
                i32::from_be_bytes([h[0], h[1], h[2], h[3]]),
                i32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            )
        });
        match head {
            Some((_, BLANK_MAGIC_CODE)) => true,
            Some((_, magic)) if magic == MESSAGE_MAGIC_CODE || magic == MESSAGE_MAGIC_CODE_V2 => {
                log.read_record(at)
                    .is_some_and(|rec| check_record(&rec, at).is_ok())
            }
            _ => at % log.segment_size() as i64 == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn queue_ends(store: &MessageStore) -> HashMap<(String, i32), (i64, i64)> {
        store
            .topics_and_queues()
            .into_iter()
            .map(|(t, q)| {
                let ends = (
                    store.min_offset_in_queue(&t, q),
                    store.max_offset_in_queue(&t, q),
                );
                ((t, q), ends)
            })
            .collect()
    }

    use crate::test_util::{config, msg};

    #[tokio::test]
    async fn pending_part_blocks_puts_and_a_new_stream_drops_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let master = MessageStore::open(config(a.path())).unwrap().0;
        let replica = MessageStore::open(config(b.path())).unwrap().0;
        for i in 0..3 {
            master.put_message(msg(i)).await.unwrap();
        }
        let all = master.read_commit_log(0, usize::MAX).unwrap();
        let first = master.read_record(0).unwrap().len();
        let cut = first + 10;
        assert_eq!(
            replica.append_replicated(0, &all[..cut]).unwrap(),
            cut as i64
        );
        assert_eq!(replica.max_commit_log_offset(), first as i64);
        let refused = replica.put_message(msg(9)).await.unwrap_err();
        assert!(
            matches!(refused, PutError::ServiceNotAvailable(_)),
            "{refused}"
        );
        // A new stream from the last whole record.
        let end = replica
            .append_replicated(first as i64, &all[first..])
            .unwrap();
        assert_eq!(end, all.len() as i64);
        assert_eq!(
            replica.max_commit_log_offset(),
            master.max_commit_log_offset()
        );
        assert_eq!(queue_ends(&replica), queue_ends(&master));
        // Anything else names both offsets.
        let err = replica.append_replicated(5, b"x").unwrap_err().to_string();
        assert!(
            err.contains(" 5 ") && err.contains(&end.to_string()),
            "{err}"
        );
    }
}
