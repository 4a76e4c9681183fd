//! Shared fixtures for the criterion benches in `benches/benches/`.
//!
//! Every bench builds its inputs from here so that "a 1 KiB message" means
//! the same bytes and headers in the codec, journal and routing benches.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use halyard_core::ids::Id;
use halyard_core::journal::{encode_entry, Entry, Record, Routing};
use halyard_core::message::{Body, Message, Value};
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_io::local::Entry as RawEntry;

/// Body size of the messages every bench moves.
pub const BODY_BYTES: usize = 1024;

/// Measurement time for the CPU-bound benches.
pub const MEASUREMENT_TIME: Duration = Duration::from_secs(3);
/// Warm-up time for every bench.
pub const WARM_UP_TIME: Duration = Duration::from_secs(1);

/// A 1 KiB body of printable bytes (no NUL, so it is valid with or
/// without `content-length`).
pub fn body() -> Bytes {
    body_of(BODY_BYTES)
}

/// A body of `len` printable bytes.
pub fn body_of(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A producer's SEND as a typical client library writes it: six headers
/// and a 1 KiB body.
pub fn send_frame(destination: &str) -> Frame {
    Frame::new(Command::Send)
        .with_header("destination", destination)
        .with_header("content-type", "application/octet-stream")
        .with_header("content-length", BODY_BYTES.to_string())
        .with_header("receipt", "r-000042")
        .with_header("priority", "4")
        .with_header("app-trace-id", "3f2a9c1e-5b7d-4e21-9a0c-7d1f6b2e8c44")
        .with_body(body())
}

/// The MESSAGE frame a consumer gets: six headers and a 1 KiB body.
pub fn message_frame(destination: &str) -> Frame {
    Frame::new(Command::Message)
        .with_header("destination", destination)
        .with_header("message-id", "7:1234567")
        .with_header("subscription", "sub-0")
        .with_header("ack", "7:1234567/3")
        .with_header("content-type", "application/octet-stream")
        .with_header("content-length", BODY_BYTES.to_string())
        .with_body(body())
}

/// The message a 1 KiB SEND to `/queue/q` is stored as.
pub fn stored_message() -> Message {
    let mut m = Message::new("q", Routing::Anycast, Body::Bytes(body()));
    m.application = vec![
        (
            "content-type".into(),
            Value::from("application/octet-stream"),
        ),
        ("priority".into(), Value::from("4")),
        (
            "app-trace-id".into(),
            Value::from("3f2a9c1e-5b7d-4e21-9a0c-7d1f6b2e8c44"),
        ),
    ];
    m
}

/// The queue every stored message is routed to.
pub const QUEUE_ID: Id = Id::new(1, 1);

/// `MessageStored` for message `seq` of epoch 7 with a 1 KiB body.
pub fn message_stored(seq: u64) -> Entry {
    Entry::Put(Record::MessageStored {
        id: Id::new(7, seq),
        queues: vec![QUEUE_ID],
        message: std::sync::Arc::new(stored_message()),
    })
}

/// `Acked` of message `seq` of epoch 7 from [`QUEUE_ID`].
pub fn acked(seq: u64) -> Entry {
    Entry::Put(Record::Acked {
        id: Id::new(7, seq),
        queue: QUEUE_ID,
    })
}

/// [`message_stored`] encoded as the local journal stores it.
pub fn raw_message_stored(seq: u64) -> RawEntry {
    let (key, value) = encode_entry(&message_stored(seq));
    RawEntry { key, value }
}

/// Folder for on-disk bench files: `target/bench-tmp` of the workspace, so
/// it sits on the same disk as the build (not on a tmpfs `/tmp`).
pub fn bench_tmp_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("bench-tmp");
    std::fs::create_dir_all(&dir).expect("create target/bench-tmp");
    dir
}
