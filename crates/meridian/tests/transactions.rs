//! Transactional messages with `rocketmq-client-rust`'s transactional
//! producer against real broker processes: a half message is invisible
//! until committed, a commit is delivered once, a rollback never; an
//! undecided one is checked back with a live producer of its group and
//! discarded after `transactionCheckMax` checks; a broker SIGKILLed
//! between the half message and its commit loses and doubles nothing; a
//! SYNC_MASTER's slave holds every half message and decision the master
//! answered, and a killed Raft leader's successor finishes its work.

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
        .unwrap_or_else(|e| panic!("send {body} in a transaction: {}", support::describe(&e)));
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

    // An operator recovers it as docs/operations.md says: listed, read in
    // full (where it was going, who sent it), sent again to its topic.
    let listed = cluster.admin(&["printMsg", "-t", "TRANS_CHECK_MAX_TIME_TOPIC"]);
    assert!(listed.contains("never-1"), "printMsg:\n{listed}");
    // The "Message ID" queryMsgByKey prints is the unique key.
    let id = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|w| w.len() == 32)
        .expect("a message id");
    let shown = cluster.admin(&[
        "queryMsgByUniqueKey",
        "-t",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "-i",
        id,
    ]);
    for wanted in [
        format!("(\"REAL_TOPIC\", \"{topic}\")"),
        "PGROUP".to_string(),
        "never-1".to_string(),
    ] {
        assert!(
            shown.contains(&wanted),
            "queryMsgByUniqueKey lacks {wanted}:\n{shown}"
        );
    }
    cluster.admin(&[
        "sendMessage",
        "-t",
        &topic,
        "-p",
        "never-1",
        "-k",
        "key-never-1",
        "-c",
        "TagTx",
    ]);
    let recovered: Vec<String> = expected
        .iter()
        .cloned()
        .chain(["never-1".to_string()])
        .collect();
    inbox.expect_exactly_once(&recovered).await;
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

