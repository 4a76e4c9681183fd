//! Hot standby: while a node is not live, a reader thread follows the
//! journal topic and keeps a compacted copy of it in memory, so that an
//! activation reads only what was written since instead of the whole topic
//! (failover time then hardly depends on how much the journal holds).
//!
//! The copy is what Kafka's log cleaner would make of the log: records in
//! offset order, a record dropped once a later one has its key, and a
//! tombstone dropped together with what it deletes (nothing older of its key
//! is left in the copy). Replay of such a log gives the same broker state as
//! replay of the full log; the simulator checks the core against exactly
//! this kind of compaction. Reads are `read_committed`, like the full load.
//!
//! The copy is handed over only after the new live has fenced every older
//! producer (`init_transactions`) and read the end offset: the reader first
//! catches up to that offset, so the copy covers the same records a full
//! load would. If anything goes wrong the journal falls back to a full load.
//!
//! The copy holds message bodies only up to the node's paging threshold
//! (`KafkaConfig::standby_message_bytes_max`); past it, message records
//! are kept as their offsets, and read back from the topic at the
//! handover (see `view` and `open`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use halyard_core::journal::decode_entry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tracing::{debug, info, warn};

use super::config::KafkaConfig;
use super::error::{ReadError, StandbyError};
use super::fetch::FULL_QUEUE_BACKOFF_MS;
use super::read::{assign_from_start, read_position, ReaderContext};
use super::topic::{ensure_topic, JOURNAL_TOPIC_CONFIG, RECORD_BYTES_MAX};
use super::view::View;

/// How long the reader waits for data at the end of the topic. Short enough
/// that catching up at a handover does not idle, long enough that a
/// following backup does not flood Kafka with empty fetches.
const FETCH_WAIT_MS: &str = "50";
/// A copy that has not heard from Kafka for this long is thrown away and
/// rebuilt: Kafka drops tombstones after `delete.retention.ms` (a day), and
/// a reader that came back later might miss one and keep what it deleted.
const STALE_AFTER: Duration = Duration::from_secs(3600);
/// How often the reader asks Kafka for the end offset: to know when it has
/// caught up (end-of-partition events do not reach a `BaseConsumer` poll
/// reliably) and that Kafka still answers.
const CHECK_EVERY: Duration = Duration::from_secs(1);
// Once caught up, less often; often enough for `halyard_standby_lag_records`.
const CHECK_EVERY_CAUGHT_UP: Duration = Duration::from_secs(5);
/// The longest the reader waits for a record before it looks for a
/// handover. A failover waits for that look: at 100 ms it added 50 ms on
/// average to a preempting failover of 0.1 to 0.3 s (docs/failover.md),
/// while an idle poll every 10 ms costs next to nothing.
const CONTROL_EVERY: Duration = Duration::from_millis(10);

enum Control {
    /// Read up to `end` (exclusive), then send the copy and stop.
    Handover {
        end: i64,
        reply: std_mpsc::Sender<Result<View, StandbyError>>,
    },
}

/// A running standby reader. Dropping it stops the thread.
pub struct Standby {
    control: std_mpsc::Sender<Control>,
    /// The reader made sure the journal topic exists (creating it if
    /// needed), so activation need not ask Kafka again.
    topic_ready: Arc<AtomicBool>,
}

impl Standby {
    /// Starts following the journal topic of `config` from its beginning.
    pub fn start(config: &KafkaConfig) -> Standby {
        let (tx, rx) = std_mpsc::channel();
        let config = config.clone();
        let topic_ready = Arc::new(AtomicBool::new(false));
        let ready = topic_ready.clone();
        let spawned = thread::Builder::new()
            .name("halyard-kafka-standby".into())
            .spawn(move || {
                let topic = config.journal_topic();
                match ensure_topic(&config, &topic, 1, JOURNAL_TOPIC_CONFIG) {
                    Ok(()) => ready.store(true, Ordering::Release),
                    Err(e) => {
                        debug!(error = %e, "standby reader could not check the journal topic")
                    }
                }
                follow(&config, &rx)
            });
        if let Err(e) = spawned {
            // The handover then fails and the journal reads in full.
            warn!(error = %e, "cannot start the standby journal reader");
        }
        Standby {
            control: tx,
            topic_ready,
        }
    }

