//! Versioned binary encoding of journal entries.
//!
//! An entry travels as a key and an optional value, like a Kafka record; a
//! missing value is a tombstone. Keys are short readable text
//! (`q/orders`, `m/3:17`, `r/3:17/1:2`) so `kcat` output makes sense. A value
//! is:
//!
//! ```text
//! u8  format version (see [`FORMAT_VERSION`]; older versions are still read)
//! u8  record tag
//! ... fields: varint integers, varint-length-prefixed strings and bytes
//! u32 CRC32C (Castagnoli, little endian) of everything before it
//! ```
//!
//! Decoding checks the version, the checksum, every length against the bytes
//! that remain, and that the record's own key matches the key it came with;
//! it never allocates more than the input holds.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::bridge_codec::{put_out_record, read_out_record};
pub use super::format::{CodecError, FORMAT_VERSION, FORMAT_VERSION_OLDEST};
use super::format::{FORMAT_VERSION_ADDRESSES, FORMAT_VERSION_BRIDGE, NAME_BYTES_MAX};
use super::message_codec::{put_message, put_routing, read_message, read_message_v1, read_routing};
use super::record::{DurableSub, Entry, Key, QueueDef, QueueKind, Record};
use super::wire::{put_id, put_str, put_varint, Reader};
use crate::ids::Id;

/// Most queues one message may be routed to.
const QUEUES_MAX: usize = 1 << 20;

const TAG_ACTIVATION: u8 = 1;
const TAG_QUEUE_CREATED: u8 = 2;
const TAG_MESSAGE_STORED: u8 = 3;
const TAG_ROUTED: u8 = 4;
const TAG_ACKED: u8 = 5;
const TAG_DUPLICATE_ID: u8 = 6;
const TAG_ADDRESS_CREATED: u8 = 7;
const TAG_BRIDGE_POSITION: u8 = 8;
const TAG_OUTBOX: u8 = 9;

/// Encodes an entry as (key, value); `None` is a tombstone.
pub fn encode_entry(entry: &Entry) -> (Bytes, Option<Bytes>) {
    match entry {
        Entry::Put(record) => (encode_key(&record.key()), Some(encode_record(record))),
        Entry::Tombstone(key) => (encode_key(key), None),
    }
}

/// Decodes what [`encode_entry`] wrote.
pub fn decode_entry(key: &[u8], value: Option<&[u8]>) -> Result<Entry, CodecError> {
    let key = decode_key(key)?;
    match value {
        None => Ok(Entry::Tombstone(key)),
        Some(v) => {
            let record = decode_record(v)?;
            let found = record.key();
            if found != key {
                return Err(CodecError::KeyMismatch {
                    expected: String::from_utf8_lossy(&encode_key(&key)).into_owned(),
                    found: String::from_utf8_lossy(&encode_key(&found)).into_owned(),
                });
            }
            Ok(Entry::Put(record))
        }
    }
}

pub fn encode_key(key: &Key) -> Bytes {
    // Built by hand rather than with `format!`: keys are written for every
    // journal entry, and the formatting machinery cost more than the rest.
    let mut out = Vec::with_capacity(key_len_hint(key));
    match key {
        Key::Activation => out.extend_from_slice(b"activation"),
        Key::Queue(name) => {
            out.extend_from_slice(b"q/");
            out.extend_from_slice(name.as_bytes());
        }
        Key::Message(id) => {
            out.extend_from_slice(b"m/");
            put_key_id(&mut out, *id);
        }
        Key::Ref { message, queue } => {
            out.extend_from_slice(b"r/");
            put_key_id(&mut out, *message);
            out.push(b'/');
            put_key_id(&mut out, *queue);
        }
        Key::Duplicate { address, dup_id } => {
            out.extend_from_slice(b"d/");
            put_decimal(&mut out, address.len() as u64);
            out.push(b'/');
            out.extend_from_slice(address.as_bytes());
            out.push(b'/');
            out.extend_from_slice(dup_id.as_bytes());
        }
        Key::Address(name) => {
            out.extend_from_slice(b"a/");
            out.extend_from_slice(name.as_bytes());
        }
        Key::Outbox(id) => {
            out.extend_from_slice(b"o/");
            put_key_id(&mut out, *id);
        }
        Key::BridgePosition { topic, partition } => {
            out.extend_from_slice(b"k/");
            put_decimal(&mut out, u64::from(*partition));
            out.push(b'/');
            out.extend_from_slice(topic.as_bytes());
        }
    }
    Bytes::from(out)
}