/// A SYNC_MASTER and its SLAVE: every half message the master answered
/// SEND_OK, and every commit and rollback it answered (an END_TRANSACTION
/// sent here with an answer awaited; the stock producer's own is oneway),
/// is on the slave when the master is SIGKILLed the moment it answered.
/// Then the master is restarted on its own store: master/slave mode has no
/// automatic promotion (docs/replication.md), so the restarted master is
/// the "new master" that finishes what was left — commits the stock
/// producer sent just before the kill delivered once, rollbacks never,
/// undecided ones checked back — and the slave ends up holding the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_master_slave_holds_what_was_acknowledged_and_the_restarted_master_finishes() {
    use meridian_protocol::codes::{request_code, response_code};
    use meridian_protocol::header::transaction::{transaction_type, EndTransactionRequestHeader};
    use meridian_protocol::message_id::decode_offset_msg_id;
    use meridian_protocol::RemotingCommand;
    use support::cluster::BrokerGroup;
    use support::queues::{count_keys, read_queue};

    const HALF: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
    const OP: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
    let tx_conf =
        "transactionTimeOut=1000\ntransactionCheckInterval=1000\ntransactionCheckMax=15\n";
    let mut group = BrokerGroup::start(&[
        &format!("brokerId=0\nbrokerRole=SYNC_MASTER\nflushDiskType=SYNC_FLUSH\n{tx_conf}"),
        &format!("brokerId=1\nbrokerRole=SLAVE\n{tx_conf}"),
    ]);
    let ns = group.namesrv_addr();
    let (master, slave) = (group.broker_addr(0), group.broker_addr(1));
    let admin = meridian_client::Admin::new(&ns);
    let topic = unique("TxHa");
    group.create_topic(&topic, 2);
    let ready = within(Duration::from_secs(20), || async {
        let topic_on_slave = admin.topic_stats(&slave, &topic).await.is_ok();
        let slave_connected = admin
            .runtime_info(&master)
            .await
            .is_ok_and(|rt| rt.get("haConnectedSlaves").map(String::as_str) == Some("1"));
        topic_on_slave && slave_connected
    })
    .await;
    assert!(
        ready,
        "the slave never connected or never learned the topic"
    );

    let producer_group = unique("txg");
    let listener = Listener::default();
    let mut producer = tx_producer(&ns, &producer_group, &topic, listener.clone()).await;
    let send_acked = |body: String, properties: Vec<(&'static str, &'static str)>| {
        let (producer, topic) = (&producer, topic.clone());
        async move {
            let msg = support::message(&topic, "TagTx", &format!("key-{body}"), &body, &properties);
            let sent = producer
                .send_message_in_transaction::<(), _>(msg, None)
                .await
                .unwrap_or_else(|e| {
                    panic!("send {body} in a transaction: {}", support::describe(&e))
                })
                .send_result
                .expect("a send result");
            assert_eq!(
                sent.send_status,
                rocketmq_client_rust::SendStatus::SendOk,
                "{body}: the half message is acknowledged only once the slave holds it"
            );
            sent
        }
    };

    // Decided here, each END_TRANSACTION answered: undecided for the stock
    // producer (its listener says unknown) and immune to check-backs for
    // the test's length, so only these verdicts decide them.
    let mut acked_halves = Vec::new();
    let mut decided_offsets = Vec::new();
    for i in 0..4 {
        for verdict in ["commit", "rollback"] {
            let body = format!("held-{verdict}-{i}");
            let sent = send_acked(
                body.clone(),
                vec![("CHECK_IMMUNITY_TIME_IN_SECONDS", "3600")],
            )
            .await;
            let (_, commit_log_offset) =
                decode_offset_msg_id(sent.offset_msg_id.as_deref().expect("an offset msg id"))
                    .expect("an offset msg id");
            let mut req = RemotingCommand::request(request_code::END_TRANSACTION);
            EndTransactionRequestHeader {
                topic: Some(topic.clone()),
                producer_group: producer_group.clone(),
                tran_state_table_offset: sent.queue_offset as i64,
                commit_log_offset,
                commit_or_rollback: if verdict == "commit" {
                    transaction_type::COMMIT
                } else {
                    transaction_type::ROLLBACK
                },
                from_transaction_check: false,
                msg_id: sent.msg_id.as_deref().unwrap_or_default().to_string(),
                transaction_id: sent.transaction_id.clone(),
            }
            .write(&mut req);
            let answer = admin.call(&master, req).await.expect("END_TRANSACTION");
            assert_eq!(
                answer.code,
                response_code::SUCCESS,
                "{body}: {:?}",
                answer.remark
            );
            acked_halves.push(body);
            decided_offsets.push(sent.queue_offset as i64);
        }
    }
    // Decided by the stock producer (oneway), or left for a check-back;
    // the master is SIGKILLed right after the last of them.
    let mut expected: Vec<String> = (0..4).map(|i| format!("held-commit-{i}")).collect();
    for i in 0..4 {
        for verdict in ["commit", "rollback", "later-commit", "later-rollback"] {
            let body = format!("{verdict}-{i}");
            send_acked(body.clone(), vec![]).await;
            acked_halves.push(body.clone());
            if verdict.ends_with("commit") {
                expected.push(body);
            }
        }
    }
    tokio::task::block_in_place(|| group.kill9(0));

    // On the slave: every acknowledged half message once, every answered
    // commit once in its real topic, no answered rollback there, and an op
    // record for every answered decision.
    let halves = count_keys(&admin, &slave, HALF, 1).await;
    for body in &acked_halves {
        assert_eq!(
            halves.get(&format!("key-{body}")),
            Some(&1),
            "acknowledged half message {body} on the slave: {halves:?}"
        );
    }
    let real = count_keys(&admin, &slave, &topic, 2).await;
    for i in 0..4 {
        assert_eq!(
            real.get(&format!("key-held-commit-{i}")),
            Some(&1),
            "answered commit {i} on the slave: {real:?}"
        );
        assert_eq!(
            real.get(&format!("key-held-rollback-{i}")),
            None,
            "answered rollback {i} stored in its topic"
        );
    }
    let decided_on_slave: Vec<i64> = read_queue(&admin, &slave, OP, 0)
        .await
        .iter()
        .flat_map(|m| {
            String::from_utf8_lossy(&m.body)
                .split(',')
                .filter_map(|v| v.trim().parse::<i64>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    for offset in &decided_offsets {
        assert!(
            decided_on_slave.contains(offset),
            "no op record on the slave for the half message at queue offset {offset}: {decided_on_slave:?}"
        );
    }

    // The master comes back on its own store and finishes: each commit
    // once, whether its END_TRANSACTION landed before the kill or a
    // check-back made it; no rollback; the undecided ones checked back.
    tokio::task::block_in_place(|| group.start_broker(0));
    let inbox = Inbox::new();
    let mut consumer = consumer_of(&ns, &topic, &inbox).await;
    inbox.expect_exactly_once(&expected).await;
    for i in 0..4 {
        for body in [format!("later-commit-{i}"), format!("later-rollback-{i}")] {
            assert!(
                listener.checks.lock().unwrap().get(&body).copied() >= Some(1),
                "{body} was never checked back"
            );
        }
    }
    // More check rounds change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    support::assert_exactly_once(&inbox.all(), &expected);
    // And the slave, streaming from the restarted master again, holds each
    // committed message once and nothing rolled back.
    let caught_up = within(Duration::from_secs(20), || async {
        let on_slave = count_keys(&admin, &slave, &topic, 2).await;
        expected
            .iter()
            .all(|b| on_slave.contains_key(&format!("key-{b}")))
    })
    .await;
    let on_slave = count_keys(&admin, &slave, &topic, 2).await;
    assert!(caught_up, "the slave never got every commit: {on_slave:?}");
    let mut wanted: Vec<String> = expected.iter().map(|b| format!("key-{b}")).collect();
    wanted.sort();
    let mut held: Vec<(String, usize)> = on_slave.into_iter().collect();
    held.sort();
    assert_eq!(
        held,
        wanted.into_iter().map(|k| (k, 1)).collect::<Vec<_>>(),
        "the slave's copy of the topic"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
}
