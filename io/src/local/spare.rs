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
//! (renamed to `dead-segment-N.recycle` instead of deleted, at most
//! [`RECYCLE_POOL_MAX`] at a time, then overwritten with zeros in place):
//! its blocks are reused rather than freed and allocated again. On a file
//! system mounted with `discard` (this project's machines, many cloud
//! disks) freeing a 64 MiB segment trims it inside the
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

/// How a dead segment that compaction renamed instead of deleting is
/// named while it waits to be a spare (`dead-segment-N.recycle`); not a
/// segment name either.
const RECYCLE_PREFIX: &str = "dead-segment-";
const RECYCLE_SUFFIX: &str = ".recycle";
/// Dead segments kept for spares at most: enough for the segments a burst
/// of deletions frees (deleting one often makes the next one dead), few
/// enough that the disk space they hold stays small.
pub const RECYCLE_POOL_MAX: usize = 4;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(SPARE_FILE_NAME)
}

fn is_recycle_name(name: &str) -> bool {
    name.strip_prefix(RECYCLE_PREFIX)
        .and_then(|n| n.strip_suffix(RECYCLE_SUFFIX))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The dead segments kept for spares, and the names for more.
#[derive(Debug, Default)]
pub struct RecyclePool {
    waiting: std::collections::VecDeque<PathBuf>,
    /// A deletion was given names and has not reported back.
    planned: bool,
    next_name: u64,
}

impl RecyclePool {
    /// Names a deletion may rename dead segments to instead of deleting
    /// them, as many as the pool has room for; none while another
    /// deletion's are out. Report every finished job to
    /// [`RecyclePool::done`].
    pub fn names(&mut self, dir: &Path) -> Vec<PathBuf> {
        let room = RECYCLE_POOL_MAX.saturating_sub(self.waiting.len());
        if self.planned || room == 0 {
            return Vec::new();
        }
        self.planned = true;
        (0..room)
            .map(|_| {
                self.next_name += 1;
                dir.join(format!(
                    "{RECYCLE_PREFIX}{}{RECYCLE_SUFFIX}",
                    self.next_name
                ))
            })
            .collect()
    }

    /// A compaction job is done: `used` are the files it renamed to names
    /// from [`RecyclePool::names`] (the other names were not used; a job
    /// given none renamed none). Jobs run one at a time, so the names out,
    /// if any, were this job's.
    pub fn done(&mut self, used: Vec<PathBuf>) {
        assert!(
            self.planned || used.is_empty(),
            "recycled segments reported without names handed out"
        );
        self.planned = false;
        self.waiting.extend(used);
        assert!(self.waiting.len() <= RECYCLE_POOL_MAX);
    }

    /// The oldest waiting file, for a spare.
    pub fn take(&mut self) -> Option<PathBuf> {
        self.waiting.pop_front()
    }
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
    /// replacing any file there. With `recycle`, that file (from a
    /// [`RecyclePool`]) becomes the spare and is overwritten in place (a new
    /// file if that rename fails).
    pub fn start(dir: &Path, bytes: u64, recycle: Option<PathBuf>) -> Spare {
        let path = path(dir);
        let recycle = recycle.is_some_and(|from| match std::fs::rename(&from, &path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(file = %from.display(), error = %e, "could not reuse a dead segment as the spare; writing a new one");
                false
            }
        });
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

/// Deletes a spare and the recycled segments a stop or a crash left
/// behind; how many there were. Only under the folder's lock.
pub fn delete_leftovers(dir: &Path) -> Result<usize, LocalJournalError> {
    let listing = std::fs::read_dir(dir).map_err(|e| LocalJournalError::io("list", dir, e))?;
    let mut recycled = Vec::new();
    for item in listing {
        let item = item.map_err(|e| LocalJournalError::io("list", dir, e))?;
        if item.file_name().to_str().is_some_and(is_recycle_name) {
            recycled.push(item.path());
        }
    }
    let mut deleted = 0;
    for p in recycled.into_iter().chain([path(dir)]) {
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
        let spare = Spare::start(dir.path(), 3 * CHUNK_BYTES as u64 + 5, None);
        while !spare.is_ready() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let p = spare.take().expect("written");
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 3 * CHUNK_BYTES + 5);
        assert!(data.iter().all(|b| *b == 0));

        let spare = Spare::start(dir.path(), 1 << 30, None);
        drop(spare);
        assert!(!path(dir.path()).exists(), "cancelled and deleted");
    }

    #[test]
    fn a_recycled_file_is_overwritten_in_place_to_the_size_asked() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let bytes = 2 * CHUNK_BYTES as u64 + 7;
        let mut pool = RecyclePool::default();
        for old_len in [10, bytes, 3 * CHUNK_BYTES as u64] {
            let names = pool.names(dir.path());
            assert_eq!(names.len(), RECYCLE_POOL_MAX);
            assert!(pool.names(dir.path()).is_empty(), "one deletion at a time");
            std::fs::write(&names[0], vec![0xA5u8; old_len as usize]).unwrap();
            let ino = std::fs::metadata(&names[0]).unwrap().ino();
            pool.done(vec![names[0].clone()]);
            let recycled = pool.take().expect("one waits");
            assert_eq!(recycled, names[0]);
            assert_eq!(pool.take(), None);
            let spare = Spare::start(dir.path(), bytes, Some(recycled));
            while !spare.is_ready() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let p = spare.take().expect("written");
            assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino, "the same file");
            assert!(!names[0].exists());
            let data = std::fs::read(&p).unwrap();
            assert_eq!(data.len() as u64, bytes, "old length {old_len}");
            assert!(data.iter().all(|b| *b == 0), "old length {old_len}");
            std::fs::remove_file(p).unwrap();
        }
        // A full pool hands out no names until a spare takes one.
        let names = pool.names(dir.path());
        pool.done(names.clone());
        assert!(pool.names(dir.path()).is_empty());
        assert_eq!(pool.take().as_ref(), names.first());
        assert_eq!(pool.names(dir.path()).len(), 1);
        pool.done(Vec::new());
        // The file to recycle is gone: a new one.
        let spare = Spare::start(dir.path(), 5, Some(dir.path().join("gone")));
        assert!(!spare.recycled());
        while !spare.is_ready() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            std::fs::read(spare.take().expect("written")).unwrap(),
            vec![0; 5]
        );
    }

    #[test]
    fn leftovers_are_the_spare_and_recycled_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut pool = RecyclePool::default();
        let names = pool.names(dir.path());
        for n in &names[..2] {
            std::fs::write(n, b"old").unwrap();
        }
        std::fs::write(path(dir.path()), b"spare").unwrap();
        let others = [
            "00000000000000000001.seg",
            "dead-segment-.recycle",
            "dead-segment-1x.recycle",
        ];
        for keep in others {
            std::fs::write(dir.path().join(keep), b"x").unwrap();
        }
        assert_eq!(delete_leftovers(dir.path()).unwrap(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, others);
    }
}
