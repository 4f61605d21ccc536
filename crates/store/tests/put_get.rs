//! Put and get: what goes in comes out, byte for byte.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use meridian_protocol::message::{
    decode_record, property, sys_flag, tags_hash_code, BLANK_MAGIC_CODE,
};
use meridian_protocol::message_id::decode_offset_msg_id;
use meridian_store::{GetStatus, MessageStore, PutError, SCHEDULE_TOPIC};

#[tokio::test]
async fn put_get_round_trip_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let m = msg("TopicA", 2, "hello", &[("TAGS", "TagA"), ("KEYS", "k1 k2")]);
    let r = store.put_message(m.clone()).await.unwrap();
    assert_eq!(r.commit_log_offset, 0);
    assert_eq!(r.queue_offset, 0);
    assert_eq!(decode_offset_msg_id(&r.msg_id).unwrap(), (store_host(), 0));

    let got = store.get_messages("TopicA", 2, 0, 32, 1 << 20, &|_| true);
    assert_eq!(got.status, GetStatus::Found);
    assert_eq!(got.next_begin_offset, 1);
    assert_eq!((got.min_offset, got.max_offset), (0, 1));
    assert_eq!(got.messages.len(), 1);
    assert_eq!(got.total_bytes, r.wrote_bytes as usize);
    let (ext, len) = decode_record(&got.messages[0]).unwrap();
    assert_eq!(len, got.messages[0].len());
    assert_eq!(ext.topic, "TopicA");
    assert_eq!(ext.queue_id, 2);
    assert_eq!(ext.body, Bytes::from("hello"));
    assert_eq!(ext.properties, m.properties);
    assert_eq!(ext.queue_offset, 0);
    assert_eq!(ext.commit_log_offset, r.commit_log_offset);
    assert_eq!(ext.store_timestamp, r.store_timestamp);
    assert_eq!(ext.born_host, born());
    assert_eq!(ext.store_host, store_host());
    assert_eq!(ext.tags(), Some("TagA"));
    // The same bytes by commit-log offset.
    assert_eq!(store.read_record(0).unwrap(), got.messages[0]);
    assert_eq!(
        store.read_record_at(0, r.wrote_bytes).unwrap(),
        got.messages[0]
    );
    assert_eq!(store.read_record(1), None);
    assert_eq!(store.max_commit_log_offset(), r.wrote_bytes as i64);
    assert_eq!(store.topics_and_queues(), vec![("TopicA".to_string(), 2)]);

    let stats = store.stats();
    assert_eq!(stats.put_message_count, 1);
    assert_eq!(stats.queue_count, 1);
}

#[tokio::test]
async fn properties_get_a_trailing_separator() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let mut m = msg("T", 0, "b", &[]);
    m.properties = "A\u{1}1".to_string();
    store.put_message(m).await.unwrap();
    let got = read_queue(&store, "T", 0);
    assert_eq!(got[0].properties, "A\u{1}1\u{2}");
}

#[tokio::test]
async fn get_statuses_follow_rocketmq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let r = store.get_messages("none", 0, 0, 32, 1 << 20, &|_| true);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetStatus::NoMessageInQueue, 0)
    );
    for i in 0..3 {
        store
            .put_message(msg("T", 0, body_of(i), &[]))
            .await
            .unwrap();
    }
    let r = store.get_messages("T", 0, 3, 32, 1 << 20, &|_| true);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetStatus::OffsetOverflowOne, 3)
    );
    let r = store.get_messages("T", 0, 9, 32, 1 << 20, &|_| true);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetStatus::OffsetOverflowBadly, 3)
    );
    let r = store.get_messages("T", 0, -1, 32, 1 << 20, &|_| true);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetStatus::OffsetTooSmall, 0)
    );
    let r = store.get_messages("T", 0, 1, 32, 1 << 20, &|_| false);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetStatus::NoMatchedMessage, 3)
    );
    let r = store.get_messages("T", 0, 0, 2, 1 << 20, &|_| true);
    assert_eq!(
        (r.status, r.messages.len(), r.next_begin_offset),
        (GetStatus::Found, 2, 2)
    );
    // A byte limit still returns the first message.
    let r = store.get_messages("T", 0, 0, 32, 1, &|_| true);
    assert_eq!((r.messages.len(), r.next_begin_offset), (1, 1));
}

#[tokio::test]
async fn filter_sees_tag_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    for (i, tag) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        store
            .put_message(msg("T", 1, body_of(i), &[("TAGS", tag)]))
            .await
            .unwrap();
    }
    let want = tags_hash_code("a");
    let r = store.get_messages("T", 1, 0, 32, 1 << 20, &|code| code == want);
    let bodies: Vec<Bytes> = r
        .messages
        .iter()
        .map(|m| decode_record(m).unwrap().0.body)
        .collect();
    assert_eq!(bodies, vec![body_of(0), body_of(2), body_of(4)]);
    assert_eq!(r.next_begin_offset, 5);
}

