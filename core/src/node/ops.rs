//! The protocol-neutral face of the node: the operations a protocol adapter
//! asks for, what it hears back, and the context it works in.
//!
//! An adapter (STOMP today, AMQP next) owns one client connection's protocol
//! state. It turns the client's bytes into [`SessionAction`]s — operations on
//! the broker tagged with a number of its choosing, bytes to send now, bytes
//! to send once everything before them is durable — and turns completions and
//! deliveries back into bytes. It never touches the broker or the journal.
//!
//! The node executes operations in the order they arrive and completes them
//! (through [`ProtocolSession::completed`]) in that same order, each once its
//! journal batch is durable: the durability contract lives in the node, not
//! in the adapters.

use bytes::Bytes;
use thiserror::Error;

use super::config::NodeConfig;
use super::ports::WireBytes;
use crate::broker::{
    AckError, AckMode, Broker, Delivery, SelectorError, SendError, SubscribeError,
};
use crate::ids::ConnId;
use crate::journal::DurableSub;
use crate::message::Message;
use crate::security::{Denied, Permission, Principal, Secret};
use crate::Millis;

/// A transaction, named by the adapter (unique per connection).
pub type TxName = String;

/// What a client asked the broker to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store and route a message (at commit if `tx` is set).
    Send {
        message: Message,
        tx: Option<TxName>,
    },
    Subscribe(SubscribeOp),
    /// Detach a consumer (by id) and/or delete a durable subscription.
    Unsubscribe {
        sub_id: Option<String>,
        durable: Option<DurableSub>,
    },
    /// Settle delivered messages by their ack number (from [`Delivery::ack`]).
    Settle {
        ack: u64,
        outcome: Outcome,
        tx: Option<TxName>,
    },
    /// Set a consumer's credit (AMQP flow); with `drain`, the session
    /// hears [`ProtocolSession::drained`] once nothing more can be delivered.
    Flow {
        sub_id: String,
        credit: u32,
        drain: bool,
    },
    /// A temporary queue on `address`, owned by this connection (a JMS
    /// temporary queue): not journaled, gone with the connection.
    CreateTemporaryQueue {
        address: String,
    },
    Begin {
        tx: TxName,
    },
    /// One atomic journal batch: every send and every settlement of `tx`.
    Commit {
        tx: TxName,
    },
    /// Forget the sends; settled messages go back to their queues.
    Abort {
        tx: TxName,
    },
    /// Nothing to do but wait for its turn (a receipt for a frame that
    /// changes nothing, such as STOMP's DISCONNECT).
    Barrier,
}

/// A consumer to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOp {
    /// Unique per connection.
    pub sub_id: String,
    pub target: SubscribeTarget,
    pub ack: AckMode,
    /// Unacknowledged bytes the consumer may hold; `None` is unbounded.
    pub window_bytes: Option<usize>,
    /// Deliveries it may receive before the client grants more (AMQP link
    /// credit, starting at 0); `None` when the protocol has no credit.
    pub credit: Option<u32>,
    /// Unacknowledged messages the consumer may hold; `None` is unbounded.
    pub window_messages: Option<usize>,
    /// Skip messages sent on this connection.
    pub no_local: bool,
    /// A JMS selector's text (parsed by the node).
    pub selector: Option<String>,
    /// Browse: see each message once without taking it (a JMS
    /// QueueBrowser).
    pub browse: bool,
    /// How deliveries name where they came from (the destination as the
    /// client spelled it).
    pub destination: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeTarget {
    /// The anycast queue of an address (created if missing).
    Queue { address: String },
    /// A multicast address: a connection-owned subscription, a durable one
    /// (shared among consumers when `shared`), or a non-durable shared one
    /// (its queue named `shared_volatile`, gone with its last consumer).
    Topic {
        address: String,
        durable: Option<DurableSub>,
        shared: bool,
        shared_volatile: Option<String>,
    },
}

/// How a consumer settles a delivery.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Consumed (STOMP ACK, AMQP accepted).
    Accepted,
    /// Back in line for redelivery (STOMP NACK, AMQP modified with
    /// delivery-failed: it counts as a failed delivery, so
    /// `delivery_attempts_max` sends it to the dead-letter address).
    Requeue,
    /// Back in line as if never delivered (AMQP released).
    Release,
    /// Straight to the dead-letter address (AMQP rejected, or modified
    /// with undeliverable-here).
    Reject,
}

/// Why an operation was refused. Its text is what the client is told.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OpError {
    #[error("unknown transaction {0:?}")]
    UnknownTransaction(TxName),
    #[error("transaction {0:?} is already open")]
    TransactionOpen(TxName),
    #[error("more than {0} open transactions")]
    TooManyTransactions(usize),
    #[error("transaction {tx:?} exceeds {ops_max} operations or {bytes_max} bytes")]
    TransactionTooLarge {
        tx: TxName,
        ops_max: usize,
        bytes_max: usize,
    },
    #[error("no subscription with id {0:?}")]
    NoSubscription(String),
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("queue {0:?} does not exist")]
    NoQueue(String),
    #[error("address {0:?} is already in use")]
    AddressInUse(String),
    #[error("address {0:?} is bridged to Kafka, which carries text and bytes bodies only (not a map or list)")]
    NotBridgeable(String),
    #[error(
        "address {0:?} is bridged to Kafka and is a topic: subscribe to it as a topic (/topic/{0})"
    )]
    BridgedIsTopic(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The broker is full and the policy is `fail`.
    #[error("send to {address:?} refused: {why}")]
    Full { address: String, why: String },
}

