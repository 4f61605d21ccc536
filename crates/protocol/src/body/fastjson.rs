//! Reading and writing the JSON dialect of Java's fastjson.
//!
//! fastjson writes a map whose keys are not strings with the keys
//! unquoted: `{0:"10.0.0.1:10911"}` for a `Map<Long, String>`, and
//! `{{"brokerName":"b","queueId":0,"topic":"t"}:5}` for a
//! `Map<MessageQueue, Long>`. Standard JSON parsers refuse both. Java
//! RocketMQ writes this way in name-server answers to old clients and in
//! every body keyed by message queue (consume stats, offset resets), and
//! reads queue-keyed maps only in this shape.
//!
//! [`parse_fastjson`] reads the dialect (and standard JSON) into a
//! `serde_json::Value`, turning each non-string key into text: a number
//! into its digits, an object into its compact JSON. Typed bodies are then
//! read from that value with serde.

use std::collections::HashMap;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::body::MessageQueue;
use crate::error::ProtocolError;

/// How deeply arrays and objects may nest; deeper input is refused rather
/// than risking the stack.
const MAX_DEPTH: usize = 128;

/// Parses standard JSON or fastjson's dialect. Non-string object keys become
/// strings: numbers their digits, objects and arrays their compact JSON.
pub fn parse_fastjson(bytes: &[u8]) -> Result<Value, ProtocolError> {
    let mut p = Parser {
        s: bytes,
        pos: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.error("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> ProtocolError {
        ProtocolError::InvalidBody(format!("{what} at byte {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value, ProtocolError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn nested(
        &mut self,
        f: fn(&mut Self) -> Result<Value, ProtocolError>,
    ) -> Result<Value, ProtocolError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<Value, ProtocolError> {
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            let key = self.key()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            let v = self.value()?;
            map.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// An object key: a string as usual, or any other value (fastjson's
    /// non-string keys) turned into text.
    fn key(&mut self) -> Result<String, ProtocolError> {
        self.skip_ws();
        if self.peek() == Some(b'"') {
            return self.string();
        }
        Ok(match self.value()? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    fn array(&mut self) -> Result<Value, ProtocolError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A quoted string; serde_json decodes its escapes.
    fn string(&mut self) -> Result<String, ProtocolError> {
        let start = self.pos;
        self.pos += 1; // opening quote
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
            }
        }
        self.pos += 1; // closing quote
        serde_json::from_slice(&self.s[start..self.pos])
            .map_err(|e| self.error(&format!("invalid string ({e})")))
    }

    fn number(&mut self) -> Result<Value, ProtocolError> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        match serde_json::from_slice(&self.s[start..self.pos]) {
            Ok(v @ Value::Number(_)) => Ok(v),
            _ => Err(self.error("invalid number")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, ProtocolError> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.error("unexpected character"))
        }
    }
}

/// Reads a typed body from standard JSON or fastjson's dialect.
pub(crate) fn from_fastjson_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let value = parse_fastjson(bytes)?;
    serde_json::from_value(value).map_err(|e| ProtocolError::InvalidBody(e.to_string()))
}

/// Appends `v` as JSON. The values written here (numbers, strings, structs
/// with string keys) always serialize.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("plain data with string keys always serializes to JSON");
}

/// Appends a queue-keyed map in fastjson's shape, queues in order.
pub(crate) fn write_mq_map<V: Serialize>(out: &mut Vec<u8>, map: &HashMap<MessageQueue, V>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (mq, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, mq);
        out.push(b':');
        write_json(out, v);
    }
    out.push(b'}');
}

/// Serde for `HashMap<MessageQueue, V>` fields.
///
/// Serde writes them as standard JSON: a list of `[queue, value]` pairs.
/// Reading accepts that list, and an object whose keys are queues as JSON
/// text (which is what [`parse_fastjson`] makes of fastjson's shape).
pub(crate) mod mq_map {
    use super::*;

    pub fn serialize<S, V>(map: &HashMap<MessageQueue, V>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        V: Serialize,
    {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        s.collect_seq(entries)
    }

    pub fn deserialize<'de, D, V>(d: D) -> Result<HashMap<MessageQueue, V>, D::Error>
    where
        D: Deserializer<'de>,
        V: DeserializeOwned,
    {
        from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }

    fn from_value<V: DeserializeOwned>(v: Value) -> Result<HashMap<MessageQueue, V>, String> {
        let value = |v: Value| serde_json::from_value::<V>(v).map_err(|e| e.to_string());
        let queue = |v: Value| serde_json::from_value::<MessageQueue>(v).map_err(|e| e.to_string());
        match v {
            Value::Null => Ok(HashMap::new()),
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| {
                    let mq: Value = serde_json::from_str(&k)
                        .map_err(|_| format!("map key {k:?} is not a message queue"))?;
                    Ok((queue(mq)?, value(v)?))
                })
                .collect(),
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Array(pair) if pair.len() == 2 => {
                        let mut pair = pair.into_iter();
                        let (k, v) = (
                            pair.next().unwrap_or_default(),
                            pair.next().unwrap_or_default(),
                        );
                        Ok((queue(k)?, value(v)?))
                    }
                    other => Err(format!(
                        "expected a [queue, value] pair, got {}",
                        crate::body::lenient::short(&other)
                    )),
                })
                .collect(),
            other => Err(format!(
                "expected a map keyed by message queue, got {}",
                crate::body::lenient::short(&other)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_unquoted_integer_keys() {
        let v =
            parse_fastjson(br#"{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911",-1:"x"}}"#)
                .unwrap();
        assert_eq!(
            v,
            json!({"brokerAddrs": {"0": "10.0.0.1:10911", "1": "10.0.0.2:10911", "-1": "x"}})
        );
    }

    #[test]
    fn reads_object_keys() {
        let v = parse_fastjson(
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:5, {"topic":"t","queueId":1,"brokerName":"b"} : 6}}"#,
        )
        .unwrap();
        let table = v["offsetTable"].as_object().unwrap();
        assert_eq!(
            table[r#"{"brokerName":"b","queueId":0,"topic":"t"}"#],
            json!(5)
        );
        // Key order inside the key object does not matter: it is re-written sorted.
        assert_eq!(
            table[r#"{"brokerName":"b","queueId":1,"topic":"t"}"#],
            json!(6)
        );
    }

    #[test]
    fn reads_standard_json_like_serde() {
        let text = r#" {"a":[1,2.5,-3e2,true,false,null,"x\"y\u00e9\ud83d\ude00"],"b":{}} "#;
        assert_eq!(
            parse_fastjson(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn refuses_broken_input() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\"}",
            b"{\"a\":1,}",
            b"[1 2]",
            b"\"abc",
            b"\"abc\\",
            b"tru",
            b"-",
            b"1.2.3",
            b"{} x",
            b"{:1}",
            b"\"\xff\"",
        ] {
            assert!(
                parse_fastjson(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "[".repeat(10_000);
        assert!(parse_fastjson(deep.as_bytes()).is_err());
        let deep_keys = "{".repeat(10_000);
        assert!(parse_fastjson(deep_keys.as_bytes()).is_err());
    }
}
