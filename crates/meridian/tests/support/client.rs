//! The `rocketmq-client-rust` side of the tests: one client runtime for the
//! test binary, producers and push consumers configured the same way in every
//! test, and an [`Inbox`] that records what a consumer received so a test can
//! assert "arrived, once, intact".

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use rocketmq_client_rust::ClientConfig;
use rocketmq_client_rust::ClientResult;
use rocketmq_client_rust::ClientRuntime;
use rocketmq_client_rust::ClientRuntimeConfig;
use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::DefaultMQPushConsumer;
use rocketmq_client_rust::MessageQueueListener;
use rocketmq_client_rust::TelemetryHandle;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::RuntimeConfig;
use rocketmq_runtime::RuntimeOwner;

use rocketmq_client_rust::DefaultMQPushConsumerBuilder;

/// Send timeout for every producer call.
pub const SEND_TIMEOUT_MS: u64 = 5_000;
/// How long a test waits for messages it expects.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test keeps listening after the expected messages arrived, to
/// catch duplicates and strays.
pub const QUIET_PERIOD: Duration = Duration::from_secs(1);

/// Owns the threads of every client in this test binary. The client's tasks
/// run here, not on the test's own tokio runtime.
static RUNTIME_OWNER: LazyLock<RuntimeOwner> = LazyLock::new(|| {
    // Broadcast consumers keep their offsets in local files, by default under
    // $HOME; keep them in the temporary directory instead.
    std::env::set_var(
        "rocketmq.client.localOffsetStoreDir",
        std::env::temp_dir().join(format!("meridian-test-offsets-{}", std::process::id())),
    );
    RuntimeOwner::plan(RuntimeConfig {
        thread_name: "meridian-test-client".to_owned(),
        ..Default::default()
    })
    .expect("client runtime configuration is valid")
    .build()
    .expect("client runtime starts")
});

pub fn client_runtime(scope: &'static str) -> Arc<ClientRuntime> {
    ClientRuntime::try_new(
        RUNTIME_OWNER.root_context().component(scope),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .expect("client runtime is valid")
}

/// A name no other test (or earlier run) uses: `<prefix>_<pid>_<millis>_<n>`.
/// Only characters RocketMQ allows in topic and group names.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{millis}_{n}", std::process::id())
}

/// A started producer in a group of its own.
pub async fn start_producer(namesrv: &str) -> DefaultMQProducer {
    let mut producer = DefaultMQProducer::builder(client_runtime("producer"))
        .producer_group(unique("pg"))
        .name_server_addr(namesrv.to_owned())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .build();
    producer.start().await.expect("producer starts");
    producer
}

/// A stock client's error with what its text leaves out: the broker's
/// response code and address, when the broker answered.
pub fn describe(e: &rocketmq_client_rust::ClientError) -> String {
    match (e.broker_response_code(), e.broker_addr()) {
        (Some(code), Some(addr)) => format!("{e} (broker {addr} answered code {code})"),
        (Some(code), None) => format!("{e} (the broker answered code {code})"),
        _ => e.to_string(),
    }
}

/// A push consumer builder with the settings every test shares: its own
/// instance name (so two consumers in this process are two clients), start at
/// the first offset when the group has none, one message per listener call.
pub fn push_consumer(namesrv: &str, group: &str) -> DefaultMQPushConsumerBuilder {
    let mut config = ClientConfig::default();
    config.set_instance_name(unique("instance").into());
    push_consumer_with(namesrv, group, config)
}

/// [`push_consumer`] with client settings of the caller's (give it an
/// instance name of its own).
pub fn push_consumer_with(
    namesrv: &str,
    group: &str,
    config: ClientConfig,
) -> DefaultMQPushConsumerBuilder {
    DefaultMQPushConsumer::builder(client_runtime("consumer"))
        .client_config(config)
        .name_server_addr(namesrv.to_owned())
        .consumer_group(group.to_owned())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_message_batch_max_size(1)
        .consume_thread_min(1)
        .consume_thread_max(4)
}

/// A message with a tag, a key and user properties.
pub fn message(
    topic: &str,
    tag: &str,
    key: &str,
    body: &str,
    properties: &[(&str, &str)],
) -> Message {
    let mut builder = Message::builder()
        .topic(topic)
        .tags(tag)
        .key(key)
        .body_slice(body.as_bytes());
    for (name, value) in properties {
        builder = builder
            .raw_property(*name, *value)
            .unwrap_or_else(|e| panic!("user property {name}: {e}"));
    }
    builder.build_unchecked()
}

