//! MESSAGE frames: a delivery rendered with the headers Artemis writes
//! (its `StompUtils.copyStandardHeadersFromMessageToFrame`): `expires`,
//! `redelivered`, `priority`, `persistent`, `timestamp`, the JMS header
//! names for well-known properties, `_AMQ_SCHED_DELIVERY` for a scheduled
//! message, and `_AMQ_ORIG_*` (plus `_AMQ_ACTUAL_EXPIRY`) for one that was
//! dead-lettered or expired.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use crate::broker::Delivery;
use crate::ids::Id;
use crate::message::{Body, Routing, Value};
use crate::node::{NodeConfig, WireBytes};

use super::encode::{FrameWriter, FRAME_END};
use super::frame::{Command, Version};
use super::send::{DUPLICATE_ID_HEADER, SCHEDULED_PROPERTY};

/// The MESSAGE frame for a delivery, as `version` writes it.
pub(super) fn message_bytes(config: &NodeConfig, d: &Delivery, version: Version) -> WireBytes {
    let body = match &d.message.body {
        Body::Text(b) | Body::Bytes(b) => b.clone(),
        Body::Value(v) => Bytes::from(header_text(v).into_owned()),
    };
    // A large body leaves beside its frame rather than copied into it
    // (smaller ones the driver copies anyway).
    let apart = body.len() >= WireBytes::APART_MIN;
    // Room for the dozen headers of a typical MESSAGE.
    let mut out = BytesMut::with_capacity(if apart { 384 } else { body.len() + 384 });
    let mut w = FrameWriter::start(&mut out, Command::Message, version, body.len());
    write_headers(&mut w, config, d);
    if apart {
        w.finish_head();
        return WireBytes {
            head: out.freeze(),
            body,
            tail: Bytes::from_static(FRAME_END),
        };
    }
    w.finish(&body);
    out.freeze().into()
}

fn write_headers(f: &mut FrameWriter<'_>, config: &NodeConfig, d: &Delivery) {
    let m = &d.message;
    f.header("subscription", d.sub_id.as_str());
    write_id(f, "message-id", d.message_id);
    f.header("destination", d.destination.as_str());
    if let Some(a) = d.ack {
        f.header_int("ack", a);
    }
    // An expired message moved to the expiry address no longer expires
    // (Artemis's copy has expiration 0).
    let expires = if d.expired {
        0
    } else {
        m.expiration_ms.unwrap_or(0)
    };
    f.header_int("expires", expires);
    f.header(
        "redelivered",
        if d.deliveries > 1 { "true" } else { "false" },
    );
    f.header_int("priority", m.priority);
    f.header("persistent", if m.durable { "true" } else { "false" });
    let props = m.properties.as_deref();
    if let Some(t) = props.and_then(|p| p.creation_time_ms) {
        f.header_int("timestamp", t);
    }
    f.header_int("delivery-count", d.deliveries);
    if let Some(orig) = &d.original_address {
        f.header(
            "original-destination",
            &config.destinations.spell(orig, m.routing),
        );
    }
    // Well-known properties by their STOMP names, unless the sender also
    // set a header of that name (STOMP senders' headers are kept as sent).
    if let Some(p) = props {
        let known = [
            ("correlation-id", p.correlation_id.as_ref().map(header_text)),
            ("reply-to", p.reply_to.as_deref().map(Cow::Borrowed)),
            ("type", p.subject.as_deref().map(Cow::Borrowed)),
            ("content-type", p.content_type.as_deref().map(Cow::Borrowed)),
        ];
        for (name, value) in known {
            if let Some(v) = value {
                if m.property(name).is_none() {
                    f.header(name, &v);
                }
            }
        }
    }
    if let Some(at) = m.deliver_at_ms.filter(|_| d.original_address.is_none()) {
        f.header_int(SCHEDULED_PROPERTY, at);
    }
    if let Some(orig) = &d.original_address {
        // What Artemis sets on a dead-lettered or expired copy. The stored
        // message is shared and immutable, so these are derived: the
        // original queue is known for anycast (the address's queue) only,
        // the message keeps its id, and the expiry time stands for the
        // moment the broker noticed it (at most one scan period later).
        f.header("_AMQ_ORIG_ADDRESS", orig.as_str());
        if m.routing == Routing::Anycast {
            f.header("_AMQ_ORIG_QUEUE", orig.as_str());
        }
        // Artemis's RoutingType ids: MULTICAST 0, ANYCAST 1.
        let routing_id = match m.routing {
            Routing::Multicast => "0",
            Routing::Anycast => "1",
        };
        f.header("_AMQ_ORIG_ROUTING_TYPE", routing_id);
        write_id(f, "_AMQ_ORIG_MESSAGE_ID", d.message_id);
        if let Some(t) = m.expiration_ms.filter(|_| d.expired) {
            f.header_int("_AMQ_ACTUAL_EXPIRY", t);
        }
    }
    for (k, v) in &m.application {
        f.header(k.as_str(), &header_text(v));
    }
    if let Some(dup) = &m.dup_id {
        f.header(DUPLICATE_ID_HEADER, dup.as_str());
    }
}

