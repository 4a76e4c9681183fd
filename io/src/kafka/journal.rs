//! The journal in Kafka: one compacted single-partition topic per cluster,
//! written by a transactional producer whose `transactional.id` is fixed per
//! cluster, read with `isolation.level=read_committed`.
//!
//! - Open: create the topic if missing, `init_transactions` (which fences
//!   every older producer with our transactional id and aborts its open
//!   transaction), then read the partition from the start to its end: from
//!   the standby copy (see `standby`), which a reader thread kept while the
//!   node was not live, caught up to the end; or in full if there is none
//!   (see `open`).
//! - Append: every batch waiting in the channel goes into one Kafka
//!   transaction (group commit: batches pile up while a commit is in flight).
//!   A batch is durable when `commit_transaction` returns.
//! - A fencing error becomes the core's `Fenced` input; any other failure
//!   `Failed` (the node steps down and reloads, so nothing of an uncertain
//!   outcome is ever assumed). What to write next and how each ticket is
//!   answered (a failed transaction fails every append queued behind it
//!   until the journal is reopened) is `halyard_core::journal::group_commit`;
//!   this thread does the Kafka I/O.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::JournalMetrics;
use std::thread;
use std::time::{Duration, Instant};

use halyard_core::bridge::OutRecord;
use halyard_core::ids::Id;
use halyard_core::journal::group_commit::{
    EncodedEntry, GroupCommit, GroupLimits, JournalStep, NextGroup,
};
use halyard_core::node::{Input, JournalRequest};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::config::KafkaConfig;
use super::error::KafkaJournalError;
use super::fetch::Fetcher;
use super::open::{latest_activation_epoch, new_producer, open_and_load, Writer};
use super::paged::read_paged;
use super::produce::{
    is_fencing, send_bridged, send_journal_record, serve_deliveries, serve_deliveries_doing,
    JournalProducer,
};
use super::standby::Standby;
use super::topic::{ensure_topic, BRIDGED_TOPIC_CONFIG};
use super::written::{apply_delivered, resolve, Effect};
use crate::journal::{gather, next_step, JournalHandle};

/// Bounds one group commit.
const GROUP_LIMITS: GroupLimits = GroupLimits {
    group_appends_max: 4096,
    group_bytes_max: 8 * 1024 * 1024,
};
/// Under load, a transaction waits up to GROUP_LINGER_STEPS x GROUP_LINGER_STEP
/// for at least GROUP_BATCHES_MIN batches.
const GROUP_BATCHES_MIN: usize = 64;
const GROUP_LINGER_STEPS: u32 = 2;
const GROUP_LINGER_STEP: Duration = Duration::from_millis(1);
/// Retries of a commit whose error is retriable.
const COMMIT_ATTEMPTS_MAX: u32 = 3;

/// Starts the journal thread. `inputs` is the node's input channel.
pub fn spawn_kafka_journal(
    mut config: KafkaConfig,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<JournalMetrics>,
) -> JournalHandle {
    config.metrics = metrics;
    let (tx, rx) = mpsc::unbounded_channel();
    thread::Builder::new()
        .name("halyard-kafka-journal".into())
        .spawn(move || run(config, rx, inputs))
        .expect("spawn journal thread");
    JournalHandle::new(tx)
}

