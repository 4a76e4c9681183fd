//! Byte layout of segment headers and batch frames, and the limits on them.
//!
//! Pure functions over byte slices: no files here, so the fuzz target and the
//! tests can drive the decoder directly. The layout is documented in the
//! parent module.

use bytes::Bytes;

use super::entry::Entry;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"HLYDJSEG";
/// Version of the on-disk layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// magic (8) + version (u32) + replaces (u32) + segment id (u64).
pub const SEGMENT_HEADER_BYTES: u64 = 24;
/// u32 payload length + u32 CRC32C of the payload.
pub const BATCH_FRAME_BYTES: u64 = 8;

/// Longest key accepted. The core's keys are at most about 128 KiB (two
/// 64 KiB names), so this leaves headroom without trusting a corrupt field.
pub const KEY_BYTES_MAX: usize = 256 * 1024;
/// Longest value accepted.
pub const VALUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest batch payload accepted, written or read. A length field above it
/// is corruption; nothing larger is ever allocated from a length field.
pub const BATCH_PAYLOAD_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Most entries in one batch.
pub const BATCH_ENTRIES_MAX: usize = 1 << 20;

/// u32 entry count at the start of every payload.
pub(super) const PAYLOAD_HEADER_BYTES: usize = 4;
/// u32 key length + u8 has_value + u32 value length: an entry with an empty
/// key and no value.
const ENTRY_BYTES_MIN: usize = 4 + 1 + 4;

/// Why bytes on disk are not a valid header or batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("segment header cut short ({len} of {SEGMENT_HEADER_BYTES} bytes)")]
    HeaderShort { len: u64 },
    #[error("segment header is all zeros")]
    HeaderZeroed,
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("header names segment {found} but the file name says {expected}")]
    SegmentIdMismatch { expected: u64, found: u64 },
    #[error("batch frame cut short ({available} of {BATCH_FRAME_BYTES} bytes)")]
    FrameShort { available: u64 },
    #[error(
        "batch length {len} out of range ({PAYLOAD_HEADER_BYTES}..={BATCH_PAYLOAD_BYTES_MAX})"
    )]
    LengthOutOfRange { len: u32 },
    #[error("batch of {len} bytes runs past the end of the file ({available} bytes left)")]
    PastEnd { len: u32, available: u64 },
    #[error("crc mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("entry count {count} is over the limit or cannot fit in the payload")]
    BadEntryCount { count: u32 },
    #[error("entry {index}: {what}")]
    BadEntry { index: u32, what: &'static str },
    #[error("{extra} bytes left over after the last entry")]
    TrailingBytes { extra: usize },
}

impl Corruption {
    /// A header that a crash while creating the segment can explain (the
    /// file exists but its first write never reached the disk).
    pub fn is_torn_header(&self) -> bool {
        matches!(
            self,
            Corruption::HeaderShort { .. } | Corruption::HeaderZeroed
        )
    }
}

/// Which limit a batch broke (see the limits above).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchLimit {
    #[error("{count} entries, more than the limit of {max}")]
    TooManyEntries { count: usize, max: usize },
    #[error("entry {entry} has a {len}-byte key, more than the limit of {max}")]
    KeyTooLong {
        entry: usize,
        len: usize,
        max: usize,
    },
    #[error("entry {entry} has a {len}-byte value, more than the limit of {max}")]
    ValueTooLong {
        entry: usize,
        len: usize,
        max: usize,
    },
    #[error("payload of {len} bytes, more than the limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
}

/// The header of segment `id`. `replaces` is 0, except in a segment written
/// by a cleaning: there it is how many ids after `id` the cleaned segment
/// replaced (see `LocalJournal::compact`).
pub fn encode_header(id: u64, replaces: u32) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&replaces.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h
}

/// Checks the header bytes of segment `expected_id`. `bytes` holds what the
/// file has, at most `SEGMENT_HEADER_BYTES`. Returns its `replaces` field.
pub fn check_header(bytes: &[u8], expected_id: u64) -> Result<u32, Corruption> {
    let len = bytes.len() as u64;
    if len < SEGMENT_HEADER_BYTES {
        return Err(Corruption::HeaderShort { len });
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(Corruption::HeaderZeroed);
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[0..8]);
    if magic != SEGMENT_MAGIC {
        return Err(Corruption::BadMagic { found: magic });
    }
    let version = le_u32(&bytes[8..12]);
    if version != FORMAT_VERSION {
        return Err(Corruption::UnsupportedVersion { found: version });
    }
    let replaces = le_u32(&bytes[12..16]);
    let id = le_u64(&bytes[16..24]);
    if id != expected_id {
        return Err(Corruption::SegmentIdMismatch {
            expected: expected_id,
            found: id,
        });
    }
    Ok(replaces)
}

