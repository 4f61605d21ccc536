//! Timer messages: delays of any length, as RocketMQ 5 has them.
//!
//! A send with `TIMER_DELIVER_MS` (a wall-clock time), `TIMER_DELAY_SEC` or
//! `TIMER_DELAY_MS` (from now) is stored first in the system topic
//! `rmq_sys_wheel_timer`, queue 0, with its delivery time in `TIMER_OUT_MS`
//! and its real topic and queue in `REAL_TOPIC` / `REAL_QID`, through the
//! same write path as any send: flushed and replicated before the producer
//! hears SEND_OK. A delivery further away than `timerMaxDelaySec` is
//! refused with MESSAGE_ILLEGAL; one already due is stored at once.
//!
//! The master keeps the undelivered records' (time, offset) in memory,
//! read from the timer queue from `timerFloor` (persisted with the delay
//! cursors) on, and delivers each at its time, checked every 100 ms. As
//! with delay levels, every delivery carries and is indexed by its
//! `MERIDIAN_SCHEDULED` identity (`region/broker/rmq_sys_wheel_timer/offset`)
//! and is not made if the broker already holds it, so a crash, a restart
//! or a new master re-reading from an old floor delivers nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use meridian_protocol::message::{decode_record, find_property, property, Properties};
use meridian_store::{GetStatus, PutMessage};
use parking_lot::Mutex;

use crate::delay::{deliver_scheduled, Delivery};
use crate::BrokerInner;

/// RocketMQ 5's timer topic.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";

/// Records read into memory per tick, so a large backlog after a restart
/// does not hold up deliveries that are due.
const READ_PER_TICK: usize = 20_000;

#[derive(Default)]
pub struct TimerService {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether `pending` was built on this broker as master; a slave or
    /// follower holds nothing and rebuilds from the floor when promoted.
    active: bool,
    /// The next offset of the timer queue to read into `pending`.
    scanned: i64,
    /// Undelivered records by (delivery time, offset).
    pending: BTreeSet<(i64, i64)>,
    /// The same records by offset, for the floor.
    offsets: BTreeSet<i64>,
}

impl TimerService {
    /// This broker is not the master: forget, so that a later promotion
    /// reads again from the replicated floor.
    pub fn stand_down(&self) {
        let mut st = self.state.lock();
        if st.active {
            *st = State::default();
        }
    }

    /// Timer messages waiting in memory.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }
}

/// When a send's timer properties say it is due, in ms since the epoch;
/// `None` for a message without them; `Err` names a malformed value.
pub fn deliver_at(properties: &str, now_ms: i64) -> Option<Result<i64, String>> {
    let parse = |name: &str| {
        find_property(properties, name).map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{name}={v} is not a number"))
        })
    };
    if let Some(at) = parse(property::TIMER_DELIVER_MS) {
        return Some(at);
    }
    if let Some(sec) = parse(property::TIMER_DELAY_SEC) {
        return Some(sec.map(|s| now_ms.saturating_add(s.saturating_mul(1000))));
    }
    parse(property::TIMER_DELAY_MS).map(|ms| ms.map(|m| now_ms.saturating_add(m)))
}

/// Turn a send with timer properties into a timer record, or leave it if
/// it is already due. `Err` is the MESSAGE_ILLEGAL remark.
pub fn schedule_if_timed(b: &BrokerInner, msg: &mut PutMessage) -> Result<(), String> {
    if msg.topic == TIMER_TOPIC || !msg.properties.contains("TIMER_") {
        return Ok(());
    }
    let now = crate::now_ms();
    let Some(at) = deliver_at(&msg.properties, now) else {
        return Ok(());
    };
    let at = at.map_err(|e| format!("timer message illegal: {e}"))?;
    let max_ms = b.config.timer_max_delay_sec.saturating_mul(1000) as i64;
    if at - now > max_ms {
        return Err(format!(
            "timer message illegal: its delivery is {} s away, more than timerMaxDelaySec ({} s)",
            (at - now) / 1000,
            b.config.timer_max_delay_sec
        ));
    }
    if at <= now {
        return Ok(());
    }
    let mut props = Properties::parse(&msg.properties);
    props.remove(property::REAL_TOPIC);
    props.remove(property::REAL_QID);
    props.set(property::TIMER_OUT_MS, at.to_string());
    props.set(property::REAL_TOPIC, &msg.topic);
    props.set(property::REAL_QID, msg.queue_id.to_string());
    msg.properties = props.encode();
    msg.topic = TIMER_TOPIC.to_string();
    msg.queue_id = 0;
    Ok(())
}