fn run(
    config: KafkaConfig,
    mut rx: mpsc::UnboundedReceiver<JournalRequest>,
    inputs: mpsc::Sender<Input>,
) {
    let mut writer: Option<Writer> = None;
    // Follow the journal, and a producer made ready (not yet fenced with:
    // that is the activation), while the node is not live.
    let mut standby: Option<Standby> = None;
    let mut prepared: Option<JournalProducer> = None;
    rearm(&config, &mut standby, &mut prepared);
    let mut commit = GroupCommit::new(GROUP_LIMITS);
    let mut stats = CommitStats::new();
    let mut last_group = 0usize;
    // When the last transaction ended: the time to the next one's start is
    // the journal's own work between two (answers, encoding, lingering).
    let mut last_end: Option<Instant> = None;
    // Topics the Kafka bridge has written to (created if missing, once).
    let mut bridged_topics: HashSet<String> = HashSet::new();
    loop {
        // A transaction costs several milliseconds however small. Under
        // load (the last one carried more than one batch), wait a moment
        // for more batches rather than commit a tiny one; an idle node
        // commits at once.
        let mut lingers = if writer.is_some() && last_group > 1 {
            GROUP_LINGER_STEPS
        } else {
            0
        };
        let linger = |next: NextGroup| {
            if lingers == 0 || next.appends == 0 || next.appends >= GROUP_BATCHES_MIN || next.sealed
            {
                return false;
            }
            lingers -= 1;
            thread::sleep(GROUP_LINGER_STEP);
            true
        };
        let Some(step) = next_step(&mut rx, &mut commit, &inputs, linger) else {
            return;
        };
        match step {
            JournalStep::Open => {
                writer = None;
                last_end = None;
                let started = Instant::now();
                match open_and_load(&config, &inputs, standby.take(), prepared.take()) {
                    Ok((w, loaded)) => {
                        let secs = started.elapsed().as_secs_f64();
                        info!(
                            topic = %w.topic,
                            records = loaded.records,
                            megabytes = format!("{:.1}", loaded.bytes as f64 / 1e6),
                            seconds = format!("{secs:.3}"),
                            records_per_sec = format!("{:.0}", loaded.records as f64 / secs.max(1e-6)),
                            from_standby_copy = loaded.from_standby,
                            records_read_back = loaded.fetched,
                            messages_indexed = w.index.len(),
                            index_bytes = w.index.bytes(),
                            "Kafka journal fenced and read to its end"
                        );
                        writer = Some(w);
                        commit.opened();
                    }
                    Err(KafkaJournalError::NodeGone) => return,
                    Err(e) => {
                        let reason = e.to_string();
                        error!(%reason, "Kafka journal open failed");
                        rearm(&config, &mut standby, &mut prepared);
                        commit.open_failed(reason);
                    }
                }
            }
            JournalStep::Read(ids) => {
                let Some(w) = writer.as_mut() else {
                    unreachable!("the group commit asks for reads only while the journal is open");
                };
                match read_back(&config, w, &ids) {
                    Ok(found) => commit.read_done(ids, found),
                    Err(reason) => {
                        error!(%reason, "reading paged messages back failed");
                        commit.read_failed(ids, reason);
                    }
                }
            }
            JournalStep::Snapshot { token, .. } => {
                // Mirroring runs on the local journal only (the brokers
                // of a Kafka journal share it); nobody asks this one.
                warn!(
                    token,
                    "a journal snapshot was asked of the Kafka journal; ignored"
                );
            }
            JournalStep::Close => {
                if writer.take().is_some() {
                    stats.report(true);
                }
                if standby.is_none() {
                    rearm(&config, &mut standby, &mut prepared);
                }
            }
            JournalStep::Write(group) => {
                last_group = group.tickets.len();
                let Some(w) = writer.as_mut() else {
                    unreachable!("the group commit asks for writes only while the journal is open");
                };
                if let Err(reason) =
                    ensure_bridged_topics(&config, &mut bridged_topics, &group.publish)
                {
                    // Nothing was written: the node steps down and a
                    // client's resend finds the topic's problem again.
                    writer = None;
                    rearm(&config, &mut standby, &mut prepared);
                    error!(%reason, "cannot write bridged records");
                    commit.write_failed(reason);
                    continue;
                }
                // While the transaction waits for its records' delivery
                // reports, the appends queued meanwhile are taken in and
                // encoded for the next one, not after its commit.
                let mut meanwhile = || gather(&mut rx, &mut commit);
                let between = last_end.map(|end| end.elapsed());
                let result =
                    commit_group(&config, w, &group.batches, &group.publish, &mut meanwhile);
                last_end = Some(Instant::now());
                match result {
                    Ok(mut phases) => {
                        phases.between = between;
                        let m = &config.metrics;
                        m.group_written(group.batches.len(), group.bytes as u64);
                        m.kafka_commits.fetch_add(1, Ordering::Relaxed);
                        stats.add(group.tickets.len(), phases);
                        stats.report(false);
                        commit.written();
                    }
                    Err(e) if is_fencing(&e) => {
                        writer = None;
                        rearm(&config, &mut standby, &mut prepared);
                        let by_epoch = latest_activation_epoch(&config);
                        warn!(error = %e, ?by_epoch, "journal producer fenced by a newer live");
                        commit.write_fenced(by_epoch);
                    }
                    Err(e) => {
                        writer = None;
                        rearm(&config, &mut standby, &mut prepared);
                        error!(error = %e, "Kafka journal transaction failed");
                        commit.write_failed(e.to_string());
                    }
                }
            }
        }
    }
}

/// Starts following the journal for the next activation and prepares its
/// producer (creating one does not fence anybody; `init_transactions` does).
fn rearm(
    config: &KafkaConfig,
    standby: &mut Option<Standby>,
    prepared: &mut Option<JournalProducer>,
) {
    *standby = Some(Standby::start(config));
    *prepared = match new_producer(config) {
        Ok(p) => Some(p),
        Err(reason) => {
            warn!(%reason, "cannot prepare the journal producer; activation will try again");
            None
        }
    };
}

