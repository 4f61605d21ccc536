//! Regions: what this name server knows of the other regions, whether one
//! of them has failed, and where each region's clients are routed.
//!
//! Every `regionProbeIntervalMs` a name server with `regionPeers` does four
//! things:
//! - exchanges a [`Report`] with one name server of every other region
//!   (REGION_EXCHANGE): its region's live brokers, its own view of every
//!   other region, and the routing state;
//! - probes the brokers the other regions reported, directly;
//! - sends a canary (a small message in [`CANARY_TOPIC`]) into its own
//!   region's brokers and reads the canaries that arrived from the other
//!   regions through the relays;
//! - decides.
//!
//! A region is **down in one observer's view** when, for
//! `regionFailureTimeoutMs`, none of its name servers answered, none of its
//! brokers answered, and no canary of it arrived. It is **failed** only when
//! the observers of more than half of all regions see it down: the others
//! must agree, so a region cut off from one other region is not failed, and
//! two sides of a partition can never both hold a majority. With two
//! regions nothing is ever failed automatically (add a third region, even
//! one with only a name server, as a witness).
//!
//! The routing state ([`RegionState`]) says which regions are moved and to
//! where. The name servers of a moved region answer route queries with the
//! target region's brokers, so its clients write and read there, and a
//! region that comes back takes no writes until it is moved back. The
//! state has an epoch; every change raises it, and name servers adopt the
//! newest state they hear of, and keep it on disk (`regionStatePath`).
//! Changes come from `meridian admin switchover` (REGION_SWITCH) and, with
//! `failoverMode=auto`, from a failed verdict.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_client::Admin;
use meridian_protocol::codes::{request_code as rc, response_code as resp};
use meridian_protocol::RemotingCommand;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::routes::RouteTable;

/// The topic canaries travel in. Relays carry it on every link.
pub const CANARY_TOPIC: &str = meridian_protocol::origin::REGION_CANARY_TOPIC;
/// The producer and pull group of canaries.
pub const CANARY_GROUP: &str = "MERIDIAN_REGION_CANARY";

/// `failoverMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// A failed verdict moves the region's clients to its standby.
    Auto,
    /// A failed verdict raises an alarm (log, status, metric); a person
    /// confirms with `meridian admin switchover`.
    Semi,
    /// Verdicts are shown; only `meridian admin switchover` moves traffic.
    #[default]
    Manual,
}

impl std::str::FromStr for FailoverMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "automatic" => Ok(FailoverMode::Auto),
            "semi" | "semi-automatic" | "semiautomatic" => Ok(FailoverMode::Semi),
            "manual" => Ok(FailoverMode::Manual),
            _ => Err("expected auto, semi or manual".into()),
        }
    }
}

/// The region keys of `namesrv.conf`.
#[derive(Clone, Debug)]
pub struct RegionConfig {
    /// `regionId`: this name server's region.
    pub region: String,
    /// `regionPeers`: every other region's name servers,
    /// `west=host:port;host:port,north=host:port`.
    pub peers: BTreeMap<String, Vec<String>>,
    /// `regionStandby`: where each region's clients go when it fails,
    /// `east:west,west:east`; a region not listed goes to the first region
    /// (by name) that is neither failed nor moved.
    pub standby: BTreeMap<String, String>,
    /// `failoverMode`.
    pub mode: FailoverMode,
    /// `regionProbeIntervalMs` (2000).
    pub probe_interval: Duration,
    /// `regionFailureTimeoutMs` (10000): how long every signal of a region
    /// must be silent before this observer sees it down.
    pub failure_timeout: Duration,
    /// `regionCanaryIntervalMs` (2000; 0 sends none).
    pub canary_interval: Duration,
    /// `regionStatePath`: where the routing state is kept.
    pub state_path: PathBuf,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            region: "DefaultRegion".into(),
            peers: BTreeMap::new(),
            standby: BTreeMap::new(),
            mode: FailoverMode::Manual,
            probe_interval: Duration::from_secs(2),
            failure_timeout: Duration::from_secs(10),
            canary_interval: Duration::from_secs(2),
            state_path: default_state_path(),
        }
    }
}

fn default_state_path() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join("namesrv").join("regionState.json")
}

