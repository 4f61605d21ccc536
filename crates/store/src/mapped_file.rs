//! A fixed-size file mapped into memory: the building block of commit-log
//! segments, consume-queue files and index files.
//!
//! Appends are a `memcpy` into the mapping (no syscall) and reads hand out
//! [`Bytes`] that point into the mapping (no copy). That needs raw pointers,
//! and so `unsafe`, kept to this file. Soundness rests on three rules that
//! the owners of mapped files follow:
//!
//! 1. **Publish, then read.** Each kind of file has a published boundary (the
//!    commit log's readable offset, a consume queue's max offset, the index
//!    under its mutex). A writer only writes at or beyond the boundary and
//!    moves it forward with a `Release` store after writing; readers load it
//!    with `Acquire` and only read below it. So no byte is ever read while it
//!    is written, and bytes below the boundary never change again.
//! 2. **One writer.** Bytes beyond the boundary are written by one thread at
//!    a time (the store's put lock, or recovery before the store is shared).
//! 3. **Never shrink a live mapping.** A mapped file is never truncated while
//!    the store runs; retention only unlinks files, a cut of the commit log
//!    renames a new file over the old one, and the old mapping (and any
//!    `Bytes` still pointing into it) stays valid and unchanged until the
//!    last reference is dropped.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

pub(crate) struct MappedFile {
    path: PathBuf,
    /// Logical offset of byte 0 (commit-log offset, or consume-queue byte offset).
    start: i64,
    size: usize,
    map: MmapRaw,
    file: File,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("start", &self.start)
            .field("size", &self.size)
            .finish()
    }
}

/// Reserve the file's blocks now, so a write through the mapping can never
/// hit a full disk (which would kill the process with SIGBUS). Filesystems
/// that cannot preallocate get a sparse file instead.
pub fn preallocate(file: &File, size: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {}
                _ => return Err(err),
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, size);
    Ok(())
}

/// Most bytes one prefaulting `madvise` or one `sync_file_range` call
/// covers, with a yield of the CPU after each. Faulting pages in costs about a millisecond of
/// kernel time per MiB, and a kernel built without forced preemption only
/// switches tasks when the call returns: one 16 MiB call held a CPU for
/// 18-25 ms, and every thread woken on that CPU (the broker's own workers
/// included) waited that long. Steps of 256 KiB hand the CPU over every
/// ~0.3 ms.
#[cfg(target_os = "linux")]
const ADVISE_CHUNK: usize = 256 * 1024;

/// Bytes per `madvise(MADV_DONTNEED)` call when releasing pages. Dropping
/// page-table entries is cheap (no page is touched), so larger steps and no
/// yields: releasing must keep up with a consumer reading 800 MB/s on a
/// busy machine.
#[cfg(target_os = "linux")]
const RELEASE_STEP: usize = 4 * 1024 * 1024;

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

