//! meridian-raft: a Raft group of brokers, RocketMQ's DLedger mode.
//!
//! The commit log is the Raft log: each message is stored once, in the
//! commit log's record format; a small side index records each entry's
//! term and commit-log position. See `docs/raft.md`.

pub mod codec;
pub mod files;
pub mod index;
pub mod log_store;
pub mod network;
pub mod node;
pub mod peers;
pub mod server;
pub mod state_machine;
pub mod types;
