//! The standby copy's contents (see `standby`): what Kafka's log cleaner
//! would make of the journal, records in offset order, the latest of each
//! key, a tombstone dropped together with what it deletes.
//!
//! Bounded like the node: message bodies (`MessageStored` records) are
//! kept up to `message_bytes_max` (the node's paging threshold; 0: no
//! bound); past it a message's record is kept as its offset only (16 bytes
//! in the `OffsetIndex` every message record has an entry in anyway). The
//! activation reads those records back from the topic as it hands the copy
//! to the node (`open`), which pages them as it would on a full load.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use halyard_core::journal::{Entry, Key, Record};

use super::offsets::OffsetIndex;

/// The compacted copy. See the module docs.
#[derive(Debug, Default)]
pub struct View {
    /// Offset -> entry kept in full, with its key and value size in bytes.
    by_offset: BTreeMap<i64, (Entry, u64)>,
    /// Raw key -> offset of its latest record in `by_offset`.
    latest: HashMap<Bytes, i64>,
    /// Every live `MessageStored` record, kept in full or not.
    messages: OffsetIndex,
    /// Key and value bytes of what `by_offset` holds.
    bytes: u64,
    /// Of which `MessageStored` records'.
    message_bytes: u64,
    /// Bound on `message_bytes` (0: none).
    message_bytes_max: u64,
    /// Message records kept as an offset only.
    paged: usize,
    /// Records read from Kafka since the copy was started.
    pub(crate) records_read: u64,
    /// Offset of the next record to read.
    pub next_offset: i64,
}

/// The copy taken apart for the activation.
pub(crate) struct Parts {
    /// The entries kept in full, by offset.
    pub(crate) kept: BTreeMap<i64, (Entry, u64)>,
    /// The offsets of the message records kept as offsets only, ascending.
    pub(crate) paged: Vec<i64>,
    pub(crate) messages: OffsetIndex,
    pub(crate) bytes: u64,
}

fn message_of(entry: &Entry) -> Option<halyard_core::ids::Id> {
    match entry {
        Entry::Put(Record::MessageStored { id, .. }) | Entry::Tombstone(Key::Message(id)) => {
            Some(*id)
        }
        _ => None,
    }
}

impl View {
    /// An empty copy keeping message bodies up to `message_bytes_max`
    /// bytes (0: all).
    pub fn new(message_bytes_max: u64) -> View {
        View {
            message_bytes_max,
            ..View::default()
        }
    }

    /// Folds in the record at `offset`.
    pub(crate) fn apply(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>, entry: Entry) {
        self.records_read += 1;
        self.next_offset = offset + 1;
        let message = message_of(&entry);
        let mut was_kept = false;
        if let Some(old) = self.latest.remove(key) {
            was_kept = true;
            if let Some((e, size)) = self.by_offset.remove(&old) {
                self.bytes -= size;
                if message_of(&e).is_some() {
                    self.message_bytes -= size;
                }
            }
        }
        if let Some(id) = message {
            if self.messages.remove(id).is_some() && !was_kept {
                self.paged -= 1;
            }
        }
        // A tombstone goes with what it deletes: nothing older of its key is
        // left here.
        let Some(value) = value else {
            return;
        };
        let size = (key.len() + value.len()) as u64;
        if let Some(id) = message {
            self.messages.insert(id, offset);
            if self.message_bytes_max > 0 && self.message_bytes + size > self.message_bytes_max {
                self.paged += 1;
                return;
            }
            self.message_bytes += size;
        }
        self.by_offset.insert(offset, (entry, size));
        self.latest.insert(Bytes::copy_from_slice(key), offset);
        self.bytes += size;
    }

    /// Records in the copy (kept in full or as offsets).
    pub(crate) fn len(&self) -> usize {
        self.by_offset.len() + self.paged
    }

    /// Message records kept as offsets only.
    pub fn paged(&self) -> usize {
        self.paged
    }

    /// Key and value bytes kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Of which message records'.
    pub fn message_bytes(&self) -> u64 {
        self.message_bytes
    }

    /// The entries kept in full, in offset order (every entry of the copy
    /// when `paged()` is 0).
    pub fn into_entries(self) -> impl Iterator<Item = Entry> {
        self.by_offset.into_values().map(|(e, _)| e)
    }

