//! Raft mode: topic configs, subscription groups and consumer offsets
//! travel through the Raft log, so a new leader has every change that was
//! acknowledged before it.
//!
//! The leader writes what changed as *state records*, JSON bodies in the
//! system topic [`STATE_TOPIC`] (queue 0), through the normal Raft write
//! path: a record is committed on a majority like any message. Every
//! member reads the records in log order as they become visible and
//! applies them to its tables (`topics.json`, `subscriptionGroup.json`,
//! `consumerOffset.json`).
//!
//! - Offsets: every commit on the leader (UPDATE_CONSUMER_OFFSET, a pull's
//!   commit flag, a reset, an offset carried in by a relay) is noted in the
//!   offset manager's journal, and so is the removal of a group's offsets
//!   (`deleteSubGroup -r`); the writer takes the journal — the removals and
//!   the latest offset per queue — and writes one record.
//!   UPDATE_CONSUMER_OFFSET and the admin changes wait for the record that
//!   carries their change to be committed before they answer
//!   ([`RaftState::sync`]), so an answered commit survives any number of
//!   leader changes. Commits carried by pulls do not wait; they follow
//!   within one write.
//! - Topics and subscription groups: the writer compares each table with
//!   what it last wrote whenever the table's change counter moved, and
//!   writes the configs that changed and the names that went.
//!
//! The leader's own tables are where its changes are made, so it skips the
//! records it wrote in its current term; records of earlier terms it
//! applies like everyone else. A member that becomes leader first applies
//! every record visible to it (all of them committed before its term), and
//! offset queries catch up the same way before they answer.
//!
//! Where reading stopped is kept in `config/raftState.json`, written after
//! the tables; after a restart the records from there on are applied again
//! (each sets a value, so applying one twice changes nothing in the end).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::body::{SubscriptionGroupConfig, TopicConfig};
use meridian_protocol::message::{decode_record, encode_properties, property};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::offsets::{Journal, Journaled};
use crate::subscriptions::SubscriptionGroupManager;
use crate::BrokerInner;

/// Where state records are written (Meridian's system topic).
pub const STATE_TOPIC: &str = "rmq_sys_raft_state";

/// How often the leader looks for topic changes nobody asked to wait for.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Offsets, topics or groups per record at most; more go in the next
/// record.
const MAX_CHANGES_PER_RECORD: usize = 2_000;

/// One state record's body.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateRecord {
    /// The term and member that wrote it.
    term: u64,
    leader: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offsets: Vec<OffsetChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    topics: Vec<TopicConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deleted_topics: Vec<String>,
    /// The name of every topic the leader has (the first record of a
    /// term): topics not named are gone. Their configs follow in `topics`
    /// of this record and the next ones of the same write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all_topic_names: Option<Vec<String>>,
    /// Subscription groups, as topics: configs set, names removed, and
    /// the name of every group in the first record of a term.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<SubscriptionGroupConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deleted_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all_group_names: Option<Vec<String>>,
    /// Groups whose offsets were all removed before the `offsets` of this
    /// record were committed (`deleteSubGroup -r`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offsets_deleted_for: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetChange {
    /// `topic@group`.
    key: String,
    queue_id: i32,
    offset: i64,
    time: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    carried: bool,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CursorFile {
    /// The next queue offset of the state topic to apply.
    next: i64,
}

/// What the writer knows of the tables it last wrote (leader only).
struct Written {
    term: u64,
    topics: HashMap<String, TopicConfig>,
    version: i64,
    groups: HashMap<String, SubscriptionGroupConfig>,
    group_version: i64,
    /// The whole tables are still to be written (the first record of a
    /// term: whatever this member holds is the group's from now on).
    all: bool,
}

pub struct RaftState {
    path: PathBuf,
    /// The next state record to apply; held while applying.
    next: Mutex<i64>,
    /// Callers of [`RaftState::sync`] waiting for the next write.
    waiters: Mutex<Vec<tokio::sync::oneshot::Sender<Result<(), String>>>>,
    wake: tokio::sync::Notify,
    written: tokio::sync::Mutex<Option<Written>>,
}

