//! A ZooKeeper session for one lock: connect, acquire (at once or waiting),
//! and read who holds it, its epoch and its state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info};
use zookeeper_client as zk;

use super::config::{LockPaths, ZkLockConfig, ROOT};
use super::error::ZkLockError;
use super::lock::{read_state, Hold, ZkLock};
use super::state::{decode_epoch, encode_epoch, VersionedState};

/// Rounds of "read the epoch, create the active znode with the next epoch"
/// before `try_acquire` gives up; a round only repeats when the epoch or the
/// layout changed under it, which a well-behaved cluster does not do.
const ACQUIRE_ROUNDS_MAX: u32 = 16;

/// One ZooKeeper session, used for one lock. Dropping it (and every
/// [`ZkLock`] acquired through it, which share the session) closes the
/// session, and ZooKeeper deletes the active znode at once.
pub struct ZkSession {
    client: zk::Client,
    config: ZkLockConfig,
    paths: LockPaths,
    /// Set while a `ZkLock` from this session is alive.
    holding: Arc<AtomicBool>,
}

impl ZkSession {
    /// Connects (within about the session timeout, or fails) and creates the
    /// lock's persistent znodes if they are missing.
    pub async fn connect(config: ZkLockConfig) -> Result<ZkSession, ZkLockError> {
        config.validate()?;
        let client = zk::Client::connector()
            .with_session_timeout(config.session_timeout)
            .connect(&config.connect)
            .await
            .map_err(|source| ZkLockError::Connect {
                connect: config.connect.clone(),
                source,
            })?;
        let session = ZkSession {
            paths: config.paths(),
            client,
            config,
            holding: Arc::new(AtomicBool::new(false)),
        };
        session.ensure_layout().await?;
        info!(
            connect = %session.config.connect,
            session = %session.client.session_id(),
            timeout_ms = session.session_timeout().as_millis() as u64,
            lock = %session.paths.dir,
            "ZooKeeper session open"
        );
        Ok(session)
    }

    pub fn config(&self) -> &ZkLockConfig {
        &self.config
    }

    pub fn paths(&self) -> &LockPaths {
        &self.paths
    }

    pub fn session_id(&self) -> i64 {
        self.client.session_id().0
    }

    /// The session timeout ZooKeeper granted (it keeps the asked one within
    /// its `minSessionTimeout`..`maxSessionTimeout`).
    pub fn session_timeout(&self) -> Duration {
        self.client.session_timeout()
    }

