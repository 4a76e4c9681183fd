//! Halyard's I/O side: Tokio drivers that run a `halyard_core::node::Node`
//! on real sockets, and the backends behind its journal and lock ports.
//!
//! - `server`: the driver (one task owns the node; TCP connections), with
//!   the ports it talks through: `journal` and `lock`.
//! - `local`: the embedded backend: the segment-file journal, its driver
//!   thread with group commit, and the file lock.
//! - `kafka`: the Kafka backend: the journal in a compacted topic, its hot
//!   standby copy, and the lock as consumer-group membership.
//! - `disk`: the usage of the journal's disk, reported every second.
//! - `bridge`: the Kafka bridge's port (its reader is in `kafka`).
//! - `client`: the failover STOMP client behind `halyard produce/consume`.
//! - `proxy`: the TCP fault proxy used by the Kafka partition tests.
//! - `zookeeper`: the ZooKeeper lock coordinator: an ephemeral lock with a
//!   fencing epoch, and the lock state (epoch, in-sync set) beside it.

pub mod bridge;
pub mod client;
mod conn_io;
pub mod coordinator;
pub mod disk;
mod drop_elsewhere;
pub mod journal;
#[cfg(not(madsim))]
pub mod kafka;
pub mod local;
pub mod lock;
pub mod metrics;
#[cfg(not(madsim))]
pub mod mirror;
#[cfg(not(madsim))]
pub mod peer;
// A real-network tool; under madsim, the simulator clogs links itself.
#[cfg(not(madsim))]
pub mod proxy;
pub mod server;
#[cfg(not(madsim))]
pub mod tls;
mod write_gather;
#[cfg(not(madsim))]
pub mod zookeeper;
