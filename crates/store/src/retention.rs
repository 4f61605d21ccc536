//! Retention: delete commit-log segments older than
//! `file_reserved_time_hours` at the `delete_when` hour, or at once, oldest
//! first and whatever their age, when the disk is fuller than
//! `disk_max_used_space_ratio`; then the consume-queue and index files
//! wholly below the new minimum offset. Above `disk_full_ratio` puts are
//! refused (`PutError::DiskFull`) rather than risk the disk filling up.
//!
//! The segment being written is never deleted, nor one not yet flushed,
//! nor one at or after the *floor*: the first record the broker still
//! needs (a timer message waiting for its time, a delayed message not yet
//! delivered, an undecided half message; see
//! [`MessageStore::set_retention_floor`]) or, failing that, the first
//! record not yet in its consume queue. Old or not, and even when the
//! disk is over `disk_max_used_space_ratio`: an acknowledged message is
//! not deleted before it is delivered. When the floor holds expired
//! segments back, a warning names what needs them. Puts are refused near
//! a full disk as before.
//!
//! [`MessageStore::set_retention_floor`]: crate::MessageStore::set_retention_floor

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::parse_delete_when;
use crate::now_ms;
use crate::stats::Counters;
use crate::store::Inner;

pub(crate) fn run(inner: Arc<Inner>) {
    let every = Duration::from_millis(inner.config.retention_check_interval_ms.max(1));
    let hours = parse_delete_when(&inner.config.delete_when).unwrap_or_default();
    loop {
        std::thread::park_timeout(every);
        if inner.shutdown.load(Ordering::Acquire) {
            break;
        }
        let ratio = check_disk(&inner);
        let over = ratio * 100.0 >= inner.config.disk_max_used_space_ratio as f64;
        let hour_now = local_hour().is_some_and(|h| hours.contains(&h));
        if over || hour_now {
            if over {
                tracing::warn!(
                    used = format!("{:.1}%", ratio * 100.0),
                    limit = inner.config.disk_max_used_space_ratio,
                    "disk over diskMaxUsedSpaceRatio: deleting the oldest commit-log segments now"
                );
            }
            if let Err(e) = clean(&inner, over) {
                tracing::error!(error = %e, "retention pass failed");
            }
        }
    }
}

/// Measure disk use, update the disk-full flag; returns the used fraction.
pub(crate) fn check_disk(inner: &Inner) -> f64 {
    let ratio = match disk_used_ratio(&inner.config.commit_log_dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot measure disk use");
            return f64::from_bits(inner.disk_ratio_bits.load(Ordering::Relaxed));
        }
    };
    inner
        .disk_ratio_bits
        .store(ratio.to_bits(), Ordering::Relaxed);
    let full = ratio * 100.0 >= inner.config.disk_full_ratio as f64;
    if inner.disk_full.swap(full, Ordering::Relaxed) != full {
        if full {
            tracing::error!(
                used = format!("{:.1}%", ratio * 100.0),
                "disk nearly full: refusing puts until retention frees space"
            );
        } else {
            tracing::info!("disk use back below the limit: accepting puts again");
        }
    }
    ratio
}

/// Where retention must stop, and why.
pub(crate) struct Floor {
    /// Every record at or above this commit-log offset stays.
    pub offset: i64,
    /// What needs the record there (the hold's reason, topic and queue);
    /// `None` when it is only not yet in its consume queue.
    pub why: Option<String>,
}

/// How often the same hold is warned about while it keeps segments back.
const WARN_EVERY_MS: i64 = 10 * 60 * 1000;

/// The first record still needed: the first one a hold names, or the
/// first one not yet dispatched to its consume queue.
pub(crate) fn floor(inner: &Inner) -> Floor {
    // Asked first and outside the put lock: a hold only moves forward, so
    // an answer a moment old keeps more, never less.
    let holds = inner
        .retention_floor
        .read()
        .clone()
        .map(|f| f())
        .unwrap_or_default();
    // Under the put lock every record below the readable offset (below the
    // applied one in Raft mode) is in its consume queue, so a queue's end
    // there means no record of it is waiting below.
    let _writer = inner.writer.lock();
    let dispatched = inner
        .commit_log
        .readable_offset()
        .min(inner.raft_visible.load(Ordering::Acquire));
    let mut floor = Floor {
        offset: dispatched,
        why: None,
    };
    for hold in &holds {
        let queues: Vec<_> = inner
            .queues
            .read()
            .get(hold.topic.as_str())
            .map(|qs| qs.values().cloned().collect())
            .unwrap_or_default();
        for cq in queues {
            let from = hold
                .from
                .get(&cq.queue_id())
                .copied()
                .unwrap_or(0)
                .max(cq.min_offset());
            // None: at or past the queue's end, nothing of it is needed.
            if let Some(entry) = cq.entry(from) {
                if entry.offset < floor.offset {
                    floor = Floor {
                        offset: entry.offset,
                        why: Some(format!(
                            "{} ({} queue {})",
                            hold.reason,
                            hold.topic,
                            cq.queue_id()
                        )),
                    };
                }
            }
        }
    }
    floor
}

