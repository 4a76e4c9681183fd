//! What can go wrong talking to Kafka, by step. The node's journal and lock
//! inputs carry these as text (`OpenFailed { reason }`,
//! `Unavailable { reason }`); inside `io` they stay enums.

use halyard_core::journal::CodecError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

/// Making sure a topic exists.
#[derive(Debug, Error)]
pub enum KafkaSetupError {
    #[error("cannot create Kafka client for {bootstrap}: {source}")]
    Client {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {source}")]
    Runtime {
        topic: String,
        source: std::io::Error,
    },
    #[error("cannot create topic {topic}: Kafka at {bootstrap} did not answer in {timeout_ms} ms")]
    Timeout {
        topic: String,
        bootstrap: String,
        timeout_ms: u64,
    },
    #[error("cannot create topic {topic}: {source}")]
    Admin { topic: String, source: KafkaError },
    #[error("cannot create topic {topic}: {code}")]
    Refused {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Reading the journal topic (a full load or the standby copy).
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("cannot create Kafka consumer for {bootstrap}: {source}")]
    Consumer {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot assign partition 0 of {topic}: {source}")]
    Assign { topic: String, source: KafkaError },
    #[error("cannot read the end of {topic}: {source}")]
    EndOffset { topic: String, source: KafkaError },
    #[error("undecodable journal record at offset {offset} of {topic}: {source}")]
    Undecodable {
        offset: i64,
        topic: String,
        source: CodecError,
    },
    #[error("the record at offset {offset} of {topic} ({key}) is not the message record the standby copy indexed there")]
    NotIndexed {
        offset: i64,
        topic: String,
        key: String,
    },
}

/// Why a fetch failed.
#[derive(Debug, Error)]
pub enum FetchError<E: std::error::Error + 'static> {
    #[error("cannot assign offset {offset} of {topic}: {source}")]
    Assign {
        topic: String,
        offset: i64,
        source: KafkaError,
    },
    #[error("reading {topic} at offset {offset}: {source}")]
    Poll {
        topic: String,
        offset: i64,
        source: KafkaError,
    },
    #[error("reading {wanted} records of {topic} (offsets {first}..={last}) took over {timeout_ms} ms: {found} read, stopped before offset {at}")]
    Timeout {
        topic: String,
        wanted: usize,
        first: i64,
        last: i64,
        found: usize,
        at: i64,
        timeout_ms: u64,
    },
    /// What the caller's visitor said of a record.
    #[error(transparent)]
    Record(E),
}

/// Opening the journal: fencing and reading it to its end.
#[derive(Debug, Error)]
pub(crate) enum KafkaJournalError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("cannot create Kafka producer for {bootstrap}: {source}")]
    Producer {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("init_transactions on {bootstrap}: {source}")]
    InitTransactions {
        bootstrap: String,
        source: KafkaError,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("reading {topic}: {source}")]
    Poll { topic: String, source: KafkaError },
    #[error("reading the standby copy's message records back: {0}")]
    CopyRead(#[from] FetchError<ReadError>),
    #[error("{missing} message records the standby copy indexed are not in {topic}, the first at offset {offset}")]
    CopyRecordMissing {
        topic: String,
        offset: i64,
        missing: usize,
    },
    #[error("journal read stuck before offset {end} of {topic}")]
    Stuck { topic: String, end: i64 },
    #[error("no journal records from {bootstrap} for {timeout_ms} ms (read {records} of offsets {low}..{high})")]
    Silent {
        bootstrap: String,
        timeout_ms: u64,
        records: u64,
        low: i64,
        high: i64,
    },
    /// The node's input channel is closed: the driver is stopping.
    #[error("node is gone")]
    NodeGone,
}

/// The standby copy could not be handed over; the journal is read in full.
#[derive(Debug, Error)]
pub enum StandbyError {
    #[error("standby reader has stopped")]
    Stopped,
    #[error("standby reader did not answer")]
    NoAnswer,
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("standby reader: {0}")]
    Poll(KafkaError),
    #[error("standby reader stuck at offset {at} of {topic} (end {end})")]
    Stuck { at: i64, topic: String, end: i64 },
}

/// Joining the lock group.
#[derive(Debug, Error)]
pub(crate) enum LockError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("cannot create lock consumer for {bootstrap}: {source}")]
    Consumer {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot join lock group {group}: {source}")]
    Join { group: String, source: KafkaError },
}
