//! Raft groups (RocketMQ's DLedger mode) of three broker processes: every
//! member on its own ports, optionally with each Raft link through a
//! `meridian netproxy` so a test can cut, reset or delay it.

use std::net::TcpListener;

use super::cluster::BrokerGroup;
use super::netproxy::NetProxy;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Three brokers forming Raft group `broker-a`, `extra` added to each conf.
pub fn raft_group(extra: &str) -> BrokerGroup {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<Vec<String>> = (0..3)
        .map(|_| ports.iter().map(|p| format!("127.0.0.1:{p}")).collect())
        .collect();
    start_members(&addrs, extra)
}

/// Start three members; member `i` reaches member `j` at `addrs[i][j]`
/// (`addrs[i][i]` is where it listens).
pub fn start_members(addrs: &[Vec<String>], extra: &str) -> BrokerGroup {
    let confs: Vec<String> = (0..3)
        .map(|i| {
            let peers = (0..3)
                .map(|j| format!("n{j}-{}", addrs[i][j]))
                .collect::<Vec<_>>()
                .join(";");
            format!(
                "enableDLegerCommitLog=true\ndLegerGroup=broker-a\ndLegerPeers={peers}\n\
                 dLegerSelfId=n{i}\nflushDiskType=ASYNC_FLUSH\n{extra}\n"
            )
        })
        .collect();
    let refs: Vec<&str> = confs.iter().map(String::as_str).collect();
    BrokerGroup::start(&refs)
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
