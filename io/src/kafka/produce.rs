//! Writing to Kafka: sending records with backpressure, serving delivery
//! reports (the journal producer's carry each record's offset), and telling
//! a fencing error from the others.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use halyard_core::bridge::OutRecord;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

/// The journal's transactional producer.
pub(crate) type JournalProducer = BaseProducer<JournalContext>;

/// The delivery opaque of a record whose offset nobody needs (a bridged one).
pub(crate) const NO_SLOT: usize = usize::MAX;

/// Collects the offsets of the journal records a transaction wrote, from
/// their delivery reports: each record is sent with its slot (its place in
/// the transaction) as the delivery opaque.
#[derive(Debug, Default)]
pub(crate) struct JournalContext {
    delivered: Mutex<Vec<(usize, i64)>>,
}

impl ClientContext for JournalContext {}

impl ProducerContext for JournalContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        // A failed delivery fails the transaction's commit: nothing to note.
        if let (Ok(m), true) = (result, slot != NO_SLOT) {
            if let Ok(mut d) = self.delivered.lock() {
                d.push((slot, m.offset()));
            }
        }
    }
}

impl JournalContext {
    /// (slot, offset) of each record delivered since the last call.
    pub(crate) fn take(&self) -> Vec<(usize, i64)> {
        self.delivered
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

/// Pause between two looks at a producer's delivery reports.
const DELIVERY_NAP: Duration = Duration::from_micros(100);

/// Serves a producer's delivery reports until every record it sent is
/// acknowledged (or failed), or `timeout` passes.
///
/// Not `BaseProducer::poll(timeout)` in a loop: in rdkafka 0.39 that call
/// keeps polling until its whole timeout has passed, and once less than a
/// millisecond is left it spins on zero-timeout polls (a 1 ms timeout spins
/// throughout). Profiled under load, 45% of the Kafka journal thread went
/// to `clock_gettime` in that loop. A zero-timeout poll and a short nap
/// serve reports as they arrive, at most `DELIVERY_NAP` late, for a
/// fraction of the CPU. (The rdkafka crate's own `flush`, which
/// `commit_transaction` calls, waits in 100 ms steps.)
pub fn serve_deliveries<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    serve_deliveries_doing(producer, timeout, &mut || 0)
}

/// `serve_deliveries`, calling `meanwhile` between two looks instead of
/// napping while it finds work to do (it returns how much it did; 0: nap).
pub(crate) fn serve_deliveries_doing<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
    meanwhile: &mut dyn FnMut() -> usize,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut));
        }
        if meanwhile() == 0 {
            std::thread::sleep(DELIVERY_NAP);
        }
    }
}

/// Sends one record to partition 0 of `topic` (a tombstone without
/// `value`), waiting for queue space when the producer's queue is full.
pub fn send_record(
    producer: &BaseProducer,
    topic: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), KafkaError> {
    loop {
        let mut rec = BaseRecord::<[u8], [u8]>::to(topic).partition(0).key(key);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // Reports free queue space; see `serve_deliveries` for why
                // not poll with a timeout.
                producer.poll(Duration::ZERO);
                std::thread::sleep(DELIVERY_NAP);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Sends one journal record to partition 0 of `topic` like `send_record`,
/// with its `slot` for its delivery report.
pub(crate) fn send_journal_record(
    producer: &JournalProducer,
    topic: &str,
    key: &[u8],
    value: Option<&[u8]>,
    slot: usize,
) -> Result<(), KafkaError> {
    loop {
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, slot)
            .partition(0)
            .key(key);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::ZERO);
                std::thread::sleep(DELIVERY_NAP);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Sends one Kafka bridge record to its topic (the partitioner picks the
/// partition from the key), waiting for queue space like `send_record`.
pub(crate) fn send_bridged(producer: &JournalProducer, r: &OutRecord) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_ref()),
        });
    }
    loop {
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&r.topic, NO_SLOT)
            .payload(r.value.as_ref())
            .headers(headers.clone());
        if let Some(k) = &r.key {
            rec = rec.key(k.as_ref());
        }
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::ZERO);
                std::thread::sleep(DELIVERY_NAP);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Is this error the sign of a newer producer with our transactional id?
pub(crate) fn is_fencing(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::TransactionCoordinatorFenced
        )
    )
}
