//! `meridian admin`: mqadmin's commands against a real name server and
//! broker, checked through their `--json` output and their tables.

mod support;

use bytes::Bytes;
use meridian_client::producer::Message;
use meridian_client::Producer;
use serde_json::Value;
use support::cluster::{Cluster, ClusterOpts};

fn json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cluster.admin(&all);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("`{args:?}` printed no JSON ({e}):\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_lifecycle_progress_queries_and_reset() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let out = cluster.admin(&[
        "updateTopic",
        "-t",
        "orders",
        "-c",
        "DefaultCluster",
        "-r",
        "3",
        "-w",
        "3",
    ]);
    assert!(out.contains("success"), "{out}");

    let list = json(&cluster, &["topicList"]);
    assert!(list["topicList"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "orders"));

    let route = cluster.admin(&["topicRoute", "-t", "orders"]);
    let route: Value = serde_json::from_str(&route).unwrap();
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 3);
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        cluster.broker_addr()
    );

    let clusters = json(&cluster, &["clusterList"]);
    assert_eq!(clusters["brokers"][0]["cluster"], "DefaultCluster");
    assert_eq!(clusters["brokers"][0]["brokerName"], "broker-a");

    // Five messages to queue 1, keyed.
    let producer = Producer::new(&cluster.namesrv_addr(), "admin-test");
    let mut offset_ids = Vec::new();
    for i in 0..5 {
        let msg = Message {
            topic: "orders".into(),
            body: Bytes::from(format!("order {i}")),
            tags: Some("TagA".into()),
            keys: vec![format!("order-{i}")],
            ..Default::default()
        };
        let r = producer
            .send_to(&cluster.broker_addr(), "broker-a", 1, &msg)
            .await
            .unwrap();
        offset_ids.push((r.offset_msg_id, r.msg_id));
    }

    let status = json(&cluster, &["topicStatus", "-t", "orders"]);
    let queues = status["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 3);
    let q1 = queues.iter().find(|q| q["queueId"] == 1).unwrap();
    assert_eq!(q1["maxOffset"], 5);
    assert_eq!(q1["minOffset"], 0);

    let table = cluster.admin(&["topicStatus", "-t", "orders"]);
    assert!(table.contains("#Max Offset"), "{table}");

    // By offset id, and by unique key with the topic.
    let (offset_id, uniq) = &offset_ids[2];
    let by_id = json(&cluster, &["queryMsgById", "-i", offset_id]);
    assert_eq!(by_id["keys"], "order-2");
    assert_eq!(by_id["body"], "order 2");
    let by_uniq = json(&cluster, &["queryMsgById", "-i", uniq, "-t", "orders"]);
    assert_eq!(by_uniq["keys"], "order-2");

    let by_key = json(
        &cluster,
        &["queryMsgByKey", "-t", "orders", "-k", "order-4"],
    );
    let msgs = by_key["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["body"], "order 4");
    assert_eq!(msgs[0]["tags"], "TagA");

    // A group that committed offset 2 on queue 1 lags by 3 there.
    let admin = meridian_client::Admin::new(&cluster.namesrv_addr());
    let mut req = meridian_protocol::RemotingCommand::request(
        meridian_protocol::codes::request_code::UPDATE_CONSUMER_OFFSET,
    );
    meridian_protocol::header::offset::UpdateConsumerOffsetRequestHeader {
        consumer_group: "billing".into(),
        topic: "orders".into(),
        queue_id: 1,
        commit_offset: 2,
    }
    .write(&mut req);
    admin.call(&cluster.broker_addr(), req).await.unwrap();

    let progress = json(&cluster, &["consumerProgress", "-g", "billing"]);
    let q1 = progress["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["topic"] == "orders" && q["queueId"] == 1)
        .cloned()
        .unwrap_or_else(|| panic!("no orders/1 in {progress}"));
    assert_eq!(q1["brokerOffset"], 5);
    assert_eq!(q1["consumerOffset"], 2);
    assert_eq!(q1["lag"], 3);
    assert!(progress["totalLag"].as_i64().unwrap() >= 3);

    // Reset to the beginning of time: offset 0 everywhere.
    let reset = json(
        &cluster,
        &[
            "resetOffsetByTime",
            "-g",
            "billing",
            "-t",
            "orders",
            "-s",
            "0",
        ],
    );
    for q in reset["offsets"].as_array().unwrap() {
        assert_eq!(q["offset"], 0, "{reset}");
    }
    let progress = json(
        &cluster,
        &["consumerProgress", "-g", "billing", "-t", "orders"],
    );
    let lag: i64 = progress["totalLag"].as_i64().unwrap();
    assert_eq!(lag, 5);

    let status = json(&cluster, &["brokerStatus", "-b", &cluster.broker_addr()]);
    let rt = &status[cluster.broker_addr()];
    assert_eq!(rt["msgPutTotal"], "5");

    let out = cluster.admin(&["deleteTopic", "-t", "orders", "-c", "DefaultCluster"]);
    assert!(out.contains("success"), "{out}");
    let list = json(&cluster, &["topicList"]);
    assert!(!list["topicList"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "orders"));
}

#[test]
fn name_server_drops_a_broker_whose_connection_closes() {
    let mut cluster = Cluster::separate(ClusterOpts::new());
    cluster.create_topic("t", 1);
    let before = json(&cluster, &["clusterList"]);
    assert_eq!(before["brokers"].as_array().unwrap().len(), 1);
    cluster.kill9();
    // No waiting for the 120 s expiry: the closed connection is enough.
    let mut empty = false;
    for _ in 0..50 {
        let now = json(&cluster, &["clusterList"]);
        if now["brokers"].as_array().unwrap().is_empty() {
            empty = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(empty, "the killed broker is still routed");
}
