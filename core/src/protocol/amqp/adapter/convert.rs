//! AMQP messages to the protocol-neutral [`Message`] and back, with Qpid
//! JMS's mapping (the `x-opt-jms-msg-type` annotation tells the JMS body
//! type; a STOMP text body reaches JMS as a TextMessage).
//!
//! What is kept as sent: priority, durability, the properties section,
//! application properties (typed), message annotations, and the body kind
//! (data, amqp-value of any type, amqp-sequence for JMS StreamMessages).
//! What is not: delivery annotations and footers (per hop), several data
//! or sequence sections (joined into one), decimal values (kept as their
//! bytes, as binary).

use bytes::{Bytes, BytesMut};

use crate::message::{self as neutral, Routing, PRIORITY_MAX};
use crate::protocol::amqp::jms::{self, JmsMsgType};
use crate::protocol::amqp::{
    Body, Described, Descriptor, Header, Map, Message, Properties, Symbol, Value,
};

/// Artemis's duplicate-detection property, honoured on AMQP as on STOMP.
pub const DUPLICATE_ID_PROPERTY: &str = "_AMQ_DUPL_ID";

/// The neutral message for an AMQP message sent to `address`.
pub fn to_neutral(m: Message, address: String, routing: Routing, now: u64) -> neutral::Message {
    let header = m.header.unwrap_or_default();
    let props = m.properties.unwrap_or_default();
    let annotations: Vec<(String, neutral::Value)> = m
        .message_annotations
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((key_text(k)?, value_in(v))))
        .collect();
    let mut application = Vec::new();
    let mut dup_id = None;
    for (k, v) in m.application_properties.unwrap_or_default() {
        let Some(k) = key_text(k) else { continue };
        if k == DUPLICATE_ID_PROPERTY && dup_id.is_none() {
            dup_id = match &v {
                Value::String(s) => Some(s.clone()),
                Value::Binary(b) => Some(hex(b)),
                other => Some(format!("{other:?}")),
            };
            continue;
        }
        application.push((k, value_in(v)));
    }
    let expiration_ms = props
        .absolute_expiry_time
        .filter(|t| *t > 0)
        .and_then(|t| u64::try_from(t).ok())
        .or_else(|| header.ttl.map(|ttl| now.saturating_add(u64::from(ttl))));
    let deliver_at_ms = annotation(&annotations, jms::DELIVERY_TIME)
        .and_then(as_u64)
        .or_else(|| {
            annotation(&annotations, jms::DELIVERY_DELAY)
                .and_then(as_u64)
                .map(|d| now.saturating_add(d))
        })
        .filter(|t| *t > now);
    let body = match m.body {
        Body::Empty => neutral::Body::Value(neutral::Value::Null),
        Body::Data(parts) => neutral::Body::Bytes(join(parts)),
        Body::Value(Value::String(s)) => neutral::Body::Text(Bytes::from(s)),
        Body::Value(v) => neutral::Body::Value(value_in(v)),
        Body::Sequence(parts) => {
            // One list; `x-opt-jms-msg-type` (kept) says it was a stream.
            let items = parts.into_iter().flatten().map(value_in).collect();
            neutral::Body::Value(neutral::Value::List(items))
        }
        // Decoded fully before this point; keep the bytes if not.
        Body::Raw { bytes, .. } => neutral::Body::Bytes(bytes),
    };
    let properties = props_in(props);
    neutral::Message {
        address,
        routing,
        durable: header.durable,
        priority: header.priority.min(PRIORITY_MAX),
        expiration_ms,
        deliver_at_ms,
        dup_id,
        properties,
        application,
        annotations,
        body,
    }
}

