//! Routing and fan-out through the sans-IO node, driven by the in-memory
//! `testkit::Harness`: one 1 KiB SEND in, every resulting MESSAGE out.
//!
//! The harness makes journal appends durable at once (after an encode and
//! decode round trip of each entry) and decodes every outgoing frame into the
//! client's queue, so this measures the core plus that client-side decode,
//! with no I/O.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halyard_benches::{send_frame, MEASUREMENT_TIME, WARM_UP_TIME};
use halyard_core::ids::ConnId;
use halyard_core::node::NodeConfig;
use halyard_core::protocol::stomp::{encode_to_bytes, Command, Version};
use halyard_core::testkit::{frames, Harness};

/// A live node with a producer (connection 1) and `consumers` connections,
/// each with one auto-ack subscription to `dest`. Returns the SEND bytes.
fn setup(dest: &str, consumers: usize) -> (Harness, ConnId, Vec<ConnId>, Bytes) {
    let mut h = Harness::new(NodeConfig::default());
    let producer = h.connect(1);
    let subs: Vec<ConnId> = (0..consumers)
        .map(|i| {
            let c = h.connect(2 + i as u64);
            h.send(c, frames::subscribe("sub-0", dest, "auto"));
            c
        })
        .collect();
    // Without a receipt header: the bench is about delivery, not RECEIPTs.
    let mut send = send_frame(dest);
    send.retain_headers(|k, _| k != "receipt");
    let bytes = encode_to_bytes(&send, Version::V1_2);
    // Warm-up round: every subscription is live and gets the message.
    let delivered = send_once(&mut h, producer, &subs, &bytes);
    assert_eq!(delivered, consumers, "every subscriber gets one MESSAGE");
    (h, producer, subs, bytes)
}

/// One SEND, then collects what each consumer received. Returns the count.
fn send_once(h: &mut Harness, producer: ConnId, subs: &[ConnId], send: &[u8]) -> usize {
    h.send_raw(producer, send);
    let mut delivered = 0;
    for &c in subs {
        for f in h.take(c) {
            debug_assert_eq!(f.command, Command::Message);
            black_box(&f);
            delivered += 1;
        }
    }
    // Drop the producer's side too (nothing expected without a receipt).
    black_box(h.take(producer));
    // The harness keeps every durable batch and event: empty them so memory
    // stays flat (the node never reads them back while live).
    h.journal.clear();
    h.events.clear();
    delivered
}

fn bench_routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    g.measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME);

    let cases: [(&str, &str, usize); 4] = [
        ("queue", "/queue/q", 1),
        ("topic", "/topic/t", 1),
        ("topic", "/topic/t", 10),
        ("topic", "/topic/t", 100),
    ];
    for (kind, dest, consumers) in cases {
        let (mut h, producer, subs, bytes) = setup(dest, consumers);
        g.throughput(Throughput::Elements(consumers as u64));
        g.bench_function(BenchmarkId::new(kind, consumers), |b| {
            b.iter(|| {
                let n = send_once(&mut h, producer, &subs, &bytes);
                debug_assert_eq!(n, consumers);
                n
            })
        });
        assert!(h.closed.is_empty(), "no connection was closed");
    }
    g.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
