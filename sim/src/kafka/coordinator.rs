//! The transaction coordinator's state for one `transactional.id`.

use std::collections::BTreeSet;

use halyard_core::Millis;

/// Who wrote a transaction, remembered for the simulator's checker only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Writer {
    pub node: String,
    pub epoch: u32,
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
