//! The message record: the byte layout RocketMQ keeps in its commit log and
//! sends, unchanged, in a pull response.
//!
//! ```text
//! TOTALSIZE i32 | MAGICCODE i32 | BODYCRC i32 | QUEUEID i32 | FLAG i32
//! QUEUEOFFSET i64 | PHYSICALOFFSET i64 | SYSFLAG i32 | BORNTIMESTAMP i64
//! BORNHOST (4-byte IPv4 + port i32, or 16-byte IPv6 + port when BORNHOST_V6_FLAG)
//! STORETIMESTAMP i64 | STOREHOST (likewise, STOREHOSTADDRESS_V6_FLAG)
//! RECONSUMETIMES i32 | PREPARED_TRANSACTION_OFFSET i64
//! BODY len i32 + bytes | TOPIC len (u8 for magic v1, i16 for v2) + bytes
//! PROPERTIES len i16 + bytes
//! ```
//!
//! Everything is big-endian. The body CRC is CRC-32 (IEEE) of the body with
//! the sign bit cleared, as the Java broker stores it.
//!
//! This module also holds the properties string codec (`name \x01 value \x02`),
//! the batch body a producer sends with SEND_BATCH_MESSAGE, and the consume
//! queue's tag hash. Everything here is pure: decoding never panics, whatever
//! the input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

/// Magic code of a v1 record (1-byte topic length): `0xDAA320A7`.
pub const MESSAGE_MAGIC_CODE: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of a v2 record (2-byte topic length, used when the topic is
/// longer than 127 bytes): `0xDAA320AB`.
pub const MESSAGE_MAGIC_CODE_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Magic code of the marker that fills the end of a commit-log segment when
/// the next record does not fit: `0xCBD43194`.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD4_3194_u32 as i32;

/// Separates a property's name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property.
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Longest topic a v1 record can carry: Java reads the length byte signed.
pub const MAX_TOPIC_LEN_V1: usize = 127;
/// Longest properties string: its length is an `i16`.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// Byte positions of the fixed fields, from the start of a record.
pub mod position {
    pub const TOTAL_SIZE: usize = 0;
    pub const MAGIC_CODE: usize = 4;
    pub const BODY_CRC: usize = 8;
    pub const QUEUE_ID: usize = 12;
    pub const FLAG: usize = 16;
    pub const QUEUE_OFFSET: usize = 20;
    pub const PHYSICAL_OFFSET: usize = 28;
    pub const SYS_FLAG: usize = 36;
    pub const BORN_TIMESTAMP: usize = 40;
    pub const BORN_HOST: usize = 48;
}

/// Bits of the record's SYSFLAG field (RocketMQ's `MessageSysFlag`).
pub mod sys_flag {
    pub const COMPRESSED_FLAG: i32 = 0x1;
    pub const MULTI_TAGS_FLAG: i32 = 0x1 << 1;
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x1 << 2;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x2 << 2;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0x3 << 2;
    pub const BORNHOST_V6_FLAG: i32 = 0x1 << 4;
    pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x1 << 5;
    pub const NEED_UNWRAP_FLAG: i32 = 0x1 << 6;
    pub const INNER_BATCH_FLAG: i32 = 0x1 << 7;
    pub const COMPRESSION_LZ4_TYPE: i32 = 0x1 << 8;
    pub const COMPRESSION_ZSTD_TYPE: i32 = 0x2 << 8;
    pub const COMPRESSION_ZLIB_TYPE: i32 = 0x3 << 8;
    pub const COMPRESSION_TYPE_COMPARATOR: i32 = 0x7 << 8;

    /// The transaction type bits: one of the `TRANSACTION_*_TYPE` values.
    pub fn transaction_value(flag: i32) -> i32 {
        flag & TRANSACTION_ROLLBACK_TYPE
    }

    /// `flag` with its transaction bits replaced by `ty`.
    pub fn reset_transaction_value(flag: i32, ty: i32) -> i32 {
        (flag & !TRANSACTION_ROLLBACK_TYPE) | ty
    }
}

/// Property names (RocketMQ's `MessageConst`), with the same values.
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT: &str = "WAIT";
    pub const WAIT_STORE_MSG_OK: &str = WAIT;
    pub const DELAY: &str = "DELAY";
    pub const DELAY_TIME_LEVEL: &str = DELAY;
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const REAL_QUEUE_ID: &str = REAL_QID;
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    pub const PRODUCER_GROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_SWITCH: &str = "TRACE_ON";
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    pub const CONSUME_START_TIMESTAMP: &str = CONSUME_START_TIME;
    pub const INNER_NUM: &str = "INNER_NUM";
    pub const INNER_BASE: &str = "INNER_BASE";
    pub const DUP_INFO: &str = "DUP_INFO";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const TRANSACTION_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const MESSAGE_REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    pub const MESSAGE_TTL: &str = "TTL";
    pub const REPLY_MESSAGE_ARRIVE_TIME: &str = "ARRIVE_TIME";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MESSAGE_TYPE: &str = "MSG_TYPE";
    pub const POP_CK: &str = "POP_CK";
    pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
    pub const REDIRECT: &str = "REDIRECT";
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Meridian: where a relayed copy came from, its global identity
    /// (`region/brokerName/queueId/queueOffset` of the origin queue).
    pub const ORIGIN: &str = "MERIDIAN_ORIGIN";
    /// Meridian: the store time (ms) of a relayed copy in its origin region.
    pub const ORIGIN_STORE_TIME: &str = "MERIDIAN_ORIGIN_TS";
    /// Meridian: a placeholder in a copy queue, holding the offset of an
    /// origin record the relay did not carry (its tag filter left it out).
    /// No body and no keys; consumers never receive it.
    pub const FILTERED: &str = "MERIDIAN_FILTERED";
    /// Meridian: on a delivered delayed message, the global identity of the
    /// `SCHEDULE_TOPIC_XXXX` record it was delivered from
    /// (`region/brokerName/queueId/queueOffset`). Indexed like a key: a
    /// region holds one delivery per identity, whichever region made it.
    pub const SCHEDULED: &str = "MERIDIAN_SCHEDULED";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const BORN_HOST: &str = "__BORNHOST";
    pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
    pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
    pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const CRC32: &str = "__CRC32#";
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";

    /// Separates several keys inside the KEYS property.
    pub const KEY_SEPARATOR: &str = " ";
}

