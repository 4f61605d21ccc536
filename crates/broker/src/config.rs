//! Broker configuration, read from RocketMQ's `broker.conf` keys.

use std::net::IpAddr;
use std::path::PathBuf;

use meridian_remoting::conf::{Conf, ConfError};
use meridian_store::{FlushDiskType, StoreConfig};

/// RocketMQ's `brokerRole`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerRole {
    AsyncMaster,
    SyncMaster,
    Slave,
}

impl std::str::FromStr for BrokerRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ASYNC_MASTER" => Ok(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Ok(BrokerRole::SyncMaster),
            "SLAVE" => Ok(BrokerRole::Slave),
            _ => Err("expected ASYNC_MASTER, SYNC_MASTER or SLAVE".into()),
        }
    }
}

/// RocketMQ's default `regionId`.
pub const DEFAULT_REGION: &str = "DefaultRegion";

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub broker_role: BrokerRole,
    /// The region this broker's cluster serves (`regionId`, RocketMQ's
    /// key; default `DefaultRegion`): stamped into `MSG_REGION` of every
    /// message stored here and reported to the name servers.
    pub region_id: String,
    /// Name servers to register with (`namesrvAddr`, `;`-separated).
    pub namesrv_addrs: Vec<String>,
    pub listen_port: u16,
    /// Port the master serves replication on (`haListenPort`, default
    /// `listenPort + 1`).
    pub ha_listen_port: u16,
    /// A slave's fixed master replication address (`haMasterAddress`);
    /// without it the slave follows the master the name servers name.
    pub ha_master_address: Option<String>,
    /// The address the client and HA ports bind (`bindAddress`, as
    /// RocketMQ 5's server config; all interfaces by default).
    pub listen_ip: IpAddr,
    /// The address advertised to name servers and clients (`brokerIP1`).
    pub broker_ip1: IpAddr,
    pub auto_create_topic_enable: bool,
    pub default_topic_queue_nums: i32,
    pub auto_create_subscription_group: bool,
    /// How often to re-register with the name servers.
    pub register_name_server_period_ms: u64,
    /// Longest a pull may be held waiting for a message, whatever the
    /// client asks.
    pub max_long_poll_ms: u64,
    /// How long after its time a delayed message that another region
    /// scheduled (a copy of its `SCHEDULE_TOPIC_XXXX` record) is delivered
    /// here if that region's own delivery has not arrived by then
    /// (`delayTakeoverGraceMs`).
    pub delay_takeover_grace_ms: u64,
    /// A half message undecided this long is checked with its producer
    /// (`transactionTimeOut`, ms; a message's
    /// `CHECK_IMMUNITY_TIME_IN_SECONDS` overrides it).
    pub transaction_timeout_ms: u64,
    /// Time between two checks of one half message
    /// (`transactionCheckInterval`, ms).
    pub transaction_check_interval_ms: u64,
    /// Checks before an undecided half message is discarded
    /// (`transactionCheckMax`).
    pub transaction_check_max: u32,
    /// Longest delay of a timer message, in seconds (`timerMaxDelaySec`,
    /// 3 days).
    pub timer_max_delay_sec: u64,
    /// Access control (`aclEnable`): the accounts file, `aclFile`, else
    /// `conf/plain_acl.yml` under `rocketmqHome` (or `$ROCKETMQ_HOME`).
    pub acl_file: Option<PathBuf>,
    /// `tls.*`: TLS on the client port, HA and Raft, and on the broker's
    /// own links (name servers, master, Raft peers).
    pub tls: meridian_remoting::tls::TlsSettings,
    /// `metricsExporterType`, `metricsPromExporterHost`,
    /// `metricsPromExporterPort`, `metricsLabel`.
    pub metrics: meridian_metrics::MetricsConfig,
    /// Whether consumers may subscribe with SQL92 property filters
    /// (`enablePropertyFilter`, off by default as in RocketMQ).
    pub enable_property_filter: bool,
    /// Most pulls held waiting at once; past it pulls are answered at once.
    pub max_long_poll_waiters: usize,
    pub max_pull_msgs: i32,
    pub max_pull_bytes: usize,
    /// Messages a consumer may fail before they go to `%DLQ%` (RocketMQ's
    /// subscription group default `retryMaxTimes`).
    pub default_max_reconsume_times: i32,
    /// `brokerPermission` (6, read and write): what the broker lets
    /// clients do, whatever each topic allows. Without write, sends and
    /// sends back are refused (NO_PERMISSION) and its topics are
    /// registered read-only, so producers go to other brokers; without
    /// read, pulls are refused. Relayed copies still arrive. Changes at
    /// run time with `updateBrokerConfig`.
    pub broker_permission: i32,
    pub store: StoreConfig,
    /// Raft (DLedger) mode, `enableDLegerCommitLog=true`: the group's
    /// members and this one; `brokerId` and `brokerRole` then follow the
    /// Raft role.
    pub raft: Option<RaftSettings>,
}

