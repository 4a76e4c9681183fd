//! The journal: what the broker writes down, how it is encoded, and how a
//! sequence of journal entries is replayed into broker state.
//!
//! The journal is a log of [`Entry`]s. Each entry has a [`Key`] saying what it
//! is about; a later entry with the same key supersedes an earlier one, and a
//! tombstone (an entry without a record) deletes the key. That is exactly
//! Kafka's compacted-topic model, so a compacted journal replays to the same
//! state as the full one.

mod bridge_codec;
pub mod codec;
mod format;
pub mod group_commit;
mod message_codec;
pub mod record;
mod wire;

pub use codec::{decode_entry, encode_entry, CodecError, FORMAT_VERSION, FORMAT_VERSION_OLDEST};
pub use record::{DurableSub, Entry, Key, QueueDef, QueueKind, Record};
// Where the journal's users have always found it.
pub use crate::message::Routing;