/// Why bytes could not be read as (or written to) a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("bad magic code 0x{0:08X}: not the start of a message record")]
    BadMagic(i32),
    #[error("end-of-segment blank marker of {0} bytes, not a message")]
    BlankMarker(i32),
    #[error("invalid {what} length {value}")]
    BadLength { what: &'static str, value: i64 },
    #[error("record declares {declared} bytes but its fields add up to {computed}")]
    SizeMismatch { declared: i64, computed: i64 },
    #[error("body CRC mismatch: record says {stored}, body hashes to {computed}")]
    CrcMismatch { stored: i32, computed: i32 },
    #[error("topic is {0} bytes long; at most {max} are allowed", max = i16::MAX)]
    TopicTooLong(usize),
    #[error("topic is empty")]
    EmptyTopic,
    #[error("properties are {0} bytes long; at most {MAX_PROPERTIES_LEN} are allowed")]
    PropertiesTooLong(usize),
    #[error("body is {0} bytes long; a record holds at most {max}", max = i32::MAX)]
    BodyTooLong(usize),
    #[error("output buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall { needed: usize, available: usize },
}

/// CRC-32 (IEEE) of `body` with the sign bit cleared: the BODYCRC field.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Java's `String.hashCode` of `tag` (over UTF-16 code units, wrapping), as
/// the tag code a consume-queue entry carries.
pub fn tags_hash_code(tag: &str) -> i64 {
    tag.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    }) as i64
}

/// Length of a host field: address bytes plus the 4-byte port.
fn host_len(v6: bool) -> usize {
    if v6 {
        20
    } else {
        8
    }
}

