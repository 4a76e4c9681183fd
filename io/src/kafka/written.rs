//! What a committed transaction changes in the `OffsetIndex`: each
//! `MessageStored` record it wrote is indexed at its offset, each tombstone
//! of an `m/` key removes its message.
//!
//! The offsets come from the records' delivery reports (a record is acked
//! by the partition leader with its offset before the commit; the commit
//! only makes it visible). They are believed only if they are what a single
//! writer's records must be: every record's, in the order sent, above the
//! last offset known. librdkafka reports no offset (-1, and the batch's
//! other records counted up from it) for a batch the broker answered
//! `DUPLICATE_SEQUENCE_NUMBER` after a retry; then the transaction's
//! offsets are found by reading it back from the topic (`resolve`).

use std::time::Duration;

use halyard_core::ids::Id;
use halyard_core::journal::codec::decode_key;
use halyard_core::journal::Key;
use thiserror::Error;

use super::error::FetchError;
use super::fetch::Fetcher;
use super::offsets::OffsetIndex;

/// What one journal record of a transaction does to the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A `MessageStored` record.
    Stored(Id),
    /// The tombstone of a message's `m/` key.
    Dropped(Id),
    Other,
}

impl Effect {
    pub fn of(key: &[u8], value: Option<&[u8]>) -> Effect {
        // Only `m/` keys matter; skip parsing the others.
        if !key.starts_with(b"m/") {
            return Effect::Other;
        }
        match (decode_key(key), value) {
            (Ok(Key::Message(id)), Some(_)) => Effect::Stored(id),
            (Ok(Key::Message(id)), None) => Effect::Dropped(id),
            _ => Effect::Other,
        }
    }
}

/// The delivery reports of a transaction did not give trustworthy offsets.
#[derive(Debug, Error)]
#[error("delivery reports gave {reported} offsets for {records} records, not increasing from {after} (first odd: record {slot} at {offset})")]
pub struct Untrusted {
    pub records: usize,
    pub reported: usize,
    pub after: i64,
    pub slot: usize,
    pub offset: i64,
}

/// Applies a committed transaction's `effects` (one per journal record, in
/// the order sent) at the offsets `delivered` reported ((slot, offset)),
/// and moves `last_offset` (the greatest offset known of the topic) to its
/// last record. Nothing is applied if the offsets are not trustworthy.
pub fn apply_delivered(
    effects: &[Effect],
    delivered: &[(usize, i64)],
    last_offset: &mut i64,
    index: &mut OffsetIndex,
) -> Result<(), Untrusted> {
    let mut offsets = vec![-1i64; effects.len()];
    for &(slot, offset) in delivered {
        if let Some(o) = offsets.get_mut(slot) {
            *o = offset;
        }
    }
    let mut prev = *last_offset;
    for (slot, &o) in offsets.iter().enumerate() {
        if o <= prev {
            return Err(Untrusted {
                records: effects.len(),
                reported: delivered.len(),
                after: *last_offset,
                slot,
                offset: o,
            });
        }
        prev = o;
    }
    for (effect, &offset) in effects.iter().zip(&offsets) {
        apply(index, *effect, offset);
    }
    *last_offset = prev;
    Ok(())
}

fn apply(index: &mut OffsetIndex, effect: Effect, offset: i64) {
    match effect {
        Effect::Stored(id) => index.insert(id, offset),
        Effect::Dropped(id) => {
            index.remove(id);
        }
        Effect::Other => {}
    }
}

/// Finds the offsets of a committed transaction's records by reading the
/// topic from `after + 1` to `end` (exclusive: the end offset after the
/// commit), where nothing but that transaction was written, and applies
/// them. Returns how many of its `MessageStored` records were not found
/// (their messages are then not indexed: a read of one finds nothing).
pub fn resolve(
    fetcher: &mut Fetcher,
    effects: &[Effect],
    after: i64,
    end: i64,
    index: &mut OffsetIndex,
    timeout: Duration,
) -> Result<usize, FetchError<std::convert::Infallible>> {
    let offsets: Vec<i64> = (after + 1..end).collect();
    let mut seen: Vec<(Effect, i64)> = Vec::with_capacity(effects.len());
    fetcher.fetch(&offsets, end, timeout, |offset, key, value| {
        seen.push((Effect::of(key, value), offset));
        Ok(())
    })?;
    let mut stored_found = 0usize;
    for (effect, offset) in seen {
        if matches!(effect, Effect::Stored(_)) {
            stored_found += 1;
        }
        apply(index, effect, offset);
    }
    // Removing is right whatever was read.
    for e in effects {
        if let Effect::Dropped(id) = e {
            index.remove(*id);
        }
    }
    let stored = effects
        .iter()
        .filter(|e| matches!(e, Effect::Stored(_)))
        .count();
    Ok(stored.saturating_sub(stored_found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_of_keys() {
        assert_eq!(
            Effect::of(b"m/3:7", Some(b"x")),
            Effect::Stored(Id::new(3, 7))
        );
        assert_eq!(Effect::of(b"m/3:7", None), Effect::Dropped(Id::new(3, 7)));
        assert_eq!(Effect::of(b"r/3:7/1:1", None), Effect::Other);
        assert_eq!(Effect::of(b"activation", Some(b"x")), Effect::Other);
        assert_eq!(Effect::of(b"m/garbage", Some(b"x")), Effect::Other);
    }

    #[test]
    fn delivered_offsets_are_applied_in_order_when_they_make_sense() {
        let a = Id::new(2, 1);
        let b = Id::new(2, 2);
        let mut index = OffsetIndex::new();
        index.insert(Id::new(1, 9), 3);
        let effects = [
            Effect::Stored(a),
            Effect::Other,
            Effect::Stored(b),
            Effect::Dropped(Id::new(1, 9)),
            Effect::Dropped(a),
        ];
        // Reports arrive in any order; they carry their slot.
        let delivered = [(1, 11), (0, 10), (2, 12), (4, 14), (3, 13)];
        let mut last = 8;
        apply_delivered(&effects, &delivered, &mut last, &mut index).expect("trusted");
        assert_eq!(last, 14);
        assert_eq!(index.get(a), None, "stored and dropped in one transaction");
        assert_eq!(index.get(b), Some(12));
        assert_eq!(index.get(Id::new(1, 9)), None);
    }

    #[test]
    fn offsets_of_a_duplicate_sequence_batch_are_not_believed() {
        let a = Id::new(2, 1);
        let effects = [Effect::Stored(a), Effect::Stored(Id::new(2, 2))];
        let mut index = OffsetIndex::new();
        let mut last = 100;
        // librdkafka's offsets for such a batch: -1, then counted up.
        let e = apply_delivered(&effects, &[(0, -1), (1, 0)], &mut last, &mut index)
            .expect_err("untrusted");
        assert_eq!((e.slot, e.offset), (0, -1));
        // A missing report, or offsets that do not increase past the last known.
        assert!(apply_delivered(&effects, &[(0, 101)], &mut last, &mut index).is_err());
        assert!(apply_delivered(&effects, &[(0, 90), (1, 91)], &mut last, &mut index).is_err());
        assert!(index.is_empty());
        assert_eq!(last, 100);
    }
}
