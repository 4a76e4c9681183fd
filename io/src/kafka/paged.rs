//! Reading paged messages back from the journal topic (the node's
//! `JournalRequest::Read`): their offsets from the `OffsetIndex`, their
//! `MessageStored` records from a `Fetcher`, answered in the order asked,
//! exactly as the local journal answers (see `local::driver`): the
//! messages found, and the node judges what is missing.

use std::sync::Arc;
use std::time::Duration;

use halyard_core::ids::Id;
use halyard_core::journal::codec::{decode_record, encode_key};
use halyard_core::journal::{CodecError, Key, Record};
use halyard_core::message::Message;
use thiserror::Error;

use super::error::FetchError;
use super::fetch::Fetcher;
use super::offsets::OffsetIndex;

/// What is wrong with a record read back.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("the record at offset {offset} is {found:?}, not message {id}'s")]
    NotItsRecord { offset: i64, id: Id, found: String },
    #[error("message {id}'s record at offset {offset} is a tombstone")]
    Tombstone { offset: i64, id: Id },
    #[error("message {id}'s record at offset {offset} does not decode: {source}")]
    Undecodable {
        offset: i64,
        id: Id,
        source: CodecError,
    },
    #[error("message {id}'s record at offset {offset} is not a stored message")]
    NotAMessage { offset: i64, id: Id },
}

/// Why a read of paged messages failed.
pub type PagedReadError = FetchError<RecordError>;

/// The messages `ids` asks for that the journal holds, in the order asked.
/// Every record in `index` is committed, below `visible_below`.
pub fn read_paged(
    fetcher: &mut Fetcher,
    index: &OffsetIndex,
    ids: &[Id],
    visible_below: i64,
    timeout: Duration,
) -> Result<Vec<(Id, Arc<Message>)>, PagedReadError> {
    // Offsets to read, ascending, each with the first slot of `ids` that
    // asks for it (an id asked twice is read once).
    let offsets_of: Vec<Option<i64>> = ids.iter().map(|id| index.get(*id)).collect();
    let mut wanted: Vec<(i64, usize)> = offsets_of
        .iter()
        .enumerate()
        .filter_map(|(slot, o)| Some(((*o)?, slot)))
        .collect();
    wanted.sort_unstable();
    wanted.dedup_by_key(|(o, _)| *o);
    let offsets: Vec<i64> = wanted.iter().map(|(o, _)| *o).collect();
    let mut read: Vec<Option<Arc<Message>>> = vec![None; offsets.len()];
    fetcher.fetch(&offsets, visible_below, timeout, |offset, key, value| {
        let Ok(w) = offsets.binary_search(&offset) else {
            unreachable!("the fetcher visits wanted offsets only");
        };
        read[w] = Some(message_at(ids[wanted[w].1], offset, key, value)?);
        Ok(())
    })?;
    Ok(ids
        .iter()
        .zip(offsets_of)
        .filter_map(|(id, offset)| {
            let w = offsets.binary_search(&offset?).ok()?;
            Some((*id, read[w].clone()?))
        })
        .collect())
}

/// Message `id` from its record at `offset`.
pub(crate) fn message_at(
    id: Id,
    offset: i64,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Arc<Message>, RecordError> {
    if key != encode_key(&Key::Message(id)).as_ref() {
        return Err(RecordError::NotItsRecord {
            offset,
            id,
            found: String::from_utf8_lossy(key).into_owned(),
        });
    }
    let Some(value) = value else {
        return Err(RecordError::Tombstone { offset, id });
    };
    match decode_record(value) {
        Ok(Record::MessageStored {
            id: stored,
            message,
            ..
        }) if stored == id => Ok(message),
        Ok(_) => Err(RecordError::NotAMessage { offset, id }),
        Err(source) => Err(RecordError::Undecodable { offset, id, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use halyard_core::journal::{encode_entry, Entry, Routing};
    use halyard_core::message::Body;

    fn stored(id: Id) -> (Bytes, Option<Bytes>) {
        encode_entry(&Entry::Put(Record::MessageStored {
            id,
            queues: vec![Id::new(1, 1)],
            message: Arc::new(Message::new(
                "q",
                Routing::Anycast,
                Body::Bytes(Bytes::from_static(b"body")),
            )),
        }))
    }

    #[test]
    fn a_record_is_checked_before_it_is_believed() {
        let id = Id::new(3, 9);
        let (k, v) = stored(id);
        let m = message_at(id, 5, &k, v.as_deref()).expect("its record");
        assert_eq!(m.address, "q");
        let other = Id::new(3, 10);
        let e = message_at(other, 5, &k, v.as_deref()).unwrap_err();
        assert!(matches!(e, RecordError::NotItsRecord { .. }), "{e}");
        let e = message_at(id, 5, &k, None).unwrap_err();
        assert!(matches!(e, RecordError::Tombstone { .. }), "{e}");
        let mut bad = v.expect("value").to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let e = message_at(id, 5, &k, Some(&bad)).unwrap_err();
        assert!(
            e.to_string().contains("does not decode") && e.to_string().contains("checksum"),
            "{e}"
        );
        // A record of another kind filed under the message's key.
        let (_, queue) = encode_entry(&Entry::Put(Record::Activation {
            epoch: 1,
            node: "n".into(),
        }));
        let e = message_at(id, 5, &k, queue.as_deref()).unwrap_err();
        assert!(matches!(e, RecordError::NotAMessage { .. }), "{e}");
    }
}
