//! The AMQP codec: byte vectors from the spec's encodings, round trips,
//! messages kept as sent, and hostile input that must fail cleanly.

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::{
    decode_amqp_body, decode_value, encode_performative, to_bytes, AttachTarget, Body, BodyKind,
    CodecError, Condition, DecodeLimits, DeliveryState, Descriptor, FrameDecoder, FrameError,
    Header, Item, Message, Performative, Properties, ProtocolHeader, Source, Symbol, Target,
    Terminus, TxnRequest, Value, AMQP_HEADER,
};
use proptest::prelude::*;

fn dec(bytes: &[u8]) -> Result<Value, CodecError> {
    decode_value(Bytes::copy_from_slice(bytes), &DecodeLimits::default())
}

fn enc(v: &Value) -> Vec<u8> {
    to_bytes(v).to_vec()
}

#[test]
fn primitive_encodings_match_the_spec() {
    // (value, its smallest encoding per spec part 1.6)
    let cases: Vec<(Value, Vec<u8>)> = vec![
        (Value::Null, vec![0x40]),
        (Value::Bool(true), vec![0x41]),
        (Value::Bool(false), vec![0x42]),
        (Value::Ubyte(7), vec![0x50, 7]),
        (Value::Ushort(0x1234), vec![0x60, 0x12, 0x34]),
        (Value::Uint(0), vec![0x43]),
        (Value::Uint(200), vec![0x52, 200]),
        (Value::Uint(0x0102_0304), vec![0x70, 1, 2, 3, 4]),
        (Value::Ulong(0), vec![0x44]),
        (Value::Ulong(0x10), vec![0x53, 0x10]),
        (Value::Ulong(256), vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0]),
        (Value::Byte(-1), vec![0x51, 0xff]),
        (Value::Short(-2), vec![0x61, 0xff, 0xfe]),
        (Value::Int(-3), vec![0x54, 0xfd]),
        (Value::Int(1000), vec![0x71, 0, 0, 0x03, 0xe8]),
        (Value::Long(5), vec![0x55, 5]),
        (
            Value::Long(-1000),
            vec![0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x18],
        ),
        (Value::Float(1.0), vec![0x72, 0x3f, 0x80, 0, 0]),
        (Value::Double(1.0), vec![0x82, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        (Value::Char('A'), vec![0x73, 0, 0, 0, 0x41]),
        (Value::Timestamp(1), vec![0x83, 0, 0, 0, 0, 0, 0, 0, 1]),
        (Value::Uuid([9; 16]), [vec![0x98], vec![9; 16]].concat()),
        (
            Value::Binary(Bytes::from_static(b"ab")),
            vec![0xa0, 2, b'a', b'b'],
        ),
        (Value::String("hi".into()), vec![0xa1, 2, b'h', b'i']),
        (Value::symbol("sym"), vec![0xa3, 3, b's', b'y', b'm']),
        (Value::List(vec![]), vec![0x45]),
        (
            Value::List(vec![Value::Uint(1), Value::Null]),
            vec![0xc0, 4, 2, 0x52, 1, 0x40],
        ),
        (
            Value::Map(vec![(Value::symbol("k"), Value::Bool(true))]),
            vec![0xc1, 5, 2, 0xa3, 1, b'k', 0x41],
        ),
        (
            Value::Array(vec![Value::symbol("a"), Value::symbol("bc")]),
            vec![0xe0, 13, 2, 0xb3, 0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c'],
        ),
        (
            Value::described(Descriptor::Code(0x24), Value::List(vec![])),
            vec![0x00, 0x53, 0x24, 0x45],
        ),
    ];
    for (v, bytes) in cases {
        assert_eq!(enc(&v), bytes, "encoding of {v:?}");
        assert_eq!(dec(&bytes).unwrap(), v, "decoding of {bytes:02x?}");
    }
}

#[test]
fn compounds_take_the_short_form_only_when_size_and_count_fit_a_byte() {
    // A map inside a list, both short: each header is code, size, count.
    let inner = Value::Map(vec![(Value::symbol("k"), Value::Uint(1))]);
    let outer = Value::List(vec![Value::Null, inner, Value::Bool(true)]);
    assert_eq!(
        enc(&outer),
        vec![0xc0, 11, 3, 0x40, 0xc1, 6, 2, 0xa3, 1, b'k', 0x52, 1, 0x41]
    );
    // 255 bytes of body: the size (body + count byte) no longer fits.
    let long = Value::List(vec![Value::Binary(Bytes::from(vec![7u8; 253]))]);
    let mut want = vec![0xd0, 0, 0, 1, 3, 0, 0, 0, 1, 0xa0, 253];
    want.extend_from_slice(&[7u8; 253]);
    assert_eq!(enc(&long), want);
    // 256 items: the count no longer fits.
    let many = Value::List(vec![Value::Null; 256]);
    let mut want = vec![0xd0, 0, 0, 1, 4, 0, 0, 1, 0];
    want.extend_from_slice(&[0x40; 256]);
    assert_eq!(enc(&many), want);
    // A short list after a long one in the same buffer.
    let both = Value::List(vec![many.clone(), Value::List(vec![Value::Null])]);
    let got = enc(&both);
    assert_eq!(&got[got.len() - 4..], &[0xc0, 2, 1, 0x40]);
    assert_eq!(dec(&got).unwrap(), both);
}

#[test]
fn wider_encodings_decode_to_the_same_values() {
    assert_eq!(dec(&[0x70, 0, 0, 0, 5]).unwrap(), Value::Uint(5));
    assert_eq!(
        dec(&[0xb1, 0, 0, 0, 1, b'x']).unwrap(),
        Value::String("x".into())
    );
    assert_eq!(
        dec(&[0xd0, 0, 0, 0, 5, 0, 0, 0, 1, 0x40]).unwrap(),
        Value::List(vec![Value::Null])
    );
    assert_eq!(dec(&[0x56, 1]).unwrap(), Value::Bool(true));
    // A described value with a symbolic descriptor.
    let v = dec(&[0x00, 0xa3, 3, b'a', b':', b'b', 0x45]).unwrap();
    assert!(v.has_descriptor(0, "a:b"));
    // An array of described ulongs (shared constructor).
    let v = dec(&[0xe0, 0x07, 2, 0x00, 0x53, 0x01, 0x52, 0x05, 0x06]).unwrap();
    let Value::Array(items) = v else {
        panic!("not an array")
    };
    assert_eq!(items.len(), 2);
    assert!(items[1].has_descriptor(1, ""));
}

/// A frame from the spec's examples: an empty `accepted` disposition.
#[test]
fn performatives_encode_as_described_lists() {
    let d = Performative::Disposition(halyard_core::protocol::amqp::Disposition {
        role: halyard_core::protocol::amqp::Role::Receiver,
        first: 3,
        last: Some(5),
        settled: true,
        state: Some(DeliveryState::Accepted),
        batchable: false,
    });
    let mut out = BytesMut::new();
    encode_performative(&mut out, 1, &d, &[]);
    let expected: Vec<u8> = vec![
        0, 0, 0, 0x18, 2, 0, 0, 1, // frame header: size 24, doff 2, AMQP, channel 1
        0x00, 0x53, 0x15, // disposition
        0xc0, 0x0b, 5, // list8: size 11, 5 fields
        0x41, 0x52, 3, 0x52, 5, 0x41, // role receiver, first 3, last 5, settled
        0x00, 0x53, 0x24, 0x45, // accepted
    ];
    assert_eq!(out.to_vec(), expected);
    let (back, payload) =
        decode_amqp_body(out.freeze().slice(8..), &DecodeLimits::default()).unwrap();
    assert_eq!(back, d);
    assert!(payload.is_empty());
}

#[test]
fn attach_with_jms_source_round_trips() {
    let selector = Value::described(
        Descriptor::Symbol(Symbol::new("apache.org:selector-filter:string").unwrap()),
        Value::String("color = 'red'".into()),
    );
    let source = Source {
        terminus: Terminus {
            address: Some("orders".into()),
            durable: halyard_core::protocol::amqp::TerminusDurability::UnsettledState,
            expiry_policy: halyard_core::protocol::amqp::ExpiryPolicy::Never,
            capabilities: vec![Symbol::from("topic"), Symbol::from("shared")],
            ..Terminus::default()
        },
        distribution_mode: Some(Symbol::from("copy")),
        filter: Some(vec![(Value::symbol("jms-selector"), selector)]),
        default_outcome: Some(DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: false,
            message_annotations: None,
        }),
        outcomes: vec![
            Symbol::from("amqp:accepted:list"),
            Symbol::from("amqp:rejected:list"),
        ],
    };
    assert_eq!(source.selector(), Some("color = 'red'"));
    let attach = halyard_core::protocol::amqp::Attach {
        name: "sub|global".into(),
        handle: 7,
        role: halyard_core::protocol::amqp::Role::Receiver,
        snd_settle_mode: Default::default(),
        rcv_settle_mode: Default::default(),
        source: Some(source),
        target: Some(AttachTarget::Target(Target {
            terminus: Terminus {
                dynamic: true,
                dynamic_node_properties: Some(vec![(
                    Value::symbol("lifetime-policy"),
                    Value::described(Descriptor::Code(0x2b), Value::List(vec![])),
                )]),
                ..Terminus::default()
            },
        })),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: Some(1 << 20),
        offered_capabilities: vec![],
        desired_capabilities: vec![Symbol::from("SHARED-SUBS")],
        properties: None,
    };
    let p = Performative::Attach(Box::new(attach));
    let back = Performative::from_value(dec(&enc(&p.to_value())).unwrap()).unwrap();
    assert_eq!(back, p);
}

#[test]
fn coordinator_and_transactions_round_trip() {
    let t = AttachTarget::Coordinator(halyard_core::protocol::amqp::Coordinator {
        capabilities: vec![Symbol::from("amqp:local-transactions")],
    });
    assert_eq!(
        AttachTarget::from_value(dec(&enc(&t.to_value())).unwrap()).unwrap(),
        t
    );
    for r in [
        TxnRequest::Declare { global_id: None },
        TxnRequest::Discharge {
            txn_id: Bytes::from_static(b"tx1"),
            fail: true,
        },
    ] {
        assert_eq!(
            TxnRequest::from_value(dec(&enc(&r.to_value())).unwrap()).unwrap(),
            r
        );
    }
    for s in [
        DeliveryState::Declared {
            txn_id: Bytes::from_static(b"tx1"),
        },
        DeliveryState::Transactional {
            txn_id: Bytes::from_static(b"tx1"),
            outcome: Some(Box::new(DeliveryState::Accepted)),
        },
        DeliveryState::Received {
            section_number: 1,
            section_offset: 2,
        },
        DeliveryState::Rejected {
            error: Some(halyard_core::protocol::amqp::AmqpError::new(
                Condition::NotFound,
                "gone",
            )),
        },
        DeliveryState::Released,
    ] {
        assert_eq!(
            DeliveryState::from_value(dec(&enc(&s.to_value())).unwrap()).unwrap(),
            s
        );
    }
}

fn jms_text_message() -> Message {
    Message {
        header: Some(Header {
            durable: true,
            priority: 9,
            ttl: Some(60_000),
            ..Header::default()
        }),
        delivery_annotations: None,
        message_annotations: Some(vec![
            (Value::symbol("x-opt-jms-msg-type"), Value::Byte(5)),
            (Value::symbol("x-opt-jms-dest"), Value::Byte(0)),
            (Value::symbol("x-opt-delivery-delay"), Value::Long(5000)),
        ]),
        properties: Some(Properties {
            message_id: Some(Value::String("ID:abc:1:1:1-1".into())),
            to: Some("queue://orders".into()),
            reply_to: Some("temp-queue://x".into()),
            correlation_id: Some(Value::Ulong(42)),
            content_type: Some(Symbol::from("text/plain")),
            absolute_expiry_time: Some(1_700_000_060_000),
            creation_time: Some(1_700_000_000_000),
            group_id: Some("g".into()),
            group_sequence: Some(3),
            ..Properties::default()
        }),
        application_properties: Some(vec![
            (Value::String("color".into()), Value::String("red".into())),
            (Value::String("n".into()), Value::Int(7)),
        ]),
        body: Body::Value(Value::String("hello".into())),
        footer: None,
    }
}

#[test]
fn messages_round_trip_with_every_body_kind() {
    let mut m = jms_text_message();
    for body in [
        Body::Value(Value::String("hello".into())),
        Body::Data(vec![
            Bytes::from_static(b"\x00\x01"),
            Bytes::from_static(b"more"),
        ]),
        Body::Sequence(vec![vec![Value::Int(1)], vec![Value::String("x".into())]]),
        Body::Value(Value::Map(vec![(
            Value::String("k".into()),
            Value::Long(1),
        )])),
        Body::Empty,
    ] {
        m.body = body;
        let bytes = m.to_bytes();
        assert_eq!(
            Message::decode(bytes.clone(), &DecodeLimits::default()).unwrap(),
            m
        );
        // Decoded lazily, the body stays the bytes sent, and re-encoding
        // gives back exactly the payload.
        let lazy = Message::decode_lazy(bytes.clone(), &DecodeLimits::default()).unwrap();
        assert_eq!(lazy.body.kind(), m.body.kind());
        assert_eq!(lazy.properties, m.properties);
        assert_eq!(lazy.to_bytes(), bytes);
        assert_eq!(lazy.body.decoded(&DecodeLimits::default()).unwrap(), m.body);
    }
    assert_eq!(
        m.message_annotation("x-opt-jms-msg-type"),
        Some(&Value::Byte(5))
    );
    assert_eq!(m.application_property("n"), Some(&Value::Int(7)));
}

#[test]
fn lazy_decode_changes_only_what_the_broker_changes() {
    let m = jms_text_message();
    let mut lazy = Message::decode_lazy(m.to_bytes(), &DecodeLimits::default()).unwrap();
    assert_eq!(lazy.body.kind(), BodyKind::Value);
    lazy.header.as_mut().unwrap().delivery_count = 2;
    lazy.set_message_annotation(Symbol::from("x-opt-jms-dest"), Value::Byte(1));
    let again = Message::decode(lazy.to_bytes(), &DecodeLimits::default()).unwrap();
    assert_eq!(again.header.as_ref().unwrap().delivery_count, 2);
    assert_eq!(
        again.message_annotation("x-opt-jms-dest"),
        Some(&Value::Byte(1))
    );
    assert_eq!(again.body, m.body);
    assert_eq!(again.application_properties, m.application_properties);
}

#[test]
fn sections_out_of_order_or_mixed_bodies_are_refused() {
    let props = Message {
        properties: Some(Properties::default()),
        ..Message::default()
    }
    .to_bytes();
    let header = Message {
        header: Some(Header::default()),
        ..Message::default()
    }
    .to_bytes();
    let value = Message {
        body: Body::Value(Value::Null),
        ..Message::default()
    }
    .to_bytes();
    let data = Message {
        body: Body::Data(vec![Bytes::new()]),
        ..Message::default()
    }
    .to_bytes();
    let l = DecodeLimits::default();
    assert_eq!(
        Message::decode([props.clone(), header].concat().into(), &l),
        Err(CodecError::SectionOrder)
    );
    assert_eq!(
        Message::decode([value.clone(), value.clone()].concat().into(), &l),
        Err(CodecError::SectionOrder)
    );
    assert_eq!(
        Message::decode([data.clone(), value].concat().into(), &l),
        Err(CodecError::SectionOrder)
    );
    assert!(Message::decode([data.clone(), data].concat().into(), &l).is_ok());
    assert!(Message::decode(Bytes::from_static(&[0x40]), &l).is_err());
}

#[test]
fn hostile_values_fail_with_clear_errors() {
    // A list claiming more items than bytes.
    assert!(matches!(
        dec(&[0xc0, 2, 200, 0x40]),
        Err(CodecError::SizeMismatch { .. })
    ));
    // A list32 claiming 4 GB.
    assert_eq!(
        dec(&[0xd0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]),
        Err(CodecError::Truncated)
    );
    // Sizes that disagree with the contents.
    assert!(matches!(
        dec(&[0xc0, 3, 1, 0x40, 0x40]),
        Err(CodecError::SizeMismatch { .. })
    ));
    // A map with an odd count.
    assert_eq!(dec(&[0xc1, 2, 1, 0x40]), Err(CodecError::OddMapCount));
    // Bad UTF-8, non-ASCII symbol, bad char, bad boolean, unknown code.
    assert_eq!(dec(&[0xa1, 1, 0xff]), Err(CodecError::InvalidUtf8));
    assert_eq!(dec(&[0xa3, 1, 0xc3]), Err(CodecError::InvalidSymbol));
    assert_eq!(
        dec(&[0x73, 0, 0, 0xd8, 0]),
        Err(CodecError::InvalidChar(0xd800))
    );
    assert!(dec(&[0x56, 2]).is_err());
    assert_eq!(dec(&[0xff]), Err(CodecError::InvalidFormatCode(0xff)));
    assert_eq!(dec(&[]), Err(CodecError::Truncated));
    // Deep nesting is refused before the stack is at risk.
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.extend_from_slice(&[0xd0, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1]);
    }
    let r = decode_value(Bytes::from(deep), &DecodeLimits::default());
    assert!(
        matches!(
            r,
            Err(CodecError::TooDeep { max: 32 }) | Err(CodecError::Truncated)
        ),
        "{r:?}"
    );
    let mut deep = Vec::new();
    for i in (0..100u32).rev() {
        deep.push(0xc0);
        deep.push(u8::try_from(2 + 3 * i).unwrap_or(255));
        deep.push(1);
    }
    deep.push(0x40);
    let r = decode_value(Bytes::from(deep), &DecodeLimits::default());
    assert!(
        matches!(
            r,
            Err(CodecError::TooDeep { .. }) | Err(CodecError::SizeMismatch { .. })
        ),
        "{r:?}"
    );
    // An array of a billion zero-width `true`s in 10 bytes.
    let bomb = [0xf0, 0, 0, 0, 5, 0x3b, 0x9a, 0xca, 0x00, 0x41];
    assert!(matches!(dec(&bomb), Err(CodecError::TooManyItems { .. })));
    let limits = DecodeLimits {
        items_max: u32::MAX,
        values_max: 1000,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode_value(Bytes::copy_from_slice(&bomb), &limits),
        Err(CodecError::TooManyValues { max: 1000 })
    ));
    assert_eq!(
        CodecError::TooDeep { max: 1 }.condition(),
        Condition::ResourceLimitExceeded
    );
    assert_eq!(CodecError::Truncated.condition(), Condition::DecodeError);
}

