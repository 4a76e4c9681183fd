//! The journal value format's versions and its decoding errors.

use thiserror::Error;

/// The version written into every value. Bump on any layout change and keep
/// decoding the old ones.
///
/// - 1: messages stored STOMP headers (string pairs) and a body.
/// - 2: messages store the protocol-neutral [`crate::message::Message`]
///   (typed properties, annotations, a body with its kind, durability,
///   priority, expiry, scheduled time, duplicate id).
/// - 3: version 2 plus the `AddressCreated` record (tag 7, key `a/NAME`);
///   every other record is laid out as in version 2.
/// - 4: version 3 plus the Kafka bridge's records: `BridgePosition` (tag 8,
///   key `k/PARTITION/TOPIC`) and `Outbox` (tag 9, key `o/EPOCH:SEQ`).
pub const FORMAT_VERSION: u8 = 4;
/// The first version with the `AddressCreated` record.
pub(crate) const FORMAT_VERSION_ADDRESSES: u8 = 3;
/// The first version with the `BridgePosition` record.
pub(crate) const FORMAT_VERSION_BRIDGE: u8 = 4;
/// The oldest version this build still reads.
pub const FORMAT_VERSION_OLDEST: u8 = 1;

/// Longest key or name accepted; bodies and property values are bounded by
/// the value size.
pub(crate) const NAME_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("journal value is empty")]
    Empty,
    #[error(
        "journal format version {0} is not supported (this build reads versions {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("journal value checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("journal value truncated while reading {0}")]
    Truncated(&'static str),
    #[error("unknown journal record tag {0}")]
    UnknownTag(u8),
    #[error("invalid UTF-8 in journal field {0}")]
    Utf8(&'static str),
    #[error("journal field {field} too long ({len} > {max})")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} trailing bytes after journal record")]
    Trailing(usize),
    #[error("malformed journal key {0:?}")]
    BadKey(String),
    #[error("record filed under key {found:?} arrived with key {expected:?}")]
    KeyMismatch { expected: String, found: String },
    #[error("invalid value {value} for journal field {field}")]
    BadValue { field: &'static str, value: u64 },
    #[error("journal value nested deeper than {0} levels")]
    TooDeep(usize),
}