fn key_len_hint(key: &Key) -> usize {
    // Two ids of at most 10 + 1 + 20 digits each, separators, prefixes.
    match key {
        Key::Activation => 10,
        Key::Queue(name) | Key::Address(name) => 2 + name.len(),
        Key::Message(_) | Key::Ref { .. } | Key::Outbox(_) => 2 + 2 * 31 + 1,
        Key::Duplicate { address, dup_id } => 2 + 20 + 2 + address.len() + dup_id.len(),
        Key::BridgePosition { topic, .. } => 2 + 10 + 1 + topic.len(),
    }
}

/// An id as its `Display` writes it: `epoch:seq`.
fn put_key_id(out: &mut Vec<u8>, id: Id) {
    put_decimal(out, u64::from(id.epoch));
    out.push(b':');
    put_decimal(out, id.seq);
}

/// `n` in decimal, as `Display` writes it.
fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

pub fn decode_key(raw: &[u8]) -> Result<Key, CodecError> {
    let bad = || CodecError::BadKey(String::from_utf8_lossy(raw).into_owned());
    if raw.len() > NAME_BYTES_MAX * 2 + 32 {
        return Err(bad());
    }
    let s = std::str::from_utf8(raw).map_err(|_| bad())?;
    if s == "activation" {
        return Ok(Key::Activation);
    }
    let (kind, rest) = s.split_once('/').ok_or_else(bad)?;
    match kind {
        "q" if !rest.is_empty() => Ok(Key::Queue(rest.to_string())),
        "a" if !rest.is_empty() => Ok(Key::Address(rest.to_string())),
        "k" => {
            let (p, topic) = rest.split_once('/').ok_or_else(bad)?;
            if topic.is_empty() {
                return Err(bad());
            }
            Ok(Key::BridgePosition {
                topic: topic.to_string(),
                partition: p.parse().map_err(|_| bad())?,
            })
        }
        "m" => Ok(Key::Message(rest.parse().map_err(|_| bad())?)),
        "o" => Ok(Key::Outbox(rest.parse().map_err(|_| bad())?)),
        "r" => {
            let (m, q) = rest.split_once('/').ok_or_else(bad)?;
            Ok(Key::Ref {
                message: m.parse().map_err(|_| bad())?,
                queue: q.parse().map_err(|_| bad())?,
            })
        }
        "d" => {
            let (len, rest) = rest.split_once('/').ok_or_else(bad)?;
            let len: usize = len.parse().map_err(|_| bad())?;
            // `len` is untrusted: compare without overflowing.
            if len >= rest.len() || !rest.is_char_boundary(len) || rest.as_bytes()[len] != b'/' {
                return Err(bad());
            }
            Ok(Key::Duplicate {
                address: rest[..len].to_string(),
                dup_id: rest[len + 1..].to_string(),
            })
        }
        _ => Err(bad()),
    }
}

pub fn encode_record(record: &Record) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + record_payload_hint(record));
    out.put_u8(FORMAT_VERSION);
    match record {
        Record::Activation { epoch, node } => {
            out.put_u8(TAG_ACTIVATION);
            put_varint(&mut out, u64::from(*epoch));
            put_str(&mut out, node);
        }
        Record::QueueCreated(q) => {
            out.put_u8(TAG_QUEUE_CREATED);
            put_id(&mut out, q.id);
            put_str(&mut out, &q.name);
            put_str(&mut out, &q.address);
            match &q.kind {
                QueueKind::Anycast => out.put_u8(0),
                QueueKind::DurableSubscription(sub) => {
                    out.put_u8(1);
                    put_str(&mut out, &sub.client_id);
                    put_str(&mut out, &sub.name);
                }
            }
        }
        Record::MessageStored {
            id,
            queues,
            message,
        } => {
            out.put_u8(TAG_MESSAGE_STORED);
            put_id(&mut out, *id);
            put_varint(&mut out, queues.len() as u64);
            for q in queues {
                put_id(&mut out, *q);
            }
            put_message(&mut out, message);
        }
        Record::Routed { id, queue } => {
            out.put_u8(TAG_ROUTED);
            put_id(&mut out, *id);
            put_id(&mut out, *queue);
        }
        Record::Acked { id, queue } => {
            out.put_u8(TAG_ACKED);
            put_id(&mut out, *id);
            put_id(&mut out, *queue);
        }
        Record::DuplicateId {
            address,
            dup_id,
            message,
        } => {
            out.put_u8(TAG_DUPLICATE_ID);
            put_str(&mut out, address);
            put_str(&mut out, dup_id);
            put_id(&mut out, *message);
        }
        Record::AddressCreated { address, routing } => {
            out.put_u8(TAG_ADDRESS_CREATED);
            put_str(&mut out, address);
            put_routing(&mut out, *routing);
        }
        Record::BridgePosition {
            topic,
            partition,
            next_offset,
        } => {
            out.put_u8(TAG_BRIDGE_POSITION);
            put_str(&mut out, topic);
            put_varint(&mut out, u64::from(*partition));
            put_varint(&mut out, *next_offset);
        }
        Record::Outbox { id, record } => {
            out.put_u8(TAG_OUTBOX);
            put_id(&mut out, *id);
            put_out_record(&mut out, record);
        }
    }
    let crc = crc32c::crc32c(&out);
    out.put_u32_le(crc);
    out.freeze()
}

