//! [`RaftNode`]: one member of a Raft group of brokers, what the broker
//! talks to. It opens the Raft side files next to the store, reconciles
//! them with the commit log after a crash, starts openraft and the Raft
//! listener, and offers the send path ([`RaftNode::submit`]), the member's
//! role as a watch ([`RaftNode::role`]) and its status for operators.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_store::{MessageStore, PutError, PutMessage, PutResult};
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::{ChangeMembers, EmptyNode, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, watch};

use crate::files::{MembershipLog, MetaFile, VoteFile};
use crate::index::RaftIndex;
use crate::log_store::{CommitLogRaft, Shared};
use crate::network::Network;
use crate::peers::Peers;
use crate::state_machine::MqStateMachine;
use crate::types::{MqData, MqReply, PendingPut, Raft};

/// Settings of a member (broker.conf keys in brackets).
#[derive(Debug, Clone)]
pub struct RaftOptions {
    /// `dLegerGroup`, `dLegerPeers`, `dLegerSelfId`.
    pub peers: Peers,
    /// Where the Raft side files live (`<storePathRootDir>/raft`).
    pub dir: PathBuf,
    /// `raftHeartbeatIntervalMs` (100).
    pub heartbeat_ms: u64,
    /// `raftElectionTimeoutMinMs` / `raftElectionTimeoutMaxMs` (400 / 800).
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// `raftMaxBytesPerAppend` (4 MiB).
    pub max_bytes_per_append: usize,
    /// `raftMaxInflightSends` (20 000).
    pub max_inflight: usize,
    /// SYNC_FLUSH: acknowledge entries to the leader only once on disk.
    pub sync_flush: bool,
    /// `syncFlushTimeout`: how long a send waits for its commit.
    pub commit_timeout: Duration,
    /// `mappedFileSizeCommitLog`, which must be the same on every member.
    pub segment_size: u64,
    /// `preferredLeaderId`: the leader hands over to this member once it
    /// holds the whole log (checked every second).
    pub preferred_leader: Option<u64>,
    /// The Raft port: plaintext or TLS, and whether members must show a
    /// certificate (`tls.*`, `tls.peer.need.client.auth`).
    pub acceptor: meridian_remoting::tls::Acceptor,
    /// How this member connects to the others.
    pub connector: meridian_remoting::tls::Connector,
    /// `raftJoinGroup` (Meridian): a new member of a group that already
    /// runs. It does not form a group of its own on first start; it waits
    /// for the leader to add it (`meridian admin addRaftMember`).
    pub join: bool,
}

impl RaftOptions {
    /// Defaults for everything but the peers and the directory.
    pub fn new(peers: Peers, dir: PathBuf, segment_size: u64) -> RaftOptions {
        RaftOptions {
            peers,
            dir,
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            max_bytes_per_append: 4 * 1024 * 1024,
            max_inflight: 20_000,
            sync_flush: false,
            commit_timeout: Duration::from_secs(5),
            segment_size,
            preferred_leader: None,
            acceptor: Default::default(),
            connector: Default::default(),
            join: false,
        }
    }
}

/// The file of member addresses added at run time: `{"3":"host:port"}`.
fn peers_file(dir: &std::path::Path) -> PathBuf {
    dir.join("peers")
}

/// What this member is, as the broker needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Role {
    /// Leader with everything before its term applied: it may take writes
    /// and registers as the group's master.
    pub leader: bool,
    pub term: u64,
    /// The leader this member knows of, if any.
    pub leader_id: Option<u64>,
}

/// A send that was not handed to Raft.
#[derive(Debug)]
pub enum SubmitError {
    /// Not the leader (or not yet ready to lead); nothing was written.
    NotLeader(Option<u64>),
    /// Too many sends wait for their commit.
    Busy(usize),
    /// The messages cannot be stored as they are.
    Refused(PutError),
}

/// How a submitted send ended.
#[derive(Debug)]
pub enum SendOutcome {
    /// Committed on a majority and applied on the leader.
    Stored(Vec<PutResult>),
    /// The leader's store refused the messages; nothing was stored.
    Rejected(PutError),
    /// Leadership was lost before the entry was appended: nothing stored.
    NotLeader(Option<u64>),
    /// Leadership was lost, or the commit took too long, after the entry
    /// was appended: it may or may not end up stored.
    Unknown(String),
}

