//! The lock coordinator on Apache ZooKeeper: an exclusive lock with a
//! fencing epoch, and the lock state (the active broker's epoch and in-sync
//! set) stored beside it. This module is I/O only; what to do with the lock
//! (when to acquire, when to step down, who may take it) is the node's
//! decision.
//!
//! The znodes of lock `<lock-id>` (see docs/mirroring.md):
//!
//! - `/halyard/<lock-id>/active`, ephemeral: exists while the lock is held,
//!   holds the holder's node name. ZooKeeper deletes it when the holder's
//!   session ends: closed, or expired because ZooKeeper did not hear from the
//!   holder for the session timeout.
//! - `/halyard/<lock-id>/epoch`, persistent: the newest epoch. Each
//!   acquisition creates `active` and sets `epoch` to the next number in one
//!   transaction, naming the epoch znode's version it read (compare and set),
//!   so every acquisition gets a strictly larger epoch.
//! - `/halyard/<lock-id>/state`, persistent: the active's epoch and in-sync
//!   set. A write is one transaction that checks that the writer's `active`
//!   znode and the epoch znode are as the writer's acquisition left them and
//!   that the state is at the version the writer read, so only the holder of
//!   the newest epoch writes, and never over a change it has not seen.
//!
//! [`ZkSession::connect`] opens a session; [`ZkSession::try_acquire`] and
//! [`ZkSession::acquire`] give a [`ZkLock`], which has the epoch, reads and
//! writes the state, reports [`ZkLockEvent`]s (suspended, reconnected,
//! lost) and releases on [`ZkLock::release`] or drop.
//!
//! [`ZkSession`] and [`ZkLock`] also implement
//! [`crate::coordinator::LockCoordinator`] and [`crate::coordinator::HeldLock`],
//! the face they share with the file lock.
//!
//! The client is the `zookeeper-client` crate (pure Rust, async, on Tokio).

mod config;
mod coordinator;
mod error;
mod lock;
mod session;
mod state;

pub use config::{LockPaths, ZkLockConfig, ROOT, SESSION_TIMEOUT_MS_DEFAULT};
pub use error::ZkLockError;
pub use lock::{LockStatus, LossReason, ZkLock, ZkLockEvent};
pub use session::ZkSession;
pub use state::{LockState, StateVersion, VersionedState};
