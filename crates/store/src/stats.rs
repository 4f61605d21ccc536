//! Counters for GET_BROKER_RUNTIME_INFO and for tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the store's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Messages appended since open.
    pub put_message_count: u64,
    /// Record bytes appended since open.
    pub put_message_bytes: u64,
    /// Put calls (a batch counts once).
    pub put_calls: u64,
    /// Puts refused (illegal, disk full, I/O error, shut down).
    pub put_failures: u64,
    /// SYNC_FLUSH puts that did not reach disk within the timeout.
    pub flush_timeouts: u64,
    /// Gets that found messages, and those that did not.
    pub get_found: u64,
    pub get_miss: u64,
    /// Messages returned by gets.
    pub get_message_count: u64,
    /// Commit-log flushes (each one fdatasync of the new bytes).
    pub flush_count: u64,
    pub commit_log_min_offset: i64,
    pub commit_log_max_offset: i64,
    pub flushed_offset: i64,
    /// Used fraction of the filesystem holding the commit log, 0.0..=1.0.
    pub disk_used_ratio: f64,
    /// Number of consume queues.
    pub queue_count: usize,
    /// Commit-log segments.
    pub segment_count: usize,
    /// Segments deleted by retention since open.
    pub segments_deleted: u64,
    /// How long commit-log flushes took: per bucket of
    /// [`FLUSH_BUCKETS_SECS`] (the last one unbounded), the number of
    /// flushes up to that long and longer than the bucket before.
    pub flush_latency_buckets: Vec<u64>,
    /// Seconds all flushes took, together.
    pub flush_latency_sum_secs: f64,
    /// Passes that handed cold commit-log and index pages back to the page
    /// cache (they stay cached; the process stops counting them as its
    /// own), every few seconds while there are cold pages.
    pub page_cache_releases: u64,
}

/// Upper bounds of the flush latency buckets, in seconds (then +Inf).
pub const FLUSH_BUCKETS_SECS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub put_message_count: AtomicU64,
    pub put_message_bytes: AtomicU64,
    pub put_calls: AtomicU64,
    pub put_failures: AtomicU64,
    pub flush_timeouts: AtomicU64,
    pub get_found: AtomicU64,
    pub get_miss: AtomicU64,
    pub get_message_count: AtomicU64,
    pub flush_count: AtomicU64,
    pub segments_deleted: AtomicU64,
    /// One per bucket of FLUSH_BUCKETS_SECS, and one for longer.
    pub flush_buckets: [AtomicU64; FLUSH_BUCKETS_SECS.len() + 1],
    pub flush_nanos: AtomicU64,
    pub page_cache_releases: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Record a flush that took `took`.
    pub fn flushed(&self, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        let bucket = FLUSH_BUCKETS_SECS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(FLUSH_BUCKETS_SECS.len());
        Counters::add(&self.flush_buckets[bucket], 1);
        Counters::add(&self.flush_nanos, took.as_nanos() as u64);
        Counters::add(&self.flush_count, 1);
    }
}
