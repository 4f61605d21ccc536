//! `meridian netproxy`: a TCP forwarder that tests put between processes to
//! cut and slow down the links between them, where the kernel offers no
//! netem. Hidden from `--help`; for development and tests only.
//!
//! ```text
//! meridian netproxy --listen 127.0.0.1:0 --target 127.0.0.1:10912 \
//!     [--delay-ms 35] [--control 127.0.0.1:0]
//! ```
//!
//! Every connection accepted on `--listen` gets a connection of its own to
//! `--target`, and bytes are copied both ways (TCP_NODELAY on both sides).
//!
//! - **Delay.** Each chunk read from either side is delivered `delay` ms
//!   after it was read: a one-way delay per direction, so a round trip
//!   through the proxy takes at least twice the delay. Chunks queue with
//!   their deadlines, so many are in flight at once and the delay does not
//!   cap throughput; order is kept.
//! - **Control.** `--control` listens for a line-based text protocol, one
//!   command per line, each answered with `ok` or `error <why>`:
//!   - `blackhole` — a silent partition: existing connections stay open but
//!     deliver nothing in either direction (bytes read are dropped, and so
//!     are closes and resets — neither side hears of the other); new
//!     connections are accepted, never connected to the target, and what
//!     they send is dropped.
//!   - `heal` — forward new connections again; connections that were
//!     blackholed are closed, so both sides reconnect cleanly.
//!   - `reset` — close every current connection (the mode stays).
//!   - `delay <ms>` — the delay for chunks read from now on.
//!   - `status` — `ok connections=<n> mode=<normal|blackhole> delay_ms=<n>`.
//!
//! On start the proxy prints one line to stdout,
//! `listening <listen-addr> control <control-addr | ->`, with the addresses
//! it actually bound (so `:0` works for tests), then runs until SIGTERM or
//! Ctrl-C. Logs go to stderr.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Largest chunk read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks queued per direction waiting for their deadline; beyond that the
/// reader stops and TCP pushes back. With a delay `d` this caps a direction
/// at `QUEUED_CHUNKS / d` chunks and `QUEUED_CHUNKS * READ_CHUNK / d` bytes
/// a second (117,000 chunks or 1.8 GiB a second at 35 ms).
const QUEUED_CHUNKS: usize = 4096;
/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest control command accepted, in bytes.
const MAX_COMMAND: u64 = 1024;

#[derive(Args, Debug)]
pub struct NetproxyArgs {
    /// Where to accept connections (`host:port`; port 0 picks a free port).
    #[arg(long)]
    listen: String,
    /// Where to forward each accepted connection (`host:port`).
    #[arg(long)]
    target: String,
    /// One-way delay per direction, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Where to listen for control commands (`host:port`; port 0 picks a
    /// free port). No control socket without it.
    #[arg(long)]
    control: Option<String>,
}

/// Run the proxy until SIGTERM or Ctrl-C.
pub async fn run(args: NetproxyArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listen_addr = listener.local_addr()?;
    let control = match &args.control {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for control commands on {addr}"))?,
        ),
        None => None,
    };
    let control_addr = match &control {
        Some(listener) => listener.local_addr()?.to_string(),
        None => "-".to_owned(),
    };

    // The one line a test harness reads to learn the bound ports.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {listen_addr} control {control_addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(
        listen = %listen_addr,
        target = %args.target,
        control = %control_addr,
        delay_ms = args.delay_ms,
        "netproxy started"
    );

    let proxy = Arc::new(Proxy::new(args.target, args.delay_ms));
    if let Some(control) = control {
        tokio::spawn(serve_control(control, proxy.clone()));
    }
    tokio::select! {
        () = accept_loop(listener, proxy.clone()) => {}
        () = crate::servers::shutdown_signal() => {}
    }
    proxy.lock().close_all();
    tracing::info!("netproxy stopped");
    Ok(())
}

/// What a connection does with the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Deliver them, after the delay.
    Forward,
    /// Drop them; hold both sockets open and say nothing.
    Blackhole,
    /// Close both sockets now.
    Closed,
}

