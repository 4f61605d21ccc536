//! Errors of opening the store and of putting messages.

use std::path::PathBuf;

use crate::PutResult;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} is locked by another process: another broker is using this store directory; \
         stop it or give this one its own storePathRootDir"
    )]
    Locked(PathBuf),
    #[error("{0}")]
    Corrupt(String),
    /// A request the store cannot carry out in its present state (cutting
    /// the log at an offset it does not hold, restarting a log that is not
    /// empty); nothing was changed.
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a put did not (fully) succeed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The message cannot be stored as it is (too big, bad topic): the
    /// broker answers MESSAGE_ILLEGAL.
    #[error("message illegal: {0}")]
    MessageIllegal(String),
    /// Stored and readable, but not on disk within `sync_flush_timeout_ms`:
    /// the broker answers FLUSH_DISK_TIMEOUT. For a batch, the result
    /// describes the whole batch (see `MessageStore::put_messages`).
    #[error("message stored at commit-log offset {} but not flushed to disk in time", .0.commit_log_offset)]
    FlushTimeout(PutResult),
    /// The disk holding the store is nearly full; nothing was written.
    #[error("disk nearly full: the store refuses writes until retention frees space")]
    DiskFull,
    /// The store is shut down or otherwise not accepting writes.
    #[error("store not available: {0}")]
    ServiceNotAvailable(String),
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A message that must be stored at a given queue offset (a copy of
    /// another region's queue, see [`crate::PutMessage::at_queue_offset`])
    /// found the queue elsewhere; nothing of the put was written.
    #[error("queue {topic}/{queue_id} continues at offset {next}, not at {wanted}")]
    QueueOffsetMismatch {
        topic: String,
        queue_id: i32,
        wanted: i64,
        next: i64,
    },
}

impl PutError {
    /// The same refusal, for a second caller (an I/O error keeps its kind
    /// and message).
    pub fn duplicate(&self) -> PutError {
        match self {
            PutError::MessageIllegal(s) => PutError::MessageIllegal(s.clone()),
            PutError::FlushTimeout(r) => PutError::FlushTimeout(r.clone()),
            PutError::DiskFull => PutError::DiskFull,
            PutError::ServiceNotAvailable(s) => PutError::ServiceNotAvailable(s.clone()),
            PutError::Io(e) => PutError::Io(std::io::Error::new(e.kind(), e.to_string())),
            PutError::QueueOffsetMismatch {
                topic,
                queue_id,
                wanted,
                next,
            } => PutError::QueueOffsetMismatch {
                topic: topic.clone(),
                queue_id: *queue_id,
                wanted: *wanted,
                next: *next,
            },
        }
    }
}
