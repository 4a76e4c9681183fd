//! What the broker hands out: references, deliveries and send plans.

use std::sync::Arc;

use super::filter::ConsumerFilter;
use super::queue::AckMode;
use crate::ids::{ConnId, Id};
use crate::journal::{Entry, QueueDef};
use crate::message::Message;

/// One queue's reference to one message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefKey {
    pub message: Id,
    pub queue: Id,
    /// Journaled: removing or moving it takes a journal record.
    pub durable: bool,
}

/// A message handed to a consumer; its connection's protocol session encodes it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub conn: ConnId,
    pub sub_id: String,
    /// The `ack` header value, for client and client-individual subscriptions.
    pub ack: Option<u64>,
    pub message_id: Id,
    pub queue: Id,
    pub message: Arc<Message>,
    /// 1 on first delivery.
    pub deliveries: u32,
    pub destination: String,
    /// The queue's address differs from the message's (dead-lettered or
    /// expired): the message's own address.
    pub original_address: Option<String>,
    /// It comes from the expiry address, where it was moved when it expired.
    pub expired: bool,
    /// Auto-ack: this reference is settled by sending it; journal its ack.
    pub auto_settled: Option<RefKey>,
    /// The journal entries that settle `auto_settled` (see
    /// [`Broker::settle_entries`]); empty for a volatile reference.
    pub auto_settle_entries: Vec<Entry>,
}

/// Where a send goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendPlan {
    /// Durable queues that do not exist yet and are created in the same batch.
    pub creates: Vec<QueueDef>,
    /// A multicast address to declare (journal) in the same batch: the
    /// first multicast send to a new name creates it, as in Artemis.
    pub declare: Option<String>,
    /// Durable queues that keep a journaled reference (persistent sends only).
    pub durable_queues: Vec<Id>,
    /// Queues that hold it in memory only.
    pub volatile_queues: Vec<Id>,
}

/// A consumer to attach: how it acknowledges and how much it may hold.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// Unique per connection.
    pub sub_id: String,
    pub ack_mode: AckMode,
    /// Unacknowledged bytes it may hold; `None` is unbounded (STOMP's
    /// `consumer-window-size`).
    pub window_bytes: Option<usize>,
    /// Unacknowledged messages it may hold (STOMP's `activemq.prefetchSize`).
    pub window_messages: Option<usize>,
    /// Deliveries it may still receive, granted by the client (AMQP link
    /// credit); `None` when the protocol has no credit.
    pub credit: Option<u32>,
    /// Other consumers may share its queue (a shared subscription).
    pub shared: bool,
    /// A browser: sees each message once without taking it.
    pub browse: bool,
    /// Which messages it takes (no-local, selector).
    pub filter: ConsumerFilter,
    /// How its deliveries name where they came from.
    pub destination: String,
}
