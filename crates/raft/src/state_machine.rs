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
use crate::log_store::{from_pos, to_membership, Shared};
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
        _snapshot: CommitLogSnapshot,
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
            _ => Err(io::Error::other(format!(
                "cannot install a snapshot at log entry {last}: this member lacks entries the \
                 leader no longer has; empty this member's store and let it copy the log again"
            ))),
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
            },
        }))
    }
}
