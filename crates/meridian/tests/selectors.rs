//! SQL92 property filters (`MessageSelector.bySql`) with
//! `rocketmq-client-rust`'s push consumer against the real `meridian`
//! binary: the broker selects by message properties on pull, refuses a bad
//! expression at CHECK_CLIENT_CONFIG, and refuses SQL92 altogether unless
//! `enablePropertyFilter=true`.

mod support;

use std::time::Duration;

use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::RemotingCommand;
use meridian_remoting::RemotingClient;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::MessageSelector;
use rocketmq_client_rust::SendStatus;

use support::*;

async fn check_client_config(
    broker: &str,
    expression_type: &str,
    expression: &str,
) -> RemotingCommand {
    let body = serde_json::json!({
        "clientId": "127.0.0.1@selector-test",
        "group": "cg-check",
        "subscriptionData": {
            "topic": "AnyTopic",
            "subString": expression,
            "expressionType": expression_type,
            "subVersion": 1,
            "tagsSet": [],
            "codeSet": [],
            "classFilterMode": false
        }
    });
    let request = RemotingCommand::request(request_code::CHECK_CLIENT_CONFIG)
        .with_body(serde_json::to_vec(&body).expect("encode"));
    let client = RemotingClient::new();
    let response = client
        .invoke(broker, request, Duration::from_secs(5))
        .await
        .expect("the broker answers CHECK_CLIENT_CONFIG");
    client.close_all();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql92_subscription_receives_only_matching_messages() {
    let cluster = Cluster::dev(ClusterOpts::new().broker_conf("enablePropertyFilter", "true"));
    let ns = cluster.namesrv_addr();
    let topic = unique("Sql");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;

    let selected = Inbox::new();
    let everything = Inbox::new();
    let mut sql_consumer = push_consumer(&ns, &unique("cg")).build();
    sql_consumer
        .subscribe_with_selector(
            &topic,
            Some(MessageSelector::by_sql(
                "region IN ('east', 'north') AND amount BETWEEN 10 AND 100 AND (vip = 'true' OR note IS NULL)",
            )),
        )
        .await
        .expect("subscribe by SQL92");
    sql_consumer.register_message_listener_concurrently(selected.listener());
    sql_consumer
        .start()
        .await
        .expect("a consumer with a valid expression starts");
    let mut all_consumer = push_consumer(&ns, &unique("cg")).build();
    all_consumer
        .subscribe(&topic, "*")
        .await
        .expect("subscribe");
    all_consumer.register_message_listener_concurrently(everything.listener());
    all_consumer.start().await.expect("consumer starts");

    // (region, amount, vip, note) → selected?
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, bool);
    let cases: [Case; 8] = [
        ("east", "50", None, None, true),
        ("north", "10", Some("false"), None, true),
        ("east", "100", Some("true"), Some("gift"), true),
        ("west", "50", None, None, false),
        ("east", "101", None, None, false),
        ("east", "9", None, None, false),
        ("east", "50", Some("false"), Some("gift"), false),
        ("east", "not-a-number", None, None, false),
    ];
    let mut all = Vec::new();
    let mut wanted = Vec::new();
    for (i, (region, amount, vip, note, hit)) in cases.iter().enumerate() {
        let body = format!("m{i}-{region}-{amount}");
        let mut props = vec![("region", *region), ("amount", *amount)];
        if let Some(v) = vip {
            props.push(("vip", v));
        }
        if let Some(n) = note {
            props.push(("note", n));
        }
        let result = producer
            .send(message(&topic, "TagS", &format!("k{i}"), &body, &props))
            .await
            .expect("send")
            .expect("a sync send returns a result");
        assert_eq!(result.send_status, SendStatus::SendOk);
        if *hit {
            wanted.push(body.clone());
        }
        all.push(body);
    }

    let received = selected.expect_exactly_once(&wanted).await;
    for body in &wanted {
        let m = &received[body];
        assert!(
            m.property("region").is_some(),
            "properties intact on {body}"
        );
    }
    everything.expect_exactly_once(&all).await;
    // Nothing else trickles in to the filtered group later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        selected.len(),
        wanted.len(),
        "only the matching messages: {:?}",
        selected.bodies()
    );

    sql_consumer.shutdown().await;
    all_consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_expression_is_refused_when_the_consumer_checks_in() {
    let cluster = Cluster::dev(ClusterOpts::new().broker_conf("enablePropertyFilter", "true"));
    let broker = cluster.broker_addr();

    let good = check_client_config(&broker, "SQL92", "a > 1 AND b = 'x'").await;
    assert_eq!(good.code, response_code::SUCCESS, "{:?}", good.remark);
    let tags = check_client_config(&broker, "TAG", "TagA || TagB").await;
    assert_eq!(tags.code, response_code::SUCCESS, "{:?}", tags.remark);

    let bad = check_client_config(&broker, "SQL92", "a > 'x' AND").await;
    assert_eq!(bad.code, response_code::SUBSCRIPTION_PARSE_FAILED);
    let remark = bad.remark.unwrap_or_default();
    assert!(
        remark.contains("a > 'x' AND"),
        "the remark names the expression: {remark}"
    );

    let unknown = check_client_config(&broker, "CLASS", "Foo").await;
    assert_eq!(unknown.code, response_code::SUBSCRIPTION_PARSE_FAILED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enable_property_filter_sql92_is_refused_with_the_key_to_set() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let broker = cluster.broker_addr();
    let refused = check_client_config(&broker, "SQL92", "a = 1").await;
    assert_eq!(refused.code, response_code::SYSTEM_ERROR);
    let remark = refused.remark.unwrap_or_default();
    assert!(remark.contains("enablePropertyFilter"), "{remark}");
    let tags = check_client_config(&broker, "TAG", "*").await;
    assert_eq!(tags.code, response_code::SUCCESS);
}
