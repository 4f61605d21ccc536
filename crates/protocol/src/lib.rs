//! Meridian's implementation of the Apache RocketMQ remoting protocol (the
//! TCP protocol of RocketMQ 4.x clients and of brokers and name servers of
//! every version). Pure code: no sockets, no runtime, so every byte that
//! arrives from the network can be parsed, tested and fuzzed here.
//!
//! A tour of the modules:
//!
//! - [`frame`] cuts a byte stream into frames (4-byte length, 4-byte
//!   serialize type + header length, header, body) and turns a frame into a
//!   [`RemotingCommand`] and back. Its submodules hold the two header
//!   encodings: JSON (what clients send by default) and RocketMQ's binary
//!   "ROCKETMQ" encoding.
//! - [`command`] is [`RemotingCommand`], the one type every request and
//!   response is, with tolerant typed accessors for its header fields.
//! - [`codes`] lists RocketMQ's request and response codes by name.
//! - [`language`] maps RocketMQ's `LanguageCode` names to the byte the binary
//!   header carries.
//! - [`header`] has one small struct per request or response header, each
//!   with `parse` (from a command's ext fields) and `write` (into them).
//! - [`body`] has the JSON bodies (heartbeats, routes, topic configs, lock
//!   requests, statistics) as serde types, and a reader for the non-standard
//!   JSON that Java's fastjson writes.
//! - [`message`] and [`message_id`] are the message record format and
//!   message IDs.
//! - [`origin`] names the queue a message was first stored in (region,
//!   broker group, queue), the identity that relayed copies keep.
//! - [`error`] is [`ProtocolError`], what every parser here returns.
//!
//! Everything here reads as tolerantly as RocketMQ's Java broker (other
//! clients differ from the Java client in small ways) and writes exactly what
//! the Java client writes.

pub mod body;
pub mod codes;
pub mod command;
pub mod error;
pub mod ext_fields;
pub mod frame;
pub mod header;
pub mod language;
pub mod message;
pub mod message_id;
pub mod origin;

pub use command::{RemotingCommand, SerializeType};

/// Milliseconds since the Unix epoch: the unit of every timestamp on the
/// wire and in stored records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
pub use error::ProtocolError;
pub use frame::{decode_frame, encode_frame, FrameDecoder, DEFAULT_MAX_FRAME_LEN};
