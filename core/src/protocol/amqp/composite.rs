//! Reading and writing the spec's composite types: described lists whose
//! fields are positional, trailing nulls omitted (spec 1.4).

use bytes::Bytes;

use super::error::CodecError;
use super::value::{Described, Descriptor, Map, Symbol, Value};

/// Takes a composite of type `code`/`name` apart into its fields.
pub(crate) fn open_composite(
    v: Value,
    code: u64,
    name: &str,
    type_name: &'static str,
) -> Result<FieldReader, CodecError> {
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
            items: items.into_iter(),
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

/// The fields of one composite, read in order. A missing field reads as
/// null; each typed read names the field in its error.
pub(crate) struct FieldReader {
    items: std::vec::IntoIter<Value>,
    type_name: &'static str,
}

impl FieldReader {
    fn invalid(&self, field: &'static str) -> CodecError {
        CodecError::InvalidField {
            type_name: self.type_name,
            field,
        }
    }

    /// The next field as it is.
    pub fn value(&mut self) -> Value {
        self.items.next().unwrap_or(Value::Null)
    }

    /// The next field, or `None` when null.
    pub fn opt(&mut self) -> Option<Value> {
        Some(self.value()).filter(|v| !v.is_null())
    }

    pub fn opt_bool(&mut self, field: &'static str) -> Result<Option<bool>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn bool_or(&mut self, field: &'static str, default: bool) -> Result<bool, CodecError> {
        Ok(self.opt_bool(field)?.unwrap_or(default))
    }

    pub fn opt_u8(&mut self, field: &'static str) -> Result<Option<u8>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Ubyte(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_u16(&mut self, field: &'static str) -> Result<Option<u16>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Ushort(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_u32(&mut self, field: &'static str) -> Result<Option<u32>, CodecError> {
        match self.value() {
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
        match self.value() {
            Value::Null => Ok(None),
            Value::Ulong(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_timestamp(&mut self, field: &'static str) -> Result<Option<i64>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Timestamp(x) => Ok(Some(x)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_symbol(&mut self, field: &'static str) -> Result<Option<Symbol>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Symbol(s) => Ok(Some(s)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_binary(&mut self, field: &'static str) -> Result<Option<Bytes>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Binary(b) => Ok(Some(b)),
            _ => Err(self.invalid(field)),
        }
    }

    pub fn opt_map(&mut self, field: &'static str) -> Result<Option<Map>, CodecError> {
        match self.value() {
            Value::Null => Ok(None),
            Value::Map(m) => Ok(Some(m)),
            _ => Err(self.invalid(field)),
        }
    }

    /// A `multiple="true"` symbol field: one symbol or an array of them.
    pub fn symbols(&mut self, field: &'static str) -> Result<Vec<Symbol>, CodecError> {
        match self.value() {
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

    pub fn push(&mut self, v: impl Into<Value>) -> &mut FieldWriter {
        self.items.push(v.into());
        self
    }

    pub fn opt<T: Into<Value>>(&mut self, v: Option<T>) -> &mut FieldWriter {
        self.items.push(v.map_or(Value::Null, Into::into));
        self
    }

    /// A field whose default is omitted (written as null).
    pub fn unless_default<T: Into<Value> + PartialEq>(
        &mut self,
        v: T,
        default: T,
    ) -> &mut FieldWriter {
        if v == default {
            self.items.push(Value::Null);
        } else {
            self.items.push(v.into());
        }
        self
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

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Map(m)
    }
}
