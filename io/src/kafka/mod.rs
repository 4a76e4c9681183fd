//! Kafka adapters: the journal in a compacted topic written by a
//! transactional (fencing) producer, its hot standby copy, and the live lock
//! as consumer-group membership. See docs/kafka.md for every setting and why.
//!
//! Files, each using only those listed before it: `config` (how to reach
//! Kafka), `error`, `topic` (creating topics, the journal topic's
//! settings), `produce` and `read` (what writing and reading share),
//! `standby` (the copy a backup keeps), `open` (fence and load), `journal`
//! (the driver thread with group commit), `lock` (the group lock),
//! `bridge_reader` (the Kafka bridge's reader of bridged topics) and
//! `bridge_forwarder` (its outbox forwarder, with a local journal).

mod bridge_forwarder;
mod bridge_reader;
mod config;
mod error;
mod journal;
mod lock;
mod open;
mod produce;
mod read;
mod standby;
mod topic;

pub use bridge_forwarder::{spawn_bridge_forwarder, ForwarderCounters};
pub use bridge_reader::spawn_bridge_reader;
pub use config::KafkaConfig;
pub use error::{KafkaSetupError, ReadError, StandbyError};
pub use journal::spawn_kafka_journal;
pub use lock::{spawn_kafka_lock, KafkaLockConfig};
pub use open::LINGER_MS_DEFAULT;
pub use produce::{send_record, serve_deliveries};
pub use standby::{Standby, View};
pub use topic::{ensure_topic, JOURNAL_TOPIC_CONFIG};