#[tokio::test]
async fn batch_is_contiguous_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let listener_calls = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::clone(&listener_calls);
    store.set_arrival_listener(Arc::new(move |t: &str, q: i32, max: i64| {
        calls.lock().unwrap().push((t.to_string(), q, max));
    }));
    store.put_message(msg("T", 0, "first", &[])).await.unwrap();
    let batch: Vec<_> = (0..10)
        .map(|i| msg("T", 0, body_of(i), &[("KEYS", "batchkey")]))
        .collect();
    let results = store.put_messages(batch).await.unwrap();
    assert_eq!(results.len(), 10);
    for w in results.windows(2) {
        assert_eq!(
            w[0].commit_log_offset + w[0].wrote_bytes as i64,
            w[1].commit_log_offset
        );
        assert_eq!(w[0].queue_offset + 1, w[1].queue_offset);
        assert_eq!(w[0].store_timestamp, w[1].store_timestamp);
    }
    assert_eq!(results[0].queue_offset, 1);
    // One wake-up for the single put, one for the whole batch.
    assert_eq!(
        *listener_calls.lock().unwrap(),
        vec![("T".to_string(), 0, 1), ("T".to_string(), 0, 11)]
    );
    let all = read_queue(&store, "T", 0);
    assert_eq!(all.len(), 11);
    for (i, m) in all[1..].iter().enumerate() {
        assert_eq!(m.body, body_of(i));
        assert_eq!(m.queue_offset, i as i64 + 1);
    }
    // The batch's bytes can be read back in one piece.
    let total: i32 = results.iter().map(|r| r.wrote_bytes).sum();
    let span = store
        .read_record_at(results[0].commit_log_offset, total)
        .unwrap();
    assert_eq!(meridian_protocol::message::decode_records(&span).len(), 10);
}

#[tokio::test]
async fn segments_roll_with_a_blank_marker() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let seg = c.mapped_file_size_commit_log as i64;
    let store = open(c);
    let mut results = Vec::new();
    for i in 0..40 {
        let body = Bytes::from(vec![b'a' + (i % 26) as u8; 4000]);
        results.push(store.put_message(msg("Roll", 0, body, &[])).await.unwrap());
    }
    let rolled = results
        .windows(2)
        .find(|w| w[1].commit_log_offset == seg)
        .expect("a record starts the second segment");
    let blank_at = rolled[0].commit_log_offset + rolled[0].wrote_bytes as i64;
    assert!(blank_at < seg);
    for r in &results {
        let end = r.commit_log_offset + r.wrote_bytes as i64;
        assert_eq!(
            r.commit_log_offset / seg,
            (end - 1) / seg,
            "a record never straddles segments"
        );
    }
    let marker = store.read_record_at(blank_at, 8).unwrap();
    assert_eq!(&marker[0..4], &((seg - blank_at) as i32).to_be_bytes());
    assert_eq!(&marker[4..8], &BLANK_MAGIC_CODE.to_be_bytes());
    assert!(dir
        .path()
        .join("commitlog")
        .join("00000000000000065536")
        .exists());
    let all = read_queue(&store, "Roll", 0);
    assert_eq!(all.len(), 40);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, m)| m.body[0] == b'a' + (i % 26) as u8));
}

#[tokio::test]
async fn consume_queue_files_roll() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    for i in 0..50 {
        store
            .put_message(msg("CQ", 3, body_of(i), &[]))
            .await
            .unwrap();
    }
    let qdir = dir.path().join("consumequeue").join("CQ").join("3");
    let mut files: Vec<String> = std::fs::read_dir(&qdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "00000000000000000000",
            "00000000000000000320",
            "00000000000000000640",
            "00000000000000000960"
        ]
    );
    assert_eq!(store.max_offset_in_queue("CQ", 3), 50);
    let got = read_queue(&store, "CQ", 3);
    assert_eq!(got.len(), 50);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, m)| m.body == body_of(i) && m.queue_offset == i as i64));
}

