//! Management operations (the HTTP API's purge, move, retry, delete and
//! browse). A change goes through the journal like a client's operation
//! and is answered only once durable, so it survives a failover; browse
//! only reads.
//!
//! Only references that are waiting (ready or scheduled) are touched: a
//! message out with a consumer stays with it, as Artemis's
//! `removeAllMessages` and `moveMessages` leave deliveries in flight.

use std::fmt;

/// Messages one purge, move or retry takes at most (one journal batch);
/// the answer says how many are left, and the caller asks again.
pub const ADMIN_BATCH_MAX: usize = 10_000;
/// Messages one browse returns at most.
pub const BROWSE_MAX: usize = 1_000;
/// Bytes of a body shown by browse.
pub const BODY_PREVIEW_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOp {
    /// Acknowledge the waiting messages of a queue (they are gone).
    Purge { queue: String },
    /// Move the waiting messages to the anycast queue of `to`.
    Move { queue: String, to: String },
    /// Move each waiting message back to the address it was sent to
    /// (dead letters, expired messages).
    Retry { queue: String },
    /// Delete a durable queue with no consumers (and its messages).
    DeleteQueue { queue: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminReply {
    Purged {
        purged: u64,
        remaining: u64,
    },
    Moved {
        moved: u64,
        skipped: u64,
        remaining: u64,
    },
    Deleted {
        messages: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// Not live: changes go to the live node.
    NotLive {
        state: &'static str,
    },
    NoQueue(String),
    ConsumersAttached {
        queue: String,
        consumers: usize,
    },
    /// A subscription queue of a connection: it ends with its connection.
    NotDurable(String),
    /// `to` is not somewhere messages can be moved.
    BadTarget {
        to: String,
        why: &'static str,
    },
    /// The node stepped down before the change was durable: it may or may
    /// not have happened; ask the live node.
    Abandoned,
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NotLive { state } => {
                write!(f, "this node is {state}, not live: ask the live node")
            }
            AdminError::NoQueue(q) => write!(f, "no queue named {q:?}"),
            AdminError::ConsumersAttached { queue, consumers } => write!(
                f,
                "queue {queue:?} has {consumers} consumer(s); close them first"
            ),
            AdminError::NotDurable(q) => {
                write!(f, "queue {q:?} belongs to a connection and ends with it")
            }
            AdminError::BadTarget { to, why } => write!(f, "cannot move to {to:?}: {why}"),
            AdminError::Abandoned => write!(
                f,
                "the node stepped down before the change was durable; check the live node"
            ),
        }
    }
}

/// One message as browse shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowsedMessage {
    pub id: String,
    pub address: String,
    /// Where it was sent, when this queue is not of that address (a dead
    /// letter, an expired message).
    pub original_address: Option<String>,
    pub priority: u8,
    pub deliveries: u32,
    pub state: &'static str,
    pub persistent: bool,
    pub headers: Vec<(String, String)>,
    pub body_bytes: usize,
    pub body_preview: String,
    /// The body is paged out (in the journal only): headers, body size
    /// and preview are not shown.
    pub paged: bool,
}
