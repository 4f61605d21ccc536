//! The commit log: every message of every topic, appended in order to
//! fixed-size segment files named by their start offset. It is the one
//! source of truth; consume queues and the index are derived from it.
//!
//! A record never straddles two segments: when the next record (or batch)
//! does not fit with 8 bytes to spare, the rest of the segment gets a BLANK
//! marker (TOTALSIZE = bytes left, MAGICCODE = `0xCBD43194`) and the record
//! goes to a new segment, as RocketMQ does.
//!
//! Concurrency: appends happen under the store's put lock through an
//! [`Appender`]; readers never take that lock. The `readable` offset is the
//! fence (see `mapped_file`): bytes below it are complete and immutable.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use meridian_protocol::message::{
    record_len, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2,
};
use parking_lot::RwLock;

use crate::error::StoreError;
use crate::mapped_file::{list_offset_files, offset_file_name, MappedFile};

/// The page size periodic flushes round down to.
const FLUSH_PAGE: i64 = 4096;

/// Bytes a segment must keep free after a record: room for a blank marker.
pub(crate) const END_FILE_MIN_BLANK_LENGTH: usize = 8;

pub(crate) struct CommitLog {
    dir: PathBuf,
    segment_size: usize,
    /// Sorted, contiguous segments. Changed only by a roll (put lock) or by
    /// retention; readers clone an `Arc` and let go of the lock at once.
    segments: RwLock<Vec<Arc<MappedFile>>>,
    /// Everything below is written and may be read (Release/Acquire fence).
    readable: AtomicI64,
    /// Start of the oldest segment still kept.
    min_offset: AtomicI64,
    /// Everything below is on disk.
    flushed: AtomicI64,
}

/// The writer's position: only touched under the put lock.
pub(crate) struct Appender {
    current: Option<Arc<MappedFile>>,
    write_offset: i64,
}

impl Appender {
    pub fn write_offset(&self) -> i64 {
        self.write_offset
    }

    /// Move past `len` bytes just written at the reserved position.
    pub fn advance(&mut self, len: usize) {
        self.write_offset += len as i64;
    }
}

/// What loading the segment files found before any record was read.
#[derive(Debug, Default)]
pub(crate) struct LoadNotes {
    /// Files past a gap in the offsets: not part of the log any more.
    pub orphans: Vec<PathBuf>,
    /// The last segment was shorter than a segment (torn or cut) and was
    /// extended with zeros; its length before.
    pub short_last: Option<(PathBuf, u64)>,
}

impl CommitLog {
    /// Map the segment files of `dir`. Records are checked later, by recovery.
    pub fn load(dir: &Path, segment_size: usize) -> Result<(CommitLog, LoadNotes), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        remove_cut_leftovers(dir).map_err(|e| StoreError::io(dir, e))?;
        let files = list_offset_files(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut notes = LoadNotes::default();
        let mut segments: Vec<Arc<MappedFile>> = Vec::with_capacity(files.len());
        let count = files.len();
        for (i, (start, path)) in files.into_iter().enumerate() {
            if let Some(prev) = segments.last() {
                if prev.end() != start {
                    notes.orphans.push(path);
                    continue;
                }
            }
            if !notes.orphans.is_empty() {
                notes.orphans.push(path);
                continue;
            }
            if start % segment_size as i64 != 0 {
                return Err(StoreError::Config(format!(
                    "commit-log segment {} does not start at a multiple of \
                     mapped_file_size_commit_log ({segment_size}); set it to the size the \
                     store was created with",
                    path.display()
                )));
            }
            let len = std::fs::metadata(&path)
                .map_err(|e| StoreError::io(&path, e))?
                .len();
            let is_last = i + 1 == count;
            if len > segment_size as u64 || (len < segment_size as u64 && !is_last) {
                return Err(StoreError::Config(format!(
                    "commit-log segment {} is {len} bytes but mapped_file_size_commit_log is \
                     {segment_size}; set it to the size the store was created with",
                    path.display()
                )));
            }
            let (file, old_len) = MappedFile::open(&path, start, segment_size)
                .map_err(|e| StoreError::io(&path, e))?;
            if old_len < segment_size as u64 {
                notes.short_last = Some((path.clone(), old_len));
            }
            segments.push(Arc::new(file));
        }
        // Every segment but the one being written is finished.
        if let Some((_, finished)) = segments.split_last() {
            for seg in finished {
                seg.set_readahead(true);
            }
        }
        let min = segments.first().map_or(0, |s| s.start());
        let log = CommitLog {
            dir: dir.to_path_buf(),
            segment_size,
            segments: RwLock::new(segments),
            readable: AtomicI64::new(min),
            min_offset: AtomicI64::new(min),
            flushed: AtomicI64::new(min),
        };
        Ok((log, notes))
    }

    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    pub fn segments(&self) -> Vec<Arc<MappedFile>> {
        self.segments.read().clone()
    }

