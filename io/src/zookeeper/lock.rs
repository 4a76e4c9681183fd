//! A held ZooKeeper lock: its epoch, writes of the lock state fenced by that
//! epoch, the events that tell its holder it may have lost it, and release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use zookeeper_client as zk;

use super::config::LockPaths;
use super::error::ZkLockError;
use super::state::{
    decode_state, encode_state, validate_node_name, LockState, StateVersion, VersionedState,
};

/// Why a holder no longer holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// ZooKeeper expired the session (it did not hear from this client for
    /// the session timeout), so it deleted the active znode; or this client
    /// could not reach ZooKeeper for longer than the session can live.
    SessionExpired,
    /// The session was closed (every handle on it was dropped).
    SessionClosed,
    /// ZooKeeper refused the session's credentials.
    AuthFailed,
    /// The active znode was deleted while the session lived (by an
    /// operator, or by a client that should not have).
    NodeDeleted,
    /// Someone else wrote the active znode.
    NodeChanged,
}

/// What a holder hears about its lock, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZkLockEvent {
    /// The connection to ZooKeeper is lost. The session, and with it the
    /// lock, lives on until the session timeout; whether to stop serving now
    /// is the caller's decision (the epoch fences a holder that goes on).
    Suspended,
    /// Connected again within the session: the lock is still held.
    Reconnected,
    /// The lock is gone; no event follows.
    Lost(LossReason),
}

/// The holder's view, as of the last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockStatus {
    Held,
    Suspended,
    Lost(LossReason),
}

/// What a held lock knows about itself.
pub(super) struct Hold {
    pub client: zk::Client,
    pub paths: LockPaths,
    pub node_name: String,
    pub epoch: u64,
    /// Data version of the epoch znode after this acquisition's bump: a
    /// later acquisition changes it, which fences this holder's writes.
    pub epoch_version: i32,
    /// Data version of the active znode this session created.
    pub active_version: i32,
    /// The session's "a `ZkLock` is alive" flag, cleared on release.
    pub holding: Arc<AtomicBool>,
}

/// A held lock. Dropping it releases the lock (without waiting);
/// [`ZkLock::release`] releases and waits for ZooKeeper's answer. Either
/// way only this holder's own active znode is deleted, and only while its
/// epoch is the newest.
pub struct ZkLock {
    hold: Hold,
    events: mpsc::UnboundedReceiver<ZkLockEvent>,
    status: Arc<Mutex<LockStatus>>,
    watcher: JoinHandle<()>,
    released: bool,
}

