//! Failover as a stock RocketMQ client sees it: `rocketmq-client-rust`
//! 1.0.0 with its default route refresh (`pollNameServerInterval`, 30 s),
//! against real `meridian` processes killed with SIGKILL.
//!
//! - A push consumer of a SYNC_MASTER + SLAVE pair goes on consuming from
//!   the slave once the master is gone from the route.
//! - A producer of a 3-member Raft group gets SEND_OK again once the new
//!   leader is in the route; how long that takes is printed for the docs.
//!
//! Only the stock client produces and consumes here; Meridian's `Admin`
//! only checks what the brokers hold and watches the name server's route.

mod support;

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use meridian_client::Admin;
use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::SendStatus;
use rocketmq_model::common::message::message_ext::MessageExt;
use support::cluster::BrokerGroup;
use support::raft::leader;
use support::*;

const QUEUES: i32 = 4;
/// How long a test waits for the client to recover after a kill.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Wait until the broker at `addr` knows `topic` (a slave copies its
/// master's topics every few seconds).
async fn wait_topic(admin: &Admin, addr: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.topic_stats(addr, topic).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never learned {topic}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The broker address the name server currently routes as broker id 0
/// (the master) of `topic`, if any.
async fn routed_master(admin: &Admin, topic: &str) -> Option<String> {
    let route = admin.route(topic).await.ok().flatten()?;
    route
        .broker_datas
        .iter()
        .find_map(|bd| bd.broker_addrs.get(&0).cloned())
}

/// What the name server's route for a topic did after a kill.
#[derive(Debug, Default)]
struct RouteChange {
    /// When broker id 0 stopped being the killed broker.
    master_gone: Option<Duration>,
    /// When another broker was routed as id 0, and which.
    new_master: Option<(Duration, String)>,
}

/// Watch the name server's route for `topic` from `since` on: when broker
/// id 0 stops being `old_master` and, if `wait_new_master`, when another
/// broker takes id 0.
fn watch_route(
    admin: Admin,
    topic: String,
    old_master: String,
    since: Instant,
    wait_new_master: bool,
) -> tokio::task::JoinHandle<RouteChange> {
    tokio::spawn(async move {
        let mut change = RouteChange::default();
        while since.elapsed() < FAILOVER_DEADLINE {
            let master = routed_master(&admin, &topic).await;
            if master.as_deref() != Some(old_master.as_str()) {
                change.master_gone.get_or_insert(since.elapsed());
                if !wait_new_master {
                    break;
                }
                if let Some(new) = master {
                    change.new_master = Some((since.elapsed(), new));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        change
    })
}

/// The client refreshes its routes every `pollNameServerInterval` (30 s by
/// default), the first time right at its start.
const POLL_NAME_SERVER_INTERVAL: Duration = Duration::from_secs(30);

/// How long before `at` a client started at `started` last refreshed its
/// routes on its own.
fn since_refresh(started: Instant, at: Instant) -> Duration {
    let nanos = (at - started).as_nanos() % POLL_NAME_SERVER_INTERVAL.as_nanos();
    Duration::from_nanos(nanos as u64)
}

fn when(d: Option<Duration>) -> String {
    d.map(secs)
        .unwrap_or_else(|| "never (within the deadline)".into())
}

// ---------------------------------------------------------------------------
// 1. Push consumer, master/slave
// ---------------------------------------------------------------------------

/// Messages produced before the consumer starts.
const MESSAGES: usize = 200;
/// The consumer's pull batch and per-queue cache limit: small, so that at
/// the moment of the kill at most `QUEUES * (PULL_THRESHOLD + PULL_BATCH)`
/// messages are already in the client's memory and everything else must
/// be pulled again afterwards.
const PULL_BATCH: u32 = 4;
const PULL_THRESHOLD: u32 = 4;
const CACHE_BOUND: usize = QUEUES as usize * (PULL_THRESHOLD + PULL_BATCH) as usize;
/// Time the listener spends on each message, so the backlog lasts a few
/// seconds instead of being consumed before the kill.
const CONSUME_TIME: Duration = Duration::from_millis(25);
/// How many messages to consume before killing the master.
const CONSUMED_BEFORE_KILL: usize = 40;

fn master_slave() -> BrokerGroup {
    BrokerGroup::start(&[
        "brokerId=0\nbrokerRole=SYNC_MASTER\nflushDiskType=ASYNC_FLUSH\n",
        "brokerId=1\nbrokerRole=SLAVE\n",
    ])
}

/// Wait until the master streams to its slave, so that SYNC_MASTER sends
/// are SEND_OK (and held by the slave).
async fn wait_slave_connected(admin: &Admin, master: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(rt) = admin.runtime_info(master).await {
            if rt.get("haConnectedSlaves").map(String::as_str) == Some("1") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the slave never connected to the master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_consumer_keeps_consuming_from_the_slave_after_the_master_dies() {
    let mut group = master_slave();
    let ns = group.namesrv_addr();
    let (master, slave) = (group.broker_addr(0), group.broker_addr(1));
    let admin = Admin::new(&ns);
    let topic = unique("SlaveFallback");
    group.create_topic(&topic, QUEUES as u32);
    wait_topic(&admin, &slave, &topic).await;
    wait_slave_connected(&admin, &master).await;

    // Produce everything up front, with the stock producer, to the master.
    let mut producer = start_producer(&ns).await;
    wait_for_route(&mut producer, &topic, QUEUES as usize).await;
    let keys: Vec<String> = (0..MESSAGES).map(|i| format!("sf-{i}")).collect();
    for key in &keys {
        let result = producer
            .send(message(&topic, "TagF", key, &format!("body {key}"), &[]))
            .await
            .unwrap_or_else(|e| panic!("send {key}: {}", support::describe(&e)))
            .expect("a sync send returns a result");
        assert_eq!(result.send_status, SendStatus::SendOk, "status of {key}");
    }
    producer.shutdown().await;
    // SEND_OK from a SYNC_MASTER means the slave has the records; wait
    // until its consume queues list them too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let on_slave = support::queues::count_keys(&admin, &slave, &topic, QUEUES).await;
        if keys.iter().all(|k| on_slave.contains_key(k)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave holds {} of {MESSAGES} messages",
            on_slave.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stock clustering push consumer with a slow listener.
    let inbox = Inbox::new();
    let mut consumer = push_consumer(&ns, &unique("cg"))
        .pull_batch_size(PULL_BATCH)
        .pull_threshold_for_queue(PULL_THRESHOLD)
        .build();
    consumer
        .subscribe(topic.as_str(), "*")
        .await
        .expect("subscribe");
    let recorder = inbox.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _context: &ConsumeConcurrentlyContext| {
            std::thread::sleep(CONSUME_TIME);
            recorder.record(msgs);
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    consumer.start().await.expect("consumer starts");
    let client_started = Instant::now();
    inbox
        .wait_for_count(CONSUMED_BEFORE_KILL, Duration::from_secs(30))
        .await;

    tokio::task::block_in_place(|| group.kill9(0));
    let killed = Instant::now();
    let before_kill = inbox.len();
    let route_change = watch_route(
        Admin::new(&ns),
        topic.clone(),
        master.clone(),
        killed,
        false,
    );
    eprintln!(
        "master killed after {before_kill} of {MESSAGES} messages were consumed \
         (at most {CACHE_BOUND} more were in the client's cache)"
    );

    // Every key, at least once, within the deadline.
    loop {
        let seen: HashSet<String> = inbox.all().into_iter().filter_map(|r| r.keys).collect();
        let missing: Vec<&String> = keys.iter().filter(|k| !seen.contains(*k)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < FAILOVER_DEADLINE,
            "{:?} after the master died the stock consumer still misses {} of {MESSAGES} \
             messages (got {} before the kill, {} after), e.g. {:?}",
            FAILOVER_DEADLINE,
            missing.len(),
            before_kill,
            inbox.len() - before_kill,
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_consumed = killed.elapsed();
    consumer.shutdown().await;

    // What arrived after the kill: first what was already in the client's
    // cache, then - after a pause while the client still pulls from the
    // dead master - what it pulled from the slave. The slave's part starts
    // after the longest silence.
    let received = inbox.all();
    let consumed_before: HashSet<&str> = received[..before_kill]
        .iter()
        .filter_map(|r| r.keys.as_deref())
        .collect();
    let new_after: HashSet<&str> = received[before_kill..]
        .iter()
        .filter_map(|r| r.keys.as_deref())
        .filter(|k| !consumed_before.contains(k))
        .collect();
    // The master is dead: whatever the client had not pulled before the
    // kill came from the slave, and it can't have held more than
    // CACHE_BOUND messages it had not consumed yet.
    assert!(
        new_after.len() > CACHE_BOUND,
        "only {} messages were first consumed after the kill; expected more than the \
         {CACHE_BOUND} the client can have held, i.e. some pulled from the slave",
        new_after.len()
    );
    let after: Vec<Instant> = received[before_kill..].iter().map(|r| r.at).collect();
    let mut previous = killed;
    let (mut gap, mut cached) = (Duration::ZERO, 0);
    for (i, at) in after.iter().enumerate() {
        if at.duration_since(previous) > gap {
            gap = at.duration_since(previous);
            cached = i;
        }
        previous = *at;
    }
    let first_from_slave = after[cached].duration_since(killed);
    let route = route_change.await.expect("route watcher");
    eprintln!(
        "name server dropped the master from the route after {}",
        when(route.master_gone)
    );
    eprintln!(
        "the kill came {} after the consumer's last periodic route refresh",
        secs(since_refresh(client_started, killed))
    );
    eprintln!(
        "stock consumer: {cached} cached messages consumed right after the kill, then nothing for {}; \
         master kill → first message from the slave after {}; all {MESSAGES} consumed {} after the kill \
         ({} deliveries in total)",
        secs(gap),
        secs(first_from_slave),
        secs(all_consumed),
        inbox.len()
    );
}

// ---------------------------------------------------------------------------
// 2. Producer, Raft group
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    /// SEND_OK keys, when the answer came, and the member that stored the
    /// message (from the offset message id).
    acked: Vec<(String, Instant, String)>,
    /// Other send statuses, and errors by message.
    failures: HashMap<String, usize>,
}

/// The `ip:port` an offset message id names, or "" if it doesn't parse.
fn stored_by(offset_msg_id: Option<&str>) -> String {
    offset_msg_id
        .and_then(|id| meridian_protocol::message_id::decode_offset_msg_id(id).ok())
        .map(|(host, _)| host.to_string())
        .unwrap_or_default()
}

/// One task sending keyed messages with sync sends until stopped.
fn send_continuously(
    producer: Arc<DefaultMQProducer>,
    topic: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Tally>>, tokio::task::JoinHandle<()>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let task = {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("rl-{i}");
                i += 1;
                let result = producer
                    .send(message(&topic, "TagR", &key, &format!("body {key}"), &[]))
                    .await;
                let failed = {
                    let mut t = tally.lock().expect("tally lock");
                    match result {
                        Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                            let host = stored_by(r.offset_msg_id.as_deref());
                            t.acked.push((key, Instant::now(), host));
                            false
                        }
                        Ok(Some(r)) => {
                            *t.failures
                                .entry(format!("{:?}", r.send_status))
                                .or_default() += 1;
                            false
                        }
                        Ok(None) => {
                            *t.failures.entry("no result".into()).or_default() += 1;
                            true
                        }
                        Err(e) => {
                            let text: String = e.to_string().chars().take(120).collect();
                            *t.failures.entry(text).or_default() += 1;
                            true
                        }
                    }
                };
                if failed {
                    // Don't spin on a dead address.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    (tally, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_producer_after_raft_leader_loss() {
    let mut group = support::raft::raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    let first_leader = leader(&group, &admin).await;
    // The topic on every member, the leader first. Topic configs are not in
    // the Raft log: a follower copies the leader's whole topic table, but
    // only once it knows the leader's address, which it learns when it
    // next registers with the name server (every 30 s, or right after a
    // topic change). Created on each member, the followers have the topic
    // right away, as they would in a group that has been up a while; the
    // leader first, so that a follower's copy of the leader's table can't
    // take it away again.
    let topic = unique("RaftFailover");
    let queues = QUEUES.to_string();
    for i in std::iter::once(first_leader).chain((0..3).filter(|&i| i != first_leader)) {
        let addr = group.broker_addr(i);
        group.admin(&[
            "updateTopic",
            "-t",
            &topic,
            "-b",
            &addr,
            "-r",
            &queues,
            "-w",
            &queues,
        ]);
    }
    for i in 0..3 {
        wait_topic(&admin, &group.broker_addr(i), &topic).await;
    }

    // The stock producer with its defaults (send timeout 3 s, 2 retries,
    // route refresh every 30 s); only the group and the name server are set.
    let mut producer = DefaultMQProducer::builder(client_runtime("producer"))
        .producer_group(unique("pg"))
        .name_server_addr(ns.clone())
        .build();
    producer.start().await.expect("producer starts");
    let client_started = Instant::now();
    wait_for_route(&mut producer, &topic, QUEUES as usize).await;
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, task) = send_continuously(producer.clone(), topic.clone(), stop.clone());
    let acked = || tally.lock().expect("tally lock").acked.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked() < 100 {
        assert!(
            Instant::now() < deadline,
            "the stock producer got only {} SEND_OK before the kill",
            acked()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Kill the member that leads now, and that the name server routes as
    // the master.
    let old = leader(&group, &admin).await;
    let old_addr = group.broker_addr(old);
    assert_eq!(
        routed_master(&admin, &topic).await.as_deref(),
        Some(old_addr.as_str()),
        "the name server routes the leader as the master"
    );
    tokio::task::block_in_place(|| group.kill9(old));
    let killed = Instant::now();
    let acked_before = acked();
    let route_change = watch_route(
        Admin::new(&ns),
        topic.clone(),
        old_addr.clone(),
        killed,
        true,
    );
    // The first SEND_OK stored by another member than the dead leader.
    let first_ok = loop {
        let first = tally
            .lock()
            .expect("tally lock")
            .acked
            .iter()
            .find(|a| a.1 > killed && a.2 != old_addr)
            .map(|a| a.1);
        if let Some(t) = first {
            break t - killed;
        }
        assert!(
            killed.elapsed() < FAILOVER_DEADLINE,
            "no SEND_OK within {FAILOVER_DEADLINE:?} of the leader's death; failures {:?}",
            tally.lock().expect("tally lock").failures
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Keep sending a little, to see sends go on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("send task");
    let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));
    let route = route_change.await.expect("route watcher");

    let new = leader(&group, &admin).await;
    assert_ne!(new, old, "the killed member can't lead");
    let new_addr = group.broker_addr(new);
    eprintln!(
        "name server: dead leader out of the route after {}, new leader {} routed as the master after {}",
        when(route.master_gone),
        route
            .new_master
            .as_ref()
            .map(|(_, a)| a.as_str())
            .unwrap_or("-"),
        when(route.new_master.as_ref().map(|(t, _)| *t))
    );
    eprintln!(
        "the kill came {} after the producer's last periodic route refresh; \
         {} SEND_OK ({acked_before} before the kill), failures {:?}",
        secs(since_refresh(client_started, killed)),
        tally.acked.len(),
        tally.failures
    );
    eprintln!(
        "stock client: leader kill → first SEND_OK after {}",
        secs(first_ok)
    );

    // Every SEND_OK key is held exactly once, by the new leader and by the
    // other survivor (which may still be applying the tail).
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != old)
        .map(|i| group.broker_addr(i))
        .collect();
    for addr in &survivors {
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let seen = support::queues::count_keys(&admin, addr, &topic, QUEUES).await;
            let all = tally.acked.iter().all(|(k, _, _)| seen.contains_key(k));
            if all || Instant::now() > deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let wrong: Vec<(&String, usize)> = tally
            .acked
            .iter()
            .map(|(k, _, _)| (k, seen.get(k).copied().unwrap_or(0)))
            .filter(|(_, n)| *n != 1)
            .collect();
        assert!(
            wrong.is_empty(),
            "on {addr}{}: {} of {} SEND_OK keys not held exactly once (key, copies), e.g. {:?}",
            if *addr == new_addr {
                " (new leader)"
            } else {
                ""
            },
            wrong.len(),
            tally.acked.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
    match Arc::try_unwrap(producer) {
        Ok(mut producer) => producer.shutdown().await,
        Err(_) => panic!("the send task still holds the producer"),
    }
}
