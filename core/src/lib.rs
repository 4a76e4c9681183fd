//! Halyard's sans-IO core.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or
//! draws from a global RNG: time and bytes come in as [`node::Input`]s and
//! effects leave as [`node::Output`]s. The same `Node` runs on Tokio sockets
//! and real Kafka (`halyard-io`) and inside the seeded simulator
//! (`halyard-sim`).

pub mod bridge;
pub mod broker;
pub mod chunk_map;
pub mod coordinator;
pub mod ha;
pub mod ids;
pub mod journal;
pub mod message;
pub mod mirror;
pub mod node;
pub mod protocol;
pub mod security;
pub mod selector;
/// An in-memory driver for tests and benches (feature `testkit`).
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire_bytes;

/// The node's clock, owned by the driver: milliseconds since the Unix epoch
/// (message expiry and scheduled delivery times are wall-clock and travel in
/// the journal), never going backwards (the driver anchors at the wall clock
/// once and advances with a monotonic clock; [`node::Node::handle`] clamps).
/// The simulator keeps a virtual clock from 0, which is consistent: its
/// messages carry no wall-clock times.
pub type Millis = u64;
