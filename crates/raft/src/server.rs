//! The server side of the Raft transport: accept the other members'
//! connections on this member's `dLegerPeers` port and hand their RPCs to
//! the local Raft node.
//!
//! Each connection gets a task. Its first frame must be a [`Hello`] this
//! member accepts (same group, addressed to this member, same protocol
//! version and commit-log segment size); anything else is answered with an
//! error frame and the connection is closed. After that, requests are
//! answered one at a time, in order, with the request's id — except on a
//! replication stream: a connection whose first request is an
//! [`Message::AppendStream`] carries only those from then on, each handed
//! to the Raft node as soon as it arrives (openraft's `stream_append`),
//! their answers sent back in order as they come. A request the
//! Raft node fails (it is shutting down, say) is answered with an error
//! frame carrying the error's text and the connection stays open; a frame
//! that cannot be decoded, or is not a request, closes it.
//!
//! Every connection closes when `shutdown` turns true (or its sender is
//! dropped).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use meridian_remoting::tls::{Acceptor, NetStream};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
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
    acceptor: Acceptor,
    raft: openraft::Raft<MqRaft, SM>,
    peers: Arc<Peers>,
    segment_size: u64,
    shutdown: watch::Receiver<bool>,
) where
    SM: RaftStateMachine<MqRaft, SnapshotData = CommitLogSnapshot>,
{
    serve_tls(listener, acceptor, raft, peers, segment_size, shutdown).await
}

/// What answers the requests of a connection: the Raft node, or a fake in
/// tests.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// Run one request. `Err` is a protocol error (the message is not a
    /// request): the connection closes. A request the node fails is
    /// answered with [`Message::Error`].
    fn handle(&self, msg: Message) -> impl Future<Output = Result<Message, String>> + Send;

    /// Run a replication stream: each append as it arrives, the answers in
    /// the order of the appends. The stream ends after an answer that ends
    /// it (a conflict, a higher vote) or an `Err` (the node failed).
    ///
    /// By default each append runs through [`Handler::handle`] in turn.
    fn stream_append(
        &self,
        input: BoxStream<'static, AppendEntriesRequest<MqRaft>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<MqRaft>, String>> {
        let this = self.clone();
        input
            .then(move |req| {
                let this = this.clone();
                async move {
                    let prev = req.prev_log_id;
                    let last = req.entries.last().map(|e| e.log_id).or(prev);
                    match this.handle(Message::AppendEntries(req)).await? {
                        Message::AppendEntriesResponse(r) => Ok(r.into_stream_result(prev, last)),
                        Message::Error(e) => Err(e),
                        other => Err(format!("answered an append with {}", other.kind())),
                    }
                }
            })
            .boxed()
    }
}

impl<SM> Handler for openraft::Raft<MqRaft, SM>
where
    SM: RaftStateMachine<MqRaft, SnapshotData = CommitLogSnapshot>,
{
    async fn handle(&self, msg: Message) -> Result<Message, String> {
        let reply = match msg {
            Message::AppendEntries(req) => match self.append_entries(req).await {
                Ok(r) => Message::AppendEntriesResponse(r),
                Err(e) => Message::Error(e.to_string()),
            },
            Message::Vote(req) => match self.vote(req).await {
                Ok(r) => Message::VoteResponse(r),
                Err(e) => Message::Error(e.to_string()),
            },
            Message::PreVote(req) => match self.pre_vote(req).await {
                Ok(r) => Message::PreVoteResponse(r),
                Err(e) => Message::Error(e.to_string()),
            },
            Message::FullSnapshot(s) => {
                let s = *s;
                let snapshot = Snapshot {
                    meta: s.meta,
                    snapshot: s.data,
                };
                match self.install_full_snapshot(s.vote, snapshot).await {
                    Ok(r) => Message::FullSnapshotResponse(r),
                    Err(e) => Message::Error(e.to_string()),
                }
            }
            Message::TransferLeader(req) => match self.handle_transfer_leader(req).await {
                Ok(r) => Message::TransferLeaderResponse(r),
                Err(e) => Message::Error(e.to_string()),
            },
            other => return Err(format!("{} is not a request", other.kind())),
        };
        Ok(reply)
    }

    fn stream_append(
        &self,
        input: BoxStream<'static, AppendEntriesRequest<MqRaft>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<MqRaft>, String>> {
        openraft::Raft::stream_append(self, input)
            .map(|r| r.map_err(|fatal| fatal.to_string()))
            .boxed()
    }
}

/// [`serve`] with any [`Handler`], plaintext.
#[cfg(test)]
pub(crate) async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: H,
    peers: Arc<Peers>,
    segment_size: u64,
    shutdown: watch::Receiver<bool>,
) {
    serve_tls(
        listener,
        Acceptor::default(),
        handler,
        peers,
        segment_size,
        shutdown,
    )
    .await
}

