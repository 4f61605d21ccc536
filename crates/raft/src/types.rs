//! The type configuration Meridian gives openraft, and the payload of a
//! Raft log entry.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use meridian_store::{PutError, PutMessage, PutResult};
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

openraft::declare_raft_types!(
    /// Meridian's Raft types: member ids are the digits of `dLegerPeers`'
    /// `n<digits>` names; members carry no address in the membership
    /// (each member reads its peers' addresses from its own `dLegerPeers`).
    pub MqRaft:
        D            = MqData,
        R            = MqReply,
        NodeId       = u64,
        Node         = openraft::EmptyNode,
        Term         = u64,
        LeaderId     = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        Vote         = openraft::impls::Vote<Self::LeaderId>,
        AsyncRuntime = openraft::impls::TokioRuntime,
);

pub type Entry = openraft::alias::EntryOf<MqRaft>;
pub type LogId = openraft::alias::LogIdOf<MqRaft>;
pub type Vote = openraft::alias::VoteOf<MqRaft>;
pub type Raft = openraft::Raft<MqRaft, crate::state_machine::MqStateMachine>;

/// Messages submitted to the leader, turned into records by the log
/// store's `append` (which assigns their commit-log and queue offsets).
/// Taken out exactly once.
pub struct PendingPut {
    msgs: Mutex<Option<Vec<PutMessage>>>,
}

impl PendingPut {
    pub fn new(msgs: Vec<PutMessage>) -> Arc<PendingPut> {
        Arc::new(PendingPut {
            msgs: Mutex::new(Some(msgs)),
        })
    }

    pub fn take(&self) -> Option<Vec<PutMessage>> {
        self.msgs.lock().take()
    }
}

/// The payload of a normal Raft entry.
#[derive(Clone)]
pub enum MqData {
    /// Submitted on the leader; becomes `Records` inside the leader's
    /// `append`. Never leaves the leader.
    Put(Arc<PendingPut>),
    /// The exact commit-log bytes of one entry (one record, or the records
    /// of one batch), starting at commit-log offset `offset`.
    Records { offset: i64, bytes: Bytes },
}

impl fmt::Debug for MqData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for MqData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqData::Put(_) => write!(f, "put"),
            MqData::Records { offset, bytes } => {
                write!(f, "records[{offset}, +{}]", bytes.len())
            }
        }
    }
}

/// What travels: only records.
#[derive(Serialize, Deserialize)]
struct WireRecords {
    offset: i64,
    bytes: Bytes,
}

impl Serialize for MqData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MqData::Records { offset, bytes } => WireRecords {
                offset: *offset,
                bytes: bytes.clone(),
            }
            .serialize(s),
            MqData::Put(_) => Err(serde::ser::Error::custom(
                "a pending put never leaves the leader",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for MqData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireRecords::deserialize(d)?;
        Ok(MqData::Records {
            offset: w.offset,
            bytes: w.bytes,
        })
    }
}

/// The answer to a submitted send, produced when its entry is applied on
/// the leader. Never leaves the member that applied it.
#[derive(Debug)]
pub enum MqReply {
    /// Where each message went.
    Stored(Vec<PutResult>),
    /// The store refused the messages when the entry was appended; the
    /// entry holds no records.
    Rejected(PutError),
    /// Blank and membership entries, and entries applied on followers.
    Empty,
}

impl Serialize for MqReply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for MqReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Ok(MqReply::Empty)
    }
}
