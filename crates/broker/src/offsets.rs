//! Consumer offsets: where each consumer group is in each queue.
//!
//! Kept in memory and written to `config/consumerOffset.json` every few
//! seconds and at shutdown (crash-safely: temp file, fsync, rename). After
//! a crash a group may see the last few seconds again — at-least-once, as
//! RocketMQ promises — but never skips a message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// `topic@group` → queue id → next offset to consume.
#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Meridian: when each offset was committed (ms), so an offset carried
    /// in from another region never replaces a newer local commit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    commit_time_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

pub struct ConsumerOffsetManager {
    path: PathBuf,
    table: RwLock<HashMap<String, BTreeMap<i32, i64>>>,
    /// `topic@group` → queue id → commit time (ms).
    times: RwLock<HashMap<String, BTreeMap<i32, i64>>>,
    dirty: std::sync::atomic::AtomicBool,
    /// Raft mode: changes made here since the Raft state log last took
    /// them (see `raft_state`).
    journal: parking_lot::Mutex<Option<Journal>>,
}

/// Raft mode: the changes the Raft state log has not taken yet.
#[derive(Debug, Default)]
pub struct Journal {
    /// Groups whose offsets were all removed (`deleteSubGroup -r`). They
    /// are removed before `commits` are applied, which hold only commits
    /// made after the removal.
    pub deleted_groups: BTreeSet<String>,
    /// `(topic@group, queue id)` → the latest commit.
    pub commits: BTreeMap<(String, i32), Journaled>,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.deleted_groups.is_empty() && self.commits.is_empty()
    }
}

/// One commit waiting for the Raft state log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Journaled {
    pub offset: i64,
    /// Commit time (ms).
    pub time: i64,
    /// Carried in from another region: taken only over an older commit.
    pub carried: bool,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

/// Whether `key` (`topic@group`) is one of `group`'s.
fn of_group(key: &str, group: &str) -> bool {
    key.split_once('@').is_some_and(|(_, g)| g == group)
}

impl ConsumerOffsetManager {
    pub fn open(root: &std::path::Path) -> std::io::Result<ConsumerOffsetManager> {
        let path = root.join("config").join("consumerOffset.json");
        let mut table = HashMap::new();
        let mut times = HashMap::new();
        if let Some(file) = crate::load_json::<OffsetFile>(&path, "consumer offset")? {
            table = file.offset_table.into_iter().collect();
            times = file.commit_time_table.into_iter().collect();
        }
        Ok(ConsumerOffsetManager {
            path,
            table: RwLock::new(table),
            times: RwLock::new(times),
            dirty: false.into(),
            journal: parking_lot::Mutex::new(None),
        })
    }

    /// Raft mode: from now on every commit is also noted for the Raft
    /// state log, which takes them with [`Self::take_journal`].
    pub fn keep_journal(&self) {
        self.journal.lock().get_or_insert_with(Journal::default);
    }