/// Group-commit figures, logged every 10 s.
struct CommitStats {
    since: Instant,
    batches: u64,
    transactions: u64,
    phases: Phases,
    /// Transactions with a `between` (not the first after an open).
    followed: u64,
}

/// Where one transaction's time went (summed in `CommitStats`): what a
/// transaction costs, and so what the next group waits for.
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    /// begin_transaction and handing the records to the producer.
    send: Duration,
    /// Waiting for every record's delivery report (a produce round trip,
    /// after the producer's linger), while encoding the appends queued for
    /// the next transaction.
    deliver: Duration,
    /// commit_transaction (the EndTxn round trip).
    commit: Duration,
    /// Putting the committed records' offsets into the index.
    index: Duration,
    /// From the end of the transaction before (its indexing included; if
    /// one was written since the journal opened) to this one's start:
    /// answering the last group, encoding what was not yet, lingering, and
    /// at low load waiting for appends (reads and topic creation too).
    between: Option<Duration>,
}

impl CommitStats {
    fn new() -> CommitStats {
        CommitStats {
            since: Instant::now(),
            batches: 0,
            transactions: 0,
            phases: Phases::default(),
            followed: 0,
        }
    }

    fn add(&mut self, batches: usize, phases: Phases) {
        self.batches += batches as u64;
        self.transactions += 1;
        self.phases.send += phases.send;
        self.phases.deliver += phases.deliver;
        self.phases.commit += phases.commit;
        self.phases.index += phases.index;
        if let Some(b) = phases.between {
            *self.phases.between.get_or_insert_default() += b;
            self.followed += 1;
        }
    }

    fn report(&mut self, force: bool) {
        let secs = self.since.elapsed().as_secs_f64();
        if self.transactions == 0 || (!force && secs < 10.0) {
            return;
        }
        info!(
            batches = self.batches,
            transactions = self.transactions,
            batches_per_sec = format!("{:.0}", self.batches as f64 / secs),
            transactions_per_sec = format!("{:.0}", self.transactions as f64 / secs),
            batches_per_transaction =
                format!("{:.1}", self.batches as f64 / self.transactions as f64),
            ms_send = ms_per(self.phases.send, self.transactions),
            ms_deliver = ms_per(self.phases.deliver, self.transactions),
            ms_commit = ms_per(self.phases.commit, self.transactions),
            ms_index = ms_per(self.phases.index, self.transactions),
            ms_between = ms_per(self.phases.between.unwrap_or_default(), self.followed),
            "journal group commit (Kafka)"
        );
        *self = CommitStats::new();
    }
}

/// Mean milliseconds of `total` over `n` transactions, for the log.
fn ms_per(total: Duration, n: u64) -> String {
    format!("{:.2}", total.as_secs_f64() * 1e3 / n.max(1) as f64)
}

/// Creates the bridged topics this group writes to that were not seen
/// before (Halyard's Kafka runs with `auto.create.topics.enable=false`).
fn ensure_bridged_topics(
    config: &KafkaConfig,
    known: &mut HashSet<String>,
    publish: &[OutRecord],
) -> Result<(), String> {
    for r in publish {
        if known.contains(&r.topic) {
            continue;
        }
        ensure_topic(
            config,
            &r.topic,
            config.bridge_topic_partitions,
            BRIDGED_TOPIC_CONFIG,
        )
        .map_err(|e| format!("bridged topic {}: {e}", r.topic))?;
        known.insert(r.topic.clone());
    }
    Ok(())
}

/// Paged messages read back from the topic, as `read_paged` finds them.
fn read_back(
    config: &KafkaConfig,
    w: &mut Writer,
    ids: &[Id],
) -> Result<Vec<(Id, Arc<halyard_core::message::Message>)>, String> {
    let fetcher = match w.fetcher.as_mut() {
        Some(f) => f,
        None => w
            .fetcher
            .insert(Fetcher::new(config).map_err(|e| e.to_string())?),
    };
    let started = Instant::now();
    let result = read_paged(fetcher, &w.index, ids, w.last_offset + 1, config.timeout());
    match result {
        Ok(found) => {
            tracing::trace!(asked = ids.len(), found = found.len(), elapsed = ?started.elapsed(), "paged messages read back");
            Ok(found)
        }
        Err(e) => {
            // Start the next read afresh.
            w.fetcher = None;
            Err(e.to_string())
        }
    }
}

