//! The brokers under test: the topic's queues (creating the topic when it
//! has no route), the connections the tasks share, queue offsets.
//!
//! Everything here runs once before the load starts; tasks then hold their
//! connections and queues, so no request of the measured run pays for a
//! route lookup or a connection-map lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meridian_client::consumer::{max_offset_request, max_offset_result};
use meridian_client::producer::{readable_queues, writable_queues, QueueRoute};
use meridian_client::Admin;
use meridian_protocol::body::{perm, TopicConfig};
use meridian_remoting::{Connection, RemotingClient, RemotingError};

/// How long a created topic may take to show in the name server's route.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

/// A queue with the broker address it lives on.
#[derive(Clone, Debug)]
pub struct Queue {
    pub broker_name: String,
    pub addr: String,
    pub queue_id: i32,
}

impl From<QueueRoute> for Queue {
    fn from((broker_name, addr, queue_id): QueueRoute) -> Self {
        Queue {
            broker_name,
            addr,
            queue_id,
        }
    }
}

/// The writable queues of `topic`. A topic without a route is created with
/// `queues` read and write queues on every master the name servers know,
/// as `mqadmin updateTopic -c <cluster>` would.
pub async fn produce_queues(
    admin: &Admin,
    topic: &str,
    queues: i32,
    quiet: bool,
) -> anyhow::Result<Vec<Queue>> {
    if let Some(route) = admin.route(topic).await.context("topic route")? {
        let found = writable_queues(&route);
        if !found.is_empty() {
            return Ok(found.into_iter().map(Queue::from).collect());
        }
    }
    let info = admin
        .cluster_info()
        .await
        .context("cluster info (to create the topic)")?;
    let mut masters: Vec<String> = info
        .broker_addr_table
        .values()
        .filter_map(|b| b.broker_addrs.get(&0).cloned())
        .collect();
    masters.sort();
    masters.dedup();
    if masters.is_empty() {
        bail!("no broker master is registered with the name server; is a broker running?");
    }
    let cfg = TopicConfig {
        topic_name: topic.to_string(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: perm::PERM_READ | perm::PERM_WRITE,
        ..TopicConfig::default()
    };
    for addr in &masters {
        admin
            .update_topic(addr, &cfg)
            .await
            .with_context(|| format!("create topic `{topic}` on {addr}"))?;
    }
    if !quiet {
        eprintln!(
            "created topic `{topic}` with {queues} queues on {}",
            masters.join(", ")
        );
    }
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        if let Some(route) = admin.route(topic).await.context("topic route")? {
            let found = writable_queues(&route);
            if !found.is_empty() {
                return Ok(found.into_iter().map(Queue::from).collect());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "topic `{topic}` was created but the name server shows no route for it after {ROUTE_WAIT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The readable queues of `topic`.
pub async fn consume_queues(admin: &Admin, topic: &str) -> anyhow::Result<Vec<Queue>> {
    let route = admin
        .route(topic)
        .await
        .context("topic route")?
        .with_context(|| format!("topic `{topic}` has no route: produce to it first"))?;
    let found = readable_queues(&route);
    if found.is_empty() {
        bail!("topic `{topic}` has no readable queue");
    }
    Ok(found.into_iter().map(Queue::from).collect())
}

/// `n` independent connection pools: pool `i` holds one connection to each
/// broker, so tasks spread over the pools are spread over `n` connections.
pub struct Pools {
    clients: Vec<Arc<RemotingClient>>,
}

impl Pools {
    pub fn new(n: u32) -> Pools {
        Pools::with_security(n, Default::default(), None)
    }

    /// Pools whose connections use `connector` and sign with `credentials`.
    pub fn with_security(
        n: u32,
        connector: meridian_remoting::tls::Connector,
        credentials: Option<meridian_remoting::acl::Credentials>,
    ) -> Pools {
        Pools {
            clients: (0..n.max(1))
                .map(|_| {
                    Arc::new(
                        RemotingClient::new()
                            .with_connector(connector.clone())
                            .with_credentials(credentials.clone()),
                    )
                })
                .collect(),
        }
    }

    /// Connect every pool to every broker of `queues` now, so connecting is
    /// not part of the measurement and a wrong address fails early.
    pub async fn connect_all(&self, queues: &[Queue]) -> anyhow::Result<()> {
        for c in &self.clients {
            for q in queues {
                c.connection(&q.addr)
                    .await
                    .with_context(|| format!("connect to broker {}", q.addr))?;
            }
        }
        Ok(())
    }

    /// The connection set task `i` uses.
    pub fn for_task(&self, i: usize) -> Conns {
        Conns {
            client: self.clients[i % self.clients.len()].clone(),
            open: HashMap::new(),
        }
    }

    pub fn close_all(&self) {
        for c in &self.clients {
            c.close_all();
        }
    }
}

/// A task's handles on its pool's connections, by broker address.
pub struct Conns {
    client: Arc<RemotingClient>,
    open: HashMap<String, Arc<Connection>>,
}

impl Conns {
    /// The connection to `addr`, reconnecting if it has closed.
    pub async fn get(&mut self, addr: &str) -> Result<Arc<Connection>, RemotingError> {
        if let Some(c) = self.open.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = self.client.connection(addr).await?;
        self.open.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// The max offset (the offset of the next message) of every queue.
pub async fn max_offsets(pools: &Pools, topic: &str, queues: &[Queue]) -> anyhow::Result<Vec<i64>> {
    let mut conns = pools.for_task(0);
    let mut out = Vec::with_capacity(queues.len());
    for q in queues {
        let what = || format!("max offset of queue {} on {}", q.queue_id, q.addr);
        let conn = conns.get(&q.addr).await?;
        let r = conn
            .invoke(
                max_offset_request(topic, q.queue_id),
                Duration::from_secs(10),
            )
            .await
            .with_context(what)?;
        out.push(max_offset_result(&r).with_context(what)?);
    }
    Ok(out)
}
