//! The small files of `<store>/raft/` next to the index: the vote, the
//! membership log and the meta file (docs/raft.md 3.2). Each is a short
//! JSON document replaced atomically and durably on every change
//! ([`config_file::persist`]: temporary file, fsync, rename, fsync of the
//! directory), so a reader sees either the old or the new contents, and a
//! file that does not parse is damage, reported as `InvalidData` naming
//! the file.

use std::io;
use std::path::{Path, PathBuf};

use meridian_store::config_file;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The contents of the JSON file at `path`, or `None` if there is none.
fn load_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let Some(bytes) = config_file::load(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unreadable: {e}", path.display()),
        )
    })
}

/// Replace the file at `path` with `value` as JSON, atomically and durably.
fn save_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    config_file::persist(path, &bytes)
}

/// Create the marker file at `path`, durably (its directory synced).
pub fn write_marker(path: &Path) -> io::Result<()> {
    config_file::persist(
        path,
        b"a re-seed that discards this member's log is under way\n",
    )
}

/// Remove the marker file at `path`, durably.
pub fn remove_marker(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// openraft's vote as stored: the term, the member voted for (the leader
/// once `committed`), and whether a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVote {
    pub term: u64,
    pub voted_for: Option<u64>,
    pub committed: bool,
}

/// `raft/vote`: the last vote, saved durably before openraft acts on it.
#[derive(Debug, Clone)]
pub struct VoteFile {
    path: PathBuf,
}

impl VoteFile {
    pub fn new(path: impl Into<PathBuf>) -> VoteFile {
        VoteFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved vote; `None` if none was ever saved.
    pub fn load(&self) -> io::Result<Option<StoredVote>> {
        load_json(&self.path)
    }

    /// Replace the saved vote; durable when it returns.
    pub fn save(&self, vote: &StoredVote) -> io::Result<()> {
        save_json(&self.path, vote)
    }
}

/// One membership entry of the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// The entry's log index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// The voter sets: one for a uniform configuration, two while a joint
    /// configuration is in force.
    pub voters: Vec<Vec<u64>>,
    pub learners: Vec<u64>,
}

/// `raft/membership`: every membership entry of the Raft log, by index.
/// The raft index only marks their slots; the configurations are here.
/// Membership changes are rare, so records are never purged and every
/// change rewrites the whole file. An in-memory copy answers reads.
#[derive(Debug, Clone)]
pub struct MembershipLog {
    path: PathBuf,
    /// Sorted by index, no duplicates.
    records: Vec<MembershipRecord>,
}

impl MembershipLog {
    /// A log at `path` with nothing loaded yet (see [`MembershipLog::load`]).
    pub fn new(path: impl Into<PathBuf>) -> MembershipLog {
        MembershipLog {
            path: path.into(),
            records: Vec::new(),
        }
    }

    /// [`MembershipLog::new`], then [`MembershipLog::load`].
    pub fn open(path: impl Into<PathBuf>) -> io::Result<MembershipLog> {
        let mut log = MembershipLog::new(path);
        log.load()?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the file (none: no records) into the in-memory copy and return
    /// its records.
    pub fn load(&mut self) -> io::Result<Vec<MembershipRecord>> {
        let records: Vec<MembershipRecord> = load_json(&self.path)?.unwrap_or_default();
        if !records.windows(2).all(|w| w[0].index < w[1].index) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: records out of index order", self.path.display()),
            ));
        }
        self.records = records.clone();
        Ok(records)
    }

    /// All records, by index.
    pub fn records(&self) -> &[MembershipRecord] {
        &self.records
    }

    /// The record of the entry at `index`.
    pub fn get(&self, index: u64) -> Option<&MembershipRecord> {
        self.records
            .binary_search_by_key(&index, |r| r.index)
            .ok()
            .map(|i| &self.records[i])
    }

    /// The last record at or before `index`: the configuration in force
    /// at that entry.
    pub fn last_at_or_before(&self, index: u64) -> Option<&MembershipRecord> {
        let n = self.records.partition_point(|r| r.index <= index);
        n.checked_sub(1).map(|i| &self.records[i])
    }

    /// Add the record of a new membership entry; durable when it returns.
    /// Records at or after its index are replaced: a new entry at index
    /// `i` supersedes whatever the log held from `i` on.
    pub fn append(&mut self, rec: MembershipRecord) -> io::Result<()> {
        let keep = self.records.partition_point(|r| r.index < rec.index);
        let mut records = self.records[..keep].to_vec();
        records.push(rec);
        self.replace(records)
    }

    /// Drop the records of entries after `last` (`None`: all of them);
    /// durable when it returns.
    pub fn truncate_after(&mut self, last: Option<u64>) -> io::Result<()> {
        let keep = match last {
            Some(last) => self.records.partition_point(|r| r.index <= last),
            None => 0,
        };
        if keep == self.records.len() {
            return Ok(());
        }
        self.replace(self.records[..keep].to_vec())
    }

    /// Write `records` to the file, then take them as the in-memory copy
    /// (so a failed write changes nothing).
    fn replace(&mut self, records: Vec<MembershipRecord>) -> io::Result<()> {
        save_json(&self.path, &records)?;
        self.records = records;
        Ok(())
    }
}

