//! Delayed messages, as RocketMQ does them.
//!
//! A message with the `DELAY` property (a level of `messageDelayLevel`), and
//! every message a consumer sends back for a later retry, is stored first in
//! `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real topic and queue
//! in `REAL_TOPIC` / `REAL_QID`. Every level's queue is in delivery order
//! (same delay, increasing store time), so one cursor per level suffices:
//! this task moves each cursor over the messages that are due, storing each
//! into its real topic, and persists the cursors in `config/delayOffset.json`.
//!
//! Every delivery carries `MERIDIAN_SCHEDULED`, the global identity of the
//! schedule record it came from, and is indexed under it; a delivery whose
//! identity the broker already holds is not made again. So a crash between
//! a delivery and the cursor's persistence does not deliver twice.
//!
//! Across regions, relays copy `SCHEDULE_TOPIC_XXXX` like any topic (its
//! records of unrelayed topics as placeholders). A copy of another
//! region's level queue is delivered here only `delayTakeoverGraceMs`
//! after its time, and only the records whose delivery by their own region
//! has not arrived by then (the region is down, or cut off); a delivery
//! relayed in later, for an identity delivered here, is stored as a
//! placeholder (see the relay processor). Each region holds one delivery
//! of each delayed message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::message::{decode_properties, decode_record, property, MessageExt};
use meridian_protocol::origin::OriginQueue;
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
    /// Timer messages: every record of the timer queue below this offset
    /// is delivered (see `timer.rs`).
    #[serde(default)]
    timer_floor: i64,
}

pub struct DelayService {
    path: PathBuf,
    levels: Vec<u64>,
    /// level (1-based) → next offset to deliver in queue `level - 1`
    offsets: Mutex<BTreeMap<i32, i64>>,
    timer_floor: AtomicI64,
    dirty: AtomicBool,
}