#[tokio::test]
async fn offset_by_time_finds_first_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let mut times = Vec::new();
    for i in 0..6 {
        times.push(
            store
                .put_message(msg("Time", 0, body_of(i), &[]))
                .await
                .unwrap()
                .store_timestamp,
        );
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    for (i, t) in times.iter().enumerate() {
        assert_eq!(store.offset_by_time("Time", 0, *t), i as i64);
        assert_eq!(store.store_time_at("Time", 0, i as i64), Some(*t));
    }
    assert_eq!(store.offset_by_time("Time", 0, times[2] - 1), 2);
    assert_eq!(store.offset_by_time("Time", 0, 0), 0);
    assert_eq!(store.offset_by_time("Time", 0, times[5] + 1), 6);
    assert_eq!(store.offset_by_time("None", 0, 0), 0);
    assert_eq!(store.earliest_store_time("Time", 0), Some(times[0]));
}

#[tokio::test]
async fn query_by_key_and_uniq_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let mut offsets = Vec::new();
    for i in 0..200 {
        let keys = format!("order-{} common", i % 7);
        let uniq = format!("UNIQ{i:028}");
        let r = store
            .put_message(msg(
                "Q",
                0,
                body_of(i),
                &[
                    ("KEYS", &keys),
                    (property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &uniq),
                ],
            ))
            .await
            .unwrap();
        offsets.push(r.commit_log_offset);
    }
    let hits = store.query_by_key("Q", "order-3", 100, 0, i64::MAX);
    let want: Vec<i64> = (0..200)
        .rev()
        .filter(|i| i % 7 == 3)
        .map(|i| offsets[i])
        .collect();
    assert_eq!(hits, want, "newest first, every match");
    assert_eq!(
        store.query_by_key("Q", "common", 5, 0, i64::MAX),
        offsets.iter().rev().take(5).copied().collect::<Vec<_>>()
    );
    assert_eq!(
        store.query_by_key("Q", &format!("UNIQ{:028}", 42), 10, 0, i64::MAX),
        vec![offsets[42]]
    );
    assert!(store
        .query_by_key("Other", "order-3", 10, 0, i64::MAX)
        .is_empty());
    assert!(store.query_by_key("Q", "order-3", 10, 0, 1).is_empty());
    assert!(store.query_by_key("Q", "nope", 10, 0, i64::MAX).is_empty());
}

#[tokio::test]
async fn schedule_topic_tag_code_is_delivery_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let r = store
        .put_message(msg(
            SCHEDULE_TOPIC,
            2,
            "later",
            &[("DELAY", "3"), ("TAGS", "x")],
        ))
        .await
        .unwrap();
    let codes = Mutex::new(Vec::new());
    store.get_messages(SCHEDULE_TOPIC, 2, 0, 1, 1 << 20, &|c| {
        codes.lock().unwrap().push(c);
        true
    });
    assert_eq!(*codes.lock().unwrap(), vec![r.store_timestamp + 10_000]);
}

#[tokio::test]
async fn prepared_transactions_get_no_queue_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let mut m = msg("Tx", 0, "half", &[]);
    m.sys_flag = sys_flag::TRANSACTION_PREPARED_TYPE;
    let r = store.put_message(m).await.unwrap();
    assert_eq!(r.queue_offset, 0);
    assert_eq!(store.max_offset_in_queue("Tx", 0), 0);
    assert!(store.read_record(r.commit_log_offset).is_some());
    let mut m = msg("Tx", 0, "commit", &[]);
    m.sys_flag = sys_flag::TRANSACTION_COMMIT_TYPE;
    assert_eq!(store.put_message(m).await.unwrap().queue_offset, 0);
    assert_eq!(store.max_offset_in_queue("Tx", 0), 1);
}

#[tokio::test]
async fn illegal_messages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let too_big = msg("T", 0, vec![0u8; 16 * 1024 + 1], &[]);
    assert!(matches!(
        store.put_message(too_big).await,
        Err(PutError::MessageIllegal(_))
    ));
    for topic in ["", "../etc", "a/b", &"t".repeat(256)] {
        assert!(
            matches!(
                store.put_message(msg(topic, 0, "x", &[])).await,
                Err(PutError::MessageIllegal(_))
            ),
            "{topic:?}"
        );
    }
    assert!(matches!(
        store.put_message(msg("T", -1, "x", &[])).await,
        Err(PutError::MessageIllegal(_))
    ));
    let long_props = "K\u{1}".to_string() + &"v".repeat(40_000);
    let mut m = msg("T", 0, "x", &[]);
    m.properties = long_props;
    assert!(matches!(
        store.put_message(m).await,
        Err(PutError::MessageIllegal(_))
    ));
    // A long retry topic is fine (v2 record layout).
    let long = format!("%RETRY%{}", "g".repeat(150));
    store.put_message(msg(&long, 0, "x", &[])).await.unwrap();
    assert_eq!(read_queue(&store, &long, 0)[0].topic, long);
    assert_eq!(store.stats().put_failures, 7);
}

