//! Message sections (spec 3.2): decoding a transfer's payload and encoding
//! a message, keeping what was sent.
//!
//! A decoded message re-encodes to the same sections with the same types:
//! same body kind (data, amqp-sequence or amqp-value), same properties,
//! same annotations in the same order. With [`Message::decode_lazy`] the
//! body is not decoded at all and is re-encoded byte for byte, which is
//! what a broker wants for the bare message it only forwards.

use bytes::{Bytes, BytesMut};

use super::composite::{
    descriptor_code, open_composite, read_composite, FieldEncoder, FieldReader, Fields,
};
use super::decode::{DecodeLimits, Reader};
use super::encode::{
    encode_binary, encode_binary_head, encode_descriptor_code, encode_list, encode_map, encode_str,
    encode_symbol, encode_value,
};
use super::error::CodecError;
use super::value::{map_get, Map, Symbol, Value};
use crate::wire_bytes::WireBytes;

const HEADER: u64 = 0x70;
const DELIVERY_ANNOTATIONS: u64 = 0x71;
const MESSAGE_ANNOTATIONS: u64 = 0x72;
const PROPERTIES: u64 = 0x73;
const APPLICATION_PROPERTIES: u64 = 0x74;
const DATA: u64 = 0x75;
const AMQP_SEQUENCE: u64 = 0x76;
const AMQP_VALUE: u64 = 0x77;
const FOOTER: u64 = 0x78;

const NAMES: &[(u64, &str)] = &[
    (HEADER, "amqp:header:list"),
    (DELIVERY_ANNOTATIONS, "amqp:delivery-annotations:map"),
    (MESSAGE_ANNOTATIONS, "amqp:message-annotations:map"),
    (PROPERTIES, "amqp:properties:list"),
    (APPLICATION_PROPERTIES, "amqp:application-properties:map"),
    (DATA, "amqp:data:binary"),
    (AMQP_SEQUENCE, "amqp:amqp-sequence:list"),
    (AMQP_VALUE, "amqp:value:*"),
    (FOOTER, "amqp:footer:map"),
];

/// Transport headers (spec 3.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub durable: bool,
    pub priority: u8,
    /// Milliseconds.
    pub ttl: Option<u32>,
    pub first_acquirer: bool,
    pub delivery_count: u32,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            durable: false,
            priority: 4,
            ttl: None,
            first_acquirer: false,
            delivery_count: 0,
        }
    }
}

/// Immutable properties of the bare message (spec 3.2.4).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Properties {
    /// ulong, uuid, binary or string.
    pub message_id: Option<Value>,
    pub user_id: Option<Bytes>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<Value>,
    pub content_type: Option<Symbol>,
    pub content_encoding: Option<Symbol>,
    /// Milliseconds since the epoch.
    pub absolute_expiry_time: Option<i64>,
    pub creation_time: Option<i64>,
    pub group_id: Option<String>,
    pub group_sequence: Option<u32>,
    pub reply_to_group_id: Option<String>,
}

/// The kind of a message's body: JMS maps its message types onto these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Data,
    Sequence,
    Value,
}

/// The application data.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Empty,
    /// One or more data sections.
    Data(Vec<Bytes>),
    /// One or more amqp-sequence sections.
    Sequence(Vec<Vec<Value>>),
    Value(Value),
    /// The body sections as sent, not decoded.
    Raw {
        kind: BodyKind,
        bytes: Bytes,
    },
}

impl Body {
    pub fn kind(&self) -> BodyKind {
        match self {
            Body::Empty => BodyKind::Empty,
            Body::Data(_) => BodyKind::Data,
            Body::Sequence(_) => BodyKind::Sequence,
            Body::Value(_) => BodyKind::Value,
            Body::Raw { kind, .. } => *kind,
        }
    }

    /// Decodes a raw body; any other body is returned as it is.
    pub fn decoded(self, limits: &DecodeLimits) -> Result<Body, CodecError> {
        let Body::Raw { bytes, .. } = self else {
            return Ok(self);
        };
        let mut r = Reader::new(bytes, limits);
        let mut body = Body::Empty;
        while !r.is_empty() {
            let v = r.read()?;
            let code = section_code(&v)?;
            add_body_section(&mut body, code, v)?;
        }
        Ok(body)
    }
}

