//! Which sequence numbers of one producer arrived, kept as ranges.
//!
//! A queue delivers a producer's messages nearly in order, so the set is a
//! handful of ranges however many messages passed: memory grows with the
//! number of gaps (lost or still reordered messages), not with the count.
//! Past `ranges_max` it stops tracking and only counts.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    New,
    Duplicate,
    /// Counted, but the set is over its range limit: duplicates go unseen.
    Untracked,
}

#[derive(Debug)]
pub struct SeqSet {
    /// start -> end (exclusive); ranges neither overlap nor touch.
    ranges: BTreeMap<u64, u64>,
    distinct: u64,
    ranges_max: usize,
    overflowed: bool,
}

impl SeqSet {
    pub fn new(ranges_max: usize) -> SeqSet {
        SeqSet {
            ranges: BTreeMap::new(),
            distinct: 0,
            ranges_max: ranges_max.max(1),
            overflowed: false,
        }
    }

    /// Distinct sequence numbers seen (all counted ones once overflowed).
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn insert(&mut self, x: u64) -> Insert {
        // u64::MAX has no exclusive end; no run gets near it.
        if self.overflowed || x == u64::MAX {
            self.distinct += 1;
            return Insert::Untracked;
        }
        let before = self.ranges.range(..=x).next_back().map(|(s, e)| (*s, *e));
        if let Some((_, end)) = before {
            if x < end {
                return Insert::Duplicate;
            }
        }
        let after = self.ranges.get(&(x + 1)).copied();
        match (before, after) {
            (Some((s, e)), Some(ae)) if e == x => {
                // x closes the gap between two ranges.
                self.ranges.remove(&(x + 1));
                self.ranges.insert(s, ae);
            }
            (Some((s, e)), _) if e == x => {
                self.ranges.insert(s, x + 1);
            }
            (_, Some(ae)) => {
                self.ranges.remove(&(x + 1));
                self.ranges.insert(x, ae);
            }
            _ => {
                if self.ranges.len() >= self.ranges_max {
                    self.overflowed = true;
                    self.ranges.clear();
                    self.distinct += 1;
                    return Insert::Untracked;
                }
                self.ranges.insert(x, x + 1);
            }
        }
        self.distinct += 1;
        Insert::New
    }

    #[cfg(test)]
    fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_is_one_range() {
        let mut s = SeqSet::new(10);
        for i in 0..10_000 {
            assert_eq!(s.insert(i), Insert::New);
        }
        assert_eq!(s.range_count(), 1);
        assert_eq!(s.distinct(), 10_000);
        assert_eq!(s.insert(5), Insert::Duplicate);
        assert_eq!(s.distinct(), 10_000);
    }

    #[test]
    fn gaps_fill_and_merge() {
        let mut s = SeqSet::new(10);
        for i in [0, 1, 2, 5, 6, 9] {
            assert_eq!(s.insert(i), Insert::New);
        }
        assert_eq!(s.range_count(), 3);
        assert_eq!(s.insert(4), Insert::New); // joins 5..7 from below
        assert_eq!(s.insert(3), Insert::New); // closes 0..3 and 4..7
        assert_eq!(s.range_count(), 2);
        assert_eq!(s.insert(8), Insert::New);
        assert_eq!(s.insert(7), Insert::New);
        assert_eq!(s.range_count(), 1);
        assert_eq!(s.distinct(), 10);
        for i in 0..10 {
            assert_eq!(s.insert(i), Insert::Duplicate);
        }
    }

    #[test]
    fn matches_a_hash_set_on_shuffled_input() {
        let mut s = SeqSet::new(1 << 20);
        let mut seen = std::collections::HashSet::new();
        // A deterministic scramble with repeats.
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 33) % 5000;
            let want = if seen.insert(v) {
                Insert::New
            } else {
                Insert::Duplicate
            };
            assert_eq!(s.insert(v), want, "{v}");
        }
        assert_eq!(s.distinct(), seen.len() as u64);
    }

    #[test]
    fn overflow_degrades_to_counting() {
        let mut s = SeqSet::new(2);
        assert_eq!(s.insert(0), Insert::New);
        assert_eq!(s.insert(2), Insert::New);
        assert_eq!(s.insert(4), Insert::Untracked);
        assert!(s.overflowed());
        assert_eq!(s.insert(0), Insert::Untracked);
        assert_eq!(s.distinct(), 4);
        assert_eq!(s.insert(u64::MAX), Insert::Untracked);
    }

    #[test]
    fn top_of_range() {
        let mut s = SeqSet::new(4);
        assert_eq!(s.insert(u64::MAX - 1), Insert::New);
        assert_eq!(s.insert(u64::MAX - 2), Insert::New);
        assert_eq!(s.insert(u64::MAX - 1), Insert::Duplicate);
        assert_eq!(s.insert(u64::MAX), Insert::Untracked);
        assert_eq!(s.range_count(), 1);
    }
}
