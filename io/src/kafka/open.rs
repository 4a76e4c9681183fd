//! Opening the Kafka journal: fence every older writer, then read the
//! journal to its end, from the standby copy if it gets there, else in full.

use std::time::{Duration, Instant};

use halyard_core::journal::{decode_entry, Entry, Key, Record};
use halyard_core::node::Input;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::config::KafkaConfig;
use super::error::{KafkaJournalError, ReadError};
use super::fetch::{Fetcher, FULL_QUEUE_BACKOFF_MS};
use super::offsets::OffsetIndex;
use super::produce::{JournalContext, JournalProducer};
use super::read::{assign_from_start, read_position, ReaderContext};
use super::standby::Standby;
use super::topic::{ensure_topic, JOURNAL_TOPIC_CONFIG, RECORD_BYTES_MAX};
use super::view::View;
use crate::drop_elsewhere::drop_elsewhere;
use crate::journal::send_loaded;

/// Entries per `Loaded` input while reading the journal.
const LOAD_CHUNK_ENTRIES: usize = 4096;
/// The journal producer's `linger.ms` unless the user sets one.
pub const LINGER_MS_DEFAULT: &str = "2";

/// The open journal's writer: a transactional producer that has fenced
/// every older one, and where each stored message's record is.
pub(super) struct Writer {
    pub(super) producer: JournalProducer,
    pub(super) topic: String,
    pub(super) index: OffsetIndex,
    /// The greatest offset of the topic known to hold a record or marker
    /// (-1: none): a record written now lands past it.
    pub(super) last_offset: i64,
    /// Reads paged messages back; made at the first read (or kept from
    /// the standby copy's handover).
    pub(super) fetcher: Option<Fetcher>,
}

/// What opening read.
pub(super) struct Loaded {
    pub(super) records: u64,
    pub(super) bytes: u64,
    /// Read from the standby copy rather than from the start of the topic.
    pub(super) from_standby: bool,
    /// Of the standby copy's records, those read back from the topic
    /// (kept as offsets only).
    pub(super) fetched: u64,
    pub(super) index: OffsetIndex,
    /// The end offset read to (exclusive).
    pub(super) end: i64,
    pub(super) fetcher: Option<Fetcher>,
}

/// One `Loaded` chunk, once the node has taken the earlier ones
/// (`journal::send_loaded`: a load holds a few chunks in flight).
fn send_chunk(inputs: &mpsc::Sender<Input>, entries: Vec<Entry>) -> Result<(), KafkaJournalError> {
    if send_loaded(inputs, entries) {
        Ok(())
    } else {
        Err(KafkaJournalError::NodeGone)
    }
}

/// Fences, then sends the whole journal to the node as `Loaded` inputs.
pub(super) fn open_and_load(
    config: &KafkaConfig,
    inputs: &mpsc::Sender<Input>,
    standby: Option<Standby>,
    prepared: Option<JournalProducer>,
) -> Result<(Writer, Loaded), KafkaJournalError> {
    let topic = config.journal_topic();
    let t0 = Instant::now();
    if !standby.as_ref().is_some_and(Standby::topic_ready) {
        ensure_topic(config, &topic, 1, JOURNAL_TOPIC_CONFIG)?;
    }
    let t_topic = t0.elapsed();
    let producer = match prepared {
        Some(p) => p,
        None => new_producer(config)?,
    };
    // Fence every older live: after this, their writes fail.
    let producer = fence(config, producer)?;
    let t_fenced = t0.elapsed();
    // Fenced: the end offset read now is final, no older live can add to
    // it. The standby copy is used only if it gets there.
    let view = standby.map(|s| {
        let (_, end) = producer
            .client()
            .fetch_watermarks(&topic, 0, config.timeout())
            .map_err(|source| ReadError::EndOffset {
                topic: topic.clone(),
                source,
            })?;
        s.handover(end, config.timeout())
    });
    tracing::debug!(
        topic_ms = t_topic.as_millis() as u64,
        fenced_ms = t_fenced.as_millis() as u64,
        copy_ms = t0.elapsed().as_millis() as u64,
        "journal open steps"
    );
    let mut loaded = match view {
        Some(Ok(view)) => deliver(config, view, inputs)?,
        Some(Err(reason)) => {
            warn!(%reason, "standby journal copy unusable; reading the journal from its start");
            load(config, &topic, inputs)?
        }
        None => load(config, &topic, inputs)?,
    };
    let writer = Writer {
        producer,
        topic,
        index: std::mem::take(&mut loaded.index),
        last_offset: loaded.end - 1,
        fetcher: loaded.fetcher.take(),
    };
    Ok((writer, loaded))
}

