//! PULL_MESSAGE, with long polling.
//!
//! A pull is answered with the stored records of its queue, byte for byte
//! as the commit log holds them. When there is nothing new and the client
//! allows it (the suspend flag), the pull waits — up to its suspend timeout,
//! capped by the broker — and is answered as soon as a message arrives.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meridian_protocol::body::perm;
use meridian_protocol::codes::response_code as rc;
use meridian_protocol::header::pull::{PullMessageRequestHeader, PullMessageResponseHeader};
use meridian_protocol::message::tags_hash_code;
use meridian_protocol::RemotingCommand;
use meridian_remoting::Reply;
use meridian_store::GetStatus;

use super::{bad_header, error};
use crate::filter::Selector;
use crate::BrokerInner;

const FLAG_COMMIT_OFFSET: i32 = 0x1;
const FLAG_SUSPEND: i32 = 0x2;
const FLAG_SUBSCRIPTION: i32 = 0x4;

/// Which tags a pull wants. `None` is every message.
#[derive(Clone)]
pub struct TagFilter(Option<HashSet<i64>>);

impl TagFilter {
    /// Parse a RocketMQ tag expression: `*`, empty, or `TagA || TagB`.
    pub fn parse(expr: &str) -> TagFilter {
        let expr = expr.trim();
        if expr.is_empty() || expr == "*" {
            return TagFilter(None);
        }
        let set: HashSet<i64> = expr
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(tags_hash_code)
            .collect();
        if set.is_empty() {
            TagFilter(None)
        } else {
            TagFilter(Some(set))
        }
    }

    pub fn matches(&self, tags_code: i64) -> bool {
        match &self.0 {
            None => true,
            Some(set) => set.contains(&tags_code),
        }
    }
}

pub fn process(b: &Arc<BrokerInner>, req: RemotingCommand) -> Reply {
    let h = match PullMessageRequestHeader::parse(&req) {
        Ok(h) => h,
        Err(e) => return Reply::Now(Some(bad_header(&req, e))),
    };
    let commits = h.sys_flag & FLAG_COMMIT_OFFSET != 0 && h.commit_offset >= 0;
    let filter = match check(b, &req, &h) {
        Ok(f) => f,
        Err(r) => {
            // A broker drained for maintenance or a switchover
            // (brokerPermission without read) refuses the pull but still
            // records how far the consumer got, so its last offsets travel
            // with the rest.
            let drained = b.forbids(perm::PERM_READ, "pulling").is_some();
            if commits && drained && b.topics.get(&h.topic).is_some() {
                commit(b, &h);
            }
            return Reply::Now(Some(r));
        }
    };
    if commits {
        commit(b, &h);
    }
    let first = pull_once(b, &req, &h, &filter);
    let wants_wait = h.sys_flag & FLAG_SUSPEND != 0 && h.suspend_timeout_millis > 0;
    if first.code != rc::PULL_NOT_FOUND || !wants_wait {
        return Reply::Now(Some(first));
    }
    let Some(slot) = b.long_poll.try_wait() else {
        return Reply::Now(Some(first));
    };
    let mut arrivals = b.long_poll.subscribe(&h.topic, h.queue_id);
    // A message may have arrived between the first pull and the subscribe.
    let second = pull_once(b, &req, &h, &filter);
    if second.code != rc::PULL_NOT_FOUND {
        return Reply::Now(Some(second));
    }
    let wait =
        Duration::from_millis((h.suspend_timeout_millis as u64).min(b.config.max_long_poll_ms));
    let b = b.clone();
    Reply::Later(Box::pin(async move {
        let _slot = slot;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                changed = arrivals.changed() => {
                    if changed.is_err() {
                        return Some(pull_once(&b, &req, &h, &filter));
                    }
                    let r = pull_once(&b, &req, &h, &filter);
                    if r.code != rc::PULL_NOT_FOUND {
                        return Some(r);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Some(pull_once(&b, &req, &h, &filter));
                }
            }
        }
    }))
}

/// What a pull selects: by tag code, then (SQL92) by properties.
#[derive(Clone)]
pub struct PullFilter {
    tags: TagFilter,
    sql: Option<Arc<Selector>>,
}

impl PullFilter {
    fn everything() -> PullFilter {
        PullFilter {
            tags: TagFilter(None),
            sql: None,
        }
    }
}

/// Take the consumer's offset a pull carries.
fn commit(b: &Arc<BrokerInner>, h: &PullMessageRequestHeader) {
    b.offsets
        .commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    if let Some(state) = &b.raft_state {
        state.changed();
    }
}

