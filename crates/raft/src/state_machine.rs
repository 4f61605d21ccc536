//! openraft's state machine: applying a committed entry publishes its
//! records to consume queues and the key index ([`MessageStore::raft_apply`])
//! and, on the leader, answers the send that wrote it.
//!
//! Snapshots carry no data: the commit log itself is the state. A snapshot
//! names the last applied entry and where the commit log goes on
//! ([`CommitLogSnapshot`]); openraft only needs one for a follower that
//! lacks entries the leader has purged, and Meridian purges nothing yet
//! (see docs/raft.md), so installing one that this member's log does not
//! already cover is refused.
//!
//! [`MessageStore::raft_apply`]: meridian_store::MessageStore::raft_apply

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{OptionalSend, StoredMembership};

use crate::codec::CommitLogSnapshot;
use crate::files::LogPos;
use crate::index::SlotKind;
use crate::log_store::{from_pos, to_membership, to_record, Shared};
use crate::types::{LogId, MqRaft, MqReply};

type StoredMembershipOf = openraft::alias::StoredMembershipOf<MqRaft>;
type SnapshotMeta = openraft::alias::SnapshotMetaOf<MqRaft>;
type Snapshot = openraft::alias::SnapshotOf<MqRaft, CommitLogSnapshot>;

pub struct MqStateMachine {
    shared: Arc<Shared>,
}

impl MqStateMachine {
    pub fn new(shared: Arc<Shared>) -> MqStateMachine {
        MqStateMachine { shared }
    }

    fn applied(&self) -> (Option<LogId>, StoredMembershipOf) {
        let applied = self.shared.meta.lock().applied.as_ref().map(from_pos);
        let membership = match &applied {
            None => StoredMembership::default(),
            Some(id) => {
                let m = self.shared.membership.lock();
                match m.last_at_or_before(id.index()) {
                    Some(rec) => StoredMembership::new(
                        Some(LogId::new_term_index(rec.term, rec.index)),
                        to_membership(rec),
                    ),
                    None => StoredMembership::default(),
                }
            }
        };
        (applied, membership)
    }

    fn snapshot(&self) -> Snapshot {
        let (last_log_id, last_membership) = self.applied();
        Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            snapshot: CommitLogSnapshot {
                next_offset: self.shared.store.min_commit_log_offset(),
                state: export_state(&self.shared),
            },
        }
    }
}

/// Builds a snapshot of what is applied: nothing to write.
pub struct MqSnapshotBuilder {
    snapshot: Snapshot,
}

impl RaftSnapshotBuilder<MqRaft> for MqSnapshotBuilder {
    type SnapshotData = CommitLogSnapshot;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        Ok(self.snapshot.clone())
    }
}

impl RaftStateMachine<MqRaft> for MqStateMachine {
    type SnapshotData = CommitLogSnapshot;
    type SnapshotBuilder = MqSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembershipOf), io::Error> {
        Ok(self.applied())
    }

    async fn apply<S>(&mut self, entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<MqRaft>, io::Error>> + Unpin + OptionalSend,
    {
        let s = Arc::clone(&self.shared);
        let mut entries = entries;
        // Publish once per batch, then answer its sends.
        let mut answers = Vec::new();
        let mut end = None;
        let mut last = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let index = entry.log_id.index();
            let slot = s.index.read().get(index);
            let reply = match slot {
                Some(slot) if slot.kind == SlotKind::Records => {
                    end = Some(slot.end());
                    match s.outcomes.lock().remove(&index) {
                        Some(Ok(results)) => MqReply::Stored(results),
                        Some(Err(e)) => MqReply::Rejected(e),
                        None => MqReply::Empty,
                    }
                }
                Some(_) => match s.outcomes.lock().remove(&index) {
                    Some(Err(e)) => MqReply::Rejected(e),
                    _ => MqReply::Empty,
                },
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("applied log entry {index} is missing from the index"),
                    ))
                }
            };
            last = Some(entry.log_id);
            if let Some(r) = responder {
                answers.push((r, reply));
            }
        }
        if let Some(end) = end {
            s.stable.fetch_max(end, Ordering::AcqRel);
            if let Err(e) = s.store.raft_apply(end) {
                tracing::error!(error = %e, "committed records could not be published");
            }
        }
        if let Some(id) = last {
            let mut meta = s.meta.lock();
            meta.applied = Some(LogPos {
                term: id.committed_leader_id().term,
                index: id.index(),
            });
            meta.applied_end = s.store.raft_visible();
        }
        for (r, reply) in answers {
            r.send(reply);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MqSnapshotBuilder {
            snapshot: self.snapshot(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: CommitLogSnapshot,
    ) -> Result<(), io::Error> {
        let s = &self.shared;
        let Some(last) = &meta.last_log_id else {
            return Ok(());
        };
        let slot = s.index.read().get(last.index());
        match slot {
            Some(slot) if slot.term == last.committed_leader_id().term => {
                s.stable.fetch_max(slot.end(), Ordering::AcqRel);
                s.store
                    .raft_apply(slot.end())
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let mut m = s.meta.lock();
                m.applied = Some(LogPos {
                    term: last.committed_leader_id().term,
                    index: last.index(),
                });
                m.applied_end = s.store.raft_visible();
                Ok(())
            }
            _ if holds_no_record(s) => reseed(s, meta, last, &snapshot, false),
            // Far behind: what this member holds is all before the
            // snapshot's entry (openraft cut any uncommitted tail that
            // disagreed), so it is discarded for the leader's log.
            _ => reseed(s, meta, last, &snapshot, true),
        }
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // The only snapshots that matter are those the log was purged to:
        // rebuilt from the meta file's purge point.
        let purged = self.shared.meta.lock().purged;
        let Some(p) = purged else {
            return Ok(None);
        };
        let membership = {
            let m = self.shared.membership.lock();
            match m.last_at_or_before(p.index) {
                Some(rec) => StoredMembership::new(
                    Some(LogId::new_term_index(rec.term, rec.index)),
                    to_membership(rec),
                ),
                None => StoredMembership::default(),
            }
        };
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(from_pos(&p)),
                last_membership: membership,
            },
            snapshot: CommitLogSnapshot {
                next_offset: self.shared.store.min_commit_log_offset(),
                state: export_state(&self.shared),
            },
        }))
    }
}

