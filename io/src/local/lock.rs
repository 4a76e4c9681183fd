//! The live/backup lock on a shared folder.
//!
//! File-lock mode is for a live and backups on one machine (or sharing a
//! folder): whoever holds `flock` on `live.lock` is live, like Artemis's
//! file lock manager. Failback uses a second file: a waiting primary with
//! `allow_failback` holds `primary.lock`, and a backup that is live hands
//! the role back when it sees that file locked.

use std::path::PathBuf;
use std::time::Duration;

use halyard_core::ha::Role;
use halyard_core::node::{Input, LockEvent, LockRequest};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::file_lock::FileLock;
use crate::lock::{LockHandle, LockMsg};

/// File-lock settings.
#[derive(Clone, Debug)]
pub struct FileLockConfig {
    /// Folder shared by the live and its backups.
    pub dir: PathBuf,
    pub role: Role,
    pub allow_failback: bool,
    /// How often a waiting node retries and a live backup looks for a returning primary.
    pub poll_ms: u64,
}

const LIVE_LOCK: &str = "live.lock";
const PRIMARY_LOCK: &str = "primary.lock";

pub fn spawn_file_lock(config: FileLockConfig, inputs: mpsc::Sender<Input>) -> LockHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(config, rx, inputs));
    LockHandle::new(tx)
}

async fn run(
    config: FileLockConfig,
    mut rx: mpsc::UnboundedReceiver<LockMsg>,
    inputs: mpsc::Sender<Input>,
) {
    if let Err(e) = std::fs::create_dir_all(&config.dir) {
        warn!(dir = %config.dir.display(), error = %e, "cannot create lock folder");
    }
    let live_path = config.dir.join(LIVE_LOCK);
    let primary_path = config.dir.join(PRIMARY_LOCK);
    let poll = Duration::from_millis(config.poll_ms.max(10));
    let wants_failback = config.role == Role::Primary && config.allow_failback;
    let mut held: Option<FileLock> = None;
    let mut primary_flag: Option<FileLock> = None;
    let mut want = false;
    let mut announced = false;
    let mut handed_back = false;
    let lock_event = |ev| Input::Lock(ev);
    loop {
        let cmd = if want && held.is_none() || held.is_some() && config.role == Role::Backup {
            match tokio::time::timeout(poll, rx.recv()).await {
                Ok(Some(c)) => Some(c),
                Ok(None) => return,
                Err(_) => None,
            }
        } else {
            match rx.recv().await {
                Some(c) => Some(c),
                None => return,
            }
        };
        match cmd {
            Some((LockRequest::Acquire, _)) => {
                want = true;
                announced = false;
                handed_back = false;
            }
            Some((LockRequest::Release, done)) => {
                want = false;
                held = None;
                primary_flag = None;
                if let Some(d) = done {
                    let _ = d.send(());
                }
                continue;
            }
            None => {}
        }
        if want && held.is_none() {
            if wants_failback && primary_flag.is_none() {
                // Tell a live backup that the primary is back.
                primary_flag = FileLock::try_acquire(&primary_path).ok().flatten();
            }
            match FileLock::try_acquire(&live_path) {
                Ok(Some(l)) => {
                    held = Some(l);
                    primary_flag = None;
                    if inputs.send(lock_event(LockEvent::Acquired)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    if !announced {
                        announced = true;
                        if inputs.send(lock_event(LockEvent::Standby)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let reason = format!("{}: {e}", live_path.display());
                    if inputs
                        .send(lock_event(LockEvent::Unavailable { reason }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        } else if held.is_some() && config.role == Role::Backup && !handed_back {
            // A primary waiting with failback holds primary.lock.
            match FileLock::try_acquire(&primary_path) {
                Ok(Some(probe)) => drop(probe),
                Ok(None) => {
                    debug!("primary is waiting for failback");
                    handed_back = true;
                    if inputs.send(lock_event(LockEvent::HandBack)).await.is_err() {
                        return;
                    }
                }
                // Cannot tell now (say, the folder is gone): look again next poll.
                Err(e) => debug!(error = %e, "cannot probe primary.lock"),
            }
        }
    }
}
