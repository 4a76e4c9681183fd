//! Incremental frame decoder.

use bytes::{Buf, Bytes, BytesMut};

use super::error::DecodeError;
use super::escape::{unescape_into, Escaping};
use super::frame::{parse_content_length, Command, Frame, HeaderEnds, Version};
use super::limits::Limits;

/// What [`Decoder::next`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// One EOL (LF or CR LF) between frames.
    HeartBeat,
}

/// Longest piece of peer input quoted in an error message.
const QUOTE_MAX_CHARS: usize = 40;

fn quote(s: &str) -> String {
    s.chars().take(QUOTE_MAX_CHARS).collect()
}

/// Bodies up to this size are copied out of the read buffer; larger ones
/// share it. A shared body would pin the whole buffer allocation for as long
/// as the message sits in a queue, which for small messages costs far more
/// memory than the copy costs time.
const COPY_BODY_MAX_BYTES: usize = 4096;

/// Headers room is made for up front (more still fit, by growing): a
/// typical MESSAGE frame's headers, and their bytes.
const HEADERS_HINT: usize = 12;
const HEADER_BYTES_HINT: usize = 256;

/// Incremental STOMP decoder for one connection.
///
/// Feed bytes with [`push`](Decoder::push), then call
/// [`next`](Decoder::next) until it returns `Ok(None)`. Errors are fatal:
/// once `push` or `next` has returned an error, both keep returning it, and
/// the connection should be closed (after an ERROR frame).
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Option<Version>,
    input: Input,
    /// The frame being decoded, once its command line has been read.
    head: Option<Head>,
    failed: Option<DecodeError>,
}

/// The unconsumed bytes.
#[derive(Debug, Default)]
struct Input {
    buf: BytesMut,
    /// How much of `buf` is known not to contain the byte being searched
    /// for, so bytes that trickle in are not rescanned from the start.
    /// Reset whenever bytes are consumed.
    scanned: usize,
}

