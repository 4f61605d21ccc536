//! Consume queues: per topic and queue id, the position of each message in
//! the commit log, so a consumer can read "message N of queue Q".
//!
//! Files live at `<root>/consumequeue/<topic>/<queueId>/<20-digit byte
//! offset>` and hold fixed 20-byte entries, as in RocketMQ:
//! commit-log offset (i64), record size (i32), tag code (i64). Entry N sits
//! at byte N * 20. Entries are written under the put lock together with the
//! record; the queue's max offset, stored with `Release` after the entry is
//! written, is what readers trust (see `mapped_file`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::mapped_file::{list_offset_files, offset_file_name, MappedFile};

pub(crate) const CQ_ENTRY_SIZE: usize = 20;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CqEntry {
    pub offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl CqEntry {
    fn encode(&self, dst: &mut [u8]) {
        dst[0..8].copy_from_slice(&self.offset.to_be_bytes());
        dst[8..12].copy_from_slice(&self.size.to_be_bytes());
        dst[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
    }

    fn decode(src: &[u8]) -> CqEntry {
        let mut o = [0u8; 8];
        let mut s = [0u8; 4];
        let mut t = [0u8; 8];
        o.copy_from_slice(&src[0..8]);
        s.copy_from_slice(&src[8..12]);
        t.copy_from_slice(&src[12..20]);
        CqEntry {
            offset: i64::from_be_bytes(o),
            size: i32::from_be_bytes(s),
            tags_code: i64::from_be_bytes(t),
        }
    }

    /// Whether this looks like a written entry (a zeroed slot is not).
    pub fn is_valid(&self) -> bool {
        self.offset >= 0 && self.size > 0
    }

    pub fn end(&self) -> i64 {
        self.offset + self.size as i64
    }
}

/// Outcome of loading one queue's files.
#[derive(Debug, Default)]
pub(crate) struct CqLoadNotes {
    /// The files are unusable (wrong size, not contiguous): rebuild.
    pub corrupt: Option<String>,
}

pub(crate) struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    dir: PathBuf,
    file_size: usize,
    /// Sorted by start; contiguous from `min_offset` to `max_offset`.
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// Next offset to be written, as published to readers.
    max_offset: AtomicI64,
    min_offset: AtomicI64,
    /// Next offset the writer will use; runs ahead of `max_offset` during
    /// a put. Only touched under the put lock (or by recovery).
    write_next: AtomicI64,
    /// Entries below are on disk.
    flushed: AtomicI64,
}

impl std::fmt::Debug for ConsumeQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeQueue")
            .field("topic", &self.topic)
            .field("queue_id", &self.queue_id)
            .field("min", &self.min_offset())
            .field("max", &self.max_offset())
            .finish()
    }
}

impl ConsumeQueue {
    /// Directory of a queue's files.
    pub fn dir_for(root: &Path, topic: &str, queue_id: i32) -> PathBuf {
        root.join(topic).join(queue_id.to_string())
    }

    /// An empty queue (its directory is created on first write).
    pub fn new(root: &Path, topic: &str, queue_id: i32, entries_per_file: u64) -> ConsumeQueue {
        ConsumeQueue {
            topic: topic.to_string(),
            queue_id,
            dir: Self::dir_for(root, topic, queue_id),
            file_size: entries_per_file as usize * CQ_ENTRY_SIZE,
            files: RwLock::new(Vec::new()),
            max_offset: AtomicI64::new(0),
            min_offset: AtomicI64::new(0),
            write_next: AtomicI64::new(0),
            flushed: AtomicI64::new(0),
        }
    }