/// Total length of a record with these field lengths. A topic longer than
/// [`MAX_TOPIC_LEN_V1`] takes the v2 layout with a 2-byte topic length.
pub fn record_len(
    born_v6: bool,
    store_v6: bool,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> usize {
    let topic_len_size = if topic_len > MAX_TOPIC_LEN_V1 { 2 } else { 1 };
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(born_v6)
        + 8
        + host_len(store_v6)
        + 4
        + 8
        + 4
        + body_len
        + topic_len_size
        + topic_len
        + 2
        + properties_len
}

/// Position of STORETIMESTAMP in a record with this SYSFLAG.
pub fn store_timestamp_position(sys_flag: i32) -> usize {
    position::BORN_HOST + host_len(sys_flag & sys_flag::BORNHOST_V6_FLAG != 0)
}

/// Position of STOREHOST in a record with this SYSFLAG.
pub fn store_host_position(sys_flag: i32) -> usize {
    store_timestamp_position(sys_flag) + 8
}

/// A fully decoded record, as a client sees it after a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    /// The raw properties string; see [`decode_properties`].
    pub properties: String,
    pub body_crc: i32,
    /// TOTALSIZE: the record's length in bytes.
    pub store_size: i32,
}

impl MessageExt {
    /// The value of property `name`, if present.
    pub fn property(&self, name: &str) -> Option<&str> {
        find_property(&self.properties, name)
    }

    /// The TAGS property.
    pub fn tags(&self) -> Option<&str> {
        self.property(property::TAGS)
    }

    /// The KEYS property split into its space-separated keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.property(property::KEYS)
            .unwrap_or("")
            .split(property::KEY_SEPARATOR)
            .filter(|k| !k.is_empty())
    }

    /// The client-assigned unique id (UNIQ_KEY), if any.
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
    }

    /// The offset message id: store host and commit-log offset.
    pub fn offset_msg_id(&self) -> String {
        crate::message_id::create_offset_msg_id(self.store_host, self.commit_log_offset)
    }

    /// This message as a borrowed record ready for [`encode_record`].
    pub fn as_record(&self) -> RecordRef<'_> {
        RecordRef {
            topic: &self.topic,
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            commit_log_offset: self.commit_log_offset,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body: &self.body,
            body_crc: self.body_crc,
            properties: &self.properties,
        }
    }

    /// Encode this message as a record (TOTALSIZE is recomputed).
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.as_record().encode_to_vec()
    }
}

/// The fields of a record to be written, borrowed from the caller so the
/// store can encode straight into a commit-log segment.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    /// The host-address bits are recomputed from `born_host`/`store_host`.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// See [`body_crc`]; passed in so the caller can compute it outside a lock.
    pub body_crc: i32,
    pub properties: &'a str,
}

impl RecordRef<'_> {
    /// SYSFLAG as written: the caller's flag with the IPv6 bits matching the
    /// actual address families, so the record always describes itself.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut flag =
            self.sys_flag & !(sys_flag::BORNHOST_V6_FLAG | sys_flag::STOREHOSTADDRESS_V6_FLAG);
        if self.born_host.is_ipv6() {
            flag |= sys_flag::BORNHOST_V6_FLAG;
        }
        if self.store_host.is_ipv6() {
            flag |= sys_flag::STOREHOSTADDRESS_V6_FLAG;
        }
        flag
    }

    /// Bytes this record takes when encoded.
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.born_host.is_ipv6(),
            self.store_host.is_ipv6(),
            self.body.len(),
            self.topic.len(),
            self.properties.len(),
        )
    }

    /// Check the lengths that the format bounds.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.topic.is_empty() {
            return Err(RecordError::EmptyTopic);
        }
        if self.topic.len() > i16::MAX as usize {
            return Err(RecordError::TopicTooLong(self.topic.len()));
        }
        if self.properties.len() > MAX_PROPERTIES_LEN {
            return Err(RecordError::PropertiesTooLong(self.properties.len()));
        }
        // TOTALSIZE is an i32 too, so the whole record must fit one.
        if self.encoded_len() > i32::MAX as usize {
            return Err(RecordError::BodyTooLong(self.body.len()));
        }
        Ok(())
    }

    /// Encode into a fresh vector.
    pub fn encode_to_vec(&self) -> Result<Vec<u8>, RecordError> {
        self.validate()?;
        let mut out = vec![0u8; self.encoded_len()];
        encode_record(self, &mut out)?;
        Ok(out)
    }
}

