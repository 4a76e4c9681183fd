//! The values a selector computes with, and its three truth values.

use std::borrow::Cow;

use crate::message::Value;

/// SQL's three truth values: a selector selects a message only when it is
/// `True`; `Unknown` arises from missing properties (NULL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn from_bool(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    /// AND: False wins over Unknown.
    pub fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }

    /// OR: True wins over Unknown.
    pub fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

/// NOT: Unknown stays Unknown.
impl std::ops::Not for Truth {
    type Output = Truth;

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

/// A value during evaluation: JMS's types (every integer width is a long,
/// float and double are a double), borrowed from the message or the
/// selector where possible.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Val<'a> {
    /// NULL: a missing property or a null value.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A type selectors cannot compute with (binary, uuid, list, map, char,
    /// timestamp, ...): equal only to an equal value of its own type.
    Other(&'a Value),
}

impl<'a> Val<'a> {
    pub(super) fn from_value(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Ubyte(n) => Val::Int(i64::from(*n)),
            Value::Ushort(n) => Val::Int(i64::from(*n)),
            Value::Uint(n) => Val::Int(i64::from(*n)),
            // Beyond a long, the nearest double still compares sensibly.
            Value::Ulong(n) => i64::try_from(*n).map_or(Val::Float(*n as f64), Val::Int),
            Value::Byte(n) => Val::Int(i64::from(*n)),
            Value::Short(n) => Val::Int(i64::from(*n)),
            Value::Int(n) => Val::Int(i64::from(*n)),
            Value::Long(n) => Val::Int(*n),
            Value::Float(f) => Val::Float(f64::from(*f)),
            Value::Double(f) => Val::Float(*f),
            Value::String(s) | Value::Symbol(s) => Val::Str(Cow::Borrowed(s)),
            other => Val::Other(other),
        }
    }

    /// The value where a condition is expected (a bare identifier): a
    /// boolean is itself, NULL is Unknown, anything else is False.
    pub(super) fn truth(&self) -> Truth {
        match self {
            Val::Bool(b) => Truth::from_bool(*b),
            Val::Null => Truth::Unknown,
            _ => Truth::False,
        }
    }
}
