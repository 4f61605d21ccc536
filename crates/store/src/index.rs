//! The key index: find messages by `topic#key`, for every key in a
//! message's KEYS property and for its UNIQ_KEY.
//!
//! Our own format, shaped like RocketMQ's IndexFile: each file is a hash
//! table with chained entries, of bounded size; a full file rolls over to a
//! new one. Files live in `<root>/index/`, named by the 20-digit commit-log
//! offset of their first record.
//!
//! ```text
//! header (64 bytes): magic "MIDX" u32 | version u32 | slot count u32 |
//!     entry capacity u32 | entry count u32 | reserved u32 |
//!     begin/end store time i64 | begin/end commit-log offset i64 | reserved
//! slots: slot count x u32 (1 + newest entry of the slot, 0 = empty)
//! entries: capacity x 24 bytes: key hash u32 | commit-log offset i64 |
//!     store time i64 | previous entry of the slot u32 (1 + index, 0 = none)
//! ```
//!
//! "end commit-log offset" is where the file's coverage stops: every record
//! below it has been indexed. The hash is 32-bit FNV-1a of `topic#key`;
//! collisions are possible, so callers check the record itself.
//!
//! The whole service sits behind one mutex: writes come from the put path,
//! reads from rare admin queries.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::mapped_file::{list_offset_files, offset_file_name, MappedFile};

const MAGIC: u32 = 0x4D49_4458; // "MIDX"
const VERSION: u32 = 1;
const HEADER: usize = 64;
const SLOT: usize = 4;
const ENTRY: usize = 24;
/// Keys of one message that are indexed at most; a file holds at least
/// 128 entries, so one message never spills over two new files.
pub(crate) const MAX_KEYS_PER_MESSAGE: usize = 64;

/// 32-bit FNV-1a of `topic#key`, without building the string.
pub(crate) fn key_hash(topic: &str, key: &str) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for &b in topic.as_bytes().iter().chain(b"#").chain(key.as_bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

struct IndexFile {
    map: Arc<MappedFile>,
    slots: usize,
    capacity: usize,
}

impl IndexFile {
    fn size_for(slots: usize, capacity: usize) -> usize {
        HEADER + slots * SLOT + capacity * ENTRY
    }

    fn create(dir: &Path, begin_phys: i64, slots: usize, capacity: usize) -> io::Result<IndexFile> {
        let path = dir.join(offset_file_name(begin_phys));
        let map = Arc::new(MappedFile::create(
            &path,
            begin_phys,
            Self::size_for(slots, capacity),
        )?);
        let f = IndexFile {
            map,
            slots,
            capacity,
        };
        f.put_u32(0, MAGIC);
        f.put_u32(4, VERSION);
        f.put_u32(8, slots as u32);
        f.put_u32(12, capacity as u32);
        f.set_begin_phys(begin_phys);
        f.set_end_phys(begin_phys);
        Ok(f)
    }

    fn open(path: &Path, begin_phys: i64) -> Result<IndexFile, String> {
        let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len() as usize;
        if len < HEADER {
            return Err(format!("{len} bytes, shorter than a header"));
        }
        let mut header = [0u8; 16];
        {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            file.read_exact(&mut header).map_err(|e| e.to_string())?;
        }
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().unwrap_or([0; 4]));
        if word(0) != MAGIC || word(4) != VERSION {
            return Err("bad magic or version".into());
        }
        let (slots, capacity) = (word(8) as usize, word(12) as usize);
        if slots == 0 || capacity == 0 || Self::size_for(slots, capacity) != len {
            return Err(format!(
                "header says {slots} slots and {capacity} entries, file is {len} bytes"
            ));
        }
        let map = Arc::new(
            MappedFile::open(path, begin_phys, len)
                .map_err(|e| e.to_string())?
                .0,
        );
        let f = IndexFile {
            map,
            slots,
            capacity,
        };
        if f.count() > capacity {
            return Err(format!(
                "entry count {} over capacity {capacity}",
                f.count()
            ));
        }
        Ok(f)
    }

    // All accessors run under the index mutex, so nothing else touches the
    // mapping meanwhile.
    fn get<const N: usize>(&self, pos: usize) -> [u8; N] {
        let mut a = [0u8; N];
        // SAFETY: exclusive under the index mutex.
        a.copy_from_slice(unsafe { self.map.slice(pos, N) });
        a
    }
    fn put(&self, pos: usize, b: &[u8]) {
        // SAFETY: exclusive under the index mutex.
        unsafe { self.map.slice_mut(pos, b.len()) }.copy_from_slice(b);
    }
    fn u32_at(&self, pos: usize) -> u32 {
        u32::from_be_bytes(self.get(pos))
    }
    fn i64_at(&self, pos: usize) -> i64 {
        i64::from_be_bytes(self.get(pos))
    }
    fn put_u32(&self, pos: usize, v: u32) {
        self.put(pos, &v.to_be_bytes());
    }
    fn put_i64(&self, pos: usize, v: i64) {
        self.put(pos, &v.to_be_bytes());
    }

    fn count(&self) -> usize {
        self.u32_at(16) as usize
    }
    fn begin_ts(&self) -> i64 {
        self.i64_at(24)
    }
    fn end_ts(&self) -> i64 {
        self.i64_at(32)
    }
    fn begin_phys(&self) -> i64 {
        self.i64_at(40)
    }
    fn end_phys(&self) -> i64 {
        self.i64_at(48)
    }
    fn set_begin_phys(&self, v: i64) {
        self.put_i64(40, v)
    }
    fn set_end_phys(&self, v: i64) {
        self.put_i64(48, v)
    }
    fn is_full(&self) -> bool {
        self.count() >= self.capacity
    }

    fn slot_pos(&self, hash: u32) -> usize {
        HEADER + (hash as usize % self.slots) * SLOT
    }
    fn entry_pos(&self, i: usize) -> usize {
        HEADER + self.slots * SLOT + i * ENTRY
    }

    fn add(&self, hash: u32, phys: i64, ts: i64) {
        let count = self.count();
        debug_assert!(count < self.capacity);
        let slot = self.slot_pos(hash);
        let head = self.u32_at(slot);
        // A head that is not an earlier entry is garbage: start a new chain.
        let prev = if head as usize <= count { head } else { 0 };
        let pos = self.entry_pos(count);
        let mut e = [0u8; ENTRY];
        e[0..4].copy_from_slice(&hash.to_be_bytes());
        e[4..12].copy_from_slice(&phys.to_be_bytes());
        e[12..20].copy_from_slice(&ts.to_be_bytes());
        e[20..24].copy_from_slice(&prev.to_be_bytes());
        self.put(pos, &e);
        self.put_u32(slot, count as u32 + 1);
        if count == 0 {
            self.put_i64(24, ts);
        }
        if ts > self.end_ts() {
            self.put_i64(32, ts);
        }
        self.put_u32(16, count as u32 + 1);
    }

    /// Offsets of entries with `hash` stored within `[begin, end]`, newest
    /// first, appended to `out` until it holds `limit`.
    fn select(&self, hash: u32, begin: i64, end: i64, limit: usize, out: &mut Vec<i64>) {
        let count = self.count();
        let mut next = self.u32_at(self.slot_pos(hash)) as usize;
        while next > 0 && next <= count && out.len() < limit {
            let pos = self.entry_pos(next - 1);
            let e: [u8; ENTRY] = self.get(pos);
            let h = u32::from_be_bytes(e[0..4].try_into().unwrap_or([0; 4]));
            let phys = i64::from_be_bytes(e[4..12].try_into().unwrap_or([0; 8]));
            let ts = i64::from_be_bytes(e[12..20].try_into().unwrap_or([0; 8]));
            let prev = u32::from_be_bytes(e[20..24].try_into().unwrap_or([0; 4])) as usize;
            if h == hash && ts >= begin && ts <= end {
                out.push(phys);
            }
            // Chains only point backwards; anything else is corruption, and
            // entries older than `begin` cannot match.
            if prev >= next || ts < begin {
                break;
            }
            next = prev;
        }
    }

    /// The mapping and how much of it is in use, to flush outside the lock.
    fn flush_target(&self) -> (Arc<MappedFile>, usize) {
        (Arc::clone(&self.map), self.entry_pos(self.count()))
    }
}

