//! Arbitrary bytes into the AMQP decoders and the server connection.
//!
//! Checks that nothing panics; that a decoded value re-encodes to bytes
//! that decode to the same encoding; that splitting input changes nothing
//! for the frame decoder; that a lazily decoded message re-encodes its body
//! byte for byte; and that a connection fed hostile frames (after a valid
//! handshake, with an owner that accepts everything) stays within its
//! limits.
#![no_main]

use bytes::Bytes;
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, Connection, ConnectionConfig, Event, Input, Outgoing, Output,
};
use halyard_core::protocol::amqp::{
    decode_value, to_bytes, Body, DecodeLimits, DeliveryState, FrameDecoder, FrameError, Item,
    Message, AMQP_HEADER,
};
use halyard_core::wire_bytes::WireBytes;
use libfuzzer_sys::fuzz_target;

/// Small limits, so the fuzzer reaches every one of them.
fn limits() -> DecodeLimits {
    DecodeLimits {
        depth_max: 8,
        items_max: 64,
        values_max: 512,
    }
}

type Decoded = Result<Option<Item>, FrameError>;

fn frames(pieces: &[&[u8]]) -> Vec<Decoded> {
    let mut d = FrameDecoder::new(1024, 1 << 20);
    let mut out = Vec::new();
    for p in pieces {
        if let Err(e) = d.push(p) {
            out.push(Err(e));
            return out;
        }
        loop {
            match d.next_item() {
                Ok(None) => break,
                Ok(Some(item)) => out.push(Ok(Some(item))),
                Err(e) => {
                    assert_eq!(d.next_item(), Err(e.clone()), "errors are sticky");
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fn values(data: &[u8]) {
    if let Ok(v) = decode_value(Bytes::copy_from_slice(data), &limits()) {
        let once = to_bytes(&v);
        let again =
            decode_value(once.clone(), &DecodeLimits::default()).expect("re-encoded value decodes");
        assert_eq!(to_bytes(&again), once, "encoding is stable");
    }
}

fn messages(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let full = Message::decode(payload.clone(), &limits());
    if let Ok(lazy) = Message::decode_lazy(payload, &limits()) {
        if let Body::Raw { bytes, .. } = &lazy.body {
            let encoded = lazy.to_bytes();
            assert!(
                encoded.windows(bytes.len().max(1)).any(|w| w == &bytes[..]) || bytes.is_empty()
            );
        }
        let _ = lazy.body.decoded(&limits());
    }
    if let Ok(m) = full {
        let again = Message::decode(m.to_bytes(), &DecodeLimits::default())
            .expect("re-encoded message decodes");
        assert_eq!(again.body.kind(), m.body.kind());
    }
}

fn connection(data: &[u8], split: usize) {
    let config = ConnectionConfig {
        max_frame_size: 4096,
        message_size_max: 8192,
        reassembly_bytes_max: 16384,
        links_per_session_max: 4,
        sessions_max: 2,
        unsettled_per_session_max: 8,
        session_incoming_window: 4,
        decode: limits(),
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::new(config);
    let mut now = 0;
    let open: &[u8] = &[
        0, 0, 0, 0x15, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0xc0, 0x08, 0x01, 0xa1, 0x05, b'f', b'u',
        b'z', b'z', b'!',
    ];
    let (a, b) = data.split_at(split.min(data.len()));
    for piece in [&AMQP_HEADER[..], open, a, b] {
        now += 100;
        conn.handle(now, Input::Bytes(Bytes::copy_from_slice(piece)));
        let mut steps = 0;
        while let Some(out) = conn.poll_output() {
            steps += 1;
            assert!(steps < 100_000, "outputs never end");
            let Output::Event(e) = out else { continue };
            match e {
                Event::AttachRequested(req) => {
                    let _ = conn.accept_attach(req.link, AttachAnswer::echo(&req));
                    let _ = conn.grant_credit(req.link, 3, false);
                }
                Event::Credit {
                    link,
                    credit,
                    drain,
                } => {
                    for i in 0..credit.min(3) {
                        let d = Outgoing {
                            tag: Bytes::from(vec![i as u8]),
                            // In pieces, as a delivery with its body
                            // apart: one frame or split to the peer's size.
                            payload: WireBytes {
                                head: Bytes::from_static(b"head"),
                                body: Bytes::from(vec![0u8; 5000]),
                                tail: Bytes::from_static(b"tail"),
                            },
                            settled: i % 2 == 0,
                            message_format: 0,
                        };
                        let _ = conn.send(link, d);
                    }
                    if drain {
                        let _ = conn.drain_complete(link);
                    }
                }
                Event::Received(r) => {
                    assert!(r.payload.len() <= 8192);
                    if !r.settled {
                        let _ = conn.settle(r.link, r.delivery_id, DeliveryState::Accepted);
                    }
                }
                _ => {}
            }
        }
    }
    conn.handle(now + 60_000, Input::Tick);
    while conn.poll_output().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => values(input),
        1 => messages(input),
        2 => {
            let cut = input.first().map_or(0, |c| usize::from(*c)) % (input.len() + 1);
            let (head, tail) = input.split_at(cut);
            let whole = frames(&[&AMQP_HEADER, input]);
            let pieces = frames(&[&AMQP_HEADER, head, tail]);
            assert_eq!(whole, pieces, "split at {cut}");
        }
        _ => connection(input, usize::from(mode)),
    }
});