/// A message: the header and annotations a hop may change, and the bare
/// message (properties, application properties, body) it must not.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub header: Option<Header>,
    pub delivery_annotations: Option<Map>,
    pub message_annotations: Option<Map>,
    pub properties: Option<Properties>,
    pub application_properties: Option<Map>,
    pub body: Body,
    pub footer: Option<Map>,
}

impl Default for Message {
    fn default() -> Message {
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: None,
            application_properties: None,
            body: Body::Empty,
            footer: None,
        }
    }
}

fn section_code(v: &Value) -> Result<u64, CodecError> {
    v.as_described()
        .and_then(|d| descriptor_code(&d.descriptor, NAMES))
        .filter(|c| (HEADER..=FOOTER).contains(c))
        .ok_or(CodecError::UnexpectedType {
            expected: "message section",
        })
}

fn section_value(v: Value) -> Value {
    match v {
        Value::Described(d) => d.value,
        other => other,
    }
}

fn section_map(v: Value, field: &'static str) -> Result<Map, CodecError> {
    match section_value(v) {
        Value::Map(m) => Ok(m),
        _ => Err(CodecError::InvalidField {
            type_name: "message",
            field,
        }),
    }
}

fn add_body_section(body: &mut Body, code: u64, v: Value) -> Result<(), CodecError> {
    match (code, &mut *body) {
        (DATA, Body::Empty) => *body = Body::Data(Vec::new()),
        (AMQP_SEQUENCE, Body::Empty) => *body = Body::Sequence(Vec::new()),
        (AMQP_VALUE, Body::Empty) => {
            *body = Body::Value(section_value(v));
            return Ok(());
        }
        _ => {}
    }
    match (code, body, section_value(v)) {
        (DATA, Body::Data(parts), Value::Binary(b)) => parts.push(b),
        (AMQP_SEQUENCE, Body::Sequence(parts), Value::List(l)) => parts.push(l),
        (DATA | AMQP_SEQUENCE, Body::Data(_) | Body::Sequence(_), _) => {
            return Err(CodecError::InvalidField {
                type_name: "message",
                field: "body",
            })
        }
        _ => return Err(CodecError::SectionOrder),
    }
    Ok(())
}

impl Message {
    /// Decodes every section of a transfer payload.
    pub fn decode(payload: Bytes, limits: &DecodeLimits) -> Result<Message, CodecError> {
        Message::decode_with(payload, limits, false, true)
    }

    /// Decodes the header, annotations, properties and footer but keeps the
    /// body sections as sent ([`Body::Raw`]).
    pub fn decode_lazy(payload: Bytes, limits: &DecodeLimits) -> Result<Message, CodecError> {
        Message::decode_with(payload, limits, true, true)
    }

    /// `in_place`: the header and properties are read without a `Value`
    /// tree (always, but for the test that compares the two ways).
    fn decode_with(
        payload: Bytes,
        limits: &DecodeLimits,
        lazy: bool,
        in_place: bool,
    ) -> Result<Message, CodecError> {
        let mut m = Message::default();
        let mut r = Reader::new(payload.clone(), limits);
        // The last section code seen: sections come in code order, only
        // data and amqp-sequence sections repeat, and one body kind only.
        let mut last = 0u64;
        let mut raw_body: Option<(BodyKind, usize, usize)> = None;
        while !r.is_empty() {
            let start = r.position();
            let code = match payload.get(start..start + 3) {
                // The usual descriptor (a small ulong), read without a
                // reader of its own.
                Some(&[0x00, 0x53, c]) if (HEADER..=FOOTER).contains(&u64::from(c)) => u64::from(c),
                _ => peek_code(&payload.slice(start..), limits)?,
            };
            let is_body = (DATA..=AMQP_VALUE).contains(&code);
            let repeat_ok = matches!(code, DATA | AMQP_SEQUENCE) && code == last;
            let other_body = is_body && (DATA..=AMQP_VALUE).contains(&last) && code != last;
            if code < last || (code == last && !repeat_ok) || other_body {
                return Err(CodecError::SectionOrder);
            }
            last = code;
            if lazy && is_body {
                // Walked, not built: the body stays as sent.
                r.skip()?;
                let kind = match code {
                    DATA => BodyKind::Data,
                    AMQP_SEQUENCE => BodyKind::Sequence,
                    _ => BodyKind::Value,
                };
                let first = raw_body.map_or(start, |(_, s, _)| s);
                raw_body = Some((kind, first, r.position()));
                continue;
            }
            // The header and properties in place, without a `Value` tree.
            if in_place && matches!(code, HEADER | PROPERTIES) {
                if let Some(head) = r.composite_head(code..=code) {
                    if code == HEADER {
                        m.header = Some(read_composite(&mut r, head, "header", read_header)?);
                    } else {
                        m.properties =
                            Some(read_composite(&mut r, head, "properties", read_properties)?);
                    }
                    continue;
                }
            }
            let v = r.read()?;
            match code {
                HEADER => m.header = Some(decode_header(v)?),
                DELIVERY_ANNOTATIONS => {
                    m.delivery_annotations = Some(section_map(v, "delivery-annotations")?)
                }
                MESSAGE_ANNOTATIONS => {
                    m.message_annotations = Some(section_map(v, "message-annotations")?)
                }
                PROPERTIES => m.properties = Some(decode_properties(v)?),
                APPLICATION_PROPERTIES => {
                    m.application_properties = Some(section_map(v, "application-properties")?)
                }
                FOOTER => m.footer = Some(section_map(v, "footer")?),
                _ => add_body_section(&mut m.body, code, v)?,
            }
        }
        if let Some((kind, s, e)) = raw_body {
            m.body = Body::Raw {
                kind,
                bytes: payload.slice(s..e),
            };
        }
        Ok(m)
    }

