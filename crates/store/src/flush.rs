//! The flush thread forces the commit log to disk; the checkpoint thread
//! periodically forces consume queues and index too and then writes the
//! checkpoint (on its own thread, so a slow msync of derived files never
//! delays a SYNC_FLUSH put).
//!
//! - ASYNC_FLUSH: every `flush_interval_ms`.
//! - SYNC_FLUSH: group commit. A put that must wait asks for a flush and
//!   awaits the flushed offset (a `tokio::sync::watch`); this thread runs one
//!   fdatasync for everything appended since the previous one, so puts that
//!   arrive while a flush runs share the next.
//!
//! Derived files are flushed only every `checkpoint_interval_ms` (the index
//! only every `INDEX_FLUSH_INTERVAL`), even under SYNC_FLUSH: they can be
//! rebuilt from the commit log, so an acknowledged message only needs its
//! record on disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FlushDiskType;
use crate::store::Inner;

pub(crate) fn run(inner: Arc<Inner>) {
    let sync = inner.config.flush_disk_type == FlushDiskType::SyncFlush;
    let flush_every = Duration::from_millis(inner.config.flush_interval_ms.max(1));
    let mut next_flush = Instant::now() + flush_every;
    loop {
        if inner.shutdown.load(Ordering::Acquire) {
            break;
        }
        let now = Instant::now();
        let due = if sync {
            inner.flush_pending.swap(false, Ordering::AcqRel)
        } else {
            now >= next_flush
        };
        if !due {
            // Woken early by a put (unpark) or by shutdown; under SYNC_FLUSH
            // the timeout only bounds how long a missed wake-up could last.
            let wait = if sync {
                flush_every
            } else {
                next_flush.saturating_duration_since(now)
            };
            std::thread::park_timeout(wait);
            continue;
        }
        if let Err(e) = inner.flush_commit_log(true) {
            tracing::error!(error = %e, "commit-log flush failed; will retry");
        }
        if !sync {
            next_flush = Instant::now() + flush_every;
        }
    }
}

pub(crate) fn run_checkpoints(inner: Arc<Inner>) {
    let every = Duration::from_millis(inner.config.checkpoint_interval_ms.max(1));
    let mut next = Instant::now() + every;
    loop {
        if inner.shutdown.load(Ordering::Acquire) {
            break;
        }
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout((next - now).min(crate::store::RELEASE_INTERVAL));
            inner.release_cold_pages();
            continue;
        }
        if let Err(e) = inner.routine_checkpoint() {
            tracing::error!(error = %e, "checkpoint failed; will retry");
        }
        next = Instant::now() + every;
    }
}