    /// The segment holding `offset`, if it is still kept.
    pub fn segment_for(&self, offset: i64) -> Option<Arc<MappedFile>> {
        let segs = self.segments.read();
        let first = segs.first()?;
        if offset < first.start() {
            return None;
        }
        let idx = ((offset - first.start()) / self.segment_size as i64) as usize;
        let seg = segs.get(idx)?;
        debug_assert!(seg.start() <= offset && offset < seg.end());
        Some(Arc::clone(seg))
    }

    pub fn readable_offset(&self) -> i64 {
        self.readable.load(Ordering::Acquire)
    }

    pub fn min_offset(&self) -> i64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Set the state found by recovery: all of `[min, end)` is valid and
    /// synced. Returns the appender positioned at `end`.
    pub fn recovered(&self, end: i64) -> Appender {
        self.readable.store(end, Ordering::Release);
        self.flushed.store(end, Ordering::Release);
        let current = self.segment_for(end).filter(|s| end < s.end());
        Appender {
            current,
            write_offset: end,
        }
    }

    /// Recovery: bytes from `offset` on may not be on disk yet.
    pub fn set_flushed_for_recovery(&self, offset: i64) {
        self.flushed.store(offset, Ordering::Release);
    }

    /// Position to write `len` bytes contiguously, rolling to a new segment
    /// (after a blank marker) if they do not fit. Put lock held.
    pub fn reserve(&self, app: &mut Appender, len: usize) -> io::Result<(Arc<MappedFile>, usize)> {
        if len + END_FILE_MIN_BLANK_LENGTH > self.segment_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes cannot fit in a segment of {}",
                    self.segment_size
                ),
            ));
        }
        loop {
            if let Some(seg) = &app.current {
                let pos = (app.write_offset - seg.start()) as usize;
                let remaining = seg.size() - pos;
                if len + END_FILE_MIN_BLANK_LENGTH <= remaining {
                    return Ok((Arc::clone(seg), pos));
                }
                // A record always leaves room for this marker, so it fits.
                debug_assert!(remaining >= END_FILE_MIN_BLANK_LENGTH);
                // SAFETY: beyond the readable offset, put lock held.
                let dst = unsafe { seg.slice_mut(pos, END_FILE_MIN_BLANK_LENGTH) };
                dst[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
                dst[4..].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
                app.write_offset = seg.end();
                app.current = None;
            }
            app.current = Some(self.segment_starting_at(app.write_offset)?);
        }
    }

    /// The segment that starts at `start`: the one already there (an empty
    /// segment left by a dropped replicated tail), or a new one. Put lock held.
    fn segment_starting_at(&self, start: i64) -> io::Result<Arc<MappedFile>> {
        debug_assert_eq!(start % self.segment_size as i64, 0);
        if let Some(seg) = self.segment_for(start) {
            debug_assert_eq!(seg.start(), start);
            return Ok(seg);
        }
        let path = self.dir.join(offset_file_name(start));
        let seg = Arc::new(MappedFile::create(&path, start, self.segment_size)?);
        let finished = {
            let mut segs = self.segments.write();
            if segs.is_empty() {
                self.min_offset.store(start, Ordering::Release);
            }
            debug_assert!(segs.last().is_none_or(|s| s.end() == start));
            let finished = segs.last().cloned();
            segs.push(Arc::clone(&seg));
            finished
        };
        if let Some(done) = finished {
            done.set_readahead(true);
        }
        tracing::debug!(segment = %path.display(), "commit log rolled to a new segment");
        Ok(seg)
    }

    /// Make everything below `offset` readable. Put lock held.
    pub fn publish(&self, offset: i64) {
        debug_assert!(
            offset >= self.readable.load(Ordering::Relaxed),
            "commit log only grows"
        );
        self.readable.store(offset, Ordering::Release);
    }

    /// Run `f` over the published bytes `[offset, offset + len)`.
    pub fn with_slice<R>(&self, offset: i64, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (seg, pos) = self.locate(offset, len)?;
        // SAFETY: `locate` checked the range is below the readable offset.
        Some(f(unsafe { seg.slice(pos, len) }))
    }

    /// The published bytes `[offset, offset + len)`, zero-copy.
    pub fn read(&self, offset: i64, len: usize) -> Option<Bytes> {
        let (seg, pos) = self.locate(offset, len)?;
        // SAFETY: `locate` checked the range is below the readable offset.
        Some(unsafe { seg.bytes(pos, len) })
    }

    /// Segment and position of a published range that lies in one segment.
    pub fn locate(&self, offset: i64, len: usize) -> Option<(Arc<MappedFile>, usize)> {
        let readable = self.readable_offset();
        let end = offset.checked_add(len as i64)?;
        if offset < self.min_offset() || end > readable {
            return None;
        }
        let seg = self.segment_for(offset)?;
        let pos = (offset - seg.start()) as usize;
        if pos + len > seg.size() {
            return None;
        }
        Some((seg, pos))
    }

    /// The size a message record at `offset` declares, if one starts there.
    pub fn record_size_at(&self, offset: i64) -> Option<usize> {
        let (size, magic) = self.with_slice(offset, 8, |h| {
            (
                i32::from_be_bytes([h[0], h[1], h[2], h[3]]),
                i32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            )
        })?;
        if magic != MESSAGE_MAGIC_CODE && magic != MESSAGE_MAGIC_CODE_V2 {
            return None;
        }
        let min = record_len(false, false, 0, 0, 0);
        if (size as i64) < min as i64 {
            return None;
        }
        Some(size as usize)
    }

    /// The exact stored bytes of the record at `offset`.
    pub fn read_record(&self, offset: i64) -> Option<Bytes> {
        let size = self.record_size_at(offset)?;
        self.read(offset, size)
    }

    /// Force everything readable to disk; returns the new flushed offset.
    /// With `whole_pages`, stop at the last page boundary at or below the
    /// readable offset: the page being appended to is left for a later
    /// flush, so appends never write into a page that is being written
    /// back (ASYNC_FLUSH's periodic flushes; SYNC_FLUSH needs every byte).
    /// Callers serialize flushes.
    pub fn flush(&self, whole_pages: bool) -> io::Result<i64> {
        let readable = self.readable_offset();
        let target = if whole_pages {
            readable - readable.rem_euclid(FLUSH_PAGE)
        } else {
            readable
        };
        let from = self.flushed_offset();
        if target <= from {
            return Ok(from);
        }
        for seg in self.segments() {
            let lo = from.max(seg.start());
            let hi = target.min(seg.end());
            if lo < hi {
                let (pos, len) = ((lo - seg.start()) as usize, (hi - lo) as usize);
                if whole_pages {
                    seg.flush_range_paced(pos, len)?;
                } else {
                    seg.flush_range(pos, len)?;
                }
            }
        }
        self.flushed.fetch_max(target, Ordering::AcqRel);
        Ok(target)
    }

    /// Remove up to `max` of the oldest segments for which `expired` holds,
    /// never the newest one nor any not yet flushed. Returns the new minimum
    /// offset if anything was removed.
    pub fn delete_oldest(
        &self,
        max: usize,
        mut expired: impl FnMut(&MappedFile) -> bool,
    ) -> io::Result<Option<i64>> {
        let flushed = self.flushed_offset();
        let removed: Vec<Arc<MappedFile>> = {
            let mut segs = self.segments.write();
            let mut n = 0;
            while n < max && n + 1 < segs.len() && segs[n].end() <= flushed && expired(&segs[n]) {
                n += 1;
            }
            let removed = segs.drain(..n).collect();
            if let Some(first) = segs.first() {
                self.min_offset.store(first.start(), Ordering::Release);
            }
            removed
        };
        if removed.is_empty() {
            return Ok(None);
        }
        for seg in &removed {
            tracing::info!(segment = %seg.path().display(), "retention deleted commit-log segment");
            seg.delete()?;
        }
        Ok(Some(self.min_offset()))
    }

    /// Drop segments from `index` on (recovery only), deleting their files.
    pub fn remove_from(&self, index: usize) -> io::Result<()> {
        let removed: Vec<_> = {
            let mut segs = self.segments.write();
            if index >= segs.len() {
                return Ok(());
            }
            segs.drain(index..).collect()
        };
        for seg in removed {
            seg.delete()?;
        }
        Ok(())
    }
}