    /// Encodes the message as a transfer payload. Sections are written
    /// from the message as it is, never cloned into a `Value` first.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_before_body(out);
        self.encode_body(out);
        self.encode_footer(out);
    }

    /// The message as a transfer payload in pieces: a large body (one data
    /// section, or a body kept as sent) is the buffer it is stored in, not
    /// a copy; the sections before it are the head and a footer the tail.
    pub fn to_wire(&self) -> WireBytes {
        let apart = match &self.body {
            Body::Data(parts) if parts.len() == 1 => &parts[0],
            Body::Raw { bytes, .. } => bytes,
            _ => return self.to_bytes().into(),
        };
        if apart.len() < WireBytes::APART_MIN {
            return self.to_bytes().into();
        }
        let mut head = BytesMut::with_capacity(256);
        self.encode_before_body(&mut head);
        if let Body::Data(_) = &self.body {
            encode_descriptor_code(DATA, &mut head);
            encode_binary_head(apart.len(), &mut head);
        }
        let mut tail = BytesMut::new();
        self.encode_footer(&mut tail);
        WireBytes {
            head: head.freeze(),
            body: apart.clone(),
            tail: tail.freeze(),
        }
    }

    fn encode_before_body(&self, out: &mut BytesMut) {
        let map = |code: u64, m: &Map, out: &mut BytesMut| {
            encode_descriptor_code(code, out);
            encode_map(m, out);
        };
        if let Some(h) = &self.header {
            header_fields(h, &mut FieldEncoder::new(out, HEADER)).finish();
        }
        if let Some(m) = &self.delivery_annotations {
            map(DELIVERY_ANNOTATIONS, m, out);
        }
        if let Some(m) = &self.message_annotations {
            map(MESSAGE_ANNOTATIONS, m, out);
        }
        if let Some(p) = &self.properties {
            properties_fields(p, &mut FieldEncoder::new(out, PROPERTIES)).finish();
        }
        if let Some(m) = &self.application_properties {
            map(APPLICATION_PROPERTIES, m, out);
        }
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match &self.body {
            Body::Empty => {}
            Body::Data(parts) => {
                for b in parts {
                    encode_descriptor_code(DATA, out);
                    encode_binary(b, out);
                }
            }
            Body::Sequence(parts) => {
                for l in parts {
                    encode_descriptor_code(AMQP_SEQUENCE, out);
                    encode_list(l, out);
                }
            }
            Body::Value(v) => {
                encode_descriptor_code(AMQP_VALUE, out);
                encode_value(v, out);
            }
            Body::Raw { bytes, .. } => out.extend_from_slice(bytes),
        }
    }

    fn encode_footer(&self, out: &mut BytesMut) {
        if let Some(m) = &self.footer {
            encode_descriptor_code(FOOTER, out);
            encode_map(m, out);
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        // Sized for the body and typical sections: one allocation, not a
        // series of regrowths each copying the body so far.
        let body = match &self.body {
            Body::Data(parts) => parts.iter().map(Bytes::len).sum(),
            Body::Raw { bytes, .. } => bytes.len(),
            _ => 0,
        };
        let mut out = BytesMut::with_capacity(body + 256);
        self.encode(&mut out);
        out.freeze()
    }

    /// A message annotation by its symbol key (e.g. `x-opt-jms-msg-type`).
    pub fn message_annotation(&self, key: &str) -> Option<&Value> {
        self.message_annotations
            .as_ref()
            .and_then(|m| map_get(m, key))
    }

    /// Sets a message annotation, replacing one with the same key.
    pub fn set_message_annotation(&mut self, key: Symbol, value: Value) {
        let m = self.message_annotations.get_or_insert_with(Vec::new);
        match m.iter_mut().find(|(k, _)| k.as_str() == Some(key.as_str())) {
            Some((_, v)) => *v = value,
            None => m.push((Value::Symbol(key), value)),
        }
    }

    /// An application property by name.
    pub fn application_property(&self, key: &str) -> Option<&Value> {
        self.application_properties
            .as_ref()
            .and_then(|m| map_get(m, key))
    }
}

