//! The coordinator scenario's shape, derived from its seed (a generator of
//! its own, so the broker scenario's draws are untouched).

use crate::rng::Rng;

/// Mixed into the seed for the coordinator scenario's generator.
const SEED_SALT: u64 = 0xC00D_1A7E_0000_0000;
/// Mixed into the seed to decide whether `halyard sim` runs the scenario.
const SHARE_SALT: u64 = 0x5A1E_C00D_0000_0000;

/// The share of seeds `halyard sim` runs the coordinator scenario for
/// unless told otherwise.
pub const COORDINATOR_SHARE_DEFAULT: f64 = 0.25;

#[derive(Clone, Debug)]
pub struct CoordConfig {
    pub seed: u64,
    /// 2 or 3 brokers, each with its own `Coordinator`.
    pub brokers: usize,
    /// The lock service's session timeout.
    pub session_timeout_ms: u64,
    /// Each broker's check period.
    pub check_period_ms: Vec<u64>,
    /// A sync peer silent this long leaves the in-sync set.
    pub peer_timeout_ms: u64,
    /// Receipts wait for the in-sync peers (`--mirror-sync`); without it
    /// the checker counts receipted messages lost instead of failing.
    pub sync: bool,
    /// s0 is `--role primary --allow-failback` and the others backups: an
    /// active backup hands the role back once s0 is in sync. Otherwise
    /// every broker is a primary without failback.
    pub failback: bool,
    /// The producer sends a message every 1..=this ms.
    pub store_every_ms: u64,
    /// The consumer takes one every 1..=this ms.
    pub consume_every_ms: u64,
    /// A lock service request unanswered this long is given up.
    pub request_timeout_ms: u64,
    /// Network delays are 1..=this.
    pub delay_max_ms: u64,
    /// The chance a message is lost (while faults run).
    pub loss: f64,
    pub faults: bool,
    /// Faults are injected from 1 s until this time.
    pub fault_until_ms: u64,
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<halyard_core::coordinator::PlantedBug>,
}

impl CoordConfig {
    pub fn from_seed(seed: u64) -> CoordConfig {
        let mut r = Rng::new(seed ^ SEED_SALT);
        let brokers = if r.chance(0.5) { 2 } else { 3 };
        let session_timeout_ms = r.range(1_000, 3_000);
        let check_period_ms = (0..brokers).map(|_| r.range(300, 1_000)).collect();
        let mut c = CoordConfig {
            seed,
            brokers,
            session_timeout_ms,
            check_period_ms,
            peer_timeout_ms: r.range(1_000, 3_000),
            store_every_ms: r.range(20, 120),
            consume_every_ms: 0,
            sync: true,
            failback: false,
            request_timeout_ms: r.range(300, 800),
            delay_max_ms: r.range(5, 80),
            loss: r.range(0, 3) as f64 / 100.0,
            faults: true,
            fault_until_ms: r.range(30_000, 60_000),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        };
        c.consume_every_ms = c.store_every_ms * r.range(2, 4);
        c.sync = r.chance(0.8);
        c.failback = r.chance(0.5);
        c
    }
}

/// Whether `halyard sim` runs the coordinator scenario for `seed`, given
/// the share of seeds that do (decided by the seed alone).
pub fn coordinator_runs(seed: u64, share: f64) -> bool {
    share >= 1.0 || Rng::new(seed ^ SHARE_SALT).chance(share)
}
