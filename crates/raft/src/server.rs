//! The server side of the Raft transport: accept the other members'
//! connections on this member's `dLegerPeers` port and hand their RPCs to
//! the local Raft node.
//!
//! Each connection gets a task. Its first frame must be a [`Hello`] this
//! member accepts (same group, addressed to this member, same protocol
//! version and commit-log segment size); anything else is answered with an
//! error frame and the connection is closed. After that, requests are
//! answered one at a time, in order, with the request's id. A request the
//! Raft node fails (it is shutting down, say) is answered with an error
//! frame carrying the error's text and the connection stays open; a frame
//! that cannot be decoded, or is not a request, closes it.
//!
//! Every connection closes when `shutdown` turns true (or its sender is
//! dropped).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use openraft::storage::RaftStateMachine;
use openraft::Snapshot;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::codec::Framed;

use crate::codec::{CommitLogSnapshot, Frame, Message, RaftCodec, MAX_FRAME, MAX_HELLO_FRAME};
use crate::peers::Peers;
use crate::types::MqRaft;

/// Most connections served at once. Each member opens about three per peer
/// (replication, heartbeats, snapshots) and a group has at most nine
/// members; the rest is room for reconnections overlapping closes.
pub const MAX_CONNECTIONS: usize = 128;

/// How long a new connection may take to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (out of file descriptors, say), so that
/// the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve Raft RPCs from `listener` to `raft` until `shutdown` turns true.
///
/// `raft` is any Raft node of Meridian's types whose state machine's
/// snapshots are [`CommitLogSnapshot`]s (`crate::types::Raft`).
pub async fn serve<SM>(
    listener: TcpListener,
    raft: openraft::Raft<MqRaft, SM>,
    peers: Arc<Peers>,
    segment_size: u64,
    mut shutdown: watch::Receiver<bool>,
) where
    SM: RaftStateMachine<MqRaft, SnapshotData = CommitLogSnapshot>,
{
    let local = listener.local_addr().ok();
    tracing::info!(?local, group = %peers.group, self_id = peers.self_id, "Raft transport listening");
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    if tasks.len() >= MAX_CONNECTIONS {
                        tracing::warn!(%addr, "Raft transport: {MAX_CONNECTIONS} connections open, closing a new one");
                        continue;
                    }
                    tasks.spawn(connection(
                        stream,
                        addr,
                        raft.clone(),
                        Arc::clone(&peers),
                        segment_size,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!("Raft transport: accept failed: {e}");
                    tokio::select! {
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    // Connections see the shutdown themselves; this makes sure none
    // outlives `serve`, whatever it is waiting for.
    tasks.shutdown().await;
    tracing::info!(?local, "Raft transport stopped");
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One connection: the hello, then requests until the peer closes, a frame
/// is bad, or shutdown.
async fn connection<SM>(
    stream: TcpStream,
    addr: SocketAddr,
    raft: openraft::Raft<MqRaft, SM>,
    peers: Arc<Peers>,
    segment_size: u64,
    mut shutdown: watch::Receiver<bool>,
) where
    SM: RaftStateMachine<MqRaft, SnapshotData = CommitLogSnapshot>,
{
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%addr, "Raft connection: TCP_NODELAY: {e}");
    }
    let mut conn = Framed::new(stream, RaftCodec::with_max_frame(MAX_HELLO_FRAME));

    // The hello, small and soon.
    let first = tokio::select! {
        _ = stopped(&mut shutdown) => return,
        first = timeout(HELLO_TIMEOUT, conn.next()) => first,
    };
    let (id, hello) = match first {
        Ok(Some(Ok(Frame {
            id,
            msg: Message::Hello(hello),
        }))) => (id, hello),
        Ok(Some(Ok(frame))) => {
            let reason = format!("expected a hello, got {}", frame.msg.kind());
            refuse(&mut conn, addr, frame.id, reason).await;
            return;
        }
        Ok(Some(Err(e))) => {
            refuse(&mut conn, addr, 0, format!("bad hello: {e}")).await;
            return;
        }
        Ok(None) => {
            tracing::debug!(%addr, "Raft connection closed before its hello");
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, "Raft connection sent no hello within {HELLO_TIMEOUT:?}; closing");
            return;
        }
    };
    if let Err(reason) = hello.check(&peers.group, peers.self_id, segment_size) {
        refuse(&mut conn, addr, id, reason).await;
        return;
    }
    if let Err(e) = conn
        .send(Frame {
            id,
            msg: Message::HelloAck,
        })
        .await
    {
        tracing::debug!(%addr, from = hello.from, "Raft connection: hello ack: {e}");
        return;
    }
    conn.codec_mut().set_max_frame(MAX_FRAME);
    let from = hello.from;
    tracing::debug!(%addr, from, "Raft connection from n{from} accepted");

    loop {
        let next = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            next = conn.next() => next,
        };
        let frame = match next {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                refuse(&mut conn, addr, 0, format!("bad frame from n{from}: {e}")).await;
                return;
            }
            None => {
                tracing::debug!(%addr, from, "Raft connection from n{from} closed by the peer");
                return;
            }
        };
        let id = frame.id;
        let answer = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            answer = handle(&raft, frame.msg) => answer,
        };
        let reply = match answer {
            Ok(reply) => reply,
            Err(reason) => {
                refuse(&mut conn, addr, id, format!("from n{from}: {reason}")).await;
                return;
            }
        };
        if let Err(e) = conn.send(Frame { id, msg: reply }).await {
            tracing::debug!(%addr, from, "Raft connection from n{from}: send: {e}");
            return;
        }
    }
    tracing::debug!(%addr, from, "Raft connection from n{from} closed at shutdown");
}

