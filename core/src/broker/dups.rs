//! The duplicate-detection cache of one address.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::ids::Id;

/// Remembered duplicate-detection ids of one address, oldest first.
///
/// Every stored message looks its id up and most add one, so the map is
/// keyed by a 64-bit hash of the id rather than by the string: a lookup
/// compares integers, not a dozen strings. The hash has fixed keys, so the
/// simulator stays deterministic; nothing iterates the map, so the hash
/// never decides behaviour. Ids whose hashes collide with a different id
/// live in `collided` (in practice never: finding 64-bit collisions is
/// not something a client can do by trying).
#[derive(Clone, Debug)]
pub(crate) struct DupCache {
    order: VecDeque<String>,
    ids: BTreeMap<u64, (String, Id)>,
    collided: Vec<(String, Id)>,
    /// [`hash`], or in tests one that makes ids collide.
    hash: fn(&str) -> u64,
}

impl Default for DupCache {
    fn default() -> DupCache {
        DupCache {
            order: VecDeque::new(),
            ids: BTreeMap::new(),
            collided: Vec::new(),
            hash,
        }
    }
}

fn hash(dup_id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    dup_id.hash(&mut h);
    h.finish()
}

impl DupCache {
    /// How many ids are remembered.
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.order.len(), self.ids.len() + self.collided.len());
        self.order.len()
    }

    /// The message stored under `dup_id`, if remembered.
    pub(crate) fn get(&self, dup_id: &str) -> Option<Id> {
        match self.ids.get(&(self.hash)(dup_id)) {
            Some((id, m)) if id == dup_id => Some(*m),
            Some(_) => self
                .collided
                .iter()
                .find(|(id, _)| id == dup_id)
                .map(|(_, m)| *m),
            None => None,
        }
    }

    /// Remembers `dup_id` for `message` (the newest); an id already
    /// remembered keeps its place and gets the new message.
    pub(crate) fn insert(&mut self, dup_id: &str, message: Id) {
        let h = (self.hash)(dup_id);
        match self.ids.get_mut(&h) {
            Some((id, m)) if id == dup_id => *m = message,
            Some(_) => match self.collided.iter_mut().find(|(id, _)| id == dup_id) {
                Some((_, m)) => *m = message,
                None => {
                    self.collided.push((dup_id.to_owned(), message));
                    self.order.push_back(dup_id.to_owned());
                }
            },
            None => {
                self.ids.insert(h, (dup_id.to_owned(), message));
                self.order.push_back(dup_id.to_owned());
            }
        }
    }

    /// Forgets `dup_id`; true if it was remembered.
    pub(crate) fn remove(&mut self, dup_id: &str) -> bool {
        if !self.forget(dup_id) {
            return false;
        }
        self.order.retain(|d| d != dup_id);
        true
    }

    /// Forgets the oldest id and returns it.
    pub(crate) fn pop_oldest(&mut self) -> Option<String> {
        let old = self.order.pop_front()?;
        let forgotten = self.forget(&old);
        debug_assert!(forgotten, "the order lists an id the map lacks: {old}");
        Some(old)
    }

    /// Takes `dup_id` out of the map (not the order).
    fn forget(&mut self, dup_id: &str) -> bool {
        if let Some(i) = self.collided.iter().position(|(id, _)| id == dup_id) {
            self.collided.swap_remove(i);
            return true;
        }
        let h = (self.hash)(dup_id);
        if self.ids.get(&h).is_some_and(|(id, _)| id == dup_id) {
            self.ids.remove(&h);
            // A collided id may now take the free slot.
            let hash = self.hash;
            if let Some(i) = self.collided.iter().position(|(id, _)| hash(id) == h) {
                let moved = self.collided.swap_remove(i);
                self.ids.insert(h, moved);
            }
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::new(1, n)
    }

    #[test]
    fn remembers_replaces_and_forgets_in_order() {
        let mut c = DupCache::default();
        c.insert("a", id(1));
        c.insert("b", id(2));
        c.insert("a", id(3));
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c")),
            (Some(id(3)), Some(id(2)), None)
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.pop_oldest().as_deref(), Some("a"));
        assert_eq!(c.get("a"), None);
        assert!(c.remove("b"));
        assert!(!c.remove("b"));
        assert_eq!((c.len(), c.pop_oldest()), (0, None));
    }

    #[test]
    fn colliding_ids_are_kept_apart() {
        // Every id hashes alike: one owns the slot, the others collide.
        let mut c = DupCache {
            hash: |_| 7,
            ..DupCache::default()
        };
        c.insert("a", id(1));
        c.insert("b", id(2));
        c.insert("c", id(3));
        c.insert("b", id(4));
        assert_eq!((c.collided.len(), c.len()), (2, 3));
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c"), c.get("d")),
            (Some(id(1)), Some(id(4)), Some(id(3)), None)
        );
        // Forgetting the slot's owner moves a collided id into the slot.
        assert_eq!(c.pop_oldest().as_deref(), Some("a"));
        assert_eq!((c.ids.len(), c.collided.len()), (1, 1));
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c")),
            (None, Some(id(4)), Some(id(3)))
        );
        assert!(c.remove("c"));
        assert!(!c.remove("c"));
        assert_eq!((c.get("b"), c.len()), (Some(id(4)), 1));
        assert_eq!(c.pop_oldest().as_deref(), Some("b"));
        assert_eq!((c.len(), c.ids.len(), c.collided.len()), (0, 0, 0));
    }
}
