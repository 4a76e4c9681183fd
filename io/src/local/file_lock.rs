//! An exclusive lock on a file, like Artemis's file lock manager.
//!
//! A live and a backup that share a data folder on one machine both try to
//! take the lock; only the holder may write the journal. The lock is
//! `flock(2)`: it belongs to the open file description, so the kernel drops
//! it when the holder's process dies, however it dies, and a second open of
//! the same file (even in the same process) cannot take it meanwhile.
//!
//! `flock` locks are advisory and, on NFS, emulated with byte-range locks;
//! the data folder should be a local filesystem.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Retries of `flock` interrupted by a signal before giving up.
const EINTR_RETRIES_MAX: u32 = 16;

/// A held lock. Dropping it (or [`FileLock::release`]) releases the lock.
#[derive(Debug)]
pub struct FileLock {
    // Opened with O_CLOEXEC (std's default), so a spawned child does not
    // inherit the descriptor and keep the lock alive after we release it.
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Tries to take the lock on `path` (created if missing) without
    /// blocking. `Ok(None)` means someone else holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, io::Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {
                tracing::debug!(path = %path.display(), "file lock acquired");
                Ok(Some(FileLock {
                    file,
                    path: path.to_path_buf(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (to tell whether the path still names it).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Releases the lock now.
    pub fn release(self) {
        // Closing the file (on drop, below) releases it too; unlocking first
        // makes the release explicit and independent of any duplicated fd.
        if let Err(e) = flock(&self.file, libc::LOCK_UN) {
            tracing::warn!(path = %self.path.display(), error = %e, "unlocking failed; closing the file releases it");
        }
        tracing::debug!(path = %self.path.display(), "file lock released");
    }
}

/// `flock(2)` on `file`, retrying when interrupted by a signal.
pub(crate) fn flock(file: &File, operation: libc::c_int) -> Result<(), io::Error> {
    let mut attempts = 0;
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps
        // open for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        attempts += 1;
        if err.kind() == io::ErrorKind::Interrupted && attempts < EINTR_RETRIES_MAX {
            continue;
        }
        return Err(err);
    }
}
