//! Recovery on open: find where the commit log's valid records end, cut
//! anything after that, and make consume queues and index agree with it.
//!
//! 1. Load the checkpoint (if usable), the commit-log segments, every
//!    consume queue and the index.
//! 2. Decide what cannot be trusted: derived entries for records after the
//!    checkpoint's `derived_flushed`; a whole queue that came back shorter
//!    than the checkpoint says or whose files are malformed (rebuilt from
//!    the oldest record); index files that are unreadable or missing.
//! 3. Scan the commit log record by record from the earliest point needed:
//!    at most the start of the last `recover_segments` segments, or the
//!    segment holding the checkpoint's flushed offset if that is earlier.
//!    Each record is validated: magic, lengths within the record and the
//!    segment, body CRC, physical-offset field equal to its position, and a
//!    non-zero last byte of properties (or of the topic, when there are no
//!    properties): the put path guarantees one, so a zero-filled torn tail
//!    is caught even where lengths and body CRC survive. The first
//!    invalid record in that verified region ends the log: the rest of its
//!    segment is zeroed and later segments are deleted. (A bad record in an
//!    older segment, read only to rebuild a queue, is reported and skipped
//!    to the next segment instead: cutting there would throw away data that
//!    was long acknowledged.) Valid records are dispatched again to the
//!    queues and the index where needed; writing an entry that is already
//!    there is harmless.
//! 4. Drop queue and index entries at or past the new end, check each
//!    queue's first and last entries against the records they point at
//!    (rebuilding a queue that fails), and fix each queue's minimum offset.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use meridian_protocol::message::{parse_record, RecordView, BLANK_MAGIC_CODE};

use crate::checkpoint::Checkpoint;
use crate::commit_log::{Appender, CommitLog, END_FILE_MIN_BLANK_LENGTH};
use crate::config::StoreConfig;
use crate::consume_queue::{ConsumeQueue, CqEntry};
use crate::dispatch::{goes_to_index, goes_to_queue, index_keys, tags_code};
use crate::error::StoreError;
use crate::index::IndexService;
use crate::mapped_file::MappedFile;
use crate::store::QueueMap;

/// What recovery found and did. `Display` gives one line for the log.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The commit log now holds `[commit_log_min_offset, commit_log_max_offset)`.
    pub commit_log_min_offset: i64,
    pub commit_log_max_offset: i64,
    /// Where the record-by-record scan started.
    pub scanned_from: i64,
    pub records_scanned: u64,
    /// Bytes of (invalid) data cut off the end of the commit log.
    pub truncated_bytes: u64,
    /// Where the commit log was cut, if it was.
    pub truncated_at: Option<i64>,
    /// Why it was cut.
    pub reason: Option<String>,
    /// Segment files deleted because they lay after the cut or after a gap.
    pub deleted_segments: Vec<PathBuf>,
    /// Corrupt records found in older segments and skipped: (offset, why).
    pub skipped_corrupt: Vec<(i64, String)>,
    /// The last run ended with a clean shutdown.
    pub clean_shutdown: bool,
    /// A usable checkpoint was found.
    pub checkpoint_used: bool,
    /// Consume queues after recovery.
    pub queues: usize,
    /// Queues rebuilt from scratch, and why.
    pub rebuilt_queues: Vec<(String, i32, String)>,
    /// Consume-queue entries written (new or corrected).
    pub rebuilt_queue_entries: u64,
    /// Consume-queue entries dropped because their records are gone.
    pub dropped_queue_entries: u64,
    /// Index entries written.
    pub rebuilt_index_entries: u64,
    /// Anything else worth an operator's attention.
    pub notes: Vec<String>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store recovered: commit log [{}, {}) after a {} shutdown, {} records checked from offset {}",
            self.commit_log_min_offset,
            self.commit_log_max_offset,
            if self.clean_shutdown { "clean" } else { "unclean" },
            self.records_scanned,
            self.scanned_from,
        )?;
        if let Some(at) = self.truncated_at {
            write!(
                f,
                "; CUT {} bytes at offset {at} ({})",
                self.truncated_bytes,
                self.reason.as_deref().unwrap_or("unknown reason")
            )?;
        }
        if !self.deleted_segments.is_empty() {
            write!(
                f,
                "; deleted {} segment(s) after the end",
                self.deleted_segments.len()
            )?;
        }
        if !self.skipped_corrupt.is_empty() {
            write!(
                f,
                "; {} corrupt record(s) in old segments skipped (first at {}: {})",
                self.skipped_corrupt.len(),
                self.skipped_corrupt[0].0,
                self.skipped_corrupt[0].1
            )?;
        }
        write!(
            f,
            "; {} queue(s), {} entries re-derived, {} dropped, {} index entries re-derived",
            self.queues,
            self.rebuilt_queue_entries,
            self.dropped_queue_entries,
            self.rebuilt_index_entries
        )?;
        if !self.rebuilt_queues.is_empty() {
            let (t, q, why) = &self.rebuilt_queues[0];
            write!(
                f,
                "; {} queue(s) rebuilt from the commit log (first {t}/{q}: {why})",
                self.rebuilt_queues.len()
            )?;
        }
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// How far past an invalid record recovery looks to measure what it cuts.
const CUT_MEASURE_WINDOW: usize = 16 * 1024 * 1024;
/// Bytes after a clean end of data that are checked for leftovers.
const CLEAN_END_WINDOW: usize = 1024 * 1024;

