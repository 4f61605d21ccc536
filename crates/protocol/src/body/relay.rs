//! Bodies of RELAY_GET_OFFSETS and RELAY_PUT_OFFSETS (Meridian only).

use serde::{Deserialize, Serialize};

/// A consumer group's committed offset in one queue, and when it was
/// committed (ms since the epoch, by the clock of the broker it was first
/// committed to; carried along unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarriedOffset {
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: i64,
    pub commit_time: i64,
}
