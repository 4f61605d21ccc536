//! The mqadmin commands of day-to-day operation against real processes
//! and running stock `rocketmq-client-rust` clients: write permission of
//! a broker group (`wipeWritePerm`, `addWritePerm`, `updateTopicPerm`),
//! `brokerPermission` changed at run time (`updateBrokerConfig`,
//! `getBrokerConfig`), who is connected (`consumerConnection`,
//! `producerConnection`) and `topicClusterList`.

mod support;

use std::time::Duration;

use rocketmq_client_rust::{DefaultMQProducer, MQPushConsumer, SendStatus};
use support::{client_runtime, message, push_consumer, unique, Cluster, ClusterOpts, Inbox};

async fn producer_in(namesrv: &str, group: &str) -> DefaultMQProducer {
    let mut producer = DefaultMQProducer::builder(client_runtime("producer"))
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_owned())
        .send_msg_timeout(3_000)
        .build();
    producer.start().await.expect("producer starts");
    producer
}

/// Whether one send of a fresh producer (a fresh route) succeeds.
async fn fresh_send_ok(namesrv: &str, topic: &str) -> bool {
    let mut p = producer_in(namesrv, &unique("pg")).await;
    let r = p.send(message(topic, "TagA", "k", "body", &[])).await;
    p.shutdown().await;
    matches!(r, Ok(Some(ref s)) if s.send_status == SendStatus::SendOk)
}

