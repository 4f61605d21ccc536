//! End-to-end tests with `rocketmq-client-rust` 1.0.0 — a RocketMQ client this
//! project did not write — against the real `meridian` binary.
//!
//! Each test starts its own cluster and uses its own topics and groups, and
//! asserts what a user would check: the message arrived, once, with its body,
//! tag, keys and properties intact. What the client needs from the broker is
//! written down in `docs/compat/rocketmq-client-rust.md`.

mod support;

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::ConsumeOrderlyContext;
use rocketmq_client_rust::ConsumeOrderlyStatus;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::DefaultMQPushConsumer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::SendStatus;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;

use support::*;

/// One message a test sent, and how it must look when it arrives.
struct Sent {
    body: String,
    tag: String,
    key: String,
    seq: usize,
    kind: &'static str,
}

impl Sent {
    fn new(kind: &'static str, tag: &str, seq: usize) -> Sent {
        Sent {
            body: format!("{kind}-{seq}"),
            tag: tag.to_owned(),
            key: format!("key-{kind}-{seq}"),
            seq,
            kind,
        }
    }

    fn message(&self, topic: &str) -> Message {
        message(
            topic,
            &self.tag,
            &self.key,
            &self.body,
            &[("seq", &self.seq.to_string()), ("kind", self.kind)],
        )
    }

    fn assert_intact(&self, received: &Received, topic: &str) {
        assert_eq!(received.topic, topic, "topic of {}", self.body);
        assert_eq!(
            received.tags.as_deref(),
            Some(self.tag.as_str()),
            "tag of {}",
            self.body
        );
        assert_eq!(
            received.keys.as_deref(),
            Some(self.key.as_str()),
            "keys of {}",
            self.body
        );
        assert_eq!(
            received.property("seq"),
            Some(self.seq.to_string().as_str()),
            "property seq of {}",
            self.body
        );
        assert_eq!(
            received.property("kind"),
            Some(self.kind),
            "property kind of {}",
            self.body
        );
    }
}

fn bodies(sent: &[Sent]) -> Vec<String> {
    sent.iter().map(|s| s.body.clone()).collect()
}

/// How often the broker writes consumer offsets to disk (RocketMQ's
/// `flushConsumerOffsetInterval` default).
const OFFSET_PERSIST_INTERVAL: Duration = Duration::from_secs(5);

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Send `sent` one by one with a sync send; each must be SEND_OK.
async fn send_all(producer: &DefaultMQProducer, topic: &str, sent: &[Sent]) {
    for s in sent {
        let result = producer
            .send(s.message(topic))
            .await
            .unwrap_or_else(|e| panic!("send {}: {e}", s.body))
            .expect("a sync send returns a result");
        assert_eq!(
            result.send_status,
            SendStatus::SendOk,
            "status of {}",
            s.body
        );
    }
}

/// Send two messages to every queue in `queues`.
async fn send_two_per_queue(
    producer: &DefaultMQProducer,
    topic: &str,
    queues: &[MessageQueue],
    kind: &'static str,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    for queue in queues {
        for _ in 0..2 {
            let s = Sent::new(kind, "TagR", sent.len());
            let result = producer
                .send_to_queue(s.message(topic), queue.clone())
                .await
                .unwrap_or_else(|e| panic!("send {} to queue {}: {e}", s.body, queue.queue_id()))
                .expect("a sync send returns a result");
            assert_eq!(result.send_status, SendStatus::SendOk);
            sent.push(s);
        }
    }
    sent
}

