//! Events a node reports for logs, metrics and the simulator's trace.
//!
//! Their `Display` text is the log line operators grep for.

use std::fmt;

use crate::ha::Role;
use crate::ids::ConnId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Starting {
        node: String,
        role: Role,
    },
    BackupAnnounced,
    LiveLockObtained,
    /// Fenced preemption: going live without the lock, the live `peer`
    /// being suspected gone.
    Preempting {
        peer: String,
        reason: String,
    },
    /// The lock came while a peer is live (it preempted without the lock):
    /// left to it, so the two do not take turns.
    LockLeftToLivePeer {
        peer: String,
        epoch: u32,
    },
    /// The lock came to a node already going live (or live) by preemption.
    LockFollowed,
    /// A peer went live with a newer epoch: this node was fenced.
    SupersededByPeer {
        peer: String,
        epoch: u32,
        our_epoch: u32,
    },
    JournalLoaded {
        entries: u64,
        messages: u64,
        queues: u64,
    },
    Live {
        epoch: u32,
        was_backup: bool,
    },
    Fenced {
        by_epoch: Option<u32>,
        our_epoch: u32,
    },
    /// A write from before a step-down was refused by the journal.
    FencedAfterStepDown {
        by_epoch: Option<u32>,
        our_epoch: u32,
    },
    JournalFailed {
        reason: String,
    },
    JournalOpenFailed {
        reason: String,
    },
    /// Reading paged messages back failed (or the journal lacked one).
    JournalReadFailed {
        reason: String,
    },
    LockLost {
        reason: String,
    },
    LockUnavailable {
        reason: String,
    },
    FailingBack,
    SteppedDown,
    DrainTimedOut {
        pending: usize,
    },
    Stopped,
    /// A client got an ERROR frame.
    ClientError {
        conn: ConnId,
        message: String,
    },
    /// A login was refused (never with the password).
    LoginRefused {
        conn: ConnId,
        user: String,
    },
    /// The journal's disk went above `--max-disk-usage`: `why` says what
    /// producers meet now.
    DiskFull {
        why: String,
    },
    /// The disk is below the limit again: producers go on (unless memory
    /// still stops them).
    DiskRoom {
        used: super::Permille,
        max: super::Permille,
    },
    /// The messages held reached `--max-memory-bytes`.
    MemoryFull {
        why: String,
    },
    /// The messages held are below the margin under the limit again.
    MemoryRoom {
        held: u64,
        max: u64,
    },
}

impl Event {
    /// Events about the node's role, logged at info level; others are debug or warn.
    pub fn is_state_change(&self) -> bool {
        !matches!(
            self,
            Event::ClientError { .. } | Event::LockUnavailable { .. } | Event::LoginRefused { .. }
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Starting { node, role } => {
                write!(f, "node {node} starting as {}", role.as_str())
            }
            Event::BackupAnnounced => write!(f, "backup announced"),
            Event::LiveLockObtained => write!(f, "live lock obtained"),
            Event::Preempting { peer, reason } => write!(
                f,
                "live {peer} suspected gone ({reason}): fencing it and going live without the lock"
            ),
            Event::LockFollowed => write!(f, "live lock obtained after the preemption (it follows)"),
            Event::LockLeftToLivePeer { peer, epoch } => write!(
                f,
                "live lock obtained while peer {peer} is live at epoch {epoch}: leaving the lock to it"
            ),
            Event::SupersededByPeer {
                peer,
                epoch,
                our_epoch,
            } => write!(
                f,
                "peer {peer} is live at epoch {epoch} (ours {our_epoch}): fenced, stepping down"
            ),
            Event::JournalLoaded {
                entries,
                messages,
                queues,
            } => write!(
                f,
                "journal loaded: {entries} entries, {messages} messages in {queues} queues"
            ),
            Event::Live {
                epoch,
                was_backup: true,
            } => write!(f, "backup is now live (epoch {epoch})"),
            Event::Live {
                epoch,
                was_backup: false,
            } => write!(f, "node is live (epoch {epoch})"),
            Event::Fenced {
                by_epoch: Some(e), ..
            } => write!(f, "fenced by epoch {e}, stepping down"),
            Event::Fenced {
                by_epoch: None,
                our_epoch,
            } => write!(
                f,
                "fenced by a newer live (our epoch {our_epoch}), stepping down"
            ),
            Event::FencedAfterStepDown {
                by_epoch: Some(e),
                our_epoch,
            } => write!(
                f,
                "fenced by epoch {e}: a write of epoch {our_epoch} still in flight after stepping down was refused"
            ),
            Event::FencedAfterStepDown {
                by_epoch: None,
                our_epoch,
            } => write!(
                f,
                "fenced by a newer live: a write of epoch {our_epoch} still in flight after stepping down was refused"
            ),
            Event::JournalFailed { reason } => {
                write!(f, "journal append failed ({reason}), stepping down")
            }
            Event::JournalOpenFailed { reason } => {
                write!(f, "journal could not be opened ({reason}), will retry")
            }
            Event::JournalReadFailed { reason } => {
                write!(f, "reading paged messages back from the journal failed ({reason}), stepping down")
            }
            Event::LockLost { reason } => write!(f, "live lock lost ({reason}), stepping down"),
            Event::LockUnavailable { reason } => write!(f, "lock unavailable: {reason}"),
            Event::FailingBack => write!(f, "failing back to primary"),
            Event::SteppedDown => write!(f, "now a backup, waiting for the live lock"),
            Event::DrainTimedOut { pending } => {
                write!(f, "drain timed out with {pending} journal batches pending")
            }
            Event::Stopped => write!(f, "node stopped"),
            Event::ClientError { conn, message } => write!(f, "{conn}: ERROR sent: {message}"),
            Event::LoginRefused { conn, user } => {
                write!(f, "{conn}: login refused for user {user:?}")
            }
            Event::DiskFull { why } | Event::MemoryFull { why } => write!(f, "{why}"),
            Event::MemoryRoom { held, max } => write!(
                f,
                "messages hold {held} bytes, below --max-memory-bytes {max} again: producers resume"
            ),
            Event::DiskRoom { used, max } => write!(
                f,
                "disk usage {used} is below --max-disk-usage {max} again: producers resume"
            ),
        }
    }
}
