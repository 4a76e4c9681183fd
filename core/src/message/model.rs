//! [`Message`]: the one message model of the broker and the journal.

use bytes::Bytes;

use super::routing::Routing;
use super::value::Value;

/// JMS's default priority (0-9), used when a client sets none.
pub const PRIORITY_DEFAULT: u8 = 4;
/// `_AMQ_DUPL_ID` and its two separators: what the id costs as a STOMP header.
const DUP_HEADER_BYTES: usize = 14;

/// Highest priority; higher values a client sends are clamped to it.
pub const PRIORITY_MAX: u8 = 9;

/// A message as the broker holds and the journal stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub address: String,
    pub routing: Routing,
    /// Persistent: journaled before the send is answered.
    pub durable: bool,
    /// 0 (lowest) to 9; delivered highest first within a queue.
    pub priority: u8,
    /// Not delivered at or after this time (ms since the Unix epoch).
    pub expiration_ms: Option<u64>,
    /// Not delivered before this time (ms since the Unix epoch).
    pub deliver_at_ms: Option<u64>,
    /// Duplicate-detection id: a second send with the same id on the same
    /// address is answered and not stored.
    pub dup_id: Option<String>,
    /// The well-known fields (absent for most STOMP messages).
    pub properties: Option<Box<Properties>>,
    /// Application properties (STOMP headers, JMS properties), in the order sent.
    pub application: Vec<(String, Value)>,
    /// Annotations kept for the protocol that understands them (AMQP
    /// message annotations such as `x-opt-jms-msg-type`), in the order sent.
    pub annotations: Vec<(String, Value)>,
    pub body: Body,
}

/// Fields with a meaning across protocols (AMQP's properties section, JMS
/// headers, their STOMP spellings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pub message_id: Option<Value>,
    pub user_id: Option<Bytes>,
    pub to: Option<String>,
    /// JMSType.
    pub subject: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<Value>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// ms since the Unix epoch (JMSTimestamp).
    pub creation_time_ms: Option<i64>,
    pub group_id: Option<String>,
    pub group_sequence: Option<u32>,
    pub reply_to_group_id: Option<String>,
}

/// A body with its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Text, normally UTF-8 (a STOMP body without content-length, a JMS
    /// TextMessage, an AMQP string value).
    Text(Bytes),
    /// Opaque bytes (a STOMP body with content-length, a JMS BytesMessage or
    /// ObjectMessage, AMQP data sections).
    Bytes(Bytes),
    /// A structured value (a JMS MapMessage's map, a StreamMessage's list, any
    /// other AMQP value).
    Value(Value),
}

impl Body {
    /// The body as raw bytes, where it has them (text and bytes bodies).
    pub fn raw(&self) -> Option<&Bytes> {
        match self {
            Body::Text(b) | Body::Bytes(b) => Some(b),
            Body::Value(_) => None,
        }
    }

    pub fn size_bytes(&self) -> usize {
        match self {
            Body::Text(b) | Body::Bytes(b) => b.len(),
            Body::Value(v) => v.size_bytes(),
        }
    }
}

impl Message {
    /// A durable message with default priority and nothing else set.
    pub fn new(address: impl Into<String>, routing: Routing, body: Body) -> Message {
        Message {
            address: address.into(),
            routing,
            durable: true,
            priority: PRIORITY_DEFAULT,
            expiration_ms: None,
            deliver_at_ms: None,
            dup_id: None,
            properties: None,
            application: Vec::new(),
            annotations: Vec::new(),
            body,
        }
    }

    /// An application property by name (first occurrence).
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.application
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Bytes this message occupies, for window and memory accounting.
    pub fn size_bytes(&self) -> usize {
        // A STOMP header costs its name, value and two separators, so a
        // consumer window means the same as before properties were typed.
        let props = |v: &[(String, Value)]| {
            v.iter()
                .map(|(k, v)| k.len() + v.size_bytes() + 2)
                .sum::<usize>()
        };
        self.body.size_bytes()
            + self.address.len()
            + self
                .dup_id
                .as_ref()
                .map_or(0, |d| DUP_HEADER_BYTES + d.len())
            + props(&self.application)
            + props(&self.annotations)
            + self.properties.as_ref().map_or(0, |_| 64)
    }
}