#[tokio::test]
async fn delete_topic_drops_its_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    store.put_message(msg("Gone", 0, "x", &[])).await.unwrap();
    store.put_message(msg("Kept", 0, "y", &[])).await.unwrap();
    store.delete_topic("Gone");
    assert_eq!(store.max_offset_in_queue("Gone", 0), 0);
    assert!(!dir.path().join("consumequeue").join("Gone").exists());
    assert_eq!(store.topics_and_queues(), vec![("Kept".to_string(), 0)]);
    drop(store);
    let store = open(config(dir.path()));
    assert_eq!(store.topics_and_queues(), vec![("Kept".to_string(), 0)]);
}

#[tokio::test]
async fn shutdown_refuses_puts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    store.shutdown();
    assert!(matches!(
        store.put_message(msg("T", 0, "x", &[])).await,
        Err(PutError::ServiceNotAvailable(_))
    ));
}

#[test]
fn a_store_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(config(dir.path()));
    assert!(matches!(
        MessageStore::open(config(dir.path())),
        Err(meridian_store::StoreError::Locked(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_run_while_writers_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            for i in 0..500 {
                store
                    .put_message(msg("RW", 0, body_of(i), &[]))
                    .await
                    .unwrap();
            }
            done.store(1, Ordering::Release);
        })
    };
    let mut next = 0i64;
    let mut seen = 0usize;
    while seen < 500 {
        let r = store.get_messages("RW", 0, next, 32, 1 << 20, &|_| true);
        for m in &r.messages {
            let (ext, _) = decode_record(m).unwrap();
            assert_eq!(ext.queue_offset, next);
            assert_eq!(ext.body, body_of(seen));
            next += 1;
            seen += 1;
        }
        if r.messages.is_empty() {
            tokio::task::yield_now().await;
        }
    }
    writer.await.unwrap();
    assert_eq!(done.load(Ordering::Acquire), 1);
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MessageStore>();
    assert_send_sync::<meridian_store::GetResult>();
    assert_send_sync::<PutError>();
}

/// A copy of another region's queue: each record is stored at its origin
/// offset or not at all, so the same record arriving twice (two relay
/// paths, a relay restarted) is refused, and a batch that does not fit is
/// refused whole. The copy survives a restart at the same offsets.
#[tokio::test]
async fn copy_queue_takes_records_only_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path()));
    let at = |o: i64| {
        let mut m = msg("T", 3, format!("origin {o}"), &[("KEYS", &format!("k{o}"))]);
        m.at_queue_offset = Some(o);
        m
    };
    // An empty queue starts where its first record says (the origin's
    // older records were already gone).
    let r = store.put_message(at(5)).await.unwrap();
    assert_eq!(r.queue_offset, 5);
    let mismatch = |e: PutError| match e {
        PutError::QueueOffsetMismatch { wanted, next, .. } => (wanted, next),
        other => panic!("expected a queue offset mismatch, got {other}"),
    };
    // Already there.
    assert_eq!(
        mismatch(store.put_message(at(5)).await.unwrap_err()),
        (5, 6)
    );
    // A gap.
    assert_eq!(
        mismatch(store.put_message(at(7)).await.unwrap_err()),
        (7, 6)
    );
    let before = store.max_commit_log_offset();
    // A batch starting with a record already there: nothing written.
    assert_eq!(
        mismatch(store.put_messages(vec![at(5), at(6)]).await.unwrap_err()),
        (5, 6)
    );
    // A batch whose second record skips one: nothing written either.
    assert_eq!(
        mismatch(store.put_messages(vec![at(6), at(8)]).await.unwrap_err()),
        (8, 7)
    );
    assert_eq!(store.max_commit_log_offset(), before);
    store.put_messages(vec![at(6), at(7)]).await.unwrap();
    // A plain put continues the same queue.
    let plain = store.put_message(msg("T", 3, "local", &[])).await.unwrap();
    assert_eq!(plain.queue_offset, 8);

    let offsets = |s: &MessageStore| {
        read_queue(s, "T", 3)
            .iter()
            .map(|m| {
                (
                    m.queue_offset,
                    String::from_utf8_lossy(&m.body).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let expect = vec![
        (5, "origin 5".to_string()),
        (6, "origin 6".to_string()),
        (7, "origin 7".to_string()),
        (8, "local".to_string()),
    ];
    assert_eq!(offsets(&store), expect);
    assert_eq!(store.min_offset_in_queue("T", 3), 5);
    store.shutdown();
    drop(store);
    let store = open(config(dir.path()));
    assert_eq!(offsets(&store), expect);
    assert_eq!(
        mismatch(store.put_message(at(8)).await.unwrap_err()),
        (8, 9)
    );
}