async fn start_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
    expression: &str,
    inbox: &Inbox,
) -> DefaultMQPushConsumer {
    let mut consumer = push_consumer(namesrv, group).build();
    consumer
        .subscribe(topic, expression)
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_async_oneway_and_batch_sends_each_arrive_once_intact() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Sends");
    cluster.create_topic(&topic, 4);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 4).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;

    let mut sent = Vec::new();
    let mut uniq_ids = HashMap::new();
    for seq in 0..3 {
        let s = Sent::new("sync", "TagSync", seq);
        let result = producer
            .send(s.message(&topic))
            .await
            .expect("sync send")
            .expect("a sync send returns a result");
        assert_eq!(result.send_status, SendStatus::SendOk);
        assert_eq!(
            result.message_queue.as_ref().map(MessageQueue::topic_str),
            Some(topic.as_str())
        );
        assert!(
            result
                .offset_msg_id
                .as_ref()
                .is_some_and(|id| !id.is_empty()),
            "broker msgId"
        );
        uniq_ids.insert(
            s.body.clone(),
            result.msg_id.expect("client msg id").to_string(),
        );
        sent.push(s);
    }

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for seq in 0..3 {
        let s = Sent::new("async", "TagAsync", seq);
        let done_tx = done_tx.clone();
        producer
            .send_with_callback(s.message(&topic), move |result, error| {
                let outcome = match (result, error) {
                    (Some(result), _) => Ok(result.send_status),
                    (None, Some(error)) => Err(error.to_string()),
                    (None, None) => Err("callback without result or error".to_owned()),
                };
                let _ = done_tx.send(outcome);
            })
            .await
            .expect("async send accepted");
        sent.push(s);
    }
    for _ in 0..3 {
        let outcome = tokio::time::timeout(RECEIVE_TIMEOUT, done_rx.recv())
            .await
            .expect("async send callback within the timeout")
            .expect("callback channel open");
        assert_eq!(outcome, Ok(SendStatus::SendOk));
    }

    for seq in 0..3 {
        let s = Sent::new("oneway", "TagOneway", seq);
        producer
            .send_oneway(s.message(&topic))
            .await
            .expect("oneway send");
        sent.push(s);
    }

    let batch: Vec<Sent> = (0..3)
        .map(|seq| Sent::new("batch", "TagBatch", seq))
        .collect();
    let result = producer
        .send_batch(batch.iter().map(|s| s.message(&topic)).collect::<Vec<_>>())
        .await
        .expect("batch send");
    assert_eq!(result.send_status, SendStatus::SendOk);
    let batch_ids = result.msg_id.expect("batch msg ids").to_string();
    assert_eq!(
        batch_ids.split(',').count(),
        3,
        "one id per batched message: {batch_ids}"
    );
    sent.extend(batch);

    let received = inbox.expect_exactly_once(&bodies(&sent)).await;
    for s in &sent {
        s.assert_intact(&received[&s.body], &topic);
    }
    for (body, id) in &uniq_ids {
        assert_eq!(
            received[body].property("UNIQ_KEY"),
            Some(id.as_str()),
            "UNIQ_KEY of {body}"
        );
    }

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_subscription_receives_only_its_tags() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Tags");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let filtered = Inbox::new();
    let everything = Inbox::new();
    let mut filtered_consumer =
        start_consumer(&ns, &unique("cg"), &topic, "TagA || TagC", &filtered).await;
    let mut all_consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &everything).await;

    let tags = ["TagA", "TagB", "TagC"];
    let sent: Vec<Sent> = (0..9)
        .map(|seq| Sent::new("tagged", tags[seq % 3], seq))
        .collect();
    send_all(&producer, &topic, &sent).await;

    let wanted: Vec<&Sent> = sent.iter().filter(|s| s.tag != "TagB").collect();
    let received = filtered
        .expect_exactly_once(&wanted.iter().map(|s| s.body.clone()).collect::<Vec<_>>())
        .await;
    for s in wanted {
        s.assert_intact(&received[&s.body], &topic);
    }
    everything.expect_exactly_once(&bodies(&sent)).await;

    filtered_consumer.shutdown().await;
    all_consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_two_splits_the_queues_and_the_survivor_takes_over() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Rebalance");
    cluster.create_topic(&topic, 4);
    let mut producer = start_producer(&ns).await;
    let queues = wait_for_route(&mut producer, &topic, 4).await;
    let group = unique("cg");

    let start_member = |inbox: Inbox, assignment: Assignment| {
        let (ns, group, topic) = (ns.clone(), group.clone(), topic.clone());
        async move {
            let mut consumer = push_consumer(&ns, &group)
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
    let (inbox_a, inbox_b) = (Inbox::new(), Inbox::new());
    let (assigned_a, assigned_b) = (Assignment::new(&topic), Assignment::new(&topic));
    let mut member_a = start_member(inbox_a.clone(), assigned_a.clone()).await;
    let mut member_b = start_member(inbox_b.clone(), assigned_b.clone()).await;

    eventually("the two members to split the 4 queues between them", RECEIVE_TIMEOUT, || {
        let (a, b) = (assigned_a.queues(), assigned_b.queues());
        async move { !a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && a.len() + b.len() == 4 }
    })
    .await;

    let first = send_two_per_queue(&producer, &topic, &queues, "first").await;
    let expected_first = bodies(&first);
    eventually(
        "both members to consume the first batch",
        RECEIVE_TIMEOUT,
        || {
            let done = inbox_a.len() + inbox_b.len() >= first.len();
            async move { done }
        },
    )
    .await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let (got_a, got_b) = (inbox_a.all(), inbox_b.all());
    assert_exactly_once(&[got_a.clone(), got_b.clone()].concat(), &expected_first);
    let queues_a: BTreeSet<i32> = got_a.iter().map(|r| r.queue_id).collect();
    let queues_b: BTreeSet<i32> = got_b.iter().map(|r| r.queue_id).collect();
    assert!(
        !queues_a.is_empty() && !queues_b.is_empty(),
        "both members consumed: {queues_a:?} {queues_b:?}"
    );
    assert!(
        queues_a.is_disjoint(&queues_b),
        "no queue consumed by both: {queues_a:?} {queues_b:?}"
    );

    member_b.shutdown().await;
    eventually(
        "the remaining member to own all 4 queues",
        RECEIVE_TIMEOUT,
        || {
            let a = assigned_a.queues();
            async move { a.len() == 4 }
        },
    )
    .await;

    let second = send_two_per_queue(&producer, &topic, &queues, "second").await;
    let mut expected_all = expected_first.clone();
    expected_all.extend(bodies(&second));
    eventually(
        "the remaining member to consume the second batch",
        RECEIVE_TIMEOUT,
        || {
            let done = inbox_a.len() + inbox_b.len() >= expected_all.len();
            async move { done }
        },
    )
    .await;
    tokio::time::sleep(QUIET_PERIOD).await;
    assert_exactly_once(&[inbox_a.all(), inbox_b.all()].concat(), &expected_all);
    assert_eq!(
        inbox_b.len(),
        got_b.len(),
        "the stopped member received nothing more"
    );

    member_a.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_delivers_every_message_to_every_member() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Broadcast");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let group = unique("cg");

    let mut members = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..2 {
        let inbox = Inbox::new();
        let mut consumer = push_consumer(&ns, &group)
            .message_model(MessageModel::Broadcasting)
            .build();
        consumer
            .subscribe(topic.as_str(), "*")
            .await
            .expect("subscribe");
        consumer.register_message_listener_concurrently(inbox.listener());
        consumer.start().await.expect("consumer starts");
        members.push(consumer);
        inboxes.push(inbox);
    }

    let sent: Vec<Sent> = (0..6)
        .map(|seq| Sent::new("broadcast", "TagB", seq))
        .collect();
    send_all(&producer, &topic, &sent).await;
    for inbox in &inboxes {
        let received = inbox.expect_exactly_once(&bodies(&sent)).await;
        for s in &sent {
            s.assert_intact(&received[&s.body], &topic);
        }
    }

    for member in &mut members {
        member.shutdown().await;
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_consumer_sees_one_queue_in_send_order() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Orderly");
    cluster.create_topic(&topic, 4);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 4).await;

    let inbox = Inbox::new();
    let recorder = inbox.clone();
    let mut consumer = push_consumer(&ns, &unique("cg")).build();
    consumer
        .subscribe(topic.as_str(), "*")
        .await
        .expect("subscribe");
    consumer.register_message_listener_orderly(
        move |msgs: &[&MessageExt], _context: &mut ConsumeOrderlyContext| {
            recorder.record(msgs);
            Ok(ConsumeOrderlyStatus::Success)
        },
    );
    consumer.start().await.expect("consumer starts");
    assert!(consumer.is_consume_orderly());

    const TARGET_QUEUE: i32 = 2;
    let sent: Vec<Sent> = (0..20)
        .map(|seq| Sent::new("ordered", "TagO", seq))
        .collect();
    for s in &sent {
        let select = |queues: &[MessageQueue], _msg: &Message, target: &i32| {
            queues.iter().find(|q| q.queue_id() == *target).cloned()
        };
        let result = producer
            .send_with_selector(s.message(&topic), select, TARGET_QUEUE)
            .await
            .expect("send with selector")
            .expect("a sync send returns a result");
        assert_eq!(
            result.message_queue.as_ref().map(MessageQueue::queue_id),
            Some(TARGET_QUEUE)
        );
    }

    inbox.expect_exactly_once(&bodies(&sent)).await;
    let received = inbox.all();
    assert_eq!(
        received.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        bodies(&sent),
        "consumed in send order"
    );
    assert!(
        received.iter().all(|r| r.queue_id == TARGET_QUEUE),
        "all from queue {TARGET_QUEUE}"
    );
    assert!(
        received
            .windows(2)
            .all(|w| w[0].queue_offset < w[1].queue_offset),
        "queue offsets increase"
    );
    for (s, r) in sent.iter().zip(&received) {
        s.assert_intact(r, &topic);
    }

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_is_retried_with_growing_reconsume_times_then_dead_lettered() {
    // The client always lets the broker pick the retry delay (level 3 +
    // reconsume times); one-second levels keep the test short.
    let levels = vec!["1s"; 18].join(" ");
    let cluster = Cluster::dev(ClusterOpts::new().broker_conf("messageDelayLevel", &levels));
    let ns = cluster.namesrv_addr();
    let topic = unique("Retry");
    cluster.create_topic(&topic, 1);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 1).await;

    const MAX_RECONSUME_TIMES: i32 = 2;
    let group = unique("cg");
    let attempts = Inbox::new();
    let recorder = attempts.clone();
    let mut consumer = push_consumer(&ns, &group)
        .max_reconsume_times(MAX_RECONSUME_TIMES)
        .build();
    consumer
        .subscribe(topic.as_str(), "*")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _context: &ConsumeConcurrentlyContext| {
            recorder.record(msgs);
            Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
        },
    );
    consumer.start().await.expect("consumer starts");

    let doomed = Sent::new("doomed", "TagD", 0);
    send_all(&producer, &topic, std::slice::from_ref(&doomed)).await;

    let deliveries = (MAX_RECONSUME_TIMES + 1) as usize;
    attempts.wait_for_count(deliveries, RECEIVE_TIMEOUT).await;
    // Longer than a retry delay: a further delivery would show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = attempts.all();
    assert_eq!(
        seen.iter().map(|r| r.reconsume_times).collect::<Vec<_>>(),
        (0..=MAX_RECONSUME_TIMES).collect::<Vec<_>>(),
        "one delivery per reconsume time, then no more"
    );
    for r in &seen {
        assert_eq!(r.body, doomed.body);
        doomed.assert_intact(r, &topic);
    }
    for pair in seen.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(950),
            "a retry is delayed by its delay level"
        );
    }

    let dlq = format!("%DLQ%{group}");
    wait_for_route(&mut producer, &dlq, 1).await;
    let dead = Inbox::new();
    let mut dlq_consumer = start_consumer(&ns, &unique("cg"), &dlq, "*", &dead).await;
    let received = dead
        .expect_exactly_once(std::slice::from_ref(&doomed.body))
        .await;
    let r = &received[&doomed.body];
    assert_eq!(r.topic, dlq);
    assert_eq!(r.keys.as_deref(), Some(doomed.key.as_str()));
    assert_eq!(r.property("kind"), Some(doomed.kind));
    assert_eq!(r.property("seq"), Some("0"));

    dlq_consumer.shutdown().await;
    consumer.shutdown().await;
    producer.shutdown().await;
}

