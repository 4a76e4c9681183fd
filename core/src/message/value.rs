//! Typed values for message properties, annotations and structured bodies.
//!
//! The set is AMQP 1.0's type system (the richest of the protocols Halyard
//! speaks), so a value a client sent survives the journal and reaches another
//! client of the same protocol as it was sent. STOMP headers are `String`s.

use bytes::Bytes;

/// A typed value. Floats compare by bit pattern, so `Value` is `Eq` and a
/// journal round trip can be checked with `==`.
#[derive(Clone, Debug)]
pub enum Value {
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
    Char(char),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Binary(Bytes),
    String(String),
    Symbol(String),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
    /// An array: every element has the same type.
    Array(Vec<Value>),
    /// A described value: descriptor (a symbol or ulong) and value.
    Described(Box<(Value, Value)>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Ubyte(a), Ubyte(b)) => a == b,
            (Ushort(a), Ushort(b)) => a == b,
            (Uint(a), Uint(b)) => a == b,
            (Ulong(a), Ulong(b)) => a == b,
            (Byte(a), Byte(b)) => a == b,
            (Short(a), Short(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Long(a), Long(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Char(a), Char(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (Uuid(a), Uuid(b)) => a == b,
            (Binary(a), Binary(b)) => a == b,
            (String(a), String(b)) => a == b,
            (Symbol(a), Symbol(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Described(a), Described(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Value {
    /// The value as text where it has an obvious one (for STOMP headers and
    /// selectors on string properties).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes this value occupies, roughly, for memory and window accounting.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Binary(b) => b.len(),
            Value::String(s) | Value::Symbol(s) => s.len(),
            Value::List(v) | Value::Array(v) => 4 + v.iter().map(Value::size_bytes).sum::<usize>(),
            Value::Map(m) => {
                4 + m
                    .iter()
                    .map(|(k, v)| k.size_bytes() + v.size_bytes())
                    .sum::<usize>()
            }
            Value::Described(d) => d.0.size_bytes() + d.1.size_bytes(),
            Value::Uuid(_) => 16,
            _ => 8,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
