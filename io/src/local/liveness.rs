//! Which entries are live, kept up to date entry by entry, for compaction.
//!
//! The rule (Kafka compaction):
//! - an entry is dead once a later entry has the same key;
//! - the latest entry of a key, if it is a tombstone, is dead once no older
//!   remaining segment holds an entry with that key (nothing left to delete);
//! - a segment whose entries are all dead may be deleted;
//! - in a prefix of the oldest segments every tombstone is dead (nothing
//!   older remains for it to delete), and so is every put that is not the
//!   latest entry of its key: cleaning rewrites such a prefix into one
//!   segment holding only its latest puts (see `LocalJournal::compact`).
//!
//! Per key we keep where its latest entry is (segment, offset of its batch,
//! index in the batch), its kind and size, plus `first`, a lower bound on the
//! oldest segment that may still hold the key. A tombstone is treated as
//! dead only when no segment remains in `first..its segment`. That is
//! conservative (a remaining segment in the range may not hold the key) but
//! needs no per-segment key lists.
//!
//! A cleaning of the prefix `a..=k` leaves one segment at or below `k`: the
//! cleaned `a`, holding exactly the keys it kept. Every other key whose
//! `first` is at or below `k` now has no entry before `next`, the oldest
//! segment after the prefix. Rather than visit those keys, the index
//! remembers the latest cleaning (its `k`, `next` and a generation number
//! stamped on the keys it kept) and reads `first` through it (see
//! `effective_first`); only the per-segment tombstone counts below are
//! updated, one entry per segment.
//!
//! Per segment we keep the number and bytes of the latest puts it holds, the
//! keys of the tombstones written to it (some may since be superseded: they
//! are checked when used), and how many of its latest tombstones have each
//! (effective) value of `first`. Whether a segment is dead is then one look
//! at its smallest `first`: no pass over its keys, so `compact` costs
//! O(segments) plus what it deletes or cleans.
//!
//! Memory is bounded by what is on disk: one state per key that still has an
//! entry in some segment, and one key handle per tombstone still on disk.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::entry::Entry;
use super::format;
use super::key_index::{IndexKey, KeyIndex};

/// The key map is shrunk once it is this many times larger than needed ...
const KEYS_SHRINK_RATIO: usize = 4;
/// ... and holds room for at least this many keys (small maps never shrink).
const KEYS_SHRINK_CAPACITY_MIN: usize = 4096;

/// Where an entry is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    /// Offset of the entry's batch frame in the segment file.
    pub offset: u64,
    /// Index of the entry in its batch.
    pub index: u32,
}

/// Where entry `index` of the batch at `offset` in segment `id` is. Batches
/// hold at most `BATCH_ENTRIES_MAX` entries, so the index fits.
pub(super) fn position(id: u64, offset: u64, index: usize) -> Position {
    Position {
        segment: id,
        offset,
        index: index as u32,
    }
}

#[derive(Debug)]
struct KeyState {
    /// The latest entry.
    latest: Position,
    /// Payload bytes of the latest entry (`format::entry_bytes`).
    bytes: u64,
    /// The latest entry is a tombstone.
    tombstone: bool,
    /// No segment older than this holds the key (read through
    /// `effective_first`).
    first: u64,
    /// Generation of the cleaning that last kept this key (0: none).
    kept_by: u64,
}

#[derive(Debug, Default)]
struct SegmentState {
    /// Latest entries of their key that are puts: each keeps the segment.
    latest_puts: u64,
    /// Payload bytes of those puts.
    latest_put_bytes: u64,
    /// Keys of the tombstones recorded here, oldest first. A key whose
    /// latest entry has moved on is skipped when the list is used.
    tombstone_keys: Vec<IndexKey>,
    /// For the keys whose latest entry is a tombstone here: how many have
    /// each effective value of `first`.
    tombstone_firsts: BTreeMap<u64, u64>,
}

impl SegmentState {
    fn add_tombstone_first(&mut self, first: u64) {
        *self.tombstone_firsts.entry(first).or_default() += 1;
    }

    fn remove_tombstone_first(&mut self, first: u64) {
        match self.tombstone_firsts.get_mut(&first) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.tombstone_firsts.remove(&first);
            }
            None => debug_assert!(false, "tombstone with first {first} was not counted"),
        }
    }
}

