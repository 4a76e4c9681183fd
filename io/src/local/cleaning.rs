//! Compaction of the local journal: deleting dead segments and cleaning
//! the sealed prefix.
//!
//! See the `liveness` module for the rule. [`LocalJournal::compact`] does two
//! things, in this order, every step on disk made durable before the next:
//!
//! 1. It deletes dead sealed segments oldest first, fsyncing the folder after
//!    each unlink (or, for a few, a rename to a name that a spare reuses,
//!    which recovery treats the same way: see `spare`). Deleting in
//!    that order, durably one at a time, means that after a crash at any
//!    point the files left give the same latest entry per key: a
//!    tombstone's segment is only deleted after every older segment holding
//!    its key is gone for good.
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
//!    cleans costs O(segments).
//!
//! The file work need not stop appends. [`LocalJournal::plan_compaction`]
//! returns a [`CompactionJob`] (the segments to delete, or the prefix to
//! clean with a snapshot of its live entries and open handles on its files)
//! that another thread runs while the journal goes on appending to its
//! current segment, which no job touches; `finish_compaction` then applies
//! what the job did to the index. Jobs run one at a time in the order they
//! were planned, so the files pass through exactly the states described
//! above and every crash point stays safe. Meanwhile:
//! - a deletion's segments are dead when planned and stay dead (appends
//!   only ever make entries deader); the index forgets them once their files
//!   are gone;
//! - a cleaning's prefix is sealed, so the snapshot of its live entries is
//!   what the files hold; reads of the prefix go through the job's open
//!   handles, which keep the old files readable after the rename and the
//!   unlinks until the index moves to the cleaned segment;
//! - a key the cleaning copied may get a newer entry meanwhile. Its copy in
//!   the cleaned segment is then dead, but it is on disk: if the newer entry
//!   is a tombstone, that tombstone must outlive the cleaned segment, so the
//!   index records the key as present from the cleaned segment on
//!   (`Liveness::finish_clean`).
//!
//! What still runs on the journal's thread, between two writes: planning a
//! step (O(segments); a cleaning also scans the index's keys once for the
//! prefix's live entries: under 10 ms for the 300,000 keys of a
//! five-segment cleaning measured, so a million tracked keys would hold
//! appends some 30 ms), applying its outcome (O(segments) plus
//! the entries a cleaning kept) and dropping the keys removed segments left,
//! a slice per write (`tidy_index`).
//!
//! [`LocalJournal::compact`] runs the same jobs inline, on the caller's
//! thread.
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use super::compaction_job::{CleanPlan, CompactionJob, CompactionOutcome, Done, Work};
use super::error::LocalJournalError;
use super::format::{self, BATCH_FRAME_BYTES, SEGMENT_HEADER_BYTES};
use super::journal::LocalJournal;
use super::segment;
use super::stats::CompactStats;

/// Sealed segments there must be before `compact` cleans them into one. With
/// fewer it waits: each cleaning then rewrites at least two segments' worth
/// of new data along with what it kept last time.
pub const CLEAN_MIN_SEGMENTS: usize = 3;

impl LocalJournal {
    /// Deletes sealed segments whose entries are all dead, oldest first,
    /// then cleans the sealed prefix if enough of it is dead; every change
    /// made durable before the next (see the module docs). Runs the jobs of
    /// [`LocalJournal::plan_compaction`] inline. Costs O(segments) plus the
    /// work of what it deletes or cleans.
    pub fn compact(&mut self) -> Result<CompactStats, LocalJournalError> {
        self.check_poisoned()?;
        let mut out = CompactStats::default();
        self.delete_until_settled(&mut out)?;
        if let Some(job) = self.plan_cleaning() {
            let done = self.finish_compaction(job.run())?;
            out.add(&done);
            // A prefix with nothing live left one empty segment behind.
            self.delete_until_settled(&mut out)?;
        }
        #[cfg(feature = "testkit")]
        {
            self.crash_after_steps = None;
        }
        self.tidy_index(usize::MAX);
        out.segments_remaining = self.segment_bytes.len();
        Ok(out)
    }

    /// Open handles on segments an applied cleaning replaced: the last ones,
    /// whose closing frees the files' blocks. Close them off the append
    /// path; left here they are closed with the next ones taken or with the
    /// journal.
    pub fn take_retired_files(&mut self) -> Vec<Arc<File>> {
        std::mem::take(&mut self.retired_files)
    }

