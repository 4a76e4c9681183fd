//! Runs a [`LocalJournal`] on a dedicated thread with group commit.
//!
//! Appends that queue up while an fsync is in progress are written together
//! and made durable by the next single fsync: with an fsync costing about a
//! quarter of a millisecond, that is what lets thousands of producers'
//! sends per second through one disk. What to write next and how each
//! ticket is answered (a failed write fails every append queued behind it
//! until the journal is reopened) is `halyard_core::journal::group_commit`;
//! this thread does the file I/O.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::JournalMetrics;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::ids::Id;
use halyard_core::journal::codec::{decode_record, encode_key};
use halyard_core::journal::group_commit::{
    EncodedEntry, GroupCommit, GroupLimits, JournalStep, WriteGroup,
};
use halyard_core::journal::{decode_entry, Key, Record};
use halyard_core::message::Message;
use halyard_core::node::{Input, JournalRequest};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::compaction_job::CompactionOutcome;
use super::compactor::Compactor;
use super::config::LocalJournalConfig;
use super::entry::Entry;
use super::error::LocalJournalError;
use super::journal::LocalJournal;
use crate::journal::{next_step, send_answers, send_loaded, JournalHandle};
#[cfg(not(madsim))]
use crate::mirror::MirrorTap;

/// Mirroring is not built under madsim (its links are real sockets and
/// real files only): a tap that cannot exist.
#[cfg(madsim)]
pub enum MirrorTap {}

#[cfg(madsim)]
impl MirrorTap {
    fn opened(&mut self) {
        match *self {}
    }
    fn written(&mut self, _: Vec<Vec<EncodedEntry>>, _: Vec<halyard_core::ids::Ticket>) {
        match *self {}
    }
    fn snapshot(&mut self, _: u64, _: Option<&LocalJournal>) {
        match *self {}
    }
}

/// Bounds one group commit.
const GROUP_LIMITS: GroupLimits = GroupLimits {
    group_appends_max: 4096,
    group_bytes_max: 16 * 1024 * 1024,
};
/// Entries per `Loaded` input while reading the journal.
const LOAD_CHUNK_ENTRIES: usize = 4096;
/// Index keys of removed segments dropped after each write (a segment holds
/// tens of thousands: dropping them at once held appends 10-15 ms per
/// 64 MiB segment, 137 ms for a cleaning of five).
const FORGET_PER_WRITE: usize = 4096;
/// Appends between compaction attempts (a job runs on its own thread, see
/// `compactor`; the next is planned once it is done and this many appends
/// passed, or at once after one that changed something).
const COMPACT_EVERY_APPENDS: u64 = 512;

/// Starts the journal thread. `inputs` is the node's input channel.
pub fn spawn_local_journal(
    config: LocalJournalConfig,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<JournalMetrics>,
) -> JournalHandle {
    spawn_local_journal_mirrored(config, inputs, metrics, None)
}

/// [`spawn_local_journal`] whose written groups also go to the mirror
/// (`crate::mirror`): with a tap, `inputs` is the mirror's sync gate, not
/// the node.
pub fn spawn_local_journal_mirrored(
    config: LocalJournalConfig,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<JournalMetrics>,
    tap: Option<MirrorTap>,
) -> JournalHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    thread::Builder::new()
        .name("halyard-journal".into())
        .spawn(move || run(config, rx, inputs, &metrics, tap))
        .expect("spawn journal thread");
    JournalHandle::new(tx)
}

/// How often the journal thread logs its group-commit figures.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Group-commit figures since the last report.
struct Window {
    started: Instant,
    appends: u64,
    batches: u64,
    fsyncs_at_start: u64,
}

impl Window {
    fn new(fsyncs: u64) -> Window {
        Window {
            started: Instant::now(),
            appends: 0,
            batches: 0,
            fsyncs_at_start: fsyncs,
        }
    }

    /// Logs and restarts the window if it is old enough (or `force`).
    fn maybe_report(&mut self, j: &LocalJournal, force: bool) {
        let secs = self.started.elapsed().as_secs_f64();
        if self.batches == 0 || (!force && self.started.elapsed() < REPORT_EVERY) {
            return;
        }
        let stats = j.stats();
        let fsyncs = stats.fsyncs - self.fsyncs_at_start;
        info!(
            batches = self.batches,
            group_commits = self.appends,
            fsyncs,
            batches_per_sec = format!("{:.0}", self.batches as f64 / secs),
            fsyncs_per_sec = format!("{:.0}", fsyncs as f64 / secs),
            batches_per_fsync = format!("{:.1}", self.batches as f64 / fsyncs.max(1) as f64),
            segments = stats.segments,
            "journal group commit"
        );
        *self = Window::new(stats.fsyncs);
    }
}