/// One Kafka transaction holding every batch, in order, and the Kafka
/// bridge's records of those batches: all committed or none. Once
/// committed, the offsets of its message records go into the index.
fn commit_group(
    config: &KafkaConfig,
    w: &mut Writer,
    batches: &[Vec<EncodedEntry>],
    publish: &[OutRecord],
    meanwhile: &mut dyn FnMut() -> usize,
) -> Result<Phases, KafkaError> {
    let t0 = Instant::now();
    // Reports left from an earlier, failed transaction are not ours.
    w.producer.context().take();
    w.producer.begin_transaction()?;
    let mut effects = Vec::with_capacity(batches.iter().map(Vec::len).sum());
    for batch in batches {
        for e in batch {
            let slot = effects.len();
            effects.push(Effect::of(&e.key, e.value.as_deref()));
            send_journal_record(&w.producer, &w.topic, &e.key, e.value.as_deref(), slot)?;
        }
    }
    for r in publish {
        send_bridged(&w.producer, r)?;
    }
    let sent = Instant::now();
    if let Err(e) = serve_deliveries_doing(&w.producer, config.timeout(), meanwhile) {
        abort(config, w);
        return Err(e);
    }
    let delivered = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match w.producer.commit_transaction(config.timeout()) {
            Ok(()) => {
                let committed = Instant::now();
                tracing::trace!(elapsed = ?t0.elapsed(), batches = batches.len(), "transaction committed");
                index_written(config, w, &effects);
                return Ok(Phases {
                    send: sent - t0,
                    deliver: delivered - sent,
                    commit: committed - delivered,
                    index: committed.elapsed(),
                    between: None,
                });
            }
            Err(e) => {
                let retriable = matches!(&e, KafkaError::Transaction(t) if t.is_retriable());
                let abortable = matches!(&e, KafkaError::Transaction(t) if t.txn_requires_abort());
                if retriable && attempt < COMMIT_ATTEMPTS_MAX {
                    warn!(error = %e, attempt, "commit failed, retrying");
                    continue;
                }
                if abortable {
                    // The batch is not in the journal; the node steps down anyway.
                    if let Err(d) = serve_deliveries(&w.producer, config.timeout()) {
                        debug!(error = %d, "delivery reports unserved before the abort");
                    }
                    abort(config, w);
                }
                return Err(e);
            }
        }
    }
}

/// Puts the offsets of a committed transaction's records (`effects`, in
/// the order sent) into the index: from the delivery reports, or, when
/// those make no sense (see `written`), by reading the transaction back.
fn index_written(config: &KafkaConfig, w: &mut Writer, effects: &[Effect]) {
    let delivered = w.producer.context().take();
    let Err(untrusted) = apply_delivered(effects, &delivered, &mut w.last_offset, &mut w.index)
    else {
        return;
    };
    warn!(reason = %untrusted, "finding the offsets of a transaction's records by reading it back");
    let end = w
        .producer
        .client()
        .fetch_watermarks(&w.topic, 0, config.timeout())
        .map(|(_, high)| high);
    let resolved = match (end, w.fetcher.as_mut()) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(end), Some(f)) => resolve(
            f,
            effects,
            w.last_offset,
            end,
            &mut w.index,
            config.timeout(),
        )
        .map(|missing| (end, missing))
        .map_err(|e| e.to_string()),
        (Ok(end), None) => match Fetcher::new(config) {
            Ok(f) => {
                let f = w.fetcher.insert(f);
                resolve(
                    f,
                    effects,
                    w.last_offset,
                    end,
                    &mut w.index,
                    config.timeout(),
                )
                .map(|missing| (end, missing))
                .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    match resolved {
        Ok((end, 0)) => w.last_offset = end - 1,
        Ok((end, missing)) => {
            w.last_offset = end - 1;
            error!(
                missing,
                "message records of a committed transaction not found; reading them back will fail"
            );
        }
        Err(reason) => {
            // Removing what the transaction tombstoned is right anyway; what
            // it stored is not indexed, and a read of it fails (the node
            // steps down and the next activation indexes the journal anew).
            for e in effects {
                if let Effect::Dropped(id) = e {
                    w.index.remove(*id);
                }
            }
            error!(%reason, "cannot find the offsets of a committed transaction's message records; reading them back will fail");
        }
    }
}

/// Aborts the open transaction after a failure. Its batches are not in the
/// journal either way and the node steps down; if the abort fails too, the
/// transaction is aborted by Kafka when the next live fences us (or when
/// `transaction.timeout.ms` passes).
fn abort(config: &KafkaConfig, w: &Writer) {
    config.metrics.kafka_aborts.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = w.producer.abort_transaction(config.timeout()) {
        warn!(error = %e, "cannot abort the failed journal transaction; the next live's fencing aborts it");
    }
}
