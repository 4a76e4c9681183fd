//! The journal port as seen by the driver: commands in, `Input`s out.

use halyard_core::ids::Ticket;
use halyard_core::journal::Entry;
use tokio::sync::mpsc;

/// What the driver asks of a journal backend.
#[derive(Debug)]
pub enum JournalCommand {
    /// Fence older writers, read everything, answer `Loaded`* then `Ready`.
    Open,
    /// Append one atomic batch after all earlier ones.
    Append { ticket: Ticket, entries: Vec<Entry> },
    /// Stop writing and drop the writer.
    Close,
}

/// Sends commands to a journal backend task or thread.
#[derive(Clone, Debug)]
pub struct JournalHandle {
    tx: mpsc::UnboundedSender<JournalCommand>,
}

impl JournalHandle {
    pub fn new(tx: mpsc::UnboundedSender<JournalCommand>) -> JournalHandle {
        JournalHandle { tx }
    }

    /// Queues a command; a backend that has exited drops it (the node will
    /// not hear back and its activation or drain times out).
    pub fn send(&self, cmd: JournalCommand) {
        if self.tx.send(cmd).is_err() {
            tracing::error!("journal backend has exited; command dropped");
        }
    }
}
