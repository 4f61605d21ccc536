//! [`RemotingCommand`]: every request and every response of the protocol.
//!
//! A command is a code, a few numbers (opaque, flag, version), an optional
//! remark, a string-to-string map of "ext fields" that carries the request's
//! typed header, and an opaque body. The typed headers in [`crate::header`]
//! read and write the ext fields through the accessors here, which are as
//! forgiving as the Java broker about what other clients put in them.

use std::fmt;

use bytes::Bytes;

use crate::codes;
use crate::error::ProtocolError;
use crate::language;

/// The `version` Meridian puts on its own commands: the ordinal of
/// `MQVersion.Version.V4_9_4`. Name servers answer route queries from
/// clients at this version or newer in standard JSON (quoted map keys), and
/// it is old enough that no broker sends newer-client-only replies such as
/// GO_AWAY.
pub const VERSION: i32 = version::V4_9_4;

/// Ordinals of RocketMQ's `MQVersion.Version` that change what a peer does.
pub mod version {
    /// From here on a name server writes routes in standard JSON.
    pub const V4_9_4: i32 = 401;
    /// From here on a compressed REGISTER_BROKER body carries topic queue
    /// mappings after the filter-server list.
    pub const V5_0_0: i32 = 413;
    /// Clients newer than this understand GO_AWAY.
    pub const V5_3_1: i32 = 475;
}

/// Bits of [`RemotingCommand::flag`].
pub mod flag {
    /// Set on responses (Java's `RPC_TYPE` bit).
    pub const RESPONSE: i32 = 1;
    /// Set on requests that want no response (Java's `RPC_ONEWAY` bit).
    pub const ONEWAY: i32 = 1 << 1;
}

/// How a command's header is encoded on the wire. A response uses the
/// encoding of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum SerializeType {
    /// A JSON object; what clients send unless configured otherwise.
    #[default]
    Json,
    /// RocketMQ's compact binary encoding (`RocketMQSerializable`).
    RocketMQ,
}

impl SerializeType {
    /// The byte that the frame's header-length word carries in its top 8 bits.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMQ => 1,
        }
    }

    /// The type for a frame's serialize-type byte.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMQ),
            _ => None,
        }
    }

    /// Java's name for it, as written in the JSON header's
    /// `serializeTypeCurrentRPC`.
    pub fn java_name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMQ => "ROCKETMQ",
        }
    }
}

pub use crate::ext_fields::ExtFields;

