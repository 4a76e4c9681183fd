//! The next segment, zero-filled ahead of time.
//!
//! An `fdatasync` after appending to the end of a file must also commit the
//! file system's metadata (the new size, newly allocated blocks): on ext4 a
//! second, journaled write. Into blocks that are already allocated and
//! written it flushes the data alone. Measured on this project's machines
//! (ext4), 400 KiB written and synced: 0.41 ms appended, 0.24 ms into a
//! zero-filled file (docs/bench.md). So, like Artemis's journal files, the
//! next segment is written full of zeros and synced on a thread of its own
//! while the current one fills, and a roll renames it into place.
//!
//! Zeros are never mistaken for data: a batch frame of zeros is invalid (its
//! length is below the minimum), so a scan stops at the first one, and
//! recovery cuts the last segment there as it cuts a torn tail. A spare is
//! only used once it is whole and synced; one left by a crash is deleted by
//! `LocalJournal::open`, which takes the folder's lock first.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::error::LocalJournalError;

/// The spare's name in the journal folder; not a segment name, so listings
/// and peeks pass it by.
pub const SPARE_FILE_NAME: &str = "next-segment.zeroed";
/// Zeros written per `pwrite`, and synced per `fdatasync`: small syncs keep
/// the device's queue short for the appends' own syncs.
const CHUNK_BYTES: usize = 1024 * 1024;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(SPARE_FILE_NAME)
}

/// A spare being written, or written.
#[derive(Debug)]
pub struct Spare {
    path: PathBuf,
    cancel: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), LocalJournalError>>>,
}

impl Spare {
    /// Starts writing a spare of `bytes` zeros at `dir`'s spare path,
    /// replacing any file there.
    pub fn start(dir: &Path, bytes: u64) -> Spare {
        let path = path(dir);
        let cancel = Arc::new(AtomicBool::new(false));
        let worker = {
            let (path, cancel) = (path.clone(), cancel.clone());
            std::thread::Builder::new()
                .name("halyard-spare".into())
                .spawn(move || fill(&path, bytes, &cancel))
        };
        let worker = match worker {
            Ok(w) => Some(w),
            Err(e) => {
                // No spare this time: the next roll appends as before.
                tracing::warn!(error = %e, "could not start the spare segment writer");
                None
            }
        };
        Spare {
            path,
            cancel,
            worker,
        }
    }

    /// Whether the spare is whole and synced, so `take` will not wait.
    pub fn is_ready(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| w.is_finished())
    }

    /// The spare's path if it is ready and was written without error (then
    /// it holds the `bytes` zeros `start` was given); the caller renames it.
    /// `None` (and the file deleted) otherwise.
    pub fn take(mut self) -> Option<PathBuf> {
        if !self.is_ready() {
            return None;
        }
        let worker = self.worker.take()?;
        match worker.join() {
            Ok(Ok(())) => Some(std::mem::take(&mut self.path)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "spare segment not written; the next segment grows as it is appended to");
                None
            }
            Err(_) => {
                tracing::error!("spare segment writer panicked");
                None
            }
        }
    }
}

impl Drop for Spare {
    /// Stops the writer and deletes its file: a spare not taken is never used.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if !self.path.as_os_str().is_empty() {
            if let Err(e) = remove_if_present(&self.path) {
                tracing::warn!(file = %self.path.display(), error = %e, "could not delete the spare segment");
            }
        }
    }
}

/// Writes `bytes` zeros to a new file at `path` and syncs them, a chunk at a
/// time, stopping early (with an error) when `cancel` is set.
fn fill(path: &Path, bytes: u64, cancel: &AtomicBool) -> Result<(), LocalJournalError> {
    let io = |op| move |e| LocalJournalError::io(op, path, e);
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io("create"))?;
    let zeros = vec![0u8; CHUNK_BYTES];
    let mut at = 0u64;
    while at < bytes {
        if cancel.load(Ordering::Relaxed) {
            return Err(LocalJournalError::io(
                "fill",
                path,
                std::io::Error::other("cancelled"),
            ));
        }
        let n = (bytes - at).min(CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(io("write"))?;
        file.sync_data().map_err(io("fdatasync"))?;
        at += n as u64;
    }
    // Size and blocks committed, so a roll's data syncs need no metadata.
    file.sync_all().map_err(io("fsync"))?;
    Ok(())
}

/// Deletes a spare a crash left behind. Only under the folder's lock.
pub fn delete_leftover(dir: &Path) -> Result<bool, LocalJournalError> {
    let p = path(dir);
    remove_if_present(&p).map_err(|e| LocalJournalError::io("delete", &p, e))
}

/// Deletes `p`; false if there was nothing to delete.
fn remove_if_present(p: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_zeros_of_the_size_asked_and_deleted_if_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let spare = Spare::start(dir.path(), 3 * CHUNK_BYTES as u64 + 5);
        while !spare.is_ready() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let p = spare.take().expect("written");
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 3 * CHUNK_BYTES + 5);
        assert!(data.iter().all(|b| *b == 0));

        let spare = Spare::start(dir.path(), 1 << 30);
        drop(spare);
        assert!(!path(dir.path()).exists(), "cancelled and deleted");
    }
}
