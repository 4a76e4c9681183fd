//! One queue: its messages in delivery order (highest priority first, then
//! arrival) and who holds which.

use std::collections::{BTreeSet, VecDeque};

use crate::chunk_map::{ChunkKey, ChunkMap};

use crate::ids::{ConnId, Id};
use crate::journal::{QueueKind, Routing};
use crate::message::PRIORITY_MAX;
use crate::Millis;

/// STOMP acknowledgement modes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// The message counts as consumed once sent.
    Auto,
    /// ACK of one message acknowledges it and every earlier one on the subscription.
    Client,
    /// ACK acknowledges exactly one message.
    ClientIndividual,
}

impl AckMode {
    pub fn parse(s: Option<&str>) -> Option<AckMode> {
        match s {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

/// Consumer handle inside the broker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u64);

/// Where a queue's reference to a message stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RefState {
    /// Waiting for a consumer.
    Ready,
    /// Stored, but not deliverable before `at` (scheduled delivery); the
    /// broker's scheduled index releases it.
    Scheduled { at: Millis },
    /// Sent to a consumer, not yet acknowledged.
    Delivered { consumer: ConsumerId, ack_seq: u64 },
    /// An ack, transactional ack, or move is on its way to the journal (or
    /// held by an open transaction); nobody else may receive it meanwhile.
    Settling,
}

/// A ready reference's place in line: highest priority first (so the
/// rank is `PRIORITY_MAX - priority`), then arrival order. Replay pushes
/// references in journal order, so it rebuilds the same line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    rank: u8,
    pos: u64,
}

impl ChunkKey for ReadyKey {
    fn steps_from(&self, first: &ReadyKey) -> Option<usize> {
        if self.rank != first.rank {
            return None;
        }
        self.pos.steps_from(&first.pos)
    }
}

#[derive(Clone, Debug)]
pub struct MessageRef {
    /// Position in arrival order; a redelivered message goes back to its place.
    pub pos: u64,
    /// 0-9 (clamped), from the message.
    pub priority: u8,
    pub state: RefState,
    /// Times this queue has delivered the message.
    pub deliveries: u32,
    /// Journaled (persistent message in a durable queue): its removal needs a record.
    pub durable: bool,
    /// When the message expires in this queue; `None` if it never does here
    /// (no expiration, or a queue it was moved to: dead letters and expired
    /// messages do not expire again, as Artemis's copies carry no expiration).
    pub expires_at: Option<Millis>,
}

impl MessageRef {
    pub(crate) fn ready_key(&self) -> ReadyKey {
        ReadyKey {
            rank: PRIORITY_MAX - self.priority.min(PRIORITY_MAX),
            pos: self.pos,
        }
    }
}

/// What happened to a queue's messages since this node went live (the
/// journal replay is not counted): the counters of `/metrics`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// References added (sends routed here, moves into it).
    pub added: u64,
    /// Deliveries to consumers (first ones and redeliveries).
    pub delivered: u64,
    /// Deliveries after the first of the same message here.
    pub redelivered: u64,
    /// Settled for good by a consumer (ack, accepted, auto-ack, commit).
    pub acknowledged: u64,
    /// Moved to the dead-letter address.
    pub dead_lettered: u64,
    /// Moved to the expiry address.
    pub expired: u64,
}

/// Who a queue belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOwner {
    Durable(QueueKind),
    /// A non-durable topic subscription or a temporary queue; it ends with
    /// its connection.
    Connection(ConnId),
    /// A non-durable shared subscription; it ends with its last consumer.
    Shared,
}

/// What a queue's new reference carries (from its message).
#[derive(Copy, Clone, Debug)]
pub(crate) struct RefTimes {
    pub priority: u8,
    pub expires_at: Option<Millis>,
    pub deliver_at: Option<Millis>,
}

#[derive(Clone, Debug)]
pub struct Queue {
    pub id: Id,
    pub name: String,
    pub address: String,
    pub routing: Routing,
    pub owner: QueueOwner,
    pub(crate) ready: ChunkMap<ReadyKey, Id>,
    /// Ready references that can expire here, by expiry time: what the
    /// periodic expiry scan looks at (kept in step with `ready`).
    pub(crate) expiring: BTreeSet<(Millis, Id)>,
    pub(crate) refs: ChunkMap<Id, MessageRef>,
    pub(crate) next_pos: u64,
    pub(crate) consumers: VecDeque<ConsumerId>,
    pub counters: QueueCounters,
}