/// One request or response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingCommand {
    /// A request code ([`codes::request_code`]) on requests, a response code
    /// ([`codes::response_code`]) on responses.
    pub code: i32,
    /// The sender's `LanguageCode` name, e.g. "JAVA"; any string is kept.
    pub language: String,
    /// The sender's `MQVersion` ordinal.
    pub version: i32,
    /// Matches a response to its request; the requester chooses it.
    pub opaque: i32,
    /// [`flag::RESPONSE`] and [`flag::ONEWAY`] bits.
    pub flag: i32,
    /// A human-readable explanation, mostly on error responses.
    pub remark: Option<String>,
    /// The typed header, as strings; see [`crate::header`].
    pub ext_fields: ExtFields,
    /// The header encoding this command arrived in or will be sent in.
    pub serialize_type: SerializeType,
    /// The body: message bytes, or a JSON document for admin commands.
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request with `code`, from a Java-compatible sender. The caller (the
    /// connection) sets `opaque`.
    pub fn request(code: i32) -> Self {
        RemotingCommand {
            code,
            language: language::JAVA.to_string(),
            version: VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::default(),
            serialize_type: SerializeType::Json,
            body: Bytes::new(),
        }
    }

    /// A response with `code` and an optional remark. Prefer
    /// [`RemotingCommand::response_to`], which also copies the request's
    /// opaque and header encoding.
    pub fn response(code: i32, remark: impl Into<Option<String>>) -> Self {
        let mut cmd = RemotingCommand::request(code);
        cmd.flag = flag::RESPONSE;
        cmd.remark = remark.into();
        cmd
    }

    /// The response to this request: same opaque and header encoding, the
    /// response bit set.
    pub fn response_to(&self, code: i32, remark: impl Into<Option<String>>) -> Self {
        let mut cmd = RemotingCommand::response(code, remark);
        cmd.opaque = self.opaque;
        cmd.serialize_type = self.serialize_type;
        cmd
    }

    /// True for responses, false for requests.
    pub fn is_response(&self) -> bool {
        self.flag & flag::RESPONSE != 0
    }

    /// True for requests that want no response.
    pub fn is_oneway(&self) -> bool {
        self.flag & flag::ONEWAY != 0
    }

    /// Marks this request as one that wants no response.
    pub fn mark_oneway(&mut self) {
        self.flag |= flag::ONEWAY;
    }

    /// Marks this command as a response.
    pub fn mark_response(&mut self) {
        self.flag |= flag::RESPONSE;
    }

    /// This command with `body`.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// This command with a remark.
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// This command with the ext field `key` set to `value`.
    pub fn with_ext(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.set_ext(key, value);
        self
    }

    /// Sets the ext field `key` to `value`, replacing any old value.
    pub fn set_ext(&mut self, key: &str, value: impl fmt::Display) {
        self.ext_fields.insert_display(key, value);
    }

    /// The ext field `key` exactly as sent, if present.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key)
    }

    /// The ext field `key`; when absent, a field whose name differs only in
    /// case. rocketmq-client-go 2.x, for one, sends SEARCH_OFFSET_BY_TIMESTAMP
    /// with "Topic" and "QueueId".
    fn lookup(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.ext_fields.get(key) {
            return Some(v);
        }
        self.ext_fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// The ext field `key` for typed parsing: an empty or blank value counts
    /// as absent, as it does in Java, where it fails to parse and leaves the
    /// header field null.
    fn present(&self, key: &str) -> Option<&str> {
        self.lookup(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A required string field.
    pub fn req_str(&self, key: &'static str) -> Result<&str, ProtocolError> {
        self.lookup(key).ok_or(ProtocolError::MissingHeader(key))
    }

    /// An optional string field.
    pub fn opt_str(&self, key: &str) -> Option<&str> {
        self.lookup(key)
    }

    /// A required 32-bit integer field.
    pub fn req_i32(&self, key: &'static str) -> Result<i32, ProtocolError> {
        self.opt_i32(key)?.ok_or(ProtocolError::MissingHeader(key))
    }

    /// A required 64-bit integer field.
    pub fn req_i64(&self, key: &'static str) -> Result<i64, ProtocolError> {
        self.opt_i64(key)?.ok_or(ProtocolError::MissingHeader(key))
    }

    /// A required boolean field (see [`RemotingCommand::opt_bool`]).
    pub fn req_bool(&self, key: &'static str) -> Result<bool, ProtocolError> {
        self.opt_bool(key)?.ok_or(ProtocolError::MissingHeader(key))
    }

    /// An optional 32-bit integer field; `Err` when present but not a number.
    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>, ProtocolError> {
        self.present(key)
            .map(|v| v.parse().map_err(|_| ProtocolError::invalid_header(key, v)))
            .transpose()
    }

    /// An optional 64-bit integer field; `Err` when present but not a number.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, ProtocolError> {
        self.present(key)
            .map(|v| v.parse().map_err(|_| ProtocolError::invalid_header(key, v)))
            .transpose()
    }

    /// An optional boolean field. Accepts "true"/"false" in any case, as Java
    /// does, and "1"/"0", which some non-Java clients send.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ProtocolError> {
        self.present(key)
            .map(|v| parse_bool(v).ok_or_else(|| ProtocolError::invalid_header(key, v)))
            .transpose()
    }
}

/// "true"/"false" in any case, or "1"/"0".
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") || v == "1" {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") || v == "0" {
        Some(false)
    } else {
        None
    }
}

