//! `ChunkMap`: an ordered map kept in fixed-size sorted chunks, for keys
//! that mostly arrive in increasing order (message ids, queue positions).
//!
//! Why not `BTreeMap`: its nodes split in the middle, so keys inserted in
//! order leave every leaf about half empty, and a backlog of a million
//! messages paid ~130 bytes per entry of a 72-byte map entry. Here a key
//! past the end goes into the last chunk until it is full and then starts a
//! new one, so an in-order map is full to the last chunk; removals at the
//! front (consumers taking the oldest) are O(1) in a chunk (`VecDeque`),
//! and a chunk left with under a quarter of its room merges with a
//! neighbour that can take it. Lookups search the chunks' first keys (kept
//! side by side, so the search stays in cache) from the ends, where nearly
//! every lookup lands, and then the chunk.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;

use crate::ids::Id;

/// Entries per chunk: large enough that the per-chunk overhead is noise,
/// small enough that an insert in the middle moves little.
const CHUNK: usize = 64;
/// A chunk below this many entries merges with a neighbour that has room.
const CHUNK_MERGE_BELOW: usize = CHUNK / 4;

/// A map's key. Keys that are consecutive integers where nothing was
/// removed (message ids, sequence numbers) can say how far past a chunk's
/// first key they lie, so a lookup tries that one entry before it bisects
/// the chunk: a bisection's probes each touch another entry, a cache miss
/// apiece when values are large, and under the bench's load they were 8 %
/// of the node's samples.
pub trait ChunkKey: Ord + Copy {
    /// How many keys after `first` this one is, if keys are consecutive
    /// integers; `None` when the key cannot tell. Only a guess: the entry
    /// found there is checked.
    fn steps_from(&self, _first: &Self) -> Option<usize> {
        None
    }
}

impl ChunkKey for u64 {
    fn steps_from(&self, first: &u64) -> Option<usize> {
        usize::try_from(self.checked_sub(*first)?).ok()
    }
}

impl ChunkKey for u32 {
    fn steps_from(&self, first: &u32) -> Option<usize> {
        usize::try_from(self.checked_sub(*first)?).ok()
    }
}

impl ChunkKey for Id {
    fn steps_from(&self, first: &Id) -> Option<usize> {
        if self.epoch != first.epoch {
            return None;
        }
        self.seq.steps_from(&first.seq)
    }
}

impl<A: Ord + Copy, B: Ord + Copy> ChunkKey for (A, B) {}

#[derive(Clone)]
pub struct ChunkMap<K, V> {
    /// Sorted, non-empty chunks of at most `CHUNK` entries; every key of a
    /// chunk is below every key of the next.
    chunks: VecDeque<VecDeque<(K, V)>>,
    /// The first key of each chunk (`firsts[i] == chunks[i][0].0`).
    firsts: VecDeque<K>,
    len: usize,
}

impl<K: ChunkKey, V> Default for ChunkMap<K, V> {
    fn default() -> Self {
        ChunkMap::new()
    }
}

impl<K: ChunkKey + fmt::Debug, V: fmt::Debug> fmt::Debug for ChunkMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

fn new_chunk<K, V>() -> VecDeque<(K, V)> {
    VecDeque::with_capacity(CHUNK)
}

/// Place of `key` in a sorted chunk: `Ok` if present, `Err` where it would
/// go. The ends first, as in `ChunkMap::chunk_of`: an append past the last
/// entry and a lookup of the first skip the search (whose probes each touch
/// another entry, a cache line apart when values are large).
fn place_in<K: ChunkKey, V>(chunk: &VecDeque<(K, V)>, key: &K) -> Result<usize, usize> {
    let (Some((first, _)), Some((last, _))) = (chunk.front(), chunk.back()) else {
        return Err(0);
    };
    match last.cmp(key) {
        std::cmp::Ordering::Less => return Err(chunk.len()),
        std::cmp::Ordering::Equal => return Ok(chunk.len() - 1),
        std::cmp::Ordering::Greater => {}
    }
    match first.cmp(key) {
        std::cmp::Ordering::Greater => return Err(0),
        std::cmp::Ordering::Equal => return Ok(0),
        std::cmp::Ordering::Less => {}
    }
    if let Some(i) = key.steps_from(first) {
        if chunk.get(i).is_some_and(|(k, _)| k == key) {
            return Ok(i);
        }
    }
    chunk.binary_search_by(|(k, _)| k.cmp(key))
}