impl Queue {
    pub fn new(
        id: Id,
        name: String,
        address: String,
        routing: Routing,
        owner: QueueOwner,
    ) -> Queue {
        Queue {
            id,
            name,
            address,
            routing,
            owner,
            ready: ChunkMap::new(),
            expiring: BTreeSet::new(),
            refs: ChunkMap::new(),
            next_pos: 0,
            consumers: VecDeque::new(),
            counters: QueueCounters::default(),
        }
    }

    pub fn durable(&self) -> bool {
        matches!(self.owner, QueueOwner::Durable(_))
    }

    /// Messages referenced by this queue (ready, scheduled, delivered or settling).
    pub fn depth(&self) -> usize {
        self.refs.len()
    }

    /// Consumers attached (browsers included).
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Ids of the ready messages, in the order they will be delivered.
    pub fn ready_ids(&self) -> Vec<Id> {
        self.ready.values().copied().collect()
    }

    /// Ids of the journaled messages this queue references, in arrival order.
    pub fn durable_message_ids(&self) -> Vec<Id> {
        let mut v: Vec<(u64, Id)> = self
            .refs
            .iter()
            .filter(|(_, r)| r.durable)
            .map(|(id, r)| (r.pos, *id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Adds a reference: ready, or scheduled when the message has a
    /// delivery time. False if the queue already references it.
    pub(crate) fn push(&mut self, id: Id, durable: bool, times: RefTimes) -> bool {
        if self.refs.contains_key(&id) {
            return false;
        }
        let pos = self.next_pos;
        self.next_pos += 1;
        let state = match times.deliver_at {
            Some(at) => RefState::Scheduled { at },
            None => RefState::Ready,
        };
        let r = MessageRef {
            pos,
            priority: times.priority.min(PRIORITY_MAX),
            state,
            deliveries: 0,
            durable,
            expires_at: times.expires_at,
        };
        if state == RefState::Ready {
            self.index_ready(id, r.ready_key(), r.expires_at);
        }
        self.refs.insert(id, r);
        true
    }

    fn index_ready(&mut self, id: Id, key: ReadyKey, expires_at: Option<Millis>) {
        self.ready.insert(key, id);
        if let Some(t) = expires_at {
            self.expiring.insert((t, id));
        }
    }

    /// Drops the reference; returns it if it existed.
    pub(crate) fn remove(&mut self, id: Id) -> Option<MessageRef> {
        let r = self.refs.remove(&id)?;
        if r.state == RefState::Ready {
            self.ready.remove(&r.ready_key());
            if let Some(t) = r.expires_at {
                self.expiring.remove(&(t, id));
            }
        }
        Some(r)
    }

    /// Takes a ready reference out of line into `state` (delivered, or
    /// settling for a move); returns it.
    pub(crate) fn unready(&mut self, id: Id, state: RefState) -> Option<&mut MessageRef> {
        debug_assert!(state != RefState::Ready);
        let r = self.refs.get_mut(&id)?;
        if r.state == RefState::Ready {
            self.ready.remove(&r.ready_key());
            if let Some(t) = r.expires_at {
                self.expiring.remove(&(t, id));
            }
        }
        r.state = state;
        Some(r)
    }

    /// Puts a scheduled, delivered or settling reference (back) in line at
    /// its place.
    pub(crate) fn make_ready(&mut self, id: Id) {
        let Some(r) = self.refs.get_mut(&id) else {
            return;
        };
        if r.state == RefState::Ready {
            return;
        }
        r.state = RefState::Ready;
        let (key, expires_at) = (r.ready_key(), r.expires_at);
        self.index_ready(id, key, expires_at);
    }

    /// The next ready reference after `cursor` (from the head if `None`).
    pub(crate) fn next_ready(&self, cursor: Option<ReadyKey>) -> Option<(ReadyKey, Id)> {
        match cursor {
            None => self.ready.first_key_value(),
            Some(c) => self.ready.range_from(std::ops::Bound::Excluded(&c)).next(),
        }
        .map(|(k, id)| (*k, *id))
    }

    /// A ready reference whose expiry time has come, if any.
    pub(crate) fn due_expiring(&self, now: Millis) -> Option<Id> {
        self.expiring
            .first()
            .filter(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
    }
}