/// The part of a frame decoded so far.
#[derive(Debug)]
struct Head {
    command: Command,
    escaping: Escaping,
    /// The header lines read so far, unescaped, `name:value\n` each
    /// (each checked to be UTF-8 as it is read).
    lines: Vec<u8>,
    ends: Vec<HeaderEnds>,
    /// The frame (headers, no body yet), once the blank line is read.
    frame: Option<Frame>,
    /// Bytes of the command and header lines, EOLs included.
    head_bytes: usize,
    /// The first `content-length` header, once seen.
    content_length: Option<usize>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        // A frame's headers are indexed with u32 offsets.
        assert!(
            u32::try_from(limits.frame_bytes_max).is_ok(),
            "frame_bytes_max {} over 4 GiB",
            limits.frame_bytes_max
        );
        Decoder {
            limits,
            version: None,
            input: Input::default(),
            head: None,
            failed: None,
        }
    }

    /// Sets the negotiated version, which decides how headers of the frames
    /// not yet decoded are unescaped. Call it right after the CONNECT frame.
    pub fn set_version(&mut self, v: Version) {
        self.version = Some(v);
    }

    /// The version given to [`set_version`](Decoder::set_version), if any.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes pushed but not yet consumed by [`next`](Decoder::next).
    pub fn buffered_bytes(&self) -> usize {
        self.input.buf.len()
    }

    /// Buffers bytes read from the peer. Fails, buffering nothing, if more
    /// than `pending_bytes_max` would then be buffered.
    pub fn push(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let max = self.limits.pending_bytes_max;
        if self.input.buf.len().saturating_add(data.len()) > max {
            return Err(self.fail(DecodeError::PendingTooLarge { max }));
        }
        self.input.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next frame or heart-beat; `Ok(None)` if more bytes are needed.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Decoded>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.step().map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e.clone());
        e
    }

    fn step(&mut self) -> Result<Option<Decoded>, DecodeError> {
        let limits = &self.limits;
        let frame_max = limits.frame_bytes_max;
        loop {
            let Some(head) = &mut self.head else {
                // Between frames: heart-beats, or the next command line.
                match self.input.buf.first() {
                    None => return Ok(None),
                    Some(b'\n') => {
                        self.input.consume(1);
                        return Ok(Some(Decoded::HeartBeat));
                    }
                    Some(b'\r') => match self.input.buf.get(1) {
                        None => return Ok(None),
                        Some(b'\n') => {
                            self.input.consume(2);
                            return Ok(Some(Decoded::HeartBeat));
                        }
                        Some(_) => {}
                    },
                    Some(_) => {}
                }
                let Some(line) = self.input.line_at(0, limits.header_line_bytes_max)? else {
                    self.input.scanned = self.input.buf.len();
                    return Ok(None);
                };
                let (len, eol_len) = (line.len, line.eol_len);
                let line = &self.input.buf[..len];
                let command = Command::parse(line).ok_or_else(|| {
                    DecodeError::UnknownCommand(quote(&String::from_utf8_lossy(line)))
                })?;
                let head_bytes = len + eol_len;
                if head_bytes > frame_max {
                    return Err(DecodeError::FrameTooLarge { max: frame_max });
                }
                self.input.consume(head_bytes);
                let version = self.version.unwrap_or(Version::V1_2);
                self.head = Some(Head {
                    command,
                    escaping: Escaping::for_frame(version, command),
                    lines: Vec::with_capacity(HEADER_BYTES_HINT),
                    ends: Vec::with_capacity(HEADERS_HINT),
                    frame: None,
                    head_bytes,
                    content_length: None,
                });
                continue;
            };

            if head.frame.is_none() {
                // Every complete header line buffered, in one pass each and
                // one consume at the end.
                let buf = &self.input.buf[..];
                let mut at = 0;
                let complete = loop {
                    let Some(line) = self.input.line_at(at, limits.header_line_bytes_max)? else {
                        break false;
                    };
                    let rest = &buf[at..];
                    let len = line.len;
                    head.head_bytes = head.head_bytes.saturating_add(len + line.eol_len);
                    if head.head_bytes > frame_max {
                        return Err(DecodeError::FrameTooLarge { max: frame_max });
                    }
                    at += len + line.eol_len;
                    if len == 0 {
                        break true;
                    }
                    if head.ends.len() >= limits.headers_max {
                        return Err(DecodeError::TooManyHeaders {
                            max: limits.headers_max,
                        });
                    }
                    let start = head.lines.len();
                    let ends =
                        push_header_line(&rest[..len], &line, head.escaping, &mut head.lines)?;
                    // Only the first content-length counts; check it now
                    // rather than after waiting for a body that may never
                    // fit.
                    let name = &head.lines[start..ends.name_end()];
                    if name == b"content-length" && head.content_length.is_none() {
                        let value = &head.lines[ends.name_end() + 1..ends.value_end()];
                        let n = parse_content_length(value).ok_or_else(|| {
                            DecodeError::BadContentLength(quote(&String::from_utf8_lossy(value)))
                        })?;
                        head.content_length = Some(n);
                    }
                    head.ends.push(ends);
                    if let Some(n) = head.content_length {
                        if head.head_bytes.saturating_add(n) > frame_max {
                            return Err(DecodeError::FrameTooLarge { max: frame_max });
                        }
                    }
                };
                let buffered = buf.len();
                self.input.consume(at);
                if !complete {
                    // What is left holds no LF: not searched again.
                    self.input.scanned = buffered - at;
                    return Ok(None);
                }
                if let Some(n) = head.content_length {
                    if head.head_bytes.saturating_add(n) > frame_max {
                        return Err(DecodeError::FrameTooLarge { max: frame_max });
                    }
                }
                // Every line was checked; this only gives the bytes their
                // type (one pass, far cheaper than one per line).
                let lines = String::from_utf8(std::mem::take(&mut head.lines))
                    .map_err(|_| DecodeError::InvalidUtf8)?;
                let ends = std::mem::take(&mut head.ends);
                head.frame = Some(Frame::from_decoded(head.command, lines, ends));
                continue;
            }

            let body_len = match head.content_length {
                Some(n) => match self.input.buf.get(n) {
                    None => return Ok(None),
                    Some(0) => n,
                    Some(_) => return Err(DecodeError::MissingNul),
                },
                None => {
                    let found = self.input.find(0);
                    // Without a NUL, everything buffered is body so far.
                    let len = found.unwrap_or(self.input.buf.len());
                    if head.head_bytes.saturating_add(len) > frame_max {
                        return Err(DecodeError::FrameTooLarge { max: frame_max });
                    }
                    match found {
                        Some(n) => n,
                        None => return Ok(None),
                    }
                }
            };
            let body = self.input.take_body(body_len);
            return Ok(self
                .head
                .take()
                .and_then(|head| head.frame)
                .map(|mut frame| {
                    frame.body = body;
                    Decoded::Frame(frame)
                }));
        }
    }
}