/// What loading the index found.
#[derive(Debug, Default)]
pub(crate) struct IndexLoadNotes {
    /// Unusable files deleted, with why; the commit log from the smallest
    /// `begin` must be indexed again.
    pub deleted: Vec<(PathBuf, String)>,
    pub rebuild_from: Option<i64>,
}

pub(crate) struct IndexService {
    dir: PathBuf,
    slots: usize,
    capacity: usize,
    files: Vec<IndexFile>,
}

impl IndexService {
    pub fn load(
        dir: &Path,
        slots: usize,
        capacity: usize,
    ) -> io::Result<(IndexService, IndexLoadNotes)> {
        std::fs::create_dir_all(dir)?;
        let mut notes = IndexLoadNotes::default();
        let mut files = Vec::new();
        for (begin, path) in list_offset_files(dir)? {
            match IndexFile::open(&path, begin) {
                Ok(f) => files.push(f),
                Err(why) => {
                    tracing::warn!(file = %path.display(), %why, "index file unusable; deleting it and indexing its records again");
                    let _ = std::fs::remove_file(&path);
                    notes.rebuild_from =
                        Some(notes.rebuild_from.map_or(begin, |b: i64| b.min(begin)));
                    notes.deleted.push((path, why));
                }
            }
        }
        Ok((
            IndexService {
                dir: dir.to_path_buf(),
                slots,
                capacity,
                files,
            },
            notes,
        ))
    }

    /// Where indexing stopped: every record below has been indexed.
    pub fn end_offset(&self) -> Option<i64> {
        self.files.last().map(IndexFile::end_phys)
    }

    /// Commit-log offset where the oldest index file begins.
    pub fn begin_offset(&self) -> Option<i64> {
        self.files.first().map(IndexFile::begin_phys)
    }