    /// Drops up to `budget` keys that removed segments left in the index
    /// (applying a job only queues them, so that it costs O(segments) and
    /// not O(tombstones)). Returns how many it looked at; 0 when none is
    /// left.
    pub fn tidy_index(&mut self, budget: usize) -> usize {
        self.liveness.forget_some(budget)
    }

    /// Deletion jobs until none is left: deleting a segment can make the
    /// next one dead (its tombstones had nothing left to delete).
    fn delete_until_settled(&mut self, out: &mut CompactStats) -> Result<(), LocalJournalError> {
        while let Some(job) = self.plan_deletion() {
            let done = self.finish_compaction(job.run())?;
            out.add(&done);
        }
        Ok(())
    }

    /// The next compaction step, if there is one: the dead sealed segments,
    /// or else a cleaning of the sealed prefix. Run the job on any thread,
    /// then give its outcome to [`LocalJournal::finish_compaction`]; until
    /// then the journal appends and reads as usual but plans nothing else.
    pub fn plan_compaction(&mut self) -> Option<CompactionJob> {
        if self.poisoned.is_some() {
            return None;
        }
        self.plan_deletion().or_else(|| self.plan_cleaning())
    }

    /// Whether a planned job has not been finished yet.
    pub fn compaction_in_flight(&self) -> bool {
        self.compaction_in_flight
    }

    fn job(&mut self, work: Work) -> CompactionJob {
        assert!(
            !self.compaction_in_flight,
            "a compaction job is planned only after the last one finished"
        );
        self.compaction_in_flight = true;
        #[cfg(feature = "testkit")]
        let crash_after_steps = self.crash_after_steps;
        #[cfg(not(feature = "testkit"))]
        let crash_after_steps = None;
        CompactionJob {
            dir: self.config.dir.clone(),
            fsync: self.config.fsync,
            work,
            recycle_to: Vec::new(),
            crash_after_steps,
        }
    }

    /// The sealed segments that are dead now, oldest first. O(segments).
    fn plan_deletion(&mut self) -> Option<CompactionJob> {
        let dead: Vec<(u64, u64)> = self
            .segment_bytes
            .range(..self.current.id)
            .filter(|(id, _)| self.liveness.is_dead(**id))
            .map(|(id, bytes)| (*id, *bytes))
            .collect();
        if dead.is_empty() {
            return None;
        }
        let mut job = self.job(Work::Delete(dead));
        job.recycle_to = self.recycle_names();
        Some(job)
    }

    /// A cleaning of the sealed prefix, if it pays (`prefix_to_clean`).
    /// Takes a snapshot of its live entries (one pass over the index's keys)
    /// and opens its files; checks the snapshot against the segments' counts.
    fn plan_cleaning(&mut self) -> Option<CompactionJob> {
        let prefix = self.prefix_to_clean()?;
        let (first, last) = (*prefix.first()?, *prefix.last()?);
        debug_assert!(
            last < self.current.id,
            "the current segment is never cleaned"
        );
        let live = self.liveness.live_in(first, last);
        let expected = prefix.iter().fold((0u64, 0u64), |(n, b), id| {
            let c = self.liveness.counts(*id);
            (n + c.live_entries, b + c.live_bytes)
        });
        let found = (live.len() as u64, live.iter().map(|e| e.bytes).sum::<u64>());
        if found != expected {
            let detail = format!(
                "{} live keys ({} bytes) in the prefix, the segments count {} ({} bytes)",
                found.0, found.1, expected.0, expected.1
            );
            // The index cannot be trusted: reopening rebuilds it.
            self.poison("cleaning", LocalJournalError::IndexMismatch { detail });
            return None;
        }
        let mut files = BTreeMap::new();
        for &id in &prefix {
            let path = segment::path(&self.config.dir, id);
            match File::open(&path) {
                Ok(f) => {
                    let len = self.segment_bytes.get(&id).copied().unwrap_or(0);
                    files.insert(id, (Arc::new(f), len));
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot open a segment to clean; cleaning later");
                    return None;
                }
            }
        }
        self.pinned = files.clone();
        Some(self.job(Work::Clean(CleanPlan {
            prefix,
            files,
            live,
        })))
    }

