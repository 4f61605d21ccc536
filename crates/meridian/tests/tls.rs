//! TLS against the real `meridian` binary: `rocketmq-client-rust` with TLS
//! (verifying the server against a CA made by the test), `meridian admin
//! --tls`, plaintext clients refused in `enforcing` mode and served in
//! `permissive` mode, and mutual TLS: clients, slaves and Raft members
//! without a certificate from the trusted CA are turned away. `meridian
//! relay` relays between regions whose ports are TLS-only (and a relay
//! without `tls.enable` cannot), and `meridian bench --tls` produces into
//! an enforcing broker.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rocketmq_client_rust::ClientConfig;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::SendStatus;

use meridian_protocol::message::MessageExt;
use support::cluster::BrokerGroup;
use support::regions::{Region, Relay};
use support::*;

/// A CA, a server certificate for 127.0.0.1 / localhost and a client
/// certificate, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Meridian test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "meridian",
    );
    let (client_cert, client_key) = issue(
        vec!["client".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write PEM");
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

async fn tls_producer(ns: &str, ca: &Path) -> DefaultMQProducer {
    let mut config = ClientConfig::default();
    config.set_instance_name(unique("tls").into());
    config.set_use_tls(true);
    config.set_tls_client_auth_server(true);
    config.set_tls_client_trust_cert_path(s(ca).to_string());
    let mut producer = DefaultMQProducer::builder(client_runtime("tls-producer"))
        .client_config(config)
        .producer_group(unique("pg"))
        .name_server_addr(ns.to_owned())
        .send_msg_timeout(5_000)
        .build();
    producer.start().await.expect("TLS producer starts");
    producer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enforcing_serves_tls_clients_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let cluster = Cluster::dev(
        ClusterOpts::new()
            .broker_conf("tls.server.mode", "enforcing")
            .broker_conf("tls.server.certPath", s(&pki.server_cert))
            .broker_conf("tls.server.keyPath", s(&pki.server_key))
            .broker_conf("tls.client.authServer", "true")
            .broker_conf("tls.client.trustCertPath", s(&pki.ca)),
    );
    let ns = cluster.namesrv_addr();
    let topic = unique("TlsTopic");

    // Plaintext admin is refused; over TLS, verified against the CA, it works.
    let (ok, out) = cluster.admin_outcome(&["clusterList"]);
    assert!(
        !ok,
        "plaintext admin must fail against an enforcing server: {out}"
    );
    cluster.admin(&[
        "updateTopic",
        "-t",
        &topic,
        "-c",
        "DefaultCluster",
        "-r",
        "2",
        "-w",
        "2",
        "--tls",
        "--tlsTrustCertPath",
        s(&pki.ca),
    ]);

    // A stock client over TLS: send and consume.
    let mut producer = tls_producer(&ns, &pki.ca).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let sent: Vec<String> = (0..5).map(|i| format!("tls-{i}")).collect();
    for body in &sent {
        let r = producer
            .send(message(&topic, "TagT", body, body, &[]))
            .await
            .expect("send over TLS")
            .expect("a result");
        assert_eq!(r.send_status, SendStatus::SendOk);
    }
    let inbox = Inbox::new();
    let mut config = ClientConfig::default();
    config.set_instance_name(unique("tls-consumer").into());
    config.set_use_tls(true);
    config.set_tls_client_auth_server(true);
    config.set_tls_client_trust_cert_path(s(&pki.ca).to_string());
    let mut consumer = rocketmq_client_rust::DefaultMQPushConsumer::builder(client_runtime("tls-consumer"))
        .client_config(config)
        .name_server_addr(ns.clone())
        .consumer_group(unique("cg"))
        .consume_from_where(
            rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere::ConsumeFromFirstOffset,
        )
        .build();
    consumer.subscribe(&topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("TLS consumer starts");
    inbox.expect_exactly_once(&sent).await;

    // A plaintext stock client gets nothing through.
    let mut plain = start_producer(&ns).await;
    let r = plain
        .send(message(&topic, "TagT", "plain", "plain", &[]))
        .await;
    assert!(
        !matches!(r, Ok(Some(_))),
        "a plaintext send must fail: {r:?}"
    );

    consumer.shutdown().await;
    producer.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_test_mode_takes_tls_and_plaintext_on_one_port() {
    let cluster = Cluster::dev(
        ClusterOpts::new()
            .broker_conf("tls.server.mode", "permissive")
            .broker_conf("tls.test.mode.enable", "true"),
    );
    let plain = cluster.admin(&["clusterList"]);
    assert!(plain.contains("broker-a"), "{plain}");
    let tls = cluster.admin(&["clusterList", "--tls"]);
    assert!(tls.contains("broker-a"), "{tls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_keep_strangers_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let cluster = Cluster::dev(
        ClusterOpts::new()
            .broker_conf("tls.server.mode", "enforcing")
            .broker_conf("tls.server.certPath", s(&pki.server_cert))
            .broker_conf("tls.server.keyPath", s(&pki.server_key))
            .broker_conf("tls.server.need.client.auth", "require")
            .broker_conf("tls.server.trustCertPath", s(&pki.ca))
            // the broker's own link to its name server presents one too
            .broker_conf("tls.client.certPath", s(&pki.client_cert))
            .broker_conf("tls.client.keyPath", s(&pki.client_key)),
    );
    let (ok, out) =
        cluster.admin_outcome(&["clusterList", "--tls", "--tlsTrustCertPath", s(&pki.ca)]);
    assert!(!ok, "a client without a certificate is refused: {out}");
    let listed = cluster.admin(&[
        "clusterList",
        "--tls",
        "--tlsTrustCertPath",
        s(&pki.ca),
        "--tlsCertPath",
        s(&pki.client_cert),
        "--tlsKeyPath",
        s(&pki.client_key),
    ]);
    assert!(listed.contains("broker-a"), "{listed}");
}

/// haConnectedSlaves of the master of `group`, once it reads `want` or
/// `wait` has passed.
async fn connected_slaves(group: &BrokerGroup, want: &str, wait: std::time::Duration) -> String {
    let admin = meridian_client::Admin::new(&group.namesrv_addr());
    let deadline = std::time::Instant::now() + wait;
    loop {
        let now = admin
            .runtime_info(&group.broker_addr(0))
            .await
            .ok()
            .and_then(|rt| rt.get("haConnectedSlaves").cloned())
            .unwrap_or_default();
        if now == want || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_slave_with_a_certificate_replicates_from_a_mutual_tls_master() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let master = format!(
        "brokerId=0\nbrokerRole=SYNC_MASTER\ntls.server.certPath={}\ntls.server.keyPath={}\n\
         tls.server.trustCertPath={}\ntls.peer.need.client.auth=require\n",
        s(&pki.server_cert),
        s(&pki.server_key),
        s(&pki.ca)
    );
    let slave = format!(
        "brokerId=1\nbrokerRole=SLAVE\ntls.peer.enable=true\ntls.client.authServer=true\n\
         tls.client.trustCertPath={}\ntls.client.certPath={}\ntls.client.keyPath={}\n",
        s(&pki.ca),
        s(&pki.client_cert),
        s(&pki.client_key)
    );
    let group = BrokerGroup::start(&[&master, &slave]);
    assert_eq!(
        connected_slaves(&group, "1", std::time::Duration::from_secs(20)).await,
        "1",
        "the slave with a certificate replicates"
    );
    // A SYNC_MASTER send is acknowledged only once the slave has it.
    group.create_topic("TlsHa", 1);
    let producer = meridian_client::Producer::new(&group.namesrv_addr(), "tls-ha");
    let msg = meridian_client::producer::Message {
        topic: "TlsHa".into(),
        body: bytes::Bytes::from_static(b"replicated over TLS"),
        ..Default::default()
    };
    let r = producer
        .send_to(&group.broker_addr(0), "broker-a", 0, &msg)
        .await
        .expect("send to the master");
    assert_eq!(r.status.to_string(), "SEND_OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_pose_as_a_slave() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let master = format!(
        "brokerId=0\nbrokerRole=ASYNC_MASTER\ntls.server.certPath={}\ntls.server.keyPath={}\n\
         tls.server.trustCertPath={}\ntls.peer.need.client.auth=require\n",
        s(&pki.server_cert),
        s(&pki.server_key),
        s(&pki.ca)
    );
    // TLS without a certificate, and plaintext: both turned away.
    let no_cert = "brokerId=1\nbrokerRole=SLAVE\ntls.peer.enable=true\n";
    let plaintext = "brokerId=2\nbrokerRole=SLAVE\n";
    let group = BrokerGroup::start(&[&master, no_cert, plaintext]);
    assert_eq!(
        connected_slaves(&group, "1", std::time::Duration::from_secs(8)).await,
        "0",
        "no slave without a certificate may replicate"
    );
    assert!(
        group
            .logs()
            .contains("HA connection closed before replication"),
        "the master says why it turned them away"
    );
}

/// broker.conf lines for mutual TLS on the links between brokers with
/// `pki`'s certificates: certificates required on the HA and Raft ports,
/// and presented (and the server's verified when `verify_server`) on this
/// broker's links to the others.
fn peer_mtls(pki: &Pki, verify_server: bool) -> String {
    format!(
        "tls.server.certPath={}\ntls.server.keyPath={}\ntls.server.trustCertPath={}\n\
         tls.peer.need.client.auth=require\ntls.peer.enable=true\ntls.client.authServer={verify_server}\n\
         tls.client.trustCertPath={}\ntls.client.certPath={}\ntls.client.keyPath={}\n",
        s(&pki.server_cert),
        s(&pki.server_key),
        s(&pki.ca),
        s(&pki.ca),
        s(&pki.client_cert),
        s(&pki.client_key)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_group_replicates_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let group = support::raft::raft_group(&peer_mtls(&pki, true));
    let admin = meridian_client::Admin::new(&group.namesrv_addr());
    let leader = support::raft::leader(&group, &admin).await;
    group.create_topic("TlsRaft", 1);
    let producer = meridian_client::Producer::new(&group.namesrv_addr(), "tls-raft");
    let msg = meridian_client::producer::Message {
        topic: "TlsRaft".into(),
        body: bytes::Bytes::from_static(b"on a majority, over TLS"),
        ..Default::default()
    };
    // Acknowledged only once a majority holds it: the links work.
    let r = producer
        .send_to(&group.broker_addr(leader), "broker-a", 0, &msg)
        .await
        .expect("send to the leader");
    assert_eq!(r.status.to_string(), "SEND_OK");
}

/// One Raft runtime value of member `i` ("" when it cannot be read).
async fn raft_value(
    group: &BrokerGroup,
    admin: &meridian_client::Admin,
    i: usize,
    key: &str,
) -> String {
    admin
        .runtime_info(&group.broker_addr(i))
        .await
        .ok()
        .and_then(|rt| rt.get(key).cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_join_a_raft_group_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    std::fs::create_dir_all(&ours).expect("dir");
    std::fs::create_dir_all(&theirs).expect("dir");
    let pki = make_pki(&ours);
    // The stranger knows the group's name and members and has certificates,
    // but from a CA of its own; it accepts any server, so it is the group
    // that turns it away.
    let foreign = make_pki(&theirs);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";");
    let member = |i: usize, tls: String| {
        format!(
            "enableDLegerCommitLog=true\ndLegerGroup=broker-a\ndLegerPeers={peers}\n\
             dLegerSelfId=n{i}\nflushDiskType=ASYNC_FLUSH\n{tls}"
        )
    };
    let (n0, n1) = (
        member(0, peer_mtls(&pki, true)),
        member(1, peer_mtls(&pki, true)),
    );
    let stranger = member(2, peer_mtls(&foreign, false));
    let group = BrokerGroup::start(&[&n0, &n1, &stranger]);
    let admin = meridian_client::Admin::new(&group.namesrv_addr());

    // The two members with certificates form the majority and write.
    let leader = support::raft::leader(&group, &admin).await;
    assert_ne!(leader, 2, "the stranger cannot win an election");
    let follower = 1 - leader;
    group.create_topic("TlsRaftStranger", 1);
    let producer = meridian_client::Producer::new(&group.namesrv_addr(), "tls-raft-stranger");
    let msg = meridian_client::producer::Message {
        topic: "TlsRaftStranger".into(),
        body: bytes::Bytes::from_static(b"for members only"),
        ..Default::default()
    };
    let r = producer
        .send_to(&group.broker_addr(leader), "broker-a", 0, &msg)
        .await
        .expect("send to the leader");
    assert_eq!(r.status.to_string(), "SEND_OK");
    let written = raft_value(&group, &admin, leader, "raftWriteOffset").await;
    assert_ne!(written, "0", "the leader wrote the message");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while raft_value(&group, &admin, follower, "raftWriteOffset").await != written {
        assert!(
            std::time::Instant::now() < deadline,
            "the member with a certificate catches up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The stranger got nothing and does not know who leads.
    let rt = admin
        .runtime_info(&group.broker_addr(2))
        .await
        .expect("the stranger's runtime info");
    assert_eq!(rt.get("raftWriteOffset").map(String::as_str), Some("0"));
    assert_eq!(rt.get("raftLeaderId").map(String::as_str), Some(""));

    // Plaintext on a member's Raft port is closed without an answer.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", ports[leader])).expect("connect");
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let _ = plain.write_all(b"hello, I am n2");
    let mut buf = [0u8; 64];
    let read = plain.read(&mut buf);
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut),
        "a plaintext Raft connection is closed: {read:?}"
    );
    let logs = group.logs();
    assert!(
        logs.lines().any(
            |l| l.contains("Raft connection refused") && l.contains("invalid peer certificate")
        ),
        "the members say why they turned the stranger away"
    );
}

/// namesrv.conf and broker.conf lines for a port that speaks only TLS with
/// `pki`'s server certificate, and for the process's own links (a broker to
/// its name server) verifying the server against the test CA.
fn tls_only(pki: &Pki) -> String {
    format!(
        "tls.server.mode=enforcing\ntls.server.certPath={}\ntls.server.keyPath={}\n\
         tls.client.authServer=true\ntls.client.trustCertPath={}\n",
        s(&pki.server_cert),
        s(&pki.server_key),
        s(&pki.ca)
    )
}

/// A region whose name server and broker take only TLS.
fn tls_region(name: &str, pki: &Pki) -> Region {
    let region = Region::start_with_namesrv(name, &tls_only(pki), &tls_only(pki));
    let (ok, out) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["admin", "-n", &region.namesrv(), "clusterList"])
            .output()
            .expect("run meridian admin");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(!ok, "the region's name server must refuse plaintext: {out}");
    region
}

/// An admin client over TLS, verifying servers against `pki`'s CA.
fn tls_admin(namesrv: &str, pki: &Pki) -> meridian_client::Admin {
    let connector = meridian_remoting::tls::client_connector(true, Some(&pki.ca), None, None)
        .expect("connector");
    meridian_client::Admin::new(namesrv).with_security(None, connector)
}

/// Every message of `topic` on `region`'s broker, own queues and copies,
/// read over TLS (what [`Region::read_all`] does in plaintext).
async fn read_all_tls(region: &Region, pki: &Pki, topic: &str) -> Vec<MessageExt> {
    let admin = tls_admin(&region.namesrv(), pki);
    support::queues::read_topic(&admin, &region.broker(), topic).await
}

/// What the relay processes named `prefix…` in `dir` logged.
fn relay_logs(dir: &Path, prefix: &str) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("relay dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".log")
        })
        .collect();
    logs.sort();
    logs.iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// The bodies of `msgs`, sorted.
fn bodies(msgs: &[MessageExt]) -> Vec<String> {
    let mut b: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    b.sort();
    b
}

/// Send `bodies` to `topic` in the region of name server `ns` over TLS.
async fn send_tls(ns: &str, ca: &Path, topic: &str, bodies: &[String]) {
    let mut producer = tls_producer(ns, ca).await;
    wait_for_route(&mut producer, topic, 2).await;
    for body in bodies {
        let r = producer
            .send(message(topic, "TagR", body, body, &[]))
            .await
            .expect("send over TLS")
            .expect("a result");
        assert_eq!(r.send_status, SendStatus::SendOk);
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_with_tls_relays_between_tls_only_regions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let east = tls_region("east", &pki);
    let west = tls_region("west", &pki);
    let topic = unique("TlsRelay");
    for region in [&east, &west] {
        region.group.admin(&[
            "updateTopic",
            "-t",
            &topic,
            "-c",
            "DefaultCluster",
            "-r",
            "2",
            "-w",
            "2",
            "--tls",
            "--tlsTrustCertPath",
            s(&pki.ca),
        ]);
    }

    // east → west over TLS, verifying both regions' certificates; west →
    // east without tls.enable, which the TLS-only ports turn away.
    let relays = dir.path().join("relays");
    std::fs::create_dir_all(&relays).expect("dir");
    let _tls_relay = Relay::start(
        &relays,
        &east,
        &west,
        &topic,
        &format!(
            "tls.enable=true\ntls.client.authServer=true\ntls.client.trustCertPath={}",
            s(&pki.ca)
        ),
    );
    let _plain_relay = Relay::start(&relays, &west, &east, &topic, "");

    let from_east: Vec<String> = (0..5).map(|i| format!("east-{i}")).collect();
    let from_west: Vec<String> = (0..3).map(|i| format!("west-{i}")).collect();
    send_tls(&east.namesrv(), &pki.ca, &topic, &from_east).await;
    send_tls(&west.namesrv(), &pki.ca, &topic, &from_west).await;

    // West holds its own messages and east's, each once.
    let mut want_west: Vec<String> = from_east.iter().chain(&from_west).cloned().collect();
    want_west.sort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let in_west = loop {
        let got = bodies(&read_all_tls(&west, &pki, &topic).await);
        if got.len() >= want_west.len() || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(
        in_west,
        want_west,
        "east's messages reach west once each; the relay's log:\n{}",
        relay_logs(&relays, "relay-east-west")
    );
    let relayed = read_all_tls(&west, &pki, &topic).await;
    for m in relayed.iter().filter(|m| m.body.starts_with(b"east-")) {
        assert_eq!(m.property("MSG_REGION"), Some("east"), "{m:?}");
    }

    // Nothing crossed the plaintext link, and its relay says why.
    let in_east = bodies(&read_all_tls(&east, &pki, &topic).await);
    assert_eq!(in_east, from_east, "a relay without TLS relays nothing");
    let logs = relay_logs(&relays, "relay-west-east");
    assert!(
        logs.contains("cannot look up the relay link") && logs.contains("set tls.enable=true"),
        "the plaintext relay logs why it relays nothing:\n{logs}"
    );
}

/// `meridian bench <args> --json`: whether it succeeded, the JSON object
/// it printed (Null if none), and its output for messages.
fn bench_json(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run meridian bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    let text = format!(
        "status {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), json, text)
}

#[test]
fn bench_produces_over_tls_into_an_enforcing_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path());
    let cluster = Cluster::dev(
        ClusterOpts::new()
            .broker_conf("tls.server.mode", "enforcing")
            .broker_conf("tls.server.certPath", s(&pki.server_cert))
            .broker_conf("tls.server.keyPath", s(&pki.server_key)),
    );
    let ns = cluster.namesrv_addr();
    let run = |tls: bool| {
        let mut args = vec![
            "produce",
            "-n",
            &ns,
            "-t",
            "BenchTls",
            "-w",
            "2",
            "--queues",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
        ];
        if tls {
            args.push("--tls");
        }
        bench_json(&args)
    };

    let (ok, produced, out) = run(true);
    assert!(ok, "bench --tls fails against an enforcing broker: {out}");
    let sent = produced["sent"].as_u64().expect("`sent` is a count");
    assert!(sent > 0, "nothing was sent: {out}");
    assert_eq!(produced["errors"], 0, "{out}");

    // Without --tls the same run gets nothing through.
    let (ok, _, out) = run(false);
    assert!(
        !ok,
        "a plaintext bench must not reach an enforcing broker: {out}"
    );
}
