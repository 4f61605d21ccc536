//! The checkpoint: what was known durable at the last flush of the derived
//! files, so recovery knows where to start re-deriving them.
//!
//! Written (atomically, see `config_file`) as JSON to
//! `<root>/checkpoint.json` after the commit log, every consume queue and
//! the index were forced to disk up to `derived_flushed`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config_file;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub version: u32,
    /// Commit-log bytes below this offset are on disk.
    pub commit_log_flushed: i64,
    /// Consume-queue and index entries of every record below this offset
    /// are on disk.
    pub derived_flushed: i64,
    /// Oldest commit-log offset the index covered, if it had any file.
    pub index_begin: Option<i64>,
    /// Written by a clean shutdown.
    pub clean_shutdown: bool,
    pub timestamp_ms: i64,
    /// Every queue and its max offset as of `derived_flushed`: a queue that
    /// comes back shorter lost durable entries and is rebuilt.
    pub queues: Vec<QueueMark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueMark {
    pub topic: String,
    pub queue_id: i32,
    pub max_offset: i64,
}

impl Checkpoint {
    pub const VERSION: u32 = 1;

    /// The checkpoint at `path`; `Err` says why it cannot be used.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, String> {
        match config_file::load(path) {
            Ok(None) => Ok(None),
            Ok(Some(data)) => serde_json::from_slice::<Checkpoint>(&data)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|c| {
                    if c.version == Self::VERSION {
                        Ok(Some(c))
                    } else {
                        Err(format!("{}: unknown version {}", path.display(), c.version))
                    }
                }),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn persist(&self, path: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        config_file::persist(path, &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoint.json");
        assert_eq!(Checkpoint::load(&p), Ok(None));
        let c = Checkpoint {
            version: Checkpoint::VERSION,
            commit_log_flushed: 10,
            derived_flushed: 8,
            index_begin: Some(0),
            clean_shutdown: true,
            timestamp_ms: 1,
            queues: vec![QueueMark {
                topic: "T".into(),
                queue_id: 2,
                max_offset: 5,
            }],
        };
        c.persist(&p).unwrap();
        assert_eq!(Checkpoint::load(&p), Ok(Some(c)));
        std::fs::write(&p, b"{not json").unwrap();
        assert!(Checkpoint::load(&p).is_err());
    }
}
