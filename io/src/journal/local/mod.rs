//! A segment-file journal on the local disk, for the embedded (no Kafka) mode.
//!
//! The API is blocking; the Tokio driver runs it on a dedicated thread. The
//! journal stores opaque entries (a key and an optional value; no value is a
//! tombstone). The core encodes its records into those bytes itself.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian.
//!
//! The journal is a folder of segment files named by a 20-digit zero-padded
//! id, `00000000000000000001.seg`, `00000000000000000002.seg`, ... Ids only
//! grow and are never reused; compaction leaves gaps, and cleaning rewrites
//! a sealed segment under its own id (see below). Other files in the folder
//! are ignored, except `journal.lock`, which an open journal holds with
//! `flock` so that two handles never write the same folder, and
//! `<segment name>.cleaning`, an unfinished cleaning output that `open`
//! deletes. Appends go to the segment with the highest id (the *current*
//! one); all others are sealed and never appended to again.
//!
//! A segment starts with a 24-byte header:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HLYDJSEG"
//!      8     4  format version (1)
//!     12     4  replaces: 0, or in a cleaned segment the number of ids
//!               after this one that it replaced (see Compaction)
//!     16     8  segment id (must match the file name)
//! ```
//!
//! then zero or more batches, back to back. A batch is what one element of
//! `append`'s slice becomes, and is all in or all out:
//!
//! ```text
//!      u32  payload length L (4 ..= 128 MiB)
//!      u32  CRC32C (Castagnoli) of the L payload bytes
//!   L bytes payload:
//!      u32  entry count
//!      per entry:
//!        u32  key length (<= 256 KiB)
//!             key bytes
//!        u8   has_value (1 = put, 0 = tombstone)
//!        u32  value length (0 for a tombstone; <= 64 MiB)
//!             value bytes
//! ```
//!
//! A batch never spans two segments. A new segment is started when the next
//! batch would push the current one past `segment_bytes`; a batch larger than
//! that gets a segment of its own.
//!
//! # Durability
//!
//! `append` writes every batch of the call, then makes them durable with one
//! `fdatasync` of the current segment (group commit: an fsync costs about a
//! quarter of a millisecond, so one per record would cap the broker at a few
//! thousand records a second). If the call fills a segment, that segment is
//! synced before the next one is created, and the folder is fsynced after a
//! segment is created, so a crash can only ever tear the last segment.
//!
//! On `open` every batch of every segment is verified. A bad header or batch
//! in the *last* segment is what a crash during an append leaves behind (a
//! half-written or never-synced batch): that tail is cut off and reported in
//! [`Recovery::truncated_bytes`]. The same damage in an older segment cannot
//! come from a crash, so it is an error and nothing is dropped.
//!
//! # Compaction
//!
//! See the `liveness` module for the rule. [`LocalJournal::compact`] does two
//! things, in this order, every step on disk made durable before the next:
//!
//! 1. It deletes dead sealed segments oldest first, fsyncing the folder after
//!    each unlink. Deleting in that order, durably one at a time, means that
//!    after a crash at any point the files left give the same latest entry
//!    per key: a tombstone's segment is only deleted after every older
//!    segment holding its key is gone for good.
//!
//! 2. It *cleans* the sealed prefix, as Kafka's log cleaner does. Deleting
//!    whole segments alone stalls on the broker's pattern: a few permanent
//!    records (activation, queue definitions) pin the first segment; that
//!    keeps the tombstones in the second segment of the messages stored at
//!    the end of the first one (deleting them would resurrect those
//!    messages); that pins the second segment, and so on down the chain. So
//!    once at least [`CLEAN_MIN_SEGMENTS`] segments are sealed and at least
//!    half of their bytes would go, the whole sealed prefix S0..Sk (never the
//!    current segment) is rewritten into one segment that keeps only the
//!    latest puts, in their original order. In a prefix of the oldest
//!    segments every tombstone is dead (nothing older remains for it to
//!    delete) and so is every put superseded by a later entry of its key,
//!    wherever that entry is. Each original batch that keeps an entry
//!    becomes one batch of the entries it keeps, so entries of different
//!    batches are never merged and their order never changes.
//!
//!    The cleaned segment is written to `<S0 file name>.cleaning` with the
//!    normal framing and S0's id, its header's `replaces` field set to the
//!    id of Sk minus the id of S0 (the ids it stands in for), fsynced, renamed over S0's file
//!    (atomic) and the folder fsynced; then S1..Sk are deleted oldest first,
//!    the folder fsynced after each unlink. Every crash point replays to
//!    exactly the old entries or exactly the cleaned ones:
//!    - before the rename nothing the journal reads has changed, and `open`
//!      deletes a leftover `.cleaning` file;
//!    - after it, `open` reads the cleaned S0's `replaces` and deletes
//!      whatever is left of S1..Sk before reading on, finishing the
//!      cleaning. Without that, the suffix left by a crash would replay old
//!      entries after the cleaned ones (a message stored again after its
//!      acknowledgement). Ids are never reused, so that range only ever
//!      holds segments of the cleaned prefix.
//!
//!    The index knows where each live entry is (segment, batch offset,
//!    index in the batch), so a cleaning reads only the batches that hold
//!    live entries, checks each against the index, and never reads dead
//!    bytes: its cost is the live data it copies, plus one pass over the
//!    index's keys to find them, plus an unlink per segment. It starts only
//!    when at least half of the prefix's bytes are sure to go (and at least
//!    [`CLEAN_MIN_SEGMENTS`] segments are sealed), so it never repeats
//!    itself on what it just cleaned. A `compact` that neither deletes nor
//!    cleans costs O(segments). It runs on the caller's thread, so appends
//!    wait while the live part of the prefix is copied.

