//! The world's events and the queue that orders them in virtual time.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use halyard_core::Millis;

use super::kafka_requests::{KafkaRequest, KafkaResponse};

/// Node events carry the node's generation: one for an earlier incarnation
/// (before a crash and restart) is dropped.
#[derive(Clone, Debug)]
pub(super) enum Event {
    ToKafka {
        node: usize,
        generation: u32,
        request_id: u64,
        request: KafkaRequest,
    },
    FromKafka {
        node: usize,
        generation: u32,
        request_id: u64,
        response: KafkaResponse,
    },
    RequestTimeout {
        node: usize,
        generation: u32,
        request_id: u64,
    },
    LockHeartbeat {
        node: usize,
        generation: u32,
    },
    NodeTick {
        node: usize,
        generation: u32,
    },
    BytesToNode {
        connection: u64,
        bytes: Bytes,
    },
    BytesToClient {
        connection: u64,
        bytes: Bytes,
    },
    CloseToNode {
        connection: u64,
    },
    CloseToClient {
        connection: u64,
    },
    ClientTimer {
        client: usize,
    },
    Fault,
    Restart {
        node: usize,
    },
    HealKafkaCut {
        node: usize,
    },
    HealClientCut {
        client: usize,
        node: usize,
    },
    Compact,
    ReplyLossEnd,
}

/// Milliseconds of virtual time the ring of buckets covers; events due
/// further out wait in `later` until the ring reaches them.
const RING_MS: Millis = 4096;
const RING_WORDS: usize = (RING_MS / 64) as usize;

/// The events waiting to run, by time, each time's in the order they were
/// scheduled. Time only moves forward (nothing is scheduled before the
/// last event taken), so a ring of one bucket per millisecond, with a bit
/// per bucket that says it holds events, orders them in about constant
/// time where a heap took a log-time sift per event.
pub(super) struct EventQueue {
    /// Bucket `t % RING_MS` holds the events due at `t`, for `cursor <= t <
    /// cursor + RING_MS`. Empty until the first push.
    ring: Vec<VecDeque<Event>>,
    /// Bit `i` is set when bucket `i` holds events.
    occupied: [u64; RING_WORDS],
    /// Events due at `cursor + RING_MS` or later.
    later: BTreeMap<Millis, Vec<Event>>,
    /// The earliest key of `later`, or `Millis::MAX`.
    later_first: Millis,
    /// No event is due before it.
    cursor: Millis,
    in_ring: usize,
}

impl Default for EventQueue {
    fn default() -> EventQueue {
        EventQueue {
            ring: Vec::new(),
            occupied: [0; RING_WORDS],
            later: BTreeMap::new(),
            later_first: Millis::MAX,
            cursor: 0,
            in_ring: 0,
        }
    }
}

impl EventQueue {
    #[inline]
    pub(super) fn push(&mut self, at: Millis, event: Event) {
        assert!(
            at >= self.cursor,
            "event scheduled at {at} ms, before {} ms",
            self.cursor
        );
        if self.ring.is_empty() {
            self.ring = (0..RING_MS).map(|_| VecDeque::new()).collect();
        }
        if at - self.cursor < RING_MS {
            self.put_in_ring(at, std::iter::once(event));
        } else {
            self.later.entry(at).or_default().push(event);
            self.later_first = self.later_first.min(at);
        }
    }

    fn put_in_ring(&mut self, at: Millis, events: impl IntoIterator<Item = Event>) {
        let i = (at % RING_MS) as usize;
        let bucket = &mut self.ring[i];
        let before = bucket.len();
        bucket.extend(events);
        self.in_ring += bucket.len() - before;
        self.occupied[i / 64] |= 1 << (i % 64);
    }

    /// The next event due at or before `until`, with its time.
    #[inline]
    pub(super) fn pop_due(&mut self, until: Millis) -> Option<(Millis, Event)> {
        if self.in_ring == 0 {
            // Nothing within the ring: jump to the first later event.
            if self.later_first == Millis::MAX || self.later_first > until {
                return None;
            }
            self.advance_to(self.later_first);
        }
        let t = self.cursor + self.to_next_occupied();
        if t > until {
            return None;
        }
        if t > self.cursor {
            self.advance_to(t);
        }
        let i = (t % RING_MS) as usize;
        let bucket = &mut self.ring[i];
        let event = bucket.pop_front().expect("an occupied bucket holds events");
        if bucket.is_empty() {
            self.occupied[i / 64] &= !(1 << (i % 64));
        }
        self.in_ring -= 1;
        Some((t, event))
    }

    /// Milliseconds from the cursor to the first occupied bucket (some is).
    fn to_next_occupied(&self) -> Millis {
        let start = (self.cursor % RING_MS) as usize;
        let (word, bit) = (start / 64, start % 64);
        let first = self.occupied[word] & (u64::MAX << bit);
        if first != 0 {
            return (first.trailing_zeros() as usize - bit) as Millis;
        }
        // The words after, round the ring and back to this word's low bits.
        for k in 1..=RING_WORDS {
            let w = (word + k) % RING_WORDS;
            let bits = self.occupied[w];
            if bits != 0 {
                let at = w * 64 + bits.trailing_zeros() as usize;
                return ((at + RING_MS as usize - start) % RING_MS as usize) as Millis;
            }
        }
        unreachable!("to_next_occupied with an empty ring")
    }

    /// Moves the cursor forward to `t` (every bucket it passes is empty) and
    /// brings later events the ring now covers into it, before any event
    /// scheduled for their time afterwards.
    fn advance_to(&mut self, t: Millis) {
        debug_assert!(t >= self.cursor);
        self.cursor = t;
        while self.later_first != Millis::MAX && self.later_first - self.cursor < RING_MS {
            let (at, events) = self
                .later
                .pop_first()
                .expect("later_first is a key of later");
            self.put_in_ring(at, events);
            self.later_first = self
                .later
                .first_key_value()
                .map_or(Millis::MAX, |(t, _)| *t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, EventQueue, RING_MS};

    /// A test event that says which push it was.
    fn marked(i: usize) -> Event {
        Event::HealClientCut { client: i, node: 0 }
    }

    fn mark(e: &Event) -> usize {
        match e {
            Event::HealClientCut { client, .. } => *client,
            _ => unreachable!(),
        }
    }

    /// Pushes and pops interleaved as the world does them come out as a
    /// sort by (time, push order) would give them.
    #[test]
    fn events_come_out_by_time_then_push_order() {
        let mut q = EventQueue::default();
        let mut expected: Vec<(u64, usize, usize)> = Vec::new();
        let mut now = 0;
        let mut seq = 0;
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut got = Vec::new();
        for round in 0..2_000 {
            for _ in 0..(next() % 4) {
                let delay = match next() % 4 {
                    0 => 0,
                    1 => next() % 50,
                    2 => next() % (3 * RING_MS),
                    _ => RING_MS - 1 + next() % 3,
                };
                q.push(now + delay, marked(seq));
                expected.push((now + delay, seq, round));
                seq += 1;
            }
            let until = now + next() % 200;
            while let Some((t, e)) = q.pop_due(until) {
                assert!(t >= now && t <= until);
                now = t;
                got.push((t, mark(&e)));
            }
            now = until;
        }
        while let Some((t, e)) = q.pop_due(Millis::MAX) {
            got.push((t, mark(&e)));
        }
        expected.sort();
        let expected: Vec<(u64, usize)> = expected.iter().map(|(t, s, _)| (*t, *s)).collect();
        assert_eq!(got, expected);
    }

    use halyard_core::Millis;
}
