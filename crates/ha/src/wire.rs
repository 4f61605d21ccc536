//! The bytes on the HA port, as RocketMQ 4's `HAService` and
//! `HAConnection` write them. Two messages, both big-endian, no framing
//! beyond their fixed sizes:
//!
//! ```text
//! slave -> master   report:  offset i64            (8 bytes)
//! master -> slave   frame:   offset i64 | len i32  (12-byte header)
//!                            len bytes of the master's commit log from offset
//! ```
//!
//! A slave reports its max commit-log offset when it connects (the master
//! streams from there), whenever it has grown, and at least every
//! heartbeat interval. A frame with `len` 0 is the master's heartbeat; its
//! offset is where the stream goes on.

/// Size of a slave's report.
pub const REPORT_LEN: usize = 8;

/// Size of a frame header.
pub const HEADER_LEN: usize = 12;

/// Largest frame body accepted or sent: a Java slave reads into a 4 MiB
/// buffer that must hold the header too.
pub const MAX_BODY: usize = 4 * 1024 * 1024 - HEADER_LEN;

/// A slave's report of its offset.
pub fn encode_report(offset: i64) -> [u8; REPORT_LEN] {
    offset.to_be_bytes()
}

/// The offset in a report.
pub fn decode_report(bytes: [u8; REPORT_LEN]) -> i64 {
    i64::from_be_bytes(bytes)
}

/// A frame header: `len` bytes of commit log from `offset` follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub offset: i64,
    pub len: usize,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..].copy_from_slice(&(self.len as i32).to_be_bytes());
        b
    }

    /// Parse a header, refusing a negative offset and a body length below
    /// 0 or above `max_body`.
    pub fn decode(b: [u8; HEADER_LEN], max_body: usize) -> Result<FrameHeader, String> {
        let offset = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        if offset < 0 {
            return Err(format!("frame offset {offset} is negative"));
        }
        match usize::try_from(len) {
            Ok(len) if len <= max_body => Ok(FrameHeader { offset, len }),
            _ => Err(format!("frame body length {len} is outside 0..={max_body}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        let h = FrameHeader {
            offset: 1 << 40,
            len: 32 * 1024,
        };
        assert_eq!(FrameHeader::decode(h.encode(), MAX_BODY), Ok(h));
        assert_eq!(decode_report(encode_report(-5)), -5);
        let mut big = h.encode();
        big[8..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(FrameHeader::decode(big, MAX_BODY).is_err());
        let mut neg = h.encode();
        neg[8..].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(FrameHeader::decode(neg, MAX_BODY).is_err());
        let mut back = h.encode();
        back[..8].copy_from_slice(&(-1i64).to_be_bytes());
        assert!(FrameHeader::decode(back, MAX_BODY).is_err());
    }
}
