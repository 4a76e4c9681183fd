//! The local journal itself: open (with recovery of a torn tail and of an
//! interrupted cleaning), append with group commit, read back. The format
//! and the durability rules are in the parent module's docs; compaction is
//! in `cleaning`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::LocalJournalConfig;
use super::entry::Entry;
use super::error::LocalJournalError;
use super::file_lock::FileLock;
use super::format::{self, BATCH_FRAME_BYTES, SEGMENT_HEADER_BYTES};
use super::liveness::{position, Liveness};
use super::segment;
use super::spare::{self, RecyclePool, Spare};
use super::stats::{JournalStats, Recovery};

/// Lock file in the journal folder, held by the open journal.
pub const LOCK_FILE_NAME: &str = "journal.lock";
/// Encoded bytes gathered before a `pwrite`, bounding the buffer a large
/// group commit (or a cleaning) needs.
pub(super) const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The segment appends go to.
#[derive(Debug)]
pub(super) struct Current {
    pub(super) id: u64,
    file: File,
    /// Bytes in the file that belong to the journal (where the next batch goes).
    len: u64,
    /// The file was a zero-filled spare: it is longer than `len`, and is cut
    /// to `len` when sealed.
    preallocated: bool,
}

/// Where an append call started, to undo its writes if one fails.
struct AppendUndo {
    start_id: u64,
    start_len: u64,
    /// Segments this call created, oldest first.
    created: Vec<u64>,
    /// Segments this call sealed, with their final lengths.
    sealed: Vec<(u64, u64)>,
    /// Segment and frame offset of each batch, in order.
    placement: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub struct LocalJournal {
    pub(super) config: LocalJournalConfig,
    pub(super) current: Current,
    /// Length of every segment, the current one included.
    pub(super) segment_bytes: BTreeMap<u64, u64>,
    pub(super) liveness: Liveness,
    pub(super) stats: JournalStats,
    /// Set when a failure left the files in a state this handle cannot vouch for.
    pub(super) poisoned: Option<String>,
    pub(super) write_buf: Vec<u8>,
    /// A compaction job was planned and its outcome not applied yet.
    pub(super) compaction_in_flight: bool,
    /// The prefix a planned cleaning rewrites, open: reads of it go through
    /// these handles until the cleaning is applied (the job renames and
    /// deletes the files by name meanwhile).
    pub(super) pinned: BTreeMap<u64, (Arc<File>, u64)>,
    /// Handles `pinned` held until the cleaning was applied (see
    /// `take_retired_files`).
    pub(super) retired_files: Vec<Arc<File>>,
    /// Test support: file-system changes the next `compact` may make before
    /// it stops as if the process had crashed.
    #[cfg(feature = "testkit")]
    pub(super) crash_after_steps: Option<u64>,
    /// The next segment, being zero-filled (only when syncing: without
    /// syncs there is nothing to gain). Dropped before the lock.
    spare: Option<Spare>,
    /// Dead segments kept for the next spares (see `spare`).
    pub(super) recycled: RecyclePool,
    /// Held while the journal is open, so two handles (in this process or
    /// another) never append to the same folder. Declared last: dropped
    /// after the segment file is closed.
    _lock: FileLock,
}

impl LocalJournal {
    /// Opens (or creates) the journal in `config.dir`: verifies every batch,
    /// cuts off a torn tail of the last segment and rebuilds the compaction
    /// index.
    pub fn open(config: LocalJournalConfig) -> Result<(LocalJournal, Recovery), LocalJournalError> {
        config.validate()?;
        let dir = config.dir.clone();
        let existed = dir.is_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LocalJournalError::io("create folder", &dir, e))?;
        if !existed && config.fsync {
            // The new folder's own entry must be durable too, or the first
            // acknowledged appends could vanish with it.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = FileLock::try_acquire(&lock_path)
            .map_err(|e| LocalJournalError::io("lock", &lock_path, e))?
            .ok_or_else(|| LocalJournalError::Locked { dir: dir.clone() })?;
        let listing = segment::list(&dir)?;
        // A crash during a cleaning, before its rename: the file was never
        // part of the journal (see the module docs).
        for leftover in &listing.cleaning_leftovers {
            tracing::warn!(file = %leftover.display(), "deleting unfinished journal cleaning output");
            std::fs::remove_file(leftover)
                .map_err(|e| LocalJournalError::io("delete", leftover, e))?;
        }
        let leftovers = spare::delete_leftovers(&dir)?;
        if leftovers > 0 {
            tracing::info!(dir = %dir.display(), files = leftovers, "deleted {leftovers} spare or recycled segment files a stop left behind");
        }
        let ids = listing.ids;

        let mut liveness = Liveness::default();
        let mut segment_bytes = BTreeMap::new();
        let mut recovery = Recovery::default();
        let mut stats = JournalStats::default();

        // Highest id a cleaned segment replaced, and which segment that is.
        let mut replaced_through = (0u64, 0u64);
        for (i, &id) in ids.iter().enumerate() {
            let is_last = i + 1 == ids.len();
            if id <= replaced_through.0 {
                // A crash in a cleaning after its rename: finish it (see the
                // module docs), or this segment's old entries would replay
                // after the cleaned ones.
                if is_last {
                    return Err(LocalJournalError::ReplacedLastSegment {
                        replaced: segment::file_name(id),
                        by: segment::file_name(replaced_through.1),
                    });
                }
                let path = segment::path(&dir, id);
                tracing::warn!(
                    file = %path.display(),
                    cleaned = segment::file_name(replaced_through.1),
                    "finishing an interrupted journal cleaning: deleting a segment it replaced"
                );
                std::fs::remove_file(&path)
                    .map_err(|e| LocalJournalError::io("delete", &path, e))?;
                if config.fsync {
                    segment::sync_dir(&dir)?;
                    stats.dir_fsyncs += 1;
                }
                recovery.replaced_segments_deleted += 1;
                continue;
            }
            liveness.add_segment(id);
            let scan = segment::scan(&dir, id, None, &mut |offset, batch| {
                for (index, e) in batch.iter().enumerate() {
                    liveness.record(position(id, offset, index), e);
                }
            })?;
            recovery.batches += scan.batches;
            recovery.entries += scan.entries;
            if scan.replaces > 0 {
                replaced_through = (id.saturating_add(u64::from(scan.replaces)), id);
            }
            let kept = match scan.stop {
                None => scan.valid_bytes,
                Some((offset, problem)) => {
                    let file = segment::file_name(id);
                    if offset == 0 && !(is_last && problem.is_torn_header()) {
                        return Err(LocalJournalError::BadSegmentHeader { file, problem });
                    }
                    if !is_last {
                        return Err(LocalJournalError::CorruptBatch {
                            file,
                            offset,
                            problem,
                        });
                    }
                    let torn = scan.file_bytes - scan.valid_bytes;
                    if scan.stop_at_zeros && offset > 0 {
                        // The unused end of a zero-filled segment (or a
                        // batch whose write never reached the disk): cut, so
                        // nothing a crash left past it can ever be read.
                        tracing::debug!(
                            file,
                            offset,
                            zero_bytes = torn,
                            "cutting the zero-filled end off the last journal segment"
                        );
                        recovery.zero_bytes_cut += torn;
                    } else {
                        tracing::warn!(
                            file, offset, torn_bytes = torn, %problem,
                            "cutting off torn tail of the last journal segment"
                        );
                        recovery.truncated_bytes += torn;
                    }
                    repair_tail(&config, id, scan.valid_bytes, &mut stats)?
                }
            };
            segment_bytes.insert(id, kept);
        }

        let current = match segment_bytes.keys().next_back() {
            Some(&id) => {
                let len = segment_bytes
                    .get(&id)
                    .copied()
                    .unwrap_or(SEGMENT_HEADER_BYTES);
                Current {
                    id,
                    file: segment::open_for_append(&dir, id)?,
                    len,
                    preallocated: false,
                }
            }
            None => {
                let file = segment::create(&dir, 1)?;
                if config.fsync {
                    sync_data(&file, &segment::path(&dir, 1))?;
                    segment::sync_dir(&dir)?;
                    stats.fsyncs += 1;
                    stats.dir_fsyncs += 1;
                }
                liveness.add_segment(1);
                segment_bytes.insert(1, SEGMENT_HEADER_BYTES);
                tracing::info!(dir = %dir.display(), "journal created");
                Current {
                    id: 1,
                    file,
                    len: SEGMENT_HEADER_BYTES,
                    preallocated: false,
                }
            }
        };

        recovery.segments = segment_bytes.len();
        recovery.bytes = segment_bytes.values().sum();
        if !ids.is_empty() {
            tracing::info!(
                dir = %dir.display(),
                segments = recovery.segments,
                batches = recovery.batches,
                entries = recovery.entries,
                bytes = recovery.bytes,
                truncated_bytes = recovery.truncated_bytes,
                "journal recovered: {} segments, {} batches, truncated {} bytes of torn tail",
                recovery.segments,
                recovery.batches,
                recovery.truncated_bytes
            );
        }

        let journal = LocalJournal {
            config,
            current,
            segment_bytes,
            liveness,
            stats,
            poisoned: None,
            write_buf: Vec::new(),
            compaction_in_flight: false,
            pinned: BTreeMap::new(),
            retired_files: Vec::new(),
            #[cfg(feature = "testkit")]
            crash_after_steps: None,
            spare: None,
            recycled: RecyclePool::default(),
            _lock: lock,
        };
        Ok((journal, recovery))
    }

