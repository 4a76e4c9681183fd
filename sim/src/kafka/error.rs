//! The errors the Kafka model answers with.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KafkaError {
    /// A newer producer with the same transactional id exists (Kafka:
    /// PRODUCER_FENCED / INVALID_PRODUCER_EPOCH).
    #[error("producer fenced: epoch {stale} is older than {current}")]
    ProducerFenced { stale: u16, current: u16 },
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(&'static str),
    #[error("unknown producer (init_producer_id first)")]
    UnknownProducer,
    #[error("unknown member {0} (expired or left)")]
    UnknownMember(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("out of order sequence {got}, expected {expected}")]
    OutOfOrderSequence { got: u64, expected: u64 },
}
