//! A minimal producer: finds a topic's route, picks queues round-robin, and
//! sends with the Java client's SEND_MESSAGE_V2 request. A failed send
//! refreshes the route at once, so a moved master is found on the next try.
//!
//! The request builders ([`send_request`], [`batch_request`]) and the
//! response reader ([`send_result`]) are public on their own, for callers
//! that manage connections themselves (the benchmark pipelines requests on
//! connections it holds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use meridian_protocol::body::{perm, QueueData, TopicRouteData};
use meridian_protocol::codes::{request_code as rc, response_code};
use meridian_protocol::header::send::{
    SendMessageRequestHeader, SendMessageResponseHeader, AUTO_CREATE_TOPIC_KEY_TOPIC,
};
use meridian_protocol::message::{encode_batch, encode_properties, property, BatchItem};
use meridian_protocol::message_id::create_uniq_id;
use meridian_protocol::{now_ms, RemotingCommand};
use meridian_remoting::RemotingClient;
use parking_lot::Mutex;

use crate::{Admin, ClientError};

/// One message to send.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    pub tags: Option<String>,
    pub keys: Vec<String>,
    pub properties: Vec<(String, String)>,
    pub delay_level: i32,
}

/// What the broker answered.
#[derive(Clone, Debug)]
pub struct SendResult {
    /// `SEND_OK`, `FLUSH_DISK_TIMEOUT`, … as RocketMQ names them.
    pub status: &'static str,
    /// The client's UNIQ_KEY.
    pub msg_id: String,
    /// The broker's offset message id.
    pub offset_msg_id: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: i64,
}

/// A queue: its broker group, the master's address, its id.
pub type QueueRoute = (String, String, i32);

/// Queues a topic created by its first send gets (the Java producer's
/// `defaultTopicQueueNums`).
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

pub struct Producer {
    group: String,
    admin: Admin,
    remoting: RemotingClient,
    routes: Mutex<HashMap<String, Vec<QueueRoute>>>,
    next: AtomicUsize,
    timeout: Duration,
}

impl Producer {
    pub fn new(namesrv: &str, group: &str) -> Producer {
        Producer {
            group: group.to_string(),
            admin: Admin::new(namesrv),
            remoting: RemotingClient::new(),
            routes: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            timeout: Duration::from_secs(5),
        }
    }

    /// Writable queues of `topic`: `(brokerName, master address, queueId)`,
    /// from the cached route unless `refresh`. A topic no broker serves yet
    /// gets the queues of the auto-create template `TBW102`, as the Java
    /// client does.
    pub async fn queues(&self, topic: &str, refresh: bool) -> Result<Vec<QueueRoute>, ClientError> {
        if !refresh {
            if let Some(q) = self.routes.lock().get(topic) {
                return Ok(q.clone());
            }
        }
        let route = match self.admin.route(topic).await? {
            Some(r) => r,
            // As the Java client: route by the default topic and let the
            // broker create the topic on the first send.
            None => self.admin.route("TBW102").await?.ok_or_else(|| {
                ClientError::Other(format!(
                    "topic `{topic}` does not exist and no broker allows auto-creation"
                ))
            })?,
        };
        let queues = writable_queues(&route);
        self.routes.lock().insert(topic.to_string(), queues.clone());
        Ok(queues)
    }

    /// Send one message. A failure that guarantees the message was not
    /// stored — the broker could not be reached, answered
    /// SERVICE_NOT_AVAILABLE (a slave, a Raft follower, a broker shutting
    /// down) or SYSTEM_BUSY, or the route has no writable queue yet — is
    /// retried after 50, 100, 200 … ms (at most 1 s apart) with a freshly
    /// read route, until the send timeout (5 s) has passed: a new master or
    /// Raft leader is found as soon as the name servers know it. A failure
    /// after the request went out (a timeout, a closed connection) is
    /// returned at once, since the message may be stored: retrying it could
    /// store it twice.
    pub async fn send(&self, msg: &Message) -> Result<SendResult, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(50);
        let mut refresh = false;
        loop {
            let attempt = async {
                let queues = self.queues(&msg.topic, refresh).await?;
                if queues.is_empty() {
                    return Err(ClientError::Other(format!(
                        "topic `{}` has no writable queue",
                        msg.topic
                    )));
                }
                let i = self.next.fetch_add(1, Ordering::Relaxed) % queues.len();
                let (broker_name, addr, queue_id) = queues[i].clone();
                self.send_to(&addr, &broker_name, queue_id, msg).await
            };
            let err = match attempt.await {
                Ok(r) => return Ok(r),
                Err(e) if is_retryable(&e) => e,
                Err(e) => return Err(e),
            };
            let now = tokio::time::Instant::now();
            if now + backoff > deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, retry_in = ?backoff, "send not taken; retrying with a fresh route");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            refresh = true;
        }
    }

    /// Send to one queue of one broker.
    pub async fn send_to(
        &self,
        addr: &str,
        broker_name: &str,
        queue_id: i32,
        msg: &Message,
    ) -> Result<SendResult, ClientError> {
        let (req, uniq) = send_request(&self.group, broker_name, queue_id, msg);
        let r = self.remoting.invoke(addr, req, self.timeout).await?;
        send_result(broker_name, uniq, &r)
    }

    /// Send `msgs` (all of one topic) to one queue of one broker in one
    /// SEND_BATCH_MESSAGE request. The result's `msg_id` lists every
    /// message's UNIQ_KEY, comma-separated, as the Java client reports it.
    pub async fn send_batch_to(
        &self,
        addr: &str,
        broker_name: &str,
        queue_id: i32,
        msgs: &[Message],
    ) -> Result<SendResult, ClientError> {
        let (req, uniqs) = batch_request(&self.group, broker_name, queue_id, msgs)?;
        let r = self.remoting.invoke(addr, req, self.timeout).await?;
        send_result(broker_name, uniqs.join(","), &r)
    }
}

