//! One remoting connection: frame decoding, batched writes, request/response
//! correlation and a bound on the requests a peer may have in flight.
//!
//! Requests are handed to the [`Handler`] in the order they arrive, on the
//! reading task. A handler does its ordered part (for a send: the append to
//! the commit log) before it returns, and returns the slow part (waiting for
//! a flush, a long poll) as a future that runs on its own task. So requests
//! of one connection are applied in order, yet one slow request never holds
//! up the ones behind it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use meridian_protocol::codes::response_code;
use meridian_protocol::{encode_frame, FrameDecoder, RemotingCommand};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::RemotingError;

/// What a handler returns for a request.
pub enum Reply {
    /// The response is ready (or there is none, for a oneway request).
    Now(Option<RemotingCommand>),
    /// The response comes later; the future runs on its own task.
    Later(Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send>>),
}

/// Serves the requests that arrive on connections.
pub trait Handler: Send + Sync + 'static {
    /// Handle one request. Runs on the connection's reading task, in arrival
    /// order: do the part that must be ordered here, return the rest as
    /// [`Reply::Later`].
    fn handle(&self, conn: &Arc<Connection>, request: RemotingCommand) -> Reply;

    /// Called once when the connection has closed, for whatever reason.
    fn on_close(&self, _conn: &Arc<Connection>) {}
}

/// Bounds that protect a process from one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Largest frame accepted; a larger length field closes the connection.
    pub max_frame_len: usize,
    /// Requests of one peer being served at once; past it the peer gets
    /// SYSTEM_BUSY.
    pub max_in_flight: usize,
    /// Frames queued for writing; past it the writer is the bottleneck and
    /// responses wait (back-pressure on the handler tasks, not memory).
    pub max_queued_writes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_frame_len: meridian_protocol::DEFAULT_MAX_FRAME_LEN,
            max_in_flight: 4096,
            max_queued_writes: 4096,
        }
    }
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// A live connection. Cheap to share; dropping every handle does not close
/// it — the socket closes when the peer goes or [`Connection::close`] is
/// called.
pub struct Connection {
    id: u64,
    peer: SocketAddr,
    out: mpsc::Sender<RemotingCommand>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    closed: AtomicBool,
    close_signal: tokio::sync::Notify,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// Signs the requests this side sends (RocketMQ's ACL), if set.
    signer: std::sync::OnceLock<crate::acl::Credentials>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection#{}({})", self.id, self.peer)
    }
}

