//! A slave keeps what is not in the commit log — topic configs, consumer
//! offsets, delay cursors, subscription groups — in step with its master,
//! by asking for them every few seconds (RocketMQ's SlaveSynchronize). The
//! commit log itself arrives through replication. A Raft follower asks its
//! leader for the delay cursors only: the rest travels through the Raft
//! log (`raft_state`).

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::body::TopicConfigSerializeWrapper;
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::RemotingCommand;

use crate::offsets::ConsumerOffsetManager;
use crate::BrokerInner;

const SYNC_PERIOD: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(inner: Arc<BrokerInner>) {
    let mut master = inner.master.subscribe();
    loop {
        let addr = master.borrow_and_update().addr.clone();
        // A Raft leader is the source, not a copy.
        if inner.is_slave() {
            let synced = match &addr {
                Some(addr) => match sync_once(&inner, addr).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(master = %addr, error = %e, "slave sync failed; will retry");
                        false
                    }
                },
                None => false,
            };
            // A Raft follower whose leader changed may have asked the name
            // servers before the new leader registered: ask again, so the
            // answer names it.
            if !synced && inner.raft.is_some() {
                inner.register_soon();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SYNC_PERIOD) => {}
            _ = master.changed() => {}
        }
    }
}

async fn fetch(inner: &BrokerInner, addr: &str, code: i32) -> Result<bytes::Bytes, String> {
    let r = inner
        .namesrv_client
        .invoke(addr, RemotingCommand::request(code), TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if r.code != response_code::SUCCESS {
        return Err(format!("code {} {:?}", r.code, r.remark));
    }
    Ok(r.body)
}

/// Copy the master's topics, consumer offsets, delay cursors and
/// subscription groups (in Raft mode the delay cursors only: the rest
/// comes through the log, see `raft_state`).
pub async fn sync_once(inner: &Arc<BrokerInner>, master: &str) -> Result<(), String> {
    if inner.raft_state.is_none() {
        copy_topics_and_offsets(inner, master).await?;
    }
    let delay = fetch(inner, master, request_code::GET_ALL_DELAY_OFFSET).await?;
    inner.delay.replace_from_json(&delay)?;
    if inner.raft_state.is_none() {
        copy_subscription_groups(inner, master).await?;
    }
    Ok(())
}

async fn copy_subscription_groups(inner: &Arc<BrokerInner>, master: &str) -> Result<(), String> {
    let groups = fetch(
        inner,
        master,
        request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    )
    .await?;
    let groups: meridian_protocol::body::SubscriptionGroupWrapper =
        serde_json::from_slice(&groups).map_err(|e| format!("subscription groups: {e}"))?;
    if inner
        .subscription_groups
        .replace_all(groups.subscription_group_table)
    {
        tracing::info!(master, "subscription groups copied from the master");
    }
    Ok(())
}

async fn copy_topics_and_offsets(inner: &Arc<BrokerInner>, master: &str) -> Result<(), String> {
    let topics = fetch(inner, master, request_code::GET_ALL_TOPIC_CONFIG).await?;
    let wrapper: TopicConfigSerializeWrapper =
        meridian_protocol::body::decode_body(&topics).map_err(|e| e.to_string())?;
    if inner.topics.replace_all(wrapper.topic_config_table) {
        tracing::info!(master, "topics copied from the master");
        inner.register_soon();
    }
    let offsets = fetch(inner, master, request_code::GET_ALL_CONSUMER_OFFSET).await?;
    inner
        .offsets
        .replace_all(ConsumerOffsetManager::parse_json(&offsets)?);
    Ok(())
}
