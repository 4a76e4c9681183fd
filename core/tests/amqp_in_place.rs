//! The performatives sent and received per message are encoded and
//! decoded in place, without a `Value` tree; these tests hold that to
//! exactly what the `Value` path gives: the same bytes out, and for any
//! input (valid, changed byte by byte, truncated, under tight limits) the
//! same performative or the same error.

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::{
    encode_value, to_bytes, AmqpError, Begin, CodecError, Condition, DecodeLimits, DeliveryState,
    Descriptor, Detach, Disposition, Flow, Open, Performative, Reader, ReceiverSettleMode, Role,
    Symbol, Transfer, Value,
};
use proptest::prelude::*;

fn by_value(p: &Performative) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_value(&p.to_value(), &mut out);
    out.to_vec()
}

fn in_place(p: &Performative) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(&mut out);
    out.to_vec()
}

fn read_in_place(b: &[u8], limits: &DecodeLimits) -> Result<(Performative, usize), CodecError> {
    let mut r = Reader::new(Bytes::copy_from_slice(b), limits);
    Performative::read(&mut r).map(|p| (p, r.position()))
}

fn read_by_value(b: &[u8], limits: &DecodeLimits) -> Result<(Performative, usize), CodecError> {
    let mut r = Reader::new(Bytes::copy_from_slice(b), limits);
    r.read()
        .and_then(Performative::from_value)
        .map(|p| (p, r.position()))
}

fn states() -> Vec<Option<DeliveryState>> {
    vec![
        None,
        Some(DeliveryState::Accepted),
        Some(DeliveryState::Released),
        Some(DeliveryState::Rejected {
            error: Some(AmqpError::new(Condition::DecodeError, "bad".to_owned())),
        }),
        Some(DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: false,
            message_annotations: None,
        }),
        Some(DeliveryState::Transactional {
            txn_id: Bytes::from_static(b"\0\0\0\x01"),
            outcome: Some(Box::new(DeliveryState::Accepted)),
        }),
        // Long enough that the state and its performative are list32s.
        Some(DeliveryState::Rejected {
            error: Some(AmqpError::new(Condition::InternalError, "x".repeat(300))),
        }),
    ]
}

