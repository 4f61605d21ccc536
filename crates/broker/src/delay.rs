//! Delayed messages, as RocketMQ does them.
//!
//! A message with the `DELAY` property (a level of `messageDelayLevel`), and
//! every message a consumer sends back for a later retry, is stored first in
//! `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real topic and queue
//! in `REAL_TOPIC` / `REAL_QID`. Every level's queue is in delivery order
//! (same delay, increasing store time), so one cursor per level suffices:
//! this task moves each cursor over the messages that are due, storing each
//! into its real topic, and persists the cursors in `config/delayOffset.json`.
//! A crash between a delivery and the cursor's persistence delivers that
//! message again — at least once, never lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::message::{decode_properties, decode_record, property};
use meridian_store::GetStatus;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::topics::SCHEDULE_TOPIC;
use crate::BrokerInner;

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayOffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<i32, i64>,
}

pub struct DelayService {
    path: PathBuf,
    levels: Vec<u64>,
    /// level (1-based) → next offset to deliver in queue `level - 1`
    offsets: Mutex<BTreeMap<i32, i64>>,
    dirty: AtomicBool,
}

impl DelayService {
    pub fn open(root: &Path, levels: Vec<u64>) -> std::io::Result<Arc<DelayService>> {
        let path = root.join("config").join("delayOffset.json");
        let mut offsets = BTreeMap::new();
        if let Some(bytes) = meridian_store::config_file::load(&path)? {
            let f: DelayOffsetFile = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not valid delay offset JSON: {e}", path.display()),
                )
            })?;
            offsets = f.offset_table;
        }
        Ok(Arc::new(DelayService {
            path,
            levels,
            offsets: Mutex::new(offsets),
            dirty: AtomicBool::new(false),
        }))
    }

    /// Delay levels in milliseconds, level 1 first.
    pub fn levels(&self) -> &[u64] {
        &self.levels
    }

    pub fn max_level(&self) -> i32 {
        self.levels.len() as i32
    }

    fn offset(&self, level: i32) -> i64 {
        self.offsets.lock().get(&level).copied().unwrap_or(0)
    }

    fn set_offset(&self, level: i32, offset: i64) {
        self.offsets.lock().insert(level, offset);
        self.dirty.store(true, Ordering::Release);
    }

    /// The cursors as JSON (RocketMQ's delayOffset.json shape), for a
    /// slave's copy.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&DelayOffsetFile {
            offset_table: self.offsets.lock().clone(),
        })
        .unwrap_or_default()
    }

    /// Replace the cursors with the master's (slave only).
    pub fn replace_from_json(&self, bytes: &[u8]) -> Result<(), String> {
        let f: DelayOffsetFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut cur = self.offsets.lock();
        if *cur != f.offset_table {
            *cur = f.offset_table;
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    pub fn persist(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let f = DelayOffsetFile {
            offset_table: self.offsets.lock().clone(),
        };
        let result = serde_json::to_vec_pretty(&f)
            .map_err(std::io::Error::other)
            .and_then(|b| meridian_store::config_file::persist(&self.path, &b));
        if let Err(e) = result {
            self.dirty.store(true, Ordering::Release);
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist delay offsets");
        }
    }
}

/// The delivery loop.
pub async fn run(inner: Arc<BrokerInner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if inner.is_slave() {
            continue; // a Raft follower: the leader delivers
        }
        for level in 1..=inner.delay.max_level() {
            deliver_due(&inner, level).await;
        }
    }
}

/// Deliver every due message of one level.
async fn deliver_due(inner: &Arc<BrokerInner>, level: i32) {
    let queue_id = level - 1;
    let delay_ms = inner.delay.levels()[(level - 1) as usize] as i64;
    let mut offset = inner.delay.offset(level);
    loop {
        let got =
            inner
                .store
                .get_messages(SCHEDULE_TOPIC, queue_id, offset, 32, 1024 * 1024, &|_| true);
        if got.messages.is_empty() {
            if matches!(
                got.status,
                GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly
            ) {
                // Retention removed what the cursor pointed at, or the
                // store was rebuilt: continue from where the queue is.
                tracing::warn!(
                    level,
                    offset,
                    next = got.next_begin_offset,
                    "delay cursor moved"
                );
                inner.delay.set_offset(level, got.next_begin_offset);
            }
            return;
        }
        for record in &got.messages {
            let m = match decode_record(record) {
                Ok((m, _)) => m,
                Err(e) => {
                    tracing::error!(level, offset, error = %e, "unreadable delayed message skipped");
                    offset += 1;
                    inner.delay.set_offset(level, offset);
                    continue;
                }
            };
            if crate::now_ms() < m.store_timestamp + delay_ms {
                return;
            }
            let mut props = decode_properties(&m.properties);
            let real_topic = props
                .iter()
                .find(|(k, _)| k == property::REAL_TOPIC)
                .map(|(_, v)| v.clone());
            let real_qid = props
                .iter()
                .find(|(k, _)| k == property::REAL_QID)
                .and_then(|(_, v)| v.parse::<i32>().ok())
                .unwrap_or(0);
            let Some(real_topic) = real_topic else {
                tracing::error!(
                    level,
                    offset = m.queue_offset,
                    "delayed message without REAL_TOPIC skipped"
                );
                offset = m.queue_offset + 1;
                inner.delay.set_offset(level, offset);
                continue;
            };
            props.retain(|(k, _)| k != property::DELAY);
            let put =
                crate::store_again(&m, real_topic.clone(), real_qid, &props, inner.store_host);
            // The cursor moves only once the delivered message is held as
            // durably as a send: a new master then either has the message
            // or still has the cursor before it (a duplicate, never a loss).
            match inner.write(vec![put]).await {
                Ok(stored) if stored.is_held() => {}
                Ok(stored) => {
                    // Stored here, not yet on the slave: writing it again
                    // would deliver it twice, so wait for the slave instead.
                    tracing::warn!(level, topic = %real_topic, replicas = ?stored.replicas, "delayed delivery not replicated yet; waiting for the slave");
                    if !inner.wait_replicated(&stored).await {
                        return;
                    }
                }
                Err(e) => {
                    // Keep the cursor: the message is delivered on a later tick.
                    tracing::warn!(level, topic = %real_topic, error = ?e, "delayed delivery failed; will retry");
                    return;
                }
            }
            offset = m.queue_offset + 1;
            inner.delay.set_offset(level, offset);
        }
    }
}
