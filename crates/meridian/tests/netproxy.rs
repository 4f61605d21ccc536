//! `meridian netproxy`, the TCP forwarder the failure tests put between
//! processes: the real binary in front of an echo server in this test.
//! Bytes pass both ways, in order; the delay holds every chunk at least as
//! long as asked (only lower bounds on time are asserted); `blackhole` is a
//! silent partition that `heal` ends by closing the cut connections;
//! `reset` closes everything; `status` counts connections.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::NetProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long bytes that should arrive may take (generous: the machine may be
/// busy; nothing is asserted about how fast they come).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a blackholed link is watched for bytes that must not come.
const SILENCE: Duration = Duration::from_millis(500);

/// An echo server on 127.0.0.1 that counts what it sees.
struct Echo {
    addr: String,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Bytes received, over all connections.
    received: Arc<AtomicUsize>,
    /// Connections that ended (end of stream or error from the proxy).
    ended: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo address").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (acc, rec, end) = (accepted.clone(), received.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let (rec, end) = (rec.clone(), end.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                rec.fetch_add(n, Ordering::SeqCst);
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    end.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Echo {
            addr,
            accepted,
            received,
            ended,
        }
    }
}

async fn connect(proxy: &NetProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr())
        .await
        .expect("connect to the proxy");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// Send `payload` and read it back, writing and reading at the same time;
/// how long that took.
async fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> Duration {
    let started = Instant::now();
    let (mut read, mut write) = stream.split();
    let mut back = vec![0u8; payload.len()];
    let (written, echoed) = tokio::time::timeout(ARRIVAL_TIMEOUT, async {
        tokio::join!(write.write_all(payload), read.read_exact(&mut back))
    })
    .await
    .expect("the echo came back in time");
    written.expect("write through the proxy");
    echoed.expect("read the echo through the proxy");
    let took = started.elapsed();
    assert!(back == payload, "the echo differs from what was sent");
    took
}

/// Nothing at all arrives on `stream` for [`SILENCE`]: no bytes, no close.
async fn assert_silent(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    if let Ok(read) = tokio::time::timeout(SILENCE, stream.read(&mut buf)).await {
        panic!("a blackholed connection delivered {read:?}");
    }
}

/// The proxy closes `stream`: end of stream (or a reset) arrives.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(ARRIVAL_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected the connection closed, read {n} bytes"),
        Err(_) => panic!("the proxy did not close the connection within {ARRIVAL_TIMEOUT:?}"),
    }
}

/// Wait until `counter` reaches `n`.
async fn wait_for_count(counter: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while counter.load(Ordering::SeqCst) != n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} after {ARRIVAL_TIMEOUT:?}, expected {n}",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_both_ways_and_counts_connections() {
    let echo = Echo::start().await;
    let proxy = NetProxy::start(&echo.addr, 0);
    assert_eq!(
        proxy.command("status"),
        "ok connections=0 mode=normal delay_ms=0"
    );

    let mut first = connect(&proxy).await;
    round_trip(&mut first, b"hello").await;
    round_trip(&mut first, &payload(1 << 20)).await;
    proxy.wait_for_connections(1);
    let mut second = connect(&proxy).await;
    round_trip(&mut second, b"second").await;
    proxy.wait_for_connections(2);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);

    // A client's close travels to the target, which closes back.
    drop(first);
    wait_for_count(&echo.ended, 1, "echo connections ended").await;
    proxy.wait_for_connections(1);
    drop(second);
    proxy.wait_for_connections(0);

    assert!(proxy.command("bogus").starts_with("error "));
    assert!(proxy.command("delay soon").starts_with("error "));
    assert!(proxy.command("delay").starts_with("error "));
    assert!(proxy.command("status now").starts_with("error "));
    assert!(proxy.command("").starts_with("error "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_each_direction_and_keeps_order() {
    let echo = Echo::start().await;
    let proxy = NetProxy::start(&echo.addr, 100);
    let mut stream = connect(&proxy).await;

    // One way each: a round trip is delayed twice.
    let took = round_trip(&mut stream, b"ping").await;
    assert!(
        took >= Duration::from_millis(200),
        "round trip took {took:?}"
    );

    proxy.set_delay(200);
    assert_eq!(
        proxy.command("status"),
        "ok connections=1 mode=normal delay_ms=200"
    );
    let took = round_trip(&mut stream, b"ping").await;
    assert!(
        took >= Duration::from_millis(400),
        "round trip took {took:?}"
    );

    // Many chunks in flight at once come back whole and in order.
    let (mut read, mut write) = stream.split();
    let sent = payload(256 * 1024);
    let mut back = vec![0u8; sent.len()];
    let writer = async {
        for piece in sent.chunks(4096) {
            write.write_all(piece).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok::<_, std::io::Error>(())
    };
    let (written, echoed) = tokio::time::timeout(ARRIVAL_TIMEOUT, async {
        tokio::join!(writer, read.read_exact(&mut back))
    })
    .await
    .expect("the delayed echo came back in time");
    written.expect("write through the proxy");
    echoed.expect("read through the proxy");
    assert!(back == sent, "the delayed echo differs from what was sent");

    proxy.set_delay(0);
    round_trip(&mut stream, b"fast again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_is_silent_until_heal() {
    let echo = Echo::start().await;
    let proxy = NetProxy::start(&echo.addr, 0);
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"before").await;
    let received = echo.received.load(Ordering::SeqCst);

    proxy.blackhole();
    // Bytes and the close of an existing connection go nowhere.
    old.write_all(b"lost")
        .await
        .expect("write into the blackhole");
    old.shutdown().await.expect("half-close into the blackhole");
    assert_silent(&mut old).await;
    // A new connection is accepted but never reaches the target.
    let mut new = connect(&proxy).await;
    new.write_all(b"also lost")
        .await
        .expect("write into the blackhole");
    assert_silent(&mut new).await;
    proxy.wait_for_connections(2);
    assert_eq!(
        proxy.command("status"),
        "ok connections=2 mode=blackhole delay_ms=0"
    );
    assert_eq!(echo.received.load(Ordering::SeqCst), received);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(echo.ended.load(Ordering::SeqCst), 0);

    proxy.heal();
    // Blackholed connections are closed, on both sides ...
    assert_closed(&mut old).await;
    assert_closed(&mut new).await;
    wait_for_count(&echo.ended, 1, "echo connections ended").await;
    assert_eq!(echo.received.load(Ordering::SeqCst), received);
    proxy.wait_for_connections(0);
    // ... and a new one works.
    let mut healed = connect(&proxy).await;
    round_trip(&mut healed, b"after").await;
    assert_eq!(
        proxy.command("status"),
        "ok connections=1 mode=normal delay_ms=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_closes_every_connection() {
    let echo = Echo::start().await;
    let proxy = NetProxy::start(&echo.addr, 0);
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    round_trip(&mut a, b"a").await;
    round_trip(&mut b, b"b").await;
    proxy.wait_for_connections(2);

    proxy.reset();
    assert_closed(&mut a).await;
    assert_closed(&mut b).await;
    wait_for_count(&echo.ended, 2, "echo connections ended").await;
    proxy.wait_for_connections(0);

    // The mode is unchanged: new connections are forwarded.
    let mut c = connect(&proxy).await;
    round_trip(&mut c, b"c").await;
}