impl MappedFile {
    /// Create (or reset to zeros) the file at `path` with `size` bytes.
    pub fn create(path: &Path, start: i64, size: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size as u64)?;
        preallocate(&file, size)?;
        Self::map(path, file, start, size)
    }

    /// Map an existing file. A file shorter than `size` (a torn or
    /// truncated tail) is extended with zeros; returns its length before.
    pub fn open(path: &Path, start: i64, size: usize) -> io::Result<(Self, u64)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len < size as u64 {
            file.set_len(size as u64)?;
            preallocate(&file, size)?;
        }
        Ok((Self::map(path, file, start, size)?, len))
    }

    fn map(path: &Path, file: File, start: i64, size: usize) -> io::Result<Self> {
        let map = MmapOptions::new().len(size).map_raw(&file)?;
        let f = MappedFile {
            path: path.to_path_buf(),
            start,
            size,
            map,
            file,
        };
        // Every file the store maps is written through the mapping first;
        // only a finished commit-log segment turns readahead back on.
        f.set_readahead(false);
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn start(&self) -> i64 {
        self.start
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Logical offset just past the last byte.
    pub fn end(&self) -> i64 {
        self.start + self.size as i64
    }

    /// Borrow `[pos, pos + len)`.
    ///
    /// # Safety
    /// No thread may write that range while the slice lives (rule 1 or 2 of
    /// the module doc).
    pub unsafe fn slice(&self, pos: usize, len: usize) -> &[u8] {
        assert!(
            pos <= self.size && len <= self.size - pos,
            "range outside mapped file"
        );
        // SAFETY: in bounds of a live mapping; no concurrent writer per the caller.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) }
    }

    /// Mutably borrow `[pos, pos + len)`.
    ///
    /// # Safety
    /// The caller must be the only thread touching that range, reading or
    /// writing, while the slice lives: it lies beyond the published boundary
    /// and the caller holds the writer's lock (or owns the store exclusively).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, pos: usize, len: usize) -> &mut [u8] {
        assert!(
            pos <= self.size && len <= self.size - pos,
            "range outside mapped file"
        );
        // SAFETY: in bounds; exclusive access per the caller.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(pos), len) }
    }

    /// `[pos, pos + len)` as `Bytes` pointing into the mapping; the mapping
    /// lives as long as the `Bytes` does.
    ///
    /// # Safety
    /// The range must lie below a published boundary, so it never changes
    /// again (rule 1).
    pub unsafe fn bytes(self: &Arc<Self>, pos: usize, len: usize) -> Bytes {
        assert!(
            pos <= self.size && len <= self.size - pos,
            "range outside mapped file"
        );
        Bytes::from_owner(MappedRange {
            file: Arc::clone(self),
            pos,
            len,
        })
    }

    /// Force `[pos, pos + len)` to disk (msync, which is an fdatasync of that
    /// range on Linux).
    pub fn flush_range(&self, pos: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(pos, len)
    }

    /// [`Self::flush_range`] for background flushes, which nobody waits
    /// for: writeback of a large range is started [`ADVISE_CHUNK`] at a
    /// time (`sync_file_range`), yielding the CPU in between, before the
    /// msync that waits for it. Preparing pages for writeback is CPU work
    /// (a 16 MiB flush is milliseconds of it) that would otherwise hold a
    /// CPU in one piece, like a large `madvise` (see [`ADVISE_CHUNK`]).
    pub fn flush_range_paced(&self, pos: usize, len: usize) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let end = pos.saturating_add(len).min(self.size);
            let mut at = pos;
            while end.saturating_sub(at) > ADVISE_CHUNK {
                // SAFETY: a plain syscall on our open file; it reads no
                // memory of ours.
                let rc = unsafe {
                    libc::sync_file_range(
                        self.file.as_raw_fd(),
                        at as libc::off64_t,
                        ADVISE_CHUNK as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    )
                };
                if rc != 0 {
                    // Only a head start: the msync below does it all.
                    break;
                }
                std::thread::yield_now();
                at += ADVISE_CHUNK;
            }
        }
        self.flush_range(pos, len)
    }

    /// Let go of the memory pages of `[pos, pos + len)` (shrunk to whole
    /// pages): they leave this process's resident set, and the next access
    /// maps them again from the page cache or the file. The contents do not
    /// change (the mapping is shared and file-backed: dirty pages stay in
    /// the page cache), so this is safe whoever holds slices into the
    /// range; it only costs a minor fault on the next touch. Use it on
    /// ranges nobody is writing, behind the flushed offset.
    pub fn release(&self, pos: usize, len: usize) {
        // Only whole pages inside the range: a page partly outside may be
        // in use.
        #[cfg(target_os = "linux")]
        self.advise(
            pos.div_ceil(page_size()),
            pos.saturating_add(len) / page_size(),
            &[libc::MADV_DONTNEED],
            Some(RELEASE_STEP),
            false,
        );
        #[cfg(not(target_os = "linux"))]
        let _ = (pos, len);
    }

    /// Fault in the pages of `[pos, pos + len)` writable now, without
    /// touching their contents, so the writer that later appends there
    /// does not stop in a page fault. Safe whoever reads or writes the
    /// range: no byte changes. Best effort: kernels without
    /// `MADV_POPULATE_WRITE` (before 5.14) just leave the faults to the
    /// writer.
    ///
    /// Each chunk is first read into the page cache (`MADV_WILLNEED`,
    /// exactly that chunk) and then mapped writable, so the work comes in
    /// pieces of [`ADVISE_CHUNK`] even where readahead is on (see
    /// [`Self::set_readahead`]).
    pub fn prefault(&self, pos: usize, len: usize) {
        // Every page the range touches.
        #[cfg(target_os = "linux")]
        self.advise(
            pos / page_size(),
            pos.saturating_add(len).div_ceil(page_size()),
            &[libc::MADV_WILLNEED, libc::MADV_POPULATE_WRITE],
            Some(ADVISE_CHUNK),
            true,
        );
        #[cfg(not(target_os = "linux"))]
        let _ = (pos, len);
    }

    /// Turn the kernel's readahead for faults on this mapping off
    /// (`MADV_RANDOM`: a fault maps the one page it needs) or back on
    /// (`MADV_NORMAL`). Off from the start, for files still being written:
    /// on a preallocated file a fault past the written part would zero-fill
    /// `read_ahead_kb` of it (8 MiB here, a whole consume-queue file) in one
    /// go without yielding the CPU, and every such readahead marks a page
    /// that starts the next one when touched. On for a finished commit-log
    /// segment, which is only read, in order.
    pub fn set_readahead(&self, on: bool) {
        #[cfg(target_os = "linux")]
        self.advise(
            0,
            self.size / page_size(),
            &[if on {
                libc::MADV_NORMAL
            } else {
                libc::MADV_RANDOM
            }],
            None,
            false,
        );
        #[cfg(not(target_os = "linux"))]
        let _ = on;
    }

    /// Apply `advices`, in order, to pages `[first, end)` of the mapping
    /// (clamped to it), `step` bytes per call (all at once for `None`),
    /// yielding the CPU between steps if `pace`. Best effort: a failure is
    /// logged at debug level and ends the call.
    #[cfg(target_os = "linux")]
    fn advise(
        &self,
        first: usize,
        end: usize,
        advices: &[libc::c_int],
        step: Option<usize>,
        pace: bool,
    ) {
        let page = page_size();
        let end = end.min(self.size / page);
        let step = step.map_or(end.saturating_sub(first), |b| b / page).max(1);
        let mut at = first;
        while at < end {
            let n = step.min(end - at);
            for &advice in advices {
                // SAFETY: a page-aligned range inside our live mapping.
                // None of the advices used changes contents: for a shared
                // file mapping MADV_DONTNEED only drops page-table entries
                // (the data stays in the page cache and the file),
                // MADV_WILLNEED reads into the page cache,
                // MADV_POPULATE_WRITE fills page-table entries in, and
                // MADV_RANDOM / MADV_NORMAL are hints.
                let rc = unsafe {
                    libc::madvise(
                        self.map.as_mut_ptr().add(at * page).cast(),
                        n * page,
                        advice,
                    )
                };
                if rc != 0 {
                    tracing::debug!(advice, error = %io::Error::last_os_error(), "madvise failed");
                    return;
                }
            }
            at += n;
            if pace && at < end {
                // Let a thread that was woken on this CPU run now rather
                // than at the end of this one's time slice.
                std::thread::yield_now();
            }
        }
    }

    /// Position just past the last non-zero byte at or after `from`, or
    /// `from` if all of it is zero. Only for recovery (exclusive access).
    pub fn data_end_from(&self, from: usize) -> usize {
        self.data_end_in(from, self.size)
    }

    /// Like [`Self::data_end_from`], looking only at `[from, to)`.
    pub fn data_end_in(&self, from: usize, to: usize) -> usize {
        let to = to.min(self.size);
        if to <= from {
            return from;
        }
        // SAFETY: called during recovery, before any other thread can write.
        let tail = unsafe { self.slice(from, to - from) };
        const CHUNK: usize = 64 * 1024;
        let mut end = tail.len();
        while end > 0 {
            let begin = end.saturating_sub(CHUNK);
            let chunk = &tail[begin..end];
            if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
                return from + begin + i + 1;
            }
            end = begin;
        }
        from
    }

    /// Make everything from `from` to the end of the file read as zeros
    /// (recovery only). Punching a hole costs a metadata update instead of
    /// touching every page of a large segment; where the filesystem cannot,
    /// the non-zero bytes are overwritten.
    pub fn clear_from(&self, from: usize) -> io::Result<()> {
        if from >= self.size {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            let fd = self.file.as_raw_fd();
            let (off, len) = (from as libc::off_t, (self.size - from) as libc::off_t);
            // SAFETY: plain syscalls on a descriptor we own; the mapping sees
            // the punched range as zeros.
            let rc = unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off,
                    len,
                )
            };
            if rc == 0 {
                // Reserve the blocks again (see `preallocate`).
                // SAFETY: as above.
                let _ = unsafe { libc::fallocate(fd, 0, off, len) };
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if !matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
            ) {
                return Err(err);
            }
        }
        let end = self.data_end_from(from);
        self.zero_range(from, end)
    }

    /// Zero `[from, to)` and force it to disk. Only for recovery.
    pub fn zero_range(&self, from: usize, to: usize) -> io::Result<()> {
        if to <= from {
            return Ok(());
        }
        // SAFETY: recovery owns the store exclusively.
        unsafe { self.slice_mut(from, to - from) }.fill(0);
        self.flush_range(from, to - from)
    }

    /// Rename the file to `to`, replacing any file there (whose mappings
    /// stay valid, rule 3). Before the file is shared.
    pub fn rename_to(&mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Unlink the file. Readers holding the mapping keep it until they drop it.
    pub fn delete(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Last modification time of the file, ms since the epoch.
    pub fn modified_ms(&self) -> Option<i64> {
        let t = std::fs::metadata(&self.path).ok()?.modified().ok()?;
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64)
    }
}

