//! Invariant 4: nothing that arrives on a socket panics the process or
//! corrupts the store, and invariant 3: a torn or corrupt commit-log tail is
//! found on start-up, cut, and reported. Each case runs against a real
//! `meridian` process; afterwards the other connections still work and the
//! messages stored before are intact.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use meridian_client::producer::Message;
use meridian_client::{Admin, Producer};
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::message::decode_properties;
use meridian_protocol::message_id::decode_offset_msg_id;
use meridian_protocol::{encode_frame, FrameDecoder, RemotingCommand};
use support::cluster::{Cluster, ClusterOpts};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Send one request and read one response on a blocking socket.
fn call(stream: &mut TcpStream, cmd: &RemotingCommand) -> RemotingCommand {
    let mut buf = BytesMut::new();
    encode_frame(cmd, &mut buf);
    stream.write_all(&buf).expect("write");
    let mut decoder = FrameDecoder::new(64 * 1024 * 1024);
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(r) = decoder.decode(&mut input).expect("decode response") {
            return r;
        }
        let n = stream.read(&mut chunk).expect("read response");
        assert!(n > 0, "connection closed instead of answering");
        input.extend_from_slice(&chunk[..n]);
    }
}

/// True when the server closes the connection (EOF or reset) within 10 s.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match stream.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn runtime_info(stream: &mut TcpStream) -> i32 {
    let mut req = RemotingCommand::request(request_code::GET_BROKER_RUNTIME_INFO);
    req.opaque = 77;
    let r = call(stream, &req);
    assert_eq!(r.opaque, 77);
    r.code
}

fn assert_no_panic(cluster: &Cluster) {
    let logs = cluster.logs();
    assert!(!logs.contains("panicked"), "the process panicked:\n{logs}");
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let broker = cluster.broker_addr();
    let mut healthy = connect(&broker);
    assert_eq!(runtime_info(&mut healthy), response_code::SUCCESS);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage bytes",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "length field over the frame limit",
            vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        ("header length larger than the frame", {
            let mut b = BytesMut::new();
            b.put_i32(8);
            b.put_i32(1000); // JSON, 1000-byte header in an 8-byte frame
            b.put_i32(0);
            b.to_vec()
        }),
        ("invalid JSON header", {
            let header = b"{\"code\": 10, not json";
            let mut b = BytesMut::new();
            b.put_i32(4 + header.len() as i32);
            b.put_i32(header.len() as i32);
            b.put_slice(header);
            b.to_vec()
        }),
        ("unknown serialize type", {
            let mut b = BytesMut::new();
            b.put_i32(6);
            b.put_i32((9 << 24) | 2);
            b.put_slice(b"{}");
            b.to_vec()
        }),
    ];
    for (what, bytes) in cases {
        for addr in [broker.clone(), cluster.namesrv_addr()] {
            let mut s = connect(&addr);
            s.write_all(&bytes).expect("write");
            assert!(
                closed_by_server(&mut s),
                "{what}: {addr} kept the connection open"
            );
        }
        // The other connection is unaffected.
        assert_eq!(
            runtime_info(&mut healthy),
            response_code::SUCCESS,
            "after {what}"
        );
    }
    assert!(
        cluster.logs().contains("bad frame"),
        "the broker should log why it closed the connections"
    );
    assert_no_panic(&cluster);
}

#[test]
fn unknown_request_code_is_answered_and_the_connection_stays() {
    let cluster = Cluster::dev(ClusterOpts::new());
    for addr in [cluster.broker_addr(), cluster.namesrv_addr()] {
        let mut s = connect(&addr);
        let mut req = RemotingCommand::request(31_999);
        req.opaque = 5;
        let r = call(&mut s, &req);
        assert_eq!(r.code, response_code::REQUEST_CODE_NOT_SUPPORTED, "{addr}");
        assert_eq!(r.opaque, 5);
        assert!(r.is_response());
        // Same connection, next request.
        let mut route = RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO);
        route.opaque = 6;
        let r = call(&mut s, &route);
        assert_eq!(r.opaque, 6, "{addr}: the connection must stay usable");
    }
    assert_no_panic(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_and_missing_topic_get_clear_errors() {
    let cluster = Cluster::dev(
        ClusterOpts::new()
            .max_message_size(1024)
            .auto_create_topics(false),
    );
    cluster.create_topic("small", 1);
    let producer = Producer::new(&cluster.namesrv_addr(), "bad-input");
    let broker = cluster.broker_addr();

    let ok = Message {
        topic: "small".into(),
        body: Bytes::from(vec![b'a'; 512]),
        keys: vec!["fits".into()],
        ..Default::default()
    };
    producer
        .send_to(&broker, "broker-a", 0, &ok)
        .await
        .expect("a 512-byte body fits");

    let big = Message {
        body: Bytes::from(vec![b'b'; 2048]),
        ..ok.clone()
    };
    let err = producer
        .send_to(&broker, "broker-a", 0, &big)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("code {}", response_code::MESSAGE_ILLEGAL)),
        "{text}"
    );
    assert!(
        text.contains("maxMessageSize"),
        "the error should name the limit: {text}"
    );

    let missing = Message {
        topic: "no-such-topic".into(),
        ..ok.clone()
    };
    let err = producer
        .send_to(&broker, "broker-a", 0, &missing)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("code {}", response_code::TOPIC_NOT_EXIST)),
        "{text}"
    );

    // What was stored before is intact.
    let admin = Admin::new(&cluster.namesrv_addr());
    let (code, _, msgs) = admin.pull(&broker, "g", "small", 0, 0, 32).await.unwrap();
    assert_eq!(code, response_code::SUCCESS);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body.len(), 512);
    assert_no_panic(&cluster);
}

