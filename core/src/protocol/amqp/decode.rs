//! Decoding AMQP values from bytes, bounded (spec part 1.6).
//!
//! Every compound's declared size and count are checked against the bytes
//! that remain before anything is allocated, nesting is bounded by
//! [`DecodeLimits::depth_max`] (recursion, so the stack is bounded too), and
//! the number of values one decode may produce is bounded by
//! [`DecodeLimits::values_max`] (arrays of zero-width elements such as
//! `true` could otherwise claim millions of values in a few bytes).
//! Binary values share the input buffer instead of copying it.

use bytes::Bytes;

use super::error::CodecError;
use super::value::{Described, Descriptor, Symbol, Value};

/// Bounds on what one decode may build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest nesting of lists, maps, arrays and described values.
    pub depth_max: u32,
    /// Most items in one list, map (keys plus values) or array.
    pub items_max: u32,
    /// Most values one decode call produces, counting nested ones.
    pub values_max: u32,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            depth_max: 32,
            items_max: 65_536,
            values_max: 1 << 20,
        }
    }
}

/// Reads values one after another from a buffer.
#[derive(Debug)]
pub struct Reader<'l> {
    buf: Bytes,
    pos: usize,
    depth: u32,
    values_left: u32,
    limits: &'l DecodeLimits,
}

/// A composite's head read in place by [`Reader::composite_head`]: its
/// descriptor code, how many fields its list holds and where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CompositeHead {
    pub code: u64,
    pub count: usize,
    pub end: usize,
}

/// The constructor of a value: its format code and the descriptors before
/// it, outermost first (shared by all elements of an array).
struct Constructor {
    /// The outermost descriptor: nearly every described value has one,
    /// so it is kept without a vector's allocation.
    outer: Option<Descriptor>,
    /// Any further descriptors, outermost first.
    inner: Vec<Descriptor>,
    code: u8,
}

impl Constructor {
    fn depth(&self) -> u32 {
        u32::from(self.outer.is_some()) + self.inner.len() as u32
    }
}

