//! Kafka adapters: the journal in a compacted topic written by a
//! transactional (fencing) producer, and the live lock as consumer-group
//! membership. See docs/kafka.md for every setting and why.

pub mod journal;
pub mod lock;
pub mod standby;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use thiserror::Error;

pub use journal::spawn_kafka_journal;
pub use lock::{spawn_kafka_lock, KafkaLockConfig};

/// How a node reaches Kafka and names its cluster's topics.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Names the journal topic, the lock group and the transactional id.
    pub cluster_id: String,
    /// Extra client properties for every client (TLS, SASL, timeouts).
    pub properties: Vec<(String, String)>,
    /// Replication factor for the topics Halyard creates.
    pub replication_factor: i32,
    /// `transaction.timeout.ms` of the journal producer.
    pub transaction_timeout_ms: u64,
    /// Bound on one Kafka operation (init, commit, metadata).
    pub operation_timeout_ms: u64,
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>, cluster_id: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            cluster_id: cluster_id.into(),
            properties: Vec::new(),
            replication_factor: 1,
            transaction_timeout_ms: 60_000,
            operation_timeout_ms: 10_000,
        }
    }

    pub fn journal_topic(&self) -> String {
        format!("halyard-{}-journal", self.cluster_id)
    }

    pub fn lock_topic(&self) -> String {
        format!("halyard-{}-lock", self.cluster_id)
    }

    pub fn lock_group(&self) -> String {
        format!("halyard-{}-lock", self.cluster_id)
    }

    /// Fixed per cluster: every live uses it, so each new live fences the last.
    pub fn transactional_id(&self) -> String {
        format!("halyard-{}-journal", self.cluster_id)
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }

    /// A client config with the bootstrap servers and the passthrough properties.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c.set("client.id", format!("halyard-{}", self.cluster_id));
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

#[derive(Debug, Error)]
pub enum KafkaSetupError {
    #[error("cannot create Kafka client for {bootstrap}: {source}")]
    Client {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// Creates `topic` with `partitions` and `configs` unless it exists.
pub fn ensure_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> =
        config
            .client()
            .create()
            .map_err(|source| KafkaSetupError::Client {
                bootstrap: config.bootstrap.clone(),
                source,
            })?;
    let mut new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(config.replication_factor),
    );
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(config.timeout()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaSetupError::Topic {
            topic: topic.to_string(),
            reason: e.to_string(),
        })?;
    let results = rt
        .block_on(async {
            tokio::time::timeout(config.timeout(), admin.create_topics([&new], &opts)).await
        })
        .map_err(|_| KafkaSetupError::Topic {
            topic: topic.to_string(),
            reason: format!(
                "Kafka at {} did not answer in {} ms",
                config.bootstrap, config.operation_timeout_ms
            ),
        })?
        .map_err(|e| KafkaSetupError::Topic {
            topic: topic.to_string(),
            reason: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(KafkaSetupError::Topic {
                    topic: topic.to_string(),
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Is this error the sign of a newer producer with our transactional id?
/// Pause between two looks at a producer's delivery reports.
pub const DELIVERY_NAP: Duration = Duration::from_micros(100);

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
pub fn serve_deliveries(
    producer: &rdkafka::producer::BaseProducer,
    timeout: Duration,
) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::producer::Producer;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(rdkafka::error::KafkaError::Flush(
                RDKafkaErrorCode::MessageTimedOut,
            ));
        }
        std::thread::sleep(DELIVERY_NAP);
    }
}

/// Sends one record to partition 0 of `topic` (a tombstone without
/// `value`), waiting for queue space when the producer's queue is full.
pub fn send_record(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::error::KafkaError;
    use rdkafka::producer::BaseRecord;
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

/// Where a consumer will read next in partition 0 of `topic` (past any
/// transaction markers it has skipped), if it knows.
pub(crate) fn read_position<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Option<i64> {
    use rdkafka::consumer::Consumer;
    match consumer.position().ok()?.find_partition(topic, 0)?.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

pub(crate) fn is_fencing(e: &rdkafka::error::KafkaError) -> bool {
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