/// A member's state for operators (GET_BROKER_RUNTIME_INFO, admin).
#[derive(Debug, Clone, Default)]
pub struct RaftStatus {
    pub group: String,
    pub self_id: u64,
    pub state: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub visible_offset: i64,
    pub write_offset: i64,
    pub millis_since_quorum_ack: Option<u64>,
    /// On the leader: per member, the last log index it holds, and how
    /// far its copy of the commit log lags behind the leader's (bytes).
    pub peers: BTreeMap<u64, PeerProgress>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PeerProgress {
    pub matched_index: Option<u64>,
    pub lag_bytes: i64,
    /// Milliseconds since the store time of the first record it lacks (0
    /// when it lacks none).
    pub lag_ms: i64,
}

/// A send waiting for the proposer: its messages, the bytes their records
/// take, and where its answer goes.
struct Proposal {
    msgs: Vec<PutMessage>,
    bytes: usize,
    answer: oneshot::Sender<Answer>,
}

/// What a send hears back from the proposer: its part of the entry's
/// reply, or openraft's refusal of the entry.
type Answer = Result<MqReply, ClientWriteError<crate::types::MqRaft>>;

pub struct RaftNode {
    raft: Raft,
    /// Where the Raft side files live.
    dir: PathBuf,
    shared: Arc<Shared>,
    peers: Arc<Peers>,
    role: watch::Receiver<Role>,
    inflight: Arc<AtomicUsize>,
    max_inflight: usize,
    commit_timeout: Duration,
    proposals: mpsc::UnboundedSender<Proposal>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("group", &self.peers.group)
            .field("self_id", &self.peers.self_id)
            .finish()
    }
}

