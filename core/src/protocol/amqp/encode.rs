//! Encoding AMQP values, each in its smallest encoding (spec part 1.6).

use bytes::{BufMut, BytesMut};

use super::value::{Described, Descriptor, Value};

/// Appends `v` to `out`.
pub fn encode_value(v: &Value, out: &mut BytesMut) {
    match v {
        Value::Null => out.put_u8(0x40),
        Value::Bool(true) => out.put_u8(0x41),
        Value::Bool(false) => out.put_u8(0x42),
        Value::Ubyte(x) => {
            out.put_u8(0x50);
            out.put_u8(*x);
        }
        Value::Ushort(x) => {
            out.put_u8(0x60);
            out.put_u16(*x);
        }
        Value::Uint(0) => out.put_u8(0x43),
        Value::Uint(x) => match u8::try_from(*x) {
            Ok(b) => {
                out.put_u8(0x52);
                out.put_u8(b);
            }
            Err(_) => {
                out.put_u8(0x70);
                out.put_u32(*x);
            }
        },
        Value::Ulong(0) => out.put_u8(0x44),
        Value::Ulong(x) => match u8::try_from(*x) {
            Ok(b) => {
                out.put_u8(0x53);
                out.put_u8(b);
            }
            Err(_) => {
                out.put_u8(0x80);
                out.put_u64(*x);
            }
        },
        Value::Byte(x) => {
            out.put_u8(0x51);
            out.put_i8(*x);
        }
        Value::Short(x) => {
            out.put_u8(0x61);
            out.put_i16(*x);
        }
        Value::Int(x) => match i8::try_from(*x) {
            Ok(b) => {
                out.put_u8(0x54);
                out.put_i8(b);
            }
            Err(_) => {
                out.put_u8(0x71);
                out.put_i32(*x);
            }
        },
        Value::Long(x) => match i8::try_from(*x) {
            Ok(b) => {
                out.put_u8(0x55);
                out.put_i8(b);
            }
            Err(_) => {
                out.put_u8(0x81);
                out.put_i64(*x);
            }
        },
        Value::Float(x) => {
            out.put_u8(0x72);
            out.put_f32(*x);
        }
        Value::Double(x) => {
            out.put_u8(0x82);
            out.put_f64(*x);
        }
        Value::Decimal32(b) => {
            out.put_u8(0x74);
            out.put_slice(b);
        }
        Value::Decimal64(b) => {
            out.put_u8(0x84);
            out.put_slice(b);
        }
        Value::Decimal128(b) => {
            out.put_u8(0x94);
            out.put_slice(b);
        }
        Value::Char(c) => {
            out.put_u8(0x73);
            out.put_u32(u32::from(*c));
        }
        Value::Timestamp(t) => {
            out.put_u8(0x83);
            out.put_i64(*t);
        }
        Value::Uuid(u) => {
            out.put_u8(0x98);
            out.put_slice(u);
        }
        Value::Binary(b) => encode_binary(b, out),
        Value::String(s) => encode_str(s, out),
        Value::Symbol(s) => encode_symbol(s.as_str(), out),
        Value::List(items) => encode_list(items, out),
        Value::Map(pairs) => encode_map(pairs, out),
        Value::Array(items) => encode_array(items, out),
        Value::Described(d) => {
            out.put_u8(0x00);
            encode_descriptor(&d.descriptor, out);
            encode_value(&d.value, out);
        }
    }
}

/// Appends a list of `items` (what `Value::List` encodes to).
pub fn encode_list(items: &[Value], out: &mut BytesMut) {
    if items.is_empty() {
        return out.put_u8(0x45);
    }
    let start = begin_compound(out);
    for i in items {
        encode_value(i, out);
    }
    end_compound(out, start, 0xc0, 0xd0, items.len());
}

/// Appends a map of `pairs` (what `Value::Map` encodes to).
pub fn encode_map(pairs: &[(Value, Value)], out: &mut BytesMut) {
    let start = begin_compound(out);
    for (k, v) in pairs {
        encode_value(k, out);
        encode_value(v, out);
    }
    end_compound(out, start, 0xc1, 0xd1, pairs.len() * 2);
}

/// Appends the constructor of a value described by `code`; its value
/// follows. Lets a caller encode a section or composite it holds by
/// reference instead of building (and cloning into) a `Value` first.
pub fn encode_descriptor_code(code: u64, out: &mut BytesMut) {
    out.put_u8(0x00);
    encode_value(&Value::Ulong(code), out);
}