/// Writes a message id header (`epoch:seq`) without formatting machinery.
fn write_id(f: &mut FrameWriter<'_>, name: &str, id: Id) {
    let (mut epoch, mut seq) = (itoa::Buffer::new(), itoa::Buffer::new());
    f.header_joined(name, &[epoch.format(id.epoch), ":", seq.format(id.seq)]);
}

/// A typed value as a STOMP header value.
pub(super) fn header_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) | Value::Symbol(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Ubyte(n) => Cow::Owned(n.to_string()),
        Value::Ushort(n) => Cow::Owned(n.to_string()),
        Value::Uint(n) => Cow::Owned(n.to_string()),
        Value::Ulong(n) => Cow::Owned(n.to_string()),
        Value::Byte(n) => Cow::Owned(n.to_string()),
        Value::Short(n) => Cow::Owned(n.to_string()),
        Value::Int(n) => Cow::Owned(n.to_string()),
        Value::Long(n) | Value::Timestamp(n) => Cow::Owned(n.to_string()),
        Value::Float(x) => Cow::Owned(x.to_string()),
        Value::Double(x) => Cow::Owned(x.to_string()),
        Value::Char(c) => Cow::Owned(c.to_string()),
        other => Cow::Owned(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ids::ConnId;
    use crate::message::Message;
    use crate::protocol::stomp::Limits;
    use crate::protocol::stomp::{Decoded, Decoder};

    fn delivery(body: Bytes) -> Delivery {
        Delivery {
            conn: ConnId(1),
            sub_id: "s".into(),
            ack: Some(7),
            message_id: Id { epoch: 1, seq: 3 },
            queue: Id { epoch: 1, seq: 1 },
            message: Arc::new(Message {
                address: "q".into(),
                routing: Routing::Anycast,
                durable: true,
                priority: 4,
                expiration_ms: None,
                deliver_at_ms: None,
                dup_id: None,
                properties: None,
                application: vec![("colour".into(), Value::String("red".into()))],
                annotations: Vec::new(),
                body: Body::Bytes(body),
            }),
            deliveries: 1,
            destination: "/queue/q".into(),
            original_address: None,
            expired: false,
            auto_settled: None,
            auto_settle_entries: Vec::new(),
        }
    }

    /// Small bodies in the frame, large ones beside it as stored; either
    /// way the bytes are one whole MESSAGE frame with that body.
    #[test]
    fn a_large_body_leaves_as_stored_and_the_frame_is_the_same() {
        let config = NodeConfig::default();
        for len in [0, 1, WireBytes::APART_MIN - 1, WireBytes::APART_MIN, 5000] {
            let body = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
            let wire = message_bytes(&config, &delivery(body.clone()), Version::V1_2);
            let apart = len >= WireBytes::APART_MIN;
            assert_eq!(!wire.body.is_empty(), apart, "{len} bytes");
            if apart {
                assert_eq!(wire.body.as_ptr(), body.as_ptr(), "not copied");
                assert_eq!(&wire.tail[..], FRAME_END);
            }
            let total = wire.len();
            let bytes = wire.joined();
            assert_eq!(bytes.len(), total);
            let mut d = Decoder::new(Limits::default());
            d.push(&bytes).unwrap();
            let Some(Decoded::Frame(f)) = d.next().unwrap() else {
                panic!("{len} bytes: no frame");
            };
            assert!(d.next().unwrap().is_none(), "one frame, nothing after it");
            assert_eq!(f.command, Command::Message);
            assert_eq!(f.body, body);
            assert_eq!(f.header("colour"), Some("red"));
            assert_eq!(f.header("ack"), Some("7"));
            let length = f.header("content-length").map(str::to_owned);
            assert_eq!(length, (len > 0).then(|| len.to_string()), "{len} bytes");
        }
    }
}
