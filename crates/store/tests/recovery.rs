//! Recovery: a store reopened after a clean shutdown, a crash, a torn tail
//! or corruption holds exactly the valid prefix of what was written, and
//! its consume queues and index agree with it.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::*;
use meridian_protocol::message::{property, tags_hash_code};
use meridian_store::{MessageStore, PutResult, StoreConfig};
use proptest::prelude::*;

fn segment_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn segment_of(root: &Path, offset: i64, seg_size: i64) -> (PathBuf, u64) {
    let start = offset - offset % seg_size;
    (
        root.join("commitlog").join(format!("{start:020}")),
        (offset - start) as u64,
    )
}

fn flip_bit(root: &Path, offset: i64, seg_size: i64) {
    let (path, pos) = segment_of(root, offset, seg_size);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(&b).unwrap();
}

/// Put `n` messages round-robin over queues 0..3 of topic "R", with keys.
fn fill(store: &MessageStore, n: usize) -> Vec<PutResult> {
    rt().block_on(async {
        let mut out = Vec::new();
        for i in 0..n {
            let key = format!("key-{i}");
            let tag = format!("tag{}", i % 2);
            let m = msg(
                "R",
                (i % 3) as i32,
                body_of(i),
                &[("KEYS", &key), ("TAGS", &tag)],
            );
            out.push(store.put_message(m).await.unwrap());
        }
        out
    })
}

/// Bodies of queue `q` of "R" in order, as message indexes.
fn indexes_in_queue(store: &MessageStore, q: i32, n: usize) -> Vec<usize> {
    let got = read_queue(store, "R", q);
    got.iter()
        .map(|m| {
            (0..n)
                .find(|&i| body_of(i) == m.body)
                .expect("a body we wrote")
        })
        .collect()
}

fn expect_prefix(store: &MessageStore, kept: usize) {
    for q in 0..3 {
        let want: Vec<usize> = (0..kept).filter(|i| i % 3 == q as usize).collect();
        assert_eq!(
            indexes_in_queue(store, q, kept.max(1) + 50),
            want,
            "queue {q}"
        );
        assert_eq!(store.max_offset_in_queue("R", q), want.len() as i64);
    }
}

#[test]
fn reopen_after_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let results = fill(&store, 120);
    let end = store.max_commit_log_offset();
    drop(store);

    let (store, report) = MessageStore::open(config(dir.path())).unwrap();
    assert!(report.clean_shutdown, "{report}");
    assert_eq!(report.truncated_at, None, "{report}");
    assert_eq!(report.rebuilt_queue_entries, 0, "{report}");
    assert_eq!(report.commit_log_max_offset, end);
    expect_prefix(&store, 120);
    assert_eq!(
        store.query_by_key("R", "key-77", 10, 0, i64::MAX),
        vec![results[77].commit_log_offset]
    );
    // Writing goes on where it stopped.
    let next = fill(&store, 1);
    assert_eq!(next[0].commit_log_offset, end);
    assert_eq!(next[0].queue_offset, 40);
}

#[test]
fn reopen_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    fill(&store, 90);
    // A copy of the files while the store runs is what a kill -9 leaves
    // behind: the page cache holds every write.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    drop(store);
    let (store, report) = MessageStore::open(config(crashed.path())).unwrap();
    assert!(!report.clean_shutdown, "{report}");
    assert_eq!(report.truncated_at, None, "{report}");
    expect_prefix(&store, 90);
    assert_eq!(store.query_by_key("R", "key-89", 10, 0, i64::MAX).len(), 1);
}