/// The Raft keys of broker.conf (RocketMQ's DLedger names, plus Meridian's
/// `raft*` tunables).
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// `dLegerGroup`, `dLegerPeers`, `dLegerSelfId`, checked.
    pub peers: meridian_raft::peers::Peers,
    /// `preferredLeaderId`: the leader hands over to this member once it
    /// has caught up.
    pub preferred_leader_id: Option<u64>,
    /// `raftZones` (Meridian): the zone (city, data centre) of each member,
    /// `n0:cityA;n1:cityA;n2:cityB`, for `raftStatus`.
    pub zones: std::collections::BTreeMap<u64, String>,
    /// `raftHeartbeatIntervalMs` (100).
    pub heartbeat_ms: u64,
    /// `raftElectionTimeoutMinMs` / `raftElectionTimeoutMaxMs` (400 / 800).
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// `raftMaxBytesPerAppend` (4 MiB).
    pub max_bytes_per_append: usize,
    /// `raftJoinGroup` (Meridian): a member added to a running group; it
    /// waits to be added rather than forming a group on first start.
    pub join: bool,
    /// `raftMaxInflightSends` (20 000).
    pub max_inflight_sends: usize,
}

impl BrokerConfig {
    /// Defaults for a broker whose data lives under `root`.
    pub fn new(root: PathBuf) -> BrokerConfig {
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            broker_role: BrokerRole::AsyncMaster,
            region_id: DEFAULT_REGION.into(),
            namesrv_addrs: Vec::new(),
            listen_port: 10911,
            ha_listen_port: 10912,
            ha_master_address: None,
            listen_ip: IpAddr::from([0, 0, 0, 0]),
            broker_ip1: default_ip(),
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
            auto_create_subscription_group: true,
            register_name_server_period_ms: 30_000,
            max_long_poll_ms: 30_000,
            delay_takeover_grace_ms: 30_000,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 60_000,
            transaction_check_max: 15,
            enable_property_filter: false,
            acl_file: None,
            tls: Default::default(),
            metrics: Default::default(),
            timer_max_delay_sec: 3 * 24 * 3600,
            max_long_poll_waiters: 65_536,
            max_pull_msgs: 32 * 32,
            max_pull_bytes: 4 * 1024 * 1024,
            default_max_reconsume_times: 16,
            broker_permission: meridian_protocol::body::perm::PERM_READ
                | meridian_protocol::body::perm::PERM_WRITE,
            store: StoreConfig::new(root),
            raft: None,
        }
    }

    /// Read a broker.conf. Returns the config and the keys it did not know.
    pub fn from_conf(conf: &mut Conf) -> Result<(BrokerConfig, Vec<String>), ConfError> {
        let home = dirs_home().join("store");
        let root = conf.get::<PathBuf>("storePathRootDir")?.unwrap_or(home);
        let mut c = BrokerConfig::new(root.clone());
        if let Some(v) = conf.str("brokerClusterName") {
            c.broker_cluster_name = v;
        }
        if let Some(v) = conf.str("brokerName") {
            c.broker_name = v;
        }
        if let Some(v) = conf.get::<i64>("brokerId")? {
            c.broker_id = v;
        }
        if let Some(v) = conf.get::<BrokerRole>("brokerRole")? {
            c.broker_role = v;
        }
        if let Some(v) = conf.str("regionId") {
            let v = v.trim().to_string();
            if v.is_empty() || v.contains(['/', ';', ',']) || v.len() > 64 {
                return Err(invalid(
                    "regionId",
                    v,
                    "must be 1 to 64 characters without '/', ';' or ','",
                ));
            }
            c.region_id = v;
        }
        if let Some(v) = conf.str("namesrvAddr") {
            c.namesrv_addrs = split_addrs(&v);
        }
        if let Some(v) = conf.get::<u16>("listenPort")? {
            c.listen_port = v;
        }
        c.ha_master_address = conf.str("haMasterAddress").filter(|a| a.trim().len() >= 6);
        c.ha_listen_port = match conf.get::<u16>("haListenPort")? {
            Some(p) => p,
            None => c.listen_port.wrapping_add(1),
        };
        if let Some(v) = conf.get::<IpAddr>("brokerIP1")? {
            c.broker_ip1 = v;
        }
        if let Some(v) = conf.get::<IpAddr>("bindAddress")? {
            c.listen_ip = v;
        }
        if let Some(v) = conf.bool("autoCreateTopicEnable")? {
            c.auto_create_topic_enable = v;
        }
        if let Some(v) = conf.bool("autoCreateSubscriptionGroup")? {
            c.auto_create_subscription_group = v;
        }
        if let Some(v) = conf.get::<i32>("defaultTopicQueueNums")? {
            if v <= 0 {
                return Err(invalid("defaultTopicQueueNums", v, "must be at least 1"));
            }
            c.default_topic_queue_nums = v;
        }
        if let Some(v) = conf.get::<u64>("registerNameServerPeriod")? {
            c.register_name_server_period_ms = v.clamp(1_000, 60_000);
        }
        if let Some(v) = conf.get::<PathBuf>("storePathCommitLog")? {
            c.store.commit_log_dir = v;
        }
        if let Some(v) = conf.str("flushDiskType") {
            c.store.flush_disk_type = match v.trim().to_ascii_uppercase().as_str() {
                "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
                "SYNC_FLUSH" => FlushDiskType::SyncFlush,
                _ => {
                    return Err(invalid(
                        "flushDiskType",
                        v,
                        "expected ASYNC_FLUSH or SYNC_FLUSH",
                    ))
                }
            };
        }
        if let Some(v) = conf.get::<u64>("mappedFileSizeCommitLog")? {
            if v < 64 * 1024 {
                return Err(invalid(
                    "mappedFileSizeCommitLog",
                    v,
                    "must be at least 65536",
                ));
            }
            c.store.mapped_file_size_commit_log = v;
        }
        if let Some(v) = conf.get::<u64>("fileReservedTime")? {
            c.store.file_reserved_time_hours = v;
        }
        if let Some(v) = conf.str("deleteWhen") {
            c.store.delete_when = v;
        }
        if let Some(v) = conf.get::<u32>("diskMaxUsedSpaceRatio")? {
            if !(10..=95).contains(&v) {
                return Err(invalid(
                    "diskMaxUsedSpaceRatio",
                    v,
                    "must be between 10 and 95",
                ));
            }
            c.store.disk_max_used_space_ratio = v;
        }
        if let Some(v) = conf.get::<usize>("maxMessageSize")? {
            if v == 0 || v > 64 * 1024 * 1024 {
                return Err(invalid(
                    "maxMessageSize",
                    v,
                    "must be between 1 and 67108864",
                ));
            }
            c.store.max_message_size = v;
        }
        if let Some(v) = conf.get::<u64>("transactionTimeOut")? {
            c.transaction_timeout_ms = v;
        }
        if let Some(v) = conf.get::<u64>("transactionCheckInterval")? {
            c.transaction_check_interval_ms = v.max(100);
        }
        if let Some(v) = conf.get::<u32>("transactionCheckMax")? {
            c.transaction_check_max = v;
        }
        if let Some(v) = conf.get::<u64>("timerMaxDelaySec")? {
            c.timer_max_delay_sec = v;
        }
        let acl_file = conf.str("aclFile").map(PathBuf::from);
        let home = conf
            .str("rocketmqHome")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("ROCKETMQ_HOME").map(PathBuf::from));
        if conf.bool("aclEnable")?.unwrap_or(false) {
            c.acl_file = match (acl_file, home) {
                (Some(f), _) => Some(f),
                (None, Some(h)) => Some(h.join("conf").join("plain_acl.yml")),
                (None, None) => {
                    return Err(invalid(
                        "aclEnable",
                        "true",
                        "no accounts file: set aclFile (or rocketmqHome, whose conf/plain_acl.yml is read)",
                    ))
                }
            };
        }
        c.tls = meridian_remoting::tls::TlsSettings::from_conf(conf)?;
        c.metrics = meridian_metrics::MetricsConfig::from_conf(conf)?;
        if let Some(v) = conf.str("brokerPermission") {
            c.broker_permission = parse_broker_permission(&v)?;
        }
        conf.refuse_if_on(
            &[
                "authenticationEnabled",
                "authorizationEnabled",
                "authenticationProvider",
                "authorizationProvider",
                "migrateAuthFromV1Enabled",
            ],
            "RocketMQ 5's authentication and authorization (ACL 2.0); Meridian has RocketMQ 4's plain ACL: aclEnable=true with plain_acl.yml",
        )?;
        if let Some(v) = conf.bool("enablePropertyFilter")? {
            c.enable_property_filter = v;
        }
        if let Some(v) = conf.get::<u64>("delayTakeoverGraceMs")? {
            c.delay_takeover_grace_ms = v;
        }
        if let Some(v) = conf.str("messageDelayLevel") {
            if let Err(e) = meridian_store::message_delay_levels(&v) {
                return Err(invalid("messageDelayLevel", v, &e));
            }
            c.store.message_delay_level = v;
        }
        if let Some(v) = conf.get::<u64>("flushIntervalCommitLog")? {
            c.store.flush_interval_ms = v.max(1);
        }
        if let Some(v) = conf.get::<u64>("flushIntervalConsumeQueue")? {
            // RocketMQ's key for how often consume queues are flushed; here
            // it paces the whole checkpoint (queues, index, checkpoint file).
            c.store.checkpoint_interval_ms = v.clamp(100, 60_000);
        }
        if let Some(v) = conf.get::<u64>("syncFlushTimeout")? {
            c.store.sync_flush_timeout_ms = v.max(1);
        }
        if let Some(v) = conf.get::<u64>("longPollingMaxMillis")? {
            c.max_long_poll_ms = v;
        }
        if conf.bool("enableDLegerCommitLog")?.unwrap_or(false) {
            c.raft = Some(raft_settings(conf, &c.broker_name)?);
        } else {
            conf.accept(&[
                "dLegerGroup",
                "dLegerPeers",
                "dLegerSelfId",
                "preferredLeaderId",
                "raftZones",
                "raftJoinGroup",
            ]);
        }
        // Accepted for compatibility; they tune the Java broker's thread
        // pools and Netty, which Meridian does not have.
        conf.accept(&[
            "brokerIP2",
            "sendMessageThreadPoolNums",
            "pullMessageThreadPoolNums",
            "useReentrantLockWhenPutMessage",
            "waitTimeMillsInSendQueue",
            "serverWorkerThreads",
            "serverSelectorThreads",
            "clientWorkerThreads",
            "transientStorePoolEnable",
            "warmMapedFileEnable",
            "flushCommitLogLeastPages",
            "flushConsumeQueueLeastPages",
            "storePathConsumeQueue",
            "storePathIndex",
            "storeCheckpoint",
            "abortFile",
            "brokerPermission",
            "traceTopicEnable",
            "slaveReadEnable",
            "fastFailIfNoBufferInStorePool",
            "isEnableBatchPush",
            "mapedFileSizeConsumeQueue",
            "mappedFileSizeConsumeQueue",
        ]);
        Ok((c, conf.unknown_keys()))
    }

    /// The replication address a slave connects to.
    pub fn ha_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.ha_listen_port)
    }

    /// The address clients and name servers use to reach this broker.
    pub fn broker_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }
}

