//! The sans-IO node: one [`Node`] glues protocol sessions, the broker, the
//! journal pipeline and HA activation together.
//!
//! ```text
//! node.handle(now, Input::Conn(ConnEvent::Received { conn, bytes }));
//! while let Some(out) = node.poll_output() { /* do it */ }
//! if let Some(at) = node.next_deadline() { /* call handle(at, Input::Tick) then */ }
//! ```
//!
//! The driver promises: appends complete (durable, failed or fenced) in the
//! order they were issued (the node asserts it); every journal `Open` is
//! answered once, in order, with its `Loaded`s then `Ready` or `OpenFailed`,
//! even one the node gave up on (it ignores those answers);
//! `ConnRequest::Close` flushes what was sent before it; after
//! `ConnRequest::Close` the node has already forgotten the connection.
//!
//! Rooms: [`ports`] (inputs and outputs), [`node`] (the state and the
//! driver's face), [`ops`] (what protocol adapters ask for), `connections`
//! (running sessions), `execute` and `transactions` (operations into journal
//! batches), `pipeline` (completing work in journal order), `admission`
//! (the disk limit: may producers add messages now), and the HA
//! transitions in [`crate::ha`].

mod admin;
mod admission;
mod auth;
mod bridge;
mod config;
mod conn;
mod connections;
mod events;
mod execute;
mod management;
#[allow(clippy::module_inception)]
mod node;
mod ops;
mod paging;
mod pipeline;
mod ports;
mod snapshot;
mod stats;
mod timers;
mod transactions;
mod work;

pub use admission::{DiskUsage, Gate, Permille};
pub use config::{amqp_defaults, FullPolicy, NodeConfig, PlantedBug};
pub use events::Event;
pub use management::{
    AdminError, AdminOp, AdminReply, BrowsedMessage, ADMIN_BATCH_MAX, BODY_PREVIEW_BYTES,
    BROWSE_MAX,
};
pub use node::Node;
pub use ops::{
    authorize, Op, OpError, Outcome, ProtocolSession, Refusal, SessionAction, SessionCx,
    SubscribeOp, SubscribeTarget, TxName,
};
pub use ports::{
    AcceptRequest, ConnEvent, ConnRequest, Input, JournalEvent, JournalRequest, LockEvent,
    LockRequest, Output, WireBytes,
};
pub use stats::{
    AddressStats, ConnectionCounts, ConnectionStats, LatencyHistogram, NodeCounters, NodeStats,
    QueueStats, LATENCY_BUCKETS_MS,
};
pub(crate) use work::Work;
// STOMP's name for it, where users of the node have always found it.
pub use crate::protocol::stomp::DUPLICATE_ID_HEADER;