/// What the proxy accepts new connections into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    Blackhole,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Blackhole => "blackhole",
        }
    }
}

/// State shared by the accept loop, the connections and the control socket.
struct Proxy {
    target: String,
    /// The delay, in ms, for chunks read from now on.
    delay_ms: AtomicU64,
    /// The mode and the open connections, under one lock, so a connection
    /// accepted while a command runs starts in the mode the command leaves.
    links: Mutex<Links>,
}

struct Links {
    mode: Mode,
    next_id: u64,
    /// Each open connection's state; the connection watches its receiver.
    open: HashMap<u64, watch::Sender<Link>>,
}

impl Links {
    /// Tell every open connection in state `from` to move to `to`.
    fn set_all(&mut self, from: &[Link], to: Link) {
        for link in self.open.values() {
            link.send_if_modified(|state| {
                let change = from.contains(state);
                if change {
                    *state = to;
                }
                change
            });
        }
    }

    fn close_all(&mut self) {
        self.set_all(&[Link::Forward, Link::Blackhole], Link::Closed);
    }
}

impl Proxy {
    fn new(target: String, delay_ms: u64) -> Proxy {
        Proxy {
            target,
            delay_ms: AtomicU64::new(delay_ms),
            links: Mutex::new(Links {
                mode: Mode::Normal,
                next_id: 0,
                open: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        // Nothing panics while holding the lock; recover anyway.
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }

    /// Record a new connection, in the state the current mode gives it.
    fn register(self: &Arc<Self>) -> Registration {
        let mut links = self.lock();
        let initial = match links.mode {
            Mode::Normal => Link::Forward,
            Mode::Blackhole => Link::Blackhole,
        };
        let (tx, rx) = watch::channel(initial);
        let id = links.next_id;
        links.next_id += 1;
        links.open.insert(id, tx);
        Registration {
            proxy: self.clone(),
            id,
            link: rx,
        }
    }

    /// Run one control command line; the answer, without its newline.
    fn command(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["blackhole"] => {
                let mut links = self.lock();
                links.mode = Mode::Blackhole;
                links.set_all(&[Link::Forward], Link::Blackhole);
                Ok(())
            }
            ["heal"] => {
                let mut links = self.lock();
                links.mode = Mode::Normal;
                links.set_all(&[Link::Blackhole], Link::Closed);
                Ok(())
            }
            ["reset"] => {
                self.lock().close_all();
                Ok(())
            }
            ["delay", ms] => match ms.parse::<u64>() {
                Ok(ms) => {
                    self.delay_ms.store(ms, Ordering::Relaxed);
                    Ok(())
                }
                Err(_) => Err(format!("delay wants milliseconds, got `{ms}`")),
            },
            ["delay", ..] => Err("usage: delay <ms>".to_owned()),
            ["status"] => {
                let links = self.lock();
                return format!(
                    "ok connections={} mode={} delay_ms={}",
                    links.open.len(),
                    links.mode.name(),
                    self.delay_ms.load(Ordering::Relaxed)
                );
            }
            [] => Err("empty command".to_owned()),
            [other, ..] => Err(format!("unknown command `{other}`")),
        };
        match answer {
            Ok(()) => {
                tracing::info!(command = %line.trim(), "netproxy control");
                "ok".to_owned()
            }
            Err(why) => format!("error {why}"),
        }
    }
}

/// A connection's entry in [`Links::open`], removed when this is dropped.
struct Registration {
    proxy: Arc<Proxy>,
    id: u64,
    link: watch::Receiver<Link>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.proxy.lock().open.remove(&self.id);
    }
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let registration = proxy.register();
                tokio::spawn(serve_connection(client, peer, registration));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "netproxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One accepted connection, from accept to close.
async fn serve_connection(client: TcpStream, peer: SocketAddr, registration: Registration) {
    let mut link = registration.link.clone();
    let proxy = registration.proxy.clone();
    let _ = client.set_nodelay(true);
    if *link.borrow() == Link::Blackhole {
        tracing::debug!(%peer, "accepted into blackhole");
        drain(client, &mut link).await;
        return;
    }
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&proxy.target));
    let upstream = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(e)) => {
                tracing::warn!(%peer, target = %proxy.target, error = %e, "netproxy cannot connect to target");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, target = %proxy.target, "netproxy timed out connecting to target");
                return;
            }
        },
        () = closed(&mut link) => return,
    };
    let _ = upstream.set_nodelay(true);
    tracing::debug!(%peer, target = %proxy.target, "forwarding");

    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let both_ways = async {
        tokio::try_join!(
            pump(client_read, upstream_write, &proxy, link.clone()),
            pump(upstream_read, client_write, &proxy, link.clone()),
        )
    };
    let mut close = link.clone();
    tokio::select! {
        result = both_ways => match result {
            Ok(_) => tracing::debug!(%peer, "connection ended"),
            Err(e) => tracing::debug!(%peer, error = %e, "connection failed"),
        },
        () = closed(&mut close) => tracing::debug!(%peer, "connection closed by control"),
    }
    // Dropping the halves closes both sockets; dropping the registration
    // takes the connection off the count.
}

