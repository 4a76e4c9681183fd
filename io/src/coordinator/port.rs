//! The face every lock coordinator shows its driver.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;

use halyard_core::coordinator::LockState;

use super::error::CoordinatorError;

/// The lock state as read, with the version a write names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState<V> {
    /// `None` until a holder first wrote it.
    pub state: Option<LockState>,
    pub version: V,
}

/// A lock service: try to take the lock without waiting.
pub trait LockCoordinator: Send + Sync {
    type Held: HeldLock;

    /// `Ok(None)`: another broker holds it. An acquisition gets an epoch
    /// larger than every earlier acquisition's.
    fn try_acquire(
        &self,
    ) -> impl Future<Output = Result<Option<Self::Held>, CoordinatorError>> + Send;
}

/// A held lock.
pub trait HeldLock: Send {
    /// The version of the state a write names (compare and set).
    type Version: Copy + Debug + Eq + Send + Sync;

    /// This acquisition's epoch: the fencing token.
    fn epoch(&self) -> u64;

    fn read_state(
        &self,
    ) -> impl Future<Output = Result<ReadState<Self::Version>, CoordinatorError>> + Send;

    /// Writes this holder's epoch and `in_sync`, if the state is still at
    /// `expected` and this holder's epoch is still the newest (refused with
    /// [`CoordinatorError::StaleVersion`], [`CoordinatorError::Fenced`] or
    /// [`CoordinatorError::Lost`] otherwise); returns the new version.
    fn write_state(
        &self,
        in_sync: &BTreeSet<String>,
        expected: Self::Version,
    ) -> impl Future<Output = Result<Self::Version, CoordinatorError>> + Send;

    /// Whether the lock is still held, as far as can be told without
    /// asking the lock service (a ZooKeeper lock's events; a lock file still
    /// at its path).
    fn check(&self) -> Result<(), CoordinatorError>;

    /// Gives the lock up; only this holder's own lock, and only while its
    /// epoch is the newest.
    fn release(self) -> impl Future<Output = Result<(), CoordinatorError>> + Send;
}
