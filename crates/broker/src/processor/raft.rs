//! Raft group administration (Meridian only): RAFT_TRANSFER_LEADER and
//! RAFT_CHANGE_MEMBERSHIP.
//!
//! Only the leader can hand its leadership over. A member that does not
//! lead refuses with SERVICE_NOT_AVAILABLE and names the leader it knows of
//! in the `leaderId` ext field, so the caller can ask that member instead
//! (`meridian admin transferLeader` does).

use std::sync::Arc;

use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::admin::{
    RaftChangeMembershipRequestHeader, RaftTransferLeaderRequestHeader,
    RaftTransferLeaderResponseHeader,
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
    let voters = node.voters();
    let members = || {
        voters
            .iter()
            .map(|id| format!("n{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let to = parse_node_id(&h.to_node_id)
        .filter(|id| voters.contains(id))
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

/// How long `addLearner` waits for the new member to hold the whole log.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// RAFT_CHANGE_MEMBERSHIP: `addPeer` on any member; `addLearner`,
/// `promote` and `remove` on the leader (a member that does not lead
/// answers SERVICE_NOT_AVAILABLE naming the leader, as for a transfer).
pub fn change_membership(b: &Arc<BrokerInner>, req: RemotingCommand) -> Reply {
    let addr = b.config.broker_addr();
    let Some(node) = b.raft.clone() else {
        return Reply::Now(Some(error(
            &req,
            rc::REQUEST_CODE_NOT_SUPPORTED,
            format!("broker {addr} is not a Raft member (enableDLegerCommitLog=false)"),
        )));
    };
    let h = match RaftChangeMembershipRequestHeader::parse(&req) {
        Ok(h) => h,
        Err(e) => return Reply::Now(Some(bad_header(&req, e))),
    };
    let Some(id) = parse_node_id(&h.node_id) else {
        return Reply::Now(Some(error(
            &req,
            rc::INVALID_PARAMETER,
            format!("'{}' is not a member id (n<digits>, e.g. n3)", h.node_id),
        )));
    };
    let group = node.peers().group.clone();
    if h.action == "addPeer" {
        let Some(peer_addr) = h.addr.as_deref() else {
            return Reply::Now(Some(error(
                &req,
                rc::INVALID_PARAMETER,
                "addPeer needs addr",
            )));
        };
        return Reply::Now(Some(match node.add_peer(id, peer_addr) {
            Ok(()) => ok(&req),
            Err(why) => error(
                &req,
                rc::INVALID_PARAMETER,
                format!("n{id} at {peer_addr}: {why}"),
            ),
        }));
    }
    if !matches!(h.action.as_str(), "addLearner" | "promote" | "remove") {
        return Reply::Now(Some(error(
            &req,
            rc::INVALID_PARAMETER,
            format!(
                "action '{}' is not addPeer, addLearner, promote or remove",
                h.action
            ),
        )));
    }
    let role = *node.role().borrow();
    if role.leader_id != Some(node.peers().self_id) {
        let mut response = error(
            &req,
            rc::SERVICE_NOT_AVAILABLE,
            format!(
                "broker {addr} does not lead Raft group {group}{}",
                role.leader_id
                    .map(|l| format!("; n{l} does: send the request there"))
                    .unwrap_or_default()
            ),
        );
        RaftTransferLeaderResponseHeader {
            raft_group: Some(group),
            leader_id: role.leader_id.map(|l| format!("n{l}")),
            term: Some(role.term as i64),
        }
        .write(&mut response);
        return Reply::Now(Some(response));
    }
    Reply::Later(Box::pin(async move {
        let outcome = match h.action.as_str() {
            "addLearner" => {
                let known = match h.addr.as_deref() {
                    Some(a) => node.add_peer(id, a),
                    None => Ok(()),
                };
                match known {
                    Ok(()) => node.add_learner(id, CATCH_UP_TIMEOUT).await,
                    Err(e) => Err(e),
                }
            }
            "promote" => node.promote(id).await,
            _ => node.remove_member(id).await,
        };
        let voters = node.voters();
        let learners = node.learners();
        let list = |s: &std::collections::BTreeSet<u64>| {
            s.iter()
                .map(|i| format!("n{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        Some(match outcome {
            Ok(()) => {
                tracing::info!(group, action = %h.action, member = format!("n{id}"), voters = list(&voters), learners = list(&learners), "Raft membership changed");
                ok(&req)
                    .with_ext("voters", list(&voters))
                    .with_ext("learners", list(&learners))
            }
            Err(why) => {
                tracing::warn!(group, action = %h.action, member = format!("n{id}"), error = %why, "Raft membership change failed");
                error(
                    &req,
                    rc::SYSTEM_ERROR,
                    format!("{} n{id} in Raft group {group} failed: {why}", h.action),
                )
            }
        })
    }))
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