fn invalid(key: &str, value: impl ToString, reason: &str) -> ConfError {
    ConfError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// `raftZones`: `n<id>:<zone>` entries separated by `;`, each naming a
/// member of `dLegerPeers` once.
fn parse_zones(
    text: &str,
    peers: &meridian_raft::peers::Peers,
) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut zones = std::collections::BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, zone) = entry
            .split_once(':')
            .ok_or_else(|| format!("entry '{entry}' is not n<id>:<zone>"))?;
        let id = name
            .trim()
            .strip_prefix('n')
            .and_then(|d| d.parse::<u64>().ok())
            .filter(|id| peers.members.contains_key(id))
            .ok_or_else(|| format!("'{}' is not a member of dLegerPeers", name.trim()))?;
        let zone = zone.trim();
        if zone.is_empty() {
            return Err(format!("n{id} has an empty zone"));
        }
        if zones.insert(id, zone.to_string()).is_some() {
            return Err(format!("n{id} is listed twice"));
        }
    }
    Ok(zones)
}

/// For each zone of `zones`: whether the members outside it are still a
/// majority of `members` (so the group keeps writing when the zone is
/// lost). Members with no zone count as their own.
pub fn zone_loss_keeps_majority(
    zones: &std::collections::BTreeMap<u64, String>,
    members: usize,
) -> std::collections::BTreeMap<String, bool> {
    let majority = members / 2 + 1;
    let mut out = std::collections::BTreeMap::new();
    for zone in zones.values() {
        let inside = zones.values().filter(|z| *z == zone).count();
        out.insert(zone.clone(), members - inside >= majority);
    }
    out
}