/// The code of the section starting `bytes`, read from its descriptor
/// alone so that a body the caller chose not to decode is not decoded.
fn peek_code(bytes: &Bytes, limits: &DecodeLimits) -> Result<u64, CodecError> {
    let mut r = Reader::new(bytes.clone(), limits);
    r.read_descriptor()?
        .and_then(|d| descriptor_code(&d, NAMES))
        .filter(|c| (HEADER..=FOOTER).contains(c))
        .ok_or(CodecError::UnexpectedType {
            expected: "message section",
        })
}

fn decode_header(v: Value) -> Result<Header, CodecError> {
    read_header(&mut open_composite(v, HEADER, NAMES[0].1, "header")?)
}

fn read_header(f: &mut FieldReader<'_, '_>) -> Result<Header, CodecError> {
    Ok(Header {
        durable: f.bool_or("durable", false)?,
        priority: f.opt_u8("priority")?.unwrap_or(4),
        ttl: f.opt_u32("ttl")?,
        first_acquirer: f.bool_or("first-acquirer", false)?,
        delivery_count: f.opt_u32("delivery-count")?.unwrap_or(0),
    })
}

/// The header's fields, listed once for both writers: straight into the
/// output for every delivery, as a `Value` where a caller wants one.
fn header_fields<'f, F: Fields>(h: &Header, f: &'f mut F) -> &'f mut F {
    f.unless_default(h.durable, false)
        .opt((h.priority != 4).then_some(Value::Ubyte(h.priority)))
        .opt(h.ttl)
        .unless_default(h.first_acquirer, false)
        .unless_default(h.delivery_count, 0)
}

fn decode_properties(v: Value) -> Result<Properties, CodecError> {
    read_properties(&mut open_composite(
        v,
        PROPERTIES,
        NAMES[3].1,
        "properties",
    )?)
}

fn read_properties(f: &mut FieldReader<'_, '_>) -> Result<Properties, CodecError> {
    Ok(Properties {
        message_id: f.opt()?,
        user_id: f.opt_binary("user-id")?,
        to: f.opt_string("to")?,
        subject: f.opt_string("subject")?,
        reply_to: f.opt_string("reply-to")?,
        correlation_id: f.opt()?,
        content_type: f.opt_symbol("content-type")?,
        content_encoding: f.opt_symbol("content-encoding")?,
        absolute_expiry_time: f.opt_timestamp("absolute-expiry-time")?,
        creation_time: f.opt_timestamp("creation-time")?,
        group_id: f.opt_string("group-id")?,
        group_sequence: f.opt_u32("group-sequence")?,
        reply_to_group_id: f.opt_string("reply-to-group-id")?,
    })
}