impl RaftState {
    pub fn open(root: &std::path::Path) -> std::io::Result<RaftState> {
        let path = root.join("config").join("raftState.json");
        let cursor: CursorFile = crate::load_json(&path, "Raft state")?.unwrap_or_default();
        Ok(RaftState {
            path,
            next: Mutex::new(cursor.next),
            waiters: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            written: tokio::sync::Mutex::new(None),
        })
    }

    /// Apply every state record visible here that is not applied yet.
    pub fn catch_up(&self, b: &BrokerInner) {
        let Some(node) = &b.raft else {
            return;
        };
        let end = b.store.max_offset_in_queue(STATE_TOPIC, 0);
        let mut next = self.next.lock();
        if *next >= end {
            return;
        }
        let role = *node.role().borrow();
        let own_term = role.leader.then_some(role.term);
        let self_id = node.peers().self_id;
        let min = b.store.min_offset_in_queue(STATE_TOPIC, 0);
        if *next < min {
            // -1: re-seeded with the leader's tables, which hold what the
            // purged records said.
            if *next >= 0 {
                tracing::warn!(
                    from = *next,
                    oldest = min,
                    "Raft state records before the oldest kept were never applied here"
                );
            }
            *next = min;
        }
        let mut registered = false;
        while *next < end {
            let got = b
                .store
                .get_messages(STATE_TOPIC, 0, *next, 64, 4 * 1024 * 1024, &|_| true);
            if got.messages.is_empty() {
                break;
            }
            for bytes in &got.messages {
                let Ok((m, _)) = decode_record(bytes) else {
                    *next += 1;
                    continue;
                };
                *next = m.queue_offset + 1;
                let record: StateRecord = match serde_json::from_slice(&m.body) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(queue_offset = m.queue_offset, error = %e, "unreadable Raft state record skipped");
                        continue;
                    }
                };
                if own_term == Some(record.term) && record.leader == self_id {
                    continue;
                }
                for group in &record.offsets_deleted_for {
                    b.offsets.delete_group_logged(group);
                }
                for o in record.offsets {
                    b.offsets.apply_logged(
                        &o.key,
                        o.queue_id,
                        Journaled {
                            offset: o.offset,
                            time: o.time,
                            carried: o.carried,
                        },
                    );
                }
                let mut deleted = record.deleted_topics;
                if let Some(names) = &record.all_topic_names {
                    let listed: std::collections::HashSet<&str> =
                        names.iter().map(String::as_str).collect();
                    deleted.extend(
                        b.topics
                            .names()
                            .into_iter()
                            .filter(|n| !listed.contains(n.as_str())),
                    );
                }
                for t in &deleted {
                    b.offsets.delete_topic(t);
                }
                if b.topics.apply_logged(record.topics, &deleted) {
                    registered = true;
                }
                apply_groups(
                    &b.subscription_groups,
                    record.groups,
                    record.deleted_groups,
                    record.all_group_names.as_deref(),
                );
            }
        }
        drop(next);
        if registered {
            b.register_soon();
        }
    }

    /// Wait until every change made here before the call is committed
    /// through the Raft log. Only a leader can; elsewhere, or when the
    /// write fails, the error says why.
    pub async fn sync(&self, b: &BrokerInner) -> Result<(), String> {
        if b.raft.is_none() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiters.lock().push(tx);
        self.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err("the broker is stopping".to_string()))
    }

    /// Wake the writer: offsets were committed.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// Where applying stands: read before the tables are written, and
    /// given to [`RaftState::persist`] after.
    pub fn cursor(&self) -> i64 {
        *self.next.lock()
    }

    /// Remember that records before `next` are applied; call once the
    /// tables holding them are written.
    pub fn persist(&self, next: i64) {
        let cursor = CursorFile { next };
        let result = crate::persist_json(&self.path, &cursor);
        if let Err(e) = result {
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist the Raft state cursor");
        }
    }

    /// One round of the writer: apply what arrived, and on the leader
    /// write what changed.
    async fn round(&self, b: &Arc<BrokerInner>) {
        let Some(node) = &b.raft else {
            return;
        };
        self.catch_up(b);
        let role = *node.role().borrow();
        let waiters = std::mem::take(&mut *self.waiters.lock());
        let mut written = self.written.lock().await;
        if !role.leader {
            *written = None;
            // A follower's own commits (a client that could not reach the
            // leader) are not the group's; they are not kept for later.
            b.offsets.take_journal();
            for w in waiters {
                let _ = w.send(Err(format!(
                    "the broker[{}] is not the Raft leader",
                    b.config.broker_addr()
                )));
            }
            return;
        }
        if written.as_ref().is_none_or(|w| w.term != role.term) {
            // Newly leading: everything earlier is applied (above); from
            // here on this member's tables are the group's, the whole topic
            // table first.
            *written = Some(Written {
                term: role.term,
                topics: HashMap::new(),
                version: -1,
                groups: HashMap::new(),
                group_version: -1,
                all: true,
            });
        }
        let Some(w) = written.as_mut() else {
            return;
        };
        let offsets = b.offsets.take_journal();
        let (upserts, deletes, now) = if w.all || b.topics.version_counter() != w.version {
            let (topics, version) = b.topics.snapshot();
            let (upserts, deletes) = diff(&w.topics, &topics, w.all);
            (upserts, deletes, Some((topics, version)))
        } else {
            (Vec::new(), Vec::new(), None)
        };
        let (group_upserts, group_deletes, groups_now) =
            if w.all || b.subscription_groups.version_counter() != w.group_version {
                let (groups, version) = b.subscription_groups.snapshot();
                let (upserts, deletes) = diff(&w.groups, &groups, w.all);
                (upserts, deletes, Some((groups, version)))
            } else {
                (Vec::new(), Vec::new(), None)
            };
        let changes = Changes {
            offsets: &offsets,
            topics: upserts,
            deleted_topics: deletes,
            groups: group_upserts,
            deleted_groups: group_deletes,
            all: w.all,
        };
        let result = if changes.is_empty() {
            Ok(())
        } else {
            self.write(b, role.term, node.peers().self_id, changes)
                .await
        };
        match &result {
            Ok(()) => {
                if let Some((topics, version)) = now {
                    w.topics = topics;
                    w.version = version;
                }
                if let Some((groups, version)) = groups_now {
                    w.groups = groups;
                    w.group_version = version;
                }
                w.all = false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write a Raft state record; will retry");
                b.offsets.return_journal(offsets);
            }
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// Write the changes as records and wait for them to be committed.
    async fn write(
        &self,
        b: &Arc<BrokerInner>,
        term: u64,
        leader: u64,
        changes: Changes<'_>,
    ) -> Result<(), String> {
        let Changes {
            offsets,
            topics,
            deleted_topics,
            groups,
            deleted_groups,
            all,
        } = changes;
        let mut records = Vec::new();
        let offsets_deleted_for: Vec<String> = offsets.deleted_groups.iter().cloned().collect();
        let offsets: Vec<OffsetChange> = offsets
            .commits
            .iter()
            .map(|((key, queue_id), j)| OffsetChange {
                key: key.clone(),
                queue_id: *queue_id,
                offset: j.offset,
                time: j.time,
                carried: j.carried,
            })
            .collect();
        // The names of the whole tables (when they are sent whole), the
        // deletions and the removed offsets go in the first record;
        // configs and offsets fill as many records as they need, all in
        // one write.
        let first = StateRecord {
            term,
            leader,
            all_topic_names: all.then(|| topics.iter().map(|t| t.topic_name.clone()).collect()),
            deleted_topics,
            all_group_names: all.then(|| groups.iter().map(|g| g.group_name.clone()).collect()),
            deleted_groups,
            offsets_deleted_for,
            ..Default::default()
        };
        let mut offsets = offsets.into_iter().peekable();
        let mut topics = topics.into_iter().peekable();
        let mut groups = groups.into_iter().peekable();
        let mut first = Some(first);
        while offsets.peek().is_some()
            || topics.peek().is_some()
            || groups.peek().is_some()
            || first.is_some()
        {
            let mut record = first.take().unwrap_or(StateRecord {
                term,
                leader,
                ..Default::default()
            });
            record.offsets = offsets.by_ref().take(MAX_CHANGES_PER_RECORD).collect();
            record.topics = topics.by_ref().take(MAX_CHANGES_PER_RECORD).collect();
            record.groups = groups.by_ref().take(MAX_CHANGES_PER_RECORD).collect();
            records.push(record);
        }
        let mut msgs = Vec::with_capacity(records.len());
        for r in &records {
            let body = serde_json::to_vec(r).map_err(|e| e.to_string())?;
            msgs.push(b.own_message(
                STATE_TOPIC,
                bytes::Bytes::from(body),
                encode_properties(&[(property::WAIT_STORE_MSG_OK.to_string(), "true".to_string())]),
            ));
        }
        let stored = b.write(msgs).await.map_err(|e| format!("{e:?}"))?;
        if let Some((_, why)) = stored.replicas.shortfall() {
            return Err(why.to_string());
        }
        Ok(())
    }
}

/// Snapshots carry the topic table, the subscription groups and the
/// consumer offsets: a member re-seeded from the leader's snapshot lacks
/// the state records that were purged with the log.
pub struct SnapshotTables(pub std::sync::Weak<BrokerInner>);

#[derive(Serialize, Deserialize)]
struct Tables {
    topics: HashMap<String, TopicConfig>,
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Absent from a snapshot made before groups travelled in the log:
    /// the member then keeps its own.
    #[serde(default)]
    groups: Option<BTreeMap<String, SubscriptionGroupConfig>>,
}

impl meridian_raft::log_store::StateHooks for SnapshotTables {
    fn export(&self) -> Vec<u8> {
        let Some(b) = self.0.upgrade() else {
            return Vec::new();
        };
        let tables = Tables {
            topics: b.topics.snapshot().0,
            offsets: b.offsets.snapshot(),
            groups: Some(b.subscription_groups.wrapper().subscription_group_table),
        };
        serde_json::to_vec(&tables).unwrap_or_default()
    }

    fn import(&self, state: &[u8]) -> Result<(), String> {
        let b = self.0.upgrade().ok_or("the broker is stopping")?;
        let tables: Tables = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        b.topics.replace_all(tables.topics);
        b.offsets.replace_all(tables.offsets);
        if let Some(groups) = tables.groups {
            b.subscription_groups.replace_all(groups);
        }
        if let Some(state) = &b.raft_state {
            *state.next.lock() = -1;
        }
        b.persist_tables();
        b.register_soon();
        tracing::info!(
            "topic configs, subscription groups and consumer offsets taken from the leader's snapshot"
        );
        Ok(())
    }
}

/// What one write carries.
struct Changes<'a> {
    offsets: &'a Journal,
    topics: Vec<TopicConfig>,
    deleted_topics: Vec<String>,
    groups: Vec<SubscriptionGroupConfig>,
    deleted_groups: Vec<String>,
    /// The whole topic and group tables (the first write of a term).
    all: bool,
}