/// Wait until the nameserver gives `producer` a route to `topic` with
/// `queues` writable queues; returns them sorted by queue id.
pub async fn wait_for_route(
    producer: &mut DefaultMQProducer,
    topic: &str,
    queues: usize,
) -> Vec<MessageQueue> {
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let mut last;
    loop {
        match producer.fetch_publish_message_queues(topic).await {
            Ok(mut found) if found.len() == queues => {
                found.sort_by_key(MessageQueue::queue_id);
                return found;
            }
            Ok(found) => last = format!("{} queues", found.len()),
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "no route with {queues} queues for topic {topic} within {RECEIVE_TIMEOUT:?}; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll `condition` every 50 ms until it holds; panic with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a listener was handed, copied out of the client's `MessageExt`.
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub body: String,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub properties: HashMap<String, String>,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub reconsume_times: i32,
    pub msg_id: String,
    pub at: Instant,
}

impl Received {
    fn from_message(msg: &MessageExt) -> Received {
        let properties: HashMap<String, String> = msg
            .properties()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Received {
            topic: msg.topic().to_string(),
            body: String::from_utf8_lossy(msg.body().as_deref().unwrap_or_default()).into_owned(),
            tags: msg.get_tags().map(|t| t.to_string()),
            keys: properties.get("KEYS").cloned(),
            properties,
            queue_id: msg.queue_id(),
            queue_offset: msg.queue_offset(),
            reconsume_times: msg.reconsume_times(),
            msg_id: msg.msg_id().to_string(),
            at: Instant::now(),
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }
}

/// Everything one consumer received, in arrival order.
#[derive(Clone, Default)]
pub struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Inbox {
    pub fn new() -> Inbox {
        Inbox::default()
    }

    pub fn record(&self, msgs: &[&MessageExt]) {
        let mut received = self.received.lock().expect("inbox lock");
        received.extend(msgs.iter().map(|m| Received::from_message(m)));
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().expect("inbox lock").clone()
    }

    pub fn len(&self) -> usize {
        self.received.lock().expect("inbox lock").len()
    }

    pub fn bodies(&self) -> Vec<String> {
        self.all().into_iter().map(|r| r.body).collect()
    }

    /// A concurrent listener that records every message and acknowledges it.
    pub fn listener(
        &self,
    ) -> impl Fn(
        &[&MessageExt],
        &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus>
           + Send
           + Sync
           + 'static {
        let inbox = self.clone();
        move |msgs: &[&MessageExt], _context: &ConsumeConcurrentlyContext| {
            inbox.record(msgs);
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        }
    }

    /// Wait until at least `count` messages arrived.
    pub async fn wait_for_count(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.len() < count {
            assert!(
                Instant::now() < deadline,
                "expected {count} messages within {timeout:?}, got {}: {:?}",
                self.len(),
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until every body in `expected` arrived, keep listening for
    /// [`QUIET_PERIOD`], then assert each arrived exactly once and nothing
    /// else did. Returns the messages by body.
    pub async fn expect_exactly_once(&self, expected: &[String]) -> BTreeMap<String, Received> {
        let wanted: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
        let deadline = Instant::now() + RECEIVE_TIMEOUT;
        loop {
            let seen: HashSet<String> = self.bodies().into_iter().collect();
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|b| !seen.contains(*b))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after {RECEIVE_TIMEOUT:?} still missing {} of {} messages: {missing:?}; received: {:?}",
                missing.len(),
                wanted.len(),
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(QUIET_PERIOD).await;
        assert_exactly_once(&self.all(), expected)
    }
}

/// Assert that `received` holds each body of `expected` exactly once and
/// nothing else; returns the messages by body.
pub fn assert_exactly_once(
    received: &[Received],
    expected: &[String],
) -> BTreeMap<String, Received> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in received {
        *counts.entry(r.body.as_str()).or_default() += 1;
    }
    let duplicated: Vec<(&str, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, n)| (*b, *n))
        .collect();
    if !duplicated.is_empty() {
        // Where each copy came from tells a second stored message (two
        // queue offsets) from a redelivery of one (the same offset twice).
        let copies: Vec<String> = received
            .iter()
            .filter(|r| duplicated.iter().any(|(b, _)| *b == r.body))
            .map(|r| {
                format!(
                    "{} queue {} offset {} msgId {} reconsumed {}",
                    r.body, r.queue_id, r.queue_offset, r.msg_id, r.reconsume_times
                )
            })
            .collect();
        panic!("delivered more than once: {duplicated:?}; copies: {copies:#?}");
    }
    let wanted: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let strays: Vec<&str> = counts
        .keys()
        .copied()
        .filter(|b| !wanted.contains(b))
        .collect();
    assert!(strays.is_empty(), "unexpected messages: {strays:?}");
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|b| !counts.contains_key(b))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    received
        .iter()
        .map(|r| (r.body.clone(), r.clone()))
        .collect()
}

/// The queue ids a consumer currently owns for one topic, as reported by the
/// client's rebalance.
#[derive(Clone)]
pub struct Assignment {
    topic: String,
    queues: Arc<Mutex<BTreeSet<i32>>>,
}

impl Assignment {
    pub fn new(topic: &str) -> Assignment {
        Assignment {
            topic: topic.to_owned(),
            queues: Arc::default(),
        }
    }

    pub fn queues(&self) -> BTreeSet<i32> {
        self.queues.lock().expect("assignment lock").clone()
    }
}

impl MessageQueueListener for Assignment {
    fn message_queue_changed(
        &self,
        topic: &str,
        _all: &HashSet<MessageQueue>,
        assigned: &HashSet<MessageQueue>,
    ) {
        if topic == self.topic {
            *self.queues.lock().expect("assignment lock") =
                assigned.iter().map(MessageQueue::queue_id).collect();
        }
    }
}