/// What the index says about one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentCounts {
    /// Entries that are the latest put of their key.
    pub live_entries: u64,
    /// Payload bytes of those entries.
    pub live_bytes: u64,
}

/// A live entry a cleaning must copy.
#[derive(Clone, Debug)]
pub struct LiveEntry {
    pub at: Position,
    /// The index's handle on the key.
    pub key: Bytes,
    /// Payload bytes the index recorded for it.
    pub bytes: u64,
}

/// One entry a cleaning copied.
#[derive(Debug, Clone)]
pub struct Kept {
    pub key: Bytes,
    /// Its place when the cleaning was planned.
    pub was: Position,
    /// Its place in the cleaned segment.
    pub now: Position,
}

/// The latest cleaning: below `last`, only the keys it kept (stamped with
/// `generation`) may still have an entry, in the cleaned segment.
#[derive(Debug, Default, Clone, Copy)]
struct Floor {
    generation: u64,
    /// Newest segment of the cleaned prefix (0: no cleaning yet).
    last: u64,
    /// Oldest segment after the prefix when it was cleaned.
    next: u64,
}

#[derive(Debug, Default)]
pub struct Liveness {
    keys: KeyIndex<KeyState>,
    segments: BTreeMap<u64, SegmentState>,
    live_puts: u64,
    floor: Floor,
    /// Keys whose latest entry was a tombstone in a segment that is gone,
    /// with that segment's id: dropped from `keys` a slice at a time
    /// (`forget_some`), so that removing a segment of a hundred thousand
    /// tombstones does not hold appends. Until then such a key is *stale*
    /// (`is_stale`): it has no entry on disk, and a new entry of it starts
    /// afresh.
    to_forget: VecDeque<(u64, Vec<IndexKey>)>,
    /// Planted bug (tests only): a key superseded while a cleaning ran is
    /// not recorded as present in the cleaned segment, so its tombstone may
    /// go before the dead copy does.
    #[cfg(feature = "testkit")]
    pub(super) planted_forget_superseded_copies: bool,
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

    /// Applies one appended (or recovered) entry at `at`, in the newest
    /// segment.
    pub fn record(&mut self, at: Position, entry: &Entry) {
        let id = at.segment;
        let tombstone = entry.value.is_none();
        let bytes = format::entry_bytes(entry);
        let floor = self.floor;
        let first = match self.keys.get_mut(&entry.key) {
            Some(state) if is_stale(&self.segments, &floor, state) => {
                // Its tombstone's segment is gone: nothing of it is on disk.
                *state = KeyState {
                    latest: at,
                    bytes,
                    tombstone,
                    first: id,
                    kept_by: 0,
                };
                id
            }
            Some(state) => {
                let first = effective_first(&floor, state);
                // The previous latest entry stops counting where it is.
                match self.segments.get_mut(&state.latest.segment) {
                    Some(old) if state.tombstone => old.remove_tombstone_first(first),
                    Some(old) => {
                        old.latest_puts -= 1;
                        old.latest_put_bytes -= state.bytes;
                        self.live_puts -= 1;
                    }
                    None => debug_assert!(
                        false,
                        "key's latest segment {} is gone",
                        state.latest.segment
                    ),
                }
                state.latest = at;
                state.bytes = bytes;
                state.tombstone = tombstone;
                state.first = first;
                first
            }
            None => {
                self.keys.insert(
                    &entry.key,
                    KeyState {
                        latest: at,
                        bytes,
                        tombstone,
                        first: id,
                        kept_by: 0,
                    },
                );
                id
            }
        };
        let seg = self.segments.entry(id).or_default();
        if tombstone {
            seg.add_tombstone_first(first);
            // The index's own copy of the key: a handle, not another copy.
            if let Some(key) = self.keys.handle(&entry.key) {
                seg.tombstone_keys.push(key);
            }
        } else {
            seg.latest_puts += 1;
            seg.latest_put_bytes += bytes;
            self.live_puts += 1;
        }
    }

    /// Where the latest entry of `key` is, if it is a put (paging reads
    /// a message back from there).
    pub fn latest_put(&self, key: &[u8]) -> Option<Position> {
        self.keys
            .get(key)
            .filter(|state| !state.tombstone)
            .map(|state| state.latest)
    }

    /// Keys whose latest entry is a put.
    pub fn live_entries(&self) -> u64 {
        self.live_puts
    }

