//! Reading a topic back from a broker the way a consumer would, with plain
//! pulls from offset 0, and checking that the consume queues agree with the
//! commit log: each queue is a gap-free run of offsets whose records carry
//! that topic, queue and offset.

use std::collections::HashMap;

use meridian_client::Admin;
use meridian_protocol::codes::response_code;
use meridian_protocol::message::MessageExt;

/// Every message of queue `queue_id`, in queue order, from its first
/// offset on.
pub async fn read_queue(admin: &Admin, addr: &str, topic: &str, queue_id: i32) -> Vec<MessageExt> {
    let mut all = Vec::new();
    let mut offset = 0;
    // A member that has just started may answer an error (its topic table
    // not caught up yet) for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, next, msgs) = match admin
            .pull(addr, "queue-checker", topic, queue_id, offset, 32)
            .await
        {
            Ok(answer) => answer,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("pull from {addr} refused, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("pull from {addr}: {e}"),
        };
        if code != response_code::SUCCESS {
            if all.is_empty() && msgs.is_empty() && next > offset {
                // The queue starts later (a copy of a queue whose first
                // records were already gone): read from there.
                offset = next;
                continue;
            }
            return all;
        }
        assert!(!msgs.is_empty(), "a FOUND pull must carry messages");
        for m in msgs {
            assert_eq!(
                m.topic, topic,
                "consume queue points at another topic's record"
            );
            assert_eq!(
                m.queue_id, queue_id,
                "consume queue points at another queue's record"
            );
            assert_eq!(
                m.queue_offset, offset,
                "queue {queue_id} on {addr} has a gap or a misplaced entry"
            );
            offset += 1;
            all.push(m);
        }
        assert_eq!(next, offset, "next offset disagrees with what was read");
    }
}

/// How many times each message key appears in queues `0..queues`.
pub async fn count_keys(
    admin: &Admin,
    addr: &str,
    topic: &str,
    queues: i32,
) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for q in 0..queues {
        for m in read_queue(admin, addr, topic, q).await {
            if let Some(k) = m.keys().next() {
                *seen.entry(k.to_string()).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// Every message of `topic` on the broker at `addr`, queue by queue (own
/// queues and copies), each read with [`read_queue`]; empty when the
/// broker does not have the topic.
pub async fn read_topic(admin: &Admin, addr: &str, topic: &str) -> Vec<MessageExt> {
    let Ok(configs) = admin.all_topic_config(addr).await else {
        return Vec::new();
    };
    let Some(cfg) = configs.get(topic) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for q in 0..cfg.read_queue_nums.max(cfg.write_queue_nums) {
        all.extend(read_queue(admin, addr, topic, q).await);
    }
    all
}
