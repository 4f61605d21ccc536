//! Message ids.
//!
//! - The *offset* id names where a message is stored: store host address,
//!   port and commit-log offset, as uppercase hex (IPv4: 4 + 4 + 8 bytes =
//!   32 digits; IPv6: 16 + 4 + 8 bytes = 56 digits). The broker returns it
//!   from a send; a client can decode it to look the message up directly.
//! - The *unique* id (property UNIQ_KEY) is what the Java client assigns
//!   before sending (`MessageClientIDSetter`): IP, process id and a
//!   per-process number, then milliseconds since the start of the month and
//!   a counter (4 + 2 + 4 + 4 + 2 bytes = 32 hex digits for IPv4).

use crate::now_ms;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Why a string is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageIdError {
    #[error("message id has {0} characters; an offset id has 32 (IPv4) or 56 (IPv6)")]
    BadLength(usize),
    #[error("message id contains a non-hex character")]
    NotHex,
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0x0F) as usize] as char);
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>, MessageIdError> {
    fn nibble(c: u8) -> Result<u8, MessageIdError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(MessageIdError::NotHex),
        }
    }
    let b = s.as_bytes();
    if b.len() & 1 == 1 {
        return Err(MessageIdError::BadLength(b.len()));
    }
    b.chunks_exact(2)
        .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// The offset message id of the record at `commit_log_offset`.
pub fn create_offset_msg_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut out = String::with_capacity(56);
    match store_host.ip() {
        IpAddr::V4(ip) => push_hex(&mut out, &ip.octets()),
        IpAddr::V6(ip) => push_hex(&mut out, &ip.octets()),
    }
    push_hex(&mut out, &(store_host.port() as i32).to_be_bytes());
    push_hex(&mut out, &commit_log_offset.to_be_bytes());
    out
}

/// Store host and commit-log offset of an offset message id (either case).
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64), MessageIdError> {
    let ip_len = match id.len() {
        32 => 4,
        56 => 16,
        n => return Err(MessageIdError::BadLength(n)),
    };
    let bytes = parse_hex(id)?;
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&bytes[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let mut port = [0u8; 4];
    port.copy_from_slice(&bytes[ip_len..ip_len + 4]);
    let mut off = [0u8; 8];
    off.copy_from_slice(&bytes[ip_len + 4..ip_len + 12]);
    Ok((
        SocketAddr::new(ip, i32::from_be_bytes(port) as u16),
        i64::from_be_bytes(off),
    ))
}

/// The per-process hex prefix of unique ids: IP, pid, and a number standing
/// in for the Java class loader's hash code.
fn uniq_prefix() -> &'static str {
    UNIQ_PREFIX.get_or_init(|| build_prefix(fallback_ip()))
}

static UNIQ_PREFIX: OnceLock<String> = OnceLock::new();
static UNIQ_COUNTER: AtomicU32 = AtomicU32::new(0);
/// (start of the current month, start of the next), in ms since the epoch.
static UNIQ_MONTH: Mutex<(i64, i64)> = Mutex::new((0, 0));

fn build_prefix(ip: IpAddr) -> String {
    let now = now_ms();
    let pid = std::process::id();
    // Any number that differs between processes on one host does the job of
    // Java's class-loader hash: mix the pid with the start time.
    let salt = (now as u32) ^ pid.rotate_left(16) ^ 0x9E37_79B9;
    let mut out = String::with_capacity(32);
    match ip {
        IpAddr::V4(ip) => push_hex(&mut out, &ip.octets()),
        IpAddr::V6(ip) => push_hex(&mut out, &ip.octets()),
    }
    push_hex(&mut out, &(pid as u16).to_be_bytes());
    push_hex(&mut out, &salt.to_be_bytes());
    out
}

/// Java's fallback when it cannot find the host's address: four bytes of the
/// current time.
fn fallback_ip() -> IpAddr {
    let b = (now_ms() as u64).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7]))
}

/// Use `ip` in the ids [`create_uniq_id`] makes from now on. Only the first
/// call (before any id was made) has an effect; returns whether it did.
pub fn set_uniq_id_ip(ip: IpAddr) -> bool {
    UNIQ_PREFIX.set(build_prefix(ip)).is_ok()
}

/// A new unique message id in the Java client's UNIQ_KEY shape.
pub fn create_uniq_id() -> String {
    let now = now_ms();
    let start = {
        let mut month = UNIQ_MONTH.lock().unwrap_or_else(|e| e.into_inner());
        if now >= month.1 || now < month.0 {
            *month = month_bounds(now);
        }
        month.0
    };
    let diff = (now - start) as i32;
    let counter = UNIQ_COUNTER.fetch_add(1, Ordering::Relaxed) as u16;
    let prefix = uniq_prefix();
    let mut out = String::with_capacity(prefix.len() + 12);
    out.push_str(prefix);
    push_hex(&mut out, &diff.to_be_bytes());
    push_hex(&mut out, &counter.to_be_bytes());
    out
}

