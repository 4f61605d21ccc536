//! A minimal producer: finds a topic's route, picks queues round-robin, and
//! sends with the Java client's SEND_MESSAGE_V2 request. A failed send
//! refreshes the route at once, so a moved master is found on the next try.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use meridian_protocol::body::{perm, TopicRouteData};
use meridian_protocol::codes::{request_code as rc, response_code};
use meridian_protocol::header::send::{SendMessageRequestHeader, SendMessageResponseHeader};
use meridian_protocol::message::{encode_properties, property};
use meridian_protocol::message_id::create_uniq_id;
use meridian_protocol::RemotingCommand;
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

/// A writable queue: its broker group, the master's address, its id.
type QueueRoute = (String, String, i32);

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

    /// Writable queues of `topic`: `(brokerName, master address, queueId)`.
    async fn queues(&self, topic: &str, refresh: bool) -> Result<Vec<QueueRoute>, ClientError> {
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

    /// Send one message, retrying twice on another queue as the Java client
    /// does.
    pub async fn send(&self, msg: &Message) -> Result<SendResult, ClientError> {
        let mut last_err = None;
        for attempt in 0..3 {
            let queues = self.queues(&msg.topic, attempt > 0).await?;
            if queues.is_empty() {
                return Err(ClientError::Other(format!(
                    "topic `{}` has no writable queue",
                    msg.topic
                )));
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) % queues.len();
            let (broker_name, addr, queue_id) = queues[i].clone();
            match self.send_to(&addr, &broker_name, queue_id, msg).await {
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Other("send failed".into())))
    }

    /// Send to one queue of one broker.
    pub async fn send_to(
        &self,
        addr: &str,
        broker_name: &str,
        queue_id: i32,
        msg: &Message,
    ) -> Result<SendResult, ClientError> {
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
        let header = SendMessageRequestHeader {
            producer_group: self.group.clone(),
            topic: msg.topic.clone(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id,
            sys_flag: 0,
            born_timestamp: now_ms(),
            flag: 0,
            properties: Some(encode_properties(&props)),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: Some(broker_name.to_string()),
        };
        let mut req = RemotingCommand::request(rc::SEND_MESSAGE_V2).with_body(msg.body.clone());
        header.write_v2(&mut req);
        let r = self.remoting.invoke(addr, req, self.timeout).await?;
        let status = match r.code {
            response_code::SUCCESS => "SEND_OK",
            response_code::FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
            response_code::FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
            response_code::SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
            _ => return Err(ClientError::broker("send", &r)),
        };
        let h = SendMessageResponseHeader::parse(&r).map_err(|e| ClientError::Decode {
            what: "send response".into(),
            detail: e.to_string(),
        })?;
        Ok(SendResult {
            status,
            msg_id: uniq,
            offset_msg_id: h.msg_id,
            broker_name: broker_name.to_string(),
            queue_id: h.queue_id,
            queue_offset: h.queue_offset,
        })
    }
}

fn writable_queues(route: &TopicRouteData) -> Vec<QueueRoute> {
    let mut out = Vec::new();
    for q in &route.queue_datas {
        if q.perm & perm::PERM_WRITE == 0 {
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
        for id in 0..q.write_queue_nums {
            out.push((q.broker_name.clone(), addr.clone(), id));
        }
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
