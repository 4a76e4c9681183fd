//! Management operations (purge, move, retry, delete, browse) and the
//! figures of `Node::stats`, through the sans-IO node in memory: every
//! change is answered only once durable and survives a restart from the
//! journal.

use halyard_core::broker::BrokerConfig;
use halyard_core::node::{AdminError, AdminOp, AdminReply, Input, NodeConfig};
use halyard_core::protocol::stomp::Command;
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

fn h() -> Harness {
    Harness::new(NodeConfig {
        broker: BrokerConfig {
            delivery_attempts_max: 1,
            ..BrokerConfig::default()
        },
        ..NodeConfig::default()
    })
}

fn fill(h: &mut Harness, dest: &str, n: usize) {
    let c = h.connect(90);
    for i in 0..n {
        h.send(c, send_receipt(dest, &format!("m{i}"), &format!("r{i}")));
    }
    h.close(c);
}

fn admin(h: &mut Harness, id: u64, op: AdminOp) -> Result<AdminReply, AdminError> {
    h.input(Input::Admin { id, op });
    let (got, result) = h.admin.pop().expect("an answer");
    assert_eq!(got, id);
    result
}

/// Two messages to `orders`, both NACKed (one attempt allowed): to the DLQ.
fn two_dead_letters(h: &mut Harness) {
    fill(h, "/queue/orders", 2);
    let c = h.connect(91);
    h.send(c, subscribe("s", "/queue/orders", "client-individual"));
    let frames = h.take(c);
    let acks: Vec<String> = frames
        .iter()
        .filter(|f| f.command == Command::Message)
        .filter_map(|f| f.header("ack").map(str::to_owned))
        .take(2)
        .collect();
    assert_eq!(acks.len(), 2, "{frames:?}");
    for a in &acks {
        h.send(c, nack(a));
    }
    h.close(c);
}

#[test]
fn counters_follow_sends_deliveries_acks_and_dead_letters() {
    let mut h = h();
    two_dead_letters(&mut h);
    fill(&mut h, "/queue/orders", 3);
    let s = h.node.stats(100);
    let orders = s.queues.iter().find(|q| q.name == "orders").unwrap();
    assert_eq!(orders.messages, 3);
    assert_eq!(orders.counters.added, 5);
    assert!(orders.counters.delivered >= 2);
    assert_eq!(orders.counters.dead_lettered, 2);
    let dlq = s.queues.iter().find(|q| q.name == "DLQ").unwrap();
    assert_eq!((dlq.messages, dlq.counters.added), (2, 2));
    assert!(
        s.counters.journal_batches > 0 && s.counters.journal_entries >= s.counters.journal_batches
    );
    assert_eq!(s.counters.send_receipt_latency.count, 5);
    assert_eq!(s.state, "live");
    assert!(s.readiness().is_ok());
    // A bound on the listed queues, fullest first.
    let one = h.node.stats(1);
    assert_eq!((one.queues.len(), one.queues_total), (1, 2));
    assert_eq!(one.queues[0].name, "orders");
}

#[test]
fn purge_is_answered_when_durable_and_survives_a_restart() {
    let mut h = h();
    fill(&mut h, "/queue/a", 4);
    h.hold_journal = true;
    h.input(Input::Admin {
        id: 7,
        op: AdminOp::Purge { queue: "a".into() },
    });
    assert!(
        h.admin.is_empty(),
        "answered before the journal said durable"
    );
    h.complete(usize::MAX);
    h.pump();
    assert_eq!(
        h.admin.pop(),
        Some((
            7,
            Ok(AdminReply::Purged {
                purged: 4,
                remaining: 0
            })
        ))
    );
    h.hold_journal = false;
    assert_eq!(h.queue_depth("a"), Some(0));
    let r = h.restart();
    assert_eq!(r.queue_depth("a"), Some(0), "the purge is in the journal");
}