/// One tick of the master: read new timer records, deliver the due ones,
/// move the floor.
pub async fn deliver_due(inner: &Arc<BrokerInner>) {
    let timers = &inner.timers;
    {
        let mut st = timers.state.lock();
        if !st.active {
            *st = State {
                active: true,
                scanned: inner.delay.timer_floor(),
                ..State::default()
            };
        }
        read_new(inner, &mut st);
    }
    let now = crate::now_ms();
    loop {
        let next = timers.state.lock().pending.first().copied();
        let Some((at, offset)) = next.filter(|(at, _)| *at <= now) else {
            break;
        };
        let outcome = match read_at(inner, offset) {
            Some(m) => {
                let identity = format!(
                    "{}/{}/{TIMER_TOPIC}/{offset}",
                    inner.config.region_id, inner.config.broker_name
                );
                deliver_scheduled(inner, &m, identity, false).await
            }
            None => {
                tracing::warn!(offset, "timer record no longer readable; skipped");
                Delivery::Done
            }
        };
        match outcome {
            Delivery::Done => {
                let mut st = timers.state.lock();
                st.pending.remove(&(at, offset));
                st.offsets.remove(&offset);
            }
            Delivery::Later => break,
        }
    }
    let st = timers.state.lock();
    if st.active {
        let floor = st.offsets.first().copied().unwrap_or(st.scanned);
        inner.delay.set_timer_floor(floor);
    }
}

/// Read records appended to the timer queue since the last tick.
fn read_new(inner: &BrokerInner, st: &mut State) {
    let mut read = 0;
    while read < READ_PER_TICK {
        let got = inner
            .store
            .get_messages(TIMER_TOPIC, 0, st.scanned, 256, 4 << 20, &|_| true);
        if got.messages.is_empty() {
            if matches!(
                got.status,
                GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly
            ) {
                tracing::warn!(
                    from = st.scanned,
                    to = got.next_begin_offset,
                    "timer records gone from the store (retention); skipped"
                );
                st.scanned = got.next_begin_offset;
                continue;
            }
            return;
        }
        for record in &got.messages {
            read += 1;
            match decode_record(record) {
                Ok((m, _)) => {
                    let at = m
                        .property(property::TIMER_OUT_MS)
                        .and_then(|v| v.parse::<i64>().ok());
                    match at {
                        Some(at) => {
                            st.pending.insert((at, m.queue_offset));
                            st.offsets.insert(m.queue_offset);
                        }
                        None => tracing::error!(
                            offset = m.queue_offset,
                            "timer record without TIMER_OUT_MS skipped"
                        ),
                    }
                }
                Err(e) => {
                    tracing::error!(offset = st.scanned, error = %e, "unreadable timer record skipped")
                }
            }
        }
        st.scanned = got.next_begin_offset;
    }
}

fn read_at(inner: &BrokerInner, offset: i64) -> Option<meridian_protocol::message::MessageExt> {
    let got = inner
        .store
        .get_messages(TIMER_TOPIC, 0, offset, 1, 4 << 20, &|_| true);
    let record = got.messages.first()?;
    let (m, _) = decode_record(record).ok()?;
    (m.queue_offset == offset).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_properties() {
        let now = 1_000_000;
        assert_eq!(
            deliver_at("TIMER_DELIVER_MS\u{1}1234567\u{2}", now),
            Some(Ok(1_234_567))
        );
        assert_eq!(
            deliver_at("TIMER_DELAY_SEC\u{1}5\u{2}", now),
            Some(Ok(1_005_000))
        );
        assert_eq!(
            deliver_at("TIMER_DELAY_MS\u{1}250\u{2}", now),
            Some(Ok(1_000_250))
        );
        assert_eq!(deliver_at("KEYS\u{1}k\u{2}", now), None);
        assert!(matches!(
            deliver_at("TIMER_DELAY_SEC\u{1}soon\u{2}", now),
            Some(Err(_))
        ));
    }
}
