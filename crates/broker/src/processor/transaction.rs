//! END_TRANSACTION: a producer's verdict on a half message, sent after its
//! local transaction or in answer to a check-back (see
//! [`crate::transaction`]).

use std::sync::Arc;

use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::transaction::{transaction_type, EndTransactionRequestHeader};
use meridian_protocol::RemotingCommand;
use meridian_remoting::Reply;

use super::{bad_header, error, ok, reply_when_done, write_failed};
use crate::transaction::{EndError, Verdict};
use crate::BrokerInner;

pub fn end(b: &Arc<BrokerInner>, req: RemotingCommand) -> Reply {
    let h = match EndTransactionRequestHeader::parse(&req) {
        Ok(h) => h,
        Err(e) => return Reply::Now(Some(bad_header(&req, e))),
    };
    if b.is_slave() {
        return Reply::Now(Some(error(
            &req,
            rc::SLAVE_NOT_AVAILABLE,
            format!(
                "the broker[{}] is a slave or Raft follower; end the transaction on its master",
                b.config.broker_addr()
            ),
        )));
    }
    let verdict = match h.commit_or_rollback {
        transaction_type::COMMIT => Verdict::Commit,
        transaction_type::ROLLBACK => Verdict::Rollback,
        transaction_type::NOT_TYPE => Verdict::Unknown,
        other => {
            return Reply::Now(Some(error(
                &req,
                rc::SYSTEM_ERROR,
                format!(
                    "commitOrRollback {other} is neither commit (8), rollback (12) nor unknown (0)"
                ),
            )))
        }
    };
    if verdict != Verdict::Unknown {
        tracing::debug!(group = %h.producer_group, offset = h.commit_log_offset, ?verdict, check = h.from_transaction_check, "end transaction");
    }
    let b = b.clone();
    reply_when_done(async move {
        match b
            .transactions
            .end(&b, &h.producer_group, h.commit_log_offset, verdict)
            .await
        {
            Ok(()) => ok(&req),
            Err(EndError::NotFound(why)) => {
                tracing::warn!(group = %h.producer_group, msg_id = %h.msg_id, "END_TRANSACTION for an unknown half message: {why}");
                error(&req, rc::SYSTEM_ERROR, why)
            }
            Err(EndError::Write(e)) => write_failed(&req, e),
            Err(EndError::Replicas(code, why)) => error(&req, code, why),
        }
    })
}
