//! The flush thread: forces the commit log to disk, and periodically the
//! consume queues and index too, writing the checkpoint after them.
//!
//! - ASYNC_FLUSH: every `flush_interval_ms`.
//! - SYNC_FLUSH: group commit. A put that must wait asks for a flush and
//!   awaits the flushed offset (a `tokio::sync::watch`); this thread runs one
//!   fdatasync for everything appended since the previous one, so puts that
//!   arrive while a flush runs share the next.
//!
//! Derived files are flushed only every `checkpoint_interval_ms`, even under
//! SYNC_FLUSH: they can be rebuilt from the commit log, so an acknowledged
//! message only needs its record on disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FlushDiskType;
use crate::store::Inner;

pub(crate) fn run(inner: Arc<Inner>) {
    let sync = inner.config.flush_disk_type == FlushDiskType::SyncFlush;
    let flush_every = Duration::from_millis(inner.config.flush_interval_ms.max(1));
    let checkpoint_every = Duration::from_millis(inner.config.checkpoint_interval_ms.max(1));
    let mut next_flush = Instant::now() + flush_every;
    let mut next_checkpoint = Instant::now() + checkpoint_every;
    loop {
        if inner.shutdown.load(Ordering::Acquire) {
            break;
        }
        let now = Instant::now();
        let requested = inner.flush_pending.swap(false, Ordering::AcqRel);
        let due = if sync {
            requested
        } else {
            now >= next_flush
        };
        if !due && now < next_checkpoint {
            let until = if sync {
                next_checkpoint
            } else {
                next_flush.min(next_checkpoint)
            };
            // Woken early by a put (unpark) or by shutdown.
            std::thread::park_timeout(until.saturating_duration_since(now));
            continue;
        }
        if let Err(e) = inner.flush_commit_log() {
            tracing::error!(error = %e, "commit-log flush failed; will retry");
        }
        if !sync {
            next_flush = Instant::now() + flush_every;
        }
        if Instant::now() >= next_checkpoint {
            if let Err(e) = inner.checkpoint(false) {
                tracing::error!(error = %e, "checkpoint failed; will retry");
            }
            next_checkpoint = Instant::now() + checkpoint_every;
        }
    }
}
