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
//! Replication is pipelined: openraft hands the replication client a
//! stream of appends, each carrying every entry ready when it is made, and
//! [`PeerClient`]'s `stream_append` sends each at once on a connection of
//! its own, up to [`MAX_INFLIGHT_APPENDS`] unanswered, reading the answers
//! in order as they come. Over a long link the commit latency is then one
//! round trip, not one round trip plus the wait for the previous answer,
//! and throughput is bounded by the link's bandwidth rather than by
//! entries per round trip. The stream connects only once openraft hands
//! it its first append, which comes after openraft's back-off delay, so
//! an unreachable member is not redialled in a tight loop. Heartbeats,
//! which openraft also sends as (one-append) streams, go as plain RPCs on
//! the heartbeat client's kept connection.
//!
//! Failures, as openraft wants them:
//! - no connection (connect refused or timed out, hello refused):
//!   `Unreachable`, and openraft backs off before the next attempt;
//! - a connection that fails afterwards, an error frame from the peer, an
//!   answer that does not fit: `Network`, and openraft retries at once;
//! - no answer within the RPC's time: `Timeout`.
//!
//! An RPC's time is `RPCOption::hard_ttl()`, connection set-up included,
//! but at least [`MIN_RPC_TIME`].
//! openraft passes `heartbeat_interval` for appends and heartbeats,
//! `election_timeout_min` for votes and transfers, and
//! `install_snapshot_timeout` for snapshots.
//!
//! openraft may also give up on an RPC sooner, by dropping its future: it
//! gives a heartbeat one heartbeat interval (100 ms), while over a link of
//! 35 ms each way connecting, the hello and the heartbeat take 140 ms.
//! Neither is lost work: a connection being set up finishes in a task of
//! its own and waits for the next RPC, and an open connection is kept,
//! the late answer to the abandoned request being skipped by its id. After
//! any failure, or when the client's own deadline passes, the connection
//! is dropped and the next RPC opens a new one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use meridian_remoting::tls::{Connector, NetStream};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{EmptyNode, OptionalSend, RPCTypes};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Framed;

use crate::codec::{CommitLogSnapshot, Frame, FullSnapshot, Hello, Kind, Message, RaftCodec};
use crate::peers::Peers;
use crate::types::{MqRaft, Vote};

/// A snapshot as openraft hands it to the network.
pub type Snapshot = openraft::alias::SnapshotOf<MqRaft, CommitLogSnapshot>;

type Conn = Framed<NetStream, RaftCodec>;

/// openraft's network factory: clients for the members of `dLegerPeers`.
#[derive(Debug, Clone)]
pub struct Network {
    peers: Arc<Peers>,
    segment_size: u64,
    connector: Connector,
}

impl Network {
    /// Clients for `peers`, sending `segment_size` (this member's
    /// commit-log segment size) in every hello.
    pub fn new(peers: Arc<Peers>, segment_size: u64) -> Network {
        Network {
            peers,
            segment_size,
            connector: Connector::default(),
        }
    }

    /// Connect to members with `connector` (TLS when it is one).
    pub fn with_connector(mut self, connector: Connector) -> Network {
        self.connector = connector;
        self
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
            connector: self.connector.clone(),
            purpose,
            conn: None,
            connecting: None,
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
        self.client(target, HEARTBEAT)
    }

    async fn new_snapshot_client(&mut self, target: u64, _node: &EmptyNode) -> PeerClient {
        self.client(target, "snapshot")
    }
}

/// The purpose of openraft's heartbeat clients.
const HEARTBEAT: &str = "heartbeat";

/// RPCs to one member over one lazily opened connection.
pub struct PeerClient {
    peers: Arc<Peers>,
    target: u64,
    segment_size: u64,
    connector: Connector,
    /// Which of openraft's clients this is (for logs).
    purpose: &'static str,
    conn: Option<Conn>,
    /// A connection being set up. It runs as a task of its own, so an RPC
    /// that openraft gives up on (heartbeats are given one heartbeat
    /// interval, less than connect + hello + answer over a long link)
    /// leaves it to finish for the next RPC instead of starting over.
    connecting: Option<tokio::task::JoinHandle<Result<Conn, HandshakeError>>>,
    /// Request id of the next RPC (0 is the hello's).
    next_id: u64,
    /// Connection attempts that failed in a row: the first is logged at
    /// info, the rest at debug (a dead peer is normal during failover).
    failures: u32,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(pending) = self.connecting.take() {
            pending.abort();
        }
    }
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