    /// Applies what a job of [`LocalJournal::plan_compaction`] did to the
    /// index. A failure that left the files in a state the index cannot
    /// vouch for poisons the journal (reopening recovers); any other leaves
    /// it usable, the work undone until a later try.
    pub fn finish_compaction(
        &mut self,
        outcome: CompactionOutcome,
    ) -> Result<CompactStats, LocalJournalError> {
        assert!(
            self.compaction_in_flight,
            "a compaction outcome without a planned job"
        );
        self.compaction_in_flight = false;
        self.recycled.done(outcome.recycled);
        // The last handles on files the job deleted: closing one frees its
        // blocks, milliseconds per segment, so the caller may close them
        // elsewhere (`take_retired_files`).
        let pinned = std::mem::take(&mut self.pinned);
        self.retired_files
            .extend(pinned.into_values().map(|(file, _)| file));
        #[cfg(feature = "testkit")]
        {
            self.crash_after_steps = outcome.crash_after_steps;
        }
        self.stats.fsyncs += outcome.fsyncs;
        self.stats.dir_fsyncs += outcome.dir_fsyncs;
        let mut out = CompactStats::default();
        match outcome.done {
            Done::Deleted(gone) => {
                for (id, bytes) in gone {
                    self.segment_bytes.remove(&id);
                    self.liveness.remove_segment(id);
                    self.stats.segments_deleted += 1;
                    self.stats.bytes_reclaimed += bytes;
                    out.segments_deleted += 1;
                    out.bytes_reclaimed += bytes;
                }
                if out.segments_deleted > 0 {
                    tracing::info!(
                        segments_deleted = out.segments_deleted,
                        bytes_reclaimed = out.bytes_reclaimed,
                        segments_remaining = self.segment_bytes.len(),
                        elapsed_ms = outcome.elapsed.as_millis() as u64,
                        "journal compacted: deleted {} segments, reclaimed {} bytes",
                        out.segments_deleted,
                        out.bytes_reclaimed
                    );
                }
            }
            Done::Cleaned {
                prefix,
                cleaned_bytes,
                kept,
            } => {
                let (Some(&first), Some(&last)) = (prefix.first(), prefix.last()) else {
                    unreachable!("a cleaning covers at least one segment");
                };
                let prefix_bytes: u64 = prefix
                    .iter()
                    .map(|id| self.segment_bytes.get(id).copied().unwrap_or(0))
                    .sum();
                self.segment_bytes.insert(first, cleaned_bytes);
                for id in &prefix[1..] {
                    self.segment_bytes.remove(id);
                }
                let next = self
                    .segment_bytes
                    .range(last + 1..)
                    .next()
                    .map_or(self.current.id, |(id, _)| *id);
                let copied = kept.len() as u64;
                let kept_live = self.liveness.finish_clean(first, last, next, kept);
                let reclaimed = prefix_bytes.saturating_sub(cleaned_bytes);
                self.stats.cleanings += 1;
                self.stats.segments_cleaned += prefix.len() as u64;
                self.stats.bytes_reclaimed += reclaimed;
                out.segments_cleaned += prefix.len();
                out.entries_kept += kept_live;
                out.bytes_reclaimed += reclaimed;
                tracing::info!(
                    segments_cleaned = prefix.len(),
                    bytes_reclaimed = reclaimed,
                    entries_kept = kept_live,
                    superseded_while_cleaning = copied - kept_live,
                    cleaned_bytes,
                    elapsed_ms = outcome.elapsed.as_millis() as u64,
                    file = segment::file_name(first),
                    "journal cleaned: {} segments into 1, {} bytes reclaimed, {} live entries kept",
                    prefix.len(),
                    reclaimed,
                    kept_live
                );
            }
            Done::NotCleaned => {}
        }
        out.segments_remaining = self.segment_bytes.len();
        match outcome.failure {
            None => Ok(out),
            Some((e, false)) => Err(e),
            Some((LocalJournalError::Poisoned { reason }, true)) => {
                self.poisoned = Some(reason.clone());
                Err(LocalJournalError::Poisoned { reason })
            }
            Some((e, true)) => Err(self.poison("compaction", e)),
        }
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
}