/// Appends a header line, split at its first `:` and unescaped, to
/// `lines` as `name:value\n`, and says where its name and value end. Lines
/// without a backslash (nearly all) are copied as they are.
fn push_header_line(
    line: &[u8],
    scan: &HeaderLine,
    escaping: Escaping,
    lines: &mut Vec<u8>,
) -> Result<HeaderEnds, DecodeError> {
    let colon = scan.colon.ok_or(DecodeError::MissingColon)?;
    if colon == 0 {
        return Err(DecodeError::EmptyHeaderName);
    }
    let utf8 = |b: &[u8]| {
        // ASCII (nearly every header) needs no UTF-8 check.
        if !scan.non_ascii || std::str::from_utf8(b).is_ok() {
            Ok(())
        } else {
            Err(DecodeError::InvalidUtf8)
        }
    };
    let start = lines.len();
    let name_end = if escaping == Escaping::Raw || !scan.backslash {
        // `:` is ASCII, so the line is UTF-8 exactly when both sides are.
        utf8(line)?;
        lines.extend_from_slice(line);
        start + colon
    } else {
        // Name first, then value, each checked as soon as it is
        // unescaped, so the error reported is the first one on the line.
        unescape_into(&line[..colon], escaping, lines)?;
        let name_end = lines.len();
        utf8(&lines[start..name_end])?;
        lines.push(b':');
        unescape_into(&line[colon + 1..], escaping, lines)?;
        utf8(&lines[name_end + 1..])?;
        name_end
    };
    let value_end = lines.len();
    lines.push(b'\n');
    Ok(HeaderEnds::new(name_end, value_end))
}

/// A header line found by [`find_header_line`], with what one pass over
/// its bytes learnt.
#[derive(Debug, PartialEq, Eq)]
struct HeaderLine {
    /// Length without the EOL.
    len: usize,
    /// 1 for LF, 2 for CR LF.
    eol_len: usize,
    /// The first `:`.
    colon: Option<usize>,
    /// Holds a `\\`, so may need unescaping.
    backslash: bool,
    /// Holds a byte over 0x7f, so needs a UTF-8 check.
    non_ascii: bool,
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that equals `byte`. Exact up to and
/// including the lowest match; above it a borrow may set false bits, so
/// only the lowest set bit (or none) is meaningful.
fn bytes_equal(x: u64, byte: u8) -> u64 {
    let y = x ^ LOW_BITS.wrapping_mul(u64::from(byte));
    y.wrapping_sub(LOW_BITS) & !y & HIGH_BITS
}

/// Finds the first line of `hay` and classifies its bytes, eight at a
/// time; `None` if `hay` holds no LF. `known_no_lf` bytes at the front were
/// searched before and hold no LF.
fn find_header_line(hay: &[u8], known_no_lf: usize) -> Option<HeaderLine> {
    if known_no_lf > 0 {
        // Bytes trickled in: find the LF in the new bytes only, then
        // classify the whole line (rare, so two passes are fine).
        let lf = known_no_lf + find_byte(&hay[known_no_lf..], b'\n')?;
        return find_header_line(&hay[..=lf], 0);
    }
    let mut colon = None;
    let mut backslash = 0;
    let mut high = 0;
    let mut at = 0;
    let mut words = hay.chunks_exact(8);
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    // Zero padding matches none of the bytes looked for.
    for w in (&mut words).chain(std::iter::once(&tail[..])) {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        let lf = bytes_equal(x, b'\n');
        // The bytes before the LF, if this word has it.
        let before = if lf == 0 {
            u64::MAX
        } else {
            (1u64 << (lf.trailing_zeros() - 7)) - 1
        };
        let c = bytes_equal(x, b':') & before;
        if colon.is_none() && c != 0 {
            colon = Some(at + c.trailing_zeros() as usize / 8);
        }
        backslash |= bytes_equal(x, b'\\') & before;
        high |= x & HIGH_BITS & before;
        if lf != 0 {
            let lf = at + lf.trailing_zeros() as usize / 8;
            let (len, eol_len) = if lf > 0 && hay[lf - 1] == b'\r' {
                (lf - 1, 2)
            } else {
                (lf, 1)
            };
            return Some(HeaderLine {
                len,
                eol_len,
                colon,
                backslash: backslash != 0,
                non_ascii: high != 0,
            });
        }
        at += 8;
    }
    None
}

/// Position of the first `needle` in `hay`: eight bytes at a time, then
/// byte by byte within the word that has it.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let pattern = LOW.wrapping_mul(u64::from(needle));
    let mut at = 0;
    let mut words = hay.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b) ^ pattern;
        // Non-zero exactly when some byte of x is zero, i.e. matched.
        if x.wrapping_sub(LOW) & !x & HIGH != 0 {
            break;
        }
        at += 8;
    }
    hay[at..].iter().position(|&b| b == needle).map(|i| at + i)
}

