//! Frame encoder.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::escape::{escape_into, Escaping};
use super::frame::{parse_content_length, Frame, Version};

/// A heart-beat: one EOL between frames.
pub const HEARTBEAT: &[u8] = b"\n";

/// Appends `frame` to `out` as `version` writes it.
///
/// - Headers are escaped per `version`, except in CONNECT, STOMP and
///   CONNECTED frames and in 1.0, which have no escapes: there a LF in a
///   name or value is written as a space (it would otherwise end the line
///   and let a value inject headers), and a value cannot end with CR.
///   With 1.1, CR has no escape and is written as is.
/// - A non-empty body gets a `content-length` header if the frame has none,
///   so bodies may contain NUL. If the frame's first `content-length` does
///   not match its body, the true length is written instead, since a wrong
///   one would desynchronise the peer's decoder.
/// - Header names must not be empty (a decoder rejects them).
/// - Lines end with LF, which every version accepts.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let escaping = Escaping::for_frame(version, frame.command);
    let body_len = frame.body.len();
    // Enough room unless many characters need escaping.
    out.reserve(frame.command.as_str().len() + frame.header_bytes() + body_len + 40);

    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    let mut has_content_length = false;
    for (name, value, line) in frame.header_lines() {
        let is_first_content_length = !has_content_length && name == "content-length";
        has_content_length |= is_first_content_length;
        if is_first_content_length && parse_content_length(value.as_bytes()) != Some(body_len) {
            escape_into(out, name, escaping);
            out.put_u8(b':');
            write_len(out, body_len);
        } else if let Some(line) = line {
            // Known to need no escaping: the line is its own wire form.
            out.put_slice(line.as_bytes());
            continue;
        } else {
            escape_into(out, name, escaping);
            out.put_u8(b':');
            escape_into(out, value, escaping);
        }
        out.put_u8(b'\n');
    }
    if !has_content_length && body_len > 0 {
        out.put_slice(b"content-length:");
        write_len(out, body_len);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// [`encode`] into a fresh buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let mut out = BytesMut::new();
    encode(frame, version, &mut out);
    out.freeze()
}

fn write_len(out: &mut BytesMut, len: usize) {
    // Writing to a BytesMut grows it and cannot fail.
    let _ = write!(out, "{len}");
}
