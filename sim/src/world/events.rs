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

/// Due events as (time, order of scheduling, slot in `slots`); the smallest
/// runs first, so events at one time run in the order they were scheduled.
/// Events themselves wait in `slots`, so the heap moves only small keys.
#[derive(Default)]
pub(super) struct EventQueue {
    due: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    slots: Vec<Option<Event>>,
    free_slots: Vec<usize>,
    scheduled: u64,
}

impl EventQueue {
    #[inline]
    pub(super) fn push(&mut self, at: Millis, event: Event) {
        self.scheduled += 1;
        let slot = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(event);
                i
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.due.push(Reverse((at, self.scheduled, slot)));
    }

    /// The next event due at or before `until`, with its time.
    #[inline]
    pub(super) fn pop_due(&mut self, until: Millis) -> Option<(Millis, Event)> {
        let &Reverse((at, _, slot)) = self.due.peek()?;
        if at > until {
            return None;
        }
        self.due.pop();
        let event = self.slots[slot].take().expect("a scheduled event");
        self.free_slots.push(slot);
        Some((at, event))
    }
}
