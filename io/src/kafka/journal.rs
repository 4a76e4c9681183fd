//! The journal in Kafka: one compacted single-partition topic per cluster,
//! written by a transactional producer whose `transactional.id` is fixed per
//! cluster, read with `isolation.level=read_committed`.
//!
//! - Open: create the topic if missing, `init_transactions` (which fences
//!   every older producer with our transactional id and aborts its open
//!   transaction), then read the partition from the start to its end: from
//!   the standby copy (see `standby`), which a reader thread kept while the
//!   node was not live, caught up to the end; or in full if there is none.
//! - Append: every batch waiting in the channel goes into one Kafka
//!   transaction (group commit: batches pile up while a commit is in flight).
//!   A batch is durable when `commit_transaction` returns.
//! - A fencing error becomes the core's `Fenced` input; any other failure
//!   `Failed` (the node steps down and reloads, so nothing of an uncertain
//!   outcome is ever assumed).

use std::thread;
use std::time::{Duration, Instant};

use halyard_core::ids::Ticket;
use halyard_core::journal::{decode_entry, encode_entry, Entry, Record};
use halyard_core::node::{Input, JournalEvent, JournalRequest};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::standby::{Standby, View};
use super::{ensure_topic, is_fencing, KafkaConfig};
use crate::journal::JournalHandle;

/// Bounds one group commit.
const GROUP_BATCHES_MAX: usize = 4096;
const GROUP_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Under load, a transaction waits up to GROUP_LINGER_STEPS x GROUP_LINGER_STEP
/// for at least GROUP_BATCHES_MIN batches.
const GROUP_BATCHES_MIN: usize = 64;
const GROUP_LINGER_STEPS: u32 = 2;
const GROUP_LINGER_STEP: Duration = Duration::from_millis(1);
/// Entries per `Loaded` input while reading the journal.
const LOAD_CHUNK_ENTRIES: usize = 4096;
/// The journal producer's `linger.ms` unless the user sets one.
pub const LINGER_MS_DEFAULT: &str = "2";
/// Largest record (a STOMP frame is at most 10 MiB by default).
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Retries of a commit whose error is retriable.
const COMMIT_ATTEMPTS_MAX: u32 = 3;

/// Topic settings of the journal (see docs/kafka.md).
pub const JOURNAL_TOPIC_CONFIG: &[(&str, &str)] = &[
    // Keep the latest record per key; tombstones delete consumed messages.
    ("cleanup.policy", "compact"),
    // Any record may be compacted away as soon as a newer one exists.
    ("min.compaction.lag.ms", "0"),
    // Roll segments often enough that the cleaner can work on them.
    ("segment.ms", "600000"),
    // A backup must finish reading within this long to see every tombstone.
    ("delete.retention.ms", "86400000"),
    // Large messages fit (frames up to 10 MiB plus framing).
    ("max.message.bytes", "16777216"),
];

/// Starts the journal thread. `inputs` is the node's input channel.
pub fn spawn_kafka_journal(config: KafkaConfig, inputs: mpsc::Sender<Input>) -> JournalHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    thread::Builder::new()
        .name("halyard-kafka-journal".into())
        .spawn(move || run(config, rx, inputs))
        .expect("spawn journal thread");
    JournalHandle::new(tx)
}

fn send(inputs: &mpsc::Sender<Input>, ev: JournalEvent) -> bool {
    inputs.blocking_send(Input::Journal(ev)).is_ok()
}

