//! Kafka records as the bridge sees them, and their mapping to and from
//! messages: the body is the value, properties travel as headers, the key
//! is a named property or the duplicate id, and an incoming record's topic,
//! partition, offset and key become properties (JMS Bridge's names).

use bytes::Bytes;

use super::routes::{BodyKind, HeaderNaming, Mapping};
use crate::message::{Body, Message, Properties, Routing, Value};

/// The loop-guard header: the cluster whose bridge wrote the record.
pub const CLUSTER_HEADER: &str = "halyard.cluster";
/// Properties an incoming record's message carries (JMS Bridge's names).
pub const TOPIC_PROPERTY: &str = "kafka.topic";
pub const PARTITION_PROPERTY: &str = "kafka.partition";
pub const OFFSET_PROPERTY: &str = "kafka.offset";
pub const KEY_PROPERTY: &str = "kafka.key";
/// Headers on one incoming record turned into properties, at most.
pub const HEADERS_MAX: usize = 1024;

/// A record to write to a Kafka topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl OutRecord {
    pub fn bytes(&self) -> usize {
        self.topic.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// A record read from one partition of a Kafka topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InRecord {
    pub offset: u64,
    pub key: Option<Bytes>,
    /// `None` for a record without a value (a tombstone).
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    /// The record's timestamp (ms since the Unix epoch), if it has one.
    pub timestamp_ms: Option<i64>,
}

impl InRecord {
    /// Written by this cluster's own bridge (not to be read back in)?
    pub fn written_by(&self, cluster: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k == CLUSTER_HEADER && v.as_ref() == cluster.as_bytes())
    }
}

/// Why a message cannot be bridged out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutError {
    /// Kafka records carry bytes: a map, list or other structured body has
    /// no one obvious encoding.
    StructuredBody,
}

/// The record `message` becomes on its way out.
pub fn to_record(
    message: &Message,
    to: &Mapping<'_>,
    cluster: &str,
) -> Result<OutRecord, OutError> {
    let value = message.body.raw().ok_or(OutError::StructuredBody)?.clone();
    let key = match &to.settings.key_property {
        Some(name) => message.property(name).and_then(value_bytes),
        None => message.dup_id.as_ref().map(|d| Bytes::from(d.clone())),
    };
    let mut headers = Vec::with_capacity(message.application.len() + 1);
    for (name, v) in &message.application {
        let header = match to.settings.headers {
            HeaderNaming::Plain => value_bytes(v).map(|b| (name.clone(), b)),
            HeaderNaming::Jms => jms_header(name, v),
        };
        headers.extend(header);
    }
    headers.push((CLUSTER_HEADER.to_string(), Bytes::from(cluster.to_string())));
    Ok(OutRecord {
        topic: to.topic.clone(),
        key,
        value,
        headers,
    })
}

/// The message an incoming record becomes on `from.address`.
pub fn to_message(record: &InRecord, partition: u32, from: &Mapping<'_>) -> Message {
    let value = record.value.clone().unwrap_or_default();
    let body = match from.settings.body {
        BodyKind::Text => Body::Text(value),
        BodyKind::Bytes => Body::Bytes(value),
    };
    let mut m = Message::new(from.address.clone(), Routing::Multicast, body);
    m.application
        .push((TOPIC_PROPERTY.into(), Value::String(from.topic.clone())));
    m.application
        .push((PARTITION_PROPERTY.into(), Value::Int(partition as i32)));
    m.application
        .push((OFFSET_PROPERTY.into(), Value::Long(record.offset as i64)));
    if let Some(k) = &record.key {
        m.application.push((KEY_PROPERTY.into(), text_or_binary(k)));
    }
    for (name, v) in record.headers.iter().take(HEADERS_MAX) {
        let prop = match from.settings.headers {
            HeaderNaming::Jms => from_jms_header(name, v),
            HeaderNaming::Plain => None,
        };
        m.application
            .push(prop.unwrap_or_else(|| (name.clone(), text_or_binary(v))));
    }
    if let Some(ts) = record.timestamp_ms {
        m.properties = Some(Box::new(Properties {
            creation_time_ms: Some(ts),
            ..Properties::default()
        }));
    }
    m
}

fn text_or_binary(b: &Bytes) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::Binary(b.clone()),
    }
}

