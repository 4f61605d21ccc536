//! Raft groups (RocketMQ's DLedger mode) with real broker processes killed
//! under load. Invariant: a send answered SEND_OK is on a majority, so it
//! survives the loss of any one member, the leader included; consumers
//! never see a message that is later lost; every member ends with the same
//! consume queues.
//!
//! Counting rule: every send has a fresh key. SEND_OK keys must be read back
//! exactly once from every member; keys whose send ended ambiguously (a
//! timeout, a closed connection, FLUSH_SLAVE_TIMEOUT) at most once.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_client::producer::Message;
use meridian_client::{Admin, Producer};
use support::cluster::BrokerGroup;
use support::raft::{
    add_member, leader, raft_cities, raft_group, raft_group_via_proxies, raft_group_with_joiners,
    start_load,
};

const TOPIC: &str = "raft-replicated";
const QUEUES: i32 = 4;
/// Trials per failure case: 10 in the test suite, more when
/// `MERIDIAN_TRIALS` says so (`bench/soak.sh`).
fn trials() -> usize {
    support::trials()
}

async fn runtime(admin: &Admin, addr: &str) -> Option<std::collections::BTreeMap<String, String>> {
    admin.runtime_info(addr).await.ok()
}

/// Wait until every running member has applied as far as the leader and
/// knows the topic.
async fn wait_in_step(group: &BrokerGroup, admin: &Admin) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut applied = Vec::new();
        for i in (0..group.len()).filter(|&i| group.is_running(i)) {
            let rt = runtime(admin, &group.broker_addr(i)).await;
            let topic = admin
                .topic_stats(&group.broker_addr(i), TOPIC)
                .await
                .is_ok();
            // Applied as far, and logs ending at the same place: a
            // rejoined member's own tail is gone.
            applied.push((
                rt.and_then(|rt| {
                    Some((
                        rt.get("raftVisibleOffset").cloned()?,
                        rt.get("raftWriteOffset").cloned()?,
                    ))
                }),
                topic,
            ));
        }
        let first = applied[0].0.clone();
        if first.is_some() && applied.iter().all(|(a, t)| *a == first && *t) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members never got in step: {applied:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per queue, the keys in queue order, read from member `i` by pulls.
async fn queues_of(group: &BrokerGroup, admin: &Admin, i: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        let msgs = support::queues::read_queue(admin, &group.broker_addr(i), TOPIC, q).await;
        out.push(
            msgs.iter()
                .map(|m| m.keys().next().unwrap_or_default().to_string())
                .collect(),
        );
    }
    out
}

/// The counting rule, and equal queues on every running member.
async fn check_members(group: &BrokerGroup, admin: &Admin, acked: &[String], ambiguous: &[String]) {
    wait_in_step(group, admin).await;
    let running: Vec<usize> = (0..group.len()).filter(|&i| group.is_running(i)).collect();
    let reference = queues_of(group, admin, running[0]).await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for k in reference.iter().flatten() {
        *seen.entry(k.as_str()).or_insert(0) += 1;
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|k| seen.get(k.as_str()) != Some(&1))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages not stored exactly once, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<&String> = ambiguous
        .iter()
        .filter(|k| seen.get(k.as_str()).is_some_and(|&n| n > 1))
        .collect();
    assert!(twice.is_empty(), "ambiguous sends stored twice: {twice:?}");
    for &i in &running[1..] {
        assert_eq!(
            queues_of(group, admin, i).await,
            reference,
            "member {i}'s queues differ from member {}'s",
            running[0]
        );
    }
}

