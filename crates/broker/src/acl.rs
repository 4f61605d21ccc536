//! Access control: RocketMQ 4's plain ACL (`aclEnable=true`).
//!
//! Accounts live in `plain_acl.yml`: `globalWhiteRemoteAddresses`, and per
//! account `accessKey`, `secretKey`, `whiteRemoteAddress`, `admin`,
//! `defaultTopicPerm`, `defaultGroupPerm`, `topicPerms` and `groupPerms`
//! (`name=DENY|PUB|SUB|PUB|SUB`). Every request passes [`Acl::check`]
//! before its handler, in this order, as RocketMQ's broker does:
//!
//! 1. a peer in `globalWhiteRemoteAddresses` is let through unsigned;
//! 2. the request must name a known `AccessKey`;
//! 3. a peer in that account's `whiteRemoteAddress` is let through;
//! 4. the `Signature` must verify with the account's secret key;
//! 5. an admin request (topic and group administration, offset resets,
//!    Meridian's relay and Raft requests) needs `admin: true`;
//! 6. each topic and group the request touches needs the permission for
//!    it: `PUB` to send to a topic, `SUB` to read a topic or use a consumer
//!    group — an account's entry for the name, else its default.
//!
//! A refusal is answered NO_PERMISSION with the reason, before anything is
//! done. The file is read again when it changes; a file that does not parse
//! keeps the accounts in force and logs why.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meridian_protocol::body::{decode_body, HeartbeatData, QueryAssignmentRequestBody};
use meridian_protocol::codes::request_code as code;
use meridian_protocol::header::send::SendMessageRequestHeader;
use meridian_protocol::RemotingCommand;
use meridian_remoting::acl::{verify, ACCESS_KEY};
use parking_lot::{Mutex, RwLock};
use yaml_rust2::{Yaml, YamlLoader};

use crate::topics::RETRY_GROUP_TOPIC_PREFIX;

/// Permission bits as RocketMQ numbers them.
const DENY: u8 = 1;
const PUB: u8 = 4;
const SUB: u8 = 8;

/// The trace topic, which every signed client may publish to.
const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";

/// Requests only an admin account may make.
const ADMIN_CODES: &[i32] = &[
    code::UPDATE_AND_CREATE_TOPIC,
    code::UPDATE_BROKER_CONFIG,
    code::DELETE_TOPIC_IN_BROKER,
    code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    code::DELETE_SUBSCRIPTIONGROUP,
    code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST,
    code::INVOKE_BROKER_TO_RESET_OFFSET,
    code::RAFT_TRANSFER_LEADER,
    code::RAFT_CHANGE_MEMBERSHIP,
    code::RELAY_APPEND,
    code::RELAY_GET_OFFSETS,
    code::RELAY_PUT_OFFSETS,
];

/// The accounts in force, and where they come from.
pub struct Acl {
    path: PathBuf,
    rules: RwLock<Arc<Rules>>,
    /// (modified time, length) of the file last read, to see changes.
    seen: Mutex<Option<(SystemTime, u64)>>,
}

#[derive(Debug, Default)]
struct Rules {
    global_white: Vec<AddressRule>,
    accounts: HashMap<String, Account>,
}

#[derive(Debug)]
struct Account {
    secret_key: String,
    white: Option<AddressRule>,
    admin: bool,
    default_topic_perm: u8,
    default_group_perm: u8,
    topic_perms: HashMap<String, u8>,
    group_perms: HashMap<String, u8>,
}

impl Acl {
    /// Read the accounts from `path`; an error names what is wrong.
    pub fn open(path: &Path) -> Result<Acl, String> {
        let acl = Acl {
            path: path.to_path_buf(),
            rules: RwLock::new(Arc::new(Rules::default())),
            seen: Mutex::new(None),
        };
        let rules = acl.read()?;
        tracing::info!(path = %path.display(), accounts = rules.accounts.len(), "ACL accounts loaded");
        *acl.rules.write() = Arc::new(rules);
        Ok(acl)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Rules, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("cannot read the ACL file {}: {e}", self.path.display()))?;
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read the ACL file {}: {e}", self.path.display()))?;
        *self.seen.lock() = Some((
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        ));
        parse(&text).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Read the file again if it changed since the last read. A file that
    /// does not parse keeps the accounts in force.
    pub fn reload_if_changed(&self) {
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if now.is_none() || now == *self.seen.lock() {
            return;
        }
        match self.read() {
            Ok(rules) => {
                tracing::info!(path = %self.path.display(), accounts = rules.accounts.len(), "ACL file changed; accounts reloaded");
                *self.rules.write() = Arc::new(rules);
            }
            Err(e) => {
                tracing::error!(error = %e, "ACL file changed but does not parse; the previous accounts stay in force")
            }
        }
    }