    /// Keys tracked, including tombstoned ones still on disk.
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// What the index knows about segment `id` (zeros if untracked).
    pub fn counts(&self, id: u64) -> SegmentCounts {
        self.segments
            .get(&id)
            .map_or(SegmentCounts::default(), |s| SegmentCounts {
                live_entries: s.latest_puts,
                live_bytes: s.latest_put_bytes,
            })
    }

    /// Whether every entry of segment `id` is dead given the segments that
    /// remain right now. Compaction asks oldest first and removes as it goes,
    /// so a tombstone becomes dead in the same pass that deletes what it
    /// deleted. O(log segments).
    pub fn is_dead(&self, id: u64) -> bool {
        let Some(seg) = self.segments.get(&id) else {
            return false;
        };
        seg.latest_puts == 0
            && seg
                .tombstone_firsts
                .keys()
                .next()
                .is_none_or(|&first| self.segments.range(first..id).next().is_none())
    }

    /// Forgets segment `id` after its file was deleted. Only dead segments
    /// are removed, so its tombstoned keys now have no entry on disk at all.
    pub fn remove_segment(&mut self, id: u64) {
        let Some(seg) = self.segments.remove(&id) else {
            return;
        };
        debug_assert_eq!(seg.latest_puts, 0, "removed segment {id} held live entries");
        self.to_forget.push_back((id, seg.tombstone_keys));
    }

    /// The live entries of segments `first..=last`, in file order: what a
    /// cleaning of that prefix keeps. Visits every key once; the prefix is
    /// every sealed segment, so the keys it does not keep or drop are only
    /// those of the current segment.
    pub fn live_in(&self, first: u64, last: u64) -> Vec<LiveEntry> {
        let mut live: Vec<LiveEntry> = self
            .keys
            .iter()
            .filter(|(_, s)| !s.tombstone && (first..=last).contains(&s.latest.segment))
            .map(|(key, s)| LiveEntry {
                at: s.latest,
                key: key.to_bytes(),
                bytes: s.bytes,
            })
            .collect();
        live.sort_unstable_by_key(|e| e.at);
        live
    }

    /// Applies a cleaning whose result replaced the prefix `first..=last` on
    /// disk: segment `first` now holds exactly the `kept` entries (each with
    /// its old and new place), the other prefix segments are gone, and `next`
    /// is the oldest segment after the prefix. The cleaning ran while entries
    /// were appended after the prefix: a kept key whose latest entry is no
    /// longer the copied one has a dead copy in segment `first`, which a
    /// later tombstone of the key must outlive. Returns how many kept entries
    /// are still the latest of their key.
    pub fn finish_clean(&mut self, first: u64, last: u64, next: u64, kept: Vec<Kept>) -> u64 {
        debug_assert!(next > last, "next segment {next} inside the prefix");
        let prefix: Vec<u64> = self
            .segments
            .range(first..=last)
            .map(|(id, _)| *id)
            .collect();
        // Keys whose latest entry is a tombstone in the prefix have no entry
        // left anywhere. The prefix's latest puts were all copied.
        for id in prefix {
            if let Some(seg) = self.segments.remove(&id) {
                self.to_forget.push_back((id, seg.tombstone_keys));
            }
        }
        let old_floor = self.floor;
        let generation = old_floor.generation + 1;
        let mut cleaned = SegmentState::default();
        // Tombstones of superseded copies: their segment and the `first`
        // they were counted under.
        let mut outlive: Vec<(u64, u64)> = Vec::new();
        for k in kept {
            let Some(state) = self.keys.get_mut(&k.key) else {
                debug_assert!(false, "kept key vanished");
                continue;
            };
            debug_assert_eq!(k.now.segment, first);
            if state.latest == k.was {
                debug_assert!(!state.tombstone);
                state.latest = k.now;
                cleaned.latest_puts += 1;
                cleaned.latest_put_bytes += state.bytes;
            } else {
                // Superseded while the cleaning ran, by an entry after the
                // prefix.
                debug_assert!(state.latest.segment > last);
                #[cfg(feature = "testkit")]
                if self.planted_forget_superseded_copies {
                    continue;
                }
                if state.tombstone {
                    outlive.push((state.latest.segment, effective_first(&old_floor, state)));
                }
            }
            state.first = first;
            state.kept_by = generation;
        }
        let kept_live = cleaned.latest_puts;
        self.segments.insert(first, cleaned);
        // Every other key with `first <= last` has no entry before `next`
        // now: raise it there, in the counts now and in the keys as they are
        // read (`effective_first`). The counts of the prefix are gone, and
        // the keys the cleaning kept are puts, or the tombstones moved back
        // to `first` below.
        self.floor = Floor {
            generation,
            last,
            next,
        };
        for seg in self.segments.range_mut(next..).map(|(_, s)| s) {
            let mut moved = 0;
            while let Some(entry) = seg.tombstone_firsts.first_entry() {
                if *entry.key() > last {
                    break;
                }
                moved += entry.remove();
            }
            if moved > 0 {
                *seg.tombstone_firsts.entry(next).or_default() += moved;
            }
        }
        for (id, was_first) in outlive {
            let Some(seg) = self.segments.get_mut(&id) else {
                debug_assert!(false, "tombstone segment {id} is gone");
                continue;
            };
            seg.remove_tombstone_first(if was_first <= last { next } else { was_first });
            seg.add_tombstone_first(first);
        }
        kept_live
    }

