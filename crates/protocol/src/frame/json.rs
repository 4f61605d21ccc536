//! The JSON command header, as Java's fastjson writes it and reads it.
//!
//! Written byte for byte like the Java client: keys in alphabetical order,
//! no whitespace, `remark` and `extFields` left out when there are none.
//! Read as forgivingly as the Java broker reads it: only `code` is required,
//! unknown keys are ignored, numbers may come as strings, `language` may be
//! a name or a `LanguageCode` number, and ext-field values may be strings,
//! numbers or booleans (null values count as absent).

use bytes::{BufMut, BytesMut};
use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::{ExtFields, RemotingCommand, SerializeType};
use crate::error::{truncate, ProtocolError};
use crate::language;

/// The header as the Java client serializes it; field order is fastjson's
/// (alphabetical).
#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "SortedFields::is_empty")]
    ext_fields: SortedFields<'a>,
    flag: i32,
    language: &'a str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

/// Ext fields sorted by key, written as a JSON object.
struct SortedFields<'a>(Vec<(&'a str, &'a str)>);

impl SortedFields<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for SortedFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().copied())
    }
}

/// Appends `cmd`'s header, as JSON, to `dst`.
pub fn encode(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    let header = JsonHeaderOut {
        code: cmd.code,
        // Sorted, so the same command always encodes to the same bytes.
        ext_fields: SortedFields(cmd.ext_fields.sorted()),
        flag: cmd.flag,
        language: &cmd.language,
        opaque: cmd.opaque,
        remark: cmd.remark.as_deref(),
        serialize_type: SerializeType::Json.java_name(),
        version: cmd.version,
    };
    serde_json::to_writer(dst.writer(), &header)
        .map_err(|e| ProtocolError::Unencodable(format!("JSON header: {e}")))
}

/// The header as read: each field in whatever JSON type it came, so the
/// forgiving rules below can apply. Deserialized straight from the bytes
/// (no intermediate JSON tree); strings without escapes are borrowed.
#[derive(Deserialize)]
struct JsonHeaderIn<'a> {
    #[serde(borrow, default)]
    code: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    language: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    version: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    opaque: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    flag: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    remark: Option<Scalar<'a>>,
    #[serde(rename = "extFields", default)]
    ext_fields: Option<ExtFieldsIn>,
}

