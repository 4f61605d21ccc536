//! What a record contributes to the derived files: its consume-queue tag
//! code and its index keys. Shared by the put path and by recovery, so a
//! rebuilt consume queue is byte for byte what the put path wrote.

use meridian_protocol::message::{find_property, property, sys_flag, tags_hash_code};

use crate::index::MAX_KEYS_PER_MESSAGE;

/// RocketMQ's delay-message topic: its tag code is the delivery time.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The tag code of a copy queue's placeholder (a record carrying
/// `MERIDIAN_FILTERED`): outside the range of Java's `String.hashCode`, so
/// no tag matches it, and pulls skip it unless they ask for placeholders.
pub const FILTERED_TAGS_CODE: i64 = i64::MIN;

/// The consume-queue tag code of a record: Java's hash of its TAGS, or, in
/// [`SCHEDULE_TOPIC`], its delivery time (store time plus the delay of its
/// DELAY level, clamped to the highest level), which the broker's delay
/// scheduler reads back; [`FILTERED_TAGS_CODE`] for a placeholder.
pub(crate) fn tags_code(topic: &str, properties: &str, store_ts: i64, delay_levels: &[u64]) -> i64 {
    if find_property(properties, property::FILTERED).is_some() {
        return FILTERED_TAGS_CODE;
    }
    if topic == SCHEDULE_TOPIC {
        if let Some(level) = delay_level(properties) {
            let level = level.min(delay_levels.len());
            if level > 0 {
                return store_ts.saturating_add(delay_levels[level - 1] as i64);
            }
        }
    }
    match find_property(properties, property::TAGS) {
        Some(tags) => tags_hash_code(tags),
        None => 0,
    }
}

fn delay_level(properties: &str) -> Option<usize> {
    let v: i64 = find_property(properties, property::DELAY)?
        .trim()
        .parse()
        .ok()?;
    usize::try_from(v).ok()
}

/// Whether a record of this SYSFLAG gets a consume-queue entry: prepared
/// and rolled-back transaction messages do not (RocketMQ's rule).
pub(crate) fn goes_to_queue(flag: i32) -> bool {
    matches!(
        sys_flag::transaction_value(flag),
        sys_flag::TRANSACTION_NOT_TYPE | sys_flag::TRANSACTION_COMMIT_TYPE
    )
}

/// Whether a record of this SYSFLAG is indexed: all but rolled-back ones.
pub(crate) fn goes_to_index(flag: i32) -> bool {
    sys_flag::transaction_value(flag) != sys_flag::TRANSACTION_ROLLBACK_TYPE
}

/// The keys a record is indexed under: a delivered delayed message's
/// `MERIDIAN_SCHEDULED` identity, each space-separated key of KEYS, then
/// UNIQ_KEY; at most [`MAX_KEYS_PER_MESSAGE`].
pub(crate) fn index_keys(properties: &str) -> impl Iterator<Item = &str> {
    let scheduled = find_property(properties, property::SCHEDULED).filter(|k| !k.is_empty());
    let keys = find_property(properties, property::KEYS)
        .unwrap_or("")
        .split(property::KEY_SEPARATOR)
        .filter(|k| !k.is_empty());
    let uniq = find_property(properties, property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX);
    scheduled
        .into_iter()
        .chain(keys)
        .chain(uniq)
        .take(MAX_KEYS_PER_MESSAGE)
}

/// Whether `key` is one the record is indexed under.
pub(crate) fn has_key(properties: &str, key: &str) -> bool {
    index_keys(properties).any(|k| k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_topic_tag_is_delivery_time() {
        let levels = [1000, 5000];
        let props = "DELAY\u{1}2\u{2}TAGS\u{1}a\u{2}";
        assert_eq!(tags_code(SCHEDULE_TOPIC, props, 100, &levels), 5100);
        assert_eq!(
            tags_code(SCHEDULE_TOPIC, "DELAY\u{1}9\u{2}", 100, &levels),
            5100
        );
        assert_eq!(tags_code("T", props, 100, &levels), tags_hash_code("a"));
        assert_eq!(
            tags_code(SCHEDULE_TOPIC, "DELAY\u{1}x\u{2}", 100, &levels),
            0
        );
        assert_eq!(tags_code("T", "", 100, &levels), 0);
        let placeholder = "TAGS\u{1}a\u{2}MERIDIAN_FILTERED\u{1}1\u{2}";
        assert_eq!(
            tags_code("T", placeholder, 100, &levels),
            FILTERED_TAGS_CODE
        );
        assert_ne!(tags_hash_code("a"), FILTERED_TAGS_CODE);
    }

    #[test]
    fn keys() {
        let props = "KEYS\u{1}a  b\u{2}UNIQ_KEY\u{1}U1\u{2}";
        assert_eq!(index_keys(props).collect::<Vec<_>>(), vec!["a", "b", "U1"]);
        assert!(has_key(props, "U1"));
        let delivered = "MERIDIAN_SCHEDULED\u{1}east/b/3/7\u{2}KEYS\u{1}a\u{2}";
        assert_eq!(
            index_keys(delivered).collect::<Vec<_>>(),
            vec!["east/b/3/7", "a"]
        );
        assert!(!has_key(props, ""));
        assert!(goes_to_queue(sys_flag::TRANSACTION_COMMIT_TYPE));
        assert!(!goes_to_queue(sys_flag::TRANSACTION_PREPARED_TYPE));
        assert!(!goes_to_index(sys_flag::TRANSACTION_ROLLBACK_TYPE));
    }
}