    /// Drops up to `budget` of the keys left by removed segments (those
    /// whose latest entry is still the tombstone there); gives memory back
    /// once none is left. Returns how many keys it looked at.
    pub fn forget_some(&mut self, budget: usize) -> usize {
        let mut looked = 0;
        while looked < budget {
            let Some((id, keys)) = self.to_forget.front_mut() else {
                break;
            };
            let id = *id;
            let take = keys.len().min(budget - looked);
            // Oldest first: the keys of one segment are mostly in order.
            let slice: Vec<IndexKey> = keys.drain(..take).collect();
            if keys.is_empty() {
                self.to_forget.pop_front();
            }
            looked += take;
            for key in slice {
                if self
                    .keys
                    .get_by(&key)
                    .is_some_and(|s| s.latest.segment == id && s.tombstone)
                {
                    self.keys.remove_by(&key);
                }
            }
            if self.to_forget.is_empty() {
                self.maybe_shrink();
            }
        }
        looked
    }

    /// Keys of removed segments not dropped yet.
    pub fn keys_to_forget(&self) -> usize {
        self.to_forget.iter().map(|(_, k)| k.len()).sum()
    }

    /// Gives memory back after many keys left, so the map is bounded by the
    /// keys on disk and not by the most there ever were. Shrinking rehashes
    /// what is left, which happens only after at least as many removals.
    fn maybe_shrink(&mut self) {
        self.keys
            .shrink_others(KEYS_SHRINK_RATIO, KEYS_SHRINK_CAPACITY_MIN);
    }

    /// Checks the per-segment counters against the keys. O(keys): for
    /// tests.
    #[cfg(any(test, feature = "testkit"))]
    pub fn check(&self) -> Result<(), String> {
        let mut puts: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut firsts: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
        for (key, s) in self.keys.iter() {
            if is_stale(&self.segments, &self.floor, s) {
                // Waiting in `to_forget`.
                continue;
            }
            let first = effective_first(&self.floor, s);
            if first > s.latest.segment || !self.segments.contains_key(&s.latest.segment) {
                return Err(format!("key {key:?}: first {first}, latest {:?}", s.latest));
            }
            if s.tombstone {
                *firsts
                    .entry(s.latest.segment)
                    .or_default()
                    .entry(first)
                    .or_default() += 1;
            } else {
                let p = puts.entry(s.latest.segment).or_default();
                p.0 += 1;
                p.1 += s.bytes;
            }
        }
        for (id, seg) in &self.segments {
            let p = puts.get(id).copied().unwrap_or_default();
            if (seg.latest_puts, seg.latest_put_bytes) != p {
                return Err(format!(
                    "segment {id} counts {} live puts ({} bytes), the keys say {p:?}",
                    seg.latest_puts, seg.latest_put_bytes
                ));
            }
            let f = firsts.remove(id).unwrap_or_default();
            if seg.tombstone_firsts != f {
                return Err(format!(
                    "segment {id} counts tombstone firsts {:?}, the keys say {f:?}",
                    seg.tombstone_firsts
                ));
            }
        }
        let total: u64 = self.segments.values().map(|s| s.latest_puts).sum();
        if self.live_puts != total {
            return Err(format!(
                "{} live puts, segments hold {total}",
                self.live_puts
            ));
        }
        Ok(())
    }
}

