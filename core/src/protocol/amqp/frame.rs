//! Protocol headers and frames (spec 2.2 and 2.3): incremental decoding
//! from bytes, with the frame size we advertised enforced as bytes arrive.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::decode::{DecodeLimits, Reader};
use super::encode::encode_value;
use super::error::{CodecError, Condition};
use super::performative::Performative;
use super::sasl::SaslFrame;

/// The header that starts AMQP proper.
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The header that starts a SASL layer.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
pub const FRAME_HEADER_BYTES: usize = 8;
/// The smallest max-frame-size a peer may set, and the frame size in force
/// before open (spec 2.7.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

const TYPE_AMQP: u8 = 0;
const TYPE_SASL: u8 = 1;

/// Which protocol a header asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolHeader {
    Amqp,
    Sasl,
}

impl ProtocolHeader {
    pub fn bytes(self) -> [u8; 8] {
        match self {
            ProtocolHeader::Amqp => AMQP_HEADER,
            ProtocolHeader::Sasl => SASL_HEADER,
        }
    }
}

/// A frame as it came off the wire: its body not decoded yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub sasl: bool,
    pub channel: u16,
    /// Empty for an empty (heartbeat) frame.
    pub body: Bytes,
}

/// What [`FrameDecoder::next_item`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Header(ProtocolHeader),
    Frame(RawFrame),
}

/// Why bytes are not valid AMQP framing.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not a header we speak; the peer gets ours before the close.
    #[error("unsupported protocol header {0:02x?}")]
    BadHeader(Vec<u8>),
    #[error("frame of {size} bytes exceeds max-frame-size {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("frame size {0} is smaller than the frame header")]
    BadSize(u32),
    #[error("data offset {doff} does not fit a frame of {size} bytes")]
    BadDataOffset { doff: u8, size: u32 },
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("more than {max} bytes buffered")]
    PendingTooLarge { max: usize },
}

impl FrameError {
    pub fn condition(&self) -> Condition {
        match self {
            FrameError::PendingTooLarge { .. } => Condition::ResourceLimitExceeded,
            _ => Condition::FramingError,
        }
    }
}

/// Splits bytes into protocol headers and frames.
///
/// A frame that lies whole in one input is handed on as a slice of that
/// input (no copy); only a frame or header begun in one input and ended in
/// a later one is copied together, and only its own bytes are.
///
/// Errors are sticky: after one, `next_item` keeps returning it.
#[derive(Debug)]
pub struct FrameDecoder {
    /// An item begun in an earlier input, copied together until complete.
    /// While it is incomplete, `input` is empty.
    partial: BytesMut,
    /// The rest of the latest input, shared with it.
    input: Bytes,
    max_frame_size: u32,
    pending_bytes_max: usize,
    expect_header: bool,
    failed: Option<FrameError>,
}

/// What the bytes at the front of a buffer hold.
enum Head {
    /// Not enough bytes to tell.
    NeedMore,
    /// A protocol header (8 bytes).
    Header,
    /// A frame of `size` bytes, valid as far as its header tells.
    Frame {
        size: usize,
        doff: u8,
        sasl: bool,
        channel: u16,
    },
}

impl FrameDecoder {
    /// A decoder that first expects a protocol header.
    pub fn new(max_frame_size: u32, pending_bytes_max: usize) -> FrameDecoder {
        FrameDecoder {
            partial: BytesMut::new(),
            input: Bytes::new(),
            max_frame_size,
            pending_bytes_max,
            expect_header: true,
            failed: None,
        }
    }

    /// The next item will be a protocol header (after a SASL outcome).
    pub fn expect_header(&mut self) {
        self.expect_header = true;
    }

    pub fn buffered_bytes(&self) -> usize {
        self.partial.len() + self.input.len()
    }

