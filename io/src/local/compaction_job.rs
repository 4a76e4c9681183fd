//! The file work of one compaction step, planned on the journal's thread and
//! done on any thread (see `cleaning` for the rules and the crash-safety
//! argument).
//!
//! A [`CompactionJob`] owns everything its file work needs: the ids and
//! lengths of the segments it deletes or cleans, the live entries a cleaning
//! copies (a snapshot of the index taken when it was planned), and open
//! handles on the prefix it cleans. It never looks at the journal, so the
//! journal can go on appending to its current segment meanwhile; what the
//! job did comes back as a [`CompactionOutcome`] that
//! `LocalJournal::finish_compaction` applies to the index. Jobs run one at a
//! time, in the order they were planned, so the files go through exactly
//! the states the one-thread compaction gave them.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::entry::Entry;
use super::error::LocalJournalError;
use super::format::{self, SEGMENT_HEADER_BYTES};
use super::journal::WRITE_BUFFER_BYTES;
use super::liveness::{position, Kept, LiveEntry};
use super::segment;

/// Compaction work for one thread to do.
#[derive(Debug)]
pub struct CompactionJob {
    pub(super) dir: PathBuf,
    pub(super) fsync: bool,
    pub(super) work: Work,
    /// Where a deletion renames its first segments instead of deleting
    /// them, one name each, for the next spares to overwrite (see `spare`):
    /// deleting frees the blocks, which costs the appends' syncs
    /// milliseconds on a file system that trims what is freed.
    pub(super) recycle_to: Vec<PathBuf>,
    /// Test support: file changes left before a simulated crash.
    pub(super) crash_after_steps: Option<u64>,
}

#[derive(Debug)]
pub(super) enum Work {
    /// Dead sealed segments `(id, bytes)`, oldest first; each one is dead
    /// whatever happens to the others, so deleting any prefix is safe.
    Delete(Vec<(u64, u64)>),
    /// Rewrite the sealed prefix into one segment.
    Clean(CleanPlan),
}

/// A cleaning as planned.
#[derive(Debug)]
pub(super) struct CleanPlan {
    /// Segment ids, oldest first; at least one, never the current segment.
    pub(super) prefix: Vec<u64>,
    /// Open handles on the prefix (shared with the journal's reads, which
    /// keep using them until the cleaning is applied) and their lengths.
    pub(super) files: BTreeMap<u64, (Arc<File>, u64)>,
    /// The latest puts in the prefix when planned, in file order.
    pub(super) live: Vec<LiveEntry>,
}

/// What a job did. Apply it with `LocalJournal::finish_compaction`.
#[derive(Debug)]
pub struct CompactionOutcome {
    pub(super) done: Done,
    /// The failure that stopped the job, if one did, and whether the files
    /// are now in a state the journal's index cannot vouch for.
    pub(super) failure: Option<(LocalJournalError, bool)>,
    pub(super) fsyncs: u64,
    pub(super) dir_fsyncs: u64,
    /// The files it renamed to `recycle_to` names (gone as segments all the
    /// same).
    pub(super) recycled: Vec<PathBuf>,
    /// Test support: what is left of the crash budget (read back by the
    /// journal only with the `testkit` feature).
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub(super) crash_after_steps: Option<u64>,
    /// Time the file work took (on whichever thread ran it).
    pub elapsed: Duration,
}

impl CompactionOutcome {
    /// What it did, for the log.
    pub fn describe(&self) -> String {
        match &self.done {
            Done::Deleted(ids) => format!("{} dead segments deleted", ids.len()),
            Done::Cleaned { prefix, kept, .. } => format!(
                "{} segments cleaned ({} entries copied)",
                prefix.len(),
                kept.len()
            ),
            Done::NotCleaned => "a cleaning that stopped".into(),
        }
    }
}

#[derive(Debug)]
pub(super) enum Done {
    /// Segments whose files are gone, `(id, bytes)`.
    Deleted(Vec<(u64, u64)>),
    /// A cleaning that completed: the cleaned file's length and, per kept
    /// key, where its entry was and where it is now.
    Cleaned {
        prefix: Vec<u64>,
        cleaned_bytes: u64,
        kept: Vec<Kept>,
    },
    /// A cleaning that stopped (see `failure`).
    NotCleaned,
}