async fn create_topic(group: &BrokerGroup, admin: &Admin) {
    leader(group, admin).await;
    group.create_topic(TOPIC, 4);
    wait_in_step(group, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_name_the_leader_as_master_and_followers_by_index() {
    let group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let l = leader(&group, &admin).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let route = admin.route(TOPIC).await.unwrap().expect("route");
        let addrs = &route.broker_datas[0].broker_addrs;
        let expect: std::collections::HashMap<i64, String> = (0..3)
            .map(|i| {
                let id = if i == l { 0 } else { i as i64 + 1 };
                (id, group.broker_addr(i))
            })
            .collect();
        let got: std::collections::HashMap<i64, String> =
            addrs.iter().map(|(k, v)| (*k, v.clone())).collect();
        if got == expect {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "route {got:?}, expected {expect:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A follower refuses sends and names the leader.
    let follower = (l + 1) % 3;
    let producer = Producer::new(&ns, "raft-producer");
    let msg = Message {
        topic: TOPIC.into(),
        body: Bytes::from_static(b"x"),
        ..Default::default()
    };
    let e = producer
        .send_to(&group.broker_addr(follower), "broker-a", 0, &msg)
        .await
        .expect_err("a follower took a send");
    assert!(e.to_string().contains(&format!("n{l} leads")), "{e}");
    // Through the route, a send reaches the leader and is read on every member.
    let r = producer.send(&msg).await.unwrap();
    assert_eq!(r.status, "SEND_OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_under_load_loses_nothing_acknowledged() {
    let mut group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let (mut acked, mut ambiguous) = (Vec::new(), Vec::new());
    let mut recoveries = Vec::new();
    for trial in 0..trials() {
        let l = leader(&group, &admin).await;
        let load = start_load(&ns, TOPIC, 16, &format!("kl{trial}"));
        while load.acked_count() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::task::block_in_place(|| group.kill9(l));
        let killed = Instant::now();
        // Writes resume once a new leader is elected and registered.
        let first_ok = load
            .first_ack_after(killed, &format!("in trial {trial} after the leader died"))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tally = load.stop().await;
        let recovery = first_ok - killed;
        recoveries.push(recovery);
        eprintln!(
            "trial {trial}: killed leader n{l}; first SEND_OK from the new leader after {recovery:?}; \
             {} acknowledged, failures {:?}",
            tally.acked.len(),
            tally.failed
        );
        acked.extend(tally.acked.into_iter().map(|a| a.0));
        ambiguous.extend(tally.ambiguous);
        check_members(&group, &admin, &acked, &ambiguous).await;
        // The old leader comes back as a follower and catches up.
        tokio::task::block_in_place(|| group.start_broker(l));
        check_members(&group, &admin, &acked, &ambiguous).await;
    }
    recoveries.sort();
    eprintln!(
        "leader kill → first SEND_OK over {} trials: min {:?}, median {:?}, p90 {:?}, max {:?}",
        trials(),
        recoveries[0],
        recoveries[trials() / 2],
        recoveries[trials() * 9 / 10],
        recoveries[trials() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_killed_under_load_writes_go_on() {
    let mut group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let (mut acked, mut ambiguous) = (Vec::new(), Vec::new());
    for trial in 0..trials() {
        let l = leader(&group, &admin).await;
        let f = (l + 1 + trial % 2) % 3;
        let load = start_load(&ns, TOPIC, 16, &format!("kf{trial}"));
        while load.acked_count() < 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::task::block_in_place(|| group.kill9(f));
        let killed = Instant::now();
        let before = load.acked_count();
        while load.acked_count() < before + 300 {
            assert!(
                killed.elapsed() < Duration::from_secs(20),
                "trial {trial}: writes stopped with one follower down"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let tally = load.stop().await;
        let mut times: Vec<Instant> = tally.acked.iter().map(|a| a.1).collect();
        times.sort();
        let gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        eprintln!(
            "trial {trial}: killed follower n{f}; longest gap between SEND_OKs {gap:?}; failures {:?}",
            tally.failed
        );
        acked.extend(tally.acked.into_iter().map(|a| a.0));
        ambiguous.extend(tally.ambiguous);
        check_members(&group, &admin, &acked, &ambiguous).await;
        tokio::task::block_in_place(|| group.start_broker(f));
        check_members(&group, &admin, &acked, &ambiguous).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_group_killed_and_restarted_keeps_everything_acknowledged() {
    let mut group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let (mut acked, mut ambiguous) = (Vec::new(), Vec::new());
    for trial in 0..trials() {
        leader(&group, &admin).await;
        let load = start_load(&ns, TOPIC, 16, &format!("rg{trial}"));
        while load.acked_count() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::task::block_in_place(|| {
            for i in 0..3 {
                group.kill9(i);
            }
        });
        let tally = load.stop().await;
        acked.extend(tally.acked.into_iter().map(|a| a.0));
        ambiguous.extend(tally.ambiguous);
        let killed = Instant::now();
        tokio::task::block_in_place(|| {
            for i in 0..3 {
                group.start_broker(i);
            }
        });
        let producer = Producer::new(&ns, "raft-producer");
        let msg = Message {
            topic: TOPIC.into(),
            body: Bytes::from(format!("after restart {trial}")),
            keys: vec![format!("rg{trial}-after")],
            ..Default::default()
        };
        let deadline = killed + Duration::from_secs(30);
        loop {
            match producer.send(&msg).await {
                Ok(r) if r.status == "SEND_OK" => break,
                _ => assert!(
                    Instant::now() < deadline,
                    "trial {trial}: no SEND_OK after restart"
                ),
            }
        }
        acked.push(format!("rg{trial}-after"));
        eprintln!(
            "trial {trial}: whole group restarted; first SEND_OK {:?} after the kill; failures {:?}",
            killed.elapsed(),
            tally.failed
        );
        check_members(&group, &admin, &acked, &ambiguous).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_cut_off_from_the_majority_acknowledges_nothing_and_loses_its_tail() {
    let (mut group, links) = raft_group_via_proxies(0);
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let (mut acked, mut ambiguous) = (Vec::new(), Vec::new());
    for trial in 0..trials() {
        let l = leader(&group, &admin).await;
        let old_leader_host = group.broker_addr(l);
        let load = start_load(&ns, TOPIC, 16, &format!("pl{trial}"));
        while load.acked_count() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Cut the leader off from both followers; clients and the name
        // server still reach it.
        for j in (0..3).filter(|&j| j != l) {
            links[l][j].as_ref().unwrap().blackhole();
            links[j][l].as_ref().unwrap().blackhole();
        }
        let cut = Instant::now();
        let deadline = cut + Duration::from_secs(30);
        let first_ok = loop {
            let t = load
                .tally
                .lock()
                .unwrap()
                .acked
                .iter()
                .find(|a| a.1 > cut + Duration::from_millis(200) && !a.2.is_empty())
                .map(|a| a.1);
            if let Some(t) = t {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "trial {trial}: no SEND_OK after the cut"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let tally = load.stop().await;
        // Nothing the cut-off leader stored after the cut was acknowledged.
        let late: Vec<&(String, Instant, String)> = tally
            .acked
            .iter()
            .filter(|a| a.1 > cut + Duration::from_millis(200))
            .filter(|a| {
                meridian_protocol::message_id::decode_offset_msg_id(&a.2)
                    .map(|(host, _)| host.to_string() == old_leader_host)
                    .unwrap_or(false)
            })
            .collect();
        assert!(
            late.is_empty(),
            "trial {trial}: the cut-off leader acknowledged {late:?}"
        );
        eprintln!(
            "trial {trial}: cut off leader n{l}; first SEND_OK from the new leader after {:?}; failures {:?}",
            first_ok - cut,
            tally.failed
        );
        acked.extend(tally.acked.into_iter().map(|a| a.0));
        ambiguous.extend(tally.ambiguous);
        // Heal: the old leader rejoins as a follower and drops its tail.
        for j in (0..3).filter(|&j| j != l) {
            links[l][j].as_ref().unwrap().heal();
            links[j][l].as_ref().unwrap().heal();
        }
        check_members(&group, &admin, &acked, &ambiguous).await;
    }
    // Rejoining leaders cut what they had written alone.
    assert!(
        group.logs().contains("uncommitted commit-log tail cut"),
        "no rejoining leader cut its unreplicated tail"
    );
    let _ = &mut group;
}

/// Consumer offsets travel through the Raft log: a commit that was
/// answered is on a majority, so after any number of leader kills a group
/// that resumes from its committed offsets on the new leader reads every
/// message once — nothing again, nothing skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_are_exact_across_leader_kills() {
    let mut group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let producer = Producer::new(&ns, "offset-producer");
    let consumer_group = "exact-offsets";
    let (mut acked, mut ambiguous) = (Vec::new(), Vec::new());
    let mut received: HashMap<String, usize> = HashMap::new();
    for trial in 0..trials() {
        let l = leader(&group, &admin).await;
        let addr = group.broker_addr(l);
        for n in 0..40 {
            let key = format!("o{trial}-{n}");
            let msg = Message {
                topic: TOPIC.to_string(),
                body: Bytes::from(format!("payload {key}")),
                keys: vec![key.clone()],
                ..Default::default()
            };
            match producer.send(&msg).await {
                Ok(r) if r.status == "SEND_OK" => acked.push(key),
                _ => ambiguous.push(key),
            }
        }
        // Everything there is, from the committed offsets, committing
        // after each pull as a consumer does.
        let mut pulled = 0;
        for q in 0..QUEUES {
            let mut offset = admin
                .query_consumer_offset(&addr, consumer_group, TOPIC, q)
                .await
                .unwrap()
                .unwrap_or(0);
            loop {
                let (_, next, msgs) = admin
                    .pull(&addr, consumer_group, TOPIC, q, offset, 32)
                    .await
                    .unwrap();
                if msgs.is_empty() {
                    break;
                }
                for m in &msgs {
                    let key = m.keys().next().unwrap_or_default().to_string();
                    *received.entry(key).or_insert(0) += 1;
                }
                pulled += msgs.len();
                offset = next;
                admin
                    .update_consumer_offset(&addr, consumer_group, TOPIC, q, offset)
                    .await
                    .unwrap();
            }
        }
        eprintln!("trial {trial}: leader n{l}, {pulled} pulled and committed; killing it");
        tokio::task::block_in_place(|| group.kill9(l));
        let next = leader(&group, &admin).await;
        assert_ne!(next, l);
        tokio::task::block_in_place(|| group.start_broker(l));
    }
    // What the last kill left: read from the last leader's offsets.
    let l = leader(&group, &admin).await;
    let addr = group.broker_addr(l);
    for q in 0..QUEUES {
        let offset = admin
            .query_consumer_offset(&addr, consumer_group, TOPIC, q)
            .await
            .unwrap()
            .unwrap_or(0);
        let (_, _, msgs) = admin
            .pull(&addr, consumer_group, TOPIC, q, offset, 32)
            .await
            .unwrap();
        for m in &msgs {
            let key = m.keys().next().unwrap_or_default().to_string();
            *received.entry(key).or_insert(0) += 1;
        }
    }
    let again: Vec<(&String, &usize)> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        again.is_empty(),
        "{} messages read again after a leader change, e.g. {:?}",
        again.len(),
        &again[..again.len().min(5)]
    );
    let skipped: Vec<&String> = acked
        .iter()
        .filter(|k| !received.contains_key(*k))
        .collect();
    assert!(skipped.is_empty(), "never read: {skipped:?}");
    let strays: Vec<&String> = received
        .keys()
        .filter(|k| !acked.contains(k) && !ambiguous.contains(k))
        .collect();
    assert!(strays.is_empty(), "read but never sent: {strays:?}");
}

/// The settings of `group` on the member at `addr`, if it has an entry.
async fn group_settings(
    admin: &Admin,
    addr: &str,
    group: &str,
) -> Option<meridian_protocol::body::SubscriptionGroupConfig> {
    admin
        .subscription_groups(addr)
        .await
        .expect("subscription groups")
        .subscription_group_table
        .remove(group)
}

/// SIGKILL member `l` at once, and how long after `answered` that was.
fn kill_at_once(group: &mut BrokerGroup, l: usize, answered: Instant) -> Duration {
    tokio::task::block_in_place(|| group.kill9(l));
    answered.elapsed()
}

/// Invariant: a subscription-group change the leader answered is committed
/// through the Raft log, so the next leader has it even when the leader is
/// killed the moment it answered — far inside the 3 s in which followers
/// used to copy the table. The change shows where a consumer sees it: a
/// pull by a disabled group is refused on the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_group_changes_survive_a_leader_killed_as_it_answers() {
    let mut group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let consumer_group = "settings-in-the-log";

    // updateSubGroup on the leader, killed as soon as the command returns.
    let l = leader(&group, &admin).await;
    let addr = group.broker_addr(l);
    admin
        .update_consumer_offset(&addr, consumer_group, TOPIC, 0, 0)
        .await
        .expect("commit an offset");
    let out = group.admin(&[
        "updateSubGroup",
        "-g",
        consumer_group,
        "-b",
        &addr,
        "-s",
        "false",
        "-q",
        "3",
    ]);
    let killed_after = kill_at_once(&mut group, l, Instant::now());
    assert!(out.contains("success"), "{out}");
    assert!(
        killed_after < Duration::from_millis(500),
        "the leader was killed {killed_after:?} after the answer: too late to tell"
    );
    let next = leader(&group, &admin).await;
    assert_ne!(next, l);
    let next_addr = group.broker_addr(next);
    let cfg = group_settings(&admin, &next_addr, consumer_group).await;
    assert!(
        cfg.as_ref()
            .is_some_and(|c| !c.consume_enable && c.retry_queue_nums == 3),
        "the new leader n{next} lacks the settings n{l} answered {killed_after:?} before it was killed: {cfg:?}"
    );
    match admin
        .pull(&next_addr, consumer_group, TOPIC, 0, 0, 32)
        .await
    {
        Err(meridian_client::ClientError::Broker { code, .. }) => {
            assert_eq!(code, meridian_protocol::codes::response_code::NO_PERMISSION)
        }
        other => panic!(
            "a disabled group's pull on the new leader was not refused: {:?}",
            other.map(|(code, _, _)| code)
        ),
    }
    let offset = admin
        .query_consumer_offset(&next_addr, consumer_group, TOPIC, 0)
        .await
        .expect("query the offset");
    assert_eq!(offset, Some(0), "the group's committed offset on n{next}");

    // deleteSubGroup -r on the new leader, killed the same way: the next
    // leader has neither the group's entry nor its offsets.
    tokio::task::block_in_place(|| group.start_broker(l));
    wait_in_step(&group, &admin).await;
    let out = group.admin(&[
        "deleteSubGroup",
        "-g",
        consumer_group,
        "-b",
        &next_addr,
        "-r",
        "true",
    ]);
    let killed_after = kill_at_once(&mut group, next, Instant::now());
    assert!(out.contains("success"), "{out}");
    assert!(
        killed_after < Duration::from_millis(500),
        "the leader was killed {killed_after:?} after the answer: too late to tell"
    );
    let last = leader(&group, &admin).await;
    assert_ne!(last, next);
    let last_addr = group.broker_addr(last);
    let cfg = group_settings(&admin, &last_addr, consumer_group).await;
    assert!(
        cfg.is_none(),
        "the new leader n{last} still has the group n{next} deleted {killed_after:?} before it was killed: {cfg:?}"
    );
    let offset = admin
        .query_consumer_offset(&last_addr, consumer_group, TOPIC, 0)
        .await
        .expect("query the offset");
    assert_eq!(
        offset, None,
        "the deleted group's offset is still on n{last}"
    );
    let (code, _, _) = admin
        .pull(&last_addr, consumer_group, TOPIC, 0, 0, 32)
        .await
        .expect("a pull once the group's settings are gone");
    assert_ne!(code, meridian_protocol::codes::response_code::NO_PERMISSION);
    // And every member holds the same table: the one restarted after the
    // first kill took the records it missed from the log.
    tokio::task::block_in_place(|| group.start_broker(next));
    wait_in_step(&group, &admin).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..group.len() {
        loop {
            let cfg = group_settings(&admin, &group.broker_addr(i), consumer_group).await;
            if cfg.is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member n{i} still has the deleted group: {cfg:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Five members in three cities, two + two + one; links between cities
/// carry 35 ms each way, as across a region.
const CITIES: [usize; 5] = [0, 0, 1, 1, 2];
const CITY_DELAY_MS: u64 = 35;

fn city_members(city: usize) -> Vec<usize> {
    (0..CITIES.len()).filter(|&i| CITIES[i] == city).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_in_three_cities_keep_writing_without_a_whole_city() {
    let (mut group, _links) = raft_cities(&CITIES, CITY_DELAY_MS, "");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let l = leader(&group, &admin).await;
    // raftStatus: where each member is, and that any one city may go.
    let rt = runtime(&admin, &group.broker_addr(l)).await.unwrap();
    for (i, c) in CITIES.iter().enumerate() {
        assert_eq!(rt.get(&format!("raftZone.n{i}")), Some(&format!("city{c}")));
    }
    for c in 0..3 {
        assert_eq!(
            rt.get(&format!("raftZoneLossKeepsMajority.city{c}"))
                .map(String::as_str),
            Some("true"),
            "{rt:?}"
        );
    }
    // The leader's city when it has two members: the hardest loss.
    let city = if city_members(CITIES[l]).len() == 2 {
        CITIES[l]
    } else {
        0
    };
    let load = start_load(&ns, TOPIC, 16, "city");
    while load.acked_count() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = Instant::now();
    for i in city_members(city) {
        tokio::task::block_in_place(|| group.kill9(i));
    }
    let resumed = load.first_ack_after(lost, "after a city was lost").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.stop().await;
    eprintln!(
        "leader n{l}; city {city} ({:?}) lost; first SEND_OK after {:?}; {} acknowledged, failures {:?}",
        city_members(city),
        resumed - lost,
        tally.acked.len(),
        tally.failed
    );
    let acked: Vec<String> = tally.acked.into_iter().map(|a| a.0).collect();
    check_members(&group, &admin, &acked, &tally.ambiguous).await;
    // The city comes back and catches up.
    for i in city_members(city) {
        tokio::task::block_in_place(|| group.start_broker(i));
    }
    check_members(&group, &admin, &acked, &tally.ambiguous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_city_and_a_cut_between_the_others_stop_writes_until_repaired() {
    let (mut group, links) = raft_cities(&CITIES, CITY_DELAY_MS, "");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let load = start_load(&ns, TOPIC, 16, "cut");
    while load.acked_count() < 200 {
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(20)));
    }
    // City 0 goes and cities 1 and 2 lose each other: no three members
    // can reach each other, so nobody may acknowledge anything.
    let cut = Instant::now();
    for i in city_members(0) {
        tokio::task::block_in_place(|| group.kill9(i));
    }
    let between = |f: &dyn Fn(&support::netproxy::NetProxy)| {
        for i in city_members(1) {
            for j in city_members(2) {
                f(links[i][j].as_ref().unwrap());
                f(links[j][i].as_ref().unwrap());
            }
        }
    };
    tokio::task::block_in_place(|| between(&|p| p.blackhole()));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let healed = Instant::now();
    tokio::task::block_in_place(|| between(&|p| p.heal()));
    let resumed = load
        .first_ack_after(healed, "after the cut was repaired")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.stop().await;
    // Sends already committed when the cut came may still be answered
    // within the leader's lease (800 ms); nothing after that.
    let lease_end = cut + Duration::from_secs(2);
    let during: Vec<&String> = tally
        .acked
        .iter()
        .filter(|a| a.1 > lease_end && a.1 < healed)
        .map(|a| &a.0)
        .collect();
    eprintln!(
        "cut at 0; last SEND_OK before repair at {:?}; first after repair {:?} later; {} acknowledged, failures {:?}",
        tally.acked.iter().map(|a| a.1).filter(|&t| t < healed).max().map(|t| t.saturating_duration_since(cut)),
        resumed - healed,
        tally.acked.len(),
        tally.failed
    );
    assert!(
        during.is_empty(),
        "{} sends acknowledged with no majority reachable, e.g. {:?}",
        during.len(),
        &during[..during.len().min(5)]
    );
    let acked: Vec<String> = tally.acked.into_iter().map(|a| a.0).collect();
    for i in city_members(0) {
        tokio::task::block_in_place(|| group.start_broker(i));
    }
    check_members(&group, &admin, &acked, &tally.ambiguous).await;
}

/// Membership changes at run time: a group of three grows to five under
/// load (`addRaftMember`: each new member gets the whole log as a learner,
/// then votes), after which it survives losing two of its first members,
/// the leader among them; a dead member is then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_grows_from_three_to_five_under_load_and_then_survives_losing_two() {
    // The new members come later.
    let (mut group, ports) = raft_group_with_joiners(3, 5);
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let load = start_load(&ns, TOPIC, 16, "grow");
    while load.acked_count() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| {
        group.start_broker(3);
        group.start_broker(4);
    });
    let l = leader(&group, &admin).await;
    let via = group.broker_addr(l);
    for (n, port) in ports.iter().enumerate().skip(3) {
        let out = tokio::task::block_in_place(|| add_member(&ns, &via, n, *port));
        assert!(out.status.success(), "{out:?}");
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let rt = runtime(&admin, &group.broker_addr(l)).await.unwrap();
    assert_eq!(
        rt.get("raftVoters").map(String::as_str),
        Some("n0,n1,n2,n3,n4"),
        "{rt:?}"
    );
    let before = load.acked_count();
    while load.acked_count() < before + 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two of the first three go, the leader among them: three of five
    // remain, a majority.
    let other = (0..3).find(|&i| i != l).unwrap();
    let killed = Instant::now();
    tokio::task::block_in_place(|| {
        group.kill9(l);
        group.kill9(other);
    });
    let resumed = load
        .first_ack_after(killed, "after two of five members died")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.stop().await;
    eprintln!(
        "grew to five; killed n{l} and n{other}; first SEND_OK after {:?}; {} acknowledged, failures {:?}",
        resumed - killed,
        tally.acked.len(),
        tally.failed
    );
    let acked: Vec<String> = tally.acked.into_iter().map(|a| a.0).collect();
    check_members(&group, &admin, &acked, &tally.ambiguous).await;
    let tally_ambiguous = tally.ambiguous;
    // A dead member leaves the group for good, under load.
    let load = start_load(&ns, TOPIC, 16, "shrink");
    while load.acked_count() < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now_leader = leader(&group, &admin).await;
    let out = tokio::task::block_in_place(|| {
        group.admin(&[
            "removeRaftMember",
            "-b",
            &group.broker_addr(now_leader),
            "-i",
            &format!("n{other}"),
        ])
    });
    eprintln!("{}", out.trim());
    let rt = runtime(&admin, &group.broker_addr(now_leader))
        .await
        .unwrap();
    let voters = rt.get("raftVoters").cloned().unwrap_or_default();
    assert_eq!(voters.split(',').count(), 4, "{voters}");
    assert!(!voters.contains(&format!("n{other}")), "{voters}");
    let removed = Instant::now();
    load.first_ack_after(removed, "after a member was removed")
        .await;
    let tally = load.stop().await;
    let mut all = acked;
    all.extend(tally.acked.into_iter().map(|a| a.0));
    let mut ambiguous = tally.ambiguous;
    ambiguous.extend(tally_ambiguous);
    check_members(&group, &admin, &all, &ambiguous).await;
}

/// A member whose disk is lost after the leader's retention deleted old
/// segments (and purged their Raft entries) comes back empty and is
/// re-seeded: its log starts at the leader's oldest segment, it holds every
/// message from there like the others, and it has the group's consumer
/// offsets, whose records went with the purged segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_whose_disk_was_lost_after_a_purge_is_reseeded() {
    reseeded_after_a_purge(true).await;
}

/// A member that was down while the leader's retention purged entries it
/// lacks, but still holds records of its own (far behind, not empty),
/// discards them and is re-seeded the same way, with no one emptying its
/// store by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_far_behind_member_is_reseeded_in_place_after_a_purge() {
    reseeded_after_a_purge(false).await;
}

/// Kill a follower (holding some messages), make the leader purge past
/// what it has, bring it back (with its store deleted if `lose_disk`), and
/// check it was re-seeded.
async fn reseeded_after_a_purge(lose_disk: bool) {
    // 1 MiB segments, and retention keeping none past the newest, at any
    // hour.
    let every_hour = (0..24)
        .map(|h| format!("{h:02}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut group = raft_group(&format!(
        "mappedFileSizeCommitLog=1048576\nmaxMessageSize=65536\nfileReservedTime=0\ndeleteWhen={every_hour}"
    ));
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let l = leader(&group, &admin).await;
    let leader_addr = group.broker_addr(l);
    admin
        .update_consumer_offset(&leader_addr, "kept-group", TOPIC, 0, 3)
        .await
        .unwrap();
    let f = (l + 1) % 3;
    let producer = Producer::new(&ns, "reseed-producer");
    let mut acked = Vec::new();
    let body = "x".repeat(4000);
    // Messages every member holds before the follower goes down.
    for n in 0..50 {
        let key = format!("early-{n}");
        let msg = Message {
            topic: TOPIC.to_string(),
            body: Bytes::from(format!("{key} {body}")),
            keys: vec![key.clone()],
            ..Default::default()
        };
        let r = producer
            .send(&msg)
            .await
            .expect("send before the follower stops");
        assert_eq!(r.status, "SEND_OK");
        acked.push(key);
    }
    wait_in_step(&group, &admin).await;
    let held_before: i64 = runtime(&admin, &group.broker_addr(f))
        .await
        .unwrap()
        .get("commitLogMaxOffset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        held_before > 50 * 4000,
        "the follower holds the first messages"
    );
    tokio::task::block_in_place(|| group.kill9(f));
    if lose_disk {
        std::fs::remove_dir_all(group.store_dir(f)).unwrap();
    }
    // Enough to fill several segments; retention then deletes the oldest.
    for n in 0..1200 {
        let key = format!("rs-{n}");
        let msg = Message {
            topic: TOPIC.to_string(),
            body: Bytes::from(format!("{key} {body}")),
            keys: vec![key.clone()],
            ..Default::default()
        };
        if let Ok(r) = producer.send(&msg).await {
            if r.status == "SEND_OK" {
                acked.push(key);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let purged_from = loop {
        let rt = runtime(&admin, &leader_addr).await.unwrap();
        let min: i64 = rt
            .get("commitLogMinOffset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if min > 0 {
            break min;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never deleted a segment"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::task::block_in_place(|| group.start_broker(f));
    wait_in_step(&group, &admin).await;
    let rt = runtime(&admin, &group.broker_addr(f)).await.unwrap();
    let min: i64 = rt
        .get("commitLogMinOffset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        min >= purged_from && min > 0,
        "re-seeded at {min}, the leader had deleted up to {purged_from}"
    );
    assert_eq!(
        admin
            .query_consumer_offset(&group.broker_addr(f), "kept-group", TOPIC, 0)
            .await
            .unwrap(),
        Some(3),
        "the group's offset came with the snapshot"
    );
    // What the re-seeded member holds is what the leader holds from there.
    for q in 0..QUEUES {
        let mine = support::queues::read_queue(&admin, &group.broker_addr(f), TOPIC, q).await;
        let theirs = support::queues::read_queue(&admin, &leader_addr, TOPIC, q).await;
        assert!(
            !mine.is_empty(),
            "queue {q} of the re-seeded member is empty"
        );
        let from = mine[0].queue_offset;
        let keys = |v: &[meridian_protocol::message::MessageExt]| {
            v.iter()
                .filter(|m| m.queue_offset >= from)
                .map(|m| m.keys().next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&mine), keys(&theirs), "queue {q}");
    }
    eprintln!(
        "{} acknowledged; the follower held {held_before} bytes; the leader deleted up to \
         {purged_from}; the member was re-seeded at {min}",
        acked.len()
    );
}

/// A leader killed while a member is being added: whatever the change had
/// reached (nothing, a learner, a joint configuration), the group goes on
/// under its new leader, the same command run again completes the change,
/// and every acknowledged message is on every running member once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_during_a_membership_change_leaves_the_change_to_finish() {
    let (mut group, ports) = raft_group_with_joiners(3, 4);
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let load = start_load(&ns, TOPIC, 16, "midchange");
    while load.acked_count() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| group.start_broker(3));
    let l = leader(&group, &admin).await;
    let (ns_for_add, via, port) = (ns.clone(), group.broker_addr(l), ports[3]);
    let first = tokio::task::spawn_blocking(move || add_member(&ns_for_add, &via, 3, port));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let killed = Instant::now();
    tokio::task::block_in_place(|| group.kill9(l));
    let first = first.await.unwrap();
    eprintln!(
        "first addRaftMember, leader n{l} killed 30 ms in: {}{}",
        String::from_utf8_lossy(&first.stdout).trim(),
        String::from_utf8_lossy(&first.stderr).trim()
    );
    load.first_ack_after(killed, "after the leader died mid-change")
        .await;
    // The same command again finishes what the first one started.
    let now = leader(&group, &admin).await;
    let via = group.broker_addr(now);
    let out = tokio::task::block_in_place(|| add_member(&ns, &via, 3, ports[3]));
    assert!(out.status.success(), "{out:?}");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    let rt = runtime(&admin, &group.broker_addr(now)).await.unwrap();
    assert_eq!(
        rt.get("raftVoters").map(String::as_str),
        Some("n0,n1,n2,n3"),
        "{rt:?}"
    );
    let tally = load.stop().await;
    let acked: Vec<String> = tally.acked.into_iter().map(|a| a.0).collect();
    check_members(&group, &admin, &acked, &tally.ambiguous).await;
    // The old leader comes back into the group of four.
    tokio::task::block_in_place(|| group.start_broker(l));
    check_members(&group, &admin, &acked, &tally.ambiguous).await;
}