fn encode_descriptor(d: &Descriptor, out: &mut BytesMut) {
    match d {
        Descriptor::Code(c) => encode_value(&Value::Ulong(*c), out),
        Descriptor::Symbol(s) => encode_symbol(s.as_str(), out),
    }
}

/// Appends binary `data` (what `Value::Binary` encodes to).
pub fn encode_binary(data: &[u8], out: &mut BytesMut) {
    variable(out, 0xa0, 0xb0, data)
}

/// A string (what `Value::String` encodes to), from a borrowed `str`.
pub fn encode_str(s: &str, out: &mut BytesMut) {
    variable(out, 0xa1, 0xb1, s.as_bytes())
}

/// A symbol (what `Value::Symbol` encodes to), from a borrowed `str`.
pub fn encode_symbol(s: &str, out: &mut BytesMut) {
    variable(out, 0xa3, 0xb3, s.as_bytes())
}

/// The constructor and length of a binary of `len` bytes, without the
/// bytes: for a caller that sends them apart.
pub fn encode_binary_head(len: usize, out: &mut BytesMut) {
    variable_head(out, 0xa0, 0xb0, len)
}

fn variable(out: &mut BytesMut, small: u8, large: u8, data: &[u8]) {
    variable_head(out, small, large, data.len());
    out.put_slice(data);
}

fn variable_head(out: &mut BytesMut, small: u8, large: u8, len: usize) {
    match u8::try_from(len) {
        Ok(n) => {
            out.put_u8(small);
            out.put_u8(n);
        }
        Err(_) => {
            out.put_u8(large);
            out.put_u32(len32(len));
        }
    }
}

/// Lengths beyond u32 cannot be encoded; nothing this crate builds comes
/// near (frames are far smaller), so saturate rather than fail.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Bytes of a list32 or map32 header: code, size, count.
const LONG_HEADER: usize = 9;
/// Bytes of a list8 or map8 header.
const SHORT_HEADER: usize = 3;

/// Reserves room for a compound's long header; its items are then encoded
/// straight into `out` (a buffer per compound, grown and copied into its
/// parent, was most of the cost of encoding a performative).
pub(crate) fn begin_compound(out: &mut BytesMut) -> usize {
    let start = out.len();
    out.put_bytes(0, LONG_HEADER);
    start
}

/// Writes the header of the compound begun at `start`: the short form
/// when size and count fit a byte (the body moves back over the unused
/// header bytes), else the long form. The size counts the count field too.
pub(crate) fn end_compound(out: &mut BytesMut, start: usize, small: u8, large: u8, count: usize) {
    let body = out.len() - start - LONG_HEADER;
    match (u8::try_from(body + 1), u8::try_from(count)) {
        (Ok(size), Ok(count)) => {
            out[start..start + SHORT_HEADER].copy_from_slice(&[small, size, count]);
            out.copy_within(start + LONG_HEADER.., start + SHORT_HEADER);
            out.truncate(out.len() - (LONG_HEADER - SHORT_HEADER));
        }
        _ => {
            out[start] = large;
            out[start + 1..start + 5].copy_from_slice(&len32(body + 4).to_be_bytes());
            out[start + 5..start + LONG_HEADER].copy_from_slice(&len32(count).to_be_bytes());
        }
    }
}

/// The element kind an array is made of: values of one kind share one
/// constructor.
#[derive(PartialEq)]
enum Kind<'a> {
    Plain(std::mem::Discriminant<Value>),
    Described(&'a Descriptor, Box<Kind<'a>>),
}

fn kind(v: &Value) -> Kind<'_> {
    match v {
        Value::Described(d) => Kind::Described(&d.descriptor, Box::new(kind(&d.value))),
        other => Kind::Plain(std::mem::discriminant(other)),
    }
}

fn encode_array(items: &[Value], out: &mut BytesMut) {
    let Some(first) = items.first() else {
        // An empty array still needs an element constructor; arrays in
        // AMQP's own types are almost all of symbols.
        out.put_slice(&[0xe0, 2, 0, 0xa3]);
        return;
    };
    let k = kind(first);
    if items.iter().any(|i| kind(i) != k) {
        encode_value(&Value::List(items.to_vec()), out);
        return;
    }
    let mut body = BytesMut::new();
    write_constructor(first, &mut body);
    for i in items {
        write_element(i, &mut body);
    }
    match (u8::try_from(body.len() + 1), u8::try_from(items.len())) {
        (Ok(size), Ok(count)) => {
            out.put_u8(0xe0);
            out.put_u8(size);
            out.put_u8(count);
        }
        _ => {
            out.put_u8(0xf0);
            out.put_u32(len32(body.len() + 4));
            out.put_u32(len32(items.len()));
        }
    }
    out.put_slice(&body);
}

