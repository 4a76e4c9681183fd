//! How a [`Message`] is laid out inside a `MessageStored` journal value.
//!
//! Version 2 (written):
//!
//! ```text
//! str address, u8 routing, u8 flags, u8 priority
//! [varint expiration_ms] [varint deliver_at_ms] [str dup_id]      (by flag)
//! [varint field bits, then each present well-known property]     (by flag)
//! varint n, n x (str name, value)        application properties
//! varint n, n x (str name, value)        annotations
//! u8 body kind (0 text, 1 bytes, 2 value), then bytes or a value
//! ```
//!
//! A value is a tag byte and its payload; lists, maps and arrays nest at
//! most [`DEPTH_MAX`] deep and their counts are bounded by the bytes left.
//!
//! Version 1 (read only): address, routing, STOMP header pairs, body bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::format::{CodecError, NAME_BYTES_MAX};
use super::wire::{put_bytes, put_signed, put_str, put_varint, Reader};
use crate::message::{Body, Message, Properties, Routing, Value, PRIORITY_DEFAULT, PRIORITY_MAX};

/// Deepest nesting of lists, maps, arrays and described values.
pub(crate) const DEPTH_MAX: usize = 32;
/// Most application properties or annotations one message may carry.
const PROPERTIES_MAX: usize = 4096;
/// The duplicate-detection header of version 1 messages (Artemis's name).
const V1_DUPLICATE_HEADER: &str = "_AMQ_DUPL_ID";

const FLAG_DURABLE: u8 = 1;
const FLAG_EXPIRATION: u8 = 2;
const FLAG_DELIVER_AT: u8 = 4;
const FLAG_DUP_ID: u8 = 8;
const FLAG_PROPERTIES: u8 = 16;
const FLAGS_KNOWN: u8 = 31;

const BODY_TEXT: u8 = 0;
const BODY_BYTES: u8 = 1;
const BODY_VALUE: u8 = 2;

pub(crate) fn put_routing(out: &mut BytesMut, routing: Routing) {
    out.put_u8(match routing {
        Routing::Anycast => 0,
        Routing::Multicast => 1,
    });
}

pub(crate) fn read_routing(r: &mut Reader<'_>) -> Result<Routing, CodecError> {
    match r.u8("routing")? {
        0 => Ok(Routing::Anycast),
        1 => Ok(Routing::Multicast),
        other => Err(CodecError::BadValue {
            field: "routing",
            value: u64::from(other),
        }),
    }
}

pub(crate) fn put_message(out: &mut BytesMut, m: &Message) {
    debug_assert!(
        m.priority <= PRIORITY_MAX,
        "priority {} unclamped",
        m.priority
    );
    put_str(out, &m.address);
    put_routing(out, m.routing);
    let mut flags = 0;
    if m.durable {
        flags |= FLAG_DURABLE;
    }
    if m.expiration_ms.is_some() {
        flags |= FLAG_EXPIRATION;
    }
    if m.deliver_at_ms.is_some() {
        flags |= FLAG_DELIVER_AT;
    }
    if m.dup_id.is_some() {
        flags |= FLAG_DUP_ID;
    }
    if m.properties.is_some() {
        flags |= FLAG_PROPERTIES;
    }
    out.put_u8(flags);
    out.put_u8(m.priority);
    if let Some(t) = m.expiration_ms {
        put_varint(out, t);
    }
    if let Some(t) = m.deliver_at_ms {
        put_varint(out, t);
    }
    if let Some(d) = &m.dup_id {
        put_str(out, d);
    }
    if let Some(p) = &m.properties {
        put_properties(out, p);
    }
    put_pairs(out, &m.application);
    put_pairs(out, &m.annotations);
    match &m.body {
        Body::Text(b) => {
            out.put_u8(BODY_TEXT);
            put_bytes(out, b);
        }
        Body::Bytes(b) => {
            out.put_u8(BODY_BYTES);
            put_bytes(out, b);
        }
        Body::Value(v) => {
            out.put_u8(BODY_VALUE);
            put_value(out, v);
        }
    }
}

