//! Arbitrary bytes into the STOMP decoder.
//!
//! Checks that the decoder never panics, that splitting the input changes
//! nothing, that buffered bytes stay bounded, and that every decoded frame
//! survives encode + decode.
#![no_main]

use halyard_core::protocol::stomp::{
    encode_to_bytes, Command, DecodeError, Decoded, Decoder, Frame, Limits, Version,
};
use libfuzzer_sys::fuzz_target;

/// Small limits, so the fuzzer reaches every one of them.
fn limits() -> Limits {
    Limits {
        frame_bytes_max: 1024,
        headers_max: 8,
        header_line_bytes_max: 128,
        // Above libFuzzer's input sizes: the content alone decides.
        pending_bytes_max: 1 << 20,
    }
}

fn decoder(version: Option<Version>, limits: Limits) -> Decoder {
    let mut d = Decoder::new(limits);
    if let Some(v) = version {
        d.set_version(v);
    }
    d
}

/// Pushes each piece and drains the decoder after it.
fn decode(mut d: Decoder, pieces: &[&[u8]]) -> (Vec<Decoded>, Option<DecodeError>) {
    let l = d.limits().clone();
    // While waiting for bytes the decoder holds at most part of one frame.
    let held_max = l.frame_bytes_max.max(l.header_line_bytes_max + 1);
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = d.push(piece) {
            return (out, Some(e));
        }
        loop {
            match d.next() {
                Ok(Some(x)) => out.push(x),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next(), Err(e.clone()), "errors are sticky");
                    return (out, Some(e));
                }
            }
        }
        assert!(d.buffered_bytes() <= held_max);
    }
    (out, None)
}

/// Whether `encode` can write `frame` exactly: without the 1.2 escapes a
/// header value cannot end with CR (decoders take it for part of the EOL).
fn representable(frame: &Frame, version: Version) -> bool {
    let escaped = version == Version::V1_2
        && !matches!(
            frame.command,
            Command::Connect | Command::Stomp | Command::Connected
        );
    escaped || frame.headers().all(|(_, v)| !v.ends_with('\r'))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let Some((&mode, input)) = rest.split_first() else {
        return;
    };
    let version = match mode % 4 {
        0 => None,
        1 => Some(Version::V1_0),
        2 => Some(Version::V1_1),
        _ => Some(Version::V1_2),
    };
    let cut = usize::from(split) % (input.len() + 1);
    let (head, tail) = input.split_at(cut);

    let whole = decode(decoder(version, limits()), &[input]);
    let pieces = decode(decoder(version, limits()), &[head, tail]);
    assert_eq!(whole, pieces, "split at {cut}");

    let encode_version = version.unwrap_or(Version::V1_2);
    for item in &whole.0 {
        let Decoded::Frame(frame) = item else {
            continue;
        };
        if !representable(frame, encode_version) {
            continue;
        }
        let mut expected = frame.clone();
        if !expected.body.is_empty() && expected.header("content-length").is_none() {
            expected.push_header("content-length", expected.body.len().to_string());
        }
        // Escaping can double a line, and content-length adds one: use
        // roomier limits to read the re-encoded frame back.
        let wire = encode_to_bytes(frame, encode_version);
        let again = decode(decoder(version, Limits::default()), &[&wire]);
        assert_eq!(again, (vec![Decoded::Frame(expected)], None));
    }
});
