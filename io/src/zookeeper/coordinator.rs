//! The ZooKeeper lock behind the [`LockCoordinator`] face shared with the
//! file lock, so that one driver feeds either to the core state machine.

use std::collections::BTreeSet;

use halyard_core::coordinator::LockState as CoreState;

use super::error::ZkLockError;
use super::lock::{LockStatus, ZkLock};
use super::session::ZkSession;
use super::state::{StateVersion, VersionedState};
use crate::coordinator::{CoordinatorError, HeldLock, LockCoordinator, ReadState};

impl From<ZkLockError> for CoordinatorError {
    fn from(e: ZkLockError) -> CoordinatorError {
        match e {
            ZkLockError::Fenced { epoch } => CoordinatorError::Fenced { epoch },
            ZkLockError::Lost { path } => CoordinatorError::Lost {
                why: format!("{path} is gone"),
            },
            ZkLockError::StaleVersion { .. } => CoordinatorError::StaleVersion,
            ZkLockError::Corrupt {
                path,
                found,
                reason,
            } => CoordinatorError::Corrupt {
                what: path,
                reason: format!("{reason} (found {found:?})"),
            },
            ZkLockError::Invalid {
                what,
                value,
                reason,
            } => CoordinatorError::Invalid {
                what,
                value,
                reason,
            },
            e if e.is_session_ended() => CoordinatorError::Lost { why: e.to_string() },
            e => CoordinatorError::Unavailable(e.to_string()),
        }
    }
}

fn to_core(v: VersionedState) -> ReadState<StateVersion> {
    ReadState {
        state: v.state.map(|s| CoreState {
            epoch: s.epoch,
            in_sync: s.in_sync.into_iter().collect(),
        }),
        version: v.version,
    }
}

impl LockCoordinator for ZkSession {
    type Held = ZkLock;

    async fn try_acquire(&self) -> Result<Option<ZkLock>, CoordinatorError> {
        Ok(ZkSession::try_acquire(self).await?)
    }
}

impl HeldLock for ZkLock {
    type Version = StateVersion;

    fn epoch(&self) -> u64 {
        ZkLock::epoch(self)
    }

    async fn read_state(&self) -> Result<ReadState<StateVersion>, CoordinatorError> {
        Ok(to_core(ZkLock::read_state(self).await?))
    }

    async fn write_state(
        &self,
        in_sync: &BTreeSet<String>,
        expected: StateVersion,
    ) -> Result<StateVersion, CoordinatorError> {
        let names: Vec<String> = in_sync.iter().cloned().collect();
        Ok(ZkLock::write_state(self, &names, expected).await?)
    }

    fn check(&self) -> Result<(), CoordinatorError> {
        match self.status() {
            LockStatus::Held | LockStatus::Suspended => Ok(()),
            LockStatus::Lost(reason) => Err(CoordinatorError::Lost {
                why: format!("{reason:?}"),
            }),
        }
    }

    async fn release(self) -> Result<(), CoordinatorError> {
        Ok(ZkLock::release(self).await?)
    }
}