/// Topic, queue and subscription checks; returns the filter to apply.
fn check(
    b: &BrokerInner,
    req: &RemotingCommand,
    h: &PullMessageRequestHeader,
) -> Result<PullFilter, RemotingCommand> {
    // A broker drained for a switchover (brokerPermission without read)
    // still hands its records to relays, which ask for placeholders: the
    // rest of its messages must reach the other regions.
    if let Some(why) = b.forbids(perm::PERM_READ, "pulling") {
        if req.ext(meridian_protocol::origin::PULL_PLACEHOLDERS_EXT) != Some("true") {
            return Err(error(req, rc::NO_PERMISSION, why));
        }
    }
    let Some(cfg) = b.topics.get(&h.topic) else {
        return Err(error(
            req,
            rc::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        ));
    };
    if cfg.perm & perm::PERM_READ == 0 {
        return Err(error(
            req,
            rc::NO_PERMISSION,
            format!("the topic[{}] pulling message is forbidden", h.topic),
        ));
    }
    match b.subscription_groups.get(&h.consumer_group) {
        Some(g) if !g.consume_enable => {
            return Err(error(
                req,
                rc::NO_PERMISSION,
                format!("subscription group no permission, {}", h.consumer_group),
            ))
        }
        Some(g)
            if !g.consume_broadcast_enable
                && b.clients.group(&h.consumer_group).is_some_and(|c| {
                    c.message_model == meridian_protocol::body::MessageModel::Broadcasting
                }) =>
        {
            return Err(error(
                req,
                rc::NO_PERMISSION,
                format!(
                    "the consumer group[{}] can not consume by broadcast way",
                    h.consumer_group
                ),
            ))
        }
        None if !b.config.auto_create_subscription_group => {
            return Err(error(
                req,
                rc::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!(
                    "subscription group [{}] does not exist, apply first please!",
                    h.consumer_group
                ),
            ))
        }
        _ => {}
    }
    if h.queue_id < 0 || h.queue_id >= cfg.read_queue_nums.max(cfg.write_queue_nums) {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                h.queue_id, h.topic, cfg.read_queue_nums
            ),
        ));
    }
    // The subscription: in the pull if the client posts it, else the one
    // from the group's heartbeat. A group not heard from yet gets every
    // tag (its client filters tags on its side), but a property filter
    // only the broker can apply: that pull waits for the heartbeat.
    let header_type = h.expression_type.as_deref().unwrap_or("");
    let (expression_type, expression) = if h.sys_flag & FLAG_SUBSCRIPTION != 0 {
        (
            header_type.to_owned(),
            h.subscription.clone().unwrap_or_else(|| "*".into()),
        )
    } else {
        match b.clients.subscription(&h.consumer_group, &h.topic) {
            Some(s) => (s.expression_type, s.sub_string),
            None if is_tag_type(header_type) => return Ok(PullFilter::everything()),
            None => {
                return Err(error(
                    req,
                    rc::SUBSCRIPTION_NOT_EXIST,
                    format!(
                        "the consumer group[{}] has no subscription to topic[{}] on this broker yet (no heartbeat)",
                        h.consumer_group, h.topic
                    ),
                ))
            }
        }
    };
    compile(b, req, &expression_type, &expression)
}

fn is_tag_type(t: &str) -> bool {
    t.is_empty() || t.eq_ignore_ascii_case("TAG")
}

/// The filter for a subscription, or the error RocketMQ answers for it.
pub fn compile(
    b: &BrokerInner,
    req: &RemotingCommand,
    expression_type: &str,
    expression: &str,
) -> Result<PullFilter, RemotingCommand> {
    if is_tag_type(expression_type) {
        return Ok(PullFilter {
            tags: TagFilter::parse(expression),
            sql: None,
        });
    }
    if !expression_type.eq_ignore_ascii_case("SQL92") {
        return Err(error(
            req,
            rc::SUBSCRIPTION_PARSE_FAILED,
            format!("filter expression type {expression_type} is not supported; use TAG or SQL92"),
        ));
    }
    if !b.config.enable_property_filter {
        return Err(error(
            req,
            rc::SYSTEM_ERROR,
            "The broker does not support consumer to filter message by SQL92 (set enablePropertyFilter=true in broker.conf)",
        ));
    }
    match b.selectors.get(expression) {
        Ok(sql) => Ok(PullFilter {
            tags: TagFilter(None),
            sql: Some(sql),
        }),
        Err(why) => Err(error(
            req,
            rc::SUBSCRIPTION_PARSE_FAILED,
            format!("invalid SQL92 expression [{expression}]: {why}"),
        )),
    }
}