/// Send `n` messages with keys `m0..`, returning their commit-log offsets.
async fn fill(cluster: &Cluster, topic: &str, n: usize) -> Vec<i64> {
    let producer = Producer::new(&cluster.namesrv_addr(), "filler");
    let mut offsets = Vec::new();
    for i in 0..n {
        let msg = Message {
            topic: topic.into(),
            body: Bytes::from(format!("message number {i} with some padding to be found")),
            keys: vec![format!("m{i}")],
            ..Default::default()
        };
        let r = producer
            .send_to(&cluster.broker_addr(), "broker-a", 0, &msg)
            .await
            .expect("send");
        offsets.push(decode_offset_msg_id(&r.offset_msg_id).expect("offset id").1);
    }
    offsets
}

async fn stored_keys(cluster: &Cluster, topic: &str) -> Vec<String> {
    let admin = Admin::new(&cluster.namesrv_addr());
    support::queues::read_queue(&admin, &cluster.broker_addr(), topic, 0)
        .await
        .iter()
        .map(|m| {
            let props = decode_properties(&m.properties);
            props
                .iter()
                .find(|(k, _)| k == "KEYS")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

fn first_segment(cluster: &Cluster) -> std::path::PathBuf {
    cluster
        .data_dir()
        .join("commitlog")
        .join("00000000000000000000")
}

/// Offset of a record's body inside the record: the fixed header (IPv4
/// hosts) plus the body length field.
const BODY_AT: u64 = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4;

/// Flip one bit in place (the segment is large and sparse: no whole-file
/// rewrite).
fn flip_bit(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flip_in_a_record_cuts_the_log_there() {
    let mut cluster = Cluster::dev(ClusterOpts::new().sync_flush());
    cluster.create_topic("flip", 1);
    let offsets = fill(&cluster, "flip", 40).await;
    tokio::task::block_in_place(|| cluster.kill9());

    let path = first_segment(&cluster);
    flip_bit(&path, offsets[30] as u64 + BODY_AT + 3);

    tokio::task::block_in_place(|| cluster.restart_broker());
    let keys = stored_keys(&cluster, "flip").await;
    let expected: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    assert_eq!(
        keys, expected,
        "recovery must keep exactly the records before the corrupt one"
    );
    let logs = cluster.logs();
    assert!(
        logs.contains("30") && (logs.contains("CRC") || logs.contains("crc")),
        "recovery should report the cut and its reason:\n{logs}"
    );
    // The broker takes new messages after the cut.
    let more = fill(&cluster, "flip", 1).await;
    assert_eq!(
        more[0], offsets[30],
        "new writes continue where the valid log ends"
    );
    assert_no_panic(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_segment_recovers_the_valid_prefix() {
    let mut cluster = Cluster::dev(ClusterOpts::new().sync_flush());
    cluster.create_topic("torn", 1);
    let offsets = fill(&cluster, "torn", 25).await;
    tokio::task::block_in_place(|| cluster.kill9());

    // Tear the last five records: cut the file in the middle of record 20.
    let path = first_segment(&cluster);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(offsets[20] as u64 + 10).unwrap();
    drop(f);

    let started = std::time::Instant::now();
    tokio::task::block_in_place(|| cluster.restart_broker());
    eprintln!("restart after the tear took {:?}", started.elapsed());
    let keys = stored_keys(&cluster, "torn").await;
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(keys, expected);
    assert_no_panic(&cluster);
}
