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
/// Errors are sticky: after one, `next_item` keeps returning it.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_size: u32,
    pending_bytes_max: usize,
    expect_header: bool,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that first expects a protocol header.
    pub fn new(max_frame_size: u32, pending_bytes_max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
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
        self.buf.len()
    }

    pub fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.len() + data.len() > self.pending_bytes_max {
            return Err(self.fail(FrameError::PendingTooLarge {
                max: self.pending_bytes_max,
            }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        e
    }

    pub fn next_item(&mut self) -> Result<Option<Item>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.expect_header {
            return self.next_header();
        }
        if self.buf.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let doff = self.buf[4];
        let kind = self.buf[5];
        let channel = u16::from_be_bytes([self.buf[6], self.buf[7]]);
        // Checked on the header alone, so an oversized frame is refused
        // before its bytes are buffered.
        if (size as usize) < FRAME_HEADER_BYTES {
            return Err(self.fail(FrameError::BadSize(size)));
        }
        if size > self.max_frame_size {
            return Err(self.fail(FrameError::TooLarge {
                size,
                max: self.max_frame_size,
            }));
        }
        if doff < 2 || u32::from(doff) * 4 > size {
            return Err(self.fail(FrameError::BadDataOffset { doff, size }));
        }
        if kind != TYPE_AMQP && kind != TYPE_SASL {
            return Err(self.fail(FrameError::UnknownType(kind)));
        }
        if self.buf.len() < size as usize {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(size as usize);
        // The extended header (doff > 2) carries nothing we use.
        frame.advance(usize::from(doff) * 4);
        Ok(Some(Item::Frame(RawFrame {
            sasl: kind == TYPE_SASL,
            channel,
            body: frame.freeze(),
        })))
    }

    fn next_header(&mut self) -> Result<Option<Item>, FrameError> {
        let n = self.buf.len().min(8);
        // Refuse as soon as the bytes cannot become "AMQP", so a client of
        // another protocol is not kept waiting for 8 bytes.
        if self.buf[..n.min(4)] != AMQP_HEADER[..n.min(4)] {
            let got = self.buf[..n].to_vec();
            return Err(self.fail(FrameError::BadHeader(got)));
        }
        if n < 8 {
            return Ok(None);
        }
        let h = self.buf.split_to(8);
        let header = if h[..] == AMQP_HEADER {
            ProtocolHeader::Amqp
        } else if h[..] == SASL_HEADER {
            ProtocolHeader::Sasl
        } else {
            return Err(self.fail(FrameError::BadHeader(h.to_vec())));
        };
        self.expect_header = false;
        Ok(Some(Item::Header(header)))
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
    let start = out.len();
    out.put_slice(&[0, 0, 0, 0, 2, TYPE_AMQP]);
    out.put_u16(channel);
    perf.encode(out);
    out.put_slice(payload);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
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
