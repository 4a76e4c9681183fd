//! Reading and writing the spec's composite types: described lists whose
//! fields are positional, trailing nulls omitted (spec 1.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::decode::{CompositeHead, Reader};
use super::encode::{begin_compound, encode_descriptor_code, encode_value, end_compound};
use super::error::CodecError;
use super::value::{Described, Descriptor, Map, Symbol, Value};

/// Takes a composite of type `code`/`name` apart into its fields.
pub(crate) fn open_composite(
    v: Value,
    code: u64,
    name: &str,
    type_name: &'static str,
) -> Result<FieldReader<'static, 'static>, CodecError> {
    let Value::Described(d) = v else {
        return Err(CodecError::UnexpectedType {
            expected: type_name,
        });
    };
    let Described { descriptor, value } = *d;
    if !descriptor.is(code, name) {
        return Err(CodecError::UnexpectedType {
            expected: type_name,
        });
    }
    match value {
        Value::List(items) => Ok(FieldReader {
            src: Source::Items(items.into_iter()),
            type_name,
        }),
        _ => Err(CodecError::UnexpectedType {
            expected: type_name,
        }),
    }
}

/// The numeric code of a described value's descriptor, mapping the
/// symbolic names of `table` to their codes.
pub(crate) fn descriptor_code(d: &Descriptor, table: &[(u64, &str)]) -> Option<u64> {
    match d {
        Descriptor::Code(c) => Some(*c),
        Descriptor::Symbol(s) => table
            .iter()
            .find(|(_, n)| *n == s.as_str())
            .map(|(c, _)| *c),
    }
}

