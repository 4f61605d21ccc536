//! RELAY_APPEND (Meridian only): a relay stores records of another region's
//! queue in this broker's copy of that queue.
//!
//! The one rule that makes relaying exact: a copy queue is the same stream
//! as its origin queue, at the same offsets, and a record at origin offset
//! `o` is stored only if the copy continues at `o` (the store checks it
//! under its write lock, `PutMessage::at_queue_offset`). So a record that
//! arrives twice — by two paths of a mesh, or from a relay that restarted —
//! is refused as already present; the answer says where the copy continues,
//! which makes this broker the relay's checkpoint; and a consumer's offset
//! in the copy means the same message as in the origin queue.
//!
//! A record never comes back into its origin region: the request is refused
//! if the origin region is this broker's own.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::relay::{RelayAppendRequestHeader, RelayAppendResponseHeader};
use meridian_protocol::message::{decode_record_bytes, property, set_property};
use meridian_protocol::origin::OriginQueue;
use meridian_protocol::RemotingCommand;
use meridian_remoting::Reply;
use meridian_store::{PutError, PutMessage};

use super::{bad_header, error, reply_when_done, write_failed};
use crate::topics::{self, copy_queues};
use crate::{BrokerInner, WriteError};

/// Most records one RELAY_APPEND may carry.
pub const MAX_RECORDS_PER_APPEND: usize = 4096;

