//! The epoch fence: the newest epoch a broker has seen, and the refusal of
//! anything from an older one. A paused old active that wakes up and goes on
//! mirroring sends events stamped with its old epoch; every broker that has
//! seen a newer epoch (its own acquisition, the lock state it read, or an
//! event of the newer active) refuses them.

use std::fmt;

/// An event stamped with an epoch older than the newest seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event of epoch {got} refused: epoch {newest} is newer (a fenced active sent it)")]
pub struct StaleEpoch {
    pub got: u64,
    pub newest: u64,
}

/// The newest epoch seen. It only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpochFence {
    newest: u64,
    /// The planted bug `ApplyOldEpochEvents` (simulator tests only).
    #[cfg(feature = "planted-bugs")]
    planted_admit_stale: bool,
}

impl EpochFence {
    pub fn new() -> EpochFence {
        EpochFence::default()
    }

    /// A fence that has already seen `epoch` (say, read from the journal).
    pub fn starting_at(epoch: u64) -> EpochFence {
        EpochFence {
            newest: epoch,
            #[cfg(feature = "planted-bugs")]
            planted_admit_stale: false,
        }
    }

    /// Switches the planted bug `ApplyOldEpochEvents` on: stale epochs
    /// are admitted.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_admit_stale(&mut self) {
        self.planted_admit_stale = true;
    }

    #[cfg(feature = "planted-bugs")]
    fn fenced(&self) -> bool {
        !self.planted_admit_stale
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn fenced(&self) -> bool {
        true
    }

    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Notes an epoch seen elsewhere (an acquisition, the lock state); true
    /// if it is newer than every epoch seen so far.
    pub fn observe(&mut self, epoch: u64) -> bool {
        let newer = epoch > self.newest;
        if newer {
            self.newest = epoch;
        }
        debug_assert!(self.newest >= epoch);
        newer
    }

    /// Whether an event stamped `epoch` may be applied: refused if an
    /// older epoch than the newest seen; an equal or newer one is admitted
    /// (and a newer one becomes the newest).
    pub fn admit(&mut self, epoch: u64) -> Result<(), StaleEpoch> {
        if epoch < self.newest && self.fenced() {
            return Err(StaleEpoch {
                got: epoch,
                newest: self.newest,
            });
        }
        self.newest = self.newest.max(epoch);
        Ok(())
    }

    /// [`EpochFence::admit`] without noting the epoch.
    pub fn would_admit(&self, epoch: u64) -> Result<(), StaleEpoch> {
        if epoch < self.newest {
            Err(StaleEpoch {
                got: epoch,
                newest: self.newest,
            })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for EpochFence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "newest epoch {}", self.newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn older_epochs_are_refused_equal_and_newer_admitted() {
        let mut f = EpochFence::new();
        assert_eq!(f.admit(3), Ok(()));
        assert_eq!(f.admit(3), Ok(()));
        assert_eq!(f.admit(2), Err(StaleEpoch { got: 2, newest: 3 }));
        assert!(f.observe(7));
        assert!(!f.observe(5));
        assert_eq!(f.would_admit(6), Err(StaleEpoch { got: 6, newest: 7 }));
        assert_eq!(f.newest(), 7);
        assert_eq!(f.admit(8), Ok(()));
        assert_eq!(f.newest(), 8);
        assert_eq!(
            StaleEpoch { got: 2, newest: 3 }.to_string(),
            "event of epoch 2 refused: epoch 3 is newer (a fenced active sent it)"
        );
    }

    proptest! {
        /// Whatever the order events arrive in, an admitted event is never
        /// older than one admitted or observed before it.
        #[test]
        fn admitted_epochs_never_go_back(ops in proptest::collection::vec((any::<bool>(), 0u64..20), 0..64)) {
            let mut f = EpochFence::starting_at(1);
            let mut newest_before = 1;
            for (observe, epoch) in ops {
                if observe {
                    f.observe(epoch);
                } else if f.admit(epoch).is_ok() {
                    prop_assert!(epoch >= newest_before);
                } else {
                    prop_assert!(epoch < newest_before);
                }
                prop_assert!(f.newest() >= newest_before);
                newest_before = f.newest();
            }
        }
    }
}
