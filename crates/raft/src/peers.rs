//! The members of a Raft group, from RocketMQ's DLedger keys:
//!
//! ```text
//! dLegerGroup  = broker-a
//! dLegerPeers  = n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913
//! dLegerSelfId = n1
//! ```
//!
//! A member's Raft id is the number in its `n<digits>` name; its address
//! (`host:port`, the port its Raft listener binds) is what follows the
//! first `-`. Every member reads the addresses from its own configuration:
//! the Raft membership holds ids only. Members added at run time
//! (`meridian admin addRaftMember`) have their addresses given to every
//! member, which keeps them in `raft/peers` beside its Raft files.

use std::collections::{BTreeMap, BTreeSet};

/// Most members a group may list: DLedger groups are 3 or 5 brokers, and
/// one-digit broker ids (`n0` … `n8` → brokerId 1 … 9) keep room to spare.
pub const MAX_MEMBERS: usize = 9;

/// A Raft group as this member sees it.
#[derive(Debug, Clone)]
pub struct Peers {
    /// `dLegerGroup`: checked at every Raft connection.
    pub group: String,
    /// This member's id (`dLegerSelfId` `n1` → 1).
    pub self_id: u64,
    /// Every member `dLegerPeers` lists, this one included: id →
    /// `host:port`.
    pub members: BTreeMap<u64, String>,
    /// Addresses of members added at run time (shared by the clones).
    added: std::sync::Arc<parking_lot::RwLock<BTreeMap<u64, String>>>,
}

impl PartialEq for Peers {
    fn eq(&self, other: &Peers) -> bool {
        self.group == other.group
            && self.self_id == other.self_id
            && self.members == other.members
            && *self.added.read() == *other.added.read()
    }
}

impl Eq for Peers {}

impl Peers {
    /// Parse `dLegerGroup`, `dLegerPeers` and `dLegerSelfId`. Entries are
    /// separated by `;` (blank entries and surrounding spaces are ignored).
    pub fn parse(group: &str, peers: &str, self_id: &str) -> Result<Peers, String> {
        let group = group.trim();
        if group.is_empty() {
            return Err("dLegerGroup is empty".to_string());
        }
        let mut members = BTreeMap::new();
        for entry in peers.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((name, addr)) = entry.split_once('-') else {
                return Err(format!(
                    "dLegerPeers entry '{entry}' has no address (expected n<id>-host:port)"
                ));
            };
            let id =
                parse_id(name.trim()).map_err(|e| format!("dLegerPeers entry '{entry}': {e}"))?;
            let addr = addr.trim();
            check_addr(addr).map_err(|e| format!("dLegerPeers entry '{entry}': {e}"))?;
            if members.insert(id, addr.to_string()).is_some() {
                return Err(format!("dLegerPeers lists n{id} more than once"));
            }
        }
        if members.is_empty() {
            return Err("dLegerPeers is empty".to_string());
        }
        if members.len() > MAX_MEMBERS {
            return Err(format!(
                "dLegerPeers lists {} members, at most {MAX_MEMBERS} are allowed",
                members.len()
            ));
        }
        let self_id = parse_id(self_id.trim()).map_err(|e| format!("dLegerSelfId: {e}"))?;
        if !members.contains_key(&self_id) {
            return Err(format!("dLegerSelfId n{self_id} is not one of dLegerPeers"));
        }
        Ok(Peers {
            group: group.to_string(),
            self_id,
            members,
            added: Default::default(),
        })
    }

    /// This member's Raft address (`host:port`), the one its listener binds.
    pub fn self_addr(&self) -> &str {
        // `parse` makes sure the self id is a member; a hand-built value
        // that breaks this has no address.
        self.members
            .get(&self.self_id)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The Raft address of member `id`, if it is one: from `dLegerPeers`,
    /// else as given when it was added.
    pub fn addr(&self, id: u64) -> Option<String> {
        self.members
            .get(&id)
            .cloned()
            .or_else(|| self.added.read().get(&id).cloned())
    }

    /// Remember where member `id` (not in `dLegerPeers`) is. Returns
    /// whether anything changed; an id `dLegerPeers` lists at another
    /// address, a bad id or address, or a full group are refused.
    pub fn add_address(&self, id: u64, addr: &str) -> Result<bool, String> {
        let addr = addr.trim();
        check_addr(addr)?;
        if let Some(listed) = self.members.get(&id) {
            return if listed == addr {
                Ok(false)
            } else {
                Err(format!(
                    "dLegerPeers lists n{id} at {listed}, not {addr}; change dLegerPeers instead"
                ))
            };
        }
        let mut added = self.added.write();
        if added.get(&id).map(String::as_str) == Some(addr) {
            return Ok(false);
        }
        if !added.contains_key(&id) && self.members.len() + added.len() >= MAX_MEMBERS {
            return Err(format!("a group has at most {MAX_MEMBERS} members"));
        }
        added.insert(id, addr.to_string());
        Ok(true)
    }

    /// The addresses added at run time (for `raft/peers`).
    pub fn added(&self) -> BTreeMap<u64, String> {
        self.added.read().clone()
    }

    /// Every member's id: the initial membership, all voters.
    pub fn voter_ids(&self) -> BTreeSet<u64> {
        self.members.keys().copied().collect()
    }
}

