//! Sharing a topic's queues among the members of a consumer group, for
//! consumers that leave rebalancing to the broker (QUERY_ASSIGNMENT).
//!
//! The strategies are RocketMQ's own, by the names its clients send, and
//! give the same answer as the client-side classes: every member computes
//! its share from the same sorted queue and member lists, so the shares
//! are disjoint and together cover every queue. The other client-side
//! strategies (consistent hash, by config, by machine room) depend on
//! state only the client has, and are not served here.

use meridian_protocol::body::MessageQueue;

/// `AllocateMessageQueueAveragely`: consecutive runs, the first members
/// one queue more when the queues do not divide evenly.
pub const AVG: &str = "AVG";
/// `AllocateMessageQueueAveragelyByCircle`: every n-th queue.
pub const AVG_BY_CIRCLE: &str = "AVG_BY_CIRCLE";

/// A strategy: the share of member `index` of the sorted `members` among
/// the sorted `queues`.
pub type Strategy = fn(&[MessageQueue], &[String], usize) -> Vec<MessageQueue>;

/// The strategy named `name`, if served.
pub fn strategy(name: &str) -> Option<Strategy> {
    match name {
        AVG => Some(averagely),
        AVG_BY_CIRCLE => Some(by_circle),
        _ => None,
    }
}

/// The share of member `index` of `members` (sorted), under
/// `AllocateMessageQueueAveragely`.
pub fn averagely(queues: &[MessageQueue], members: &[String], index: usize) -> Vec<MessageQueue> {
    debug_assert!(index < members.len());
    let (q, m) = (queues.len(), members.len());
    if q == 0 || m == 0 {
        return Vec::new();
    }
    let rem = q % m;
    let size = if q <= m {
        1
    } else if index < rem {
        q / m + 1
    } else {
        q / m
    };
    let start = if index < rem {
        index * size
    } else {
        index * size + rem
    };
    let take = size.min(q.saturating_sub(start));
    (0..take).map(|i| queues[(start + i) % q].clone()).collect()
}

/// The share of member `index` of `members` (sorted), under
/// `AllocateMessageQueueAveragelyByCircle`.
pub fn by_circle(queues: &[MessageQueue], members: &[String], index: usize) -> Vec<MessageQueue> {
    debug_assert!(index < members.len());
    queues
        .iter()
        .skip(index)
        .step_by(members.len().max(1))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|i| MessageQueue::new("T", "b", i)).collect()
    }

    fn ids(shares: &[Vec<MessageQueue>]) -> Vec<Vec<i32>> {
        shares
            .iter()
            .map(|s| s.iter().map(|q| q.queue_id).collect())
            .collect()
    }

    fn shares(f: Strategy, q: i32, m: usize) -> Vec<Vec<MessageQueue>> {
        let members: Vec<String> = (0..m).map(|i| format!("c{i}")).collect();
        (0..m).map(|i| f(&queues(q), &members, i)).collect()
    }

    #[test]
    fn averagely_gives_what_rocketmq_clients_compute() {
        assert_eq!(
            ids(&shares(averagely, 8, 3)),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]
        );
        assert_eq!(
            ids(&shares(averagely, 2, 3)),
            vec![vec![0], vec![1], vec![]]
        );
        assert_eq!(ids(&shares(averagely, 4, 1)), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn by_circle_gives_what_rocketmq_clients_compute() {
        assert_eq!(
            ids(&shares(by_circle, 8, 3)),
            vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]
        );
    }

    #[test]
    fn every_queue_goes_to_exactly_one_member() {
        for f in [averagely, by_circle] {
            for q in 0..20 {
                for m in 1..8 {
                    let mut all: Vec<i32> = ids(&shares(f, q, m)).concat();
                    all.sort();
                    assert_eq!(all, (0..q).collect::<Vec<_>>(), "{q} queues, {m} members");
                }
            }
        }
    }
}