/// Write `rec` at the start of `dst`; returns the number of bytes written.
/// Fails (writing nothing) if a length is out of range or `dst` is too small.
pub fn encode_record(rec: &RecordRef<'_>, dst: &mut [u8]) -> Result<usize, RecordError> {
    rec.validate()?;
    let size = rec.encoded_len();
    if dst.len() < size {
        return Err(RecordError::BufferTooSmall {
            needed: size,
            available: dst.len(),
        });
    }
    let v2 = rec.topic.len() > MAX_TOPIC_LEN_V1;
    let mut w = Writer {
        buf: &mut dst[..size],
        pos: 0,
    };
    w.i32(size as i32);
    w.i32(if v2 {
        MESSAGE_MAGIC_CODE_V2
    } else {
        MESSAGE_MAGIC_CODE
    });
    w.i32(rec.body_crc);
    w.i32(rec.queue_id);
    w.i32(rec.flag);
    w.i64(rec.queue_offset);
    w.i64(rec.commit_log_offset);
    w.i32(rec.effective_sys_flag());
    w.i64(rec.born_timestamp);
    w.host(rec.born_host);
    w.i64(rec.store_timestamp);
    w.host(rec.store_host);
    w.i32(rec.reconsume_times);
    w.i64(rec.prepared_transaction_offset);
    w.i32(rec.body.len() as i32);
    w.bytes(rec.body);
    if v2 {
        w.i16(rec.topic.len() as i16);
    } else {
        w.u8(rec.topic.len() as u8);
    }
    w.bytes(rec.topic.as_bytes());
    w.i16(rec.properties.len() as i16);
    w.bytes(rec.properties.as_bytes());
    debug_assert_eq!(w.pos, size);
    Ok(size)
}

/// A record parsed in place: every variable-length field borrows from the
/// input. [`parse_record`] has checked magic, lengths and body CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub total_size: i32,
    pub magic: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a [u8],
    pub properties: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The topic, if it is valid UTF-8.
    pub fn topic_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.topic).ok()
    }

    /// The properties string, if it is valid UTF-8.
    pub fn properties_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.properties).ok()
    }

    /// Byte range of the body inside the record.
    pub fn body_range(&self) -> std::ops::Range<usize> {
        let start = store_host_position(self.sys_flag)
            + host_len(self.sys_flag & sys_flag::STOREHOSTADDRESS_V6_FLAG != 0)
            + 4
            + 8
            + 4;
        start..start + self.body.len()
    }
}