    /// Whether `req` from `peer` may be served; `Err` says why not.
    pub fn check(&self, peer: IpAddr, req: &RemotingCommand) -> Result<(), String> {
        let rules = self.rules.read().clone();
        if rules.global_white.iter().any(|r| r.matches(peer)) {
            return Ok(());
        }
        let Some(access_key) = req.ext(ACCESS_KEY) else {
            return Err(
                "no AccessKey in the request: this broker has aclEnable=true and serves only signed requests"
                    .into(),
            );
        };
        let Some(account) = rules.accounts.get(access_key) else {
            return Err(format!("no ACL account for accessKey={access_key}"));
        };
        if account.white.as_ref().is_some_and(|r| r.matches(peer)) {
            return Ok(());
        }
        if !verify(&account.secret_key, req) {
            return Err(format!(
                "signature check failed for accessKey={access_key}: the request was not signed with this account's secret key, or was changed after signing"
            ));
        }
        if ADMIN_CODES.contains(&req.code) && !account.admin {
            return Err(format!(
                "request code {} needs an admin account, and accessKey={access_key} is not one",
                req.code
            ));
        }
        let needed = resources(req)?;
        if needed.is_empty()
            || (account.admin && account.topic_perms.is_empty() && account.group_perms.is_empty())
        {
            return Ok(());
        }
        if needed
            .iter()
            .any(|(r, p)| *r == Resource::Topic(TRACE_TOPIC.into()) && *p == PUB)
        {
            return Ok(());
        }
        for (resource, perm) in &needed {
            let owned = match resource {
                Resource::Topic(t) => account
                    .topic_perms
                    .get(t)
                    .copied()
                    .unwrap_or(account.default_topic_perm),
                Resource::Group(g) => account
                    .group_perms
                    .get(g)
                    .copied()
                    .unwrap_or(account.default_group_perm),
            };
            if owned & DENY != 0 || owned & perm == 0 {
                return Err(format!(
                    "accessKey={access_key} has no {} permission on {resource}",
                    perm_name(*perm)
                ));
            }
        }
        Ok(())
    }
}

/// Re-read the ACL file every couple of seconds while the broker runs.
pub async fn watch(acl: Arc<Acl>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = acl.clone();
        let _ = tokio::task::spawn_blocking(move || a.reload_if_changed()).await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Resource {
    Topic(String),
    Group(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Topic(t) => write!(f, "topic {t}"),
            Resource::Group(g) => write!(f, "group {g}"),
        }
    }
}

fn perm_name(p: u8) -> &'static str {
    if p == PUB {
        "PUB"
    } else {
        "SUB"
    }
}

/// A topic name as a resource: a retry topic stands for its group.
fn topic(name: &str) -> Resource {
    match name.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
        Some(group) => Resource::Group(group.to_string()),
        None => Resource::Topic(name.to_string()),
    }
}

/// What a request touches, and the permission each needs.
fn resources(req: &RemotingCommand) -> Result<Vec<(Resource, u8)>, String> {
    let mut out = Vec::new();
    let group = |key: &str| {
        req.ext(key)
            .filter(|g| !g.is_empty())
            .map(|g| Resource::Group(g.to_string()))
    };
    match req.code {
        code::SEND_MESSAGE
        | code::SEND_MESSAGE_V2
        | code::SEND_BATCH_MESSAGE
        | code::SEND_REPLY_MESSAGE
        | code::SEND_REPLY_MESSAGE_V2 => {
            let h = SendMessageRequestHeader::parse(req)
                .map_err(|e| format!("invalid request header: {e}"))?;
            match topic(&h.topic) {
                // Sending to a retry topic is a consumer's send-back.
                g @ Resource::Group(_) => out.push((g, SUB)),
                t => out.push((t, PUB)),
            }
        }
        code::PULL_MESSAGE
        | code::LITE_PULL_MESSAGE
        | code::UPDATE_CONSUMER_OFFSET
        | code::QUERY_CONSUMER_OFFSET => {
            if let Some(t) = req.ext("topic") {
                out.push((topic(t), SUB));
            }
            out.extend(group("consumerGroup").map(|g| (g, SUB)));
        }
        code::QUERY_MESSAGE => {
            if let Some(t) = req.ext("topic") {
                out.push((topic(t), SUB));
            }
        }
        code::CONSUMER_SEND_MSG_BACK => out.extend(group("group").map(|g| (g, SUB))),
        code::UNREGISTER_CLIENT | code::GET_CONSUMER_LIST_BY_GROUP => {
            out.extend(group("consumerGroup").map(|g| (g, SUB)))
        }
        code::HEART_BEAT => {
            let hb: HeartbeatData = serde_json::from_slice(&req.body)
                .map_err(|e| format!("invalid heartbeat body: {e}"))?;
            for c in &hb.consumer_data_set {
                out.push((Resource::Group(c.group_name.clone()), SUB));
                for s in &c.subscription_data_set {
                    out.push((topic(&s.topic), SUB));
                }
            }
        }
        code::QUERY_ASSIGNMENT => {
            let body: QueryAssignmentRequestBody = decode_body(&req.body)
                .map_err(|e| format!("invalid QUERY_ASSIGNMENT body: {e}"))?;
            out.push((topic(&body.topic), SUB));
            if !body.consumer_group.is_empty() {
                out.push((Resource::Group(body.consumer_group), SUB));
            }
        }
        _ => {}
    }
    Ok(out)
}

