//! The node's ports: what a driver reports ([`Input`]) and what the node
//! asks of it ([`Output`]), grouped the same way on both sides: connections,
//! journal, lock, accepting, events.

use super::management::{AdminError, AdminOp, AdminReply};
use bytes::Bytes;

use super::Event;
use crate::bridge::{BridgeEvent, BridgeRequest, OutRecord};
use std::sync::Arc;

use crate::ids::{ConnId, Id, Ticket};
use crate::journal::Entry;
use crate::message::Message;
use crate::security::Secret;
pub use crate::wire_bytes::WireBytes;

/// Something that happened, reported by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed; check deadlines.
    Tick,
    /// Begin activation (ask for the live lock).
    Start,
    /// Drain and stop (SIGTERM).
    Shutdown,
    Conn(ConnEvent),
    Journal(JournalEvent),
    /// Several journal answers at once, in the order the journal gave
    /// them: handled as that many `Journal` inputs, except that the work
    /// after an input (deliveries, housekeeping, flushing the sessions)
    /// runs once, after the last. A driver sends one per group commit, so
    /// the node pays one channel hop and one round of that work for all
    /// the appends an fsync made durable, not one per append.
    Journals(Vec<JournalEvent>),
    Lock(LockEvent),
    /// The Kafka bridge's reader.
    Bridge(BridgeEvent),
    /// A management change (HTTP API); answered by `Output::Admin` with
    /// the same `id`.
    Admin {
        id: u64,
        op: AdminOp,
    },
    /// A reading of the disk that holds the journal (drivers report one
    /// every second or so); checked against `--max-disk-usage`.
    Disk(super::DiskUsage),
}

/// What happened on a client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Opened {
        conn: ConnId,
    },
    Received {
        conn: ConnId,
        bytes: Bytes,
    },
    /// The driver wrote this many bytes of what the node sent to `conn`.
    Flushed {
        conn: ConnId,
        bytes: usize,
    },
    /// The peer closed, or the socket failed.
    Closed {
        conn: ConnId,
    },
    /// The answer to [`ConnRequest::CheckPassword`].
    PasswordChecked {
        conn: ConnId,
        ok: bool,
    },
    /// The connection's TLS client certificate, verified by the driver,
    /// names this user (its subject CN). Reported after `Opened`, before
    /// any bytes.
    Identified {
        conn: ConnId,
        user: String,
    },
}

/// Outcomes from the journal port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalEvent {
    /// The batch of this ticket is durable.
    Durable { ticket: Ticket },
    /// The batch was not written (or its fate is unknown). The node steps down.
    Failed { ticket: Ticket, reason: String },
    /// A newer live fenced us. `by_epoch` is its activation epoch if known.
    Fenced {
        ticket: Ticket,
        by_epoch: Option<u32>,
    },
    /// Part of the journal, in order, after `JournalRequest::Open`.
    Loaded { entries: Vec<Entry> },
    /// Fencing done and the journal read to its end.
    Ready,
    /// Opening the journal failed; the node will try again.
    OpenFailed { reason: String },
    /// The answer to `JournalRequest::Read`: the messages of `asked` the
    /// journal holds, read back (paging). `error`: the read failed, or a
    /// message asked for is not in the journal (the node steps down).
    Read {
        asked: Vec<Id>,
        found: Vec<(Id, Arc<Message>)>,
        error: Option<String>,
    },
}

/// Outcomes from the lock port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockEvent {
    /// This node now holds the live lock.
    Acquired,
    /// Registered, but another node holds the lock: we are a backup.
    Standby,
    /// The lock was lost (session timeout, lock service unreachable, revoked).
    Lost { reason: String },
    /// Failback: the primary is back; hand the live role over in order.
    HandBack,
    /// The lock service cannot be reached right now (informational while waiting).
    Unavailable { reason: String },
    /// Fenced preemption: the live node `peer` seems gone (`reason`); a
    /// waiting backup fences the journal and goes live without waiting for
    /// the lock (safe because loading fences every older writer first).
    Preempt { peer: String, reason: String },
    /// The node `peer` says it is live at `epoch`: a live node with an
    /// older epoch has been fenced and steps down at once, and a waiting
    /// backup given the lock leaves it to that peer.
    PeerLive { peer: String, epoch: u32 },
    /// The node `peer` no longer says it is live (it said it is a backup, or
    /// its link went quiet).
    PeerNotLive { peer: String },
}

/// An effect the driver must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Conn(ConnRequest),
    Journal(JournalRequest),
    Lock(LockRequest),
    Accept(AcceptRequest),
    /// The Kafka bridge's reader.
    Bridge(BridgeRequest),
    Event(Event),
    /// The answer to `Input::Admin { id, .. }`.
    Admin {
        id: u64,
        result: Result<AdminReply, AdminError>,
    },
    /// The node has stopped; the driver may exit.
    Stopped,
}

/// What the node asks of a client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnRequest {
    Send {
        conn: ConnId,
        bytes: WireBytes,
    },
    /// Flush what was sent, then close.
    Close {
        conn: ConnId,
    },
    /// Verify a login's password against its argon2id hash
    /// ([`crate::security::password::verify`]) and answer with
    /// `ConnEvent::PasswordChecked`. Slow on purpose (tens of ms): drivers
    /// run it off their event loop.
    CheckPassword {
        conn: ConnId,
        hash: String,
        password: Secret,
    },
    /// Stop reading from the connection until `ResumeReading` (backpressure).
    PauseReading {
        conn: ConnId,
    },
    ResumeReading {
        conn: ConnId,
    },
}

/// What the node asks of the journal port.
///
/// The driver promises: appends complete (durable, failed or fenced) in the
/// order they were issued; `Open` answers `Loaded`* then `Ready` (or
/// `OpenFailed`); after `Close` nothing more is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalRequest {
    /// Append this batch atomically, after every earlier batch, together
    /// with the Kafka bridge's `publish` records (in the same Kafka
    /// transaction; only a Kafka journal is ever given any).
    Append {
        ticket: Ticket,
        /// Shared with the node's pipeline, which applies them to the broker
        /// once durable (no copy of the batch per append).
        entries: Arc<Vec<Entry>>,
        publish: Vec<OutRecord>,
    },
    /// Fence older writers, then read the whole journal: `Loaded`* then `Ready`.
    Open,
    /// Read these paged messages back (their `MessageStored` records),
    /// answered by one `JournalEvent::Read`, in any order relative to
    /// appends (every message asked for is durable already). Only asked of
    /// a driver that can (`NodeConfig::journal_reads`).
    Read { ids: Vec<Id> },
    /// Stop writing; drop the writer (after stepping down).
    Close,
    /// A mirror link (not the node) asks for a copy of the journal as of
    /// every append before this request (`token` names the link; see
    /// `halyard_core::mirror`). Only a local journal with mirroring is
    /// asked; nothing is answered to the node.
    Snapshot { token: u64 },
}

/// What the node asks of the lock port.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LockRequest {
    Acquire,
    Release,
}

/// Whether the client listener should be bound.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AcceptRequest {
    Start,
    Stop,
}
