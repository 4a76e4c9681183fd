//! The file lock coordinator (`--lock-coordinator file:DIR`): brokers that
//! share the folder DIR take turns holding `flock` on `<lock-id>.lock`.
//! Beside it:
//!
//! - `<lock-id>.epoch`, the newest epoch: each acquisition increments it
//!   while holding the lock, so every acquisition gets a larger epoch;
//! - `<lock-id>.state`, the active broker's epoch and in-sync set, with a
//!   version that counts the writes;
//! - `<lock-id>.write`, a second `flock` held for the few milliseconds of a
//!   check-and-write, so that a check of the epoch and the write after it
//!   are one step even for a holder whose lock file was deleted under it.
//!
//! Every write is write-to-temp, fsync, rename, fsync the folder: a crash
//! leaves the old file or the new one, never a mix. A write is refused if
//! the epoch moved since the writer's acquisition (fenced), if the lock file
//! at the path is no longer the one the writer locked (lost), or if the
//! state changed since the version the writer read (stale).
//!
//! `flock` belongs to the open file: the kernel drops it when the holder's
//! process dies, however it dies, so the lock passes at once. A broker that
//! is only paused keeps it; the epoch fences it when it wakes up only if
//! another broker could take the lock, which needs the lock file deleted (an
//! operator's move). The folder must be on a filesystem where `flock`
//! works between the brokers (a local one; NFS emulates it).
//!
//! The calls block for a few fsyncs (about 1 ms each on a local disk);
//! the [`LockCoordinator`] face runs them inline.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use halyard_core::coordinator::LockState;
use tracing::{debug, info};

use super::error::CoordinatorError;
use super::file_format::{
    decode_epoch, decode_state, encode_epoch, encode_state, valid_lock_id, valid_node_name,
    FILE_BYTES_MAX,
};
use super::port::{HeldLock, LockCoordinator, ReadState};
use crate::local::file_lock::{flock, FileLock};

/// The files of one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePaths {
    pub dir: PathBuf,
    pub lock: PathBuf,
    pub write: PathBuf,
    pub epoch: PathBuf,
    pub state: PathBuf,
}

impl FilePaths {
    pub fn new(dir: &Path, lock_id: &str) -> FilePaths {
        let file = |ext: &str| dir.join(format!("{lock_id}.{ext}"));
        FilePaths {
            dir: dir.to_path_buf(),
            lock: file("lock"),
            write: file("write"),
            epoch: file("epoch"),
            state: file("state"),
        }
    }
}

/// The version of the state file: how many times it was written (0: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileVersion(pub u64);

#[derive(Clone, Debug)]
pub struct FileCoordinator {
    paths: FilePaths,
    node: String,
}

impl FileCoordinator {
    /// The folder must exist (it is shared: creating it here could hide a
    /// broker pointed at the wrong one).
    pub fn new(dir: &Path, lock_id: &str, node: &str) -> Result<FileCoordinator, CoordinatorError> {
        if !valid_lock_id(lock_id) {
            return Err(CoordinatorError::Invalid {
                what: "lock id",
                value: lock_id.to_string(),
                reason: "use 1 to 128 ASCII letters, digits, '.', '_' and '-'",
            });
        }
        if !valid_node_name(node) {
            return Err(CoordinatorError::Invalid {
                what: "node name",
                value: node.to_string(),
                reason: "must be 1 to 255 bytes without whitespace",
            });
        }
        if !dir.is_dir() {
            return Err(CoordinatorError::io(
                "open lock folder",
                dir,
                io::Error::new(io::ErrorKind::NotFound, "not a folder"),
            ));
        }
        Ok(FileCoordinator {
            paths: FilePaths::new(dir, lock_id),
            node: node.to_string(),
        })
    }

    pub fn paths(&self) -> &FilePaths {
        &self.paths
    }

    /// Takes the lock if free, and increments the epoch under it.
    pub fn try_acquire_now(&self) -> Result<Option<FileHeld>, CoordinatorError> {
        let Some(lock) = FileLock::try_acquire(&self.paths.lock)
            .map_err(|e| self.io("lock", &self.paths.lock, e))?
        else {
            return Ok(None);
        };
        let identity =
            file_identity(lock.file()).map_err(|e| self.io("stat", &self.paths.lock, e))?;
        let epoch = {
            let _write = self.write_mutex()?;
            let newest = read_epoch(&self.paths)?;
            let epoch = newest
                .checked_add(1)
                .ok_or_else(|| CoordinatorError::Corrupt {
                    what: self.paths.epoch.display().to_string(),
                    reason: "the epoch is at its largest".into(),
                })?;
            write_atomically(&self.paths.dir, &self.paths.epoch, &encode_epoch(epoch))
                .map_err(|e| self.io("write", &self.paths.epoch, e))?;
            epoch
        };
        info!(path = %self.paths.lock.display(), epoch, node = %self.node, "file lock acquired");
        Ok(Some(FileHeld {
            lock: Some(lock),
            identity,
            paths: self.paths.clone(),
            epoch,
        }))
    }

    /// The newest epoch and the state, read without the lock (operators,
    /// tests).
    pub fn peek(&self) -> Result<(u64, ReadState<FileVersion>), CoordinatorError> {
        Ok((read_epoch(&self.paths)?, read_state(&self.paths)?))
    }

    fn write_mutex(&self) -> Result<File, CoordinatorError> {
        write_mutex(&self.paths)
    }

