//! What a node's drivers ask the world to do. Drivers only change their own
//! state and return effects; the world sends the requests (with latency,
//! cuts and timeouts) and feeds the inputs to the node after the step.

use halyard_core::node::Input;

use super::kafka_requests::{KafkaRequest, RequestKind};

pub(super) enum Effect {
    /// Send to Kafka and wait for the answer or a timeout.
    Request(RequestKind, KafkaRequest),
    /// Send to Kafka; nobody waits for the answer.
    Notify(KafkaRequest),
    /// Give the node this input once the current step is done.
    Input(Input),
    /// Schedule the next lock heartbeat.
    ArmHeartbeat,
    /// Schedule the bridge reader's next look at its topics.
    ArmBridgePoll,
}
