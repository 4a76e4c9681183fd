//! What travels between the coordinator scenario's processes: lock service
//! requests and answers, mirror connections (opened, bytes, closed) and the
//! clients' requests.

use bytes::Bytes;

use super::lock_service::{Answer, Request, SessionId};

/// Who a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Broker(usize),
    Service,
    /// The clients (a producer and a consumer through the failover URL):
    /// never cut off.
    Client,
}

/// What travels over the simulated network.
#[derive(Clone, Debug)]
pub enum Wire {
    ToService {
        session: SessionId,
        req_id: u64,
        req: Request,
    },
    FromService {
        session: SessionId,
        req_id: u64,
        answer: Answer,
    },
    /// A source dials a peer's mirror listener.
    Dial { conn: u64 },
    /// The listener took the connection.
    Accepted { conn: u64 },
    /// Bytes on a mirror connection (in order, never lost: a connection
    /// that a partition cuts is broken for good and each end finds out by
    /// its silence).
    Bytes { conn: u64, bytes: Bytes },
    /// The connection closed (a close, or a reset after a crash).
    Down { conn: u64 },
    /// A client sends message `msg` with a receipt requested.
    Store { msg: u64 },
    /// A client consumes the oldest message and acknowledges it.
    Consume,
}

impl Wire {
    /// The mirror connection this travels on, if any (delivered in order).
    pub fn conn(&self) -> Option<u64> {
        match self {
            Wire::Dial { conn }
            | Wire::Accepted { conn }
            | Wire::Bytes { conn, .. }
            | Wire::Down { conn } => Some(*conn),
            _ => None,
        }
    }
}
