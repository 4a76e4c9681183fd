//! STOMP frame codec: encode and decode of 1 KiB SEND and MESSAGE frames,
//! and decode of a 1 MiB stream of back-to-back frames read in 64 KiB chunks.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halyard_benches::{message_frame, send_frame, MEASUREMENT_TIME, WARM_UP_TIME};
use halyard_core::protocol::stomp::{
    encode, encode_to_bytes, Decoded, Decoder, Frame, Limits, Version,
};

const STREAM_BYTES: usize = 1024 * 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;

fn frames() -> [(&'static str, Frame); 2] {
    [
        ("send_1k", send_frame("/queue/q")),
        ("message_1k", message_frame("/queue/q")),
    ]
}

fn decoder() -> Decoder {
    let mut d = Decoder::new(Limits::default());
    d.set_version(Version::V1_2);
    d
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("stomp_encode");
    g.measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME);
    for (name, frame) in frames() {
        let len = encode_to_bytes(&frame, Version::V1_2).len() as u64;
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: len,
        });
        // Into a reused buffer, as a connection's write buffer is.
        let mut out = BytesMut::with_capacity(4096);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&frame), Version::V1_2, &mut out);
                black_box(out.len())
            })
        });
        g.bench_function(format!("{name}_to_bytes"), |b| {
            b.iter(|| encode_to_bytes(black_box(&frame), Version::V1_2))
        });
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("stomp_decode");
    g.measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME);
    for (name, frame) in frames() {
        let bytes = encode_to_bytes(&frame, Version::V1_2);
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: bytes.len() as u64,
        });
        // One long-lived decoder, as a connection has.
        let mut d = decoder();
        g.bench_function(name, |b| {
            b.iter(|| {
                d.push(black_box(&bytes)).expect("push");
                match d.next().expect("decode") {
                    Some(Decoded::Frame(f)) => f,
                    other => panic!("expected a frame, got {other:?}"),
                }
            })
        });
    }
    g.finish();
}

fn bench_decode_stream(c: &mut Criterion) {
    // Back-to-back SEND frames filling 1 MiB, as a busy producer's socket delivers them.
    let one = encode_to_bytes(&send_frame("/queue/q"), Version::V1_2);
    let count = STREAM_BYTES / one.len();
    let mut stream = Vec::with_capacity(count * one.len());
    for _ in 0..count {
        stream.extend_from_slice(&one);
    }

    let mut g = c.benchmark_group("stomp_decode_stream");
    g.measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME);
    g.throughput(Throughput::ElementsAndBytes {
        elements: count as u64,
        bytes: stream.len() as u64,
    });
    g.bench_function("send_1k_1mib_in_64kib_chunks", |b| {
        b.iter(|| {
            let mut d = decoder();
            let mut frames = 0usize;
            for chunk in black_box(&stream).chunks(READ_CHUNK_BYTES) {
                d.push(chunk).expect("push");
                while let Some(x) = d.next().expect("decode") {
                    if let Decoded::Frame(f) = x {
                        black_box(&f);
                        frames += 1;
                    }
                }
            }
            assert_eq!(frames, count);
            frames
        })
    });
    g.finish();
}

criterion_group!(benches, bench_encode, bench_decode, bench_decode_stream);
criterion_main!(benches);