    /// Calls `f` with every batch in append order, reading the segments from
    /// disk one batch at a time (the journal is never held in memory twice).
    /// Any invalid batch is an error here: recovery already cut the torn
    /// tail, so damage now is corruption.
    /// Not while a compaction job is in flight: it may be renaming and
    /// deleting the files read here.
    pub fn for_each_batch<F: FnMut(&[Entry])>(&self, mut f: F) -> Result<(), LocalJournalError> {
        assert!(
            !self.compaction_in_flight,
            "the journal is read whole only between compaction jobs"
        );
        for (&id, &len) in &self.segment_bytes {
            segment::scan_verified(&self.config.dir, id, len, &mut |_, batch| f(&batch))?;
        }
        Ok(())
    }

    /// Every batch in append order.
    pub fn read_all(&self) -> Result<Vec<Vec<Entry>>, LocalJournalError> {
        let mut batches = Vec::new();
        self.for_each_batch(|b| batches.push(b.to_vec()))?;
        Ok(batches)
    }

    /// Group commit: writes every batch, each as one atomic frame, then makes
    /// them all durable with one `fdatasync` (one more per segment the call
    /// fills, plus a folder fsync per segment it creates).
    ///
    /// All batches are checked against the limits before anything is
    /// written. If a write fails, the call's bytes are removed again and the
    /// journal stays usable; if a sync fails (or undoing fails) the journal
    /// is poisoned, because the kernel may have dropped the dirty pages.
    pub fn append(&mut self, batches: &[Vec<Entry>]) -> Result<(), LocalJournalError> {
        self.check_poisoned()?;
        if batches.is_empty() {
            return Ok(());
        }
        let mut payload_lens = Vec::with_capacity(batches.len());
        for (i, b) in batches.iter().enumerate() {
            let len = format::payload_len(b)
                .map_err(|problem| LocalJournalError::BatchRejected { batch: i, problem })?;
            payload_lens.push(len);
        }

        let mut undo = AppendUndo {
            start_id: self.current.id,
            start_len: self.current.len,
            created: Vec::new(),
            sealed: Vec::new(),
            placement: Vec::with_capacity(batches.len()),
        };
        let mut buf = std::mem::take(&mut self.write_buf);
        buf.clear();
        let written = self.write_batches(batches, &payload_lens, &mut buf, &mut undo);
        // Keep a normal-sized buffer for next time, not the largest batch ever.
        if buf.capacity() <= 4 * WRITE_BUFFER_BYTES {
            self.write_buf = buf;
        }
        if let Err(e) = written {
            self.undo_append(&undo);
            return Err(e);
        }
        if self.config.fsync {
            if let Err(e) = sync_data(&self.current.file, &self.current_path()) {
                return Err(self.poison("fdatasync after append", e));
            }
            self.stats.fsyncs += 1;
            if !undo.created.is_empty() {
                if let Err(e) = segment::sync_dir(&self.config.dir) {
                    return Err(self.poison("fsync of the folder after a new segment", e));
                }
                self.stats.dir_fsyncs += 1;
            }
        }

        // Durable: now the in-memory view may move forward.
        for (id, len) in &undo.sealed {
            self.segment_bytes.insert(*id, *len);
        }
        self.segment_bytes.insert(self.current.id, self.current.len);
        for (batch, &(id, offset)) in batches.iter().zip(&undo.placement) {
            self.liveness.add_segment(id);
            for (index, e) in batch.iter().enumerate() {
                self.liveness.record(position(id, offset, index), e);
            }
            self.stats.entries_appended += batch.len() as u64;
        }
        self.stats.batches_appended += batches.len() as u64;
        self.maybe_start_spare();
        Ok(())
    }