    /// Map a queue's files and find its entries: from the first written
    /// entry up to the first slot that is not one. Entries are checked
    /// against the commit log later, by recovery.
    pub fn load(
        root: &Path,
        topic: &str,
        queue_id: i32,
        entries_per_file: u64,
    ) -> io::Result<(ConsumeQueue, CqLoadNotes)> {
        let cq = Self::new(root, topic, queue_id, entries_per_file);
        let mut notes = CqLoadNotes::default();
        let listed = list_offset_files(&cq.dir)?;
        let mut files = Vec::with_capacity(listed.len());
        for (i, (start, path)) in listed.iter().enumerate() {
            let len = std::fs::metadata(path)?.len();
            let last = i + 1 == listed.len();
            if start % cq.file_size as i64 != 0 {
                notes.corrupt = Some(format!("{} is not at a file boundary", path.display()));
            } else if len > cq.file_size as u64 || (len < cq.file_size as u64 && !last) {
                notes.corrupt = Some(format!(
                    "{} is {len} bytes, expected {}",
                    path.display(),
                    cq.file_size
                ));
            } else if i > 0 && listed[i - 1].0 + cq.file_size as i64 != *start {
                notes.corrupt = Some(format!("gap before {}", path.display()));
            }
            if notes.corrupt.is_some() {
                return Ok((cq, notes));
            }
            files.push(Arc::new(MappedFile::open(path, *start, cq.file_size)?.0));
        }
        if files.is_empty() {
            return Ok((cq, notes));
        }
        let per_file = entries_per_file as i64;
        // The first file may begin with empty slots (a queue rebuilt from
        // the middle); the queue starts at its first written entry.
        let first = &files[0];
        let first_q = first.start() / CQ_ENTRY_SIZE as i64;
        // A file with no written slot at all (made just before a crash,
        // its first entry never written) holds an empty queue that starts
        // where the file starts: recovery writes the lost entries back.
        let mut min = first_q + per_file;
        for i in 0..per_file {
            if read_slot(first, i as usize).is_valid() {
                min = first_q + i;
                break;
            }
        }
        if files.len() == 1 && min == first_q + per_file {
            min = first_q;
        }
        // Every file but the last was full when the queue rolled past it.
        // Entries are written in order, so the last file holds a prefix of
        // written slots: find its end by binary search rather than reading
        // it all (any slot it misjudges lies after the checkpoint and is
        // rewritten by recovery).
        let last = &files[files.len() - 1];
        let last_q = last.start() / CQ_ENTRY_SIZE as i64;
        let (mut lo, mut hi) = ((min - last_q).clamp(0, per_file), per_file);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if read_slot(last, mid as usize).is_valid() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let max = last_q + lo;
        let min = min.min(max);
        cq.min_offset.store(min, Ordering::Release);
        cq.max_offset.store(max, Ordering::Release);
        cq.write_next.store(max, Ordering::Relaxed);
        cq.flushed.store(max, Ordering::Release);
        *cq.files.write() = files;
        Ok((cq, notes))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// Next offset to be written (0 for an empty queue).
    pub fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }

    pub fn min_offset(&self) -> i64 {
        self.min_offset.load(Ordering::Acquire)
    }

    /// The writer's next offset (put lock held).
    pub fn next_offset(&self) -> i64 {
        self.write_next.load(Ordering::Relaxed)
    }

