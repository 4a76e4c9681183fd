//! A model of the parts of Apache Kafka Halyard relies on.
//!
//! - Partitions (`log`): append-only logs with offsets, a log start offset
//!   that compaction can move, and the last stable offset (LSO) that
//!   `read_committed` readers stop at.
//! - Transactions (`transactions`): a coordinator per `transactional.id`
//!   with a producer id and an epoch. `init_producer_id` aborts any open
//!   transaction of the old epoch and bumps the epoch, so every later request
//!   of the old producer is fenced (`ProducerFenced`). Produce is idempotent
//!   per (producer id, epoch, sequence). `end_txn` writes commit or abort
//!   markers; a retried `end_txn` with the same outcome succeeds.
//!   Transactions open longer than `transaction_timeout_ms` are aborted by the
//!   coordinator, which bumps the epoch (as Kafka does since KIP-360).
//! - `read_committed` fetches (`reads`) return only committed data below
//!   the LSO; aborted data is never returned.
//! - Consumer groups (`group`): members join, heartbeat and leave; a member
//!   whose last heartbeat is older than `session_timeout_ms` is expelled.
//!   One-partition lock groups assign partition 0 stickily: its holder keeps
//!   it while it is a member; a free partition goes to the member whose name
//!   sorts first (Halyard names a failback primary so that it sorts first).
//! - Compaction of a prefix (`compaction`, never past the LSO): an older
//!   record is removed when a later one with the same key exists below the
//!   cleaning point; aborted data is removed; tombstones and markers survive
//!   one cleaning and are removed `tombstone_retention_ms` after it (Kafka's
//!   `delete.retention.ms`).
//!
//! The model is pure: time comes in as `now`, randomness from the caller.

mod compaction;
mod coordinator;
mod error;
mod group;
mod log;
mod model;
mod reads;
mod transactions;

#[cfg(test)]
mod tests;

pub use coordinator::{Commit, EpochBump, Writer};
pub use error::KafkaError;
pub use group::GroupStatus;
pub use model::{KafkaConfig, KafkaModel, KafkaStats};
pub use reads::{FetchResult, Fetched};