impl ZkLock {
    /// Starts watching the session and the active znode (`node` is the
    /// one-shot watch set when the acquisition read the znode back).
    pub(super) fn start(hold: Hold, node: zk::OneshotWatcher) -> ZkLock {
        let (tx, events) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(LockStatus::Held));
        let watcher = tokio::spawn(watch(
            hold.client.state_watcher(),
            node,
            tx,
            status.clone(),
            hold.paths.active.clone(),
            hold.epoch,
        ));
        info!(path = %hold.paths.active, epoch = hold.epoch, node = %hold.node_name, "ZooKeeper lock acquired");
        ZkLock {
            hold,
            events,
            status,
            watcher,
            released: false,
        }
    }

    /// The fencing token of this acquisition: larger than every earlier
    /// acquisition's.
    pub fn epoch(&self) -> u64 {
        self.hold.epoch
    }

    pub fn node_name(&self) -> &str {
        &self.hold.node_name
    }

    pub fn paths(&self) -> &LockPaths {
        &self.hold.paths
    }

    pub fn session_id(&self) -> i64 {
        self.hold.client.session_id().0
    }

    /// The status as of the last event (not yet necessarily taken with
    /// [`ZkLock::next_event`]).
    pub fn status(&self) -> LockStatus {
        *lock_status(&self.status)
    }

    /// The next event; `None` once the lock is lost (or released) and every
    /// event was taken.
    pub async fn next_event(&mut self) -> Option<ZkLockEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<ZkLockEvent> {
        self.events.try_recv().ok()
    }

    pub async fn read_state(&self) -> Result<VersionedState, ZkLockError> {
        read_state(&self.hold.client, &self.hold.paths).await
    }

    /// Writes the state (this holder's epoch and `in_sync`) if the state
    /// znode is still at `expected` and this holder's epoch is still the
    /// newest; returns the new version. Refused with
    /// [`ZkLockError::StaleVersion`] if the state changed since `expected`,
    /// [`ZkLockError::Fenced`] if the lock was acquired again since,
    /// [`ZkLockError::Lost`] if the active znode is gone. All three checks
    /// and the write are one ZooKeeper transaction. After an error for which
    /// [`ZkLockError::is_connection_loss`] holds, the write may or may not
    /// have happened: read the state again.
    pub async fn write_state(
        &self,
        in_sync: &[String],
        expected: StateVersion,
    ) -> Result<StateVersion, ZkLockError> {
        for name in in_sync {
            validate_node_name(name)?;
        }
        let hold = &self.hold;
        let state = LockState {
            epoch: hold.epoch,
            in_sync: in_sync.to_vec(),
        };
        let data = encode_state(&state);
        let mut multi = hold.client.new_multi_writer();
        let built = multi
            .add_check_version(&hold.paths.active, hold.active_version)
            .and_then(|()| multi.add_check_version(&hold.paths.epoch, hold.epoch_version))
            .and_then(|()| multi.add_set_data(&hold.paths.state, &data, Some(expected.0)));
        built.map_err(|e| ZkLockError::zk("write", &hold.paths.state, e))?;
        match multi.commit().await {
            Ok(results) => match results.get(2) {
                Some(zk::MultiWriteResult::SetData { stat }) => {
                    debug!(epoch = hold.epoch, version = stat.version, in_sync = ?state.in_sync, "lock state written");
                    Ok(StateVersion(stat.version))
                }
                other => Err(unexpected("write", &hold.paths.state, other)),
            },
            Err(zk::MultiWriteError::OperationFailed { index: 0, .. }) => Err(ZkLockError::Lost {
                path: hold.paths.active.clone(),
            }),
            Err(zk::MultiWriteError::OperationFailed {
                index: 1,
                source: zk::Error::BadVersion,
            }) => Err(ZkLockError::Fenced { epoch: hold.epoch }),
            Err(zk::MultiWriteError::OperationFailed {
                index: 2,
                source: zk::Error::BadVersion,
            }) => Err(ZkLockError::StaleVersion {
                expected: expected.0,
            }),
            Err(e) => Err(ZkLockError::zk("write", &hold.paths.state, e.into())),
        }
    }

    /// Releases the lock and waits for ZooKeeper's answer. A lock already
    /// lost (session ended, znode gone, acquired again by another) releases
    /// without error.
    pub async fn release(mut self) -> Result<(), ZkLockError> {
        self.stop();
        let commit = self.delete_active();
        match commit.await {
            Ok(_) => {
                info!(path = %self.hold.paths.active, epoch = self.hold.epoch, "ZooKeeper lock released");
                Ok(())
            }
            // Acquired again since (epoch moved), or the znode is gone or
            // not ours: there was nothing of ours to delete.
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                debug!(index, error = %source, "nothing to release");
                Ok(())
            }
            Err(e) => {
                let err = ZkLockError::zk("release", &self.hold.paths.active, e.into());
                if err.is_session_ended() {
                    // The active znode went with the session.
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Stops the watch and clears the session's flag; no more events.
    fn stop(&mut self) {
        self.released = true;
        self.watcher.abort();
        self.hold.holding.store(false, Ordering::Release);
    }

    /// Deletes the active znode if this holder's epoch is still the newest.
    /// The request is sent when this is called; the future only waits for
    /// the answer.
    fn delete_active(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<zk::MultiWriteResult>, zk::MultiWriteError>>
           + Send
           + '_ {
        let hold = &self.hold;
        let mut multi = hold.client.new_multi_writer();
        if let Err(e) = multi
            .add_check_version(&hold.paths.epoch, hold.epoch_version)
            .and_then(|()| multi.add_delete(&hold.paths.active, Some(hold.active_version)))
        {
            // Only a malformed path fails here, and the paths were checked.
            warn!(error = %e, "cannot build the release request");
            multi.abort();
        }
        multi.commit()
    }
}

impl Drop for ZkLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.stop();
        // Sent now; the answer is not waited for.
        drop(self.delete_active());
        debug!(path = %self.hold.paths.active, epoch = self.hold.epoch, "ZooKeeper lock released on drop");
    }
}