/// Log why a connection is being closed, tell the peer, and let the caller
/// close it.
async fn refuse(
    conn: &mut Framed<TcpStream, RaftCodec>,
    addr: SocketAddr,
    id: u64,
    reason: String,
) {
    tracing::warn!(%addr, "Raft connection refused: {reason}");
    // Best effort, and short: the peer may be the one misbehaving.
    let _ = timeout(
        Duration::from_secs(1),
        conn.send(Frame {
            id,
            msg: Message::Error(reason),
        }),
    )
    .await;
}

/// Run one request on the Raft node. `Err` is a protocol error (not a
/// request): the connection closes. A request the node fails is answered
/// with an error frame.
async fn handle<SM>(raft: &openraft::Raft<MqRaft, SM>, msg: Message) -> Result<Message, String>
where
    SM: RaftStateMachine<MqRaft, SnapshotData = CommitLogSnapshot>,
{
    let reply = match msg {
        Message::AppendEntries(req) => match raft.append_entries(req).await {
            Ok(r) => Message::AppendEntriesResponse(r),
            Err(e) => Message::Error(e.to_string()),
        },
        Message::Vote(req) => match raft.vote(req).await {
            Ok(r) => Message::VoteResponse(r),
            Err(e) => Message::Error(e.to_string()),
        },
        Message::PreVote(req) => match raft.pre_vote(req).await {
            Ok(r) => Message::PreVoteResponse(r),
            Err(e) => Message::Error(e.to_string()),
        },
        Message::FullSnapshot(s) => {
            let s = *s;
            let snapshot = Snapshot {
                meta: s.meta,
                snapshot: s.data,
            };
            match raft.install_full_snapshot(s.vote, snapshot).await {
                Ok(r) => Message::FullSnapshotResponse(r),
                Err(e) => Message::Error(e.to_string()),
            }
        }
        Message::TransferLeader(req) => match raft.handle_transfer_leader(req).await {
            Ok(r) => Message::TransferLeaderResponse(r),
            Err(e) => Message::Error(e.to_string()),
        },
        other => return Err(format!("{} is not a request", other.kind())),
    };
    Ok(reply)
}