    /// Forget unpublished writes (a put failed half-way). Put lock held.
    pub fn rewind(&self) {
        self.write_next
            .store(self.max_offset.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn file_for(&self, q: i64) -> Option<(Arc<MappedFile>, usize)> {
        let byte = q.checked_mul(CQ_ENTRY_SIZE as i64)?;
        let files = self.files.read();
        let idx = files
            .partition_point(|f| f.start() <= byte)
            .checked_sub(1)?;
        let f = &files[idx];
        if byte >= f.end() {
            return None;
        }
        Some((Arc::clone(f), (byte - f.start()) as usize))
    }

    /// Entry `q`, if published and still kept.
    pub fn entry(&self, q: i64) -> Option<CqEntry> {
        if q < self.min_offset() || q >= self.max_offset() {
            return None;
        }
        let (f, pos) = self.file_for(q)?;
        // SAFETY: q is below the published max offset, so its slot is final.
        let e = CqEntry::decode(unsafe { f.slice(pos, CQ_ENTRY_SIZE) });
        Some(e)
    }

    /// Slot `q` whether published or not. Recovery only (exclusive access).
    pub fn slot(&self, q: i64) -> Option<CqEntry> {
        let (f, pos) = self.file_for(q)?;
        Some(read_slot(&f, pos / CQ_ENTRY_SIZE))
    }

    /// Call `f(q, entry)` for published entries from `from` on, at most
    /// `limit` of them, until it returns false. Entries of one file are read
    /// without looking the file up again.
    pub fn for_each_from(&self, from: i64, limit: usize, mut f: impl FnMut(i64, CqEntry) -> bool) {
        let max = self.max_offset();
        let mut q = from.max(self.min_offset());
        let end = max.min(q.saturating_add(limit as i64));
        while q < end {
            let Some((file, pos)) = self.file_for(q) else {
                return;
            };
            let in_file = ((file.size() - pos) / CQ_ENTRY_SIZE) as i64;
            let stop = end.min(q + in_file);
            // SAFETY: every slot in [q, stop) is below the published max.
            let slots = unsafe { file.slice(pos, (stop - q) as usize * CQ_ENTRY_SIZE) };
            for chunk in slots.chunks_exact(CQ_ENTRY_SIZE) {
                if !f(q, CqEntry::decode(chunk)) {
                    return;
                }
                q += 1;
            }
        }
    }

    /// Write entry `q` (not yet visible to readers). Put lock held, or
    /// recovery. Writing an existing slot again is allowed (recovery).
    pub fn put(&self, q: i64, e: CqEntry) -> io::Result<()> {
        debug_assert!(e.is_valid());
        let (file, pos) = match self.file_for(q) {
            Some(found) => found,
            None => self.create_file_for(q)?,
        };
        // SAFETY: slot q is at or beyond the published max (put lock), or
        // recovery owns the store.
        e.encode(unsafe { file.slice_mut(pos, CQ_ENTRY_SIZE) });
        let next = self.write_next.load(Ordering::Relaxed);
        if q >= next {
            if next == self.min_offset.load(Ordering::Relaxed) && q != next {
                // An empty queue starts at its first entry: recovery may
                // rebuild a queue whose oldest records are gone.
                self.min_offset.store(q, Ordering::Release);
            }
            self.write_next.store(q + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn create_file_for(&self, q: i64) -> io::Result<(Arc<MappedFile>, usize)> {
        let byte = q * CQ_ENTRY_SIZE as i64;
        let start = byte - byte % self.file_size as i64;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(offset_file_name(start));
        let file = Arc::new(MappedFile::create(&path, start, self.file_size)?);
        let mut files = self.files.write();
        let idx = files.partition_point(|f| f.start() < start);
        files.insert(idx, Arc::clone(&file));
        Ok((file, (byte - start) as usize))
    }

    /// Make entries below `next` visible. Put lock held.
    pub fn publish(&self, next: i64) {
        debug_assert!(
            next >= self.max_offset.load(Ordering::Relaxed),
            "queue offsets only grow"
        );
        self.max_offset.store(next, Ordering::Release);
    }

    /// Recovery, or a cut of the commit log (put lock held): the queue
    /// holds entries `[min, next)`.
    pub fn set_range(&self, min: i64, next: i64) {
        self.min_offset.store(min.min(next), Ordering::Release);
        self.max_offset.store(next, Ordering::Release);
        self.write_next.store(next, Ordering::Relaxed);
        self.flushed.store(
            self.flushed.load(Ordering::Relaxed).min(next),
            Ordering::Release,
        );
    }

    /// Recovery, or a cut of the commit log (put lock held): drop entries
    /// from `next` on: zero their slots and delete files holding none below
    /// `next`. Returns how many were dropped.
    pub fn truncate_to(&self, next: i64) -> io::Result<u64> {
        let max = self.max_offset();
        let dropped = (max - next).max(0) as u64;
        let byte = next * CQ_ENTRY_SIZE as i64;
        let mut files = self.files.write();
        while let Some(last) = files.last() {
            if last.start() >= byte {
                // Holds nothing below `next`.
                last.delete()?;
                files.pop();
                continue;
            }
            let pos = (byte - last.start()) as usize;
            let end = last.data_end_from(pos);
            last.zero_range(pos, end)?;
            break;
        }
        drop(files);
        let min = self.min_offset().min(next);
        self.set_range(min, next);
        Ok(dropped)
    }

    /// Delete all files and start empty at offset `next` (a corrupt queue
    /// about to be rebuilt, or a deleted topic).
    pub fn wipe(&self) -> io::Result<()> {
        let mut files = self.files.write();
        for f in files.drain(..) {
            f.delete()?;
        }
        drop(files);
        self.min_offset.store(0, Ordering::Release);
        self.max_offset.store(0, Ordering::Release);
        self.write_next.store(0, Ordering::Relaxed);
        self.flushed.store(0, Ordering::Release);
        Ok(())
    }

    /// Unmap the pages of entries more than `keep` bytes behind the newest
    /// (see `MappedFile::release`): the data stays in the page cache. A
    /// queue written for hours would otherwise keep every page of its
    /// files in the broker's resident set.
    pub fn release_cold(&self, keep: usize) {
        let hi = self.max_offset() * CQ_ENTRY_SIZE as i64 - keep as i64;
        let files = self.files.read().clone();
        for f in files {
            if f.start() >= hi {
                break;
            }
            f.release(0, (hi.min(f.end()) - f.start()) as usize);
        }
    }

    /// Force written entries to disk.
    pub fn flush(&self) -> io::Result<()> {
        let max = self.max_offset();
        let from = self.flushed.load(Ordering::Acquire);
        if max <= from {
            return Ok(());
        }
        let (lo, hi) = (from * CQ_ENTRY_SIZE as i64, max * CQ_ENTRY_SIZE as i64);
        let files = self.files.read().clone();
        for f in files {
            let a = lo.max(f.start());
            let b = hi.min(f.end());
            if a < b {
                f.flush_range((a - f.start()) as usize, (b - a) as usize)?;
            }
        }
        self.flushed.fetch_max(max, Ordering::AcqRel);
        Ok(())
    }

    /// Drop whole files whose entries all point below `commit_log_min`
    /// (never the newest file), then move the minimum offset to the first
    /// entry still in the commit log. Returns the number of files deleted.
    pub fn delete_expired(&self, commit_log_min: i64) -> io::Result<usize> {
        let per_file = (self.file_size / CQ_ENTRY_SIZE) as i64;
        let removed: Vec<Arc<MappedFile>> = {
            let mut files = self.files.write();
            let mut n = 0;
            let max = self.max_offset();
            while n + 1 < files.len() {
                let f = &files[n];
                let last_q = f.end() / CQ_ENTRY_SIZE as i64 - 1;
                if last_q >= max {
                    break;
                }
                // SAFETY: slot `last_q` is below the published max offset.
                let last =
                    CqEntry::decode(unsafe { f.slice(f.size() - CQ_ENTRY_SIZE, CQ_ENTRY_SIZE) });
                if last.is_valid() && last.end() <= commit_log_min {
                    n += 1;
                } else {
                    break;
                }
            }
            files.drain(..n).collect()
        };
        for f in &removed {
            f.delete()?;
        }
        if let Some(first) = self.files.read().first() {
            let file_min = first.start() / CQ_ENTRY_SIZE as i64;
            if self.min_offset() < file_min {
                self.min_offset.store(file_min, Ordering::Release);
            }
        }
        // Move the minimum past entries whose records are gone. Offsets in
        // the commit log grow with queue offsets, so a binary search works.
        let (mut lo, mut hi) = (self.min_offset(), self.max_offset());
        let hi_limit = hi.min(lo + 2 * per_file);
        hi = hi_limit;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(e) if e.offset < commit_log_min => lo = mid + 1,
                _ => hi = mid,
            }
        }
        if lo > self.min_offset() {
            self.min_offset.store(lo, Ordering::Release);
        }
        Ok(removed.len())
    }

    /// Number of files (for tests and stats).
    pub fn file_count(&self) -> usize {
        self.files.read().len()
    }
}

fn read_slot(f: &MappedFile, i: usize) -> CqEntry {
    // SAFETY: used while loading, before the queue is shared.
    CqEntry::decode(unsafe { f.slice(i * CQ_ENTRY_SIZE, CQ_ENTRY_SIZE) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: i64) -> CqEntry {
        CqEntry {
            offset,
            size: 100,
            tags_code: offset * 7,
        }
    }

    #[test]
    fn put_publish_roll_reload() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::new(dir.path(), "T", 0, 4);
        for q in 0..10 {
            assert_eq!(cq.next_offset(), q);
            cq.put(q, e(q * 100)).unwrap();
        }
        assert_eq!(cq.entry(0), None, "not published yet");
        cq.publish(10);
        assert_eq!(cq.file_count(), 3);
        assert_eq!(cq.entry(9), Some(e(900)));
        let mut seen = vec![];
        cq.for_each_from(2, 5, |q, en| {
            seen.push((q, en.offset));
            true
        });
        assert_eq!(seen, vec![(2, 200), (3, 300), (4, 400), (5, 500), (6, 600)]);
        cq.flush().unwrap();
        drop(cq);

        let (cq, notes) = ConsumeQueue::load(dir.path(), "T", 0, 4).unwrap();
        assert!(notes.corrupt.is_none());
        assert_eq!((cq.min_offset(), cq.max_offset()), (0, 10));
        assert_eq!(cq.truncate_to(6).unwrap(), 4);
        assert_eq!(cq.max_offset(), 6);
        assert_eq!(cq.file_count(), 2);
        drop(cq);
        let (cq, _) = ConsumeQueue::load(dir.path(), "T", 0, 4).unwrap();
        assert_eq!(cq.max_offset(), 6);
        assert_eq!(cq.delete_expired(450).unwrap(), 1);
        assert_eq!(cq.min_offset(), 5);
    }

    #[test]
    fn released_entries_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        // 1,000 entries per file: several pages, so some are released.
        let cq = ConsumeQueue::new(dir.path(), "T", 0, 1_000);
        for q in 0..2_500 {
            cq.put(q, e(q * 100)).unwrap();
        }
        cq.publish(2_500);
        cq.release_cold(4096);
        for q in 0..2_500 {
            assert_eq!(cq.entry(q), Some(e(q * 100)), "entry {q}");
        }
        // Writing on after a release works too.
        cq.put(2_500, e(250_000)).unwrap();
        cq.publish(2_501);
        assert_eq!(cq.entry(2_500), Some(e(250_000)));
    }

    #[test]
    fn queue_starting_mid_file() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::new(dir.path(), "T", 1, 4);
        cq.put(6, e(600)).unwrap();
        cq.put(7, e(700)).unwrap();
        cq.publish(8);
        assert_eq!((cq.min_offset(), cq.max_offset()), (6, 8));
        drop(cq);
        let (cq, _) = ConsumeQueue::load(dir.path(), "T", 1, 4).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (6, 8));
    }
}
