//! Several relay processes on one link, with one `replicationGroup`, share
//! the link's streams.
//!
//! Each process joins a consumer group on every source broker it reads
//! (HEART_BEAT, broadcasting model, no subscription, so the broker makes
//! no retry topic for it) and asks each for the group's members
//! (GET_CONSUMER_LIST_BY_GROUP). A stream belongs to the member that
//! ranks highest for it (rendezvous hashing: a member's arrival or death
//! moves only the streams it gains or held). A process killed closes its
//! connections, the brokers drop it from the group at once, and the others
//! take its streams at their next look-up; a process cut off without its
//! connections closing is dropped when the broker expires it.
//!
//! While views differ (a member just joined or died), two processes may
//! both relay a stream for a moment. That costs nothing but a few appends
//! answered "already present": the target stores a record only at the
//! offset where its copy continues.

use std::collections::BTreeSet;
use std::time::Duration;

use meridian_protocol::body::{
    ConsumerData, GetConsumerListByGroupResponseBody, HeartbeatData, MessageModel,
};
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::header::consumer::GetConsumerListByGroupRequestHeader;
use meridian_protocol::RemotingCommand;

use crate::topology::stable_hash;
use crate::Shared;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// This process's place in its replication group.
pub struct Membership {
    /// The consumer group the processes of this link join on the source.
    pub group: String,
    /// This process's id in it.
    pub client_id: String,
    /// The target region the group is named after.
    pub region: String,
}

impl Membership {
    /// The group of `replicationGroup` relaying into `target_region`:
    /// processes of one name relaying elsewhere do not share.
    pub fn new(replication_group: &str, target_region: &str) -> Membership {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Membership {
            group: format!(
                "MERIDIAN_RELAY_{}_TO_{}",
                clean(replication_group),
                clean(target_region)
            ),
            client_id: format!("{host}@{}@{nanos:x}", std::process::id()),
            region: target_region.to_string(),
        }
    }

    /// Join the group on every source broker in `addrs` and return the
    /// members any of them knows (always including this one).
    pub async fn members(&self, shared: &Shared, addrs: &BTreeSet<String>) -> Vec<String> {
        let mut members: BTreeSet<String> = BTreeSet::new();
        members.insert(self.client_id.clone());
        let hb = HeartbeatData {
            client_id: self.client_id.clone(),
            consumer_data_set: vec![ConsumerData {
                group_name: self.group.clone(),
                message_model: MessageModel::Broadcasting,
                ..Default::default()
            }],
            producer_data_set: Vec::new(),
        };
        let body = match serde_json::to_vec(&hb) {
            Ok(b) => b,
            Err(_) => return members.into_iter().collect(),
        };
        let calls = addrs.iter().map(|addr| {
            let body = body.clone();
            async move {
                let req = RemotingCommand::request(request_code::HEART_BEAT).with_body(body);
                match shared.src.invoke(addr, req, CALL_TIMEOUT).await {
                    Ok(r) if r.code == response_code::SUCCESS => {}
                    Ok(r) => {
                        tracing::debug!(addr, code = r.code, remark = ?r.remark, "the source broker refused the relay's heartbeat");
                        return Vec::new();
                    }
                    Err(e) => {
                        tracing::debug!(addr, error = %e, "cannot reach the source broker for the relay group");
                        return Vec::new();
                    }
                }
                let mut req = RemotingCommand::request(request_code::GET_CONSUMER_LIST_BY_GROUP);
                GetConsumerListByGroupRequestHeader {
                    consumer_group: self.group.clone(),
                }
                .write(&mut req);
                match shared.src.invoke(addr, req, CALL_TIMEOUT).await {
                    Ok(r) if r.code == response_code::SUCCESS => {
                        serde_json::from_slice::<GetConsumerListByGroupResponseBody>(&r.body)
                            .map(|b| b.consumer_id_list)
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                }
            }
        });
        for ids in futures::future::join_all(calls).await {
            members.extend(ids);
        }
        members.into_iter().collect()
    }

    /// Whether this process relays the stream named `key`, among `members`.
    pub fn owns(&self, members: &[String], key: &str) -> bool {
        owner(members, key) == Some(self.client_id.as_str())
    }
}

/// The member that ranks highest for `key`.
pub fn owner<'a>(members: &'a [String], key: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (weight(m, key), m.as_str()))
        .map(String::as_str)
}

/// A member's rank for a key: FNV-1a of both, with every bit of it mixed
/// into the high bits (names that differ only in their last characters
/// would otherwise rank alike for every key).
fn weight(member: &str, key: &str) -> u64 {
    let mut h = stable_hash(&format!("{member}|{key}"));
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_leaving_moves_only_its_own_streams() {
        let members: Vec<String> = [
            "relay@23002@34ec6185",
            "relay@23006@356627a9",
            "relay@23010@35b2c8f0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let keys: Vec<String> = (0..300).map(|i| format!("T/R/b/{i}")).collect();
        let before: Vec<&str> = keys.iter().map(|k| owner(&members, k).unwrap()).collect();
        for m in &members {
            let n = before.iter().filter(|o| **o == m.as_str()).count();
            assert!((60..=140).contains(&n), "{m} owns {n} of 300");
        }
        // Eight queues over two members: neither gets all of them.
        let two = &members[..2];
        let eight: Vec<&str> = (0..8)
            .map(|i| owner(two, &format!("T/east/broker-east/{i}")).unwrap())
            .collect();
        assert!(
            eight.contains(&two[0].as_str()) && eight.contains(&two[1].as_str()),
            "{eight:?}"
        );
        let rest: Vec<String> = vec![members[0].clone(), members[2].clone()];
        for (k, was) in keys.iter().zip(&before) {
            let now = owner(&rest, k).unwrap();
            if *was != members[1] {
                assert_eq!(now, *was, "{k} moved though its owner stayed");
            }
        }
        assert_eq!(owner(&[], "x"), None);
    }
}