pub(crate) fn read_message(r: &mut Reader<'_>) -> Result<Message, CodecError> {
    let address = r.string("address")?;
    let routing = read_routing(r)?;
    let flags = r.u8("message flags")?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(CodecError::BadValue {
            field: "message flags",
            value: u64::from(flags),
        });
    }
    let priority = r.u8("priority")?;
    if priority > PRIORITY_MAX {
        return Err(CodecError::BadValue {
            field: "priority",
            value: u64::from(priority),
        });
    }
    let expiration_ms = (flags & FLAG_EXPIRATION != 0)
        .then(|| r.varint("expiration"))
        .transpose()?;
    let deliver_at_ms = (flags & FLAG_DELIVER_AT != 0)
        .then(|| r.varint("delivery time"))
        .transpose()?;
    let dup_id = (flags & FLAG_DUP_ID != 0)
        .then(|| r.string("duplicate id"))
        .transpose()?;
    let properties = (flags & FLAG_PROPERTIES != 0)
        .then(|| read_properties(r).map(Box::new))
        .transpose()?;
    let application = read_pairs(r, "application property")?;
    let annotations = read_pairs(r, "annotation")?;
    let body = match r.u8("body kind")? {
        BODY_TEXT => Body::Text(Bytes::copy_from_slice(r.bytes("body", usize::MAX)?)),
        BODY_BYTES => Body::Bytes(Bytes::copy_from_slice(r.bytes("body", usize::MAX)?)),
        BODY_VALUE => Body::Value(read_value(r, 0)?),
        other => {
            return Err(CodecError::BadValue {
                field: "body kind",
                value: u64::from(other),
            })
        }
    };
    Ok(Message {
        address,
        routing,
        durable: flags & FLAG_DURABLE != 0,
        priority,
        expiration_ms,
        deliver_at_ms,
        dup_id,
        properties,
        application,
        annotations,
        body,
    })
}

/// A version 1 message: STOMP headers become string properties (the
/// duplicate-detection header becomes the duplicate id) and the body is
/// text when it is UTF-8. Version 1 journaled persistent messages only.
pub(crate) fn read_message_v1(r: &mut Reader<'_>) -> Result<Message, CodecError> {
    let address = r.string("address")?;
    let routing = read_routing(r)?;
    let n = r.count("header count", PROPERTIES_MAX)?;
    let mut application = Vec::with_capacity(n.min(r.buf.len()));
    let mut dup_id = None;
    for _ in 0..n {
        let k = r.string("header name")?;
        let v = r.string("header value")?;
        if k == V1_DUPLICATE_HEADER && dup_id.is_none() {
            dup_id = Some(v);
        } else {
            application.push((k, Value::String(v)));
        }
    }
    let raw = Bytes::copy_from_slice(r.bytes("body", usize::MAX)?);
    let body = if std::str::from_utf8(&raw).is_ok() {
        Body::Text(raw)
    } else {
        Body::Bytes(raw)
    };
    Ok(Message {
        address,
        routing,
        durable: true,
        priority: PRIORITY_DEFAULT,
        expiration_ms: None,
        deliver_at_ms: None,
        dup_id,
        properties: None,
        application,
        annotations: Vec::new(),
        body,
    })
}

fn put_pairs(out: &mut BytesMut, pairs: &[(String, Value)]) {
    put_varint(out, pairs.len() as u64);
    for (k, v) in pairs {
        put_str(out, k);
        put_value(out, v);
    }
}