/// A log id as stored: the entry's term and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogPos {
    pub term: u64,
    pub index: u64,
}

/// What `raft/meta` holds. It may lag behind the log (it is saved
/// periodically), never lead it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// The last purged log id.
    pub purged: Option<LogPos>,
    /// The last applied log id.
    pub applied: Option<LogPos>,
    /// Commit-log offset just past the records of the last applied entry.
    pub applied_end: i64,
    /// The last committed log id.
    pub committed: Option<LogPos>,
    /// The current snapshot's commit-log start (`CommitLogSnapshot::next_offset`),
    /// if one was taken; its log id is `purged`'s.
    pub snapshot_next_offset: Option<i64>,
}

/// `raft/meta`.
#[derive(Debug, Clone)]
pub struct MetaFile {
    path: PathBuf,
}

impl MetaFile {
    pub fn new(path: impl Into<PathBuf>) -> MetaFile {
        MetaFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved meta; the default if none was ever saved.
    pub fn load(&self) -> io::Result<Meta> {
        Ok(load_json(&self.path)?.unwrap_or_default())
    }

    /// Replace the saved meta.
    pub fn save(&self, meta: &Meta) -> io::Result<()> {
        save_json(&self.path, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let f = VoteFile::new(dir.path().join("raft").join("vote"));
        assert_eq!(f.load().unwrap(), None);
        let v = StoredVote {
            term: 3,
            voted_for: Some(2),
            committed: false,
        };
        f.save(&v).unwrap();
        assert_eq!(f.load().unwrap(), Some(v));
        let v = StoredVote {
            term: 4,
            voted_for: None,
            committed: true,
        };
        f.save(&v).unwrap();
        assert_eq!(VoteFile::new(f.path()).load().unwrap(), Some(v));

        std::fs::write(f.path(), b"{\"term\": 4, \"voted_").unwrap();
        let err = f.load().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("vote"), "{err}");
    }

    #[test]
    fn meta_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = MetaFile::new(dir.path().join("meta"));
        assert_eq!(f.load().unwrap(), Meta::default());
        let m = Meta {
            purged: Some(LogPos { term: 1, index: 10 }),
            applied: Some(LogPos { term: 2, index: 40 }),
            applied_end: 123_456,
            committed: Some(LogPos { term: 2, index: 41 }),
            snapshot_next_offset: Some(1 << 30),
        };
        f.save(&m).unwrap();
        assert_eq!(f.load().unwrap(), m);
        // Fields added later read as their defaults.
        std::fs::write(f.path(), b"{\"applied_end\": 7}").unwrap();
        assert_eq!(
            f.load().unwrap(),
            Meta {
                applied_end: 7,
                ..Meta::default()
            }
        );
        std::fs::write(f.path(), b"{\"applied_end\": \"x\"}").unwrap();
        assert_eq!(f.load().unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    fn m(index: u64, term: u64, voters: &[&[u64]]) -> MembershipRecord {
        MembershipRecord {
            index,
            term,
            voters: voters.iter().map(|v| v.to_vec()).collect(),
            learners: vec![],
        }
    }

    #[test]
    fn membership_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("membership");
        let mut log = MembershipLog::open(&path).unwrap();
        assert!(log.records().is_empty());
        assert_eq!(log.last_at_or_before(5), None);
        log.append(m(0, 0, &[&[1, 2, 3]])).unwrap();
        log.append(m(7, 2, &[&[1, 2, 3], &[1, 2, 4]])).unwrap();
        let mut last = m(8, 2, &[&[1, 2, 4]]);
        last.learners = vec![3];
        log.append(last.clone()).unwrap();

        let mut log = MembershipLog::open(&path).unwrap();
        assert_eq!(log.records().len(), 3);
        assert_eq!(log.get(7), Some(&m(7, 2, &[&[1, 2, 3], &[1, 2, 4]])));
        assert_eq!(log.get(6), None);
        assert_eq!(log.last_at_or_before(6).map(|r| r.index), Some(0));
        assert_eq!(log.last_at_or_before(8), Some(&last));
        assert_eq!(log.last_at_or_before(100), Some(&last));

        log.truncate_after(Some(7)).unwrap();
        assert_eq!(log.records().len(), 2);
        // A new entry at 7 replaces the old one.
        log.append(m(7, 3, &[&[1, 2, 3]])).unwrap();
        assert_eq!(
            log.load().unwrap(),
            vec![m(0, 0, &[&[1, 2, 3]]), m(7, 3, &[&[1, 2, 3]])]
        );
        log.truncate_after(None).unwrap();
        assert!(MembershipLog::open(&path).unwrap().records().is_empty());

        std::fs::write(&path, b"not json").unwrap();
        let err = MembershipLog::open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