/// [`serve`] with any [`Handler`].
pub(crate) async fn serve_tls<H: Handler>(
    listener: TcpListener,
    acceptor: Acceptor,
    handler: H,
    peers: Arc<Peers>,
    segment_size: u64,
    mut shutdown: watch::Receiver<bool>,
) {
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
                        acceptor.clone(),
                        stream,
                        addr,
                        handler.clone(),
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
async fn connection<H: Handler>(
    acceptor: Acceptor,
    stream: TcpStream,
    addr: SocketAddr,
    handler: H,
    peers: Arc<Peers>,
    segment_size: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = tokio::select! {
        _ = stopped(&mut shutdown) => return,
        s = acceptor.accept(stream) => match s {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "Raft connection refused");
                return;
            }
        },
    };
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
        if let Message::AppendStream(first) = frame.msg {
            serve_stream(conn, id, first, handler, addr, from, shutdown).await;
            return;
        }
        let answer = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            answer = handler.handle(frame.msg) => answer,
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

/// Appends a replication stream may have read but not yet answered: twice
/// what a leader keeps in flight, a bound on what a misbehaving one can
/// make this member hold.
const STREAM_BACKLOG: usize = 2 * crate::network::MAX_INFLIGHT_APPENDS;

/// A replication stream, from its first append on: appends go to the Raft
/// node as they arrive, answers go back in order with the appends' ids.
/// Any other request on the connection closes it, as does an answer that
/// ends the stream, a node failure, the peer closing, or shutdown.
async fn serve_stream<H: Handler>(
    conn: Framed<NetStream, RaftCodec>,
    first_id: u64,
    first: AppendEntriesRequest<MqRaft>,
    handler: H,
    addr: SocketAddr,
    from: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut sink, mut frames) = conn.split();
    let (req_tx, mut req_rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
    let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut answers =
        handler.stream_append(futures::stream::poll_fn(move |cx| req_rx.poll_recv(cx)).boxed());
    let _ = id_tx.send(first_id);
    let _ = req_tx.send(first).await;
    let read = async {
        loop {
            match frames.next().await {
                Some(Ok(Frame {
                    id,
                    msg: Message::AppendStream(req),
                })) => {
                    // Backpressure: a full backlog stops reading.
                    let _ = id_tx.send(id);
                    if req_tx.send(req).await.is_err() {
                        return None;
                    }
                }
                Some(Ok(frame)) => {
                    return Some(format!("{} on a replication stream", frame.msg.kind()))
                }
                Some(Err(e)) => return Some(format!("bad frame: {e}")),
                None => return None,
            }
        }
    };
    let write = async {
        while let Some(answer) = answers.next().await {
            let Some(id) = id_rx.recv().await else {
                return;
            };
            let (msg, last) = match answer {
                Ok(r) => {
                    let last = r.is_err();
                    (Message::AppendStreamResponse(r), last)
                }
                Err(e) => (Message::Error(e), true),
            };
            if let Err(e) = sink.send(Frame { id, msg }).await {
                tracing::debug!(%addr, from, "Raft stream from n{from}: send: {e}");
                return;
            }
            if last {
                return;
            }
        }
    };
    tokio::select! {
        _ = stopped(&mut shutdown) => {}
        problem = read => {
            if let Some(reason) = problem {
                tracing::warn!(%addr, "Raft stream from n{from} closed: {reason}");
            }
        }
        () = write => {}
    }
    tracing::debug!(%addr, from, "Raft stream from n{from} ended");
}