fn read_pairs(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<(String, Value)>, CodecError> {
    let n = r.count(what, PROPERTIES_MAX)?;
    let mut out = Vec::with_capacity(n.min(r.buf.len()));
    for _ in 0..n {
        let k = r.string(what)?;
        out.push((k, read_value(r, 0)?));
    }
    Ok(out)
}

// Presence bits of the well-known properties, in field order.
const P_MESSAGE_ID: u64 = 1;
const P_USER_ID: u64 = 1 << 1;
const P_TO: u64 = 1 << 2;
const P_SUBJECT: u64 = 1 << 3;
const P_REPLY_TO: u64 = 1 << 4;
const P_CORRELATION_ID: u64 = 1 << 5;
const P_CONTENT_TYPE: u64 = 1 << 6;
const P_CONTENT_ENCODING: u64 = 1 << 7;
const P_CREATION_TIME: u64 = 1 << 8;
const P_GROUP_ID: u64 = 1 << 9;
const P_GROUP_SEQUENCE: u64 = 1 << 10;
const P_REPLY_TO_GROUP_ID: u64 = 1 << 11;
const P_KNOWN: u64 = (1 << 12) - 1;

fn put_properties(out: &mut BytesMut, p: &Properties) {
    let bit = |present: bool, b: u64| if present { b } else { 0 };
    let bits = bit(p.message_id.is_some(), P_MESSAGE_ID)
        | bit(p.user_id.is_some(), P_USER_ID)
        | bit(p.to.is_some(), P_TO)
        | bit(p.subject.is_some(), P_SUBJECT)
        | bit(p.reply_to.is_some(), P_REPLY_TO)
        | bit(p.correlation_id.is_some(), P_CORRELATION_ID)
        | bit(p.content_type.is_some(), P_CONTENT_TYPE)
        | bit(p.content_encoding.is_some(), P_CONTENT_ENCODING)
        | bit(p.creation_time_ms.is_some(), P_CREATION_TIME)
        | bit(p.group_id.is_some(), P_GROUP_ID)
        | bit(p.group_sequence.is_some(), P_GROUP_SEQUENCE)
        | bit(p.reply_to_group_id.is_some(), P_REPLY_TO_GROUP_ID);
    put_varint(out, bits);
    if let Some(v) = &p.message_id {
        put_value(out, v);
    }
    if let Some(v) = &p.user_id {
        put_bytes(out, v);
    }
    for s in [&p.to, &p.subject, &p.reply_to].into_iter().flatten() {
        put_str(out, s);
    }
    if let Some(v) = &p.correlation_id {
        put_value(out, v);
    }
    for s in [&p.content_type, &p.content_encoding].into_iter().flatten() {
        put_str(out, s);
    }
    if let Some(t) = p.creation_time_ms {
        put_signed(out, t);
    }
    if let Some(s) = &p.group_id {
        put_str(out, s);
    }
    if let Some(n) = p.group_sequence {
        put_varint(out, u64::from(n));
    }
    if let Some(s) = &p.reply_to_group_id {
        put_str(out, s);
    }
}

fn read_properties(r: &mut Reader<'_>) -> Result<Properties, CodecError> {
    let bits = r.varint("property bits")?;
    if bits & !P_KNOWN != 0 {
        return Err(CodecError::BadValue {
            field: "property bits",
            value: bits,
        });
    }
    let has = |b: u64| bits & b != 0;
    let mut p = Properties::default();
    if has(P_MESSAGE_ID) {
        p.message_id = Some(read_value(r, 0)?);
    }
    if has(P_USER_ID) {
        p.user_id = Some(Bytes::copy_from_slice(r.bytes("user id", NAME_BYTES_MAX)?));
    }
    if has(P_TO) {
        p.to = Some(r.string("to")?);
    }
    if has(P_SUBJECT) {
        p.subject = Some(r.string("subject")?);
    }
    if has(P_REPLY_TO) {
        p.reply_to = Some(r.string("reply-to")?);
    }
    if has(P_CORRELATION_ID) {
        p.correlation_id = Some(read_value(r, 0)?);
    }
    if has(P_CONTENT_TYPE) {
        p.content_type = Some(r.string("content type")?);
    }
    if has(P_CONTENT_ENCODING) {
        p.content_encoding = Some(r.string("content encoding")?);
    }
    if has(P_CREATION_TIME) {
        p.creation_time_ms = Some(r.signed("creation time")?);
    }
    if has(P_GROUP_ID) {
        p.group_id = Some(r.string("group id")?);
    }
    if has(P_GROUP_SEQUENCE) {
        p.group_sequence = Some(r.narrow("group sequence")?);
    }
    if has(P_REPLY_TO_GROUP_ID) {
        p.reply_to_group_id = Some(r.string("reply-to group id")?);
    }
    Ok(p)
}

const V_NULL: u8 = 0;
const V_BOOL: u8 = 1;
const V_UBYTE: u8 = 2;
const V_USHORT: u8 = 3;
const V_UINT: u8 = 4;
const V_ULONG: u8 = 5;
const V_BYTE: u8 = 6;
const V_SHORT: u8 = 7;
const V_INT: u8 = 8;
const V_LONG: u8 = 9;
const V_FLOAT: u8 = 10;
const V_DOUBLE: u8 = 11;
const V_CHAR: u8 = 12;
const V_TIMESTAMP: u8 = 13;
const V_UUID: u8 = 14;
const V_BINARY: u8 = 15;
const V_STRING: u8 = 16;
const V_SYMBOL: u8 = 17;
const V_LIST: u8 = 18;
const V_MAP: u8 = 19;
const V_ARRAY: u8 = 20;
const V_DESCRIBED: u8 = 21;

pub(crate) fn put_value(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Null => out.put_u8(V_NULL),
        Value::Bool(b) => {
            out.put_u8(V_BOOL);
            out.put_u8(u8::from(*b));
        }
        Value::Ubyte(n) => {
            out.put_u8(V_UBYTE);
            out.put_u8(*n);
        }
        Value::Ushort(n) => {
            out.put_u8(V_USHORT);
            put_varint(out, u64::from(*n));
        }
        Value::Uint(n) => {
            out.put_u8(V_UINT);
            put_varint(out, u64::from(*n));
        }
        Value::Ulong(n) => {
            out.put_u8(V_ULONG);
            put_varint(out, *n);
        }
        Value::Byte(n) => {
            out.put_u8(V_BYTE);
            out.put_i8(*n);
        }
        Value::Short(n) => {
            out.put_u8(V_SHORT);
            put_signed(out, i64::from(*n));
        }
        Value::Int(n) => {
            out.put_u8(V_INT);
            put_signed(out, i64::from(*n));
        }
        Value::Long(n) => {
            out.put_u8(V_LONG);
            put_signed(out, *n);
        }
        Value::Float(f) => {
            out.put_u8(V_FLOAT);
            out.put_u32_le(f.to_bits());
        }
        Value::Double(f) => {
            out.put_u8(V_DOUBLE);
            out.put_u64_le(f.to_bits());
        }
        Value::Char(c) => {
            out.put_u8(V_CHAR);
            put_varint(out, u64::from(u32::from(*c)));
        }
        Value::Timestamp(t) => {
            out.put_u8(V_TIMESTAMP);
            put_signed(out, *t);
        }
        Value::Uuid(u) => {
            out.put_u8(V_UUID);
            out.put_slice(u);
        }
        Value::Binary(b) => {
            out.put_u8(V_BINARY);
            put_bytes(out, b);
        }
        Value::String(s) => {
            out.put_u8(V_STRING);
            put_str(out, s);
        }
        Value::Symbol(s) => {
            out.put_u8(V_SYMBOL);
            put_str(out, s);
        }
        Value::List(items) | Value::Array(items) => {
            out.put_u8(if matches!(v, Value::List(_)) {
                V_LIST
            } else {
                V_ARRAY
            });
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(pairs) => {
            out.put_u8(V_MAP);
            put_varint(out, pairs.len() as u64);
            for (k, v) in pairs {
                put_value(out, k);
                put_value(out, v);
            }
        }
        Value::Described(d) => {
            out.put_u8(V_DESCRIBED);
            put_value(out, &d.0);
            put_value(out, &d.1);
        }
    }
}

pub(crate) fn read_value(r: &mut Reader<'_>, depth: usize) -> Result<Value, CodecError> {
    if depth >= DEPTH_MAX {
        return Err(CodecError::TooDeep(DEPTH_MAX));
    }
    let v = match r.u8("value tag")? {
        V_NULL => Value::Null,
        V_BOOL => match r.u8("bool")? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => {
                return Err(CodecError::BadValue {
                    field: "bool",
                    value: u64::from(other),
                })
            }
        },
        V_UBYTE => Value::Ubyte(r.u8("ubyte")?),
        V_USHORT => Value::Ushort(r.narrow("ushort")?),
        V_UINT => Value::Uint(r.narrow("uint")?),
        V_ULONG => Value::Ulong(r.varint("ulong")?),
        V_BYTE => Value::Byte(r.u8("byte")? as i8),
        V_SHORT => Value::Short(narrow_signed(r.signed("short")?, "short")?),
        V_INT => Value::Int(narrow_signed(r.signed("int")?, "int")?),
        V_LONG => Value::Long(r.signed("long")?),
        V_FLOAT => Value::Float(f32::from_bits(u32::from_le_bytes(r.array("float")?))),
        V_DOUBLE => Value::Double(f64::from_bits(u64::from_le_bytes(r.array("double")?))),
        V_CHAR => {
            let n: u32 = r.narrow("char")?;
            Value::Char(char::from_u32(n).ok_or(CodecError::BadValue {
                field: "char",
                value: u64::from(n),
            })?)
        }
        V_TIMESTAMP => Value::Timestamp(r.signed("timestamp")?),
        V_UUID => Value::Uuid(r.array("uuid")?),
        V_BINARY => Value::Binary(Bytes::copy_from_slice(r.bytes("binary", usize::MAX)?)),
        V_STRING => Value::String(r.text("string", usize::MAX)?),
        V_SYMBOL => Value::Symbol(r.string("symbol")?),
        tag @ (V_LIST | V_ARRAY) => {
            // Every element takes at least one byte: a count beyond the
            // bytes left is a lie, not an allocation to make.
            let n = r.count("list length", r.buf.len())?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(r, depth + 1)?);
            }
            if tag == V_LIST {
                Value::List(items)
            } else {
                Value::Array(items)
            }
        }
        V_MAP => {
            let n = r.count("map length", r.buf.len() / 2)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let k = read_value(r, depth + 1)?;
                pairs.push((k, read_value(r, depth + 1)?));
            }
            Value::Map(pairs)
        }
        V_DESCRIBED => {
            let d = read_value(r, depth + 1)?;
            Value::Described(Box::new((d, read_value(r, depth + 1)?)))
        }
        other => {
            return Err(CodecError::BadValue {
                field: "value tag",
                value: u64::from(other),
            })
        }
    };
    Ok(v)
}

fn narrow_signed<T: TryFrom<i64>>(v: i64, what: &'static str) -> Result<T, CodecError> {
    T::try_from(v).map_err(|_| CodecError::BadValue {
        field: what,
        value: v as u64,
    })
}
