//! For the broker's own tests: a broker in this process.

use std::path::Path;

use crate::{Broker, BrokerConfig};

/// A broker of its own under `dir`, on loopback ports the system picks,
/// with no name server; `f` adjusts its configuration.
pub async fn broker(dir: &Path, f: impl FnOnce(&mut BrokerConfig)) -> Broker {
    let mut c = BrokerConfig::new(dir.to_path_buf());
    let lo = std::net::IpAddr::from([127, 0, 0, 1]);
    c.listen_ip = lo;
    c.broker_ip1 = lo;
    c.listen_port = 0;
    c.ha_listen_port = 0;
    f(&mut c);
    Broker::start(c).await.expect("broker starts")
}