/// Everything `MessageStore::open` needs, recovered.
pub(crate) struct Recovered {
    pub commit_log: CommitLog,
    pub appender: Appender,
    pub queues: QueueMap,
    pub index: IndexService,
    pub report: RecoveryReport,
}

/// How one position of the commit log reads.
enum Slot<'a> {
    Record(RecordView<'a>),
    /// A blank end-of-segment marker: the log goes on in the next segment.
    Blank,
    /// Zeros where a record would start: the end of the data.
    End,
    Invalid(String),
}

fn classify<'a>(seg: &'a MappedFile, pos: usize) -> Slot<'a> {
    let remaining = seg.size() - pos;
    if remaining < END_FILE_MIN_BLANK_LENGTH {
        return Slot::Blank;
    }
    // SAFETY: recovery owns the store; nothing else touches the mapping.
    let all = unsafe { seg.slice(pos, remaining) };
    let total = i32::from_be_bytes([all[0], all[1], all[2], all[3]]);
    let magic = i32::from_be_bytes([all[4], all[5], all[6], all[7]]);
    let offset = seg.start() + pos as i64;
    if total == 0 && magic == 0 {
        return Slot::End;
    }
    if magic == BLANK_MAGIC_CODE {
        return if total as i64 == remaining as i64 {
            Slot::Blank
        } else {
            Slot::Invalid(format!(
                "blank marker claims {total} bytes but {remaining} remain in the segment"
            ))
        };
    }
    if total <= 0 || total as usize + END_FILE_MIN_BLANK_LENGTH > remaining {
        return Slot::Invalid(format!(
            "record size {total} does not fit in the {remaining} bytes left in its segment"
        ));
    }
    match check_record(&all[..total as usize], offset) {
        Ok(view) => Slot::Record(view),
        Err(why) => Slot::Invalid(why),
    }
}

/// Check the record that is exactly `bytes`, found at commit-log `offset`:
/// it parses (lengths, body CRC), its physical-offset field is `offset`,
/// it does not end in a zero byte, and its topic is UTF-8. Recovery and
/// replication accept a record by the same rules.
pub(crate) fn check_record(bytes: &[u8], offset: i64) -> Result<RecordView<'_>, String> {
    let view = parse_record(bytes).map_err(|e| e.to_string())?;
    if view.commit_log_offset != offset {
        return Err(format!(
            "physical-offset field says {} but the record is at {offset}",
            view.commit_log_offset
        ));
    }
    // The put path guarantees the last byte of the properties (or, with no
    // properties, of the topic) is not zero; a zero-filled torn tail breaks
    // that even when the lengths and body CRC survive.
    let last = if view.properties.is_empty() {
        view.topic.last()
    } else {
        view.properties.last()
    };
    if last.is_none_or(|&b| b == 0) {
        return Err("record ends in zero bytes: a torn write".into());
    }
    if view.topic_str().is_none() {
        return Err("topic is not UTF-8".into());
    }
    Ok(view)
}

/// Which records the scan re-derives entries for.
struct Dispatch<'a> {
    /// Queue entries for every record at or after this offset...
    queue_from: i64,
    /// ...and for all records of these queues.
    rebuild: &'a HashMap<String, HashSet<i32>>,
    /// Index entries for records at or after this offset.
    index_from: i64,
}