    /// Every message record's offset, by message id.
    pub fn message_offsets(&self) -> impl Iterator<Item = (halyard_core::ids::Id, i64)> + '_ {
        self.messages.iter()
    }

    pub(crate) fn into_parts(self) -> Parts {
        let mut paged: Vec<i64> = if self.paged == 0 {
            Vec::new()
        } else {
            self.messages
                .iter()
                .map(|(_, o)| o)
                .filter(|o| !self.by_offset.contains_key(o))
                .collect()
        };
        paged.sort_unstable();
        debug_assert_eq!(paged.len(), self.paged, "paged records miscounted");
        Parts {
            kept: self.by_offset,
            paged,
            messages: self.messages,
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_core::ids::Id;
    use halyard_core::journal::encode_entry;
    use halyard_core::journal::Routing;
    use halyard_core::message::{Body, Message};
    use std::sync::Arc;

    fn put(view: &mut View, offset: i64, e: Entry) {
        let (k, v) = encode_entry(&e);
        view.apply(offset, &k, v.as_deref(), e);
    }

    fn activation(epoch: u32) -> Entry {
        Entry::Put(Record::Activation {
            epoch,
            node: "n".into(),
        })
    }

    fn stored(seq: u64, body_bytes: usize) -> Entry {
        Entry::Put(Record::MessageStored {
            id: Id::new(1, seq),
            queues: vec![Id::new(1, 1)],
            message: Arc::new(Message::new(
                "q",
                Routing::Anycast,
                Body::Bytes(Bytes::from(vec![b'x'; body_bytes])),
            )),
        })
    }

    fn size(e: &Entry) -> u64 {
        let (k, v) = encode_entry(e);
        (k.len() + v.map_or(0, |x| x.len())) as u64
    }

    #[test]
    fn keeps_the_latest_record_of_each_key_in_offset_order() {
        let mut v = View::default();
        put(&mut v, 0, activation(1));
        put(
            &mut v,
            1,
            Entry::Put(Record::Acked {
                id: Id::new(1, 5),
                queue: Id::new(1, 1),
            }),
        );
        put(&mut v, 2, activation(2));
        // A tombstone takes what it deletes with it and is not kept.
        put(
            &mut v,
            4,
            Entry::Tombstone(Key::Ref {
                message: Id::new(1, 5),
                queue: Id::new(1, 1),
            }),
        );
        // A tombstone for a key the copy never saw is not kept either.
        put(&mut v, 5, Entry::Tombstone(Key::Message(Id::new(1, 9))));
        assert_eq!(v.records_read, 5);
        assert_eq!(v.next_offset, 6);
        assert_eq!(v.len(), 1);
        assert_eq!(v.bytes(), size(&activation(2)));
        let kept: Vec<Entry> = v.into_entries().collect();
        assert_eq!(kept, vec![activation(2)]);
    }

    #[test]
    fn message_bodies_past_the_bound_are_kept_as_offsets() {
        let one = size(&stored(1, 1000));
        // Room for two bodies.
        let mut v = View::new(2 * one + one / 2);
        put(&mut v, 0, activation(1));
        for seq in 1..=5 {
            put(&mut v, seq as i64, stored(seq, 1000));
        }
        assert_eq!(v.paged(), 3);
        assert_eq!(v.len(), 6);
        assert_eq!(v.message_bytes(), 2 * one);
        // Consuming a kept one frees room for the next stored; consuming a
        // paged one just forgets its offset.
        put(&mut v, 6, Entry::Tombstone(Key::Message(Id::new(1, 1))));
        put(&mut v, 7, Entry::Tombstone(Key::Message(Id::new(1, 4))));
        assert_eq!(v.paged(), 2);
        put(&mut v, 8, stored(6, 1000));
        assert_eq!(v.paged(), 2, "kept in full: there was room");
        assert_eq!(v.message_bytes(), 2 * one);
        let offsets: Vec<(Id, i64)> = v.message_offsets().collect();
        assert_eq!(
            offsets,
            vec![
                (Id::new(1, 2), 2),
                (Id::new(1, 3), 3),
                (Id::new(1, 5), 5),
                (Id::new(1, 6), 8)
            ]
        );
        let parts = v.into_parts();
        assert_eq!(parts.paged, vec![3, 5]);
        let kept: Vec<i64> = parts.kept.keys().copied().collect();
        assert_eq!(kept, vec![0, 2, 8]);
        assert_eq!(parts.messages.len(), 4);
    }
}
