//! [`HaConfig`]: the replication settings, with RocketMQ's `broker.conf`
//! names and defaults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::wire::MAX_BODY;

/// How a master serves, and a slave follows, the commit-log stream.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// Master: the address to accept slaves on (`haListenPort`, 10912,
    /// on every interface). Not used by a slave.
    pub listen_addr: SocketAddr,
    /// Master: largest body of one transfer frame (`haTransferBatchSize`,
    /// 32 KiB). At most 4 MiB - 12, the most a Java slave reads at once.
    pub transfer_batch_size: usize,
    /// Both sides: how often an idle side sends a heartbeat
    /// (`haSendHeartbeatInterval`, 5 s): the slave its offset, the master an
    /// empty frame.
    pub heartbeat_interval: Duration,
    /// Both sides: a connection that brings nothing for this long is closed
    /// (`haHousekeepingInterval`, 20 s).
    pub housekeeping_interval: Duration,
    /// Master: a SYNC_MASTER send does not wait for a slave that is more
    /// than this many bytes behind it; it is answered SLAVE_NOT_AVAILABLE at
    /// once (`haMaxGapNotInSync`, 256 MiB; RocketMQ 4 calls it
    /// `haSlaveFallbehindMax`).
    pub max_gap_not_in_sync: i64,
    /// Master: plaintext or TLS (and whether slaves must show a
    /// certificate), as the broker's `tls.*` keys say.
    pub acceptor: meridian_remoting::tls::Acceptor,
    /// Slave: how to connect to the master.
    pub connector: meridian_remoting::tls::Connector,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 10912)),
            transfer_batch_size: 32 * 1024,
            heartbeat_interval: Duration::from_secs(5),
            housekeeping_interval: Duration::from_secs(20),
            max_gap_not_in_sync: 256 * 1024 * 1024,
            acceptor: Default::default(),
            connector: Default::default(),
        }
    }
}

impl HaConfig {
    /// Values the service can run with: a batch between 1 byte and
    /// [`MAX_BODY`], intervals of at least 10 ms.
    pub(crate) fn sanitized(mut self) -> Self {
        self.transfer_batch_size = self.transfer_batch_size.clamp(1, MAX_BODY);
        let floor = Duration::from_millis(10);
        self.heartbeat_interval = self.heartbeat_interval.max(floor);
        self.housekeeping_interval = self.housekeeping_interval.max(floor);
        self
    }
}
