//! The AMQP 1.0 type system as one Rust enum (spec part 1).
//!
//! Maps are kept as vectors of pairs: on the wire a map is ordered, the
//! order a peer sent is what we send back, and the core never iterates a
//! hash map.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// An AMQP map: pairs in wire order.
pub type Map = Vec<(Value, Value)>;

/// A symbolic value: ASCII, compared byte for byte. The spec's symbols
/// (capabilities, annotation keys, conditions) are literals: held as
/// borrowed, they cost no allocation each time one is sent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Symbol(Cow<'static, str>);

impl Symbol {
    /// `None` unless `s` is ASCII (the spec's symbols are).
    pub fn new(s: impl Into<String>) -> Option<Symbol> {
        let s = s.into();
        s.is_ascii().then_some(Symbol(Cow::Owned(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for Symbol {
    /// Non-ASCII characters of a literal are replaced by `?` so that this
    /// conversion cannot fail.
    fn from(s: &'static str) -> Symbol {
        if s.is_ascii() {
            Symbol(Cow::Borrowed(s))
        } else {
            Symbol(Cow::Owned(
                s.chars()
                    .map(|c| if c.is_ascii() { c } else { '?' })
                    .collect(),
            ))
        }
    }
}

/// What names a described type: a numeric code (domain << 32 | id) or a
/// symbol such as `amqp:open:list`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Descriptor {
    Code(u64),
    Symbol(Symbol),
}

/// A value with a descriptor (spec 1.5).
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    pub descriptor: Descriptor,
    pub value: Value,
}

/// Any AMQP value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Ubyte(u8),
    Ushort(u16),
    Uint(u32),
    Ulong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    /// IEEE 754-2008 decimals, kept as their bytes (nothing here computes
    /// with them).
    Decimal32([u8; 4]),
    Decimal64([u8; 8]),
    Decimal128([u8; 16]),
    Char(char),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Binary(Bytes),
    String(String),
    Symbol(Symbol),
    List(Vec<Value>),
    Map(Map),
    /// Elements of one type. A vector whose elements differ in type cannot
    /// be sent as an array, so the encoder sends it as a list instead.
    Array(Vec<Value>),
    Described(Box<Described>),
}

impl Value {
    pub fn described(descriptor: Descriptor, value: Value) -> Value {
        Value::Described(Box::new(Described { descriptor, value }))
    }

    pub fn symbol(s: &'static str) -> Value {
        Value::Symbol(Symbol::from(s))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Symbol(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// Any unsigned or non-negative signed integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Ubyte(v) => Some(v.into()),
            Value::Ushort(v) => Some(v.into()),
            Value::Uint(v) => Some(v.into()),
            Value::Ulong(v) => Some(v),
            Value::Byte(v) => u64::try_from(v).ok(),
            Value::Short(v) => u64::try_from(v).ok(),
            Value::Int(v) => u64::try_from(v).ok(),
            Value::Long(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Ubyte(v) => Some(v.into()),
            Value::Ushort(v) => Some(v.into()),
            Value::Uint(v) => Some(v.into()),
            Value::Ulong(v) => i64::try_from(v).ok(),
            Value::Byte(v) => Some(v.into()),
            Value::Short(v) => Some(v.into()),
            Value::Int(v) => Some(v.into()),
            Value::Long(v) => Some(v),
            Value::Timestamp(v) => Some(v),
            _ => None,
        }
    }

    /// The descriptor and value of a described value.
    pub fn as_described(&self) -> Option<&Described> {
        match self {
            Value::Described(d) => Some(d),
            _ => None,
        }
    }

    /// True when this is a described value whose descriptor is `code` or
    /// `name`.
    pub fn has_descriptor(&self, code: u64, name: &str) -> bool {
        self.as_described()
            .is_some_and(|d| d.descriptor.is(code, name))
    }
}

impl Descriptor {
    /// True when this is `code` or the symbol `name`.
    pub fn is(&self, code: u64, name: &str) -> bool {
        match self {
            Descriptor::Code(c) => *c == code,
            Descriptor::Symbol(s) => s.as_str() == name,
        }
    }
}

/// Looks a key up in a map whose keys are symbols or strings.
pub fn map_get<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Ushort(v)
    }
}
impl From<u8> for Value {
    fn from(v: u8) -> Value {
        Value::Ubyte(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Uint(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Ulong(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Long(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::String(v)
    }
}
impl From<Symbol> for Value {
    fn from(v: Symbol) -> Value {
        Value::Symbol(v)
    }
}
impl From<Bytes> for Value {
    fn from(v: Bytes) -> Value {
        Value::Binary(v)
    }
}
