//! An AMQP client of a whole node in the in-memory harness.

use bytes::Bytes;
use halyard_core::ids::ConnId;
use halyard_core::protocol::amqp::{
    decode_amqp_body, Body, DecodeLimits, Disposition, FrameDecoder, Header, Item, Message,
    Performative, Value, AMQP_HEADER,
};
use halyard_core::testkit::Harness;

use super::{begin_frame, frame, open_frame};

/// One AMQP client connection of a test, decoding what the node sends.
pub struct Peer {
    pub conn: ConnId,
    pub dec: FrameDecoder,
}

impl Peer {
    /// Connects without SASL, opens and begins a session on channel 0.
    pub fn connect(h: &mut Harness, id: u64) -> Peer {
        let conn = h.open_raw(id);
        let mut p = Peer {
            conn,
            dec: FrameDecoder::new(u32::MAX, usize::MAX),
        };
        p.send(
            h,
            &[&AMQP_HEADER[..], &open_frame(65_536, None), &begin_frame(0)].concat(),
        );
        let got = p.frames(h);
        assert!(
            matches!(
                got.as_slice(),
                [Performative::Open(_), Performative::Begin(_)]
            ),
            "{got:?}"
        );
        p
    }

    pub fn send(&mut self, h: &mut Harness, bytes: &[u8]) {
        h.send_raw(self.conn, bytes);
    }

    pub fn perform(&mut self, h: &mut Harness, p: Performative) {
        self.send(h, &frame(0, p));
    }

    /// Performatives received since the last call, with transfer payloads.
    pub fn frames_with_payload(&mut self, h: &mut Harness) -> Vec<(Performative, Bytes)> {
        let bytes = h.take_raw(self.conn);
        self.dec.push(&bytes).expect("frames decode");
        let mut out = Vec::new();
        while let Some(item) = self.dec.next_item().expect("frames decode") {
            match item {
                Item::Header(_) => {}
                Item::Frame(f) if f.body.is_empty() => {}
                Item::Frame(f) => {
                    out.push(decode_amqp_body(f.body, &DecodeLimits::default()).expect("decode"))
                }
            }
        }
        out
    }

    pub fn frames(&mut self, h: &mut Harness) -> Vec<Performative> {
        self.frames_with_payload(h)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}

pub fn durable_text(text: &str) -> Vec<u8> {
    Message {
        header: Some(Header {
            durable: true,
            ..Header::default()
        }),
        body: Body::Value(Value::String(text.into())),
        ..Message::default()
    }
    .to_bytes()
    .to_vec()
}

pub fn dispositions(frames: &[Performative]) -> Vec<&Disposition> {
    frames
        .iter()
        .filter_map(|f| match f {
            Performative::Disposition(d) => Some(d),
            _ => None,
        })
        .collect()
}
