//! Raft groups (RocketMQ's DLedger mode) of three broker processes: every
//! member on its own ports, optionally with each Raft link through a
//! `meridian netproxy` so a test can cut, reset or delay it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_client::producer::Message;
use meridian_client::{Admin, Producer};

use super::cluster::BrokerGroup;
use super::free_port;
use super::netproxy::NetProxy;

/// Three brokers forming Raft group `broker-a`, `extra` added to each conf.
pub fn raft_group(extra: &str) -> BrokerGroup {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<Vec<String>> = (0..3)
        .map(|_| ports.iter().map(|p| format!("127.0.0.1:{p}")).collect())
        .collect();
    start_members(&addrs, extra)
}

/// The confs of a three-member Raft group, each with `extra`, on fresh
/// ports (for [`BrokerGroup::start_with_namesrv_port`]).
pub fn raft_confs(extra: &str) -> Vec<String> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<Vec<String>> = (0..3)
        .map(|_| ports.iter().map(|p| format!("127.0.0.1:{p}")).collect())
        .collect();
    member_confs(&addrs, |_| extra.to_string())
}

/// Start one member per row of `addrs`; member `i` reaches member `j` at
/// `addrs[i][j]` (`addrs[i][i]` is where it listens).
pub fn start_members(addrs: &[Vec<String>], extra: &str) -> BrokerGroup {
    start_members_with(addrs, |_| extra.to_string())
}

/// [`start_members`] with `extra(i)` added to member `i`'s conf. A row may
/// be shorter than others: that member's `dLegerPeers` lists only the
/// members its row names.
fn start_members_with(addrs: &[Vec<String>], extra: impl Fn(usize) -> String) -> BrokerGroup {
    let confs = member_confs(addrs, extra);
    let refs: Vec<&str> = confs.iter().map(String::as_str).collect();
    BrokerGroup::start(&refs)
}

fn member_confs(addrs: &[Vec<String>], extra: impl Fn(usize) -> String) -> Vec<String> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let peers = row
                .iter()
                .enumerate()
                .map(|(j, addr)| format!("n{j}-{addr}"))
                .collect::<Vec<_>>()
                .join(";");
            format!(
                "enableDLegerCommitLog=true\ndLegerGroup=broker-a\ndLegerPeers={peers}\n\
                 dLegerSelfId=n{i}\nflushDiskType=ASYNC_FLUSH\n{}\n",
                extra(i)
            )
        })
        .collect()
}

/// A group of `first` members (their `dLegerPeers` lists only them) and
/// `total - first` members to be added at run time (`raftJoinGroup=true`,
/// listing everyone), which are stopped again once started, so that a
/// test starts them when it adds them. Returns every member's Raft port.
pub fn raft_group_with_joiners(first: usize, total: usize) -> (BrokerGroup, Vec<u16>) {
    let ports: Vec<u16> = (0..total).map(|_| free_port()).collect();
    let addrs: Vec<Vec<String>> = (0..total)
        .map(|i| {
            let known = if i < first { first } else { total };
            ports[..known]
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect()
        })
        .collect();
    let mut group = start_members_with(&addrs, |i| {
        if i < first {
            String::new()
        } else {
            "raftJoinGroup=true".to_string()
        }
    });
    for i in first..total {
        group.kill9(i);
    }
    (group, ports)
}

