//! Master/slave replication (RocketMQ's classic HA), with real processes
//! killed under load. Invariant 2: a send answered SEND_OK by a SYNC_MASTER
//! is held by the slave and survives the loss of the master. Every
//! acknowledged message is counted by key afterwards; consume queues must
//! read back gap-free on the replica.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_client::producer::Message;
use meridian_client::{Admin, Producer};
use meridian_protocol::codes::response_code;
use support::cluster::BrokerGroup;

const TOPIC: &str = "replicated";
const QUEUES: i32 = 4;
/// Trials per failure case: 10 in the test suite, more when
/// `MERIDIAN_TRIALS` says so (`bench/soak.sh`).
fn trials() -> usize {
    support::trials()
}

fn master_slave(role: &str) -> BrokerGroup {
    let master = format!("brokerId=0\nbrokerRole={role}\nflushDiskType=ASYNC_FLUSH\n");
    let slave = "brokerId=1\nbrokerRole=SLAVE\n";
    BrokerGroup::start(&[&master, slave])
}

/// Keys of every message of `topic` on the broker at `addr`, checking the
/// queues read back gap-free.
async fn keys_on(addr: &str, topic: &str, namesrv: &str) -> HashMap<String, usize> {
    support::queues::count_keys(&Admin::new(namesrv), addr, topic, QUEUES).await
}

