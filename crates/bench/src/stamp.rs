//! The send time carried in an end-to-end message's body.
//!
//! The first 16 bytes of the body: a magic, the run's id, and the send time
//! in microseconds since the run's base instant. Producer and consumer run
//! in the same process, so one monotonic clock serves both and no clock
//! skew enters the figure; messages of other runs (other ids) are counted
//! but not timed.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"MBE2";

/// Bytes a stamped body needs at least.
pub const STAMP_LEN: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    run_id: u32,
    base: Instant,
}

impl Stamp {
    pub fn new() -> Stamp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Stamp {
            run_id: nanos ^ std::process::id().rotate_left(16),
            base: Instant::now(),
        }
    }

    /// `template` (at least [`STAMP_LEN`] bytes) with its first bytes
    /// replaced by a stamp for `at`.
    pub fn body(&self, template: &[u8], at: Instant) -> Bytes {
        debug_assert!(template.len() >= STAMP_LEN);
        let micros = at.saturating_duration_since(self.base).as_micros() as u64;
        let mut b = BytesMut::with_capacity(template.len());
        b.put_slice(MAGIC);
        b.put_u32(self.run_id);
        b.put_u64(micros);
        b.put_slice(&template[STAMP_LEN..]);
        b.freeze()
    }

    /// The send time stamped in `body`, if this run stamped it.
    pub fn read(&self, body: &[u8]) -> Option<Instant> {
        if body.len() < STAMP_LEN || &body[..4] != MAGIC {
            return None;
        }
        let run_id = u32::from_be_bytes(body[4..8].try_into().ok()?);
        if run_id != self.run_id {
            return None;
        }
        let micros = u64::from_be_bytes(body[8..16].try_into().ok()?);
        self.base.checked_add(Duration::from_micros(micros))
    }
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_foreign_bodies() {
        let s = Stamp::new();
        let at = Instant::now() + Duration::from_millis(5);
        let body = s.body(&[b'x'; 64], at);
        assert_eq!(body.len(), 64);
        assert_eq!(&body[16..], &[b'x'; 48][..]);
        let back = s.read(&body).unwrap();
        assert!(back <= at && at - back < Duration::from_micros(1));
        assert_eq!(Stamp::new().read(&body), None);
        assert_eq!(s.read(b"short"), None);
        assert_eq!(s.read(&[b'x'; 64]), None);
    }
}