/// The value encoded in the wide forms a peer may use: every numeric
/// descriptor as a ulong (`0x80`), every list and map as list32/map32.
fn wide(v: &Value, out: &mut Vec<u8>) {
    fn compound(code: u8, items: &[&Value], out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for i in items {
            wide(i, &mut body);
        }
        out.push(code);
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(&(items.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    match v {
        Value::Described(d) => match &d.descriptor {
            Descriptor::Code(c) => {
                out.extend_from_slice(&[0x00, 0x80]);
                out.extend_from_slice(&c.to_be_bytes());
                wide(&d.value, out);
            }
            Descriptor::Symbol(_) => out.extend_from_slice(&to_bytes(v)),
        },
        Value::List(items) => compound(0xd0, &items.iter().collect::<Vec<_>>(), out),
        Value::Map(pairs) => compound(
            0xd1,
            &pairs.iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>(),
            out,
        ),
        other => out.extend_from_slice(&to_bytes(other)),
    }
}

fn wide_encoding(p: &Performative) -> Vec<u8> {
    let mut out = Vec::new();
    wide(&p.to_value(), &mut out);
    out
}

/// One of each performative, the per-message ones in many shapes.
fn samples() -> Vec<Performative> {
    let mut v = vec![
        Performative::Open(Open {
            container_id: "c".into(),
            max_frame_size: 65_536,
            channel_max: 7,
            idle_time_out: Some(30_000),
            offered_capabilities: vec![Symbol::new("ANONYMOUS-RELAY").unwrap()],
            ..Open::default()
        }),
        Performative::Begin(Begin {
            remote_channel: Some(0),
            next_outgoing_id: 1,
            incoming_window: 2048,
            outgoing_window: 2048,
            handle_max: 63,
            ..Begin::default()
        }),
        Performative::Detach(Detach {
            handle: 3,
            closed: true,
            error: None,
        }),
        Performative::End { error: None },
        Performative::Close {
            error: Some(AmqpError::new(Condition::FramingError, "x".to_owned())),
        },
    ];
    for state in states() {
        for (settled, more, tag) in [(None, false, None), (Some(true), true, Some(&b"t1"[..]))] {
            v.push(Performative::Transfer(Transfer {
                handle: 1,
                delivery_id: Some(300),
                delivery_tag: tag.map(Bytes::copy_from_slice),
                message_format: Some(0),
                settled,
                more,
                rcv_settle_mode: Some(ReceiverSettleMode::Second),
                state: state.clone(),
                ..Transfer::default()
            }));
        }
        v.push(Performative::Transfer(Transfer {
            handle: 70_000,
            state: state.clone(),
            ..Transfer::default()
        }));
        for (last, settled, batchable) in [(None, false, false), (Some(900), true, true)] {
            v.push(Performative::Disposition(Disposition {
                role: Role::Receiver,
                first: 5,
                last,
                settled,
                state: state.clone(),
                batchable,
            }));
        }
    }
    v.push(Performative::Flow(Flow::default()));
    v.push(Performative::Flow(Flow {
        next_incoming_id: Some(4),
        incoming_window: 2048,
        next_outgoing_id: 9,
        outgoing_window: u32::MAX,
        handle: Some(0),
        delivery_count: Some(12),
        link_credit: Some(1000),
        available: Some(0),
        drain: true,
        echo: false,
        properties: None,
    }));
    v.push(Performative::Flow(Flow {
        handle: Some(2),
        properties: Some(vec![(Value::symbol("k"), Value::Int(1))]),
        ..Flow::default()
    }));
    v
}

#[test]
fn in_place_encoding_is_the_value_encoding() {
    for p in samples() {
        assert_eq!(in_place(&p), by_value(&p), "{p:?}");
    }
}

#[test]
fn in_place_decoding_agrees_with_the_value_path_on_every_change() {
    let small = DecodeLimits {
        depth_max: 2,
        items_max: 6,
        values_max: 9,
    };
    let (mut inputs, mut agreed_ok, mut agreed_err) = (0, 0, 0);
    let limits = DecodeLimits::default();
    let originals = samples().into_iter().flat_map(|p| {
        let (narrow, wide) = (by_value(&p), wide_encoding(&p));
        [(p.clone(), narrow), (p, wide)]
    });
    for (p, original) in originals {
        // A valid encoding, narrow or wide, decodes to what was encoded.
        assert_eq!(
            read_in_place(&original, &limits),
            Ok((p.clone(), original.len()))
        );
        let mut changed = vec![original.clone()];
        for i in 0..original.len() {
            changed.push(original[..i].to_vec());
            for b in [
                0x00, 0x40, 0x43, 0x45, 0x52, 0x53, 0x70, 0xa0, 0xc0, 0xd0, 0xff,
            ] {
                let mut c = original.clone();
                c[i] = b;
                changed.push(c);
            }
            let mut c = original.clone();
            c[i] = c[i].wrapping_sub(1);
            changed.push(c);
            let mut c = original.clone();
            c.insert(i, 0x40);
            changed.push(c);
        }
        for c in &changed {
            for limits in [&limits, &small] {
                let fast = read_in_place(c, limits);
                assert_eq!(fast, read_by_value(c, limits), "{c:02x?} {limits:?}");
                inputs += 1;
                if fast.is_ok() {
                    agreed_ok += 1;
                } else {
                    agreed_err += 1;
                }
            }
        }
    }
    // Both outcomes were exercised, many times.
    assert!(
        agreed_ok > 1000 && agreed_err > 1000,
        "{inputs}: {agreed_ok} ok, {agreed_err} errors"
    );
}

/// Every limit at and around what the samples need, on their valid
/// encodings (narrow and wide): the same result or the same error.
#[test]
fn in_place_decoding_agrees_at_every_limit() {
    let (mut ok, mut err) = (0, 0);
    for p in samples() {
        for encoding in [by_value(&p), wide_encoding(&p)] {
            for depth_max in 0..=3 {
                for values_max in [0, 1, 2, 3, 4, 6, 9, 12, 20] {
                    for items_max in [0, 1, 2, 3, 5, 6, 11, 14] {
                        let limits = DecodeLimits {
                            depth_max,
                            items_max,
                            values_max,
                        };
                        let fast = read_in_place(&encoding, &limits);
                        assert_eq!(fast, read_by_value(&encoding, &limits), "{p:?} {limits:?}");
                        if fast.is_ok() {
                            ok += 1;
                        } else {
                            err += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(ok > 100 && err > 100, "{ok} ok, {err} errors");
}

proptest! {
    #[test]
    fn arbitrary_bytes_decode_the_same_both_ways(
        mut b in proptest::collection::vec(any::<u8>(), 0..80),
        code in 0x10u8..=0x18,
        list in prop_oneof![Just(0x45u8), Just(0xc0), Just(0xd0)],
    ) {
        // Most arbitrary inputs start like a performative, so that the
        // in-place path is taken and then meets garbage.
        b.splice(0..0, [0x00, 0x53, code, list]);
        let limits = DecodeLimits::default();
        prop_assert_eq!(read_in_place(&b, &limits), read_by_value(&b, &limits));
    }
}