#[test]
fn retry_moves_dead_letters_back_and_move_takes_another_address() {
    let mut h = h();
    two_dead_letters(&mut h);
    fill(&mut h, "/queue/orders", 3);
    let browsed = h.node.browse("DLQ", 10).unwrap();
    assert_eq!(browsed.len(), 2);
    assert_eq!(browsed[0].original_address.as_deref(), Some("orders"));
    assert!(browsed[0].body_preview.starts_with('m'));
    let r = admin(
        &mut h,
        1,
        AdminOp::Retry {
            queue: "DLQ".into(),
        },
    );
    assert_eq!(
        r,
        Ok(AdminReply::Moved {
            moved: 2,
            skipped: 0,
            remaining: 0
        })
    );
    assert_eq!(
        (h.queue_depth("DLQ"), h.queue_depth("orders")),
        (Some(0), Some(5))
    );
    let r = admin(
        &mut h,
        2,
        AdminOp::Move {
            queue: "orders".into(),
            to: "archive".into(),
        },
    );
    assert!(matches!(r, Ok(AdminReply::Moved { moved: 5, .. })), "{r:?}");
    let restarted = h.restart();
    assert_eq!(restarted.queue_depth("orders"), Some(0));
    assert_eq!(restarted.queue_depth("archive"), Some(5));
    assert_eq!(restarted.queue_depth("DLQ"), Some(0));
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut h = h();
    fill(&mut h, "/queue/a", 1);
    let c = h.connect(5);
    h.send(c, subscribe("s", "/queue/busy", "client-individual"));
    assert_eq!(
        admin(
            &mut h,
            1,
            AdminOp::Purge {
                queue: "nope".into()
            }
        ),
        Err(AdminError::NoQueue("nope".into()))
    );
    assert!(matches!(
        admin(
            &mut h,
            2,
            AdminOp::DeleteQueue {
                queue: "busy".into()
            }
        ),
        Err(AdminError::ConsumersAttached { consumers: 1, .. })
    ));
    assert!(matches!(
        admin(
            &mut h,
            3,
            AdminOp::Move {
                queue: "a".into(),
                to: "a".into()
            }
        ),
        Err(AdminError::BadTarget { .. })
    ));
    // A delete of a queue with no consumers works and is journaled.
    assert_eq!(
        admin(&mut h, 4, AdminOp::DeleteQueue { queue: "a".into() }),
        Ok(AdminReply::Deleted { messages: 1 })
    );
    assert_eq!(h.queue_depth("a"), None);
    assert_eq!(h.restart().queue_depth("a"), None);
}

#[test]
fn retry_leaves_dead_letters_of_a_multicast_address_untouched() {
    let mut h = h();
    let c = h.connect_with(1, &[("client-id", "app")]);
    h.send(
        c,
        subscribe("s", "/topic/news", "client-individual")
            .with_header("durable-subscription-name", "feed"),
    );
    let p = h.connect(2);
    h.send(p, send_receipt("/topic/news", "n0", "r0"));
    let frames = h.take(c);
    let ack = frames
        .iter()
        .find(|f| f.command == Command::Message)
        .and_then(|f| f.header("ack"))
        .expect("a delivery")
        .to_owned();
    h.send(c, nack(&ack));
    assert_eq!(h.queue_depth("DLQ"), Some(1));
    let r = admin(
        &mut h,
        1,
        AdminOp::Retry {
            queue: "DLQ".into(),
        },
    );
    assert_eq!(
        r,
        Ok(AdminReply::Moved {
            moved: 0,
            skipped: 1,
            remaining: 0
        })
    );
    // Still there and still deliverable: a DLQ consumer gets it.
    let d = h.connect(3);
    h.send(d, subscribe("d", "/queue/DLQ", "client-individual"));
    let got: Vec<String> = h
        .take(d)
        .iter()
        .filter(|f| f.command == Command::Message)
        .map(body)
        .collect();
    assert_eq!(got, vec!["n0".to_string()]);
}
