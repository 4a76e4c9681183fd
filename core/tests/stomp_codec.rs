//! Tests of the STOMP codec through its public API.

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::stomp::{
    encode, encode_to_bytes, Command, DecodeError, Decoded, Decoder, Frame, Limits, Version,
    HEARTBEAT,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- helpers

/// Everything `next` yields until it needs more bytes, or the error.
fn drain(d: &mut Decoder) -> Result<Vec<Decoded>, DecodeError> {
    let mut out = Vec::new();
    while let Some(x) = d.next()? {
        out.push(x);
    }
    Ok(out)
}

/// Decodes `input` fed at once with default limits and no version set.
fn decode_all(input: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
    decode_with(Decoder::new(Limits::default()), input)
}

fn decode_with(mut d: Decoder, input: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
    d.push(input)?;
    drain(&mut d)
}

/// The single frame in `input` (which must be complete).
fn decode_one(input: &[u8]) -> Frame {
    frames(decode_all(input).expect("valid input"))
        .pop()
        .expect("one frame")
}

fn frames(items: Vec<Decoded>) -> Vec<Frame> {
    items
        .into_iter()
        .filter_map(|d| match d {
            Decoded::Frame(f) => Some(f),
            Decoded::HeartBeat => None,
        })
        .collect()
}

/// The first error `input` produces, fed at once with default limits.
fn decode_err(input: &[u8]) -> DecodeError {
    decode_all(input).expect_err("input is malformed")
}

/// What decoding the encoding of `f` gives: the encoder adds a
/// content-length header to a non-empty body that has none.
fn after_roundtrip(f: &Frame) -> Frame {
    let mut f = f.clone();
    if !f.body.is_empty() && f.header("content-length").is_none() {
        f.push_header("content-length", f.body.len().to_string());
    }
    f
}

fn decoder(version: Version) -> Decoder {
    let mut d = Decoder::new(Limits::default());
    d.set_version(version);
    d
}

fn roundtrip(f: &Frame, version: Version) -> Frame {
    let bytes = encode_to_bytes(f, version);
    let got = decode_with(decoder(version), &bytes).expect("encoded frame decodes");
    assert_eq!(got.len(), 1, "one frame from {bytes:?}");
    frames(got).pop().expect("a frame")
}

fn small_limits() -> Limits {
    Limits {
        frame_bytes_max: 1024,
        headers_max: 8,
        header_line_bytes_max: 100,
        pending_bytes_max: 4096,
    }
}

// ---------------------------------------------------------------- names

#[test]
fn versions_and_commands_have_their_wire_names() {
    assert_eq!(Version::V1_0.as_str(), "1.0");
    assert_eq!(Version::V1_1.as_str(), "1.1");
    assert_eq!(Version::V1_2.as_str(), "1.2");
    for v in Version::ALL {
        assert_eq!(Version::parse(v.as_str()), Some(v));
    }
    let names: Vec<&str> = Command::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "CONNECT",
            "STOMP",
            "SEND",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "ACK",
            "NACK",
            "BEGIN",
            "COMMIT",
            "ABORT",
            "DISCONNECT",
            "CONNECTED",
            "MESSAGE",
            "RECEIPT",
            "ERROR"
        ]
    );
    for c in Command::ALL {
        assert_eq!(Command::parse(c.as_str().as_bytes()), Some(c));
    }
    assert_eq!(Command::parse(b"send"), None);
    assert_eq!(Command::parse(b"SEND "), None);
    assert_eq!(Command::parse(b""), None);
}

#[test]
fn version_negotiation_picks_highest_common() {
    assert_eq!(Version::negotiate(None), Some(Version::V1_0));
    assert_eq!(Version::negotiate(Some("1.0,1.1,1.2")), Some(Version::V1_2));
    assert_eq!(Version::negotiate(Some("1.1, 1.0")), Some(Version::V1_1));
    assert_eq!(Version::negotiate(Some("2.0")), None);
}

// ---------------------------------------------------------------- frames

#[test]
fn every_command_decodes_from_text() {
    for c in Command::ALL {
        let text = format!("{}\nreceipt:r-1\n\nbody\0", c.as_str());
        let f = decode_one(text.as_bytes());
        assert_eq!(f.command, c);
        assert_eq!(hs(&f), vec![("receipt".into(), "r-1".into())]);
        assert_eq!(f.body, Bytes::from_static(b"body"));
    }
}