/// A broker that delivered a delayed message and crashed before persisting
/// its delay cursor finds the delivery (by its `MERIDIAN_SCHEDULED`
/// identity) when it comes back, and does not make it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_cursor_was_lost_in_a_crash_is_not_made_again() {
    let mut cluster =
        Cluster::separate(ClusterOpts::new().broker_conf("messageDelayLevel", "1s 2s"));
    let ns = cluster.namesrv_addr();
    let topic = unique("DelayOnce");
    cluster.create_topic(&topic, 1);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 1).await;
    let delayed = Message::builder()
        .topic(topic.as_str())
        .tags("TagOnce")
        .key("key-once")
        .delay_level(1)
        .body_slice(b"once")
        .build_unchecked();
    producer
        .send(delayed)
        .await
        .expect("send delayed")
        .expect("a sync send returns a result");
    let admin = meridian_client::Admin::new(&ns);
    let broker = cluster.broker_addr();
    let held = || support::queues::read_queue(&admin, &broker, &topic, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while held().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the delayed message was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The crash comes before the cursor is persisted: the broker restarts
    // with its cursor before the message it delivered.
    tokio::task::block_in_place(|| cluster.kill9());
    std::fs::write(
        cluster.data_dir().join("config").join("delayOffset.json"),
        br#"{"offsetTable":{}}"#,
    )
    .expect("rewind the delay cursor");
    tokio::task::block_in_place(|| cluster.restart_broker());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        held().await.len(),
        1,
        "the delayed message is held once after the restart"
    );
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_arrives_no_earlier_than_its_delay() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Delay");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;

    // Level 1 of the default levels "1s 5s 10s 30s 1m ..." is one second.
    let delayed = Message::builder()
        .topic(topic.as_str())
        .tags("TagLate")
        .key("key-late")
        .delay_level(1)
        .body_slice(b"late")
        .build_unchecked();
    let sent_at = Instant::now();
    let result = producer
        .send(delayed)
        .await
        .expect("send delayed")
        .expect("a result");
    assert_eq!(result.send_status, SendStatus::SendOk);
    let immediate = Sent::new("now", "TagNow", 0);
    send_all(&producer, &topic, std::slice::from_ref(&immediate)).await;

    let received = inbox
        .expect_exactly_once(&["late".to_owned(), immediate.body.clone()])
        .await;
    let late = &received["late"];
    assert!(
        late.at.duration_since(sent_at) >= Duration::from_secs(1),
        "delivered {:?} after sending, expected at least 1 s",
        late.at.duration_since(sent_at)
    );
    assert_eq!(late.topic, topic);
    assert_eq!(late.tags.as_deref(), Some("TagLate"));
    assert_eq!(late.keys.as_deref(), Some("key-late"));

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_clean_broker_restart() {
    let mut cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Offsets");
    cluster.create_topic(&topic, 2);
    let group = unique("cg");
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;

    let before: Vec<Sent> = (0..10)
        .map(|seq| Sent::new("before", "TagK", seq))
        .collect();
    send_all(&producer, &topic, &before).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &group, &topic, "*", &inbox).await;
    inbox.expect_exactly_once(&bodies(&before)).await;
    consumer.shutdown().await;
    producer.shutdown().await;

    cluster.stop();
    cluster.restart_broker();

    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let after: Vec<Sent> = (0..10).map(|seq| Sent::new("after", "TagK", seq)).collect();
    send_all(&producer, &topic, &after).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &group, &topic, "*", &inbox).await;
    // Everything committed before the restart stays consumed.
    inbox.expect_exactly_once(&bodies(&after)).await;

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_committed_before_a_kill9_survive_it() {
    let mut cluster = Cluster::dev(ClusterOpts::new().sync_flush());
    let ns = cluster.namesrv_addr();
    let topic = unique("Kill9");
    cluster.create_topic(&topic, 2);
    let group = unique("cg");
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;

    let before: Vec<Sent> = (0..20)
        .map(|seq| Sent::new("before", "TagK", seq))
        .collect();
    send_all(&producer, &topic, &before).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &group, &topic, "*", &inbox).await;
    inbox.expect_exactly_once(&bodies(&before)).await;
    // Commits the consumed offsets to the broker, which makes them durable
    // within its persist interval (RocketMQ's flushConsumerOffsetInterval, 5 s).
    consumer.shutdown().await;
    producer.shutdown().await;
    tokio::time::sleep(OFFSET_PERSIST_INTERVAL + Duration::from_secs(1)).await;

    cluster.kill9();
    cluster.restart_broker();

    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let after: Vec<Sent> = (0..20).map(|seq| Sent::new("after", "TagK", seq)).collect();
    send_all(&producer, &topic, &after).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &group, &topic, "*", &inbox).await;

    // Nothing committed before the crash comes back, nothing sent after it
    // is lost.
    inbox.expect_exactly_once(&bodies(&after)).await;

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_kill9_under_sync_flush() {
    let mut cluster = Cluster::dev(ClusterOpts::new().sync_flush());
    let ns = cluster.namesrv_addr();
    let topic = unique("Durable");
    cluster.create_topic(&topic, 4);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 4).await;
    let sent: Vec<Sent> = (0..50)
        .map(|seq| Sent::new("durable", "TagD", seq))
        .collect();
    send_all(&producer, &topic, &sent).await;
    producer.shutdown().await;

    cluster.kill9();
    cluster.restart_broker();

    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;
    let received = inbox.expect_exactly_once(&bodies(&sent)).await;
    for s in &sent {
        s.assert_intact(&received[&s.body], &topic);
    }
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_send_creates_the_topic() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("AutoCreated");
    let mut producer = start_producer(&ns).await;

    let first = Sent::new("first", "TagF", 0);
    send_all(&producer, &topic, std::slice::from_ref(&first)).await;
    // The producer asks for `defaultTopicQueueNums` (4) queues.
    wait_for_route(&mut producer, &topic, 4).await;

    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;
    let received = inbox
        .expect_exactly_once(std::slice::from_ref(&first.body))
        .await;
    first.assert_intact(&received[&first.body], &topic);

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_create_a_send_needs_an_existing_topic() {
    let cluster = Cluster::dev(ClusterOpts::new().auto_create_topics(false));
    let ns = cluster.namesrv_addr();
    let topic = unique("Manual");
    let mut producer = start_producer(&ns).await;

    let rejected = producer
        .send(message(&topic, "TagM", "key-m", "too-early", &[]))
        .await;
    assert!(
        rejected.is_err(),
        "a send to an unknown topic fails: {rejected:?}"
    );

    cluster.create_topic(&topic, 2);
    wait_for_route(&mut producer, &topic, 2).await;
    let accepted = Sent::new("manual", "TagM", 0);
    send_all(&producer, &topic, std::slice::from_ref(&accepted)).await;

    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;
    inbox
        .expect_exactly_once(std::slice::from_ref(&accepted.body))
        .await;

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_size_is_refused() {
    let cluster = Cluster::dev(ClusterOpts::new().max_message_size(1024));
    let ns = cluster.namesrv_addr();
    let topic = unique("Size");
    cluster.create_topic(&topic, 1);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 1).await;

    // Below the client's 4 KiB compression threshold, so it goes as is.
    let big = "x".repeat(2000);
    let refused = producer
        .send(message(&topic, "TagS", "key-big", &big, &[]))
        .await;
    assert!(
        refused.is_err(),
        "a 2000-byte message over maxMessageSize=1024 is refused: {refused:?}"
    );
    let small = Sent::new("small", "TagS", 0);
    send_all(&producer, &topic, std::slice::from_ref(&small)).await;

    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;
    inbox
        .expect_exactly_once(std::slice::from_ref(&small.body))
        .await;

    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_can_be_found_by_id_and_by_key() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Query");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;

    let begin = now_millis();
    let wanted = Sent::new("findme", "TagQ", 0);
    let result = producer
        .send(wanted.message(&topic))
        .await
        .expect("send")
        .expect("a sync send returns a result");
    let other = Sent::new("other", "TagQ", 1);
    send_all(&producer, &topic, std::slice::from_ref(&other)).await;

    let offset_msg_id = result.offset_msg_id.expect("the broker's msgId");
    let by_id = producer
        .view_message(&topic, &offset_msg_id)
        .await
        .expect("view message by id");
    assert_eq!(by_id.body().as_deref(), Some(wanted.body.as_bytes()));
    assert_eq!(by_id.topic().as_str(), topic);
    assert_eq!(by_id.get_tags().as_deref(), Some(wanted.tag.as_str()));

    // The key index may trail the commit log by a moment.
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let found = loop {
        match producer
            .query_message(
                &topic,
                &wanted.key,
                32,
                begin.saturating_sub(60_000),
                now_millis() + 60_000,
            )
            .await
        {
            Ok(found) if !found.message_list().is_empty() => break found,
            outcome => assert!(
                Instant::now() < deadline,
                "no message for key {} within {RECEIVE_TIMEOUT:?}: {outcome:?}",
                wanted.key
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bodies: Vec<Vec<u8>> = found
        .message_list()
        .iter()
        .map(|m| m.body().map(|b| b.to_vec()).unwrap_or_default())
        .collect();
    assert_eq!(
        bodies,
        vec![wanted.body.as_bytes().to_vec()],
        "exactly the keyed message"
    );

    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_nameserver_and_broker_serve_a_round_trip_and_stop_cleanly() {
    let mut cluster = Cluster::separate(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("Separate");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let inbox = Inbox::new();
    let mut consumer = start_consumer(&ns, &unique("cg"), &topic, "*", &inbox).await;

    let sent: Vec<Sent> = (0..5)
        .map(|seq| Sent::new("separate", "TagS", seq))
        .collect();
    send_all(&producer, &topic, &sent).await;
    let received = inbox.expect_exactly_once(&bodies(&sent)).await;
    for s in &sent {
        s.assert_intact(&received[&s.body], &topic);
    }

    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lite_pull_consumer_polls_each_message_once() {
    use rocketmq_client_rust::DefaultLitePullConsumer;
    use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;

    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let topic = unique("LitePull");
    cluster.create_topic(&topic, 2);
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, 2).await;
    let sent: Vec<Sent> = (0..12)
        .map(|seq| Sent::new("lite", if seq % 3 == 0 { "TagX" } else { "TagL" }, seq))
        .collect();
    send_all(&producer, &topic, &sent).await;

    let consumer = DefaultLitePullConsumer::builder(client_runtime("lite-pull"))
        .consumer_group(unique("cg"))
        .name_server_addr(ns.clone())
        .instance_name(unique("instance"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .auto_commit(true)
        .build()
        .expect("lite pull consumer builds");
    consumer.start().await.expect("lite pull consumer starts");
    consumer
        .subscribe_with_expression(&topic, "TagL")
        .await
        .expect("subscribe");
    let wanted: Vec<String> = sent
        .iter()
        .filter(|s| s.tag == "TagL")
        .map(|s| s.body.clone())
        .collect();
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < wanted.len() && Instant::now() < deadline {
        for m in consumer.poll_with_timeout(1000).await {
            got.push(String::from_utf8_lossy(m.body().as_deref().unwrap_or_default()).into_owned());
        }
    }
    // and nothing more arrives
    for m in consumer.poll_with_timeout(1500).await {
        got.push(String::from_utf8_lossy(m.body().as_deref().unwrap_or_default()).into_owned());
    }
    got.sort();
    let mut wanted_sorted = wanted.clone();
    wanted_sorted.sort();
    assert_eq!(got, wanted_sorted, "each TagL message once, no other");
    consumer.shutdown().await;
    producer.shutdown().await;
}
