//! Helpers shared by the HA tests: small stores, messages, and comparing
//! two stores the way a user would see them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_ha::HaConfig;
use meridian_protocol::message::encode_properties;
use meridian_store::{MessageStore, PutMessage, PutResult, StoreConfig};

/// Small segments so a few hundred messages span several of them.
pub fn store_config(dir: &Path) -> StoreConfig {
    let mut c = meridian_store::test_util::config(dir);
    c.flush_interval_ms = 10;
    c.checkpoint_interval_ms = 50;
    c
}

/// Log lines go to the test's captured output (shown when it fails);
/// `RUST_LOG` picks the level, `info` if unset.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub fn open(dir: &Path) -> Arc<MessageStore> {
    init_logging();
    MessageStore::open(store_config(dir)).expect("open store").0
}

/// Quick heartbeats and housekeeping so failures show within seconds.
pub fn ha_config() -> HaConfig {
    HaConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        transfer_batch_size: 32 * 1024,
        heartbeat_interval: Duration::from_millis(200),
        housekeeping_interval: Duration::from_secs(2),
        max_gap_not_in_sync: 256 * 1024 * 1024,
        ..Default::default()
    }
}

pub fn message(i: usize) -> PutMessage {
    let props = encode_properties(&[
        ("KEYS".to_string(), format!("key-{i}")),
        ("TAGS".to_string(), format!("tag{}", i % 3)),
    ]);
    PutMessage {
        topic: format!("topic{}", i % 2),
        queue_id: (i % 4) as i32,
        flag: 0,
        body: Bytes::from(format!("body {i} {}", "x".repeat((i * 131) % 2000))),
        properties: props,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.0.0.7:40123".parse::<SocketAddr>().unwrap(),
        store_host: "127.0.0.1:10911".parse::<SocketAddr>().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        at_queue_offset: None,
    }
}

/// Put messages `from..to`; returns their results.
pub async fn put_range(store: &MessageStore, from: usize, to: usize) -> Vec<PutResult> {
    let mut out = Vec::new();
    for i in from..to {
        out.push(store.put_message(message(i)).await.unwrap());
    }
    out
}

/// Poll `cond` until it holds, or panic after `limit` with `what`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const LONG: Duration = Duration::from_secs(20);

/// Wait until the slave's commit log is as long as the master's.
pub async fn caught_up(master: &MessageStore, slave: &MessageStore) {
    eventually(LONG, "the slave to catch up", || {
        slave.max_commit_log_offset() == master.max_commit_log_offset()
    })
    .await;
}

fn all_bytes(store: &MessageStore) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = store.min_commit_log_offset();
    while let Some(chunk) = store.read_commit_log(at, 1 << 20) {
        if chunk.is_empty() {
            break;
        }
        at += chunk.len() as i64;
        out.extend_from_slice(&chunk);
    }
    out
}

fn queue(store: &MessageStore, topic: &str, q: i32) -> (i64, i64, Vec<Bytes>) {
    let (min, max) = (
        store.min_offset_in_queue(topic, q),
        store.max_offset_in_queue(topic, q),
    );
    let mut records = Vec::new();
    let mut offset = min;
    while offset < max {
        let r = store.get_messages(topic, q, offset, 32, 1 << 20, &|_| true);
        records.extend(r.messages.iter().cloned());
        assert!(r.next_begin_offset > offset);
        offset = r.next_begin_offset;
    }
    (min, max, records)
}

/// Same commit log, same queues (entries and records), same key index.
pub fn assert_same(master: &MessageStore, slave: &MessageStore, keys: usize) {
    assert_eq!(
        (slave.min_commit_log_offset(), slave.max_commit_log_offset()),
        (
            master.min_commit_log_offset(),
            master.max_commit_log_offset()
        )
    );
    assert!(all_bytes(slave) == all_bytes(master), "commit logs differ");
    for topic in ["topic0", "topic1"] {
        for q in 0..4 {
            assert_eq!(
                queue(slave, topic, q),
                queue(master, topic, q),
                "{topic}/{q}"
            );
        }
    }
    for i in 0..keys {
        let topic = format!("topic{}", i % 2);
        let key = format!("key-{i}");
        assert_eq!(
            slave.query_by_key(&topic, &key, 8, 0, i64::MAX),
            master.query_by_key(&topic, &key, 8, 0, i64::MAX),
            "{key}"
        );
    }
}
