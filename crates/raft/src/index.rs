//! The Raft index (`<store>/raft/index`): the term of every Raft log entry
//! and where its records sit in the commit log. The commit log holds the
//! entries' bytes; this index is all Raft adds per entry (docs/raft.md 3.2).
//!
//! One fixed 32-byte slot per log index, big-endian:
//!
//! | bytes  | field                                                    |
//! |--------|----------------------------------------------------------|
//! | 0..8   | `i64` commit-log offset of the entry's first record      |
//! | 8..12  | `i32` size of the entry's records (0: no records)         |
//! | 12     | `u8` kind ([`SlotKind`])                                  |
//! | 13..16 | zero                                                     |
//! | 16..24 | `u64` term                                               |
//! | 24..28 | `u32` record count                                       |
//! | 28..32 | `u32` CRC32 of bytes 0..28                                |
//!
//! Slots live in files `<dir>/<20-digit index of the file's first slot>`
//! of `slots_per_file` slots each (2^20 = 32 MiB by default), aligned to
//! multiples of `slots_per_file` and mapped into memory like consume-queue
//! files: slot `i` is at byte `(i - file_start) * 32`. An all-zero slot
//! ends the index; every slot at or past [`RaftIndex::next_index`] is kept
//! zero (truncation zeroes what it drops), so a restart finds the end.
//!
//! The logical first index (moved by [`RaftIndex::purge_to`] and
//! [`RaftIndex::restart_at`]) is kept in `<dir>/start`, replaced
//! atomically; without it the index starts at 0, where openraft's
//! `initialize` writes its first membership entry.
//!
//! The index is not synchronized: its owner wraps it in a lock. Writes go
//! through the mapping; [`RaftIndex::flush`] msyncs what was appended since
//! the last flush. Truncation and purge are durable when they return.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};
use meridian_store::config_file;

/// Bytes per slot.
pub const SLOT_SIZE: usize = 32;

/// Slots per file by default: 2^20 slots, 32 MiB.
pub const DEFAULT_SLOTS_PER_FILE: u64 = 1 << 20;

/// Name of the file holding the logical first index.
const START_FILE: &str = "start";

/// Files fully checked slot by slot on open, counting back from the
/// newest. Older files were filled and flushed long ago (a file only rolls
/// after `slots_per_file` appends, and the flush thread msyncs the index
/// continuously), so they only get their first and last slots checked;
/// should that fail they are scanned too.
const VERIFY_TAIL_FILES: usize = 2;

/// What a Raft entry is, as far as the commit log is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotKind {
    /// A run of records in the commit log.
    Records = 1,
    /// A leader's blank entry: no bytes in the commit log.
    Blank = 2,
    /// A membership entry (kept in the membership log): no bytes in the
    /// commit log.
    Membership = 3,
    /// A put the store refused at append time: no bytes, reads back as a
    /// blank entry (docs/raft.md 3.3).
    Rejected = 4,
}

impl SlotKind {
    /// The kind a slot's kind byte names, if any.
    pub fn from_u8(b: u8) -> Option<SlotKind> {
        match b {
            1 => Some(SlotKind::Records),
            2 => Some(SlotKind::Blank),
            3 => Some(SlotKind::Membership),
            4 => Some(SlotKind::Rejected),
            _ => None,
        }
    }
}

/// One entry's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Commit-log offset of the entry's first record; for entries without
    /// records, the commit log's write position when it was appended.
    pub offset: i64,
    /// Size in bytes of the entry's records (0 for entries without any).
    pub size: i32,
    pub kind: SlotKind,
    pub term: u64,
    /// Number of records.
    pub count: u32,
}

impl Slot {
    /// Commit-log offset just past the entry's records.
    pub fn end(&self) -> i64 {
        self.offset + self.size as i64
    }

    fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        b[0..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12] = self.kind as u8;
        b[16..24].copy_from_slice(&self.term.to_be_bytes());
        b[24..28].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decode a slot written by [`Slot::encode`]: `Ok(None)` for an
    /// all-zero slot, `Err(why)` for anything else that is not one.
    fn decode(b: &[u8]) -> Result<Option<Slot>, &'static str> {
        debug_assert_eq!(b.len(), SLOT_SIZE);
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let crc = u32::from_be_bytes(b[28..32].try_into().unwrap());
        if crc != crc32fast::hash(&b[0..28]) {
            return Err("CRC mismatch");
        }
        let kind = SlotKind::from_u8(b[12]).ok_or("unknown kind")?;
        if b[13..16] != [0, 0, 0] {
            return Err("non-zero padding");
        }
        let slot = Slot {
            offset: i64::from_be_bytes(b[0..8].try_into().unwrap()),
            size: i32::from_be_bytes(b[8..12].try_into().unwrap()),
            kind,
            term: u64::from_be_bytes(b[16..24].try_into().unwrap()),
            count: u32::from_be_bytes(b[24..28].try_into().unwrap()),
        };
        if slot.offset < 0 || slot.size < 0 {
            return Err("negative offset or size");
        }
        Ok(Some(slot))
    }
}

/// 20-digit zero-padded decimal name of the file whose first slot is `start`.
fn file_name(start: u64) -> String {
    format!("{start:020}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Make file creations and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One mapped file of slots.
struct SlotFile {
    /// Index of the file's first slot.
    start: u64,
    path: PathBuf,
    map: MmapMut,
}

impl SlotFile {
    /// Create (or reset to zeros) a file of `slots` slots.
    fn create(path: PathBuf, start: u64, slots: u64) -> io::Result<SlotFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let size = slots * SLOT_SIZE as u64;
        file.set_len(size)?;
        meridian_store::preallocate(&file, size as usize)?;
        Self::map(path, start, &file, size)
    }

    /// Map an existing file; one shorter than `slots` slots (a crash while
    /// it was created) is extended with zeros.
    fn open(path: PathBuf, start: u64, slots: u64) -> io::Result<SlotFile> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = slots * SLOT_SIZE as u64;
        let len = file.metadata()?.len();
        if len > size {
            return Err(invalid_data(format!(
                "{} is {len} bytes, more than {slots} slots: was the index written with another file size?",
                path.display()
            )));
        }
        if len < size {
            file.set_len(size)?;
            meridian_store::preallocate(&file, size as usize)?;
        }
        Self::map(path, start, &file, size)
    }

    fn map(path: PathBuf, start: u64, file: &File, size: u64) -> io::Result<SlotFile> {
        let len = usize::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "index file too large"))?;
        // SAFETY: the mapping is only undefined behaviour if the file is
        // changed or shrunk behind our back. Index files belong to this
        // `RaftIndex` alone (the store directory is locked by one process);
        // this code never shrinks a mapped file, it only unlinks it, which
        // leaves the mapping valid.
        let map = unsafe { MmapOptions::new().len(len).map_mut(file)? };
        // Slots are written 32 bytes at a time: without this, the first
        // fault in a fresh (preallocated) file would zero-fill megabytes of
        // it at once on the appending thread. Only a hint.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Random);
        Ok(SlotFile { start, path, map })
    }

    /// The slot of index `i` (which lies in this file).
    fn slot_bytes(&self, i: u64) -> &[u8] {
        let pos = (i - self.start) as usize * SLOT_SIZE;
        &self.map[pos..pos + SLOT_SIZE]
    }

    fn write_slot(&mut self, i: u64, bytes: &[u8; SLOT_SIZE]) {
        let pos = (i - self.start) as usize * SLOT_SIZE;
        self.map[pos..pos + SLOT_SIZE].copy_from_slice(bytes);
    }

    /// Byte range in the file of the slots `[from, to)` of this file
    /// (clamped to it).
    fn byte_range(&self, from: u64, to: u64) -> (usize, usize) {
        let slots = (self.map.len() / SLOT_SIZE) as u64;
        let a = from.clamp(self.start, self.start + slots) - self.start;
        let b = to.clamp(self.start, self.start + slots) - self.start;
        (a as usize * SLOT_SIZE, b as usize * SLOT_SIZE)
    }

    /// msync the slots `[from, to)` of this file.
    fn flush_slots(&self, from: u64, to: u64) -> io::Result<()> {
        let (a, b) = self.byte_range(from, to);
        if a < b {
            self.map.flush_range(a, b - a)?;
        }
        Ok(())
    }

    /// Zero the slots `[from, to)` of this file and msync them. Only the
    /// part up to the last non-zero byte is touched. Returns whether any
    /// byte was non-zero.
    fn zero_slots(&mut self, from: u64, to: u64) -> io::Result<bool> {
        let (a, b) = self.byte_range(from, to);
        let Some(last) = self.map[a..b].iter().rposition(|&x| x != 0) else {
            return Ok(false);
        };
        let b = a + last + 1;
        self.map[a..b].fill(0);
        self.map.flush_range(a, b - a)?;
        Ok(true)
    }

    fn delete(self) -> io::Result<()> {
        let path = self.path;
        drop(self.map);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The term and commit-log position of every Raft log entry from
/// [`first_index`](RaftIndex::first_index) to
/// [`next_index`](RaftIndex::next_index), persisted.
pub struct RaftIndex {
    dir: PathBuf,
    slots_per_file: u64,
    /// Sorted by start; consecutive; the first one holds `first` (if any
    /// slot is kept), none starts at or past `next` unless it holds it.
    files: Vec<SlotFile>,
    first: u64,
    next: u64,
    /// Slots below are durable (as far as this index knows).
    flushed: AtomicU64,
}

impl std::fmt::Debug for RaftIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftIndex")
            .field("dir", &self.dir)
            .field("first", &self.first)
            .field("next", &self.next)
            .field("files", &self.files.len())
            .finish()
    }
}