/// Roughly when a unique id was made (ms since the epoch), read back from its
/// time field the way the Java client does it. `None` if it is not one.
pub fn uniq_id_timestamp(id: &str) -> Option<i64> {
    uniq_id_timestamp_at(id, now_ms())
}

/// [`uniq_id_timestamp`] as seen at time `now_ms`.
pub fn uniq_id_timestamp_at(id: &str, now_ms: i64) -> Option<i64> {
    let ip_len = match id.len() {
        32 => 4,
        56 => 16,
        _ => return None,
    };
    let bytes = parse_hex(id).ok()?;
    let at = ip_len + 2 + 4;
    let span = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as i64;
    let (mut start, _) = month_bounds(now_ms);
    // An id cannot come from the future: then it was made last month. (Java
    // compares with `>=`, which misdates an id read in the millisecond it was
    // made.)
    if start + span > now_ms {
        start = month_bounds(start - 1).0;
    }
    Some(start + span)
}

/// Start of the UTC month containing `ms` and of the next one. (Java uses
/// the local time zone; the id only needs a month start both sides agree on
/// within one process.)
fn month_bounds(ms: i64) -> (i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (
        days_from_civil(y, m, 1) * 86_400_000,
        days_from_civil(ny, nm, 1) * 86_400_000,
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Date of a day count since 1970-01-01 (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_id_round_trip_v4() {
        let host: SocketAddr = "192.168.1.10:10911".parse().unwrap();
        let id = create_offset_msg_id(host, 0x0012_3456_789A);
        assert_eq!(id, "C0A8010A00002A9F000000123456789A");
        assert_eq!(decode_offset_msg_id(&id).unwrap(), (host, 0x0012_3456_789A));
        assert_eq!(
            decode_offset_msg_id(&id.to_lowercase()).unwrap(),
            (host, 0x0012_3456_789A)
        );
    }

    #[test]
    fn offset_id_round_trip_v6() {
        let host: SocketAddr = "[2001:db8::1]:10911".parse().unwrap();
        let id = create_offset_msg_id(host, 77);
        assert_eq!(id.len(), 56);
        assert_eq!(decode_offset_msg_id(&id).unwrap(), (host, 77));
    }

    #[test]
    fn bad_offset_ids() {
        assert!(matches!(
            decode_offset_msg_id("ABC"),
            Err(MessageIdError::BadLength(3))
        ));
        assert_eq!(
            decode_offset_msg_id("G0A8010A00002A9F000000123456789A"),
            Err(MessageIdError::NotHex)
        );
        assert!(decode_offset_msg_id("é0A8010A00002A9F000000123456789").is_err());
    }

    #[test]
    fn uniq_ids_are_distinct_and_dated() {
        let a = create_uniq_id();
        let b = create_uniq_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(a[..20], b[..20]);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        let ts = uniq_id_timestamp(&a).unwrap();
        assert!((now_ms() - ts).abs() < 60_000, "{ts}");
        assert_eq!(uniq_id_timestamp("nope"), None);
    }

    #[test]
    fn calendar_helpers() {
        // 2024-03-15T12:00:00Z
        let ms = 1_710_504_000_000;
        let (start, next) = month_bounds(ms);
        assert_eq!(start, 1_709_251_200_000); // 2024-03-01
        assert_eq!(next, 1_711_929_600_000); // 2024-04-01
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        let (dec, jan) = month_bounds(days_from_civil(2023, 12, 31) * 86_400_000);
        assert_eq!(dec, days_from_civil(2023, 12, 1) * 86_400_000);
        assert_eq!(jan, days_from_civil(2024, 1, 1) * 86_400_000);
    }

    #[test]
    fn uniq_timestamp_from_last_month() {
        let now = days_from_civil(2024, 3, 1) * 86_400_000 + 1_000;
        // An id made 2024-02-28: span relative to 2024-02-01.
        let made = days_from_civil(2024, 2, 28) * 86_400_000;
        let span = (made - days_from_civil(2024, 2, 1) * 86_400_000) as i32;
        let mut id = "7F00000104D200000001".to_string();
        push_hex(&mut id, &span.to_be_bytes());
        push_hex(&mut id, &1u16.to_be_bytes());
        assert_eq!(uniq_id_timestamp_at(&id, now), Some(made));
    }
}
