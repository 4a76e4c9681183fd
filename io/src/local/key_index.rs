//! The compaction index's key map. Nearly every key is a message's
//! (`m/EPOCH:SEQ`), one per message in the journal, paged ones included;
//! those are kept by id in a [`ChunkMap`] (ids arrive in order, so its
//! chunks are full: the id and the state, no hash slots to spare and no
//! copy of the key on the heap). Every other key is kept by its bytes in a
//! hash map. A backlog of a million messages took about 200 bytes of index
//! per message with all keys hashed, and about 70 this way.

use std::collections::HashMap;

use bytes::Bytes;
use halyard_core::chunk_map::ChunkMap;
use halyard_core::ids::Id;
use halyard_core::journal::codec::encode_key;
use halyard_core::journal::Key;

/// A handle on an indexed key (what a segment's tombstone list keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum IndexKey {
    Message(Id),
    /// The index's own copy of the key (a handle, not another copy).
    Other(Bytes),
}

impl IndexKey {
    /// The key's bytes as the journal writes them.
    pub(super) fn to_bytes(&self) -> Bytes {
        match self {
            IndexKey::Message(id) => encode_key(&Key::Message(*id)),
            IndexKey::Other(b) => b.clone(),
        }
    }
}

#[derive(Debug)]
pub(super) struct KeyIndex<S> {
    messages: ChunkMap<Id, S>,
    others: HashMap<Bytes, S>,
}

impl<S> Default for KeyIndex<S> {
    fn default() -> Self {
        KeyIndex {
            messages: ChunkMap::new(),
            others: HashMap::new(),
        }
    }
}

impl<S> KeyIndex<S> {
    pub(super) fn get(&self, key: &[u8]) -> Option<&S> {
        match message_id(key) {
            Some(id) => self.messages.get(&id),
            None => self.others.get(key),
        }
    }

    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut S> {
        match message_id(key) {
            Some(id) => self.messages.get_mut(&id),
            None => self.others.get_mut(key),
        }
    }

    /// Indexes a key not indexed yet.
    pub(super) fn insert(&mut self, key: &[u8], state: S) {
        match message_id(key) {
            Some(id) => {
                let old = self.messages.insert(id, state);
                debug_assert!(old.is_none(), "key {id} indexed twice");
            }
            None => {
                // Copy: the key may be a slice of a large read buffer or of
                // a caller's message, which the index must not keep alive.
                let old = self.others.insert(Bytes::copy_from_slice(key), state);
                debug_assert!(old.is_none(), "key {key:?} indexed twice");
            }
        }
    }

    /// The handle of an indexed key.
    pub(super) fn handle(&self, key: &[u8]) -> Option<IndexKey> {
        match message_id(key) {
            Some(id) => self
                .messages
                .contains_key(&id)
                .then_some(IndexKey::Message(id)),
            None => self
                .others
                .get_key_value(key)
                .map(|(k, _)| IndexKey::Other(k.clone())),
        }
    }

    pub(super) fn get_by(&self, key: &IndexKey) -> Option<&S> {
        match key {
            IndexKey::Message(id) => self.messages.get(id),
            IndexKey::Other(b) => self.others.get(b),
        }
    }

    pub(super) fn remove_by(&mut self, key: &IndexKey) {
        match key {
            IndexKey::Message(id) => {
                self.messages.remove(id);
            }
            IndexKey::Other(b) => {
                self.others.remove(b);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.messages.len() + self.others.len()
    }

    /// Every key with its state (message keys first, by id).
    pub(super) fn iter(&self) -> impl Iterator<Item = (IndexKey, &S)> + '_ {
        let messages = self
            .messages
            .iter()
            .map(|(id, s)| (IndexKey::Message(*id), s));
        let others = self
            .others
            .iter()
            .map(|(k, s)| (IndexKey::Other(k.clone()), s));
        messages.chain(others)
    }

    /// Room of the hash map (the chunk map gives its room back by itself).
    #[cfg(test)]
    pub(super) fn others_capacity(&self) -> usize {
        self.others.capacity()
    }

    /// Gives the hash map's room back after many keys left: it is then
    /// bounded by the keys on disk, not by the most there ever were.
    pub(super) fn shrink_others(&mut self, ratio: usize, capacity_min: usize) {
        let capacity = self.others.capacity();
        if capacity > capacity_min && capacity > ratio * self.others.len() {
            self.others
                .shrink_to((2 * self.others.len()).max(capacity_min / 2));
        }
    }
}

/// The id of a message key written exactly as `encode_key` writes it
/// (`m/` then the epoch and the sequence in canonical decimal); `None` for
/// any other key, so that two different byte strings never share an entry.
fn message_id(key: &[u8]) -> Option<Id> {
    let rest = key.strip_prefix(b"m/")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let epoch = canonical_decimal(&rest[..colon])?;
    let seq = canonical_decimal(&rest[colon + 1..])?;
    Some(Id::new(u32::try_from(epoch).ok()?, seq))
}

/// Digits without a leading zero (but "0"), within a u64.
fn canonical_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_message_keys_are_ids() {
        for id in [
            Id::new(0, 0),
            Id::new(7, 123_456),
            Id::new(u32::MAX, u64::MAX),
        ] {
            assert_eq!(message_id(&encode_key(&Key::Message(id))), Some(id));
        }
        for other in [
            &b"m/07:1"[..],
            b"m/7:01",
            b"m/7:",
            b"m/:1",
            b"m/7:1x",
            b"m/4294967296:1",
            b"m/1:18446744073709551616",
            b"r/1:2/1:3",
            b"q/orders",
            b"m/1:2:3",
        ] {
            assert_eq!(
                message_id(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn message_and_other_keys_live_side_by_side() {
        let mut index = KeyIndex::default();
        let m = encode_key(&Key::Message(Id::new(3, 9)));
        index.insert(&m, 1);
        index.insert(b"m/3:09", 2);
        index.insert(b"q/orders", 3);
        assert_eq!(index.len(), 3);
        assert_eq!(index.get(&m), Some(&1));
        assert_eq!(index.get(b"m/3:09"), Some(&2));
        assert_eq!(index.handle(&m), Some(IndexKey::Message(Id::new(3, 9))));
        let other = index.handle(b"q/orders").expect("indexed");
        assert_eq!(other.to_bytes(), Bytes::from_static(b"q/orders"));
        *index.get_mut(b"q/orders").expect("indexed") += 10;
        assert_eq!(index.get_by(&other), Some(&13));
        index.remove_by(&IndexKey::Message(Id::new(3, 9)));
        assert_eq!(index.get(&m), None);
        let keys: Vec<Bytes> = index.iter().map(|(k, _)| k.to_bytes()).collect();
        assert_eq!(keys.len(), 2);
    }
}
