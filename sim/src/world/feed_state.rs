//! The outside Kafka producer's state (its driving is `feed.rs`).

use crate::rng::Rng;

/// Mixed into the seed for the feed's timing, so that it draws from none
/// of the world's other generators.
const FEED_SEED: u64 = 0xFEED_0000_B81D_6E00;

pub(crate) struct Feed {
    pub(crate) total: u64,
    /// Records written so far (their sequence numbers are `0..sent`).
    pub(crate) sent: u64,
    pub(crate) started: bool,
    pub(crate) rng: Rng,
}

impl Feed {
    pub(crate) fn new(seed: u64, total: u64) -> Feed {
        Feed {
            total,
            sent: 0,
            started: false,
            rng: Rng::new(seed ^ FEED_SEED),
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.sent >= self.total
    }
}
