//! Retention deletes old commit-log segments and the queue and index files
//! that only pointed into them; the rest stays readable.

mod common;

use std::fs;

use common::*;
use meridian_store::{GetStatus, MessageStore};

fn count_files(dir: &std::path::Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn old_segments_and_their_derived_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.file_reserved_time_hours = 0;
    let seg = c.mapped_file_size_commit_log as i64;
    let store = open(c.clone());
    let results = rt().block_on(async {
        let mut out = Vec::new();
        for i in 0..700 {
            let key = format!("key-{i}");
            out.push(
                store
                    .put_message(msg("Old", 0, body_of(i), &[("KEYS", &key)]))
                    .await
                    .unwrap(),
            );
        }
        out
    });
    store.flush().unwrap();
    let segments_before = count_files(&dir.path().join("commitlog"));
    let cq_dir = dir.path().join("consumequeue").join("Old").join("0");
    let cq_before = count_files(&cq_dir);
    let index_before = count_files(&dir.path().join("index"));
    assert!(segments_before >= 3, "{segments_before}");

    let deleted = store.delete_expired_files(false).unwrap();
    assert_eq!(
        deleted,
        segments_before - 1,
        "all but the segment being written"
    );
    assert_eq!(count_files(&dir.path().join("commitlog")), 1);
    let min = store.min_commit_log_offset();
    assert_eq!(min % seg, 0);
    assert_eq!(min, (store.max_commit_log_offset() - 1) / seg * seg);
    assert!(count_files(&cq_dir) < cq_before);
    assert!(count_files(&dir.path().join("index")) < index_before);
    assert_eq!(store.stats().segments_deleted, deleted as u64);

    // The queue now starts at the first message still in the commit log.
    let first_kept = results
        .iter()
        .position(|r| r.commit_log_offset >= min)
        .unwrap();
    assert_eq!(store.min_offset_in_queue("Old", 0), first_kept as i64);
    let r = store.get_messages("Old", 0, 0, 32, 1 << 20, &|_| true);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetStatus::OffsetTooSmall, first_kept as i64)
    );
    assert_eq!(read_queue(&store, "Old", 0).len(), 700 - first_kept);
    assert!(store.read_record(0).is_none());
    assert!(store
        .query_by_key("Old", "key-0", 10, 0, i64::MAX)
        .is_empty());
    assert_eq!(
        store.query_by_key("Old", "key-699", 10, 0, i64::MAX),
        vec![results[699].commit_log_offset]
    );
    // Nothing left to delete: the newest segment stays.
    assert_eq!(store.delete_expired_files(true).unwrap(), 0);
    drop(store);

    let (store, report) = MessageStore::open(c).unwrap();
    assert_eq!(report.truncated_at, None, "{report}");
    assert_eq!(store.min_commit_log_offset(), min);
    assert_eq!(store.min_offset_in_queue("Old", 0), first_kept as i64);
    assert_eq!(read_queue(&store, "Old", 0).len(), 700 - first_kept);
}

#[test]
fn young_segments_are_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    rt().block_on(async {
        for i in 0..300 {
            store
                .put_message(msg("Young", 1, body_of(i), &[]))
                .await
                .unwrap();
        }
    });
    store.flush().unwrap();
    assert_eq!(store.delete_expired_files(false).unwrap(), 0);
    let n = count_files(&dir.path().join("commitlog"));
    assert!(n >= 2);
    assert_eq!(store.delete_expired_files(true).unwrap(), n - 1);
    assert_eq!(
        read_queue(&store, "Young", 1).last().unwrap().body,
        body_of(299)
    );
}

/// A record the broker still needs (a timer waiting for its time, an
/// undecided half message) keeps its segment and every later one, expired
/// or not, disk full or not; once it is no longer needed they go.
#[test]
fn a_needed_record_keeps_its_segment_and_every_later_one() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use meridian_store::RetentionHold;

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.file_reserved_time_hours = 0;
    let store = open(c);
    let put_many = |from: usize, n: usize| {
        rt().block_on(async {
            for i in from..from + n {
                store
                    .put_message(msg("Filler", 0, body_of(i), &[]))
                    .await
                    .unwrap();
            }
        })
    };
    put_many(0, 500);
    let held = rt()
        .block_on(store.put_message(msg("Held", 0, "wait for me", &[])))
        .unwrap();
    put_many(500, 500);
    store.flush().unwrap();
    let segments = count_files(&dir.path().join("commitlog"));
    assert!(segments >= 4, "{segments}");

    // The held queue from its first record: the queue not named in `from`
    // (none) would be held whole as well.
    let from: Arc<Mutex<BTreeMap<i32, i64>>> = Arc::new(Mutex::new(BTreeMap::from([(0, 0)])));
    let f = from.clone();
    store.set_retention_floor(Some(Arc::new(move || {
        vec![RetentionHold {
            topic: "Held".to_string(),
            from: f.lock().unwrap().clone(),
            reason: "a test's pending record",
        }]
    })));
    assert_eq!(store.retention_floor(), held.commit_log_offset);
    for force in [false, true] {
        store.delete_expired_files(force).unwrap();
        let min = store.min_commit_log_offset();
        assert!(min > 0, "segments before the held one go");
        assert!(min <= held.commit_log_offset, "force={force}: {min}");
        let m = read_queue(&store, "Held", 0);
        assert_eq!(m.len(), 1);
        assert_eq!(&m[0].body[..], b"wait for me");
    }
    // A queue the hold does not name is held from its start.
    from.lock().unwrap().clear();
    store.delete_expired_files(true).unwrap();
    assert_eq!(read_queue(&store, "Held", 0).len(), 1);

    // Delivered: nothing of the queue is needed any more.
    from.lock().unwrap().insert(0, 1);
    assert_eq!(store.retention_floor(), store.max_commit_log_offset());
    store.delete_expired_files(false).unwrap();
    assert_eq!(count_files(&dir.path().join("commitlog")), 1);
    assert!(store.read_record(held.commit_log_offset).is_none());
}