impl Connection {
    /// A process-unique id, stable for the connection's life.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Close the connection; pending requests fail with `Closed`.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.close_signal.notify_waiters();
            self.close_signal.notify_one();
        }
    }

    /// Queue a frame for writing (a response, or a oneway request).
    pub async fn send(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        self.out.send(cmd).await.map_err(|_| RemotingError::Closed {
            addr: self.peer.to_string(),
        })
    }

    /// Queue a frame without waiting; fails if the write queue is full.
    pub fn try_send(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        self.out.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RemotingError::Busy {
                addr: self.peer.to_string(),
            },
            mpsc::error::TrySendError::Closed(_) => RemotingError::Closed {
                addr: self.peer.to_string(),
            },
        })
    }

    /// Send a request and wait for its response.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        if let Some(c) = self.signer.get() {
            c.sign(&mut request);
        }
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(opaque, tx);
        if let Err(e) = self.send(request).await {
            self.pending.lock().remove(&opaque);
            return Err(e);
        }
        self.response(opaque, rx, timeout).await
    }

    /// Wait for the response to request `opaque`, forgetting it on timeout.
    async fn response(
        &self,
        opaque: i32,
        rx: oneshot::Receiver<RemotingCommand>,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(RemotingError::Closed {
                addr: self.peer.to_string(),
            }),
            Err(_) => {
                self.pending.lock().remove(&opaque);
                Err(RemotingError::Timeout {
                    addr: self.peer.to_string(),
                    millis: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Queue a request now and return a future for its response: requests
    /// queued one after another are written in that order, however their
    /// futures are polled (a pipeline of requests whose order matters).
    /// Fails at once if the connection is closed or its write queue full.
    pub fn invoke_queued(
        self: &Arc<Self>,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<
        impl std::future::Future<Output = Result<RemotingCommand, RemotingError>> + Send + 'static,
        RemotingError,
    > {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(opaque, tx);
        if let Err(e) = self.try_send(request) {
            self.pending.lock().remove(&opaque);
            return Err(e);
        }
        let conn = Arc::clone(self);
        Ok(async move { conn.response(opaque, rx, timeout).await })
    }

    /// Send a request that has no response.
    pub async fn invoke_oneway(&self, mut request: RemotingCommand) -> Result<(), RemotingError> {
        if let Some(c) = self.signer.get() {
            c.sign(&mut request);
        }
        request.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.mark_oneway();
        self.send(request).await
    }

    /// Sign every request sent from now on with `credentials`.
    pub fn sign_with(&self, credentials: crate::acl::Credentials) {
        let _ = self.signer.set(credentials);
    }

    /// Wait until the connection has closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.close_signal.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Start serving a connected stream: returns the connection handle; the
/// reading and writing run on their own tasks until the stream ends.
pub fn spawn<S>(
    stream: S,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: ConnectionLimits,
) -> Arc<Connection>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (out_tx, out_rx) = mpsc::channel(limits.max_queued_writes.max(1));
    let conn = Arc::new(Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        out: out_tx,
        pending: Mutex::new(HashMap::new()),
        next_opaque: AtomicI32::new(1),
        closed: AtomicBool::new(false),
        close_signal: tokio::sync::Notify::new(),
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
        max_in_flight: limits.max_in_flight.max(1),
        signer: std::sync::OnceLock::new(),
    });
    tokio::spawn(write_loop(writer, out_rx, conn.clone()));
    tokio::spawn(read_loop(reader, conn.clone(), handler, limits));
    conn
}

async fn write_loop<W: AsyncWrite>(
    writer: W,
    mut out: mpsc::Receiver<RemotingCommand>,
    conn: Arc<Connection>,
) {
    tokio::pin!(writer);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            cmd = out.recv() => match cmd { Some(c) => c, None => break },
            _ = conn.closed() => break,
        };
        encode_frame(&first, &mut buf);
        // Let the tasks that are ready run first: answers that complete
        // together (the sends of one Raft entry, a group commit) are each
        // queued by a task of their own, and would otherwise go out one
        // write each as the writer wakes for the first of them.
        tokio::task::yield_now().await;
        // Everything already queued goes out in the same write: under load
        // one syscall carries many responses.
        while buf.len() < 1024 * 1024 {
            match out.try_recv() {
                Ok(cmd) => encode_frame(&cmd, &mut buf),
                Err(_) => break,
            }
        }
        if let Err(e) = writer.write_all(&buf).await {
            tracing::debug!(peer = %conn.peer, error = %e, "write failed; closing connection");
            break;
        }
        buf.clear();
        if buf.capacity() > 4 * 1024 * 1024 {
            buf = BytesMut::with_capacity(64 * 1024);
        }
    }
    let _ = writer.shutdown().await;
    conn.close();
}

async fn read_loop<R: AsyncRead>(
    reader: R,
    conn: Arc<Connection>,
    handler: Arc<dyn Handler>,
    limits: ConnectionLimits,
) {
    tokio::pin!(reader);
    let mut decoder = FrameDecoder::new(limits.max_frame_len);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'outer: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => dispatch(&conn, &handler, cmd),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %conn.peer, error = %e, "bad frame; closing connection");
                    break 'outer;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            r = reader.read_buf(&mut buf) => r,
            _ = conn.closed() => break,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "read failed; closing connection");
                break;
            }
        }
    }
    conn.close();
    // Fail every request still waiting for a response on this connection.
    conn.pending.lock().clear();
    handler.on_close(&conn);
}

fn dispatch(conn: &Arc<Connection>, handler: &Arc<dyn Handler>, cmd: RemotingCommand) {
    if cmd.is_response() {
        if let Some(tx) = conn.pending.lock().remove(&cmd.opaque) {
            let _ = tx.send(cmd);
        } else {
            tracing::debug!(peer = %conn.peer, opaque = cmd.opaque, "response to no pending request");
        }
        return;
    }
    let oneway = cmd.is_oneway();
    let permit = match conn.in_flight.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if !oneway {
                let busy = cmd.response_to(
                    response_code::SYSTEM_BUSY,
                    format!(
                        "[OVERLOAD] too many requests in flight on this connection (max {}); retry later",
                        conn.max_in_flight
                    ),
                );
                let _ = conn.try_send(busy);
            }
            return;
        }
    };
    let opaque = cmd.opaque;
    match handler.handle(conn, cmd) {
        Reply::Now(response) => {
            drop(permit);
            if let (Some(mut r), false) = (response, oneway) {
                r.opaque = opaque;
                let conn = conn.clone();
                if let Err(RemotingError::Busy { .. }) = conn.try_send(r.clone()) {
                    // The writer is behind: wait for room off the read task.
                    tokio::spawn(async move {
                        let _ = conn.send(r).await;
                    });
                }
            }
        }
        Reply::Later(fut) => {
            let conn = conn.clone();
            tokio::spawn(async move {
                let response = fut.await;
                drop(permit);
                if let (Some(mut r), false) = (response, oneway) {
                    r.opaque = opaque;
                    let _ = conn.send(r).await;
                }
            });
        }
    }
}
