//! Commands for a deployment of regions: `regionStatus` (what a name server
//! sees of every region and its verdicts), `switchover` (move a region's
//! clients to another region, drained first when it is reachable; the same
//! command the other way fails back) and `verifyRegions` (every origin
//! queue's copies compared across regions).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Subcommand;
use meridian_client::Admin;
use meridian_namesrv::regions::{RegionState, Status, View};
use meridian_protocol::body::perm::{PERM_READ, PERM_WRITE};
use meridian_protocol::body::relay::CarriedOffset;
use meridian_protocol::codes::{request_code as rc, response_code as resp};
use meridian_protocol::header::relay::RelayGetOffsetsRequestHeader;
use meridian_protocol::origin::{copy_queues, OriginQueue, REGION_CANARY_TOPIC};
use meridian_protocol::RemotingCommand;
use serde_json::json;

use super::print_table;

#[derive(Subcommand)]
pub enum RegionCommand {
    /// What this name server sees of every region: its name servers,
    /// brokers and canaries, the verdicts, and where each region's clients
    /// are routed
    #[command(name = "regionStatus")]
    RegionStatus,
    /// Route region FROM's clients to region TO. A reachable FROM is
    /// drained first (its consumers stop, their offsets are carried, routes
    /// move, its writes stop, the relays copy the rest): RPO 0. An
    /// unreachable FROM moves at once if the verdict says it failed (or
    /// with --force). When FROM is where TO had been moved, this fails TO
    /// back instead, once TO has caught up
    #[command(name = "switchover")]
    Switchover {
        #[arg(long = "from")]
        from: String,
        #[arg(long = "to")]
        to: String,
        /// Move an unreachable region that no verdict says failed.
        #[arg(long)]
        force: bool,
        /// How long clients take to read routes again (their
        /// pollNameServerInterval, 30 s by default, and a margin).
        #[arg(long = "settleMs", default_value_t = 35_000)]
        settle_ms: u64,
        /// Give up waiting for offsets or relays after this long.
        #[arg(long = "timeoutMs", default_value_t = 300_000)]
        timeout_ms: u64,
        /// How long consumers take to report their last offsets once
        /// they can no longer pull (clients commit every 5 s).
        #[arg(long = "commitGraceMs", default_value_t = 6_000)]
        commit_grace_ms: u64,
    },
    /// Compare every origin queue of TOPIC across all regions: messages
    /// each region holds, and a checksum over the range they share
    #[command(name = "verifyRegions")]
    VerifyRegions {
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
}

/// Reaches any region's name servers and brokers.
pub struct Regions<'a> {
    pub admin: &'a Admin,
    pub credentials: Option<meridian_remoting::acl::Credentials>,
    pub connector: meridian_remoting::tls::Connector,
}

impl Regions<'_> {
    fn region(&self, namesrvs: &[String]) -> Admin {
        Admin::new(&namesrvs.join(";"))
            .with_security(self.credentials.clone(), self.connector.clone())
            .with_timeout(Duration::from_secs(5))
    }

    /// The first name server of `admin` that answers REGION_STATUS.
    async fn status_of(admin: &Admin) -> anyhow::Result<Status> {
        let mut last = anyhow!("no name server given");
        for addr in admin.namesrv_addrs() {
            match admin
                .call(addr, RemotingCommand::request(rc::REGION_STATUS))
                .await
            {
                Ok(r) if r.code == resp::SUCCESS => return Ok(serde_json::from_slice(&r.body)?),
                Ok(r) => last = anyhow!("{addr}: {}", r.remark.unwrap_or_default()),
                Err(e) => last = anyhow!("{addr}: {e}"),
            }
        }
        Err(last)
    }
}

