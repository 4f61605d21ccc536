//! Test harness for end-to-end tests against the real `meridian` binary.
//!
//! - `cluster` starts `meridian dev`, or `meridian namesrv` + `meridian broker`,
//!   in a temporary directory on free ports, waits until they are ready, and
//!   kills them when dropped. It can SIGKILL and restart the broker, stop
//!   everything cleanly, and run `meridian admin`.
//! - `client` sets up the `rocketmq-client-rust` producers and push consumers
//!   the tests use, and records what consumers receive.
//! - `queues` reads a topic back with plain pulls and checks its consume
//!   queues against the commit log.
//! - `netproxy` puts a `meridian netproxy` in front of an address, to cut,
//!   reset and delay that link, and kills it when dropped.
//! - `ports` hands out TCP ports that no concurrent test process gets too.
//! - `raft` starts a three-member Raft group (DLedger mode) with a name
//!   server, its Raft links direct or each through a netproxy.
//! - `reply` runs RocketMQ's request-reply with stock clients: a responder
//!   and requests that each expect their own reply.
//! - `metrics` reads a broker's Prometheus endpoint, to see which request
//!   codes a client sent and how they were answered.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod cluster;
pub mod metrics;
pub mod netproxy;
pub mod ports;
pub mod queues;
pub mod raft;
pub mod regions;
pub mod reply;

pub use client::*;
pub use cluster::Cluster;
pub use cluster::ClusterOpts;
pub use netproxy::NetProxy;
pub use ports::free_port;

/// Trials per failure case in the kill tests: 10, or `MERIDIAN_TRIALS`
/// (the soak run, `bench/soak.sh`).
pub fn trials() -> usize {
    std::env::var("MERIDIAN_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10)
}
