//! The mirror link's frames: a Halyard protocol on the AMQP 1.0 codec
//! (docs/mirroring.md, "The mirror link").
//!
//! The source (the active broker) dials the target and sends the AMQP
//! header, `open` (its node name as container-id), `begin` and an `attach`
//! of the sending end of link `$halyard.mirror` whose properties carry its
//! lock epoch ([`MirrorFrame::Hello`]). The target answers the same way
//! with the receiving end, whose properties carry the stream position its
//! journal holds ([`MirrorFrame::Welcome`]), then `flow` credit. Every
//! change then travels as one unsettled `transfer` whose delivery tag says
//! what it is (a journal group of the stream, a snapshot chunk, the end of
//! a snapshot) and whose payload is the journal's own batches; the target
//! settles it with `disposition` `accepted` once its journal has it
//! durable ([`MirrorFrame::Ack`]). Empty frames are the heartbeats.
//!
//! Nothing here trusts the peer: sizes are checked against the bytes that
//! remain, counts are bounded, and a bad frame is an error, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::journal::group_commit::EncodedEntry;
use crate::protocol::amqp::{
    decode_amqp_body, encode_performative, AmqpError, Attach, Begin, Condition, DecodeLimits,
    Disposition, Flow, FrameDecoder, FrameError, Item, Open, Performative, ReceiverSettleMode,
    Role, SenderSettleMode, Transfer, Value, AMQP_HEADER, EMPTY_FRAME,
};

/// The link's name on both ends.
pub const MIRROR_LINK_NAME: &str = "$halyard.mirror";
/// Largest frame either end sends or accepts: a journal group is at most
/// 16 MiB of entries (the group commit's bound) or one larger append
/// alone, which the local journal bounds to 128 MiB of payload, plus 8
/// bytes per entry here; a snapshot chunk 4 MiB plus one batch.
pub const MIRROR_FRAME_BYTES_MAX: u32 = 144 * 1024 * 1024;
/// Bytes of entries one snapshot chunk carries at most.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Entries one transfer carries at most.
const ENTRIES_MAX: u32 = 1 << 20;
/// Attach property keys.
const PROP_EPOCH: &str = "halyard-epoch";
const PROP_POSITION_EPOCH: &str = "halyard-position-epoch";
const PROP_POSITION_SEQ: &str = "halyard-position-seq";
/// On the target's attach, `true` when it is a primary that asks for the
/// active role back once in sync (failback). Absent: no preference.
const PROP_PREFERS_ACTIVE: &str = "halyard-prefers-active";
/// Delivery tag kinds.
const KIND_BATCH: u8 = 1;
const KIND_SNAPSHOT_CHUNK: u8 = 2;
const KIND_SNAPSHOT_END: u8 = 3;
/// A tombstone's value length on the wire.
const NO_VALUE: u32 = u32::MAX;

/// Where a target's journal stands in a source's stream: every group up to
/// `seq` of the stream stamped with lock epoch `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

/// What one transfer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Journal group `seq` of the stream: its batches, as the source's
    /// journal wrote them (each atomic).
    Batch {
        seq: u64,
        batches: Vec<Vec<EncodedEntry>>,
    },
    /// Part of a snapshot: batches of the source's journal, in its order.
    SnapshotChunk { batches: Vec<Vec<EncodedEntry>> },
    /// The snapshot is complete and holds every group up to `seq`.
    SnapshotEnd { seq: u64 },
}

/// One message of the mirror link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorFrame {
    /// Source to target: who sends, under which lock epoch.
    Hello {
        node: String,
        epoch: u64,
    },
    /// Target to source: who receives, what its journal holds, and
    /// whether it asks for the active role back once in sync (failback).
    Welcome {
        node: String,
        position: Option<Position>,
        prefers_active: bool,
    },
    /// Target to source: transfers it may take beyond those acknowledged.
    Credit {
        credit: u32,
    },
    Transfer {
        delivery: u32,
        what: Delivery,
    },
    /// Target to source: deliveries `first..=last` are durable there.
    Ack {
        first: u32,
        last: u32,
    },
    Heartbeat,
    /// Either end ends the link, with why.
    Close {
        error: Option<String>,
    },
}

