//! The disk limit through the sans-IO node: readings of the journal's disk
//! above `--max-disk-usage` hold STOMP SENDs back (block, page) or refuse
//! them (fail), AMQP producers get no more credit; consumers and acks go
//! on; a reading below the limit lets producers go on.

mod amqp_client;

use amqp_client::peer::{dispositions, durable_text, Peer};
use amqp_client::{attach, frame_with, transfer};
use halyard_core::broker::MESSAGE_OVERHEAD_BYTES;
use halyard_core::node::{DiskUsage, Event, FullPolicy, Input, NodeConfig};
use halyard_core::protocol::amqp::{Condition, DeliveryState, Performative, Role};
use halyard_core::protocol::stomp::Command;
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

fn node(policy: FullPolicy) -> Harness {
    Harness::new(NodeConfig {
        address_full_policy: policy,
        heartbeat_ms: 0,
        ..NodeConfig::default()
    })
}

/// A reading of a 1000-byte disk with `used` bytes used.
fn disk(h: &mut Harness, used: u64) {
    h.input(Input::Disk(DiskUsage {
        used_bytes: used,
        total_bytes: 1000,
    }));
}

#[test]
fn above_the_limit_a_send_waits_and_consumers_go_on() {
    let mut h = node(FullPolicy::Page);
    let p = h.connect(1);
    let c = h.connect(2);
    h.send(p, send_receipt("/queue/q", "before", "r1"));
    assert_eq!(receipts(&h.take(p)), ["r1"]);
    h.send(c, subscribe("s", "/queue/q", "client"));

    disk(&mut h, 931);
    assert!(h.events.iter().any(|e| matches!(e, Event::DiskFull { why }
        if why == "disk usage 93.1% is above --max-disk-usage 90.0%: producers blocked")));
    h.send(p, send_receipt("/queue/q", "held", "r2"));
    assert!(h.take(p).is_empty(), "no receipt and no ERROR while full");
    assert!(
        h.paused.contains(&p),
        "the producer's connection is not read"
    );
    assert_eq!(h.node.stats(0).counters.sends_held, 1);
    assert!(h.node.stats(0).producers_stopped.is_some());

    // The consumer gets and acks what is there: that frees space.
    let got = h.take(c);
    let m = got.iter().find(|f| f.command == Command::Message).unwrap();
    assert_eq!(body(m), "before");
    h.send(c, ack(m.header("ack").unwrap()));

    // Readings above the limit change nothing; one below lets it go.
    disk(&mut h, 950);
    assert!(h.take(p).is_empty());
    disk(&mut h, 880);
    assert_eq!(receipts(&h.take(p)), ["r2"]);
    assert!(!h.paused.contains(&p));
    assert!(h.events.iter().any(|e| matches!(e, Event::DiskRoom { .. })));
    let got = h.take(c);
    assert!(got.iter().any(|f| body(f) == "held"), "{got:?}");
    assert!(h.node.stats(0).producers_stopped.is_none());
}

#[test]
fn frames_after_a_held_send_wait_in_order() {
    let mut h = node(FullPolicy::Block);
    let p = h.connect(1);
    disk(&mut h, 999);
    let mut raw = Vec::new();
    for (i, body) in ["a", "b", "c"].iter().enumerate() {
        raw.extend_from_slice(&halyard_core::protocol::stomp::encode_to_bytes(
            &send_receipt("/queue/q", body, &format!("r{i}")),
            halyard_core::protocol::stomp::Version::V1_2,
        ));
    }
    h.send_raw(p, &raw);
    assert!(h.take(p).is_empty());
    disk(&mut h, 100);
    assert_eq!(receipts(&h.take(p)), ["r0", "r1", "r2"]);
}

#[test]
fn under_fail_a_send_is_refused_with_a_clear_error() {
    let mut h = node(FullPolicy::Fail);
    let p = h.connect(1);
    disk(&mut h, 950);
    h.send(p, send_receipt("/queue/orders", "x", "r1"));
    let got = h.take(p);
    let e = got.iter().find(|f| f.command == Command::Error).unwrap();
    assert_eq!(
        e.header("message").unwrap(),
        "send to \"orders\" refused: disk usage 95.0% is above --max-disk-usage 90.0%: sends refused (address-full-policy fail)"
    );
    assert_eq!(h.node.stats(0).counters.sends_refused_full, 1);
    assert!(
        h.journal.iter().flatten().count() <= 1,
        "only the activation"
    );
    // Another client, after space returned, sends as before.
    disk(&mut h, 500);
    let q = h.connect(2);
    h.send(q, send_receipt("/queue/orders", "y", "r2"));
    assert_eq!(receipts(&h.take(q)), ["r2"]);
}

#[test]
fn a_full_disk_stops_producers_even_without_a_limit() {
    let mut h = Harness::new(NodeConfig {
        disk_usage_max_permille: 1000,
        ..NodeConfig::default()
    });
    let p = h.connect(1);
    disk(&mut h, 999);
    h.send(p, send_receipt("/queue/q", "a", "r1"));
    assert_eq!(receipts(&h.take(p)), ["r1"]);
    disk(&mut h, 1000);
    h.send(p, send_receipt("/queue/q", "b", "r2"));
    assert!(h.take(p).is_empty());
}