#[test]
fn every_command_roundtrips_in_every_version() {
    for v in Version::ALL {
        for c in Command::ALL {
            let f = Frame::new(c)
                .with_header("destination", "/queue/a")
                .with_header("x", "")
                .with_body(&b"payload"[..]);
            assert_eq!(roundtrip(&f, v), after_roundtrip(&f), "{c:?} {v:?}");
            let empty = Frame::new(c);
            assert_eq!(roundtrip(&empty, v), empty);
        }
    }
}

#[test]
fn encode_writes_the_expected_bytes() {
    let f = Frame::new(Command::Send)
        .with_header("destination", "/queue/a")
        .with_body("hi");
    assert_eq!(
        &encode_to_bytes(&f, Version::V1_2)[..],
        b"SEND\ndestination:/queue/a\ncontent-length:2\n\nhi\0"
    );
    // No body, no content-length.
    assert_eq!(
        &encode_to_bytes(&Frame::new(Command::Disconnect), Version::V1_2)[..],
        b"DISCONNECT\n\n\0"
    );
    // encode appends to what is already in the buffer.
    let mut out = BytesMut::from(&b"x"[..]);
    encode(&Frame::new(Command::Ack), Version::V1_1, &mut out);
    assert_eq!(&out[..], b"xACK\n\n\0");
    assert_eq!(HEARTBEAT, b"\n");
}

#[test]
fn encode_keeps_a_correct_content_length_and_fixes_a_wrong_one() {
    let f = Frame::new(Command::Message)
        .with_header("content-length", "3")
        .with_body("abc");
    assert_eq!(
        &encode_to_bytes(&f, Version::V1_2)[..],
        b"MESSAGE\ncontent-length:3\n\nabc\0"
    );
    let wrong = Frame::new(Command::Message)
        .with_header("content-length", "99")
        .with_header("content-length", "7")
        .with_body("abc");
    assert_eq!(
        &encode_to_bytes(&wrong, Version::V1_2)[..],
        b"MESSAGE\ncontent-length:3\ncontent-length:7\n\nabc\0"
    );
    let empty = Frame::new(Command::Send).with_header("content-length", "0");
    assert_eq!(roundtrip(&empty, Version::V1_2), empty);
}

#[test]
fn error_frame_carries_message_and_detail() {
    let f = Frame::error("unknown command \"FOO\"", "line 1\nline 2");
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.header("message"), Some("unknown command \"FOO\""));
    assert_eq!(f.header("content-type"), Some("text/plain"));
    assert_eq!(f.body, Bytes::from_static(b"line 1\nline 2"));
    let wire = encode_to_bytes(&f, Version::V1_2);
    assert!(wire.windows(17).any(|w| w == b"content-length:13"));
    assert_eq!(roundtrip(&f, Version::V1_2), after_roundtrip(&f));
}