#[test]
fn frame_decoder_detects_headers_and_bounds_frames() {
    let mut d = FrameDecoder::new(512, 1 << 20);
    d.push(b"AMQP\x03\x01").unwrap();
    assert_eq!(d.next_item().unwrap(), None);
    d.push(b"\x00\x00").unwrap();
    assert_eq!(
        d.next_item().unwrap(),
        Some(Item::Header(ProtocolHeader::Sasl))
    );
    // An empty frame, byte by byte.
    for b in [0, 0, 0, 8, 2, 0, 0, 0] {
        d.push(&[b]).unwrap();
    }
    let Some(Item::Frame(f)) = d.next_item().unwrap() else {
        panic!("no frame")
    };
    assert!(f.body.is_empty() && !f.sasl);
    // Too large: refused from the header alone.
    d.push(&[0, 0, 2, 1, 2, 0, 0, 0]).unwrap();
    assert_eq!(
        d.next_item(),
        Err(FrameError::TooLarge {
            size: 513,
            max: 512
        })
    );
    assert_eq!(
        d.next_item(),
        Err(FrameError::TooLarge {
            size: 513,
            max: 512
        }),
        "sticky"
    );

    let mut d = FrameDecoder::new(512, 1 << 20);
    d.push(b"HTTP").unwrap();
    assert!(matches!(d.next_item(), Err(FrameError::BadHeader(_))));
    let mut d = FrameDecoder::new(512, 1 << 20);
    d.push(b"AMQP\x01\x01\x00\x0a").unwrap();
    assert!(matches!(d.next_item(), Err(FrameError::BadHeader(_))));
    let mut d = FrameDecoder::new(512, 1 << 20);
    d.push(b"AMQP\x00\x01\x00\x00\x00\x00\x00\x08\x01\x00\x00\x00")
        .unwrap();
    d.next_item().unwrap();
    assert_eq!(
        d.next_item(),
        Err(FrameError::BadDataOffset { doff: 1, size: 8 })
    );
    let mut d = FrameDecoder::new(512, 16);
    assert_eq!(
        d.push(&[0; 17]),
        Err(FrameError::PendingTooLarge { max: 16 })
    );
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
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
        any::<i64>().prop_map(Value::Timestamp),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        any::<char>().prop_map(Value::Char),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| Value::Binary(b.into())),
        ".{0,40}".prop_map(Value::String),
        "[a-z:-]{0,20}".prop_map(|s| Value::Symbol(Symbol::new(s).unwrap())),
        (-1e9f64..1e9).prop_map(Value::Double),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            proptest::collection::vec(any::<i32>(), 1..8)
                .prop_map(|v| Value::Array(v.into_iter().map(Value::Int).collect())),
            (any::<u64>(), inner).prop_map(|(c, v)| Value::described(Descriptor::Code(c), v)),
        ]
    })
}

