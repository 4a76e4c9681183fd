//! Where each stored message's record is in the journal topic: message id
//! -> Kafka offset, for reading paged messages back (see `paged`).
//!
//! Built while the journal is loaded (or by the standby copy) and kept up
//! to date by every committed transaction: a `MessageStored` record adds
//! its id, the tombstone of its `m/` key removes it. A paged backlog of
//! millions of messages has an entry per message, so the map is compact:
//! one sorted run of `(seq, offset)` slots per activation epoch (ids carry
//! their epoch, and a live mints them in increasing order), 16 bytes a
//! slot. Removal marks a slot dead; the dead are swept out once they are a
//! quarter of the live, and runs grow by a quarter at a time, so an id
//! costs 16 bytes and at most about 25 with the slack (`bytes()` counts
//! it; the tests measure it).

use halyard_core::ids::Id;

/// A slot's offset once its message is gone (tombstoned).
const DEAD: i64 = -1;
/// Dead slots swept out at the latest when they are this share of the live
/// (1/4), and never for fewer than `SWEEP_MIN` of them.
const SWEEP_DIVISOR: usize = 4;
const SWEEP_MIN: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Slot {
    seq: u64,
    /// `DEAD` once removed.
    offset: i64,
}

/// The slots of one epoch, sorted by `seq`.
#[derive(Debug)]
struct Run {
    epoch: u32,
    slots: Vec<Slot>,
}

/// Message id -> offset of its `MessageStored` record. See the module docs.
#[derive(Debug, Default)]
pub struct OffsetIndex {
    /// Sorted by epoch.
    runs: Vec<Run>,
    live: usize,
    dead: usize,
}

impl OffsetIndex {
    pub fn new() -> OffsetIndex {
        OffsetIndex::default()
    }

