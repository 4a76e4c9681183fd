//! Lock coordinators for mirrored brokers (issue 13): an exclusive lock
//! with a fencing epoch, and the lock state (the active broker's epoch and
//! in-sync set) kept beside it. I/O only: the decisions (when to ask, when
//! to take the active role, when to step down) are
//! `halyard_core::coordinator::Coordinator`'s.
//!
//! Three implementations share the [`LockCoordinator`] / [`HeldLock`] face,
//! so that one driver can feed any of them to the core state machine:
//!
//! - [`FileCoordinator`] (`--lock-coordinator file:DIR`): `flock` on a file
//!   in a folder the brokers share, the epoch and the state in files beside
//!   it, written atomically.
//! - `crate::zookeeper::ZkSession` (`zookeeper:HOST:PORT,...`): an
//!   ephemeral znode, the epoch and the state in versioned znodes.
//! - `crate::kafka::KafkaMirrorLock` (`kafka:HOST:PORT,...`): partition 0 of
//!   a one-partition topic in a consumer group, the epoch and the state in a
//!   compacted topic written by a transactional producer that fences every
//!   earlier holder.
//!
//! [`spawn_coordinated_lock`] joins the core state machine to any one
//! and to the node's lock port (`--lock-coordinator`): the node hears
//! `LockEvent::Acquired` only as the active broker of a new epoch, and the
//! mirror links follow the role and the peers receipts wait for through a
//! [`CoordinatorHandle`].

mod driver;
mod error;
mod file;
mod file_format;
mod port;
mod service;

pub use driver::{
    nothing_before_active, spawn_coordinated_lock, BeforeActive, CoordinatedLockConfig,
    CoordinatorHandle, LockService, PeerNews, Role,
};
pub use error::CoordinatorError;
pub use file::{FileCoordinator, FileHeld, FilePaths, FileVersion};
pub use port::{HeldLock, LockCoordinator, ReadState};
