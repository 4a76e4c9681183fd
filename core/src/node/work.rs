//! Work waiting for the journal.
//!
//! Every client operation that changes or observes state takes a place in
//! one FIFO ([`Pending`]). An entry completes when its batch is durable (or
//! at once if it has none) *and* everything before it has completed, so
//! answers, deliveries and state changes happen in exactly the order the
//! journal holds them.

use std::sync::Arc;

use bytes::Bytes;

use super::management::AdminReply;
use super::ops::SubscribeOp;
use crate::bridge::{OutRecord, Position};
use crate::broker::{ConsumerFilter, RefKey};
use crate::ids::{ConnId, Id, Ticket};
use crate::journal::Entry;
use crate::message::Message;
use crate::Millis;

pub(crate) struct Pending {
    pub ticket: Option<Ticket>,
    pub done: bool,
    /// Applied to the broker when the entry completes (the journal request
    /// holds the same batch).
    pub entries: Arc<Vec<Entry>>,
    pub work: Work,
    /// When it was submitted (for the latency histograms).
    pub submitted_at: Millis,
}

/// A send whose turn has come: in-memory references to add.
pub(crate) struct VolatileSend {
    pub id: Id,
    pub message: Arc<Message>,
    pub queues: Vec<Id>,
    /// The connection that sent it (for no-local consumers).
    pub origin: Option<ConnId>,
}

/// In-memory changes that go with a journal batch, made when it completes.
#[derive(Default)]
pub(crate) struct Effects {
    pub sends: Vec<VolatileSend>,
    /// Non-journaled references whose ack completes here.
    pub drops: Vec<RefKey>,
    /// Non-journaled references moved to another queue (dead-lettering).
    pub moves: Vec<(RefKey, Id)>,
    /// (address, duplicate id) no longer pending.
    pub dups: Vec<(String, String)>,
    /// Kafka bridge records written with the batch (same transaction).
    pub publish: Vec<OutRecord>,
    /// Kafka bridge records put in the outbox by the batch (local
    /// journal): forwarded once it is durable.
    pub forward: Vec<(Id, Arc<OutRecord>)>,
    /// A client's send outside a transaction: its completion is the
    /// receipt (timed for `send_receipt_latency`).
    pub send: bool,
}

pub(crate) enum Work {
    Activation {
        epoch: u32,
    },
    /// A client operation (or the node's own work for a connection, such as
    /// dead-lettering on close, with no tag): apply, then complete.
    Op {
        conn: ConnId,
        tag: Option<u64>,
        effects: Effects,
    },
    /// A consumer to attach once its queue exists.
    Subscribe {
        conn: ConnId,
        tag: u64,
        req: Box<SubscribeOp>,
        /// The durable queue to attach to (`None`: a connection-owned one).
        queue: Option<String>,
        /// What the consumer filters out (its selector already parsed).
        filter: Box<ConsumerFilter>,
    },
    /// Bytes owed to a client after its earlier work (an ERROR, a receipt).
    SendInTurn {
        conn: ConnId,
        bytes: Bytes,
        close: bool,
    },
    /// A management change (purge, move, delete): answered when durable.
    Admin {
        id: u64,
        reply: AdminReply,
        effects: Effects,
    },
    /// Records the Kafka bridge read, made messages: when durable, the
    /// reader hears where the batch ended.
    Ingest {
        /// Where the batch ended (the reader resumes there).
        position: Box<Position>,
        effects: Effects,
    },
    /// Auto-acks, tombstones and expiry moves nobody waits for.
    Housekeeping {
        volatile: Vec<RefKey>,
        /// Non-journaled references moved to another queue (expiry).
        moves: Vec<(RefKey, Id)>,
    },
}

impl Work {
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Work::Op { conn, .. }
            | Work::Subscribe { conn, .. }
            | Work::SendInTurn { conn, .. } => Some(*conn),
            Work::Activation { .. }
            | Work::Housekeeping { .. }
            | Work::Admin { .. }
            | Work::Ingest { .. } => None,
        }
    }
}
