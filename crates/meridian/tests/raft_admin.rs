//! `meridian admin raftStatus` and `transferLeader` against a Raft group of
//! three broker processes: the status table agrees with itself (one leader,
//! one term, one commit index), a transfer under load moves the leadership
//! and the route's master within seconds without losing or doubling an
//! acknowledged message, and bad requests fail with a reason.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_client::producer::Message;
use meridian_client::{Admin, Producer};
use serde_json::Value;
use support::cluster::{BrokerGroup, Cluster, ClusterOpts};
use support::raft::{leader, raft_group, start_load};

const TOPIC: &str = "raft-admin";
const QUEUES: i32 = 4;

/// `meridian admin -n <namesrv> <args>`, failing or not: (success, stdout,
/// stderr).
fn admin_output(namesrv: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["admin", "-n", namesrv])
        .args(args)
        .output()
        .expect("run meridian admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `raftStatus --json <args>`: one object per member.
fn raft_status(group: &BrokerGroup, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "raftStatus"];
    all.extend_from_slice(args);
    let out = group.admin(&all);
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("raftStatus printed no JSON ({e}):\n{out}"));
    v["members"].as_array().expect("members").clone()
}

/// Every member has applied as far as the others and its log ends at the
/// same offset.
async fn wait_in_step(group: &BrokerGroup, admin: &Admin) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ends = Vec::new();
        for i in 0..3 {
            let rt = admin.runtime_info(&group.broker_addr(i)).await.ok();
            ends.push(rt.and_then(|rt| {
                Some((
                    rt.get("raftVisibleOffset").cloned()?,
                    rt.get("raftWriteOffset").cloned()?,
                ))
            }));
        }
        if ends[0].is_some() && ends.iter().all(|e| *e == ends[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members never got in step: {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_topic(group: &BrokerGroup, admin: &Admin) {
    leader(group, admin).await;
    group.create_topic(TOPIC, 4);
    // Followers apply the topic from the Raft log once it is committed and
    // they have caught up. A member that led without the topic would
    // register the group without it, and the route would lose the topic:
    // wait until every member has it.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..3 {
        while admin
            .topic_stats(&group.broker_addr(i), TOPIC)
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "member {i} never got the topic");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_in_step(group, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_status_shows_one_leader_and_two_followers_in_one_term() {
    let group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let l = leader(&group, &admin).await;
    let producer = Producer::new(&ns, "raft-admin-producer");
    for i in 0..20 {
        let msg = Message {
            topic: TOPIC.into(),
            body: Bytes::from(format!("status {i}")),
            ..Default::default()
        };
        assert_eq!(producer.send(&msg).await.unwrap().status, "SEND_OK");
    }
    // Followers learn the commit index with the next append or heartbeat,
    // and every member must be registered: poll until the view settles.
    let deadline = Instant::now() + Duration::from_secs(20);
    let members = loop {
        let members =
            tokio::task::block_in_place(|| raft_status(&group, &["-c", "DefaultCluster"]));
        let leaders: Vec<&Value> = members.iter().filter(|m| m["role"] == "Leader").collect();
        let settled = members.len() == 3
            && leaders.len() == 1
            && members.iter().filter(|m| m["role"] == "Follower").count() == 2
            && members.iter().all(|m| {
                m["term"] == leaders[0]["term"]
                    && m["commitIndex"] == leaders[0]["commitIndex"]
                    && m["appliedIndex"] == leaders[0]["commitIndex"]
                    && m["leaderId"] == leaders[0]["selfId"]
                    && m["matchIndex"] == leaders[0]["lastLogIndex"]
            });
        if settled {
            break members;
        }
        assert!(
            Instant::now() < deadline,
            "raftStatus never showed one leader and two followers in step: {members:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lead = members.iter().find(|m| m["role"] == "Leader").unwrap();
    assert_eq!(lead["addr"], group.broker_addr(l));
    assert_eq!(lead["selfId"], format!("n{l}"));
    assert_eq!(lead["brokerId"], 0);
    assert!(lead["commitIndex"].as_i64().unwrap() > 0, "{lead}");
    for m in &members {
        assert_eq!(m["group"], "broker-a");
        assert_eq!(m["reachable"], true);
        assert_eq!(m["lagBytes"], 0, "{m}");
        assert_eq!(m["lagSeconds"], 0.0, "{m}");
    }

    // The table, and -b with any member for that member's group.
    let follower = group.broker_addr((l + 1) % 3);
    let table = tokio::task::block_in_place(|| group.admin(&["raftStatus", "-b", &follower]));
    eprintln!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("#Broker Name"), "{table}");
    assert!(lines[0].contains("#Lag(s)"), "{table}");
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(lines.iter().filter(|l| l.contains(" Leader ")).count(), 1);
    assert_eq!(lines.iter().filter(|l| l.contains(" Follower ")).count(), 2);

    // An address where nothing answers, and that the name server does not
    // list: nothing to show, and the command says so.
    let nobody = format!("127.0.0.1:{}", support::free_port());
    let (ok, out, err) =
        tokio::task::block_in_place(|| admin_output(&ns, &["--json", "raftStatus", "-b", &nobody]));
    assert!(!ok, "raftStatus on a dead address succeeded: {out}");
    assert!(
        err.contains("no Raft member answered") && err.contains(&nobody),
        "{err}"
    );

    // transferLeader to members that do not exist: the member asked says
    // which members there are, leader and follower alike.
    for addr in [group.broker_addr(l), follower.clone()] {
        for to in ["n7", "leader"] {
            let (ok, out, err) = tokio::task::block_in_place(|| {
                admin_output(&ns, &["transferLeader", "-b", &addr, "--to", to])
            });
            assert!(!ok, "transferLeader to {to} succeeded: {out}");
            assert!(
                err.contains(&format!("'{to}' is not a member of Raft group broker-a"))
                    && err.contains("n0, n1, n2"),
                "{err}"
            );
        }
    }
    // Nothing moved.
    assert_eq!(leader(&group, &admin).await, l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_leader_under_load_moves_leader_and_route_and_loses_nothing() {
    let group = raft_group("");
    let ns = group.namesrv_addr();
    let admin = Admin::new(&ns);
    create_topic(&group, &admin).await;
    let l = leader(&group, &admin).await;
    let target = (l + 1) % 3;
    let other = (l + 2) % 3;
    let to = format!("n{target}");

    let load = start_load(&ns, TOPIC, 4, "tl");
    while load.acked_count() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ask the member that is neither leader nor target: the command finds
    // the leader and asks it.
    let asked = Instant::now();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        admin_output(
            &ns,
            &[
                "transferLeader",
                "-b",
                &group.broker_addr(other),
                "--to",
                &to,
            ],
        )
    });
    let took = asked.elapsed();
    assert!(ok, "transferLeader failed after {took:?}:\n{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{to} ({}) leads Raft group broker-a",
            group.broker_addr(target)
        )),
        "{out}"
    );
    assert!(err.contains("asking leader"), "{err}");
    assert!(
        took < Duration::from_secs(8),
        "transferLeader took {took:?}"
    );
    let rt = admin
        .runtime_info(&group.broker_addr(target))
        .await
        .unwrap();
    assert_eq!(rt.get("raftRole").map(String::as_str), Some("Leader"));

    // The route names the new leader as the master (brokerId 0).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let route = admin.route(TOPIC).await.unwrap().expect("route");
        if route.broker_datas[0].broker_addrs.get(&0) == Some(&group.broker_addr(target)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "route never named {to} the master: {:?}",
            route.broker_datas
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let routed = asked.elapsed();

    // Writes go on through the new leader.
    let before = load.acked_count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.acked_count() < before + 200 {
        assert!(Instant::now() < deadline, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
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
        "transferLeader n{l} → {to}: command {took:?}, route names {to} after {routed:?}; \
         longest gap between SEND_OKs {gap:?}; {} acknowledged, failures {:?}",
        tally.acked.len(),
        tally.failed
    );

    // Every acknowledged key exactly once, every ambiguous one at most once,
    // read from the new leader once all members are in step.
    wait_in_step(&group, &admin).await;
    let seen = support::queues::count_keys(&admin, &group.broker_addr(target), TOPIC, QUEUES).await;
    let wrong: Vec<(&String, Option<&usize>)> = tally
        .acked
        .iter()
        .map(|a| (&a.0, seen.get(&a.0)))
        .filter(|(_, n)| *n != Some(&1))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged messages not stored exactly once, e.g. {:?}",
        wrong.len(),
        tally.acked.len(),
        &wrong[..wrong.len().min(5)]
    );
    let twice: Vec<&String> = tally
        .ambiguous
        .iter()
        .filter(|k| seen.get(*k).is_some_and(|&n| n > 1))
        .collect();
    assert!(twice.is_empty(), "ambiguous sends stored twice: {twice:?}");

    // Asking again, of the new leader, is a no-op success (as JSON).
    let out = tokio::task::block_in_place(|| {
        group.admin(&[
            "--json",
            "transferLeader",
            "-b",
            &group.broker_addr(target),
            "-t",
            &to,
        ])
    });
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["leaderId"], to.as_str());
    assert_eq!(v["leaderAddr"], group.broker_addr(target));
    assert_eq!(v["group"], "broker-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_admin_on_a_broker_that_is_not_a_raft_member_says_so() {
    let cluster = Cluster::dev(ClusterOpts::new());
    let ns = cluster.namesrv_addr();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        admin_output(
            &ns,
            &["transferLeader", "-b", &cluster.broker_addr(), "--to", "n1"],
        )
    });
    assert!(!ok, "transferLeader on a plain broker succeeded: {out}");
    assert!(
        err.contains("is not a Raft member (enableDLegerCommitLog=false)"),
        "{err}"
    );
    for args in [
        vec!["raftStatus", "-c", "DefaultCluster"],
        vec!["raftStatus", "-b", &cluster.broker_addr()],
    ] {
        let (ok, out, err) = tokio::task::block_in_place(|| admin_output(&ns, &args));
        assert!(!ok, "{args:?} succeeded on a plain broker: {out}");
        assert!(
            err.contains("a Raft member") && err.contains("enableDLegerCommitLog=true"),
            "{err}"
        );
    }
}