    /// Takes the lock if it is free: creates the ephemeral active znode and
    /// bumps the epoch in one ZooKeeper transaction. `Ok(None)`: someone
    /// else holds it.
    pub async fn try_acquire(&self) -> Result<Option<ZkLock>, ZkLockError> {
        if self.holding.load(Ordering::Acquire) {
            return Err(ZkLockError::AlreadyHeld {
                path: self.paths.active.clone(),
            });
        }
        let paths = &self.paths;
        let active_options = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        for _ in 0..ACQUIRE_ROUNDS_MAX {
            let (current, epoch_stat) = match self.read_epoch().await {
                Ok(read) => read,
                Err(ZkLockError::ZooKeeper {
                    source: zk::Error::NoNode,
                    ..
                }) => {
                    self.ensure_layout().await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let next = self.next_epoch(current)?;
            let mut multi = self.client.new_multi_writer();
            multi
                .add_create(
                    &paths.active,
                    self.config.node_name.as_bytes(),
                    &active_options,
                )
                .and_then(|()| {
                    multi.add_set_data(&paths.epoch, &encode_epoch(next), Some(epoch_stat.version))
                })
                .map_err(|e| ZkLockError::zk("acquire", &paths.active, e))?;
            match multi.commit().await {
                Ok(results) => {
                    let Some(zk::MultiWriteResult::SetData { stat }) = results.get(1) else {
                        return Err(ZkLockError::zk(
                            "acquire",
                            &paths.active,
                            zk::Error::UnexpectedError(format!(
                                "unexpected transaction result {results:?}"
                            )),
                        ));
                    };
                    return self.hold(next, stat.version).await.map(Some);
                }
                Err(zk::MultiWriteError::OperationFailed {
                    index: 0,
                    source: zk::Error::NodeExists,
                }) => match self.client.get_data(&paths.active).await {
                    // Ours: an earlier attempt whose answer was lost (the
                    // connection dropped) did take it, or a dropped
                    // `ZkLock`'s release did not get through. Keep it, with
                    // a new epoch all the same.
                    Ok((_, stat)) if stat.ephemeral_owner == self.session_id() => {
                        if let Some(lock) = self.adopt(stat.version).await? {
                            return Ok(Some(lock));
                        }
                    }
                    Ok(_) => return Ok(None),
                    // Released meanwhile: try again.
                    Err(zk::Error::NoNode) => continue,
                    Err(e) => return Err(ZkLockError::zk("read", &paths.active, e)),
                },
                // The lock's folder was deleted under us.
                Err(zk::MultiWriteError::OperationFailed {
                    index: 0,
                    source: zk::Error::NoNode,
                }) => self.ensure_layout().await?,
                // The epoch moved between the read and the transaction.
                Err(zk::MultiWriteError::OperationFailed {
                    index: 1,
                    source: zk::Error::BadVersion | zk::Error::NoNode,
                }) => continue,
                Err(e) => return Err(ZkLockError::zk("acquire", &paths.active, e.into())),
            }
        }
        Err(ZkLockError::zk(
            "acquire",
            &paths.active,
            zk::Error::UnexpectedError(format!(
                "the epoch or the layout kept changing ({ACQUIRE_ROUNDS_MAX} rounds)"
            )),
        ))
    }

    /// Waits until the lock is free and takes it. A connection lost
    /// meanwhile is waited out (the client reconnects within the session);
    /// fails if the session ends. Cancel it by dropping the future.
    pub async fn acquire(&self) -> Result<ZkLock, ZkLockError> {
        loop {
            match self.try_acquire().await {
                Ok(Some(lock)) => return Ok(lock),
                Ok(None) => {}
                // Whether the transaction went through is unknown; the next
                // round finds out (an active znode of this session is kept).
                Err(e) if e.is_connection_loss() => continue,
                Err(e) => return Err(e),
            }
            match self.client.check_and_watch_stat(&self.paths.active).await {
                // Released between the two requests.
                Ok((None, _)) => continue,
                // Woken by the znode's deletion (or change), or the end of
                // the session; the time limit guards against a watch lost
                // across a reconnection.
                Ok((Some(_), watcher)) => {
                    let _ = tokio::time::timeout(self.session_timeout(), watcher.changed()).await;
                }
                Err(e) => {
                    let e = ZkLockError::zk("watch", &self.paths.active, e);
                    if !e.is_connection_loss() {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The holder's node name, if the lock is held.
    pub async fn holder(&self) -> Result<Option<String>, ZkLockError> {
        match self.client.get_data(&self.paths.active).await {
            Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(ZkLockError::zk("read", &self.paths.active, e)),
        }
    }

    /// The newest epoch (0 before the first acquisition).
    pub async fn epoch(&self) -> Result<u64, ZkLockError> {
        self.read_epoch().await.map(|(epoch, _)| epoch)
    }

    /// The lock state and its version. A broker that takes the lock reads it
    /// after acquiring (through [`ZkLock::read_state`]): from then on no
    /// earlier holder can change it.
    pub async fn read_state(&self) -> Result<VersionedState, ZkLockError> {
        read_state(&self.client, &self.paths).await
    }

    /// Closes the session (as dropping it does, when no `ZkLock` from it is
    /// left).
    pub fn close(self) {
        debug!(session = %self.client.session_id(), "closing ZooKeeper session");
    }

    fn next_epoch(&self, current: u64) -> Result<u64, ZkLockError> {
        current.checked_add(1).ok_or_else(|| ZkLockError::Corrupt {
            path: self.paths.epoch.clone(),
            found: current.to_string(),
            reason: "the epoch cannot grow any more".to_string(),
        })
    }

    async fn read_epoch(&self) -> Result<(u64, zk::Stat), ZkLockError> {
        let path = &self.paths.epoch;
        let (data, stat) = self
            .client
            .get_data(path)
            .await
            .map_err(|e| ZkLockError::zk("read", path, e))?;
        let epoch = decode_epoch(&data).map_err(|reason| ZkLockError::Corrupt {
            path: path.clone(),
            found: String::from_utf8_lossy(&data).into_owned(),
            reason,
        })?;
        Ok((epoch, stat))
    }

    /// Bumps the epoch for an active znode this session already owns
    /// (`active_version`); `None` if the znode or the epoch changed meanwhile.
    async fn adopt(&self, active_version: i32) -> Result<Option<ZkLock>, ZkLockError> {
        let paths = &self.paths;
        let (current, epoch_stat) = self.read_epoch().await?;
        let next = self.next_epoch(current)?;
        let mut multi = self.client.new_multi_writer();
        multi
            .add_check_version(&paths.active, active_version)
            .and_then(|()| {
                multi.add_set_data(&paths.epoch, &encode_epoch(next), Some(epoch_stat.version))
            })
            .map_err(|e| ZkLockError::zk("acquire", &paths.active, e))?;
        match multi.commit().await {
            Ok(results) => match results.get(1) {
                Some(zk::MultiWriteResult::SetData { stat }) => {
                    debug!(epoch = next, "kept the active znode this session created");
                    self.hold(next, stat.version).await.map(Some)
                }
                other => Err(ZkLockError::zk(
                    "acquire",
                    &paths.active,
                    zk::Error::UnexpectedError(format!("unexpected transaction result {other:?}")),
                )),
            },
            Err(zk::MultiWriteError::OperationFailed { .. }) => Ok(None),
            Err(e) => Err(ZkLockError::zk("acquire", &paths.active, e.into())),
        }
    }

    /// Reads the active znode back, with a watch on it, and starts the lock.
    async fn hold(&self, epoch: u64, epoch_version: i32) -> Result<ZkLock, ZkLockError> {
        let path = &self.paths.active;
        let lost = || ZkLockError::Lost { path: path.clone() };
        let (_, stat, watcher) = match self.client.get_and_watch_data(path).await {
            Ok(read) => read,
            // Deleted right after it was created.
            Err(zk::Error::NoNode) => return Err(lost()),
            Err(e) => return Err(ZkLockError::zk("watch", path, e)),
        };
        if stat.ephemeral_owner != self.session_id() {
            return Err(lost());
        }
        self.holding.store(true, Ordering::Release);
        Ok(ZkLock::start(
            Hold {
                client: self.client.clone(),
                paths: self.paths.clone(),
                node_name: self.config.node_name.clone(),
                epoch,
                epoch_version,
                active_version: stat.version,
                holding: self.holding.clone(),
            },
            watcher,
        ))
    }

    /// Creates `/halyard`, `/halyard/<lock-id>`, its `epoch` (0) and its
    /// (empty) `state`, those that are missing.
    async fn ensure_layout(&self) -> Result<(), ZkLockError> {
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let zero = encode_epoch(0);
        for (path, data) in [
            (ROOT, &[][..]),
            (self.paths.dir.as_str(), &[][..]),
            (self.paths.epoch.as_str(), &zero[..]),
            (self.paths.state.as_str(), &[][..]),
        ] {
            match self.client.create(path, data, &persistent).await {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(ZkLockError::zk("create", path, e)),
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for ZkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkSession")
            .field("connect", &self.config.connect)
            .field("session", &self.client.session_id())
            .field("lock", &self.paths.dir)
            .finish()
    }
}
