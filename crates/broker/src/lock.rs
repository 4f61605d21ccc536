//! Queue locks for ordered consumption (`LOCK_BATCH_MQ`).
//!
//! An orderly consumer locks the queues it was assigned before consuming
//! them, so that during a rebalance two members never consume one queue at
//! once. A lock lapses when its holder has not renewed it for 60 s (clients
//! renew every 20 s).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use meridian_protocol::body::MessageQueue;
use parking_lot::Mutex;

pub const LOCK_MAX_LIVE: Duration = Duration::from_secs(60);

/// queue → (client id, last renewal)
type GroupLocks = HashMap<MessageQueue, (String, Instant)>;

#[derive(Default)]
pub struct RebalanceLockManager {
    /// group → its queue locks
    locks: Mutex<HashMap<String, GroupLocks>>,
}

impl RebalanceLockManager {
    /// Lock (or renew) every queue of `mqs` not held by another live client.
    /// Returns the queues `client_id` now holds.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &[MessageQueue],
        client_id: &str,
    ) -> BTreeSet<MessageQueue> {
        let now = Instant::now();
        let mut locks = self.locks.lock();
        let table = locks.entry(group.to_string()).or_default();
        let mut held = BTreeSet::new();
        for mq in mqs {
            let free = match table.get(mq) {
                None => true,
                Some((holder, at)) => {
                    holder == client_id || now.duration_since(*at) > LOCK_MAX_LIVE
                }
            };
            if free {
                table.insert(mq.clone(), (client_id.to_string(), now));
                held.insert(mq.clone());
            }
        }
        held
    }

    pub fn unlock_batch(&self, group: &str, mqs: &[MessageQueue], client_id: &str) {
        let mut locks = self.locks.lock();
        if let Some(table) = locks.get_mut(group) {
            for mq in mqs {
                if table.get(mq).map(|(h, _)| h == client_id).unwrap_or(false) {
                    table.remove(mq);
                }
            }
        }
    }

    /// Release the locks of a client that left its group.
    pub fn release_client(&self, group: &str, client_id: &str) {
        if let Some(table) = self.locks.lock().get_mut(group) {
            table.retain(|_, (h, _)| h != client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue {
            topic: "t".into(),
            broker_name: "b".into(),
            queue_id: q,
        }
    }

    #[test]
    fn one_holder_per_queue() {
        let m = RebalanceLockManager::default();
        let a = m.try_lock_batch("g", &[mq(0), mq(1)], "A");
        assert_eq!(a.len(), 2);
        let b = m.try_lock_batch("g", &[mq(1), mq(2)], "B");
        assert_eq!(b.into_iter().collect::<Vec<_>>(), vec![mq(2)]);
        m.unlock_batch("g", &[mq(1)], "A");
        let b = m.try_lock_batch("g", &[mq(1)], "B");
        assert_eq!(b.len(), 1);
    }
}
