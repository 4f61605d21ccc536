//! What the broker still needs from the commit log, whatever retention
//! would otherwise delete.
//!
//! The store deletes commit-log segments older than `fileReservedTime`,
//! or the oldest ones when the disk is nearly full. A message the broker
//! acknowledged but has not delivered yet must outlive that: a timer
//! message waiting for its time (up to `timerMaxDelaySec`), a delayed
//! message waiting for its level, an undecided half message. The broker
//! names where each of those queues' needed records begin; the store asks
//! at every retention pass and keeps the segment holding the first of
//! them and every later one (`MessageStore::set_retention_floor`).
//!
//! Slaves and Raft followers give the same answer from what they hold (the
//! master's delay cursors and timer floor, copied; the decisions in the
//! replicated op queue), so a new master still has every record it needs.
//! An abandoned half message holds the floor only until `fileReservedTime`
//! (it is then discarded, see `transaction.rs`); timers and delayed
//! messages only until they are delivered.

use std::collections::BTreeMap;
use std::sync::Arc;

use meridian_store::RetentionHold;

use crate::delay::DelayService;
use crate::timer::TIMER_TOPIC;
use crate::topics::SCHEDULE_TOPIC;
use crate::transaction::{TransactionService, HALF_TOPIC};
use crate::BrokerInner;

/// Tell the store what the broker still needs. The callback holds the two
/// services, not the broker, so it never keeps the store alive.
pub fn install(inner: &BrokerInner) {
    let delay = inner.delay.clone();
    let transactions = inner.transactions.clone();
    inner
        .store
        .set_retention_floor(Some(Arc::new(move || holds(&delay, &transactions))));
}

/// Where the records still needed begin, queue by queue.
pub fn holds(delay: &DelayService, transactions: &TransactionService) -> Vec<RetentionHold> {
    vec![
        RetentionHold {
            topic: TIMER_TOPIC.to_string(),
            from: BTreeMap::from([(0, delay.timer_floor())]),
            reason: "timer messages waiting for their time",
        },
        // Every queue of the schedule topic, also another region's copies
        // not delivered from yet (held from their start).
        RetentionHold {
            topic: SCHEDULE_TOPIC.to_string(),
            from: delay.schedule_cursors(),
            reason: "delayed messages not yet delivered",
        },
        RetentionHold {
            topic: HALF_TOPIC.to_string(),
            from: BTreeMap::from([(0, transactions.retention_floor())]),
            reason: "undecided half messages",
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use meridian_protocol::message::{decode_record, encode_properties, property};
    use meridian_store::PutMessage;

    use super::*;
    use crate::test_util::broker;
    use crate::transaction::Verdict;

    /// Store a message of ~4 KiB through the broker's write path, as a send
    /// would (a DELAY level or timer property first moves it to its system
    /// topic); its commit-log offset.
    async fn send(b: &Arc<BrokerInner>, topic: &str, body: &str, props: &[(&str, &str)]) -> i64 {
        let props: Vec<(String, String)> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut msg = PutMessage {
            body: Bytes::from(format!("{body} {}", "x".repeat(4000))),
            ..b.own_message(topic, Bytes::new(), encode_properties(&props))
        };
        crate::processor::send::schedule_if_delayed(b, &mut msg);
        crate::timer::schedule_if_timed(b, &mut msg).unwrap();
        b.write(vec![msg]).await.unwrap().results[0].commit_log_offset
    }

    async fn filler(b: &Arc<BrokerInner>, n: usize) {
        for i in 0..n {
            send(b, "Filler", &format!("filler-{i}"), &[]).await;
        }
    }

    /// Bodies (first word) delivered to `Real`.
    fn delivered(b: &BrokerInner) -> Vec<String> {
        let got = b.store.get_messages("Real", 0, 0, 32, 1 << 20, &|_| true);
        got.messages
            .iter()
            .map(|r| {
                let (m, _) = decode_record(r).unwrap();
                let body = String::from_utf8_lossy(&m.body).into_owned();
                body.split(' ').next().unwrap_or_default().to_string()
            })
            .collect()
    }

    /// Retention passes (as when the disk is over diskMaxUsedSpaceRatio:
    /// any age) until the log starts past `offset`, or 20 s.
    async fn purge_past(b: &BrokerInner, offset: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.store.min_commit_log_offset() <= offset {
            assert!(Instant::now() < deadline, "retention never passed {offset}");
            b.store.flush().unwrap();
            b.store.delete_expired_files(true).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_delivered(b: &BrokerInner, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !delivered(b).iter().any(|d| d == body) {
            assert!(Instant::now() < deadline, "{body} never delivered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_records_outlive_retention_and_are_delivered_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments, deleted at any age when asked.
        let broker = broker(dir.path(), |c| {
            c.store.mapped_file_size_commit_log = 64 * 1024;
            c.store.max_message_size = 16 * 1024;
            c.store.message_delay_level = "3s 1h".to_string();
        })
        .await;
        let b = broker.inner().clone();
        // Each pending record with segments of other messages before and
        // after it: a delayed message (3 s), a timer message (6 s), an
        // undecided half message.
        filler(&b, 40).await;
        let delayed = send(&b, "Real", "delayed", &[(property::DELAY, "1")]).await;
        filler(&b, 40).await;
        let timer = send(&b, "Real", "timer", &[(property::TIMER_DELAY_MS, "6000")]).await;
        filler(&b, 40).await;
        let half = send(
            &b,
            crate::transaction::HALF_TOPIC,
            "committed",
            &[
                (property::PRODUCER_GROUP, "g"),
                (property::REAL_TOPIC, "Real"),
                (property::REAL_QID, "0"),
            ],
        )
        .await;
        filler(&b, 40).await;
        b.store.flush().unwrap();
        assert!(b.store.read_record(delayed).is_some() && delayed > 64 * 1024);

        // Only what lies before the first pending record goes, however
        // old the segments and however full the disk.
        assert!(b.store.delete_expired_files(true).unwrap() > 0);
        assert!(b.store.min_commit_log_offset() > 0);
        assert!(b.store.min_commit_log_offset() <= delayed);
        assert_eq!(b.store.retention_floor(), delayed);
        for offset in [delayed, timer, half] {
            assert!(b.store.read_record(offset).is_some());
        }

        // Delivered, the delayed message lets go; the timer still holds.
        wait_delivered(&b, "delayed").await;
        purge_past(&b, delayed).await;
        assert!(b.store.min_commit_log_offset() <= timer);
        assert!(b.store.read_record(timer).is_some());
        assert!(delivered(&b).iter().all(|d| d != "timer"), "timer early");

        wait_delivered(&b, "timer").await;
        purge_past(&b, timer).await;
        assert!(b.store.min_commit_log_offset() <= half);

        // Decided long after its neighbours went: committed and delivered.
        b.transactions
            .end(&b, "g", half, Verdict::Commit)
            .await
            .unwrap();
        wait_delivered(&b, "committed").await;
        assert_eq!(delivered(&b), ["delayed", "timer", "committed"]);
        purge_past(&b, half).await;
        broker.shutdown().await;
    }
}
