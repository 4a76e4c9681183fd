//! Compaction of the local journal: deleting dead segments and cleaning
//! the sealed prefix.
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
use std::fs::File;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::entry::Entry;
use super::error::LocalJournalError;
use super::format::{self, BATCH_FRAME_BYTES, SEGMENT_HEADER_BYTES};
use super::journal::{LocalJournal, WRITE_BUFFER_BYTES};
use super::liveness::{position, Position};
use super::segment;
use super::stats::CompactStats;

/// Sealed segments there must be before `compact` cleans them into one. With
/// fewer it waits: each cleaning then rewrites at least two segments' worth
/// of new data along with what it kept last time.
pub const CLEAN_MIN_SEGMENTS: usize = 3;

impl LocalJournal {
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
        #[cfg(feature = "testkit")]
        {
            self.crash_after_steps = None;
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

    /// Called before each change compaction makes to the files. With the
    /// `testkit` feature a simulated crash may stop compaction here (see
    /// `simulate_crash_in_next_compact`).
    #[cfg(feature = "testkit")]
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

    #[cfg(not(feature = "testkit"))]
    fn crash_point(&mut self) -> Result<(), LocalJournalError> {
        Ok(())
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
}