/// Checks a batch against the limits and returns its payload length, so
/// `append` can refuse a whole call before writing a byte.
pub fn payload_len(batch: &[Entry]) -> Result<usize, BatchLimit> {
    if batch.len() > BATCH_ENTRIES_MAX {
        return Err(BatchLimit::TooManyEntries {
            count: batch.len(),
            max: BATCH_ENTRIES_MAX,
        });
    }
    let mut len = PAYLOAD_HEADER_BYTES;
    for (i, e) in batch.iter().enumerate() {
        if e.key.len() > KEY_BYTES_MAX {
            return Err(BatchLimit::KeyTooLong {
                entry: i,
                len: e.key.len(),
                max: KEY_BYTES_MAX,
            });
        }
        let value_len = e.value.as_ref().map_or(0, |v| v.len());
        if value_len > VALUE_BYTES_MAX {
            return Err(BatchLimit::ValueTooLong {
                entry: i,
                len: value_len,
                max: VALUE_BYTES_MAX,
            });
        }
        // Each term is bounded by the limits above, so only the sum can grow;
        // stop as soon as it passes the payload limit.
        len += ENTRY_BYTES_MIN + e.key.len() + value_len;
        if len > BATCH_PAYLOAD_BYTES_MAX {
            return Err(BatchLimit::PayloadTooLarge {
                len,
                max: BATCH_PAYLOAD_BYTES_MAX,
            });
        }
    }
    Ok(len)
}

/// Bytes `entry` takes inside a batch payload.
pub(super) fn entry_bytes(entry: &Entry) -> u64 {
    (ENTRY_BYTES_MIN + entry.key.len() + entry.value.as_ref().map_or(0, |v| v.len())) as u64
}

/// Appends the frame of `batch` (whose payload length `payload_len` returned)
/// to `out`.
pub fn encode_batch(batch: &[Entry], payload_len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(BATCH_FRAME_BYTES as usize + payload_len);
    // Lengths below were checked against limits far under u32::MAX.
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // CRC, filled in below
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    for e in batch {
        out.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.key);
        match &e.value {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => {
                out.push(0);
                out.extend_from_slice(&0u32.to_le_bytes());
            }
        }
    }
    let payload_start = start + BATCH_FRAME_BYTES as usize;
    assert_eq!(
        out.len() - payload_start,
        payload_len,
        "encoded payload length disagrees with payload_len"
    );
    let crc = crc32c::crc32c(&out[payload_start..]);
    out[start + 4..payload_start].copy_from_slice(&crc.to_le_bytes());
}

/// Validates a frame header against the bytes left in the file; returns
/// `(payload_len, stored_crc)`.
pub fn check_frame(
    frame: &[u8; BATCH_FRAME_BYTES as usize],
    available: u64,
) -> Result<(usize, u32), Corruption> {
    let len = le_u32(&frame[0..4]);
    let crc = le_u32(&frame[4..8]);
    let len_usize = len as usize;
    if !(PAYLOAD_HEADER_BYTES..=BATCH_PAYLOAD_BYTES_MAX).contains(&len_usize) {
        return Err(Corruption::LengthOutOfRange { len });
    }
    if u64::from(len) > available {
        return Err(Corruption::PastEnd { len, available });
    }
    Ok((len_usize, crc))
}