    /// Starts zero-filling the next segment once the current one is a
    /// quarter full: early enough to be ready at the roll under a steady
    /// load, late enough that a journal that never fills a segment (most
    /// tests, idle brokers) never writes one.
    fn maybe_start_spare(&mut self) {
        if self.config.fsync
            && self.spare.is_none()
            && self.current.len > self.config.segment_bytes / 4
        {
            let recycle = self.recycled.take();
            let spare = Spare::start(&self.config.dir, self.config.segment_bytes, recycle);
            self.stats.segments_recycled += u64::from(spare.recycled());
            self.spare = Some(spare);
        }
    }

    /// Where the next deletion should put dead segments for spares to
    /// reuse (only when syncing: there are no spares otherwise).
    pub(super) fn recycle_names(&mut self) -> Vec<std::path::PathBuf> {
        if !self.config.fsync {
            return Vec::new();
        }
        self.recycled.names(&self.config.dir)
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            segments: self.segment_bytes.len(),
            bytes: self.segment_bytes.values().sum(),
            live_entries: self.liveness.live_entries(),
            tracked_keys: self.liveness.tracked_keys(),
            keys_to_forget: self.liveness.keys_to_forget(),
            ..self.stats.clone()
        }
    }

    pub(super) fn check_poisoned(&self) -> Result<(), LocalJournalError> {
        match &self.poisoned {
            Some(reason) => Err(LocalJournalError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn poison(&mut self, what: &str, cause: LocalJournalError) -> LocalJournalError {
        let reason = format!("{what}: {cause}");
        tracing::error!(%reason, "journal poisoned; it must be reopened");
        self.poisoned = Some(reason);
        cause
    }

    fn current_path(&self) -> PathBuf {
        segment::path(&self.config.dir, self.current.id)
    }

    /// Writes the frames, rolling segments as needed. Records in `undo` what
    /// it did, so a failure can be undone.
    fn write_batches(
        &mut self,
        batches: &[Vec<Entry>],
        payload_lens: &[usize],
        buf: &mut Vec<u8>,
        undo: &mut AppendUndo,
    ) -> Result<(), LocalJournalError> {
        for (batch, &payload_len) in batches.iter().zip(payload_lens) {
            let frame_bytes = BATCH_FRAME_BYTES + payload_len as u64;
            let pending = self.current.len + buf.len() as u64;
            if pending > SEGMENT_HEADER_BYTES && pending + frame_bytes > self.config.segment_bytes {
                self.flush(buf)?;
                self.roll(undo)?;
            }
            let offset = self.current.len + buf.len() as u64;
            format::encode_batch(batch, payload_len, buf);
            undo.placement.push((self.current.id, offset));
            if buf.len() >= WRITE_BUFFER_BYTES {
                self.flush(buf)?;
            }
        }
        self.flush(buf)
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), LocalJournalError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.current
            .file
            .write_all_at(buf, self.current.len)
            .map_err(|e| LocalJournalError::io("write", self.current_path(), e))?;
        self.current.len += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Seals the current segment and starts the next one.
    fn roll(&mut self, undo: &mut AppendUndo) -> Result<(), LocalJournalError> {
        if self.current.preallocated {
            // A sealed segment ends at its last batch, so only the last
            // segment ever has zeros past its data.
            self.current
                .file
                .set_len(self.current.len)
                .map_err(|e| LocalJournalError::io("cut the zeros off", self.current_path(), e))?;
        }
        if self.config.fsync {
            // The sealed segment must be complete on disk before anything
            // lands in the next one, or a crash could tear an older segment.
            if let Err(e) = sync_data(&self.current.file, &self.current_path()) {
                return Err(self.poison("fdatasync of a filled segment", e));
            }
            self.stats.fsyncs += 1;
            if undo.created.last() == Some(&self.current.id) {
                // Its folder entry too, before the next segment's can exist.
                if let Err(e) = segment::sync_dir(&self.config.dir) {
                    return Err(self.poison("fsync of the folder after a new segment", e));
                }
                self.stats.dir_fsyncs += 1;
            }
        }
        let next =
            self.current
                .id
                .checked_add(1)
                .ok_or(LocalJournalError::SegmentIdsExhausted {
                    last: self.current.id,
                })?;
        // A spare still being written stays for the next roll; it is always
        // `segment_bytes` long (the config does not change).
        let spare = self.spare.take_if(|s| s.is_ready()).and_then(Spare::take);
        let (file, preallocated) = match spare {
            Some(path) => (segment::adopt(&self.config.dir, next, &path)?, true),
            None => (segment::create(&self.config.dir, next)?, false),
        };
        if preallocated {
            self.stats.segments_preallocated += 1;
        }
        undo.sealed.push((self.current.id, self.current.len));
        undo.created.push(next);
        tracing::debug!(
            sealed = segment::file_name(self.current.id),
            sealed_bytes = self.current.len,
            "journal segment rolled"
        );
        self.current = Current {
            id: next,
            file,
            len: SEGMENT_HEADER_BYTES,
            preallocated,
        };
        Ok(())
    }

    /// Removes what a failed append wrote: deletes the segments it created
    /// and truncates the one it started in. Poisons the journal if that
    /// fails too.
    fn undo_append(&mut self, undo: &AppendUndo) {
        if self.poisoned.is_some() {
            return;
        }
        let dir = self.config.dir.clone();
        let result = (|| -> Result<Current, LocalJournalError> {
            for &id in undo.created.iter().rev() {
                let p = segment::path(&dir, id);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(LocalJournalError::io(
                            "delete (undoing a failed append)",
                            p,
                            e,
                        ))
                    }
                }
            }
            let file = segment::open_for_append(&dir, undo.start_id)?;
            let p = segment::path(&dir, undo.start_id);
            file.set_len(undo.start_len)
                .map_err(|e| LocalJournalError::io("truncate (undoing a failed append)", &p, e))?;
            if self.config.fsync {
                file.sync_all()
                    .map_err(|e| LocalJournalError::io("fsync (undoing a failed append)", &p, e))?;
                if !undo.created.is_empty() {
                    segment::sync_dir(&dir)?;
                }
            }
            // Cut to where the call started, zeros included: it appends
            // to a growing file from here.
            Ok(Current {
                id: undo.start_id,
                file,
                len: undo.start_len,
                preallocated: false,
            })
        })();
        match result {
            Ok(current) => {
                tracing::warn!(
                    file = segment::file_name(undo.start_id),
                    len = undo.start_len,
                    "failed journal append undone"
                );
                self.current = current;
            }
            Err(e) => {
                self.poison("undoing a failed append", e);
            }
        }
    }
}

/// Cuts segment `id` back to its valid prefix during recovery and returns its
/// new length. A torn header is rewritten, so the segment stays usable.
fn repair_tail(
    config: &LocalJournalConfig,
    id: u64,
    valid_bytes: u64,
    stats: &mut JournalStats,
) -> Result<u64, LocalJournalError> {
    let p = segment::path(&config.dir, id);
    let file = segment::open_for_append(&config.dir, id)?;
    let kept = if valid_bytes < SEGMENT_HEADER_BYTES {
        file.set_len(0)
            .map_err(|e| LocalJournalError::io("truncate", &p, e))?;
        file.write_all_at(&format::encode_header(id, 0), 0)
            .map_err(|e| LocalJournalError::io("rewrite header of", &p, e))?;
        SEGMENT_HEADER_BYTES
    } else {
        file.set_len(valid_bytes)
            .map_err(|e| LocalJournalError::io("truncate", &p, e))?;
        valid_bytes
    };
    if config.fsync {
        // Make the cut durable before anything is appended after it.
        file.sync_all()
            .map_err(|e| LocalJournalError::io("fsync", &p, e))?;
        stats.fsyncs += 1;
    }
    Ok(kept)
}

fn sync_data(file: &File, path: &std::path::Path) -> Result<(), LocalJournalError> {
    file.sync_data()
        .map_err(|e| LocalJournalError::io("fdatasync", path, e))
}
