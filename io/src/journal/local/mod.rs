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
//! grow and are never reused; compaction leaves gaps. Other files in the
//! folder are ignored, except `journal.lock`, which an open journal holds
//! with `flock` so that two handles never write the same folder. Appends go to the segment with the highest id (the
//! *current* one); all others are sealed and never written again.
//!
//! A segment starts with a 24-byte header:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HLYDJSEG"
//!      8     4  format version (1)
//!     12     4  flags (0; none defined)
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
//! See the `liveness` module for the rule. [`LocalJournal::compact`] deletes
//! dead sealed segments oldest first, fsyncing the folder after each unlink.
//! Deleting in that order, durably one at a time, means that after a crash
//! at any point the files left give the same latest entry per key: a
//! tombstone's segment is only deleted after every older segment holding its
//! key is gone for good.

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
use liveness::Liveness;

/// Default size at which a segment is sealed and a new one started.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest `segment_bytes` accepted (4 GiB).
pub const SEGMENT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Lock file in the journal folder, held by the open journal.
pub const LOCK_FILE_NAME: &str = "journal.lock";
/// Encoded bytes gathered before a `pwrite`, bounding the buffer a large
/// group commit needs.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

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
    pub segments_deleted: u64,
}

/// What one `compact` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    pub segments_deleted: usize,
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
    /// Segment of each batch, in order.
    placement: Vec<u64>,
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
        let ids = segment::list(&dir)?;

        let mut liveness = Liveness::default();
        let mut segment_bytes = BTreeMap::new();
        let mut recovery = Recovery::default();
        let mut stats = JournalStats::default();

        for (i, &id) in ids.iter().enumerate() {
            let is_last = i + 1 == ids.len();
            liveness.add_segment(id);
            let scan = segment::scan(&dir, id, None, &mut |batch| {
                for e in &batch {
                    liveness.record(id, e);
                }
            })?;
            recovery.batches += scan.batches;
            recovery.entries += scan.entries;
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

        let current = match ids.last() {
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
            let scan = segment::scan(&self.config.dir, id, Some(len), &mut |batch| f(&batch))?;
            if let Some((offset, problem)) = scan.stop {
                let file = segment::file_name(id);
                return Err(if offset == 0 {
                    LocalJournalError::BadSegmentHeader { file, problem }
                } else {
                    LocalJournalError::CorruptBatch {
                        file,
                        offset,
                        problem,
                    }
                });
            }
            if scan.valid_bytes != len {
                return Err(LocalJournalError::CorruptBatch {
                    file: segment::file_name(id),
                    offset: scan.valid_bytes,
                    problem: Corruption::FrameShort { available: 0 },
                });
            }
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
        for (batch, &id) in batches.iter().zip(&undo.placement) {
            self.liveness.add_segment(id);
            for e in batch {
                self.liveness.record(id, e);
            }
            self.stats.entries_appended += batch.len() as u64;
        }
        self.stats.batches_appended += batches.len() as u64;
        Ok(())
    }

    /// Deletes sealed segments whose entries are all dead, oldest first,
    /// each unlink made durable before the next (see the module docs).
    pub fn compact(&mut self) -> Result<CompactStats, LocalJournalError> {
        self.check_poisoned()?;
        let sealed: Vec<u64> = self
            .segment_bytes
            .range(..self.current.id)
            .map(|(id, _)| *id)
            .collect();
        let mut out = CompactStats::default();
        for id in sealed {
            if !self.liveness.is_dead(id) {
                continue;
            }
            let path = segment::path(&self.config.dir, id);
            std::fs::remove_file(&path).map_err(|e| LocalJournalError::io("delete", &path, e))?;
            // The file is gone from the folder whatever happens next.
            let bytes = self.segment_bytes.remove(&id).unwrap_or(0);
            self.liveness.remove_segment(id);
            self.stats.segments_deleted += 1;
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
            format::encode_batch(batch, payload_len, buf);
            undo.placement.push(self.current.id);
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
        file.write_all_at(&format::encode_header(id), 0)
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