struct Writer {
    producer: BaseProducer,
    topic: String,
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
    let mut pending: Option<JournalRequest> = None;
    let mut stats = CommitStats::new();
    let mut last_group = 0usize;
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
                        if !send(&inputs, JournalEvent::Ready) {
                            return;
                        }
                    }
                    Err(reason) => {
                        error!(%reason, "Kafka journal open failed");
                        rearm(&config, &mut standby, &mut prepared);
                        if !send(&inputs, JournalEvent::OpenFailed { reason }) {
                            return;
                        }
                    }
                }
            }
            JournalRequest::Close => {
                if writer.take().is_some() {
                    stats.report(true);
                }
                if standby.is_none() {
                    rearm(&config, &mut standby, &mut prepared);
                }
            }
            JournalRequest::Append { ticket, entries } => {
                let mut tickets = vec![ticket];
                let mut batches = vec![entries];
                let mut bytes = 0usize;
                // A transaction costs several milliseconds however small. Under
                // load (the last one carried more than one batch), wait a
                // moment for more batches rather than commit a tiny one; an
                // idle node commits at once.
                let mut lingers = if last_group > 1 {
                    GROUP_LINGER_STEPS
                } else {
                    0
                };
                loop {
                    while tickets.len() < GROUP_BATCHES_MAX
                        && bytes < GROUP_BYTES_MAX
                        && pending.is_none()
                    {
                        match rx.try_recv() {
                            Ok(JournalRequest::Append { ticket, entries }) => {
                                bytes += entries.len() * 64;
                                tickets.push(ticket);
                                batches.push(entries);
                            }
                            Ok(other) => pending = Some(other),
                            Err(_) => break,
                        }
                    }
                    if lingers == 0 || tickets.len() >= GROUP_BATCHES_MIN || pending.is_some() {
                        break;
                    }
                    lingers -= 1;
                    thread::sleep(GROUP_LINGER_STEP);
                }
                last_group = tickets.len();
                let Some(w) = writer.as_ref() else {
                    for t in tickets {
                        send(
                            &inputs,
                            JournalEvent::Failed {
                                ticket: t,
                                reason: "Kafka journal is not open".into(),
                            },
                        );
                    }
                    continue;
                };
                match commit(&config, w, &batches) {
                    Ok(()) => {
                        stats.add(tickets.len());
                        stats.report(false);
                        for t in tickets {
                            if !send(&inputs, JournalEvent::Durable { ticket: t }) {
                                return;
                            }
                        }
                    }
                    Err(e) if is_fencing(&e) => {
                        writer = None;
                        rearm(&config, &mut standby, &mut prepared);
                        let by_epoch = latest_activation_epoch(&config);
                        warn!(error = %e, ?by_epoch, "journal producer fenced by a newer live");
                        send(
                            &inputs,
                            JournalEvent::Fenced {
                                ticket: tickets[0],
                                by_epoch,
                            },
                        );
                    }
                    Err(e) => {
                        writer = None;
                        rearm(&config, &mut standby, &mut prepared);
                        error!(error = %e, "Kafka journal transaction failed");
                        send(
                            &inputs,
                            JournalEvent::Failed {
                                ticket: first(&tickets),
                                reason: e.to_string(),
                            },
                        );
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

fn first(tickets: &[Ticket]) -> Ticket {
    tickets[0]
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

/// One Kafka transaction holding every batch, in order.
/// Serves delivery reports until every record is acknowledged (or failed).
fn drain(config: &KafkaConfig, producer: &BaseProducer) -> Result<(), KafkaError> {
    super::serve_deliveries(producer, config.timeout())
}

fn commit(config: &KafkaConfig, w: &Writer, batches: &[Vec<Entry>]) -> Result<(), KafkaError> {
    let t0 = Instant::now();
    w.producer.begin_transaction()?;
    for batch in batches {
        for e in batch {
            let (key, value) = encode_entry(e);
            super::send_record(&w.producer, &w.topic, &key, value.as_deref())?;
        }
    }
    if let Err(e) = drain(config, &w.producer) {
        let _ = w.producer.abort_transaction(config.timeout());
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
                    let _ = drain(config, &w.producer);
                    let _ = w.producer.abort_transaction(config.timeout());
                }
                return Err(e);
            }
        }
    }
}

struct Loaded {
    records: u64,
    bytes: u64,
    /// Read from the standby copy rather than from the start of the topic.
    from_standby: bool,
}

fn open_and_load(
    config: &KafkaConfig,
    inputs: &mpsc::Sender<Input>,
    standby: Option<Standby>,
    prepared: Option<BaseProducer>,
) -> Result<(Writer, Loaded), String> {
    let topic = config.journal_topic();
    let t0 = Instant::now();
    if !standby.as_ref().is_some_and(Standby::topic_ready) {
        ensure_topic(config, &topic, 1, JOURNAL_TOPIC_CONFIG).map_err(|e| e.to_string())?;
    }
    let t_topic = t0.elapsed();
    let producer = match prepared {
        Some(p) => p,
        None => new_producer(config)?,
    };
    // Fence every older live: after this, their writes fail.
    producer
        .init_transactions(config.timeout())
        .map_err(|e| format!("init_transactions on {}: {e}", config.bootstrap))?;
    let t_fenced = t0.elapsed();
    // Fenced: the end offset read now is final, no older live can add to
    // it. The standby copy is used only if it gets there.
    let view = standby.map(|s| {
        let (_, end) = producer
            .client()
            .fetch_watermarks(&topic, 0, config.timeout())
            .map_err(|e| format!("cannot read the end of {topic}: {e}"))?;
        s.handover(end, config.timeout())
    });
    tracing::debug!(
        topic_ms = t_topic.as_millis() as u64,
        fenced_ms = t_fenced.as_millis() as u64,
        copy_ms = t0.elapsed().as_millis() as u64,
        "journal open steps"
    );
    let loaded = match view {
        Some(Ok(view)) => deliver(view, inputs)?,
        Some(Err(reason)) => {
            warn!(%reason, "standby journal copy unusable; reading the journal from its start");
            load(config, &topic, inputs)?
        }
        None => load(config, &topic, inputs)?,
    };
    Ok((Writer { producer, topic }, loaded))
}

/// The journal's transactional producer, not yet initialised.
fn new_producer(config: &KafkaConfig) -> Result<BaseProducer, String> {
    let mut client = config.client();
    if client.get("linger.ms").is_none() && client.get("queue.buffering.max.ms").is_none() {
        // A transaction's records go out together when the commit flushes
        // them; lingering lets them form large batches meanwhile. A
        // `--kafka-property linger.ms=N` overrides it.
        client.set("linger.ms", LINGER_MS_DEFAULT);
    }
    client
        .set("transactional.id", config.transactional_id())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "transaction.timeout.ms",
            config.transaction_timeout_ms.to_string(),
        )
        .set("message.max.bytes", RECORD_BYTES_MAX.to_string())
        .create()
        .map_err(|e| format!("cannot create Kafka producer for {}: {e}", config.bootstrap))
}