/// Replication: raw bytes in and out, cutting back, starting over.
impl CommitLog {
    /// An appender positioned at `end`, in the segment holding it if there
    /// is one.
    pub fn appender_at(&self, end: i64) -> Appender {
        Appender {
            current: self.segment_for(end),
            write_offset: end,
        }
    }

    /// Published bytes from `from`, at most `max`, never past the end of
    /// the segment holding `from`. Empty at the readable offset; `None`
    /// below the min offset or past the readable one.
    pub fn read_chunk(&self, from: i64, max: usize) -> Option<Bytes> {
        let readable = self.readable_offset();
        if from < self.min_offset() || from > readable {
            return None;
        }
        if from == readable || max == 0 {
            return Some(Bytes::new());
        }
        let seg = self.segment_for(from)?;
        let end = readable
            .min(seg.end())
            .min(from.saturating_add(max.min(i32::MAX as usize) as i64));
        self.read(from, (end - from) as usize)
    }

    /// Copy `data` to the write position as it is, going on in the next
    /// segment (created if needed) at each segment end. The bytes stay
    /// unpublished. Put lock held.
    pub fn write_raw(&self, app: &mut Appender, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let seg = match &app.current {
                Some(seg) if app.write_offset < seg.end() => Arc::clone(seg),
                _ => {
                    if app.write_offset % self.segment_size as i64 != 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("no commit-log segment holds offset {}", app.write_offset),
                        ));
                    }
                    let seg = self.segment_starting_at(app.write_offset)?;
                    app.current = Some(Arc::clone(&seg));
                    seg
                }
            };
            let pos = (app.write_offset - seg.start()) as usize;
            let n = data.len().min(seg.size() - pos);
            // SAFETY: at or beyond the readable offset, put lock held.
            unsafe { seg.slice_mut(pos, n) }.copy_from_slice(&data[..n]);
            app.write_offset += n as i64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Drop unpublished bytes `[from, to)` (a replicated tail that will not
    /// be published): zero them and remove segments that start after
    /// `from`. Put lock held.
    pub fn drop_unpublished(&self, from: i64, to: i64) -> io::Result<()> {
        debug_assert!(from >= self.readable_offset());
        for seg in self.segments() {
            let lo = from.max(seg.start());
            let hi = to.min(seg.end());
            if lo < hi {
                // SAFETY: beyond the readable offset, put lock held.
                unsafe { seg.slice_mut((lo - seg.start()) as usize, (hi - lo) as usize) }.fill(0);
            }
        }
        let removed: Vec<Arc<MappedFile>> = {
            let mut segs = self.segments.write();
            let keep = segs.partition_point(|s| s.start() <= from);
            segs.drain(keep..).collect()
        };
        for seg in removed {
            seg.delete()?;
        }
        Ok(())
    }

    /// Cut the log back to `to` in place (a Raft follower's divergent,
    /// uncommitted tail): zero `[to, end)`, remove segments starting after
    /// `to`, and pull the readable and flushed offsets back to `to`. Only
    /// sound when nobody holds references into `[to, end)` (see
    /// `mapped_file`, rule 1, and `raft`). Put lock and flush lock held.
    pub fn cut_in_place(&self, to: i64, end: i64) -> io::Result<()> {
        self.readable.fetch_min(to, Ordering::AcqRel);
        self.flushed.fetch_min(to, Ordering::AcqRel);
        self.drop_unpublished(to, end)
    }

    /// Cut the published log back to `to` (`min <= to < readable`). The
    /// segment holding `to` is replaced by a new file holding a copy of its
    /// bytes below `to`, and later segments are removed: readers still
    /// holding bytes of the old files keep them unchanged (see
    /// `mapped_file`, rule 3), at the cost of copying up to one segment.
    /// Put lock and flush lock held; the caller fixes the derived files.
    pub fn cut_back(&self, to: i64) -> io::Result<()> {
        debug_assert!(self.min_offset() <= to && to < self.readable_offset());
        let old = self.segment_for(to).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no commit-log segment holds offset {to}"),
            )
        })?;
        let keep = (to - old.start()) as usize;
        let path = old.path().to_path_buf();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".cut");
        let tmp = path.with_file_name(tmp_name);
        let mut fresh = MappedFile::create(&tmp, old.start(), self.segment_size)?;
        if keep > 0 {
            // SAFETY: the old bytes lie below the readable offset, so they
            // never change; nobody else knows the new file yet.
            unsafe { fresh.slice_mut(0, keep) }.copy_from_slice(unsafe { old.slice(0, keep) });
            fresh.flush_range(0, keep)?;
        }
        // Renamed over the old file first, then later segments go: a crash
        // in between leaves zeros at `to`, where recovery ends the log and
        // drops what follows.
        fresh.rename_to(&path)?;
        sync_dir(&self.dir)?;
        let fresh = Arc::new(fresh);
        let removed: Vec<Arc<MappedFile>> = {
            let mut segs = self.segments.write();
            let idx = segs.partition_point(|s| s.start() < fresh.start());
            debug_assert_eq!(segs[idx].start(), fresh.start());
            segs[idx] = Arc::clone(&fresh);
            segs.drain(idx + 1..).collect()
        };
        self.readable.store(to, Ordering::Release);
        self.flushed.fetch_min(to, Ordering::AcqRel);
        for seg in removed {
            seg.delete()?;
        }
        sync_dir(&self.dir)
    }

    /// Make the log start empty at `offset`, a segment start: every segment
    /// file (and whatever it holds) is replaced by one empty segment there.
    /// Put lock and flush lock held.
    pub fn restart_at(&self, offset: i64) -> io::Result<()> {
        debug_assert_eq!(offset % self.segment_size as i64, 0);
        let path = self.dir.join(offset_file_name(offset));
        let old: Vec<Arc<MappedFile>> = std::mem::take(&mut *self.segments.write());
        for seg in &old {
            seg.delete()?;
        }
        let seg = Arc::new(MappedFile::create(&path, offset, self.segment_size)?);
        sync_dir(&self.dir)?;
        *self.segments.write() = vec![seg];
        self.min_offset.store(offset, Ordering::Release);
        self.readable.store(offset, Ordering::Release);
        self.flushed.store(offset, Ordering::Release);
        Ok(())
    }
}