/// Log why a connection is being closed, tell the peer, and let the caller
/// close it.
async fn refuse(
    conn: &mut Framed<NetStream, RaftCodec>,
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

#[cfg(test)]
mod tests {
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::raft::{VoteRequest, VoteResponse};
    use openraft::EmptyNode;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::codec::Hello;
    use crate::network::Network;
    use crate::types::Vote;

    const GROUP: &str = "broker-a";
    const SEGMENT: u64 = 1 << 20;

    /// Grants every vote; refuses everything else the way the Raft node
    /// fails a request.
    #[derive(Clone)]
    struct FakeRaft;

    impl Handler for FakeRaft {
        async fn handle(&self, msg: Message) -> Result<Message, String> {
            match msg {
                Message::Vote(r) => {
                    Ok(Message::VoteResponse(VoteResponse::new(r.vote, None, true)))
                }
                Message::AppendEntries(_) => Ok(Message::Error("raft stopped".to_string())),
                other if other.kind().response().is_some() => {
                    Ok(Message::Error(format!("no {}", other.kind())))
                }
                other => Err(format!("{} is not a request", other.kind())),
            }
        }
    }

    /// A server for member n1 of `GROUP`; its address and shutdown switch.
    async fn start() -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peers = Peers::parse(GROUP, &format!("n0-127.0.0.1:1;n1-{addr}"), "n1").unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve_with(listener, FakeRaft, Arc::new(peers), SEGMENT, rx));
        (addr, tx, task)
    }

    async fn connect(addr: &str, hello: Hello) -> (Framed<TcpStream, RaftCodec>, Message) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut conn = Framed::new(stream, RaftCodec::new());
        conn.send(Frame {
            id: 0,
            msg: Message::Hello(hello),
        })
        .await
        .unwrap();
        let reply = conn.next().await.unwrap().unwrap();
        assert_eq!(reply.id, 0);
        (conn, reply.msg)
    }

    fn vote() -> VoteRequest<MqRaft> {
        VoteRequest::new(Vote::new(3, 0), None)
    }

    #[tokio::test]
    async fn answers_requests_in_order_with_their_ids() {
        let (addr, _stop, _task) = start().await;
        let (mut conn, ack) = connect(&addr, Hello::new(GROUP, 0, 1, SEGMENT)).await;
        assert!(matches!(ack, Message::HelloAck), "{ack:?}");
        for id in [5, 6, 1 << 40] {
            conn.send(Frame {
                id,
                msg: Message::Vote(vote()),
            })
            .await
            .unwrap();
            let reply = conn.next().await.unwrap().unwrap();
            assert_eq!(reply.id, id);
            assert!(matches!(reply.msg, Message::VoteResponse(ref r) if r.vote_granted));
        }
        // a failed request is an error frame; the connection stays
        let req = openraft::raft::AppendEntriesRequest::<MqRaft> {
            vote: Vote::new_committed(3, 0),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        conn.send(Frame {
            id: 9,
            msg: Message::AppendEntries(req),
        })
        .await
        .unwrap();
        let reply = conn.next().await.unwrap().unwrap();
        assert_eq!(reply.id, 9);
        assert!(matches!(reply.msg, Message::Error(ref t) if t == "raft stopped"));
        // something that is not a request closes it
        conn.send(Frame {
            id: 10,
            msg: Message::HelloAck,
        })
        .await
        .unwrap();
        let reply = conn.next().await.unwrap().unwrap();
        assert!(matches!(reply.msg, Message::Error(ref t) if t.contains("not a request")));
        assert!(conn.next().await.is_none());
    }

    #[tokio::test]
    async fn refuses_wrong_hellos() {
        let (addr, _stop, _task) = start().await;
        for (hello, why) in [
            (Hello::new("broker-b", 0, 1, SEGMENT), "group"),
            (Hello::new(GROUP, 0, 2, SEGMENT), "meant to reach n2"),
            (
                Hello::new(GROUP, 0, 1, SEGMENT * 2),
                "mappedFileSizeCommitLog",
            ),
            (
                Hello {
                    version: 9,
                    ..Hello::new(GROUP, 0, 1, SEGMENT)
                },
                "version",
            ),
        ] {
            let (mut conn, reply) = connect(&addr, hello).await;
            assert!(
                matches!(reply, Message::Error(ref t) if t.contains(why)),
                "{reply:?}"
            );
            assert!(conn.next().await.is_none());
        }
        // a request before the hello
        let stream = TcpStream::connect(&addr).await.unwrap();
        let mut conn = Framed::new(stream, RaftCodec::new());
        conn.send(Frame {
            id: 1,
            msg: Message::Vote(vote()),
        })
        .await
        .unwrap();
        let reply = conn.next().await.unwrap().unwrap();
        assert!(matches!(reply.msg, Message::Error(ref t) if t.contains("expected a hello")));
        assert!(conn.next().await.is_none());
        // not this protocol at all
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut conn = Framed::new(stream, RaftCodec::new());
        let reply = conn.next().await.unwrap().unwrap();
        assert!(matches!(reply.msg, Message::Error(ref t) if t.contains("over the limit")));
        assert!(conn.next().await.is_none());
        // and the server still serves
        let (_conn, ack) = connect(&addr, Hello::new(GROUP, 0, 1, SEGMENT)).await;
        assert!(matches!(ack, Message::HelloAck));
    }

    #[tokio::test]
    async fn shutdown_closes_connections() {
        let (addr, stop, task) = start().await;
        let (mut conn, ack) = connect(&addr, Hello::new(GROUP, 0, 1, SEGMENT)).await;
        assert!(matches!(ack, Message::HelloAck));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(conn.next().await.is_none());
        assert!(TcpStream::connect(&addr).await.is_err());
    }

    #[tokio::test]
    async fn network_client_talks_to_the_server() {
        let (addr, _stop, _task) = start().await;
        let peers = Peers::parse(GROUP, &format!("n0-127.0.0.1:1;n1-{addr}"), "n0").unwrap();
        let mut net = Network::new(Arc::new(peers), SEGMENT);
        let mut client = net.new_client(1, &EmptyNode {}).await;
        let option = RPCOption::new(Duration::from_secs(5));
        let r = client.vote(vote(), option.clone()).await.unwrap();
        assert!(r.vote_granted);
        let e = client.pre_vote(vote(), option.clone()).await.unwrap_err();
        assert!(
            matches!(e, RPCError::Network(_)) && e.to_string().contains("no PreVote"),
            "{e}"
        );
        assert!(
            client
                .vote(vote(), option.clone())
                .await
                .unwrap()
                .vote_granted
        );

        // another segment size: refused at the hello
        let peers = Peers::parse(GROUP, &format!("n0-127.0.0.1:1;n1-{addr}"), "n0").unwrap();
        let mut net = Network::new(Arc::new(peers), SEGMENT + 1);
        let mut client = net.new_client(1, &EmptyNode {}).await;
        let e = client.vote(vote(), option).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
        assert!(e.to_string().contains("mappedFileSizeCommitLog"), "{e}");
    }
}
