//! Reading the journal topic, shared by the full load and the standby
//! copy: the consumers' context, where to start and where they are.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::error::ReadError;

/// Quiet about end-of-partition, which the readers ask for on purpose.
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

impl ConsumerContext for ReaderContext {}

/// Points `consumer` at the start of partition 0 of `topic`.
pub(crate) fn assign_from_start(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
) -> Result<(), ReadError> {
    let assign = |source| ReadError::Assign {
        topic: topic.to_string(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(assign)?;
    consumer.assign(&tpl).map_err(assign)
}

/// Where a consumer will read next in partition 0 of `topic` (past any
/// transaction markers it has skipped), if it knows.
pub(crate) fn read_position<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Option<i64> {
    match consumer.position().ok()?.find_partition(topic, 0)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}