/// AMQP has flow control: producers get no more credit while full (what
/// they already had is honoured), and credit again when there is room.
#[test]
fn amqp_producers_get_no_credit_while_full() {
    let mut h = node(FullPolicy::Block);
    let mut p = Peer::connect(&mut h, 1);
    disk(&mut h, 950);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("prod", 0, Role::Sender, "orders"))),
    );
    let got = p.frames(&mut h);
    assert!(
        !got.iter()
            .any(|f| matches!(f, Performative::Flow(fl) if fl.link_credit.unwrap_or(0) > 0)),
        "credit while full: {got:?}"
    );
    disk(&mut h, 500);
    let got = p.frames(&mut h);
    assert!(
        got.iter()
            .any(|f| matches!(f, Performative::Flow(fl) if fl.link_credit == Some(1000))),
        "no credit once there is room: {got:?}"
    );
    p.send(
        &mut h,
        &frame_with(0, transfer(0, 0, false, false), &durable_text("one")),
    );
    let got = p.frames(&mut h);
    assert_eq!(
        dispositions(&got)[0].state,
        Some(DeliveryState::Accepted),
        "{got:?}"
    );
}

#[test]
fn amqp_sends_are_rejected_under_fail() {
    let mut h = node(FullPolicy::Fail);
    let mut p = Peer::connect(&mut h, 1);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("prod", 0, Role::Sender, "orders"))),
    );
    let _ = p.frames(&mut h);
    disk(&mut h, 950);
    p.send(
        &mut h,
        &frame_with(0, transfer(0, 0, false, false), &durable_text("one")),
    );
    let got = p.frames(&mut h);
    let d = dispositions(&got);
    let Some(DeliveryState::Rejected { error: Some(e) }) = &d[0].state else {
        panic!("not rejected with an error: {got:?}");
    };
    assert_eq!(e.condition, Condition::ResourceLimitExceeded);
    assert!(e
        .description
        .as_deref()
        .unwrap()
        .contains("above --max-disk-usage"));
    // The connection stays.
    assert!(!h.closed.contains(&p.conn));
    assert_eq!(h.node.stats(0).counters.sends_refused_full, 1);
}

/// The memory limit: messages held reaching `memory_max_bytes` hold
/// producers back the same way, until consumers bring them below the
/// margin under the limit.
#[test]
fn messages_at_the_memory_limit_hold_producers_back_until_consumed() {
    // Each message counts its 600-byte body and a few dozen bytes more of
    // its own (about 640), and what a message costs in memory besides:
    // three fit, and three are above 95% of the limit.
    let limit = 3 * (640 + MESSAGE_OVERHEAD_BYTES) + 100;
    let mut h = Harness::new(NodeConfig {
        memory_max_bytes: limit,
        heartbeat_ms: 0,
        ..NodeConfig::default()
    });
    let p = h.connect(1);
    let body = "x".repeat(600);
    for i in 0..4 {
        h.send(p, send_receipt("/queue/q", &body, &format!("r{i}")));
    }
    // Three fit under the limit; the fourth crossed it.
    assert_eq!(receipts(&h.take(p)), ["r0", "r1", "r2", "r3"]);
    let stats = h.node.stats(0);
    assert!(stats.memory_bytes >= limit, "{}", stats.memory_bytes);
    assert!(h.events.iter().any(|e| matches!(e, Event::MemoryFull { why }
        if why.starts_with("messages hold ") && why.ends_with("producers blocked (paging keeps bodies on disk; what is left in memory is at the limit)"))));
    h.send(p, send_receipt("/queue/q", &body, "r4"));
    assert!(h.take(p).is_empty(), "taken at the memory limit");
    assert!(h.paused.contains(&p));

    // One consumed is not enough (still above 95% of the limit)...
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/q", "client-individual"));
    let got = h.take(c);
    let acks: Vec<String> = got
        .iter()
        .filter(|f| f.command == Command::Message)
        .map(|f| f.header("ack").unwrap().to_string())
        .collect();
    assert_eq!(acks.len(), 4);
    h.send(c, ack(&acks[0]));
    assert!(h.take(p).is_empty(), "resumed above the margin");
    // ... two are.
    h.send(c, ack(&acks[1]));
    assert_eq!(receipts(&h.take(p)), ["r4"]);
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::MemoryRoom { .. })));
    assert!(!h.paused.contains(&p));
    assert_eq!(h.node.stats(0).counters.memory_full, 1);
}

#[test]
fn under_fail_a_send_at_the_memory_limit_is_refused() {
    let mut h = Harness::new(NodeConfig {
        memory_max_bytes: 1_000,
        address_full_policy: FullPolicy::Fail,
        ..NodeConfig::default()
    });
    let p = h.connect(1);
    h.send(p, send_receipt("/queue/q", &"x".repeat(1_200), "r0"));
    assert_eq!(receipts(&h.take(p)), ["r0"]);
    h.send(p, send_receipt("/queue/q", "y", "r1"));
    let got = h.take(p);
    let e = got.iter().find(|f| f.command == Command::Error).unwrap();
    let m = e.header("message").unwrap();
    assert!(
        m.starts_with("send to \"q\" refused: messages hold "),
        "{m}"
    );
    assert!(
        m.ends_with("sends refused (address-full-policy fail)"),
        "{m}"
    );
}
