//! The Kafka bridge's port as the driver sees it: the node's
//! `BridgeRequest`s go to the bridge's threads (see `kafka::bridge_reader`
//! and, with a local journal, `kafka::bridge_forwarder`), which report
//! `Input::Bridge`s. A node without a bridge is never asked anything (the
//! node asks only when its bridge is configured).

use std::sync::mpsc;

use halyard_core::bridge::BridgeRequest;

#[derive(Clone, Debug, Default)]
pub struct BridgeHandle {
    reader: Option<mpsc::Sender<BridgeRequest>>,
    /// The outbox forwarder (local journal only).
    forwarder: Option<mpsc::Sender<BridgeRequest>>,
}

impl BridgeHandle {
    /// No bridge.
    pub fn none() -> BridgeHandle {
        BridgeHandle::default()
    }

    pub fn new(
        reader: mpsc::Sender<BridgeRequest>,
        forwarder: Option<mpsc::Sender<BridgeRequest>>,
    ) -> BridgeHandle {
        BridgeHandle {
            reader: Some(reader),
            forwarder,
        }
    }

    pub fn send(&self, request: BridgeRequest) {
        let (to_reader, to_forwarder) = match &request {
            BridgeRequest::Forward { .. } => (false, true),
            BridgeRequest::Stop => (true, true),
            _ => (true, false),
        };
        if to_forwarder {
            match &self.forwarder {
                Some(tx) => {
                    if tx.send(request.clone()).is_err() {
                        tracing::error!("Kafka bridge forwarder has exited; request dropped");
                    }
                }
                None if to_reader => {}
                None => tracing::error!("the node asked to forward records, but no forwarder runs"),
            }
        }
        if to_reader {
            match &self.reader {
                Some(tx) => {
                    if tx.send(request).is_err() {
                        tracing::error!("Kafka bridge reader has exited; request dropped");
                    }
                }
                None => tracing::error!(?request, "the node asked a bridge that is not configured"),
            }
        }
    }
}
