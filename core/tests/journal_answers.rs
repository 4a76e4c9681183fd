//! Journal answers delivered together (`Input::Journals`, one per group
//! commit in the real drivers) mean what the same answers mean one by one:
//! the same receipts, AMQP outcomes and deliveries, in the same order.

mod amqp_client;

use amqp_client::peer::{dispositions, durable_text, Peer};
use amqp_client::{attach, frame_with, transfer};
use halyard_core::node::NodeConfig;
use halyard_core::protocol::amqp::{DeliveryState, Performative, Role};
use halyard_core::testkit::frames::{ack, body, receipts, send_receipt, subscribe};
use halyard_core::testkit::Harness;

/// What a STOMP producer and consumer see when five sends become durable
/// either one answer at a time or all in one input, and the queue's depth
/// after the consumer acknowledged three and the node restarted.
fn stomp_run(together: bool) -> (Vec<String>, Vec<String>, Option<u64>) {
    let mut h = Harness::new(NodeConfig::default());
    let consumer = h.connect(1);
    h.send(consumer, subscribe("s", "/queue/q", "client-individual"));
    let producer = h.connect(2);
    h.hold_journal = true;
    for i in 0..5 {
        h.send(
            producer,
            send_receipt("/queue/q", &format!("m{i}"), &format!("r{i}")),
        );
    }
    assert_eq!(
        h.in_flight.len(),
        5,
        "five sends on their way to the journal"
    );
    assert!(
        receipts(&h.take(producer)).is_empty(),
        "no receipt before durable"
    );
    if together {
        h.complete_together(usize::MAX);
    } else {
        h.complete(usize::MAX);
    }
    let got_receipts = receipts(&h.take(producer));
    let messages = h.take(consumer);
    let bodies: Vec<String> = messages.iter().map(body).collect();
    // The consumer's acks are journaled too; answered together as well.
    for m in messages.iter().take(3) {
        h.send(consumer, ack(m.header("ack").expect("an ack id")));
    }
    if together {
        h.complete_together(usize::MAX);
    } else {
        h.complete(usize::MAX);
    }
    h.hold_journal = false;
    let left = h.restart().queue_depth("q");
    (got_receipts, bodies, left)
}

#[test]
fn stomp_answers_together_mean_the_same_as_one_by_one() {
    let one_by_one = stomp_run(false);
    let together = stomp_run(true);
    assert_eq!(
        one_by_one.0,
        vec!["r0", "r1", "r2", "r3", "r4"],
        "every send receipted, in order"
    );
    assert_eq!(one_by_one.1, vec!["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(
        one_by_one.2,
        Some(2),
        "three acks durable, two messages left"
    );
    assert_eq!(together, one_by_one);
}

/// The dispositions an AMQP producer gets for three transfers made durable
/// one answer at a time or together: (first, last, settled, accepted) each.
fn amqp_run(together: bool) -> Vec<(u32, u32, bool, bool)> {
    let mut h = Harness::new(NodeConfig::default());
    let mut p = Peer::connect(&mut h, 1);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("prod", 0, Role::Sender, "orders"))),
    );
    let _ = p.frames(&mut h);
    h.hold_journal = true;
    for id in 0..3 {
        p.send(
            &mut h,
            &frame_with(
                0,
                transfer(0, id, false, false),
                &durable_text(&format!("m{id}")),
            ),
        );
    }
    assert!(
        dispositions(&p.frames(&mut h)).is_empty(),
        "nothing accepted yet"
    );
    assert_eq!(h.in_flight.len(), 3);
    if together {
        h.complete_together(usize::MAX);
    } else {
        h.complete(usize::MAX);
    }
    let got = p.frames(&mut h);
    let mut covered = Vec::new();
    for d in dispositions(&got) {
        assert!(
            d.settled && d.state == Some(DeliveryState::Accepted),
            "{d:?}"
        );
        covered.extend(d.first..=d.last.unwrap_or(d.first));
    }
    assert_eq!(
        covered,
        vec![0, 1, 2],
        "each transfer accepted once, in order: {got:?}"
    );
    dispositions(&got)
        .iter()
        .map(|d| {
            (
                d.first,
                d.last.unwrap_or(d.first),
                d.settled,
                d.state == Some(DeliveryState::Accepted),
            )
        })
        .collect()
}

#[test]
fn amqp_transfers_answered_together_are_accepted_once_each_in_one_range() {
    let one_by_one = amqp_run(false);
    assert_eq!(
        one_by_one.len(),
        3,
        "one disposition per answer: {one_by_one:?}"
    );
    let together = amqp_run(true);
    assert_eq!(
        together,
        vec![(0, 2, true, true)],
        "answers that came together are accepted in one range"
    );
}