/// How long the first `init_transactions` (on the producer made while this
/// node was a backup, already connected: it answers in a few milliseconds)
/// may wait before a fresh producer asks again. A live killed inside a
/// transaction leaves it open; the first InitProducerId makes the
/// coordinator abort it and is answered CONCURRENT_TRANSACTIONS, which
/// librdkafka retries only after a fixed 500 ms
/// (`rd_kafka_idemp_pid_timer_restart`), while the abort takes a few
/// milliseconds. A fresh producer asks at once (docs/failover.md).
const FENCE_FIRST_TRY: Duration = Duration::from_millis(60);
/// A fresh producer's try: it connects and finds the coordinator first.
const FENCE_FRESH_TRY: Duration = Duration::from_millis(100);
/// Quick tries (60 ms, then 100 ms each: 460 ms in all, under librdkafka's
/// own 500 ms retry) before one that waits the whole operation timeout.
const FENCE_QUICK_TRIES: u32 = 5;

/// `init_transactions` on the journal's transactional id: bumps the producer
/// epoch, which fences every older producer and aborts its open
/// transaction. A try that times out is given up for a fresh producer (see
/// `FENCE_FIRST_TRY`), dropped at once. A given-up try may still have
/// bumped the epoch; the next one bumps it again, so only the producer
/// returned can write, which is all the fence needs (were a given-up one
/// to get in last after all, the journal's first write would be fenced and
/// the node step down: a failed activation, never a second writer).
fn fence(
    config: &KafkaConfig,
    mut producer: JournalProducer,
) -> Result<JournalProducer, KafkaJournalError> {
    let failed = |source| KafkaJournalError::InitTransactions {
        bootstrap: config.bootstrap.clone(),
        source,
    };
    for attempt in 1..=FENCE_QUICK_TRIES {
        let wait = if attempt == 1 {
            FENCE_FIRST_TRY
        } else {
            FENCE_FRESH_TRY
        };
        match producer.init_transactions(wait) {
            Ok(()) => return Ok(producer),
            // A try that runs out of time returns the last error librdkafka
            // met (CONCURRENT_TRANSACTIONS, retriable), or a timeout.
            Err(KafkaError::Transaction(e))
                if e.is_retriable() || e.code() == RDKafkaErrorCode::OperationTimedOut =>
            {
                debug!(attempt, error = %e, "init_transactions not done yet; asking again with a fresh producer");
                let fresh = new_producer(config)?;
                drop_elsewhere(
                    "halyard-kafka-drop",
                    std::mem::replace(&mut producer, fresh),
                );
            }
            Err(source) => return Err(failed(source)),
        }
    }
    producer
        .init_transactions(config.timeout())
        .map_err(failed)?;
    Ok(producer)
}

/// The journal's transactional producer, not yet initialised.
pub(super) fn new_producer(config: &KafkaConfig) -> Result<JournalProducer, KafkaJournalError> {
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
        .create_with_context(JournalContext::default())
        .map_err(|source| KafkaJournalError::Producer {
            bootstrap: config.bootstrap.clone(),
            source,
        })
}