impl RaftNode {
    /// Start this member over `store` (opened, nothing else done with it
    /// yet). Binds the Raft port from `dLegerPeers`.
    pub async fn start(
        store: Arc<MessageStore>,
        opts: RaftOptions,
    ) -> Result<Arc<RaftNode>, String> {
        let dir = opts.dir.clone();
        let io = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        let meta_file = MetaFile::new(dir.join("meta"));
        let mut meta = meta_file.load().map_err(|e| io("meta", e))?;
        let vote_file = VoteFile::new(dir.join("vote"));
        let mut index = RaftIndex::open(&dir.join("index")).map_err(|e| io("index", e))?;
        let mut membership =
            MembershipLog::open(dir.join("membership")).map_err(|e| io("membership", e))?;
        let marker = dir.join(crate::state_machine::RESEED_MARKER);
        if marker.exists() {
            // A re-seed that discards this member's log stopped half-way:
            // finish emptying it. The vote stays; the leader sees an empty
            // member and sends its snapshot again.
            tracing::warn!(
                "a re-seed from the leader's snapshot was interrupted: emptying this member's \
                 log; the leader will send it again"
            );
            store
                .raft_discard_and_reseed(0)
                .map_err(|e| format!("emptying the commit log for a re-seed: {e}"))?;
            index.restart_at(0).map_err(|e| io("index", e))?;
            membership
                .truncate_after(None)
                .map_err(|e| io("membership", e))?;
            meta = Default::default();
            meta_file.save(&meta).map_err(|e| io("meta", e))?;
            crate::files::remove_marker(&marker).map_err(|e| io("marker", e))?;
        }
        let pristine = index.last().is_none() && meta.purged.is_none();
        let log_end = store.raft_write_position();
        if pristine && log_end > store.min_commit_log_offset() {
            return Err(format!(
                "the commit log holds records but {} has no Raft index: a store written outside \
                 a Raft group cannot join one; give this member an empty storePathRootDir",
                dir.display()
            ));
        }
        store
            .raft_open(meta.applied_end)
            .map_err(|e| format!("opening the store in Raft mode: {e}"))?;
        // Entries whose records did not survive a crash go; records past
        // the last indexed entry were never acknowledged and go too.
        while let Some((i, slot)) = index.last() {
            if slot.end() <= log_end {
                break;
            }
            tracing::warn!(
                index = i,
                "Raft log entry lost its records in a crash; dropped"
            );
            let keep = i.checked_sub(1).filter(|&k| k >= index.first_index());
            index.truncate_after(keep).map_err(|e| io("index", e))?;
            membership
                .truncate_after(keep)
                .map_err(|e| io("membership", e))?;
        }
        let indexed_end = index.last().map_or(store.raft_visible(), |(_, s)| s.end());
        if indexed_end < log_end {
            if let Err(e) = store.raft_truncate(indexed_end) {
                tracing::error!(error = %e, "could not cut records past the Raft index");
            }
        }

        let shared = Shared::new(
            Arc::clone(&store),
            index,
            membership,
            meta_file,
            vote_file,
            opts.sync_flush,
            opts.max_bytes_per_append,
        )
        .map_err(|e| io("open", e))?;
        let peers = Arc::new(opts.peers.clone());
        if let Some(bytes) =
            meridian_store::config_file::load(&peers_file(&dir)).map_err(|e| io("peers", e))?
        {
            let added: BTreeMap<u64, String> = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: not a map of member addresses: {e}",
                    peers_file(&dir).display()
                )
            })?;
            for (id, addr) in added {
                peers
                    .add_address(id, &addr)
                    .map_err(|e| format!("{}: n{id}: {e}", peers_file(&dir).display()))?;
            }
        }
        let config = openraft::Config {
            cluster_name: peers.group.clone(),
            heartbeat_interval: opts.heartbeat_ms,
            election_timeout_min: opts.election_timeout_min_ms,
            election_timeout_max: opts.election_timeout_max_ms,
            max_payload_entries: 1024,
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            purge_batch_size: 1,
            enable_pre_vote: Some(true),
            install_snapshot_timeout: 10_000,
            // A member whose disk was lost comes back empty (and is
            // re-seeded): the leader starts its replication over instead of
            // stopping on the "reverted" log. Losing a disk is an operator
            // event (raft.md 3.8); the member's acknowledgements are gone
            // with it, as in any Raft.
            allow_log_reversion: Some(true),
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| format!("Raft settings: {e}"))?,
        );
        let network = Network::new(Arc::clone(&peers), opts.segment_size)
            .with_connector(opts.connector.clone());
        let listener = tokio::net::TcpListener::bind(peers.self_addr())
            .await
            .map_err(|e| format!("binding the Raft port {}: {e}", peers.self_addr()))?;
        let raft = Raft::new(
            peers.self_id,
            config,
            network,
            CommitLogRaft {
                shared: Arc::clone(&shared),
            },
            MqStateMachine::new(Arc::clone(&shared)),
        )
        .await
        .map_err(|e| format!("starting Raft: {e}"))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(crate::server::serve(
            listener,
            opts.acceptor.clone(),
            raft.clone(),
            Arc::clone(&peers),
            opts.segment_size,
            shutdown_rx.clone(),
        ));
        if pristine && opts.join {
            tracing::info!(group = %peers.group, "new member: waiting for the leader to add it (raftJoinGroup)");
        } else if pristine {
            match raft.initialize(peers.voter_ids()).await {
                Ok(()) => tracing::info!(group = %peers.group, "Raft group initialised"),
                Err(e) => tracing::debug!(error = %e, "Raft group already initialised"),
            }
        }
        {
            let (handle, raft, shared) = (
                tokio::runtime::Handle::current(),
                raft.clone(),
                Arc::clone(&shared),
            );
            store.set_retention_gate(Some(Arc::new(move |min| {
                release_log_below(&handle, &raft, &shared, min)
            })));
        }
        let lease = Duration::from_millis(opts.election_timeout_max_ms);
        let role = spawn_role_watch(&raft, lease, shutdown_rx.clone());
        spawn_meta_persister(Arc::clone(&shared), shutdown_rx.clone());
        if let Some(preferred) = opts.preferred_leader.filter(|&p| p != peers.self_id) {
            spawn_preferred_leader(raft.clone(), role.clone(), preferred, shutdown_rx.clone());
        }
        let (proposals, rx) = mpsc::unbounded_channel();
        tokio::spawn(propose(raft.clone(), rx, opts.segment_size));
        tracing::info!(
            group = %peers.group,
            id = peers.self_id,
            addr = peers.self_addr(),
            "Raft member started"
        );
        Ok(Arc::new(RaftNode {
            raft,
            dir,
            shared,
            peers,
            role,
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight: opts.max_inflight,
            commit_timeout: opts.commit_timeout,
            proposals,
            shutdown,
        }))
    }

    /// This member's role; changes are sent as they happen.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Hand a send to Raft. Sends submitted from one task are written in
    /// submission order. The future ends when the send is committed and
    /// applied, refused, or past `syncFlushTimeout`.
    pub fn submit(
        &self,
        mut msgs: Vec<PutMessage>,
    ) -> Result<impl Future<Output = SendOutcome> + Send + 'static, SubmitError> {
        let role = *self.role.borrow();
        if !role.leader {
            return Err(SubmitError::NotLeader(role.leader_id));
        }
        let bytes = self
            .shared
            .store
            .raft_check_put(&mut msgs)
            .map_err(SubmitError::Refused)?;
        let n = self.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = Inflight(Arc::clone(&self.inflight));
        if n >= self.max_inflight {
            return Err(SubmitError::Busy(n));
        }
        let (answer, rx) = oneshot::channel();
        let proposal = Proposal {
            msgs,
            bytes,
            answer,
        };
        if self.proposals.send(proposal).is_err() {
            return Err(SubmitError::NotLeader(None));
        }
        let timeout = self.commit_timeout;
        let mut role = self.role.clone();
        Ok(async move {
            let _guard = guard;
            // A leader that loses its lease (cut off from the majority, or
            // deposed) answers at once rather than at the timeout: the
            // entry may still be committed by the next leader, or not.
            let deposed = async {
                let _ = role.wait_for(|r| !r.leader).await;
            };
            let answer = tokio::select! {
                a = tokio::time::timeout(timeout, rx) => a,
                _ = deposed => {
                    return SendOutcome::Unknown(
                        "leadership was lost before the send was known committed".into(),
                    )
                }
            };
            match answer {
                Err(_) => {
                    SendOutcome::Unknown(format!("not committed within {} ms", timeout.as_millis()))
                }
                Ok(Err(_)) => SendOutcome::Unknown("the Raft member stopped".into()),
                Ok(Ok(Ok(reply))) => match reply {
                    MqReply::Stored(results) => SendOutcome::Stored(results),
                    MqReply::Rejected(e) => SendOutcome::Rejected(e),
                    MqReply::Empty => SendOutcome::Unknown("the entry carried no records".into()),
                },
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => {
                    SendOutcome::NotLeader(f.leader_id)
                }
                Ok(Ok(Err(e))) => SendOutcome::Unknown(e.to_string()),
            }
        })
    }

    /// Ask the leader to hand leadership to member `to`; returns once
    /// `to` leads, or with an error after twice the election timeout.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), String> {
        if !self.voters().contains(&to) {
            return Err(format!(
                "n{to} is not a member of group {}",
                self.peers.group
            ));
        }
        if self.role.borrow().leader_id == Some(to) {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| e.to_string())?;
        let mut role = self.role.clone();
        let done = tokio::time::timeout(Duration::from_secs(5), async {
            role.wait_for(|r| r.leader_id == Some(to)).await.is_ok()
        })
        .await;
        match done {
            Ok(true) => Ok(()),
            _ => Err(format!("n{to} did not take over within 5 s")),
        }
    }

    /// Let snapshots carry the broker's tables (once; later calls change
    /// nothing).
    pub fn set_state_hooks(&self, hooks: Arc<dyn crate::log_store::StateHooks>) {
        let _ = self.shared.state_hooks.set(hooks);
    }

    /// The voters and learners of the group's membership as this member
    /// knows it.
    pub fn voters(&self) -> BTreeSet<u64> {
        let m = self.raft.metrics().borrow_watched().clone();
        m.membership_config.membership().voter_ids().collect()
    }

    pub fn learners(&self) -> BTreeSet<u64> {
        let m = self.raft.metrics().borrow_watched().clone();
        m.membership_config.membership().learner_ids().collect()
    }

    /// Remember where member `id` is (a member being added), on disk too.
    pub fn add_peer(&self, id: u64, addr: &str) -> Result<(), String> {
        if self.peers.add_address(id, addr)? {
            let bytes =
                serde_json::to_vec_pretty(&self.peers.added()).map_err(|e| e.to_string())?;
            let path = peers_file(&self.dir);
            meridian_store::config_file::persist(&path, &bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!(id = format!("n{id}"), addr, "Raft member address added");
        }
        Ok(())
    }

    /// Leader only: add member `id` (its address known) as a learner and
    /// wait until it holds the whole log, at most `timeout`.
    pub async fn add_learner(&self, id: u64, timeout: Duration) -> Result<(), String> {
        if self.peers.addr(id).is_none() {
            return Err(format!("the address of n{id} is not known here"));
        }
        if self.voters().contains(&id) {
            return Ok(());
        }
        match tokio::time::timeout(timeout, self.raft.add_learner(id, EmptyNode {}, true)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "n{id} is a learner but did not catch up within {timeout:?}"
            )),
        }
    }

    /// Leader only: make learner `id` a voter (a joint change, committed
    /// on majorities of the old and the new group).
    pub async fn promote(&self, id: u64) -> Result<(), String> {
        if self.voters().contains(&id) {
            return Ok(());
        }
        if !self.learners().contains(&id) {
            return Err(format!("n{id} is not a learner; add it first"));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Leader only: take member `id` out of the group (voter or learner).
    pub async fn remove_member(&self, id: u64) -> Result<(), String> {
        let voters = self.voters();
        if voters.contains(&id) {
            if voters.len() <= 1 {
                return Err("the last voter cannot be removed".to_string());
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else if self.learners().contains(&id) {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            Ok(())
        }
    }

    /// The member's state, for operators.
    #[allow(deprecated)] // millis_since_quorum_ack: the plain number is what operators read
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let store = &self.shared.store;
        let write_offset = store.raft_write_position();
        let mut peers = BTreeMap::new();
        if let Some(rep) = &m.replication {
            let index = self.shared.index.read();
            for (&id, matched) in rep.iter() {
                let matched_index = matched.as_ref().map(|l| l.index());
                let matched_end = matched_index
                    .and_then(|i| index.get(i))
                    .map_or(store.min_commit_log_offset(), |s| s.end());
                let lag_bytes = (write_offset - matched_end).max(0);
                let lag_ms = if lag_bytes > 0 {
                    store
                        .raft_store_time_at(matched_end)
                        .map_or(0, |t| (meridian_protocol::now_ms() - t).max(0))
                } else {
                    0
                };
                peers.insert(
                    id,
                    PeerProgress {
                        matched_index,
                        lag_bytes,
                        lag_ms,
                    },
                );
            }
        }
        RaftStatus {
            group: self.peers.group.clone(),
            self_id: self.peers.self_id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: m.cluster_committed.as_ref().map(|l| l.index()),
            applied_index: m.last_applied.as_ref().map(|l| l.index()),
            visible_offset: store.raft_visible(),
            write_offset,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            peers,
        }
    }

    /// Stop Raft and the listener; the store stays open (the broker closes it).
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        // The gate holds this member's Raft handle: let the store go.
        self.shared.store.set_retention_gate(None);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        if let Err(e) = self.shared.persist_meta() {
            tracing::warn!(error = %e, "could not save the Raft meta file");
        }
    }
}

struct Inflight(Arc<AtomicUsize>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Most sends one entry carries.
const MAX_SENDS_PER_ENTRY: usize = 512;
/// Most record bytes one entry carries (and never more than a quarter of a
/// commit-log segment); a single larger send still goes alone.
const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Hands proposals to openraft in submission order. Sends that queued up
/// while openraft took the previous ones go into one entry together (as
/// long as none must land at a given queue offset, which may refuse it
/// alone), so under load the per-entry work of Raft — proposing, indexing,
/// replicating, applying, answering — is shared by many sends, as a group
/// commit shares a flush.
async fn propose(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>, segment_size: u64) {
    let max_bytes = MAX_ENTRY_BYTES.min(segment_size as usize / 4).max(1);
    let mut queued: Vec<Proposal> = Vec::new();
    let mut next: Option<Proposal> = None;
    loop {
        let first = match next.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let alone = !combinable(&first);
        queued.push(first);
        if !alone {
            while queued.len() < MAX_SENDS_PER_ENTRY {
                let Ok(p) = rx.try_recv() else { break };
                if !combinable(&p) || bytes + p.bytes > max_bytes {
                    next = Some(p);
                    break;
                }
                bytes += p.bytes;
                queued.push(p);
            }
        }
        let mut msgs = Vec::with_capacity(queued.iter().map(|p| p.msgs.len()).sum());
        let mut answers = Vec::with_capacity(queued.len());
        for p in queued.drain(..) {
            answers.push((p.msgs.len(), p.answer));
            msgs.extend(p.msgs);
        }
        let (responder, reply) = ProgressResponder::complete_only();
        if raft
            .client_write_ff(MqData::Put(PendingPut::new(msgs)), Some(responder))
            .await
            .is_err()
        {
            return; // Raft stopped; dropped answers end their sends
        }
        tokio::spawn(async move {
            let Ok(result) = reply.await else { return };
            split_answer(result, answers);
        });
    }
}

/// Whether a send may share an entry with others.
fn combinable(p: &Proposal) -> bool {
    p.msgs.iter().all(|m| m.at_queue_offset.is_none())
}

/// Give each send of an entry its part of the entry's answer.
fn split_answer(
    result: openraft::raft::ClientWriteResult<crate::types::MqRaft>,
    answers: Vec<(usize, oneshot::Sender<Answer>)>,
) {
    match result {
        Ok(resp) => {
            let counts: Vec<usize> = answers.iter().map(|(n, _)| *n).collect();
            for (reply, (_, answer)) in split_reply(resp.data, &counts).into_iter().zip(answers) {
                let _ = answer.send(Ok(reply));
            }
        }
        Err(e) => {
            for (_, answer) in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}

/// One reply per send of an entry, sends of `counts[i]` messages each:
/// stored results are dealt out in the order the messages were combined; a
/// refusal (nothing of the entry stored) goes to every send.
fn split_reply(reply: MqReply, counts: &[usize]) -> Vec<MqReply> {
    match reply {
        MqReply::Stored(results) => {
            let mut results = results.into_iter();
            counts
                .iter()
                .map(|&n| MqReply::Stored(results.by_ref().take(n).collect()))
                .collect()
        }
        MqReply::Rejected(e) => counts
            .iter()
            .map(|_| MqReply::Rejected(e.duplicate()))
            .collect(),
        MqReply::Empty => counts.iter().map(|_| MqReply::Empty).collect(),
    }
}

/// Turn openraft's metrics into the broker's [`Role`]. A leader that has
/// not heard from a majority within `lease` stops counting as leader (it
/// may be cut off; the others elect a new one), so it stops taking writes
/// and stops registering as the master. Re-checked every 50 ms, since a
/// cut-off leader's metrics may not change.
fn spawn_role_watch(
    raft: &Raft,
    lease: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Role> {
    use openraft::async_runtime::Instant as _;
    let (tx, rx) = watch::channel(Role::default());
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let role = {
                let m = metrics.borrow_and_update();
                let alone = m.membership_config.voter_ids().count() <= 1;
                let lease_held = alone
                    || m.last_quorum_acked
                        .as_ref()
                        .is_some_and(|t| t.elapsed() < lease);
                let ready = m.state == ServerState::Leader
                    && lease_held
                    && m.last_applied
                        .as_ref()
                        .is_some_and(|l| l.committed_leader_id().term == m.current_term);
                Role {
                    leader: ready,
                    term: m.current_term,
                    leader_id: m.current_leader,
                }
            };
            tx.send_if_modified(|r| {
                let changed = *r != role;
                *r = role;
                changed
            });
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
        }
    });
    rx
}

/// Retention wants the commit log to start at `min`: purge the Raft log of
/// every entry ending at or below it first (a metadata-only snapshot there,
/// then openraft's purge, which waits for replication still reading those
/// entries). Runs on the store's retention thread; blocks up to ~20 s.
/// `false` keeps the segments for now.
fn release_log_below(
    handle: &tokio::runtime::Handle,
    raft: &Raft,
    shared: &Shared,
    min: i64,
) -> bool {
    let target = {
        let index = shared.index.read();
        match index.get(index.first_index()) {
            None => return true,
            Some(first) if first.offset >= min => return true,
            Some(_) => {}
        }
        match index.last_ending_at_or_before(min) {
            Some(p) => p,
            None => return false,
        }
    };
    {
        let meta = shared.meta.lock();
        if meta.purged.as_ref().is_some_and(|p| p.index >= target) {
            return true;
        }
        if meta.applied.as_ref().is_none_or(|a| a.index < target) {
            return false; // not applied yet: keep the bytes
        }
    }
    let wait = |what: fn(&openraft::RaftMetrics<crate::types::MqRaft>) -> Option<u64>| {
        let mut metrics = raft.metrics();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                if what(&metrics.borrow_watched()).is_some_and(|i| i >= target) {
                    return true;
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, metrics.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return false,
                }
            }
        }
    };
    let done = handle.block_on(async {
        if raft.trigger().snapshot().await.is_err() {
            return false;
        }
        if !wait(|m| m.snapshot.as_ref().map(|l| l.index())).await {
            return false;
        }
        if raft.trigger().purge_log(target).await.is_err() {
            return false;
        }
        wait(|m| m.purged.as_ref().map(|l| l.index())).await
    });
    if done {
        tracing::info!(
            upto = target,
            commit_log_min = min,
            "Raft log purged for retention"
        );
    }
    done
}