impl<'l> Reader<'l> {
    pub fn new(buf: Bytes, limits: &'l DecodeLimits) -> Reader<'l> {
        Reader {
            buf,
            pos: 0,
            depth: 0,
            values_left: limits.values_max,
            limits,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not read yet, shared with the input.
    pub fn rest(&self) -> Bytes {
        self.buf.slice(self.pos.min(self.buf.len())..)
    }

    /// Skips to `pos` (which must be within the buffer).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    /// The next value.
    pub fn read(&mut self) -> Result<Value, CodecError> {
        let c = self.constructor()?;
        self.read_with(&c)
    }

    /// The descriptor of the next value if it is described, reading no
    /// further than the descriptor.
    pub fn read_descriptor(&mut self) -> Result<Option<Descriptor>, CodecError> {
        if self.buf.get(self.pos) != Some(&0x00) {
            return Ok(None);
        }
        self.pos += 1;
        self.enter()?;
        let d = self.read().and_then(descriptor_of)?;
        self.depth -= 1;
        Ok(Some(d))
    }

    /// Skips the next value without building it, and returns the byte range
    /// it took. Still bounded: it walks the same structure.
    pub fn skip(&mut self) -> Result<std::ops::Range<usize>, CodecError> {
        let start = self.pos;
        let c = self.constructor()?;
        // Sized values are skipped by their size; nothing is built.
        match fixed_width(c.code) {
            Some(w) => {
                self.take(w)?;
            }
            None => match c.code {
                0xa0 | 0xa1 | 0xa3 | 0xc0 | 0xc1 | 0xe0 => {
                    let n = usize::from(self.u8()?);
                    self.take(n)?;
                }
                0xb0 | 0xb1 | 0xb3 | 0xd0 | 0xd1 | 0xf0 => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                }
                code => return Err(CodecError::InvalidFormatCode(code)),
            },
        }
        Ok(start..self.pos)
    }

    /// Reads the head of a composite in place: a numeric descriptor in
    /// `codes` and a list that fits the bytes and the limits. Anything
    /// else (a symbolic descriptor, another code, a malformed or
    /// over-limit list) reads nothing and returns `None`, and the caller
    /// decodes the value with [`Reader::read`], which reports whatever is
    /// wrong with it exactly as before.
    ///
    /// The fields are then read with [`Reader::read`] and
    /// [`Reader::within`], and [`Reader::composite_end`] closes the list:
    /// the same checks and limits as decoding the list as one value.
    pub(crate) fn composite_head(
        &mut self,
        codes: std::ops::RangeInclusive<u64>,
    ) -> Option<CompositeHead> {
        let b = &self.buf[self.pos.min(self.buf.len())..];
        let (code, at) = match b {
            [0x00, 0x53, c, ..] => (u64::from(*c), 3),
            [0x00, 0x80, rest @ ..] if rest.len() >= 8 => {
                let mut c = [0u8; 8];
                c.copy_from_slice(&rest[..8]);
                (u64::from_be_bytes(c), 10)
            }
            _ => return None,
        };
        if !codes.contains(&code) {
            return None;
        }
        // The list's head: code, size, count (list0 has neither).
        let (count, fields_at, end) = match b.get(at..)? {
            [0x45, ..] => (0, at + 1, at + 1),
            [0xc0, size, count, ..] => {
                let size = usize::from(*size);
                (usize::from(*count), at + 3, at + 2 + size)
            }
            [0xd0, s0, s1, s2, s3, c0, c1, c2, c3, ..] => {
                let size = u32::from_be_bytes([*s0, *s1, *s2, *s3]) as usize;
                let count = u32::from_be_bytes([*c0, *c1, *c2, *c3]) as usize;
                (count, at + 9, (at + 5).checked_add(size)?)
            }
            _ => return None,
        };
        // What `compound` checks, and the room for the two values (the
        // descriptor and the list) that decoding it as one value counts.
        let list_ok = end <= b.len()
            && fields_at <= end
            && count <= self.limits.items_max as usize
            && count <= end - fields_at
            && self.depth < self.limits.depth_max
            && self.values_left >= 2;
        if !list_ok {
            return None;
        }
        self.values_left -= 2;
        self.depth += 1;
        let base = self.pos;
        self.pos = base + fields_at;
        Some(CompositeHead {
            code,
            count,
            end: base + end,
        })
    }

    /// The next value when it is one of the scalars composite fields nearly
    /// always are (null, booleans, uint, ulong, ubyte, a short binary),
    /// read without the general path's constructor and format-code table.
    /// `None`, with nothing consumed, for anything else and for anything
    /// that would fail or run past `end`: the caller then reads it with
    /// [`Reader::read`], so values and errors are exactly that path's.
    pub(crate) fn read_scalar(&mut self, end: usize) -> Option<Value> {
        if self.values_left == 0 {
            return None;
        }
        let b = self.buf.get(self.pos..end.min(self.buf.len()))?;
        let (value, len) = match *b.first()? {
            0x40 => (Value::Null, 1),
            0x41 => (Value::Bool(true), 1),
            0x42 => (Value::Bool(false), 1),
            0x43 => (Value::Uint(0), 1),
            0x44 => (Value::Ulong(0), 1),
            0x50 => (Value::Ubyte(*b.get(1)?), 2),
            0x52 => (Value::Uint((*b.get(1)?).into()), 2),
            0x53 => (Value::Ulong((*b.get(1)?).into()), 2),
            0x70 => (
                Value::Uint(u32::from_be_bytes(b.get(1..5)?.try_into().ok()?)),
                5,
            ),
            0x80 => (
                Value::Ulong(u64::from_be_bytes(b.get(1..9)?.try_into().ok()?)),
                9,
            ),
            0xa0 => {
                let n = usize::from(*b.get(1)?);
                b.get(2..2 + n)?;
                let start = self.pos + 2;
                (Value::Binary(self.buf.slice(start..start + n)), 2 + n)
            }
            _ => return None,
        };
        self.pos += len;
        self.values_left -= 1;
        Some(value)
    }

    /// An item of a compound ending at `end` must not run past it.
    pub(crate) fn within(&self, end: usize) -> Result<(), CodecError> {
        if self.pos > end {
            return Err(CodecError::SizeMismatch { size: end });
        }
        Ok(())
    }

    /// Closes a composite opened by [`Reader::composite_head`] once its
    /// fields are read: they must fill the list exactly.
    pub(crate) fn composite_end(&mut self, end: usize) -> Result<(), CodecError> {
        self.depth -= 1;
        if self.pos != end {
            return Err(CodecError::SizeMismatch { size: end });
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        if end > self.buf.len() {
            return Err(CodecError::Truncated);
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_bytes(&mut self, n: usize) -> Result<Bytes, CodecError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn enter(&mut self) -> Result<(), CodecError> {
        if self.depth >= self.limits.depth_max {
            return Err(CodecError::TooDeep {
                max: self.limits.depth_max,
            });
        }
        self.depth += 1;
        Ok(())
    }

    fn constructor(&mut self) -> Result<Constructor, CodecError> {
        let mut c = Constructor {
            outer: None,
            inner: Vec::new(),
            code: 0,
        };
        loop {
            let code = self.u8()?;
            if code != 0x00 {
                // The descriptors' own nesting is bounded like any other.
                self.depth -= c.depth();
                c.code = code;
                return Ok(c);
            }
            self.enter()?;
            let d = descriptor_of(self.read()?)?;
            match c.outer {
                None => c.outer = Some(d),
                Some(_) => c.inner.push(d),
            }
        }
    }

    fn read_with(&mut self, c: &Constructor) -> Result<Value, CodecError> {
        if self.values_left == 0 {
            return Err(CodecError::TooManyValues {
                max: self.limits.values_max,
            });
        }
        self.values_left -= 1;
        let mut value = self.read_code(c.code)?;
        for d in c.inner.iter().rev().chain(c.outer.as_ref()) {
            value = Value::Described(Box::new(Described {
                descriptor: d.clone(),
                value,
            }));
        }
        Ok(value)
    }

    fn read_code(&mut self, code: u8) -> Result<Value, CodecError> {
        Ok(match code {
            0x40 => Value::Null,
            0x41 => Value::Bool(true),
            0x42 => Value::Bool(false),
            0x56 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => {
                    return Err(CodecError::UnexpectedType {
                        expected: "boolean 0 or 1",
                    })
                }
            },
            0x50 => Value::Ubyte(self.u8()?),
            0x60 => Value::Ushort(u16::from_be_bytes(self.array()?)),
            0x70 => Value::Uint(self.u32()?),
            0x52 => Value::Uint(self.u8()?.into()),
            0x43 => Value::Uint(0),
            0x80 => Value::Ulong(u64::from_be_bytes(self.array()?)),
            0x53 => Value::Ulong(self.u8()?.into()),
            0x44 => Value::Ulong(0),
            0x51 => Value::Byte(i8::from_be_bytes(self.array()?)),
            0x61 => Value::Short(i16::from_be_bytes(self.array()?)),
            0x71 => Value::Int(i32::from_be_bytes(self.array()?)),
            0x54 => Value::Int(i8::from_be_bytes(self.array()?).into()),
            0x81 => Value::Long(i64::from_be_bytes(self.array()?)),
            0x55 => Value::Long(i8::from_be_bytes(self.array()?).into()),
            0x72 => Value::Float(f32::from_be_bytes(self.array()?)),
            0x82 => Value::Double(f64::from_be_bytes(self.array()?)),
            0x74 => Value::Decimal32(self.array()?),
            0x84 => Value::Decimal64(self.array()?),
            0x94 => Value::Decimal128(self.array()?),
            0x73 => {
                let u = self.u32()?;
                Value::Char(char::from_u32(u).ok_or(CodecError::InvalidChar(u))?)
            }
            0x83 => Value::Timestamp(i64::from_be_bytes(self.array()?)),
            0x98 => Value::Uuid(self.array()?),
            0xa0 => {
                let n = self.u8()?.into();
                Value::Binary(self.take_bytes(n)?)
            }
            0xb0 => {
                let n = self.u32()? as usize;
                Value::Binary(self.take_bytes(n)?)
            }
            0xa1 | 0xb1 => {
                let n = self.size(code == 0xa1)?;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| CodecError::InvalidUtf8)?;
                Value::String(s.to_owned())
            }
            0xa3 | 0xb3 => {
                let n = self.size(code == 0xa3)?;
                let s = self.take(n)?;
                if !s.is_ascii() {
                    return Err(CodecError::InvalidSymbol);
                }
                // ASCII is UTF-8.
                let s = String::from_utf8_lossy(s).into_owned();
                Value::Symbol(Symbol::new(s).ok_or(CodecError::InvalidSymbol)?)
            }
            0x45 => Value::List(Vec::new()),
            0xc0 | 0xd0 => Value::List(self.compound(code == 0xc0)?),
            0xc1 | 0xd1 => {
                let items = self.compound(code == 0xc1)?;
                if items.len() % 2 != 0 {
                    return Err(CodecError::OddMapCount);
                }
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            }
            0xe0 | 0xf0 => Value::Array(self.array_items(code == 0xe0)?),
            other => return Err(CodecError::InvalidFormatCode(other)),
        })
    }

    fn size(&mut self, small: bool) -> Result<usize, CodecError> {
        Ok(if small {
            self.u8()?.into()
        } else {
            self.u32()? as usize
        })
    }

    /// Reads `size` and `count`, checked against the bytes that remain and
    /// the limits; returns the count and where the compound ends.
    fn compound_head(&mut self, small: bool) -> Result<(usize, usize), CodecError> {
        let size = self.size(small)?;
        let end = self.pos.checked_add(size).ok_or(CodecError::Truncated)?;
        if end > self.buf.len() {
            return Err(CodecError::Truncated);
        }
        let width = if small { 1 } else { 4 };
        if size < width {
            return Err(CodecError::SizeMismatch { size });
        }
        let count = self.size(small)?;
        if count > self.limits.items_max as usize {
            return Err(CodecError::TooManyItems {
                max: self.limits.items_max,
            });
        }
        Ok((count, end))
    }

    fn compound(&mut self, small: bool) -> Result<Vec<Value>, CodecError> {
        let (count, end) = self.compound_head(small)?;
        // Every item takes at least one byte: a count beyond the bytes left
        // is a lie, caught before allocating for it.
        if count > end - self.pos {
            return Err(CodecError::SizeMismatch {
                size: end - self.pos,
            });
        }
        self.enter()?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.read()?);
            if self.pos > end {
                return Err(CodecError::SizeMismatch { size: end });
            }
        }
        self.depth -= 1;
        if self.pos != end {
            return Err(CodecError::SizeMismatch { size: end });
        }
        Ok(items)
    }

    fn array_items(&mut self, small: bool) -> Result<Vec<Value>, CodecError> {
        let (count, end) = self.compound_head(small)?;
        self.enter()?;
        let c = self.constructor()?;
        // Zero-width elements (null, true, false, 0) take no bytes, so the
        // byte count does not bound them: values_max does.
        let mut items = Vec::with_capacity(count.min(end.saturating_sub(self.pos)));
        for _ in 0..count {
            items.push(self.read_with(&c)?);
            if self.pos > end {
                return Err(CodecError::SizeMismatch { size: end });
            }
        }
        self.depth -= 1;
        if self.pos != end {
            return Err(CodecError::SizeMismatch { size: end });
        }
        Ok(items)
    }
}

/// The width of a fixed-width format code's data, `None` for variable ones.
fn fixed_width(code: u8) -> Option<usize> {
    Some(match code {
        0x40..=0x45 => 0,
        0x50..=0x56 => 1,
        0x60 | 0x61 => 2,
        0x70..=0x74 => 4,
        0x80..=0x84 => 8,
        0x94 | 0x98 => 16,
        _ => return None,
    })
}

fn descriptor_of(v: Value) -> Result<Descriptor, CodecError> {
    match v {
        Value::Ulong(c) => Ok(Descriptor::Code(c)),
        Value::Symbol(s) => Ok(Descriptor::Symbol(s)),
        _ => Err(CodecError::UnexpectedType {
            expected: "ulong or symbol descriptor",
        }),
    }
}

/// Decodes exactly one value filling all of `buf`.
pub fn decode_value(buf: Bytes, limits: &DecodeLimits) -> Result<Value, CodecError> {
    let mut r = Reader::new(buf, limits);
    let v = r.read()?;
    if !r.is_empty() {
        return Err(CodecError::TrailingBytes);
    }
    Ok(v)
}