fn run(
    config: LocalJournalConfig,
    mut rx: mpsc::UnboundedReceiver<JournalRequest>,
    inputs: mpsc::Sender<Input>,
    metrics: &JournalMetrics,
    mut tap: Option<MirrorTap>,
) {
    let mut journal: Option<LocalJournal> = None;
    let mut window = Window::new(0);
    let mut appends_since_compact = 0u64;
    let mut commit = GroupCommit::new(GROUP_LIMITS);
    let mut compactor = Compactor::spawn();
    while let Some(step) = next_step(&mut rx, &mut commit, &inputs, |_| false) {
        match step {
            JournalStep::Open => {
                settle(&mut compactor, journal.as_mut(), metrics);
                journal = None;
                match open_and_load(&config, &inputs) {
                    Ok(j) => {
                        window = Window::new(j.stats().fsyncs);
                        journal = Some(j);
                        if let Some(t) = tap.as_mut() {
                            t.opened();
                        }
                        commit.opened();
                    }
                    Err(OpenError::NodeGone) => return,
                    Err(e) => {
                        let reason = e.to_string();
                        error!(%reason, "journal open failed");
                        commit.open_failed(reason);
                    }
                }
            }
            JournalStep::Read(ids) => {
                let Some(j) = journal.as_ref() else {
                    unreachable!("the group commit asks for reads only while the journal is open");
                };
                match read_messages(j, &ids) {
                    Ok(found) => commit.read_done(ids, found),
                    Err(reason) => {
                        error!(%reason, "reading paged messages back failed");
                        commit.read_failed(ids, reason);
                    }
                }
            }
            JournalStep::Snapshot { token, open } => {
                settle(&mut compactor, journal.as_mut(), metrics);
                if let Some(t) = tap.as_mut() {
                    t.snapshot(token, journal.as_ref().filter(|_| open));
                }
            }
            JournalStep::Close => {
                settle(&mut compactor, journal.as_mut(), metrics);
                if let Some(j) = journal.as_ref() {
                    window.maybe_report(j, true);
                }
                journal = None;
            }
            JournalStep::Write(group) => {
                let Some(j) = journal.as_mut() else {
                    unreachable!("the group commit asks for writes only while the journal is open");
                };
                window.appends += 1;
                window.batches += group.batches.len() as u64;
                let (batches, bytes) = (group.batches.len(), group.bytes as u64);
                // The mirror gets the group before the node hears it is
                // durable (the sync gate holds that answer for the peers).
                let mirrored = tap
                    .as_ref()
                    .map(|_| (group.batches.clone(), group.tickets.clone()));
                let started = Instant::now();
                match j.append(&to_raw(group)) {
                    Ok(()) => {
                        let took = started.elapsed();
                        if let (Some(t), Some((batches, tickets))) = (tap.as_mut(), mirrored) {
                            t.written(batches, tickets);
                        }
                        metrics.group_written(batches, bytes);
                        metrics.group_write(took);
                        metrics.fsyncs.store(j.stats().fsyncs, Ordering::Relaxed);
                        window.maybe_report(j, false);
                        commit.written();
                        // The node hears now, not after the compaction
                        // bookkeeping below.
                        if !send_answers(&mut commit, &inputs) {
                            return;
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "journal append failed");
                        // The node steps down and reopens; start from the
                        // files, once no job changes them (another process
                        // may open them as soon as the journal's lock goes).
                        settle(&mut compactor, journal.as_mut(), metrics);
                        journal = None;
                        commit.write_failed(e.to_string());
                    }
                }
                if let Some(j) = journal.as_mut() {
                    if let Some(outcome) = compactor.try_done() {
                        let changed = apply(j, outcome, metrics);
                        compactor.close(j.take_retired_files());
                        if changed {
                            // It changed something: the next step may be due now.
                            appends_since_compact = COMPACT_EVERY_APPENDS;
                        }
                    }
                }
                if let Some(j) = journal.as_mut() {
                    let started = Instant::now();
                    if j.tidy_index(FORGET_PER_WRITE) > 0 {
                        paused(metrics, started, || {
                            "dropping index keys of removed segments".into()
                        });
                    }
                }
                appends_since_compact += 1;
                if appends_since_compact >= COMPACT_EVERY_APPENDS && !compactor.busy() {
                    appends_since_compact = 0;
                    if let Some(j) = journal.as_mut() {
                        let started = Instant::now();
                        if let Some(job) = j.plan_compaction() {
                            let what = job.describe();
                            compactor.submit(job);
                            paused(metrics, started, || format!("planning {what}"));
                        } else {
                            metrics.compaction_stall(started.elapsed());
                        }
                    }
                }
            }
        }
    }
}

/// Waits for the running compaction job, if any, and applies it: the
/// journal is about to be read whole, closed or reopened.
fn settle(compactor: &mut Compactor, journal: Option<&mut LocalJournal>, metrics: &JournalMetrics) {
    let started = Instant::now();
    let Some(outcome) = compactor.wait() else {
        return;
    };
    let what = outcome.describe();
    paused(metrics, started, || format!("waiting for {what}"));
    match journal {
        Some(j) if j.compaction_in_flight() => {
            apply(j, outcome, metrics);
            compactor.close(j.take_retired_files());
        }
        // The journal that planned it is gone: reopening reads the files as
        // the job left them.
        _ => {}
    }
}

