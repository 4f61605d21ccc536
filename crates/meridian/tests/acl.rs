//! Access control (`aclEnable=true`, `plain_acl.yml`) against the real
//! `meridian` binary, with `rocketmq-client-rust` clients signing as stock
//! RocketMQ clients do (`AclClientRPCHook`), and raw signed requests for
//! what a client would not do on purpose (a tampered body, a request from
//! another address).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::RemotingCommand;
use meridian_remoting::acl::Credentials;
use meridian_remoting::{Connection, ConnectionLimits, Handler, Reply};
use rocketmq_client_rust::AclClientRPCHook;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::DefaultMQPushConsumer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::SendStatus;
use rocketmq_client_rust::SessionCredentials;

use support::*;

const ADMIN: (&str, &str) = ("meridianAdmin", "admin-secret-1");
const PRODUCER: (&str, &str) = ("producer01", "producer-secret");
const CONSUMER: (&str, &str) = ("consumer01", "consumer-secret");

fn acl_file(topic: &str, other_topic_perm: &str) -> String {
    format!(
        r#"globalWhiteRemoteAddresses:
  - 127.0.0.2
accounts:
  - accessKey: {admin_ak}
    secretKey: {admin_sk}
    admin: true
  - accessKey: {p_ak}
    secretKey: {p_sk}
    whiteRemoteAddress: 127.0.0.3
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - {topic}=PUB
      - Other{topic}={other_topic_perm}
  - accessKey: {c_ak}
    secretKey: {c_sk}
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - {topic}=SUB
    groupPerms:
      - cgAllowed=SUB
"#,
        admin_ak = ADMIN.0,
        admin_sk = ADMIN.1,
        p_ak = PRODUCER.0,
        p_sk = PRODUCER.1,
        c_ak = CONSUMER.0,
        c_sk = CONSUMER.1,
    )
}

/// Replace the accounts file the way an operator would: write aside, rename.
fn write_acl(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write ACL file");
    std::fs::rename(&tmp, path).expect("replace ACL file");
}

async fn producer_as(ns: &str, account: (&str, &str)) -> DefaultMQProducer {
    let hook = Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
        account.0, account.1,
    )));
    let mut producer = DefaultMQProducer::builder(client_runtime("acl-producer"))
        .producer_group(unique("pg"))
        .name_server_addr(ns.to_owned())
        .send_msg_timeout(5_000)
        .retry_times_when_send_failed(0)
        .rpc_hook(hook)
        .build();
    producer.start().await.expect("producer starts");
    producer
}

async fn consumer_as(
    ns: &str,
    account: (&str, &str),
    group: &str,
    topic: &str,
    inbox: &Inbox,
) -> DefaultMQPushConsumer {
    let hook = Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
        account.0, account.1,
    )));
    let mut consumer = push_consumer(ns, group).rpc_hook(Some(hook as _)).build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    consumer
}

async fn send_ok(producer: &DefaultMQProducer, topic: &str, body: &str) -> bool {
    match producer.send(message(topic, "TagA", body, body, &[])).await {
        Ok(Some(r)) => r.send_status == SendStatus::SendOk,
        _ => false,
    }
}

/// A handler for the raw connections' incoming requests (there are none).
struct Ignore;
impl Handler for Ignore {
    fn handle(&self, _: &Arc<Connection>, _: RemotingCommand) -> Reply {
        Reply::Now(None)
    }
}

/// Send one request from the local address `from` (any 127.x address).
async fn raw(broker: &str, from: &str, req: RemotingCommand) -> RemotingCommand {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    let stream = socket
        .connect(broker.parse().expect("broker address"))
        .await
        .expect("connect");
    let peer = stream.peer_addr().expect("peer");
    let conn = meridian_remoting::connection::spawn(
        stream,
        peer,
        Arc::new(Ignore),
        ConnectionLimits::default(),
    );
    let response = conn
        .invoke(req, Duration::from_secs(5))
        .await
        .expect("the broker answers");
    conn.close();
    response
}

fn consumer_list(group: &str) -> RemotingCommand {
    let mut req = RemotingCommand::request(request_code::GET_CONSUMER_LIST_BY_GROUP);
    req.set_ext("consumerGroup", group);
    req
}

fn offset_update(topic: &str, group: &str) -> RemotingCommand {
    let mut req = RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET);
    req.set_ext("consumerGroup", group);
    req.set_ext("topic", topic);
    req.set_ext("queueId", 0);
    req.set_ext("commitOffset", 0);
    req
}