/// Hands the standby copy to the node, in offset order.
fn deliver(view: View, inputs: &mpsc::Sender<Input>) -> Result<Loaded, String> {
    let loaded = Loaded {
        records: view.len() as u64,
        bytes: view.bytes(),
        from_standby: true,
    };
    let mut chunk: Vec<Entry> = Vec::with_capacity(LOAD_CHUNK_ENTRIES);
    for e in view.into_entries() {
        chunk.push(e);
        if chunk.len() >= LOAD_CHUNK_ENTRIES {
            let entries = std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK_ENTRIES));
            if !send(inputs, JournalEvent::Loaded { entries }) {
                return Err("node is gone".into());
            }
        }
    }
    if !chunk.is_empty() && !send(inputs, JournalEvent::Loaded { entries: chunk }) {
        return Err("node is gone".into());
    }
    Ok(loaded)
}

/// Quiet about end-of-partition, which the reader asks for on purpose.
pub(crate) struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            warn!(%error, reason, "Kafka journal reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

fn reader(config: &KafkaConfig) -> Result<BaseConsumer<ReaderContext>, String> {
    config
        .client()
        .set("group.id", format!("halyard-{}-reader", config.cluster_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // The journal usually ends with a transaction marker, not a record: the
        // end shows as EOF after an empty fetch, which should not idle for
        // the default 500 ms.
        .set("fetch.wait.max.ms", "10")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set(
            "max.partition.fetch.bytes",
            (RECORD_BYTES_MAX * 2).to_string(),
        )
        .create_with_context(ReaderContext)
        .map_err(|e| format!("cannot create Kafka consumer for {}: {e}", config.bootstrap))
}

/// Reads the whole journal, committed records only, up to the end offset it
/// had once we fenced (no older producer can add to it any more).
fn load(config: &KafkaConfig, topic: &str, inputs: &mpsc::Sender<Input>) -> Result<Loaded, String> {
    let consumer = reader(config)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, config.timeout())
        .map_err(|e| format!("cannot read the end of {topic}: {e}"))?;
    let mut loaded = Loaded {
        records: 0,
        bytes: 0,
        from_standby: false,
    };
    if high <= low {
        return Ok(loaded);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut chunk: Vec<Entry> = Vec::with_capacity(LOAD_CHUNK_ENTRIES);
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let key = m.key().unwrap_or_default();
                let value = m.payload();
                loaded.records += 1;
                loaded.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                let e = decode_entry(key, value).map_err(|e| {
                    format!(
                        "undecodable journal record at offset {} of {topic}: {e}",
                        m.offset()
                    )
                })?;
                chunk.push(e);
                if chunk.len() >= LOAD_CHUNK_ENTRIES {
                    let entries =
                        std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK_ENTRIES));
                    if !send(inputs, JournalEvent::Loaded { entries }) {
                        return Err("node is gone".into());
                    }
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // With read_committed, EOF is the last stable offset; markers
                // after the last record make it reach `high` without a record.
                match super::read_position(&consumer, topic) {
                    Some(o) if o >= high => break,
                    _ if last_progress.elapsed() > config.timeout() => {
                        return Err(format!(
                            "journal read stuck before offset {high} of {topic}"
                        ))
                    }
                    _ => {}
                }
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None => {
                if last_progress.elapsed() > config.timeout() {
                    return Err(format!(
                        "no journal records from {} for {} ms (read {} of offsets {low}..{high})",
                        config.bootstrap, config.operation_timeout_ms, loaded.records
                    ));
                }
            }
        }
    }
    if !chunk.is_empty() {
        send(inputs, JournalEvent::Loaded { entries: chunk });
    }
    Ok(loaded)
}

/// The epoch of the newest activation record, to say who fenced us.
fn latest_activation_epoch(config: &KafkaConfig) -> Option<u32> {
    let topic = config.journal_topic();
    let consumer = reader(config).ok()?;
    let mut tpl = TopicPartitionList::new();
    // The newer live wrote its activation record when it took over; since
    // then at most a few seconds of traffic followed it.
    tpl.add_partition_offset(&topic, 0, Offset::OffsetTail(50_000))
        .ok()?;
    consumer.assign(&tpl).ok()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut epoch = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.key() == Some(b"activation".as_slice()) => {
                if let Ok(Entry::Put(Record::Activation { epoch: e, .. })) =
                    decode_entry(b"activation", m.payload())
                {
                    epoch = Some(e);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    epoch
}
