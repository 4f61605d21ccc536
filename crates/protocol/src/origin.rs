//! Origin queues: every queue of every region is an origin stream, named by
//! its region, broker group and queue id. A message's global identity is its
//! origin queue and its offset there; a relayed copy in another region is
//! stored at the same offset of that region's copy of the queue, so the
//! identity, the order and consumer offsets carry over unchanged.
//!
//! Written `region/brokerName/queueId` (and `/queueOffset` for one message).
//! Region names have no `/`; broker names may, so the region is read up to
//! the first `/` and the queue id (and offset) from the end.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The topic of the name servers' region canaries: every relay link
/// carries it, so a canary sent into one region is read in every other
/// region it reaches, end to end.
pub const REGION_CANARY_TOPIC: &str = "MERIDIAN_REGION_CANARY";

/// A GET_ROUTEINFO_BY_TOPIC ext field: `true` asks a name server for its
/// own region's brokers even while that region's clients are routed to
/// another region (relays and Meridian's tools reading a region).
pub const OWN_REGION_ROUTE_EXT: &str = "meridianOwnRegion";

/// The topic-config attribute listing a topic's copy queues on a broker:
/// `4=east/broker-a/0;5=east/broker-a/1`.
pub const COPY_QUEUES_ATTRIBUTE: &str = "meridian.copyQueues";

/// The properties of a copy queue's placeholder for a record with
/// properties `props`: only where it came from (`MSG_REGION`,
/// `MERIDIAN_ORIGIN`, `MERIDIAN_ORIGIN_TS`), marked `MERIDIAN_FILTERED`.
pub fn placeholder_properties(props: &str) -> String {
    use crate::message::{find_property, property, set_property};
    let mut kept = String::new();
    for name in [
        property::MSG_REGION,
        property::ORIGIN,
        property::ORIGIN_STORE_TIME,
    ] {
        if let Some(v) = find_property(props, name) {
            set_property(&mut kept, name, v);
        }
    }
    set_property(&mut kept, property::FILTERED, "1");
    kept
}

/// A PULL_MESSAGE ext field: `true` asks for a copy queue's placeholders
/// (records carrying [`crate::message::property::FILTERED`]) too, as a relay
/// reading the copy onwards needs them; consumers never get them.
pub const PULL_PLACEHOLDERS_EXT: &str = "meridianPlaceholders";

/// A topic's copy queues from its attributes: queue id → the origin queue
/// it holds. Entries that do not parse are left out.
pub fn copy_queues(attributes: &HashMap<String, String>) -> BTreeMap<i32, OriginQueue> {
    let mut out = BTreeMap::new();
    let Some(list) = attributes.get(COPY_QUEUES_ATTRIBUTE) else {
        return out;
    };
    for item in list.split(';').filter(|s| !s.is_empty()) {
        if let Some((q, o)) = item
            .split_once('=')
            .and_then(|(q, o)| Some((q.parse::<i32>().ok()?, OriginQueue::parse(o)?)))
        {
            out.insert(q, o);
        }
    }
    out
}

/// The attribute value for a topic's copy queues.
pub fn format_copy_queues(copies: &BTreeMap<i32, OriginQueue>) -> String {
    let list: Vec<String> = copies.iter().map(|(q, o)| format!("{q}={o}")).collect();
    list.join(";")
}

/// An origin queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OriginQueue {
    pub region: String,
    pub broker: String,
    pub queue_id: i32,
}

impl OriginQueue {
    pub fn new(region: &str, broker: &str, queue_id: i32) -> OriginQueue {
        OriginQueue {
            region: region.to_string(),
            broker: broker.to_string(),
            queue_id,
        }
    }

    /// Read `region/brokerName/queueId`.
    pub fn parse(s: &str) -> Option<OriginQueue> {
        let (region, rest) = s.split_once('/')?;
        let (broker, queue) = rest.rsplit_once('/')?;
        let queue_id = queue.parse::<i32>().ok().filter(|q| *q >= 0)?;
        if region.is_empty() || broker.is_empty() {
            return None;
        }
        Some(OriginQueue::new(region, broker, queue_id))
    }

    /// The global identity of the message at `offset` of this queue.
    pub fn message_id(&self, offset: i64) -> String {
        format!("{self}/{offset}")
    }
}

impl fmt::Display for OriginQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.broker, self.queue_id)
    }
}

/// Read a message's global identity, `region/brokerName/queueId/queueOffset`.
pub fn parse_message_id(s: &str) -> Option<(OriginQueue, i64)> {
    let (queue, offset) = s.rsplit_once('/')?;
    let offset = offset.parse::<i64>().ok().filter(|o| *o >= 0)?;
    Some((OriginQueue::parse(queue)?, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_a_slash_in_the_broker_name() {
        let q = OriginQueue::new("east", "zone-1/broker-a", 3);
        assert_eq!(q.to_string(), "east/zone-1/broker-a/3");
        assert_eq!(OriginQueue::parse(&q.to_string()), Some(q.clone()));
        assert_eq!(parse_message_id(&q.message_id(42)), Some((q, 42)));
    }

    #[test]
    fn copy_queue_attribute_round_trip() {
        let mut copies = BTreeMap::new();
        copies.insert(4, OriginQueue::new("east", "broker-a", 0));
        copies.insert(5, OriginQueue::new("west", "broker-b", 3));
        let mut attrs = HashMap::new();
        attrs.insert(
            COPY_QUEUES_ATTRIBUTE.to_string(),
            format!("{};junk;7=bad", format_copy_queues(&copies)),
        );
        assert_eq!(copy_queues(&attrs), copies);
    }

    #[test]
    fn malformed_names_are_refused() {
        for s in [
            "",
            "east",
            "east/b",
            "/b/1",
            "east//1",
            "east/b/x",
            "east/b/-1",
        ] {
            assert_eq!(OriginQueue::parse(s), None, "{s}");
        }
        assert_eq!(parse_message_id("east/b/1/-5"), None);
    }
}
