//! Replication building blocks: a replica fed a master's commit-log bytes,
//! in chunks of any size, ends up with the same commit log, consume queues
//! and key index; a replica restarted mid-record resumes; an empty replica
//! starts at the master's oldest segment; the log can be cut back.

mod common;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use meridian_protocol::message::{property, sys_flag};
use meridian_store::{MessageStore, PutError, PutResult, StoreConfig, StoreError};
use proptest::prelude::*;

/// One message to put: topic, queue, body size, whether it is a prepared
/// transaction message (which gets no consume-queue entry).
type Spec = (usize, i32, usize, bool);

fn put_all(store: &MessageStore, specs: &[Spec]) -> Vec<PutResult> {
    rt().block_on(async {
        let mut out = Vec::new();
        for (i, &(topic, queue, size, prepared)) in specs.iter().enumerate() {
            let key = format!("key-{i} shared-{}", i % 5);
            let tag = format!("tag{}", i % 3);
            let mut m = msg(
                &format!("topic{topic}"),
                queue,
                Bytes::from(vec![(i % 251) as u8; size]),
                &[(property::KEYS, &key), (property::TAGS, &tag)],
            );
            if prepared {
                m.sys_flag = sys_flag::TRANSACTION_PREPARED_TYPE;
            }
            out.push(store.put_message(m).await.unwrap());
        }
        out
    })
}

/// The whole readable commit log, segment by segment.
fn all_bytes(store: &MessageStore) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = store.min_commit_log_offset();
    loop {
        let chunk = store.read_commit_log(at, 1 << 20).expect("readable offset");
        if chunk.is_empty() {
            return out;
        }
        at += chunk.len() as i64;
        out.extend_from_slice(&chunk);
    }
}

/// Feed `data` (the master's bytes from `start`) to the replica in chunks
/// of the given sizes, cycled.
fn feed(replica: &MessageStore, start: i64, data: &[u8], chunks: &[usize]) {
    let mut at = 0usize;
    let mut sizes = chunks.iter().cycle();
    while at < data.len() {
        let n = (*sizes.next().unwrap()).clamp(1, data.len() - at);
        let end = replica
            .append_replicated(start + at as i64, &data[at..at + n])
            .unwrap_or_else(|e| panic!("append at {}: {e}", start + at as i64));
        at += n;
        assert_eq!(end, start + at as i64);
    }
}

/// Everything a user can see of a queue: records, their tag codes, ends.
fn queue_view(store: &MessageStore, topic: &str, queue: i32) -> (i64, i64, Vec<Bytes>, Vec<i64>) {
    let min = store.min_offset_in_queue(topic, queue);
    let max = store.max_offset_in_queue(topic, queue);
    let codes = RefCell::new(Vec::new());
    let mut records = Vec::new();
    let mut offset = min;
    while offset < max {
        let r = store.get_messages(topic, queue, offset, 32, 1 << 20, &|code| {
            codes.borrow_mut().push(code);
            true
        });
        records.extend(r.messages.iter().cloned());
        assert!(
            r.next_begin_offset > offset,
            "{topic}/{queue} stuck at {offset}"
        );
        offset = r.next_begin_offset;
    }
    (min, max, records, codes.into_inner())
}

fn assert_same(master: &MessageStore, replica: &MessageStore, keys: usize) {
    assert_eq!(
        replica.min_commit_log_offset(),
        master.min_commit_log_offset()
    );
    assert_eq!(
        replica.max_commit_log_offset(),
        master.max_commit_log_offset()
    );
    assert!(
        all_bytes(replica) == all_bytes(master),
        "commit logs differ"
    );
    // Queues whose records retention removed before the replica started
    // stay unknown to it; every queue with a message is on both.
    let holding = |s: &MessageStore| -> Vec<(String, i32)> {
        s.topics_and_queues()
            .into_iter()
            .filter(|(t, q)| s.max_offset_in_queue(t, *q) > s.min_offset_in_queue(t, *q))
            .collect()
    };
    assert_eq!(holding(replica), holding(master));
    let all = master.topics_and_queues();
    assert!(replica.topics_and_queues().iter().all(|q| all.contains(q)));
    for (topic, queue) in holding(master) {
        assert_eq!(
            queue_view(replica, &topic, queue),
            queue_view(master, &topic, queue),
            "{topic}/{queue}"
        );
    }
    for topic in 0..3 {
        let topic = format!("topic{topic}");
        for i in 0..keys {
            for key in [format!("key-{i}"), format!("shared-{}", i % 5)] {
                assert_eq!(
                    replica.query_by_key(&topic, &key, 64, 0, i64::MAX),
                    master.query_by_key(&topic, &key, 64, 0, i64::MAX),
                    "{topic} {key}"
                );
            }
        }
    }
}

