//! The Kafka bridge through the sans-IO node in memory: bridged records go
//! with the journal batch that stores the message (and only then is the
//! send answered), a resent duplicate id is not bridged twice, ingested
//! records become messages journaled with their position, and a restart
//! resumes the reader exactly there.

use bytes::Bytes;
use halyard_core::bridge::{
    BridgeConfig, BridgeEvent, BridgeMode, BridgeRequest, InRecord, Position, RouteSettings,
    CLUSTER_HEADER, DEFAULT_PREFIX,
};
use halyard_core::journal::{Entry, Record};
use halyard_core::node::{Input, NodeConfig};
use halyard_core::protocol::stomp::Command;
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

fn config() -> NodeConfig {
    let bridge = BridgeConfig::new(
        DEFAULT_PREFIX.into(),
        RouteSettings::default(),
        vec![],
        "c1".into(),
        BridgeMode::Transactional,
    )
    .unwrap();
    NodeConfig {
        bridge: Some(bridge),
        ..NodeConfig::default()
    }
}

fn record(offset: u64, value: &str) -> InRecord {
    InRecord {
        offset,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![("color".into(), Bytes::from("red"))],
        timestamp_ms: None,
    }
}

#[test]
fn a_send_is_answered_only_with_its_record_durable() {
    let mut h = Harness::new(config());
    let c = h.connect(1);
    h.hold_journal = true;
    // No subscription: the message is stored nowhere, but the record must
    // still be written before the receipt.
    h.send(
        c,
        send_receipt("/topic/kafka.orders", "hello", "r1")
            .with_header("region", "eu")
            .with_header("_AMQ_DUPL_ID", "d1"),
    );
    assert!(receipts(&h.take(c)).is_empty(), "receipt before durable");
    assert!(h.published.is_empty());
    h.hold_journal = false;
    h.complete(usize::MAX);
    assert_eq!(receipts(&h.take(c)), vec!["r1"]);
    assert_eq!(h.published.len(), 1);
    let r = &h.published[0];
    assert_eq!(r.topic, "orders");
    assert_eq!(r.value, Bytes::from("hello"));
    assert_eq!(
        r.key,
        Some(Bytes::from("d1")),
        "the duplicate id is the key"
    );
    assert!(r.headers.contains(&("region".into(), Bytes::from("eu"))));
    assert!(r
        .headers
        .contains(&(CLUSTER_HEADER.into(), Bytes::from("c1"))));

    // The same duplicate id again: answered, not bridged twice.
    h.send(
        c,
        send_receipt("/topic/kafka.orders", "hello", "r2").with_header("_AMQ_DUPL_ID", "d1"),
    );
    assert_eq!(receipts(&h.take(c)), vec!["r2"]);
    assert_eq!(h.published.len(), 1);

    // Addresses outside the bridge are not written to Kafka.
    h.send(c, send_receipt("/queue/plain", "x", "r3"));
    h.send(c, send_receipt("/topic/other", "x", "r4"));
    assert_eq!(receipts(&h.take(c)), vec!["r3", "r4"]);
    assert_eq!(h.published.len(), 1);
}

#[test]
fn ingested_records_reach_subscribers_once_and_resume_after_restart() {
    let mut h = Harness::new(config());
    assert!(
        matches!(h.bridge.first(), Some(BridgeRequest::Start { positions, .. }) if positions.is_empty()),
        "{:?}",
        h.bridge
    );
    let c = h.connect_with(1, &[("client-id", "cid")]);
    h.send(
        c,
        subscribe("s1", "/topic/kafka.in", "auto").with_header("durable-subscription-name", "d"),
    );
    h.take(c);
    assert!(
        h.bridge.iter().any(
            |r| matches!(r, BridgeRequest::Subscribed { addresses } if addresses == &["kafka.in"])
        ),
        "the reader hears of the subscription: {:?}",
        h.bridge
    );
    let mut own = record(2, "mine");
    own.headers.push((CLUSTER_HEADER.into(), Bytes::from("c1")));
    h.input(Input::Bridge(BridgeEvent::Records {
        topic: "in".into(),
        partition: 0,
        records: vec![record(0, "a"), record(1, "b"), own, record(5, "f")],
    }));
    // The same records again (a reader that read twice): nothing new.
    h.input(Input::Bridge(BridgeEvent::Records {
        topic: "in".into(),
        partition: 0,
        records: vec![record(1, "b"), record(5, "f")],
    }));
    let got: Vec<String> = h
        .take(c)
        .iter()
        .filter(|f| f.command == Command::Message)
        .map(|f| {
            assert_eq!(f.header("kafka.topic"), Some("in"));
            assert_eq!(f.header("color"), Some("red"));
            body(f)
        })
        .collect();
    assert_eq!(got, vec!["a", "b", "f"], "once each, never our own record");
    assert!(h.bridge.contains(&BridgeRequest::Ingested(Position {
        topic: "in".into(),
        partition: 0,
        next_offset: 6,
    })));
    assert!(
        h.published.is_empty(),
        "ingested messages are not sent back out"
    );
    // The position is in the journal, in the batch with the messages.
    let batch = h
        .journal
        .iter()
        .find(|b| {
            b.iter()
                .any(|e| matches!(e, Entry::Put(Record::BridgePosition { .. })))
        })
        .expect("a batch with the position");
    let stored = batch
        .iter()
        .filter(|e| matches!(e, Entry::Put(Record::MessageStored { .. })))
        .count();
    assert_eq!(stored, 3);

    let h2 = h.restart();
    assert_eq!(
        h2.bridge.first(),
        Some(&BridgeRequest::Start {
            positions: vec![Position {
                topic: "in".into(),
                partition: 0,
                next_offset: 6,
            }],
            subscribed: vec!["kafka.in".into()],
        })
    );
}

/// With the local journal the record goes into the outbox with the
/// message, is forwarded once durable, leaves the outbox when Kafka has it,
/// and what was still in the outbox is forwarded again after a restart
/// (at least once).
#[test]
fn the_outbox_forwards_after_durable_and_again_after_a_restart() {
    let mut cfg = config();
    if let Some(b) = cfg.bridge.as_mut() {
        b.mode = BridgeMode::Outbox;
    }
    let mut h = Harness::new(cfg);
    let c = h.connect(1);
    h.hold_journal = true;
    h.send(c, send_receipt("/topic/kafka.orders", "one", "r1"));
    h.send(c, send_receipt("/topic/kafka.orders", "two", "r2"));
    let forwards = |h: &Harness| -> Vec<(halyard_core::ids::Id, bool)> {
        h.bridge
            .iter()
            .filter_map(|r| match r {
                BridgeRequest::Forward { records, again } => Some(
                    records
                        .iter()
                        .map(|(id, _)| (*id, *again))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert!(forwards(&h).is_empty(), "forwarded before durable");
    h.hold_journal = false;
    h.complete(usize::MAX);
    assert_eq!(receipts(&h.take(c)), vec!["r1", "r2"]);
    assert!(
        h.published.is_empty(),
        "the local journal writes no Kafka records"
    );
    let sent = forwards(&h);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, again)| !again));
    assert_eq!(h.node.broker().outbox().len(), 2);
    // Kafka has the first: it leaves the outbox (a tombstone in the journal).
    h.input(Input::Bridge(BridgeEvent::Forwarded {
        ids: vec![sent[0].0],
    }));
    assert_eq!(h.node.broker().outbox().len(), 1);
    // A restart forwards the second again.
    let h2 = h.restart();
    let again = forwards(&h2);
    assert_eq!(again, vec![(sent[1].0, true)]);
}
