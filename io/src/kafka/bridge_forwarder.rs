//! The Kafka bridge's forwarder, for a node whose journal is local: the
//! node puts each bridged record in its journal's outbox with the message
//! and, once that batch is durable, asks for it to be forwarded; an
//! idempotent producer (`acks=all`) writes it and the node hears
//! `Forwarded` for every record Kafka acknowledged, which takes it out of
//! the outbox. At least once: a crash after Kafka took a record and before
//! its removal is journaled forwards it again from the next live (the node
//! marks those requests `again`; they are counted and logged).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use halyard_core::bridge::{BridgeEvent, BridgeRequest, OutRecord};
use halyard_core::ids::Id;
use halyard_core::node::Input;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::config::KafkaConfig;
use super::topic::{ensure_topic, BRIDGED_TOPIC_CONFIG, RECORD_BYTES_MAX};

/// Records handed to the producer and not yet acknowledged, at most.
const IN_FLIGHT_MAX: usize = 10_000;
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// After a failure (a topic that cannot be created, a refused record).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the forwarder counts (read by `/metrics`).
#[derive(Debug, Default)]
pub struct ForwarderCounters {
    pub forwarded: AtomicU64,
    /// Records forwarded again after an activation: each may be a duplicate.
    pub forwarded_again: AtomicU64,
}

struct Context {
    done: Mutex<Vec<(Id, Result<(), String>)>>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Id>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<Id>) {
        let outcome = result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string());
        if let Ok(mut done) = self.done.lock() {
            done.push((*id, outcome));
        }
    }
}

/// Starts the forwarder's thread; returns where to send its requests.
pub fn spawn_bridge_forwarder(
    kafka: KafkaConfig,
    inputs: mpsc::Sender<Input>,
    counters: Arc<ForwarderCounters>,
) -> std_mpsc::Sender<BridgeRequest> {
    let (tx, rx) = std_mpsc::channel();
    thread::Builder::new()
        .name("halyard-bridge-forwarder".into())
        .spawn(move || run(kafka, rx, inputs, counters))
        .expect("spawn bridge forwarder thread");
    tx
}

fn new_producer(kafka: &KafkaConfig) -> Result<BaseProducer<Context>, KafkaError> {
    kafka
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.max.bytes", RECORD_BYTES_MAX.to_string())
        .create_with_context(Context {
            done: Mutex::new(Vec::new()),
        })
}

fn run(
    kafka: KafkaConfig,
    rx: std_mpsc::Receiver<BridgeRequest>,
    inputs: mpsc::Sender<Input>,
    counters: Arc<ForwarderCounters>,
) {
    let producer = loop {
        match new_producer(&kafka) {
            Ok(p) => break p,
            Err(e) => {
                error!(error = %e, "Kafka bridge forwarder cannot create its producer; trying again");
                thread::sleep(RETRY_AFTER);
            }
        }
    };
    let mut queue: VecDeque<(Id, Arc<OutRecord>)> = VecDeque::new();
    let mut in_flight: HashMap<Id, Arc<OutRecord>> = HashMap::new();
    let mut topics: HashSet<String> = HashSet::new();
    loop {
        let request = if queue.is_empty() && in_flight.is_empty() {
            match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(IDLE_WAIT) {
                Ok(r) => Some(r),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        match request {
            Some(BridgeRequest::Forward { records, again }) => {
                if again {
                    counters
                        .forwarded_again
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    warn!(
                        records = records.len(),
                        "forwarding outbox records again after activation: Kafka may have some already (at-least-once duplicates)"
                    );
                }
                queue.extend(records);
            }
            // Stepped down: the next live forwards what is left.
            Some(BridgeRequest::Stop) => queue.clear(),
            _ => {}
        }
        while in_flight.len() < IN_FLIGHT_MAX {
            let Some((id, record)) = queue.pop_front() else {
                break;
            };
            if !topics.contains(&record.topic) {
                if let Err(e) = ensure_topic(
                    &kafka,
                    &record.topic,
                    kafka.bridge_topic_partitions,
                    BRIDGED_TOPIC_CONFIG,
                ) {
                    error!(topic = %record.topic, error = %e, "Kafka bridge cannot create its topic; trying again");
                    queue.push_front((id, record));
                    thread::sleep(RETRY_AFTER);
                    break;
                }
                topics.insert(record.topic.clone());
            }
            match send(&producer, id, &record) {
                Ok(()) => {
                    in_flight.insert(id, record);
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    queue.push_front((id, record));
                    break;
                }
                Err(e) => {
                    error!(topic = %record.topic, error = %e, "Kafka bridge cannot forward a record; trying again");
                    queue.push_front((id, record));
                    thread::sleep(RETRY_AFTER);
                    break;
                }
            }
        }
        producer.poll(Duration::ZERO);
        let done = std::mem::take(&mut *producer.context().done.lock().expect("not poisoned"));
        let mut ids = Vec::with_capacity(done.len());
        for (id, outcome) in done {
            let Some(record) = in_flight.remove(&id) else {
                continue;
            };
            match outcome {
                Ok(()) => ids.push(id),
                Err(e) => {
                    warn!(topic = %record.topic, error = %e, "Kafka refused a bridged record; forwarding it again");
                    queue.push_back((id, record));
                }
            }
        }
        if !ids.is_empty() {
            counters
                .forwarded
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            if inputs
                .blocking_send(Input::Bridge(BridgeEvent::Forwarded { ids }))
                .is_err()
            {
                info!("Kafka bridge forwarder stops: the node is gone");
                return;
            }
        }
    }
}

fn send(producer: &BaseProducer<Context>, id: Id, r: &OutRecord) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_ref()),
        });
    }
    let mut rec = BaseRecord::<[u8], [u8], Box<Id>>::with_opaque_to(&r.topic, Box::new(id))
        .payload(r.value.as_ref())
        .headers(headers);
    if let Some(k) = &r.key {
        rec = rec.key(k.as_ref());
    }
    producer.send(rec).map_err(|(e, _)| e)
}
