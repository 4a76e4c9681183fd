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
//! The spare is, when it can be, a dead segment given back by compaction
//! (renamed to [`RECYCLE_FILE_NAME`] instead of deleted, then overwritten
//! with zeros in place): its blocks are reused rather than freed and
//! allocated again. On a file system mounted with `discard` (this project's
//! machines, many cloud disks) freeing a 64 MiB segment trims it inside the
//! file system's journal commit, and every `fdatasync` that lands on that
//! commit waited 8 to 15 ms (docs/bench.md).
//!
//! Zeros are never mistaken for data: a batch frame of zeros is invalid (its
//! length is below the minimum), so a scan stops at the first one, and
//! recovery cuts the last segment there as it cuts a torn tail. A spare is
//! only used once it is whole and synced, so a recycled file's old batches
//! are all zeros before it becomes a segment again; a spare or a recycled
//! file left by a crash is deleted by `LocalJournal::open`, which takes the
//! folder's lock first.

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

/// A dead segment compaction renamed instead of deleting, waiting to be
/// the next spare; not a segment name either.
pub const RECYCLE_FILE_NAME: &str = "dead-segment.recycle";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(SPARE_FILE_NAME)
}

pub fn recycle_path(dir: &Path) -> PathBuf {
    dir.join(RECYCLE_FILE_NAME)
}

/// A spare being written, or written.
#[derive(Debug)]
pub struct Spare {
    path: PathBuf,
    cancel: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), LocalJournalError>>>,
    recycled: bool,
}

impl Spare {
    /// Starts writing a spare of `bytes` zeros at `dir`'s spare path,
    /// replacing any file there. With `recycle`, the file at
    /// [`recycle_path`] becomes the spare and is overwritten in place
    /// (a new file if that rename fails).
    pub fn start(dir: &Path, bytes: u64, recycle: bool) -> Spare {
        let path = path(dir);
        let recycle = recycle
            && {
                let from = recycle_path(dir);
                match std::fs::rename(&from, &path) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(file = %from.display(), error = %e, "could not reuse a dead segment as the spare; writing a new one");
                        false
                    }
                }
            };
        let cancel = Arc::new(AtomicBool::new(false));
        let worker = {
            let (path, cancel) = (path.clone(), cancel.clone());
            std::thread::Builder::new()
                .name("halyard-spare".into())
                .spawn(move || fill(&path, bytes, recycle, &cancel))
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
            recycled: recycle,
        }
    }

    /// It overwrites a recycled dead segment.
    pub fn recycled(&self) -> bool {
        self.recycled
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

/// Writes `bytes` zeros to the file at `path` and syncs them, a chunk at a
/// time, stopping early (with an error) when `cancel` is set. A new file
/// unless `in_place`: then the file there keeps its blocks, is cut to
/// `bytes` if it is longer, and every byte of it is overwritten.
fn fill(
    path: &Path,
    bytes: u64,
    in_place: bool,
    cancel: &AtomicBool,
) -> Result<(), LocalJournalError> {
    let io = |op| move |e| LocalJournalError::io(op, path, e);
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!in_place)
        .open(path)
        .map_err(io("create"))?;
    if in_place && file.metadata().map_err(io("stat"))?.len() > bytes {
        file.set_len(bytes).map_err(io("cut"))?;
    }
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

/// Deletes a spare and a recycled segment a stop or a crash left behind;
/// how many there were. Only under the folder's lock.
pub fn delete_leftovers(dir: &Path) -> Result<usize, LocalJournalError> {
    let mut deleted = 0;
    for p in [path(dir), recycle_path(dir)] {
        if remove_if_present(&p).map_err(|e| LocalJournalError::io("delete", &p, e))? {
            deleted += 1;
        }
    }
    Ok(deleted)
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
        let spare = Spare::start(dir.path(), 3 * CHUNK_BYTES as u64 + 5, false);
        while !spare.is_ready() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let p = spare.take().expect("written");
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 3 * CHUNK_BYTES + 5);
        assert!(data.iter().all(|b| *b == 0));

        let spare = Spare::start(dir.path(), 1 << 30, false);
        drop(spare);
        assert!(!path(dir.path()).exists(), "cancelled and deleted");
    }

    #[test]
    fn a_recycled_file_is_overwritten_in_place_to_the_size_asked() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let bytes = 2 * CHUNK_BYTES as u64 + 7;
        for old_len in [10, bytes, 3 * CHUNK_BYTES as u64] {
            std::fs::write(recycle_path(dir.path()), vec![0xA5u8; old_len as usize]).unwrap();
            let ino = std::fs::metadata(recycle_path(dir.path())).unwrap().ino();
            let spare = Spare::start(dir.path(), bytes, true);
            while !spare.is_ready() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let p = spare.take().expect("written");
            assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino, "the same file");
            assert!(!recycle_path(dir.path()).exists());
            let data = std::fs::read(&p).unwrap();
            assert_eq!(data.len() as u64, bytes, "old length {old_len}");
            assert!(data.iter().all(|b| *b == 0), "old length {old_len}");
            std::fs::remove_file(p).unwrap();
        }
        // Nothing to recycle: a new file.
        let spare = Spare::start(dir.path(), 5, true);
        while !spare.is_ready() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            std::fs::read(spare.take().expect("written")).unwrap(),
            vec![0; 5]
        );
    }
}