impl Input {
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.scanned = 0;
    }

    /// Position of the first `byte`, searching only bytes not searched before.
    fn find(&mut self, byte: u8) -> Option<usize> {
        let start = self.scanned.min(self.buf.len());
        match find_byte(&self.buf[start..], byte) {
            Some(i) => Some(start + i),
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// The line that starts `at` bytes into the buffer, classified by
    /// [`find_header_line`]; `Ok(None)` if its LF has not arrived. Fails as
    /// soon as the line is known to be longer than `max`, even if its end
    /// has not arrived. At the front, bytes searched before are skipped.
    fn line_at(&self, at: usize, max: usize) -> Result<Option<HeaderLine>, DecodeError> {
        let rest = &self.buf[at..];
        let known_no_lf = if at == 0 {
            self.scanned.min(rest.len())
        } else {
            0
        };
        let too_long = DecodeError::HeaderLineTooLong { max };
        let Some(line) = find_header_line(rest, known_no_lf) else {
            // The last byte may be the CR of a CR LF, hence the + 1.
            if rest.len() > max.saturating_add(1) {
                return Err(too_long);
            }
            return Ok(None);
        };
        if line.len > max {
            return Err(too_long);
        }
        Ok(Some(line))
    }

    /// Takes a body of `len` bytes and the NUL after it.
    fn take_body(&mut self, len: usize) -> Bytes {
        let body = if len <= COPY_BODY_MAX_BYTES {
            let body = Bytes::copy_from_slice(&self.buf[..len]);
            self.buf.advance(len);
            body
        } else {
            self.buf.split_to(len).freeze()
        };
        self.consume(1);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::{find_byte, find_header_line, HeaderLine};
    use proptest::prelude::*;

    /// What [`find_header_line`] must find, byte by byte.
    fn naive_header_line(hay: &[u8]) -> Option<HeaderLine> {
        let lf = hay.iter().position(|&b| b == b'\n')?;
        let (len, eol_len) = if lf > 0 && hay[lf - 1] == b'\r' {
            (lf - 1, 2)
        } else {
            (lf, 1)
        };
        let line = &hay[..lf];
        Some(HeaderLine {
            len,
            eol_len,
            colon: line.iter().position(|&b| b == b':'),
            backslash: line.contains(&b'\\'),
            non_ascii: !line.is_ascii(),
        })
    }

    proptest! {
        #[test]
        fn header_line_scan_is_naive_scan(
            hay in proptest::collection::vec(prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b':'), Just(b'\\'), Just(0x80u8), Just(0u8), Just(b'a'), any::<u8>()
            ], 0..40),
            known in 0usize..40,
        ) {
            let expected = naive_header_line(&hay);
            prop_assert_eq!(find_header_line(&hay, 0), naive_header_line(&hay));
            // A known LF-free prefix changes nothing.
            let lf_free = hay.iter().position(|&b| b == b'\n').unwrap_or(hay.len());
            prop_assert_eq!(find_header_line(&hay, known.min(lf_free)), expected);
        }

        #[test]
        fn find_byte_is_position(hay in proptest::collection::vec(0u8..4, 0..70), needle in 0u8..5) {
            prop_assert_eq!(find_byte(&hay, needle), hay.iter().position(|&b| b == needle));
        }

        #[test]
        fn find_byte_is_position_on_any_bytes(hay in proptest::collection::vec(any::<u8>(), 0..70), needle in any::<u8>()) {
            prop_assert_eq!(find_byte(&hay, needle), hay.iter().position(|&b| b == needle));
        }
    }

    #[test]
    fn find_byte_edges() {
        assert_eq!(find_byte(b"", b'\n'), None);
        assert_eq!(
            find_byte(b"\x80\x80\x80\x80\x80\x80\x80\x80\n", b'\n'),
            Some(8)
        );
        assert_eq!(find_byte(b"\x0b\x09\x0b\x0b\x0b\x0b\x0b\x0b", b'\n'), None);
        assert_eq!(find_byte(&[0xff; 17], 0xff), Some(0));
        assert_eq!(find_byte(&[0u8; 17], 0), Some(0));
    }
}
