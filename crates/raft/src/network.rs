//! The client side of the Raft transport: openraft asks [`Network`] for a
//! [`PeerClient`] per target member and sends its RPCs through it.
//!
//! A client connects lazily, on its first RPC, to the target's address in
//! the local `dLegerPeers` (TCP_NODELAY), says [`Hello`] and waits for the
//! acknowledgement; then it sends one request at a time and waits for the
//! answer with the same request id (see `codec`). openraft asks for
//! separate clients for replication, heartbeats and snapshots, so each gets
//! its own connection and a heartbeat never waits behind a large append.
//!
//! Failures, as openraft wants them:
//! - no connection (connect refused or timed out, hello refused):
//!   `Unreachable`, and openraft backs off before the next attempt;
//! - a connection that fails afterwards, an error frame from the peer, an
//!   answer that does not fit: `Network`, and openraft retries at once;
//! - no answer within the RPC's time: `Timeout`.
//!
//! After any failure the connection is dropped and the next RPC opens a new
//! one. So is a connection whose RPC openraft gave up on (the future was
//! dropped mid-way): the connection is only put back after a complete
//! exchange, so a late answer can never be read as the next one's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{EmptyNode, OptionalSend, RPCTypes};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Framed;

use crate::codec::{CommitLogSnapshot, Frame, FullSnapshot, Hello, Kind, Message, RaftCodec};
use crate::peers::Peers;
use crate::types::{MqRaft, Vote};

/// A snapshot as openraft hands it to the network.
pub type Snapshot = openraft::alias::SnapshotOf<MqRaft, CommitLogSnapshot>;

type Conn = Framed<TcpStream, RaftCodec>;

/// openraft's network factory: clients for the members of `dLegerPeers`.
#[derive(Debug, Clone)]
pub struct Network {
    peers: Arc<Peers>,
    segment_size: u64,
}

impl Network {
    /// Clients for `peers`, sending `segment_size` (this member's
    /// commit-log segment size) in every hello.
    pub fn new(peers: Arc<Peers>, segment_size: u64) -> Network {
        Network {
            peers,
            segment_size,
        }
    }

    fn client(&self, target: u64, purpose: &'static str) -> PeerClient {
        if self.peers.addr(target).is_none() {
            tracing::warn!(
                target_id = target,
                "Raft membership names n{target}, which is not in dLegerPeers: it is unreachable"
            );
        }
        PeerClient {
            peers: Arc::clone(&self.peers),
            target,
            segment_size: self.segment_size,
            purpose,
            conn: None,
            next_id: 1,
            failures: 0,
        }
    }
}

impl RaftNetworkFactory<MqRaft> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, _node: &EmptyNode) -> PeerClient {
        self.client(target, "replication")
    }

    async fn new_heartbeat_client(&mut self, target: u64, _node: &EmptyNode) -> PeerClient {
        self.client(target, "heartbeat")
    }

    async fn new_snapshot_client(&mut self, target: u64, _node: &EmptyNode) -> PeerClient {
        self.client(target, "snapshot")
    }
}

/// RPCs to one member over one lazily opened connection.
pub struct PeerClient {
    peers: Arc<Peers>,
    target: u64,
    segment_size: u64,
    /// Which of openraft's clients this is (for logs).
    purpose: &'static str,
    conn: Option<Conn>,
    /// Request id of the next RPC (0 is the hello's).
    next_id: u64,
    /// Connection attempts that failed in a row: the first is logged at
    /// info, the rest at debug (a dead peer is normal during failover).
    failures: u32,
}

/// Why an RPC failed, before it becomes openraft's error type.
#[derive(Debug)]
enum Failure {
    /// No connection could be set up.
    Unreachable(String),
    /// The connection failed, or the peer answered an error or nonsense.
    Network(String),
    /// No answer in time.
    Timeout(Timeout<MqRaft>),
}

