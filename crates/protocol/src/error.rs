//! The one error type of this crate.
//!
//! Frame and header errors mean the peer sent something that is not the
//! RocketMQ remoting protocol (or a corrupted stream): the connection should
//! be closed. `MissingHeader` and `InvalidHeader` mean a well-formed command
//! lacks a field its request code needs: answer it with an error response.

/// What was wrong with the bytes or the command.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The 4-byte length prefix announces more bytes than we accept.
    #[error(
        "frame length {len} exceeds the limit of {max} bytes; the peer is not speaking the \
         RocketMQ remoting protocol, or sends more than the configured maximum frame length"
    )]
    FrameTooLarge { len: usize, max: usize },

    /// A frame must hold at least the 4-byte serialize-type/header-length word.
    #[error("frame of {len} bytes is too short: a remoting frame needs at least 4 bytes after its length prefix")]
    FrameTooShort { len: usize },

    /// The header length does not fit inside the frame.
    #[error("header length {header_len} does not fit in a frame of {frame_len} bytes")]
    HeaderLengthOutOfRange { header_len: usize, frame_len: usize },

    /// The high byte of the header-length word is neither 0 (JSON) nor 1 (ROCKETMQ).
    #[error("unknown serialize type {0}: expected 0 (JSON) or 1 (ROCKETMQ)")]
    UnknownSerializeType(u8),

    /// The header claims to be JSON but is not a JSON command header.
    #[error("invalid JSON header: {0}")]
    InvalidJsonHeader(String),

    /// The header claims to be RocketMQ's binary encoding but is malformed.
    #[error("invalid ROCKETMQ binary header: {0}")]
    InvalidBinaryHeader(String),

    /// A header field that the request needs is absent.
    #[error("required header field `{0}` is missing")]
    MissingHeader(&'static str),

    /// A header field is present but its value has the wrong form.
    #[error("header field `{field}` has an invalid value `{value}`")]
    InvalidHeader { field: String, value: String },

    /// A body is not the JSON its request code calls for.
    #[error("invalid body: {0}")]
    InvalidBody(String),

    /// A command that cannot be put on the wire (a header over 16 MiB, an
    /// ext-field key over 32 KiB, a frame over 2 GiB): a bug in the caller.
    #[error("command cannot be encoded: {0}")]
    Unencodable(String),
}

impl ProtocolError {
    /// `InvalidHeader` with the value shortened, so a peer cannot make us log
    /// megabytes.
    pub fn invalid_header(field: &str, value: &str) -> Self {
        ProtocolError::InvalidHeader {
            field: field.to_string(),
            value: truncate(value, 64),
        }
    }
}

/// At most `max` characters of `s`, marked with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_was_wrong() {
        let e = ProtocolError::FrameTooLarge { len: 99, max: 10 };
        assert!(e.to_string().contains("99") && e.to_string().contains("10"));
        let e = ProtocolError::MissingHeader("topic");
        assert_eq!(e.to_string(), "required header field `topic` is missing");
    }

    #[test]
    fn invalid_header_values_are_shortened() {
        let e = ProtocolError::invalid_header("queueId", &"x".repeat(1000));
        match e {
            ProtocolError::InvalidHeader { value, .. } => assert!(value.chars().count() <= 65),
            _ => unreachable!(),
        }
    }
}
