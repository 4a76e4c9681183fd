//! The transaction coordinator's state for one `transactional.id`.

use std::collections::BTreeSet;

use halyard_core::Millis;

/// Who wrote a transaction, remembered for the simulator's checker only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Writer {
    pub node: String,
    pub epoch: u32,
}

/// A committed transaction, for the simulator's checker only: its writer
/// and the producer (id, epoch) whose `end_txn` Kafka accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub writer: Writer,
    pub producer_id: u64,
    pub producer_epoch: u16,
}

/// A producer id's epoch moved on, for the simulator's checker only: from
/// then on, a commit by an older epoch of that producer id is a write
/// accepted from a fenced producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochBump {
    /// How many transactions were committed before (its place in `commits`).
    pub commits_before: usize,
    pub producer_id: u64,
    pub epoch: u16,
    /// By `init_producer_id` (a journal open); otherwise a transaction
    /// timed out and the coordinator aborted it.
    pub by_open: bool,
}

#[derive(Clone, Debug)]
pub(super) struct OpenTransaction {
    pub(super) instance: u64,
    pub(super) partitions: BTreeSet<(String, u32)>,
    pub(super) started_at: Millis,
    pub(super) writer: Option<Writer>,
}

#[derive(Clone, Debug)]
pub(super) struct TransactionCoordinator {
    pub(super) producer_id: u64,
    pub(super) epoch: u16,
    pub(super) open: Option<OpenTransaction>,
    /// The last finished instance and whether it committed, so a retried
    /// `end_txn` whose first reply was lost gets the same answer.
    pub(super) last: Option<(u64, bool)>,
}