/// A segment copy that a crash left before it replaced its segment (see
/// [`CommitLog::cut_back`]): the cut did not happen, the copy is garbage.
fn remove_cut_leftovers(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cut") {
            tracing::warn!(file = %path.display(), "removing an unfinished commit-log cut");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_writes_blank_marker() {
        let dir = tempfile::tempdir().unwrap();
        let (log, notes) = CommitLog::load(dir.path(), 64 * 1024).unwrap();
        assert!(notes.orphans.is_empty());
        let mut app = log.recovered(0);
        let (seg, pos) = log.reserve(&mut app, 60_000).unwrap();
        assert_eq!((seg.start(), pos), (0, 0));
        app.advance(60_000);
        log.publish(app.write_offset());
        let (seg2, pos2) = log.reserve(&mut app, 10_000).unwrap();
        assert_eq!((seg2.start(), pos2), (65_536, 0));
        log.publish(app.write_offset());
        let marker = log.with_slice(60_000, 8, |b| b.to_vec()).unwrap();
        assert_eq!(&marker[..4], &(5536i32).to_be_bytes());
        assert_eq!(&marker[4..], &BLANK_MAGIC_CODE.to_be_bytes());
        assert!(log.reserve(&mut app, 65_536).is_err());
        assert_eq!(log.segments().len(), 2);
        assert!(dir.path().join("00000000000000065536").exists());
    }
}
