//! The journal port as seen by the driver: the node's `JournalRequest`s in,
//! `Input`s out.

use halyard_core::node::JournalRequest;
use tokio::sync::mpsc;

/// Sends commands to a journal backend task or thread.
#[derive(Clone, Debug)]
pub struct JournalHandle {
    tx: mpsc::UnboundedSender<JournalRequest>,
}

impl JournalHandle {
    pub fn new(tx: mpsc::UnboundedSender<JournalRequest>) -> JournalHandle {
        JournalHandle { tx }
    }

    /// Queues a command; a backend that has exited drops it (the node will
    /// not hear back and its activation or drain times out).
    pub fn send(&self, cmd: JournalRequest) {
        if self.tx.send(cmd).is_err() {
            tracing::error!("journal backend has exited; command dropped");
        }
    }
}
