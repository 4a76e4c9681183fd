//! The lock coordinator in the simulator (issue 13, point 6): 2 or 3
//! brokers, each running core's `Coordinator` on the simulated clock,
//! against a model of the lock service (`lock_service`: sessions that
//! expire, epochs, the versioned state) over a network that delays, loses
//! and partitions; crashes, restarts and pauses; mirror heartbeats stamped
//! with the sender's epoch. The checker's rules are in `check`.
//!
//! A scenario of its own, with its own generator: the broker scenario's
//! seeds and traces are unchanged.
//!
//! - `config`: the scenario from its seed;
//! - `lock_service`: the lock service model;
//! - `broker`: one broker (coordinator, lock client, mirror heartbeats);
//! - `check`: the rules; `run`: the world and the run.

mod broker;
mod check;
mod config;
mod data;
mod lock_service;
mod run;
mod wire;

use std::collections::BTreeMap;

pub use config::{coordinator_runs, CoordConfig, COORDINATOR_SHARE_DEFAULT};

/// What a coordinator run found.
#[derive(Clone, Debug, Default)]
pub struct CoordReport {
    pub seed: u64,
    pub violations: Vec<String>,
    /// Locks handed out by the lock service.
    pub acquisitions: u64,
    /// Peers that left or joined an in-sync set (confirmed writes).
    pub in_sync_changes: u64,
    /// Acquisitions released because the broker was not in the in-sync set.
    pub refused_takeovers: u64,
    /// Mirror events refused by the epoch fence.
    pub stale_refused: u64,
    pub events_applied: u64,
    /// Active backups that handed the role back to the primary.
    pub handbacks: u64,
    /// Receipts sent to the producer.
    pub receipted: u64,
    /// Acknowledgements written for the consumer.
    pub acknowledged: u64,
    /// Receipted messages a takeover lost with asynchronous mirroring
    /// (its window of loss; with sync mirroring any is a violation).
    pub lost_async: u64,
    pub session_expiries: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// How long after the faults stopped one broker alone was accepting
    /// clients for good.
    pub single_active_after_heal_ms: Option<u64>,
    pub events: u64,
    pub end_ms: u64,
    pub trace_hash: u64,
    pub trace: Vec<String>,
}

impl CoordReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn summary(&self) -> String {
        match self.violations.first() {
            None => "ok".into(),
            Some(first) => format!(
                "{} coordinator violations (first: {first})",
                self.violations.len()
            ),
        }
    }
}

/// Runs one coordinator scenario and checks it.
pub fn run_coordinator(cfg: CoordConfig, keep_trace: bool) -> CoordReport {
    run::run(cfg, keep_trace)
}

/// Runs the seed's coordinator scenario.
pub fn run_coordinator_seed(seed: u64, keep_trace: bool) -> CoordReport {
    run_coordinator(CoordConfig::from_seed(seed), keep_trace)
}