/// The properties' fields, the same way: held by reference, so a
/// delivery clones none of its strings to encode them.
fn properties_fields<'f, F: Fields>(p: &Properties, f: &'f mut F) -> &'f mut F {
    let text = |s: &String| Value::String(s.clone());
    let put_text = |s: &String, out: &mut BytesMut| encode_str(s, out);
    let symbol = |s: &Symbol| Value::Symbol(s.clone());
    let put_symbol = |s: &Symbol, out: &mut BytesMut| encode_symbol(s.as_str(), out);
    // An id that is null is written as an absent field (trailing nulls go).
    fn id(v: &Option<Value>) -> Option<&Value> {
        v.as_ref().filter(|v| !v.is_null())
    }
    f.opt_with(id(&p.message_id), Value::clone, encode_value)
        .opt_with(
            p.user_id.as_ref(),
            |b| Value::Binary(b.clone()),
            |b, out| encode_binary(b, out),
        )
        .opt_with(p.to.as_ref(), text, put_text)
        .opt_with(p.subject.as_ref(), text, put_text)
        .opt_with(p.reply_to.as_ref(), text, put_text)
        .opt_with(id(&p.correlation_id), Value::clone, encode_value)
        .opt_with(p.content_type.as_ref(), symbol, put_symbol)
        .opt_with(p.content_encoding.as_ref(), symbol, put_symbol)
        .opt(p.absolute_expiry_time.map(Value::Timestamp))
        .opt(p.creation_time.map(Value::Timestamp))
        .opt_with(p.group_id.as_ref(), text, put_text)
        .opt(p.group_sequence)
        .opt_with(p.reply_to_group_id.as_ref(), text, put_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with every section the in-place path reads, and the
    /// values around them.
    fn sample() -> Bytes {
        let m = Message {
            header: Some(Header {
                durable: true,
                priority: 7,
                ttl: Some(60_000),
                first_acquirer: false,
                delivery_count: 2,
            }),
            delivery_annotations: None,
            message_annotations: Some(vec![(Value::symbol("x-opt-jms-msg-type"), Value::Byte(5))]),
            properties: Some(Properties {
                message_id: Some(Value::String("ID:abc:1:1:1-1".into())),
                to: Some("queue://orders".into()),
                // Long enough that the properties are a list32.
                subject: Some("s".repeat(300)),
                correlation_id: Some(Value::Ulong(300)),
                content_type: Symbol::new("text/plain"),
                absolute_expiry_time: Some(1_700_000_000_000),
                creation_time: Some(1_600_000_000_000),
                group_sequence: Some(3),
                ..Properties::default()
            }),
            application_properties: Some(vec![(Value::String("k".into()), Value::Int(1))]),
            body: Body::Value(Value::String("hello".into())),
            footer: None,
        };
        m.to_bytes()
    }

    /// The header and properties written in place are the bytes their
    /// `Value`s encode to, with every field set, none, and one at a time
    /// (trailing nulls dropped the same way).
    #[test]
    fn header_and_properties_in_place_match_their_values() {
        use super::super::composite::FieldWriter;
        use super::super::encode;
        let full = Properties {
            message_id: Some(Value::String("ID:abc:1:1:1-1".into())),
            user_id: Some(Bytes::from_static(b"me")),
            to: Some("queue://orders".into()),
            subject: Some("s".repeat(300)),
            reply_to: Some("temp-queue://x".into()),
            correlation_id: Some(Value::Ulong(300)),
            content_type: Symbol::new("text/plain"),
            content_encoding: Symbol::new("gzip"),
            absolute_expiry_time: Some(1_700_000_000_000),
            creation_time: Some(1_600_000_000_000),
            group_id: Some("g".into()),
            group_sequence: Some(3),
            reply_to_group_id: Some("rg".into()),
        };
        let mut cases = vec![full.clone(), Properties::default()];
        for i in 0..13 {
            let mut one = Properties::default();
            match i {
                0 => one.message_id = full.message_id.clone(),
                1 => one.user_id = full.user_id.clone(),
                2 => one.to = full.to.clone(),
                3 => one.subject = full.subject.clone(),
                4 => one.reply_to = full.reply_to.clone(),
                5 => one.correlation_id = full.correlation_id.clone(),
                6 => one.content_type = full.content_type.clone(),
                7 => one.content_encoding = full.content_encoding.clone(),
                8 => one.absolute_expiry_time = full.absolute_expiry_time,
                9 => one.creation_time = full.creation_time,
                10 => one.group_id = full.group_id.clone(),
                11 => one.group_sequence = full.group_sequence,
                _ => one.reply_to_group_id = full.reply_to_group_id.clone(),
            }
            cases.push(one);
        }
        for p in &cases {
            let mut fast = BytesMut::new();
            properties_fields(p, &mut FieldEncoder::new(&mut fast, PROPERTIES)).finish();
            let value = properties_fields(p, &mut FieldWriter::new()).finish(PROPERTIES);
            assert_eq!(fast, encode::to_bytes(&value), "{p:?}");
        }
        let headers = [
            Header::default(),
            Header {
                durable: true,
                priority: 9,
                ttl: Some(1_000),
                first_acquirer: true,
                delivery_count: 300,
            },
            Header {
                durable: true,
                ..Header::default()
            },
        ];
        for h in &headers {
            let mut fast = BytesMut::new();
            header_fields(h, &mut FieldEncoder::new(&mut fast, HEADER)).finish();
            let value = header_fields(h, &mut FieldWriter::new()).finish(HEADER);
            assert_eq!(fast, encode::to_bytes(&value), "{h:?}");
        }
    }

    /// Every single-byte change and every truncation of the sample decodes
    /// to the same message, or fails with the same error, both ways.
    #[test]
    fn in_place_sections_decode_as_values_do() {
        let original = sample();
        let small = DecodeLimits {
            depth_max: 3,
            items_max: 12,
            values_max: 40,
        };
        let mut inputs = vec![original.to_vec()];
        for i in 0..original.len() {
            inputs.push(original[..i].to_vec());
            for b in [0x00, 0x40, 0x45, 0x52, 0x53, 0xa1, 0xc0, 0xd0, 0xff] {
                let mut v = original.to_vec();
                v[i] = b;
                inputs.push(v);
            }
            let mut v = original.to_vec();
            v[i] = v[i].wrapping_add(1);
            inputs.push(v);
        }
        let mut ok = 0;
        for limits in [DecodeLimits::default(), small] {
            for input in &inputs {
                for lazy in [false, true] {
                    let b = Bytes::from(input.clone());
                    let fast = Message::decode_with(b.clone(), &limits, lazy, true);
                    let slow = Message::decode_with(b, &limits, lazy, false);
                    assert_eq!(fast, slow, "input {input:02x?} lazy {lazy} {limits:?}");
                    ok += usize::from(fast.is_ok());
                }
            }
        }
        // Both outcomes were exercised.
        assert!(
            ok > 10 && ok < inputs.len() * 4,
            "{ok} of {} decoded",
            inputs.len() * 4
        );
    }

    /// A message in pieces is the same bytes as in one buffer, and a large
    /// body (one data section, or a body kept as sent) is the stored
    /// buffer itself.
    #[test]
    fn pieces_join_to_the_one_buffer_encoding() {
        let data = |n: usize| Bytes::from((0..n).map(|i| i as u8).collect::<Vec<u8>>());
        let with = |body: Body, footer: bool| Message {
            message_annotations: Some(vec![(Value::symbol("x-opt-jms-msg-type"), Value::Byte(3))]),
            application_properties: Some(vec![(Value::String("k".into()), Value::Int(1))]),
            footer: footer.then(|| vec![(Value::symbol("x-f"), Value::Ulong(9))]),
            body,
            ..Message::default()
        };
        let mut cases = Vec::new();
        for n in [0, 1, 255, 256, 511, 512, 1024, 70_000] {
            for footer in [false, true] {
                let b = data(n);
                let apart = n >= WireBytes::APART_MIN;
                cases.push((
                    with(Body::Data(vec![b.clone()]), footer),
                    apart.then_some(b),
                ));
            }
        }
        cases.push((with(Body::Data(vec![data(600), data(600)]), false), None));
        cases.push((
            with(Body::Value(Value::String("x".repeat(900))), true),
            None,
        ));
        cases.push((with(Body::Empty, false), None));
        // A body kept as sent (lazy decode) comes apart as its raw bytes.
        let sent = with(Body::Data(vec![data(2000)]), true).to_bytes();
        let lazy = Message::decode_lazy(sent, &DecodeLimits::default()).unwrap();
        let Body::Raw { bytes, .. } = &lazy.body else {
            panic!("not kept as sent: {:?}", lazy.body)
        };
        let raw = bytes.clone();
        cases.push((lazy, Some(raw)));
        for (m, apart) in cases {
            let one = m.to_bytes();
            let wire = m.to_wire();
            assert_eq!(wire.len(), one.len());
            match &apart {
                Some(b) => {
                    assert_eq!(wire.body.as_ptr(), b.as_ptr(), "body copied");
                    assert_eq!(wire.body.len(), b.len());
                }
                None => assert!(wire.body.is_empty() && wire.tail.is_empty()),
            }
            assert_eq!(wire.joined(), one);
            let again = Message::decode(one.clone(), &DecodeLimits::default()).unwrap();
            assert_eq!(again.to_bytes(), one);
        }
    }
}