/// The index is forced less often than the consume queues. A machine that
/// goes down in between may leave an index file whose header was written
/// back (claiming the newest entries) while its slots and entries were not:
/// recovery re-indexes from the checkpoint's mark for the index, not from
/// what the header claims.
#[test]
fn an_index_torn_by_a_machine_crash_is_rebuilt_from_its_last_forcing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let early = fill(&store, 60);
    store.flush().unwrap(); // everything forced, the index included
    let forced = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("index"), forced.path());
    let late: Vec<PutResult> = rt().block_on(async {
        let mut out = Vec::new();
        for i in 0..60 {
            let key = format!("late-{i}");
            let m = msg("R", (i % 3) as i32, body_of(60 + i), &[("KEYS", &key)]);
            out.push(store.put_message(m).await.unwrap());
        }
        out
    });
    // Routine checkpoints (every 50 ms here) force the queues, not the index.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let cp: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("checkpoint.json")).unwrap()).unwrap();
    let index_mark = cp["index_flushed"].as_i64().expect("index_flushed");
    assert_eq!(index_mark, late[0].commit_log_offset, "{cp}");
    assert!(cp["derived_flushed"].as_i64().unwrap() > index_mark, "{cp}");

    // The crash: files as the page cache holds them, but each index file
    // as it was last forced, under the header it has now.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    for e in fs::read_dir(forced.path()).unwrap() {
        let e = e.unwrap();
        let mut old = fs::read(e.path()).unwrap();
        let torn = crashed.path().join("index").join(e.file_name());
        let now = fs::read(&torn).unwrap();
        old[..64].copy_from_slice(&now[..64]);
        fs::write(&torn, old).unwrap();
    }
    drop(store);
    let (store, report) = MessageStore::open(config(crashed.path())).unwrap();
    assert!(report.scanned_from <= index_mark, "{report}");
    for (i, r) in late.iter().enumerate() {
        assert_eq!(
            store.query_by_key("R", &format!("late-{i}"), 10, 0, i64::MAX),
            vec![r.commit_log_offset],
            "late-{i} after recovery ({report})"
        );
    }
    assert_eq!(
        store.query_by_key("R", "key-7", 10, 0, i64::MAX),
        vec![early[7].commit_log_offset]
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let seg = c.mapped_file_size_commit_log as i64;
    let store = open(c.clone());
    let results = fill(&store, 60);
    drop(store);
    let last = results.last().unwrap();
    let (path, pos) = segment_of(
        dir.path(),
        last.commit_log_offset + last.wrote_bytes as i64 / 2,
        seg,
    );
    assert_eq!(path, *segment_files(dir.path()).last().unwrap());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(pos)
        .unwrap();

    let (store, report) = MessageStore::open(c).unwrap();
    assert_eq!(
        report.truncated_at,
        Some(last.commit_log_offset),
        "{report}"
    );
    assert!(
        report.truncated_bytes > 0 && report.reason.is_some(),
        "{report}"
    );
    assert!(report.to_string().contains("CUT"), "{report}");
    expect_prefix(&store, 59);
    assert!(store
        .query_by_key("R", "key-59", 10, 0, i64::MAX)
        .is_empty());
    // The next record takes the place of the lost one (which was message 19
    // of queue 2; this one goes to queue 0).
    let again = fill(&store, 1);
    assert_eq!(again[0].commit_log_offset, last.commit_log_offset);
    assert_eq!(again[0].queue_offset, 20);
    assert_eq!(store.max_offset_in_queue("R", 2), 19);
}

#[test]
fn body_bit_flip_is_caught_by_crc() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let seg = c.mapped_file_size_commit_log as i64;
    let store = open(c.clone());
    let results = fill(&store, 50);
    drop(store);
    let k = 45;
    // The body starts after 84 fixed bytes and the 4-byte body length.
    flip_bit(dir.path(), results[k].commit_log_offset + 84 + 4 + 3, seg);
    let (store, report) = MessageStore::open(c).unwrap();
    assert_eq!(
        report.truncated_at,
        Some(results[k].commit_log_offset),
        "{report}"
    );
    assert!(
        report.reason.as_deref().unwrap().contains("CRC"),
        "{report}"
    );
    expect_prefix(&store, k);
}

#[test]
fn physical_offset_bit_flip_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let seg = c.mapped_file_size_commit_log as i64;
    let store = open(c.clone());
    let results = fill(&store, 50);
    drop(store);
    let k = 30;
    flip_bit(dir.path(), results[k].commit_log_offset + 28 + 7, seg);
    let (store, report) = MessageStore::open(c).unwrap();
    assert_eq!(
        report.truncated_at,
        Some(results[k].commit_log_offset),
        "{report}"
    );
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("physical-offset"),
        "{report}"
    );
    expect_prefix(&store, k);
}

#[test]
fn deleted_consume_queues_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let store = open(c.clone());
    fill(&store, 200);
    drop(store);
    fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    let (store, report) = MessageStore::open(c.clone()).unwrap();
    assert_eq!(report.rebuilt_queues.len(), 3, "{report}");
    assert_eq!(report.rebuilt_queue_entries, 200, "{report}");
    expect_prefix(&store, 200);
    // Tag codes came back too.
    let want = tags_hash_code("tag1");
    let r = store.get_messages("R", 0, 0, 32, 1 << 20, &|code| code == want);
    assert!(!r.messages.is_empty());
    drop(store);

    // Losing only the newest file of one queue is noticed as well.
    let qdir = dir.path().join("consumequeue").join("R").join("1");
    let mut files: Vec<PathBuf> = fs::read_dir(&qdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    fs::remove_file(files.last().unwrap()).unwrap();
    let (store, report) = MessageStore::open(c).unwrap();
    assert_eq!(report.rebuilt_queues.len(), 1, "{report}");
    expect_prefix(&store, 200);
}

#[test]
fn a_queue_file_made_but_never_written_before_a_crash_is_refilled() {
    // A crash between making a queue's first file and writing its first
    // entry leaves a file of zeros: an empty queue, which recovery fills
    // from the commit log (not a queue that seems to end a file later and
    // hides what was written).
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    fill(&store, 3);
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    drop(store);
    let f = crashed
        .path()
        .join("consumequeue")
        .join("R")
        .join("2")
        .join(format!("{:020}", 0));
    let len = fs::metadata(&f).unwrap().len() as usize;
    fs::write(&f, vec![0u8; len]).unwrap();
    let (store, report) = MessageStore::open(config(crashed.path())).unwrap();
    expect_prefix(&store, 3);
    assert_eq!(store.min_offset_in_queue("R", 2), 0, "{report}");
    // And the queue goes on from there.
    let next = fill(&store, 3);
    assert_eq!(next[2].queue_offset, 1);
}