/// One JSON value of the header: a scalar, or (kept as compact JSON)
/// anything else. `Null` counts as absent.
enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Other(Value),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar<'_> {
    fn present(&self) -> bool {
        !matches!(self, Scalar::Null)
    }

    /// Strings as they are, numbers and booleans as JSON writes them
    /// (true → "true"), anything else as compact JSON.
    fn into_string(self) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Str(s) => s.into_owned(),
            Scalar::Int(n) => n.to_string(),
            Scalar::UInt(n) => n.to_string(),
            Scalar::Float(f) => serde_json::Number::from_f64(f)
                .map_or_else(|| "null".to_string(), |n| n.to_string()),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Other(v) => v.to_string(),
        }
    }

    /// The value as compact JSON, for error messages.
    fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("{:?}", truncate(s, 64)),
            Scalar::Other(v) => truncate(&v.to_string(), 64).to_string(),
            Scalar::Null => "null".into(),
            Scalar::Int(n) => n.to_string(),
            Scalar::UInt(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// `extFields`: a JSON object of scalars (or null: no ext fields).
struct ExtFieldsIn(ExtFields);

impl<'de> Deserialize<'de> for ExtFieldsIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFieldsIn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`extFields` as a JSON object")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ExtFieldsIn(ExtFields::default()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = ExtFields::with_capacity(map.size_hint().unwrap_or(16), 512);
                // Keys and values without escapes are borrowed from the
                // frame and copied once, into the fields' one string.
                while let Some((k, v)) = map.next_entry::<Scalar<'de>, Scalar<'de>>()? {
                    let key = match k {
                        Scalar::Str(k) => k,
                        other => Cow::Owned(other.into_string()),
                    };
                    match v {
                        Scalar::Null => {}
                        Scalar::Str(v) => out.push_decoded(&key, &v),
                        Scalar::Int(n) => out.push_decoded_display(&key, n),
                        Scalar::UInt(n) => out.push_decoded_display(&key, n),
                        Scalar::Bool(b) => out.push_decoded_display(&key, b),
                        Scalar::Other(v) => out.push_decoded_display(&key, v),
                        f @ Scalar::Float(_) => out.push_decoded(&key, &f.into_string()),
                    }
                }
                Ok(ExtFieldsIn(out.decoded()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a JSON header. The returned command has no body.
pub fn decode(header: &[u8]) -> Result<RemotingCommand, ProtocolError> {
    // Some C clients end the header with a NUL terminator.
    let end = header.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let h: JsonHeaderIn<'_> = serde_json::from_slice(&header[..end]).map_err(|e| {
        ProtocolError::InvalidJsonHeader(if e.is_data() && e.to_string().contains("invalid type") {
            format!("the header is not a JSON object of the expected shape: {e}")
        } else {
            e.to_string()
        })
    })?;
    let code = match present(h.code) {
        Some(v) => int(&v, "code")?,
        None => return Err(invalid("`code` is missing")),
    };
    let int_or_zero = |v: Option<Scalar<'_>>, key: &str| present(v).map_or(Ok(0), |v| int(&v, key));

    Ok(RemotingCommand {
        code,
        language: language_of(present(h.language)),
        version: int_or_zero(h.version, "version")?,
        opaque: int_or_zero(h.opaque, "opaque")?,
        flag: int_or_zero(h.flag, "flag")?,
        remark: present(h.remark).map(Scalar::into_string),
        ext_fields: h.ext_fields.map(|e| e.0).unwrap_or_default(),
        serialize_type: SerializeType::Json,
        body: Default::default(),
    })
}

fn invalid(what: &str) -> ProtocolError {
    ProtocolError::InvalidJsonHeader(what.to_string())
}

/// The value, treating JSON null like absence.
fn present(v: Option<Scalar<'_>>) -> Option<Scalar<'_>> {
    v.filter(Scalar::present)
}

/// A 32-bit integer given as a JSON number or as a numeric string.
fn int(v: &Scalar<'_>, key: &str) -> Result<i32, ProtocolError> {
    let parsed = match v {
        Scalar::Int(n) => i32::try_from(*n).ok(),
        Scalar::UInt(n) => i32::try_from(*n).ok(),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ProtocolError::InvalidJsonHeader(format!(
            "`{key}` must be a 32-bit integer, got {}",
            v.describe()
        ))
    })
}

/// A `LanguageCode` name, or the name for a `LanguageCode` number. Missing
/// means Java, as in Java's `RemotingCommand`.
fn language_of(v: Option<Scalar<'_>>) -> String {
    match v {
        Some(Scalar::Str(s)) if !s.is_empty() => match s.parse::<u8>() {
            Ok(code) => language::name_of(code).to_string(),
            Err(_) => s.into_owned(),
        },
        Some(Scalar::Int(n)) => u8::try_from(n)
            .map_or(language::OTHER, language::name_of)
            .to_string(),
        Some(Scalar::UInt(n)) => u8::try_from(n)
            .map_or(language::OTHER, language::name_of)
            .to_string(),
        Some(_) => language::OTHER.to_string(),
        None => language::JAVA.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RemotingCommand, ProtocolError> {
        decode(s.as_bytes())
    }

    #[test]
    fn writes_what_the_java_client_writes() {
        let mut cmd = RemotingCommand::request(34)
            .with_ext("b", "2")
            .with_ext("a", "1");
        cmd.opaque = 9;
        let mut out = BytesMut::new();
        encode(&cmd, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"code":34,"extFields":{"a":"1","b":"2"},"flag":0,"language":"JAVA","opaque":9,"serializeTypeCurrentRPC":"JSON","version":401}"#
        );
        let cmd = RemotingCommand::response(17, "No topic route info".to_string());
        let mut out = BytesMut::new();
        encode(&cmd, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"code":17,"flag":1,"language":"JAVA","opaque":0,"remark":"No topic route info","serializeTypeCurrentRPC":"JSON","version":401}"#
        );
    }

    #[test]
    fn reads_a_java_request() {
        let cmd = parse(
            r#"{"code":310,"extFields":{"a":"pg","b":"TopicTest","e":"1","AccessKey":"ak","Signature":"sig","OnsChannel":"ALIYUN"},"flag":0,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":475}"#,
        )
        .unwrap();
        assert_eq!(cmd.code, 310);
        assert_eq!(cmd.opaque, 5);
        assert_eq!(cmd.version, 475);
        assert_eq!(cmd.ext("AccessKey"), Some("ak"));
        assert_eq!(cmd.ext("e"), Some("1"));
        assert_eq!(cmd.ext_fields.len(), 6);
    }

    #[test]
    fn tolerates_what_other_clients_send() {
        // Only `code`; no serializeTypeCurrentRPC; trailing newline.
        let cmd = parse("{\"code\":106}\n").unwrap();
        assert_eq!(
            (cmd.code, cmd.opaque, cmd.flag, cmd.version),
            (106, 0, 0, 0)
        );
        assert_eq!(cmd.language, "JAVA");
        assert!(cmd.ext_fields.is_empty() && cmd.remark.is_none());

        // Numbers as strings, language as a number, unknown keys, NUL terminator.
        let cmd = parse(
            "{\"code\":\"11\",\"opaque\":\"-3\",\"flag\":\"1\",\"language\":9,\"extra\":[1,2]}\0",
        )
        .unwrap();
        assert_eq!((cmd.code, cmd.opaque, cmd.flag), (11, -3, 1));
        assert_eq!(cmd.language, "GO");
        assert!(cmd.is_response());

        // A language Java 4.x does not know is kept as it is.
        let cmd = parse(r#"{"code":10,"language":"NODE_JS","opaque":0}"#).unwrap();
        assert_eq!(cmd.language, "NODE_JS");
        let cmd = parse(r#"{"code":10,"language":"3"}"#).unwrap();
        assert_eq!(cmd.language, "PYTHON");

        // Ext values of every JSON type; null means absent.
        let cmd = parse(
            r#"{"code":11,"extFields":{"queueId":3,"commitOffset":-1,"unitMode":true,"batch":false,"ratio":1.5,"properties":null,"topic":"t"}}"#,
        )
        .unwrap();
        assert_eq!(cmd.ext("queueId"), Some("3"));
        assert_eq!(cmd.ext("commitOffset"), Some("-1"));
        assert_eq!(cmd.ext("unitMode"), Some("true"));
        assert_eq!(cmd.ext("batch"), Some("false"));
        assert_eq!(cmd.ext("ratio"), Some("1.5"));
        assert_eq!(cmd.ext("properties"), None);
        assert_eq!(cmd.req_i32("queueId").unwrap(), 3);
        assert_eq!(cmd.opt_bool("unitMode").unwrap(), Some(true));

        // Null remark and null extFields.
        let cmd = parse(r#"{"code":0,"remark":null,"extFields":null}"#).unwrap();
        assert!(cmd.remark.is_none() && cmd.ext_fields.is_empty());
    }

    #[test]
    fn repeated_and_escaped_ext_fields_read_as_java_reads_them() {
        // A repeated key: the last value stands. Escapes are undone (the
        // message properties' separators come as \u0001 and \u0002).
        let cmd = parse(
            r#"{"code":310,"extFields":{"a":"1","i":"KEYS\u0001k1\u0002TAGS\u0001t","a":"2","\u0041b":"x"}}"#,
        )
        .unwrap();
        assert_eq!(cmd.ext("a"), Some("2"));
        assert_eq!(cmd.ext("i"), Some("KEYS\u{1}k1\u{2}TAGS\u{1}t"));
        assert_eq!(cmd.ext("Ab"), Some("x"));
        assert_eq!(cmd.ext_fields.len(), 3);

        // Many fields, many repeated: each key once, with its last value.
        let fields: Vec<String> = (0..5_000)
            .map(|i| format!("\"k{}\":\"{i}\"", i % 1_000))
            .collect();
        let cmd = parse(&format!(
            "{{\"code\":1,\"extFields\":{{{}}}}}",
            fields.join(",")
        ))
        .unwrap();
        assert_eq!(cmd.ext_fields.len(), 1_000);
        assert_eq!(cmd.ext("k7"), Some("4007"));
        assert_eq!(cmd.ext("k999"), Some("4999"));
    }

    #[test]
    fn rejects_what_is_not_a_header() {
        for bad in [
            "",
            "[]",
            "{",
            "{\"flag\":1}",
            "{\"code\":\"ten\"}",
            "{\"code\":1e99}",
            "{\"code\":4294967296}",
            "{\"code\":1,\"extFields\":[]}",
            "{\"code\":1} trailing",
            "\u{feff}{\"code\":1}",
        ] {
            assert!(
                matches!(parse(bad), Err(ProtocolError::InvalidJsonHeader(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_no_stack_overflow() {
        // Under a key nobody reads: skipped without recursion.
        let deep = format!(
            "{{\"code\":1,\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(parse(&deep).unwrap().code, 1);
        // As an ext-field value: refused past serde_json's depth limit.
        let deep = format!(
            "{{\"code\":1,\"extFields\":{{\"a\":{}{}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse(&deep).is_err());
    }
}