// ---- plain_acl.yml ----

fn parse(text: &str) -> Result<Rules, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let Some(doc) = docs.into_iter().next() else {
        return Ok(Rules::default());
    };
    let mut rules = Rules::default();
    for a in strings(
        &doc["globalWhiteRemoteAddresses"],
        "globalWhiteRemoteAddresses",
    )? {
        if let Some(rule) = AddressRule::parse(&a)? {
            rules.global_white.push(rule);
        }
    }
    let accounts = match &doc["accounts"] {
        Yaml::Array(a) => a.as_slice(),
        Yaml::BadValue | Yaml::Null => &[],
        _ => return Err("accounts must be a list".into()),
    };
    for (i, a) in accounts.iter().enumerate() {
        let access_key =
            scalar(&a["accessKey"]).ok_or_else(|| format!("account {} has no accessKey", i + 1))?;
        let secret_key = scalar(&a["secretKey"])
            .ok_or_else(|| format!("account {access_key} has no secretKey"))?;
        if access_key.len() <= 6 || secret_key.len() <= 6 {
            return Err(format!(
                "account {access_key}: accessKey and secretKey must be at least 7 characters"
            ));
        }
        let white = match scalar(&a["whiteRemoteAddress"]) {
            Some(w) => AddressRule::parse(&w).map_err(|e| format!("account {access_key}: {e}"))?,
            None => None,
        };
        let admin = match &a["admin"] {
            Yaml::Boolean(b) => *b,
            Yaml::BadValue | Yaml::Null => false,
            other => scalar(other).is_some_and(|s| s.eq_ignore_ascii_case("true")),
        };
        let perm_of = |key: &str| scalar(&a[key]).map_or(DENY, |p| parse_perm(&p));
        let account = Account {
            secret_key,
            white,
            admin,
            default_topic_perm: perm_of("defaultTopicPerm"),
            default_group_perm: perm_of("defaultGroupPerm"),
            topic_perms: perms(&a["topicPerms"], "topicPerms", &access_key)?,
            group_perms: perms(&a["groupPerms"], "groupPerms", &access_key)?,
        };
        if rules.accounts.insert(access_key.clone(), account).is_some() {
            return Err(format!("accessKey {access_key} appears twice"));
        }
    }
    Ok(rules)
}

/// A YAML scalar as text (numbers too: `secretKey: 12345678`).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Yaml::Integer(n) => Some(n.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(y: &Yaml, what: &str) -> Result<Vec<String>, String> {
    match y {
        Yaml::Array(a) => Ok(a.iter().filter_map(scalar).collect()),
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| format!("{what} must be a list")),
    }
}

fn perms(y: &Yaml, what: &str, account: &str) -> Result<HashMap<String, u8>, String> {
    let mut out = HashMap::new();
    for entry in strings(y, what)? {
        let Some((name, perm)) = entry
            .split_once('=')
            .filter(|(n, p)| !n.trim().is_empty() && !p.contains('='))
        else {
            return Err(format!(
                "account {account}: {what} entry \"{entry}\" is not name=PERM"
            ));
        };
        out.insert(name.trim().to_string(), parse_perm(perm));
    }
    Ok(out)
}

/// `DENY`, `PUB`, `SUB`, `PUB|SUB`; anything else denies, as in RocketMQ.
fn parse_perm(s: &str) -> u8 {
    match s.trim() {
        "PUB" => PUB,
        "SUB" => SUB,
        "PUB|SUB" | "SUB|PUB" => PUB | SUB,
        _ => DENY,
    }
}

/// A whitelist entry: `*`; one address; `a.b.c.{1,2}`; a comma list;
/// `a.b.*` or `a.b.c.1-100` (the first `*` or range, later parts free).
#[derive(Debug, Clone)]
enum AddressRule {
    Any,
    Exact(Vec<IpAddr>),
    Range { head: Vec<u8>, low: u8, high: u8 },
}