#[test]
fn repeated_headers_are_kept_and_the_first_wins() {
    let f = decode_one(b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
    assert_eq!(f.header("foo"), Some("World"));
    assert_eq!(f.header("bar"), None);
    assert_eq!(
        hs(&f),
        vec![
            ("foo".to_string(), "World".to_string()),
            ("foo".to_string(), "Hello".to_string())
        ]
    );
    let mut built = Frame::new(Command::Send).with_header("a", "1");
    built.push_header("a", "2");
    assert_eq!(built.header("a"), Some("1"));
    assert_eq!(roundtrip(&built, Version::V1_2), built);
}

#[test]
fn header_names_are_case_sensitive_and_values_keep_spaces() {
    let f = decode_one(b"SEND\nFoo: a b \n\n\0");
    assert_eq!(f.header("foo"), None);
    assert_eq!(f.header("Foo"), Some(" a b "));
}

#[test]
fn raw_colon_in_value_is_data() {
    let f = decode_one(b"SEND\ndestination:tcp://host:61613\n\n\0");
    assert_eq!(f.header("destination"), Some("tcp://host:61613"));
}

// ---------------------------------------------------------------- escaping

#[test]
fn every_escape_is_decoded_in_values_and_names_with_1_2() {
    let f = decode_one(b"MESSAGE\na\\cb\\n\\r\\\\:x\\ny\\cz\\rw\\\\v\n\n\0");
    assert_eq!(
        hs(&f),
        vec![("a:b\n\r\\".to_string(), "x\ny:z\rw\\v".to_string())]
    );
}

#[test]
fn every_escape_is_encoded_with_1_2() {
    let f = Frame::new(Command::Message).with_header("a:b\n\r\\", "x\ny:z\rw\\v");
    assert_eq!(
        &encode_to_bytes(&f, Version::V1_2)[..],
        b"MESSAGE\na\\cb\\n\\r\\\\:x\\ny\\cz\\rw\\\\v\n\n\0"
    );
    assert_eq!(roundtrip(&f, Version::V1_2), f);
}

#[test]
fn version_1_1_escapes_all_but_cr() {
    let f = Frame::new(Command::Send).with_header("k:\\", "a\nb\rc");
    assert_eq!(
        &encode_to_bytes(&f, Version::V1_1)[..],
        b"SEND\nk\\c\\\\:a\\nb\rc\n\n\0"
    );
    assert_eq!(roundtrip(&f, Version::V1_1), f);
    // \r is not a 1.1 escape.
    let mut d = decoder(Version::V1_1);
    d.push(b"SEND\nk:a\\rb\n\n\0").unwrap();
    assert_eq!(d.next(), Err(DecodeError::InvalidEscape("\\r".into())));
}

#[test]
fn version_1_0_has_no_escapes() {
    let mut d = decoder(Version::V1_0);
    d.push(b"SEND\nk:a\\nb\\c\\t\n\n\0").unwrap();
    let f = frames(drain(&mut d).unwrap()).pop().unwrap();
    assert_eq!(f.header("k"), Some("a\\nb\\c\\t"));
    let f = Frame::new(Command::Send).with_header("k", "a\\b:c");
    assert_eq!(
        &encode_to_bytes(&f, Version::V1_0)[..],
        b"SEND\nk:a\\b:c\n\n\0"
    );
    assert_eq!(roundtrip(&f, Version::V1_0), f);
}

#[test]
fn connect_family_is_never_unescaped_nor_escaped() {
    for c in [Command::Connect, Command::Stomp, Command::Connected] {
        let text = format!("{}\npasscode:a\\cb\\n\\t\\\nhost:x:y\n\n\0", c.as_str());
        let f = decode_one(text.as_bytes());
        assert_eq!(f.header("passcode"), Some("a\\cb\\n\\t\\"), "{c:?}");
        assert_eq!(f.header("host"), Some("x:y"));
        for v in Version::ALL {
            assert_eq!(&encode_to_bytes(&f, v)[..], text.as_bytes(), "{c:?} {v:?}");
        }
    }
    // ... while the frame after CONNECT is unescaped as 1.2 until told.
    let items = decode_all(b"CONNECT\nlogin:a\\c\n\n\0SEND\nk:a\\c\n\n\0").unwrap();
    let fs = frames(items);
    assert_eq!(fs[0].header("login"), Some("a\\c"));
    assert_eq!(fs[1].header("k"), Some("a:"));
}

#[test]
fn unescapable_newlines_become_spaces_instead_of_injecting_headers() {
    let f = Frame::new(Command::Connected).with_header("server", "x\nevil:1");
    let wire = encode_to_bytes(&f, Version::V1_2);
    assert_eq!(&wire[..], b"CONNECTED\nserver:x evil:1\n\n\0");
    let f = Frame::new(Command::Message).with_header("k\n", "v\ndestination:/x");
    let got = roundtrip(&f, Version::V1_0);
    assert_eq!(hs(&got), vec![("k ".into(), "v destination:/x".into())]);
}

#[test]
fn set_version_applies_to_the_next_frames() {
    let mut d = Decoder::new(Limits::default());
    assert_eq!(d.version(), None);
    d.push(b"CONNECT\naccept-version:1.0\n\n\0SEND\nk:a\\c\n\n\0")
        .unwrap();
    assert!(matches!(d.next(), Ok(Some(Decoded::Frame(f))) if f.command == Command::Connect));
    d.set_version(Version::V1_0);
    assert_eq!(d.version(), Some(Version::V1_0));
    let Ok(Some(Decoded::Frame(f))) = d.next() else {
        panic!("expected a frame");
    };
    assert_eq!(f.header("k"), Some("a\\c"));
}

// ---------------------------------------------------------------- framing

#[test]
fn crlf_line_endings() {
    let f = decode_one(b"SEND\r\ndestination:/q\r\nk:v\r\n\r\nbody\0");
    assert_eq!(f.command, Command::Send);
    assert_eq!(
        hs(&f),
        vec![
            ("destination".to_string(), "/q".to_string()),
            ("k".to_string(), "v".to_string())
        ]
    );
    assert_eq!(f.body, Bytes::from_static(b"body"));
    // A CR not followed by LF is part of the value; only the EOL's is dropped.
    let f = decode_one(b"SEND\nk:a\rb\r\r\n\n\0");
    assert_eq!(f.header("k"), Some("a\rb\r"));
}

#[test]
fn content_length_body_may_contain_nul() {
    let f = decode_one(b"SEND\ncontent-length:5\n\na\0b\0c\0");
    assert_eq!(f.body, Bytes::from_static(b"a\0b\0c"));
    let built = Frame::new(Command::Message).with_body(&b"\0\0x\0"[..]);
    assert_eq!(roundtrip(&built, Version::V1_2), after_roundtrip(&built));
    // Large bodies take another path (shared, not copied).
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
    let built = Frame::new(Command::Send).with_body(big);
    assert_eq!(roundtrip(&built, Version::V1_2), after_roundtrip(&built));
    let mut unsized_body = b"SEND\n\n".to_vec();
    unsized_body.extend(std::iter::repeat_n(b'y', 9_000));
    unsized_body.push(0);
    assert_eq!(decode_one(&unsized_body).body.len(), 9_000);
    // A zero content-length.
    let f = decode_one(b"SEND\ncontent-length:0\n\n\0");
    assert!(f.body.is_empty());
}

#[test]
fn body_without_content_length_ends_at_first_nul() {
    let items = decode_all(b"SEND\n\nab\0MESSAGE\n\n\0").unwrap();
    let fs = frames(items);
    assert_eq!(fs.len(), 2);
    assert_eq!(fs[0].body, Bytes::from_static(b"ab"));
    assert_eq!(fs[1].command, Command::Message);
}

#[test]
fn only_the_first_content_length_counts() {
    let f = decode_one(b"SEND\ncontent-length:2\ncontent-length:junk\n\nab\0");
    assert_eq!(f.body, Bytes::from_static(b"ab"));
    assert_eq!(f.header("content-length"), Some("2"));
}

#[test]
fn heart_beats_between_frames() {
    let items = decode_all(b"\n\r\nSEND\n\n\0\n\nACK\n\n\0\r\n").unwrap();
    let kinds: Vec<&str> = items
        .iter()
        .map(|d| match d {
            Decoded::HeartBeat => "hb",
            Decoded::Frame(f) => f.command.as_str(),
        })
        .collect();
    assert_eq!(kinds, ["hb", "hb", "SEND", "hb", "hb", "ACK", "hb"]);
}

#[test]
fn a_lone_cr_waits_for_its_lf() {
    let mut d = Decoder::new(Limits::default());
    d.push(b"\r").unwrap();
    assert_eq!(d.next(), Ok(None));
    assert_eq!(d.buffered_bytes(), 1);
    d.push(b"\n").unwrap();
    assert_eq!(d.next(), Ok(Some(Decoded::HeartBeat)));
    assert_eq!(d.next(), Ok(None));
    assert_eq!(d.buffered_bytes(), 0);
}

#[test]
fn byte_by_byte_gives_the_same_frames() {
    let input: &[u8] =
        b"\nSEND\r\ndestination:/q\r\ncontent-length:3\r\n\r\na\0b\0\nMESSAGE\nk:\\c\n\nxyz\0";
    let whole = decode_all(input).unwrap();
    let mut d = Decoder::new(Limits::default());
    let mut trickled = Vec::new();
    for b in input {
        d.push(&[*b]).unwrap();
        trickled.extend(drain(&mut d).unwrap());
    }
    assert_eq!(trickled, whole);
    assert_eq!(whole.len(), 4);
    assert_eq!(d.buffered_bytes(), 0);
}

#[test]
fn partial_frame_needs_more_bytes() {
    let mut d = Decoder::new(Limits::default());
    d.push(b"SEND\ncontent-length:4\n\nab").unwrap();
    assert_eq!(d.next(), Ok(None));
    assert_eq!(d.buffered_bytes(), 2);
    d.push(b"cd").unwrap();
    assert_eq!(d.next(), Ok(None));
    d.push(b"\0").unwrap();
    let Ok(Some(Decoded::Frame(f))) = d.next() else {
        panic!("expected a frame");
    };
    assert_eq!(f.body, Bytes::from_static(b"abcd"));
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_command() {
    assert_eq!(
        decode_err(b"FOO\n\n\0"),
        DecodeError::UnknownCommand("FOO".into())
    );
    assert_eq!(
        decode_err(b"send\n\n\0"),
        DecodeError::UnknownCommand("send".into())
    );
    // A stray NUL between frames is not a heart-beat.
    assert_eq!(
        decode_err(b"\0SEND\n\n\0"),
        DecodeError::UnknownCommand("\0SEND".into())
    );
    assert_eq!(
        decode_err(b"\rSEND\n\n\0"),
        DecodeError::UnknownCommand("\rSEND".into())
    );
}

#[test]
fn missing_colon() {
    assert_eq!(
        decode_err(b"SEND\ndestination\n\n\0"),
        DecodeError::MissingColon
    );
}

#[test]
fn empty_header_name() {
    assert_eq!(decode_err(b"SEND\n:v\n\n\0"), DecodeError::EmptyHeaderName);
}

#[test]
fn invalid_escapes() {
    assert_eq!(
        decode_err(b"SEND\nk:a\\tb\n\n\0"),
        DecodeError::InvalidEscape("\\t".into())
    );
    assert_eq!(
        decode_err(b"SEND\nk:a\\\n\n\0"),
        DecodeError::InvalidEscape("\\".into())
    );
    assert_eq!(
        decode_err(b"SEND\nk\\x01:v\n\n\0"),
        DecodeError::InvalidEscape("\\x".into())
    );
    assert_eq!(
        decode_err(b"SEND\nk:\\\x01\n\n\0"),
        DecodeError::InvalidEscape("\\x01".into())
    );
}

#[test]
fn invalid_utf8_in_value_and_name() {
    assert_eq!(decode_err(b"SEND\nk:\xff\n\n\0"), DecodeError::InvalidUtf8);
    assert_eq!(decode_err(b"SEND\n\xc3:v\n\n\0"), DecodeError::InvalidUtf8);
    // The body is raw bytes.
    assert_eq!(
        decode_one(b"SEND\n\n\xff\xfe\0").body,
        Bytes::from_static(b"\xff\xfe")
    );
}

#[test]
fn too_many_headers() {
    let mut text = b"SEND\n".to_vec();
    for i in 0..9 {
        text.extend_from_slice(format!("h{i}:v\n").as_bytes());
    }
    text.extend_from_slice(b"\n\0");
    let d = Decoder::new(small_limits());
    assert_eq!(
        decode_with(d, &text),
        Err(DecodeError::TooManyHeaders { max: 8 })
    );
    // Exactly the limit is fine.
    let mut ok = b"SEND\n".to_vec();
    for i in 0..8 {
        ok.extend_from_slice(format!("h{i}:v\n").as_bytes());
    }
    ok.extend_from_slice(b"\n\0");
    let fs = frames(decode_with(Decoder::new(small_limits()), &ok).unwrap());
    assert_eq!(fs[0].header_count(), 8);
}

#[test]
fn header_line_too_long_is_caught_before_its_end_arrives() {
    let mut d = Decoder::new(small_limits());
    d.push(b"SEND\nk:").unwrap();
    d.push(&[b'v'; 98]).unwrap();
    // 100 bytes and possibly a CR: still acceptable.
    d.push(b"\r").unwrap();
    assert_eq!(d.next(), Ok(None));
    d.push(b"v").unwrap();
    assert_eq!(d.next(), Err(DecodeError::HeaderLineTooLong { max: 100 }));

    // Exactly 100 bytes is fine, with LF or CRLF.
    let line = format!("SEND\nk:{}\r\n\n\0", "v".repeat(98));
    let fs = frames(decode_with(Decoder::new(small_limits()), line.as_bytes()).unwrap());
    assert_eq!(fs[0].header("k").map(str::len), Some(98));
    let line = format!("SEND\nk:{}\n\n\0", "v".repeat(99));
    assert_eq!(
        decode_with(Decoder::new(small_limits()), line.as_bytes()),
        Err(DecodeError::HeaderLineTooLong { max: 100 })
    );
}

#[test]
fn command_line_too_long() {
    let mut d = Decoder::new(small_limits());
    d.push(&[b'X'; 102]).unwrap();
    assert_eq!(d.next(), Err(DecodeError::HeaderLineTooLong { max: 100 }));
}

#[test]
fn frame_too_large_without_nul_while_streaming() {
    // 20 MiB of body and no NUL: must fail once just over 10 MiB arrived.
    let limits = Limits::default();
    let mut d = Decoder::new(limits.clone());
    d.push(b"SEND\ndestination:/q\n\n").unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut err = None;
    for _ in 0..320 {
        d.push(&chunk).unwrap();
        match d.next() {
            Ok(None) => {}
            Ok(Some(x)) => panic!("unexpected {x:?}"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(
        err,
        Some(DecodeError::FrameTooLarge {
            max: 10 * 1024 * 1024
        })
    );
    assert!(d.buffered_bytes() <= limits.frame_bytes_max + chunk.len());
    assert_eq!(
        DecodeError::FrameTooLarge {
            max: 10 * 1024 * 1024
        }
        .to_string(),
        "frame larger than 10485760 bytes"
    );
}

#[test]
fn frame_too_large_with_nul() {
    let text = format!("SEND\n\n{}\0", "x".repeat(1020));
    assert_eq!(
        decode_with(Decoder::new(small_limits()), text.as_bytes()),
        Err(DecodeError::FrameTooLarge { max: 1024 })
    );
    let text = format!("SEND\n\n{}\0", "x".repeat(1018));
    assert!(decode_with(Decoder::new(small_limits()), text.as_bytes()).is_ok());
}

#[test]
fn huge_content_length_fails_as_soon_as_the_header_is_read() {
    let mut d = Decoder::new(Limits::default());
    d.push(b"SEND\ncontent-length:10485761\n").unwrap();
    assert_eq!(
        d.next(),
        Err(DecodeError::FrameTooLarge {
            max: 10 * 1024 * 1024
        })
    );
    assert_eq!(
        decode_err(b"SEND\ncontent-length:99999999999999999999999999\n"),
        DecodeError::FrameTooLarge {
            max: 10 * 1024 * 1024
        }
    );
    // Headers and body together count.
    let mut d = Decoder::new(small_limits());
    d.push(b"SEND\ncontent-length:990\nsome-header:with-a-value\n")
        .unwrap();
    assert_eq!(d.next(), Err(DecodeError::FrameTooLarge { max: 1024 }));
}

#[test]
fn bad_content_length() {
    for bad in ["abc", "-1", "", " 5", "5 ", "+5", "0x10", "1.5"] {
        let mut d = Decoder::new(Limits::default());
        // No blank line, no body: the error comes from the header alone.
        d.push(format!("SEND\ncontent-length:{bad}\n").as_bytes())
            .unwrap();
        assert_eq!(
            d.next(),
            Err(DecodeError::BadContentLength(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn missing_nul_after_content_length_body() {
    assert_eq!(
        decode_err(b"SEND\ncontent-length:2\n\nabc\0"),
        DecodeError::MissingNul
    );
}

#[test]
fn pending_too_large() {
    let mut d = Decoder::new(small_limits());
    d.push(&[b'\n'; 4000]).unwrap();
    assert_eq!(
        d.push(&[b'\n'; 97]),
        Err(DecodeError::PendingTooLarge { max: 4096 })
    );
    assert_eq!(d.buffered_bytes(), 4000, "a refused push buffers nothing");
}

#[test]
fn errors_are_sticky() {
    let mut d = Decoder::new(Limits::default());
    d.push(b"BAD\n\n\0SEND\n\n\0").unwrap();
    let e = DecodeError::UnknownCommand("BAD".into());
    assert_eq!(d.next(), Err(e.clone()));
    assert_eq!(d.next(), Err(e.clone()));
    assert_eq!(d.push(b"\n"), Err(e));
}

#[test]
fn error_messages_are_short_single_lines() {
    let errors = [
        decode_err(b"FOO\nBAR\n\n\0"),
        decode_err(b"F\x07\"O\r\x00O\n"),
        decode_err(b"SEND\nk\n"),
        decode_err(b"SEND\n:v\n"),
        decode_err(b"SEND\nk:\\t\n"),
        decode_err(b"SEND\nk:\\\n\n"),
        decode_err(b"SEND\nk:\xff\n"),
        decode_err(b"SEND\ncontent-length:a\\nb\n"),
        decode_err(&[b'A'; 20000]),
        DecodeError::TooManyHeaders { max: 128 },
        DecodeError::FrameTooLarge { max: 1 },
        DecodeError::MissingNul,
        DecodeError::PendingTooLarge { max: 1 },
    ];
    for e in &errors {
        let s = e.to_string();
        assert!(!s.is_empty() && s.len() < 80, "{s:?}");
        assert!(
            !s.contains('\n') && !s.contains('\r') && !s.contains('\0'),
            "{s:?}"
        );
    }
    assert_eq!(errors[0].to_string(), "unknown command \"FOO\"");
    assert_eq!(
        errors[4].to_string(),
        "invalid escape sequence \"\\t\" in header"
    );
    assert_eq!(errors[7].to_string(), "invalid content-length \"a\\nb\"");
    // Long peer input is quoted only in part.
    assert_eq!(
        decode_err(format!("{}\n", "Z".repeat(500)).as_bytes()),
        DecodeError::UnknownCommand("Z".repeat(40))
    );
}

// ---------------------------------------------------------------- properties

/// Header text rich in the characters that need escaping.
fn header_text(min: usize) -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        ':', '\n', '\r', '\\', 'c', 'n', 'r', 'a', ' ', 'é', '\0',
    ]);
    prop_oneof![
        prop::collection::vec(tricky, min..12).prop_map(|cs| cs.into_iter().collect()),
        any::<String>().prop_filter("length", move |s| s.chars().count() >= min),
    ]
}

fn body() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Frames whose headers are escaped in 1.2 (all but the CONNECT family),
/// with arbitrary header text and body.
fn escaped_frame() -> impl Strategy<Value = Frame> {
    let commands: Vec<Command> = Command::ALL
        .into_iter()
        .filter(|c| !matches!(c, Command::Connect | Command::Stomp | Command::Connected))
        .collect();
    (
        prop::sample::select(commands),
        prop::collection::vec(
            (
                header_text(1).prop_filter("not content-length", |n| n != "content-length"),
                header_text(0),
            ),
            0..6,
        ),
        body(),
    )
        .prop_map(|(command, headers, body)| frame_of(command, headers, body))
}

/// Frames of any command whose text needs no escapes (as 1.0 requires).
fn plain_frame() -> impl Strategy<Value = Frame> {
    let name = "[a-zA-Z0-9_./-]{1,10}".prop_filter("not content-length", |n| n != "content-length");
    (
        prop::sample::select(Command::ALL.to_vec()),
        prop::collection::vec((name, "[ -~é]{0,10}"), 0..6),
        body(),
    )
        .prop_map(|(command, headers, body)| frame_of(command, headers, body))
}

/// A stream of frames and heart-beats.
fn stream() -> impl Strategy<Value = Vec<Option<Frame>>> {
    prop::collection::vec(prop::option::weighted(0.8, escaped_frame()), 1..6)
}

fn encode_stream(items: &[Option<Frame>]) -> BytesMut {
    let mut wire = BytesMut::new();
    for item in items {
        match item {
            Some(f) => encode(f, Version::V1_2, &mut wire),
            None => wire.extend_from_slice(HEARTBEAT),
        }
    }
    wire
}

/// Interesting bytes for garbage: STOMP syntax and bits of it.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        prop::sample::select(vec![
            &b"SEND\n"[..],
            b"CONNECT\r\n",
            b"MESSAGE\n",
            b"\n",
            b"\r\n",
            b"\0",
            b":",
            b"\\",
            b"\\c",
            b"\\r",
            b"content-length:",
            b"5",
            b"99999",
            b"k:v\n",
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ])
        .prop_map(|t| t.to_vec()),
    ];
    prop::collection::vec(token, 0..400).prop_map(|ts| ts.concat())
}

/// Everything decoded from `input` fed in pieces cut at `cuts` (draining
/// after each piece), and the error that stopped decoding, if any.
fn feed_in_pieces(
    d: &mut Decoder,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<Decoded>, Option<DecodeError>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut out = Vec::new();
    let mut from = 0;
    for to in cuts {
        if let Err(e) = d.push(&input[from..to]) {
            return (out, Some(e));
        }
        from = to;
        loop {
            match d.next() {
                Ok(Some(x)) => out.push(x),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip_1_2(f in escaped_frame()) {
        prop_assert_eq!(roundtrip(&f, Version::V1_2), after_roundtrip(&f));
        // Undecided version decodes like 1.2.
        let wire = encode_to_bytes(&f, Version::V1_2);
        prop_assert_eq!(frames(decode_all(&wire).unwrap()), vec![after_roundtrip(&f)]);
    }

    #[test]
    fn roundtrip_1_1_without_cr(mut f in escaped_frame()) {
        // 1.1 has no escape for CR, and a value cannot end with one.
        let headers = f
            .headers()
            .map(|(n, v)| (n.replace('\r', "r"), v.replace('\r', "r")))
            .collect();
        f = frame_of(f.command, headers, f.body.clone());
        prop_assert_eq!(roundtrip(&f, Version::V1_1), after_roundtrip(&f));
    }

    #[test]
    fn roundtrip_plain_text_in_every_version(f in plain_frame()) {
        for v in Version::ALL {
            prop_assert_eq!(roundtrip(&f, v), after_roundtrip(&f));
        }
    }

    #[test]
    fn any_split_gives_the_same_items(
        items in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let wire = encode_stream(&items);
        let whole = decode_all(&wire).unwrap();
        let expected: Vec<Decoded> = items
            .iter()
            .map(|i| match i {
                Some(f) => Decoded::Frame(after_roundtrip(f)),
                None => Decoded::HeartBeat,
            })
            .collect();
        prop_assert_eq!(&whole, &expected);
        let mut d = Decoder::new(Limits::default());
        let (pieces, err) = feed_in_pieces(&mut d, &wire, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(pieces, whole);
        prop_assert_eq!(d.buffered_bytes(), 0);
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(
        input in garbage(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        version in prop::option::of(prop::sample::select(Version::ALL.to_vec())),
    ) {
        let limits = Limits { pending_bytes_max: 600, ..small_limits() };
        let mut d = Decoder::new(limits.clone());
        if let Some(v) = version {
            d.set_version(v);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        let mut from = 0;
        for to in cuts {
            let pushed = d.push(&input[from..to]);
            prop_assert!(d.buffered_bytes() <= limits.pending_bytes_max);
            if pushed.is_err() {
                break;
            }
            from = to;
            loop {
                match d.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        // Waiting for more: only part of one frame is held.
                        let bound = limits.frame_bytes_max.max(limits.header_line_bytes_max + 1);
                        prop_assert!(d.buffered_bytes() <= bound, "{} buffered", d.buffered_bytes());
                        break;
                    }
                    Err(e) => {
                        let s = e.to_string();
                        prop_assert!(!s.contains('\n') && !s.contains('\r'));
                        prop_assert_eq!(d.next(), Err(e));
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_split_anywhere_decodes_the_same(
        input in garbage(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        // Roomy pending limit, so only the content decides.
        let limits = Limits { pending_bytes_max: 1 << 20, ..small_limits() };
        let whole = feed_in_pieces(&mut Decoder::new(limits.clone()), &input, &[]);
        let pieces = feed_in_pieces(&mut Decoder::new(limits), &input, &cuts);
        prop_assert_eq!(whole, pieces);
    }
}

/// The headers of `f` as owned pairs, for comparisons.
fn hs(f: &Frame) -> Vec<(String, String)> {
    f.headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// A frame with these headers, in order.
fn frame_of(command: Command, headers: Vec<(String, String)>, body: Bytes) -> Frame {
    let mut f = Frame::new(command).with_body(body);
    for (n, v) in headers {
        f.push_header(n, v);
    }
    f
}