fn raft_settings(conf: &mut Conf, broker_name: &str) -> Result<RaftSettings, ConfError> {
    // RocketMQ's advice: the group is named after the broker.
    let group = conf
        .str("dLegerGroup")
        .filter(|g| !g.trim().is_empty())
        .unwrap_or_else(|| broker_name.to_string());
    let peers_text = conf.str("dLegerPeers").unwrap_or_default();
    let self_id = conf.str("dLegerSelfId").unwrap_or_default();
    let peers = meridian_raft::peers::Peers::parse(&group, &peers_text, &self_id)
        .map_err(|e| invalid("dLegerPeers", &peers_text, &e))?;
    let preferred_leader_id = match conf
        .str("preferredLeaderId")
        .filter(|v| !v.trim().is_empty())
    {
        None => None,
        Some(v) => {
            let id = v
                .trim()
                .strip_prefix('n')
                .and_then(|d| d.parse::<u64>().ok())
                .filter(|id| peers.members.contains_key(id));
            Some(id.ok_or_else(|| {
                invalid("preferredLeaderId", &v, "must name a member of dLegerPeers")
            })?)
        }
    };
    conf.accept(&["enableBatchPush"]);
    let zones_text = conf.str("raftZones").unwrap_or_default();
    let zones =
        parse_zones(&zones_text, &peers).map_err(|e| invalid("raftZones", &zones_text, &e))?;
    let mut r = RaftSettings {
        peers,
        preferred_leader_id,
        zones,
        heartbeat_ms: 100,
        election_timeout_min_ms: 400,
        election_timeout_max_ms: 800,
        max_bytes_per_append: 4 * 1024 * 1024,
        max_inflight_sends: 20_000,
        join: conf.bool("raftJoinGroup")?.unwrap_or(false),
    };
    if let Some(v) = conf.get::<u64>("raftHeartbeatIntervalMs")? {
        r.heartbeat_ms = v.max(10);
    }
    if let Some(v) = conf.get::<u64>("raftElectionTimeoutMinMs")? {
        r.election_timeout_min_ms = v;
    }
    if let Some(v) = conf.get::<u64>("raftElectionTimeoutMaxMs")? {
        r.election_timeout_max_ms = v;
    }
    if r.election_timeout_min_ms <= r.heartbeat_ms
        || r.election_timeout_max_ms <= r.election_timeout_min_ms
    {
        return Err(invalid(
            "raftElectionTimeoutMinMs",
            r.election_timeout_min_ms,
            "needs raftHeartbeatIntervalMs < raftElectionTimeoutMinMs < raftElectionTimeoutMaxMs",
        ));
    }
    if let Some(v) = conf.get::<usize>("raftMaxBytesPerAppend")? {
        r.max_bytes_per_append = v.max(64 * 1024);
    }
    if let Some(v) = conf.get::<usize>("raftMaxInflightSends")? {
        r.max_inflight_sends = v.max(1);
    }
    Ok(r)
}

