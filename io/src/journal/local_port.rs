//! Runs a [`LocalJournal`] on a dedicated thread with group commit.
//!
//! Appends that queue up while an fsync is in progress are written together
//! and made durable by the next single fsync: with an fsync costing about a
//! quarter of a millisecond, that is what lets thousands of producers'
//! sends per second through one disk.

use std::thread;
use std::time::{Duration, Instant};

use halyard_core::journal::{decode_entry, encode_entry};
use halyard_core::node::{Input, JournalEvent};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::local::{Entry as RawEntry, LocalJournal, LocalJournalConfig};
use super::port::JournalHandle;
use halyard_core::node::JournalRequest;

/// Bounds one group commit.
const GROUP_BATCHES_MAX: usize = 4096;
const GROUP_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Entries per `Loaded` input while reading the journal.
const LOAD_CHUNK_ENTRIES: usize = 4096;
/// Appends between compaction attempts.
const COMPACT_EVERY_APPENDS: u64 = 512;

/// Starts the journal thread. `inputs` is the node's input channel.
pub fn spawn_local_journal(
    config: LocalJournalConfig,
    inputs: mpsc::Sender<Input>,
) -> JournalHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    thread::Builder::new()
        .name("halyard-journal".into())
        .spawn(move || run(config, rx, inputs))
        .expect("spawn journal thread");
    JournalHandle::new(tx)
}

fn send(inputs: &mpsc::Sender<Input>, ev: JournalEvent) -> bool {
    inputs.blocking_send(Input::Journal(ev)).is_ok()
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
) {
    let mut journal: Option<LocalJournal> = None;
    let mut window = Window::new(0);
    let mut appends_since_compact = 0u64;
    let mut pending: Option<JournalRequest> = None;
    loop {
        let cmd = match pending.take() {
            Some(c) => c,
            None => match rx.blocking_recv() {
                Some(c) => c,
                None => return,
            },
        };
        match cmd {
            JournalRequest::Open => {
                journal = None;
                match open_and_load(&config, &inputs) {
                    Ok(j) => {
                        window = Window::new(j.stats().fsyncs);
                        journal = Some(j);
                        if !send(&inputs, JournalEvent::Ready) {
                            return;
                        }
                    }
                    Err(reason) => {
                        error!(%reason, "journal open failed");
                        if !send(&inputs, JournalEvent::OpenFailed { reason }) {
                            return;
                        }
                    }
                }
            }
            JournalRequest::Close => {
                if let Some(j) = journal.as_ref() {
                    window.maybe_report(j, true);
                }
                journal = None;
            }
            JournalRequest::Append { ticket, entries } => {
                // Group commit: take every append already queued behind this one.
                let mut tickets = vec![ticket];
                let mut batches = vec![to_raw(&entries)];
                let mut bytes = batch_bytes(&batches[0]);
                while tickets.len() < GROUP_BATCHES_MAX && bytes < GROUP_BYTES_MAX {
                    match rx.try_recv() {
                        Ok(JournalRequest::Append { ticket, entries }) => {
                            let raw = to_raw(&entries);
                            bytes += batch_bytes(&raw);
                            tickets.push(ticket);
                            batches.push(raw);
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let Some(j) = journal.as_mut() else {
                    for t in tickets {
                        send(
                            &inputs,
                            JournalEvent::Failed {
                                ticket: t,
                                reason: "journal is not open".into(),
                            },
                        );
                    }
                    continue;
                };
                window.appends += 1;
                window.batches += batches.len() as u64;
                match j.append(&batches) {
                    Ok(()) => {
                        window.maybe_report(j, false);
                        for t in tickets {
                            if !send(&inputs, JournalEvent::Durable { ticket: t }) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "journal append failed");
                        let reason = e.to_string();
                        for t in tickets {
                            send(
                                &inputs,
                                JournalEvent::Failed {
                                    ticket: t,
                                    reason: reason.clone(),
                                },
                            );
                        }
                        // The node steps down and reopens; start from the files.
                        journal = None;
                    }
                }
                appends_since_compact += 1;
                if appends_since_compact >= COMPACT_EVERY_APPENDS {
                    appends_since_compact = 0;
                    if let Some(j) = journal.as_mut() {
                        match j.compact() {
                            Ok(s) if s.segments_deleted > 0 => info!(
                                segments_deleted = s.segments_deleted,
                                bytes_reclaimed = s.bytes_reclaimed,
                                segments_remaining = s.segments_remaining,
                                "journal compacted"
                            ),
                            Ok(_) => {}
                            Err(e) => warn!(error = %e, "journal compaction failed"),
                        }
                    }
                }
            }
        }
    }
}

fn open_and_load(
    config: &LocalJournalConfig,
    inputs: &mpsc::Sender<Input>,
) -> Result<LocalJournal, String> {
    let (j, rec) = LocalJournal::open(config.clone()).map_err(|e| e.to_string())?;
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
    let mut failure: Option<String> = None;
    let mut closed = false;
    j.for_each_batch(|batch| {
        if failure.is_some() || closed {
            return;
        }
        for raw in batch {
            match decode_entry(&raw.key, raw.value.as_deref()) {
                Ok(e) => chunk.push(e),
                Err(e) => {
                    failure = Some(format!(
                        "undecodable journal entry with key {:?}: {e}",
                        String::from_utf8_lossy(&raw.key)
                    ));
                    return;
                }
            }
        }
        if chunk.len() >= LOAD_CHUNK_ENTRIES {
            let entries = std::mem::take(&mut chunk);
            closed = !send(inputs, JournalEvent::Loaded { entries });
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(f) = failure {
        return Err(f);
    }
    if !chunk.is_empty() {
        send(inputs, JournalEvent::Loaded { entries: chunk });
    }
    Ok(j)
}

fn to_raw(entries: &[halyard_core::journal::Entry]) -> Vec<RawEntry> {
    entries
        .iter()
        .map(|e| {
            let (key, value) = encode_entry(e);
            RawEntry { key, value }
        })
        .collect()
}

fn batch_bytes(batch: &[RawEntry]) -> usize {
    batch
        .iter()
        .map(|e| e.key.len() + e.value.as_ref().map_or(0, |v| v.len()))
        .sum()
}