/// A job's progress, for its crash points and counters.
struct Run {
    dir: PathBuf,
    fsync: bool,
    crash_after_steps: Option<u64>,
    fsyncs: u64,
    dir_fsyncs: u64,
    recycle_to: std::vec::IntoIter<PathBuf>,
    recycled: Vec<PathBuf>,
}

impl Run {
    /// Called before each change to the files. With a crash budget (tests)
    /// the job may stop here as if the process had crashed.
    fn crash_point(&mut self) -> Result<(), LocalJournalError> {
        match self.crash_after_steps {
            Some(0) => {
                self.crash_after_steps = None;
                Err(LocalJournalError::Poisoned {
                    reason: "simulated crash during compaction".into(),
                })
            }
            Some(n) => {
                self.crash_after_steps = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn sync_dir(&mut self) -> Result<(), LocalJournalError> {
        if self.fsync {
            segment::sync_dir(&self.dir)?;
            self.dir_fsyncs += 1;
        }
        Ok(())
    }
}

impl CompactionJob {
    /// What it will do, for the log.
    pub fn describe(&self) -> String {
        match &self.work {
            Work::Delete(ids) => format!("deleting {} dead segments", ids.len()),
            Work::Clean(plan) => format!(
                "cleaning {} segments ({} live entries)",
                plan.prefix.len(),
                plan.live.len()
            ),
        }
    }

    /// Does the file work. Blocking; touches only the files it names.
    pub fn run(self) -> CompactionOutcome {
        let started = Instant::now();
        let mut run = Run {
            dir: self.dir,
            fsync: self.fsync,
            crash_after_steps: self.crash_after_steps,
            fsyncs: 0,
            dir_fsyncs: 0,
            recycle_to: self.recycle_to.into_iter(),
            recycled: Vec::new(),
        };
        let (done, failure) = match self.work {
            Work::Delete(ids) => delete(&mut run, ids),
            Work::Clean(plan) => clean(&mut run, plan),
        };
        CompactionOutcome {
            done,
            failure,
            fsyncs: run.fsyncs,
            dir_fsyncs: run.dir_fsyncs,
            recycled: run.recycled,
            crash_after_steps: run.crash_after_steps,
            elapsed: started.elapsed(),
        }
    }
}

type Failure = Option<(LocalJournalError, bool)>;

/// Unlinks each segment (the first ones may be renamed to `recycle_to`
/// instead: for recovery the same as deleting them, as those names are not
/// segments') and makes that durable before the next.
fn delete(run: &mut Run, ids: Vec<(u64, u64)>) -> (Done, Failure) {
    let mut gone = Vec::with_capacity(ids.len());
    for (id, bytes) in ids {
        if let Err(e) = run.crash_point() {
            return (Done::Deleted(gone), Some((e, true)));
        }
        let path = segment::path(&run.dir, id);
        let removed = match run.recycle_to.next() {
            Some(to) => std::fs::rename(&path, &to).map(|()| run.recycled.push(to)),
            None => std::fs::remove_file(&path),
        };
        if let Err(e) = removed {
            // Nothing changed: the segment stays, dead, for the next try.
            return (
                Done::Deleted(gone),
                Some((LocalJournalError::io("delete", &path, e), false)),
            );
        }
        gone.push((id, bytes));
        if let Err(e) = run.sync_dir() {
            // Without this fsync a later deletion could become durable
            // before this one: stop until reopened.
            return (Done::Deleted(gone), Some((e, true)));
        }
        tracing::debug!(
            file = segment::file_name(id),
            bytes,
            "deleted dead journal segment"
        );
    }
    (Done::Deleted(gone), None)
}

/// Writes the cleaned segment, renames it over the prefix's first file and
/// deletes the rest of the prefix, each step durable before the next.
fn clean(run: &mut Run, plan: CleanPlan) -> (Done, Failure) {
    let (Some(&first), Some(&last)) = (plan.prefix.first(), plan.prefix.last()) else {
        let e = LocalJournalError::IndexMismatch {
            detail: "empty prefix".into(),
        };
        return (Done::NotCleaned, Some((e, true)));
    };
    let tmp = segment::cleaning_path(&run.dir, first);
    // Until the rename, a failure changes nothing the journal reads: drop
    // the output and carry on with the old files.
    let written = run
        .crash_point()
        .and_then(|()| write_cleaned(run, &tmp, first, last, &plan));
    let (cleaned_bytes, kept) = match written {
        Ok(v) => v,
        Err(e) => {
            let simulated_crash = matches!(e, LocalJournalError::Poisoned { .. });
            if !simulated_crash {
                if let Err(rm) = std::fs::remove_file(&tmp) {
                    tracing::warn!(file = %tmp.display(), error = %rm, "could not delete unfinished cleaning output");
                }
            }
            // An index that disagrees with the files cannot be trusted:
            // reopening rebuilds it.
            let poison = simulated_crash || matches!(e, LocalJournalError::IndexMismatch { .. });
            return (Done::NotCleaned, Some((e, poison)));
        }
    };
    // From the rename on, any failure leaves the folder between the old and
    // the cleaned state (both replay the same): reopening settles it.
    let after_rename = (|| -> Result<(), LocalJournalError> {
        run.crash_point()?;
        let target = segment::path(&run.dir, first);
        std::fs::rename(&tmp, &target).map_err(|e| LocalJournalError::io("rename", &tmp, e))?;
        // The rename must be durable before any old segment goes, or a crash
        // could leave the old S0 without the tombstones after it.
        run.sync_dir()?;
        for &id in &plan.prefix[1..] {
            run.crash_point()?;
            let path = segment::path(&run.dir, id);
            std::fs::remove_file(&path).map_err(|e| LocalJournalError::io("delete", &path, e))?;
            run.sync_dir()?;
        }
        Ok(())
    })();
    match after_rename {
        Ok(()) => (
            Done::Cleaned {
                prefix: plan.prefix,
                cleaned_bytes,
                kept,
            },
            None,
        ),
        Err(e) => (Done::NotCleaned, Some((e, true))),
    }
}

/// Writes the planned live entries of `first..=last` to `tmp` (created
/// afresh), in order, and makes it durable. Reads only the batches that hold
/// them: dead bytes are never read. Checks each against the plan: it must be
/// there, a put of the size the index recorded.
fn write_cleaned(
    run: &mut Run,
    tmp: &Path,
    first: u64,
    last: u64,
    plan: &CleanPlan,
) -> Result<(u64, Vec<Kept>), LocalJournalError> {
    let mismatch = |detail: String| LocalJournalError::IndexMismatch { detail };
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
    // The ids the cleaned segment replaces: if a crash leaves any of them
    // behind after the rename, `open` deletes them.
    let replaces = u32::try_from(last - first).map_err(|_| {
        mismatch(format!(
            "prefix {first}..={last} spans more than u32::MAX ids"
        ))
    })?;
    out.write_all_at(&format::encode_header(first, replaces), 0)
        .map_err(|e| LocalJournalError::io("write header of", tmp, e))?;
    run.crash_point()?;

    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER_BYTES);
    let mut len = SEGMENT_HEADER_BYTES;
    let mut kept: Vec<Kept> = Vec::with_capacity(plan.live.len());
    let mut batch: Vec<Entry> = Vec::new();
    // Live entries sorted by place: each run with the same batch becomes
    // one new batch, in the old order.
    let mut rest = plan.live.as_slice();
    while let Some(head) = rest.first() {
        let (segment_id, offset) = (head.at.segment, head.at.offset);
        let run_len = rest
            .iter()
            .take_while(|e| e.at.segment == segment_id && e.at.offset == offset)
            .count();
        let (group, tail) = rest.split_at(run_len);
        rest = tail;

        let Some((file, seg_len)) = plan.files.get(&segment_id) else {
            return Err(mismatch(format!(
                "a live entry is in {}, outside the prefix",
                segment::file_name(segment_id)
            )));
        };
        let entries = segment::read_batch(file, &run.dir, segment_id, *seg_len, offset)?;
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
            kept.push(Kept {
                key: e.key.clone(),
                was: e.at,
                now: position(first, new_offset, batch.len()),
            });
            batch.push(entry.clone());
        }
        // A subset of a batch that was within the limits is too.
        let payload_len = format::payload_len(&batch)
            .map_err(|problem| mismatch(format!("a cleaned batch is over a limit: {problem}")))?;
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
    }
    if run.fsync {
        // Complete on disk before the rename can make it part of the
        // journal.
        out.sync_all()
            .map_err(|e| LocalJournalError::io("fsync", tmp, e))?;
        run.fsyncs += 1;
    }
    Ok((len, kept))
}
