//! Which segments compaction may delete, kept up to date entry by entry.
//!
//! The rule (Kafka compaction applied to whole segments):
//! - an entry is dead once a later entry has the same key;
//! - the latest entry of a key, if it is a tombstone, is dead once no older
//!   remaining segment holds an entry with that key (nothing left to delete);
//! - a segment whose entries are all dead may be deleted.
//!
//! Per key we keep only its latest entry's segment and kind, plus `first`, a
//! lower bound on the oldest segment that may still hold the key. A
//! tombstone is treated as dead only when no segment remains in
//! `first..its segment`. That is conservative (a remaining segment in the
//! range may not hold the key) but needs no per-segment key lists, so memory
//! stays bounded by the keys whose latest entry is still on disk.
//!
//! Per segment we keep the number of latest puts it holds and the keys of the
//! latest tombstones it holds; a segment with no latest puts and only dead
//! tombstones is dead.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use super::Entry;

#[derive(Debug)]
struct KeyState {
    /// Segment of the latest entry.
    latest: u64,
    /// The latest entry is a tombstone.
    tombstone: bool,
    /// No segment older than this holds the key.
    first: u64,
}

#[derive(Debug, Default)]
struct SegmentState {
    /// Latest entries of their key that are puts: each keeps the segment.
    latest_puts: u64,
    /// Keys whose latest entry is a tombstone in this segment.
    latest_tombstones: HashSet<Bytes>,
}

#[derive(Debug, Default)]
pub struct Liveness {
    keys: HashMap<Bytes, KeyState>,
    segments: BTreeMap<u64, SegmentState>,
    live_puts: u64,
}

impl Liveness {
    /// Starts tracking segment `id` (a no-op if it is tracked already).
    pub fn add_segment(&mut self, id: u64) {
        debug_assert!(
            self.segments
                .keys()
                .next_back()
                .is_none_or(|last| *last <= id),
            "segments are added in id order"
        );
        self.segments.entry(id).or_default();
    }

    /// Applies one appended (or recovered) entry in segment `id`, the newest.
    pub fn record(&mut self, id: u64, entry: &Entry) {
        let tombstone = entry.value.is_none();
        let key = match self.keys.get_key_value(&entry.key) {
            Some((key, _)) => key.clone(),
            // Copy: the entry's key may be a slice of a large read buffer or
            // of a caller's message, which the index must not keep alive.
            None => Bytes::copy_from_slice(&entry.key),
        };
        match self.keys.get_mut(&key) {
            Some(state) => {
                if let Some(old) = self.segments.get_mut(&state.latest) {
                    if state.tombstone {
                        old.latest_tombstones.remove(&key);
                    } else {
                        old.latest_puts -= 1;
                        self.live_puts -= 1;
                    }
                } else {
                    debug_assert!(false, "key's latest segment {} is gone", state.latest);
                }
                state.latest = id;
                state.tombstone = tombstone;
            }
            None => {
                self.keys.insert(
                    key.clone(),
                    KeyState {
                        latest: id,
                        tombstone,
                        first: id,
                    },
                );
            }
        }
        let seg = self.segments.entry(id).or_default();
        if tombstone {
            seg.latest_tombstones.insert(key);
        } else {
            seg.latest_puts += 1;
            self.live_puts += 1;
        }
    }

    /// Keys whose latest entry is a put.
    pub fn live_entries(&self) -> u64 {
        self.live_puts
    }

    /// Keys tracked, including tombstoned ones still on disk.
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Whether every entry of segment `id` is dead given the segments that
    /// remain right now. Compaction asks oldest first and removes as it goes,
    /// so a tombstone becomes dead in the same pass that deletes what it
    /// deleted.
    pub fn is_dead(&self, id: u64) -> bool {
        let Some(seg) = self.segments.get(&id) else {
            return false;
        };
        seg.latest_puts == 0
            && seg.latest_tombstones.iter().all(|key| {
                let first = self.keys.get(key).map_or(id, |k| k.first);
                self.segments.range(first..id).next().is_none()
            })
    }

    /// Forgets segment `id` after its file was deleted. Only dead segments
    /// are removed, so its tombstoned keys now have no entry on disk at all.
    pub fn remove_segment(&mut self, id: u64) {
        let Some(seg) = self.segments.remove(&id) else {
            return;
        };
        debug_assert_eq!(seg.latest_puts, 0, "removed segment {id} held live entries");
        for key in seg.latest_tombstones {
            self.keys.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Some(Bytes::from_static(b"v")),
        }
    }

    fn del(k: &str) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: None,
        }
    }

    #[test]
    fn superseded_segment_is_dead_and_live_one_is_not() {
        let mut l = Liveness::default();
        l.add_segment(1);
        l.record(1, &put("a"));
        l.record(1, &put("b"));
        l.add_segment(2);
        l.record(2, &put("a"));
        assert!(!l.is_dead(1), "b is still live in 1");
        l.record(2, &put("b"));
        assert!(l.is_dead(1));
        assert!(!l.is_dead(2));
        assert_eq!(l.live_entries(), 2);
    }

    #[test]
    fn tombstone_dies_only_after_what_it_deletes() {
        let mut l = Liveness::default();
        l.add_segment(1);
        l.record(1, &put("a"));
        l.record(1, &put("x"));
        l.add_segment(2);
        l.record(2, &del("a"));
        l.add_segment(3);
        assert!(!l.is_dead(2), "segment 1 still holds a");
        l.record(3, &put("x"));
        assert!(l.is_dead(1));
        l.remove_segment(1);
        assert!(l.is_dead(2));
        l.remove_segment(2);
        assert_eq!(l.tracked_keys(), 1);
        assert_eq!(l.live_entries(), 1);
    }
}