pub async fn run(r: Regions<'_>, json: bool, cmd: RegionCommand) -> anyhow::Result<()> {
    match cmd {
        RegionCommand::RegionStatus => {
            let status = Regions::status_of(r.admin).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        RegionCommand::Switchover {
            from,
            to,
            force,
            settle_ms,
            timeout_ms,
            commit_grace_ms,
        } => {
            let plan = Switchover {
                r: &r,
                from,
                to,
                settle: Duration::from_millis(settle_ms),
                timeout: Duration::from_millis(timeout_ms),
                commit_grace: Duration::from_millis(commit_grace_ms),
                json,
            };
            plan.run(force).await
        }
        RegionCommand::VerifyRegions { topic } => verify(&r, json, &topic).await,
    }
}

fn age(now: i64, t: i64) -> String {
    if t <= 0 {
        "never".into()
    } else {
        format!("{:.1}s", (now - t) as f64 / 1000.0)
    }
}

fn print_status(s: &Status) {
    let me = &s.report;
    println!(
        "Region {} (name server {}), failoverMode {:?}, synced {}",
        me.region, me.namesrv, me.mode, s.synced
    );
    print_state(&me.state);
    let now = me.now_ms;
    let mut rows = Vec::new();
    for (region, v) in &s.verdicts {
        let view: View = me.views.get(region).cloned().unwrap_or_default();
        let lag = if view.canary_seen_ms > 0 {
            format!("{}ms", view.canary_seen_ms - view.canary_sent_ms)
        } else {
            "-".into()
        };
        rows.push(vec![
            region.clone(),
            if v.failed {
                "FAILED".into()
            } else if view.down {
                "suspect".into()
            } else {
                "alive".into()
            },
            format!("{}/{}", v.agreeing.len(), v.needed),
            if v.agreeing.is_empty() {
                "-".into()
            } else {
                v.agreeing.join(",")
            },
            age(now, view.namesrv_ok_ms),
            age(now, view.broker_ok_ms),
            age(now, view.canary_seen_ms),
            lag,
            v.moved_to.clone().unwrap_or_else(|| "-".into()),
            if v.pending { "yes".into() } else { "-".into() },
        ]);
    }
    print_table(
        &[
            "#Region",
            "#Verdict",
            "#Votes",
            "#SeenDownBy",
            "#NamesrvSeen",
            "#BrokerSeen",
            "#CanarySeen",
            "#CanaryLag",
            "#RoutedTo",
            "#Pending",
        ],
        rows,
    );
    for (region, p) in &s.peers {
        println!(
            "report of {region} from {} ({:.1}s old): {} live brokers",
            p.report.namesrv,
            p.age_ms as f64 / 1000.0,
            p.report.brokers.len()
        );
    }
}

fn print_state(state: &RegionState) {
    if state.moved.is_empty() {
        println!(
            "Routing: every region serves its own clients (epoch {})",
            state.epoch
        );
    } else {
        let moved: Vec<String> = state
            .moved
            .iter()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        println!(
            "Routing (epoch {}): {} — {} (by {})",
            state.epoch,
            moved.join(", "),
            state.reason,
            state.changed_by
        );
    }
}

/// One queue in one region.
#[derive(Clone, Debug)]
struct QueueAt {
    addr: String,
    queue_id: i32,
    min: i64,
    max: i64,
}

/// Every queue of some topics in one region, by (topic, origin queue).
type Inventory = BTreeMap<(String, OriginQueue), QueueAt>;

/// Topics that are no one's messages: left out of comparisons.
fn internal_topic(t: &str) -> bool {
    t == REGION_CANARY_TOPIC
        || t == "TBW102"
        || t == "SELF_TEST_TOPIC"
        || t == "OFFSET_MOVED_EVENT"
        || t.starts_with("RMQ_SYS_")
        || t.starts_with("rmq_sys_")
        || t == "TRANS_CHECK_MAX_TIME_TOPIC"
        || t == "SCHEDULE_TOPIC_XXXX"
}

/// The masters of `region` as its name servers list them: (name, address).
async fn masters(admin: &Admin, region: &str) -> anyhow::Result<Vec<(String, String)>> {
    let info = admin.cluster_info().await?;
    let mut out: Vec<(String, String)> = info
        .broker_addr_table
        .values()
        .filter(|b| {
            b.zone_name
                .as_deref()
                .is_none_or(|z| z.is_empty() || z == region)
        })
        .filter_map(|b| {
            b.broker_addrs
                .get(&meridian_protocol::body::route::MASTER_ID)
                .map(|a| (b.broker_name.clone(), a.clone()))
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn inventory(admin: &Admin, region: &str, only: Option<&str>) -> anyhow::Result<Inventory> {
    let mut inv = Inventory::new();
    for (name, addr) in masters(admin, region).await? {
        let configs = admin.all_topic_config(&addr).await?;
        for (topic, cfg) in configs {
            if only.is_some_and(|t| t != topic) || (only.is_none() && internal_topic(&topic)) {
                continue;
            }
            let copies = copy_queues(&cfg.attributes);
            let stats = admin.topic_stats(&addr, &topic).await?;
            for (mq, off) in stats.offset_table {
                let origin = match copies.get(&mq.queue_id) {
                    Some(o) => o.clone(),
                    None => OriginQueue::new(region, &name, mq.queue_id),
                };
                inv.insert(
                    (topic.clone(), origin),
                    QueueAt {
                        addr: addr.clone(),
                        queue_id: mq.queue_id,
                        min: off.min_offset,
                        max: off.max_offset,
                    },
                );
            }
        }
    }
    Ok(inv)
}

/// Committed offsets of every group in a region, by (group, topic, origin
/// queue); relays' and canaries' groups left out.
async fn group_offsets(
    admin: &Admin,
    inv: &Inventory,
) -> anyhow::Result<BTreeMap<(String, String, OriginQueue), i64>> {
    let mut by_addr: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut origin_of: BTreeMap<(&str, &str, i32), &OriginQueue> = BTreeMap::new();
    for ((topic, origin), q) in inv {
        by_addr.entry(&q.addr).or_default().insert(topic);
        origin_of.insert((&q.addr, topic, q.queue_id), origin);
    }
    let mut out = BTreeMap::new();
    for (addr, topics) in by_addr {
        let mut req = RemotingCommand::request(rc::RELAY_GET_OFFSETS);
        RelayGetOffsetsRequestHeader {
            topics: topics.into_iter().collect::<Vec<_>>().join(","),
        }
        .write(&mut req);
        let r = admin.call(addr, req).await?;
        if r.code != resp::SUCCESS {
            bail!(
                "{addr} gave no consumer offsets: {}",
                r.remark.unwrap_or_default()
            );
        }
        let list: Vec<CarriedOffset> = serde_json::from_slice(&r.body)?;
        for o in list {
            if o.group.starts_with("MERIDIAN_") {
                continue;
            }
            if let Some(origin) = origin_of.get(&(addr, o.topic.as_str(), o.queue_id)) {
                let origin = (*origin).clone();
                out.insert((o.group, o.topic, origin), o.offset);
            }
        }
    }
    Ok(out)
}

/// What `to` still lacks of `from`'s queues whose origin is in `regions`
/// (all when empty): (topic, origin, messages behind); and the queues `to`
/// has no copy of.
/// Queues behind: (topic, origin queue, messages behind).
type Lagging = Vec<(String, OriginQueue, i64)>;

fn behind(
    from: &Inventory,
    to: &Inventory,
    origins_in: &[&str],
) -> (Lagging, Vec<(String, OriginQueue)>) {
    let mut lagging = Vec::new();
    let mut missing = Vec::new();
    for ((topic, origin), q) in from {
        if !origins_in.is_empty() && !origins_in.contains(&origin.region.as_str()) {
            continue;
        }
        match to.get(&(topic.clone(), origin.clone())) {
            Some(t) if t.max >= q.max => {}
            Some(t) => lagging.push((topic.clone(), origin.clone(), q.max - t.max)),
            None if q.max > 0 => missing.push((topic.clone(), origin.clone())),
            None => {}
        }
    }
    (lagging, missing)
}

struct Switchover<'a, 'b> {
    r: &'a Regions<'b>,
    from: String,
    to: String,
    settle: Duration,
    timeout: Duration,
    commit_grace: Duration,
    json: bool,
}

impl Switchover<'_, '_> {
    fn say(&self, what: &str) {
        if !self.json {
            println!("{what}");
        }
    }

    async fn run(&self, force: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let status = Regions::status_of(self.r.admin).await?;
        let namesrvs = |region: &str| -> anyhow::Result<Vec<String>> {
            status.namesrvs.get(region).cloned().ok_or_else(|| {
                anyhow!(
                    "unknown region `{region}` (regions: {})",
                    status.regions.join(", ")
                )
            })
        };
        let from_ns = self.r.region(&namesrvs(&self.from)?);
        let to_ns = self.r.region(&namesrvs(&self.to)?);
        if self.from == self.to {
            bail!("--from and --to name the same region");
        }
        let state = status.report.state.clone();
        if state.moved.get(&self.to) == Some(&self.from) {
            return self.fail_back(&from_ns, &to_ns, &state, started).await;
        }
        if let Some(t) = state.moved.get(&self.from) {
            bail!("region {} is already moved to {t}", self.from);
        }
        let reachable = masters(&from_ns, &self.from)
            .await
            .map(|m| !m.is_empty())
            .unwrap_or(false);
        if !reachable {
            let failed = status.verdicts.get(&self.from).is_some_and(|v| v.failed);
            if !failed && !force {
                bail!(
                    "region {} cannot be reached from here, but no verdict says it failed (regionStatus): if it is lost, repeat with --force",
                    self.from
                );
            }
            self.say(&format!(
                "region {} is unreachable: moving its clients to {} without draining; messages it had not relayed stay there until it returns",
                self.from, self.to
            ));
            let new = self
                .switch(&from_ns, &to_ns, Some(&self.to), state.epoch)
                .await?;
            return self.done(&new, started, false);
        }
        // 1. Consumers in `from` stop; their committed offsets travel.
        let from_masters = masters(&from_ns, &self.from).await?;
        self.say(&format!(
            "1/5 {}: consumption stops (brokerPermission={PERM_WRITE} on {} masters)",
            self.from,
            from_masters.len()
        ));
        set_perm(&from_ns, &from_masters, PERM_WRITE).await?;
        self.wait_offsets(&from_ns, &self.from, &to_ns, &self.to)
            .await?;
        // 2. Routes move.
        self.say(&format!("2/5 routes of {} move to {}", self.from, self.to));
        let new = self
            .switch(&from_ns, &to_ns, Some(&self.to), state.epoch)
            .await?;
        // 3. Clients read routes again.
        self.say(&format!(
            "3/5 waiting {:.0}s for clients to read routes again",
            self.settle.as_secs_f64()
        ));
        tokio::time::sleep(self.settle).await;
        // 4. Writes stop; relays copy the rest.
        self.say(&format!(
            "4/5 {}: writes stop (brokerPermission=0); waiting for the relays to copy the rest to {}",
            self.from, self.to
        ));
        set_perm(&from_ns, &from_masters, 0).await?;
        self.wait_copied(&from_ns, &to_ns).await?;
        self.say(&format!(
            "5/5 every message {} acknowledged is in {}",
            self.from, self.to
        ));
        self.done(&new, started, true)
    }

    /// `to` had been moved to `from`: route it back once it caught up.
    async fn fail_back(
        &self,
        from_ns: &Admin,
        to_ns: &Admin,
        state: &RegionState,
        started: Instant,
    ) -> anyhow::Result<()> {
        let back = &self.to;
        let back_masters = masters(to_ns, back).await?;
        if back_masters.is_empty() {
            bail!("region {back} has no master registered with its name servers: start it first");
        }
        self.say(&format!(
            "1/5 {back}: takes writes, no reads yet (brokerPermission={PERM_WRITE})"
        ));
        set_perm(to_ns, &back_masters, PERM_WRITE).await?;
        self.say(&format!(
            "2/5 waiting for {back} to catch up with {} through the relays",
            self.from
        ));
        let mark = inventory(from_ns, &self.from, None).await?;
        self.wait_until("catching up", || async {
            let now = inventory(to_ns, back, None).await?;
            let (lagging, missing) = behind(&mark, &now, &[]);
            let lagging: Vec<_> = lagging
                .into_iter()
                .filter(|(_, o, _)| &o.region != back)
                .collect();
            Ok((
                lagging.is_empty() && missing.is_empty(),
                format!(
                    "{} queues behind, {} not relayed to {back}",
                    lagging.len(),
                    missing.len()
                ),
            ))
        })
        .await?;
        self.say(&format!("3/5 routes of {back} return to its own brokers"));
        let new = self.switch(from_ns, to_ns, None, state.epoch).await?;
        self.say(&format!(
            "4/5 waiting {:.0}s for clients to read routes again, then for offsets to travel",
            self.settle.as_secs_f64()
        ));
        tokio::time::sleep(self.settle).await;
        self.wait_offsets(from_ns, &self.from, to_ns, back).await?;
        self.say(&format!("5/5 {back}: reads again (brokerPermission=6)"));
        set_perm(to_ns, &back_masters, PERM_READ | PERM_WRITE).await?;
        self.done(&new, started, true)
    }

    /// REGION_SWITCH at a name server of `to` (else `from`), then wait
    /// until `from`'s name servers follow (when they answer).
    async fn switch(
        &self,
        from_ns: &Admin,
        to_ns: &Admin,
        target: Option<&str>,
        epoch: u64,
    ) -> anyhow::Result<RegionState> {
        let region = if target.is_some() {
            &self.from
        } else {
            &self.to
        };
        let mut req = RemotingCommand::request(rc::REGION_SWITCH);
        req.set_ext("region", region);
        req.set_ext("target", target.unwrap_or(""));
        req.set_ext("epoch", epoch.to_string());
        req.set_ext(
            "reason",
            format!(
                "meridian admin switchover --from {} --to {}",
                self.from, self.to
            ),
        );
        let mut last = anyhow!("no name server answered");
        let mut state = None;
        for addr in to_ns.namesrv_addrs().iter().chain(from_ns.namesrv_addrs()) {
            match to_ns.call(addr, req.clone()).await {
                Ok(r) if r.code == resp::SUCCESS => {
                    state = Some(serde_json::from_slice::<RegionState>(&r.body)?);
                    break;
                }
                Ok(r) => bail!("{addr} refused: {}", r.remark.unwrap_or_default()),
                Err(e) => last = anyhow!("{addr}: {e}"),
            }
        }
        let state = state.ok_or(last)?;
        // The moved region's own name servers answer its clients: wait
        // until they know (if they answer at all).
        let moved_ns = if target.is_some() { from_ns } else { to_ns };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match Regions::status_of(moved_ns).await {
                Ok(s) if s.report.state.epoch >= state.epoch => break,
                Ok(_) => {}
                Err(_) if target.is_some() => break,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(state)
    }

    /// Wait `commit_grace` for consumers that can no longer pull in `src`
    /// to report their last offsets, then until `dst` holds every group
    /// offset `src` had then (on the origin queues `dst` also has).
    async fn wait_offsets(
        &self,
        src_ns: &Admin,
        src: &str,
        dst_ns: &Admin,
        dst: &str,
    ) -> anyhow::Result<()> {
        tokio::time::sleep(self.commit_grace).await;
        let src_inv = inventory(src_ns, src, None).await?;
        let mark = group_offsets(src_ns, &src_inv).await?;
        self.wait_until("consumer offsets to travel", || async {
            let dst_inv = inventory(dst_ns, dst, None).await?;
            let dst_off = group_offsets(dst_ns, &dst_inv).await?;
            let behind = mark
                .iter()
                .filter(|((_, topic, origin), _)| {
                    dst_inv.contains_key(&(topic.clone(), origin.clone()))
                })
                .filter(|(k, o)| dst_off.get(*k).is_none_or(|d| d < *o))
                .count();
            Ok((
                behind == 0,
                format!("{behind} group offsets not yet in {dst}"),
            ))
        })
        .await
    }

    async fn wait_copied(&self, from_ns: &Admin, to_ns: &Admin) -> anyhow::Result<()> {
        self.wait_until("the relays to copy the rest", || async {
            let f = inventory(from_ns, &self.from, None).await?;
            let t = inventory(to_ns, &self.to, None).await?;
            let (lagging, missing) = behind(&f, &t, &[self.from.as_str()]);
            if !missing.is_empty() && lagging.is_empty() {
                let names: BTreeSet<&str> = missing.iter().map(|(t, _)| t.as_str()).collect();
                self.say(&format!(
                    "   not relayed to {} at all (no copy there): {}",
                    self.to,
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ));
                return Ok((true, String::new()));
            }
            let n: i64 = lagging.iter().map(|(_, _, n)| n).sum();
            Ok((lagging.is_empty(), format!("{n} messages not yet copied")))
        })
        .await
    }

    async fn wait_until<F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut last_said = Instant::now();
        loop {
            let (ok, progress) = match check().await {
                Ok(v) => v,
                Err(e) => (false, format!("cannot check: {e}")),
            };
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("gave up waiting for {what}: {progress}");
            }
            if last_said.elapsed() >= Duration::from_secs(5) {
                self.say(&format!("   waiting for {what}: {progress}"));
                last_said = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn done(&self, state: &RegionState, started: Instant, drained: bool) -> anyhow::Result<()> {
        if self.json {
            println!(
                "{}",
                json!({
                    "from": self.from,
                    "to": self.to,
                    "drained": drained,
                    "epoch": state.epoch,
                    "moved": state.moved,
                    "seconds": started.elapsed().as_secs_f64(),
                })
            );
        } else {
            print_state(state);
            println!("switchover done in {:.1}s", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

async fn set_perm(admin: &Admin, masters: &[(String, String)], perm: i32) -> anyhow::Result<()> {
    for (_, addr) in masters {
        admin
            .update_broker_config(addr, "brokerPermission", &perm.to_string())
            .await
            .map_err(|e| anyhow!("{addr}: {e}"))?;
    }
    Ok(())
}

/// A checksum over the messages of one queue in `[from, to)`: each
/// message's offset, id and body, placeholders left out.
async fn checksum(
    admin: &Admin,
    q: &QueueAt,
    topic: &str,
    from: i64,
    to: i64,
) -> anyhow::Result<(u64, i64)> {
    let mut sum = 0u64;
    let mut count = 0i64;
    let mut offset = from;
    while offset < to {
        let (code, next, msgs) = admin
            .pull(&q.addr, "MERIDIAN_VERIFY", topic, q.queue_id, offset, 32)
            .await?;
        if code != resp::SUCCESS || next <= offset {
            bail!(
                "{} queue {}: pull at {offset} answered {code}",
                q.addr,
                q.queue_id
            );
        }
        for m in msgs {
            if m.queue_offset >= to {
                break;
            }
            if m.property("MERIDIAN_FILTERED").is_some() {
                continue;
            }
            let id = m.uniq_key().unwrap_or_default();
            let h = fnv(&[&m.queue_offset.to_le_bytes(), id.as_bytes(), &m.body]);
            sum = sum.wrapping_add(h);
            count += 1;
        }
        offset = next;
    }
    Ok((sum, count))
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for b in *p {
            h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

async fn verify(r: &Regions<'_>, json: bool, topic: &str) -> anyhow::Result<()> {
    let status = Regions::status_of(r.admin).await?;
    let mut invs: BTreeMap<String, (Admin, Inventory)> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (region, ns) in &status.namesrvs {
        let admin = r.region(ns);
        match inventory(&admin, region, Some(topic)).await {
            Ok(inv) => {
                invs.insert(region.clone(), (admin, inv));
            }
            Err(e) => unreachable.push(format!("{region}: {e}")),
        }
    }
    let origins: BTreeSet<OriginQueue> = invs
        .values()
        .flat_map(|(_, inv)| inv.keys().map(|(_, o)| o.clone()))
        .collect();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for origin in &origins {
        // The origin region's own queue is the reference when it answers.
        let key = (topic.to_string(), origin.clone());
        let reference = invs
            .get(&origin.region)
            .and_then(|(a, inv)| inv.get(&key).map(|q| (origin.region.clone(), a, q.clone())));
        let Some((ref_region, ref_admin, ref_q)) = reference.or_else(|| {
            invs.iter()
                .find_map(|(reg, (a, inv))| inv.get(&key).map(|q| (reg.clone(), a, q.clone())))
        }) else {
            continue;
        };
        for (region, (admin, inv)) in &invs {
            let Some(q) = inv.get(&key) else {
                if ref_q.max > 0 {
                    problems.push(format!(
                        "{region} has no copy of {origin} ({} messages in {ref_region})",
                        ref_q.max - ref_q.min
                    ));
                }
                rows.push(vec![
                    origin.to_string(),
                    region.clone(),
                    "-".into(),
                    "-".into(),
                    "missing".into(),
                ]);
                continue;
            };
            let lo = q.min.max(ref_q.min);
            let hi = q.max.min(ref_q.max);
            let mut verdict = String::from("ok");
            if q.max < ref_q.max {
                verdict = format!("missing {}..{}", q.max, ref_q.max);
                problems.push(format!(
                    "{region}: {origin} lacks offsets {}..{} that {ref_region} holds",
                    q.max, ref_q.max
                ));
            } else if q.max > ref_q.max {
                verdict = format!("extra {}..{}", ref_q.max, q.max);
                problems.push(format!(
                    "{region}: {origin} holds offsets {}..{} that {ref_region} does not",
                    ref_q.max, q.max
                ));
            }
            if region != &ref_region && hi > lo {
                let (a, na) = checksum(ref_admin, &ref_q, topic, lo, hi).await?;
                let (b, nb) = checksum(admin, q, topic, lo, hi).await?;
                if a != b || na != nb {
                    verdict = format!("differs in {lo}..{hi}");
                    problems.push(format!("{region}: {origin} offsets {lo}..{hi} differ from {ref_region} ({nb} vs {na} messages)"));
                }
            }
            rows.push(vec![
                origin.to_string(),
                region.clone(),
                format!("{}..{}", q.min, q.max),
                (q.max - q.min).to_string(),
                verdict,
            ]);
        }
    }
    if json {
        println!(
            "{}",
            json!({"topic": topic, "origins": origins.len(), "problems": problems, "unreachable": unreachable})
        );
    } else {
        print_table(
            &["#Origin", "#Region", "#Offsets", "#Messages", "#Compared"],
            rows,
        );
        for u in &unreachable {
            println!("unreachable: {u}");
        }
        if problems.is_empty() {
            println!("{topic}: every origin queue is the same in every region that answered ({} origin queues)", origins.len());
        } else {
            for p in &problems {
                println!("PROBLEM {p}");
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{} problems found", problems.len())
    }
}
