//! QUERY_ASSIGNMENT against the real `meridian` binary (name server and
//! broker as separate processes): the request a Java 5.x push consumer
//! with `clientRebalance=false` sends to have the broker assign its
//! queues. No Java client runs here, so the test sends Java's exact body
//! over raw remoting: two clients of a group get disjoint shares that
//! cover every queue, in PULL mode; shares follow membership and the named
//! strategy; an unknown topic, a client that never sent a heartbeat and a
//! strategy the broker cannot run get errors that say so.

mod support;

use std::collections::BTreeSet;

use meridian_client::Admin;
use meridian_protocol::body::{ConsumerData, HeartbeatData, MessageModel, SubscriptionData};
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::header::consumer::UnregisterClientRequestHeader;
use meridian_protocol::RemotingCommand;
use support::{unique, Cluster, ClusterOpts};

/// A heartbeat from `client` as a clustering member of `group` reading
/// `topic`, on the admin's connection (membership lasts as long as it).
async fn join(admin: &Admin, broker: &str, client: &str, group: &str, topic: &str) {
    let hb = HeartbeatData {
        client_id: client.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            message_model: MessageModel::Clustering,
            subscription_data_set: vec![SubscriptionData {
                topic: topic.into(),
                sub_string: "*".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        producer_data_set: vec![],
    };
    let req = RemotingCommand::request(request_code::HEART_BEAT)
        .with_body(serde_json::to_vec(&hb).expect("heartbeat JSON"));
    let r = admin.call(broker, req).await.expect("heartbeat");
    assert_eq!(r.code, response_code::SUCCESS, "heartbeat: {:?}", r.remark);
}

/// QUERY_ASSIGNMENT with the body a Java consumer writes (fastjson,
/// fields in alphabetical order).
async fn query(
    admin: &Admin,
    broker: &str,
    client: &str,
    group: &str,
    topic: &str,
    strategy: &str,
) -> RemotingCommand {
    let body = format!(
        r#"{{"clientId":"{client}","consumerGroup":"{group}","messageModel":"CLUSTERING","strategyName":"{strategy}","topic":"{topic}"}}"#
    );
    let req = RemotingCommand::request(request_code::QUERY_ASSIGNMENT).with_body(body.into_bytes());
    admin.call(broker, req).await.expect("QUERY_ASSIGNMENT")
}

/// The queue ids assigned, checking each assignment's shape.
fn queue_ids(r: &RemotingCommand, topic: &str) -> Vec<i32> {
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("answer JSON");
    let mut ids: Vec<i32> = v["messageQueueAssignments"]
        .as_array()
        .expect("messageQueueAssignments")
        .iter()
        .map(|a| {
            assert_eq!(a["mode"], "PULL", "{a}");
            assert_eq!(a["messageQueue"]["topic"], topic, "{a}");
            assert_eq!(a["messageQueue"]["brokerName"], "broker-a", "{a}");
            a["messageQueue"]["queueId"].as_i64().expect("queueId") as i32
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_group_get_disjoint_shares_covering_every_queue() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let broker = cluster.broker_addr();
    let topic = unique("Assigned");
    cluster.create_topic(&topic, 8);
    let group = unique("cg");
    // Each member on a connection of its own, as separate processes are.
    let (admin_a, admin_b, admin_c) = (
        Admin::new(&cluster.namesrv_addr()),
        Admin::new(&cluster.namesrv_addr()),
        Admin::new(&cluster.namesrv_addr()),
    );
    let (a, b, c) = ("10.0.0.1@a", "10.0.0.2@b", "10.0.0.3@c");
    join(&admin_a, &broker, a, &group, &topic).await;
    join(&admin_b, &broker, b, &group, &topic).await;

    // AllocateMessageQueueAveragely: halves, in order.
    let share_a = queue_ids(
        &query(&admin_a, &broker, a, &group, &topic, "AVG").await,
        &topic,
    );
    let share_b = queue_ids(
        &query(&admin_b, &broker, b, &group, &topic, "AVG").await,
        &topic,
    );
    assert_eq!(share_a, vec![0, 1, 2, 3]);
    assert_eq!(share_b, vec![4, 5, 6, 7]);
    // An empty strategy name is AllocateMessageQueueAveragely.
    assert_eq!(
        queue_ids(
            &query(&admin_a, &broker, a, &group, &topic, "").await,
            &topic
        ),
        share_a
    );

    // A third member: three shares, still disjoint and covering.
    join(&admin_c, &broker, c, &group, &topic).await;
    let mut all = Vec::new();
    for (admin, client) in [(&admin_a, a), (&admin_b, b), (&admin_c, c)] {
        let share = queue_ids(
            &query(admin, &broker, client, &group, &topic, "AVG").await,
            &topic,
        );
        assert!(
            (2..=3).contains(&share.len()),
            "{client}: {share:?} of 8 queues among 3"
        );
        all.extend(share);
    }
    all.sort();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "every queue once");

    // AllocateMessageQueueAveragelyByCircle: every third queue.
    let circle: Vec<Vec<i32>> = {
        let mut v = Vec::new();
        for (admin, client) in [(&admin_a, a), (&admin_b, b), (&admin_c, c)] {
            v.push(queue_ids(
                &query(admin, &broker, client, &group, &topic, "AVG_BY_CIRCLE").await,
                &topic,
            ));
        }
        v
    };
    assert_eq!(circle, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);

    // The third leaves (UNREGISTER_CLIENT, as a consumer shutting down
    // sends): two shares again.
    let mut leave = RemotingCommand::request(request_code::UNREGISTER_CLIENT);
    UnregisterClientRequestHeader {
        client_id: c.into(),
        producer_group: None,
        consumer_group: Some(group.clone()),
    }
    .write(&mut leave);
    let r = admin_c.call(&broker, leave).await.expect("unregister");
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    let r = query(&admin_a, &broker, a, &group, &topic, "AVG").await;
    assert_eq!(queue_ids(&r, &topic), vec![0, 1, 2, 3]);

    // A topic nobody created: TOPIC_NOT_EXIST, saying so.
    let missing = unique("NoSuchTopic");
    let r = query(&admin_a, &broker, a, &group, &missing, "AVG").await;
    assert_eq!(r.code, response_code::TOPIC_NOT_EXIST, "{:?}", r.remark);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains(&missing) && remark.contains("does not exist"),
        "{remark}"
    );

    // A client the broker has not heard from: an error, not an empty
    // share (which would make it drop the queues it reads).
    let r = query(
        &admin_a,
        &broker,
        "10.0.0.9@stranger",
        &group,
        &topic,
        "AVG",
    )
    .await;
    assert_ne!(r.code, response_code::SUCCESS);
    assert!(
        r.remark
            .as_deref()
            .unwrap_or_default()
            .contains("heartbeat"),
        "{:?}",
        r.remark
    );

    // A client-side strategy the broker cannot run: an error naming the
    // ones it can.
    let r = query(&admin_a, &broker, a, &group, &topic, "CONSISTENT_HASH").await;
    assert_ne!(r.code, response_code::SUCCESS);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains("AVG") && remark.contains("clientRebalance"),
        "{remark}"
    );

    // A body that is not QUERY_ASSIGNMENT's: an error, the connection kept.
    let req =
        RemotingCommand::request(request_code::QUERY_ASSIGNMENT).with_body(b"not json".to_vec());
    let r = admin_a.call(&broker, req).await.expect("answered");
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    let still: BTreeSet<i32> = queue_ids(
        &query(&admin_a, &broker, a, &group, &topic, "AVG").await,
        &topic,
    )
    .into_iter()
    .collect();
    assert_eq!(still.len(), 4);
}

/// Two `rocketmq-client-rust` push consumers with `clientRebalance=false`
/// take their queues from the broker's answers (every QUERY_ASSIGNMENT
/// answered SUCCESS, so neither fell back to its own allocation), split
/// the topic's queues between them, and receive every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_consumers_that_leave_rebalancing_to_the_broker_consume_every_message_once() {
    use rocketmq_client_rust::MQPushConsumer;
    use std::sync::Arc;
    use std::time::Duration;
    use support::{eventually, push_consumer, Assignment, Inbox, RECEIVE_TIMEOUT};

    let (opts, metrics_port) = support::metrics::exported(ClusterOpts::new());
    let cluster = Cluster::separate(opts);
    let ns = cluster.namesrv_addr();
    let topic = unique("BrokerBalanced");
    cluster.create_topic(&topic, 8);
    let group = unique("cg");
    let inbox = Inbox::new();
    let start_member = |assignment: Assignment| {
        let (ns, group, topic, inbox) = (ns.clone(), group.clone(), topic.clone(), inbox.clone());
        async move {
            let mut consumer = push_consumer(&ns, &group)
                .client_rebalance(false)
                .message_queue_listener(Some(Arc::new(assignment)))
                .build();
            consumer
                .subscribe(topic.as_str(), "*")
                .await
                .expect("subscribe");
            consumer.register_message_listener_concurrently(inbox.listener());
            consumer.start().await.expect("consumer starts");
            consumer
        }
    };
    let (assigned_a, assigned_b) = (Assignment::new(&topic), Assignment::new(&topic));
    let mut member_a = start_member(assigned_a.clone()).await;
    let mut member_b = start_member(assigned_b.clone()).await;
    eventually(
        "the two members to split the 8 queues between them",
        RECEIVE_TIMEOUT,
        || {
            let (a, b) = (assigned_a.queues(), assigned_b.queues());
            async move { a.len() == 4 && b.len() == 4 && a.is_disjoint(&b) }
        },
    )
    .await;

    let mut producer = support::start_producer(&ns).await;
    support::wait_for_route(&mut producer, &topic, 8).await;
    let mut expected = Vec::new();
    for i in 0..40 {
        let body = format!("balanced-{i}");
        producer
            .send(support::message(
                &topic,
                "TagB",
                &format!("k{i}"),
                &body,
                &[],
            ))
            .await
            .expect("send");
        expected.push(body);
    }
    inbox.expect_exactly_once(&expected).await;

    let metrics = support::metrics::scrape(metrics_port).await;
    let (ok, failed) = support::metrics::answered(&metrics, 400);
    assert!(
        ok > 0,
        "the consumers never asked the broker for their queues"
    );
    assert_eq!(failed, 0, "QUERY_ASSIGNMENT refused {failed} times");
    // Still split after more rebalances.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = (assigned_a.queues(), assigned_b.queues());
    assert!(a.is_disjoint(&b) && a.len() + b.len() == 8, "{a:?} {b:?}");
    producer.shutdown().await;
    member_a.shutdown().await;
    member_b.shutdown().await;
}
