//! What can go wrong with the Kafka mirror lock, by step, and what the
//! lock coordinator's driver is told of it (`CoordinatorError`).

use rdkafka::error::KafkaError;
use thiserror::Error;

use super::error::KafkaSetupError;
use crate::coordinator::CoordinatorError;

#[derive(Debug, Error)]
pub enum KafkaMirrorLockError {
    /// A setting is not usable as given.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// Creating the lock topic or the state topic.
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("cannot create the Kafka mirror lock's {what} for {bootstrap}: {source}")]
    Client {
        what: &'static str,
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot join the Kafka mirror lock group {group}: {source}")]
    Join { group: String, source: KafkaError },
    /// `init_transactions` of the state producer failed (not fenced).
    #[error("init_transactions of {transactional_id}: {source}")]
    InitTransactions {
        transactional_id: String,
        source: KafkaError,
    },
    #[error("reading {topic}: {source}")]
    Read { topic: String, source: KafkaError },
    #[error("reading {topic}: stuck at offset {at:?} before its end {end} for {timeout_ms} ms")]
    ReadStuck {
        topic: String,
        at: Option<i64>,
        end: i64,
        timeout_ms: u64,
    },
    /// A record of the state topic this code did not write.
    #[error("offset {offset} of {topic} holds something else: {reason}")]
    Corrupt {
        topic: String,
        offset: i64,
        reason: String,
    },
    /// A write failed without fencing; it was aborted (or may or may not
    /// have been committed, if the commit did not answer).
    #[error("writing to {topic}: {source}")]
    Write { topic: String, source: KafkaError },
    /// A newer holder initialised the state producer, or wrote a newer
    /// epoch.
    #[error("fenced: the Kafka mirror lock was acquired again since epoch {epoch}")]
    Fenced { epoch: u64 },
    /// This holder no longer holds the lock.
    #[error("the Kafka mirror lock is lost: {why}")]
    Lost { why: String },
    /// The state changed since the version the writer read.
    #[error("the lock state is at offset {found}, not {expected} as read: read it again")]
    StaleVersion { expected: i64, found: i64 },
    /// The group member saw a client error lately and holds nothing.
    #[error("the Kafka mirror lock group {group} cannot be reached: {error}")]
    Unreachable { group: String, error: String },
    /// A call to the blocking Kafka client did not come back.
    #[error("the Kafka mirror lock's {0} thread ended without an answer")]
    NoAnswer(&'static str),
}

impl From<KafkaMirrorLockError> for CoordinatorError {
    fn from(e: KafkaMirrorLockError) -> CoordinatorError {
        match e {
            KafkaMirrorLockError::Invalid {
                what,
                value,
                reason,
            } => CoordinatorError::Invalid {
                what,
                value,
                reason,
            },
            KafkaMirrorLockError::Fenced { epoch } => CoordinatorError::Fenced { epoch },
            KafkaMirrorLockError::Lost { why } => CoordinatorError::Lost { why },
            KafkaMirrorLockError::StaleVersion { .. } => CoordinatorError::StaleVersion,
            KafkaMirrorLockError::Corrupt {
                topic,
                offset,
                reason,
            } => CoordinatorError::Corrupt {
                what: format!("offset {offset} of {topic}"),
                reason,
            },
            e => CoordinatorError::Unavailable(e.to_string()),
        }
    }
}
