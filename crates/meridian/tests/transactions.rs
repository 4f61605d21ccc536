//! Transactional messages with `rocketmq-client-rust`'s transactional
//! producer against real broker processes: a half message is invisible
//! until committed, a commit is delivered once, a rollback never; an
//! undecided one is checked back with a live producer of its group and
//! discarded after `transactionCheckMax` checks; a broker SIGKILLed
//! between the half message and its commit loses and doubles nothing.

mod support;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rocketmq_client_rust::{
    LocalTransactionState, MQPushConsumer, TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::MessageTrait;
use std::sync::Mutex;
use support::regions::within;
use support::{client_runtime, push_consumer, unique, Cluster, ClusterOpts, Inbox};

/// What the listener answers, by the message body's first word:
/// `commit`, `rollback` (also when checked back); `later-commit` /
/// `later-rollback` (unknown now, that on a check-back); anything else
/// unknown, and on a check-back `check_answer` if set.
#[derive(Clone, Default)]
struct Listener {
    checks: Arc<Mutex<HashMap<String, usize>>>,
    /// Answer every check-back with this, whatever the body says.
    check_answer: Option<bool>,
}

fn body_of(msg: &dyn MessageTrait) -> String {
    msg.get_body()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        match body_of(msg).split('-').next() {
            Some("commit") => LocalTransactionState::CommitMessage,
            Some("rollback") => LocalTransactionState::RollbackMessage,
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = body_of(msg);
        *self.checks.lock().unwrap().entry(body.clone()).or_default() += 1;
        // What the local transaction did, as its body says; for the
        // others, the listener's fixed answer, or unknown.
        if body.starts_with("commit") || body.starts_with("later-commit") {
            LocalTransactionState::CommitMessage
        } else if body.starts_with("rollback") || body.starts_with("later-rollback") {
            LocalTransactionState::RollbackMessage
        } else {
            match self.check_answer {
                Some(true) => LocalTransactionState::CommitMessage,
                Some(false) => LocalTransactionState::RollbackMessage,
                None => LocalTransactionState::Unknown,
            }
        }
    }
}

async fn tx_producer(
    namesrv: &str,
    group: &str,
    topic: &str,
    listener: Listener,
) -> TransactionMQProducer {
    let mut config = rocketmq_client_rust::ClientConfig::default();
    config.set_instance_name(unique("tx-instance").into());
    // Learn a new master or leader, and tell it about the group, quickly.
    config.set_poll_name_server_interval(10_000);
    config.set_heartbeat_broker_interval(10_000);
    let mut producer = TransactionMQProducer::builder(client_runtime("tx-producer"))
        .client_config(config)
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .topics(vec![topic.to_string()])
        .transaction_listener(listener)
        .build();
    producer
        .start()
        .await
        .expect("transactional producer starts");
    producer
}

async fn send(producer: &TransactionMQProducer, topic: &str, body: &str) {
    send_with(producer, topic, body, &[]).await
}

/// [`send`] with user properties.
async fn send_with(
    producer: &TransactionMQProducer,
    topic: &str,
    body: &str,
    properties: &[(&str, &str)],
) {
    let msg = support::message(topic, "TagTx", &format!("key-{body}"), body, properties);
    producer
        .send_message_in_transaction::<(), _>(msg, None)
        .await
        .unwrap_or_else(|e| panic!("send {body} in a transaction: {e}"));
}

/// [`send`] right after the broker restarted: a send that fails on the
/// client's dead connection is made again, unless the broker stored its
/// half message after all (found by key), whose verdict a check-back then
/// gives.
async fn send_after_restart(
    producer: &TransactionMQProducer,
    cluster: &Cluster,
    topic: &str,
    body: &str,
) {
    let admin = meridian_client::Admin::new(&cluster.namesrv_addr());
    for attempt in 1..=5 {
        let msg = support::message(topic, "TagTx", &format!("key-{body}"), body, &[]);
        let Err(e) = producer
            .send_message_in_transaction::<(), _>(msg, None)
            .await
        else {
            return;
        };
        let stored = admin
            .query_message(
                &cluster.broker_addr(),
                "RMQ_SYS_TRANS_HALF_TOPIC",
                &format!("key-{body}"),
                1,
                false,
            )
            .await
            .is_ok_and(|found| !found.is_empty());
        if stored {
            return;
        }
        eprintln!("send {body}, attempt {attempt}, failed ({e}); sending again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("send {body} in a transaction failed five times");
}

/// A stock push consumer of a new group on `topic`, started.
async fn consumer_of(
    namesrv: &str,
    topic: &str,
    inbox: &Inbox,
) -> rocketmq_client_rust::DefaultMQPushConsumer {
    let mut consumer = push_consumer(namesrv, &unique("cg")).build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(inbox.listener());
    consumer.start().await.expect("consumer starts");
    consumer
}

fn opts() -> ClusterOpts {
    ClusterOpts::new()
        .sync_flush()
        .broker_conf("transactionTimeOut", "1000")
        .broker_conf("transactionCheckInterval", "1000")
        .broker_conf("transactionCheckMax", "3")
}

async fn status(cluster: &Cluster, key: &str) -> u64 {
    meridian_client::Admin::new(&cluster.namesrv_addr())
        .runtime_info(&cluster.broker_addr())
        .await
        .ok()
        .and_then(|t| t.get(key).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_are_delivered_once_rollbacks_never_and_undecided_ones_are_checked_then_discarded()
{
    let cluster = Cluster::separate(opts());
    let ns = cluster.namesrv_addr();
    let topic = unique("Tx");
    cluster.create_topic(&topic, 4);
    let listener = Listener::default();
    let mut producer = tx_producer(&ns, &unique("txg"), &topic, listener.clone()).await;
    let inbox = Inbox::new();
    let mut consumer = consumer_of(&ns, &topic, &inbox).await;

    let bodies = [
        "commit-1",
        "commit-2",
        "rollback-1",
        "later-commit-1",
        "later-rollback-1",
        "never-1",
    ];
    for b in bodies {
        send(&producer, &topic, b).await;
    }
    // Its own check immunity (an hour) keeps this one from being checked
    // within the test, though it is as undecided as never-1.
    send_with(
        &producer,
        &topic,
        "immune-1",
        &[("CHECK_IMMUNITY_TIME_IN_SECONDS", "3600")],
    )
    .await;
    // Committed ones at once, the later-committed one after a check-back;
    // nothing else, ever.
    let expected = ["commit-1", "commit-2", "later-commit-1"].map(String::from);
    inbox.expect_exactly_once(&expected).await;
    // The undecided one is checked transactionCheckMax times, then
    // discarded, visibly.
    let discarded = within(Duration::from_secs(30), || async {
        status(&cluster, "transactionDiscardedTotal").await == 1
    })
    .await;
    assert!(discarded, "the undecided half message was never discarded");
    let checks = listener
        .checks
        .lock()
        .unwrap()
        .get("never-1")
        .copied()
        .unwrap_or(0);
    assert_eq!(checks, 3, "check-backs of the undecided message");
    assert_eq!(
        listener.checks.lock().unwrap().get("immune-1"),
        None,
        "a message is not checked within its CHECK_IMMUNITY_TIME_IN_SECONDS"
    );
    assert_eq!(
        listener
            .checks
            .lock()
            .unwrap()
            .get("later-rollback-1")
            .copied(),
        Some(1),
        "a rolled-back message is checked once"
    );
    let found = cluster.admin(&[
        "queryMsgByKey",
        "-t",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "-k",
        "key-never-1",
    ]);
    let ids = found
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|w| w.len() == 32))
        .count();
    assert_eq!(ids, 1, "the discarded message by its key:\n{found}");
    assert_eq!(status(&cluster, "transactionCommittedTotal").await, 3);
    assert_eq!(status(&cluster, "transactionRolledBackTotal").await, 2);
    // Still nothing more delivered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    support::assert_exactly_once(&inbox.all(), &expected);
    consumer.shutdown().await;
    producer.shutdown().await;
}

/// A message's own CHECK_IMMUNITY_TIME_IN_SECONDS delays its first check
/// back until it ends, even behind one that stays undecided for an hour;
/// as in RocketMQ 5, -1 (or anything shorter than transactionTimeOut)
/// means transactionTimeOut.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_message_is_checked_back_once_its_own_immunity_ends() {
    let cluster = Cluster::separate(opts().broker_conf("transactionCheckMax", "15"));
    let ns = cluster.namesrv_addr();
    let topic = unique("TxImmune");
    cluster.create_topic(&topic, 2);
    let listener = Listener::default();
    let mut producer = tx_producer(&ns, &unique("txg"), &topic, listener.clone()).await;
    let inbox = Inbox::new();
    let mut consumer = consumer_of(&ns, &topic, &inbox).await;
    send_with(
        &producer,
        &topic,
        "immune-1",
        &[("CHECK_IMMUNITY_TIME_IN_SECONDS", "3600")],
    )
    .await;
    let sent = std::time::Instant::now();
    send_with(
        &producer,
        &topic,
        "later-commit-after-4s",
        &[("CHECK_IMMUNITY_TIME_IN_SECONDS", "4")],
    )
    .await;
    send_with(
        &producer,
        &topic,
        "later-commit-minus-one",
        &[("CHECK_IMMUNITY_TIME_IN_SECONDS", "-1")],
    )
    .await;
    let checks = |body: &str| listener.checks.lock().unwrap().get(body).copied();
    // -1 is transactionTimeOut (1 s): checked back and committed.
    inbox
        .expect_exactly_once(&["later-commit-minus-one".to_string()])
        .await;
    if sent.elapsed() < Duration::from_millis(3500) {
        assert_eq!(
            checks("later-commit-after-4s"),
            None,
            "checked within its immunity"
        );
    }
    // Then the other, once its 4 s are over.
    let expected = ["later-commit-minus-one", "later-commit-after-4s"].map(String::from);
    inbox.expect_exactly_once(&expected).await;
    assert!(sent.elapsed() >= Duration::from_secs(4));
    assert_eq!(checks("later-commit-after-4s"), Some(1));
    assert_eq!(checks("later-commit-minus-one"), Some(1));
    assert_eq!(checks("immune-1"), None);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_check_back_reaches_another_producer_of_the_group_when_the_first_is_gone() {
    let cluster = Cluster::separate(opts().broker_conf("transactionCheckMax", "15"));
    let ns = cluster.namesrv_addr();
    let topic = unique("TxGone");
    cluster.create_topic(&topic, 2);
    let group = unique("txg");
    let mut first = tx_producer(&ns, &group, &topic, Listener::default()).await;
    send(&first, &topic, "orphan-1").await;
    first.shutdown().await;
    // Another process of the same group knows the transaction committed.
    let second_listener = Listener {
        check_answer: Some(true),
        ..Default::default()
    };
    let mut second = tx_producer(&ns, &group, &topic, second_listener.clone()).await;
    let inbox = Inbox::new();
    let mut consumer = consumer_of(&ns, &topic, &inbox).await;
    inbox.expect_exactly_once(&["orphan-1".to_string()]).await;
    assert_eq!(
        second_listener.checks.lock().unwrap().get("orphan-1"),
        Some(&1)
    );
    consumer.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_killed_around_the_commit_loses_and_doubles_nothing() {
    let mut cluster = Cluster::separate(opts().broker_conf("transactionCheckMax", "15"));
    let ns = cluster.namesrv_addr();
    let topic = unique("TxKill");
    cluster.create_topic(&topic, 2);
    let group = unique("txg");
    let listener = Listener::default();
    let mut producer = tx_producer(&ns, &group, &topic, listener.clone()).await;
    // Killed between the half message and its (unknown) verdict: the
    // half message survives and a check-back commits it.
    send(&producer, &topic, "later-commit-before-kill").await;
    tokio::task::block_in_place(|| cluster.kill9());
    tokio::task::block_in_place(|| cluster.restart_broker());
    // Killed right after a commit was sent: the commit either made it
    // (and is never made again) or is made by a check-back.
    let mut expected = vec!["later-commit-before-kill".to_string()];
    for i in 0..5 {
        let body = format!("commit-then-kill-{i}");
        send_after_restart(&producer, &cluster, &topic, &body).await;
        expected.push(body);
        tokio::task::block_in_place(|| cluster.kill9());
        tokio::task::block_in_place(|| cluster.restart_broker());
    }
    let inbox = Inbox::new();
    let mut consumer = consumer_of(&ns, &topic, &inbox).await;
    inbox.expect_exactly_once(&expected).await;
    // And after more check rounds, still once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    support::assert_exactly_once(&inbox.all(), &expected);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_raft_leader_killed_mid_transaction_leaves_a_new_leader_to_finish_exactly() {
    let mut group = support::raft::raft_group(
        "transactionTimeOut=1000\ntransactionCheckInterval=1000\ntransactionCheckMax=15",
    );
    let ns = group.namesrv_addr();
    let admin = meridian_client::Admin::new(&ns);
    let leader = support::raft::leader(&group, &admin).await;
    let topic = unique("TxRaft");
    group.create_topic(&topic, 2);
    // Every member has the topic before anything happens (topic configs
    // reach followers by a periodic copy).
    for i in 0..3 {
        let addr = group.broker_addr(i);
        let known = within(Duration::from_secs(20), || async {
            admin
                .all_topic_config(&addr)
                .await
                .is_ok_and(|t| t.contains_key(&topic))
        })
        .await;
        assert!(known, "member {i} never learned the topic");
    }
    let listener = Listener::default();
    let mut producer = tx_producer(&ns, &unique("txg"), &topic, listener.clone()).await;
    // Committed before the kill, left undecided for a check-back, and a
    // rollback: on a majority before their answers, so the new leader has
    // them and the decisions made so far.
    let mut expected = Vec::new();
    for i in 0..5 {
        send(&producer, &topic, &format!("commit-{i}")).await;
        expected.push(format!("commit-{i}"));
        send(&producer, &topic, &format!("later-commit-{i}")).await;
        expected.push(format!("later-commit-{i}"));
        send(&producer, &topic, &format!("rollback-{i}")).await;
    }
    tokio::task::block_in_place(|| group.kill9(leader));
    let new_leader = support::raft::leader(&group, &admin).await;
    let listed = within(Duration::from_secs(30), || async {
        admin
            .topic_masters(&topic)
            .await
            .is_ok_and(|m| m.iter().any(|(_, a)| *a == group.broker_addr(new_leader)))
    })
    .await;
    assert!(listed, "the name server never listed the new leader");
    let inbox = Inbox::new();
    let mut consumer = consumer_of(&ns, &topic, &inbox).await;
    // The new leader checks back what the old one left undecided, and
    // commits nothing twice.
    inbox.expect_exactly_once(&expected).await;
    tokio::task::block_in_place(|| group.start_broker(leader));
    tokio::time::sleep(Duration::from_secs(3)).await;
    support::assert_exactly_once(&inbox.all(), &expected);
    consumer.shutdown().await;
    producer.shutdown().await;
}
