//! Request signatures of RocketMQ's ACL, both sides.
//!
//! A signed request carries `AccessKey` (and `SecurityToken` when the
//! client has one) among its ext fields, and `Signature`: the Base64 of
//! HMAC-SHA1, keyed with the account's secret key, over the values of all
//! other ext fields in the byte order of their names, concatenated without
//! separators, followed by the body. This is what RocketMQ's Java client
//! (4.9.4 and later), `rocketmq-client-rust` and `ali-ons` (which adds a
//! signed `OnsChannel` field) send.

use base64::Engine;
use hmac::{KeyInit, Mac};
use meridian_protocol::RemotingCommand;

pub const ACCESS_KEY: &str = "AccessKey";
pub const SIGNATURE: &str = "Signature";
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// A query flag that clients before 4.9.4 added after signing.
const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";
/// The highest request `version` (RocketMQ's MQVersion ordinal) of a client
/// that signed without [`UNIQUE_KEY_QUERY`]: 4.9.3.
const LAST_VERSION_SIGNING_WITHOUT_UNIQUE_KEY_QUERY: i32 = 399;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// An account's keys, for signing what a client sends.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Credentials {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    /// Add `AccessKey` and `Signature` to `req` (replacing any earlier ones).
    pub fn sign(&self, req: &mut RemotingCommand) {
        req.ext_fields.remove(SIGNATURE);
        req.set_ext(ACCESS_KEY, &self.access_key);
        let skip = req.version <= LAST_VERSION_SIGNING_WITHOUT_UNIQUE_KEY_QUERY;
        let signature = signature(&self.secret_key, req, skip);
        req.set_ext(SIGNATURE, signature);
    }
}

/// The Base64 HMAC-SHA1 signature of `req` under `secret_key`.
fn signature(secret_key: &str, req: &RemotingCommand, skip_unique_key_query: bool) -> String {
    let mut mac = <HmacSha1 as KeyInit>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC takes a key of any length");
    for (k, v) in req.ext_fields.sorted() {
        if k != SIGNATURE && !(skip_unique_key_query && k == UNIQUE_KEY_QUERY) {
            mac.update(v.as_bytes());
        }
    }
    mac.update(&req.body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `req` carries a valid signature under `secret_key`.
pub fn verify(secret_key: &str, req: &RemotingCommand) -> bool {
    let Some(given) = req.ext(SIGNATURE) else {
        return false;
    };
    let skip = req.version <= LAST_VERSION_SIGNING_WITHOUT_UNIQUE_KEY_QUERY;
    constant_time_eq(
        signature(secret_key, req, skip).as_bytes(),
        given.as_bytes(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_of_rocketmqs_own_example() {
        // ext {AccessKey=ak, SecurityToken=token, a=first, z=last}, body
        // "body", secret "secret": content "aktokenfirstlastbody".
        let mut req = RemotingCommand::request(10).with_body(&b"body"[..]);
        req.set_ext(ACCESS_KEY, "ak");
        req.set_ext(SECURITY_TOKEN, "token");
        req.set_ext("a", "first");
        req.set_ext("z", "last");
        req.version = 500;
        assert_eq!(
            signature("secret", &req, false),
            "wuJkFDNRMKY6aFXTDwT/vg0UC8M="
        );
        req.set_ext(SIGNATURE, "wuJkFDNRMKY6aFXTDwT/vg0UC8M=");
        assert!(verify("secret", &req));
        assert!(!verify("other-secret", &req));
        req.body = bytes::Bytes::from_static(b"bodY");
        assert!(!verify("secret", &req), "a changed body fails");
    }

    #[test]
    fn sign_then_verify() {
        let c = Credentials::new("RocketMQ", "12345678");
        let mut req = RemotingCommand::request(34);
        req.version = 500;
        c.sign(&mut req);
        assert_eq!(req.ext(SIGNATURE), Some("IUc8rrO/0gDch8CjObLQsW2rsiA="));
        assert!(verify("12345678", &req));
        req.set_ext("topic", "added-after-signing");
        assert!(!verify("12345678", &req));
    }
}