impl DelayService {
    pub fn open(root: &Path, levels: Vec<u64>) -> std::io::Result<Arc<DelayService>> {
        let path = root.join("config").join("delayOffset.json");
        let mut offsets = BTreeMap::new();
        let mut timer_floor = 0;
        if let Some(f) = crate::load_json::<DelayOffsetFile>(&path, "delay offset")? {
            offsets = f.offset_table;
            timer_floor = f.timer_floor;
        }
        Ok(Arc::new(DelayService {
            path,
            levels,
            offsets: Mutex::new(offsets),
            timer_floor: AtomicI64::new(timer_floor),
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

    /// Each queue of `SCHEDULE_TOPIC_XXXX` with a cursor: queue id → the
    /// first queue offset not yet delivered (a queue without one is
    /// delivered from its start).
    pub fn schedule_cursors(&self) -> BTreeMap<i32, i64> {
        self.offsets
            .lock()
            .iter()
            .map(|(&key, &offset)| (key - 1, offset))
            .collect()
    }

    /// The cursors as JSON (RocketMQ's delayOffset.json shape), for a
    /// slave's copy.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.file()).unwrap_or_default()
    }

    fn file(&self) -> DelayOffsetFile {
        DelayOffsetFile {
            offset_table: self.offsets.lock().clone(),
            timer_floor: self.timer_floor(),
        }
    }

    /// Every timer record below this offset is delivered.
    pub fn timer_floor(&self) -> i64 {
        self.timer_floor.load(Ordering::Acquire)
    }

    pub fn set_timer_floor(&self, floor: i64) {
        if self.timer_floor.swap(floor, Ordering::AcqRel) != floor {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Replace the cursors with the master's (slave only).
    pub fn replace_from_json(&self, bytes: &[u8]) -> Result<(), String> {
        let f: DelayOffsetFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        self.set_timer_floor(f.timer_floor);
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
        let f = self.file();
        let result = crate::persist_json(&self.path, &f);
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
            inner.timers.stand_down();
            continue; // a slave or Raft follower: the master delivers
        }
        for s in schedules(&inner) {
            deliver_due(&inner, &s).await;
        }
        crate::timer::deliver_due(&inner).await;
    }
}

/// One queue of `SCHEDULE_TOPIC_XXXX` and how its records come due.
struct Schedule {
    queue_id: i32,
    /// Its cursor's key in `delayOffset.json`: the level of an own queue
    /// (`queue_id + 1`), and likewise `queue_id + 1` for a copy.
    key: i32,
    delay_ms: i64,
    /// For a copy of another region's level queue: where it comes from.
    /// Its records come due `delayTakeoverGraceMs` after their time, and
    /// only if that region's own delivery has not arrived by then.
    copy: Option<OriginQueue>,
}

/// Every level's own queue, then the copies of other regions' level queues
/// that relays brought here.
fn schedules(inner: &BrokerInner) -> Vec<Schedule> {
    let levels = inner.delay.levels();
    let mut out: Vec<Schedule> = (0..levels.len() as i32)
        .map(|q| Schedule {
            queue_id: q,
            key: q + 1,
            delay_ms: levels[q as usize] as i64,
            copy: None,
        })
        .collect();
    if let Some(cfg) = inner.topics.get(SCHEDULE_TOPIC) {
        for (q, origin) in crate::topics::copy_queues(&cfg) {
            let Some(delay) = usize::try_from(origin.queue_id)
                .ok()
                .and_then(|l| levels.get(l))
            else {
                continue; // a level this broker does not have
            };
            out.push(Schedule {
                queue_id: q,
                key: q + 1,
                delay_ms: *delay as i64,
                copy: Some(origin),
            });
        }
    }
    out
}

/// Deliver every due message of one schedule queue.
async fn deliver_due(inner: &Arc<BrokerInner>, s: &Schedule) {
    let mut offset = inner.delay.offset(s.key);
    let grace = if s.copy.is_some() {
        inner.config.delay_takeover_grace_ms as i64
    } else {
        0
    };
    loop {
        let got =
            inner
                .store
                .get_messages(SCHEDULE_TOPIC, s.queue_id, offset, 32, 1024 * 1024, &|_| {
                    true
                });
        if got.messages.is_empty() {
            if matches!(
                got.status,
                GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly
            ) {
                // Retention removed what the cursor pointed at, or the
                // store was rebuilt: continue from where the queue is.
                tracing::warn!(
                    queue = s.queue_id,
                    offset,
                    next = got.next_begin_offset,
                    "delay cursor moved"
                );
                inner.delay.set_offset(s.key, got.next_begin_offset);
            }
            return;
        }
        for record in &got.messages {
            let m = match decode_record(record) {
                Ok((m, _)) => m,
                Err(e) => {
                    tracing::error!(queue = s.queue_id, offset, error = %e, "unreadable delayed message skipped");
                    offset += 1;
                    inner.delay.set_offset(s.key, offset);
                    continue;
                }
            };
            if m.property(property::FILTERED).is_some() {
                // A placeholder: the relay did not carry this one here.
                offset = m.queue_offset + 1;
                inner.delay.set_offset(s.key, offset);
                continue;
            }
            // A copy comes due on its origin's clock.
            let stored_at = match s.copy {
                Some(_) => m
                    .property(property::ORIGIN_STORE_TIME)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(m.store_timestamp),
                None => m.store_timestamp,
            };
            if crate::now_ms() < stored_at + s.delay_ms + grace {
                return;
            }
            match deliver(inner, s, &m).await {
                Delivery::Done => {}
                Delivery::Later => return,
            }
            offset = m.queue_offset + 1;
            inner.delay.set_offset(s.key, offset);
        }
    }
}

pub(crate) enum Delivery {
    /// Delivered, already held, or undeliverable: move the cursor on.
    Done,
    /// Try again on a later tick; the cursor stays.
    Later,
}

/// Deliver one due record of a level queue (or of a copy of another
/// region's).
async fn deliver(inner: &Arc<BrokerInner>, s: &Schedule, m: &MessageExt) -> Delivery {
    let identity = match &s.copy {
        Some(origin) => m
            .property(property::ORIGIN)
            .map(str::to_string)
            .unwrap_or_else(|| origin.message_id(m.queue_offset)),
        None => OriginQueue::new(
            &inner.config.region_id,
            &inner.config.broker_name,
            s.queue_id,
        )
        .message_id(m.queue_offset),
    };
    deliver_scheduled(inner, m, identity, s.copy.is_some()).await
}

/// Store a due message (of the schedule topic or the timer topic) into its
/// real topic, unless this broker already holds its delivery (made here
/// before a crash, or made by the region that scheduled it and relayed
/// here): one delivery per `identity`. `foreign`: the record is another
/// region's, whose queue id is mapped onto this region's queues.
pub(crate) async fn deliver_scheduled(
    inner: &Arc<BrokerInner>,
    m: &MessageExt,
    identity: String,
    foreign: bool,
) -> Delivery {
    let mut props = decode_properties(&m.properties);
    let real_topic = props
        .iter()
        .find(|(k, _)| k == property::REAL_TOPIC)
        .map(|(_, v)| v.clone());
    let mut real_qid = props
        .iter()
        .find(|(k, _)| k == property::REAL_QID)
        .and_then(|(_, v)| v.parse::<i32>().ok())
        .unwrap_or(0);
    let Some(real_topic) = real_topic else {
        tracing::error!(
            topic = %m.topic,
            queue = m.queue_id,
            offset = m.queue_offset,
            "scheduled message without REAL_TOPIC skipped"
        );
        return Delivery::Done;
    };
    if foreign {
        // Another region's queue id: one of this region's own queues.
        let own = inner
            .topics
            .get(&real_topic)
            .map_or(1, |c| c.write_queue_nums.max(1));
        real_qid = real_qid.rem_euclid(own);
    }
    props.retain(|(k, _)| {
        k != property::DELAY
            && k != property::ORIGIN
            && k != property::ORIGIN_STORE_TIME
            && k != property::SCHEDULED
    });
    props.push((property::SCHEDULED.to_string(), identity.clone()));
    let put = crate::store_again(m, real_topic.clone(), real_qid, &props, inner.store_host);
    let _one_at_a_time = inner.scheduled.lock().await;
    if inner.holds_scheduled(&real_topic, &identity) {
        tracing::debug!(topic = %real_topic, %identity, "scheduled message already delivered here");
        return Delivery::Done;
    }
    if foreign {
        tracing::info!(topic = %real_topic, %identity, "delivering a delayed message of another region whose own delivery has not arrived");
    }
    // The cursor moves only once the delivered message is held as
    // durably as a send: a new master then either has the message or
    // still has the cursor before it, and then finds the delivery by its
    // identity instead of making it again.
    match inner.write(vec![put]).await {
        Ok(stored) if stored.is_held() => Delivery::Done,
        Ok(stored) => {
            // Stored here, not yet on the slave: wait for the slave.
            tracing::warn!(topic = %real_topic, replicas = ?stored.replicas, "scheduled delivery not replicated yet; waiting for the slave");
            if inner.wait_replicated(&stored).await {
                Delivery::Done
            } else {
                Delivery::Later
            }
        }
        Err(e) => {
            tracing::warn!(topic = %real_topic, error = ?e, "scheduled delivery failed; will retry");
            Delivery::Later
        }
    }
}
