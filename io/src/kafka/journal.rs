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
use halyard_core::journal::group_commit::{
    EncodedEntry, GroupCommit, GroupLimits, JournalStep, NextGroup,
};
use halyard_core::node::{Input, JournalRequest};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::config::KafkaConfig;
use super::error::KafkaJournalError;
use super::open::{latest_activation_epoch, new_producer, open_and_load, Writer};
use super::produce::{is_fencing, send_bridged, send_record, serve_deliveries};
use super::standby::Standby;
use super::topic::{ensure_topic, BRIDGED_TOPIC_CONFIG};
use crate::journal::{next_step, JournalHandle};

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
    let mut prepared: Option<BaseProducer> = None;
    rearm(&config, &mut standby, &mut prepared);
    let mut commit = GroupCommit::new(GROUP_LIMITS);
    let mut stats = CommitStats::new();
    let mut last_group = 0usize;
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
                // The node pages only over a driver that reads back
                // (`NodeConfig::journal_reads`, false for Kafka).
                commit.read_failed(
                    ids,
                    "the Kafka journal does not read paged messages back".into(),
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
                let Some(w) = writer.as_ref() else {
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
                match commit_group(&config, w, &group.batches, &group.publish) {
                    Ok(()) => {
                        let m = &config.metrics;
                        m.group_written(group.batches.len(), group.bytes as u64);
                        m.kafka_commits.fetch_add(1, Ordering::Relaxed);
                        stats.add(group.tickets.len());
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
fn rearm(config: &KafkaConfig, standby: &mut Option<Standby>, prepared: &mut Option<BaseProducer>) {
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
}

impl CommitStats {
    fn new() -> CommitStats {
        CommitStats {
            since: Instant::now(),
            batches: 0,
            transactions: 0,
        }
    }

    fn add(&mut self, batches: usize) {
        self.batches += batches as u64;
        self.transactions += 1;
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
            "journal group commit (Kafka)"
        );
        *self = CommitStats::new();
    }
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

/// One Kafka transaction holding every batch, in order, and the Kafka
/// bridge's records of those batches: all committed or none.
fn commit_group(
    config: &KafkaConfig,
    w: &Writer,
    batches: &[Vec<EncodedEntry>],
    publish: &[OutRecord],
) -> Result<(), KafkaError> {
    let t0 = Instant::now();
    w.producer.begin_transaction()?;
    for batch in batches {
        for e in batch {
            send_record(&w.producer, &w.topic, &e.key, e.value.as_deref())?;
        }
    }
    for r in publish {
        send_bridged(&w.producer, r)?;
    }
    if let Err(e) = serve_deliveries(&w.producer, config.timeout()) {
        abort(config, w);
        return Err(e);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match w.producer.commit_transaction(config.timeout()) {
            Ok(()) => {
                tracing::trace!(elapsed = ?t0.elapsed(), batches = batches.len(), "transaction committed");
                return Ok(());
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