impl<K: ChunkKey, V> ChunkMap<K, V> {
    pub const fn new() -> Self {
        ChunkMap {
            chunks: VecDeque::new(),
            firsts: VecDeque::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key` if any chunk does (or where it would go:
    /// the last chunk whose first key is at or below it, else the first).
    ///
    /// Most lookups are near an end: the newest keys (an insert; a
    /// message's acknowledgement soon after its send) or the oldest (the
    /// head of a queue). So the first chunk is tried, and the search gallops
    /// back from the last chunk (1, 2, 4, ... chunks) before it bisects:
    /// O(log d) probes for a key d chunks from the end. Profiled under the
    /// bench's load, the plain bisection of every lookup was 13% of the
    /// node's CPU (the journal's index holds every key of its live
    /// segments).
    fn chunk_of(&self, key: &K) -> usize {
        let n = self.firsts.len();
        if n <= 1 || self.firsts[n - 1] <= *key {
            return n.saturating_sub(1);
        }
        if *key < self.firsts[1] {
            return 0;
        }
        // Now firsts[1] <= key < firsts[n - 1]: find lo with
        // firsts[lo] <= key < firsts[lo + 1].
        let (mut lo, mut hi) = (1, n - 1);
        let mut step = 1;
        while hi - lo > step {
            let probe = hi - step;
            if self.firsts[probe] <= *key {
                lo = probe;
                break;
            }
            hi = probe;
            step *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.firsts[mid] <= *key {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Chunk and place of `key`: `Ok` if present, `Err` where it would go.
    fn find(&self, key: &K) -> Option<(usize, Result<usize, usize>)> {
        if self.chunks.is_empty() {
            return None;
        }
        let c = self.chunk_of(key);
        Some((c, place_in(&self.chunks[c], key)))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        match self.find(key)? {
            (c, Ok(i)) => Some(&self.chunks[c][i].1),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.find(key)? {
            (c, Ok(i)) => Some(&mut self.chunks[c][i].1),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        matches!(self.find(key), Some((_, Ok(_))))
    }

    /// Inserts `key`, returning the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let Some((c, place)) = self.find(&key) else {
            let mut chunk = new_chunk();
            chunk.push_back((key, value));
            self.chunks.push_back(chunk);
            self.firsts.push_back(key);
            self.len = 1;
            return None;
        };
        let i = match place {
            Ok(i) => return Some(std::mem::replace(&mut self.chunks[c][i].1, value)),
            Err(i) => i,
        };
        self.len += 1;
        let last = self.chunks.len() - 1;
        if self.chunks[c].len() < CHUNK {
            self.chunks[c].insert(i, (key, value));
        } else if c == last && i == CHUNK {
            // Past the end of a full last chunk: the in-order case.
            let mut chunk = new_chunk();
            chunk.push_back((key, value));
            self.chunks.push_back(chunk);
            self.firsts.push_back(key);
            return None;
        } else {
            // A full chunk in the middle: split it in two halves.
            let mut upper = self.chunks[c].split_off(CHUNK / 2);
            upper.reserve_exact(CHUNK - upper.len());
            if i <= CHUNK / 2 {
                self.chunks[c].insert(i, (key, value));
            } else {
                upper.insert(i - CHUNK / 2, (key, value));
            }
            self.firsts.insert(c + 1, upper[0].0);
            self.chunks.insert(c + 1, upper);
        }
        self.firsts[c] = self.chunks[c][0].0;
        None
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (c, Ok(i)) = self.find(key)? else {
            return None;
        };
        let (_, value) = self.chunks[c].remove(i)?;
        self.len -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
            self.firsts.remove(c);
            self.shrink();
        } else {
            self.firsts[c] = self.chunks[c][0].0;
            if self.chunks[c].len() < CHUNK_MERGE_BELOW {
                self.merge_around(c);
            }
        }
        Some(value)
    }

    /// Merges chunk `c` into a neighbour if one has room for it.
    fn merge_around(&mut self, c: usize) {
        let n = self.chunks[c].len();
        let into = if c > 0 && self.chunks[c - 1].len() + n <= CHUNK {
            c - 1
        } else if c + 1 < self.chunks.len() && self.chunks[c + 1].len() + n <= CHUNK {
            c
        } else {
            return;
        };
        // Append chunk `into + 1` to chunk `into` (which keeps its first key).
        let Some(mut right) = self.chunks.remove(into + 1) else {
            return;
        };
        self.firsts.remove(into + 1);
        let left = &mut self.chunks[into];
        if left.capacity() < CHUNK {
            left.reserve_exact(CHUNK - left.len());
        }
        left.append(&mut right);
        self.shrink();
    }

    /// Gives back the chunk lists' room after a large drain.
    fn shrink(&mut self) {
        if self.chunks.capacity() > 64 && self.chunks.len() < self.chunks.capacity() / 4 {
            self.chunks.shrink_to(self.chunks.len() * 2);
            self.firsts.shrink_to(self.firsts.len() * 2);
        }
    }

    /// The value of `key`, inserted with `make` if absent.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.contains_key(&key) {
            self.insert(key, make());
        }
        match self.find(&key) {
            Some((c, Ok(i))) => &mut self.chunks[c][i].1,
            _ => unreachable!("a key just inserted is present"),
        }
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.chunks.front()?.front().map(|(k, v)| (k, v))
    }

    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.chunks.back()?.back().map(|(k, v)| (k, v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter().map(|(k, v)| (k, v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Entries with keys above (`Excluded`) or from (`Included`) `from`, in order.
    pub fn range_from(&self, from: Bound<&K>) -> impl Iterator<Item = (&K, &V)> + '_ {
        let (c, i) = match from {
            _ if self.chunks.is_empty() => (0, 0),
            Bound::Unbounded => (0, 0),
            Bound::Included(k) => {
                let c = self.chunk_of(k);
                (c, self.chunks[c].partition_point(|(x, _)| x < k))
            }
            Bound::Excluded(k) => {
                let c = self.chunk_of(k);
                (c, self.chunks[c].partition_point(|(x, _)| x <= k))
            }
        };
        self.chunks
            .range(c.min(self.chunks.len())..)
            .enumerate()
            .flat_map(move |(j, chunk)| chunk.range(if j == 0 { i } else { 0 }..))
            .map(|(k, v)| (k, v))
    }

    /// Keeps the entries `keep` says yes to (each asked once, in order).
    /// Untouched when it keeps them all; else rebuilt in order, so O(n):
    /// for rare clean-ups (a link detached), not per message.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut dropped = Vec::new();
        for (c, chunk) in self.chunks.iter_mut().enumerate() {
            for (i, (k, v)) in chunk.iter_mut().enumerate() {
                if !keep(k, v) {
                    dropped.push((c, i));
                }
            }
        }
        if dropped.is_empty() {
            return;
        }
        let mut dropped = dropped.into_iter().peekable();
        let old = std::mem::take(self);
        for (c, chunk) in old.chunks.into_iter().enumerate() {
            for (i, (k, v)) in chunk.into_iter().enumerate() {
                if dropped.next_if_eq(&(c, i)).is_none() {
                    self.insert(k, v);
                }
            }
        }
    }

    /// Checks the layout (tests and debug invariant checks).
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.chunks.len(), self.firsts.len());
        let mut n = 0;
        let mut prev: Option<K> = None;
        for (c, chunk) in self.chunks.iter().enumerate() {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
            assert!(chunk[0].0 == self.firsts[c]);
            for (k, _) in chunk {
                assert!(prev.is_none_or(|p| p < *k));
                prev = Some(*k);
            }
            n += chunk.len();
        }
        assert_eq!(n, self.len);
    }
}

impl<K: ChunkKey, V> IntoIterator for ChunkMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::iter::Flatten<std::collections::vec_deque::IntoIter<VecDeque<(K, V)>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

impl<'a, K: ChunkKey, V> IntoIterator for &'a ChunkMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Box<dyn Iterator<Item = (&'a K, &'a V)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert the next key in order (the common case).
        Append,
        Insert(u16),
        Remove(u16),
        RemoveFirst,
        Range(u16, bool),
        /// Keep the keys not divisible by this (2 to 9).
        Retain(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Append),
            2 => any::<u16>().prop_map(Op::Insert),
            3 => any::<u16>().prop_map(Op::Remove),
            4 => Just(Op::RemoveFirst),
            1 => (any::<u16>(), any::<bool>()).prop_map(|(k, e)| Op::Range(k, e)),
            1 => (2u32..10).prop_map(Op::Retain),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec(op(), 1..3000)) {
            let mut map = ChunkMap::new();
            let mut model = BTreeMap::new();
            let mut next = 0u32;
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Append => {
                        next += 1;
                        prop_assert_eq!(map.insert(next * 4, n), model.insert(next * 4, n));
                    }
                    Op::Insert(k) => {
                        let k = u32::from(k) % (next * 4 + 8);
                        prop_assert_eq!(map.insert(k, n), model.insert(k, n));
                    }
                    Op::Remove(k) => {
                        let k = u32::from(k) % (next * 4 + 8);
                        prop_assert_eq!(map.remove(&k), model.remove(&k));
                    }
                    Op::RemoveFirst => {
                        let first = model.keys().next().copied();
                        if let Some(k) = first {
                            prop_assert_eq!(map.remove(&k), model.remove(&k));
                        }
                    }
                    Op::Range(k, excluded) => {
                        let k = u32::from(k) % (next * 4 + 8);
                        let b = if excluded { Bound::Excluded(&k) } else { Bound::Included(&k) };
                        let got: Vec<_> = map.range_from(b).collect();
                        let want: Vec<_> = model.range((b, Bound::Unbounded)).collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Retain(m) => {
                        map.retain(|k, _| k % m != 0);
                        model.retain(|k, _| k % m != 0);
                    }
                }
                map.check();
                prop_assert_eq!(map.len(), model.len());
            }
            prop_assert!(map.iter().eq(model.iter()));
            prop_assert_eq!(map.first_key_value(), model.first_key_value());
            prop_assert_eq!(map.last_key_value(), model.last_key_value());
            for k in 0..(next * 4 + 8) {
                prop_assert_eq!(map.get(&k), model.get(&k));
            }
            let owned: Vec<_> = map.into_iter().collect();
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(owned, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Lookups anywhere in a map of many chunks (the search gallops
        /// from the last chunk), after removals and inserts in the middle.
        #[test]
        fn finds_every_key_in_a_map_of_many_chunks(
            gaps in prop::collection::vec(1u32..4, 300..4000),
            removals in prop::collection::vec(any::<u32>(), 0..400),
            inserts in prop::collection::vec(any::<u32>(), 0..400),
        ) {
            let mut map = ChunkMap::new();
            let mut model = BTreeMap::new();
            let mut k = 0;
            for g in gaps {
                k += g;
                map.insert(k, k);
                model.insert(k, k);
            }
            for r in removals {
                let r = r % (k + 2);
                prop_assert_eq!(map.remove(&r), model.remove(&r));
            }
            for i in inserts {
                let i = i % (k + 2);
                prop_assert_eq!(map.insert(i, i + 1), model.insert(i, i + 1));
            }
            map.check();
            for key in 0..k + 3 {
                prop_assert_eq!(map.get(&key), model.get(&key), "key {}", key);
            }
        }
    }

    #[test]
    fn keys_in_order_fill_every_chunk_but_the_last() {
        let mut map = ChunkMap::new();
        for k in 0..10 * CHUNK as u64 + 3 {
            map.insert(k, ());
        }
        map.check();
        assert_eq!(map.chunks.len(), 11);
        assert!(map.chunks.iter().take(10).all(|c| c.len() == CHUNK));
        // Consuming from the front empties chunks one by one.
        for k in 0..5 * CHUNK as u64 {
            assert_eq!(map.remove(&k), Some(()));
        }
        map.check();
        assert_eq!(map.chunks.len(), 6);
    }

    #[test]
    fn sparse_removals_merge_chunks() {
        let mut map = ChunkMap::new();
        for k in 0..8 * CHUNK as u64 {
            map.insert(k, ());
        }
        // Keep one key in eight: chunks merge down to about an eighth.
        for k in 0..8 * CHUNK as u64 {
            if k % 8 != 0 {
                map.remove(&k);
            }
        }
        map.check();
        assert_eq!(map.len(), CHUNK);
        assert!(map.chunks.len() <= 3, "{} chunks", map.chunks.len());
    }

    #[test]
    fn get_or_insert_with_inserts_once() {
        let mut map: ChunkMap<u32, u32> = ChunkMap::new();
        *map.get_or_insert_with(5, || 1) += 1;
        *map.get_or_insert_with(5, || 100) += 1;
        assert_eq!(map.get(&5), Some(&3));
        assert_eq!(map.range_from(Bound::Excluded(&5)).count(), 0);
        assert_eq!(map.range_from(Bound::Included(&5)).count(), 1);
    }

    /// Consecutive keys with holes: the guessed place is right where
    /// nothing was removed before a key, wrong after a hole, and either
    /// way the lookup agrees with a `BTreeMap`.
    #[test]
    fn dense_keys_with_holes_are_found_guessed_or_searched() {
        let mut map = ChunkMap::new();
        let mut model = BTreeMap::new();
        for k in 0..10 * CHUNK as u64 {
            map.insert(k, k);
            model.insert(k, k);
        }
        for k in (0..10 * CHUNK as u64).filter(|k| k % 7 == 3 || (k / 100) % 3 == 1) {
            assert_eq!(map.remove(&k), model.remove(&k));
        }
        map.check();
        for k in 0..11 * CHUNK as u64 {
            assert_eq!(map.get(&k), model.get(&k), "key {k}");
            assert_eq!(map.contains_key(&k), model.contains_key(&k));
        }
        // Reinserted holes land in order.
        for k in (0..10 * CHUNK as u64).step_by(7) {
            assert_eq!(map.insert(k, k + 1), model.insert(k, k + 1));
        }
        map.check();
        assert!(map.iter().eq(model.iter()));
        let ids = |seq| Id::new(2, seq);
        let mut by_id = ChunkMap::new();
        for seq in 10..200 {
            by_id.insert(ids(seq), seq);
        }
        by_id.insert(Id::new(3, 0), 0);
        by_id.remove(&ids(50));
        assert_eq!(by_id.get(&ids(51)), Some(&51));
        assert_eq!(by_id.get(&ids(50)), None);
        assert_eq!(by_id.get(&Id::new(3, 0)), Some(&0));
        assert_eq!(by_id.get(&Id::new(1, 20)), None);
    }
}
