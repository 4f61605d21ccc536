//! Several regions on loopback: each its own name server and broker (a
//! [`BrokerGroup`] with its own `regionId` and broker name), and
//! `meridian relay` processes linking them.

use std::path::Path;
use std::time::Duration;

use meridian_client::Admin;
use meridian_protocol::message::MessageExt;

use super::cluster::{BrokerGroup, Process};
use super::netproxy::NetProxy;
use super::queues::read_topic;

/// One region: a name server and one broker.
pub struct Region {
    pub name: String,
    pub group: BrokerGroup,
    /// The proxy every client that finds the broker through the name
    /// server goes through ([`Region::start_behind_proxy`]).
    pub proxy: Option<NetProxy>,
}

impl Region {
    /// Start region `name` with broker `broker-<name>`, small commit-log
    /// segments, and `extra` broker.conf lines.
    pub fn start(name: &str, extra: &str) -> Region {
        Region::start_with_namesrv(name, "", extra)
    }

    /// [`Region::start`], with `namesrv_extra` lines in namesrv.conf.
    pub fn start_with_namesrv(name: &str, namesrv_extra: &str, extra: &str) -> Region {
        let conf = format!(
            "regionId={name}\nbrokerName=broker-{name}\nmappedFileSizeCommitLog=8388608\n{extra}"
        );
        Region {
            name: name.to_string(),
            group: BrokerGroup::start_with_namesrv(namesrv_extra, &[&conf]),
            proxy: None,
        }
    }

    /// Region `name` whose name server listens on `namesrv_port` with
    /// `namesrv_extra` lines (`@DIR@`: the region's directory).
    pub fn start_on(name: &str, namesrv_port: u16, namesrv_extra: &str, extra: &str) -> Region {
        let conf = format!(
            "regionId={name}\nbrokerName=broker-{name}\nmappedFileSizeCommitLog=8388608\n{extra}"
        );
        Region {
            name: name.to_string(),
            group: BrokerGroup::start_with_namesrv_port(namesrv_port, namesrv_extra, &[&conf]),
            proxy: None,
        }
    }

    /// [`Region::start_on`] as a Raft group of three members named
    /// `broker-<name>`.
    pub fn start_raft_on(
        name: &str,
        namesrv_port: u16,
        namesrv_extra: &str,
        extra: &str,
    ) -> Region {
        let confs = super::raft::raft_confs(&format!(
            "regionId={name}\nbrokerName=broker-{name}\ndLegerGroup=broker-{name}\n\
             mappedFileSizeCommitLog=8388608\n{extra}"
        ));
        let refs: Vec<&str> = confs.iter().map(String::as_str).collect();
        Region {
            name: name.to_string(),
            group: BrokerGroup::start_with_namesrv_port(namesrv_port, namesrv_extra, &refs),
            proxy: None,
        }
    }

    /// SIGKILL every process of the region: its brokers and name server.
    pub fn kill9(&mut self) {
        for i in 0..self.group.len() {
            self.group.kill9(i);
        }
        self.group.kill9_namesrv();
    }

    /// Start the region again after [`Region::kill9`]: name server first.
    pub fn restart(&mut self) {
        self.group.start_namesrv();
        for i in 0..self.group.len() {
            self.group.start_broker(i);
        }
    }

    /// [`Region::start`], with the broker reached through a `meridian
    /// netproxy` that delays `delay_ms` each way: the broker listens on
    /// 127.0.0.1 and advertises 127.0.0.2, where the proxy listens on the
    /// same port. Producers, consumers and relays (which find it through
    /// the name server) go through the proxy; [`Region::broker`], the
    /// test's own way in, does not.
    pub fn start_behind_proxy(name: &str, delay_ms: u64, extra: &str) -> Region {
        let mut r = Region::start(
            name,
            &format!("bindAddress=127.0.0.1\nbrokerIP1=127.0.0.2\n{extra}"),
        );
        let port = r
            .broker()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        r.proxy = Some(NetProxy::start_on(
            &format!("127.0.0.2:{port}"),
            &r.broker(),
            delay_ms,
        ));
        r
    }

    /// Region `name` as a Raft group of three members (DLedger mode)
    /// named `broker-<name>`.
    pub fn start_raft(name: &str, extra: &str) -> Region {
        Region {
            name: name.to_string(),
            group: super::raft::raft_group(&format!(
                "regionId={name}\nbrokerName=broker-{name}\ndLegerGroup=broker-{name}\n\
                 mappedFileSizeCommitLog=8388608\n{extra}"
            )),
            proxy: None,
        }
    }

