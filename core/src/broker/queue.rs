//! One queue: its messages in arrival order and who holds which.

use std::collections::{BTreeMap, VecDeque};

use crate::ids::{ConnId, Id};
use crate::journal::{QueueKind, Routing};

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
    /// Sent to a consumer, not yet acknowledged.
    Delivered { consumer: ConsumerId, ack_seq: u64 },
    /// An ack, transactional ack, or move is on its way to the journal (or
    /// held by an open transaction); nobody else may receive it meanwhile.
    Settling,
}

#[derive(Clone, Debug)]
pub struct MessageRef {
    /// Position in arrival order; a redelivered message goes back to its place.
    pub pos: u64,
    pub state: RefState,
    /// Times this queue has delivered the message.
    pub deliveries: u32,
    /// Journaled (persistent message in a durable queue): its removal needs a record.
    pub durable: bool,
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

#[derive(Clone, Debug)]
pub struct Queue {
    pub id: Id,
    pub name: String,
    pub address: String,
    pub routing: Routing,
    pub owner: QueueOwner,
    pub(crate) ready: BTreeMap<u64, Id>,
    pub(crate) refs: BTreeMap<Id, MessageRef>,
    pub(crate) next_pos: u64,
    pub(crate) consumers: VecDeque<ConsumerId>,
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
            ready: BTreeMap::new(),
            refs: BTreeMap::new(),
            next_pos: 0,
            consumers: VecDeque::new(),
        }
    }

    pub fn durable(&self) -> bool {
        matches!(self.owner, QueueOwner::Durable(_))
    }

    /// Messages referenced by this queue (ready, delivered or settling).
    pub fn depth(&self) -> usize {
        self.refs.len()
    }

    /// Messages waiting for a consumer.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Ids of the messages this queue references, in arrival order.
    pub fn message_ids(&self) -> Vec<Id> {
        let mut v: Vec<(u64, Id)> = self.refs.iter().map(|(id, r)| (r.pos, *id)).collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
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

    pub(crate) fn push(&mut self, id: Id, durable: bool) -> bool {
        if self.refs.contains_key(&id) {
            return false;
        }
        let pos = self.next_pos;
        self.next_pos += 1;
        self.refs.insert(
            id,
            MessageRef {
                pos,
                state: RefState::Ready,
                deliveries: 0,
                durable,
            },
        );
        self.ready.insert(pos, id);
        true
    }

    /// Drops the reference; returns it if it existed.
    pub(crate) fn remove(&mut self, id: Id) -> Option<MessageRef> {
        let r = self.refs.remove(&id)?;
        if r.state == RefState::Ready {
            self.ready.remove(&r.pos);
        }
        Some(r)
    }

    /// Puts a delivered or settling reference back in line at its old place.
    pub(crate) fn make_ready(&mut self, id: Id) {
        if let Some(r) = self.refs.get_mut(&id) {
            if r.state != RefState::Ready {
                r.state = RefState::Ready;
                self.ready.insert(r.pos, id);
            }
        }
    }
}
