//! Halyard's deterministic simulator.
//!
//! One `u64` seed decides everything: the cluster's shape, the clients, the
//! network's delays and losses, every fault and when compaction runs. The
//! simulator drives real `halyard_core::node::Node`s with no async runtime
//! and no clock, against a model of Kafka (`kafka`), then checks that no
//! receipted message was lost (`checker`). The same seed replays the same
//! run, byte for byte.

mod bridge_check;
mod bridge_wire;
mod checker;
mod client;
mod config;
mod coordinator;
mod disk_check;
mod fencing_check;
pub mod kafka;
mod liveness_check;
pub mod rng;
mod run;
mod security_check;
mod trace;
mod world;

pub use checker::{Counts, Violations};
pub use config::{DriverBug, PlantedBug, SimConfig};
pub use coordinator::{
    coordinator_runs, run_coordinator, run_coordinator_seed, CoordConfig, CoordReport,
    COORDINATOR_SHARE_DEFAULT,
};
pub use run::{run, run_seed, Report};