/// One retention pass. `force` deletes regardless of age.
pub(crate) fn clean(inner: &Inner, force: bool) -> io::Result<usize> {
    let keep_ms = inner.config.file_reserved_time_hours as i64 * 3_600_000;
    let now = now_ms();
    let is_expired = |seg: &crate::mapped_file::MappedFile| {
        force || seg.modified_ms().is_some_and(|m| m + keep_ms <= now)
    };
    let segs = inner.commit_log.segments();
    let flushed = inner.commit_log.flushed_offset();
    let expired = segs
        .iter()
        .take(inner.config.delete_files_batch_max)
        .take(segs.len().saturating_sub(1))
        .take_while(|s| s.end() <= flushed && is_expired(s))
        .count();
    if expired == 0 {
        return Ok(0);
    }
    // Of those, the ones wholly below the floor.
    let floor = floor(inner);
    let n = segs[..expired]
        .iter()
        .take_while(|s| s.end() <= floor.offset)
        .count();
    if n < expired {
        held_back(inner, &floor, expired - n, force);
    }
    if n == 0 {
        return Ok(0);
    }
    // Where the log would start after this pass; a gate (a Raft member's
    // log must let go of those entries first) may refuse it.
    let limit = segs[n].start();
    let gate = inner.retention_gate.read().clone();
    if let Some(gate) = gate {
        if !gate(limit) {
            tracing::info!(
                offset = limit,
                "retention waits: the Raft log still needs the oldest segments"
            );
            return Ok(0);
        }
    }
    let deleted = std::cell::Cell::new(0usize);
    let new_min = inner
        .commit_log
        .delete_oldest(inner.config.delete_files_batch_max, |seg| {
            let expired = seg.end() <= limit && is_expired(seg);
            if expired {
                deleted.set(deleted.get() + 1);
            }
            expired
        })?;
    let Some(min) = new_min else {
        return Ok(0);
    };
    let count = deleted.get();
    Counters::add(&inner.counters.segments_deleted, count as u64);
    for cq in inner.all_queues() {
        cq.delete_expired(min)?;
    }
    inner.index.lock().delete_expired(min)?;
    Ok(count)
}

/// Say that the floor keeps `count` expired segments: a warning when
/// another hold than last time keeps them, or every ten minutes; else a
/// debug line.
fn held_back(inner: &Inner, floor: &Floor, count: usize, force: bool) {
    let Some(why) = &floor.why else {
        tracing::debug!(
            floor = floor.offset,
            segments = count,
            "retention keeps segments whose records are not yet in their consume queues"
        );
        return;
    };
    let now = now_ms();
    let warn = {
        let mut last = inner.retention_warned.lock();
        let due = last.1 != *why || now - last.0 >= WARN_EVERY_MS;
        if due {
            *last = (now, why.clone());
        }
        due
    };
    if warn {
        tracing::warn!(
            floor = floor.offset,
            segments = count,
            disk_over_limit = force,
            "retention keeps {count} expired commit-log segment(s) and all later ones: \
             the record at offset {} is still needed by {why}",
            floor.offset
        );
    } else {
        tracing::debug!(
            floor = floor.offset,
            segments = count,
            "retention still held back by {why}"
        );
    }
}

/// Used fraction (0.0..=1.0) of the filesystem holding `path`, as `df`
/// reports it (see [`used_fraction`]).
pub(crate) fn disk_used_ratio(path: &Path) -> io::Result<f64> {
    #[cfg(unix)]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs fills the zeroed struct; `c` is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(used_fraction(
            st.f_blocks as u64,
            st.f_bfree as u64,
            st.f_bavail as u64,
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(0.0)
    }
}

/// The hour of the day in local time (deleteWhen is local, as in RocketMQ).
fn local_hour() -> Option<u32> {
    #[cfg(unix)]
    {
        let t = (now_ms() / 1000) as libc::time_t;
        // SAFETY: localtime_r writes only into `tm`.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return None;
        }
        u32::try_from(tm.tm_hour).ok()
    }
    #[cfg(not(unix))]
    {
        u32::try_from((now_ms() / 3_600_000) % 24).ok()
    }
}

/// `df`'s use of a filesystem from its block counts: used blocks over the
/// blocks the broker can have (used plus available). Blocks reserved for
/// root are in neither, so a filesystem with a large reservation is not
/// taken for a full one (nor an empty reservation for free space).
fn used_fraction(blocks: u64, free: u64, available: u64) -> f64 {
    let used = blocks.saturating_sub(free);
    let usable = used + available;
    if usable == 0 {
        return 0.0;
    }
    (used as f64 / usable as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_ratio_and_hour() {
        let r = disk_used_ratio(Path::new("/")).unwrap();
        assert!((0.0..=1.0).contains(&r));
        assert!(local_hour().unwrap() < 24);
    }

    #[test]
    fn disk_use_is_what_df_reports() {
        // A filesystem with most of its free blocks reserved: 252 GB,
        // 60 GB used, 31 GB available to the broker. df says 66 %, not
        // the 88 % that counting the reservation as used would give.
        let r = used_fraction(66_053_021, 50_303_887, 8_072_338);
        assert!((r - 0.661).abs() < 0.001, "{r}");
        assert_eq!(used_fraction(100, 100, 95), 0.0);
        assert_eq!(used_fraction(100, 5, 0), 1.0);
        assert_eq!(used_fraction(0, 0, 0), 0.0);

        // And the measured figure agrees with df's own for this machine.
        let out = match std::process::Command::new("df")
            .args(["--output=pcent", "/"])
            .output()
        {
            Ok(out) if out.status.success() => out,
            _ => return, // no GNU df here
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let df: f64 = text
            .lines()
            .nth(1)
            .and_then(|l| l.trim().trim_end_matches('%').parse().ok())
            .expect("df --output=pcent prints a percentage");
        let ours = disk_used_ratio(Path::new("/")).unwrap() * 100.0;
        assert!((ours - df).abs() <= 1.5, "Meridian {ours:.1} %, df {df} %");
    }
}
