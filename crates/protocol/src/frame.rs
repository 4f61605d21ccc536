//! The remoting frame, and the conversion between frames and commands.
//!
//! On the wire every command is one frame:
//!
//! ```text
//! +----------------+----------+--------------------+--------------+------+
//! | length (u32 BE)| type (u8)| header length (u24)| header       | body |
//! +----------------+----------+--------------------+--------------+------+
//!                  |<------------------------ length ------------------->|
//! ```
//!
//! `length` counts every byte after itself. The header is JSON ([`json`])
//! or RocketMQ's binary encoding ([`binary`]), as `type` says; the body is
//! whatever is left.
//!
//! Decoding never trusts a length: each is checked against what is really
//! there, and [`FrameDecoder`] refuses an oversized frame from its length
//! prefix alone, before buffering any of it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::command::{RemotingCommand, SerializeType};
use crate::error::ProtocolError;

pub mod binary;
pub mod json;

/// The largest frame accepted by default, counted as the length prefix
/// counts (everything after the prefix): 16 MiB, the default of Java
/// RocketMQ's `com.rocketmq.remoting.frameMaxLength`. A Java peer never
/// sends more (its own decoder would refuse a frame this size from us), and
/// the Java client's largest message, 4 MiB, fits with room to spare.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The largest header the 24-bit header-length field can describe.
pub const MAX_HEADER_LEN: usize = 0x00FF_FFFF;

/// Decodes one frame, given the bytes after its 4-byte length prefix. The
/// body is copied out of `frame`; [`FrameDecoder`] avoids that copy.
pub fn decode_frame(frame: &[u8]) -> Result<RemotingCommand, ProtocolError> {
    let (mut cmd, body_start) = decode_header(frame)?;
    cmd.body = Bytes::copy_from_slice(&frame[body_start..]);
    Ok(cmd)
}

/// Decodes one frame (the bytes after the length prefix) and shares the body
/// with `frame` instead of copying it.
pub fn decode_frame_bytes(frame: Bytes) -> Result<RemotingCommand, ProtocolError> {
    let (mut cmd, body_start) = decode_header(&frame)?;
    cmd.body = frame.slice(body_start..);
    Ok(cmd)
}

/// Decodes the header and says where the body starts.
fn decode_header(frame: &[u8]) -> Result<(RemotingCommand, usize), ProtocolError> {
    if frame.len() < 4 {
        return Err(ProtocolError::FrameTooShort { len: frame.len() });
    }
    let word = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let type_byte = (word >> 24) as u8;
    let header_len = (word & MAX_HEADER_LEN as u32) as usize;
    let rest = &frame[4..];
    if header_len > rest.len() {
        return Err(ProtocolError::HeaderLengthOutOfRange {
            header_len,
            frame_len: frame.len(),
        });
    }
    let serialize_type = SerializeType::from_code(type_byte)
        .ok_or(ProtocolError::UnknownSerializeType(type_byte))?;
    let header = &rest[..header_len];
    let mut cmd = match serialize_type {
        SerializeType::Json => json::decode(header)?,
        SerializeType::RocketMQ => binary::decode(header)?,
    };
    cmd.serialize_type = serialize_type;
    Ok((cmd, 4 + header_len))
}

/// Writes `cmd` as one whole frame (length prefix, header in
/// `cmd.serialize_type`'s encoding, body) at the end of `dst`.
///
/// A command too big to frame (see [`ProtocolError::Unencodable`]) is a bug
/// in its builder; it is logged and nothing is written, so the peer sees a
/// timeout rather than a corrupt stream. Use [`try_encode_frame`] to handle
/// that case yourself.
pub fn encode_frame(cmd: &RemotingCommand, dst: &mut BytesMut) {
    if let Err(e) = try_encode_frame(cmd, dst) {
        tracing::error!(command = %cmd, error = %e, "command dropped: cannot be framed");
    }
}

/// Like [`encode_frame`], but reports a command that cannot be framed. On
/// error `dst` is left as it was.
pub fn try_encode_frame(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    encode_frame_header(cmd, cmd.body.len(), dst)?;
    dst.extend_from_slice(&cmd.body);
    Ok(())
}

