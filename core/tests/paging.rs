//! Paging (`--max-memory-bytes` under the `page` policy with a journal
//! driver that reads back): producers are not held back at the limit;
//! bodies past it live in the journal only and come back, in order, as a
//! consumer reaches them, also after a restart; memory held stays near the
//! limit throughout.

mod amqp_client;

use amqp_client::peer::Peer;
use amqp_client::{attach, flow};
use halyard_core::node::{FullPolicy, NodeConfig};
use halyard_core::protocol::amqp::{Performative, Role};
use halyard_core::protocol::stomp::Command;
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

const LIMIT: u64 = 4_000;
const BODY_BYTES: usize = 500;

fn config() -> NodeConfig {
    NodeConfig {
        memory_max_bytes: LIMIT,
        address_full_policy: FullPolicy::Page,
        journal_reads: true,
        heartbeat_ms: 0,
        ..NodeConfig::default()
    }
}

fn body(i: usize) -> String {
    format!("{i:05}{}", "x".repeat(BODY_BYTES - 5))
}

/// Consumes everything with client acks in windows of `window`, checking
/// order and bodies; returns how many came.
fn consume_all(h: &mut Harness, n: usize, window: &str) -> usize {
    let c = h.connect(2);
    h.send(
        c,
        subscribe("s", "/queue/q", "client-individual")
            .with_header("activemq.prefetchSize", window),
    );
    let mut next = 0;
    for _ in 0..10 * n {
        let got: Vec<_> = h
            .take(c)
            .into_iter()
            .filter(|f| f.command == Command::Message)
            .collect();
        if got.is_empty() {
            break;
        }
        for f in got {
            assert_eq!(
                frames_body(&f),
                body(next),
                "message {next} out of order or changed"
            );
            next += 1;
            h.send(c, ack(f.header("ack").expect("ack id")));
            h.node
                .broker()
                .check_invariants()
                .expect("broker invariants");
            // Held stays near the limit: the read-back window is small.
            let held = h.node.stats(0).memory_bytes;
            assert!(
                held < 3 * LIMIT,
                "{held} bytes held while consuming, message {next}, {} paged, {} messages",
                h.node.stats(0).paged_messages,
                h.node.broker().message_count()
            );
        }
    }
    next
}

fn frames_body(f: &halyard_core::protocol::stomp::Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

#[test]
fn a_backlog_past_the_limit_is_paged_and_consumed_in_order() {
    let n = 60;
    let mut h = Harness::new(config());
    let p = h.connect(1);
    for i in 0..n {
        h.send(p, send_receipt("/queue/q", &body(i), &format!("r{i}")));
    }
    // Nothing held back: every send was receipted (30,000 bytes of
    // bodies under a 4,000-byte limit).
    assert_eq!(receipts(&h.take(p)).len(), n);
    assert!(!h.paused.contains(&p));
    let stats = h.node.stats(0);
    assert!(stats.paged_messages >= 50, "{} paged", stats.paged_messages);
    assert!(stats.memory_bytes < LIMIT, "{} held", stats.memory_bytes);
    h.node.broker().check_invariants().unwrap();
    assert_eq!(consume_all(&mut h, n, "5"), n);
    let stats = h.node.stats(0);
    assert_eq!(stats.paged_messages, 0);
    assert!(stats.counters.paged_in >= 50);
    assert!(stats.counters.page_reads >= 1);
    assert_eq!(h.node.broker().message_count(), 0);
}

/// A restart replays the journal under the same bound: what is past the
/// limit stays paged, and comes back in order.
#[test]
fn a_restart_pages_while_replaying() {
    let n = 40;
    let mut h = Harness::new(config());
    let p = h.connect(1);
    for i in 0..n {
        h.send(p, send_receipt("/queue/q", &body(i), &format!("r{i}")));
    }
    assert_eq!(receipts(&h.take(p)).len(), n);
    let mut h = h.restart();
    let stats = h.node.stats(0);
    assert!(
        stats.paged_messages >= 30,
        "{} paged after replay",
        stats.paged_messages
    );
    assert!(stats.memory_bytes < LIMIT);
    assert_eq!(consume_all(&mut h, n, "1"), n);
}

/// Without a driver that reads back (the Kafka journal today), `page`
/// holds producers back at the limit as `block` does.
#[test]
fn without_journal_reads_page_holds_producers_back() {
    let mut h = Harness::new(NodeConfig {
        journal_reads: false,
        ..config()
    });
    let p = h.connect(1);
    for i in 0..20 {
        h.send(p, send_receipt("/queue/q", &body(i), &format!("r{i}")));
    }
    assert!(receipts(&h.take(p)).len() < 20);
    assert!(h.paused.contains(&p));
    assert_eq!(h.node.stats(0).paged_messages, 0);
}

/// An AMQP drain (JMS `receiveNoWait`) over a queue whose head is paged
/// waits for the read instead of answering "nothing left": every message
/// the credit covers comes, then the drained flow.
#[test]
fn a_drain_waits_for_paged_messages() {
    let n = 20;
    let mut h = Harness::new(config());
    let p = h.connect(1);
    for i in 0..n {
        h.send(p, send_receipt("/queue/q", &body(i), &format!("r{i}")));
    }
    assert_eq!(receipts(&h.take(p)).len(), n);
    assert!(h.node.stats(0).paged_messages >= 10);
    let mut c = Peer::connect(&mut h, 2);
    c.perform(
        &mut h,
        Performative::Attach(Box::new(attach("cons", 0, Role::Receiver, "q"))),
    );
    let _ = c.frames(&mut h);
    c.perform(&mut h, flow(0, 0, n as u32, true));
    let got = c.frames(&mut h);
    let transfers = got
        .iter()
        .filter(|f| matches!(f, Performative::Transfer(_)))
        .count();
    assert_eq!(
        transfers, n,
        "every message the credit covers, paged or not"
    );
    assert!(
        got.iter()
            .any(|f| matches!(f, Performative::Flow(fl) if fl.drain && fl.link_credit == Some(0))),
        "the drain is answered after the transfers: {got:?}"
    );
}
