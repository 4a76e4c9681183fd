//! What the local journal stores: opaque entries. The core encodes its
//! records into these bytes itself.

use bytes::Bytes;

/// One journal entry: a key and a value, or a tombstone (no value) that
/// deletes the key, like a Kafka record with a null value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Entry {
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    pub fn tombstone(key: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            value: None,
        }
    }
}