/// Whether this member's commit log holds no record: a new member, or one
/// whose store was deleted (its log holds at most the initial membership).
fn holds_no_record(s: &Shared) -> bool {
    s.store.raft_write_position() == s.store.min_commit_log_offset()
        && s.index.read().last().is_none_or(|(_, slot)| {
            slot.kind != SlotKind::Records && slot.end() <= s.store.min_commit_log_offset()
        })
}

/// Re-seed a member from the leader's snapshot: its log restarts after
/// the snapshot's last entry, its commit log at `next_offset` (the
/// leader's oldest segment), and everything before counts as applied; the
/// entries from there on arrive as ordinary appends. With `discard`, the
/// records it holds (a far-behind member) go first; a marker file makes a
/// member interrupted meanwhile empty itself on start (`RaftNode::start`),
/// after which the leader sends the snapshot again.
fn reseed(
    s: &Shared,
    meta: &SnapshotMeta,
    last: &LogId,
    snapshot: &CommitLogSnapshot,
    discard: bool,
) -> Result<(), io::Error> {
    let next_offset = snapshot.next_offset;
    if !snapshot.state.is_empty() {
        // The broker's tables first: without them the member must not
        // count as caught up (openraft sends the snapshot again).
        let hooks = s.state_hooks.get().ok_or_else(|| {
            io::Error::other("the broker is not ready to take the leader's tables yet")
        })?;
        hooks
            .import(&snapshot.state)
            .map_err(|e| io::Error::other(format!("the leader's tables: {e}")))?;
    }
    let marker = reseed_marker(s);
    if discard {
        tracing::warn!(
            last = %last,
            "this member lacks log entries the leader no longer has: discarding its log to copy \
             the leader's"
        );
        crate::files::write_marker(&marker)?;
        s.store.raft_discard_and_reseed(next_offset)
    } else {
        s.store.raft_reseed(next_offset)
    }
    .map_err(|e| io::Error::other(format!("re-seeding the commit log at {next_offset}: {e}")))?;
    s.index.write().restart_at(last.index() + 1)?;
    {
        let mut m = s.membership.lock();
        m.truncate_after(None)?;
        if let Some(id) = meta.last_membership.log_id() {
            m.append(to_record(
                id.index(),
                id.committed_leader_id().term,
                meta.last_membership.membership(),
            ))?;
        }
    }
    s.outcomes.lock().clear();
    s.stable.fetch_max(next_offset, Ordering::AcqRel);
    let at = LogPos {
        term: last.committed_leader_id().term,
        index: last.index(),
    };
    {
        let mut m = s.meta.lock();
        m.purged = Some(at);
        m.applied = Some(at);
        m.applied_end = next_offset;
        if m.committed.is_none_or(|c| c.index < at.index) {
            m.committed = Some(at);
        }
    }
    s.persist_meta()?;
    if discard {
        crate::files::remove_marker(&marker)?;
    }
    tracing::warn!(
        last = %last,
        next_offset,
        "re-seeded from the leader's snapshot: this member's log now starts after entry {last}, \
         its commit log at offset {next_offset}"
    );
    Ok(())
}

/// Where a re-seed that discards records marks itself while it runs.
pub(crate) fn reseed_marker(s: &Shared) -> std::path::PathBuf {
    s.meta_file.path().with_file_name(RESEED_MARKER)
}

pub(crate) const RESEED_MARKER: &str = "reseeding";

/// The broker's tables, for a snapshot (empty without a broker).
fn export_state(s: &Shared) -> Vec<u8> {
    s.state_hooks.get().map(|h| h.export()).unwrap_or_default()
}
