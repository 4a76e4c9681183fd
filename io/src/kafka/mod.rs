//! Kafka adapters: the journal in a compacted topic written by a
//! transactional (fencing) producer, its hot standby copy, and the live lock
//! as consumer-group membership. See docs/kafka.md for every setting and why.
//!
//! Files, each using only those listed before it: `config` (how to reach
//! Kafka), `error`, `topic` (creating topics, the journal topic's
//! settings), `produce` and `read` (what writing and reading share),
//! `offsets` (message id -> offset of its record), `fetch` (reading records
//! at given offsets), `paged` (reading paged messages back), `written`
//! (what a committed transaction changes in the offsets), `view` and
//! `standby` (the copy a backup keeps), `open` (fence and load), `journal`
//! (the driver thread with group commit), `lock` (the group lock),
//! `bridge_reader` (the Kafka bridge's reader of bridged topics),
//! `bridge_forwarder` (its outbox forwarder, with a local journal), and the
//! lock coordinator of mirrored brokers: `mirror_record` (its state
//! record), `mirror_error`, `mirror_member` (its settings, the group
//! member), `mirror_held` (the epoch and the state, fenced by a
//! transactional producer) and `mirror_lock` (the `LockCoordinator`).

mod bridge_forwarder;
mod bridge_reader;
mod config;
mod error;
mod fetch;
mod journal;
mod lock;
mod mirror_error;
mod mirror_held;
mod mirror_lock;
mod mirror_member;
mod mirror_record;
mod offsets;
mod open;
mod paged;
mod produce;
mod read;
mod standby;
mod topic;
mod view;
mod written;

pub use bridge_forwarder::{spawn_bridge_forwarder, ForwarderCounters};
pub use bridge_reader::spawn_bridge_reader;
pub use config::KafkaConfig;
pub use error::{FetchError, KafkaSetupError, ReadError, StandbyError};
pub use fetch::Fetcher;
pub use journal::spawn_kafka_journal;
pub use lock::{spawn_kafka_lock, KafkaLockConfig};
pub use mirror_error::KafkaMirrorLockError;
pub use mirror_held::{KafkaHeld, StateOffset};
pub use mirror_lock::KafkaMirrorLock;
pub use mirror_member::{KafkaMirrorLockConfig, MIRROR_SESSION_TIMEOUT_MS_DEFAULT};
pub use offsets::OffsetIndex;
pub use open::LINGER_MS_DEFAULT;
pub use paged::{read_paged, PagedReadError, RecordError};
pub use produce::{send_record, serve_deliveries};
pub use standby::Standby;
pub use topic::{ensure_topic, JOURNAL_TOPIC_CONFIG};
pub use view::View;