impl fmt::Display for RemotingCommand {
    /// One line for logs, with the code's Java name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.is_response() {
            codes::response_code_name(self.code)
        } else {
            codes::request_code_name(self.code)
        };
        write!(
            f,
            "{} code={}({}) opaque={} flag={} lang={} version={} body={}B",
            if self.is_response() {
                "response"
            } else {
                "request"
            },
            self.code,
            name.unwrap_or("?"),
            self.opaque,
            self.flag,
            self.language,
            self.version,
            self.body.len()
        )?;
        if let Some(remark) = &self.remark {
            write!(f, " remark={:?}", crate::error::truncate(remark, 200))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{request_code, response_code};

    #[test]
    fn request_defaults_are_java_compatible() {
        let r = RemotingCommand::request(request_code::SEND_MESSAGE);
        assert_eq!(r.language, "JAVA");
        assert_eq!(r.version, 401);
        assert_eq!(r.flag, 0);
        assert_eq!(r.serialize_type, SerializeType::Json);
        assert!(!r.is_response() && !r.is_oneway());
    }

    #[test]
    fn response_to_keeps_opaque_and_encoding() {
        let mut req = RemotingCommand::request(request_code::PULL_MESSAGE);
        req.opaque = 77;
        req.serialize_type = SerializeType::RocketMQ;
        let resp = req.response_to(response_code::PULL_NOT_FOUND, "no new message".to_string());
        assert!(resp.is_response());
        assert_eq!(resp.opaque, 77);
        assert_eq!(resp.serialize_type, SerializeType::RocketMQ);
        assert_eq!(resp.remark.as_deref(), Some("no new message"));
        let resp = req.response_to(response_code::SUCCESS, None);
        assert_eq!(resp.remark, None);
    }

    #[test]
    fn oneway_bit() {
        let mut r = RemotingCommand::request(request_code::HEART_BEAT);
        r.mark_oneway();
        assert!(r.is_oneway());
        assert_eq!(r.flag, 2);
        assert!(!r.is_response());
    }

    #[test]
    fn typed_accessors() {
        let r = RemotingCommand::request(1)
            .with_ext("topic", "t")
            .with_ext("queueId", 3)
            .with_ext("offset", -5_000_000_000i64)
            .with_ext("bad", "x1")
            .with_ext("blank", " ")
            .with_ext("padded", " 7 ");
        assert_eq!(r.req_str("topic").unwrap(), "t");
        assert_eq!(r.req_i32("queueId").unwrap(), 3);
        assert_eq!(r.req_i64("offset").unwrap(), -5_000_000_000);
        assert_eq!(r.req_i32("padded").unwrap(), 7);
        assert_eq!(
            r.req_str("group").unwrap_err(),
            ProtocolError::MissingHeader("group")
        );
        assert!(matches!(
            r.req_i32("bad"),
            Err(ProtocolError::InvalidHeader { ref field, ref value }) if field == "bad" && value == "x1"
        ));
        assert!(matches!(
            r.req_i32("offset"),
            Err(ProtocolError::InvalidHeader { .. })
        ));
        assert_eq!(r.opt_i32("blank").unwrap(), None);
        assert_eq!(
            r.req_i32("blank").unwrap_err(),
            ProtocolError::MissingHeader("blank")
        );
        assert_eq!(r.opt_i64("absent").unwrap(), None);
        assert_eq!(r.opt_str("absent"), None);
    }

    #[test]
    fn booleans_accept_java_and_numeric_forms() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("FALSE", false),
            ("0", false),
        ] {
            let r = RemotingCommand::request(1).with_ext("b", v);
            assert_eq!(r.opt_bool("b").unwrap(), Some(want), "{v}");
        }
        let r = RemotingCommand::request(1).with_ext("b", "yes");
        assert!(r.opt_bool("b").is_err());
        assert_eq!(r.opt_bool("missing").unwrap(), None);
    }

    #[test]
    fn keys_fall_back_to_case_insensitive_match() {
        let r = RemotingCommand::request(1)
            .with_ext("Topic", "t")
            .with_ext("QueueId", "2");
        assert_eq!(r.req_str("topic").unwrap(), "t");
        assert_eq!(r.req_i32("queueId").unwrap(), 2);
        assert_eq!(r.ext("topic"), None);
    }

    #[test]
    fn display_names_the_code() {
        let r = RemotingCommand::request(request_code::SEND_MESSAGE_V2);
        assert!(r.to_string().contains("SEND_MESSAGE_V2"));
        let r = r.response_to(response_code::SYSTEM_BUSY, "busy".to_string());
        assert!(r.to_string().contains("SYSTEM_BUSY"));
    }
}