pub fn append(b: &Arc<BrokerInner>, req: RemotingCommand) -> Reply {
    let b = b.clone();
    reply_when_done(async move {
        let mut plan = match prepare(&b, &req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        // Deliveries of delayed messages are checked against what this
        // broker holds, and stored, one at a time (as the delay service
        // does): the plan is made again under the lock.
        let _one_at_a_time = match plan.scheduled {
            true => Some(b.scheduled.lock().await),
            false => None,
        };
        if plan.scheduled {
            plan = match prepare(&b, &req) {
                Ok(p) => p,
                Err(r) => return r,
            };
        }
        if plan.msgs.is_empty() {
            return answer(&req, plan.queue_id, plan.next, 0, plan.present);
        }
        let (queue_id, present, next_before) = (plan.queue_id, plan.present, plan.next);
        let count = plan.msgs.len();
        match b.write(plan.msgs).await {
            Ok(stored) => {
                let next = stored
                    .results
                    .last()
                    .map_or(next_before, |r| r.queue_offset + 1);
                b.relay_counters
                    .appended
                    .fetch_add(count as u64, Ordering::Relaxed);
                b.relay_counters
                    .present
                    .fetch_add(present as u64, Ordering::Relaxed);
                let mut resp = answer(&req, queue_id, next, count as i32, present);
                // Stored here but not replicated as promised: the relay
                // sends again, and the copy answers "present" once the
                // records are in; nothing is stored twice.
                if let Some((code, why)) = stored.replicas.shortfall() {
                    resp.code = code;
                    resp.remark = Some(why.to_string());
                }
                resp
            }
            Err(WriteError::Put(PutError::QueueOffsetMismatch { next, .. })) => {
                // Another writer of the copy (a second path) got there first.
                answer(&req, queue_id, next, 0, present)
            }
            Err(e) => write_failed(&req, e),
        }
    })
}

/// RELAY_GET_OFFSETS: committed offsets of some topics, with their times.
pub fn get_offsets(
    b: &Arc<BrokerInner>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, RemotingCommand> {
    let h = meridian_protocol::header::relay::RelayGetOffsetsRequestHeader::parse(req)
        .map_err(|e| bad_header(req, e))?;
    let topics: Vec<&str> = h
        .topics
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    super::json_ok(req, &b.offsets.with_times(&topics))
}

/// RELAY_PUT_OFFSETS: offsets carried in from another region; each is
/// taken only if committed later than this broker's own.
pub fn put_offsets(
    b: &Arc<BrokerInner>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, RemotingCommand> {
    if b.is_slave() {
        return Err(error(
            req,
            rc::SERVICE_NOT_AVAILABLE,
            "offsets go to the master",
        ));
    }
    let list: Vec<meridian_protocol::body::relay::CarriedOffset> =
        serde_json::from_slice(&req.body).map_err(|e| {
            error(
                req,
                rc::SYSTEM_ERROR,
                format!("the offset list is malformed: {e}"),
            )
        })?;
    let mut taken = 0;
    for o in &list {
        if topics::validate_topic(&o.topic).is_err() || o.group.is_empty() {
            continue;
        }
        if b.offsets
            .commit_carried(&o.group, &o.topic, o.queue_id, o.offset, o.commit_time)
        {
            taken += 1;
        }
    }
    let mut r = req.response_to(rc::SUCCESS, None);
    r.set_ext("taken", taken.to_string());
    Ok(r)
}

/// What an append will do.
struct Plan {
    queue_id: i32,
    /// Where the copy continued when the request arrived.
    next: i64,
    /// Records of the body the copy already held.
    present: i32,
    msgs: Vec<PutMessage>,
    /// Whether any record is a delivered delayed message.
    scheduled: bool,
}

fn answer(
    req: &RemotingCommand,
    queue_id: i32,
    next: i64,
    appended: i32,
    present: i32,
) -> RemotingCommand {
    let mut r = req.response_to(rc::SUCCESS, None);
    RelayAppendResponseHeader {
        queue_id,
        next_offset: next,
        appended,
        present,
    }
    .write(&mut r);
    r
}

fn prepare(b: &Arc<BrokerInner>, req: &RemotingCommand) -> Result<Plan, RemotingCommand> {
    let h = RelayAppendRequestHeader::parse(req).map_err(|e| bad_header(req, e))?;
    if b.is_slave() {
        return Err(error(
            req,
            rc::SERVICE_NOT_AVAILABLE,
            format!(
                "the broker[{}] does not take writes (slave or Raft follower); relay to its master",
                b.config.broker_addr()
            ),
        ));
    }
    if b.shutting_down.load(Ordering::Acquire) {
        return Err(error(
            req,
            rc::SERVICE_NOT_AVAILABLE,
            "the broker is shutting down",
        ));
    }
    topics::validate_topic(&h.topic).map_err(|e| error(req, rc::SYSTEM_ERROR, e))?;
    let origin = OriginQueue {
        region: h.origin_region.clone(),
        broker: h.origin_broker.clone(),
        queue_id: h.origin_queue_id,
    };
    if OriginQueue::parse(&origin.to_string()).as_ref() != Some(&origin) {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!("origin queue `{origin}` is not a valid region/broker/queue name"),
        ));
    }
    if origin.region == b.config.region_id {
        return Err(error(
            req,
            rc::NO_PERMISSION,
            format!(
                "queue {origin} originates in region {}, this broker's own: records never flow back into their origin region",
                origin.region
            ),
        ));
    }
    let queue_id = copy_queue_for(b, &h.topic, &origin, h.write_queue_nums.unwrap_or(0))
        .map_err(|e| error(req, rc::SYSTEM_ERROR, e))?;
    let min = b.store.min_offset_in_queue(&h.topic, queue_id);
    let next = b.store.max_offset_in_queue(&h.topic, queue_id);
    let empty = next <= min;

    let mut msgs = Vec::new();
    let mut present = 0;
    let mut scheduled = false;
    let mut rest = req.body.clone();
    let mut expect: Option<i64> = None;
    while !rest.is_empty() {
        if msgs.len() + present as usize >= MAX_RECORDS_PER_APPEND {
            return Err(error(
                req,
                rc::MESSAGE_ILLEGAL,
                format!("more than {MAX_RECORDS_PER_APPEND} records in one append"),
            ));
        }
        let (m, used) = decode_record_bytes(&rest).map_err(|e| {
            error(
                req,
                rc::MESSAGE_ILLEGAL,
                format!("a relayed record is malformed: {e}"),
            )
        })?;
        rest = rest.slice(used..);
        if m.topic != h.topic {
            return Err(error(
                req,
                rc::MESSAGE_ILLEGAL,
                format!(
                    "a record of topic {} in an append to topic {}",
                    m.topic, h.topic
                ),
            ));
        }
        if expect.is_some_and(|e| e != m.queue_offset) {
            return Err(error(
                req,
                rc::MESSAGE_ILLEGAL,
                format!(
                    "relayed records must have consecutive offsets; {} follows {}",
                    m.queue_offset,
                    expect.unwrap_or_default() - 1
                ),
            ));
        }
        expect = Some(m.queue_offset + 1);
        if m.queue_offset < next && !empty {
            present += 1;
            continue;
        }
        if msgs.is_empty() && m.queue_offset > next && !empty {
            // A gap: the relay resumes from `next`.
            break;
        }
        let mut properties = m.properties.clone();
        let mut body = m.body.clone();
        if let Some(identity) = m.property(property::SCHEDULED) {
            // A delayed message its region delivered: if this region
            // delivered it itself meanwhile (that region was down or cut
            // off), keep the offset with a placeholder instead.
            scheduled = true;
            if b.holds_scheduled(&h.topic, identity) {
                properties = meridian_protocol::origin::placeholder_properties(&m.properties);
                body = bytes::Bytes::new();
            }
        }
        if m.property(property::ORIGIN).is_none() {
            set_property(
                &mut properties,
                property::ORIGIN,
                &origin.message_id(m.queue_offset),
            );
        }
        if m.property(property::ORIGIN_STORE_TIME).is_none() {
            set_property(
                &mut properties,
                property::ORIGIN_STORE_TIME,
                &m.store_timestamp.to_string(),
            );
        }
        msgs.push(PutMessage {
            topic: h.topic.clone(),
            queue_id,
            flag: m.flag,
            body,
            properties,
            sys_flag: m.sys_flag,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host,
            store_host: b.store_host,
            reconsume_times: m.reconsume_times,
            prepared_transaction_offset: m.prepared_transaction_offset,
            at_queue_offset: Some(m.queue_offset),
        });
    }
    Ok(Plan {
        queue_id,
        next,
        present,
        msgs,
        scheduled,
    })
}

/// The copy queue of `origin` in `topic`, created if it has none. A copy
/// the topic table lost (a Raft leader that failed before its followers
/// copied the table) is found again by its records' origin first.
fn copy_queue_for(
    b: &Arc<BrokerInner>,
    topic: &str,
    origin: &OriginQueue,
    write_queues: i32,
) -> Result<i32, String> {
    if let Some(cfg) = b.topics.get(topic) {
        let copies = copy_queues(&cfg);
        if let Some((q, _)) = copies.iter().find(|(_, o)| *o == origin) {
            return Ok(*q);
        }
        adopt_lost_copies(b, &cfg, &copies);
    }
    let write_queues = if write_queues > 0 {
        write_queues
    } else {
        b.config.default_topic_queue_nums
    };
    // Finds an adopted copy, or creates one.
    let (q, created) = b.topics.copy_queue(topic, origin, write_queues, |q| {
        b.store.max_offset_in_queue(topic, q) > 0
    })?;
    if created {
        b.register_soon();
    }
    Ok(q)
}

/// Queues past the topic's own that hold records but are not in its copy
/// table: record them under the origin their first record names.
fn adopt_lost_copies(
    b: &Arc<BrokerInner>,
    cfg: &meridian_protocol::body::TopicConfig,
    copies: &std::collections::BTreeMap<i32, OriginQueue>,
) {
    let topic = cfg.topic_name.as_str();
    for (t, q) in b.store.topics_and_queues() {
        if t != topic || q < cfg.write_queue_nums || copies.contains_key(&q) {
            continue;
        }
        let min = b.store.min_offset_in_queue(topic, q);
        let got = b.store.get_messages(topic, q, min, 1, 1 << 20, &|_| true);
        let origin = got
            .messages
            .first()
            .and_then(|r| meridian_protocol::message::decode_record(r).ok())
            .and_then(|(m, _)| {
                m.property(property::ORIGIN)
                    .and_then(meridian_protocol::origin::parse_message_id)
            });
        if let Some((o, _)) = origin {
            if b.topics.adopt_copy_queue(topic, q, &o) {
                b.register_soon();
            }
        }
    }
}