struct Scan {
    /// Where valid records end (`None`: they run to the last segment's end).
    end: Option<i64>,
    cut_reason: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn scan(
    segs: &[Arc<MappedFile>],
    start: i64,
    verified_from: i64,
    dispatch: &Dispatch<'_>,
    queues: &mut QueueMap,
    index: &mut IndexService,
    config: &StoreConfig,
    delay_levels: &[u64],
    report: &mut RecoveryReport,
) -> Result<Scan, StoreError> {
    let io_err = |e: io::Error| StoreError::io(&config.root_dir, e);
    let first = segs
        .iter()
        .position(|s| s.end() > start)
        .unwrap_or(segs.len());
    for (si, seg) in segs.iter().enumerate().skip(first) {
        let mut pos = if si == first {
            (start - seg.start()).max(0) as usize
        } else {
            0
        };
        loop {
            let offset = seg.start() + pos as i64;
            match classify(seg, pos) {
                Slot::Record(view) => {
                    report.records_scanned += 1;
                    redispatch(
                        &view,
                        offset,
                        dispatch,
                        queues,
                        index,
                        config,
                        delay_levels,
                        report,
                    )
                    .map_err(io_err)?;
                    pos += view.total_size as usize;
                }
                Slot::Blank => break,
                Slot::End => {
                    return Ok(Scan {
                        end: Some(offset),
                        cut_reason: None,
                    })
                }
                Slot::Invalid(why) => {
                    if offset < verified_from {
                        tracing::warn!(offset, %why, "corrupt record in an old commit-log segment; skipping the rest of that segment");
                        report.skipped_corrupt.push((offset, why));
                        break;
                    }
                    return Ok(Scan {
                        end: Some(offset),
                        cut_reason: Some(why),
                    });
                }
            }
        }
    }
    Ok(Scan {
        end: None,
        cut_reason: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn redispatch(
    view: &RecordView<'_>,
    offset: i64,
    dispatch: &Dispatch<'_>,
    queues: &mut QueueMap,
    index: &mut IndexService,
    config: &StoreConfig,
    delay_levels: &[u64],
    report: &mut RecoveryReport,
) -> io::Result<()> {
    let topic = view.topic_str().unwrap_or("");
    let props = view.properties_str().unwrap_or("");
    let size = view.total_size;
    if goes_to_queue(view.sys_flag) && view.queue_offset >= 0 {
        let wanted = offset >= dispatch.queue_from
            || dispatch
                .rebuild
                .get(topic)
                .is_some_and(|qs| qs.contains(&view.queue_id));
        if wanted {
            let cq = queues
                .entry(topic.to_string())
                .or_default()
                .entry(view.queue_id)
                .or_insert_with(|| {
                    Arc::new(ConsumeQueue::new(
                        &config.consume_queue_dir(),
                        topic,
                        view.queue_id,
                        config.consume_queue_entries_per_file,
                    ))
                });
            let entry = CqEntry {
                offset,
                size,
                tags_code: tags_code(topic, props, view.store_timestamp, delay_levels),
            };
            if cq.slot(view.queue_offset) != Some(entry) {
                cq.put(view.queue_offset, entry)?;
                report.rebuilt_queue_entries += 1;
            } else if view.queue_offset >= cq.next_offset() {
                cq.put(view.queue_offset, entry)?;
            }
        }
    }
    if offset >= dispatch.index_from {
        if goes_to_index(view.sys_flag) {
            for key in index_keys(props) {
                index.add(topic, key, offset, view.store_timestamp)?;
                report.rebuilt_index_entries += 1;
            }
        }
        index.covered_to(offset + size as i64);
    }
    Ok(())
}

/// Whether the entry at `q` points at the record of that topic, queue and
/// queue offset.
fn entry_matches(log: &CommitLog, cq: &ConsumeQueue, q: i64) -> bool {
    let Some(e) = cq.entry(q) else {
        return false;
    };
    if !e.is_valid() {
        return false;
    }
    log.with_slice(e.offset, e.size as usize, |bytes| {
        match parse_record(bytes) {
            Ok(v) => {
                v.topic == cq.topic().as_bytes()
                    && v.queue_id == cq.queue_id()
                    && v.queue_offset == q
                    && v.total_size == e.size
            }
            Err(_) => false,
        }
    })
    .unwrap_or(false)
}

fn load_queues(
    config: &StoreConfig,
    report: &mut RecoveryReport,
    rebuild: &mut HashMap<String, HashSet<i32>>,
) -> Result<QueueMap, StoreError> {
    let root = config.consume_queue_dir();
    std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
    let mut queues = QueueMap::new();
    let topics = std::fs::read_dir(&root).map_err(|e| StoreError::io(&root, e))?;
    for topic_dir in topics {
        let topic_dir = topic_dir.map_err(|e| StoreError::io(&root, e))?;
        let Some(topic) = topic_dir.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !topic_dir.path().is_dir() {
            continue;
        }
        let qdirs =
            std::fs::read_dir(topic_dir.path()).map_err(|e| StoreError::io(topic_dir.path(), e))?;
        for qdir in qdirs {
            let qdir = qdir.map_err(|e| StoreError::io(topic_dir.path(), e))?;
            let Some(queue_id) = qdir
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let (cq, notes) = ConsumeQueue::load(
                &root,
                &topic,
                queue_id,
                config.consume_queue_entries_per_file,
            )
            .map_err(|e| StoreError::io(qdir.path(), e))?;
            if let Some(why) = notes.corrupt {
                tracing::warn!(topic, queue_id, %why, "consume queue unusable; rebuilding it from the commit log");
                cq.wipe().map_err(|e| StoreError::io(qdir.path(), e))?;
                rebuild.entry(topic.clone()).or_default().insert(queue_id);
                report.rebuilt_queues.push((topic.clone(), queue_id, why));
            }
            queues
                .entry(topic.clone())
                .or_default()
                .insert(queue_id, Arc::new(cq));
        }
    }
    Ok(queues)
}

fn data_in(seg: &MappedFile) -> u64 {
    seg.data_end_from(0) as u64
}

pub(crate) fn recover(config: &StoreConfig, delay_levels: &[u64]) -> Result<Recovered, StoreError> {
    let mut report = RecoveryReport::default();
    let checkpoint = match Checkpoint::load(&config.checkpoint_path()) {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(%why, "checkpoint unusable; re-deriving everything from the commit log");
            report.notes.push(format!("checkpoint unusable ({why})"));
            None
        }
    };
    report.checkpoint_used = checkpoint.is_some();
    report.clean_shutdown = checkpoint.as_ref().is_some_and(|c| c.clean_shutdown);

    // The commit log's files.
    let (log, notes) = CommitLog::load(
        &config.commit_log_dir,
        config.mapped_file_size_commit_log as usize,
    )?;
    for orphan in &notes.orphans {
        tracing::warn!(file = %orphan.display(), "commit-log segment after a gap in the offsets; deleting it");
        std::fs::remove_file(orphan).map_err(|e| StoreError::io(orphan, e))?;
        report.deleted_segments.push(orphan.clone());
    }
    if !notes.orphans.is_empty() {
        report.notes.push(format!(
            "{} segment(s) after a gap in the commit log deleted",
            notes.orphans.len()
        ));
    }
    if let Some((path, len)) = &notes.short_last {
        report.notes.push(format!(
            "last segment {} was {len} bytes, shorter than a segment; extended with zeros",
            path.display()
        ));
    }
    let segs = log.segments();
    let min = log.min_offset();

    // Derived files.
    let mut rebuild: HashMap<String, HashSet<i32>> = HashMap::new();
    let mut queues = load_queues(config, &mut report, &mut rebuild)?;
    if let Some(cp) = &checkpoint {
        for mark in &cp.queues {
            let cq = queues
                .entry(mark.topic.clone())
                .or_default()
                .entry(mark.queue_id)
                .or_insert_with(|| {
                    Arc::new(ConsumeQueue::new(
                        &config.consume_queue_dir(),
                        &mark.topic,
                        mark.queue_id,
                        config.consume_queue_entries_per_file,
                    ))
                });
            let already = rebuild
                .get(&mark.topic)
                .is_some_and(|q| q.contains(&mark.queue_id));
            if !already && cq.max_offset() < mark.max_offset {
                let why = format!(
                    "holds entries up to {} but the checkpoint recorded {}",
                    cq.max_offset(),
                    mark.max_offset
                );
                tracing::warn!(topic = %mark.topic, queue_id = mark.queue_id, %why, "consume queue lost entries; rebuilding it from the commit log");
                cq.wipe().map_err(|e| StoreError::io(&config.root_dir, e))?;
                rebuild
                    .entry(mark.topic.clone())
                    .or_default()
                    .insert(mark.queue_id);
                report
                    .rebuilt_queues
                    .push((mark.topic.clone(), mark.queue_id, why));
            }
        }
    }
    let index_dir = config.index_dir();
    let (mut index, index_notes) =
        IndexService::load(&index_dir, config.max_hash_slot_num, config.max_index_num)
            .map_err(|e| StoreError::io(&index_dir, e))?;
    for (path, why) in &index_notes.deleted {
        report
            .notes
            .push(format!("index file {} unusable ({why})", path.display()));
    }

    // Where to start.
    let derived = checkpoint
        .as_ref()
        .map_or(min, |c| c.derived_flushed)
        .max(min);
    let mut verified_from = segs
        .get(segs.len().saturating_sub(config.recover_segments.max(1)))
        .map_or(min, |s| s.start());
    if let Some(cp) = &checkpoint {
        if let Some(seg) = segs
            .iter()
            .find(|s| s.start() <= cp.commit_log_flushed && cp.commit_log_flushed < s.end())
        {
            verified_from = verified_from.min(seg.start());
        }
    }
    let queue_from = derived;
    // The index may have been forced longer ago than the queues; what its
    // header claims past that may be only partly on disk.
    let index_durable = checkpoint
        .as_ref()
        .and_then(|c| c.index_flushed)
        .map_or(derived, |i| i.max(min).min(derived));
    let mut index_from = index
        .end_offset()
        .map_or(index_durable, |e| e.min(index_durable));
    if let Some(b) = index_notes.rebuild_from {
        index_from = index_from.min(b);
    }
    if let Some(begin) = checkpoint.as_ref().and_then(|c| c.index_begin) {
        if index.begin_offset().is_none_or(|b| b > begin) {
            report.notes.push("index files missing; re-indexing".into());
            index_from = index_from.min(begin);
        }
    }
    let index_from = index_from.max(min);
    let rebuild_from = if rebuild.is_empty() { i64::MAX } else { min };
    let start = verified_from
        .min(queue_from)
        .min(index_from)
        .min(rebuild_from)
        .max(min);
    // Start at a segment boundary, where a record surely begins, rather
    // than trust an offset read from a file.
    let start = segs
        .iter()
        .find(|s| s.start() <= start && start < s.end())
        .map_or(start, |s| s.start());
    report.scanned_from = start;

    let dispatch = Dispatch {
        queue_from,
        rebuild: &rebuild,
        index_from,
    };
    let result = scan(
        &segs,
        start,
        verified_from,
        &dispatch,
        &mut queues,
        &mut index,
        config,
        delay_levels,
        &mut report,
    )?;
    let end = result
        .end
        .unwrap_or_else(|| segs.last().map_or(min, |s| s.end()));

    // Cut the commit log at `end`.
    let io_err = |e: io::Error| StoreError::io(&config.commit_log_dir, e);
    let keep = segs
        .iter()
        .position(|s| s.end() > end)
        .unwrap_or(segs.len());
    let mut cut_bytes = 0u64;
    if let Some(seg) = segs.get(keep) {
        if seg.start() <= end {
            let pos = (end - seg.start()) as usize;
            // Measure what is cut: all of it after an invalid record (rare);
            // after a clean end only a window, since the rest of a large
            // segment is normally zeros and reading it all would cost a
            // full pass over the file at every start.
            let look_to = if result.cut_reason.is_some() {
                // Bounded too: the report need not cost a pass over a
                // whole 1 GiB segment; what lies beyond is cleared anyway.
                (pos + CUT_MEASURE_WINDOW).min(seg.size())
            } else {
                pos + CLEAN_END_WINDOW
            };
            cut_bytes += (seg.data_end_in(pos, look_to) - pos) as u64;
            // Stale bytes past the end must go: a later crash could otherwise
            // find an old record exactly where a scan lands.
            seg.clear_from(pos).map_err(io_err)?;
        }
    }
    // Segments wholly past the end go; an empty one that starts exactly at
    // the end may stay as the next segment to write.
    let first_gone = segs
        .iter()
        .position(|s| s.start() > end)
        .unwrap_or(segs.len());
    for seg in &segs[first_gone..] {
        cut_bytes += data_in(seg);
        report.deleted_segments.push(seg.path().to_path_buf());
    }
    log.remove_from(first_gone).map_err(io_err)?;
    if result.cut_reason.is_some() || cut_bytes > 0 {
        report.truncated_at = Some(end);
        report.truncated_bytes = cut_bytes;
        report.reason = Some(
            result
                .cut_reason
                .unwrap_or_else(|| "unreadable bytes after the last valid record".into()),
        );
        tracing::warn!(
            offset = end,
            bytes = cut_bytes,
            reason = report.reason.as_deref().unwrap_or(""),
            "commit log cut at the first invalid record"
        );
    }
    let appender = log.recovered(end);
    // Valid records may still be only in the page cache: make them durable
    // before anything new is acknowledged after them.
    let durable = checkpoint
        .as_ref()
        .map_or(min, |c| c.commit_log_flushed)
        .clamp(min, end);
    log.set_flushed_for_recovery(durable);
    log.flush(false).map_err(io_err)?;

    // Queues: drop entries past the end, check the rest, fix the minimum.
    let mut second_pass: HashMap<String, HashSet<i32>> = HashMap::new();
    for (topic, qs) in &queues {
        for (qid, cq) in qs {
            let dropped = trim_queue(cq, end).map_err(io_err)?;
            report.dropped_queue_entries += dropped;
            cq.delete_expired(min).map_err(io_err)?;
            let (lo, hi) = (cq.min_offset(), cq.max_offset());
            if hi > lo && !(entry_matches(&log, cq, hi - 1) && entry_matches(&log, cq, lo)) {
                let why = "entries do not match the records they point at".to_string();
                tracing::warn!(
                    topic,
                    queue_id = qid,
                    "consume queue corrupt; rebuilding it from the commit log"
                );
                cq.wipe().map_err(io_err)?;
                second_pass.entry(topic.clone()).or_default().insert(*qid);
                report.rebuilt_queues.push((topic.clone(), *qid, why));
            }
        }
    }
    if !second_pass.is_empty() {
        let dispatch = Dispatch {
            queue_from: i64::MAX,
            rebuild: &second_pass,
            index_from: i64::MAX,
        };
        scan(
            &segs[..first_gone.min(segs.len())],
            min,
            i64::MIN,
            &dispatch,
            &mut queues,
            &mut index,
            config,
            delay_levels,
            &mut report,
        )?;
        for (topic, ids) in &second_pass {
            for qid in ids {
                if let Some(cq) = queues.get(topic).and_then(|qs| qs.get(qid)) {
                    trim_queue(cq, end).map_err(io_err)?;
                    cq.delete_expired(min).map_err(io_err)?;
                }
            }
        }
    }
    // A queue rebuilt because its files were lost, whose records retention
    // has since removed, keeps the offsets the checkpoint recorded, so
    // consumers' positions stay valid. (Not after a cut: then the
    // checkpoint may count records that are gone.)
    let marks = checkpoint
        .as_ref()
        .filter(|_| report.truncated_at.is_none());
    for mark in marks.iter().flat_map(|cp| &cp.queues) {
        let rebuilt = rebuild
            .get(&mark.topic)
            .is_some_and(|q| q.contains(&mark.queue_id));
        if let Some(cq) = queues
            .get(&mark.topic)
            .and_then(|qs| qs.get(&mark.queue_id))
        {
            if rebuilt && cq.max_offset() == 0 && cq.file_count() == 0 && mark.max_offset > 0 {
                cq.set_range(mark.max_offset, mark.max_offset);
            }
        }
    }
    // Queues left with nothing at all (a wiped queue whose records are all
    // gone) are dropped.
    for qs in queues.values_mut() {
        qs.retain(|_, cq| cq.max_offset() > 0 || cq.file_count() > 0);
    }
    queues.retain(|_, qs| !qs.is_empty());
    index
        .truncate(end)
        .map_err(|e| StoreError::io(&index_dir, e))?;

    report.commit_log_min_offset = log.min_offset();
    report.commit_log_max_offset = end;
    report.queues = queues.values().map(HashMap::len).sum();
    debug_assert!(queues
        .values()
        .flat_map(|qs| qs.values())
        .all(|cq| cq.min_offset() <= cq.max_offset()));
    Ok(Recovered {
        commit_log: log,
        appender,
        queues,
        index,
        report,
    })
}

/// Publish what recovery wrote to a queue, minus entries whose records lie
/// at or past `end` (and empty slots at the tail). Returns entries dropped.
fn trim_queue(cq: &ConsumeQueue, end: i64) -> io::Result<u64> {
    let written = cq.next_offset();
    let lo = cq.min_offset();
    let mut keep = written;
    while keep > lo {
        match cq.slot(keep - 1) {
            Some(e) if e.is_valid() && e.end() <= end => break,
            _ => keep -= 1,
        }
    }
    cq.set_range(lo, written);
    if keep < written {
        cq.truncate_to(keep)
    } else {
        Ok(0)
    }
}
