//! Journal record types.

use std::sync::Arc;

use crate::bridge::OutRecord;
use crate::ids::Id;
use crate::message::{Message, Routing};

/// The name a durable subscription is known by: `client-id` plus subscription name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DurableSub {
    pub client_id: String,
    pub name: String,
}

impl DurableSub {
    /// The name of its queue (Artemis's `client-id.name`; a global one,
    /// with no client id, is just `name`).
    pub fn queue_name(&self) -> String {
        if self.client_id.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.client_id, self.name)
        }
    }
}

/// What kind of queue a [`QueueDef`] describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// The anycast queue of an address (same name as the address).
    Anycast,
    /// A durable subscription of a multicast address.
    DurableSubscription(DurableSub),
}

/// A durable queue. Only durable queues are journaled; non-durable topic
/// subscriptions live and die with their connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDef {
    pub id: Id,
    pub name: String,
    pub address: String,
    pub kind: QueueKind,
}

/// One thing the broker wrote down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A node became live with this epoch. Ids minted by that live carry it.
    Activation { epoch: u32, node: String },
    /// A durable queue exists.
    QueueCreated(QueueDef),
    /// A persistent message, referenced by the given durable queues.
    MessageStored {
        id: Id,
        queues: Vec<Id>,
        /// Shared with the broker's in-memory copy: no deep copies per batch.
        message: Arc<Message>,
    },
    /// An extra reference from a queue to an already stored message (for
    /// example the dead-letter queue taking it over).
    Routed { id: Id, queue: Id },
    /// The reference from `queue` to message `id` is gone (consumed, or moved).
    Acked { id: Id, queue: Id },
    /// A send with this duplicate-detection id was stored on this address.
    DuplicateId {
        address: String,
        dup_id: String,
        message: Id,
    },
    /// An address exists with this routing even while it has no queues (a
    /// multicast send or subscription to a new name creates one, as in
    /// Artemis), so a bare destination name keeps resolving to it.
    /// Format version 3 on.
    AddressCreated { address: String, routing: Routing },
    /// The Kafka bridge read partition `partition` of `topic` up to (not
    /// including) `next_offset`; written in the same batch as the messages
    /// those records made. Format version 4 on.
    BridgePosition {
        topic: String,
        partition: u32,
        next_offset: u64,
    },
    /// A record the Kafka bridge must still forward (the outbox of a node
    /// whose journal is not Kafka), under the id of the message it came
    /// from; tombstoned once Kafka has it. Format version 4 on.
    Outbox { id: Id, record: Arc<OutRecord> },
}

/// What an entry is about. Later entries with the same key supersede earlier ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Activation,
    Queue(String),
    Message(Id),
    /// The state of one queue's reference to one message.
    Ref {
        message: Id,
        queue: Id,
    },
    Duplicate {
        address: String,
        dup_id: String,
    },
    Address(String),
    BridgePosition {
        topic: String,
        partition: u32,
    },
    Outbox(Id),
}

impl Record {
    /// The key this record is filed under.
    pub fn key(&self) -> Key {
        match self {
            Record::Activation { .. } => Key::Activation,
            Record::QueueCreated(q) => Key::Queue(q.name.clone()),
            Record::MessageStored { id, .. } => Key::Message(*id),
            Record::Routed { id, queue } | Record::Acked { id, queue } => Key::Ref {
                message: *id,
                queue: *queue,
            },
            Record::DuplicateId {
                address, dup_id, ..
            } => Key::Duplicate {
                address: address.clone(),
                dup_id: dup_id.clone(),
            },
            Record::AddressCreated { address, .. } => Key::Address(address.clone()),
            Record::Outbox { id, .. } => Key::Outbox(*id),
            Record::BridgePosition {
                topic, partition, ..
            } => Key::BridgePosition {
                topic: topic.clone(),
                partition: *partition,
            },
        }
    }
}

/// One journal entry: a record, or a tombstone deleting a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Put(Record),
    Tombstone(Key),
}

impl Entry {
    pub fn key(&self) -> Key {
        match self {
            Entry::Put(r) => r.key(),
            Entry::Tombstone(k) => k.clone(),
        }
    }
}
