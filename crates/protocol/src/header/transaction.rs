//! Headers of transactional messages: END_TRANSACTION (37, producer to
//! broker: commit or roll back a half message) and CHECK_TRANSACTION_STATE
//! (39, broker to producer: what became of this half message?).

use crate::header::header;

/// Values of [`EndTransactionRequestHeader::commit_or_rollback`]: the
/// transaction bits of a message's sysFlag (Java's `MessageSysFlag`).
pub mod transaction_type {
    /// Not a transactional message.
    pub const NOT_TYPE: i32 = 0;
    /// A half message, invisible until committed.
    pub const PREPARED: i32 = 0x1 << 2;
    pub const COMMIT: i32 = 0x2 << 2;
    pub const ROLLBACK: i32 = 0x3 << 2;
}

header! {
    /// END_TRANSACTION: the producer's verdict on a half message.
    pub struct EndTransactionRequestHeader {
        /// The half message's topic (5.x clients).
        topic: Option<String> = "topic",
        producer_group: String = "producerGroup",
        /// The half message's consume-queue offset.
        tran_state_table_offset: i64 = "tranStateTableOffset",
        /// The half message's commit-log offset.
        commit_log_offset: i64 = "commitLogOffset",
        /// [`transaction_type`] COMMIT, ROLLBACK or NOT_TYPE (unknown yet).
        commit_or_rollback: i32 = "commitOrRollback",
        /// True when this answers a CHECK_TRANSACTION_STATE.
        from_transaction_check: bool = "fromTransactionCheck" or false,
        msg_id: String = "msgId",
        transaction_id: Option<String> = "transactionId",
    }
}

header! {
    /// CHECK_TRANSACTION_STATE: the broker asks a producer about a half
    /// message left undecided; the message itself is the body.
    pub struct CheckTransactionStateRequestHeader {
        topic: Option<String> = "topic",
        tran_state_table_offset: i64 = "tranStateTableOffset",
        commit_log_offset: i64 = "commitLogOffset",
        msg_id: Option<String> = "msgId",
        transaction_id: Option<String> = "transactionId",
        offset_msg_id: Option<String> = "offsetMsgId",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemotingCommand;

    #[test]
    fn end_transaction_roundtrip() {
        let h = EndTransactionRequestHeader {
            topic: None,
            producer_group: "pg".into(),
            tran_state_table_offset: 3,
            commit_log_offset: 4096,
            commit_or_rollback: transaction_type::COMMIT,
            from_transaction_check: false,
            msg_id: "AC11".into(),
            transaction_id: Some("tx".into()),
        };
        let mut cmd = RemotingCommand::request(37);
        h.write(&mut cmd);
        assert_eq!(cmd.ext("commitOrRollback"), Some("8"));
        assert_eq!(EndTransactionRequestHeader::parse(&cmd).unwrap(), h);
    }
}