/// The AMQP message a consumer receives (`deliveries` counts this one).
/// A message read from the expiry address carries no expiry (as Artemis's
/// copies there do): a client would otherwise drop it as expired.
pub fn from_neutral(m: &neutral::Message, deliveries: u32, expired: bool) -> Message {
    let mut annotations: Map = m
        .annotations
        .iter()
        .filter_map(|(k, v)| Some((Value::Symbol(Symbol::new(k.clone())?), value_out(v))))
        .collect();
    let has_type = m.annotations.iter().any(|(k, _)| k == jms::JMS_MSG_TYPE);
    let stream = m.annotations.iter().any(|(k, v)| {
        k == jms::JMS_MSG_TYPE && *v == neutral::Value::Byte(JmsMsgType::Stream as i8)
    });
    let body = match &m.body {
        neutral::Body::Text(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                if !has_type {
                    annotations.push((
                        Value::symbol(jms::JMS_MSG_TYPE),
                        JmsMsgType::Text.to_value(),
                    ));
                }
                Body::Value(Value::String(s.to_owned()))
            }
            Err(_) => Body::Data(vec![b.clone()]),
        },
        neutral::Body::Bytes(b) => {
            if !has_type {
                annotations.push((
                    Value::symbol(jms::JMS_MSG_TYPE),
                    JmsMsgType::Bytes.to_value(),
                ));
            }
            Body::Data(vec![b.clone()])
        }
        neutral::Body::Value(neutral::Value::List(items)) if stream => {
            Body::Sequence(vec![items.iter().map(value_out).collect()])
        }
        neutral::Body::Value(v) => Body::Value(value_out(v)),
    };
    let mut application: Map = m
        .application
        .iter()
        .map(|(k, v)| (Value::String(k.clone()), value_out(v)))
        .collect();
    if let Some(d) = &m.dup_id {
        application.push((
            Value::String(DUPLICATE_ID_PROPERTY.to_owned()),
            Value::String(d.clone()),
        ));
    }
    let mut properties = m.properties.as_deref().map(props_out);
    if let Some(t) = m.expiration_ms.filter(|_| !expired) {
        properties
            .get_or_insert_with(Properties::default)
            .absolute_expiry_time = i64::try_from(t).ok();
    }
    Message {
        header: Some(Header {
            durable: m.durable,
            priority: m.priority,
            ttl: None,
            first_acquirer: deliveries <= 1,
            delivery_count: deliveries.saturating_sub(1),
        }),
        delivery_annotations: None,
        message_annotations: (!annotations.is_empty()).then_some(annotations),
        properties,
        application_properties: (!application.is_empty()).then_some(application),
        body,
        footer: None,
    }
}

fn props_in(p: Properties) -> Option<Box<neutral::Properties>> {
    let n = neutral::Properties {
        message_id: p.message_id.map(value_in),
        user_id: p.user_id,
        to: p.to,
        subject: p.subject,
        reply_to: p.reply_to,
        correlation_id: p.correlation_id.map(value_in),
        content_type: p.content_type.map(|s| s.as_str().to_owned()),
        content_encoding: p.content_encoding.map(|s| s.as_str().to_owned()),
        creation_time_ms: p.creation_time,
        group_id: p.group_id,
        group_sequence: p.group_sequence,
        reply_to_group_id: p.reply_to_group_id,
    };
    (n != neutral::Properties::default()).then(|| Box::new(n))
}

fn props_out(p: &neutral::Properties) -> Properties {
    Properties {
        message_id: p.message_id.as_ref().map(value_out),
        user_id: p.user_id.clone(),
        to: p.to.clone(),
        subject: p.subject.clone(),
        reply_to: p.reply_to.clone(),
        correlation_id: p.correlation_id.as_ref().map(value_out),
        content_type: p.content_type.clone().and_then(Symbol::new),
        content_encoding: p.content_encoding.clone().and_then(Symbol::new),
        absolute_expiry_time: None,
        creation_time: p.creation_time_ms,
        group_id: p.group_id.clone(),
        group_sequence: p.group_sequence,
        reply_to_group_id: p.reply_to_group_id.clone(),
    }
}

fn key_text(k: Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn annotation<'a>(a: &'a [(String, neutral::Value)], key: &str) -> Option<&'a neutral::Value> {
    a.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn as_u64(v: &neutral::Value) -> Option<u64> {
    match v {
        neutral::Value::Long(n) | neutral::Value::Timestamp(n) => u64::try_from(*n).ok(),
        neutral::Value::Ulong(n) => Some(*n),
        neutral::Value::Int(n) => u64::try_from(*n).ok(),
        neutral::Value::Uint(n) => Some(u64::from(*n)),
        _ => None,
    }
}