/// Parse the record at the start of `buf` without copying. Checks the magic
/// code, that every length stays inside the record and adds up to TOTALSIZE,
/// and the body CRC. Never panics.
pub fn parse_record(buf: &[u8]) -> Result<RecordView<'_>, RecordError> {
    if buf.len() < 8 {
        return Err(RecordError::Truncated {
            needed: 8,
            available: buf.len(),
        });
    }
    let total_size = be_i32(buf, 0);
    let magic = be_i32(buf, 4);
    let v2 = match magic {
        MESSAGE_MAGIC_CODE => false,
        MESSAGE_MAGIC_CODE_V2 => true,
        BLANK_MAGIC_CODE => return Err(RecordError::BlankMarker(total_size)),
        other => return Err(RecordError::BadMagic(other)),
    };
    let min = record_len(false, false, 0, 0, 0) as i64;
    if (total_size as i64) < min {
        return Err(RecordError::BadLength {
            what: "record",
            value: total_size as i64,
        });
    }
    let total = total_size as usize;
    if buf.len() < total {
        return Err(RecordError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let mut r = Reader {
        buf: &buf[..total],
        pos: 8,
    };
    let body_crc = r.i32()?;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let commit_log_offset = r.i64()?;
    let sys_flag = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = r.host(sys_flag & sys_flag::BORNHOST_V6_FLAG != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = r.host(sys_flag & sys_flag::STOREHOSTADDRESS_V6_FLAG != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = r.i32()?;
    if body_len < 0 {
        return Err(RecordError::BadLength {
            what: "body",
            value: body_len as i64,
        });
    }
    let body = r.take(body_len as usize)?;
    let topic_len = if v2 {
        let len = r.i16()?;
        if len < 0 {
            return Err(RecordError::BadLength {
                what: "topic",
                value: len as i64,
            });
        }
        len as usize
    } else {
        // Java reads this byte signed, so a v1 topic is at most 127 bytes.
        let len = r.u8()? as i8;
        if len < 0 {
            return Err(RecordError::BadLength {
                what: "topic",
                value: len as i64,
            });
        }
        len as usize
    };
    let topic = r.take(topic_len)?;
    let props_len = r.i16()?;
    if props_len < 0 {
        return Err(RecordError::BadLength {
            what: "properties",
            value: props_len as i64,
        });
    }
    let properties = r.take(props_len as usize)?;
    if r.pos != total {
        return Err(RecordError::SizeMismatch {
            declared: total as i64,
            computed: r.pos as i64,
        });
    }
    // Like the Java broker, an empty body is not checked.
    if !body.is_empty() {
        let computed = self::body_crc(body);
        if computed != body_crc {
            return Err(RecordError::CrcMismatch {
                stored: body_crc,
                computed,
            });
        }
    }
    Ok(RecordView {
        total_size,
        magic,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        commit_log_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

fn view_to_ext(view: &RecordView<'_>, body: Bytes) -> MessageExt {
    MessageExt {
        topic: String::from_utf8_lossy(view.topic).into_owned(),
        queue_id: view.queue_id,
        flag: view.flag,
        queue_offset: view.queue_offset,
        commit_log_offset: view.commit_log_offset,
        sys_flag: view.sys_flag,
        born_timestamp: view.born_timestamp,
        born_host: view.born_host,
        store_timestamp: view.store_timestamp,
        store_host: view.store_host,
        reconsume_times: view.reconsume_times,
        prepared_transaction_offset: view.prepared_transaction_offset,
        body,
        properties: String::from_utf8_lossy(view.properties).into_owned(),
        body_crc: view.body_crc,
        store_size: view.total_size,
    }
}

/// Decode the record at the start of `buf`; returns it and its length.
/// Never panics; see [`parse_record`] for what is checked.
pub fn decode_record(buf: &[u8]) -> Result<(MessageExt, usize), RecordError> {
    let view = parse_record(buf)?;
    let body = Bytes::copy_from_slice(view.body);
    Ok((view_to_ext(&view, body), view.total_size as usize))
}

/// Like [`decode_record`], but the body is a zero-copy slice of `buf`.
pub fn decode_record_bytes(buf: &Bytes) -> Result<(MessageExt, usize), RecordError> {
    let view = parse_record(buf)?;
    let body = buf.slice(view.body_range());
    Ok((view_to_ext(&view, body), view.total_size as usize))
}

/// Decode back-to-back records (a pull response body), stopping at the
/// first one that does not decode.
pub fn decode_records(buf: &[u8]) -> Vec<MessageExt> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match decode_record(&buf[pos..]) {
            Ok((msg, len)) => {
                out.push(msg);
                pos += len;
            }
            Err(_) => break,
        }
    }
    out
}

/// The WAIT property (Java's `isWaitStoreMsgOK`): whether the sender's
/// answer waits until the message is durable — on disk under SYNC_FLUSH, on
/// the slave under SYNC_MASTER. Missing means wait.
pub fn waits_for_store(props: &str) -> bool {
    find_property(props, property::WAIT).is_none_or(|v| v.eq_ignore_ascii_case("true"))
}

/// Encode properties as `name \x01 value \x02` pairs, the way the Java
/// client does (every pair, the last included, ends with `\x02`).
pub fn encode_properties(props: &[(String, String)]) -> String {
    let len = props.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(len);
    for (k, v) in props {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Iterate over the `(name, value)` pairs of a properties string with Java's
/// rules: a pair needs a non-empty name and a non-empty value; a missing
/// trailing separator is fine; anything else is skipped.
pub fn iter_properties(props: &str) -> impl Iterator<Item = (&str, &str)> {
    props.split(PROPERTY_SEPARATOR).filter_map(|pair| {
        let (name, value) = pair.split_once(NAME_VALUE_SEPARATOR)?;
        if name.is_empty() || value.is_empty() {
            None
        } else {
            Some((name, value))
        }
    })
}

/// Decode a properties string. A name that appears twice keeps its first
/// position and its last value, as Java's map would.
pub fn decode_properties(props: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in iter_properties(props) {
        if let Some(slot) = out.iter_mut().find(|(k, _)| k == name) {
            slot.1 = value.to_string();
        } else {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// The value of property `name` in a properties string, without allocating.
/// The last occurrence wins, as with [`decode_properties`].
pub fn find_property<'a>(props: &'a str, name: &str) -> Option<&'a str> {
    iter_properties(props)
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .last()
}

/// Set property `name` to `value` in a properties string: appended when
/// absent (cheap, the common case), rewritten in place otherwise.
pub fn set_property(props: &mut String, name: &str, value: &str) {
    match find_property(props, name) {
        Some(v) if v == value => {}
        None => {
            if !props.is_empty() && !props.ends_with(PROPERTY_SEPARATOR) {
                props.push(PROPERTY_SEPARATOR);
            }
            props.push_str(name);
            props.push(NAME_VALUE_SEPARATOR);
            props.push_str(value);
            props.push(PROPERTY_SEPARATOR);
        }
        Some(_) => {
            let mut all = decode_properties(props);
            for (k, v) in all.iter_mut() {
                if k == name {
                    *v = value.to_string();
                }
            }
            *props = encode_properties(&all);
        }
    }
}

/// An ordered set of message properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(Vec<(String, String)>);

impl Properties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a properties string (see [`decode_properties`]).
    pub fn parse(s: &str) -> Self {
        Properties(decode_properties(s))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Set `name`, replacing any earlier value in place.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let idx = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(idx).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The wire form (see [`encode_properties`]).
    pub fn encode(&self) -> String {
        encode_properties(&self.0)
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

impl From<Vec<(String, String)>> for Properties {
    fn from(v: Vec<(String, String)>) -> Self {
        Properties(v)
    }
}

/// One message of a SEND_BATCH_MESSAGE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

/// Fixed bytes of a batch item: TOTALSIZE, MAGICCODE, BODYCRC, FLAG, body
/// length, properties length.
const BATCH_ITEM_FIXED: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Split a SEND_BATCH_MESSAGE body into its messages. Bodies are zero-copy
/// slices of `body`. Like the Java broker, TOTALSIZE, MAGICCODE and BODYCRC
/// of each item are read past, not trusted: the lengths that follow decide.
/// Never panics.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchItem>, RecordError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let mut r = Reader {
            buf: &body[pos..],
            pos: 0,
        };
        let _total_size = r.i32()?;
        let _magic = r.i32()?;
        let _crc = r.i32()?;
        let flag = r.i32()?;
        let body_len = r.i32()?;
        if body_len < 0 {
            return Err(RecordError::BadLength {
                what: "batch item body",
                value: body_len as i64,
            });
        }
        let body_start = pos + r.pos;
        r.take(body_len as usize)?;
        let body_end = pos + r.pos;
        let props_len = r.i16()?;
        if props_len < 0 {
            return Err(RecordError::BadLength {
                what: "batch item properties",
                value: props_len as i64,
            });
        }
        let props = r.take(props_len as usize)?;
        out.push(BatchItem {
            flag,
            body: body.slice(body_start..body_end),
            properties: String::from_utf8_lossy(props).into_owned(),
        });
        pos += r.pos;
    }
    Ok(out)
}

/// Encode messages as a SEND_BATCH_MESSAGE body, byte for byte as the Java
/// client's `MessageDecoder.encodeMessages` does (MAGICCODE and BODYCRC 0).
pub fn encode_batch(items: &[BatchItem]) -> Bytes {
    let len = items
        .iter()
        .map(|i| BATCH_ITEM_FIXED + i.body.len() + i.properties.len())
        .sum();
    let mut out = BytesMut::with_capacity(len);
    for item in items {
        let props = item.properties.as_bytes();
        // The Java client truncates the length to a short; properties that
        // long are refused long before this point by every broker.
        let props_len = props.len().min(MAX_PROPERTIES_LEN);
        let size = BATCH_ITEM_FIXED + item.body.len() + props_len;
        out.put_i32(size as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(item.flag);
        out.put_i32(item.body.len() as i32);
        out.put_slice(&item.body);
        out.put_i16(props_len as i16);
        out.put_slice(&props[..props_len]);
    }
    out.freeze()
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

/// Bounds-checked big-endian reader: every read past the end is an error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(RecordError::Truncated {
                needed: self.pos.saturating_add(n),
                available: self.buf.len(),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn host(&mut self, v6: bool) -> Result<SocketAddr, RecordError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))
        };
        // Java writes the port as an int; only its low 16 bits are a port.
        let port = self.i32()?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Writer over a buffer already checked to be exactly the record's size.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn i16(&mut self, v: i16) {
        self.bytes(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.bytes(&v.to_be_bytes());
    }
    fn host(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => self.bytes(&ip.octets()),
            IpAddr::V6(ip) => self.bytes(&ip.octets()),
        }
        self.i32(addr.port() as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_defaults_to_true() {
        assert!(waits_for_store(""));
        assert!(waits_for_store("WAIT\u{1}true\u{2}"));
        assert!(waits_for_store("KEYS\u{1}k\u{2}WAIT\u{1}TRUE\u{2}"));
        assert!(!waits_for_store("WAIT\u{1}false\u{2}"));
    }

    fn sample() -> MessageExt {
        MessageExt {
            topic: "TopicTest".into(),
            queue_id: 3,
            flag: 7,
            queue_offset: 42,
            commit_log_offset: 1234,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "10.1.2.3:50000".parse().unwrap(),
            store_timestamp: 1_700_000_000_123,
            store_host: "192.168.0.1:10911".parse().unwrap(),
            reconsume_times: 1,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"Hello RocketMQ"),
            properties: encode_properties(&[
                ("TAGS".into(), "TagA".into()),
                ("KEYS".into(), "k1 k2".into()),
            ]),
            body_crc: body_crc(b"Hello RocketMQ"),
            store_size: 0,
        }
    }

    #[test]
    fn magic_codes_match_java() {
        assert_eq!(MESSAGE_MAGIC_CODE, -626843481);
        assert_eq!(MESSAGE_MAGIC_CODE_V2, -626843477);
        assert_eq!(BLANK_MAGIC_CODE, -875286124);
    }

    #[test]
    fn round_trip() {
        let msg = sample();
        let bytes = msg.encode().unwrap();
        assert_eq!(
            bytes.len(),
            record_len(false, false, 14, 9, msg.properties.len())
        );
        let (back, len) = decode_record(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(back.store_size as usize, len);
        assert_eq!(back.topic, msg.topic);
        assert_eq!(back.body, msg.body);
        assert_eq!(back.properties, msg.properties);
        assert_eq!(back.born_host, msg.born_host);
        assert_eq!(back.store_host, msg.store_host);
        assert_eq!(back.tags(), Some("TagA"));
        assert_eq!(back.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
        let s = store_timestamp_position(back.sys_flag);
        assert_eq!(s, 56);
        assert_eq!(
            i64::from_be_bytes(bytes[s..s + 8].try_into().unwrap()),
            msg.store_timestamp
        );
        let (zc, _) = decode_record_bytes(&Bytes::from(bytes)).unwrap();
        assert_eq!(zc.body, msg.body);
    }

    #[test]
    fn ipv6_hosts_set_flags() {
        let mut msg = sample();
        msg.born_host = "[::1]:1234".parse().unwrap();
        msg.store_host = "[fe80::2]:10911".parse().unwrap();
        let bytes = msg.encode().unwrap();
        let (back, _) = decode_record(&bytes).unwrap();
        assert_eq!(back.born_host, msg.born_host);
        assert_eq!(back.store_host, msg.store_host);
        assert_ne!(back.sys_flag & sys_flag::BORNHOST_V6_FLAG, 0);
        assert_ne!(back.sys_flag & sys_flag::STOREHOSTADDRESS_V6_FLAG, 0);
        assert_eq!(store_timestamp_position(back.sys_flag), 68);
    }

    #[test]
    fn long_topic_uses_v2() {
        let mut msg = sample();
        msg.topic = "%RETRY%".to_string() + &"g".repeat(150);
        let bytes = msg.encode().unwrap();
        assert_eq!(be_i32(&bytes, 4), MESSAGE_MAGIC_CODE_V2);
        assert_eq!(decode_record(&bytes).unwrap().0.topic, msg.topic);
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = sample().encode().unwrap();
        let body_at = 84 + 4;
        let mut flipped = bytes.clone();
        flipped[body_at] ^= 1;
        assert!(matches!(
            decode_record(&flipped),
            Err(RecordError::CrcMismatch { .. })
        ));
        let mut bad_magic = bytes.clone();
        bad_magic[5] ^= 0xFF;
        assert!(matches!(
            decode_record(&bad_magic),
            Err(RecordError::BadMagic(_))
        ));
        let mut bad_len = bytes.clone();
        bad_len[3] = bad_len[3].wrapping_add(1);
        assert!(decode_record(&bad_len).is_err());
        assert!(matches!(
            decode_record(&bytes[..bytes.len() - 1]),
            Err(RecordError::Truncated { .. })
        ));
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn decode_many() {
        let a = sample().encode().unwrap();
        let mut b = sample();
        b.queue_offset = 43;
        let mut buf = a.clone();
        buf.extend(b.encode().unwrap());
        buf.extend_from_slice(&[1, 2, 3]);
        let msgs = decode_records(&buf);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].queue_offset, 43);
    }

    #[test]
    fn properties_codec_is_tolerant() {
        let props = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        let s = encode_properties(&props);
        assert_eq!(s, "A\u{1}1\u{2}B\u{1}two\u{2}");
        assert_eq!(decode_properties(&s), props);
        assert_eq!(decode_properties("A\u{1}1\u{2}B\u{1}two"), props);
        assert_eq!(
            decode_properties("\u{2}\u{2}A\u{1}1\u{2}junk\u{2}\u{1}x\u{2}C\u{1}\u{2}"),
            vec![props[0].clone()]
        );
        assert_eq!(find_property("A\u{1}1\u{2}A\u{1}2\u{2}", "A"), Some("2"));
        assert_eq!(find_property(&s, "C"), None);
        let mut p = Properties::parse(&s);
        p.set("A", "9");
        p.set("C", "3");
        assert_eq!(p.remove("B").as_deref(), Some("two"));
        assert_eq!(p.encode(), "A\u{1}9\u{2}C\u{1}3\u{2}");
    }

    #[test]
    fn tag_hash_is_java_string_hash() {
        assert_eq!(tags_hash_code(""), 0);
        assert_eq!(tags_hash_code("TagA"), 2598919);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(tags_hash_code("polygenelubricants"), i32::MIN as i64);
        // A character outside the BMP counts as two UTF-16 units.
        assert_eq!(tags_hash_code("😀"), (0xD83Di32 * 31 + 0xDE00) as i64);
    }

    #[test]
    fn batch_round_trip() {
        let items = vec![
            BatchItem {
                flag: 0,
                body: Bytes::from_static(b"one"),
                properties: "KEYS\u{1}a\u{2}".into(),
            },
            BatchItem {
                flag: 5,
                body: Bytes::new(),
                properties: String::new(),
            },
        ];
        let enc = encode_batch(&items);
        assert_eq!(be_i32(&enc, 0) as usize, 22 + 3 + 7);
        assert_eq!(decode_batch(&enc).unwrap(), items);
        for cut in 1..enc.len() {
            if cut == 32 {
                continue; // a whole first item
            }
            assert!(decode_batch(&enc.slice(..cut)).is_err(), "cut {cut}");
        }
        assert_eq!(decode_batch(&Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300i32 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_record(&buf);
            let _ = decode_records(&buf);
            let _ = decode_batch(&Bytes::from(buf.clone()));
            let mut with_magic = buf.clone();
            if with_magic.len() >= 8 {
                with_magic[0..4].copy_from_slice(&len.to_be_bytes());
                with_magic[4..8].copy_from_slice(&MESSAGE_MAGIC_CODE.to_be_bytes());
                let _ = decode_record(&with_magic);
            }
        }
    }

    #[test]
    fn set_property_appends_or_replaces() {
        let mut p = String::new();
        set_property(&mut p, "MSG_REGION", "east");
        assert_eq!(find_property(&p, "MSG_REGION"), Some("east"));
        let mut p = "KEYS\u{1}k1".to_string();
        set_property(&mut p, "MSG_REGION", "east");
        assert_eq!(find_property(&p, "KEYS"), Some("k1"));
        assert_eq!(find_property(&p, "MSG_REGION"), Some("east"));
        set_property(&mut p, "MSG_REGION", "west");
        assert_eq!(find_property(&p, "MSG_REGION"), Some("west"));
        assert_eq!(decode_properties(&p).len(), 2);
    }
}