/// Reads the fields of the composite whose head `r` just read
/// ([`Reader::composite_head`]) straight from the bytes, with `read`,
/// without building the list as a [`Value`] first (the hot performatives
/// and message sections: a `Value` tree per frame was most of the cost
/// of decoding them).
///
/// The outcome is what decoding the whole value and then taking it apart
/// gives: fields `read` leaves (or skips after a typed error) are still
/// decoded, and a decode error anywhere in the list, or a list whose
/// items overrun or fall short of its size, wins over a typed error,
/// because the whole list used to be decoded first.
pub(crate) fn read_composite<T>(
    r: &mut Reader<'_>,
    head: CompositeHead,
    type_name: &'static str,
    read: impl FnOnce(&mut FieldReader<'_, '_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    read_fields(r, head, type_name, read)?
}

/// [`read_composite`] with its two kinds of error apart: the outer one
/// is about the bytes (the reader's position is then unknown, so an
/// enclosing list cannot go on), the inner one about a field's type.
fn read_fields<T>(
    r: &mut Reader<'_>,
    head: CompositeHead,
    type_name: &'static str,
    read: impl FnOnce(&mut FieldReader<'_, '_>) -> Result<T, CodecError>,
) -> Result<Result<T, CodecError>, CodecError> {
    let mut f = FieldReader {
        src: Source::Wire {
            r,
            left: head.count,
            end: head.end,
            failed: None,
        },
        type_name,
    };
    let result = read(&mut f);
    // The fields not read yet, decoded (and dropped) for their errors.
    while let Source::Wire { left, .. } = &f.src {
        if *left == 0 {
            break;
        }
        f.value()?;
    }
    let Source::Wire { r, failed, end, .. } = f.src else {
        return Ok(result);
    };
    if let Some(e) = failed {
        return Err(e);
    }
    r.composite_end(end)?;
    Ok(result)
}

/// Where a [`FieldReader`]'s fields come from.
enum Source<'a, 'l> {
    /// A list already decoded.
    Items(std::vec::IntoIter<Value>),
    /// `left` more items of a list ending at `end`, read as asked for;
    /// the first decode error sticks.
    Wire {
        r: &'a mut Reader<'l>,
        left: usize,
        end: usize,
        failed: Option<CodecError>,
    },
}

/// The fields of one composite, read in order. A missing field reads as
/// null; each typed read names the field in its error.
pub(crate) struct FieldReader<'a, 'l> {
    src: Source<'a, 'l>,
    type_name: &'static str,
}

impl FieldReader<'_, '_> {
    fn invalid(&self, field: &'static str) -> CodecError {
        CodecError::InvalidField {
            type_name: self.type_name,
            field,
        }
    }

    /// The next field as it is.
    pub fn value(&mut self) -> Result<Value, CodecError> {
        match &mut self.src {
            Source::Items(items) => Ok(items.next().unwrap_or(Value::Null)),
            Source::Wire {
                r,
                left,
                end,
                failed,
            } => {
                if let Some(e) = failed {
                    return Err(e.clone());
                }
                if *left == 0 {
                    return Ok(Value::Null);
                }
                *left -= 1;
                if let Some(v) = r.read_scalar(*end) {
                    return Ok(v);
                }
                let v = r.read().and_then(|v| r.within(*end).map(|()| v));
                if let Err(e) = &v {
                    *left = 0;
                    *failed = Some(e.clone());
                }
                v
            }
        }
    }

    /// The next field, a composite with a code in `codes` read in place
    /// by `read` (given the code) when it is one, else decoded as a value
    /// and taken apart by `by_value`; `None` when null. Either way the
    /// same outcome, as [`read_composite`].
    pub fn opt_composite<T>(
        &mut self,
        codes: std::ops::RangeInclusive<u64>,
        type_name: &'static str,
        read: impl FnOnce(u64, &mut FieldReader<'_, '_>) -> Result<T, CodecError>,
        by_value: impl FnOnce(Value) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        if let Source::Wire {
            r,
            left,
            end,
            failed: failed @ None,
        } = &mut self.src
        {
            if *left > 0 {
                if let Some(head) = r.composite_head(codes) {
                    *left -= 1;
                    let outcome = read_fields(r, head, type_name, |f| read(head.code, f))
                        .and_then(|inner| r.within(*end).map(|()| inner));
                    return match outcome {
                        Ok(inner) => inner.map(Some),
                        Err(e) => {
                            *left = 0;
                            *failed = Some(e.clone());
                            Err(e)
                        }
                    };
                }
            }
        }
        self.opt()?.map(by_value).transpose()
    }

    /// The next field, or `None` when null.
    pub fn opt(&mut self) -> Result<Option<Value>, CodecError> {
        Ok(Some(self.value()?).filter(|v| !v.is_null()))
    }

    pub fn opt_bool(&mut self, field: &'static str) -> Result<Option<bool>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn bool_or(&mut self, field: &'static str, default: bool) -> Result<bool, CodecError> {
        Ok(self.opt_bool(field)?.unwrap_or(default))
    }

    pub fn opt_u8(&mut self, field: &'static str) -> Result<Option<u8>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Ubyte(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_u16(&mut self, field: &'static str) -> Result<Option<u16>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Ushort(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_u32(&mut self, field: &'static str) -> Result<Option<u32>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Uint(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        self.opt_u32(field)?.ok_or(CodecError::MissingField {
            type_name: self.type_name,
            field,
        })
    }

    pub fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Ulong(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_timestamp(&mut self, field: &'static str) -> Result<Option<i64>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Timestamp(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_symbol(&mut self, field: &'static str) -> Result<Option<Symbol>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Symbol(s) => Ok(Some(s)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_binary(&mut self, field: &'static str) -> Result<Option<Bytes>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Binary(b) => Ok(Some(b)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_map(&mut self, field: &'static str) -> Result<Option<Map>, CodecError> {
        match self.value()? {
            Value::Null => Ok(None),
            Value::Map(m) => Ok(Some(m)),
            _ => Err(self.invalid(field)),
        }
    }

    /// A `multiple="true"` symbol field: one symbol or an array of them.
    pub fn symbols(&mut self, field: &'static str) -> Result<Vec<Symbol>, CodecError> {
        match self.value()? {
            Value::Null => Ok(Vec::new()),
            Value::Symbol(s) => Ok(vec![s]),
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Symbol(s) => Ok(s),
                    _ => Err(self.invalid(field)),
                })
                .collect(),
            _ => Err(self.invalid(field)),
        }
    }
}

/// The fields of a composite being written, in order, trailing nulls
/// dropped: into a `Value` ([`FieldWriter`]) or straight into the output
/// ([`FieldEncoder`]), so that each type lists its fields once for both.
pub(crate) trait Fields: Sized {
    /// Appends one field.
    fn field(&mut self, v: Value) -> &mut Self;