/// `n<digits>` → the number. Leading zeros are refused so that each id has
/// exactly one spelling (`n01` and `n1` would otherwise be the same member).
pub fn parse_id(name: &str) -> Result<u64, String> {
    let digits = name
        .strip_prefix('n')
        .ok_or_else(|| format!("bad id '{name}' (expected n<digits>, e.g. n0)"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad id '{name}' (expected n<digits>, e.g. n0)"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(format!("bad id '{name}' (no leading zeros)"));
    }
    digits
        .parse::<u64>()
        .map_err(|_| format!("bad id '{name}' (number too large)"))
}

/// `host:port`, with a non-empty host and a port in 1..=65535. IPv6 hosts
/// are written in brackets (`[::1]:40911`).
fn check_addr(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("missing address (expected host:port)".to_string());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("address '{addr}' has no port (expected host:port)"));
    };
    if host.is_empty() {
        return Err(format!("address '{addr}' has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("address '{addr}' has a bad port '{port}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913";

    #[test]
    fn members_added_at_run_time_have_addresses() {
        let p = Peers::parse("broker-a", THREE, "n1").unwrap();
        assert_eq!(p.addr(3), None);
        assert_eq!(p.add_address(3, "127.0.0.1:40914"), Ok(true));
        assert_eq!(p.add_address(3, "127.0.0.1:40914"), Ok(false));
        // Clones share what was added.
        assert_eq!(p.clone().addr(3).as_deref(), Some("127.0.0.1:40914"));
        // A listed member keeps its dLegerPeers address.
        assert!(p.add_address(0, "127.0.0.1:1").is_err());
        assert_eq!(p.add_address(0, "127.0.0.1:40911"), Ok(false));
        assert!(p.add_address(4, "no-port").is_err());
        for id in 4..9 {
            assert_eq!(p.add_address(id, "127.0.0.1:9"), Ok(true));
        }
        assert!(p.add_address(9, "127.0.0.1:9").is_err(), "at most nine");
    }

    #[test]
    fn parses_rocketmq_format() {
        let p = Peers::parse("broker-a", THREE, "n1").unwrap();
        assert_eq!(p.group, "broker-a");
        assert_eq!(p.self_id, 1);
        assert_eq!(p.self_addr(), "127.0.0.1:40912");
        assert_eq!(p.addr(2).as_deref(), Some("127.0.0.1:40913"));
        assert_eq!(p.addr(3), None);
        assert_eq!(p.voter_ids(), BTreeSet::from([0, 1, 2]));
        assert_eq!(p.members.len(), 3);
    }

    #[test]
    fn tolerates_spaces_and_trailing_separator() {
        let p = Peers::parse(" g ", " n3-host-a.example:1 ; n10-[::1]:40912; ", " n10 ").unwrap();
        assert_eq!(p.group, "g");
        // only the first '-' separates: host names may contain more
        assert_eq!(p.addr(3).as_deref(), Some("host-a.example:1"));
        assert_eq!(p.self_addr(), "[::1]:40912");
        assert_eq!(p.voter_ids(), BTreeSet::from([3, 10]));
    }

    #[test]
    fn single_member_is_allowed() {
        let p = Peers::parse("g", "n0-localhost:9000", "n0").unwrap();
        assert_eq!(p.voter_ids(), BTreeSet::from([0]));
    }

    fn err(group: &str, peers: &str, self_id: &str) -> String {
        Peers::parse(group, peers, self_id).unwrap_err()
    }

    #[test]
    fn refuses_bad_configurations() {
        assert!(err("g", "", "n0").contains("empty"));
        assert!(err("g", " ; ;", "n0").contains("empty"));
        assert!(err("", THREE, "n0").contains("dLegerGroup"));
        for bad in ["0-h:1", "x1-h:1", "n-h:1", "n1a-h:1", "n01-h:1", "n-1-h:1"] {
            assert!(err("g", bad, "n0").contains("bad id"), "{bad}");
        }
        assert!(err("g", "n99999999999999999999999-h:1", "n0").contains("too large"));
        assert!(err("g", "n0-h:1;n0-h:2", "n0").contains("more than once"));
        assert!(err("g", "n0", "n0").contains("no address"));
        assert!(err("g", "n0-", "n0").contains("missing address"));
        assert!(err("g", "n0-host", "n0").contains("no port"));
        assert!(err("g", "n0-:1", "n0").contains("no host"));
        assert!(err("g", "n0-h:0", "n0").contains("bad port"));
        assert!(err("g", "n0-h:70000", "n0").contains("bad port"));
        assert!(err("g", THREE, "n3").contains("not one of"));
        assert!(err("g", THREE, "1").contains("dLegerSelfId"));
        assert!(err("g", THREE, "").contains("dLegerSelfId"));
        let ten: Vec<String> = (0..10).map(|i| format!("n{i}-h:{}", 4000 + i)).collect();
        assert!(err("g", &ten.join(";"), "n0").contains("at most 9"));
        assert!(Peers::parse("g", &ten[..9].join(";"), "n8").is_ok());
    }
}
