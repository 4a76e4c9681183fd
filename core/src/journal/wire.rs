//! Primitive encodings shared by the journal's record and message codecs:
//! varints, ids, length-prefixed bytes and strings, and a bounded reader.

use bytes::{BufMut, BytesMut};

use super::format::{CodecError, NAME_BYTES_MAX};
use crate::ids::Id;

pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Signed integers as zigzag varints, so small negatives stay short.
pub(crate) fn put_signed(out: &mut BytesMut, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_id(out: &mut BytesMut, id: Id) {
    put_varint(out, u64::from(id.epoch));
    put_varint(out, id.seq);
}

pub(crate) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Reads what the `put_*` functions wrote, checking every length against
/// the bytes that remain.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let (&b, rest) = self.buf.split_first().ok_or(CodecError::Truncated(what))?;
        self.buf = rest;
        Ok(b)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        if self.buf.len() < N {
            return Err(CodecError::Truncated(what));
        }
        let (b, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::BadValue {
            field: what,
            value: v,
        })
    }

    pub fn signed(&mut self, what: &'static str) -> Result<i64, CodecError> {
        let z = self.varint(what)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A varint that must fit the target integer type.
    pub fn narrow<T: TryFrom<u64>>(&mut self, what: &'static str) -> Result<T, CodecError> {
        let v = self.varint(what)?;
        T::try_from(v).map_err(|_| CodecError::BadValue {
            field: what,
            value: v,
        })
    }

    pub fn id(&mut self, what: &'static str) -> Result<Id, CodecError> {
        let epoch = self.narrow::<u32>(what)?;
        Ok(Id::new(epoch, self.varint(what)?))
    }

    pub fn count(&mut self, what: &'static str, max: usize) -> Result<usize, CodecError> {
        let n = self.varint(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(CodecError::TooLong {
                field: what,
                len: usize::try_from(n).unwrap_or(usize::MAX),
                max,
            }),
        }
    }

    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], CodecError> {
        let n = self.count(what, max)?;
        if n > self.buf.len() {
            return Err(CodecError::Truncated(what));
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }

    /// A name: at most [`NAME_BYTES_MAX`] bytes of UTF-8.
    pub fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        self.text(what, NAME_BYTES_MAX)
    }

    pub fn text(&mut self, what: &'static str, max: usize) -> Result<String, CodecError> {
        let b = self.bytes(what, max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| CodecError::Utf8(what))
    }
}