impl std::fmt::Debug for ZkLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkLock")
            .field("path", &self.hold.paths.active)
            .field("epoch", &self.hold.epoch)
            .field("node_name", &self.hold.node_name)
            .field("status", &self.status())
            .finish()
    }
}

fn lock_status(status: &Mutex<LockStatus>) -> std::sync::MutexGuard<'_, LockStatus> {
    // Poisoned only if the watch task panicked while holding it; the value
    // is a plain enum, still meaningful.
    status.lock().unwrap_or_else(|e| e.into_inner())
}

fn unexpected(op: &'static str, path: &str, got: Option<&zk::MultiWriteResult>) -> ZkLockError {
    ZkLockError::zk(
        op,
        path,
        zk::Error::UnexpectedError(format!("unexpected transaction result {got:?}")),
    )
}

/// Reads the lock state and its version.
pub(super) async fn read_state(
    client: &zk::Client,
    paths: &LockPaths,
) -> Result<VersionedState, ZkLockError> {
    let (data, stat) = client
        .get_data(&paths.state)
        .await
        .map_err(|e| ZkLockError::zk("read", &paths.state, e))?;
    let state = decode_state(&data).map_err(|reason| ZkLockError::Corrupt {
        path: paths.state.clone(),
        found: String::from_utf8_lossy(&data).into_owned(),
        reason,
    })?;
    Ok(VersionedState {
        state,
        version: StateVersion(stat.version),
    })
}

/// The watch task: session state changes and the active znode's one-shot
/// watch become events, until the lock is lost.
async fn watch(
    mut session: zk::StateWatcher,
    node: zk::OneshotWatcher,
    tx: mpsc::UnboundedSender<ZkLockEvent>,
    status: Arc<Mutex<LockStatus>>,
    path: String,
    epoch: u64,
) {
    let report = |event: ZkLockEvent| {
        *lock_status(&status) = match event {
            ZkLockEvent::Suspended => LockStatus::Suspended,
            ZkLockEvent::Reconnected => LockStatus::Held,
            ZkLockEvent::Lost(reason) => LockStatus::Lost(reason),
        };
        match event {
            ZkLockEvent::Lost(reason) => {
                warn!(%path, epoch, ?reason, "ZooKeeper lock lost")
            }
            _ => info!(%path, epoch, ?event, "ZooKeeper lock"),
        }
        // The holder may have stopped listening; the status still says it.
        let _ = tx.send(event);
    };
    // A change between the acquisition and now.
    match session_event(session.peek_state()) {
        ZkLockEvent::Reconnected => {}
        event @ ZkLockEvent::Suspended => report(event),
        event @ ZkLockEvent::Lost(_) => return report(event),
    }
    let node = node.changed();
    tokio::pin!(node);
    let mut node_armed = true;
    loop {
        tokio::select! {
            state = session.changed() => match session_event(state) {
                event @ ZkLockEvent::Lost(_) => return report(event),
                event => report(event),
            },
            event = &mut node, if node_armed => {
                node_armed = false;
                match event.event_type {
                    zk::EventType::NodeDeleted => return report(ZkLockEvent::Lost(LossReason::NodeDeleted)),
                    zk::EventType::NodeDataChanged => return report(ZkLockEvent::Lost(LossReason::NodeChanged)),
                    // The session ended: the state watch says how.
                    zk::EventType::Session => {
                        if let event @ ZkLockEvent::Lost(_) = session_event(event.session_state) {
                            return report(event);
                        }
                    }
                    other => debug!(?other, "unexpected watch event on the active znode"),
                }
            }
        }
    }
}

fn session_event(state: zk::SessionState) -> ZkLockEvent {
    match state {
        zk::SessionState::Disconnected => ZkLockEvent::Suspended,
        // Read-only servers are not asked for (the connector's default).
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            ZkLockEvent::Reconnected
        }
        zk::SessionState::Expired => ZkLockEvent::Lost(LossReason::SessionExpired),
        zk::SessionState::Closed => ZkLockEvent::Lost(LossReason::SessionClosed),
        zk::SessionState::AuthFailed => ZkLockEvent::Lost(LossReason::AuthFailed),
    }
}