    /// The address of the broker group's master (a Raft group's leader)
    /// as the name server lists it, once it lists one; the first member's
    /// address until then.
    pub async fn master(&self) -> String {
        let admin = Admin::new(&self.namesrv());
        for _ in 0..150 {
            if let Ok(info) = admin.cluster_info().await {
                let master = info.broker_addr_table.values().find_map(|b| {
                    b.broker_addrs
                        .get(&meridian_protocol::body::route::MASTER_ID)
                        .cloned()
                });
                if let Some(m) = master {
                    if admin.runtime_info(&m).await.is_ok() {
                        return m;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.broker()
    }

    pub fn namesrv(&self) -> String {
        self.group.namesrv_addr()
    }

    pub fn broker(&self) -> String {
        self.group.broker_addr(0)
    }

    /// `updateTopic` with `queues` read and write queues.
    pub fn create_topic(&self, topic: &str, queues: u32) {
        self.group.create_topic(topic, queues);
    }

    /// Every message of `topic` on this region's broker, read back queue by
    /// queue (own queues and copies) with plain pulls, each queue checked
    /// gap-free from its first offset (see [`read_queue`]); a copy queue's
    /// placeholders for records a relay's tag filter left out are not
    /// messages and are left out.
    pub async fn read_all(&self, topic: &str) -> Vec<MessageExt> {
        self.read_everything(topic)
            .await
            .into_iter()
            .filter(|m| m.property("MERIDIAN_FILTERED").is_none())
            .collect()
    }

    /// [`Region::read_all`] with the placeholders.
    pub async fn read_everything(&self, topic: &str) -> Vec<MessageExt> {
        let admin = Admin::new(&self.namesrv());
        let broker = self.master().await;
        read_topic(&admin, &broker, topic).await
    }
}

/// A `meridian relay` process for one link.
pub struct Relay {
    conf: std::path::PathBuf,
    dir: std::path::PathBuf,
    name: String,
    process: Option<Process>,
}

pub const RELAY_READY: &str = "meridian relay ready";

impl Relay {
    /// A relay from `src` to `dst` for `topics`, its files in `dir`.
    pub fn start(dir: &Path, src: &Region, dst: &Region, topics: &str, extra: &str) -> Relay {
        Relay::start_instance(dir, src, dst, topics, extra, 0)
    }

    /// Process `instance` of the link's relay: every instance has the same
    /// `replicationGroup` and a file and log of its own.
    pub fn start_instance(
        dir: &Path,
        src: &Region,
        dst: &Region,
        topics: &str,
        extra: &str,
        instance: usize,
    ) -> Relay {
        let group = format!("relay-{}-{}", src.name, dst.name);
        let name = match instance {
            0 => group.clone(),
            n => format!("{group}-{n}"),
        };
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "srcClusterAddr={}\ndestClusterAddr={}\nreplicationGroup={group}\ntopics={topics}\n\
                 routeRefreshIntervalMs=500\n{extra}\n",
                src.namesrv(),
                dst.namesrv()
            ),
        )
        .expect("write relay.conf");
        let mut r = Relay {
            conf,
            dir: dir.to_path_buf(),
            name,
            process: None,
        };
        r.restart();
        r
    }

    /// Start the process (again).
    pub fn restart(&mut self) {
        let p = Process::spawn(
            &self.name,
            &self.dir,
            &["relay".into(), "-c".into(), self.conf.display().to_string()],
        );
        self.process = Some(p.wait_for_line(RELAY_READY));
    }

    /// SIGKILL it.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// Poll until `cond` holds or `timeout` passes; false on timeout.
pub async fn within<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Regions whose name servers know each other (`regionPeers`), probing
/// every 300 ms and seeing a region down after 3 s of silence.
/// `peer_addr(observer, observed, addr)` gives the address `observer`
/// lists for `observed`'s name server (a proxy, to cut that link);
/// `namesrv_extra` lines override the defaults; `extra(region)` are
/// broker.conf lines.
pub fn peered(
    names: &[&str],
    peer_addr: impl Fn(&str, &str, &str) -> String,
    namesrv_extra: &str,
    extra: impl Fn(&str) -> String,
) -> Vec<Region> {
    peered_with_raft(names, &[], peer_addr, namesrv_extra, extra)
}

/// [`peered`], the regions named in `raft` each a Raft group of three.
pub fn peered_with_raft(
    names: &[&str],
    raft: &[&str],
    peer_addr: impl Fn(&str, &str, &str) -> String,
    namesrv_extra: &str,
    extra: impl Fn(&str) -> String,
) -> Vec<Region> {
    let ports: Vec<u16> = names.iter().map(|_| super::ports::free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let peers: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, other)| format!("{other}={}", peer_addr(name, other, &addr(j))))
                .collect();
            let conf = format!(
                "regionId={name}\nregionPeers={}\nregionStatePath=@DIR@/regionState.json\n\
                 regionProbeIntervalMs=300\nregionFailureTimeoutMs=3000\nregionCanaryIntervalMs=300\n\
                 {namesrv_extra}",
                peers.join(",")
            );
            if raft.contains(name) {
                Region::start_raft_on(name, ports[i], &conf, &extra(name))
            } else {
                Region::start_on(name, ports[i], &conf, &extra(name))
            }
        })
        .collect()
}