/// What an adapter hands the node.
#[derive(Debug)]
pub enum SessionAction {
    /// Execute an operation; `tag` comes back with its completion.
    Op { tag: u64, op: Op },
    /// Write these bytes now (a handshake answer, a heart-beat, frames
    /// made outside a delivery).
    Send(WireBytes),
    /// Write these bytes once everything this connection asked for before
    /// is complete (a receipt for a frame with nothing to do, an error
    /// owed after earlier receipts), then close if `close`.
    SendInTurn { bytes: Bytes, close: bool },
    /// Close now (the client said goodbye, or is gone).
    Close,
    /// The client was told it did something wrong (for logs and metrics).
    ClientError(String),
    /// Check these credentials (the node asks the driver to verify the
    /// password); the answer comes through [`ProtocolSession::login_checked`].
    Login { user: String, password: Secret },
}

/// Why the node will not serve a connection (told in its protocol, then
/// closed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The node is not live (its listener was closing).
    NotLive,
    /// A connection limit (`--max-connections`, `--max-pending-connections`).
    TooMany(String),
    /// Who the client is was refused before any login (an unknown user in
    /// its TLS client certificate).
    Unauthorized(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotLive => "this node is not live",
            Refusal::TooMany(m) | Refusal::Unauthorized(m) => m,
        }
    }
}

/// What an adapter sees of the node while it works.
pub struct SessionCx<'a> {
    pub now: Millis,
    pub conn: ConnId,
    pub config: &'a NodeConfig,
    /// Read-only: for checks a protocol makes before asking (does this
    /// address exist, is this subscription id in use).
    pub broker: &'a Broker,
    /// Whether this node serves clients right now.
    pub live: bool,
    /// Who the connection logged in as (`None`: not yet, or no users).
    pub principal: Option<&'a Principal>,
    /// May producers add messages now (the disk limit).
    pub gate: super::Gate<'a>,
    pub actions: &'a mut Vec<SessionAction>,
}

impl SessionCx<'_> {
    pub fn push(&mut self, action: SessionAction) {
        self.actions.push(action);
    }

    /// Whether this connection may do `permission` on `address`.
    pub fn check(&self, permission: Permission, address: &str) -> Result<(), Denied> {
        authorize(self.config, self.principal, permission, address)
    }
}

/// Whether `who` may do `permission` on `address` under the node's
/// security file. No security file: everything is allowed. Temporary
/// destinations (named by the adapters) belong to their connection and
/// need no permission.
pub fn authorize(
    config: &NodeConfig,
    who: Option<&Principal>,
    permission: Permission,
    address: &str,
) -> Result<(), Denied> {
    let Some(security) = config.security.as_deref() else {
        return Ok(());
    };
    if address.starts_with("temp-queue://") || address.starts_with("temp-topic://") {
        return Ok(());
    }
    match who {
        Some(p) => security.check(p, permission, address),
        None => Err(Denied {
            user: String::new(),
            permission,
            address: address.to_string(),
        }),
    }
}

/// One client connection's protocol state, as the node drives it.
pub trait ProtocolSession {
    /// Bytes from the client: buffer them (and report a framing error as
    /// actions).
    fn receive(&mut self, cx: &mut SessionCx<'_>, bytes: Bytes);
    /// Handle at most one unit of input (a frame), pushing its actions.
    /// Returns false when there is nothing more to handle for now or the
    /// session reads no more (closing).
    fn step(&mut self, cx: &mut SessionCx<'_>) -> bool;
    /// An operation finished: `Ok` once it is durable and applied, `Err`
    /// when it was refused. Called in the order the operations were pushed.
    fn completed(&mut self, cx: &mut SessionCx<'_>, tag: u64, result: Result<(), OpError>);
    /// Encodes a delivery for the client.
    fn deliver(&mut self, now: Millis, config: &NodeConfig, delivery: &Delivery) -> WireBytes;
    /// Time passed: heart-beats out, timeouts.
    fn tick(&mut self, cx: &mut SessionCx<'_>);
    /// When `tick` is next needed.
    fn deadline(&self, config: &NodeConfig) -> Option<Millis>;
    /// The node wrote bytes to this client (for heart-beat bookkeeping).
    fn sent(&mut self, now: Millis);
    /// The node cannot serve this client (it is not live): answer with an
    /// error in the protocol's own terms and close.
    fn refuse(&mut self, cx: &mut SessionCx<'_>, why: &Refusal);
    /// The node has completed what it will complete for this input: write
    /// what was held back to be written together.
    fn flush(&mut self, _cx: &mut SessionCx<'_>) {}
    /// A drain asked for with [`Op::Flow`] finished: the subscription's
    /// credit is used up.
    fn drained(&mut self, _cx: &mut SessionCx<'_>, _sub_id: &str) {}
    /// The answer to [`SessionAction::Login`]: the login is accepted (the
    /// connection's principal is set) or refused.
    fn login_checked(&mut self, cx: &mut SessionCx<'_>, ok: bool);
    /// The client completed its handshake (STOMP CONNECTED sent, AMQP
    /// open received): it no longer counts against the limit on
    /// connections waiting to log in.
    fn established(&self) -> bool;
    /// Whether [`refuse`](Self::refuse) can tell the client why now (AMQP:
    /// only once its open arrived).
    fn can_refuse(&self) -> bool {
        true
    }
    /// Producers may add messages again (the disk is below its limit):
    /// take what was held back, give producers credit again.
    fn producers_resumed(&mut self, _cx: &mut SessionCx<'_>) {}
    /// Whether the session holds a send back until producers resume (its
    /// connection is not read meanwhile).
    fn holding(&self) -> bool {
        false
    }
}