/// The properties the Java client adds to every message it sends: a fresh
/// UNIQ_KEY, `WAIT=true`, and TAGS / KEYS / DELAY when set. Returns the
/// encoded properties and the UNIQ_KEY.
fn message_properties(msg: &Message) -> (String, String) {
    let uniq = create_uniq_id();
    let mut props = msg.properties.clone();
    props.push((
        property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.to_string(),
        uniq.clone(),
    ));
    props.push((property::WAIT.to_string(), "true".to_string()));
    if let Some(t) = &msg.tags {
        props.push((property::TAGS.to_string(), t.clone()));
    }
    if !msg.keys.is_empty() {
        props.push((property::KEYS.to_string(), msg.keys.join(" ")));
    }
    if msg.delay_level > 0 {
        props.push((property::DELAY.to_string(), msg.delay_level.to_string()));
    }
    (encode_properties(&props), uniq)
}

fn request_header(
    group: &str,
    topic: &str,
    broker_name: &str,
    queue_id: i32,
    properties: String,
    batch: bool,
) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: group.to_string(),
        topic: topic.to_string(),
        default_topic: AUTO_CREATE_TOPIC_KEY_TOPIC.into(),
        default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
        queue_id,
        sys_flag: 0,
        born_timestamp: now_ms(),
        flag: 0,
        properties: Some(properties),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(batch),
        max_reconsume_times: None,
        broker_name: Some(broker_name.to_string()),
    }
}

/// The SEND_MESSAGE_V2 request the Java client sends for `msg` to queue
/// `queue_id` of `broker_name` (one-letter header names, UNIQ_KEY and WAIT
/// in the properties), and the UNIQ_KEY it carries.
pub fn send_request(
    group: &str,
    broker_name: &str,
    queue_id: i32,
    msg: &Message,
) -> (RemotingCommand, String) {
    let (properties, uniq) = message_properties(msg);
    let header = request_header(group, &msg.topic, broker_name, queue_id, properties, false);
    let mut req = RemotingCommand::request(rc::SEND_MESSAGE_V2).with_body(msg.body.clone());
    header.write_v2(&mut req);
    (req, uniq)
}

/// The SEND_BATCH_MESSAGE request the Java client sends for `msgs`, and
/// the UNIQ_KEY of each message. As `DefaultMQProducer.batch` does, every
/// message gets its own UNIQ_KEY and `WAIT=true` inside the body, and the
/// batch itself a UNIQ_KEY and `WAIT=true` in the header's properties.
pub fn batch_request(
    group: &str,
    broker_name: &str,
    queue_id: i32,
    msgs: &[Message],
) -> Result<(RemotingCommand, Vec<String>), ClientError> {
    let Some(first) = msgs.first() else {
        return Err(ClientError::Other(
            "a batch needs at least one message".into(),
        ));
    };
    if let Some(other) = msgs.iter().find(|m| m.topic != first.topic) {
        return Err(ClientError::Other(format!(
            "a batch goes to one topic, not to `{}` and `{}`",
            first.topic, other.topic
        )));
    }
    let mut uniqs = Vec::with_capacity(msgs.len());
    let items: Vec<BatchItem> = msgs
        .iter()
        .map(|m| {
            let (properties, uniq) = message_properties(m);
            uniqs.push(uniq);
            BatchItem {
                flag: 0,
                body: m.body.clone(),
                properties,
            }
        })
        .collect();
    let batch_props = encode_properties(&[
        (
            property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.to_string(),
            create_uniq_id(),
        ),
        (property::WAIT.to_string(), "true".to_string()),
    ]);
    let header = request_header(
        group,
        &first.topic,
        broker_name,
        queue_id,
        batch_props,
        true,
    );
    let mut req = RemotingCommand::request(rc::SEND_BATCH_MESSAGE).with_body(encode_batch(&items));
    header.write_v2(&mut req);
    Ok((req, uniqs))
}

