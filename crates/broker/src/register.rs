//! Registration with every name server: at start, every
//! `registerNameServerPeriod` (30 s), and at once when a topic is created.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::body::RegisterBrokerBody;
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::header::namesrv::{
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
};
use meridian_protocol::RemotingCommand;

use crate::BrokerInner;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(6);

/// The registration loop.
pub async fn run(inner: Arc<BrokerInner>) {
    let period = Duration::from_millis(inner.config.register_name_server_period_ms);
    loop {
        register_all(&inner).await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = inner.register_now.notified() => {}
        }
    }
}

/// One registration with every name server, in parallel. Returns how many
/// accepted it.
pub async fn register_all(inner: &Arc<BrokerInner>) -> usize {
    let mut wrapper = inner.topics.wrapper();
    // As RocketMQ: a broker whose brokerPermission lacks read or write
    // registers its topics without it, so clients route around it.
    let allowed = inner
        .broker_permission
        .load(std::sync::atomic::Ordering::Acquire);
    let rw = meridian_protocol::body::perm::PERM_READ | meridian_protocol::body::perm::PERM_WRITE;
    if allowed & rw != rw {
        for t in wrapper.topic_config_table.values_mut() {
            t.perm &= allowed | meridian_protocol::body::perm::PERM_INHERIT;
        }
    }
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: wrapper,
        ..Default::default()
    };
    let body = match serde_json::to_vec(&body) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode registration");
            return 0;
        }
    };
    let c = &inner.config;
    let header = RegisterBrokerRequestHeader {
        broker_name: c.broker_name.clone(),
        broker_addr: c.broker_addr(),
        cluster_name: c.broker_cluster_name.clone(),
        // The port actually bound (haListenPort may be 0: any free port).
        ha_server_addr: match inner.ha.local_addr() {
            Some(a) => format!("{}:{}", c.broker_ip1, a.port()),
            None => c.ha_addr(),
        },
        broker_id: inner.broker_id(),
        heartbeat_timeout_millis: None,
        compressed: Some(false),
        body_crc32: Some(0),
        zone_name: Some(c.region_id.clone()),
    };
    // A Raft member says its term, so a name server never lists a stale
    // leader as master over a newer one.
    let raft_term = inner.raft.as_ref().map(|n| n.role().borrow().term);
    let calls = c.namesrv_addrs.iter().map(|addr| {
        let mut req = RemotingCommand::request(request_code::REGISTER_BROKER).with_body(body.clone());
        header.write(&mut req);
        if let Some(term) = raft_term {
            req.set_ext(meridian_protocol::header::namesrv::RAFT_TERM_EXT, term);
        }
        async move {
            match inner.namesrv_client.invoke(addr, req, REGISTER_TIMEOUT).await {
                Ok(r) if r.code == response_code::SUCCESS => {
                    // The name server tells every member who the master is;
                    // a slave follows it.
                    if let Ok(h) = RegisterBrokerResponseHeader::parse(&r) {
                        inner.learn_master(h.master_addr, h.ha_server_addr);
                    }
                    true
                }
                Ok(r) => {
                    tracing::warn!(namesrv = %addr, code = r.code, remark = ?r.remark, "name server refused the registration");
                    false
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "cannot register with name server");
                    false
                }
            }
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count()
}

/// Tell every name server this broker is going away.
pub async fn unregister_all(inner: &Arc<BrokerInner>) {
    let c = &inner.config;
    let header = UnRegisterBrokerRequestHeader {
        broker_name: c.broker_name.clone(),
        broker_addr: c.broker_addr(),
        cluster_name: c.broker_cluster_name.clone(),
        broker_id: inner.broker_id(),
    };
    let calls = c.namesrv_addrs.iter().map(|addr| {
        let mut req = RemotingCommand::request(request_code::UNREGISTER_BROKER);
        header.write(&mut req);
        async move {
            let _ = inner
                .namesrv_client
                .invoke(addr, req, Duration::from_secs(2))
                .await;
        }
    });
    futures::future::join_all(calls).await;
    inner.namesrv_client.close_all();
}