fn signed(mut req: RemotingCommand, account: (&str, &str)) -> RemotingCommand {
    Credentials::new(account.0, account.1).sign(&mut req);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_allow_and_deny_sends_pulls_offsets_and_admin_requests() {
    let topic = unique("AclTopic");
    let conf = tempfile::tempdir().expect("temp dir");
    let acl_path = conf.path().join("plain_acl.yml");
    write_acl(&acl_path, &acl_file(&topic, "DENY"));
    let cluster = Cluster::dev(
        ClusterOpts::new()
            .broker_conf("aclEnable", "true")
            .broker_conf("aclFile", acl_path.to_str().expect("utf-8 path")),
    );
    let ns = cluster.namesrv_addr();
    let broker = cluster.broker_addr();
    let other = format!("Other{topic}");

    // Admin requests: refused unsigned and for a non-admin account,
    // served for the admin account.
    let (ok, out) = cluster.admin_outcome(&["updateTopic", "-t", &topic, "-c", "DefaultCluster"]);
    assert!(
        !ok && out.contains("AccessKey"),
        "unsigned updateTopic refused: {out}"
    );
    let (ok, out) = cluster.admin_outcome(&[
        "updateTopic",
        "-t",
        &topic,
        "-c",
        "DefaultCluster",
        "--accessKey",
        PRODUCER.0,
        "--secretKey",
        PRODUCER.1,
    ]);
    assert!(
        !ok && out.contains("admin"),
        "a non-admin account cannot create topics: {out}"
    );
    for t in [&topic, &other] {
        cluster.admin(&[
            "updateTopic",
            "-t",
            t,
            "-c",
            "DefaultCluster",
            "-r",
            "2",
            "-w",
            "2",
            "--accessKey",
            ADMIN.0,
            "--secretKey",
            ADMIN.1,
        ]);
    }

    // Sends: allowed on the topic with PUB, refused elsewhere, refused with a
    // wrong secret or no signature.
    let mut producer = producer_as(&ns, PRODUCER).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let sent: Vec<String> = (0..6).map(|i| format!("allowed-{i}")).collect();
    for body in &sent {
        assert!(
            send_ok(&producer, &topic, body).await,
            "{body} is sent with PUB"
        );
    }
    assert!(
        !send_ok(&producer, &other, "denied").await,
        "no PUB on {other}"
    );
    let mut wrong = producer_as(&ns, (PRODUCER.0, "not-the-secret")).await;
    assert!(
        !send_ok(&wrong, &topic, "wrong-secret").await,
        "a wrong secret is refused"
    );
    wrong.shutdown().await;
    let mut unsigned = start_producer(&ns).await;
    assert!(
        !send_ok(&unsigned, &topic, "unsigned").await,
        "an unsigned send is refused"
    );
    unsigned.shutdown().await;

    // Pulls: the allowed group receives exactly what was sent; a group the
    // account may not use receives nothing.
    let allowed = Inbox::new();
    let denied = Inbox::new();
    let mut c1 = consumer_as(&ns, CONSUMER, "cgAllowed", &topic, &allowed).await;
    let mut c2 = consumer_as(&ns, CONSUMER, &unique("cgDenied"), &topic, &denied).await;
    allowed.expect_exactly_once(&sent).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        denied.len(),
        0,
        "a denied group gets nothing: {:?}",
        denied.bodies()
    );

    // Offset commits, signed by hand.
    let r = raw(
        &broker,
        "127.0.0.1",
        signed(offset_update(&topic, "cgAllowed"), CONSUMER),
    )
    .await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    let r = raw(
        &broker,
        "127.0.0.1",
        signed(offset_update(&topic, "cgOther"), CONSUMER),
    )
    .await;
    assert_eq!(r.code, response_code::NO_PERMISSION);
    assert!(
        r.remark.as_deref().unwrap_or("").contains("group cgOther"),
        "{:?}",
        r.remark
    );

    // A body changed after signing fails the signature.
    let mut tampered = signed(
        RemotingCommand::request(request_code::HEART_BEAT)
            .with_body(&br#"{"clientID":"x","consumerDataSet":[],"producerDataSet":[]}"#[..]),
        CONSUMER,
    );
    tampered.body =
        bytes::Bytes::from_static(br#"{"clientID":"y","consumerDataSet":[],"producerDataSet":[]}"#);
    let r = raw(&broker, "127.0.0.1", tampered).await;
    assert_eq!(r.code, response_code::NO_PERMISSION);
    assert!(
        r.remark.as_deref().unwrap_or("").contains("signature"),
        "{:?}",
        r.remark
    );

    // Addresses: the global whitelist (127.0.0.2) needs no signature; the
    // producer's white address (127.0.0.3) lets its unsigned requests in,
    // from anywhere else they are refused.
    let r = raw(&broker, "127.0.0.2", consumer_list("cgAllowed")).await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    let mut unsigned_ak = consumer_list("cgAllowed");
    unsigned_ak.set_ext("AccessKey", PRODUCER.0);
    let r = raw(&broker, "127.0.0.3", unsigned_ak.clone()).await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    let r = raw(&broker, "127.0.0.4", unsigned_ak).await;
    assert_eq!(
        r.code,
        response_code::NO_PERMISSION,
        "outside the white address"
    );

    // The file is read again when it changes: PUB on the other topic.
    write_acl(&acl_path, &acl_file(&topic, "PUB"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !send_ok(&producer, &other, "granted").await {
        assert!(
            Instant::now() < deadline,
            "the changed ACL file was not applied"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A malformed file keeps the accounts in force, and the log says why.
    write_acl(&acl_path, "accounts: [ {accessKey: broken");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        send_ok(&producer, &other, "still-granted").await,
        "the previous accounts stay"
    );
    assert!(
        cluster.logs().contains("does not parse"),
        "the broker logs why the file was not applied"
    );

    c1.shutdown().await;
    c2.shutdown().await;
    producer.shutdown().await;
}

#[test]
fn acl_enable_without_a_readable_accounts_file_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "aclEnable=true\naclFile={}\nstorePathRootDir={}\nlistenPort=0\n",
            dir.path().join("missing.yml").display(),
            dir.path().join("store").display()
        ),
    )
    .expect("write broker.conf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["broker", "-c", conf.to_str().expect("utf-8")])
        .output()
        .expect("run meridian broker");
    assert!(!out.status.success(), "the broker must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.yml"),
        "the error names the file: {stderr}"
    );
}
