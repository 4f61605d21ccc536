//! Small stores and messages for tests: the store's own, and (with the
//! `test-util` feature) those of the crates built on it.

use bytes::Bytes;

use crate::{PutMessage, StoreConfig};

/// A store with 64 KiB segments and tiny queue and index files, so tests
/// cross file boundaries quickly.
pub fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = 64 * 1024;
    c.consume_queue_entries_per_file = 16;
    c.max_index_num = 128;
    c.max_hash_slot_num = 64;
    c.max_message_size = 16 * 1024;
    c.disk_max_used_space_ratio = 100;
    c.disk_full_ratio = 100;
    c
}

/// Message `i`: topic `T`, queue `i % 2`, key `k<i>`, a body of 100–1000 bytes.
pub fn msg(i: usize) -> PutMessage {
    PutMessage {
        topic: "T".into(),
        queue_id: (i % 2) as i32,
        flag: 0,
        body: Bytes::from(vec![b'a' + (i % 26) as u8; 100 + i * 37 % 900]),
        properties: format!("KEYS\u{1}k{i}\u{2}"),
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "10.0.0.1:1".parse().unwrap(),
        store_host: "10.0.0.2:2".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        at_queue_offset: None,
    }
}
