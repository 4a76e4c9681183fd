//! The Kafka bridge's port as the driver sees it: the node's
//! `BridgeRequest`s go to the bridge reader's thread (see
//! `kafka::bridge_reader`), which reports `Input::Bridge`s. A node without
//! a bridge has a handle that drops nothing because it is never given
//! anything (the node asks only when its bridge is configured).

use std::sync::mpsc;

use halyard_core::bridge::BridgeRequest;

#[derive(Clone, Debug, Default)]
pub struct BridgeHandle {
    tx: Option<mpsc::Sender<BridgeRequest>>,
}

impl BridgeHandle {
    /// No bridge.
    pub fn none() -> BridgeHandle {
        BridgeHandle { tx: None }
    }

    pub fn new(tx: mpsc::Sender<BridgeRequest>) -> BridgeHandle {
        BridgeHandle { tx: Some(tx) }
    }

    pub fn send(&self, request: BridgeRequest) {
        match &self.tx {
            Some(tx) => {
                if tx.send(request).is_err() {
                    tracing::error!("Kafka bridge reader has exited; request dropped");
                }
            }
            None => tracing::error!(?request, "the node asked a bridge that is not configured"),
        }
    }
}
