//! Halyard's sans-IO core.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or
//! draws from a global RNG: time and bytes come in as [`node::Input`]s and
//! effects leave as [`node::Output`]s. The same `Node` runs on Tokio sockets
//! and real Kafka (`halyard-io`) and inside the seeded simulator
//! (`halyard-sim`).

pub mod broker;
pub mod ha;
pub mod ids;
pub mod journal;
pub mod message;
pub mod node;
pub mod protocol;
pub mod selector;
/// An in-memory driver for tests and benches (feature `testkit`).
#[cfg(feature = "testkit")]
pub mod testkit;

/// Milliseconds of a monotonic clock owned by the driver.
pub type Millis = u64;