/// The `perm` of `topic`'s queues in the route the name server gives.
fn route_perm(cluster: &Cluster, topic: &str) -> i64 {
    let route: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["topicRoute", "-t", topic])).expect("route JSON");
    route["queueDatas"][0]["perm"]
        .as_i64()
        .expect("a queue perm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiping_a_broker_groups_write_permission_routes_producers_away_until_it_is_added_back() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("drain");
    cluster.create_topic(&topic, 4);
    assert!(fresh_send_ok(&ns, &topic).await);

    let out = cluster.admin(&["wipeWritePerm", "-b", "broker-a"]);
    assert!(
        out.contains(&format!(
            "wipe write perm of broker[broker-a] in name server[{ns}] OK"
        )),
        "{out}"
    );
    assert_eq!(route_perm(&cluster, &topic), 4, "read-only after the wipe");
    assert!(
        !fresh_send_ok(&ns, &topic).await,
        "a producer found a writable queue on a wiped broker"
    );
    // Registrations (every 30 s, or at once on a topic change) do not
    // bring write back; only addWritePerm does.
    cluster.create_topic(&unique("other"), 1);
    assert_eq!(route_perm(&cluster, &topic), 4);

    let out = cluster.admin(&["addWritePerm", "-b", "broker-a"]);
    assert!(out.contains("add write perm of broker[broker-a]"), "{out}");
    assert_eq!(route_perm(&cluster, &topic), 6);
    assert!(fresh_send_ok(&ns, &topic).await);

    // One topic's permission, on the broker itself.
    let out = cluster.admin(&[
        "updateTopicPerm",
        "-t",
        &topic,
        "-b",
        &cluster.broker_addr(),
        "-p",
        "4",
    ]);
    assert!(out.contains("update topic perm from 6 to 4"), "{out}");
    assert_eq!(route_perm(&cluster, &topic), 4);
    assert!(!fresh_send_ok(&ns, &topic).await);
    let out = cluster.admin(&["topicClusterList", "-t", &topic]);
    assert_eq!(out.trim(), "DefaultCluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_permission_changes_at_run_time_and_survives_a_restart() {
    let mut cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let broker = cluster.broker_addr();
    let topic = unique("perm");
    cluster.create_topic(&topic, 4);
    // A producer whose route still says writable: the broker itself refuses.
    let mut producer = producer_in(&ns, &unique("pg")).await;
    let r = producer
        .send(message(&topic, "TagA", "k0", "before", &[]))
        .await;
    assert!(
        matches!(r, Ok(Some(ref s)) if s.send_status == SendStatus::SendOk),
        "{r:?}"
    );

    let out = cluster.admin(&[
        "updateBrokerConfig",
        "-b",
        &broker,
        "-k",
        "brokerPermission",
        "-v",
        "4",
    ]);
    assert!(out.contains("update broker config success"), "{out}");
    let cfg = cluster.admin(&["getBrokerConfig", "-b", &broker]);
    assert!(
        cfg.lines()
            .any(|l| l.starts_with("brokerPermission") && l.trim_end().ends_with("=  4")),
        "{cfg}"
    );
    let r = producer
        .send(message(&topic, "TagA", "k1", "while read-only", &[]))
        .await;
    assert!(
        !matches!(r, Ok(Some(ref s)) if s.send_status == SendStatus::SendOk),
        "a send was taken by a broker with brokerPermission=4: {r:?}"
    );
    producer.shutdown().await;
    // Registered read-only: routes say so.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while route_perm(&cluster, &topic) != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the route never became read-only"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Kept across a restart.
    cluster.restart_broker();
    let cfg = cluster.admin(&["getBrokerConfig", "-b", &broker]);
    assert!(
        cfg.contains("brokerPermission") && cfg.contains("=  4"),
        "{cfg}"
    );
    assert!(!fresh_send_ok(&ns, &topic).await);

    // Keys that need a restart are refused, and nothing changes.
    let (ok, out) = cluster.admin_outcome(&[
        "updateBrokerConfig",
        "-b",
        &broker,
        "-k",
        "listenPort",
        "-v",
        "1",
    ]);
    assert!(!ok && out.contains("cannot change at run time"), "{out}");
    let (ok, out) = cluster.admin_outcome(&[
        "updateBrokerConfig",
        "-b",
        &broker,
        "-k",
        "brokerPermission",
        "-v",
        "9",
    ]);
    assert!(!ok && out.contains("brokerPermission"), "{out}");

    cluster.admin(&[
        "updateBrokerConfig",
        "-b",
        &broker,
        "-k",
        "brokerPermission",
        "-v",
        "6",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while route_perm(&cluster, &topic) != 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the route never became writable again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fresh_send_ok(&ns, &topic).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_running_stock_clients() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("conn");
    cluster.create_topic(&topic, 4);
    let producer_group = unique("pg");
    let mut producer = producer_in(&ns, &producer_group).await;
    let r = producer
        .send(message(&topic, "TagA", "k", "hello", &[]))
        .await;
    assert!(matches!(r, Ok(Some(_))), "{r:?}");
    let group = unique("cg");
    let inbox = Inbox::new();
    let mut consumer = push_consumer(&ns, &group).build();
    consumer
        .subscribe(&topic, "TagA || TagB")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    inbox.wait_for_count(1, Duration::from_secs(30)).await;

    let out = cluster.admin(&["consumerConnection", "-g", &group]);
    assert!(
        out.contains("#ClientId") && out.contains("127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Topic: {topic}")) && out.contains("TagA || TagB"),
        "{out}"
    );
    assert!(out.contains("MessageModel: Clustering"), "{out}");
    let json = cluster.admin(&["--json", "consumerConnection", "-g", &group]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        v["connectionSet"].as_array().map(Vec::len),
        Some(1),
        "{json}"
    );

    // The consumer's own report, asked through the broker.
    let status = cluster.admin(&["--json", "consumerStatus", "-g", &group]);
    let v: serde_json::Value = serde_json::from_str(&status).expect("consumerStatus JSON");
    let client = &v["clients"][0];
    assert!(client["error"].is_null(), "{status}");
    let report = client["runningInfo"].to_string();
    assert!(
        report.contains(&topic),
        "the running info names no subscription: {status}"
    );
    // One stored message handed to this consumer again: it consumes it and
    // says how it went.
    let first = inbox.all()[0].clone();
    let stored: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "queryMsgByOffset",
        "-t",
        &topic,
        "-b",
        "broker-a",
        "-i",
        &first.queue_id.to_string(),
        "-o",
        &first.queue_offset.to_string(),
    ]))
    .expect("queryMsgByOffset JSON");
    let offset_id = stored["offsetMsgId"]
        .as_str()
        .expect("offsetMsgId")
        .to_string();
    let client_id = client["clientId"].as_str().expect("clientId").to_string();
    let direct: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "queryMsgById",
        "-i",
        &offset_id,
        "-g",
        &group,
        "-d",
        &client_id,
    ]))
    .expect("consume directly JSON");
    // (rocketmq-client-rust 1.0.0 writes the result's fields in snake case,
    // the Java client in camel case; the broker passes either on.)
    let result = &direct["result"];
    let outcome = if result["consumeResult"].is_null() {
        &result["consume_result"]
    } else {
        &result["consumeResult"]
    };
    assert_eq!(outcome, "CR_SUCCESS", "{direct}");
    inbox.wait_for_count(2, Duration::from_secs(10)).await;
    assert_eq!(
        inbox.all()[1].body,
        first.body,
        "the message handed over directly"
    );
    let (ok, out) =
        cluster.admin_outcome(&["consumerStatus", "-g", &group, "-i", "127.0.0.1@nobody"]);
    assert!(!ok && out.contains("not online"), "{out}");

    let out = cluster.admin(&["producerConnection", "-g", &producer_group, "-t", &topic]);
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("0001")).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].contains("127.0.0.1"), "{out}");
    let (ok, out) = cluster.admin_outcome(&["producerConnection", "-g", "nobody", "-t", &topic]);
    assert!(!ok && out.contains("not exist"), "{out}");

    // clusterList shows rates, not totals: messages a second over the
    // last 10 s, stored (in) and delivered (out).
    for i in 0..20 {
        producer
            .send(message(&topic, "TagA", &format!("r{i}"), "rate", &[]))
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let list = cluster.admin(&["clusterList"]);
    assert!(
        list.contains("#InTPS") && list.contains("#OutTPS"),
        "{list}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["--json", "clusterList"])).expect("JSON");
    let rt = &v["brokers"][0]["runtime"];
    let first = |key: &str| -> f64 {
        rt[key]
            .as_str()
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {rt}"))
    };
    let put = first("putTps");
    assert!(
        (2.0..=21.0).contains(&put),
        "putTps over 10 s: {put} ({rt})"
    );
    assert!(first("getTransferedTps") > 0.0, "{rt}");

    consumer.shutdown().await;
    producer.shutdown().await;
}

/// `consumerProgress --json` of `group` on `topic`: the total lag.
fn total_lag(cluster: &Cluster, group: &str, topic: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "consumerProgress",
        "-g",
        group,
        "-t",
        topic,
    ]))
    .expect("consumerProgress JSON");
    v["totalLag"].as_i64().expect("totalLag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_sent_and_read_back_and_group_offsets_cloned_and_skipped() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("msgs");
    cluster.create_topic(&topic, 2);
    let sent: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "sendMessage",
        "-t",
        &topic,
        "-p",
        "hello",
        "-k",
        "k1",
        "-c",
        "TagA",
        "-b",
        "broker-a",
        "-i",
        "1",
    ]))
    .expect("sendMessage JSON");
    assert_eq!(sent["sendResult"], "SEND_OK", "{sent}");
    assert_eq!(sent["queueId"], 1, "{sent}");
    let id = sent["msgId"].as_str().expect("msgId").to_string();
    let by_key: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "queryMsgByUniqueKey",
        "-i",
        &id,
        "-t",
        &topic,
    ]))
    .expect("JSON");
    assert_eq!(by_key["body"], "hello", "{by_key}");
    let by_offset: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "queryMsgByOffset",
        "-t",
        &topic,
        "-b",
        "broker-a",
        "-i",
        "1",
        "-o",
        "0",
    ]))
    .expect("JSON");
    assert_eq!(by_offset["body"], "hello", "{by_offset}");
    assert_eq!(by_offset["tags"], "TagA", "{by_offset}");
    let (ok, out) = cluster.admin_outcome(&[
        "queryMsgByOffset",
        "-t",
        &topic,
        "-b",
        "broker-a",
        "-i",
        "1",
        "-o",
        "5",
    ]);
    assert!(!ok && out.contains("no message at offset 5"), "{out}");
    for i in 0..5 {
        cluster.admin(&["sendMessage", "-t", &topic, "-p", &format!("m{i}")]);
    }
    let read: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["--json", "consumeMessage", "-t", &topic]))
            .expect("JSON");
    let mut bodies: Vec<String> = read["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["hello", "m0", "m1", "m2", "m3", "m4"]);
    let some: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "consumeMessage",
        "-t",
        &topic,
        "-c",
        "3",
    ]))
    .expect("JSON");
    assert_eq!(some["messages"].as_array().map(Vec::len), Some(3));
    // printMsg: by time range and tag.
    let count = |args: &[&str]| -> usize {
        let mut full = vec!["--json", "printMsg", "-t", topic.as_str()];
        full.extend_from_slice(args);
        let v: serde_json::Value =
            serde_json::from_str(&cluster.admin(&full)).expect("printMsg JSON");
        v["messages"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(count(&[]), 6);
    assert_eq!(count(&["-s", "TagA"]), 1, "only `hello` has a tag");
    let later = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    assert_eq!(count(&["-b", &later]), 0);
    assert_eq!(count(&["-e", "1000"]), 0);

    // A stock consumer group reads all six and commits; a second group
    // takes its offsets, then skips what arrives later.
    let group = unique("cg");
    let inbox = Inbox::new();
    let mut consumer = push_consumer(&ns, &group).build();
    consumer.subscribe(&topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    inbox.wait_for_count(6, Duration::from_secs(30)).await;
    consumer.shutdown().await;
    assert_eq!(total_lag(&cluster, &group, &topic), 0);
    let copy = unique("cg-copy");
    let out = cluster.admin(&["cloneGroupOffset", "-s", &group, "-d", &copy, "-t", &topic]);
    assert!(out.contains("clone group offset success"), "{out}");
    assert_eq!(total_lag(&cluster, &copy, &topic), 0);
    for i in 0..4 {
        cluster.admin(&["sendMessage", "-t", &topic, "-p", &format!("later{i}")]);
    }
    assert_eq!(total_lag(&cluster, &copy, &topic), 4);
    // Every group's progress on the broker at once.
    let stats: serde_json::Value = serde_json::from_str(&cluster.admin(&[
        "--json",
        "brokerConsumeStats",
        "-b",
        &cluster.broker_addr(),
    ]))
    .expect("brokerConsumeStats JSON");
    let diff_of = |g: &str| -> i64 {
        stats["consumeStats"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["group"] == g && r["topic"] == topic.as_str())
            .map(|r| r["diff"].as_i64().unwrap_or(0))
            .sum()
    };
    assert_eq!((diff_of(&group), diff_of(&copy)), (4, 4), "{stats}");
    // statsAll: per topic and group, waiting messages and the day's in
    // and out (10 stored; the group took the first 6).
    let all: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["--json", "statsAll", "-t", &topic]))
            .expect("statsAll JSON");
    let row = all["stats"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["consumerGroup"] == group.as_str())
        .unwrap_or_else(|| panic!("no row for {group}: {all}"))
        .clone();
    assert_eq!(row["inMsg24Hour"], 10, "{all}");
    assert_eq!(row["accumulation"], 4, "{all}");
    assert!(
        row["outMsg24Hour"].as_u64().is_some_and(|n| n >= 6),
        "{all}"
    );
    assert!(row["inTps"].as_f64().is_some_and(|t| t > 0.0), "{all}");
    cluster.admin(&["skipAccumulatedMessage", "-g", &copy, "-t", &topic]);
    assert_eq!(total_lag(&cluster, &copy, &topic), 0);
    assert_eq!(
        total_lag(&cluster, &group, &topic),
        4,
        "the source group is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_settings_and_cluster_round_trips() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let port = ns.rsplit(':').next().expect("a port").to_string();
    let cfg = cluster.admin(&["getNamesrvConfig"]);
    assert!(
        cfg.contains(&format!("============{ns}============")),
        "{cfg}"
    );
    assert!(
        cfg.lines()
            .any(|l| l.starts_with("listenPort") && l.trim_end().ends_with(&format!("=  {port}"))),
        "{cfg}"
    );
    let (ok, out) = cluster.admin_outcome(&["updateNamesrvConfig", "-k", "listenPort", "-v", "1"]);
    assert!(!ok && out.contains("restart the name server"), "{out}");
    let rt: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["--json", "clusterRT", "-a", "5", "-s", "64"]))
            .expect("clusterRT JSON");
    let row = &rt["clusterRT"][0];
    assert_eq!(row["brokerName"], "broker-a", "{rt}");
    assert_eq!(
        (row["successCount"].as_u64(), row["failCount"].as_u64()),
        (Some(5), Some(0)),
        "{rt}"
    );
    assert!(row["rtMs"].as_f64().is_some_and(|ms| ms > 0.0), "{rt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_groups_settings_are_honoured_and_kept() {
    use rocketmq_client_rust::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus};
    use rocketmq_model::common::message::message_ext::MessageExt;
    let mut cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let broker = cluster.broker_addr();
    let topic = unique("subgroup");
    cluster.create_topic(&topic, 2);
    let group = unique("cg");
    let out = cluster.admin(&[
        "updateSubGroup",
        "-g",
        &group,
        "-b",
        &broker,
        "-s",
        "false",
        "-q",
        "3",
    ]);
    assert!(
        out.contains("create subscription group to") && out.contains("\"consumeEnable\":false"),
        "{out}"
    );
    // Kept across a restart.
    cluster.restart_broker();

    let mut producer = producer_in(&ns, &unique("pg")).await;
    for i in 0..3 {
        producer
            .send(message(
                &topic,
                "TagA",
                &format!("k{i}"),
                &format!("m{i}"),
                &[],
            ))
            .await
            .expect("send");
    }
    // A consumer of a group that may not consume gets nothing.
    let inbox = Inbox::new();
    let recorder = inbox.clone();
    let mut consumer = push_consumer(&ns, &group).build();
    consumer.subscribe(&topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _context: &ConsumeConcurrentlyContext| {
            recorder.record(msgs);
            // Every message fails once: the retry goes to the group's
            // retry topic, spread over its retry queues.
            if msgs.iter().all(|m| m.reconsume_times() == 0) {
                Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
            } else {
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            }
        },
    );
    consumer.start().await.expect("consumer starts");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        inbox.len(),
        0,
        "a disabled group consumed: {:?}",
        inbox.bodies()
    );

    // Enabled: everything arrives, and the retries use 3 retry queues.
    cluster.admin(&["updateSubGroup", "-g", &group, "-b", &broker, "-s", "true"]);
    inbox.wait_for_count(6, Duration::from_secs(60)).await;
    let retry: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["topicRoute", "-t", &format!("%RETRY%{group}")]))
            .expect("retry topic route");
    assert_eq!(retry["queueDatas"][0]["writeQueueNums"], 3, "{retry}");
    consumer.shutdown().await;
    producer.shutdown().await;

    let out = cluster.admin(&["deleteSubGroup", "-g", &group, "-b", &broker, "-r", "true"]);
    assert!(out.contains("success"), "{out}");
    let (ok, out) =
        cluster.admin_outcome(&["updateSubGroup", "-g", &group, "-b", &broker, "-q", "0"]);
    assert!(!ok && out.contains("retryQueueNums"), "{out}");
}
