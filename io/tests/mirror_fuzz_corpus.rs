//! Writes the `mirror_decode` fuzz target's seed corpus (the core may not
//! touch files, so this lives here):
//! `HALYARD_WRITE_CORPUS=fuzz/corpus/mirror_decode cargo test -p halyard-io
//! --test mirror_fuzz_corpus -- --ignored` from the repository.

use bytes::{BufMut, Bytes, BytesMut};
use halyard_core::journal::group_commit::EncodedEntry;
use halyard_core::mirror::{encode, Delivery, MirrorDecoder, MirrorFrame, Position};

fn entry(k: &str, v: Option<&str>) -> EncodedEntry {
    EncodedEntry {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    }
}

fn seeds() -> Vec<(&'static str, Vec<MirrorFrame>)> {
    let hello = MirrorFrame::Hello {
        node: "server0".into(),
        epoch: 7,
    };
    let batch = MirrorFrame::Transfer {
        delivery: 0,
        what: Delivery::Batch {
            seq: 4,
            batches: vec![vec![entry("m/7:1", Some("body")), entry("r/1", None)]],
        },
    };
    vec![
        (
            "source-stream",
            vec![hello.clone(), batch.clone(), MirrorFrame::Heartbeat],
        ),
        (
            "source-snapshot",
            vec![
                hello,
                MirrorFrame::Transfer {
                    delivery: 1,
                    what: Delivery::SnapshotChunk {
                        batches: vec![vec![entry("q/1", Some("orders"))]],
                    },
                },
                MirrorFrame::Transfer {
                    delivery: 2,
                    what: Delivery::SnapshotEnd { seq: 9 },
                },
                batch,
            ],
        ),
        (
            "target-answers",
            vec![
                MirrorFrame::Welcome {
                    node: "server1".into(),
                    position: Some(Position { epoch: 7, seq: 3 }),
                    prefers_active: true,
                },
                MirrorFrame::Credit { credit: 1024 },
                MirrorFrame::Ack { first: 0, last: 2 },
                MirrorFrame::Close {
                    error: Some("fenced".into()),
                },
            ],
        ),
    ]
}

/// The first byte is the fuzz target's split point; the rest the frames.
fn bytes(frames: &[MirrorFrame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(17);
    for f in frames {
        encode(f, &mut out);
    }
    out.to_vec()
}

#[test]
fn the_seeds_decode_to_their_frames() {
    for (name, frames) in seeds() {
        let b = bytes(&frames);
        let mut d = MirrorDecoder::new();
        d.push(&b[1..]).unwrap();
        let mut got = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            got.push(f);
        }
        assert_eq!(got.len(), frames.len(), "{name}");
    }
}

#[test]
#[ignore]
fn write_mirror_corpus() {
    let dir = std::env::var("HALYARD_WRITE_CORPUS")
        .expect("set HALYARD_WRITE_CORPUS to the corpus folder");
    let dir = std::path::Path::new("..").join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, frames) in seeds() {
        std::fs::write(dir.join(name), bytes(&frames)).unwrap();
    }
}