/// Wait until the topic exists on `addr` (the slave copies topics from its
/// master every few seconds).
async fn wait_topic(namesrv: &str, addr: &str, topic: &str) {
    let admin = Admin::new(namesrv);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if admin.topic_stats(addr, topic).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never learned topic {topic}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the slave holds `expect` keys of the topic.
async fn wait_caught_up(namesrv: &str, addr: &str, expect: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = keys_on(addr, TOPIC, namesrv).await;
        if seen.len() >= expect {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "slave {addr} holds {} of {expect} messages",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the master streams to a connected slave (a restarted
/// member reconnects within a few seconds).
async fn wait_slave_connected(group: &BrokerGroup) {
    let admin = Admin::new(&group.namesrv_addr());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(rt) = admin.runtime_info(&group.broker_addr(0)).await {
            if rt.get("haConnectedSlaves").map(String::as_str) == Some("1") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the slave never reconnected to the master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Sixteen producers sending keyed messages to the master until stopped.
fn start_load(group: &BrokerGroup, trial: usize) -> Load {
    let producer = Arc::new(Producer::new(&group.namesrv_addr(), "ha-producer"));
    let master = group.broker_addr(0);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (producer, master, acked, statuses, stop) = (
            producer.clone(),
            master.clone(),
            acked.clone(),
            statuses.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("t{trial}-w{w}-{i}");
                i += 1;
                let msg = Message {
                    topic: TOPIC.into(),
                    body: Bytes::from(format!("payload {key}")),
                    keys: vec![key.clone()],
                    ..Default::default()
                };
                match producer
                    .send_to(&master, "broker-a", w % QUEUES, &msg)
                    .await
                {
                    Ok(r) => {
                        *statuses
                            .lock()
                            .unwrap()
                            .entry(r.status.to_string())
                            .or_insert(0) += 1;
                        if r.status == "SEND_OK" {
                            acked.lock().unwrap().push(key);
                        }
                    }
                    Err(_) => {
                        *statuses.lock().unwrap().entry("error".into()).or_insert(0) += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    Load {
        acked,
        statuses,
        stop,
        tasks,
    }
}

impl Load {
    async fn stop(self) -> (Vec<String>, HashMap<String, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self.acked.lock().unwrap().clone();
        let statuses = self.statuses.lock().unwrap().clone();
        (acked, statuses)
    }
}

fn assert_all_present(what: &str, acked: &[String], seen: &HashMap<String, usize>) {
    let missing: Vec<&String> = acked.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged messages missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dup.is_empty(), "{what}: messages stored twice: {dup:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_killed_under_load_loses_nothing_it_acknowledged() {
    let mut group = master_slave("SYNC_MASTER");
    let ns = group.namesrv_addr();
    group.create_topic(TOPIC, 4);
    wait_topic(&ns, &group.broker_addr(1), TOPIC).await;
    let mut all_acked = Vec::new();
    for trial in 0..trials() {
        if !group.is_running(0) {
            tokio::task::block_in_place(|| group.start_broker(0));
        }
        wait_slave_connected(&group).await;
        let load = start_load(&group, trial);
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| group.kill9(0));
        let killed = Instant::now();
        let (acked, statuses) = load.stop().await;
        assert!(
            !acked.is_empty(),
            "trial {trial}: nothing acknowledged: {statuses:?}"
        );
        all_acked.extend(acked);
        // The master is gone: everything it acknowledged is on the slave.
        let seen = keys_on(&group.broker_addr(1), TOPIC, &ns).await;
        assert_all_present(
            &format!("trial {trial}, slave after master kill"),
            &all_acked,
            &seen,
        );
        tokio::task::block_in_place(|| group.start_broker(0));
        eprintln!(
            "trial {trial}: {} acknowledged so far, statuses {statuses:?}, writes refused for {:?} (until the master restarted)",
            all_acked.len(),
            killed.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_whose_slave_dies_answers_slave_not_available_then_recovers() {
    let mut group = master_slave("SYNC_MASTER");
    let ns = group.namesrv_addr();
    group.create_topic(TOPIC, 4);
    wait_topic(&ns, &group.broker_addr(1), TOPIC).await;
    let mut all_acked = Vec::new();
    let mut saw_slave_unavailable = false;
    for trial in 0..trials() {
        wait_slave_connected(&group).await;
        let load = start_load(&group, trial);
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokio::task::block_in_place(|| group.kill9(1));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (acked, statuses) = load.stop().await;
        saw_slave_unavailable |= statuses.contains_key("SLAVE_NOT_AVAILABLE")
            || statuses.contains_key("FLUSH_SLAVE_TIMEOUT");
        all_acked.extend(acked);
        tokio::task::block_in_place(|| group.start_broker(1));
        // The restarted slave resumes from its own offset and catches up.
        let total = keys_on(&group.broker_addr(0), TOPIC, &ns).await.len();
        let seen = wait_caught_up(&ns, &group.broker_addr(1), total).await;
        assert_all_present(
            &format!("trial {trial}, slave after restart"),
            &all_acked,
            &seen,
        );
        eprintln!("trial {trial}: statuses {statuses:?}");
    }
    assert!(
        saw_slave_unavailable,
        "with its slave dead a SYNC_MASTER must not answer SEND_OK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_master_replicates_and_the_whole_group_restarts() {
    let mut group = master_slave("ASYNC_MASTER");
    let ns = group.namesrv_addr();
    group.create_topic(TOPIC, 4);
    wait_topic(&ns, &group.broker_addr(1), TOPIC).await;
    let load = start_load(&group, 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (acked, _) = load.stop().await;
    let seen = wait_caught_up(&ns, &group.broker_addr(1), acked.len()).await;
    assert_all_present("slave", &acked, &seen);
    // `haStatus` shows the slave, holding what the master holds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = group.admin(&["--json", "haStatus", "-b", &group.broker_addr(0)]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("haStatus JSON");
        let row = &v["ha"][0];
        assert_eq!(row["slaveNum"], "1", "{out}");
        if row["diff"] == "0" && row["slaveAckOffset"] == row["masterCommitLogMaxOffset"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave never caught up in haStatus: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A consumer group's settings made on the master reach the slave.
    let out = group.admin(&[
        "updateSubGroup",
        "-g",
        "g-settings",
        "-b",
        &group.broker_addr(0),
        "-q",
        "2",
    ]);
    assert!(out.contains("success"), "{out}");
    let admin = Admin::new(&ns);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let copied = admin
            .subscription_groups(&group.broker_addr(1))
            .await
            .expect("slave's subscription groups")
            .subscription_group_table
            .get("g-settings")
            .map(|g| g.retry_queue_nums);
        if copied == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave never copied the group's settings: {copied:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A consumer offset committed on the master reaches the slave.
    let mut update = meridian_protocol::RemotingCommand::request(
        meridian_protocol::codes::request_code::UPDATE_CONSUMER_OFFSET,
    );
    meridian_protocol::header::offset::UpdateConsumerOffsetRequestHeader {
        consumer_group: "g-offsets".into(),
        topic: TOPIC.into(),
        queue_id: 2,
        commit_offset: 17,
    }
    .write(&mut update);
    admin.call(&group.broker_addr(0), update).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut query = meridian_protocol::RemotingCommand::request(
            meridian_protocol::codes::request_code::QUERY_CONSUMER_OFFSET,
        )
        .with_ext("consumerGroup", "g-offsets")
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 2);
        query.opaque = 0;
        let r = admin.call(&group.broker_addr(1), query).await.unwrap();
        if r.code == response_code::SUCCESS && r.ext("offset") == Some("17") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave never got the committed offset"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restart both, cleanly; both still hold everything.
    tokio::task::block_in_place(|| {
        group.stop_broker(1);
        group.stop_broker(0);
        group.start_broker(0);
        group.start_broker(1);
    });
    for i in 0..2 {
        let seen = keys_on(&group.broker_addr(i), TOPIC, &ns).await;
        assert_all_present(&format!("broker {i} after restart"), &acked, &seen);
    }
    // The route lists both members.
    let route = Admin::new(&ns).route(TOPIC).await.unwrap().unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
}

/// A consumer's send-back (CONSUMER_SEND_MSG_BACK) stores a retry: it takes
/// the same write path as a send, so a SYNC_MASTER acknowledges it only
/// once the slave holds it, and the retry survives the master's loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_acknowledges_a_send_back_only_once_the_slave_holds_it() {
    use meridian_protocol::header::consumer::ConsumerSendMsgBackRequestHeader;
    use meridian_protocol::RemotingCommand;
    const SCHEDULE: &str = "SCHEDULE_TOPIC_XXXX";

    let mut group = master_slave("SYNC_MASTER");
    let ns = group.namesrv_addr();
    let (master, slave) = (group.broker_addr(0), group.broker_addr(1));
    group.create_topic(TOPIC, 4);
    wait_topic(&ns, &slave, TOPIC).await;
    wait_slave_connected(&group).await;
    let producer = Producer::new(&ns, "ha-producer");
    let admin = Admin::new(&ns);
    let send_back = |key: &str| {
        let (producer, admin, master, key) = (&producer, &admin, master.clone(), key.to_string());
        async move {
            let msg = Message {
                topic: TOPIC.into(),
                body: Bytes::from(format!("payload {key}")),
                keys: vec![key.clone()],
                ..Default::default()
            };
            let sent = producer
                .send_to(&master, "broker-a", 0, &msg)
                .await
                .expect("send");
            let (_, _, msgs) = admin
                .pull(&master, "retrying-group", TOPIC, 0, sent.queue_offset, 1)
                .await
                .expect("pull");
            let m = msgs.first().expect("the message just sent");
            let mut req = RemotingCommand::request(
                meridian_protocol::codes::request_code::CONSUMER_SEND_MSG_BACK,
            );
            ConsumerSendMsgBackRequestHeader {
                offset: m.commit_log_offset,
                group: "retrying-group".into(),
                delay_level: 0,
                origin_msg_id: None,
                origin_topic: Some(TOPIC.into()),
                unit_mode: false,
                max_reconsume_times: Some(16),
            }
            .write(&mut req);
            admin.call(&master, req).await.expect("send-back").code
        }
    };

    // With no slave, a send-back is not acknowledged: the consumer keeps
    // the message and tries again.
    tokio::task::block_in_place(|| group.kill9(1));
    let code = send_back("without-slave").await;
    assert_ne!(
        code,
        response_code::SUCCESS,
        "a SYNC_MASTER without a slave acknowledged a send-back"
    );

    tokio::task::block_in_place(|| group.start_broker(1));
    wait_slave_connected(&group).await;
    let code = send_back("held-by-slave").await;
    assert_eq!(code, response_code::SUCCESS, "send-back refused");
    // The master dies the moment it answers: the slave has the retry.
    tokio::task::block_in_place(|| group.kill9(0));
    let mut on_slave = HashMap::new();
    for q in 0..18 {
        for m in support::queues::read_queue(&admin, &slave, SCHEDULE, q).await {
            if let Some(k) = m.keys().next() {
                *on_slave.entry(k.to_string()).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(
        on_slave.get("held-by-slave"),
        Some(&1),
        "the acknowledged retry is not on the slave once: {on_slave:?}"
    );
}

/// A delayed message coming due is written through the same path as a
/// send: on a SYNC_MASTER whose slave is gone, the delivery is stored once
/// and the level's cursor stays before it until the slave holds it — never
/// a second copy written while waiting, never a cursor past an unreplicated
/// delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_moves_a_delay_cursor_only_once_the_slave_holds_the_delivery() {
    use meridian_protocol::codes::request_code;
    use meridian_protocol::RemotingCommand;

    let mut group = master_slave("SYNC_MASTER");
    let ns = group.namesrv_addr();
    let master = group.broker_addr(0);
    group.create_topic(TOPIC, 4);
    wait_topic(&ns, &group.broker_addr(1), TOPIC).await;
    wait_slave_connected(&group).await;
    let admin = Admin::new(&ns);
    let level1_cursor = || async {
        let r = admin
            .call(
                &master,
                RemotingCommand::request(request_code::GET_ALL_DELAY_OFFSET),
            )
            .await
            .expect("delay offsets");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("delay offsets JSON");
        v["offsetTable"]["1"].as_i64().unwrap_or(0)
    };

    tokio::task::block_in_place(|| group.kill9(1));
    let producer = Producer::new(&ns, "ha-producer");
    let msg = Message {
        topic: TOPIC.into(),
        body: Bytes::from("delayed"),
        keys: vec!["delayed-1".into()],
        delay_level: 1,
        ..Default::default()
    };
    // The send itself is stored but not replicated: SLAVE_NOT_AVAILABLE.
    let _ = producer.send_to(&master, "broker-a", 0, &msg).await;
    // Level 1 is 1 s; give the delivery several ticks to be retried.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        level1_cursor().await,
        0,
        "the cursor passed an unreplicated delivery"
    );
    let seen = keys_on(&master, TOPIC, &ns).await;
    assert_eq!(
        seen.get("delayed-1"),
        Some(&1),
        "delivered {seen:?} while waiting for the slave"
    );

    tokio::task::block_in_place(|| group.start_broker(1));
    let moved = support::regions::within(Duration::from_secs(30), || async {
        level1_cursor().await == 1
    })
    .await;
    assert!(moved, "the cursor never moved once the slave was back");
    let seen = keys_on(&master, TOPIC, &ns).await;
    assert_eq!(seen.get("delayed-1"), Some(&1), "delivered {seen:?}");
}