/// `meridian admin addRaftMember` for member `n<id>` listening on `port`,
/// sent to the member at `via`; its output, whether it succeeded or not.
pub fn add_member(namesrv: &str, via: &str, id: usize, port: u16) -> std::process::Output {
    std::process::Command::new(super::cluster::MERIDIAN)
        .args(["admin", "-n", namesrv, "addRaftMember", "-b", via])
        .args(["-i", &format!("n{id}"), "-a", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run meridian admin")
}

/// Three members whose Raft links each go through a `meridian netproxy`:
/// `links[i][j]` carries what member `i` sends to member `j` (and the
/// answers).
pub fn raft_group_via_proxies(delay_ms: u64) -> (BrokerGroup, Vec<Vec<Option<NetProxy>>>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let links: Vec<Vec<Option<NetProxy>>> = (0..3)
        .map(|i| {
            (0..3)
                .map(|j| {
                    (i != j).then(|| NetProxy::start(&format!("127.0.0.1:{}", ports[j]), delay_ms))
                })
                .collect()
        })
        .collect();
    let addrs: Vec<Vec<String>> = (0..3)
        .map(|i| {
            (0..3)
                .map(|j| match &links[i][j] {
                    Some(p) => p.addr().to_string(),
                    None => format!("127.0.0.1:{}", ports[j]),
                })
                .collect()
        })
        .collect();
    (start_members(&addrs, ""), links)
}

/// A group whose member `i` is in city `cities[i]`: links between members
/// of different cities go through a `meridian netproxy` delaying
/// `delay_ms` each way (`links[i][j]`, what `i` sends to `j`), links
/// within a city are direct (`None`). Members are labelled `city<c>` in
/// `raftZones`; `extra` is added to every conf.
pub fn raft_cities(
    cities: &[usize],
    delay_ms: u64,
    extra: &str,
) -> (BrokerGroup, Vec<Vec<Option<NetProxy>>>) {
    let n = cities.len();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let links: Vec<Vec<Option<NetProxy>>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    (cities[i] != cities[j])
                        .then(|| NetProxy::start(&format!("127.0.0.1:{}", ports[j]), delay_ms))
                })
                .collect()
        })
        .collect();
    let addrs: Vec<Vec<String>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match &links[i][j] {
                    Some(p) => p.addr().to_string(),
                    None => format!("127.0.0.1:{}", ports[j]),
                })
                .collect()
        })
        .collect();
    let zones = (0..n)
        .map(|i| format!("n{i}:city{}", cities[i]))
        .collect::<Vec<_>>()
        .join(";");
    (
        start_members(&addrs, &format!("raftZones={zones}\n{extra}")),
        links,
    )
}

#[derive(Default)]
pub struct Tally {
    /// Key, when SEND_OK came, and the offset message id (which names the
    /// member that stored it).
    pub acked: Vec<(String, Instant, String)>,
    pub ambiguous: Vec<String>,
    pub failed: HashMap<String, usize>,
}

pub struct Load {
    pub tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `tasks` producers sending keyed messages (`<prefix>-w<task>-<n>`) to
/// `topic` through Meridian's client, which follows the route to whichever
/// member leads. A send that certainly stored nothing is counted as
/// "refused"; one that may or may not have been stored, as ambiguous.
pub fn start_load(ns: &str, topic: &str, tasks: usize, trial: &str) -> Load {
    let producer = Arc::new(Producer::new(ns, "raft-producer"));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..tasks)
        .map(|w| {
            let (producer, tally, stop) = (producer.clone(), tally.clone(), stop.clone());
            let (trial, topic) = (trial.to_string(), topic.to_string());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{trial}-w{w}-{i}");
                    i += 1;
                    let msg = Message {
                        topic: topic.clone(),
                        body: Bytes::from(format!("payload {key}")),
                        keys: vec![key.clone()],
                        ..Default::default()
                    };
                    let r = producer.send(&msg).await;
                    let refused = {
                        let mut t = tally.lock().unwrap();
                        match r {
                            Ok(r) if r.status == "SEND_OK" => {
                                t.acked.push((key, Instant::now(), r.offset_msg_id.clone()));
                                false
                            }
                            Ok(r) => {
                                *t.failed.entry(r.status.to_string()).or_insert(0) += 1;
                                t.ambiguous.push(key);
                                false
                            }
                            Err(e) => {
                                let retryable = meridian_client::producer::is_retryable(&e);
                                let what = if retryable { "refused" } else { "ambiguous" };
                                *t.failed.entry(what.into()).or_insert(0) += 1;
                                if !retryable {
                                    t.ambiguous.push(key);
                                }
                                true
                            }
                        }
                    };
                    if refused {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    Load { tally, stop, tasks }
}

impl Load {
    pub fn acked_count(&self) -> usize {
        self.tally.lock().unwrap().acked.len()
    }

    /// When the first SEND_OK after `since` came; panics after 30 s
    /// without one, naming `what` was awaited.
    pub async fn first_ack_after(&self, since: Instant, what: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self
                .tally
                .lock()
                .unwrap()
                .acked
                .iter()
                .map(|a| a.1)
                .find(|&t| t > since);
            if let Some(t) = t {
                return t;
            }
            assert!(Instant::now() < deadline, "no SEND_OK {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// The running member that leads (reports itself as the master), once one
/// does; panics after 30 s.
pub async fn leader(group: &BrokerGroup, admin: &Admin) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for i in (0..group.len()).filter(|&i| group.is_running(i)) {
            if let Ok(rt) = admin.runtime_info(&group.broker_addr(i)).await {
                if rt.get("brokerRole").map(String::as_str) == Some("SyncMaster") {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no Raft leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