/// A connection accepted in blackhole mode: read and drop until the client
/// goes away or the connection is closed by `heal` or `reset`.
async fn drain(mut client: TcpStream, link: &mut watch::Receiver<Link>) {
    let mut buf = vec![0u8; READ_CHUNK];
    tokio::select! {
        () = async {
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        } => {}
        () = closed(link) => {}
    }
}

/// Resolves once the connection is told to close.
async fn closed(link: &mut watch::Receiver<Link>) {
    // An error means the sender is gone, which only happens on the way out.
    let _ = link.wait_for(|state| *state == Link::Closed).await;
}

/// Never resolves: a blackholed link keeps its sockets open and quiet until
/// `heal` or `reset` closes it.
async fn hold_while_blackholed(link: &watch::Receiver<Link>) {
    if *link.borrow() == Link::Blackhole {
        std::future::pending::<()>().await;
    }
}

/// One direction of a connection: a reader that stamps every chunk with
/// its delivery deadline and queues it, and a writer that delivers each
/// chunk at its deadline. On end of stream the far side's write half is
/// shut down once everything queued before it has been delivered.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    proxy: &Proxy,
    link: watch::Receiver<Link>,
) -> std::io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let read_link = link.clone();
    // Owns the sending side, so the writer sees the queue end with the stream.
    let read = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            if *read_link.borrow() == Link::Blackhole {
                continue;
            }
            let deadline = Instant::now() + proxy.delay();
            if queue.send((deadline, buf[..n].to_vec())).await.is_err() {
                // The writer is gone: it failed, and `try_join` reports that.
                return Ok(());
            }
        }
    };
    let write = async {
        while let Some((deadline, chunk)) = queued.recv().await {
            if deadline > Instant::now() {
                tokio::time::sleep_until(deadline).await;
            }
            if *link.borrow() == Link::Blackhole {
                continue;
            }
            to.write_all(&chunk).await?;
        }
        // End of stream: a partition swallows the close too.
        hold_while_blackholed(&link).await;
        to.shutdown().await
    };
    let result = tokio::try_join!(read, write).map(|_| ());
    if result.is_err() {
        // A reset, likewise, does not cross a partition.
        hold_while_blackholed(&link).await;
    }
    result
}

/// Accept control connections and answer their commands.
async fn serve_control(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    if let Err(e) = control_session(stream, &proxy).await {
                        tracing::debug!(%peer, error = %e, "control connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "netproxy control accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One control connection: a command per line, an answer per command.
async fn control_session(stream: TcpStream, proxy: &Proxy) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut read).take(MAX_COMMAND).read_line(&mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 == MAX_COMMAND {
            write.write_all(b"error command too long\n").await?;
            return Ok(());
        }
        let mut answer = proxy.command(&line);
        answer.push('\n');
        write.write_all(answer.as_bytes()).await?;
    }
}