impl AddressRule {
    fn parse(s: &str) -> Result<Option<AddressRule>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s == "*" || s == "*.*.*.*" || s == "*:*:*:*:*:*:*:*" {
            return Ok(Some(AddressRule::Any));
        }
        let bad = || {
            format!("\"{s}\" is not a white address (e.g. 192.168.1.*, 192.168.1.1-100, 192.168.1.{{1,2}}, 10.0.0.1,10.0.0.2)")
        };
        if let Some(open) = s.find('{') {
            let prefix = &s[..open];
            let inner = s[open + 1..].strip_suffix('}').ok_or_else(bad)?;
            let ips = inner
                .split(',')
                .map(|last| format!("{prefix}{}", last.trim()).parse::<IpAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            return Ok(Some(AddressRule::Exact(ips)));
        }
        if s.contains(',') {
            let ips = s
                .split(',')
                .map(|ip| ip.trim().parse::<IpAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            return Ok(Some(AddressRule::Exact(ips)));
        }
        if s.contains('*') || s.contains('-') {
            let parts: Vec<&str> = s.split('.').collect();
            if parts.len() != 4 {
                return Err(bad());
            }
            let mut head = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                if *p == "*" || p.contains('-') {
                    if i == 0 {
                        return Err(bad());
                    }
                    let (low, high) = if *p == "*" {
                        (0, 255)
                    } else {
                        let (a, b) = p.split_once('-').ok_or_else(bad)?;
                        let a: u8 = a.parse().map_err(|_| bad())?;
                        let b: u8 = b.parse().map_err(|_| bad())?;
                        if a > b {
                            return Err(bad());
                        }
                        (a, b)
                    };
                    return Ok(Some(AddressRule::Range { head, low, high }));
                }
                head.push(p.parse::<u8>().map_err(|_| bad())?);
            }
            return Err(bad());
        }
        let ip = s.parse::<IpAddr>().map_err(|_| bad())?;
        Ok(Some(AddressRule::Exact(vec![ip])))
    }

    fn matches(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        match self {
            AddressRule::Any => true,
            AddressRule::Exact(ips) => ips.contains(&peer),
            AddressRule::Range { head, low, high } => match peer {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    o[..head.len()] == head[..] && (*low..=*high).contains(&o[head.len()])
                }
                IpAddr::V6(_) => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress: 192.168.0.{1,2}
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
  - accessKey: rocketmq2
    secretKey: "12345678"
    admin: true
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_rocketmqs_example_file() {
        let r = parse(FILE).unwrap();
        assert_eq!(r.accounts.len(), 2);
        let a = &r.accounts["RocketMQ"];
        assert_eq!(a.secret_key, "12345678");
        assert_eq!(a.topic_perms["topicB"], PUB | SUB);
        assert_eq!(a.topic_perms["topicA"], DENY);
        assert_eq!(a.group_perms["groupA"], DENY);
        assert_eq!(a.default_topic_perm, DENY);
        assert_eq!(a.default_group_perm, SUB);
        assert!(r.accounts["rocketmq2"].admin);
        assert!(r.global_white[0].matches(ip("10.10.103.7")));
        assert!(!r.global_white[0].matches(ip("10.10.104.7")));
        assert!(a.white.as_ref().unwrap().matches(ip("192.168.0.2")));
        assert!(!a.white.as_ref().unwrap().matches(ip("192.168.0.3")));
    }

    #[test]
    fn address_rules() {
        let r = |s: &str| AddressRule::parse(s).unwrap().unwrap();
        assert!(r("*").matches(ip("1.2.3.4")));
        assert!(r("192.168.1.1-100").matches(ip("192.168.1.100")));
        assert!(!r("192.168.1.1-100").matches(ip("192.168.1.101")));
        assert!(r("10.10.1-10.*").matches(ip("10.10.5.77")));
        assert!(r("127.0.0.1").matches(ip("::ffff:127.0.0.1")));
        assert!(r("10.0.0.1,10.0.0.2").matches(ip("10.0.0.2")));
        for bad in ["300.1.1.1", "1.2.3", "*.1.1.1", "a.b.c.d", "1.2.3.{4"] {
            assert!(AddressRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_files_say_why() {
        assert!(
            parse("accounts: [ {accessKey: short, secretKey: 12345678} ]")
                .unwrap_err()
                .contains("7 characters")
        );
        assert!(parse("accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n    topicPerms: [ \"topicA\" ]\n")
            .unwrap_err()
            .contains("name=PERM"));
        assert!(parse("accounts: [ {accessKey: RocketMQ").is_err());
    }
}