    /// Adds bytes read from the transport (copied).
    pub fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        self.push_bytes(Bytes::copy_from_slice(data))
    }

    /// Adds bytes read from the transport; the frames that lie whole in
    /// them are handed on as slices of `data`.
    pub fn push_bytes(&mut self, data: Bytes) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buffered_bytes() + data.len() > self.pending_bytes_max {
            return Err(self.fail(FrameError::PendingTooLarge {
                max: self.pending_bytes_max,
            }));
        }
        if !self.input.is_empty() {
            // Not drained since the last input: keep the order, copying.
            let rest = std::mem::take(&mut self.input);
            self.partial.extend_from_slice(&rest);
        }
        self.input = data;
        Ok(())
    }

    /// Bytes the item at the front of `buf` still lacks (0: complete, or
    /// its header is bad and `head` says so).
    fn missing(&self, buf: &[u8]) -> usize {
        match self.head(buf) {
            Ok(Head::NeedMore) => 8 - buf.len().min(8),
            Ok(Head::Header) | Err(_) => 0,
            Ok(Head::Frame { size, .. }) => size.saturating_sub(buf.len()),
        }
    }

    /// What the front of `buf` holds. Checked on the header alone, so an
    /// oversized frame is refused before its bytes are buffered.
    fn head(&self, buf: &[u8]) -> Result<Head, FrameError> {
        if self.expect_header {
            let n = buf.len().min(8);
            // Refuse as soon as the bytes cannot become "AMQP", so a client
            // of another protocol is not kept waiting for 8 bytes.
            if buf[..n.min(4)] != AMQP_HEADER[..n.min(4)] {
                return Err(FrameError::BadHeader(buf[..n].to_vec()));
            }
            return Ok(if n < 8 { Head::NeedMore } else { Head::Header });
        }
        if buf.len() < FRAME_HEADER_BYTES {
            return Ok(Head::NeedMore);
        }
        let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let doff = buf[4];
        let kind = buf[5];
        let channel = u16::from_be_bytes([buf[6], buf[7]]);
        if (size as usize) < FRAME_HEADER_BYTES {
            return Err(FrameError::BadSize(size));
        }
        if size > self.max_frame_size {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_size,
            });
        }
        if doff < 2 || u32::from(doff) * 4 > size {
            return Err(FrameError::BadDataOffset { doff, size });
        }
        if kind != TYPE_AMQP && kind != TYPE_SASL {
            return Err(FrameError::UnknownType(kind));
        }
        Ok(Head::Frame {
            size: size as usize,
            doff,
            sasl: kind == TYPE_SASL,
            channel,
        })
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        e
    }

    pub fn next_item(&mut self) -> Result<Option<Item>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // An item begun in an earlier input comes first: copy from the
        // input only what it lacks.
        while !self.partial.is_empty() && !self.input.is_empty() {
            let missing = self.missing(&self.partial);
            if missing == 0 {
                break;
            }
            let take = missing.min(self.input.len());
            let more = self.input.split_to(take);
            self.partial.extend_from_slice(&more);
        }
        let from_partial = !self.partial.is_empty();
        let buf: &[u8] = if from_partial {
            &self.partial
        } else {
            &self.input
        };
        if buf.is_empty() {
            return Ok(None);
        }
        let head = match self.head(buf) {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e)),
        };
        let (len, frame) = match head {
            Head::NeedMore => (usize::MAX, None),
            Head::Header => (8, None),
            Head::Frame {
                size,
                doff,
                sasl,
                channel,
            } => (size, Some((doff, sasl, channel))),
        };
        if buf.len() < len {
            if !from_partial {
                // The input's last item is incomplete: keep its bytes (less
                // than a frame) for the next input to complete.
                let rest = std::mem::take(&mut self.input);
                self.partial.extend_from_slice(&rest);
            }
            return Ok(None);
        }
        let mut bytes = if from_partial {
            self.partial.split_to(len).freeze()
        } else {
            self.input.split_to(len)
        };
        let Some((doff, sasl, channel)) = frame else {
            let header = if bytes[..] == AMQP_HEADER {
                ProtocolHeader::Amqp
            } else if bytes[..] == SASL_HEADER {
                ProtocolHeader::Sasl
            } else {
                return Err(self.fail(FrameError::BadHeader(bytes.to_vec())));
            };
            self.expect_header = false;
            return Ok(Some(Item::Header(header)));
        };
        // The extended header (doff > 2) carries nothing we use.
        bytes.advance(usize::from(doff) * 4);
        Ok(Some(Item::Frame(RawFrame {
            sasl,
            channel,
            body: bytes,
        })))
    }
}

/// Appends one frame: header, performative (or SASL body), payload.
pub fn encode_frame(
    out: &mut BytesMut,
    sasl: bool,
    channel: u16,
    body: &super::value::Value,
    payload: &[u8],
) {
    let start = out.len();
    out.put_slice(&[0, 0, 0, 0, 2, if sasl { TYPE_SASL } else { TYPE_AMQP }]);
    out.put_u16(channel);
    encode_value(body, out);
    out.put_slice(payload);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// An empty AMQP frame on channel 0: the heartbeat.
pub const EMPTY_FRAME: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];

/// Appends a frame carrying `perf` and `payload` (payload only for transfers).
pub fn encode_performative(out: &mut BytesMut, channel: u16, perf: &Performative, payload: &[u8]) {
    encode_performative_head(out, channel, perf, payload.len());
    out.put_slice(payload);
}

/// Appends a frame's header and `perf`, sized for a payload of
/// `payload_len` bytes that the caller sends right after (apart, so a
/// large one is not copied). Returns the whole frame's size.
pub fn encode_performative_head(
    out: &mut BytesMut,
    channel: u16,
    perf: &Performative,
    payload_len: usize,
) -> usize {
    let start = out.len();
    out.put_slice(&[0, 0, 0, 0, 2, TYPE_AMQP]);
    out.put_u16(channel);
    perf.encode(out);
    let size = out.len() - start + payload_len;
    let size32 = u32::try_from(size).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size32.to_be_bytes());
    size
}

/// Decodes an AMQP frame body into its performative and payload; the
/// payload shares the frame's buffer.
pub fn decode_amqp_body(
    body: Bytes,
    limits: &DecodeLimits,
) -> Result<(Performative, Bytes), CodecError> {
    let mut r = Reader::new(body, limits);
    let perf = Performative::read(&mut r)?;
    let payload = r.rest();
    if !payload.is_empty() && !matches!(perf, Performative::Transfer(_)) {
        return Err(CodecError::TrailingBytes);
    }
    Ok((perf, payload))
}

/// Decodes a SASL frame body.
pub fn decode_sasl_body(body: Bytes, limits: &DecodeLimits) -> Result<SaslFrame, CodecError> {
    let mut r = Reader::new(body, limits);
    let frame = SaslFrame::from_value(r.read()?)?;
    if !r.is_empty() {
        return Err(CodecError::TrailingBytes);
    }
    Ok(frame)
}