mod error;
mod format;
mod liveness;
mod segment;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

pub use error::{BatchLimit, LocalJournalError};
pub use format::{
    Corruption, BATCH_ENTRIES_MAX, BATCH_FRAME_BYTES, BATCH_PAYLOAD_BYTES_MAX, FORMAT_VERSION,
    KEY_BYTES_MAX, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, VALUE_BYTES_MAX,
};
pub use segment::{file_name as segment_file_name, parse_file_name as parse_segment_file_name};

use crate::lock::file::FileLock;
use liveness::{Liveness, Position};

/// Default size at which a segment is sealed and a new one started.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest `segment_bytes` accepted (4 GiB).
pub const SEGMENT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Lock file in the journal folder, held by the open journal.
pub const LOCK_FILE_NAME: &str = "journal.lock";
/// Encoded bytes gathered before a `pwrite`, bounding the buffer a large
/// group commit (or a cleaning) needs.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// Sealed segments there must be before `compact` cleans them into one. With
/// fewer it waits: each cleaning then rewrites at least two segments' worth
/// of new data along with what it kept last time.
pub const CLEAN_MIN_SEGMENTS: usize = 3;

/// One journal entry: a key and a value, or a tombstone (no value) that
/// deletes the key, like a Kafka record with a null value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Entry {
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    pub fn tombstone(key: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            value: None,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalJournalConfig {
    /// The journal's folder; created if missing.
    pub dir: PathBuf,
    /// Size at which a segment is sealed (default 64 MiB).
    pub segment_bytes: u64,
    /// Sync data to disk on every append (default true). False only for tests
    /// and benches: an acknowledged append could be lost on power failure.
    pub fsync: bool,
}

impl LocalJournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> LocalJournalConfig {
        LocalJournalConfig {
            dir: dir.into(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            fsync: true,
        }
    }

    fn validate(&self) -> Result<(), LocalJournalError> {
        if self.segment_bytes == 0 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(LocalJournalError::InvalidConfig(format!(
                "segment_bytes {} is outside 1..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        Ok(())
    }
}

/// What `open` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub batches: u64,
    pub entries: u64,
    /// Bytes kept, headers included.
    pub bytes: u64,
    /// Bytes of torn tail cut off the last segment.
    pub truncated_bytes: u64,
    /// Segments deleted to finish a cleaning a crash interrupted.
    pub replaced_segments_deleted: usize,
}

/// Counters since `open` plus the current shape of the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub segments: usize,
    /// Bytes in all segments, headers included.
    pub bytes: u64,
    /// Keys whose latest entry is a put.
    pub live_entries: u64,
    /// Keys the compaction index tracks (live ones and tombstones on disk).
    pub tracked_keys: usize,
    /// `fdatasync` calls on segment files since open.
    pub fsyncs: u64,
    /// `fsync` calls on the folder since open.
    pub dir_fsyncs: u64,
    pub batches_appended: u64,
    pub entries_appended: u64,
    /// Dead segments deleted whole.
    pub segments_deleted: u64,
    /// Cleanings done (each rewrote a sealed prefix into one segment).
    pub cleanings: u64,
    /// Segments those cleanings rewrote.
    pub segments_cleaned: u64,
    /// Bytes compaction (deletion and cleaning) gave back since open.
    pub bytes_reclaimed: u64,
}

/// What one `compact` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Dead segments deleted whole.
    pub segments_deleted: usize,
    /// Segments of the sealed prefix rewritten into one by cleaning (0 when
    /// it did not clean).
    pub segments_cleaned: usize,
    /// Live entries the cleaning kept.
    pub entries_kept: u64,
    /// Bytes given back by deletion and cleaning together.
    pub bytes_reclaimed: u64,
    pub segments_remaining: usize,
}

/// The segment appends go to.
#[derive(Debug)]
struct Current {
    id: u64,
    file: File,
    /// Bytes in the file that belong to the journal (where the next batch goes).
    len: u64,
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
    config: LocalJournalConfig,
    current: Current,
    /// Length of every segment, the current one included.
    segment_bytes: BTreeMap<u64, u64>,
    liveness: Liveness,
    stats: JournalStats,
    /// Set when a failure left the files in a state this handle cannot vouch for.
    poisoned: Option<String>,
    write_buf: Vec<u8>,
    /// Test support: file-system changes the next `compact` may make before
    /// it stops as if the process had crashed.
    crash_after_steps: Option<u64>,
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
                    tracing::warn!(
                        file, offset, torn_bytes = torn, %problem,
                        "cutting off torn tail of the last journal segment"
                    );
                    recovery.truncated_bytes += torn;
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
            crash_after_steps: None,
            _lock: lock,
        };
        Ok((journal, recovery))
    }

    pub fn config(&self) -> &LocalJournalConfig {
        &self.config
    }

    /// Calls `f` with every batch in append order, reading the segments from
    /// disk one batch at a time (the journal is never held in memory twice).
    /// Any invalid batch is an error here: recovery already cut the torn
    /// tail, so damage now is corruption.
    pub fn for_each_batch<F: FnMut(&[Entry])>(&self, mut f: F) -> Result<(), LocalJournalError> {
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
        Ok(())
    }

    /// Deletes sealed segments whose entries are all dead, oldest first,
    /// then cleans the sealed prefix if enough of it is dead; every change
    /// made durable before the next (see the module docs). Costs O(segments)
    /// plus the work of what it deletes or cleans.
    pub fn compact(&mut self) -> Result<CompactStats, LocalJournalError> {
        self.check_poisoned()?;
        let mut out = CompactStats::default();
        self.delete_dead_segments(&mut out)?;
        if let Some(prefix) = self.prefix_to_clean() {
            self.clean_prefix(&prefix, &mut out)?;
            // A prefix with nothing live left one empty segment behind.
            self.delete_dead_segments(&mut out)?;
        }
        self.crash_after_steps = None;
        out.segments_remaining = self.segment_bytes.len();
        if out.segments_deleted > 0 {
            tracing::info!(
                segments_deleted = out.segments_deleted,
                bytes_reclaimed = out.bytes_reclaimed,
                segments_remaining = out.segments_remaining,
                "journal compacted: deleted {} segments, reclaimed {} bytes",
                out.segments_deleted,
                out.bytes_reclaimed
            );
        }
        Ok(out)
    }

    /// Test support: the next `compact` makes at most `steps` changes to the
    /// files (an unlink, creating or finishing the cleaning output, a rename)
    /// and then stops as if the process had crashed, leaving the journal
    /// poisoned. Drop it and reopen to see what a crash at that point leaves.
    #[doc(hidden)]
    pub fn simulate_crash_in_next_compact(&mut self, steps: u64) {
        self.crash_after_steps = Some(steps);
    }

    /// Test support: checks the compaction index's counters against its
    /// keys. O(keys).
    #[doc(hidden)]
    pub fn check_index(&self) -> Result<(), String> {
        self.liveness.check()
    }

    /// Called before each change compaction makes to the files.
    fn crash_point(&mut self) -> Result<(), LocalJournalError> {
        match self.crash_after_steps {
            Some(0) => {
                self.crash_after_steps = None;
                let reason = "simulated crash during compaction".to_string();
                self.poisoned = Some(reason.clone());
                Err(LocalJournalError::Poisoned { reason })
            }
            Some(n) => {
                self.crash_after_steps = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Step 1 of `compact`: whole dead segments, oldest first.
    fn delete_dead_segments(&mut self, out: &mut CompactStats) -> Result<(), LocalJournalError> {
        let sealed: Vec<u64> = self
            .segment_bytes
            .range(..self.current.id)
            .map(|(id, _)| *id)
            .collect();
        for id in sealed {
            if !self.liveness.is_dead(id) {
                continue;
            }
            self.crash_point()?;
            let path = segment::path(&self.config.dir, id);
            std::fs::remove_file(&path).map_err(|e| LocalJournalError::io("delete", &path, e))?;
            // The file is gone from the folder whatever happens next.
            let bytes = self.segment_bytes.remove(&id).unwrap_or(0);
            self.liveness.remove_segment(id);
            self.stats.segments_deleted += 1;
            self.stats.bytes_reclaimed += bytes;
            out.segments_deleted += 1;
            out.bytes_reclaimed += bytes;
            if self.config.fsync {
                if let Err(e) = segment::sync_dir(&self.config.dir) {
                    // Without this fsync a later deletion could become durable
                    // before this one: stop deleting until reopened.
                    return Err(self.poison("fsync of the folder after deleting a segment", e));
                }
                self.stats.dir_fsyncs += 1;
            }
            tracing::debug!(
                file = segment::file_name(id),
                bytes,
                "deleted dead journal segment"
            );
        }
        Ok(())
    }

    /// The sealed prefix, if cleaning it pays: at least
    /// `CLEAN_MIN_SEGMENTS` segments, and at least half of their bytes sure
    /// to go. What stays is at most one header plus, per live entry, the
    /// entry and a batch frame of its own; so a cleaning always reclaims what
    /// this promises, and the prefix it leaves is not cleaned again until
    /// new dead bytes outweigh it. O(segments).
    fn prefix_to_clean(&self) -> Option<Vec<u64>> {
        let first = *self.segment_bytes.keys().next()?;
        // The cleaned header records the replaced ids as a u32 count.
        let prefix: Vec<u64> = self
            .segment_bytes
            .range(..self.current.id)
            .map(|(id, _)| *id)
            .take_while(|id| id - first <= u64::from(u32::MAX))
            .collect();
        if prefix.len() < CLEAN_MIN_SEGMENTS {
            return None;
        }
        let mut bytes = 0u64;
        let mut kept_max = SEGMENT_HEADER_BYTES;
        for id in &prefix {
            bytes += self.segment_bytes.get(id).copied().unwrap_or(0);
            let counts = self.liveness.counts(*id);
            kept_max += counts.live_bytes
                + counts.live_entries * (BATCH_FRAME_BYTES + format::PAYLOAD_HEADER_BYTES as u64);
        }
        let reclaimable = bytes.saturating_sub(kept_max);
        (reclaimable > 0 && reclaimable * 2 >= bytes).then_some(prefix)
    }

    /// Step 2 of `compact`: rewrites the sealed prefix (oldest first, at
    /// least one segment, the current one excluded) into one segment with
    /// its latest puts. See the module docs for the order of the steps and
    /// why a crash at any of them is safe.
    fn clean_prefix(
        &mut self,
        prefix: &[u64],
        out: &mut CompactStats,
    ) -> Result<(), LocalJournalError> {
        let (Some(&first), Some(&last)) = (prefix.first(), prefix.last()) else {
            return Ok(());
        };
        debug_assert!(
            last < self.current.id,
            "the current segment is never cleaned"
        );
        let started = std::time::Instant::now();
        let dir = self.config.dir.clone();
        let tmp = segment::cleaning_path(&dir, first);
        let prefix_bytes: u64 = prefix
            .iter()
            .map(|id| self.segment_bytes.get(id).copied().unwrap_or(0))
            .sum();

        // Until the rename, a failure changes nothing the journal reads: drop
        // the output and carry on with the old files.
        self.crash_point()?;
        let (cleaned_bytes, kept) = match self.write_cleaned(&tmp, prefix) {
            Ok(v) => v,
            Err(e) => {
                if !matches!(e, LocalJournalError::Poisoned { .. }) {
                    if let Err(rm) = std::fs::remove_file(&tmp) {
                        tracing::warn!(file = %tmp.display(), error = %rm, "could not delete unfinished cleaning output");
                    }
                }
                if let LocalJournalError::IndexMismatch { detail } = &e {
                    // The index cannot be trusted: reopening rebuilds it.
                    self.poisoned = Some(format!("cleaning aborted: {detail}"));
                    tracing::error!(%detail, "journal poisoned; it must be reopened");
                }
                return Err(e);
            }
        };

        self.crash_point()?;
        let target = segment::path(&dir, first);
        if let Err(e) = std::fs::rename(&tmp, &target) {
            // Whether the rename happened is unknown: reopening settles it
            // either way (a leftover is deleted, a cleaned S0 is valid).
            return Err(self.poison(
                "rename of the cleaned segment",
                LocalJournalError::io("rename", &tmp, e),
            ));
        }
        self.segment_bytes.insert(first, cleaned_bytes);
        if self.config.fsync {
            // The rename must be durable before any old segment goes, or a
            // crash could leave the old S0 without the tombstones after it.
            if let Err(e) = segment::sync_dir(&dir) {
                return Err(self.poison("fsync of the folder after cleaning", e));
            }
            self.stats.dir_fsyncs += 1;
        }
        for &id in &prefix[1..] {
            self.crash_point()?;
            let path = segment::path(&dir, id);
            if let Err(e) = std::fs::remove_file(&path) {
                return Err(self.poison(
                    "delete of a cleaned segment",
                    LocalJournalError::io("delete", &path, e),
                ));
            }
            self.segment_bytes.remove(&id);
            if self.config.fsync {
                if let Err(e) = segment::sync_dir(&dir) {
                    return Err(self.poison("fsync of the folder after deleting a segment", e));
                }
                self.stats.dir_fsyncs += 1;
            }
        }

        let kept_entries = kept.len() as u64;
        let next = self
            .segment_bytes
            .range(last + 1..)
            .next()
            .map_or(self.current.id, |(id, _)| *id);
        self.liveness.finish_clean(first, last, next, kept);
        let reclaimed = prefix_bytes.saturating_sub(cleaned_bytes);
        self.stats.cleanings += 1;
        self.stats.segments_cleaned += prefix.len() as u64;
        self.stats.bytes_reclaimed += reclaimed;
        out.segments_cleaned += prefix.len();
        out.entries_kept += kept_entries;
        out.bytes_reclaimed += reclaimed;
        tracing::info!(
            segments_cleaned = prefix.len(),
            bytes_reclaimed = reclaimed,
            entries_kept = kept_entries,
            cleaned_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            file = segment::file_name(first),
            "journal cleaned: {} segments into 1, {} bytes reclaimed, {} live entries kept",
            prefix.len(),
            reclaimed,
            kept_entries
        );
        Ok(())
    }

    /// Writes the latest puts of `prefix` to `tmp` (created afresh), in
    /// order, and makes it durable. Reads only the batches that hold them
    /// (their places are in the index): dead bytes are never read. Returns
    /// the file's length and each kept key with its new place. Checks the
    /// index against the files: every entry it points at must be there, a
    /// put of the size it recorded, and their number and bytes must be the
    /// live counts of the prefix's segments.
    fn write_cleaned(
        &mut self,
        tmp: &std::path::Path,
        prefix: &[u64],
    ) -> Result<(u64, Vec<(Bytes, Position)>), LocalJournalError> {
        let (Some(&first), Some(&last)) = (prefix.first(), prefix.last()) else {
            return Err(LocalJournalError::IndexMismatch {
                detail: "empty prefix".into(),
            });
        };
        let mismatch = |detail: String| LocalJournalError::IndexMismatch { detail };
        let live = self.liveness.live_in(first, last);
        let expected = prefix.iter().fold((0u64, 0u64), |(n, b), id| {
            let c = self.liveness.counts(*id);
            (n + c.live_entries, b + c.live_bytes)
        });
        let found = (live.len() as u64, live.iter().map(|e| e.bytes).sum::<u64>());
        if found != expected {
            return Err(mismatch(format!(
                "{} live keys ({} bytes) in the prefix, the segments count {} ({} bytes)",
                found.0, found.1, expected.0, expected.1
            )));
        }

        match std::fs::remove_file(tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LocalJournalError::io("delete", tmp, e)),
        }
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|e| LocalJournalError::io("create", tmp, e))?;
        // The ids the cleaned segment replaces: if a crash leaves any of
        // them behind after the rename, `open` deletes them.
        let replaces = u32::try_from(last - first).map_err(|_| {
            mismatch(format!(
                "prefix {first}..={last} spans more than u32::MAX ids"
            ))
        })?;
        out.write_all_at(&format::encode_header(first, replaces), 0)
            .map_err(|e| LocalJournalError::io("write header of", tmp, e))?;
        self.crash_point()?;

        let dir = self.config.dir.clone();
        let mut buf = std::mem::take(&mut self.write_buf);
        buf.clear();
        let mut len = SEGMENT_HEADER_BYTES;
        let mut kept: Vec<(Bytes, Position)> = Vec::with_capacity(live.len());
        let mut source: Option<(u64, File)> = None;
        let mut batch: Vec<Entry> = Vec::new();
        // Live entries sorted by place: each run with the same batch becomes
        // one new batch, in the old order.
        let mut rest = live.as_slice();
        while let Some(head) = rest.first() {
            let (segment_id, offset) = (head.at.segment, head.at.offset);
            let run = rest
                .iter()
                .take_while(|e| e.at.segment == segment_id && e.at.offset == offset)
                .count();
            let (group, tail) = rest.split_at(run);
            rest = tail;

            if source.as_ref().is_none_or(|(id, _)| *id != segment_id) {
                let p = segment::path(&dir, segment_id);
                let f = File::open(&p).map_err(|e| LocalJournalError::io("open", &p, e))?;
                source = Some((segment_id, f));
            }
            let Some((_, file)) = source.as_ref() else {
                unreachable!("opened above");
            };
            let seg_len = self.segment_bytes.get(&segment_id).copied().unwrap_or(0);
            let entries = segment::read_batch(file, &dir, segment_id, seg_len, offset)?;
            batch.clear();
            let new_offset = len + buf.len() as u64;
            for e in group {
                let entry = entries.get(e.at.index as usize).filter(|x| {
                    x.key == e.key && x.value.is_some() && format::entry_bytes(x) == e.bytes
                });
                let Some(entry) = entry else {
                    return Err(mismatch(format!(
                        "entry {} of the batch at {} offset {offset} is not the live entry of its key",
                        e.at.index,
                        segment::file_name(segment_id)
                    )));
                };
                kept.push((e.key.clone(), position(first, new_offset, batch.len())));
                batch.push(entry.clone());
            }
            // A subset of a batch that was within the limits is too.
            let payload_len = format::payload_len(&batch).map_err(|problem| {
                mismatch(format!("a cleaned batch is over a limit: {problem}"))
            })?;
            format::encode_batch(&batch, payload_len, &mut buf);
            if buf.len() >= WRITE_BUFFER_BYTES {
                out.write_all_at(&buf, len)
                    .map_err(|e| LocalJournalError::io("write", tmp, e))?;
                len += buf.len() as u64;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            out.write_all_at(&buf, len)
                .map_err(|e| LocalJournalError::io("write", tmp, e))?;
            len += buf.len() as u64;
            buf.clear();
        }
        if buf.capacity() <= 4 * WRITE_BUFFER_BYTES {
            self.write_buf = buf;
        }
        if self.config.fsync {
            // Complete on disk before the rename can make it part of the
            // journal.
            out.sync_all()
                .map_err(|e| LocalJournalError::io("fsync", tmp, e))?;
            self.stats.fsyncs += 1;
        }
        Ok((len, kept))
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            segments: self.segment_bytes.len(),
            bytes: self.segment_bytes.values().sum(),
            live_entries: self.liveness.live_entries(),
            tracked_keys: self.liveness.tracked_keys(),
            ..self.stats.clone()
        }
    }

    fn check_poisoned(&self) -> Result<(), LocalJournalError> {
        match &self.poisoned {
            Some(reason) => Err(LocalJournalError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, what: &str, cause: LocalJournalError) -> LocalJournalError {
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
        let file = segment::create(&self.config.dir, next)?;
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
            Ok(Current {
                id: undo.start_id,
                file,
                len: undo.start_len,
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

/// Where entry `index` of the batch at `offset` in segment `id` is. Batches
/// hold at most `BATCH_ENTRIES_MAX` entries, so the index fits.
fn position(id: u64, offset: u64, index: usize) -> Position {
    Position {
        segment: id,
        offset,
        index: index as u32,
    }
}

fn sync_data(file: &File, path: &std::path::Path) -> Result<(), LocalJournalError> {
    file.sync_data()
        .map_err(|e| LocalJournalError::io("fdatasync", path, e))
}