    /// An optional field held by reference: built by `to_value` for a
    /// `Value`, written by `encode` into bytes (no `Value` in between).
    fn opt_with<T>(
        &mut self,
        v: Option<&T>,
        to_value: impl FnOnce(&T) -> Value,
        encode: impl FnOnce(&T, &mut BytesMut),
    ) -> &mut Self;

    fn push(&mut self, v: impl Into<Value>) -> &mut Self {
        self.field(v.into())
    }

    fn opt<T: Into<Value>>(&mut self, v: Option<T>) -> &mut Self {
        self.field(v.map_or(Value::Null, Into::into))
    }

    /// A field whose default is omitted (written as null).
    fn unless_default<T: Into<Value> + PartialEq>(&mut self, v: T, default: T) -> &mut Self {
        if v == default {
            self.field(Value::Null)
        } else {
            self.push(v)
        }
    }
}

impl Fields for FieldWriter {
    fn field(&mut self, v: Value) -> &mut Self {
        self.items.push(v);
        self
    }

    fn opt_with<T>(
        &mut self,
        v: Option<&T>,
        to_value: impl FnOnce(&T) -> Value,
        _encode: impl FnOnce(&T, &mut BytesMut),
    ) -> &mut Self {
        self.field(v.map_or(Value::Null, to_value))
    }
}

/// Builds a composite: fields pushed in order, trailing nulls dropped.
pub(crate) struct FieldWriter {
    items: Vec<Value>,
}

impl FieldWriter {
    pub fn new() -> FieldWriter {
        // A performative has at most 14 fields: one allocation, no regrowth.
        FieldWriter {
            items: Vec::with_capacity(16),
        }
    }

    /// A `multiple="true"` symbol field: null when empty.
    pub fn symbols(&mut self, s: &[Symbol]) -> &mut FieldWriter {
        if s.is_empty() {
            self.items.push(Value::Null);
        } else {
            self.items
                .push(Value::Array(s.iter().cloned().map(Value::Symbol).collect()));
        }
        self
    }

    pub fn finish(&mut self, code: u64) -> Value {
        let mut items = std::mem::take(&mut self.items);
        while items.last().is_some_and(Value::is_null) {
            items.pop();
        }
        Value::described(Descriptor::Code(code), Value::List(items))
    }
}

/// Writes a composite straight into the output, as [`FieldWriter`]
/// would encode it (trailing nulls dropped), for the performatives sent
/// per message: building each as a `Value` first cost two allocations.
pub(crate) struct FieldEncoder<'o> {
    out: &'o mut BytesMut,
    /// Where the list's reserved header starts.
    start: usize,
    count: usize,
    /// The output's length and the field count after the last non-null
    /// field: what is kept when the list is finished.
    kept_len: usize,
    kept_count: usize,
}

impl<'o> FieldEncoder<'o> {
    pub fn new(out: &'o mut BytesMut, code: u64) -> FieldEncoder<'o> {
        encode_descriptor_code(code, out);
        let start = begin_compound(out);
        let kept_len = out.len();
        FieldEncoder {
            out,
            start,
            count: 0,
            kept_len,
            kept_count: 0,
        }
    }

    fn wrote(&mut self, null: bool) -> &mut Self {
        self.count += 1;
        if !null {
            self.kept_len = self.out.len();
            self.kept_count = self.count;
        }
        self
    }

    pub fn finish(&mut self) {
        self.out.truncate(self.kept_len);
        if self.kept_count == 0 {
            self.out.truncate(self.start);
            self.out.put_u8(0x45);
        } else {
            end_compound(self.out, self.start, 0xc0, 0xd0, self.kept_count);
        }
    }
}

impl Fields for FieldEncoder<'_> {
    fn field(&mut self, v: Value) -> &mut Self {
        encode_value(&v, self.out);
        self.wrote(v.is_null())
    }

    fn opt_with<T>(
        &mut self,
        v: Option<&T>,
        _to_value: impl FnOnce(&T) -> Value,
        encode: impl FnOnce(&T, &mut BytesMut),
    ) -> &mut Self {
        match v {
            Some(x) => {
                encode(x, self.out);
                self.wrote(false)
            }
            None => self.field(Value::Null),
        }
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Map(m)
    }
}
