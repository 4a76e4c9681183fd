//! One partition's log: entries by offset, the open transactions that hold
//! the last stable offset back, and the idempotence state of producers.

use std::collections::BTreeMap;

use bytes::Bytes;
use halyard_core::Millis;

#[derive(Clone, Debug)]
pub(super) enum Payload {
    Data {
        key: Bytes,
        value: Option<Bytes>,
        /// Transaction instance, or None for a non-transactional write.
        transaction: Option<u64>,
    },
    /// A commit or abort marker (its outcome is kept in `outcomes`).
    Marker,
}

#[derive(Clone, Debug)]
pub(super) struct LogEntry {
    pub(super) offset: u64,
    pub(super) payload: Payload,
    /// When a cleaning first passed over this tombstone or marker.
    pub(super) cleaned_at: Option<Millis>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Partition {
    pub(super) entries: Vec<LogEntry>,
    pub(super) next_offset: u64,
    /// Transaction instances open on this partition, with their first offset.
    pub(super) open: BTreeMap<u64, u64>,
    /// Idempotence: producer id -> (epoch, last sequence, base offset of that batch).
    pub(super) last_seq: BTreeMap<u64, (u16, u64, u64)>,
}

impl Partition {
    pub(super) fn lso(&self) -> u64 {
        self.open
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }
    pub(super) fn log_start(&self) -> u64 {
        self.entries.first().map_or(self.next_offset, |e| e.offset)
    }
}

/// What became of a transaction instance.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Open,
    Committed,
    Aborted,
}