/// Why bytes from the peer are not a mirror link.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MirrorWireError {
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("decoding a frame: {0}")]
    Codec(String),
    #[error("unexpected {0} on the mirror link")]
    Unexpected(&'static str),
    #[error("attach of link {0:?}: not the mirror link")]
    WrongLink(String),
    #[error("attach before open")]
    NoOpen,
    #[error("attach without the property {0}")]
    MissingProperty(&'static str),
    #[error("transfer: {0}")]
    BadTransfer(&'static str),
}

/// Appends `frame`'s bytes. `Hello` and `Welcome` start with the AMQP
/// header (they open the connection).
pub fn encode(frame: &MirrorFrame, out: &mut BytesMut) {
    match frame {
        MirrorFrame::Hello { node, epoch } => {
            let props = vec![(Value::Symbol(sym(PROP_EPOCH)), Value::Ulong(*epoch))];
            open_link(out, node, Role::Sender, props);
        }
        MirrorFrame::Welcome {
            node,
            position,
            prefers_active,
        } => {
            let mut props = match position {
                Some(p) => vec![
                    (
                        Value::Symbol(sym(PROP_POSITION_EPOCH)),
                        Value::Ulong(p.epoch),
                    ),
                    (Value::Symbol(sym(PROP_POSITION_SEQ)), Value::Ulong(p.seq)),
                ],
                None => Vec::new(),
            };
            if *prefers_active {
                props.push((Value::Symbol(sym(PROP_PREFERS_ACTIVE)), Value::Bool(true)));
            }
            open_link(out, node, Role::Receiver, props);
        }
        MirrorFrame::Credit { credit } => {
            let flow = Flow {
                next_incoming_id: Some(0),
                incoming_window: u32::MAX,
                outgoing_window: u32::MAX,
                handle: Some(0),
                delivery_count: Some(0),
                link_credit: Some(*credit),
                ..Flow::default()
            };
            encode_performative(out, 0, &Performative::Flow(flow), &[]);
        }
        MirrorFrame::Transfer { delivery, what } => {
            let (kind, seq, batches): (u8, u64, &[Vec<EncodedEntry>]) = match what {
                Delivery::Batch { seq, batches } => (KIND_BATCH, *seq, batches),
                Delivery::SnapshotChunk { batches } => (KIND_SNAPSHOT_CHUNK, 0, batches),
                Delivery::SnapshotEnd { seq } => (KIND_SNAPSHOT_END, *seq, &[]),
            };
            let mut tag = BytesMut::with_capacity(9);
            tag.put_u8(kind);
            tag.put_u64(seq);
            let t = Transfer {
                handle: 0,
                delivery_id: Some(*delivery),
                delivery_tag: Some(tag.freeze()),
                message_format: Some(0),
                settled: Some(false),
                ..Transfer::default()
            };
            encode_performative(out, 0, &Performative::Transfer(t), &encode_batches(batches));
        }
        MirrorFrame::Ack { first, last } => {
            let d = Disposition {
                role: Role::Receiver,
                first: *first,
                last: Some(*last),
                settled: true,
                state: Some(crate::protocol::amqp::DeliveryState::Accepted),
                batchable: false,
            };
            encode_performative(out, 0, &Performative::Disposition(d), &[]);
        }
        MirrorFrame::Heartbeat => out.put_slice(&EMPTY_FRAME),
        MirrorFrame::Close { error } => {
            let error = error
                .as_ref()
                .map(|e| AmqpError::new(Condition::IllegalState, e.clone()));
            encode_performative(out, 0, &Performative::Close { error }, &[]);
        }
    }
}

fn sym(s: &str) -> crate::protocol::amqp::Symbol {
    crate::protocol::amqp::Symbol::new(s).expect("ASCII symbol")
}

fn open_link(out: &mut BytesMut, node: &str, role: Role, props: crate::protocol::amqp::Map) {
    out.put_slice(&AMQP_HEADER);
    let open = Open {
        container_id: node.to_string(),
        max_frame_size: MIRROR_FRAME_BYTES_MAX,
        channel_max: 0,
        ..Open::default()
    };
    encode_performative(out, 0, &Performative::Open(open), &[]);
    let begin = Begin {
        next_outgoing_id: 0,
        incoming_window: u32::MAX,
        outgoing_window: u32::MAX,
        handle_max: 0,
        ..Begin::default()
    };
    encode_performative(out, 0, &Performative::Begin(begin), &[]);
    let attach = Attach {
        name: MIRROR_LINK_NAME.to_string(),
        handle: 0,
        role,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: None,
        target: None,
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: (role == Role::Sender).then_some(0),
        max_message_size: None,
        offered_capabilities: Vec::new(),
        desired_capabilities: Vec::new(),
        properties: Some(props),
    };
    encode_performative(out, 0, &Performative::Attach(Box::new(attach)), &[]);
}

/// `[u32 batches]`, then per batch `[u32 entries]` and per entry `[u32 key
/// length][key][u32 value length, or u32::MAX for a tombstone][value]`,
/// big-endian.
fn encode_batches(batches: &[Vec<EncodedEntry>]) -> Vec<u8> {
    let len = 4 + batches
        .iter()
        .map(|b| 4 + b.iter().map(|e| 8 + e.bytes()).sum::<usize>())
        .sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.put_u32(u32::try_from(batches.len()).unwrap_or(u32::MAX));
    for batch in batches {
        out.put_u32(u32::try_from(batch.len()).unwrap_or(u32::MAX));
        for e in batch {
            out.put_u32(u32::try_from(e.key.len()).unwrap_or(u32::MAX));
            out.put_slice(&e.key);
            match &e.value {
                Some(v) => {
                    out.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX - 1));
                    out.put_slice(v);
                }
                None => out.put_u32(NO_VALUE),
            }
        }
    }
    out
}

