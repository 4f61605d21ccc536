//! Pull-consumer building blocks: the PULL_MESSAGE request the Java pull
//! consumer sends, reading its answer, and a queue's offset bounds.
//!
//! There is no rebalancing or offset store here: a caller that pulls every
//! queue itself (the benchmark, the relay) names the queue and the offset.

use std::time::Duration;

use bytes::Bytes;
use meridian_protocol::codes::{request_code as rc, response_code};
use meridian_protocol::header::offset::{GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader};
use meridian_protocol::header::pull::{
    pull_sys_flag, PullMessageRequestHeader, PullMessageResponseHeader,
};
use meridian_protocol::message::{parse_record, RecordError, RecordView};
use meridian_protocol::RemotingCommand;

use crate::ClientError;

/// How long the broker may hold a pull that finds nothing (the Java
/// consumer's `brokerSuspendMaxTimeMillis`).
pub const BROKER_SUSPEND_MAX_TIME: Duration = Duration::from_millis(15_000);

/// How long the consumer waits for the answer to a suspended pull (Java's
/// `CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND`); longer than the suspension.
pub const CONSUMER_TIMEOUT_WHEN_SUSPEND: Duration = Duration::from_millis(30_000);

/// Messages one pull asks for (the Java consumer's `pullBatchSize`).
pub const PULL_BATCH_SIZE: i32 = 32;

/// Bytes one pull asks for at most (`pullBatchSizeInBytes`, 256 KiB).
pub const PULL_BATCH_SIZE_IN_BYTES: i32 = 256 * 1024;

/// One pull of one queue.
#[derive(Clone, Debug)]
pub struct Pull<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub broker_name: &'a str,
    pub queue_id: i32,
    /// The consume-queue offset to read from.
    pub offset: i64,
    pub max_msgs: i32,
    /// Let the broker hold the pull this long when there is nothing new
    /// (long polling); `None` answers at once.
    pub suspend: Option<Duration>,
}

impl Pull<'_> {
    /// The PULL_MESSAGE request, shaped as the Java pull consumer's
    /// (`PullAPIWrapper.pullKernelImpl`): the subscription `*` travels with
    /// every pull (so no heartbeat has to register it first), no offset is
    /// committed on the way, and `bname` names the broker.
    pub fn request(&self) -> RemotingCommand {
        let suspend = self.suspend.is_some();
        let mut req = RemotingCommand::request(rc::PULL_MESSAGE);
        PullMessageRequestHeader {
            consumer_group: self.group.to_string(),
            topic: self.topic.to_string(),
            queue_id: self.queue_id,
            queue_offset: self.offset,
            max_msg_nums: self.max_msgs,
            sys_flag: pull_sys_flag::build(false, suspend, true, false),
            commit_offset: 0,
            suspend_timeout_millis: self.suspend.map_or(0, |d| d.as_millis() as i64),
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: Some(PULL_BATCH_SIZE_IN_BYTES),
            broker_name: Some(self.broker_name.to_string()),
        }
        .write(&mut req);
        req
    }

    /// How long to wait for the answer: the suspension plus the Java
    /// consumer's margin, or its plain pull timeout.
    pub fn timeout(&self) -> Duration {
        match self.suspend {
            Some(_) => CONSUMER_TIMEOUT_WHEN_SUSPEND,
            None => Duration::from_secs(10),
        }
    }
}

/// What a pull found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages; `records` holds them.
    Found,
    /// Nothing at the offset (yet).
    NoNewMessage,
    /// The offset was outside the queue; continue from `next_offset`.
    OffsetIllegal,
    /// The broker asks to pull again at once.
    Retry,
}

/// A pull's answer.
#[derive(Clone, Debug)]
pub struct PullResult {
    pub status: PullStatus,
    /// Where the next pull of this queue starts.
    pub next_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// The stored records, back to back, as the broker sent them.
    pub records: Bytes,
}

impl PullResult {
    /// Reads the answer to a pull. Codes other than FOUND, NOT_FOUND,
    /// RETRY_IMMEDIATELY and OFFSET_MOVED are errors.
    pub fn from_response(r: RemotingCommand) -> Result<PullResult, ClientError> {
        let status = match r.code {
            response_code::SUCCESS => PullStatus::Found,
            response_code::PULL_NOT_FOUND => PullStatus::NoNewMessage,
            response_code::PULL_RETRY_IMMEDIATELY => PullStatus::Retry,
            response_code::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
            _ => return Err(ClientError::broker("pull", &r)),
        };
        let h = PullMessageResponseHeader::parse(&r).map_err(|e| ClientError::Decode {
            what: "pull response".into(),
            detail: e.to_string(),
        })?;
        Ok(PullResult {
            status,
            next_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            records: if r.code == response_code::SUCCESS {
                r.body
            } else {
                Bytes::new()
            },
        })
    }

