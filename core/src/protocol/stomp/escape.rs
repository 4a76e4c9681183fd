//! Header escaping (STOMP 1.1 and 1.2).

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::frame::{has_special, Command, Version};

/// How the headers of one frame are escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escaping {
    /// No escapes (STOMP 1.0, and CONNECT/STOMP/CONNECTED in every version).
    Raw,
    /// `\n`, `\c`, `\\`.
    V1_1,
    /// `\r`, `\n`, `\c`, `\\`.
    V1_2,
}

impl Escaping {
    pub(crate) fn for_frame(version: Version, command: Command) -> Escaping {
        if command.is_never_escaped() {
            return Escaping::Raw;
        }
        match version {
            Version::V1_0 => Escaping::Raw,
            Version::V1_1 => Escaping::V1_1,
            Version::V1_2 => Escaping::V1_2,
        }
    }
}

/// Appends a raw header name or value, unescaped, to `out`.
pub(crate) fn unescape_into(
    raw: &[u8],
    escaping: Escaping,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    if escaping == Escaping::Raw {
        out.extend_from_slice(raw);
        return Ok(());
    }
    out.reserve(raw.len());
    let mut iter = raw.iter();
    while let Some(&b) = iter.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let next = iter.next().copied();
        out.push(match (next, escaping) {
            (Some(b'n'), _) => b'\n',
            (Some(b'c'), _) => b':',
            (Some(b'\\'), _) => b'\\',
            (Some(b'r'), Escaping::V1_2) => b'\r',
            _ => return Err(DecodeError::InvalidEscape(show_escape(next))),
        });
    }
    Ok(())
}

/// A printable rendering of a bad escape sequence for the error message.
fn show_escape(next: Option<u8>) -> String {
    match next {
        None => "\\".to_owned(),
        Some(b) if b.is_ascii_graphic() => format!("\\{}", char::from(b)),
        Some(b) => format!("\\x{b:02x}"),
    }
}

/// Appends `s` escaped for the wire.
///
/// Without escapes a LF cannot be represented and would end the header line
/// early, letting one header smuggle in others; it is written as a space.
pub(crate) fn escape_into(out: &mut BytesMut, s: &str, escaping: Escaping) {
    // Most header names and values need no escaping: copy them whole.
    if !has_special(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.reserve(s.len() + 8);
    for &b in s.as_bytes() {
        match (b, escaping) {
            (b'\n', Escaping::Raw) => out.put_u8(b' '),
            (_, Escaping::Raw) => out.put_u8(b),
            (b'\\', _) => out.put_slice(b"\\\\"),
            (b'\n', _) => out.put_slice(b"\\n"),
            (b':', _) => out.put_slice(b"\\c"),
            (b'\r', Escaping::V1_2) => out.put_slice(b"\\r"),
            _ => out.put_u8(b),
        }
    }
}