fn specs(n: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| (i % 3, (i % 4) as i32, (i * 397) % 3000, i % 17 == 5))
        .collect()
}

fn open_pair() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    Arc<MessageStore>,
    Arc<MessageStore>,
) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(config(a.path()));
    let replica = open(config(b.path()));
    (a, b, master, replica)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Chunk boundaries anywhere (mid-header, mid-body, inside a blank
    /// segment tail, across segment ends) give the same store.
    #[test]
    fn any_chunking_gives_an_identical_replica(
        messages in proptest::collection::vec((0usize..3, 0i32..4, 0usize..3000, proptest::bool::weighted(0.1)), 1..80),
        chunks in proptest::collection::vec(1usize..9000, 1..40),
    ) {
        let (_a, _b, master, replica) = open_pair();
        put_all(&master, &messages);
        let data = all_bytes(&master);
        feed(&replica, 0, &data, &chunks);
        assert_same(&master, &replica, messages.len());
    }
}

#[test]
fn read_commit_log_stays_in_one_segment() {
    let (_a, _b, master, _replica) = open_pair();
    let seg = config(std::path::Path::new("/x")).mapped_file_size_commit_log as i64;
    put_all(&master, &specs(150));
    let max = master.max_commit_log_offset();
    assert!(max > 2 * seg, "the test needs a few segments");
    assert_eq!(master.read_commit_log(-1, 10), None);
    assert_eq!(master.read_commit_log(max + 1, 10), None);
    assert_eq!(master.read_commit_log(max, 10), Some(Bytes::new()));
    assert_eq!(master.read_commit_log(0, 0), Some(Bytes::new()));
    let tail = master.read_commit_log(seg - 100, 1 << 20).unwrap();
    assert_eq!(tail.len(), 100, "stops at the segment end");
    let next = master.read_commit_log(seg, 1 << 20).unwrap();
    assert_eq!(next.len() as i64, seg);
    assert_eq!(master.read_commit_log(10, 7).unwrap().len(), 7);
    // Followers of the log see where it ends.
    let rx = master.subscribe_max_offset();
    assert_eq!(*rx.borrow(), max);
    let r = put_all(&master, &specs(1));
    assert_eq!(
        *rx.borrow(),
        r[0].commit_log_offset + r[0].wrote_bytes as i64
    );
}

#[test]
fn replica_dispatches_and_wakes_listeners() {
    let (_a, _b, master, replica) = open_pair();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    replica.set_arrival_listener(Arc::new(move |t: &str, q, max| {
        s.lock().unwrap().push((t.to_string(), q, max))
    }));
    let follow = replica.subscribe_max_offset();
    put_all(&master, &specs(20));
    let data = all_bytes(&master);
    feed(&replica, 0, &data, &[data.len()]);
    assert_same(&master, &replica, 20);
    let seen = seen.lock().unwrap();
    for (topic, queue) in master.topics_and_queues() {
        let max = master.max_offset_in_queue(&topic, queue);
        assert!(
            seen.contains(&(topic.clone(), queue, max)),
            "{topic}/{queue} {seen:?}"
        );
    }
    assert_eq!(*follow.borrow(), master.max_commit_log_offset());
}