/// `preferredLeaderId`: while this member leads, hand leadership to
/// `preferred` as soon as it holds everything this member has.
fn spawn_preferred_leader(
    raft: Raft,
    role: watch::Receiver<Role>,
    preferred: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if !role.borrow().leader {
                continue;
            }
            let caught_up = {
                let m = raft.metrics().borrow_watched().clone();
                let last = m.last_log_index;
                m.replication.as_ref().is_some_and(|r| {
                    r.get(&preferred)
                        .is_some_and(|matched| matched.as_ref().map(|l| l.index()) == last)
                })
            };
            if caught_up {
                tracing::info!(to = preferred, "handing leadership to the preferred leader");
                if raft.trigger().transfer_leader(preferred).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
    });
}

/// Save the Raft meta file once a second.
fn spawn_meta_persister(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let s = Arc::clone(&shared);
            let r = tokio::task::spawn_blocking(move || s.persist_meta()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "could not save the Raft meta file");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(i: i64) -> PutResult {
        PutResult {
            commit_log_offset: i * 100,
            queue_offset: i,
            wrote_bytes: 100,
            store_timestamp: 1,
            msg_id: format!("id{i}"),
        }
    }

    #[test]
    fn each_send_of_a_combined_entry_gets_its_own_results() {
        let stored = MqReply::Stored((0..6).map(result).collect());
        let parts = split_reply(stored, &[1, 3, 2]);
        let offsets: Vec<Vec<i64>> = parts
            .iter()
            .map(|p| match p {
                MqReply::Stored(r) => r.iter().map(|r| r.queue_offset).collect(),
                other => panic!("not stored: {other:?}"),
            })
            .collect();
        assert_eq!(offsets, vec![vec![0], vec![1, 2, 3], vec![4, 5]]);
    }

    #[test]
    fn a_refused_entry_refuses_every_send_in_it() {
        let parts = split_reply(MqReply::Rejected(PutError::DiskFull), &[1, 2, 1]);
        assert_eq!(parts.len(), 3);
        for p in parts {
            assert!(matches!(p, MqReply::Rejected(PutError::DiskFull)), "{p:?}");
        }
    }
}
