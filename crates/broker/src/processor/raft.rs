//! Raft group administration (Meridian only): RAFT_TRANSFER_LEADER.
//!
//! Only the leader can hand its leadership over. A member that does not
//! lead refuses with SERVICE_NOT_AVAILABLE and names the leader it knows of
//! in the `leaderId` ext field, so the caller can ask that member instead
//! (`meridian admin transferLeader` does).

use std::sync::Arc;

use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::admin::{
    RaftTransferLeaderRequestHeader, RaftTransferLeaderResponseHeader,
};
use meridian_protocol::RemotingCommand;
use meridian_raft::node::RaftNode;
use meridian_remoting::Reply;

use super::{bad_header, error, ok};
use crate::BrokerInner;

/// RAFT_TRANSFER_LEADER: on the leader, hand leadership to `toNodeId` and
/// answer SUCCESS once that member leads (openraft makes it elect itself
/// as soon as it holds the leader's whole log), or SYSTEM_ERROR with the
/// reason when it has not taken over within the transfer's time limit.
pub fn transfer_leader(b: &Arc<BrokerInner>, req: RemotingCommand) -> Reply {
    match prepare(b, &req) {
        Err(response) => Reply::Now(Some(response)),
        Ok((node, to)) => {
            let addr = b.config.broker_addr();
            Reply::Later(Box::pin(async move {
                let group = node.peers().group.clone();
                let target = format!("n{to}");
                tracing::info!(group, target, "transferring Raft leadership");
                let outcome = node.transfer_leader(to).await;
                let role = *node.role().borrow();
                let header = RaftTransferLeaderResponseHeader {
                    raft_group: Some(group.clone()),
                    leader_id: role.leader_id.map(|l| format!("n{l}")),
                    term: Some(role.term as i64),
                };
                let mut response = match outcome {
                    Ok(()) => {
                        tracing::info!(
                            group,
                            leader = target,
                            term = role.term,
                            "Raft leadership transferred"
                        );
                        ok(&req)
                    }
                    Err(why) => {
                        tracing::warn!(group, target, error = %why, "Raft leadership transfer failed");
                        error(
                            &req,
                            rc::SYSTEM_ERROR,
                            format!(
                                "broker {addr} could not hand the leadership of Raft group \
                                 {group} to n{to}: {why}; see `meridian admin raftStatus` for \
                                 how far n{to} lags, and try again"
                            ),
                        )
                    }
                };
                header.write(&mut response);
                Some(response)
            }))
        }
    }
}

/// Check the request against this member: a Raft member, a known target,
/// and the leader. Returns the node and the target's id.
fn prepare(
    b: &Arc<BrokerInner>,
    req: &RemotingCommand,
) -> Result<(Arc<RaftNode>, u64), RemotingCommand> {
    let addr = b.config.broker_addr();
    let Some(node) = b.raft.clone() else {
        return Err(error(
            req,
            rc::REQUEST_CODE_NOT_SUPPORTED,
            format!(
                "broker {addr} is not a Raft member (enableDLegerCommitLog=false): leadership \
                 transfer applies only to brokers of a Raft group"
            ),
        ));
    };
    let h = RaftTransferLeaderRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    let peers = node.peers();
    let members = || {
        peers
            .members
            .keys()
            .map(|id| format!("n{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let to = parse_node_id(&h.to_node_id)
        .filter(|id| peers.members.contains_key(id))
        .ok_or_else(|| {
            error(
                req,
                rc::INVALID_PARAMETER,
                format!(
                    "'{}' is not a member of Raft group {}; its members are {}",
                    h.to_node_id,
                    peers.group,
                    members()
                ),
            )
        })?;
    let role = *node.role().borrow();
    if role.leader_id != Some(peers.self_id) {
        let why = match role.leader_id {
            Some(l) => format!(
                "broker {addr} (n{}) is not the leader of Raft group {}; n{l} is: send the \
                 request to n{l}",
                peers.self_id, peers.group
            ),
            None => format!(
                "broker {addr} (n{}) is not the leader of Raft group {}, and no leader is \
                 known yet (an election may be under way); try again in a few seconds",
                peers.self_id, peers.group
            ),
        };
        let mut response = error(req, rc::SERVICE_NOT_AVAILABLE, why);
        RaftTransferLeaderResponseHeader {
            raft_group: Some(peers.group.clone()),
            leader_id: role.leader_id.map(|l| format!("n{l}")),
            term: Some(role.term as i64),
        }
        .write(&mut response);
        return Err(response);
    }
    Ok((node, to))
}

/// `n<digits>` (the `dLegerSelfId` form) → the number.
fn parse_node_id(s: &str) -> Option<u64> {
    let digits = s.trim().strip_prefix('n')?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_node_id;

    #[test]
    fn node_ids() {
        assert_eq!(parse_node_id("n2"), Some(2));
        assert_eq!(parse_node_id(" n10 "), Some(10));
        assert_eq!(parse_node_id("2"), None);
        assert_eq!(parse_node_id("n"), None);
        assert_eq!(parse_node_id("n-1"), None);
        assert_eq!(parse_node_id("nx"), None);
    }
}