/// Verifies the CRC of a payload and splits it into entries. Keys and values
/// are slices of `payload` (no copies).
pub fn decode_payload(payload: Bytes, stored_crc: u32) -> Result<Vec<Entry>, Corruption> {
    let computed = crc32c::crc32c(&payload);
    if computed != stored_crc {
        return Err(Corruption::CrcMismatch {
            stored: stored_crc,
            computed,
        });
    }
    let mut r = Reader {
        buf: &payload,
        pos: 0,
    };
    let count = r.u32().ok_or(Corruption::BadEntryCount { count: 0 })?;
    let room = payload.len() - PAYLOAD_HEADER_BYTES;
    if count as usize > BATCH_ENTRIES_MAX || (count as usize).saturating_mul(ENTRY_BYTES_MIN) > room
    {
        return Err(Corruption::BadEntryCount { count });
    }
    let mut entries = Vec::with_capacity(count as usize);
    for index in 0..count {
        let bad = |what| Corruption::BadEntry { index, what };
        let key_len = r.u32().ok_or(bad("payload ends inside the key length"))? as usize;
        if key_len > KEY_BYTES_MAX {
            return Err(bad("key longer than the limit"));
        }
        let key = r
            .slice(&payload, key_len)
            .ok_or(bad("payload ends inside the key"))?;
        let has_value = r.u8().ok_or(bad("payload ends before the value flag"))?;
        let value_len = r.u32().ok_or(bad("payload ends inside the value length"))? as usize;
        let value = match has_value {
            0 if value_len == 0 => None,
            0 => return Err(bad("tombstone with a non-zero value length")),
            1 => {
                if value_len > VALUE_BYTES_MAX {
                    return Err(bad("value longer than the limit"));
                }
                Some(
                    r.slice(&payload, value_len)
                        .ok_or(bad("payload ends inside the value"))?,
                )
            }
            _ => return Err(bad("value flag is neither 0 nor 1")),
        };
        entries.push(Entry { key, value });
    }
    let extra = payload.len() - r.pos;
    if extra != 0 {
        return Err(Corruption::TrailingBytes { extra });
    }
    Ok(entries)
}

/// Bounds-checked cursor over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le_u32)
    }

    /// The next `n` bytes as a zero-copy slice of `whole` (the same buffer).
    fn slice(&mut self, whole: &Bytes, n: usize) -> Option<Bytes> {
        let start = self.pos;
        self.take(n)?;
        Some(whole.slice(start..self.pos))
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: &str, v: Option<&str>) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    fn frame(batch: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = payload_len(batch).expect("within limits");
        encode_batch(batch, len, &mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Entry>, Corruption> {
        let mut f = [0u8; 8];
        f.copy_from_slice(&bytes[..8]);
        let (len, crc) = check_frame(&f, (bytes.len() - 8) as u64)?;
        decode_payload(Bytes::copy_from_slice(&bytes[8..8 + len]), crc)
    }

    #[test]
    fn batch_round_trips() {
        let batch = vec![entry("a", Some("1")), entry("b", None), entry("", Some(""))];
        assert_eq!(decode(&frame(&batch)), Ok(batch));
        assert_eq!(decode(&frame(&[])), Ok(vec![]));
    }

    #[test]
    fn header_round_trips_and_rejects_others() {
        assert_eq!(check_header(&encode_header(7, 0), 7), Ok(0));
        assert_eq!(check_header(&encode_header(7, 3), 7), Ok(3));
        assert_eq!(
            check_header(&encode_header(7, 0), 8),
            Err(Corruption::SegmentIdMismatch {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(check_header(&[0; 24], 1), Err(Corruption::HeaderZeroed));
        assert_eq!(
            check_header(&[1; 5], 1),
            Err(Corruption::HeaderShort { len: 5 })
        );
        let mut h = encode_header(1, 0);
        h[8] = 2;
        assert_eq!(
            check_header(&h, 1),
            Err(Corruption::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let bytes = frame(&[entry("key", Some("value")), entry("gone", None)]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn huge_length_fields_are_refused_before_allocating() {
        let mut f = [0u8; 8];
        f[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check_frame(&f, u64::MAX),
            Err(Corruption::LengthOutOfRange { len: u32::MAX })
        );
        f[0..4].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            check_frame(&f, 99),
            Err(Corruption::PastEnd {
                len: 100,
                available: 99
            })
        );
        // A count that cannot fit in the payload, with a valid CRC.
        let payload = Bytes::from(u32::MAX.to_le_bytes().to_vec());
        let crc = crc32c::crc32c(&payload);
        assert_eq!(
            decode_payload(payload, crc),
            Err(Corruption::BadEntryCount { count: u32::MAX })
        );
    }

    #[test]
    fn limits_are_enforced_on_write() {
        let long_key = Entry {
            key: Bytes::from(vec![0u8; KEY_BYTES_MAX + 1]),
            value: None,
        };
        assert!(matches!(
            payload_len(&[long_key]),
            Err(BatchLimit::KeyTooLong { .. })
        ));
    }
}