/// Writes a frame's length prefix and header for a body of `body_len` bytes
/// that the caller sends right after (for example straight from the commit
/// log, without copying it into `dst`). `cmd.body` is ignored. On error
/// `dst` is left as it was.
pub fn encode_frame_header(
    cmd: &RemotingCommand,
    body_len: usize,
    dst: &mut BytesMut,
) -> Result<(), ProtocolError> {
    let start = dst.len();
    dst.put_u32(0); // length, patched below
    dst.put_u32(0); // serialize type + header length, patched below
    let encoded = match cmd.serialize_type {
        SerializeType::Json => json::encode(cmd, dst),
        SerializeType::RocketMQ => binary::encode(cmd, dst),
    };
    let header_len = dst.len() - start - 8;
    let checked = encoded.and_then(|()| {
        if header_len > MAX_HEADER_LEN {
            return Err(ProtocolError::Unencodable(format!(
                "header of {header_len} bytes exceeds the 24-bit header length field"
            )));
        }
        // Java reads the length as a signed int.
        let total = 4 + header_len + body_len;
        i32::try_from(total).map_err(|_| {
            ProtocolError::Unencodable(format!("frame of {total} bytes exceeds 2 GiB"))
        })
    });
    match checked {
        Ok(total) => {
            let word = (u32::from(cmd.serialize_type.code()) << 24) | header_len as u32;
            dst[start..start + 4].copy_from_slice(&(total as u32).to_be_bytes());
            dst[start + 4..start + 8].copy_from_slice(&word.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            dst.truncate(start);
            Err(e)
        }
    }
}

/// Cuts frames out of a byte stream, as bytes arrive from a socket.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames whose length prefix exceeds
    /// `max_frame_len`.
    pub fn new(max_frame_len: usize) -> Self {
        FrameDecoder { max_frame_len }
    }

    /// The limit this decoder enforces.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Takes the next whole frame off the front of `src` and decodes it.
    ///
    /// `Ok(None)`: no whole frame yet; read more into `src` and call again
    /// (room for the rest of the frame has been reserved).
    /// `Err`: the stream is not the remoting protocol, or a frame's header is
    /// malformed; close the connection. A frame that fails to decode has
    /// already been taken off `src`; an oversized one has not, since its
    /// bytes cannot be skipped safely.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, ProtocolError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame_len {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if src.len() - 4 < len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len).freeze();
        decode_frame_bytes(frame).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::request_code;

    fn sample(serialize_type: SerializeType) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(request_code::SEND_MESSAGE_V2)
            .with_ext("a", "group")
            .with_ext("b", "TopicTest")
            .with_ext("e", 3)
            .with_body(&b"hello"[..]);
        cmd.opaque = 42;
        cmd.serialize_type = serialize_type;
        cmd
    }

    fn roundtrip(cmd: &RemotingCommand) -> RemotingCommand {
        let mut buf = BytesMut::new();
        encode_frame(cmd, &mut buf);
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - 4);
        let mut decoder = FrameDecoder::default();
        let out = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn json_and_binary_roundtrip() {
        for st in [SerializeType::Json, SerializeType::RocketMQ] {
            let cmd = sample(st);
            assert_eq!(roundtrip(&cmd), cmd, "{st:?}");
            let mut resp = cmd.response_to(1, "broken".to_string());
            resp.ext_fields.insert("msgId", "ABC");
            assert_eq!(roundtrip(&resp), resp, "{st:?}");
        }
    }

    #[test]
    fn decode_frame_matches_decoder() {
        let cmd = sample(SerializeType::RocketMQ);
        let mut buf = BytesMut::new();
        encode_frame(&cmd, &mut buf);
        assert_eq!(decode_frame(&buf[4..]).unwrap(), cmd);
    }

    #[test]
    fn byte_exact_json_frame() {
        let mut cmd =
            RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "T");
        cmd.opaque = 1;
        cmd = cmd.with_body(&b"xy"[..]);
        let header: &[u8] = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":401}"#;
        let mut want = Vec::new();
        want.extend_from_slice(&((4 + header.len() + 2) as u32).to_be_bytes());
        want.extend_from_slice(&(header.len() as u32).to_be_bytes()); // type 0 = JSON
        want.extend_from_slice(header);
        want.extend_from_slice(b"xy");
        let mut buf = BytesMut::new();
        encode_frame(&cmd, &mut buf);
        assert_eq!(&buf[..], &want[..]);
    }

    #[test]
    fn byte_exact_binary_frame() {
        let mut cmd = RemotingCommand::response(0, "ok".to_string()).with_ext("k", "vv");
        cmd.opaque = 0x01020304;
        cmd.serialize_type = SerializeType::RocketMQ;
        cmd.version = 0x0191;
        #[rustfmt::skip]
        let header: &[u8] = &[
            0x00, 0x00,             // code
            0x00,                   // language JAVA
            0x01, 0x91,             // version
            0x01, 0x02, 0x03, 0x04, // opaque
            0x00, 0x00, 0x00, 0x01, // flag: response
            0x00, 0x00, 0x00, 0x02, b'o', b'k', // remark
            0x00, 0x00, 0x00, 0x09, // ext fields length
            0x00, 0x01, b'k',       // key
            0x00, 0x00, 0x00, 0x02, b'v', b'v', // value
        ];
        let mut want = Vec::new();
        want.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
        want.extend_from_slice(&(0x0100_0000u32 | header.len() as u32).to_be_bytes());
        want.extend_from_slice(header);
        let mut buf = BytesMut::new();
        encode_frame(&cmd, &mut buf);
        assert_eq!(&buf[..], &want[..]);
        assert_eq!(decode_frame(&want[4..]).unwrap(), cmd);
    }

    #[test]
    fn decoder_waits_for_whole_frames_and_handles_several() {
        let a = sample(SerializeType::Json);
        let b = sample(SerializeType::RocketMQ).with_body(Bytes::new());
        let mut wire = BytesMut::new();
        encode_frame(&a, &mut wire);
        encode_frame(&b, &mut wire);
        let wire = wire.freeze();
        let mut decoder = FrameDecoder::default();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            src.put_u8(*byte);
            while let Some(cmd) = decoder.decode(&mut src).unwrap() {
                got.push(cmd);
            }
        }
        assert_eq!(got, vec![a, b]);
        assert!(src.is_empty());
    }

    #[test]
    fn body_is_shared_not_copied() {
        let mut wire = BytesMut::new();
        encode_frame(
            &sample(SerializeType::Json).with_body(vec![7u8; 4096]),
            &mut wire,
        );
        let frame_start = wire.as_ptr() as usize;
        let frame_end = frame_start + wire.len();
        let cmd = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
        let body = cmd.body.as_ptr() as usize;
        assert!(body > frame_start && body < frame_end);
    }

    #[test]
    fn oversized_frame_is_refused_from_its_prefix() {
        let mut src = BytesMut::from(&(1u32 << 30).to_be_bytes()[..]);
        let err = FrameDecoder::new(1024).decode(&mut src).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::FrameTooLarge {
                len: 1 << 30,
                max: 1024
            }
        );
        // Nothing was reserved for it.
        assert!(src.capacity() < 1024);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            decode_frame(&[0, 0]).unwrap_err(),
            ProtocolError::FrameTooShort { len: 2 }
        );
        assert!(matches!(
            decode_frame(&[0, 0, 0, 10, b'{', b'}']).unwrap_err(),
            ProtocolError::HeaderLengthOutOfRange {
                header_len: 10,
                frame_len: 6
            }
        ));
        assert_eq!(
            decode_frame(&[7, 0, 0, 0]).unwrap_err(),
            ProtocolError::UnknownSerializeType(7)
        );
        assert!(matches!(
            decode_frame(&[0, 0, 0, 3, b'{', b'x', b'}']).unwrap_err(),
            ProtocolError::InvalidJsonHeader(_)
        ));
        assert!(matches!(
            decode_frame(&[1, 0, 0, 3, 0, 1, 2]).unwrap_err(),
            ProtocolError::InvalidBinaryHeader(_)
        ));
        // A zero-length frame (length prefix 0) is too short, not a panic.
        let mut src = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut src).unwrap_err(),
            ProtocolError::FrameTooShort { len: 0 }
        );
    }

    #[test]
    fn other_protocols_are_refused_at_the_length_prefix() {
        // An HTTP request or a TLS ClientHello sent to the remoting port:
        // their first four bytes read as a length far over the limit.
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..],
        ] {
            let mut src = BytesMut::from(garbage);
            assert!(matches!(
                FrameDecoder::default().decode(&mut src),
                Err(ProtocolError::FrameTooLarge { .. })
            ));
        }
    }

    #[test]
    fn unframeable_command_writes_nothing() {
        let mut cmd = RemotingCommand::request(1);
        cmd.remark = Some("x".repeat(MAX_HEADER_LEN + 1));
        let mut buf = BytesMut::from(&b"keep"[..]);
        assert!(matches!(
            try_encode_frame(&cmd, &mut buf),
            Err(ProtocolError::Unencodable(_))
        ));
        encode_frame(&cmd, &mut buf);
        assert_eq!(&buf[..], b"keep");
    }
}
