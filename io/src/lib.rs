//! Halyard's I/O side: Tokio drivers that run a `halyard_core::node::Node`
//! on real sockets, and the adapters behind its journal and lock ports.

pub mod client;
pub mod journal;
#[cfg(not(madsim))]
pub mod kafka;
pub mod lock;
// A real-network tool; under madsim, the simulator clogs links itself.
#[cfg(not(madsim))]
pub mod proxy;
pub mod server;