impl Changes<'_> {
    fn is_empty(&self) -> bool {
        self.offsets.is_empty()
            && self.topics.is_empty()
            && self.deleted_topics.is_empty()
            && self.groups.is_empty()
            && self.deleted_groups.is_empty()
            && !self.all
    }
}

/// What `now` changes in `last`: the entries to write (every one when
/// `all`) and the names that went.
fn diff<V: Clone + PartialEq>(
    last: &HashMap<String, V>,
    now: &HashMap<String, V>,
    all: bool,
) -> (Vec<V>, Vec<String>) {
    let upserts = now
        .iter()
        .filter(|(name, v)| all || last.get(*name) != Some(*v))
        .map(|(_, v)| v.clone())
        .collect();
    let deletes = last
        .keys()
        .filter(|name| !now.contains_key(*name))
        .cloned()
        .collect();
    (upserts, deletes)
}

/// Apply a record's subscription-group changes: `all` (the first record
/// of a term) names every group the leader has, and the others go;
/// configs set, then names removed.
fn apply_groups(
    groups: &SubscriptionGroupManager,
    upserts: Vec<SubscriptionGroupConfig>,
    mut deletes: Vec<String>,
    all: Option<&[String]>,
) -> bool {
    if let Some(names) = all {
        let listed: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        deletes.extend(
            groups
                .names()
                .into_iter()
                .filter(|n| !listed.contains(n.as_str())),
        );
    }
    groups.apply_logged(upserts, &deletes)
}

