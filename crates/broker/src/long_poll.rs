//! Long polling: a pull that finds nothing waits for the next message of
//! its queue instead of returning empty.
//!
//! Each queue someone has waited on gets a watch channel carrying the
//! queue's max offset. The store calls [`LongPoll::arrived`] once per append
//! (per batch, per queue); waiters see the change and pull again. A waiter
//! costs one task and one receiver; their number is bounded, and past the
//! bound a pull is answered empty at once (the client simply pulls again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

pub struct LongPoll {
    queues: RwLock<HashMap<String, HashMap<i32, watch::Sender<i64>>>>,
    waiters: AtomicUsize,
    max_waiters: usize,
}

/// Holds a waiter's place in the bound; released on drop.
pub struct WaiterSlot {
    poll: Arc<LongPoll>,
}

impl Drop for WaiterSlot {
    fn drop(&mut self) {
        self.poll.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LongPoll {
    pub fn new(max_waiters: usize) -> Arc<LongPoll> {
        Arc::new(LongPoll {
            queues: RwLock::new(HashMap::new()),
            waiters: AtomicUsize::new(0),
            max_waiters,
        })
    }

    /// A message arrived: wake the waiters of this queue.
    pub fn arrived(&self, topic: &str, queue_id: i32, max_offset: i64) {
        let queues = self.queues.read();
        if let Some(tx) = queues.get(topic).and_then(|q| q.get(&queue_id)) {
            tx.send_replace(max_offset);
        }
    }

    /// Take a waiter slot, or `None` when too many pulls are waiting.
    pub fn try_wait(self: &Arc<Self>) -> Option<WaiterSlot> {
        let n = self.waiters.fetch_add(1, Ordering::AcqRel);
        if n >= self.max_waiters {
            self.waiters.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(WaiterSlot { poll: self.clone() })
    }

    /// A receiver that changes whenever `topic`/`queue_id` gets a message.
    pub fn subscribe(&self, topic: &str, queue_id: i32) -> watch::Receiver<i64> {
        if let Some(tx) = self.queues.read().get(topic).and_then(|q| q.get(&queue_id)) {
            return tx.subscribe();
        }
        let mut queues = self.queues.write();
        queues
            .entry(topic.to_string())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| watch::channel(-1).0)
            .subscribe()
    }

    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_bounded_and_slots_come_back() {
        let poll = LongPoll::new(2);
        let a = poll.try_wait().expect("first waiter");
        let _b = poll.try_wait().expect("second waiter");
        assert!(
            poll.try_wait().is_none(),
            "a third waiter is past the bound"
        );
        assert_eq!(poll.waiting(), 2);
        drop(a);
        assert!(
            poll.try_wait().is_some(),
            "a released slot can be taken again"
        );
    }

    #[test]
    fn arrival_wakes_subscribers_of_that_queue_only() {
        let poll = LongPoll::new(8);
        let mut q0 = poll.subscribe("t", 0);
        let q1 = poll.subscribe("t", 1);
        poll.arrived("t", 0, 5);
        assert!(q0.has_changed().unwrap());
        assert_eq!(*q0.borrow_and_update(), 5);
        assert!(!q1.has_changed().unwrap());
    }
}