fn join(parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in parts {
                out.extend_from_slice(&p);
            }
            out.freeze()
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An AMQP value as a neutral one.
pub fn value_in(v: Value) -> neutral::Value {
    use neutral::Value as N;
    match v {
        Value::Null => N::Null,
        Value::Bool(b) => N::Bool(b),
        Value::Ubyte(n) => N::Ubyte(n),
        Value::Ushort(n) => N::Ushort(n),
        Value::Uint(n) => N::Uint(n),
        Value::Ulong(n) => N::Ulong(n),
        Value::Byte(n) => N::Byte(n),
        Value::Short(n) => N::Short(n),
        Value::Int(n) => N::Int(n),
        Value::Long(n) => N::Long(n),
        Value::Float(x) => N::Float(x),
        Value::Double(x) => N::Double(x),
        Value::Decimal32(b) => N::Binary(Bytes::copy_from_slice(&b)),
        Value::Decimal64(b) => N::Binary(Bytes::copy_from_slice(&b)),
        Value::Decimal128(b) => N::Binary(Bytes::copy_from_slice(&b)),
        Value::Char(c) => N::Char(c),
        Value::Timestamp(t) => N::Timestamp(t),
        Value::Uuid(u) => N::Uuid(u),
        Value::Binary(b) => N::Binary(b),
        Value::String(s) => N::String(s),
        Value::Symbol(s) => N::Symbol(s.as_str().to_owned()),
        Value::List(items) => N::List(items.into_iter().map(value_in).collect()),
        Value::Map(pairs) => N::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (value_in(k), value_in(v)))
                .collect(),
        ),
        Value::Array(items) => N::Array(items.into_iter().map(value_in).collect()),
        Value::Described(d) => {
            let Described { descriptor, value } = *d;
            let descriptor = match descriptor {
                Descriptor::Code(c) => N::Ulong(c),
                Descriptor::Symbol(s) => N::Symbol(s.as_str().to_owned()),
            };
            N::Described(Box::new((descriptor, value_in(value))))
        }
    }
}

/// A neutral value as an AMQP one.
pub fn value_out(v: &neutral::Value) -> Value {
    use neutral::Value as N;
    match v {
        N::Null => Value::Null,
        N::Bool(b) => Value::Bool(*b),
        N::Ubyte(n) => Value::Ubyte(*n),
        N::Ushort(n) => Value::Ushort(*n),
        N::Uint(n) => Value::Uint(*n),
        N::Ulong(n) => Value::Ulong(*n),
        N::Byte(n) => Value::Byte(*n),
        N::Short(n) => Value::Short(*n),
        N::Int(n) => Value::Int(*n),
        N::Long(n) => Value::Long(*n),
        N::Float(x) => Value::Float(*x),
        N::Double(x) => Value::Double(*x),
        N::Char(c) => Value::Char(*c),
        N::Timestamp(t) => Value::Timestamp(*t),
        N::Uuid(u) => Value::Uuid(*u),
        N::Binary(b) => Value::Binary(b.clone()),
        N::String(s) => Value::String(s.clone()),
        N::Symbol(s) => {
            Symbol::new(s.clone()).map_or_else(|| Value::String(s.clone()), Value::Symbol)
        }
        N::List(items) => Value::List(items.iter().map(value_out).collect()),
        N::Map(pairs) => Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (value_out(k), value_out(v)))
                .collect(),
        ),
        N::Array(items) => Value::Array(items.iter().map(value_out).collect()),
        N::Described(d) => {
            let descriptor = match &d.0 {
                N::Ulong(c) => Descriptor::Code(*c),
                N::Symbol(s) => {
                    Symbol::new(s.clone()).map_or(Descriptor::Code(0), Descriptor::Symbol)
                }
                _ => Descriptor::Code(0),
            };
            Value::described(descriptor, value_out(&d.1))
        }
    }
}