/// Parse `regionPeers`: `west=a:1;b:2,north=c:3`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (region, addrs) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected region=host:port;host:port"))?;
        let region = region.trim();
        let addrs: Vec<String> = addrs
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if region.is_empty() || addrs.is_empty() {
            return Err(format!("`{part}`: a region name and at least one address"));
        }
        if let Some(bad) = addrs.iter().find(|a| !a.contains(':')) {
            return Err(format!("`{bad}`: expected host:port"));
        }
        if peers.insert(region.to_string(), addrs).is_some() {
            return Err(format!("region `{region}` is listed twice"));
        }
    }
    Ok(peers)
}

/// Parse `regionStandby`: `east:west,west:east`.
pub fn parse_standby(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}`: expected region:standbyRegion"))?;
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() || from == to {
            return Err(format!("`{part}`: two different region names"));
        }
        map.insert(from.to_string(), to.to_string());
    }
    Ok(map)
}

/// Where each region's clients are routed. Regions not in `moved` are
/// served by their own brokers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegionState {
    /// Raised by every change; the newest state wins everywhere.
    pub epoch: u64,
    /// Moved region → the region whose brokers serve its clients.
    pub moved: BTreeMap<String, String>,
    /// The name server that made the change (breaks an epoch tie).
    pub changed_by: String,
    pub changed_at_ms: i64,
    /// Why: the command or the verdict that made the change.
    pub reason: String,
}

impl RegionState {
    /// Whether `self` replaces `other`.
    pub fn newer_than(&self, other: &RegionState) -> bool {
        (self.epoch, &self.changed_by) > (other.epoch, &other.changed_by)
    }
}

/// One observer's view of another region. Times are milliseconds since
/// the epoch; 0 means never (since the observer started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct View {
    /// Last time one of its name servers answered (or called).
    pub namesrv_ok_ms: i64,
    /// Last time one of its brokers answered a probe.
    pub broker_ok_ms: i64,
    /// Send time of the newest canary of it that arrived here.
    pub canary_sent_ms: i64,
    /// When that canary was read here.
    pub canary_seen_ms: i64,
    /// Every signal silent for `regionFailureTimeoutMs`.
    pub down: bool,
    /// Since when it has been down in this view (0 when it is not).
    pub down_since_ms: i64,
}

impl View {
    /// Recompute `down` at `now`: every signal older than `timeout`
    /// (counting "never" from `started`).
    fn update(&mut self, now: i64, started: i64, timeout: i64) {
        let silent = |t: i64| now - t.max(started) >= timeout;
        let down =
            silent(self.namesrv_ok_ms) && silent(self.broker_ok_ms) && silent(self.canary_seen_ms);
        if down && !self.down {
            self.down_since_ms = now;
        }
        if !down {
            self.down_since_ms = 0;
        }
        self.down = down;
    }
}

/// What one name server tells the others (REGION_EXCHANGE, both ways).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Report {
    pub region: String,
    pub namesrv: String,
    pub mode: FailoverMode,
    pub state: RegionState,
    /// Addresses of the region's live brokers, as registered here.
    pub brokers: Vec<String>,
    /// This observer's view of every other region.
    pub views: BTreeMap<String, View>,
    pub now_ms: i64,
}

/// The verdict on one region, from this name server's seat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Verdict {
    /// Observers (regions) that see it down.
    pub agreeing: Vec<String>,
    /// How many must: more than half of all regions.
    pub needed: usize,
    pub failed: bool,
    /// The region its clients are routed to, when moved.
    pub moved_to: Option<String>,
    /// Failed but not moved: waiting for `switchover` (semi and manual).
    pub pending: bool,
}

/// What `meridian admin regionStatus` shows (REGION_STATUS).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    pub report: Report,
    /// The newest report of each other region, with its age in ms.
    pub peers: BTreeMap<String, PeerReport>,
    pub verdicts: BTreeMap<String, Verdict>,
    /// Heard from another region since start (routes are answered from
    /// then, or from one failure timeout after start).
    pub synced: bool,
    pub regions: Vec<String>,
    /// Every region's name servers (this one's: this name server).
    pub namesrvs: BTreeMap<String, Vec<String>>,
    pub failure_timeout_ms: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerReport {
    pub age_ms: i64,
    pub report: Report,
}

/// Decide every region's verdict. `reports` are the other regions' newest
/// reports with the time each arrived; one older than `fresh_ms` gives no
/// vote.
pub fn verdicts(
    me: &str,
    regions: &[String],
    my_views: &BTreeMap<String, View>,
    reports: &BTreeMap<String, (i64, Report)>,
    state: &RegionState,
    now: i64,
    fresh_ms: i64,
) -> BTreeMap<String, Verdict> {
    let needed = regions.len() / 2 + 1;
    let mut out = BTreeMap::new();
    for x in regions.iter().filter(|r| *r != me) {
        let mut agreeing = Vec::new();
        if my_views.get(x).is_some_and(|v| v.down) {
            agreeing.push(me.to_string());
        }
        for (p, (at, report)) in reports {
            if p == x || p == me || now - at > fresh_ms {
                continue;
            }
            if report.views.get(x).is_some_and(|v| v.down) {
                agreeing.push(p.clone());
            }
        }
        agreeing.sort();
        let failed = agreeing.len() >= needed;
        let moved_to = state.moved.get(x).cloned();
        out.insert(
            x.clone(),
            Verdict {
                pending: failed && moved_to.is_none(),
                agreeing,
                needed,
                failed,
                moved_to,
            },
        );
    }
    out
}

/// The region `failed`'s clients go to: its configured standby if that one
/// is neither failed nor moved, else the first region (by name) that is
/// neither.
pub fn standby_for(
    failed: &str,
    configured: &BTreeMap<String, String>,
    regions: &[String],
    verdicts: &BTreeMap<String, Verdict>,
    state: &RegionState,
) -> Option<String> {
    let usable = |r: &String| {
        r != failed && !state.moved.contains_key(r) && !verdicts.get(r).is_some_and(|v| v.failed)
    };
    configured
        .get(failed)
        .filter(|r| regions.contains(r) && usable(r))
        .cloned()
        .or_else(|| regions.iter().find(|r| usable(r)).cloned())
}

struct Inner {
    state: RegionState,
    views: BTreeMap<String, View>,
    /// Each other region's newest report and when it arrived.
    reports: BTreeMap<String, (i64, Report)>,
    synced: bool,
    /// Canary read positions: (broker address, queue) → next offset.
    canary_offsets: HashMap<(String, i32), i64>,
    /// Brokers where the canary topic was made.
    canary_ready: BTreeSet<String>,
    last_canary_ms: i64,
    /// Regions whose failed verdict was announced (semi, manual).
    announced: BTreeSet<String>,
}

/// A name server's part in the regions.
pub struct Regions {
    cfg: RegionConfig,
    /// This name server's address as others see it in reports.
    me: String,
    started_ms: i64,
    routes: Arc<RouteTable>,
    /// Calls to other name servers and to brokers (TLS as configured).
    admin: Admin,
    connector: meridian_remoting::tls::Connector,
    /// Clients of the target region's name servers, for redirected routes.
    redirect_clients: Mutex<BTreeMap<String, Arc<Admin>>>,
    inner: Mutex<Inner>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Regions {
    /// Load the routing state from `regionStatePath` (a missing file is
    /// the initial state; an unreadable one stops the start).
    pub fn new(
        cfg: RegionConfig,
        me: String,
        routes: Arc<RouteTable>,
        connector: meridian_remoting::tls::Connector,
    ) -> anyhow::Result<Regions> {
        let admin = Admin::new("").with_security(None, connector.clone());
        let state = match std::fs::read(&cfg.state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "region state {} is unreadable ({e}); fix or remove it (the other regions' name servers hold the same state)",
                    cfg.state_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegionState::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", cfg.state_path.display()),
        };
        tracing::info!(region = %cfg.region, epoch = state.epoch, moved = ?state.moved, mode = ?cfg.mode, "region state loaded");
        Ok(Regions {
            me,
            started_ms: now_ms(),
            routes,
            // An answer may take a while on a loaded machine; a round waits
            // for its slowest call, so the bound stays under the timeout.
            admin: admin.with_timeout(
                cfg.probe_interval
                    .max(Duration::from_secs(1))
                    .min(cfg.failure_timeout / 3),
            ),
            connector,
            redirect_clients: Mutex::new(BTreeMap::new()),
            inner: Mutex::new(Inner {
                state,
                views: cfg
                    .peers
                    .keys()
                    .map(|r| (r.clone(), View::default()))
                    .collect(),
                reports: BTreeMap::new(),
                synced: false,
                canary_offsets: HashMap::new(),
                canary_ready: BTreeSet::new(),
                last_canary_ms: 0,
                announced: BTreeSet::new(),
            }),
            cfg,
        })
    }

    pub fn config(&self) -> &RegionConfig {
        &self.cfg
    }

    /// Every region's name, this one's included, sorted.
    pub fn regions(&self) -> Vec<String> {
        let mut all: Vec<String> = self.cfg.peers.keys().cloned().collect();
        all.push(self.cfg.region.clone());
        all.sort();
        all.dedup();
        all
    }

    pub fn state(&self) -> RegionState {
        self.inner.lock().state.clone()
    }

    /// Where this region's route queries are answered from, when it is
    /// moved: the target region and its name servers.
    pub fn redirect(&self) -> Option<(String, Vec<String>)> {
        let inner = self.inner.lock();
        let target = inner.state.moved.get(&self.cfg.region)?;
        match self.cfg.peers.get(target) {
            Some(addrs) => Some((target.clone(), addrs.clone())),
            None => {
                tracing::warn!(target = %target, "this region is moved to a region not in regionPeers; answering with its own brokers");
                None
            }
        }
    }

    /// `topic`'s route as the name servers of `target` answer it.
    pub async fn route_in(
        &self,
        target: &str,
        addrs: &[String],
        topic: &str,
    ) -> Result<Option<meridian_protocol::body::TopicRouteData>, String> {
        let client = self
            .redirect_clients
            .lock()
            .entry(target.to_string())
            .or_insert_with(|| {
                Arc::new(
                    Admin::new(&addrs.join(";"))
                        .with_security(None, self.connector.clone())
                        .with_timeout(Duration::from_secs(3)),
                )
            })
            .clone();
        client.route(topic).await.map_err(|e| e.to_string())
    }

    /// Whether route queries may be answered: once another region was
    /// heard from (so a region that was moved while it was away learns it
    /// first), or one failure timeout after start.
    pub fn routes_ready(&self) -> bool {
        self.inner.lock().synced
            || now_ms() - self.started_ms >= self.cfg.failure_timeout.as_millis() as i64
    }

    /// This name server's report now.
    pub fn report(&self) -> Report {
        let brokers = self
            .routes
            .brokers_of_region(&self.cfg.region)
            .into_iter()
            .map(|(_, addr, _)| addr)
            .collect();
        let inner = self.inner.lock();
        Report {
            region: self.cfg.region.clone(),
            namesrv: self.me.clone(),
            mode: self.cfg.mode,
            state: inner.state.clone(),
            brokers,
            views: inner.views.clone(),
            now_ms: now_ms(),
        }
    }

    /// A report from another region (its call, or its answer to ours).
    pub fn receive(&self, report: Report) {
        if report.region == self.cfg.region || !self.cfg.peers.contains_key(&report.region) {
            if report.region != self.cfg.region {
                tracing::debug!(region = %report.region, "report from a region not in regionPeers ignored");
            }
            // Name servers of one region do not exchange; a state is still
            // worth adopting.
            self.adopt(&report.state);
            return;
        }
        let now = now_ms();
        self.adopt(&report.state);
        let mut inner = self.inner.lock();
        inner.synced = true;
        if let Some(v) = inner.views.get_mut(&report.region) {
            v.namesrv_ok_ms = now;
        }
        inner.reports.insert(report.region.clone(), (now, report));
    }

    /// Take `state` if it is newer than ours, and keep it on disk.
    pub fn adopt(&self, state: &RegionState) -> bool {
        let mut inner = self.inner.lock();
        if !state.newer_than(&inner.state) {
            return false;
        }
        tracing::warn!(
            epoch = state.epoch,
            moved = ?state.moved,
            by = %state.changed_by,
            reason = %state.reason,
            "region routing changed"
        );
        inner.state = state.clone();
        drop(inner);
        self.persist(state);
        true
    }

    fn persist(&self, state: &RegionState) {
        let path = &self.cfg.state_path;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(state).unwrap_or_default())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::error!(path = %path.display(), error = %e, "cannot keep the region state on disk");
        }
    }

    /// Move `region`'s clients to `target` (`None`: back to its own
    /// brokers), if the state is still at `expected_epoch` (when given).
    /// Returns the new state, or why not.
    pub fn switch(
        &self,
        region: &str,
        target: Option<&str>,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<RegionState, String> {
        let regions = self.regions();
        if !regions.iter().any(|r| r == region) {
            return Err(format!(
                "unknown region `{region}` (regions: {})",
                regions.join(", ")
            ));
        }
        let mut inner = self.inner.lock();
        if let Some(e) = expected_epoch {
            if e != inner.state.epoch {
                return Err(format!(
                    "the region state changed meanwhile (epoch {} now, {e} expected): look again with regionStatus",
                    inner.state.epoch
                ));
            }
        }
        let mut next = inner.state.clone();
        match target {
            Some(t) => {
                if !regions.iter().any(|r| r == t) {
                    return Err(format!("unknown region `{t}`"));
                }
                if t == region {
                    return Err("a region cannot be moved to itself".into());
                }
                if let Some(further) = next.moved.get(t) {
                    return Err(format!(
                        "region `{t}` is itself moved to `{further}`: move `{region}` to `{further}`, or move `{t}` back first"
                    ));
                }
                // Regions moved to `region` follow it.
                for to in next.moved.values_mut() {
                    if to == region {
                        *to = t.to_string();
                    }
                }
                next.moved.insert(region.to_string(), t.to_string());
            }
            None => {
                if next.moved.remove(region).is_none() {
                    return Err(format!("region `{region}` is not moved"));
                }
            }
        }
        next.epoch += 1;
        next.changed_by = self.me.clone();
        next.changed_at_ms = now_ms();
        next.reason = reason.to_string();
        inner.state = next.clone();
        drop(inner);
        tracing::warn!(epoch = next.epoch, moved = ?next.moved, reason, "region routing changed here");
        self.persist(&next);
        Ok(next)
    }

    /// Everything `regionStatus` shows.
    pub fn status(&self) -> Status {
        let report = self.report();
        let inner = self.inner.lock();
        let now = now_ms();
        let regions = self.regions();
        let fresh = self.fresh_ms();
        Status {
            verdicts: verdicts(
                &self.cfg.region,
                &regions,
                &inner.views,
                &inner.reports,
                &inner.state,
                now,
                fresh,
            ),
            peers: inner
                .reports
                .iter()
                .map(|(r, (at, rep))| {
                    (
                        r.clone(),
                        PeerReport {
                            age_ms: now - at,
                            report: rep.clone(),
                        },
                    )
                })
                .collect(),
            synced: inner.synced,
            regions,
            namesrvs: {
                let mut all = self.cfg.peers.clone();
                all.insert(self.cfg.region.clone(), vec![self.me.clone()]);
                all
            },
            failure_timeout_ms: self.cfg.failure_timeout.as_millis() as i64,
            report,
        }
    }

    /// A report older than this gives no vote.
    fn fresh_ms(&self) -> i64 {
        (self.cfg.failure_timeout + self.cfg.probe_interval * 2).as_millis() as i64
    }

    /// Run the probe loop until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.round().await;
        }
    }

    /// One round: exchange, probe, canary, decide.
    pub async fn round(&self) {
        let mine = self.report();
        let exchanges = self.cfg.peers.iter().map(|(region, addrs)| {
            let mine = mine.clone();
            async move { (region.clone(), self.exchange(addrs, &mine).await) }
        });
        for (region, answer) in futures::future::join_all(exchanges).await {
            match answer {
                Some(report) if report.region == region => self.receive(report),
                Some(report) => {
                    tracing::warn!(expected = %region, answered = %report.region, "a name server listed for one region answers for another; check regionPeers")
                }
                None => tracing::debug!(region = %region, "no name server of the region answered"),
            }
        }
        self.probe_brokers().await;
        self.canary().await;
        self.decide();
    }

    async fn exchange(&self, addrs: &[String], mine: &Report) -> Option<Report> {
        let body = serde_json::to_vec(mine).ok()?;
        for addr in addrs {
            let req = RemotingCommand::request(rc::REGION_EXCHANGE).with_body(body.clone());
            match self.admin.call(addr, req).await {
                Ok(r) if r.code == resp::SUCCESS => match serde_json::from_slice::<Report>(&r.body)
                {
                    Ok(rep) => return Some(rep),
                    Err(e) => tracing::warn!(addr, error = %e, "unreadable region report"),
                },
                Ok(r) => {
                    tracing::warn!(addr, code = r.code, remark = ?r.remark, "region exchange refused")
                }
                Err(e) => tracing::debug!(addr, error = %e, "region exchange failed"),
            }
        }
        None
    }

    /// Probe every other region's brokers (as its last report listed
    /// them); any answer counts.
    async fn probe_brokers(&self) {
        let targets: Vec<(String, Vec<String>)> = {
            let inner = self.inner.lock();
            inner
                .reports
                .iter()
                .map(|(r, (_, rep))| (r.clone(), rep.brokers.clone()))
                .collect()
        };
        let probes = targets.into_iter().map(|(region, brokers)| async move {
            for addr in &brokers {
                let req = RemotingCommand::request(rc::GET_BROKER_RUNTIME_INFO);
                if self.admin.call(addr, req).await.is_ok() {
                    return Some(region);
                }
            }
            None
        });
        let now = now_ms();
        for region in futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
        {
            if let Some(v) = self.inner.lock().views.get_mut(&region) {
                v.broker_ok_ms = now;
            }
        }
    }

    /// Send this region's canary now and then, and read the canaries that
    /// arrived from the others.
    async fn canary(&self) {
        if self.cfg.canary_interval.is_zero() {
            return;
        }
        let masters: Vec<(String, String)> = self
            .routes
            .brokers_of_region(&self.cfg.region)
            .into_iter()
            .filter(|(_, _, id)| *id == 0)
            .map(|(name, addr, _)| (name, addr))
            .collect();
        let now = now_ms();
        let due = {
            let mut inner = self.inner.lock();
            let due = now - inner.last_canary_ms >= self.cfg.canary_interval.as_millis() as i64;
            if due {
                inner.last_canary_ms = now;
            }
            due
        };
        if due {
            // One canary per round, into one master (they take turns).
            if let Some((name, addr)) = masters.get((now as usize / 1000) % masters.len().max(1)) {
                self.send_canary(name, addr).await;
            }
        }
        for (name, addr) in &masters {
            self.read_canaries(name, addr).await;
        }
    }

    async fn send_canary(&self, broker_name: &str, addr: &str) {
        let fresh = !self.inner.lock().canary_ready.contains(addr);
        if fresh {
            let mut cfg = meridian_protocol::body::TopicConfig::new(CANARY_TOPIC);
            cfg.read_queue_nums = 1;
            cfg.write_queue_nums = 1;
            match self.admin.update_topic(addr, &cfg).await {
                Ok(()) => {
                    self.inner.lock().canary_ready.insert(addr.to_string());
                }
                Err(e) => {
                    tracing::debug!(addr, error = %e, "cannot make the canary topic");
                    return;
                }
            }
        }
        let body = serde_json::json!({
            "region": self.cfg.region,
            "namesrv": self.me,
            "sentMs": now_ms(),
        });
        let msg = meridian_client::producer::Message {
            topic: CANARY_TOPIC.into(),
            body: body.to_string().into_bytes().into(),
            tags: Some("canary".into()),
            keys: Vec::new(),
            properties: Vec::new(),
            delay_level: 0,
        };
        let (req, _) = meridian_client::producer::send_request(CANARY_GROUP, broker_name, 0, &msg);
        match self.admin.call(addr, req).await {
            Ok(r) if r.code == resp::SUCCESS => {}
            Ok(r) => {
                tracing::debug!(addr, code = r.code, remark = ?r.remark, "canary refused");
                self.inner.lock().canary_ready.remove(addr);
            }
            Err(e) => tracing::debug!(addr, error = %e, "canary not sent"),
        }
    }

    async fn read_canaries(&self, broker_name: &str, addr: &str) {
        let queues = self
            .routes
            .route(CANARY_TOPIC)
            .and_then(|r| {
                r.queue_datas
                    .iter()
                    .find(|q| q.broker_name == broker_name)
                    .map(|q| q.read_queue_nums.max(q.write_queue_nums))
            })
            .unwrap_or(0);
        for q in 0..queues {
            let key = (addr.to_string(), q);
            let known = self.inner.lock().canary_offsets.get(&key).copied();
            let offset = match known {
                Some(o) => o,
                None => {
                    let req = meridian_client::consumer::max_offset_request(CANARY_TOPIC, q);
                    let max = match self.admin.call(addr, req).await {
                        Ok(r) => meridian_client::consumer::max_offset_result(&r),
                        Err(e) => Err(e),
                    };
                    match max {
                        Ok(max) => (max - 1).max(0),
                        Err(_) => continue,
                    }
                }
            };
            let Ok((code, next, records)) = self
                .admin
                .pull(addr, CANARY_GROUP, CANARY_TOPIC, q, offset, 32)
                .await
            else {
                continue;
            };
            if code != resp::SUCCESS
                && code != resp::PULL_NOT_FOUND
                && code != resp::PULL_OFFSET_MOVED
            {
                continue;
            }
            let now = now_ms();
            let mut inner = self.inner.lock();
            inner.canary_offsets.insert(key, next);
            for m in records {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Canary {
                    region: String,
                    sent_ms: i64,
                }
                let Ok(c) = serde_json::from_slice::<Canary>(&m.body) else {
                    continue;
                };
                if c.region == self.cfg.region {
                    continue;
                }
                if let Some(v) = inner.views.get_mut(&c.region) {
                    if c.sent_ms > v.canary_sent_ms {
                        v.canary_sent_ms = c.sent_ms;
                        v.canary_seen_ms = now;
                    }
                }
            }
        }
    }

    /// Recompute the views and verdicts, and act on them as the mode says.
    fn decide(&self) {
        let now = now_ms();
        let regions = self.regions();
        let timeout = self.cfg.failure_timeout.as_millis() as i64;
        let fresh = self.fresh_ms();
        let (verdicts, state) = {
            let mut inner = self.inner.lock();
            for v in inner.views.values_mut() {
                v.update(now, self.started_ms, timeout);
            }
            let v = verdicts(
                &self.cfg.region,
                &regions,
                &inner.views,
                &inner.reports,
                &inner.state,
                now,
                fresh,
            );
            (v, inner.state.clone())
        };
        for (region, v) in &verdicts {
            let mut inner = self.inner.lock();
            if !v.failed {
                if inner.announced.remove(region) {
                    tracing::warn!(region = %region, "region no longer failed in the verdict");
                }
                continue;
            }
            if !v.pending {
                continue;
            }
            let standby = standby_for(region, &self.cfg.standby, &regions, &verdicts, &state);
            match self.cfg.mode {
                FailoverMode::Auto => {
                    drop(inner);
                    let Some(to) = standby else {
                        tracing::error!(region = %region, "region failed and no region is left to take its clients");
                        continue;
                    };
                    let reason = format!(
                        "automatic failover: {region} down in the views of {}",
                        v.agreeing.join(", ")
                    );
                    match self.switch(region, Some(&to), Some(state.epoch), &reason) {
                        Ok(_) => {
                            tracing::warn!(region = %region, to = %to, agreeing = ?v.agreeing, "region failed: its clients are routed to the standby region")
                        }
                        Err(e) => {
                            tracing::warn!(region = %region, error = %e, "automatic failover not made")
                        }
                    }
                }
                FailoverMode::Semi | FailoverMode::Manual => {
                    if inner.announced.insert(region.clone()) {
                        let to = standby.unwrap_or_else(|| "<region>".into());
                        tracing::error!(
                            region = %region,
                            agreeing = ?v.agreeing,
                            mode = ?self.cfg.mode,
                            "REGION FAILED: confirm the failover with `meridian admin switchover --from {region} --to {to}`"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> View {
        View {
            down: true,
            ..Default::default()
        }
    }

    fn report(region: &str, views: &[(&str, View)]) -> Report {
        Report {
            region: region.into(),
            views: views
                .iter()
                .map(|(r, v)| (r.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn three() -> Vec<String> {
        vec!["east".into(), "north".into(), "west".into()]
    }

    /// East's verdicts among three regions at `now`, reports fresh for 500 ms.
    fn verdicts_at(
        mine: &BTreeMap<String, View>,
        reports: &BTreeMap<String, (i64, Report)>,
        now: i64,
    ) -> BTreeMap<String, Verdict> {
        verdicts(
            "east",
            &three(),
            mine,
            reports,
            &RegionState::default(),
            now,
            500,
        )
    }

    #[test]
    fn a_region_fails_only_when_a_majority_of_all_regions_sees_it_down() {
        let mine: BTreeMap<_, _> = [("west".to_string(), down())].into();
        // North still hears west: not failed.
        let reports: BTreeMap<_, _> = [(
            "north".to_string(),
            (1000, report("north", &[("west", View::default())])),
        )]
        .into();
        let v = verdicts_at(&mine, &reports, 1000);
        assert!(!v["west"].failed);
        assert_eq!(v["west"].agreeing, vec!["east"]);
        assert_eq!(v["west"].needed, 2);
        // North agrees: failed, pending (nobody moved it yet).
        let reports: BTreeMap<_, _> = [(
            "north".to_string(),
            (1000, report("north", &[("west", down())])),
        )]
        .into();
        let v = verdicts_at(&mine, &reports, 1000);
        assert!(v["west"].failed && v["west"].pending);
        // North's report is stale: its vote does not count.
        let v = verdicts_at(&mine, &reports, 2000);
        assert!(!v["west"].failed);
    }

    #[test]
    fn an_isolated_region_never_fails_the_others() {
        // East hears nobody: it sees both down, but alone it is no majority.
        let mine: BTreeMap<_, _> =
            [("west".to_string(), down()), ("north".to_string(), down())].into();
        let v = verdicts_at(&mine, &BTreeMap::new(), 0);
        assert!(!v["west"].failed && !v["north"].failed);
        // A failed region's own word about the others gives no vote on itself.
        let reports: BTreeMap<_, _> =
            [("west".to_string(), (0, report("west", &[("west", down())])))].into();
        let v = verdicts_at(&BTreeMap::new(), &reports, 0);
        assert!(v["west"].agreeing.is_empty());
    }

    #[test]
    fn two_regions_never_fail_each_other() {
        let regions = vec!["east".to_string(), "west".to_string()];
        let mine: BTreeMap<_, _> = [("west".to_string(), down())].into();
        let v = verdicts(
            "east",
            &regions,
            &mine,
            &BTreeMap::new(),
            &RegionState::default(),
            0,
            500,
        );
        assert_eq!(v["west"].needed, 2);
        assert!(!v["west"].failed);
    }

    #[test]
    fn a_view_is_down_only_when_every_signal_is_silent() {
        let mut v = View {
            namesrv_ok_ms: 100,
            broker_ok_ms: 100,
            canary_seen_ms: 900,
            ..Default::default()
        };
        v.update(1000, 0, 500);
        assert!(!v.down, "the canary still arrives");
        v.update(1500, 0, 500);
        assert!(v.down && v.down_since_ms == 1500);
        v.update(1600, 0, 500);
        assert_eq!(v.down_since_ms, 1500, "down since the first time");
        v.broker_ok_ms = 1650;
        v.update(1700, 0, 500);
        assert!(!v.down && v.down_since_ms == 0);
        // Never heard of, counted from start.
        let mut fresh = View::default();
        fresh.update(400, 0, 500);
        assert!(!fresh.down);
    }

    #[test]
    fn the_standby_is_the_configured_one_unless_it_cannot_serve() {
        let regions = three();
        let configured = parse_standby("west:north").unwrap();
        let none = BTreeMap::new();
        let st = RegionState::default();
        assert_eq!(
            standby_for("west", &configured, &regions, &none, &st).as_deref(),
            Some("north")
        );
        assert_eq!(
            standby_for("north", &configured, &regions, &none, &st).as_deref(),
            Some("east")
        );
        let mut moved = RegionState::default();
        moved.moved.insert("north".into(), "east".into());
        assert_eq!(
            standby_for("west", &configured, &regions, &none, &moved).as_deref(),
            Some("east")
        );
    }

    #[test]
    fn peers_and_standby_parse_and_say_what_is_wrong() {
        let p = parse_peers("west=127.0.0.1:1;127.0.0.1:2, north=h:3").unwrap();
        assert_eq!(p["west"], vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(p["north"], vec!["h:3"]);
        assert!(parse_peers("west")
            .unwrap_err()
            .contains("region=host:port"));
        assert!(parse_peers("west=h").unwrap_err().contains("host:port"));
        assert!(parse_peers("w=h:1,w=h:2").unwrap_err().contains("twice"));
        assert!(parse_standby("east:east").is_err());
        assert!(parse_standby("east").is_err());
    }

    #[test]
    fn the_newest_state_wins_and_ties_break_by_who_made_it() {
        let a = RegionState {
            epoch: 2,
            changed_by: "a".into(),
            ..Default::default()
        };
        let b = RegionState {
            epoch: 2,
            changed_by: "b".into(),
            ..Default::default()
        };
        assert!(b.newer_than(&a) && !a.newer_than(&b) && !a.newer_than(&a));
        let c = RegionState {
            epoch: 3,
            ..Default::default()
        };
        assert!(c.newer_than(&b));
    }
}