impl RaftIndex {
    /// Open or create the index in `dir` (e.g. `<store>/raft/index`) with
    /// [`DEFAULT_SLOTS_PER_FILE`] slots per file.
    ///
    /// Recovery: the index runs from the first index until the first
    /// all-zero slot, or a slot that fails its CRC, or whose offset is
    /// below the previous slot's end (entries are in commit-log order).
    /// Everything from there on is zeroed (and logged with a warning if it
    /// held anything).
    pub fn open(dir: &Path) -> io::Result<RaftIndex> {
        Self::open_with(dir, DEFAULT_SLOTS_PER_FILE)
    }

    /// [`RaftIndex::open`] with `slots_per_file` slots per file (tests use
    /// small files). Must be the same on every open of a directory.
    pub fn open_with(dir: &Path, slots_per_file: u64) -> io::Result<RaftIndex> {
        if slots_per_file == 0 || slots_per_file > (usize::MAX / SLOT_SIZE) as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad slots per file: {slots_per_file}"),
            ));
        }
        fs::create_dir_all(dir)?;
        let mut listed = list_files(dir)?;
        for (start, path) in &listed {
            if start % slots_per_file != 0 {
                return Err(invalid_data(format!(
                    "{} does not start at a multiple of {slots_per_file} slots: was the index written with another file size?",
                    path.display()
                )));
            }
        }
        let start_path = dir.join(START_FILE);
        let first = match config_file::load(&start_path)? {
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    invalid_data(format!("{}: not a log index", start_path.display()))
                })?,
            None => {
                let first = listed.first().map_or(0, |(s, _)| *s);
                if first != 0 {
                    tracing::warn!(dir = %dir.display(), first, "raft index has no start file; starting at its first file");
                }
                first
            }
        };

        // Files wholly below `first` are left over from a purge that
        // stopped before deleting them.
        let mut deleted = false;
        while let Some((start, path)) = listed.first() {
            if start + slots_per_file > first {
                break;
            }
            fs::remove_file(path)?;
            listed.remove(0);
            deleted = true;
        }
        let mut files = Vec::with_capacity(listed.len());
        for (start, path) in listed {
            files.push(SlotFile::open(path, start, slots_per_file)?);
        }

        let mut index = RaftIndex {
            dir: dir.to_path_buf(),
            slots_per_file,
            files,
            first,
            next: first,
            flushed: AtomicU64::new(first),
        };
        let (next, why) = index.find_end();
        index.next = next;
        index.flushed.store(next, Ordering::Relaxed);
        let dropped = index.drop_from(next)?;
        if dropped || why.is_some() {
            tracing::warn!(
                dir = %dir.display(),
                next,
                why = why.unwrap_or("slots after an empty slot"),
                "raft index: dropped slots from the first unusable one on"
            );
        }
        if deleted {
            sync_dir(dir)?;
        }
        Ok(index)
    }

    /// Recovery: the index one past the last usable slot, and why the
    /// scan stopped if not at an all-zero slot.
    fn find_end(&self) -> (u64, Option<&'static str>) {
        let spf = self.slots_per_file;
        let tail_from = self.files.len().saturating_sub(VERIFY_TAIL_FILES);
        let mut next = self.first;
        let mut prev_end: Option<i64> = None;
        let check =
            |f: &SlotFile, i: u64, prev_end: Option<i64>| -> Result<Option<Slot>, &'static str> {
                match Slot::decode(f.slot_bytes(i))? {
                    Some(s) if prev_end.is_some_and(|e| s.offset < e) => {
                        Err("offset below the previous entry's end")
                    }
                    found => Ok(found),
                }
            };
        for (k, f) in self.files.iter().enumerate() {
            if f.start > next {
                return (next, Some("missing file"));
            }
            let hi = f.start + spf;
            if k < tail_from {
                // A full, old file: check its ends only.
                if let (Ok(Some(a)), Ok(Some(b))) =
                    (check(f, next, prev_end), check(f, hi - 1, None))
                {
                    if b.offset >= a.end() {
                        next = hi;
                        prev_end = Some(b.end());
                        continue;
                    }
                }
            }
            while next < hi {
                match check(f, next, prev_end) {
                    Ok(Some(s)) => {
                        prev_end = Some(s.end());
                        next += 1;
                    }
                    Ok(None) => return (next, None),
                    Err(why) => return (next, Some(why)),
                }
            }
        }
        (next, None)
    }

    /// Zero every slot from `next` on and delete files wholly past it,
    /// durably. Returns whether anything non-zero was dropped.
    fn drop_from(&mut self, next: u64) -> io::Result<bool> {
        let mut dropped = false;
        let mut deleted = false;
        while let Some(f) = self.files.last() {
            if f.start < next {
                break;
            }
            let f = self.files.pop().expect("checked above");
            dropped |= f.map.iter().any(|&b| b != 0);
            f.delete()?;
            deleted = true;
        }
        if let Some(f) = self.files.last_mut() {
            dropped |= f.zero_slots(next, u64::MAX)?;
        }
        if deleted {
            // A deleted file must not come back after a crash: its slots
            // would continue the index.
            sync_dir(&self.dir)?;
        }
        Ok(dropped)
    }

    /// Index of the first slot kept (0 for a new index).
    pub fn first_index(&self) -> u64 {
        self.first
    }

    /// One past the last slot; equal to [`first_index`](Self::first_index)
    /// when the index is empty.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// The last slot and its index.
    pub fn last(&self) -> Option<(u64, Slot)> {
        let i = self.next.checked_sub(1)?;
        Some((i, self.get(i)?))
    }

    fn file_pos(&self, index: u64) -> Option<usize> {
        let start = index - index % self.slots_per_file;
        self.files.binary_search_by_key(&start, |f| f.start).ok()
    }

    /// The slot of `index`, if kept.
    pub fn get(&self, index: u64) -> Option<Slot> {
        if index < self.first || index >= self.next {
            return None;
        }
        let f = &self.files[self.file_pos(index)?];
        Slot::decode(f.slot_bytes(index)).ok().flatten()
    }

    /// Append the slot of `index`, which must be
    /// [`next_index`](Self::next_index), and whose offset must not be below
    /// the previous slot's end (`InvalidInput` otherwise). Durable after
    /// the next [`flush`](Self::flush).
    pub fn append(&mut self, index: u64, slot: Slot) -> io::Result<()> {
        if index != self.next {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("raft index: append at {index}, expected {}", self.next),
            ));
        }
        if slot.offset < 0 || slot.size < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("raft index: bad slot {slot:?} at {index}"),
            ));
        }
        if let Some((_, prev)) = self.last() {
            if slot.offset < prev.end() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "raft index: slot at {index} starts at {}, before the previous entry's end {}",
                        slot.offset,
                        prev.end()
                    ),
                ));
            }
        }
        let pos = match self.file_pos(index) {
            Some(pos) => pos,
            None => self.create_file_for(index)?,
        };
        self.files[pos].write_slot(index, &slot.encode());
        self.next = index + 1;
        Ok(())
    }

    fn create_file_for(&mut self, index: u64) -> io::Result<usize> {
        let start = index - index % self.slots_per_file;
        let path = self.dir.join(file_name(start));
        let file = SlotFile::create(path, start, self.slots_per_file)?;
        // The slots written into it are only durable with its name.
        sync_dir(&self.dir)?;
        let pos = self.files.partition_point(|f| f.start < start);
        self.files.insert(pos, file);
        Ok(pos)
    }

    /// Keep the slots up to `last`; `None` drops every kept slot (the
    /// first index stays). Durable when it returns.
    pub fn truncate_after(&mut self, last: Option<u64>) -> io::Result<()> {
        let new_next = match last {
            Some(l) => l.saturating_add(1).max(self.first),
            None => self.first,
        };
        if new_next >= self.next {
            return Ok(());
        }
        let old_next = self.next;
        // Zero the dropped slots of files that stay; delete the others.
        let mut deleted = false;
        while let Some(f) = self.files.last() {
            if f.start < new_next {
                break;
            }
            self.files.pop().expect("checked above").delete()?;
            deleted = true;
        }
        if let Some(f) = self.files.last_mut() {
            f.zero_slots(new_next, old_next)?;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        self.next = new_next;
        self.flushed.fetch_min(new_next, Ordering::Relaxed);
        Ok(())
    }

    /// Slots up to `upto` are no longer needed: the first index becomes
    /// `max(first, upto + 1)` (and the index is empty from there if it
    /// ended before), and files holding only slots up to `upto` are
    /// deleted.
    pub fn purge_to(&mut self, upto: u64) -> io::Result<()> {
        let new_first = upto.saturating_add(1);
        if new_first <= self.first {
            return Ok(());
        }
        // The start first: a crash before the files go leaves files that
        // the next open deletes.
        self.save_start(new_first)?;
        self.first = new_first;
        if self.next < new_first {
            self.next = new_first;
        }
        self.flushed.fetch_max(new_first, Ordering::Relaxed);
        let spf = self.slots_per_file;
        let n = self.files.partition_point(|f| f.start + spf <= new_first);
        for f in self.files.drain(..n) {
            f.delete()?;
        }
        Ok(())
    }

    /// Drop every slot and file; the next append is at `next`.
    pub fn restart_at(&mut self, next: u64) -> io::Result<()> {
        // Files first: a crash before the new start is written leaves an
        // empty index at the old start, never old slots at the new one.
        for f in self.files.drain(..) {
            f.delete()?;
        }
        // `persist` syncs the directory, which makes the deletions durable.
        self.save_start(next)?;
        self.first = next;
        self.next = next;
        self.flushed.store(next, Ordering::Relaxed);
        Ok(())
    }

    fn save_start(&self, first: u64) -> io::Result<()> {
        config_file::persist(&self.dir.join(START_FILE), format!("{first}\n").as_bytes())
    }

    /// The last index whose slot ends at or before commit-log `offset`
    /// (binary search: slot ends never decrease).
    pub fn last_ending_at_or_before(&self, offset: i64) -> Option<u64> {
        let n = self.partition(|s| s.end() <= offset);
        n.checked_sub(1).filter(|&i| i >= self.first)
    }

    /// The first index whose slot starts at or after commit-log `offset`.
    pub fn first_at_or_after(&self, offset: i64) -> Option<u64> {
        let i = self.partition(|s| s.offset < offset);
        (i < self.next).then_some(i)
    }

    /// The first index in `[first, next)` whose slot does not satisfy
    /// `pred`, which must hold for a prefix of the slots.
    fn partition(&self, pred: impl Fn(&Slot) -> bool) -> u64 {
        let (mut lo, mut hi) = (self.first, self.next);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(s) if pred(&s) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Make the slots appended so far durable (msync).
    pub fn flush(&self) -> io::Result<()> {
        let from = self.flushed.load(Ordering::Relaxed).max(self.first);
        let to = self.next;
        if from >= to {
            return Ok(());
        }
        for f in &self.files {
            if f.start + self.slots_per_file > from && f.start < to {
                f.flush_slots(from, to)?;
            }
        }
        self.flushed.fetch_max(to, Ordering::Relaxed);
        Ok(())
    }
}

/// Index files in `dir`, sorted by their first index. Other files (the
/// start file, temporaries) are ignored.
fn list_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(start) = entry.file_name().to_str().and_then(parse_file_name) {
            out.push((start, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, size: i32, term: u64) -> Slot {
        Slot {
            offset,
            size,
            kind: SlotKind::Records,
            term,
            count: 1,
        }
    }

    /// Slot `i` of a test index: 100 bytes at `i * 100`.
    fn nth(i: u64) -> Slot {
        rec(i as i64 * 100, 100, 1 + i / 5)
    }

    fn fill(ix: &mut RaftIndex, range: std::ops::Range<u64>) {
        for i in range {
            ix.append(i, nth(i)).unwrap();
        }
    }

    fn files_in(dir: &Path) -> Vec<u64> {
        list_files(dir)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// Overwrite slot `i` on disk (index closed), files of 4 slots.
    fn poke(dir: &Path, i: u64, bytes: &[u8; SLOT_SIZE]) {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = OpenOptions::new()
            .write(true)
            .open(dir.join(file_name(i - i % 4)))
            .unwrap();
        f.seek(SeekFrom::Start((i % 4) * SLOT_SIZE as u64)).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn slot_encoding() {
        let s = Slot {
            offset: 0x0102030405060708,
            size: 0x0a0b0c0d,
            kind: SlotKind::Membership,
            term: 7,
            count: 3,
        };
        let b = s.encode();
        assert_eq!(&b[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[8..13], &[0x0a, 0x0b, 0x0c, 0x0d, 3]);
        assert_eq!(&b[13..16], &[0, 0, 0]);
        assert_eq!(&b[16..24], &7u64.to_be_bytes());
        assert_eq!(&b[24..28], &3u32.to_be_bytes());
        assert_eq!(Slot::decode(&b), Ok(Some(s)));
        assert_eq!(Slot::decode(&[0; SLOT_SIZE]), Ok(None));
        // openraft's first entry: membership, term 0, at offset 0.
        let zero = Slot {
            offset: 0,
            size: 0,
            kind: SlotKind::Membership,
            term: 0,
            count: 0,
        };
        assert_eq!(Slot::decode(&zero.encode()), Ok(Some(zero)));
        let mut bad = b;
        bad[20] ^= 1;
        assert!(Slot::decode(&bad).is_err());
    }

    #[test]
    fn append_get_across_files_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (0, 0));
        assert_eq!(ix.last(), None);
        assert_eq!(ix.get(0), None);
        fill(&mut ix, 0..10);
        assert_eq!(ix.next_index(), 10);
        assert_eq!(files_in(dir.path()), vec![0, 4, 8]);
        for i in 0..10 {
            assert_eq!(ix.get(i), Some(nth(i)));
        }
        assert_eq!(ix.get(10), None);
        assert_eq!(ix.last(), Some((9, nth(9))));
        let err = ix.append(11, nth(11)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = ix.append(10, rec(950, 10, 2)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "overlaps slot 9");
        ix.flush().unwrap();
        ix.flush().unwrap();
        drop(ix);

        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (0, 10));
        for i in 0..10 {
            assert_eq!(ix.get(i), Some(nth(i)));
        }
    }

    #[test]
    fn old_files_are_checked_at_their_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..22);
        drop(ix);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 22);
        drop(ix);
        // A bad slot inside an old file is found by scanning it.
        let mut bad = nth(6).encode();
        bad[31] ^= 0xff;
        poke(dir.path(), 7, &bad);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 7);
        assert_eq!(files_in(dir.path()), vec![0, 4]);
    }

    #[test]
    fn torn_last_slot_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..7);
        drop(ix);
        let mut torn = nth(6).encode();
        torn[28..32].copy_from_slice(&[0, 0, 0, 0]);
        poke(dir.path(), 6, &torn);
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 6);
        assert_eq!(ix.get(6), None);
        // Zeroed on disk: a later append and reopen see only new slots.
        ix.append(6, nth(6)).unwrap();
        drop(ix);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 7);
    }

    #[test]
    fn offset_going_backwards_ends_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..10);
        drop(ix);
        poke(dir.path(), 5, &rec(420, 10, 2).encode());
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 5);
        assert_eq!(ix.last(), Some((4, nth(4))));
        assert_eq!(files_in(dir.path()), vec![0, 4]);
        drop(ix);
        // The dropped slots are gone for good.
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 5);
    }

    #[test]
    fn slots_after_a_hole_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..8);
        drop(ix);
        poke(dir.path(), 5, &[0; SLOT_SIZE]);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 5);
        drop(ix);
        // Slots 6 and 7 were zeroed, so appending 5 again ends there.
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        ix.append(5, nth(5)).unwrap();
        drop(ix);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 6);
    }

    #[test]
    fn truncate_then_append_reuses_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..10);
        ix.truncate_after(Some(5)).unwrap();
        assert_eq!(ix.next_index(), 6);
        assert_eq!(ix.get(6), None);
        assert_eq!(files_in(dir.path()), vec![0, 4]);
        ix.append(6, rec(600, 50, 9)).unwrap();
        ix.append(7, rec(650, 50, 9)).unwrap();
        ix.append(8, rec(700, 50, 9)).unwrap();
        ix.flush().unwrap();
        // Truncating at a file boundary deletes the file.
        ix.truncate_after(Some(7)).unwrap();
        assert_eq!(files_in(dir.path()), vec![0, 4]);
        // Past the end: nothing to do.
        ix.truncate_after(Some(100)).unwrap();
        assert_eq!(ix.next_index(), 8);
        drop(ix);

        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.next_index(), 8);
        assert_eq!(ix.get(5), Some(nth(5)));
        assert_eq!(ix.get(7), Some(rec(650, 50, 9)));
        ix.truncate_after(None).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (0, 0));
        assert_eq!(ix.last(), None);
        drop(ix);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (0, 0));
    }

    #[test]
    fn purge_deletes_whole_files_and_first_survives() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..10);
        ix.purge_to(2).unwrap();
        assert_eq!(ix.first_index(), 3);
        assert_eq!(files_in(dir.path()), vec![0, 4, 8]);
        assert_eq!(ix.get(2), None);
        assert_eq!(ix.get(3), Some(nth(3)));
        ix.purge_to(5).unwrap();
        assert_eq!(ix.first_index(), 6);
        assert_eq!(files_in(dir.path()), vec![4, 8]);
        // Going back is a no-op.
        ix.purge_to(1).unwrap();
        assert_eq!(ix.first_index(), 6);
        drop(ix);

        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (6, 10));
        assert_eq!(ix.get(5), None);
        assert_eq!(ix.get(6), Some(nth(6)));
        assert_eq!(ix.last_ending_at_or_before(650), None);
        assert_eq!(ix.last_ending_at_or_before(700), Some(6));
        ix.truncate_after(None).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (6, 6));
        fill(&mut ix, 6..9);
        // Purging past the end leaves an empty index there.
        ix.purge_to(11).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (12, 12));
        assert_eq!(files_in(dir.path()), Vec::<u64>::new());
        ix.append(12, nth(12)).unwrap();
        drop(ix);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (12, 13));
    }

    #[test]
    fn leftover_purged_files_are_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..10);
        drop(ix);
        // A purge to 5 that stopped after writing the start file.
        config_file::persist(&dir.path().join(START_FILE), b"6\n").unwrap();
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (6, 10));
        assert_eq!(files_in(dir.path()), vec![4, 8]);
    }

    #[test]
    fn restart_at() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..10);
        ix.restart_at(21).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (21, 21));
        assert_eq!(files_in(dir.path()), Vec::<u64>::new());
        assert_eq!(ix.get(5), None);
        let err = ix.append(20, nth(20)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        ix.append(21, rec(5000, 10, 7)).unwrap();
        ix.append(22, rec(5010, 10, 7)).unwrap();
        drop(ix);
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (21, 23));
        assert_eq!(ix.get(22), Some(rec(5010, 10, 7)));
        // Restarting lower is allowed too.
        ix.restart_at(3).unwrap();
        drop(ix);
        let ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!((ix.first_index(), ix.next_index()), (3, 3));
    }

    #[test]
    fn searches_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        assert_eq!(ix.last_ending_at_or_before(1000), None);
        assert_eq!(ix.first_at_or_after(0), None);
        // 0: [0,100) 1: blank at 100 2: [100,150) 3: [200,300) (a gap
        // before it, a rolled segment) 4: membership at 300.
        let blank = |off| Slot {
            offset: off,
            size: 0,
            kind: SlotKind::Blank,
            term: 2,
            count: 0,
        };
        ix.append(0, rec(0, 100, 1)).unwrap();
        ix.append(1, blank(100)).unwrap();
        ix.append(2, rec(100, 50, 2)).unwrap();
        ix.append(3, rec(200, 100, 2)).unwrap();
        ix.append(
            4,
            Slot {
                kind: SlotKind::Membership,
                ..blank(300)
            },
        )
        .unwrap();
        assert_eq!(ix.last_ending_at_or_before(99), None);
        assert_eq!(ix.last_ending_at_or_before(100), Some(1));
        assert_eq!(ix.last_ending_at_or_before(149), Some(1));
        assert_eq!(ix.last_ending_at_or_before(150), Some(2));
        assert_eq!(ix.last_ending_at_or_before(299), Some(2));
        assert_eq!(ix.last_ending_at_or_before(300), Some(4));
        assert_eq!(ix.last_ending_at_or_before(i64::MAX), Some(4));
        assert_eq!(ix.first_at_or_after(0), Some(0));
        assert_eq!(ix.first_at_or_after(1), Some(1));
        assert_eq!(ix.first_at_or_after(100), Some(1));
        assert_eq!(ix.first_at_or_after(101), Some(3));
        assert_eq!(ix.first_at_or_after(300), Some(4));
        assert_eq!(ix.first_at_or_after(301), None);
    }

    #[test]
    fn default_file_size_and_thread_safety() {
        fn shared<T: Send + Sync>() {}
        shared::<RaftIndex>();
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open(dir.path()).unwrap();
        ix.append(0, nth(0)).unwrap();
        ix.flush().unwrap();
        let len = fs::metadata(dir.path().join(file_name(0))).unwrap().len();
        assert_eq!(len, DEFAULT_SLOTS_PER_FILE * SLOT_SIZE as u64);
        assert_eq!(len, 32 << 20);
    }

    #[test]
    fn rejects_foreign_file_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = RaftIndex::open_with(dir.path(), 4).unwrap();
        fill(&mut ix, 0..6);
        drop(ix);
        let err = RaftIndex::open_with(dir.path(), 8).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = RaftIndex::open_with(dir.path(), 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
