//! Journal entry codec: `MessageStored` with a 1 KiB body, and `Acked`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halyard_benches::{acked, message_stored, MEASUREMENT_TIME, WARM_UP_TIME};
use halyard_core::journal::{decode_entry, encode_entry, Entry};

fn entries() -> [(&'static str, Entry); 2] {
    [
        ("message_stored_1k", message_stored(1_234_567)),
        ("acked", acked(1_234_567)),
    ]
}

fn encoded_bytes(entry: &Entry) -> u64 {
    let (k, v) = encode_entry(entry);
    (k.len() + v.map_or(0, |v| v.len())) as u64
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_encode");
    g.measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME);
    for (name, entry) in entries() {
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: encoded_bytes(&entry),
        });
        g.bench_function(name, |b| b.iter(|| encode_entry(black_box(&entry))));
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_decode");
    g.measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME);
    for (name, entry) in entries() {
        let (key, value) = encode_entry(&entry);
        assert_eq!(
            decode_entry(&key, value.as_deref()).expect("round trip"),
            entry
        );
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: encoded_bytes(&entry),
        });
        g.bench_function(name, |b| {
            b.iter(|| decode_entry(black_box(&key), black_box(value.as_deref())).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