/// A pause of the append loop at least this long is logged.
const PAUSE_LOGGED: Duration = Duration::from_millis(10);

/// Records a pause of the append loop for compaction since `started`.
fn paused(metrics: &JournalMetrics, started: Instant, what: impl FnOnce() -> String) {
    let pause = started.elapsed();
    metrics.compaction_stall(pause);
    if pause >= PAUSE_LOGGED {
        let what = what();
        info!(
            pause_ms = pause.as_millis() as u64,
            %what,
            "journal compaction held appends for {} ms ({what})",
            pause.as_millis()
        );
    }
}

/// Applies a compaction job's outcome to the index; whether it changed
/// anything.
fn apply(j: &mut LocalJournal, outcome: CompactionOutcome, metrics: &JournalMetrics) -> bool {
    let started = Instant::now();
    let what = outcome.describe();
    let result = j.finish_compaction(outcome);
    paused(metrics, started, || format!("applying {what}"));
    match result {
        Ok(s) => s.segments_deleted > 0 || s.segments_cleaned > 0,
        // A poisoned journal fails the next append: the node steps down and
        // reopens it.
        Err(e) => {
            warn!(error = %e, "journal compaction failed");
            false
        }
    }
}

/// Why opening the journal failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Journal(#[from] LocalJournalError),
    #[error("undecodable journal entry with key {key:?}: {source}")]
    Undecodable {
        key: String,
        source: halyard_core::journal::CodecError,
    },
    /// The node's input channel is closed: the driver is stopping.
    #[error("the node is gone")]
    NodeGone,
}

fn open_and_load(
    config: &LocalJournalConfig,
    inputs: &mpsc::Sender<Input>,
) -> Result<LocalJournal, OpenError> {
    let (j, rec) = LocalJournal::open(config.clone())?;
    info!(
        dir = %config.dir.display(),
        segments = rec.segments,
        batches = rec.batches,
        entries = rec.entries,
        bytes = rec.bytes,
        truncated_bytes = rec.truncated_bytes,
        "local journal opened"
    );
    if rec.truncated_bytes > 0 {
        warn!(
            truncated_bytes = rec.truncated_bytes,
            "cut off a torn tail of the journal (an append that was never acknowledged)"
        );
    }
    let mut chunk = Vec::with_capacity(LOAD_CHUNK_ENTRIES);
    let mut failure: Option<OpenError> = None;
    let mut closed = false;
    j.for_each_batch(|batch| {
        if failure.is_some() || closed {
            return;
        }
        for raw in batch {
            match decode_entry(&raw.key, raw.value.as_deref()) {
                Ok(e) => chunk.push(e),
                Err(source) => {
                    failure = Some(OpenError::Undecodable {
                        key: String::from_utf8_lossy(&raw.key).into_owned(),
                        source,
                    });
                    return;
                }
            }
        }
        if chunk.len() >= LOAD_CHUNK_ENTRIES {
            let entries = std::mem::take(&mut chunk);
            closed = !send_loaded(inputs, entries);
        }
    })?;
    if let Some(f) = failure {
        return Err(f);
    }
    if closed || !chunk.is_empty() && !send_loaded(inputs, chunk) {
        return Err(OpenError::NodeGone);
    }
    Ok(j)
}

/// Paged messages read back from their `MessageStored` entries (those
/// the journal holds; the node judges what is missing).
fn read_messages(j: &LocalJournal, ids: &[Id]) -> Result<Vec<(Id, Arc<Message>)>, String> {
    let keys: Vec<Bytes> = ids
        .iter()
        .map(|id| encode_key(&Key::Message(*id)))
        .collect();
    let values = j.read_latest(&keys).map_err(|e| e.to_string())?;
    let mut found = Vec::with_capacity(ids.len());
    for (id, value) in ids.iter().zip(values) {
        let Some(value) = value else {
            continue;
        };
        match decode_record(&value) {
            Ok(Record::MessageStored { message, .. }) => found.push((*id, message)),
            Ok(other) => {
                return Err(format!(
                    "the journal's entry m/{id} is not a stored message: {other:?}"
                ))
            }
            Err(e) => return Err(format!("undecodable journal entry m/{id}: {e}")),
        }
    }
    Ok(found)
}

/// The group's batches as the local journal stores them (no copies: the
/// key and value bytes are shared).
fn to_raw(group: WriteGroup) -> Vec<Vec<Entry>> {
    // The node bridges to Kafka with its batches only on the Kafka journal.
    assert!(
        group.publish.is_empty(),
        "the local journal was given Kafka bridge records"
    );
    group
        .batches
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .map(|EncodedEntry { key, value }| Entry { key, value })
                .collect()
        })
        .collect()
}