/// Whether a failed send certainly stored nothing, so that sending again
/// cannot store it twice.
pub fn is_retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Remoting(meridian_remoting::RemotingError::Connect { .. })
        | ClientError::Remoting(meridian_remoting::RemotingError::Busy { .. }) => true,
        ClientError::Broker { code, .. } => {
            *code == response_code::SERVICE_NOT_AVAILABLE || *code == response_code::SYSTEM_BUSY
        }
        ClientError::Other(why) => why.contains("no writable queue"),
        _ => false,
    }
}

/// Reads a send response as the Java client does: SUCCESS and the flush /
/// slave timeouts are results, every other code is an error.
pub fn send_result(
    broker_name: &str,
    msg_id: String,
    r: &RemotingCommand,
) -> Result<SendResult, ClientError> {
    let status = match r.code {
        response_code::SUCCESS => "SEND_OK",
        response_code::FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
        response_code::FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
        response_code::SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
        _ => return Err(ClientError::broker("send", r)),
    };
    let h = SendMessageResponseHeader::parse(r).map_err(|e| ClientError::Decode {
        what: "send response".into(),
        detail: e.to_string(),
    })?;
    Ok(SendResult {
        status,
        msg_id,
        offset_msg_id: h.msg_id,
        broker_name: broker_name.to_string(),
        queue_id: h.queue_id,
        queue_offset: h.queue_offset,
    })
}

/// The writable queues of a route: `(brokerName, master address, queueId)`.
pub fn writable_queues(route: &TopicRouteData) -> Vec<QueueRoute> {
    queues_with(route, perm::PERM_WRITE, |q| q.write_queue_nums)
}

/// The readable queues of a route: `(brokerName, master address, queueId)`.
pub fn readable_queues(route: &TopicRouteData) -> Vec<QueueRoute> {
    queues_with(route, perm::PERM_READ, |q| q.read_queue_nums)
}

fn queues_with(
    route: &TopicRouteData,
    needed: i32,
    count: impl Fn(&QueueData) -> i32,
) -> Vec<QueueRoute> {
    let mut out = Vec::new();
    for q in &route.queue_datas {
        if q.perm & needed == 0 {
            continue;
        }
        let Some(addr) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.broker_addrs.get(&0))
        else {
            continue;
        };
        for id in 0..count(q) {
            out.push((q.broker_name.clone(), addr.clone(), id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_protocol::message::{decode_batch, find_property};

    fn msg(body: &'static [u8]) -> Message {
        Message {
            topic: "T".into(),
            body: Bytes::from_static(body),
            ..Default::default()
        }
    }

    #[test]
    fn single_send_has_the_java_shape() {
        let (req, uniq) = send_request("pg", "broker-a", 2, &msg(b"hello"));
        assert_eq!(req.code, rc::SEND_MESSAGE_V2);
        assert_eq!(req.language, "JAVA");
        assert_eq!(&req.body[..], b"hello");
        for (k, v) in [
            ("a", "pg"),
            ("b", "T"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "2"),
            ("f", "0"),
            ("h", "0"),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
            ("n", "broker-a"),
        ] {
            assert_eq!(req.ext(k), Some(v), "field {k}");
        }
        assert_eq!(req.ext("l"), None);
        let props = req.ext("i").unwrap();
        assert_eq!(find_property(props, "UNIQ_KEY"), Some(uniq.as_str()));
        assert_eq!(find_property(props, "WAIT"), Some("true"));
        assert_eq!(uniq.len(), 32);
    }

    #[test]
    fn batch_carries_a_uniq_key_per_message_and_one_for_the_batch() {
        let msgs = vec![msg(b"one"), msg(b"two"), msg(b"three")];
        let (req, uniqs) = batch_request("pg", "broker-a", 1, &msgs).unwrap();
        assert_eq!(req.code, rc::SEND_BATCH_MESSAGE);
        assert_eq!(req.ext("m"), Some("true"));
        assert_eq!(req.ext("b"), Some("T"));
        let header_props = req.ext("i").unwrap();
        let batch_uniq = find_property(header_props, "UNIQ_KEY").unwrap();
        assert_eq!(find_property(header_props, "WAIT"), Some("true"));
        let items = decode_batch(&req.body).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(&items[2].body[..], b"three");
        for (item, uniq) in items.iter().zip(&uniqs) {
            assert_eq!(
                find_property(&item.properties, "UNIQ_KEY"),
                Some(uniq.as_str())
            );
            assert_eq!(find_property(&item.properties, "WAIT"), Some("true"));
            assert_ne!(uniq, batch_uniq);
        }
    }

    #[test]
    fn batch_must_be_one_topic_and_not_empty() {
        assert!(batch_request("pg", "b", 0, &[]).is_err());
        let mut other = msg(b"x");
        other.topic = "U".into();
        assert!(batch_request("pg", "b", 0, &[msg(b"x"), other]).is_err());
    }
}
