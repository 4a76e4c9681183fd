//! The lock services the coordinated lock driver runs on, behind the
//! [`LockCoordinator`] face, made to survive a start without the service:
//! the file lock is opened again at every attempt (the folder may appear
//! later), the ZooKeeper session is connected at the first attempt and again
//! after it ended, the Kafka group member joins at the first attempt and
//! again after it left (`crate::kafka::KafkaMirrorLock` does that itself),
//! and a service that cannot be used at all refuses every attempt with its
//! reason.

use super::error::CoordinatorError;
use super::file::{FileCoordinator, FileHeld};
use super::port::LockCoordinator;

/// `--lock-coordinator file:DIR`: a [`FileCoordinator`] made for each
/// attempt (it only checks names and the folder).
#[derive(Clone, Debug)]
pub struct FileService {
    pub dir: std::path::PathBuf,
    pub lock_id: String,
    pub node: String,
}

impl LockCoordinator for FileService {
    type Held = FileHeld;

    async fn try_acquire(&self) -> Result<Option<FileHeld>, CoordinatorError> {
        FileCoordinator::new(&self.dir, &self.lock_id, &self.node)?
            .try_acquire()
            .await
    }
}

/// A lock service that cannot be used (a bad setting, or ZooKeeper or Kafka
/// under madsim): every attempt fails with `reason`.
#[derive(Clone, Debug)]
pub struct Refused {
    pub reason: String,
}

impl LockCoordinator for Refused {
    type Held = FileHeld;

    async fn try_acquire(&self) -> Result<Option<FileHeld>, CoordinatorError> {
        Err(CoordinatorError::Unavailable(self.reason.clone()))
    }
}

#[cfg(not(madsim))]
pub use zk::ZkService;

#[cfg(not(madsim))]
mod zk {
    use std::sync::{Arc, Mutex};

    use tracing::info;

    use crate::coordinator::{CoordinatorError, LockCoordinator};
    use crate::zookeeper::{ZkLock, ZkLockConfig, ZkLockError, ZkSession};

    /// `--lock-coordinator zookeeper:HOST:PORT,...`: one session, connected
    /// at the first attempt and again once it has ended (expired, closed).
    pub struct ZkService {
        config: ZkLockConfig,
        session: Mutex<Option<Arc<ZkSession>>>,
    }

    impl ZkService {
        pub fn new(config: ZkLockConfig) -> ZkService {
            ZkService {
                config,
                session: Mutex::new(None),
            }
        }

        fn current(&self) -> Option<Arc<ZkSession>> {
            self.session.lock().ok().and_then(|s| s.clone())
        }

        fn set(&self, session: Option<Arc<ZkSession>>) {
            if let Ok(mut s) = self.session.lock() {
                *s = session;
            }
        }

        async fn session(&self) -> Result<Arc<ZkSession>, ZkLockError> {
            if let Some(s) = self.current() {
                return Ok(s);
            }
            let s = Arc::new(ZkSession::connect(self.config.clone()).await?);
            self.set(Some(s.clone()));
            Ok(s)
        }
    }

    impl LockCoordinator for ZkService {
        type Held = ZkLock;

        async fn try_acquire(&self) -> Result<Option<ZkLock>, CoordinatorError> {
            // A session that ended is replaced once, at once.
            for _ in 0..2 {
                let session = self.session().await?;
                match session.try_acquire().await {
                    Err(e) if e.is_session_ended() => {
                        info!(error = %e, "ZooKeeper session ended: connecting again");
                        self.set(None);
                    }
                    answer => return Ok(answer?),
                }
            }
            Err(CoordinatorError::Unavailable(
                "the ZooKeeper session ended twice in a row".to_string(),
            ))
        }
    }
}
