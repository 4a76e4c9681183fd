//! The topics Halyard keeps in Kafka: creating them, and the journal
//! topic's settings.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::config::KafkaConfig;
use super::error::KafkaSetupError;

/// Largest record (a STOMP frame is at most 10 MiB by default).
pub(crate) const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

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

/// Topic settings of a Kafka bridge topic Halyard creates: records as large
/// as the journal's (a 10 MiB STOMP frame and its headers fit).
pub const BRIDGED_TOPIC_CONFIG: &[(&str, &str)] = &[("max.message.bytes", "16777216")];

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
        .map_err(|source| KafkaSetupError::Runtime {
            topic: topic.to_string(),
            source,
        })?;
    let results = rt
        .block_on(async {
            tokio::time::timeout(config.timeout(), admin.create_topics([&new], &opts)).await
        })
        .map_err(|_| KafkaSetupError::Timeout {
            topic: topic.to_string(),
            bootstrap: config.bootstrap.clone(),
            timeout_ms: config.operation_timeout_ms,
        })?
        .map_err(|source| KafkaSetupError::Admin {
            topic: topic.to_string(),
            source,
        })?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(KafkaSetupError::Refused {
                    topic: topic.to_string(),
                    code,
                })
            }
        }
    }
    Ok(())
}
