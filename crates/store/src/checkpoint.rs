//! The checkpoint: what was known durable at the last flush of the derived
//! files, so recovery knows where to start re-deriving them.
//!
//! Written (atomically, see `config_file`) as JSON to
//! `<root>/checkpoint.json` after the commit log and every consume queue
//! were forced to disk up to `derived_flushed`, and the index up to
//! `index_flushed`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config_file;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub version: u32,
    /// Commit-log bytes below this offset are on disk.
    pub commit_log_flushed: i64,
    /// Consume-queue entries of every record below this offset are on disk
    /// (and index entries too, when `index_flushed` is absent: checkpoints
    /// written before it existed forced both together).
    pub derived_flushed: i64,
    /// Index entries of every record below this offset are on disk. The
    /// index is forced less often than the queues, so this may be behind.
    #[serde(default)]
    pub index_flushed: Option<i64>,
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
            index_flushed: Some(6),
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
        // Written before the index had a mark of its own: none.
        std::fs::write(
            &p,
            br#"{"version":1,"commit_log_flushed":10,"derived_flushed":8,"index_begin":0,"clean_shutdown":false,"timestamp_ms":1,"queues":[]}"#,
        )
        .unwrap();
        assert_eq!(Checkpoint::load(&p).unwrap().unwrap().index_flushed, None);
    }
}