// SAFETY: the mapping is plain memory shared between threads; every access
// goes through the unsafe accessors above, whose contracts rule out data
// races (module doc, rules 1 and 2).
unsafe impl Send for MappedFile {}
// SAFETY: as above.
unsafe impl Sync for MappedFile {}

/// The owner behind a `Bytes` that points into a mapping.
struct MappedRange {
    file: Arc<MappedFile>,
    pos: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: created by `MappedFile::bytes`, whose caller guaranteed the
        // range is published and immutable; `file` keeps the mapping alive.
        unsafe { self.file.slice(self.pos, self.len) }
    }
}

/// 20-digit zero-padded decimal file name, RocketMQ's naming of segment and
/// consume-queue files by their start offset.
pub(crate) fn offset_file_name(offset: i64) -> String {
    format!("{offset:020}")
}

/// The start offset a file name encodes, if it is one of ours.
pub(crate) fn parse_offset_file_name(name: &str) -> Option<i64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// Files in `dir` named by a 20-digit offset, sorted by offset. Other files
/// are ignored.
pub(crate) fn list_offset_files(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(off) = entry.file_name().to_str().and_then(parse_offset_file_name) {
            out.push((off, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(offset_file_name(4096));
        let f = Arc::new(MappedFile::create(&path, 4096, 4096).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        unsafe { f.slice_mut(10, 3) }.copy_from_slice(b"abc");
        let b = unsafe { f.bytes(10, 3) };
        assert_eq!(&b[..], b"abc");
        f.flush_range(10, 3).unwrap();
        assert_eq!(f.data_end_from(0), 13);
        assert_eq!(f.data_end_from(13), 13);
        f.delete().unwrap();
        // The bytes outlive the file's name.
        drop(f);
        assert_eq!(&b[..], b"abc");
        let (g, old_len) = {
            std::fs::write(&path, b"xy").unwrap();
            MappedFile::open(&path, 4096, 4096).unwrap()
        };
        assert_eq!(old_len, 2);
        assert_eq!(unsafe { g.slice(0, 3) }, b"xy\0");
        g.zero_range(0, 2).unwrap();
        assert_eq!(g.data_end_from(0), 0);
    }

    /// Released or prefaulted pages read back unchanged, flushed or not,
    /// through the mapping, through `Bytes` taken before, and from the file.
    #[test]
    fn released_prefaulted_and_readahead_hinted_pages_keep_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 1 << 20;
        let f = Arc::new(MappedFile::create(&path, 0, size).unwrap());
        let pattern: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        unsafe { f.slice_mut(0, size) }.copy_from_slice(&pattern);
        f.flush_range(0, size / 2).unwrap(); // the second half stays dirty
        let held = unsafe { f.bytes(100, 300_000) };
        f.release(0, size);
        assert_eq!(unsafe { f.slice(0, size) }, &pattern[..]);
        assert_eq!(&held[..], &pattern[100..300_100]);
        f.flush_range(0, size).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), pattern);
        // Unaligned ranges only release the whole pages inside them.
        f.release(3, 5000);
        assert_eq!(unsafe { f.slice(0, 8192) }, &pattern[..8192]);
        // Prefaulting changes nothing either, over data or past the end.
        f.prefault(1000, size);
        f.set_readahead(true);
        assert_eq!(unsafe { f.slice(0, size) }, &pattern[..]);
        assert_eq!(std::fs::read(&path).unwrap(), pattern);
    }

    #[test]
    fn file_names() {
        assert_eq!(offset_file_name(1073741824), "00000000001073741824");
        assert_eq!(
            parse_offset_file_name("00000000001073741824"),
            Some(1073741824)
        );
        assert_eq!(parse_offset_file_name("0000000000107374182x"), None);
        assert_eq!(parse_offset_file_name("123"), None);
    }
}
