//! The lock coordinator of mirrored brokers on Kafka
//! (`--lock-coordinator kafka:HOST:PORT,...`), behind the
//! [`LockCoordinator`] face it shares with the file lock and ZooKeeper.
//!
//! For `--lock-id NAME` (docs/mirroring.md, *Lock coordinators: Kafka*):
//!
//! - the consumer group `halyard-mirror-lock-NAME` on the one-partition
//!   topic of the same name: the member assigned partition 0 may hold the
//!   lock (`mirror_member`);
//! - the compacted one-partition topic `halyard-mirror-state-NAME`, written
//!   only by a transactional producer with `transactional.id`
//!   `halyard-mirror-lock-NAME`: the newest epoch and the lock state
//!   (`mirror_held`, `mirror_record`).
//!
//! One member per broker, joined at the first attempt and again after it
//! left the group (a release leaves it, so partition 0 moves at once).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_core::coordinator::LockState;
use tracing::debug;

use super::mirror_error::KafkaMirrorLockError;
use super::mirror_held::{acquire, on_thread, peek, KafkaHeld};
use super::mirror_member::{KafkaMirrorLockConfig, Member};
use crate::coordinator::{CoordinatorError, LockCoordinator};

/// Longest wait, after joining the group, for the first assignment (the
/// group's first rebalance; Kafka's `group.initial.rebalance.delay.ms` is
/// 3 s by default for a new group).
const JOIN_WAIT: Duration = Duration::from_millis(4_000);
/// Between two looks at a new member's assignment.
const JOIN_NAP: Duration = Duration::from_millis(20);

/// `--lock-coordinator kafka:...`: the Kafka mirror lock of one broker.
pub struct KafkaMirrorLock {
    config: KafkaMirrorLockConfig,
    member: Mutex<Option<Arc<Member>>>,
}

impl KafkaMirrorLock {
    pub fn new(config: KafkaMirrorLockConfig) -> Result<KafkaMirrorLock, KafkaMirrorLockError> {
        config.validate()?;
        Ok(KafkaMirrorLock {
            config,
            member: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &KafkaMirrorLockConfig {
        &self.config
    }

    fn current(&self) -> Option<Arc<Member>> {
        self.member.lock().ok().and_then(|m| m.clone())
    }

    /// The group member, joined now if there is none or it left (and
    /// whether it just joined).
    async fn member(&self) -> Result<(Arc<Member>, bool), KafkaMirrorLockError> {
        if let Some(m) = self.current().filter(|m| m.status().ended.is_none()) {
            return Ok((m, false));
        }
        let config = self.config.clone();
        let m = Arc::new(on_thread("join", move || Member::join(&config)).await?);
        if let Ok(mut slot) = self.member.lock() {
            *slot = Some(m.clone());
        }
        Ok((m, true))
    }

    /// The newest epoch and the lock state as the state topic has them,
    /// read without the lock (operators, tests): `(0, None)` before the
    /// first acquisition.
    pub async fn peek(&self) -> Result<(u64, Option<LockState>), KafkaMirrorLockError> {
        let config = self.config.clone();
        let last = on_thread("peek", move || peek(&config)).await?;
        Ok(last.map_or((0, None), |r| (r.epoch, r.state)))
    }

    /// `Ok(None)`: another broker's member holds partition 0.
    pub async fn try_acquire_lock(&self) -> Result<Option<KafkaHeld>, KafkaMirrorLockError> {
        let (member, joined) = self.member().await?;
        if joined {
            let deadline = tokio::time::Instant::now() + JOIN_WAIT;
            while !member.status().rebalanced && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(JOIN_NAP).await;
            }
        }
        let status = member.status();
        if !status.holds {
            let session = Duration::from_millis(self.config.session_timeout_ms);
            if let Some((at, error)) = status.error.filter(|(at, _)| at.elapsed() < session) {
                debug!(node = %self.config.node, ago_ms = at.elapsed().as_millis() as u64, "{error}");
                return Err(KafkaMirrorLockError::Unreachable {
                    group: self.config.group(),
                    error,
                });
            }
            return Ok(None);
        }
        let config = self.config.clone();
        on_thread("acquire", move || {
            acquire(&config, member, status.generation)
        })
        .await
    }
}

impl LockCoordinator for KafkaMirrorLock {
    type Held = KafkaHeld;

    async fn try_acquire(&self) -> Result<Option<KafkaHeld>, CoordinatorError> {
        Ok(self.try_acquire_lock().await?)
    }
}
