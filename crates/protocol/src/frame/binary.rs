//! RocketMQ's binary command header ("ROCKETMQ" serialize type, Java's
//! `RocketMQSerializable`). All integers big-endian:
//!
//! ```text
//! code     i16   (Java casts the int code to short)
//! language u8    (LanguageCode byte)
//! version  i16
//! opaque   i32
//! flag     i32
//! remark   i32 length + UTF-8 bytes (length 0: no remark)
//! ext      i32 length of what follows, then per field:
//!            i16 key length + key, i32 value length + value
//! ```
//!
//! Java reads a zero-length key or value as null and then ignores the field,
//! so an empty ext value does not survive this encoding, here as in Java.
//! Invalid UTF-8 is replaced rather than refused, as Java's decoder does.

use bytes::{BufMut, BytesMut};

use crate::command::{ExtFields, RemotingCommand, SerializeType};
use crate::error::ProtocolError;
use crate::language;

/// Appends `cmd`'s header, in the binary encoding, to `dst`.
pub fn encode(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    // Codes and versions above 32767 are truncated exactly as Java truncates them.
    dst.put_i16(cmd.code as i16);
    dst.put_u8(language::code_of(&cmd.language));
    dst.put_i16(cmd.version as i16);
    dst.put_i32(cmd.opaque);
    dst.put_i32(cmd.flag);
    match cmd.remark.as_deref() {
        Some(remark) if !remark.is_empty() => put_long_str(dst, remark, "remark")?,
        _ => dst.put_i32(0),
    }

    let len_at = dst.len();
    dst.put_i32(0); // ext fields length, patched below

    // Sorted, so the same command always encodes to the same bytes.
    for (key, value) in cmd.ext_fields.sorted() {
        let key_len = i16::try_from(key.len()).map_err(|_| {
            ProtocolError::Unencodable(format!(
                "ext field key of {} bytes exceeds 32767",
                key.len()
            ))
        })?;
        dst.put_i16(key_len);
        dst.put_slice(key.as_bytes());
        put_long_str(dst, value, "ext field value")?;
    }
    let ext_len = i32::try_from(dst.len() - len_at - 4)
        .map_err(|_| ProtocolError::Unencodable("ext fields exceed 2 GiB".to_string()))?;
    dst[len_at..len_at + 4].copy_from_slice(&ext_len.to_be_bytes());
    Ok(())
}

fn put_long_str(dst: &mut BytesMut, s: &str, what: &str) -> Result<(), ProtocolError> {
    let len = i32::try_from(s.len())
        .map_err(|_| ProtocolError::Unencodable(format!("{what} exceeds 2 GiB")))?;
    dst.put_i32(len);
    dst.put_slice(s.as_bytes());
    Ok(())
}

/// Parses a binary header. The returned command has no body.
pub fn decode(header: &[u8]) -> Result<RemotingCommand, ProtocolError> {
    let mut r = Reader { buf: header };
    let code = i32::from(r.i16("code")?);
    let language = language::name_of(r.u8("language")?).to_string();
    let version = i32::from(r.i16("version")?);
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.len_i32("remark length")?;
    let remark = match remark_len {
        0 => None,
        n => Some(String::from_utf8_lossy(r.take(n, "remark")?).into_owned()),
    };
    let ext_len = r.len_i32("ext fields length")?;
    let ext_fields = decode_ext(r.take(ext_len, "ext fields")?)?;
    // Bytes after the ext fields, inside the header length, are ignored.
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMQ,
        body: Default::default(),
    })
}

fn decode_ext(bytes: &[u8]) -> Result<ExtFields, ProtocolError> {
    let mut r = Reader { buf: bytes };
    let mut map = ExtFields::with_capacity(16, bytes.len());
    while !r.buf.is_empty() {
        let key_len = r.i16("ext field key length")?;
        let key_len = usize::try_from(key_len).map_err(|_| {
            ProtocolError::InvalidBinaryHeader(format!("negative ext field key length {key_len}"))
        })?;
        let key = r.take(key_len, "ext field key")?;
        let value_len = r.len_i32("ext field value length")?;
        let value = r.take(value_len, "ext field value")?;
        if !key.is_empty() && !value.is_empty() {
            map.push_decoded(
                &String::from_utf8_lossy(key),
                &String::from_utf8_lossy(value),
            );
        }
    }
    Ok(map.decoded())
}

/// Reads big-endian values off a slice, failing (never panicking) when it
/// runs out.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if n > self.buf.len() {
            return Err(ProtocolError::InvalidBinaryHeader(format!(
                "{what} needs {n} bytes but only {} remain in the header",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16, ProtocolError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ProtocolError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length given as an i32, which must not be negative.
    fn len_i32(&mut self, what: &str) -> Result<usize, ProtocolError> {
        let n = self.i32(what)?;
        usize::try_from(n)
            .map_err(|_| ProtocolError::InvalidBinaryHeader(format!("negative {what} {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(cmd: &RemotingCommand) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(cmd, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn roundtrip_keeps_every_field() {
        let mut cmd = RemotingCommand::request(11)
            .with_ext("consumerGroup", "g")
            .with_ext("queueOffset", 12345)
            .with_ext("ключ", "значение");
        cmd.opaque = -7;
        cmd.flag = 2;
        cmd.language = "GO".into();
        cmd.remark = Some("héllo".into());
        cmd.serialize_type = SerializeType::RocketMQ;
        assert_eq!(decode(&encoded(&cmd)).unwrap(), cmd);
    }

    #[test]
    fn code_is_truncated_to_16_bits_like_java() {
        let cmd = RemotingCommand::request(200050); // POP_MESSAGE
        let back = decode(&encoded(&cmd)).unwrap();
        assert_eq!(back.code, 3442);
    }

    #[test]
    fn unknown_language_bytes_become_other() {
        let mut bytes = encoded(&RemotingCommand::request(1));
        bytes[2] = 99;
        assert_eq!(decode(&bytes).unwrap().language, "OTHER");
        let mut cmd = RemotingCommand::request(1);
        cmd.language = "COBOL".into();
        assert_eq!(encoded(&cmd)[2], 7);
    }

    #[test]
    fn empty_values_are_absent_as_in_java() {
        let cmd = RemotingCommand::request(1)
            .with_ext("properties", "")
            .with_ext("a", "b");
        let back = decode(&encoded(&cmd)).unwrap();
        assert_eq!(back.ext("properties"), None);
        assert_eq!(back.ext("a"), Some("b"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let good = encoded(
            &RemotingCommand::request(1)
                .with_ext("k", "v")
                .with_remark("r"),
        );
        // Every truncation fails cleanly.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Negative and oversized lengths.
        let mut bad = good.clone();
        bad[13..17].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            decode(&bad),
            Err(ProtocolError::InvalidBinaryHeader(_))
        ));
        let mut bad = good.clone();
        bad[13..17].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&bad),
            Err(ProtocolError::InvalidBinaryHeader(_))
        ));
        // A key length running past the ext section.
        let mut bad = good.clone();
        let key_at = 13 + 4 + 1 + 4;
        bad[key_at..key_at + 2].copy_from_slice(&100i16.to_be_bytes());
        assert!(decode(&bad).is_err());
        let mut bad = good;
        bad[key_at..key_at + 2].copy_from_slice(&(-2i16).to_be_bytes());
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn trailing_header_bytes_are_ignored() {
        let mut bytes = encoded(&RemotingCommand::request(5).with_ext("k", "v"));
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode(&bytes).unwrap().ext("k"), Some("v"));
    }
}