fn decode_batches(mut b: Bytes) -> Result<Vec<Vec<EncodedEntry>>, MirrorWireError> {
    let short = MirrorWireError::BadTransfer("entries shorter than their lengths");
    let count = |b: &mut Bytes, per: usize| -> Result<usize, MirrorWireError> {
        if b.remaining() < 4 {
            return Err(MirrorWireError::BadTransfer(
                "entries shorter than their lengths",
            ));
        }
        let n = b.get_u32() as usize;
        // Each item takes at least `per` bytes: a count larger is a lie.
        if n > b.remaining() / per {
            return Err(MirrorWireError::BadTransfer(
                "entries shorter than their lengths",
            ));
        }
        Ok(n)
    };
    let nbatches = count(&mut b, 4)?;
    let mut batches = Vec::with_capacity(nbatches);
    let mut total = 0usize;
    for _ in 0..nbatches {
        let n = count(&mut b, 8)?;
        total += n;
        if total > ENTRIES_MAX as usize {
            return Err(MirrorWireError::BadTransfer("too many entries"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            if b.remaining() < 4 {
                return Err(short);
            }
            let klen = b.get_u32() as usize;
            if b.remaining() < klen.saturating_add(4) {
                return Err(short);
            }
            let key = b.split_to(klen);
            let vlen = b.get_u32();
            let value = if vlen == NO_VALUE {
                None
            } else {
                if b.remaining() < vlen as usize {
                    return Err(short);
                }
                Some(b.split_to(vlen as usize))
            };
            entries.push(EncodedEntry { key, value });
        }
        batches.push(entries);
    }
    if b.has_remaining() {
        return Err(MirrorWireError::BadTransfer("bytes after the last entry"));
    }
    Ok(batches)
}

/// Splits the peer's bytes into [`MirrorFrame`]s.
pub struct MirrorDecoder {
    frames: FrameDecoder,
    limits: DecodeLimits,
    peer: Option<String>,
}

impl Default for MirrorDecoder {
    fn default() -> Self {
        MirrorDecoder::new()
    }
}

impl MirrorDecoder {
    pub fn new() -> MirrorDecoder {
        MirrorDecoder {
            frames: FrameDecoder::new(MIRROR_FRAME_BYTES_MAX, 2 * MIRROR_FRAME_BYTES_MAX as usize),
            limits: DecodeLimits::default(),
            peer: None,
        }
    }

    pub fn push(&mut self, data: &[u8]) -> Result<(), MirrorWireError> {
        Ok(self.frames.push(data)?)
    }

    /// The next whole frame, or `None` until more bytes come.
    pub fn next_frame(&mut self) -> Result<Option<MirrorFrame>, MirrorWireError> {
        loop {
            let Some(item) = self.frames.next_item()? else {
                return Ok(None);
            };
            let raw = match item {
                Item::Header(crate::protocol::amqp::ProtocolHeader::Amqp) => continue,
                Item::Header(_) => return Err(MirrorWireError::Unexpected("SASL header")),
                Item::Frame(f) if f.sasl => return Err(MirrorWireError::Unexpected("SASL frame")),
                Item::Frame(f) => f,
            };
            if raw.body.is_empty() {
                return Ok(Some(MirrorFrame::Heartbeat));
            }
            let (perf, payload) = decode_amqp_body(raw.body, &self.limits)
                .map_err(|e| MirrorWireError::Codec(e.to_string()))?;
            if let Some(frame) = self.on_performative(perf, payload)? {
                return Ok(Some(frame));
            }
        }
    }

    fn on_performative(
        &mut self,
        perf: Performative,
        payload: Bytes,
    ) -> Result<Option<MirrorFrame>, MirrorWireError> {
        Ok(match perf {
            Performative::Open(o) => {
                self.peer = Some(o.container_id);
                None
            }
            Performative::Begin(_) => None,
            Performative::Attach(a) => Some(self.on_attach(*a)?),
            Performative::Flow(f) => Some(MirrorFrame::Credit {
                credit: f.link_credit.unwrap_or(0),
            }),
            Performative::Transfer(t) => Some(on_transfer(t, payload)?),
            Performative::Disposition(d) => {
                if d.role != Role::Receiver || !d.settled {
                    return Err(MirrorWireError::Unexpected("disposition from a sender"));
                }
                let last = d.last.unwrap_or(d.first);
                if last < d.first {
                    return Err(MirrorWireError::Unexpected("disposition range backwards"));
                }
                Some(MirrorFrame::Ack {
                    first: d.first,
                    last,
                })
            }
            Performative::Detach(d) => Some(MirrorFrame::Close {
                error: d.error.map(|e| e.to_string()),
            }),
            Performative::End { error } | Performative::Close { error } => {
                Some(MirrorFrame::Close {
                    error: error.map(|e| e.to_string()),
                })
            }
        })
    }

    fn on_attach(&mut self, a: Attach) -> Result<MirrorFrame, MirrorWireError> {
        if a.name != MIRROR_LINK_NAME {
            return Err(MirrorWireError::WrongLink(a.name));
        }
        let node = self.peer.clone().ok_or(MirrorWireError::NoOpen)?;
        let props = a.properties.unwrap_or_default();
        let get = |key: &'static str| match crate::protocol::amqp::map_get(&props, key) {
            Some(Value::Ulong(v)) => Some(*v),
            _ => None,
        };
        Ok(match a.role {
            Role::Sender => MirrorFrame::Hello {
                node,
                epoch: get(PROP_EPOCH).ok_or(MirrorWireError::MissingProperty(PROP_EPOCH))?,
            },
            Role::Receiver => MirrorFrame::Welcome {
                node,
                position: match (get(PROP_POSITION_EPOCH), get(PROP_POSITION_SEQ)) {
                    (Some(epoch), Some(seq)) => Some(Position { epoch, seq }),
                    _ => None,
                },
                // Anything but `true` (absent: an older peer) is no preference.
                prefers_active: matches!(
                    crate::protocol::amqp::map_get(&props, PROP_PREFERS_ACTIVE),
                    Some(Value::Bool(true))
                ),
            },
        })
    }
}

fn on_transfer(t: Transfer, payload: Bytes) -> Result<MirrorFrame, MirrorWireError> {
    if t.more {
        return Err(MirrorWireError::BadTransfer(
            "multi-frame transfers are not used",
        ));
    }
    let delivery = t
        .delivery_id
        .ok_or(MirrorWireError::BadTransfer("no delivery-id"))?;
    let mut tag = t
        .delivery_tag
        .ok_or(MirrorWireError::BadTransfer("no delivery-tag"))?;
    if tag.len() != 9 {
        return Err(MirrorWireError::BadTransfer("delivery-tag is not 9 bytes"));
    }
    let kind = tag.get_u8();
    let seq = tag.get_u64();
    let batches = decode_batches(payload)?;
    let what = match kind {
        KIND_BATCH => Delivery::Batch { seq, batches },
        KIND_SNAPSHOT_CHUNK => Delivery::SnapshotChunk { batches },
        KIND_SNAPSHOT_END if batches.is_empty() => Delivery::SnapshotEnd { seq },
        KIND_SNAPSHOT_END => return Err(MirrorWireError::BadTransfer("snapshot end with entries")),
        _ => return Err(MirrorWireError::BadTransfer("unknown delivery kind")),
    };
    Ok(MirrorFrame::Transfer { delivery, what })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: &str, v: Option<&str>) -> EncodedEntry {
        EncodedEntry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    fn roundtrip(frames: &[MirrorFrame]) -> Vec<MirrorFrame> {
        let mut out = BytesMut::new();
        for f in frames {
            encode(f, &mut out);
        }
        let mut d = MirrorDecoder::new();
        // Byte by byte for the first frames: no frame depends on how the
        // bytes were cut.
        let (head, tail) = out.split_at(out.len().min(200));
        for b in head {
            d.push(&[*b]).unwrap();
        }
        d.push(tail).unwrap();
        let mut got = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            got.push(f);
        }
        got
    }

    #[test]
    fn every_frame_comes_back_as_sent() {
        let frames = vec![
            MirrorFrame::Hello {
                node: "server0".into(),
                epoch: 7,
            },
            MirrorFrame::Credit { credit: 1000 },
            MirrorFrame::Transfer {
                delivery: 0,
                what: Delivery::SnapshotChunk {
                    batches: vec![
                        vec![entry("q/1", Some("orders"))],
                        vec![entry("m/1:2", None)],
                    ],
                },
            },
            MirrorFrame::Transfer {
                delivery: 1,
                what: Delivery::SnapshotEnd { seq: 41 },
            },
            MirrorFrame::Transfer {
                delivery: 2,
                what: Delivery::Batch {
                    seq: 42,
                    batches: vec![
                        vec![entry("m/7:1", Some("body")), entry("", Some(""))],
                        vec![],
                    ],
                },
            },
            MirrorFrame::Ack { first: 0, last: 2 },
            MirrorFrame::Heartbeat,
            MirrorFrame::Close {
                error: Some("fenced".into()),
            },
        ];
        let got = roundtrip(&frames);
        assert_eq!(got.len(), frames.len());
        for (g, f) in got.iter().zip(&frames) {
            match (g, f) {
                (MirrorFrame::Close { error: Some(g) }, MirrorFrame::Close { error: Some(f) }) => {
                    assert!(g.contains(f.as_str()), "{g}")
                }
                _ => assert_eq!(g, f),
            }
        }
    }

    #[test]
    fn welcome_carries_the_position_or_none() {
        for position in [None, Some(Position { epoch: 3, seq: 9 })] {
            for prefers_active in [false, true] {
                let f = MirrorFrame::Welcome {
                    node: "server1".into(),
                    position,
                    prefers_active,
                };
                assert_eq!(roundtrip(std::slice::from_ref(&f)), vec![f]);
            }
        }
    }

    #[test]
    fn a_welcome_without_the_failback_property_is_no_preference() {
        // As an older target sends it: the position properties only.
        let mut out = BytesMut::new();
        let props = vec![
            (Value::Symbol(sym(PROP_POSITION_EPOCH)), Value::Ulong(2)),
            (Value::Symbol(sym(PROP_POSITION_SEQ)), Value::Ulong(5)),
        ];
        open_link(&mut out, "server0", Role::Receiver, props);
        let mut d = MirrorDecoder::new();
        d.push(&out).unwrap();
        assert_eq!(
            d.next_frame().unwrap(),
            Some(MirrorFrame::Welcome {
                node: "server0".into(),
                position: Some(Position { epoch: 2, seq: 5 }),
                prefers_active: false,
            })
        );
        // A value other than `true` is no preference either.
        let mut out = BytesMut::new();
        let props = vec![(Value::Symbol(sym(PROP_PREFERS_ACTIVE)), Value::Ulong(1))];
        open_link(&mut out, "server0", Role::Receiver, props);
        let mut d = MirrorDecoder::new();
        d.push(&out).unwrap();
        assert!(matches!(
            d.next_frame().unwrap(),
            Some(MirrorFrame::Welcome {
                prefers_active: false,
                ..
            })
        ));
    }

    #[test]
    fn entries_that_lie_about_their_lengths_are_refused() {
        let good = encode_batches(&[vec![entry("k", Some("v"))]]);
        assert_eq!(
            decode_batches(Bytes::copy_from_slice(&good)).unwrap(),
            vec![vec![entry("k", Some("v"))]]
        );
        for cut in 0..good.len() {
            assert!(decode_batches(Bytes::copy_from_slice(&good[..cut])).is_err());
        }
        for lie in [u32::MAX - 1, 2] {
            let mut huge = Vec::new();
            huge.put_u32(lie);
            assert!(decode_batches(Bytes::from(huge)).is_err());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_batches(Bytes::from(trailing)).is_err());
    }

    #[test]
    fn a_foreign_link_or_attach_before_open_is_an_error() {
        let attach = |name: &str| {
            let mut out = BytesMut::new();
            out.put_slice(&AMQP_HEADER);
            let attach = Attach {
                name: name.into(),
                handle: 0,
                role: Role::Sender,
                snd_settle_mode: SenderSettleMode::Unsettled,
                rcv_settle_mode: ReceiverSettleMode::First,
                source: None,
                target: None,
                unsettled: None,
                incomplete_unsettled: false,
                initial_delivery_count: Some(0),
                max_message_size: None,
                offered_capabilities: Vec::new(),
                desired_capabilities: Vec::new(),
                properties: None,
            };
            encode_performative(&mut out, 0, &Performative::Attach(Box::new(attach)), &[]);
            let mut d = MirrorDecoder::new();
            d.push(&out).unwrap();
            d.next_frame()
        };
        assert_eq!(
            attach("orders"),
            Err(MirrorWireError::WrongLink("orders".into()))
        );
        assert_eq!(attach(MIRROR_LINK_NAME), Err(MirrorWireError::NoOpen));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = MirrorDecoder::new();
        let r = d
            .push(b"GET / HTTP/1.1\r\n\r\n")
            .and_then(|()| d.next_frame());
        assert!(r.is_err());
    }
}
