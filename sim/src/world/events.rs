//! The world's events and the queue that orders them in virtual time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    /// The Kafka bridge reader of `node` looks at its topics again.
    BridgePoll {
        node: usize,
        generation: u32,
    },
    /// The outside Kafka producer writes its next record.
    FeedProduce,
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
    /// Node `node` reads its disk's usage (after it changed).
    DiskReading {
        node: usize,
    },
    /// Node `node`'s disk has room again.
    DiskFreed {
        node: usize,
    },
    /// The operator's next management request.
    Operator,
    /// Every running, unpaused node sends its peer status line (fenced
    /// preemption).
    PeerBeat,
    /// A status line from `from` reaches `to` (the incarnation `generation`).
    PeerLine {
        from: usize,
        to: usize,
        generation: u32,
        live_epoch: Option<u32>,
    },
    /// The link from `from`, which crashed, closes at `to`.
    PeerClosed {
        from: usize,
        to: usize,
        generation: u32,
    },
    /// Node `node`'s peer watch may have a suspect.
    PeerTick {
        node: usize,
        generation: u32,
    },
    /// Nodes `a` and `b` reach each other again.
    HealPeerCut {
        a: usize,
        b: usize,
    },
    /// The peer network is fast again.
    PeerSlowEnd,
}

/// Due events in virtual time: the smallest time runs first, and events at
/// one time run in the order they were scheduled.
///
/// Most events are due within a couple of virtual seconds (network hops,
/// ticks, Kafka request timeouts), so those wait on a timing wheel: one
/// FIFO list per millisecond, linked through the slots, for the
/// `WHEEL_MS` milliseconds from `base` on; pushing and popping are O(1).
/// Events due later wait in `far`, a heap ordered by (time, order of
/// scheduling), and join their millisecond's list the moment the wheel
/// reaches it, before anything can be pushed there directly, so the order
/// is exactly that of one heap keyed by (time, order of scheduling).
pub(super) struct EventQueue {
    /// The earliest time the wheel holds; never after the world's `now`.
    base: Millis,
    /// (first, last) slot of each millisecond's list, by time % `WHEEL_MS`.
    buckets: Vec<(u32, u32)>,
    /// Events due at `base + WHEEL_MS` or later, when scheduled.
    far: BinaryHeap<Reverse<(Millis, u64, u32)>>,
    /// Events on the wheel.
    near: usize,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    scheduled: u64,
}

struct Slot {
    event: Option<Event>,
    /// The next slot in the same millisecond's list.
    next: u32,
}

/// Milliseconds the wheel spans (a power of two); Kafka requests time out
/// within it (`request_timeout_ms` 1,500 by default).
const WHEEL_MS: Millis = 2048;
const NONE: u32 = u32::MAX;

impl Default for EventQueue {
    fn default() -> EventQueue {
        EventQueue {
            base: 0,
            buckets: vec![(NONE, NONE); WHEEL_MS as usize],
            far: BinaryHeap::new(),
            near: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            scheduled: 0,
        }
    }
}

impl EventQueue {
    #[inline]
    pub(super) fn push(&mut self, at: Millis, event: Event) {
        assert!(
            at >= self.base,
            "event scheduled at {at}, before the queue's time {}",
            self.base
        );
        self.scheduled += 1;
        let slot = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Slot {
                    event: Some(event),
                    next: NONE,
                };
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 events waiting");
                assert!(i != NONE, "fewer than 2^32 - 1 events waiting");
                self.slots.push(Slot {
                    event: Some(event),
                    next: NONE,
                });
                i
            }
        };
        if at < self.base + WHEEL_MS {
            self.append(at, slot);
        } else {
            self.far.push(Reverse((at, self.scheduled, slot)));
        }
    }

    /// Puts `slot` at the end of the list of millisecond `at`.
    #[inline]
    fn append(&mut self, at: Millis, slot: u32) {
        self.near += 1;
        let bucket = &mut self.buckets[(at % WHEEL_MS) as usize];
        if bucket.1 == NONE {
            *bucket = (slot, slot);
        } else {
            self.slots[bucket.1 as usize].next = slot;
            bucket.1 = slot;
        }
    }

    /// The next event due at or before `until`, with its time.
    #[inline]
    pub(super) fn pop_due(&mut self, until: Millis) -> Option<(Millis, Event)> {
        loop {
            let i = (self.base % WHEEL_MS) as usize;
            let (head, tail) = self.buckets[i];
            if head != NONE {
                let next = self.slots[head as usize].next;
                self.buckets[i] = if head == tail {
                    (NONE, NONE)
                } else {
                    (next, tail)
                };
                let event = self.slots[head as usize]
                    .event
                    .take()
                    .expect("a scheduled event");
                self.free_slots.push(head);
                self.near -= 1;
                return Some((self.base, event));
            }
            if self.base >= until {
                return None;
            }
            // Nothing left at `base`: move on one millisecond, or, when the
            // wheel is empty, to the first far event (at most to `until`).
            self.base = if self.near == 0 {
                let first = self.far.peek().map_or(until, |Reverse((at, ..))| *at);
                first.clamp(self.base + 1, until)
            } else {
                self.base + 1
            };
            let reach = self.base + WHEEL_MS - 1;
            while let Some(&Reverse((at, _, slot))) = self.far.peek() {
                if at > reach {
                    break;
                }
                self.far.pop();
                self.append(at, slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wheel gives exactly the order of one heap keyed by (time, order
    /// of scheduling): near and far events, jumps over empty stretches,
    /// and `pop_due` bounded at every kind of `until`.
    #[test]
    fn the_wheel_orders_events_as_one_heap_would() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut queue = EventQueue::default();
        let mut model: BinaryHeap<Reverse<(Millis, u64)>> = BinaryHeap::new();
        let (mut now, mut id) = (0u64, 0u64);
        let mut popped = 0;
        for _ in 0..200_000 {
            if rand(3) == 0 {
                let ahead = match rand(10) {
                    0..=5 => rand(10),
                    6..=7 => rand(3 * WHEEL_MS),
                    8 => WHEEL_MS - 1 + rand(3),
                    _ => 5_000 + rand(40_000),
                };
                queue.push(
                    now + ahead,
                    Event::ClientTimer {
                        client: id as usize,
                    },
                );
                model.push(Reverse((now + ahead, id)));
                id += 1;
            } else {
                let until = now
                    + if rand(50) == 0 {
                        rand(60_000)
                    } else {
                        rand(20)
                    };
                loop {
                    let expected = match model.peek() {
                        Some(&Reverse((at, id))) if at <= until => {
                            model.pop();
                            Some((at, id as usize))
                        }
                        _ => None,
                    };
                    let got = queue.pop_due(until).map(|(at, e)| match e {
                        Event::ClientTimer { client } => (at, client),
                        other => panic!("unexpected {other:?}"),
                    });
                    assert_eq!(got, expected);
                    match got {
                        Some((at, _)) => {
                            assert!(at >= now, "time went backwards: {at} after {now}");
                            popped += 1;
                        }
                        None => break,
                    }
                }
                now = until;
            }
        }
        assert!(popped > 50_000, "the test exercised the queue: {popped}");
        assert!(queue.far.len() + queue.near > 0 || model.is_empty());
    }
}