/// Array elements all use the widest encoding of their type, so that one
/// constructor fits every element.
fn element_code(v: &Value) -> u8 {
    match v {
        Value::Null => 0x40,
        Value::Bool(_) => 0x56,
        Value::Ubyte(_) => 0x50,
        Value::Ushort(_) => 0x60,
        Value::Uint(_) => 0x70,
        Value::Ulong(_) => 0x80,
        Value::Byte(_) => 0x51,
        Value::Short(_) => 0x61,
        Value::Int(_) => 0x71,
        Value::Long(_) => 0x81,
        Value::Float(_) => 0x72,
        Value::Double(_) => 0x82,
        Value::Decimal32(_) => 0x74,
        Value::Decimal64(_) => 0x84,
        Value::Decimal128(_) => 0x94,
        Value::Char(_) => 0x73,
        Value::Timestamp(_) => 0x83,
        Value::Uuid(_) => 0x98,
        Value::Binary(_) => 0xb0,
        Value::String(_) => 0xb1,
        Value::Symbol(_) => 0xb3,
        Value::List(_) => 0xd0,
        Value::Map(_) => 0xd1,
        Value::Array(_) => 0xf0,
        // Not reached: described elements write their descriptor first.
        Value::Described(_) => 0x40,
    }
}

fn write_constructor(v: &Value, out: &mut BytesMut) {
    if let Value::Described(d) = v {
        out.put_u8(0x00);
        encode_descriptor(&d.descriptor, out);
        write_constructor(&d.value, out);
    } else {
        out.put_u8(element_code(v));
    }
}

fn write_element(v: &Value, out: &mut BytesMut) {
    let mut whole = BytesMut::new();
    match v {
        Value::Described(d) => {
            let Described { value, .. } = &**d;
            return write_element(value, out);
        }
        Value::Bool(b) => {
            out.put_u8(u8::from(*b));
            return;
        }
        Value::Uint(x) => {
            out.put_u32(*x);
            return;
        }
        Value::Ulong(x) => {
            out.put_u64(*x);
            return;
        }
        Value::Int(x) => {
            out.put_i32(*x);
            return;
        }
        Value::Long(x) => {
            out.put_i64(*x);
            return;
        }
        Value::Binary(b) => {
            out.put_u32(len32(b.len()));
            out.put_slice(b);
            return;
        }
        Value::String(s) => {
            out.put_u32(len32(s.len()));
            out.put_slice(s.as_bytes());
            return;
        }
        Value::Symbol(s) => {
            out.put_u32(len32(s.as_str().len()));
            out.put_slice(s.as_str().as_bytes());
            return;
        }
        Value::List(items) => {
            let mut body = BytesMut::new();
            for i in items {
                encode_value(i, &mut body);
            }
            out.put_u32(len32(body.len() + 4));
            out.put_u32(len32(items.len()));
            out.put_slice(&body);
            return;
        }
        Value::Map(pairs) => {
            let mut body = BytesMut::new();
            for (k, v) in pairs {
                encode_value(k, &mut body);
                encode_value(v, &mut body);
            }
            out.put_u32(len32(body.len() + 4));
            out.put_u32(len32(pairs.len() * 2));
            out.put_slice(&body);
            return;
        }
        Value::Array(items) => {
            // Nested arrays use array32: encode then widen the header.
            encode_array(items, &mut whole);
            if whole.first() == Some(&0xe0) && whole.len() >= 3 {
                let body = &whole[3..];
                out.put_u32(len32(body.len() + 4));
                out.put_u32(u32::from(whole[2]));
                out.put_slice(body);
            } else if whole.first() == Some(&0xf0) {
                out.put_slice(&whole[1..]);
            } else {
                // A heterogeneous inner array became a list: not
                // representable inside an array of arrays; send it empty.
                out.put_slice(&[0, 0, 0, 5, 0, 0, 0, 0, 0x40]);
            }
            return;
        }
        // Fixed-width values: their usual encoding minus the format code.
        other => encode_value(other, &mut whole),
    }
    out.put_slice(&whole[1..]);
}

/// Encodes `v` into a fresh buffer.
pub fn to_bytes(v: &Value) -> bytes::Bytes {
    let mut out = BytesMut::new();
    encode_value(v, &mut out);
    out.freeze()
}
