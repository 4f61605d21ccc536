//! Headers of message lookups: by offset message ID (VIEW_MESSAGE_BY_ID 33)
//! and by key through the index (QUERY_MESSAGE 12).

use crate::header::header;

/// The ext field that turns QUERY_MESSAGE into a lookup by unique message
/// ID (`UNIQ_KEY`) instead of by user key; the Java client sets it to
/// "true" (`MixAll.UNIQUE_MSG_QUERY_FLAG`).
pub const UNIQUE_KEY_QUERY_FLAG: &str = "_UNIQUE_KEY_QUERY";

header! {
    /// VIEW_MESSAGE_BY_ID: the message at a commit-log offset (decoded from
    /// an offset message ID).
    pub struct ViewMessageRequestHeader {
        offset: i64 = "offset",
    }
}

header! {
    /// QUERY_MESSAGE: messages of `topic` with `key`, stored between the
    /// two timestamps (milliseconds).
    pub struct QueryMessageRequestHeader {
        topic: String = "topic",
        key: String = "key",
        max_num: i32 = "maxNum",
        begin_timestamp: i64 = "beginTimestamp",
        end_timestamp: i64 = "endTimestamp",
    }
}

header! {
    /// QUERY_MESSAGE's answer: how fresh the index is.
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemotingCommand;

    #[test]
    fn query_roundtrip() {
        let h = QueryMessageRequestHeader {
            topic: "t".into(),
            key: "order-1".into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
        };
        let mut cmd = RemotingCommand::request(12).with_ext(UNIQUE_KEY_QUERY_FLAG, true);
        h.write(&mut cmd);
        assert_eq!(QueryMessageRequestHeader::parse(&cmd).unwrap(), h);
        assert_eq!(cmd.opt_bool(UNIQUE_KEY_QUERY_FLAG).unwrap(), Some(true));
    }
}