    /// Whether the reader has made sure the journal topic exists.
    pub(crate) fn topic_ready(&self) -> bool {
        self.topic_ready.load(Ordering::Acquire)
    }

    /// Stops following once the copy reaches offset `end` (the end offset
    /// read after fencing) and returns it; `Err` if the reader failed or
    /// could not get there within `timeout` (then read the journal in full).
    pub fn handover(self, end: i64, timeout: Duration) -> Result<View, StandbyError> {
        let (reply, answer) = std_mpsc::channel();
        self.control
            .send(Control::Handover { end, reply })
            .map_err(|_| StandbyError::Stopped)?;
        // The reader's own catch-up is bounded by `timeout`; allow it that.
        answer
            .recv_timeout(timeout + Duration::from_secs(5))
            .map_err(|_| StandbyError::NoAnswer)?
    }
}

fn consumer(config: &KafkaConfig, topic: &str) -> Result<BaseConsumer<ReaderContext>, ReadError> {
    let consumer: BaseConsumer<ReaderContext> = config
        .client()
        .set("group.id", format!("halyard-{}-standby", config.cluster_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        // Reading a long journal fills the prefetch queue; with the default
        // 1 s back-off the copy then stood still for up to a second after
        // draining it, and a failover in that second waited for it
        // (docs/failover.md).
        .set("fetch.queue.backoff.ms", FULL_QUEUE_BACKOFF_MS)
        .set("auto.offset.reset", "earliest")
        .set(
            "max.partition.fetch.bytes",
            (RECORD_BYTES_MAX * 2).to_string(),
        )
        .create_with_context(ReaderContext)
        .map_err(|source| ReadError::Consumer {
            bootstrap: config.bootstrap.clone(),
            source,
        })?;
    assign_from_start(&consumer, topic)?;
    Ok(consumer)
}

/// The reader thread: follows until asked for the copy, or until the
/// `Standby` is dropped.
fn follow(config: &KafkaConfig, control: &std_mpsc::Receiver<Control>) {
    let topic = config.journal_topic();
    let consumer = match consumer(config, &topic) {
        Ok(c) => c,
        Err(e) => {
            warn!(reason = %e, "standby journal reader not started");
            // Answer a handover, if one comes, with the reason.
            if let Ok(Control::Handover { reply, .. }) = control.recv() {
                answer(reply, Err(e.into()));
            }
            return;
        }
    };
    let mut view = View::new(config.standby_message_bytes_max);
    let mut heard = Instant::now();
    let mut caught_up = false;
    let started = Instant::now();
    let mut next_check = Instant::now();
    // The end offset at the previous check: with a live writing, the
    // position (which stops at the last stable offset, before any open
    // transaction) never reaches the current end, but passes the old one.
    let mut prev_end: Option<i64> = None;
    debug!(%topic, "standby journal reader following");
    loop {
        match control.try_recv() {
            Ok(Control::Handover { end, reply }) => {
                // No copy is followed while this node is live.
                config
                    .metrics
                    .standby_lag_records
                    .store(-1, std::sync::atomic::Ordering::Relaxed);
                answer(reply, catch_up(config, &consumer, &topic, view, end));
                return;
            }
            Err(std_mpsc::TryRecvError::Disconnected) => {
                config
                    .metrics
                    .standby_lag_records
                    .store(-1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            Err(std_mpsc::TryRecvError::Empty) => {}
        }
        match consumer.poll(CONTROL_EVERY) {
            Some(Ok(m)) => {
                heard = Instant::now();
                if let Err(e) = fold(&mut view, &m) {
                    // The full load will meet the same record and say so.
                    warn!(reason = %e, "standby journal reader stopped");
                    if let Ok(Control::Handover { reply, .. }) = control.recv() {
                        answer(reply, Err(e.into()));
                    }
                    return;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => heard = Instant::now(),
            Some(Err(e)) => debug!(error = %e, "standby journal reader"),
            None => {}
        }
        if Instant::now() >= next_check {
            match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(2)) {
                Ok((_, end)) => {
                    heard = Instant::now();
                    let at = read_position(&consumer, &topic)
                        .map_or(view.next_offset, |o| o.max(view.next_offset));
                    config
                        .metrics
                        .standby_lag_records
                        .store((end - at).max(0), std::sync::atomic::Ordering::Relaxed);
                    if !caught_up && (at >= end || prev_end.is_some_and(|p| at >= p)) {
                        caught_up = true;
                        info!(
                            records_kept = view.len(),
                            records_kept_as_offsets = view.paged(),
                            message_megabytes = format!("{:.1}", view.message_bytes() as f64 / 1e6),
                            records_read = view.records_read,
                            seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
                            "standby journal copy caught up"
                        );
                    }
                    prev_end = Some(end);
                }
                Err(e) => debug!(error = %e, "standby reader cannot read the end offset"),
            }
            next_check = Instant::now()
                + if caught_up {
                    CHECK_EVERY_CAUGHT_UP
                } else {
                    CHECK_EVERY
                };
        }
        if heard.elapsed() > STALE_AFTER {
            warn!(
                silent_secs = heard.elapsed().as_secs(),
                "standby journal copy is stale; reading the journal again from its start"
            );
            view = View::new(config.standby_message_bytes_max);
            heard = Instant::now();
            caught_up = false;
            if let Err(e) = assign_from_start(&consumer, &topic) {
                warn!(reason = %e, "standby journal reader cannot seek back");
            }
        }
    }
}

/// Sends the handover's answer. The journal may have stopped waiting for
/// it (it then reads the journal in full), so a closed channel is fine.
fn answer(reply: std_mpsc::Sender<Result<View, StandbyError>>, result: Result<View, StandbyError>) {
    if reply.send(result).is_err() {
        debug!("standby handover answered after the journal stopped waiting");
    }
}

fn fold(view: &mut View, m: &rdkafka::message::BorrowedMessage<'_>) -> Result<(), ReadError> {
    let key = m.key().unwrap_or_default();
    let value = m.payload();
    let entry = decode_entry(key, value).map_err(|source| ReadError::Undecodable {
        offset: m.offset(),
        topic: m.topic().to_string(),
        source,
    })?;
    view.apply(m.offset(), key, value, entry);
    Ok(())
}

/// Reads on until offset `end`, then returns the copy.
fn catch_up(
    config: &KafkaConfig,
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    mut view: View,
    end: i64,
) -> Result<View, StandbyError> {
    let started = Instant::now();
    let before = view.records_read;
    let mut last_progress = Instant::now();
    let mut first = true;
    while view.next_offset < end {
        // Look at the position before waiting: a reader that follows
        // closely is usually there already.
        if !std::mem::take(&mut first) {
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    fold(&mut view, &m)?;
                    continue;
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => return Err(StandbyError::Poll(e)),
            }
        }
        // The journal usually ends with a transaction marker, not a record:
        // the consumer's position passes it without handing anything over
        // (and a reader already at the end sees no new end-of-partition).
        if let Some(o) = read_position(consumer, topic) {
            view.next_offset = view.next_offset.max(o);
        }
        if view.next_offset < end && last_progress.elapsed() > config.timeout() {
            return Err(StandbyError::Stuck {
                at: view.next_offset,
                topic: topic.to_string(),
                end,
            });
        }
    }
    info!(
        records_kept = view.len(),
        records_kept_as_offsets = view.paged(),
        records_caught_up = view.records_read - before,
        catch_up_ms = started.elapsed().as_millis() as u64,
        "standby journal copy handed over"
    );
    Ok(view)
}