fn pull_once(
    b: &BrokerInner,
    req: &RemotingCommand,
    h: &PullMessageRequestHeader,
    filter: &PullFilter,
) -> RemotingCommand {
    let max_msgs = h.max_msg_nums.clamp(1, b.config.max_pull_msgs);
    // A relay reading a copy onwards takes its placeholders too.
    let placeholders = req.ext(meridian_protocol::origin::PULL_PLACEHOLDERS_EXT) == Some("true");
    let max_bytes = h
        .max_msg_bytes
        .filter(|m| *m > 0)
        .map(|m| (m as usize).min(b.config.max_pull_bytes))
        .unwrap_or(b.config.max_pull_bytes);
    let sql = filter.sql.as_deref();
    let by_properties = |record: &[u8]| sql.is_none_or(|s| s.matches_record(record));
    let got = b.store.get_messages_matching(
        &h.topic,
        h.queue_id,
        h.queue_offset,
        max_msgs,
        max_bytes,
        &|code| {
            if code == meridian_store::FILTERED_TAGS_CODE {
                placeholders
            } else {
                filter.tags.matches(code)
            }
        },
        sql.map(|_| &by_properties as &meridian_store::RecordFilter<'_>),
    );
    let code = match got.status {
        GetStatus::Found => rc::SUCCESS,
        GetStatus::NoMatchedMessage => rc::PULL_RETRY_IMMEDIATELY,
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => rc::PULL_NOT_FOUND,
        GetStatus::NoMessageInQueue => {
            if h.queue_offset != 0 {
                rc::PULL_OFFSET_MOVED
            } else {
                rc::PULL_NOT_FOUND
            }
        }
        GetStatus::OffsetOverflowBadly | GetStatus::OffsetTooSmall => rc::PULL_OFFSET_MOVED,
    };
    let suggest = if code == rc::SUCCESS {
        suggest_broker(b, got.messages.first())
    } else {
        0
    };
    let mut response = req.response_to(code, None);
    PullMessageResponseHeader {
        suggest_which_broker_id: suggest,
        next_begin_offset: got.next_begin_offset,
        min_offset: got.min_offset,
        max_offset: got.max_offset,
    }
    .write(&mut response);
    if code == rc::SUCCESS {
        b.metrics.pulled(
            &h.consumer_group,
            &h.topic,
            got.messages.len() as u64,
            got.total_bytes as u64,
        );
        b.metrics.pulled_to(
            &h.consumer_group,
            &h.topic,
            h.queue_id,
            got.next_begin_offset,
        );
        response.body = concat(got.messages, got.total_bytes);
    }
    response
}

/// Which member the consumer should pull from next. A master whose
/// consumer has fallen so far behind that its reads come from disk rather
/// than memory (RocketMQ's `accessMessageInMemoryMaxRatio`, 40% of RAM)
/// sends it to a connected slave (id 1), sparing its own page cache for the
/// producers; otherwise, and always on a slave, back to the master (0).
fn suggest_broker(b: &BrokerInner, first: Option<&Bytes>) -> i64 {
    if b.is_slave() || b.raft.is_some() || b.ha.connected_slaves() == 0 {
        return 0;
    }
    let Some(record) = first else { return 0 };
    // PHYSICALOFFSET sits after TOTALSIZE, MAGIC, BODYCRC, QUEUEID, FLAG
    // and QUEUEOFFSET.
    const PHYSICAL_OFFSET_AT: usize = 28;
    let Some(bytes) = record.get(PHYSICAL_OFFSET_AT..PHYSICAL_OFFSET_AT + 8) else {
        return 0;
    };
    let offset = i64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]));
    let behind = b.store.max_commit_log_offset() - offset;
    if behind > memory_budget() {
        1
    } else {
        0
    }
}

/// 40% of physical memory, read once.
fn memory_budget() -> i64 {
    static BUDGET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let total_kb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<i64>().ok())
            })
            .unwrap_or(8 * 1024 * 1024);
        total_kb * 1024 * 40 / 100
    })
}

/// One buffer for the response body: the records back to back.
fn concat(mut parts: Vec<Bytes>, total: usize) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(total);
    for p in &parts {
        buf.extend_from_slice(p);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions() {
        let f = TagFilter::parse("TagA || TagB");
        assert!(f.matches(tags_hash_code("TagA")));
        assert!(f.matches(tags_hash_code("TagB")));
        assert!(!f.matches(tags_hash_code("TagC")));
        assert!(TagFilter::parse("*").matches(12345));
        assert!(TagFilter::parse("").matches(0));
    }
}
