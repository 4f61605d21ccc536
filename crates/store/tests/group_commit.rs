//! SYNC_FLUSH: a put returns once its record is on disk, and concurrent
//! puts share fsyncs.

mod common;

use std::sync::Arc;

use common::*;
use meridian_store::{FlushDiskType, PutError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sync_puts_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_disk_type = FlushDiskType::SyncFlush;
    c.mapped_file_size_commit_log = 4 * 1024 * 1024;
    let store = open(c);
    let before = store.stats().flush_count;
    let puts = 400;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..puts {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let r = store
                .put_message(msg("Sync", (i % 4) as i32, body_of(i), &[]))
                .await
                .unwrap();
            // Acknowledged means flushed.
            assert!(store.flushed_offset() >= r.commit_log_offset + r.wrote_bytes as i64);
            r
        });
    }
    let mut n = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, puts);
    let stats = store.stats();
    let fsyncs = stats.flush_count - before;
    assert!(fsyncs >= 1);
    assert!(
        fsyncs < puts as u64,
        "{fsyncs} fsyncs for {puts} puts: no group commit"
    );
    assert_eq!(stats.put_message_count, puts as u64);
    assert_eq!(stats.flush_timeouts, 0);
    let total: usize = (0..4).map(|q| read_queue(&store, "Sync", q).len()).sum();
    assert_eq!(total, puts);
}

#[tokio::test]
async fn sync_batch_waits_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_disk_type = FlushDiskType::SyncFlush;
    let store = open(c);
    let before = store.stats().flush_count;
    let results = store
        .put_messages((0..20).map(|i| msg("SyncB", 0, body_of(i), &[])).collect())
        .await
        .unwrap();
    let last = results.last().unwrap();
    assert!(store.flushed_offset() >= last.commit_log_offset + last.wrote_bytes as i64);
    assert!(store.stats().flush_count - before <= 2);
}

#[tokio::test]
async fn a_late_flush_still_stores_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_disk_type = FlushDiskType::SyncFlush;
    c.sync_flush_timeout_ms = 0;
    let store = open(c);
    let offset = match store.put_message(msg("Late", 0, "x", &[])).await {
        Ok(r) => r.commit_log_offset,
        Err(PutError::FlushTimeout(r)) => {
            assert_eq!(store.stats().flush_timeouts, 1);
            r.commit_log_offset
        }
        Err(e) => panic!("{e}"),
    };
    assert!(store.read_record(offset).is_some());
    assert_eq!(read_queue(&store, "Late", 0).len(), 1);
}