/// Whether a key's latest entry is a tombstone in a segment that is gone: a
/// deleted one, or one a cleaning replaced (the cleaned segment, which keeps
/// the first id of its prefix, holds puts only).
fn is_stale(segments: &BTreeMap<u64, SegmentState>, floor: &Floor, state: &KeyState) -> bool {
    state.tombstone
        && (state.latest.segment <= floor.last || !segments.contains_key(&state.latest.segment))
}

/// `state.first` as the latest cleaning left it: a key that cleaning did not
/// keep has no entry at or below the cleaned prefix's last segment.
fn effective_first(floor: &Floor, state: &KeyState) -> u64 {
    if state.first <= floor.last && state.kept_by != floor.generation {
        floor.next
    } else {
        state.first
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

    /// Records each entry as a batch of its own, at made-up growing offsets.
    fn rec(l: &mut Liveness, id: u64, entries: &[Entry]) {
        static NEXT_OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(24);
        l.add_segment(id);
        for e in entries {
            let offset = NEXT_OFFSET.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
            l.record(
                Position {
                    segment: id,
                    offset,
                    index: 0,
                },
                e,
            );
        }
    }

    #[test]
    fn superseded_segment_is_dead_and_live_one_is_not() {
        let mut l = Liveness::default();
        rec(&mut l, 1, &[put("a"), put("b")]);
        rec(&mut l, 2, &[put("a")]);
        assert!(!l.is_dead(1), "b is still live in 1");
        rec(&mut l, 2, &[put("b")]);
        assert!(l.is_dead(1));
        assert!(!l.is_dead(2));
        assert_eq!(l.live_entries(), 2);
        l.check().expect("index consistent");
    }

    #[test]
    fn tombstone_dies_only_after_what_it_deletes() {
        let mut l = Liveness::default();
        rec(&mut l, 1, &[put("a"), put("x")]);
        rec(&mut l, 2, &[del("a")]);
        rec(&mut l, 3, &[]);
        assert!(!l.is_dead(2), "segment 1 still holds a");
        rec(&mut l, 3, &[put("x")]);
        assert!(l.is_dead(1));
        l.remove_segment(1);
        assert!(l.is_dead(2));
        l.remove_segment(2);
        l.forget_some(usize::MAX);
        assert_eq!(l.tracked_keys(), 1);
        assert_eq!(l.live_entries(), 1);
        l.check().expect("index consistent");
    }

    /// Cleans `first..=last` as the journal would: keeps `live_in`, in order.
    fn clean(l: &mut Liveness, first: u64, last: u64, next: u64) -> Vec<String> {
        let live = l.live_in(first, last);
        let names = live
            .iter()
            .map(|e| String::from_utf8(e.key.to_vec()).expect("utf8"))
            .collect();
        let kept = live
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let at = Position {
                    segment: first,
                    offset: 24 + 10 * i as u64,
                    index: 0,
                };
                Kept {
                    key: e.key,
                    was: e.at,
                    now: at,
                }
            })
            .collect();
        l.finish_clean(first, last, next, kept);
        l.check().expect("index consistent");
        names
    }

    #[test]
    fn cleaning_keeps_latest_puts_and_unpins_the_chain() {
        // The broker's pattern: a permanent record pins segment 1, and the
        // tombstones in each segment refer to messages of the one before.
        let mut l = Liveness::default();
        rec(&mut l, 1, &[put("perm"), put("m1"), put("m2"), put("m2")]);
        rec(&mut l, 2, &[del("m1"), put("m3"), del("x"), put("m5")]);
        rec(&mut l, 3, &[put("m4"), del("m3")]);
        rec(&mut l, 4, &[del("m2"), del("m4")]);
        l.check().expect("index consistent");
        assert!(!l.is_dead(2) && !l.is_dead(3) && !l.is_dead(4));
        let kept = clean(&mut l, 1, 3, 4);
        // m2 and m4 are superseded by their tombstones after the prefix.
        assert_eq!(kept, ["perm", "m5"]);
        assert_eq!(l.counts(1).live_entries, 2);
        assert_eq!(l.live_entries(), 2);
        // m1, m3 and x had their latest entry in the prefix: forgotten.
        l.forget_some(usize::MAX);
        assert_eq!(l.tracked_keys(), 4, "perm, m5, and m2 and m4 in 4");
        // Their older entries are gone, so their tombstones may go too.
        assert!(l.is_dead(4));
        l.remove_segment(4);
        l.forget_some(usize::MAX);
        assert_eq!(l.tracked_keys(), 2);
        l.check().expect("index consistent");

        // m5, kept in 1, is deleted later: its tombstone waits for 1 until
        // the next cleaning drops it.
        rec(&mut l, 5, &[del("m5"), put("y")]);
        rec(&mut l, 6, &[put("y")]);
        rec(&mut l, 7, &[]);
        assert!(!l.is_dead(5), "segment 1 still holds m5");
        assert_eq!(clean(&mut l, 1, 6, 7), ["perm", "y"]);
        l.forget_some(usize::MAX);
        assert_eq!(l.tracked_keys(), 2);
    }

    #[test]
    fn cleaning_raises_first_so_a_later_tombstone_can_die() {
        let mut l = Liveness::default();
        rec(&mut l, 1, &[put("perm"), put("a")]);
        rec(&mut l, 2, &[put("a")]);
        rec(&mut l, 3, &[put("b")]);
        rec(&mut l, 4, &[del("a"), put("b")]);
        assert!(!l.is_dead(4));
        assert_eq!(clean(&mut l, 1, 3, 4), ["perm"]);
        // a's older entries are gone: its tombstone in 4 no longer waits for
        // segment 1 (4 still holds the live b, so it is not dead as a whole).
        assert_eq!(l.counts(4).live_entries, 1);
        // b, untouched by the cleaning, still says first 3: read as 4.
        rec(&mut l, 5, &[del("b")]);
        l.check().expect("index consistent");
        assert!(l.is_dead(4));
        l.remove_segment(4);
        assert!(l.is_dead(5), "nothing older than 5 holds b");
        l.remove_segment(5);
        l.forget_some(usize::MAX);
        assert_eq!(l.tracked_keys(), 1, "perm");
        l.check().expect("index consistent");
    }

    #[test]
    fn the_key_map_shrinks_after_keys_leave() {
        let mut l = Liveness::default();
        let puts: Vec<Entry> = (0..50_000).map(|i| put(&format!("k{i}"))).collect();
        let dels: Vec<Entry> = (0..50_000).map(|i| del(&format!("k{i}"))).collect();
        rec(&mut l, 1, &puts);
        rec(&mut l, 2, &dels);
        rec(&mut l, 3, &[]);
        let big = l.keys.others_capacity();
        assert!(l.is_dead(1));
        l.remove_segment(1);
        assert!(l.is_dead(2));
        l.remove_segment(2);
        l.forget_some(usize::MAX);
        assert_eq!(l.tracked_keys(), 0);
        assert!(
            l.keys.others_capacity() < big / 8,
            "capacity {} after all keys left (was {big})",
            l.keys.others_capacity()
        );
    }

    /// A removed segment's tombstoned keys are dropped a slice at a time;
    /// meanwhile a new entry of such a key starts afresh, and the slice that
    /// reaches it later leaves it alone.
    #[test]
    fn keys_of_removed_segments_are_forgotten_in_slices() {
        let mut l = Liveness::default();
        let puts: Vec<Entry> = (0..10).map(|i| put(&format!("k{i}"))).collect();
        let dels: Vec<Entry> = (0..10).map(|i| del(&format!("k{i}"))).collect();
        rec(&mut l, 1, &puts);
        rec(&mut l, 2, &dels);
        rec(&mut l, 3, &[]);
        l.remove_segment(1);
        l.remove_segment(2);
        assert_eq!(l.keys_to_forget(), 10);
        assert_eq!(l.tracked_keys(), 10, "not dropped yet");
        l.check().expect("stale keys are allowed while queued");
        assert_eq!(l.forget_some(3), 3);
        assert_eq!(l.tracked_keys(), 7);
        // k9 comes back before its slice: a fresh put in segment 3.
        rec(&mut l, 3, &[put("k9")]);
        l.check().expect("index consistent");
        assert_eq!(l.live_entries(), 1);
        assert_eq!(l.counts(3).live_entries, 1);
        assert_eq!(l.forget_some(100), 7);
        assert_eq!(l.keys_to_forget(), 0);
        assert_eq!(l.tracked_keys(), 1, "k9 stays");
        assert_eq!(l.latest_put(b"k9").map(|p| p.segment), Some(3));
        l.check().expect("index consistent");
    }
}