/// Hands the standby copy to the node, in offset order: the entries it
/// kept, and the message records it kept as offsets only, read back from
/// the topic a window at a time as the walk reaches them.
fn deliver(
    config: &KafkaConfig,
    view: View,
    inputs: &mpsc::Sender<Input>,
) -> Result<Loaded, KafkaJournalError> {
    let end = view.next_offset;
    let parts = view.into_parts();
    let mut loaded = Loaded {
        records: (parts.kept.len() + parts.paged.len()) as u64,
        bytes: parts.bytes,
        from_standby: true,
        fetched: 0,
        index: OffsetIndex::new(),
        end,
        fetcher: None,
    };
    let mut fetcher = if parts.paged.is_empty() {
        None
    } else {
        Some(Fetcher::new(config)?)
    };
    let mut chunk: Vec<Entry> = Vec::with_capacity(LOAD_CHUNK_ENTRIES);
    let push = |e: Entry, chunk: &mut Vec<Entry>| {
        chunk.push(e);
        if chunk.len() >= LOAD_CHUNK_ENTRIES {
            let entries = std::mem::replace(chunk, Vec::with_capacity(LOAD_CHUNK_ENTRIES));
            send_chunk(inputs, entries)?;
        }
        Ok::<(), KafkaJournalError>(())
    };
    let mut kept = parts.kept.into_iter().peekable();
    for window in parts.paged.chunks(LOAD_CHUNK_ENTRIES) {
        let Some(f) = fetcher.as_mut() else {
            unreachable!("made above when records are paged");
        };
        let fetched = fetch_window(config, f, window, end, &parts.messages)?;
        loaded.fetched += fetched.len() as u64;
        for (offset, size, e) in fetched {
            while let Some((_, (k, _))) = kept.next_if(|(o, _)| *o < offset) {
                push(k, &mut chunk)?;
            }
            loaded.bytes += size;
            push(e, &mut chunk)?;
        }
    }
    for (_, (e, _)) in kept {
        push(e, &mut chunk)?;
    }
    if !chunk.is_empty() {
        send_chunk(inputs, chunk)?;
    }
    loaded.index = parts.messages;
    loaded.fetcher = fetcher;
    Ok(loaded)
}

/// The message records at `window` (ascending offsets the standby copy
/// kept as offsets only, below its `end`), decoded: (offset, bytes,
/// entry). Each must be there and be the record the copy indexed at its
/// offset.
fn fetch_window(
    config: &KafkaConfig,
    fetcher: &mut Fetcher,
    window: &[i64],
    end: i64,
    messages: &OffsetIndex,
) -> Result<Vec<(i64, u64, Entry)>, KafkaJournalError> {
    let topic = config.journal_topic();
    let mut out = Vec::with_capacity(window.len());
    fetcher.fetch(window, end, config.timeout(), |offset, key, value| {
        let bytes = (key.len() + value.map_or(0, <[u8]>::len)) as u64;
        let entry = decode_entry(key, value).map_err(|source| ReadError::Undecodable {
            offset,
            topic: topic.clone(),
            source,
        })?;
        match &entry {
            Entry::Put(Record::MessageStored { id, .. }) if messages.get(*id) == Some(offset) => {
                out.push((offset, bytes, entry));
                Ok(())
            }
            other => Err(ReadError::NotIndexed {
                offset,
                topic: topic.clone(),
                key: format!("{:?}", other.key()),
            }),
        }
    })?;
    if out.len() < window.len() {
        let missing = window
            .iter()
            .find(|o| !out.iter().any(|(f, _, _)| f == *o))
            .copied()
            .unwrap_or_default();
        return Err(KafkaJournalError::CopyRecordMissing {
            topic,
            offset: missing,
            missing: window.len() - out.len(),
        });
    }
    Ok(out)
}