/// The least time an RPC is given (see `PeerClient::call`), and the
/// longest a replication stream waits for its next answer.
pub const MIN_RPC_TIME: Duration = Duration::from_millis(1000);

/// Appends a replication stream keeps unanswered before it waits for an
/// answer. What a link needs is appends per second × round trip: a
/// 3-member group taking 20,000 msg/s over a 70 ms round trip makes about
/// 2,000 entries a second (sends share entries, raft.md 3.4), so about 150
/// appends are in flight when each carries one entry. 512 leaves room for
/// more entries or a longer link; it also bounds what a slow member is
/// sent ahead.
pub const MAX_INFLIGHT_APPENDS: usize = 512;

impl PeerClient {
    /// Send `msg` and return the peer's answer of the matching response
    /// kind, within `ttl` (connection set-up included).
    async fn call(
        &mut self,
        msg: Message,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<Message, Failure> {
        // openraft asks for the heartbeat interval on appends; over a long
        // link (35 ms one way) the connection set-up alone takes two round
        // trips, so no RPC is given less than MIN_RPC_TIME.
        let ttl = ttl.max(MIN_RPC_TIME);
        let deadline = Instant::now() + ttl;
        if self.conn.is_none() {
            self.conn = Some(self.connect(deadline).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            unreachable!("connected above");
        };
        let id = self.next_id;
        self.next_id += 1;
        let kind = msg.kind();
        let frame = Frame { id, msg };
        let reply = match timeout_at(deadline, exchange(conn, frame)).await {
            Ok(reply) => reply,
            Err(_) => {
                self.conn = None;
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
            Ok(reply) => Ok(reply),
            Err(reason) => {
                self.conn = None;
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
        let connector = self.connector.clone();
        let pending = self.connecting.get_or_insert_with(|| {
            let addr = addr.clone();
            tokio::spawn(async move { handshake(&connector, &addr, hello).await })
        });
        let result = match timeout_at(deadline, pending).await {
            // Still connecting: the next RPC waits for the same attempt.
            Err(_) => {
                return Err(Failure::Unreachable(format!(
                    "n{target} at {addr}: no connection within the RPC timeout"
                )))
            }
            Ok(joined) => {
                self.connecting = None;
                joined.unwrap_or_else(|e| Err(HandshakeError::Failed(format!("connect task: {e}"))))
            }
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
async fn handshake(
    connector: &Connector,
    addr: &str,
    hello: Hello,
) -> Result<Conn, HandshakeError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| HandshakeError::Failed(format!("{what}: {e}"));
    let stream = connector
        .connect(addr, Duration::from_secs(10))
        .await
        .map_err(|e| failed("connect", &e))?;
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
    let reply = next_answer(conn, id).await?;
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

/// The next frame on `conn` that is not a late answer to an earlier
/// request (one openraft gave up on: see the module docs).
async fn next_answer<S, E>(frames: &mut S, id: u64) -> Result<Frame, String>
where
    S: futures::Stream<Item = Result<Frame, E>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        match frames.next().await {
            Some(Ok(frame)) if frame.id < id => continue,
            Some(Ok(frame)) => return Ok(frame),
            Some(Err(e)) => return Err(format!("receive: {e}")),
            None => return Err("connection closed by the peer".to_string()),
        }
    }
}

/// An answer of a kind `exchange` already ruled out.
fn unexpected(kind: Kind) -> Failure {
    Failure::Network(format!("unexpected {kind} answer"))
}

/// Aborts the task it holds when dropped: the sending half of a
/// replication stream ends with the stream openraft reads.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), String>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the answer half of a replication stream reads from.
struct StreamReader {
    frames: futures::stream::SplitStream<Conn>,
    /// Ids of the appends sent, in order; closed when the sender ends.
    sent: tokio::sync::mpsc::Receiver<u64>,
    sender: AbortOnDrop,
    wait: Duration,
    self_id: u64,
    target: u64,
}

type StreamItem = Result<StreamAppendResult<MqRaft>, RPCError<MqRaft>>;

impl StreamReader {
    /// The answer to the next append sent; `None` once every append is
    /// answered and the input has ended. After an `Err`, or an answer
    /// that ends the stream, the caller reads no further.
    async fn next(&mut self) -> Option<StreamItem> {
        let Some(id) = self.sent.recv().await else {
            // The sender is done: the input ended, or a write failed.
            return match (&mut self.sender.0).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Err(Failure::Network(e).into())),
                Err(e) => Some(Err(Failure::Network(format!("append sender: {e}")).into())),
            };
        };
        let frame = match tokio::time::timeout(self.wait, next_answer(&mut self.frames, id)).await {
            Err(_) => {
                return Some(Err(Failure::Timeout(Timeout {
                    action: RPCTypes::AppendEntries,
                    id: self.self_id,
                    target: self.target,
                    timeout: self.wait,
                })
                .into()))
            }
            Ok(Err(e)) => {
                return Some(Err(Failure::Network(format!(
                    "replication stream to n{}: {e}",
                    self.target
                ))
                .into()))
            }
            Ok(Ok(frame)) => frame,
        };
        if frame.id != id {
            return Some(Err(Failure::Network(format!(
                "replication stream to n{}: answer to append {} where {id} was expected",
                self.target, frame.id
            ))
            .into()));
        }
        Some(match frame.msg {
            Message::AppendStreamResponse(r) => Ok(r),
            Message::Error(text) => Err(Failure::Network(format!(
                "replication stream to n{}: peer answered: {text}",
                self.target
            ))
            .into()),
            other => Err(unexpected(other.kind()).into()),
        })
    }
}

impl RaftNetworkV2<MqRaft> for PeerClient {
    type SnapshotData = CommitLogSnapshot;

    /// Pipelined replication (see the module docs): appends are sent as
    /// openraft makes them, up to [`MAX_INFLIGHT_APPENDS`] unanswered, and
    /// their answers yielded in order. The connection belongs to the
    /// stream and closes with it.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, StreamItem>, RPCError<MqRaft>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<MqRaft>> + OptionalSend + Unpin + 'static,
    {
        // A heartbeat is one append with no entries, sent every heartbeat
        // interval and given that long: it goes on the client's kept
        // connection, as an RPC, rather than on a stream's own.
        if self.purpose == HEARTBEAT {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            let wait = option.soft_ttl().max(MIN_RPC_TIME);
            let mut input = input;
            // openraft's back-off after a failure is a delay before the
            // next request is handed out: wait for that request before
            // connecting, so an unreachable member is not redialled at once.
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, StreamItem>);
            };
            let conn = match self.conn.take() {
                Some(conn) => conn,
                None => self.connect(Instant::now() + wait).await?,
            };
            let (mut sink, frames) = conn.split();
            let (sent_tx, sent) = tokio::sync::mpsc::channel(MAX_INFLIGHT_APPENDS);
            let mut id = self.next_id;
            let sender = tokio::spawn(async move {
                let mut input = futures::stream::iter([first]).chain(input);
                while let Some(req) = input.next().await {
                    // A slot first: at most MAX_INFLIGHT_APPENDS unanswered.
                    let Ok(slot) = sent_tx.reserve().await else {
                        return Ok(());
                    };
                    sink.send(Frame {
                        id,
                        msg: Message::AppendStream(req),
                    })
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                    slot.send(id);
                    id += 1;
                }
                Ok(())
            });
            let reader = StreamReader {
                frames,
                sent,
                sender: AbortOnDrop(sender),
                wait,
                self_id: self.peers.self_id,
                target: self.target,
            };
            let answers = futures::stream::unfold(Some(reader), |reader| async move {
                let mut reader = reader?;
                let item = reader.next().await?;
                let go_on = matches!(item, Ok(Ok(_)));
                Some((item, go_on.then_some(reader)))
            });
            Ok(Box::pin(answers) as BoxStream<'s, StreamItem>)
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MqRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MqRaft>, RPCError<MqRaft>> {
        let msg = Message::AppendEntries(rpc);
        match self
            .call(msg, RPCTypes::AppendEntries, option.hard_ttl())
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
            .call(Message::Vote(rpc), RPCTypes::Vote, option.hard_ttl())
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
            .call(Message::PreVote(rpc), RPCTypes::Vote, option.hard_ttl())
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
        let ttl = option.hard_ttl();
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
                option.hard_ttl(),
            )
            .await?
        {
            Message::TransferLeaderResponse(r) => Ok(r),
            other => Err(unexpected(other.kind()).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openraft::raft::StreamAppendError;
    use openraft::StoredMembership;
    use tokio::net::TcpListener;

    use super::*;
    use crate::codec::SnapshotMeta;
    use crate::types::LogId;

    const GROUP: &str = "broker-a";
    const SEGMENT: u64 = 1 << 20;

    /// How the fake peer answers a request (`None`: not at all).
    type Answer = fn(usize, Message) -> Option<Message>;

    /// A peer that checks hellos like the real server and answers requests
    /// with `answer(request number, request)`. Returns its address and
    /// the count of connections it accepted.
    async fn fake_peer(answer: Answer) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let requests = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let requests = Arc::clone(&requests);
                tokio::spawn(async move {
                    let mut conn = Framed::new(stream, RaftCodec::new());
                    if !greet(&mut conn).await {
                        return;
                    }
                    while let Some(Ok(frame)) = conn.next().await {
                        let n = requests.fetch_add(1, Ordering::SeqCst);
                        match answer(n, frame.msg) {
                            Some(msg) => {
                                if conn.send(Frame { id: frame.id, msg }).await.is_err() {
                                    return;
                                }
                            }
                            // hold the request unanswered
                            None => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn network(group: &str, addr: &str) -> Network {
        let peers = Peers::parse(group, &format!("n0-127.0.0.1:1;n1-{addr}"), "n0").unwrap();
        Network::new(Arc::new(peers), SEGMENT)
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(5))
    }

    fn vote_request() -> VoteRequest<MqRaft> {
        VoteRequest::new(Vote::new(2, 0), None)
    }

    fn answer_all(_: usize, msg: Message) -> Option<Message> {
        Some(match msg {
            Message::AppendEntries(_) => {
                Message::AppendEntriesResponse(AppendEntriesResponse::Success)
            }
            Message::Vote(r) => Message::VoteResponse(VoteResponse::new(r.vote, None, true)),
            Message::PreVote(r) => Message::PreVoteResponse(VoteResponse::new(r.vote, None, false)),
            Message::FullSnapshot(s) => {
                Message::FullSnapshotResponse(SnapshotResponse::new(s.vote))
            }
            Message::TransferLeader(_) => Message::TransferLeaderResponse(Ok(())),
            other => Message::Error(format!("unexpected {}", other.kind())),
        })
    }

    /// Read the client's hello and answer it as the real server does:
    /// acknowledged if it is for member n1 of GROUP, refused otherwise.
    async fn greet(conn: &mut Framed<tokio::net::TcpStream, RaftCodec>) -> bool {
        let Some(Ok(Frame {
            id,
            msg: Message::Hello(h),
        })) = conn.next().await
        else {
            return false;
        };
        let msg = match h.check(GROUP, 1, SEGMENT) {
            Ok(()) => Message::HelloAck,
            Err(e) => Message::Error(e),
        };
        let ok = matches!(msg, Message::HelloAck);
        conn.send(Frame { id, msg }).await.is_ok() && ok
    }

    /// A peer that reads `hold` appends of a replication stream before it
    /// answers any, then answers them in order: matched up to each one's
    /// last entry, a conflict for the one numbered `conflict_at`.
    async fn stream_peer(hold: usize, conflict_at: Option<usize>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = Framed::new(stream, RaftCodec::new());
            if !greet(&mut conn).await {
                return;
            }
            let mut held = Vec::new();
            while held.len() < hold {
                match conn.next().await {
                    Some(Ok(Frame {
                        id,
                        msg: Message::AppendStream(req),
                    })) => held.push((id, req.entries.last().map(|e| e.log_id))),
                    _ => return,
                }
            }
            for (n, (id, last)) in held.into_iter().enumerate() {
                let answer = if Some(n) == conflict_at {
                    Err(StreamAppendError::Conflict(LogId::new_term_index(1, 0)))
                } else {
                    Ok(last)
                };
                let msg = Message::AppendStreamResponse(answer);
                if conn.send(Frame { id, msg }).await.is_err() {
                    return;
                }
            }
            // Keep the connection open until the client drops it.
            while conn.next().await.is_some() {}
        });
        addr
    }

    fn appends(n: u64) -> Vec<AppendEntriesRequest<MqRaft>> {
        (0..n)
            .map(|i| AppendEntriesRequest::<MqRaft> {
                vote: Vote::new_committed(1, 0),
                prev_log_id: (i > 0).then(|| LogId::new_term_index(1, i - 1)),
                entries: vec![openraft::Entry {
                    log_id: LogId::new_term_index(1, i),
                    payload: openraft::EntryPayload::Blank,
                }],
                leader_commit: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_replication_stream_keeps_appends_in_flight_and_answers_in_order() {
        // The peer answers nothing until it holds eight appends: a client
        // that waited for each answer before the next send would time out.
        let addr = stream_peer(8, None).await;
        let mut net = network(GROUP, &addr);
        let mut client = net.new_client(1, &EmptyNode {}).await;
        let input = futures::stream::iter(appends(8));
        let answers: Vec<_> = RaftNetworkV2::stream_append(&mut client, input, option())
            .await
            .unwrap()
            .collect()
            .await;
        let matched: Vec<Option<LogId>> =
            answers.into_iter().map(|a| a.unwrap().unwrap()).collect();
        let want: Vec<Option<LogId>> = (0..8).map(|i| Some(LogId::new_term_index(1, i))).collect();
        assert_eq!(matched, want);
    }

    #[tokio::test]
    async fn a_replication_stream_without_answers_ends_in_a_timeout() {
        // The peer holds everything: no answer ever comes.
        let addr = stream_peer(usize::MAX, None).await;
        let mut net = network(GROUP, &addr);
        let mut client = net.new_client(1, &EmptyNode {}).await;
        let input = futures::stream::iter(appends(2));
        let option = RPCOption::new(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let answers: Vec<_> = RaftNetworkV2::stream_append(&mut client, input, option)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(
            answers.len(),
            1,
            "the stream ends at the first missing answer"
        );
        assert!(
            matches!(answers[0], Err(RPCError::Timeout(_))),
            "{:?}",
            answers[0]
        );
        assert!(
            started.elapsed() >= MIN_RPC_TIME,
            "waited {:?}",
            started.elapsed()
        );
    }

    /// A peer at the end of a long link: it answers the hello and every
    /// append `delay` after reading it.
    async fn far_peer(delay: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut conn = Framed::new(stream, RaftCodec::new());
                    tokio::time::sleep(delay).await;
                    if !greet(&mut conn).await {
                        return;
                    }
                    while let Some(Ok(frame)) = conn.next().await {
                        tokio::time::sleep(delay).await;
                        let msg = Message::AppendEntriesResponse(AppendEntriesResponse::Success);
                        if conn.send(Frame { id: frame.id, msg }).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn heartbeats_get_through_a_link_slower_than_their_interval() {
        // openraft gives each heartbeat one interval (100 ms). Over this
        // link a new connection's hello and the heartbeat take 120 ms
        // together, a heartbeat on an open connection 60 ms: heartbeats
        // get through once the connection is kept, never if each one
        // opens its own.
        let addr = far_peer(Duration::from_millis(60)).await;
        let mut net = network(GROUP, &addr);
        let mut hb = net.new_heartbeat_client(1, &EmptyNode {}).await;
        let interval = Duration::from_millis(100);
        let mut answered = 0;
        for _ in 0..10 {
            let heartbeat = AppendEntriesRequest::<MqRaft> {
                vote: Vote::new_committed(1, 0),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            };
            let input = futures::stream::iter([heartbeat]);
            let beat = async {
                let mut answers =
                    RaftNetworkV2::stream_append(&mut hb, input, RPCOption::new(interval)).await?;
                answers.next().await.transpose()
            };
            if let Ok(Ok(Some(Ok(_)))) = tokio::time::timeout(interval, beat).await {
                answered += 1;
            } else {
                tokio::time::sleep(interval).await;
            }
        }
        assert!(answered >= 5, "{answered} of 10 heartbeats answered");
    }

    #[tokio::test]
    async fn a_conflict_ends_the_replication_stream() {
        let addr = stream_peer(4, Some(2)).await;
        let mut net = network(GROUP, &addr);
        let mut client = net.new_client(1, &EmptyNode {}).await;
        let input = futures::stream::iter(appends(4));
        let answers: Vec<_> = RaftNetworkV2::stream_append(&mut client, input, option())
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(answers.len(), 3, "nothing is read after the conflict");
        assert!(answers[0].as_ref().unwrap().is_ok());
        assert!(answers[1].as_ref().unwrap().is_ok());
        assert!(matches!(
            answers[2],
            Ok(Err(StreamAppendError::Conflict(_)))
        ));
    }

    #[tokio::test]
    async fn every_rpc_reaches_the_peer_on_one_connection() {
        let (addr, accepted) = fake_peer(answer_all).await;
        let mut net = network(GROUP, &addr);
        let mut client = net.new_client(1, &EmptyNode {}).await;

        let r = client.vote(vote_request(), option()).await.unwrap();
        assert!(r.vote_granted);
        let r = client.pre_vote(vote_request(), option()).await.unwrap();
        assert!(!r.vote_granted);
        let req = AppendEntriesRequest::<MqRaft> {
            vote: Vote::new_committed(2, 0),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let r = RaftNetworkV2::append_entries(&mut client, req, option())
            .await
            .unwrap();
        assert!(r.is_success());
        let r = RaftNetworkV2::transfer_leader(
            &mut client,
            TransferLeaderRequest::new(Vote::new_committed(2, 0), 1, None),
            option(),
        )
        .await
        .unwrap();
        assert_eq!(r, Ok(()));
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new_term_index(2, 7)),
                last_membership: StoredMembership::default(),
            },
            snapshot: CommitLogSnapshot {
                next_offset: 4096,
                state: Vec::new(),
            },
        };
        let r = client
            .full_snapshot(
                Vote::new_committed(2, 0),
                snapshot,
                std::future::pending::<ReplicationClosed>(),
                option(),
            )
            .await
            .unwrap();
        assert_eq!(r.vote, Vote::new_committed(2, 0));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // the heartbeat client has its own connection
        let mut hb = net.new_heartbeat_client(1, &EmptyNode {}).await;
        hb.vote(vote_request(), option()).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nobody_listening_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut client = network(GROUP, &addr).new_client(1, &EmptyNode {}).await;
        for _ in 0..2 {
            let e = client.vote(vote_request(), option()).await.unwrap_err();
            assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
        }
        // a member openraft names but dLegerPeers does not
        let mut client = network(GROUP, &addr).new_client(7, &EmptyNode {}).await;
        let e = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
        assert!(e.to_string().contains("not in dLegerPeers"), "{e}");
    }

    #[tokio::test]
    async fn refused_hello_is_unreachable() {
        let (addr, _) = fake_peer(answer_all).await;
        let mut client = network("broker-b", &addr)
            .new_client(1, &EmptyNode {})
            .await;
        let e = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
        assert!(e.to_string().contains("broker-b"), "{e}");
    }

    #[tokio::test]
    async fn error_answer_is_a_network_error_and_the_next_call_reconnects() {
        fn fail_first(n: usize, msg: Message) -> Option<Message> {
            if n == 0 {
                Some(Message::Error("raft is shutting down".to_string()))
            } else {
                answer_all(n, msg)
            }
        }
        let (addr, accepted) = fake_peer(fail_first).await;
        let mut client = network(GROUP, &addr).new_client(1, &EmptyNode {}).await;
        let e = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Network(_)), "{e}");
        assert!(e.to_string().contains("raft is shutting down"), "{e}");
        assert!(
            client
                .vote(vote_request(), option())
                .await
                .unwrap()
                .vote_granted
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn wrong_answer_kind_is_a_network_error() {
        fn wrong(_: usize, _: Message) -> Option<Message> {
            Some(Message::AppendEntriesResponse(
                AppendEntriesResponse::Conflict,
            ))
        }
        let (addr, _) = fake_peer(wrong).await;
        let mut client = network(GROUP, &addr).new_client(1, &EmptyNode {}).await;
        let e = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Network(_)), "{e}");
    }

    #[tokio::test]
    async fn silent_peer_times_out_and_cancel_closes_a_snapshot() {
        fn silent(_: usize, _: Message) -> Option<Message> {
            None
        }
        let (addr, accepted) = fake_peer(silent).await;
        let mut client = network(GROUP, &addr).new_client(1, &EmptyNode {}).await;
        let short = RPCOption::new(Duration::from_millis(200));
        let e = client
            .vote(vote_request(), short.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, RPCError::Timeout(_)), "{e}");

        let snapshot = Snapshot {
            meta: SnapshotMeta::default(),
            snapshot: CommitLogSnapshot {
                next_offset: 0,
                state: Vec::new(),
            },
        };
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ReplicationClosed::new("leader stepped down")
        };
        let e = client
            .full_snapshot(Vote::new_committed(2, 0), snapshot, cancel, option())
            .await
            .unwrap_err();
        assert!(matches!(e, StreamingError::Closed(_)), "{e}");
        // each failure dropped its connection
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