#[test]
fn replica_restarted_mid_record_resumes() {
    for crash in [false, true] {
        let (_a, b, master, replica) = open_pair();
        let results = put_all(&master, &specs(60));
        let data = all_bytes(&master);
        let k = 41;
        let torn = results[k].commit_log_offset as usize + 30;
        feed(&replica, 0, &data[..torn], &[777]);
        assert_eq!(
            replica.max_commit_log_offset(),
            results[k].commit_log_offset,
            "only whole records are readable"
        );
        let dir = if crash {
            // What a kill -9 leaves: the files as they are while it runs.
            let copy = tempfile::tempdir().unwrap();
            copy_dir(b.path(), copy.path());
            drop(replica);
            copy
        } else {
            drop(replica);
            b
        };
        let (replica, report) = MessageStore::open(config(dir.path())).unwrap();
        assert_eq!(
            replica.max_commit_log_offset(),
            results[k].commit_log_offset,
            "{report}"
        );
        // It asks for the rest from its own max offset.
        let from = replica.max_commit_log_offset();
        feed(&replica, from, &data[from as usize..], &[1000, 3]);
        assert_same(&master, &replica, 60);
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn empty_replica_starts_at_the_masters_oldest_segment() {
    let (_a, b, master, replica) = open_pair();
    put_all(&master, &specs(200));
    master.flush().unwrap();
    assert!(master.delete_expired_files(true).unwrap() > 0);
    let min = master.min_commit_log_offset();
    assert!(min > 0);
    put_all(&master, &specs(60));

    let err = replica.reset_empty_to(min + 1).unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    replica.reset_empty_to(min).unwrap();
    assert_eq!(
        (
            replica.min_commit_log_offset(),
            replica.max_commit_log_offset()
        ),
        (min, min)
    );
    // Remembered across a restart, before any byte arrived.
    drop(replica);
    let replica = open(config(b.path()));
    assert_eq!(replica.max_commit_log_offset(), min);

    let data = all_bytes(&master);
    feed(&replica, min, &data, &[4096, 5000, 1]);
    assert_same(&master, &replica, 200);
    let err = replica.reset_empty_to(0).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");

    drop(replica);
    let replica = open(config(b.path()));
    assert_same(&master, &replica, 200);
}

/// After a cut at record `cut`: keys, queues and the log end agree.
fn check_cut(replica: &MessageStore, results: &[PutResult], cut: usize) {
    let to = results[cut].commit_log_offset;
    assert_eq!(replica.max_commit_log_offset(), to);
    let specs = specs(results.len());
    for (i, r) in results.iter().enumerate() {
        let (topic, queue, _, prepared) = specs[i];
        let topic = format!("topic{topic}");
        let found = replica.query_by_key(&topic, &format!("key-{i}"), 4, 0, i64::MAX);
        assert_eq!(found.is_empty(), i >= cut, "key-{i} after a cut at {to}");
        if prepared {
            continue;
        }
        let max = replica.max_offset_in_queue(&topic, queue);
        if i < cut {
            assert!(max > r.queue_offset, "message {i} kept");
        } else {
            assert!(max <= r.queue_offset, "message {i} cut");
        }
    }
}

#[test]
fn truncate_cuts_log_queues_and_index() {
    let (_a, b, master, replica) = open_pair();
    let results = put_all(&master, &specs(120));
    let data = all_bytes(&master);
    feed(&replica, 0, &data, &[9999]);
    let seg = config(b.path()).mapped_file_size_commit_log as i64;

    let err = replica.truncate_commit_log(-1).unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    let mid = results
        .iter()
        .position(|r| r.commit_log_offset > seg + seg / 2)
        .unwrap();
    let err = replica
        .truncate_commit_log(results[mid].commit_log_offset + 1)
        .unwrap_err();
    assert!(err.to_string().contains("no record starts"), "{err}");

    // A record in the middle of a segment. Bytes a reader holds from past
    // the cut stay as they were.
    let held = replica
        .read_record(results[mid + 1].commit_log_offset)
        .unwrap();
    let before = held.to_vec();
    let to = results[mid].commit_log_offset;
    replica.truncate_commit_log(to).unwrap();
    check_cut(&replica, &results, mid);
    assert_eq!(held.to_vec(), before);
    // The master's bytes from the cut on make it whole again.
    feed(&replica, to, &data[to as usize..], &[3000]);
    assert_same(&master, &replica, 120);

    // A segment start, remembered across a restart.
    let at_seg = results
        .iter()
        .position(|r| r.commit_log_offset == seg)
        .unwrap();
    let to = results[at_seg].commit_log_offset;
    replica.truncate_commit_log(to).unwrap();
    drop(replica);
    let replica = open(config(b.path()));
    check_cut(&replica, &results, at_seg);
    feed(&replica, to, &data[to as usize..], &[3000]);
    assert_same(&master, &replica, 120);
}

#[tokio::test]
async fn cut_master_takes_new_writes_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let mut results = Vec::new();
    for i in 0..10 {
        results.push(
            store
                .put_message(msg("T", 0, body_of(i), &[("KEYS", &format!("k{i}"))]))
                .await
                .unwrap(),
        );
    }
    let held = store.get_messages("T", 0, 6, 32, 1 << 20, &|_| true);
    let before: Vec<Vec<u8>> = held.messages.iter().map(|m| m.to_vec()).collect();
    let to = results[6].commit_log_offset;
    let store2 = Arc::clone(&store);
    tokio::task::spawn_blocking(move || store2.truncate_commit_log(to))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.max_offset_in_queue("T", 0), 6);
    let r = store
        .put_message(msg("T", 0, "new", &[("KEYS", "fresh")]))
        .await
        .unwrap();
    assert_eq!((r.commit_log_offset, r.queue_offset), (to, 6));
    let got = read_queue(&store, "T", 0);
    assert_eq!(got.len(), 7);
    assert_eq!(got[6].body, Bytes::from("new"));
    assert!(store.query_by_key("T", "k7", 4, 0, i64::MAX).is_empty());
    assert_eq!(store.query_by_key("T", "fresh", 4, 0, i64::MAX), vec![to]);
    let after: Vec<Vec<u8>> = held.messages.iter().map(|m| m.to_vec()).collect();
    assert_eq!(
        before, after,
        "bytes handed out before the cut never change"
    );
}

