//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use meridian_protocol::message::{decode_record, encode_properties, MessageExt};
use meridian_store::{MessageStore, PutMessage, StoreConfig};

/// Small files so tests roll segments and queue files quickly, flushed and
/// checkpointed often.
pub fn config(dir: &Path) -> StoreConfig {
    let mut c = meridian_store::test_util::config(dir);
    c.flush_interval_ms = 10;
    c.checkpoint_interval_ms = 50;
    c
}

pub fn open(c: StoreConfig) -> Arc<MessageStore> {
    MessageStore::open(c).expect("open store").0
}

pub fn born() -> SocketAddr {
    "10.0.0.7:40123".parse().unwrap()
}

pub fn store_host() -> SocketAddr {
    "127.0.0.1:10911".parse().unwrap()
}

pub fn msg(
    topic: &str,
    queue_id: i32,
    body: impl Into<Bytes>,
    props: &[(&str, &str)],
) -> PutMessage {
    let props: Vec<(String, String)> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PutMessage {
        topic: topic.to_string(),
        queue_id,
        flag: 0,
        body: body.into(),
        properties: encode_properties(&props),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: born(),
        store_host: store_host(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        at_queue_offset: None,
    }
}

/// Every message of a queue, decoded, read from offset 0 on.
pub fn read_queue(store: &MessageStore, topic: &str, queue_id: i32) -> Vec<MessageExt> {
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue(topic, queue_id);
    loop {
        let r = store.get_messages(topic, queue_id, offset, 32, 1 << 20, &|_| true);
        for m in &r.messages {
            out.push(decode_record(m).expect("stored record decodes").0);
        }
        if r.next_begin_offset <= offset || r.messages.is_empty() {
            break;
        }
        offset = r.next_begin_offset;
    }
    out
}

pub fn body_of(i: usize) -> Bytes {
    Bytes::from(format!("message body number {i} {}", "x".repeat(i % 300)))
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