    /// Messages indexed.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap bytes held (slots allocated, dead and spare ones included).
    pub fn bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .runs
                .iter()
                .map(|r| r.slots.capacity() * std::mem::size_of::<Slot>())
                .sum::<usize>()
    }

    fn run_index(&self, epoch: u32) -> Result<usize, usize> {
        // Nearly always the newest epoch.
        match self.runs.last() {
            Some(r) if r.epoch == epoch => Ok(self.runs.len() - 1),
            Some(r) if r.epoch < epoch => Err(self.runs.len()),
            _ => self.runs.binary_search_by_key(&epoch, |r| r.epoch),
        }
    }

    /// Message `id`'s record is at `offset` (a later record of the same id
    /// replaces an earlier one).
    pub fn insert(&mut self, id: Id, offset: i64) {
        debug_assert!(offset >= 0, "offset {offset} of {id}");
        let r = match self.run_index(id.epoch) {
            Ok(r) => r,
            Err(r) => {
                self.runs.insert(
                    r,
                    Run {
                        epoch: id.epoch,
                        slots: Vec::new(),
                    },
                );
                r
            }
        };
        let slots = &mut self.runs[r].slots;
        let slot = Slot {
            seq: id.seq,
            offset,
        };
        if slots.len() == slots.capacity() {
            // Grow by a quarter, not double: the spare room is memory per id.
            slots.reserve_exact(slots.len() / 4 + 16);
        }
        match slots.last() {
            None => slots.push(slot),
            Some(last) if last.seq < id.seq => slots.push(slot),
            Some(_) => match slots.binary_search_by_key(&id.seq, |s| s.seq) {
                Ok(i) => {
                    if slots[i].offset == DEAD {
                        self.dead -= 1;
                        self.live += 1;
                    }
                    slots[i].offset = offset;
                    return;
                }
                // Out of order (a transaction's message stored after later
                // ones): usually near the end.
                Err(i) => slots.insert(i, slot),
            },
        }
        self.live += 1;
    }

    fn find(&self, id: Id) -> Option<(usize, usize)> {
        let r = self.run_index(id.epoch).ok()?;
        let i = self.runs[r]
            .slots
            .binary_search_by_key(&id.seq, |s| s.seq)
            .ok()?;
        Some((r, i))
    }

    /// The offset of message `id`'s record, if indexed.
    pub fn get(&self, id: Id) -> Option<i64> {
        let (r, i) = self.find(id)?;
        Some(self.runs[r].slots[i].offset).filter(|o| *o != DEAD)
    }

    /// Forgets message `id` (its tombstone was written or read); its offset
    /// if it was indexed.
    pub fn remove(&mut self, id: Id) -> Option<i64> {
        let (r, i) = self.find(id)?;
        let slot = &mut self.runs[r].slots[i];
        if slot.offset == DEAD {
            return None;
        }
        let offset = std::mem::replace(&mut slot.offset, DEAD);
        self.live -= 1;
        self.dead += 1;
        if self.dead >= SWEEP_MIN && self.dead >= self.live / SWEEP_DIVISOR {
            self.sweep();
        }
        Some(offset)
    }

    /// Drops the dead slots and the spare room beyond a quarter.
    fn sweep(&mut self) {
        for r in &mut self.runs {
            r.slots.retain(|s| s.offset != DEAD);
            let keep = r.slots.len() + r.slots.len() / 4;
            if r.slots.capacity() > keep + 16 {
                r.slots.shrink_to(keep);
            }
        }
        self.runs.retain(|r| !r.slots.is_empty());
        self.dead = 0;
    }

    /// Every indexed message, by id.
    pub fn iter(&self) -> impl Iterator<Item = (Id, i64)> + '_ {
        self.runs.iter().flat_map(|r| {
            r.slots
                .iter()
                .filter(|s| s.offset != DEAD)
                .map(move |s| (Id::new(r.epoch, s.seq), s.offset))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_across_epochs_and_out_of_order() {
        let mut x = OffsetIndex::new();
        x.insert(Id::new(2, 5), 50);
        x.insert(Id::new(2, 7), 70);
        x.insert(Id::new(2, 6), 80); // stored after 7 (a transaction)
        x.insert(Id::new(1, 9), 10); // an older epoch's run
        x.insert(Id::new(3, 1), 90);
        assert_eq!(x.len(), 5);
        assert_eq!(x.get(Id::new(2, 6)), Some(80));
        assert_eq!(x.get(Id::new(1, 9)), Some(10));
        assert_eq!(x.get(Id::new(2, 8)), None);
        assert_eq!(x.get(Id::new(4, 1)), None);
        assert_eq!(x.remove(Id::new(2, 7)), Some(70));
        assert_eq!(x.remove(Id::new(2, 7)), None);
        assert_eq!(x.get(Id::new(2, 7)), None);
        assert_eq!(x.len(), 4);
        // Stored again under the same id: back, at its new offset.
        x.insert(Id::new(2, 7), 100);
        assert_eq!(x.get(Id::new(2, 7)), Some(100));
        let all: Vec<(Id, i64)> = x.iter().collect();
        assert_eq!(
            all,
            vec![
                (Id::new(1, 9), 10),
                (Id::new(2, 5), 50),
                (Id::new(2, 6), 80),
                (Id::new(2, 7), 100),
                (Id::new(3, 1), 90),
            ]
        );
    }

    #[test]
    fn a_backlog_costs_at_most_about_25_bytes_an_id_and_sweeps_as_it_drains() {
        let n = 1_000_000u64;
        let mut x = OffsetIndex::new();
        for seq in 1..=n {
            x.insert(Id::new(7, seq), seq as i64 * 2);
        }
        let per_id = x.bytes() as f64 / n as f64;
        assert!(per_id <= 25.0, "{per_id:.1} bytes per id");
        // Consumed from the front, as a queue drains, while more arrive.
        let mut worst: f64 = 0.0;
        for seq in 1..=n {
            assert_eq!(x.remove(Id::new(7, seq)), Some(seq as i64 * 2));
            x.insert(Id::new(8, seq), seq as i64);
            worst = worst.max(x.bytes() as f64 / x.len() as f64);
        }
        assert!(worst <= 32.0, "{worst:.1} bytes per id at worst");
        eprintln!(
            "{per_id:.1} bytes per id for a backlog of {n}, {worst:.1} at worst while it drains"
        );
        assert_eq!(x.len(), n as usize);
        assert_eq!(x.get(Id::new(8, n)), Some(n as i64));
        // Drained: the memory goes too.
        for seq in 1..=n {
            x.remove(Id::new(8, seq));
        }
        assert!(x.is_empty());
        assert!(x.bytes() < 64 * 1024, "{} bytes left", x.bytes());
    }
}
