//! The duplicate-detection cache of one address.

use std::collections::btree_map::Entry;
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
/// not something a client can do by trying). The ids themselves live once,
/// in `slots`; the map and the order hold slot numbers.
#[derive(Clone, Debug)]
pub(crate) struct DupCache {
    /// Slots of the remembered ids, oldest first.
    order: VecDeque<u32>,
    ids: BTreeMap<u64, u32>,
    collided: Vec<u32>,
    slots: Vec<Option<(String, Id)>>,
    free: Vec<u32>,
    /// [`hash`], or in tests one that makes ids collide.
    hash: fn(&str) -> u64,
}

impl Default for DupCache {
    fn default() -> DupCache {
        DupCache {
            order: VecDeque::new(),
            ids: BTreeMap::new(),
            collided: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hash,
        }
    }
}

/// Fills a free slot (or a new one) with `dup_id`.
fn new_slot(
    slots: &mut Vec<Option<(String, Id)>>,
    free: &mut Vec<u32>,
    dup_id: &str,
    message: Id,
) -> u32 {
    let filled = Some((dup_id.to_owned(), message));
    match free.pop() {
        Some(s) => {
            slots[s as usize] = filled;
            s
        }
        None => {
            // Bounded by the cache size, far below u32::MAX.
            let s = u32::try_from(slots.len()).expect("dup cache over 4G ids");
            slots.push(filled);
            s
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

    fn slot(&self, slot: u32) -> &(String, Id) {
        self.slots[slot as usize]
            .as_ref()
            .expect("a remembered slot is filled")
    }

    /// The slot holding `dup_id`, if remembered.
    fn find(&self, dup_id: &str) -> Option<u32> {
        let owner = *self.ids.get(&(self.hash)(dup_id))?;
        if self.slot(owner).0 == dup_id {
            return Some(owner);
        }
        self.collided
            .iter()
            .copied()
            .find(|s| self.slot(*s).0 == dup_id)
    }

    /// The message stored under `dup_id`, if remembered.
    pub(crate) fn get(&self, dup_id: &str) -> Option<Id> {
        self.find(dup_id).map(|s| self.slot(s).1)
    }

    /// Remembers `dup_id` for `message` (the newest); an id already
    /// remembered keeps its place and gets the new message.
    pub(crate) fn insert(&mut self, dup_id: &str, message: Id) {
        // One hash and one search of the map: this runs per message.
        let s = match self.ids.entry((self.hash)(dup_id)) {
            Entry::Vacant(v) => {
                *v.insert(new_slot(&mut self.slots, &mut self.free, dup_id, message))
            }
            Entry::Occupied(owner) => {
                let found = std::iter::once(*owner.get())
                    .chain(self.collided.iter().copied())
                    .find(|s| {
                        self.slots[*s as usize]
                            .as_ref()
                            .is_some_and(|(id, _)| id == dup_id)
                    });
                if let Some((_, m)) = found.and_then(|s| self.slots[s as usize].as_mut()) {
                    *m = message;
                    return;
                }
                let s = new_slot(&mut self.slots, &mut self.free, dup_id, message);
                self.collided.push(s);
                s
            }
        };
        self.order.push_back(s);
    }

    /// Forgets `dup_id`; true if it was remembered.
    pub(crate) fn remove(&mut self, dup_id: &str) -> bool {
        let Some(s) = self.find(dup_id) else {
            return false;
        };
        self.order.retain(|o| *o != s);
        self.forget(s);
        true
    }

    /// Forgets the oldest id and returns it.
    pub(crate) fn pop_oldest(&mut self) -> Option<String> {
        let s = self.order.pop_front()?;
        Some(self.forget(s))
    }

    /// Takes slot `s` out of the map (not the order) and frees it.
    fn forget(&mut self, s: u32) -> String {
        let (id, _) = self.slots[s as usize]
            .take()
            .expect("a remembered slot is filled");
        self.free.push(s);
        if let Some(i) = self.collided.iter().position(|c| *c == s) {
            self.collided.swap_remove(i);
            return id;
        }
        let h = (self.hash)(&id);
        debug_assert_eq!(self.ids.get(&h), Some(&s));
        self.ids.remove(&h);
        // A collided id may now take the free place in the map.
        let hash = self.hash;
        let slots = &self.slots;
        if let Some(i) = self.collided.iter().position(|c| {
            slots[*c as usize]
                .as_ref()
                .is_some_and(|(other, _)| hash(other) == h)
        }) {
            let moved = self.collided.swap_remove(i);
            self.ids.insert(h, moved);
        }
        id
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
