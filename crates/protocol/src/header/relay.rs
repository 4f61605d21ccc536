//! Headers of RELAY_APPEND (9002, Meridian only): a relay appends records of
//! one origin queue to a broker's copy of that queue in another region.
//!
//! An origin queue is named by its region, broker group and queue id; its
//! records keep their origin queue offsets in every region, so the records
//! of a pull (whose queue-offset fields are origin offsets, whether pulled
//! from the origin or from another region's copy) are the request's body
//! unchanged.

use crate::header::header;

header! {
    /// RELAY_APPEND's request.
    pub struct RelayAppendRequestHeader {
        topic: String = "topic",
        /// The origin queue: its region, broker group and queue id.
        origin_region: String = "originRegion",
        origin_broker: String = "originBroker",
        origin_queue_id: i32 = "originQueueId",
        /// Write queues of the topic in the origin region: how many the
        /// target gives the topic if it must create it.
        write_queue_nums: Option<i32> = "writeQueueNums",
    }
}

header! {
    /// RELAY_GET_OFFSETS's request.
    pub struct RelayGetOffsetsRequestHeader {
        /// Topics whose offsets to read, comma-separated.
        topics: String = "topics",
    }
}

header! {
    /// RELAY_APPEND's answer (SUCCESS, or an error with the same fields
    /// where they are known).
    pub struct RelayAppendResponseHeader {
        /// The copy queue's id on the answering broker.
        queue_id: i32 = "queueId",
        /// Where the copy continues: the origin offset the next record must
        /// have. After a gap or a refused record the relay resumes here.
        next_offset: i64 = "nextOffset",
        /// Records of the body stored now.
        appended: i32 = "appended" or 0,
        /// Records of the body that the copy already held (a second path,
        /// or a relay resending after a restart), not stored again.
        present: i32 = "present" or 0,
    }
}
