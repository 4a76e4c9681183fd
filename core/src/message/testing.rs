//! Property-test strategies for messages and values (unit tests only).

use bytes::Bytes;
use proptest::prelude::*;

use super::model::{Body, Message, Properties};
use super::routing::Routing;
use super::value::Value;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        any::<u32>().prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        any::<f32>().prop_map(Value::Float),
        any::<f64>().prop_map(Value::Double),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(Value::Timestamp),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Value::Binary(Bytes::from(b))),
        ".{0,12}".prop_map(Value::String),
        "[a-z:-]{0,12}".prop_map(Value::Symbol),
    ]
}

pub fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            (inner.clone(), inner).prop_map(|(d, v)| Value::Described(Box::new((d, v)))),
        ]
    })
}

fn properties() -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(value()),
        proptest::option::of(".{0,8}"),
        proptest::option::of(value()),
        proptest::option::of("[a-z/]{0,8}"),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(message_id, subject, correlation_id, reply_to, t, seq)| Properties {
                message_id,
                subject,
                correlation_id,
                reply_to,
                creation_time_ms: t,
                group_sequence: seq,
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
        )
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Body::Text(Bytes::from(b))),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Body::Bytes(Bytes::from(b))),
        value().prop_map(Body::Value),
    ]
}

pub fn message() -> impl Strategy<Value = Message> {
    (
        "[a-zA-Z0-9_./:-]{1,20}",
        any::<bool>(),
        any::<bool>(),
        0u8..=9,
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        ),
        proptest::option::of(".{0,10}"),
        proptest::option::of(properties()),
        proptest::collection::vec(("[a-z_-]{1,8}", value()), 0..4),
        proptest::collection::vec(("x-opt-[a-z-]{1,8}", value()), 0..3),
        body(),
    )
        .prop_map(
            |(address, multi, durable, priority, (exp, at), dup_id, props, app, ann, body)| {
                Message {
                    address,
                    routing: if multi {
                        Routing::Multicast
                    } else {
                        Routing::Anycast
                    },
                    durable,
                    priority,
                    expiration_ms: exp,
                    deliver_at_ms: at,
                    dup_id,
                    properties: props.map(Box::new),
                    application: app,
                    annotations: ann,
                    body,
                }
            },
        )
}
