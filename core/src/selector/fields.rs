//! Identifiers: JMS header names (and Artemis's `AMQ*` spellings) resolved
//! once at parse time to fields of [`Message`], everything else to an
//! application property.

use std::borrow::Cow;

use crate::message::{Message, Value};

use super::value::Val;

/// Where an identifier's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// An application property of that name.
    Property,
    /// `'PERSISTENT'` or `'NON_PERSISTENT'`.
    DeliveryMode,
    /// `'DURABLE'` or `'NON_DURABLE'` (Artemis's spelling).
    Durable,
    Priority,
    MessageId,
    /// Creation time, 0 when unset (what `getJMSTimestamp` answers).
    Timestamp,
    CorrelationId,
    /// The AMQP subject.
    Type,
    /// Expiry time, 0 for never (what `getJMSExpiration` answers).
    Expiration,
    /// Passed in by the caller: it belongs to the delivery, not the message.
    DeliveryCount,
    GroupId,
    GroupSeq,
    /// The AMQP user-id, as UTF-8 text.
    UserId,
    Address,
    /// What the broker counts the message as ([`Message::size_bytes`]).
    Size,
}

/// Names with a meaning of their own. The `JMS*` names are the spec's (and
/// Qpid JMS's AMQP mapping's); the `AMQ*` names are what Artemis's
/// `SelectorTranslator` rewrites them to, accepted so a filter written for
/// Artemis works unchanged.
const NAMES: [(&str, Source); 19] = [
    ("JMSDeliveryMode", Source::DeliveryMode),
    ("JMSPriority", Source::Priority),
    ("JMSMessageID", Source::MessageId),
    ("JMSTimestamp", Source::Timestamp),
    ("JMSCorrelationID", Source::CorrelationId),
    ("JMSType", Source::Type),
    ("JMSExpiration", Source::Expiration),
    ("JMSXDeliveryCount", Source::DeliveryCount),
    ("JMSXGroupID", Source::GroupId),
    ("JMSXGroupSeq", Source::GroupSeq),
    ("JMSXUserID", Source::UserId),
    ("AMQDurable", Source::Durable),
    ("AMQPriority", Source::Priority),
    ("AMQUserID", Source::MessageId),
    ("AMQTimestamp", Source::Timestamp),
    ("AMQExpiration", Source::Expiration),
    ("AMQGroupID", Source::GroupId),
    ("AMQAddress", Source::Address),
    ("AMQSize", Source::Size),
];

/// An identifier as written, and where its value comes from.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Field {
    pub(super) name: Box<str>,
    pub(super) source: Source,
}

impl Field {
    pub(super) fn resolve(name: &str) -> Field {
        let source = NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Source::Property, |(_, s)| *s);
        Field {
            name: name.into(),
            source,
        }
    }

    /// The value in `msg`. A header field the message does not have falls
    /// back to an application property of the same name, so a STOMP header
    /// literally named `JMSType` still selects.
    pub(super) fn read<'m>(&self, msg: &'m Message, delivery_count: u32) -> Val<'m> {
        let props = msg.properties.as_deref();
        let text = |s: &'m str| Val::Str(Cow::Borrowed(s));
        let header = match self.source {
            Source::Property => None,
            Source::DeliveryMode => Some(text(if msg.durable {
                "PERSISTENT"
            } else {
                "NON_PERSISTENT"
            })),
            Source::Durable => Some(text(if msg.durable {
                "DURABLE"
            } else {
                "NON_DURABLE"
            })),
            Source::Priority => Some(Val::Int(i64::from(msg.priority))),
            Source::MessageId => props.and_then(|p| p.message_id.as_ref()).map(message_id),
            Source::Timestamp => Some(Val::Int(
                props.and_then(|p| p.creation_time_ms).unwrap_or(0),
            )),
            Source::CorrelationId => props
                .and_then(|p| p.correlation_id.as_ref())
                .map(correlation_id),
            Source::Type => props.and_then(|p| p.subject.as_deref()).map(text),
            Source::Expiration => Some(Val::Int(
                msg.expiration_ms
                    .map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX)),
            )),
            Source::DeliveryCount => Some(Val::Int(i64::from(delivery_count))),
            Source::GroupId => props.and_then(|p| p.group_id.as_deref()).map(text),
            Source::GroupSeq => props
                .and_then(|p| p.group_sequence)
                .map(|n| Val::Int(i64::from(n))),
            Source::UserId => props
                .and_then(|p| p.user_id.as_ref())
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(text),
            Source::Address => Some(text(&msg.address)),
            Source::Size => Some(Val::Int(
                i64::try_from(msg.size_bytes()).unwrap_or(i64::MAX),
            )),
        };
        match header {
            Some(v) if v != Val::Null => v,
            _ => msg.property(&self.name).map_or(Val::Null, Val::from_value),
        }
    }
}

/// The encodings of non-`ID:` message ids in the AMQP JMS mapping (3.2.1.1).
const ID_TYPE_PREFIXES: [&str; 5] = [
    "AMQP_BINARY:",
    "AMQP_UUID:",
    "AMQP_ULONG:",
    "AMQP_STRING:",
    "AMQP_NO_PREFIX:",
];

/// A message id as a JMS client sees it (`getJMSMessageID`), by the AMQP
/// JMS mapping Qpid JMS implements: `ID:...` strings as they are, other
/// strings and non-string ids with a prefix naming their encoding.
fn message_id(v: &Value) -> Val<'_> {
    match v {
        Value::String(s) | Value::Symbol(s) => match s.strip_prefix("ID:") {
            Some(rest) if !ID_TYPE_PREFIXES.iter().any(|p| rest.starts_with(p)) => {
                Val::Str(Cow::Borrowed(s))
            }
            Some(_) => Val::Str(Cow::Owned(format!("ID:AMQP_STRING:{s}"))),
            None => Val::Str(Cow::Owned(format!("ID:AMQP_NO_PREFIX:{s}"))),
        },
        other => typed_id(other),
    }
}

/// A correlation id as a selector sees it: a string as it is (JMS
/// applications set arbitrary strings; Artemis compares them as they are),
/// other types encoded as for message ids.
fn correlation_id(v: &Value) -> Val<'_> {
    match v {
        Value::String(s) | Value::Symbol(s) => Val::Str(Cow::Borrowed(s)),
        other => typed_id(other),
    }
}

fn typed_id(v: &Value) -> Val<'_> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |bytes: &[u8], upper: bool| {
        bytes
            .iter()
            .flat_map(|b| [b >> 4, b & 15])
            .map(|n| {
                let c = char::from(HEX[usize::from(n)]);
                if upper {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect::<String>()
    };
    match v {
        Value::Null => Val::Null,
        Value::Ulong(n) => Val::Str(Cow::Owned(format!("ID:AMQP_ULONG:{n}"))),
        Value::Uuid(u) => {
            let h = hex(u, false);
            Val::Str(Cow::Owned(format!(
                "ID:AMQP_UUID:{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )))
        }
        Value::Binary(b) => Val::Str(Cow::Owned(format!("ID:AMQP_BINARY:{}", hex(b, true)))),
        other => Val::from_value(other),
    }
}
