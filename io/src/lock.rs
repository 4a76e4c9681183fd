//! The lock port as the driver sees it: the node's `LockRequest`s go to a
//! lock backend (the file lock in `local`, the Kafka group lock in `kafka`)
//! through a [`LockHandle`]; the backend reports `LockEvent`s as inputs.

use halyard_core::node::LockRequest;
use tokio::sync::mpsc;

/// A lock request from the node; `done` (releases only) is told once the
/// lock really is given up (a Kafka member has left its group), so a
/// stopping node can wait for that before exiting.
pub type LockMsg = (LockRequest, Option<tokio::sync::oneshot::Sender<()>>);

#[derive(Clone, Debug)]
pub struct LockHandle {
    tx: mpsc::UnboundedSender<LockMsg>,
}

impl LockHandle {
    pub fn new(tx: mpsc::UnboundedSender<LockMsg>) -> LockHandle {
        LockHandle { tx }
    }

    pub fn send(&self, request: LockRequest, done: Option<tokio::sync::oneshot::Sender<()>>) {
        if self.tx.send((request, done)).is_err() {
            tracing::error!("lock backend has exited; command dropped");
        }
    }

    /// Releases the lock and waits (bounded) until the backend has done it.
    pub async fn release_and_wait(&self, timeout: std::time::Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(LockRequest::Release, Some(tx));
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}