    fn io(&self, op: &'static str, path: &Path, e: io::Error) -> CoordinatorError {
        CoordinatorError::io(op, path, e)
    }
}

/// A held file lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct FileHeld {
    lock: Option<FileLock>,
    /// Device and inode of the locked file.
    identity: (u64, u64),
    paths: FilePaths,
    epoch: u64,
}

impl FileHeld {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn read_state_now(&self) -> Result<ReadState<FileVersion>, CoordinatorError> {
        read_state(&self.paths)
    }

    /// Whether the path still names the file this holder locked.
    pub fn check_now(&self) -> Result<(), CoordinatorError> {
        match std::fs::metadata(&self.paths.lock) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => Ok(()),
            Ok(_) => Err(CoordinatorError::Lost {
                why: format!("{} was replaced", self.paths.lock.display()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CoordinatorError::Lost {
                why: format!("{} was deleted", self.paths.lock.display()),
            }),
            Err(e) => Err(CoordinatorError::io("stat", &self.paths.lock, e)),
        }
    }

    pub fn write_state_now(
        &self,
        in_sync: &BTreeSet<String>,
        expected: FileVersion,
    ) -> Result<FileVersion, CoordinatorError> {
        if let Some(bad) = in_sync.iter().find(|n| !valid_node_name(n)) {
            return Err(CoordinatorError::Invalid {
                what: "node name",
                value: bad.clone(),
                reason: "must be 1 to 255 bytes without whitespace",
            });
        }
        let _write = write_mutex(&self.paths)?;
        let newest = read_epoch(&self.paths)?;
        if newest != self.epoch {
            debug!(epoch = self.epoch, newest, "lock state write fenced");
            return Err(CoordinatorError::Fenced { epoch: self.epoch });
        }
        self.check_now()?;
        let current = read_state(&self.paths)?;
        if current.version != expected {
            return Err(CoordinatorError::StaleVersion);
        }
        let version = FileVersion(expected.0 + 1);
        let state = LockState {
            epoch: self.epoch,
            in_sync: in_sync.clone(),
        };
        write_atomically(
            &self.paths.dir,
            &self.paths.state,
            &encode_state(version.0, &state),
        )
        .map_err(|e| CoordinatorError::io("write", &self.paths.state, e))?;
        debug!(
            epoch = self.epoch,
            version = version.0,
            ?in_sync,
            "lock state written"
        );
        Ok(version)
    }

    /// Releases the lock now.
    pub fn release_now(mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release();
            info!(path = %self.paths.lock.display(), epoch = self.epoch, "file lock released");
        }
    }
}

impl LockCoordinator for FileCoordinator {
    type Held = FileHeld;

    async fn try_acquire(&self) -> Result<Option<FileHeld>, CoordinatorError> {
        self.try_acquire_now()
    }
}

impl HeldLock for FileHeld {
    type Version = FileVersion;

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn read_state(&self) -> Result<ReadState<FileVersion>, CoordinatorError> {
        self.read_state_now()
    }

    async fn write_state(
        &self,
        in_sync: &BTreeSet<String>,
        expected: FileVersion,
    ) -> Result<FileVersion, CoordinatorError> {
        self.write_state_now(in_sync, expected)
    }

    fn check(&self) -> Result<(), CoordinatorError> {
        self.check_now()
    }

    async fn release(self) -> Result<(), CoordinatorError> {
        self.release_now();
        Ok(())
    }
}

fn file_identity(file: &File) -> io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Holds `<lock-id>.write` (blocking: it is only held for a check and a
/// write) until the returned file is dropped.
fn write_mutex(paths: &FilePaths) -> Result<File, CoordinatorError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&paths.write)
        .map_err(|e| CoordinatorError::io("open", &paths.write, e))?;
    flock(&file, libc::LOCK_EX).map_err(|e| CoordinatorError::io("lock", &paths.write, e))?;
    Ok(file)
}

/// A file's bytes; `None` if it does not exist.
fn read_small(path: &Path) -> Result<Option<Vec<u8>>, CoordinatorError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CoordinatorError::io("open", path, e)),
    };
    let mut data = Vec::new();
    file.take(FILE_BYTES_MAX + 1)
        .read_to_end(&mut data)
        .map_err(|e| CoordinatorError::io("read", path, e))?;
    if data.len() as u64 > FILE_BYTES_MAX {
        return Err(CoordinatorError::Corrupt {
            what: path.display().to_string(),
            reason: format!("longer than {FILE_BYTES_MAX} bytes"),
        });
    }
    Ok(Some(data))
}

fn read_epoch(paths: &FilePaths) -> Result<u64, CoordinatorError> {
    match read_small(&paths.epoch)? {
        None => Ok(0),
        Some(data) => decode_epoch(&data).map_err(|reason| CoordinatorError::Corrupt {
            what: paths.epoch.display().to_string(),
            reason,
        }),
    }
}

fn read_state(paths: &FilePaths) -> Result<ReadState<FileVersion>, CoordinatorError> {
    match read_small(&paths.state)? {
        None => Ok(ReadState {
            state: None,
            version: FileVersion(0),
        }),
        Some(data) => {
            let (version, state) =
                decode_state(&data).map_err(|reason| CoordinatorError::Corrupt {
                    what: paths.state.display().to_string(),
                    reason,
                })?;
            Ok(ReadState {
                state: Some(state),
                version: FileVersion(version),
            })
        }
    }
}

/// Write to a temporary file, fsync it, rename it over `path`, fsync the
/// folder. Callers hold the write mutex, so one temporary name will do.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}