    /// The changes noted since the last call.
    pub fn take_journal(&self) -> Journal {
        self.journal
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Put back changes a failed write did not carry, unless newer ones
    /// were noted meanwhile: a newer commit of the same queue, or a newer
    /// removal of the group.
    pub fn return_journal(&self, back: Journal) {
        if let Some(j) = self.journal.lock().as_mut() {
            for (k, v) in back.commits {
                if !j.deleted_groups.iter().any(|g| of_group(&k.0, g)) {
                    j.commits.entry(k).or_insert(v);
                }
            }
            // Removals older than every commit now noted: applied first,
            // they take nothing newer away.
            j.deleted_groups.extend(back.deleted_groups);
        }
    }

    /// Note a commit for the Raft state log; the caller holds the
    /// journal's lock from before it changed the table, so the journal
    /// orders commits and group removals as the table saw them.
    fn note(journal: &mut Option<Journal>, k: &str, queue_id: i32, entry: Journaled) {
        if let Some(j) = journal.as_mut() {
            j.commits.insert((k.to_string(), queue_id), entry);
        }
    }

    /// Apply a commit read from the Raft state log (`key` is
    /// `topic@group`): not noted again.
    pub fn apply_logged(&self, key: &str, queue_id: i32, entry: Journaled) {
        let Some((topic, group)) = key.split_once('@') else {
            return;
        };
        if entry.carried {
            self.take_carried(group, topic, queue_id, entry.offset, entry.time);
        } else {
            self.set(key, queue_id, entry.offset, entry.time);
        }
    }

    fn set(&self, k: &str, queue_id: i32, offset: i64, time: i64) {
        if offset < 0 {
            return;
        }
        let mut t = self.table.write();
        let queues = t.entry(k.to_string()).or_default();
        if queues.get(&queue_id) != Some(&offset) {
            queues.insert(queue_id, offset);
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
        }
        self.times
            .write()
            .entry(k.to_string())
            .or_default()
            .insert(queue_id, time);
    }

    /// The committed offset, or `None` when the group never committed one.
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table
            .read()
            .get(&key(topic, group))
            .and_then(|q| q.get(&queue_id).copied())
    }

    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        if offset < 0 {
            return;
        }
        let k = key(topic, group);
        let time = crate::now_ms();
        let mut journal = self.journal.lock();
        self.set(&k, queue_id, offset, time);
        Self::note(
            &mut journal,
            &k,
            queue_id,
            Journaled {
                offset,
                time,
                carried: false,
            },
        );
    }

    /// An offset carried in from another region, committed there at
    /// `commit_time`: taken only if no offset of this queue was committed
    /// here later. Returns whether it was taken.
    pub fn commit_carried(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        commit_time: i64,
    ) -> bool {
        let mut journal = self.journal.lock();
        let taken = self.take_carried(group, topic, queue_id, offset, commit_time);
        if taken {
            Self::note(
                &mut journal,
                &key(topic, group),
                queue_id,
                Journaled {
                    offset,
                    time: commit_time,
                    carried: true,
                },
            );
        }
        taken
    }

    fn take_carried(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        commit_time: i64,
    ) -> bool {
        if offset < 0 {
            return false;
        }
        let k = key(topic, group);
        let mut t = self.table.write();
        let mut times = self.times.write();
        let local = times.get(&k).and_then(|q| q.get(&queue_id)).copied();
        if local.is_some_and(|at| at >= commit_time) {
            return false;
        }
        t.entry(k.clone()).or_default().insert(queue_id, offset);
        times.entry(k).or_default().insert(queue_id, commit_time);
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        true
    }

    /// Every committed offset of `topics`, with its commit time (0 if
    /// unknown: committed before times were kept).
    pub fn with_times(
        &self,
        topics: &[&str],
    ) -> Vec<meridian_protocol::body::relay::CarriedOffset> {
        let t = self.table.read();
        let times = self.times.read();
        let mut out = Vec::new();
        for (k, queues) in t.iter() {
            let Some((topic, group)) = k.split_once('@') else {
                continue;
            };
            if !topics.contains(&topic) {
                continue;
            }
            for (q, offset) in queues {
                out.push(meridian_protocol::body::relay::CarriedOffset {
                    group: group.to_string(),
                    topic: topic.to_string(),
                    queue_id: *q,
                    offset: *offset,
                    commit_time: times.get(k).and_then(|m| m.get(q)).copied().unwrap_or(0),
                });
            }
        }
        out
    }

    /// Every queue offset of a group on a topic.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.table
            .read()
            .get(&key(topic, group))
            .cloned()
            .unwrap_or_default()
    }

    /// Groups that have committed offsets on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}@");
        let mut v: Vec<String> = self
            .table
            .read()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// Topics on which `group` has committed offsets.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        let mut v: Vec<String> = self
            .table
            .read()
            .keys()
            .filter_map(|k| k.strip_suffix(&suffix).map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// Forget every offset `group` committed here (in Raft mode also
    /// noted for the Raft state log).
    pub fn delete_group(&self, group: &str) {
        // Under the journal's lock, so no commit of the group falls
        // between the removal and the note.
        let mut journal = self.journal.lock();
        self.delete_group_logged(group);
        if let Some(j) = journal.as_mut() {
            j.commits.retain(|(k, _), _| !of_group(k, group));
            j.deleted_groups.insert(group.to_string());
        }
    }

    /// Forget every offset of `group`, as a Raft state record says: not
    /// noted again.
    pub fn delete_group_logged(&self, group: &str) {
        self.table.write().retain(|k, _| !of_group(k, group));
        self.times.write().retain(|k, _| !of_group(k, group));
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn delete_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        self.table.write().retain(|k, _| !k.starts_with(&prefix));
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The whole table, for a slave's copy.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<i32, i64>> {
        self.table
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Replace the whole table with the master's (slave only).
    pub fn replace_all(&self, table: BTreeMap<String, BTreeMap<i32, i64>>) {
        let mut t = self.table.write();
        let new: HashMap<String, BTreeMap<i32, i64>> = table.into_iter().collect();
        if *t != new {
            *t = new;
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// The JSON a slave reads (RocketMQ's ConsumerOffsetSerializeWrapper).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&OffsetFile {
            offset_table: self.snapshot(),
            commit_time_table: BTreeMap::new(),
        })
        .unwrap_or_default()
    }

    /// Parse [`Self::to_json`]'s output.
    pub fn parse_json(bytes: &[u8]) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, String> {
        serde_json::from_slice::<OffsetFile>(bytes)
            .map(|f| f.offset_table)
            .map_err(|e| e.to_string())
    }

    /// Write the table if it changed since the last write.
    pub fn persist(&self) {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let file = OffsetFile {
            offset_table: self
                .table
                .read()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            commit_time_table: self
                .times
                .read()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let result = crate::persist_json(&self.path, &file);
        if let Err(e) = result {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist consumer offsets");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let m = ConsumerOffsetManager::open(dir.path()).unwrap();
        assert_eq!(m.query("g", "t", 0), None);
        m.commit("g", "t", 0, 42);
        m.commit("g", "t", 3, 7);
        m.persist();
        let m = ConsumerOffsetManager::open(dir.path()).unwrap();
        assert_eq!(m.query("g", "t", 0), Some(42));
        assert_eq!(m.query("g", "t", 3), Some(7));
        assert_eq!(m.groups_of_topic("t"), vec!["g".to_string()]);
    }

    #[test]
    fn the_journal_orders_commits_and_group_removals() {
        let dir = tempfile::tempdir().unwrap();
        let m = ConsumerOffsetManager::open(dir.path()).unwrap();
        m.keep_journal();
        m.commit("g", "t", 0, 5);
        m.commit("h", "t", 0, 6);
        // The removal takes the group's earlier commits out of the journal
        // and is noted; a commit after it is kept.
        m.delete_group("g");
        assert_eq!(m.query("g", "t", 0), None);
        m.commit("g", "t", 1, 9);
        let j = m.take_journal();
        assert_eq!(j.deleted_groups, BTreeSet::from(["g".to_string()]));
        let keys: Vec<_> = j.commits.keys().cloned().collect();
        assert_eq!(keys, vec![("t@g".to_string(), 1), ("t@h".to_string(), 0)]);
        assert!(m.take_journal().is_empty());
        // A failed write puts it back; a newer removal of `h` drops its
        // older commit.
        m.delete_group("h");
        m.return_journal(j);
        let j = m.take_journal();
        assert_eq!(
            j.deleted_groups,
            BTreeSet::from(["g".to_string(), "h".to_string()])
        );
        let keys: Vec<_> = j.commits.keys().cloned().collect();
        assert_eq!(keys, vec![("t@g".to_string(), 1)]);
    }

    #[test]
    fn a_carried_offset_never_replaces_a_newer_local_commit() {
        let dir = tempfile::tempdir().unwrap();
        let m = ConsumerOffsetManager::open(dir.path()).unwrap();
        // Nothing here yet: taken.
        assert!(m.commit_carried("g", "t", 0, 10, 1_000));
        assert_eq!(m.query("g", "t", 0), Some(10));
        // Older than what is here: refused.
        assert!(!m.commit_carried("g", "t", 0, 5, 900));
        // A consumer commits here now: later carried-in offsets from
        // before now are refused.
        m.commit("g", "t", 0, 12);
        assert!(!m.commit_carried("g", "t", 0, 30, crate::now_ms() - 1_000));
        assert_eq!(m.query("g", "t", 0), Some(12));
        m.persist();
        let m = ConsumerOffsetManager::open(dir.path()).unwrap();
        assert!(!m.commit_carried("g", "t", 0, 30, crate::now_ms() - 1_000));
        let all = m.with_times(&["t"]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].offset, 12);
        assert!(all[0].commit_time > 1_000);
    }
}