    /// Index `key` of the record at `phys`.
    pub fn add(&mut self, topic: &str, key: &str, phys: i64, store_ts: i64) -> io::Result<()> {
        if self.files.last().is_none_or(IndexFile::is_full) {
            let f = IndexFile::create(&self.dir, phys, self.slots, self.capacity)?;
            if let Some(prev) = self.files.last() {
                prev.set_end_phys(phys);
            }
            self.files.push(f);
        }
        if let Some(f) = self.files.last() {
            f.add(key_hash(topic, key), phys, store_ts);
        }
        Ok(())
    }

    /// Every record below `end` has been indexed.
    pub fn covered_to(&mut self, end: i64) {
        if let Some(f) = self.files.last() {
            if end > f.end_phys() {
                f.set_end_phys(end);
            }
        }
    }

    /// Commit-log offsets of records that may carry `key` in `topic`, stored
    /// within `[begin_ts, end_ts]`, newest first, at most `limit`.
    pub fn candidates(
        &self,
        topic: &str,
        key: &str,
        begin_ts: i64,
        end_ts: i64,
        limit: usize,
    ) -> Vec<i64> {
        let hash = key_hash(topic, key);
        let mut out = Vec::new();
        for f in self.files.iter().rev() {
            if out.len() >= limit {
                break;
            }
            if f.count() == 0 || f.end_ts() < begin_ts || f.begin_ts() > end_ts {
                continue;
            }
            f.select(hash, begin_ts, end_ts, limit, &mut out);
        }
        out
    }

    /// Recovery: forget coverage at or past `end` (the commit log was cut
    /// there). Entries past it stay but callers check records anyway.
    pub fn truncate(&mut self, end: i64) -> io::Result<()> {
        while let Some(f) = self.files.last() {
            if f.begin_phys() >= end {
                f.map.delete()?;
                self.files.pop();
            } else {
                if f.end_phys() > end {
                    f.set_end_phys(end);
                }
                break;
            }
        }
        Ok(())
    }

    /// Drop files (not the newest) whose records are all below `commit_log_min`.
    pub fn delete_expired(&mut self, commit_log_min: i64) -> io::Result<usize> {
        let mut n = 0;
        while self.files.len() > 1 && self.files[0].end_phys() <= commit_log_min {
            let f = self.files.remove(0);
            f.map.delete()?;
            n += 1;
        }
        Ok(n)
    }

    /// What to force to disk: taken under the index mutex, flushed after
    /// releasing it so puts are not held up by msync.
    pub fn flush_targets(&self) -> Vec<(Arc<MappedFile>, usize)> {
        self.files.iter().map(IndexFile::flush_target).collect()
    }

    /// The ranges of entries written more than `keep` bytes ago, whose
    /// resident pages may be let go of (see `MappedFile::release`): whole
    /// files but the newest, and the older entries of the newest. Hash
    /// slots stay resident. Released outside the index mutex.
    pub fn cold_ranges(&self, keep: usize) -> Vec<(Arc<MappedFile>, usize, usize)> {
        let n = self.files.len();
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let first_entry = f.entry_pos(0);
            let used = f.entry_pos(f.count());
            let upto = if i + 1 < n {
                used
            } else {
                used.saturating_sub(keep)
            };
            if upto > first_entry {
                out.push((Arc::clone(&f.map), first_entry, upto - first_entry));
            }
        }
        out
    }

    #[cfg(test)]
    pub fn flush(&self) -> io::Result<()> {
        for (map, used) in self.flush_targets() {
            map.flush_range(0, used)?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_query_roll_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (mut idx, notes) = IndexService::load(dir.path(), 16, 128).unwrap();
        assert!(notes.deleted.is_empty());
        for i in 0..300i64 {
            idx.add("T", &format!("k{}", i % 10), i * 100, 1000 + i)
                .unwrap();
            idx.covered_to(i * 100 + 100);
        }
        assert_eq!(idx.file_count(), 3);
        let got = idx.candidates("T", "k3", 0, i64::MAX, 100);
        let want: Vec<i64> = (0..300)
            .rev()
            .filter(|i| i % 10 == 3)
            .map(|i| i * 100)
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            idx.candidates("T", "k3", 1000 + 250, 1000 + 280, 100),
            vec![27300, 26300, 25300]
        );
        assert_eq!(idx.candidates("T", "k3", 0, i64::MAX, 2).len(), 2);
        assert!(idx.candidates("U", "k3", 0, i64::MAX, 100).is_empty());
        idx.flush().unwrap();
        drop(idx);
        let (mut idx, _) = IndexService::load(dir.path(), 16, 128).unwrap();
        assert_eq!(idx.end_offset(), Some(30_000));
        idx.truncate(12_900).unwrap();
        assert_eq!(idx.file_count(), 2);
        assert_eq!(idx.end_offset(), Some(12_900));
        assert_eq!(idx.delete_expired(12_800).unwrap(), 1);
        assert_eq!(idx.begin_offset(), Some(12_800));
    }

    #[test]
    fn corrupt_file_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(offset_file_name(500)), b"garbage").unwrap();
        let (idx, notes) = IndexService::load(dir.path(), 16, 128).unwrap();
        assert_eq!(idx.file_count(), 0);
        assert_eq!(notes.rebuild_from, Some(500));
    }
}