proptest! {
    #[test]
    fn any_value_round_trips(v in value_strategy()) {
        prop_assert_eq!(dec(&enc(&v)).unwrap(), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = dec(&b);
        let _ = Message::decode(b.clone().into(), &DecodeLimits::default());
        let _ = Message::decode_lazy(b.into(), &DecodeLimits::default());
    }
}

#[test]
fn jms_message_types_map_to_their_annotation_bytes() {
    use halyard_core::protocol::amqp::jms::{self, JmsMsgType};
    let m = jms_text_message();
    let kind = m
        .message_annotation(jms::JMS_MSG_TYPE)
        .and_then(JmsMsgType::from_value);
    assert_eq!(kind, Some(JmsMsgType::Text));
    assert_eq!(JmsMsgType::Bytes.to_value(), Value::Byte(3));
    assert_eq!(JmsMsgType::from_value(&Value::Byte(6)), None);
    assert!(jms::has_capability(&[Symbol::from("topic")], jms::TOPIC));
}

/// Everything a decoder yields from `inputs`, pushed in turn; after an
/// input the items are drained only if its flag says so (a driver may push
/// again first). Stops at the first error.
fn frame_items(inputs: &[(Vec<u8>, bool)], copy: bool) -> (Vec<Item>, Option<FrameError>) {
    let mut d = FrameDecoder::new(4096, 1 << 20);
    let mut items = Vec::new();
    let drain = |d: &mut FrameDecoder, items: &mut Vec<Item>| -> Option<FrameError> {
        loop {
            match d.next_item() {
                Ok(Some(i)) => items.push(i),
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    };
    for (bytes, drain_now) in inputs {
        let pushed = if copy {
            d.push(bytes)
        } else {
            d.push_bytes(Bytes::copy_from_slice(bytes))
        };
        if let Err(e) = pushed {
            return (items, Some(e));
        }
        if *drain_now {
            if let Some(e) = drain(&mut d, &mut items) {
                return (items, Some(kind_of(e)));
            }
        }
    }
    let e = drain(&mut d, &mut items).map(kind_of);
    (items, e)
}

/// A bad protocol header is reported with the bytes seen when it was
/// found, which depends on the cut; its kind does not.
fn kind_of(e: FrameError) -> FrameError {
    match e {
        FrameError::BadHeader(_) => FrameError::BadHeader(Vec::new()),
        e => e,
    }
}

/// A stream: a protocol header, then frames of the given body sizes,
/// channels and data offsets; `flip` then changes one byte (if any).
fn frame_stream(frames: &[(usize, u16, u8)], flip: Option<(usize, u8)>) -> Vec<u8> {
    let mut out = AMQP_HEADER.to_vec();
    for (i, &(body, channel, doff)) in frames.iter().enumerate() {
        let doff = doff.clamp(2, 4);
        let size = (usize::from(doff) * 4 + body) as u32;
        out.extend_from_slice(&size.to_be_bytes());
        out.push(doff);
        out.push(0);
        out.extend_from_slice(&channel.to_be_bytes());
        out.resize(out.len() + usize::from(doff) * 4 - 8, 0xee);
        out.extend((0..body).map(|k| (k + i) as u8));
    }
    if let Some((at, xor)) = flip {
        if !out.is_empty() {
            let at = at % out.len();
            out[at] ^= xor;
        }
    }
    out
}

proptest! {
    /// However a stream is cut into inputs, and whether or not it is
    /// drained between them, the decoder yields what it yields for the
    /// whole stream at once: the same frames (slices of the input or
    /// copies), then the same error if any.
    #[test]
    fn frames_do_not_depend_on_how_the_input_is_cut(
        frames in proptest::collection::vec((0usize..3000, any::<u16>(), 2u8..5), 0..12),
        flip in proptest::option::of((any::<usize>(), 1u8..=255)),
        cuts in proptest::collection::vec((1usize..5000, any::<bool>()), 0..20),
    ) {
        let stream = frame_stream(&frames, flip);
        let whole = frame_items(&[(stream.clone(), true)], false);
        if flip.is_none() {
            prop_assert!(whole.1.is_none(), "{:?}", whole.1);
            prop_assert_eq!(whole.0.len(), frames.len() + 1);
        }
        let mut inputs = Vec::new();
        let mut rest = &stream[..];
        for (n, drain) in cuts {
            if rest.is_empty() {
                break;
            }
            let n = n.min(rest.len());
            inputs.push((rest[..n].to_vec(), drain));
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            inputs.push((rest.to_vec(), true));
        }
        prop_assert_eq!(&frame_items(&inputs, false), &whole);
        prop_assert_eq!(&frame_items(&inputs, true), &whole);
        // One byte at a time.
        let bytewise: Vec<(Vec<u8>, bool)> = stream.iter().map(|b| (vec![*b], true)).collect();
        prop_assert_eq!(&frame_items(&bytewise, false), &whole);
    }
}

#[test]
fn a_frame_whole_in_one_input_is_a_slice_of_it() {
    let stream = frame_stream(&[(100, 1, 2), (50, 2, 2)], None);
    let input = Bytes::from(stream);
    let mut d = FrameDecoder::new(4096, 1 << 20);
    // The first 40 bytes of the second frame arrive with the first.
    let cut = 8 + 108 + 40;
    d.push_bytes(input.slice(..cut)).unwrap();
    assert_eq!(
        d.next_item().unwrap(),
        Some(Item::Header(ProtocolHeader::Amqp))
    );
    let Some(Item::Frame(f)) = d.next_item().unwrap() else {
        panic!("a frame")
    };
    let inside = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    assert!(
        inside.contains(&(f.body.as_ptr() as usize)),
        "the frame's body points into the input: no copy"
    );
    assert_eq!(d.next_item().unwrap(), None);
    assert_eq!(d.buffered_bytes(), 40, "the begun frame is kept");
    d.push_bytes(input.slice(cut..)).unwrap();
    let Some(Item::Frame(g)) = d.next_item().unwrap() else {
        panic!("the second frame")
    };
    assert_eq!(g.channel, 2);
    assert_eq!(g.body.len(), 50);
    assert_eq!(d.buffered_bytes(), 0);
}