impl From<Failure> for RPCError<MqRaft> {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            Failure::Network(m) => RPCError::Network(NetworkError::from_string(m)),
            Failure::Timeout(t) => RPCError::Timeout(t),
        }
    }
}

impl From<Failure> for StreamingError<MqRaft> {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unreachable(m) => StreamingError::Unreachable(Unreachable::from_string(m)),
            Failure::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
            Failure::Timeout(t) => StreamingError::Timeout(t),
        }
    }
}

impl PeerClient {
    /// Send `msg` and return the peer's answer of the matching response
    /// kind, within `ttl` (connection set-up included).
    async fn call(
        &mut self,
        msg: Message,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<Message, Failure> {
        let deadline = Instant::now() + ttl;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.connect(deadline).await?,
        };
        let id = self.next_id;
        self.next_id += 1;
        let kind = msg.kind();
        let frame = Frame { id, msg };
        let reply = match timeout_at(deadline, exchange(&mut conn, frame)).await {
            Ok(reply) => reply,
            Err(_) => {
                tracing::debug!(
                    target_id = self.target,
                    purpose = self.purpose,
                    "Raft {kind} got no answer within {ttl:?}; reconnecting"
                );
                return Err(Failure::Timeout(Timeout {
                    action,
                    id: self.peers.self_id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
        };
        match reply {
            Ok(reply) => {
                self.conn = Some(conn);
                Ok(reply)
            }
            Err(reason) => {
                tracing::debug!(
                    target_id = self.target,
                    purpose = self.purpose,
                    "Raft {kind} to n{} failed: {reason}",
                    self.target
                );
                Err(Failure::Network(format!(
                    "{kind} to n{}: {reason}",
                    self.target
                )))
            }
        }
    }

    /// Open a connection and get the hello accepted, by `deadline`.
    async fn connect(&mut self, deadline: Instant) -> Result<Conn, Failure> {
        let target = self.target;
        let Some(addr) = self.peers.addr(target) else {
            return Err(Failure::Unreachable(format!(
                "n{target} is not in dLegerPeers"
            )));
        };
        let addr = addr.to_string();
        let hello = Hello::new(
            &self.peers.group,
            self.peers.self_id,
            target,
            self.segment_size,
        );
        let result = match timeout_at(deadline, handshake(&addr, hello)).await {
            Ok(result) => result,
            Err(_) => Err(HandshakeError::Failed(
                "no connection within the RPC timeout".to_string(),
            )),
        };
        match result {
            Ok(conn) => {
                if self.failures > 0 {
                    tracing::info!(
                        target_id = target,
                        purpose = self.purpose,
                        "Raft peer n{target} at {addr} reachable again after {} failed attempts",
                        self.failures
                    );
                } else {
                    tracing::debug!(
                        target_id = target,
                        purpose = self.purpose,
                        "Raft connection to n{target} at {addr} open"
                    );
                }
                self.failures = 0;
                Ok(conn)
            }
            Err(e) => {
                let first = self.failures == 0;
                self.failures = self.failures.saturating_add(1);
                match (&e, first) {
                    (HandshakeError::Refused(_), true) => tracing::warn!(
                        target_id = target,
                        purpose = self.purpose,
                        "Raft peer n{target} at {addr}: {e}"
                    ),
                    (HandshakeError::Failed(_), true) => tracing::info!(
                        target_id = target,
                        purpose = self.purpose,
                        "Raft peer n{target} at {addr} unreachable: {e}"
                    ),
                    (_, false) => tracing::debug!(
                        target_id = target,
                        purpose = self.purpose,
                        failures = self.failures,
                        "Raft peer n{target} at {addr} still unreachable: {e}"
                    ),
                }
                Err(Failure::Unreachable(format!("n{target} at {addr}: {e}")))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    /// The peer answered the hello with an error: a configuration mismatch.
    #[error("refused the connection: {0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// Connect to `addr` and get `hello` acknowledged.
async fn handshake(addr: &str, hello: Hello) -> Result<Conn, HandshakeError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| HandshakeError::Failed(format!("{what}: {e}"));
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| failed("connect", &e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| failed("TCP_NODELAY", &e))?;
    let mut conn = Framed::new(stream, RaftCodec::new());
    conn.send(Frame {
        id: 0,
        msg: Message::Hello(hello),
    })
    .await
    .map_err(|e| failed("hello", &e))?;
    match conn.next().await {
        Some(Ok(Frame {
            msg: Message::HelloAck,
            ..
        })) => Ok(conn),
        Some(Ok(Frame {
            msg: Message::Error(text),
            ..
        })) => Err(HandshakeError::Refused(text)),
        Some(Ok(frame)) => Err(HandshakeError::Failed(format!(
            "answered the hello with {}",
            frame.msg.kind()
        ))),
        Some(Err(e)) => Err(failed("hello", &e)),
        None => Err(HandshakeError::Failed(
            "closed the connection during the hello".to_string(),
        )),
    }
}

/// Send `frame` and read its answer: the matching response kind with the
/// same id. An error frame, another kind or id, or a closed connection are
/// failures (the caller drops the connection).
async fn exchange(conn: &mut Conn, frame: Frame) -> Result<Message, String> {
    let id = frame.id;
    let kind = frame.msg.kind();
    let Some(expected) = kind.response() else {
        return Err(format!("{kind} is not a request"));
    };
    conn.send(frame).await.map_err(|e| format!("send: {e}"))?;
    let reply = match conn.next().await {
        Some(Ok(reply)) => reply,
        Some(Err(e)) => return Err(format!("receive: {e}")),
        None => return Err("connection closed by the peer".to_string()),
    };
    if reply.id != id {
        return Err(format!(
            "answer to request {} where {id} was expected",
            reply.id
        ));
    }
    match reply.msg {
        Message::Error(text) => Err(format!("peer answered: {text}")),
        msg if msg.kind() == expected => Ok(msg),
        msg => Err(format!("answered {kind} with {}", msg.kind())),
    }
}

/// An answer of a kind `exchange` already ruled out.
fn unexpected(kind: Kind) -> Failure {
    Failure::Network(format!("unexpected {kind} answer"))
}

impl RaftNetworkV2<MqRaft> for PeerClient {
    type SnapshotData = CommitLogSnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MqRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MqRaft>, RPCError<MqRaft>> {
        let msg = Message::AppendEntries(rpc);
        match self
            .call(msg, RPCTypes::AppendEntries, option.soft_ttl())
            .await?
        {
            Message::AppendEntriesResponse(r) => Ok(r),
            other => Err(unexpected(other.kind()).into()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MqRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<MqRaft>, RPCError<MqRaft>> {
        match self
            .call(Message::Vote(rpc), RPCTypes::Vote, option.soft_ttl())
            .await?
        {
            Message::VoteResponse(r) => Ok(r),
            other => Err(unexpected(other.kind()).into()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<MqRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<MqRaft>, RPCError<MqRaft>> {
        match self
            .call(Message::PreVote(rpc), RPCTypes::Vote, option.soft_ttl())
            .await?
        {
            Message::PreVoteResponse(r) => Ok(r),
            other => Err(unexpected(other.kind()).into()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<MqRaft>, StreamingError<MqRaft>> {
        let msg = Message::FullSnapshot(Box::new(FullSnapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        }));
        let ttl = option.soft_ttl();
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = self.call(msg, RPCTypes::InstallSnapshot, ttl) => match reply? {
                Message::FullSnapshotResponse(r) => Ok(r),
                other => Err(unexpected(other.kind()).into()),
            },
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<MqRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<MqRaft>, RPCError<MqRaft>> {
        match self
            .call(
                Message::TransferLeader(req),
                RPCTypes::TransferLeader,
                option.soft_ttl(),
            )
            .await?
        {
            Message::TransferLeaderResponse(r) => Ok(r),
            other => Err(unexpected(other.kind()).into()),
        }
    }
}
