//! meridian-store: the message store under a Meridian broker.
//!
//! Records are kept in RocketMQ's stored/pulled byte format (see
//! `meridian_protocol::message`), so serving a pull is handing out bytes,
//! not re-encoding. A tour of the modules:
//!
//! - [`store`]: [`MessageStore`], the public API: put (single and batch),
//!   get by queue offset, lookups by time and key, stats, shutdown.
//! - [`config`]: [`StoreConfig`] and [`FlushDiskType`], with RocketMQ's
//!   defaults, and [`message_delay_levels`].
//! - `commit_log`: the single source of truth, segmented files of records
//!   appended in order, with the blank end-of-segment marker.
//! - `consume_queue`: per topic and queue, 20-byte entries pointing into the
//!   commit log; written in the same lock as the record.
//! - `index`: the `topic#key` hash index for KEYS and UNIQ_KEY lookups.
//! - `dispatch`: what a record contributes to queues and index (tag code,
//!   keys), shared by the put path and recovery.
//! - `mapped_file`: memory-mapped fixed-size files, and the rules that keep
//!   their `unsafe` sound.
//! - `flush`: the flush thread, with group commit under SYNC_FLUSH.
//! - `checkpoint`: what was durable at the last flush of derived files.
//! - `replica`: the commit log as raw bytes for master/slave replication:
//!   read a chunk, append a master's bytes (checked and dispatched record by
//!   record), start an empty log at an offset, cut the log back.
//! - [`recovery`]: on open, cut a torn or corrupt tail and re-derive queues
//!   and index; [`RecoveryReport`] says what it did.
//! - [`raft`]: the commit log as a Raft log: leader and follower appends,
//!   reads for replication, cutting an uncommitted tail, and applying
//!   committed entries to consume queues and index.
//! - `retention`: deletes old segments (and their derived files), never
//!   one holding a record the broker still needs; watches disk use.
//! - [`config_file`]: atomic, durable small-file writes.
//! - [`stats`]: [`StoreStats`] for GET_BROKER_RUNTIME_INFO.
//! - [`error`]: [`StoreError`] (opening) and [`PutError`] (writing).

mod checkpoint;
mod commit_log;
pub mod config;
pub mod config_file;
mod consume_queue;
pub mod dispatch;
pub mod error;
mod flush;
mod index;
mod mapped_file;
pub mod raft;
pub mod recovery;
mod replica;
mod retention;
pub mod stats;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use config::{message_delay_levels, FlushDiskType, StoreConfig};
pub use dispatch::{FILTERED_TAGS_CODE, SCHEDULE_TOPIC};
pub use error::{PutError, StoreError};
pub use mapped_file::preallocate;
pub use recovery::RecoveryReport;
pub use stats::StoreStats;
pub use store::{
    ArrivalListener, GetResult, GetStatus, MessageStore, PutMessage, PutResult, RecordFilter,
    RetentionFloor, RetentionGate, RetentionHold, MAX_TOPIC_LEN,
};

pub(crate) use meridian_protocol::now_ms;