#[test]
fn bad_replicated_data_is_refused_and_the_good_prefix_kept() {
    let (_a, _b, master, replica) = open_pair();
    let results = put_all(&master, &specs(30));
    let mut data = all_bytes(&master);
    let k = 12;
    let body_at = results[k].commit_log_offset as usize + 84 + 4;
    data[body_at + 2] ^= 0x40;
    let err = replica.append_replicated(0, &data).unwrap_err();
    assert!(matches!(err, PutError::MessageIllegal(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&results[k].commit_log_offset.to_string()) && msg.contains("CRC"),
        "{msg}"
    );
    assert_eq!(
        replica.max_commit_log_offset(),
        results[k].commit_log_offset
    );
    // The true bytes from there are taken.
    data[body_at + 2] ^= 0x40;
    let from = results[k].commit_log_offset;
    feed(&replica, from, &data[from as usize..], &[50_000]);
    assert_same(&master, &replica, 30);

    // Out of step: both offsets named.
    let max = replica.max_commit_log_offset();
    let err = replica.append_replicated(max + 8, b"x").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&(max + 8).to_string()) && msg.contains(&max.to_string()),
        "{msg}"
    );
    // Garbage is refused and leaves nothing behind.
    let err = replica.append_replicated(max, &[0xAB; 300]).unwrap_err();
    assert!(matches!(err, PutError::MessageIllegal(_)), "{err}");
    assert_eq!(replica.max_commit_log_offset(), max);
    let err = replica.append_replicated(max, &[0; 64]).unwrap_err();
    assert!(matches!(err, PutError::MessageIllegal(_)), "{err}");
    assert_same(&master, &replica, 30);
}

#[test]
fn segment_size_mismatch_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let master = open(config(a.path()));
    let mut bigger: StoreConfig = config(b.path());
    bigger.mapped_file_size_commit_log *= 2;
    let replica = open(bigger);
    put_all(&master, &specs(80));
    let data = all_bytes(&master);
    let err = replica.append_replicated(0, &data).unwrap_err();
    assert!(err.to_string().contains("mappedFileSizeCommitLog"), "{err}");
    assert!(replica.max_commit_log_offset() < 64 * 1024);
}