fn record_payload_hint(record: &Record) -> usize {
    match record {
        Record::MessageStored { message, .. } => {
            message.size_bytes() + 16 * (message.application.len() + message.annotations.len())
        }
        Record::Outbox { record, .. } => record.bytes() + 8 * record.headers.len(),
        _ => 0,
    }
}

pub fn decode_record(raw: &[u8]) -> Result<Record, CodecError> {
    if raw.is_empty() {
        return Err(CodecError::Empty);
    }
    let version = raw[0];
    if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
        return Err(CodecError::UnsupportedVersion(version));
    }
    if raw.len() < 2 + 4 {
        return Err(CodecError::Truncated("header"));
    }
    let (payload, crc_bytes) = raw.split_at(raw.len() - 4);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    let mut r = Reader { buf: &payload[1..] };
    let tag = r.u8("tag")?;
    let record = match tag {
        TAG_ACTIVATION => Record::Activation {
            epoch: r.narrow("epoch")?,
            node: r.string("node")?,
        },
        TAG_QUEUE_CREATED => {
            let id = r.id("queue id")?;
            let name = r.string("queue name")?;
            let address = r.string("queue address")?;
            let kind = match r.u8("queue kind")? {
                0 => QueueKind::Anycast,
                1 => QueueKind::DurableSubscription(DurableSub {
                    client_id: r.string("client id")?,
                    name: r.string("subscription name")?,
                }),
                other => {
                    return Err(CodecError::BadValue {
                        field: "queue kind",
                        value: u64::from(other),
                    })
                }
            };
            Record::QueueCreated(QueueDef {
                id,
                name,
                address,
                kind,
            })
        }
        TAG_MESSAGE_STORED => {
            let id = r.id("message id")?;
            let n = r.count("queue count", QUEUES_MAX)?;
            let mut queues = Vec::with_capacity(n.min(r.buf.len()));
            for _ in 0..n {
                queues.push(r.id("queue id")?);
            }
            let message = if version == 1 {
                read_message_v1(&mut r)?
            } else {
                read_message(&mut r)?
            };
            Record::MessageStored {
                id,
                queues,
                message: Arc::new(message),
            }
        }
        TAG_ROUTED => Record::Routed {
            id: r.id("message id")?,
            queue: r.id("queue id")?,
        },
        TAG_ACKED => Record::Acked {
            id: r.id("message id")?,
            queue: r.id("queue id")?,
        },
        TAG_DUPLICATE_ID => Record::DuplicateId {
            address: r.string("address")?,
            dup_id: r.string("duplicate id")?,
            message: r.id("message id")?,
        },
        TAG_ADDRESS_CREATED if version >= FORMAT_VERSION_ADDRESSES => Record::AddressCreated {
            address: r.string("address")?,
            routing: read_routing(&mut r)?,
        },
        TAG_BRIDGE_POSITION if version >= FORMAT_VERSION_BRIDGE => Record::BridgePosition {
            topic: r.string("topic")?,
            partition: r.narrow("partition")?,
            next_offset: r.varint("next offset")?,
        },
        TAG_OUTBOX if version >= FORMAT_VERSION_BRIDGE => Record::Outbox {
            id: r.id("message id")?,
            record: Arc::new(read_out_record(&mut r)?),
        },
        other => return Err(CodecError::UnknownTag(other)),
    };
    if !r.buf.is_empty() {
        return Err(CodecError::Trailing(r.buf.len()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = Id> {
        (0u32..5, 0u64..1_000_000).prop_map(|(e, s)| Id::new(e, s))
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_./:-]{1,20}"
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u32>(), name()).prop_map(|(epoch, node)| Record::Activation { epoch, node }),
            (id(), name(), name(), proptest::option::of((name(), name()))).prop_map(
                |(id, name, address, sub)| Record::QueueCreated(QueueDef {
                    id,
                    name,
                    address,
                    kind: match sub {
                        None => QueueKind::Anycast,
                        Some((client_id, name)) => {
                            QueueKind::DurableSubscription(DurableSub { client_id, name })
                        }
                    },
                })
            ),
            (
                id(),
                proptest::collection::vec(id(), 0..4),
                crate::message::testing::message(),
            )
                .prop_map(|(id, queues, message)| Record::MessageStored {
                    id,
                    queues,
                    message: Arc::new(message),
                }),
            (id(), id()).prop_map(|(id, queue)| Record::Routed { id, queue }),
            (id(), id()).prop_map(|(id, queue)| Record::Acked { id, queue }),
            (name(), ".{0,30}", id()).prop_map(|(address, dup_id, message)| {
                Record::DuplicateId {
                    address,
                    dup_id,
                    message,
                }
            }),
            (name(), any::<bool>()).prop_map(|(address, multi)| Record::AddressCreated {
                address,
                routing: if multi {
                    crate::message::Routing::Multicast
                } else {
                    crate::message::Routing::Anycast
                },
            }),
            (id(), name(), proptest::option::of(name()), name(), name()).prop_map(
                |(id, topic, key, value, header)| Record::Outbox {
                    id,
                    record: Arc::new(crate::bridge::OutRecord {
                        topic,
                        key: key.map(Bytes::from),
                        value: Bytes::from(value),
                        headers: vec![(header, Bytes::from_static(b"v"))],
                    }),
                }
            ),
            (name(), any::<u32>(), any::<u64>()).prop_map(|(topic, partition, next_offset)| {
                Record::BridgePosition {
                    topic,
                    partition,
                    next_offset,
                }
            }),
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            record().prop_map(Entry::Put),
            record().prop_map(|r| Entry::Tombstone(r.key())),
        ]
    }

    proptest! {
        #[test]
        fn entries_round_trip(e in entry()) {
            let (k, v) = encode_entry(&e);
            let back = decode_entry(&k, v.as_deref()).expect("decodes");
            prop_assert_eq!(back, e);
        }

        #[test]
        fn any_single_byte_flip_is_detected(r in record(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let v = encode_record(&r);
            let mut bad = v.to_vec();
            let i = pos.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(decode_record(&bad).is_err());
        }

        #[test]
        fn garbage_never_panics(k in proptest::collection::vec(any::<u8>(), 0..40), v in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))) {
            let _ = decode_entry(&k, v.as_deref());
        }

        #[test]
        fn keys_are_written_as_display_would(e in any::<u32>(), q in any::<u64>(), e2 in any::<u32>(), q2 in any::<u64>(), name in name(), other in name()) {
            let (a, b) = (Id::new(e, q), Id::new(e2, q2));
            let cases = [
                (Key::Activation, "activation".to_string()),
                (Key::Queue(name.clone()), format!("q/{name}")),
                (Key::Address(name.clone()), format!("a/{name}")),
                (Key::Message(a), format!("m/{a}")),
                (Key::Ref { message: a, queue: b }, format!("r/{a}/{b}")),
                (
                    Key::Duplicate { address: name.clone(), dup_id: other.clone() },
                    format!("d/{}/{name}/{other}", name.len()),
                ),
            ];
            for (key, text) in cases {
                prop_assert_eq!(&encode_key(&key)[..], text.as_bytes());
            }
        }

        #[test]
        fn truncation_is_detected(r in record(), cut in any::<prop::sample::Index>()) {
            let v = encode_record(&r);
            let n = cut.index(v.len());
            prop_assert!(decode_record(&v[..n]).is_err());
        }
    }

    #[test]
    fn keys_are_readable() {
        let k = Key::Ref {
            message: Id::new(3, 17),
            queue: Id::new(1, 2),
        };
        assert_eq!(&encode_key(&k)[..], b"r/3:17/1:2");
        let edges = Key::Ref {
            message: Id::new(0, 0),
            queue: Id::new(u32::MAX, u64::MAX),
        };
        assert_eq!(
            &encode_key(&edges)[..],
            format!("r/0:0/{}:{}", u32::MAX, u64::MAX).as_bytes()
        );
        let d = Key::Duplicate {
            address: "a/b".into(),
            dup_id: "x/y".into(),
        };
        assert_eq!(&encode_key(&d)[..], b"d/3/a/b/x/y");
        assert_eq!(decode_key(&encode_key(&d)).unwrap(), d);
    }

    #[test]
    fn huge_duplicate_key_length_is_an_error() {
        // Found by the journal_decode fuzz target: len + 1 overflowed.
        let k = format!("d/{}/x", usize::MAX);
        assert!(decode_key(k.as_bytes()).is_err());
        assert!(decode_key(b"d/1/a").is_err());
        assert!(decode_key(b"d/0//x").is_ok());
    }

    #[test]
    fn wrong_version_and_key_mismatch_are_errors() {
        let r = Record::Acked {
            id: Id::new(1, 1),
            queue: Id::new(1, 2),
        };
        let mut v = encode_record(&r).to_vec();
        v[0] = 9;
        assert_eq!(decode_record(&v), Err(CodecError::UnsupportedVersion(9)));
        let v = encode_record(&r);
        assert!(matches!(
            decode_entry(b"m/1:1", Some(&v)),
            Err(CodecError::KeyMismatch { .. })
        ));
    }

    /// Re-stamps a value with another format version (and a fresh checksum).
    fn restamp(v: &[u8], version: u8) -> Vec<u8> {
        let mut out = v[..v.len() - 4].to_vec();
        out[0] = version;
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn format_2_values_are_still_read() {
        // Version 3 only added a record: every version 2 value means the same.
        let records = [
            Record::Activation {
                epoch: 3,
                node: "a".into(),
            },
            Record::Routed {
                id: Id::new(1, 1),
                queue: Id::new(1, 2),
            },
            Record::MessageStored {
                id: Id::new(2, 7),
                queues: vec![Id::new(1, 2)],
                message: Arc::new(crate::message::Message {
                    priority: 9,
                    expiration_ms: Some(1_800_000_000_000),
                    deliver_at_ms: Some(1_700_000_000_000),
                    ..crate::message::Message::new(
                        "orders",
                        crate::message::Routing::Anycast,
                        crate::message::Body::Text(Bytes::from_static(b"hi")),
                    )
                }),
            },
        ];
        for r in records {
            let v2 = restamp(&encode_record(&r), 2);
            assert_eq!(decode_record(&v2), Ok(r));
        }
    }

    #[test]
    fn address_records_need_version_3() {
        let r = Record::AddressCreated {
            address: "news".into(),
            routing: crate::message::Routing::Multicast,
        };
        let (k, v) = encode_entry(&Entry::Put(r.clone()));
        assert_eq!(&k[..], b"a/news");
        let v = v.expect("a value");
        assert_eq!(v[0], FORMAT_VERSION);
        assert_eq!(decode_entry(&k, Some(&v)), Ok(Entry::Put(r.clone())));
        assert_eq!(decode_record(&restamp(&v, 3)), Ok(r));
        assert_eq!(
            decode_record(&restamp(&v, 2)),
            Err(CodecError::UnknownTag(TAG_ADDRESS_CREATED))
        );
    }

    #[test]
    fn bridge_positions_need_version_4() {
        let r = Record::BridgePosition {
            topic: "orders".into(),
            partition: 3,
            next_offset: 1 << 40,
        };
        let (k, v) = encode_entry(&Entry::Put(r.clone()));
        assert_eq!(&k[..], b"k/3/orders");
        assert_eq!(decode_key(&k), Ok(r.key()));
        let v = v.expect("a value");
        assert_eq!(v[0], 4);
        assert_eq!(decode_entry(&k, Some(&v)), Ok(Entry::Put(r)));
        assert_eq!(
            decode_record(&restamp(&v, 3)),
            Err(CodecError::UnknownTag(TAG_BRIDGE_POSITION))
        );
        assert!(decode_key(b"k/x/orders").is_err());
        assert!(decode_key(b"k/1/").is_err());
    }
}
