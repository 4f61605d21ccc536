//! What each stream has done, for the operator: records relayed, records
//! the target already held, how far the copy is behind (messages and
//! seconds). The relay logs a summary every 30 s and answers
//! GET_BROKER_RUNTIME_INFO with it on its status port (`meridian admin
//! brokerStatus -b <relay>`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::topology::StreamKey;

/// One stream's counters.
#[derive(Default, Debug)]
pub struct StreamStats {
    /// Records stored in the copy by this relay.
    pub appended: AtomicU64,
    /// Records the copy already held (another path, a resend).
    pub present: AtomicU64,
    /// Where the copy continues.
    pub copy_next: AtomicI64,
    /// Where the source queue ends (as of the last pull).
    pub source_max: AtomicI64,
    /// Source store time to target store time of the last record relayed.
    pub lag_ms: AtomicI64,
    /// The source deleted records the copy does not hold.
    pub source_gap: AtomicBool,
    pub errors: AtomicU64,
}

impl StreamStats {
    pub fn lag_messages(&self) -> i64 {
        (self.source_max.load(Ordering::Relaxed) - self.copy_next.load(Ordering::Relaxed)).max(0)
    }
}

/// Every stream's counters, by topic and origin queue.
#[derive(Default)]
pub struct LinkStats {
    streams: Mutex<BTreeMap<StreamKey, Arc<StreamStats>>>,
    /// Consumer offsets the targets took.
    pub offsets_carried: AtomicU64,
    /// The processes of this relay's replication group on the link.
    pub members: Mutex<Vec<String>>,
}

impl LinkStats {
    pub fn stream(&self, key: &StreamKey) -> Arc<StreamStats> {
        self.streams.lock().entry(key.clone()).or_default().clone()
    }

    /// Flat `name=value` pairs: per stream `relay.<topic>.<origin>.<field>`,
    /// and per topic totals `relay.<topic>.<field>`.
    pub fn table(&self) -> BTreeMap<String, String> {
        let mut t = BTreeMap::new();
        let mut per_topic: BTreeMap<&str, (u64, u64, i64, i64)> = BTreeMap::new();
        let streams = self.streams.lock();
        for ((topic, origin), s) in streams.iter() {
            let appended = s.appended.load(Ordering::Relaxed);
            let present = s.present.load(Ordering::Relaxed);
            let lag = s.lag_messages();
            let lag_ms = s.lag_ms.load(Ordering::Relaxed);
            let p = format!("relay.{topic}.{origin}");
            t.insert(format!("{p}.relayed"), appended.to_string());
            t.insert(format!("{p}.present"), present.to_string());
            t.insert(format!("{p}.lagMessages"), lag.to_string());
            t.insert(format!("{p}.lagMs"), lag_ms.to_string());
            t.insert(
                format!("{p}.copyNextOffset"),
                s.copy_next.load(Ordering::Relaxed).to_string(),
            );
            if s.source_gap.load(Ordering::Relaxed) {
                t.insert(format!("{p}.sourceGap"), "true".into());
            }
            let e = per_topic.entry(topic).or_default();
            e.0 += appended;
            e.1 += present;
            e.2 += lag;
            e.3 = e.3.max(if lag > 0 { lag_ms } else { 0 });
        }
        for (topic, (appended, present, lag, lag_ms)) in per_topic {
            t.insert(format!("relay.{topic}.relayed"), appended.to_string());
            t.insert(format!("relay.{topic}.present"), present.to_string());
            t.insert(format!("relay.{topic}.lagMessages"), lag.to_string());
            t.insert(format!("relay.{topic}.lagMs"), lag_ms.to_string());
        }
        t.insert("relayStreams".into(), streams.len().to_string());
        t.insert(
            "relayGroupMembers".into(),
            self.members.lock().len().to_string(),
        );
        t.insert(
            "relayOffsetsCarried".into(),
            self.offsets_carried.load(Ordering::Relaxed).to_string(),
        );
        t
    }

    /// Per topic: records relayed, records found present, messages
    /// behind, and the lag in ms of the furthest-behind stream (0 when
    /// none is behind).
    pub fn per_topic(&self) -> BTreeMap<String, (u64, u64, i64, i64)> {
        let mut per_topic: BTreeMap<String, (u64, u64, i64, i64)> = BTreeMap::new();
        for ((topic, _), s) in self.streams.lock().iter() {
            let lag = s.lag_messages();
            let e = per_topic.entry(topic.clone()).or_default();
            e.0 += s.appended.load(Ordering::Relaxed);
            e.1 += s.present.load(Ordering::Relaxed);
            e.2 += lag;
            if lag > 0 {
                e.3 = e.3.max(s.lag_ms.load(Ordering::Relaxed));
            }
        }
        per_topic
    }

    /// Forget streams no longer relayed.
    pub fn retain(&self, keep: impl Fn(&StreamKey) -> bool) {
        self.streams.lock().retain(|k, _| keep(k));
    }
}
