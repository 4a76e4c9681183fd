//! The madsim harness shared by the madsim test binaries: three Halyard
//! nodes running the real Tokio driver (`halyard_io::server`), a host serving
//! the simulator's Kafka model over simulated TCP, and a client host running
//! the real failover client (`halyard_io::client`), with faults.
//!
//! - `wire`: the small request/response protocol to the Kafka host;
//! - `cluster`: the Kafka host, and a node with its journal and lock adapters;
//! - `scenario`: the run with faults and its verdict.

pub mod cluster;
pub mod scenario;
mod wire;