    /// The records of the answer, parsed in place (magic, lengths and body
    /// CRC checked).
    pub fn iter(&self) -> Records<'_> {
        Records {
            rest: &self.records,
        }
    }
}

/// Iterator over records stored back to back.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match parse_record(self.rest) {
            Ok(view) => {
                let used = (view.total_size as usize).min(self.rest.len());
                self.rest = &self.rest[used..];
                Some(Ok(view))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The GET_MAX_OFFSET request for one queue: its answer is the offset the
/// queue's next message will get.
pub fn max_offset_request(topic: &str, queue_id: i32) -> RemotingCommand {
    let mut req = RemotingCommand::request(rc::GET_MAX_OFFSET);
    GetMaxOffsetRequestHeader {
        topic: topic.to_string(),
        queue_id,
    }
    .write(&mut req);
    req
}

/// Reads the answer to [`max_offset_request`].
pub fn max_offset_result(r: &RemotingCommand) -> Result<i64, ClientError> {
    if r.code != response_code::SUCCESS {
        return Err(ClientError::broker("getMaxOffset", r));
    }
    GetMaxOffsetResponseHeader::parse(r)
        .map(|h| h.offset)
        .map_err(|e| ClientError::Decode {
            what: "max offset".into(),
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_protocol::message::{body_crc, MessageExt};

    #[test]
    fn long_polling_pull_has_the_java_shape() {
        let pull = Pull {
            group: "cg",
            topic: "T",
            broker_name: "broker-a",
            queue_id: 3,
            offset: 64,
            max_msgs: PULL_BATCH_SIZE,
            suspend: Some(BROKER_SUSPEND_MAX_TIME),
        };
        let req = pull.request();
        assert_eq!(req.code, rc::PULL_MESSAGE);
        assert_eq!(req.ext("sysFlag"), Some("6"));
        assert_eq!(req.ext("suspendTimeoutMillis"), Some("15000"));
        assert_eq!(req.ext("subscription"), Some("*"));
        assert_eq!(req.ext("expressionType"), Some("TAG"));
        assert_eq!(req.ext("queueOffset"), Some("64"));
        assert_eq!(req.ext("maxMsgBytes"), Some("262144"));
        assert_eq!(req.ext("bname"), Some("broker-a"));
        assert_eq!(pull.timeout(), CONSUMER_TIMEOUT_WHEN_SUSPEND);
        let h = PullMessageRequestHeader::parse(&req).unwrap();
        assert!(pull_sys_flag::has_suspend(h.sys_flag));
        assert!(!pull_sys_flag::has_commit_offset(h.sys_flag));
    }

    #[test]
    fn found_answer_yields_its_records() {
        let mut body = Vec::new();
        for i in 0..3 {
            let payload = vec![i as u8; 10];
            let host: std::net::SocketAddr = "127.0.0.1:10911".parse().unwrap();
            let msg = MessageExt {
                topic: "T".into(),
                queue_id: 0,
                flag: 0,
                queue_offset: i,
                commit_log_offset: 0,
                sys_flag: 0,
                born_timestamp: 1,
                born_host: host,
                store_timestamp: 2,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body_crc: body_crc(&payload),
                body: Bytes::from(payload),
                properties: String::new(),
                store_size: 0,
            };
            body.extend(msg.encode().unwrap());
        }
        let mut r = RemotingCommand::response(response_code::SUCCESS, None).with_body(body);
        PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 3,
            min_offset: 0,
            max_offset: 3,
        }
        .write(&mut r);
        let res = PullResult::from_response(r).unwrap();
        assert_eq!(res.status, PullStatus::Found);
        assert_eq!(res.next_offset, 3);
        let views: Vec<_> = res.iter().map(Result::unwrap).collect();
        assert_eq!(views.len(), 3);
        assert_eq!(views[2].queue_offset, 2);
        assert_eq!(views[1].body, &[1u8; 10][..]);
    }

    #[test]
    fn not_found_and_errors() {
        let mut r = RemotingCommand::response(response_code::PULL_NOT_FOUND, None);
        PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 7,
            min_offset: 0,
            max_offset: 7,
        }
        .write(&mut r);
        let res = PullResult::from_response(r).unwrap();
        assert_eq!(res.status, PullStatus::NoNewMessage);
        assert_eq!(res.iter().count(), 0);

        let busy = RemotingCommand::response(response_code::SYSTEM_BUSY, "busy".to_string());
        assert!(PullResult::from_response(busy).is_err());
    }
}