/// The writer: on every Raft member; it writes only while leading.
pub async fn run(inner: Arc<BrokerInner>) {
    let Some(state) = inner.raft_state.clone() else {
        return;
    };
    inner.offsets.keep_journal();
    loop {
        tokio::select! {
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        state.round(&inner).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_leave_out_what_is_empty() {
        let r = StateRecord {
            term: 3,
            leader: 1,
            offsets: vec![OffsetChange {
                key: "T@g".into(),
                queue_id: 2,
                offset: 40,
                time: 1_000,
                carried: false,
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("topics") && !json.contains("carried"),
            "{json}"
        );
        let back: StateRecord = serde_json::from_str(&json).unwrap();
        assert_eq!((back.term, back.leader, back.offsets.len()), (3, 1, 1));
        assert_eq!(back.offsets[0].offset, 40);
    }

    fn group(name: &str, consume: bool, retry_queues: i32) -> SubscriptionGroupConfig {
        let mut cfg = SubscriptionGroupConfig::new(name);
        cfg.consume_enable = consume;
        cfg.retry_queue_nums = retry_queues;
        cfg
    }

    #[test]
    fn records_carry_subscription_groups_and_old_records_still_read() {
        let r = StateRecord {
            term: 4,
            leader: 2,
            groups: vec![group("g", false, 3)],
            deleted_groups: vec!["gone".into()],
            all_group_names: Some(vec!["g".into()]),
            offsets_deleted_for: vec!["gone".into()],
            ..Default::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        for field in [
            "\"groups\"",
            "\"deletedGroups\"",
            "\"allGroupNames\"",
            "\"offsetsDeletedFor\"",
            "\"consumeEnable\":false",
            "\"retryQueueNums\":3",
        ] {
            assert!(json.contains(field), "{field} missing: {json}");
        }
        let back: StateRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.groups, vec![group("g", false, 3)]);
        assert_eq!(back.all_group_names, Some(vec!["g".to_string()]));
        // A record written before groups travelled in the log reads as
        // one that changes no group.
        let old: StateRecord = serde_json::from_str(r#"{"term":1,"leader":0}"#).unwrap();
        assert!(old.groups.is_empty() && old.deleted_groups.is_empty());
        assert!(old.all_group_names.is_none() && old.offsets_deleted_for.is_empty());
    }

    #[test]
    fn applying_group_records_sets_removes_and_takes_a_new_leaders_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let m = SubscriptionGroupManager::open(dir.path()).unwrap();
        m.upsert(group("a", true, 1));
        m.upsert(group("b", true, 1));
        // Made on this member alone (a follower asked directly): not the
        // group's.
        m.upsert(group("stray", true, 1));
        // A change of `a`.
        assert!(apply_groups(&m, vec![group("a", false, 3)], vec![], None));
        assert_eq!(m.get("a"), Some(group("a", false, 3)));
        // A new leader's first record names every group it has: `stray`
        // goes, `b` stays until its config follows.
        let all = ["a".to_string(), "b".to_string()];
        assert!(apply_groups(&m, vec![], vec![], Some(&all)));
        assert_eq!(m.names(), vec!["a".to_string(), "b".to_string()]);
        // A deletion, applied twice (after a restart): the same end.
        assert!(apply_groups(&m, vec![], vec!["b".into()], None));
        assert!(!apply_groups(&m, vec![], vec!["b".into()], None));
        assert_eq!(m.names(), vec!["a".to_string()]);
        // What was applied is on disk.
        let m = SubscriptionGroupManager::open(dir.path()).unwrap();
        assert_eq!(m.get("a"), Some(group("a", false, 3)));
        assert_eq!(m.get("b"), None);
    }

    #[test]
    fn the_writer_sends_what_changed_or_everything_at_a_new_term() {
        let last: HashMap<String, SubscriptionGroupConfig> = [
            ("a".to_string(), group("a", true, 1)),
            ("b".to_string(), group("b", true, 1)),
        ]
        .into();
        let now: HashMap<String, SubscriptionGroupConfig> = [
            ("a".to_string(), group("a", false, 3)),
            ("c".to_string(), group("c", true, 1)),
        ]
        .into();
        let (mut upserts, deletes) = diff(&last, &now, false);
        upserts.sort_by(|x, y| x.group_name.cmp(&y.group_name));
        assert_eq!(upserts, vec![group("a", false, 3), group("c", true, 1)]);
        assert_eq!(deletes, vec!["b".to_string()]);
        let (upserts, deletes) = diff(&HashMap::new(), &last, true);
        assert_eq!(upserts.len(), 2);
        assert!(deletes.is_empty());
        let (upserts, deletes) = diff(&last, &last, false);
        assert!(upserts.is_empty() && deletes.is_empty());
    }
}