/// A property value as header bytes: text for strings and numbers, raw
/// bytes for binary; `None` for structured values (not carried).
fn value_bytes(v: &Value) -> Option<Bytes> {
    let text = match v {
        Value::String(s) | Value::Symbol(s) => s.clone(),
        Value::Binary(b) => return Some(b.clone()),
        Value::Bool(b) => b.to_string(),
        Value::Byte(n) => n.to_string(),
        Value::Short(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Long(n) | Value::Timestamp(n) => n.to_string(),
        Value::Ubyte(n) => n.to_string(),
        Value::Ushort(n) => n.to_string(),
        Value::Uint(n) => n.to_string(),
        Value::Ulong(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Char(c) => c.to_string(),
        _ => return None,
    };
    Some(Bytes::from(text))
}

/// JMS Bridge's header for a property: `jms.<type>.<name>`, numbers
/// big-endian, booleans one byte, strings UTF-8.
fn jms_header(name: &str, v: &Value) -> Option<(String, Bytes)> {
    let (kind, bytes): (&str, Vec<u8>) = match v {
        Value::String(s) | Value::Symbol(s) => ("string", s.as_bytes().to_vec()),
        // JMS Bridge writes booleans as text.
        Value::Bool(b) => ("boolean", b.to_string().into_bytes()),
        Value::Byte(n) => ("byte", n.to_be_bytes().to_vec()),
        Value::Short(n) => ("short", n.to_be_bytes().to_vec()),
        Value::Int(n) => ("int", n.to_be_bytes().to_vec()),
        Value::Long(n) => ("long", n.to_be_bytes().to_vec()),
        Value::Float(f) => ("float", f.to_be_bytes().to_vec()),
        Value::Double(f) => ("double", f.to_be_bytes().to_vec()),
        Value::Binary(b) => ("bytes", b.to_vec()),
        _ => return value_bytes(v).map(|b| (format!("jms.string.{name}"), b)),
    };
    Some((format!("jms.{kind}.{name}"), Bytes::from(bytes)))
}

/// The property a `jms.<type>.<name>` header stands for; `None` if the
/// header is not one (or its value does not fit its type).
fn from_jms_header(header: &str, v: &Bytes) -> Option<(String, Value)> {
    let rest = header.strip_prefix("jms.")?;
    let (kind, name) = rest.split_once('.')?;
    let value = match kind {
        "string" => Value::String(std::str::from_utf8(v).ok()?.to_string()),
        "boolean" => match v.as_ref() {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            [b] => Value::Bool(*b != 0),
            _ => return None,
        },
        "byte" => Value::Byte(i8::from_be_bytes(v.as_ref().try_into().ok()?)),
        "short" => Value::Short(i16::from_be_bytes(v.as_ref().try_into().ok()?)),
        "int" => Value::Int(i32::from_be_bytes(v.as_ref().try_into().ok()?)),
        "long" => Value::Long(i64::from_be_bytes(v.as_ref().try_into().ok()?)),
        "float" => Value::Float(f32::from_be_bytes(v.as_ref().try_into().ok()?)),
        "double" => Value::Double(f64::from_be_bytes(v.as_ref().try_into().ok()?)),
        "bytes" => Value::Binary(v.clone()),
        _ => return None,
    };
    Some((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::routes::RouteSettings;

    fn mapping(settings: &RouteSettings) -> Mapping<'_> {
        Mapping {
            topic: "t".into(),
            address: "kafka.t".into(),
            settings,
        }
    }

    #[test]
    fn out_carries_body_properties_key_and_cluster() {
        let mut m = Message::new("kafka.t", Routing::Multicast, Body::Text("hi".into()));
        m.dup_id = Some("d1".into());
        m.application.push(("color".into(), "red".into()));
        m.application.push(("n".into(), Value::Int(7)));
        let plain = RouteSettings::default();
        let r = to_record(&m, &mapping(&plain), "c1").unwrap();
        assert_eq!(r.value, Bytes::from("hi"));
        assert_eq!(r.key, Some(Bytes::from("d1")));
        assert!(r.headers.contains(&("n".into(), Bytes::from("7"))));
        assert!(r
            .headers
            .contains(&(CLUSTER_HEADER.into(), Bytes::from("c1"))));
        let keyed = RouteSettings {
            key_property: Some("color".into()),
            headers: HeaderNaming::Jms,
            ..RouteSettings::default()
        };
        let r = to_record(&m, &mapping(&keyed), "c1").unwrap();
        assert_eq!(r.key, Some(Bytes::from("red")));
        assert!(r
            .headers
            .contains(&("jms.int.n".into(), Bytes::from(vec![0, 0, 0, 7]))));
        m.body = Body::Value(Value::List(vec![]));
        assert_eq!(
            to_record(&m, &mapping(&plain), "c1"),
            Err(OutError::StructuredBody)
        );
    }

    #[test]
    fn in_makes_a_multicast_message_with_kafka_properties() {
        let rec = InRecord {
            offset: 41,
            key: Some(Bytes::from("k")),
            value: Some(Bytes::from("v")),
            headers: vec![
                (
                    "jms.long.seq".into(),
                    Bytes::from(9i64.to_be_bytes().to_vec()),
                ),
                ("plain".into(), Bytes::from("x")),
            ],
            timestamp_ms: Some(5),
        };
        let jms = RouteSettings {
            headers: HeaderNaming::Jms,
            body: BodyKind::Bytes,
            ..RouteSettings::default()
        };
        let m = to_message(&rec, 2, &mapping(&jms));
        assert_eq!(m.address, "kafka.t");
        assert_eq!(m.routing, Routing::Multicast);
        assert_eq!(m.body, Body::Bytes(Bytes::from("v")));
        assert_eq!(m.property(OFFSET_PROPERTY), Some(&Value::Long(41)));
        assert_eq!(m.property(PARTITION_PROPERTY), Some(&Value::Int(2)));
        assert_eq!(m.property(KEY_PROPERTY), Some(&Value::from("k")));
        assert_eq!(m.property("seq"), Some(&Value::Long(9)));
        assert_eq!(m.property("plain"), Some(&Value::from("x")));
        assert!(!rec.written_by("c1"));
    }
}
