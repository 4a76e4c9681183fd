//! The log cleaner: compaction of a random prefix of every partition.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use halyard_core::Millis;

use super::log::{LogEntry, Outcome, Payload};
use super::model::KafkaModel;
use crate::rng::Rng;

impl KafkaModel {
    /// Runs the log cleaner over a random prefix of every partition.
    pub fn compact(&mut self, now: Millis, rng: &mut Rng) {
        self.tick(now);
        let retention = self.config.tombstone_retention_ms;
        let outcomes = &self.outcomes;
        let committed = |transaction: &Option<u64>| {
            transaction.is_none_or(|t| outcomes.get(&t) == Some(&Outcome::Committed))
        };
        let aborted = |transaction: &Option<u64>| {
            transaction.is_some_and(|t| outcomes.get(&t) == Some(&Outcome::Aborted))
        };
        for (topic, parts) in self.topics.iter_mut() {
            if self.plain.contains(topic) {
                continue;
            }
            for part in parts.iter_mut() {
                let lso = part.lso();
                let start = part.log_start();
                if lso <= start {
                    continue;
                }
                let clean_point = rng.range(start, lso);
                // Entries are in offset order: those below the cleaning point first.
                let below = part.entries.partition_point(|e| e.offset < clean_point);
                // Latest offset of each key below the cleaning point (only
                // looked up, never iterated, so a HashMap keeps runs deterministic).
                let mut latest: HashMap<&[u8], u64, BuildHasherDefault<FxHasher>> =
                    HashMap::with_capacity_and_hasher(below, Default::default());
                for e in &part.entries[..below] {
                    if let Payload::Data {
                        key, transaction, ..
                    } = &e.payload
                    {
                        if committed(transaction) {
                            latest.insert(&key[..], e.offset);
                        }
                    }
                }
                // Decide first (the map borrows the log), then remove.
                let superseded: Vec<bool> = part.entries[..below]
                    .iter()
                    .map(|e| match &e.payload {
                        Payload::Data {
                            key, transaction, ..
                        } => {
                            aborted(transaction)
                                || latest.get(&key[..]).is_some_and(|l| *l > e.offset)
                        }
                        Payload::Marker => false,
                    })
                    .collect();
                drop(latest);
                let mut superseded = superseded.into_iter();
                part.entries.retain_mut(|e| {
                    // Past the cleaning point the iterator is exhausted.
                    if superseded.next().unwrap_or(false) {
                        return false;
                    }
                    if e.offset >= clean_point {
                        return true;
                    }
                    match &e.payload {
                        Payload::Data { value: None, .. } | Payload::Marker => {
                            Self::survives_retention(e, now, retention)
                        }
                        Payload::Data { .. } => true,
                    }
                });
            }
        }
        self.stats.compactions += 1;
    }

    fn survives_retention(e: &mut LogEntry, now: Millis, retention: u64) -> bool {
        match e.cleaned_at {
            None => {
                e.cleaned_at = Some(now);
                true
            }
            Some(t) => now < t + retention,
        }
    }
}

/// The Fx hash (as in rustc): fast on short keys, deterministic. Only used
/// for maps that are looked up, never iterated.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
