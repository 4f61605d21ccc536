//! The JSON command header, as Java's fastjson writes it and reads it.
//!
//! Written byte for byte like the Java client: keys in alphabetical order,
//! no whitespace, `remark` and `extFields` left out when there are none.
//! Read as forgivingly as the Java broker reads it: only `code` is required,
//! unknown keys are ignored, numbers may come as strings, `language` may be
//! a name or a `LanguageCode` number, and ext-field values may be strings,
//! numbers or booleans (null values count as absent).

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::command::{RemotingCommand, SerializeType};
use crate::error::{truncate, ProtocolError};
use crate::language;

/// The header as the Java client serializes it; field order is fastjson's
/// (alphabetical).
#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "BTreeMap::is_empty")]
    ext_fields: BTreeMap<&'a str, &'a str>,
    flag: i32,
    language: &'a str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

/// Appends `cmd`'s header, as JSON, to `dst`.
pub fn encode(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    let header = JsonHeaderOut {
        code: cmd.code,
        // Sorted, so the same command always encodes to the same bytes.
        ext_fields: cmd
            .ext_fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
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

/// Parses a JSON header. The returned command has no body.
pub fn decode(header: &[u8]) -> Result<RemotingCommand, ProtocolError> {
    // Some C clients end the header with a NUL terminator.
    let end = header.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let value: Value = serde_json::from_slice(&header[..end])
        .map_err(|e| ProtocolError::InvalidJsonHeader(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(invalid("the header is not a JSON object"));
    };

    let code = match present(&obj, "code") {
        Some(v) => int(v, "code")?,
        None => return Err(invalid("`code` is missing")),
    };
    let int_or_zero = |key: &str| present(&obj, key).map_or(Ok(0), |v| int(v, key));

    Ok(RemotingCommand {
        code,
        language: language_of(present(&obj, "language")),
        version: int_or_zero("version")?,
        opaque: int_or_zero("opaque")?,
        flag: int_or_zero("flag")?,
        remark: present(&obj, "remark").map(scalar_to_string),
        ext_fields: ext_fields(present(&obj, "extFields"))?,
        serialize_type: SerializeType::Json,
        body: Default::default(),
    })
}

fn invalid(what: &str) -> ProtocolError {
    ProtocolError::InvalidJsonHeader(what.to_string())
}

/// The value of `key`, treating JSON null like absence.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A 32-bit integer given as a JSON number or as a numeric string.
fn int(v: &Value, key: &str) -> Result<i32, ProtocolError> {
    let parsed = match v {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ProtocolError::InvalidJsonHeader(format!(
            "`{key}` must be a 32-bit integer, got {}",
            truncate(&v.to_string(), 64)
        ))
    })
}

/// A `LanguageCode` name, or the name for a `LanguageCode` number. Missing
/// means Java, as in Java's `RemotingCommand`.
fn language_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) if !s.is_empty() => match s.parse::<u8>() {
            Ok(code) => language::name_of(code).to_string(),
            Err(_) => s.clone(),
        },
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u8::try_from(n).ok()) {
            Some(code) => language::name_of(code).to_string(),
            None => language::OTHER.to_string(),
        },
        Some(_) => language::OTHER.to_string(),
        None => language::JAVA.to_string(),
    }
}

/// The string form of a value: strings as they are, numbers and booleans as
/// written (true → "true"), anything else as compact JSON.
fn scalar_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ext_fields(v: Option<&Value>) -> Result<HashMap<String, String>, ProtocolError> {
    match v {
        None => Ok(HashMap::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), scalar_to_string(v)))
            .collect()),
        Some(_) => Err(invalid("`extFields` is not a JSON object")),
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
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(
            "{{\"code\":1,\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse(&deep).is_err());
    }
}