/// Split RocketMQ's `;`-separated address list.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The first non-loopback IPv4 address of this host, as RocketMQ picks
/// `brokerIP1`; loopback when there is none.
fn default_ip() -> IpAddr {
    // Connecting a UDP socket sends nothing; it only asks the kernel which
    // local address would be used for an outside destination.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// A `brokerPermission` value: RocketMQ's permission bits, read (4) and
/// write (2) only.
pub fn parse_broker_permission(v: &str) -> Result<i32, ConfError> {
    use meridian_protocol::body::perm::{PERM_READ, PERM_WRITE};
    match v.trim().parse::<i32>() {
        Ok(p) if p & !(PERM_READ | PERM_WRITE) == 0 => Ok(p),
        _ => Err(invalid(
            "brokerPermission",
            v,
            "expected 6 (read and write), 4 (read only), 2 (write only) or 0",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rocketmq_keys() {
        let mut conf = Conf::parse(
            "brokerClusterName=C1\nbrokerName=b1\nbrokerId=0\nbrokerRole=SYNC_MASTER\nnamesrvAddr=127.0.0.1:9876;127.0.0.1:9877\nlistenPort=10999\nstorePathRootDir=/tmp/x\nflushDiskType=SYNC_FLUSH\nautoCreateTopicEnable=false\ndefaultTopicQueueNums=4\nmaxMessageSize=1024\nbrokerIP1=127.0.0.1\nsomethingElse=1\n",
        );
        let (c, unknown) = BrokerConfig::from_conf(&mut conf).unwrap();
        assert_eq!(c.broker_cluster_name, "C1");
        assert_eq!(c.broker_role, BrokerRole::SyncMaster);
        assert_eq!(c.namesrv_addrs.len(), 2);
        assert_eq!(c.listen_port, 10999);
        assert_eq!(c.store.flush_disk_type, FlushDiskType::SyncFlush);
        assert!(!c.auto_create_topic_enable);
        assert_eq!(c.default_topic_queue_nums, 4);
        assert_eq!(c.store.max_message_size, 1024);
        assert_eq!(c.broker_addr(), "127.0.0.1:10999");
        assert_eq!(unknown, vec!["somethingElse".to_string()]);
    }

    #[test]
    fn zones_say_which_losses_keep_a_majority() {
        let peers = (0..5)
            .map(|i| format!("n{i}-127.0.0.1:{}", 40911 + i))
            .collect::<Vec<_>>()
            .join(";");
        let mut conf = Conf::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={peers}\ndLegerSelfId=n0\n\
             raftZones=n0:cityA;n1:cityA;n2:cityB;n3:cityB;n4:cityC\n"
        ));
        let (c, unknown) = BrokerConfig::from_conf(&mut conf).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        let r = c.raft.unwrap();
        assert_eq!(r.zones.get(&4).map(String::as_str), Some("cityC"));
        // 2 + 2 + 1 of 5: any one city may go.
        let keeps = zone_loss_keeps_majority(&r.zones, 5);
        assert_eq!(keeps.values().filter(|k| **k).count(), 3, "{keeps:?}");
        // 3 + 2 of 5: losing the city of three stops the group.
        let zones: std::collections::BTreeMap<u64, String> = (0..5)
            .map(|i| (i, if i < 3 { "east" } else { "west" }.to_string()))
            .collect();
        let keeps = zone_loss_keeps_majority(&zones, 5);
        assert_eq!(keeps.get("east"), Some(&false));
        assert_eq!(keeps.get("west"), Some(&true));
        // A zone naming a stranger is refused.
        let mut conf = Conf::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={peers}\ndLegerSelfId=n0\nraftZones=n7:x\n"
        ));
        let err = BrokerConfig::from_conf(&mut conf).unwrap_err().to_string();
        assert!(err.contains("raftZones") && err.contains("n7"), "{err}");
    }

    #[test]
    fn reads_the_dleger_keys() {
        let peers = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913";
        let mut conf = Conf::parse(&format!(
            "brokerName=RaftNode00\nenableDLegerCommitLog=true\ndLegerPeers={peers}\n\
             dLegerSelfId=n1\npreferredLeaderId=n2\nenableBatchPush=true\nraftElectionTimeoutMaxMs=900\n"
        ));
        let (c, unknown) = BrokerConfig::from_conf(&mut conf).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        let r = c.raft.expect("Raft mode");
        assert_eq!(
            r.peers.group, "RaftNode00",
            "dLegerGroup defaults to brokerName"
        );
        assert_eq!(r.peers.self_id, 1);
        assert_eq!(r.peers.members.len(), 3);
        assert_eq!(r.preferred_leader_id, Some(2));
        assert_eq!(r.election_timeout_max_ms, 900);

        let mut conf = Conf::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={peers}\ndLegerSelfId=n7\n"
        ));
        let err = BrokerConfig::from_conf(&mut conf).unwrap_err().to_string();
        assert!(err.contains("dLegerPeers") && err.contains("n7"), "{err}");
        let mut conf = Conf::parse(&format!(
            "enableDLegerCommitLog=true\ndLegerPeers={peers}\ndLegerSelfId=n0\npreferredLeaderId=n5\n"
        ));
        let err = BrokerConfig::from_conf(&mut conf).unwrap_err().to_string();
        assert!(err.contains("preferredLeaderId"), "{err}");
        // Without enableDLegerCommitLog the keys are accepted and unused.
        let mut conf = Conf::parse(&format!("dLegerPeers={peers}\ndLegerSelfId=n0\n"));
        let (c, unknown) = BrokerConfig::from_conf(&mut conf).unwrap();
        assert!(c.raft.is_none() && unknown.is_empty());
    }

    #[test]
    fn malformed_value_stops_with_the_key() {
        let mut conf = Conf::parse("flushDiskType=SOMETIMES\n");
        let err = BrokerConfig::from_conf(&mut conf).unwrap_err().to_string();
        assert!(err.contains("flushDiskType"), "{err}");
    }
}