fn reader(config: &KafkaConfig) -> Result<BaseConsumer<ReaderContext>, ReadError> {
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
        // Not the default 1 s pause after the prefetch queue fills: a load
        // drains it at once and wants the next records.
        .set("fetch.queue.backoff.ms", FULL_QUEUE_BACKOFF_MS)
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set(
            "max.partition.fetch.bytes",
            (RECORD_BYTES_MAX * 2).to_string(),
        )
        .create_with_context(ReaderContext)
        .map_err(|source| ReadError::Consumer {
            bootstrap: config.bootstrap.clone(),
            source,
        })
}

/// Reads the whole journal, committed records only, up to the end offset it
/// had once we fenced (no older producer can add to it any more).
fn load(
    config: &KafkaConfig,
    topic: &str,
    inputs: &mpsc::Sender<Input>,
) -> Result<Loaded, KafkaJournalError> {
    let consumer = reader(config)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, config.timeout())
        .map_err(|source| ReadError::EndOffset {
            topic: topic.to_string(),
            source,
        })?;
    let mut loaded = Loaded {
        records: 0,
        bytes: 0,
        from_standby: false,
        fetched: 0,
        index: OffsetIndex::new(),
        end: high,
        fetcher: None,
    };
    if high <= low {
        return Ok(loaded);
    }
    assign_from_start(&consumer, topic)?;
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
                let e = decode_entry(key, value).map_err(|source| ReadError::Undecodable {
                    offset: m.offset(),
                    topic: topic.to_string(),
                    source,
                })?;
                match &e {
                    Entry::Put(Record::MessageStored { id, .. }) => {
                        loaded.index.insert(*id, m.offset())
                    }
                    Entry::Tombstone(Key::Message(id)) => {
                        loaded.index.remove(*id);
                    }
                    _ => {}
                }
                chunk.push(e);
                if chunk.len() >= LOAD_CHUNK_ENTRIES {
                    let entries =
                        std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK_ENTRIES));
                    send_chunk(inputs, entries)?;
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // With read_committed, EOF is the last stable offset; markers
                // after the last record make it reach `high` without a record.
                match read_position(&consumer, topic) {
                    Some(o) if o >= high => break,
                    _ if last_progress.elapsed() > config.timeout() => {
                        return Err(KafkaJournalError::Stuck {
                            topic: topic.to_string(),
                            end: high,
                        })
                    }
                    _ => {}
                }
            }
            Some(Err(source)) => {
                return Err(KafkaJournalError::Poll {
                    topic: topic.to_string(),
                    source,
                })
            }
            None => {
                if last_progress.elapsed() > config.timeout() {
                    return Err(KafkaJournalError::Silent {
                        bootstrap: config.bootstrap.clone(),
                        timeout_ms: config.operation_timeout_ms,
                        records: loaded.records,
                        low,
                        high,
                    });
                }
            }
        }
    }
    if !chunk.is_empty() {
        send_chunk(inputs, chunk)?;
    }
    Ok(loaded)
}

/// The epoch of the newest activation record, to say who fenced us; `None`
/// if it cannot be read within a few seconds (only the log line loses the
/// epoch: the fencing stands anyway).
pub(super) fn latest_activation_epoch(config: &KafkaConfig) -> Option<u32> {
    match read_latest_activation_epoch(config) {
        Ok(epoch) => epoch,
        Err(e) => {
            debug!(error = %e, "cannot read who fenced the journal");
            None
        }
    }
}

fn read_latest_activation_epoch(config: &KafkaConfig) -> Result<Option<u32>, ReadError> {
    let topic = config.journal_topic();
    let consumer = reader(config)?;
    let assign = |source| ReadError::Assign {
        topic: topic.clone(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    // The newer live wrote its activation record when it took over; since
    // then at most a few seconds of traffic followed it.
    tpl.add_partition_offset(&topic, 0, Offset::OffsetTail(50_000))
        .map_err(assign)?;
    consumer.assign(&tpl).map_err(assign)?;
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
            // Other records, and errors: keep looking until the deadline.
            _ => {}
        }
    }
    Ok(epoch)
}