#[test]
fn corrupt_queue_entries_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let store = open(c.clone());
    fill(&store, 30);
    drop(store);
    // Point queue 2's entries somewhere else.
    let f = dir
        .path()
        .join("consumequeue")
        .join("R")
        .join("2")
        .join(format!("{:020}", 0));
    let mut data = fs::read(&f).unwrap();
    data[0..8].copy_from_slice(&0i64.to_be_bytes());
    data[20..28].copy_from_slice(&0i64.to_be_bytes());
    fs::write(&f, data).unwrap();
    let (store, report) = MessageStore::open(c).unwrap();
    assert_eq!(report.rebuilt_queues.len(), 1, "{report}");
    expect_prefix(&store, 30);
}

#[test]
fn garbage_checkpoint_and_lost_index_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let store = open(c.clone());
    let results = fill(&store, 150);
    drop(store);
    fs::write(dir.path().join("checkpoint.json"), b"\0\0garbage").unwrap();
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let (store, report) = MessageStore::open(c).unwrap();
    assert!(!report.checkpoint_used, "{report}");
    assert_eq!(report.rebuilt_index_entries, 150, "{report}");
    expect_prefix(&store, 150);
    assert_eq!(
        store.query_by_key("R", "key-3", 10, 0, i64::MAX),
        vec![results[3].commit_log_offset]
    );
}

#[test]
fn uniq_key_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let store = open(c.clone());
    let uniq = meridian_protocol::message_id::create_uniq_id();
    let r = rt()
        .block_on(store.put_message(msg(
            "U",
            0,
            "u",
            &[(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &uniq)],
        )))
        .unwrap();
    drop(store);
    let store = open(c);
    assert_eq!(
        store.query_by_key("U", &uniq, 10, 0, i64::MAX),
        vec![r.commit_log_offset]
    );
}

fn proptest_config(dir: &Path) -> StoreConfig {
    let mut c = config(dir);
    c.checkpoint_interval_ms = 60_000;
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Cutting the commit log anywhere recovers exactly the records that
    /// end before the cut.
    #[test]
    fn any_truncation_recovers_a_prefix(
        sizes in proptest::collection::vec(0usize..3000, 1..60),
        cut in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let c = proptest_config(dir.path());
        let seg = c.mapped_file_size_commit_log as i64;
        let store = open(c.clone());
        let results: Vec<PutResult> = rt().block_on(async {
            let mut out = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let body = vec![(i % 251) as u8; *size];
                let key = format!("k{i}");
                out.push(store.put_message(msg("P", (i % 2) as i32, body, &[("KEYS", &key)])).await.unwrap());
            }
            out
        });
        let end = store.max_commit_log_offset();
        drop(store);

        let t = (end as f64 * cut) as i64;
        for path in segment_files(dir.path()) {
            let start: i64 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            if start >= t {
                fs::remove_file(&path).unwrap();
            } else if t < start + seg {
                OpenOptions::new().write(true).open(&path).unwrap().set_len((t - start) as u64).unwrap();
            }
        }

        let (store, report) = MessageStore::open(c).unwrap();
        let kept: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].commit_log_offset + results[i].wrote_bytes as i64 <= t)
            .collect();
        // Records are written in order, so what survives is a prefix.
        prop_assert!(kept.iter().enumerate().all(|(n, &i)| n == i));
        // A cut inside a segment's blank tail keeps the blank marker: the
        // log then ends at that segment's end, with nothing lost.
        let max = store.max_commit_log_offset();
        prop_assert!(max <= t || (max % seg == 0 && max - seg < t), "{}", report);
        for q in 0..2 {
            let got = read_queue(&store, "P", q);
            let want: Vec<usize> = kept.iter().copied().filter(|i| i % 2 == q as usize).collect();
            prop_assert_eq!(got.len(), want.len(), "{}", report);
            for (m, i) in got.iter().zip(&want) {
                prop_assert_eq!(m.commit_log_offset, results[*i].commit_log_offset);
                prop_assert_eq!(m.body.len(), sizes[*i]);
                prop_assert!(m.body.iter().all(|&b| b == (*i % 251) as u8));
            }
        }
        if let Some(&last) = kept.last() {
            prop_assert_eq!(store.query_by_key("P", &format!("k{last}"), 4, 0, i64::MAX), vec![results[last].commit_log_offset]);
        }
        // The store takes writes again and they read back.
        let again = rt().block_on(store.put_message(msg("P", 0, "after", &[]))).unwrap();
        prop_assert_eq!(again.queue_offset, kept.iter().filter(|i| *i % 2 == 0).count() as i64);
        prop_assert!(store.read_record(again.commit_log_offset).is_some());
    }
}
