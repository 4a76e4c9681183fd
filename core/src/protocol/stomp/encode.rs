//! Frame encoder.

use bytes::{BufMut, Bytes, BytesMut};

use super::escape::{escape_into, Escaping};
use super::frame::{parse_content_length, Command, Frame, Version};

/// A heart-beat: one EOL between frames.
pub const HEARTBEAT: &[u8] = b"\n";
/// What ends every frame.
pub const FRAME_END: &[u8] = b"\0";

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
    // Enough room unless many characters need escaping.
    out.reserve(frame.command.as_str().len() + frame.header_bytes() + frame.body.len() + 40);
    let mut w = FrameWriter::start(out, frame.command, version, frame.body.len());
    for (name, value, line) in frame.header_lines() {
        match line {
            // Known to need no escaping: the line is its own wire form.
            Some(line) if name != "content-length" => w.line(line),
            _ => w.header(name, value),
        }
    }
    w.finish(&frame.body);
}

/// Writes one frame straight to a buffer, header by header, as [`encode`]
/// describes: for frames rendered once and sent (a MESSAGE per delivery)
/// this saves building a [`Frame`] first.
pub struct FrameWriter<'a> {
    out: &'a mut BytesMut,
    escaping: Escaping,
    body_len: usize,
    has_content_length: bool,
}

impl<'a> FrameWriter<'a> {
    /// Writes the command line of a frame whose body will be `body_len`
    /// bytes.
    pub fn start(
        out: &'a mut BytesMut,
        command: Command,
        version: Version,
        body_len: usize,
    ) -> FrameWriter<'a> {
        out.put_slice(command.as_str().as_bytes());
        out.put_u8(b'\n');
        FrameWriter {
            out,
            escaping: Escaping::for_frame(version, command),
            body_len,
            has_content_length: false,
        }
    }

    /// Writes a header, escaped. The first `content-length` gets the true
    /// length of the body, whatever `value` says.
    pub fn header(&mut self, name: &str, value: &str) {
        let is_first_content_length = !self.has_content_length && name == "content-length";
        escape_into(self.out, name, self.escaping);
        self.out.put_u8(b':');
        if is_first_content_length {
            self.has_content_length = true;
            if parse_content_length(value.as_bytes()) != Some(self.body_len) {
                write_len(self.out, self.body_len);
                self.out.put_u8(b'\n');
                return;
            }
        }
        escape_into(self.out, value, self.escaping);
        self.out.put_u8(b'\n');
    }

    /// Writes a header whose value is `parts` joined (not a
    /// `content-length`).
    pub fn header_joined(&mut self, name: &str, parts: &[&str]) {
        debug_assert_ne!(name, "content-length");
        escape_into(self.out, name, self.escaping);
        self.out.put_u8(b':');
        for p in parts {
            escape_into(self.out, p, self.escaping);
        }
        self.out.put_u8(b'\n');
    }

    /// Writes a header whose value is an integer.
    pub fn header_int(&mut self, name: &str, value: impl itoa::Integer) {
        let mut digits = itoa::Buffer::new();
        self.header(name, digits.format(value));
    }

    /// Writes a whole `name:value\n` line that needs no escaping and is
    /// not a `content-length`.
    fn line(&mut self, line: &str) {
        debug_assert!(line.ends_with('\n') && !line.starts_with("content-length:"));
        self.out.put_slice(line.as_bytes());
    }

    /// Ends the headers (adding a `content-length` for a non-empty body
    /// that has none) and writes the body and the NUL.
    pub fn finish(self, body: &[u8]) {
        assert_eq!(body.len(), self.body_len, "FrameWriter body length");
        let out = self.end_headers();
        out.put_slice(body);
        out.put_slice(FRAME_END);
    }

    /// Ends the headers only: the caller sends the body (of the length
    /// given to `start`) and then [`FRAME_END`] itself.
    pub fn finish_head(self) {
        self.end_headers();
    }

    fn end_headers(self) -> &'a mut BytesMut {
        if !self.has_content_length && self.body_len > 0 {
            self.out.put_slice(b"content-length:");
            write_len(self.out, self.body_len);
            self.out.put_u8(b'\n');
        }
        self.out.put_u8(b'\n');
        self.out
    }
}

/// [`encode`] into a fresh buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let mut out = BytesMut::new();
    encode(frame, version, &mut out);
    out.freeze()
}

fn write_len(out: &mut BytesMut, len: usize) {
    out.put_slice(itoa::Buffer::new().format(len).as_bytes());
}
