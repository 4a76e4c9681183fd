//! Broker semantics through the sans-IO node, driven in memory.

use halyard_core::broker::BrokerConfig;
use halyard_core::node::{ConnEvent, Event, NodeConfig};
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

fn h() -> Harness {
    Harness::new(NodeConfig::default())
}

fn messages(frames: &[Frame]) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.command == Command::Message)
        .collect()
}

fn bodies(frames: &[Frame]) -> Vec<String> {
    messages(frames).into_iter().map(body).collect()
}

fn ack_ids(frames: &[Frame]) -> Vec<String> {
    messages(frames)
        .into_iter()
        .map(|f| f.header("ack").expect("ack header").to_string())
        .collect()
}

#[test]
fn receipt_only_after_the_journal_says_durable() {
    let mut h = h();
    let p = h.connect(1);
    h.hold_journal = true;
    h.send(p, send_receipt("/queue/a", "m1", "r1"));
    assert!(receipts(&h.take(p)).is_empty(), "receipt before durable");
    assert_eq!(h.in_flight.len(), 1);
    h.complete(1);
    assert_eq!(receipts(&h.take(p)), vec!["r1"]);
}

#[test]
fn message_is_not_delivered_before_it_is_durable() {
    let mut h = h();
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "auto"));
    let p = h.connect(1);
    h.hold_journal = true;
    h.send(p, send("/queue/a", "m1"));
    assert!(bodies(&h.take(c)).is_empty());
    h.complete(1);
    assert_eq!(bodies(&h.take(c)), vec!["m1"]);
}

#[test]
fn anycast_consumers_compete_and_multicast_subscriptions_each_get_a_copy() {
    let mut h = h();
    let a = h.connect(1);
    let b = h.connect(2);
    h.send(a, subscribe("q", "/queue/work", "auto"));
    h.send(b, subscribe("q", "/queue/work", "auto"));
    h.send(a, subscribe("t", "/topic/news", "auto"));
    h.send(b, subscribe("t", "/topic/news", "auto"));
    let p = h.connect(3);
    for i in 0..4 {
        h.send(p, send("/queue/work", &format!("w{i}")));
    }
    h.send(p, send("/topic/news", "n1"));
    let fa = h.take(a);
    let fb = h.take(b);
    let wa: Vec<_> = bodies(&fa)
        .into_iter()
        .filter(|b| b.starts_with('w'))
        .collect();
    let wb: Vec<_> = bodies(&fb)
        .into_iter()
        .filter(|b| b.starts_with('w'))
        .collect();
    assert_eq!(wa.len() + wb.len(), 4);
    assert_eq!(wa.len(), 2, "round robin");
    assert!(bodies(&fa).contains(&"n1".to_string()));
    assert!(bodies(&fb).contains(&"n1".to_string()));
    let m = messages(&fa)[0];
    assert!(m.header("message-id").is_some());
    assert_eq!(m.header("subscription"), Some("q"));
    assert_eq!(m.header("destination"), Some("/queue/work"));
}

#[test]
fn destination_type_header_selects_routing() {
    let mut h = h();
    let a = h.connect(1);
    let b = h.connect(2);
    let sub =
        |id: &str| subscribe(id, "events", "auto").with_header("destination-type", "MULTICAST");
    h.send(a, sub("x"));
    h.send(b, sub("y"));
    let p = h.connect(3);
    h.send(
        p,
        send("events", "e1").with_header("destination-type", "MULTICAST"),
    );
    assert_eq!(bodies(&h.take(a)), vec!["e1"]);
    assert_eq!(bodies(&h.take(b)), vec!["e1"]);
}

#[test]
fn auto_ack_consumes_for_good() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/a", "m1"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "auto"));
    assert_eq!(bodies(&h.take(c)), vec!["m1"]);
    let mut r = h.restart();
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/a", "auto"));
    assert!(
        bodies(&r.take(c)).is_empty(),
        "auto-acked message came back"
    );
}

#[test]
fn client_ack_is_cumulative() {
    let mut h = h();
    let p = h.connect(1);
    for i in 1..=3 {
        h.send(p, send("/queue/a", &format!("m{i}")));
    }
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "client"));
    let got = h.take(c);
    assert_eq!(bodies(&got), vec!["m1", "m2", "m3"]);
    let ids = ack_ids(&got);
    h.send(c, ack(&ids[1]).with_header("receipt", "a"));
    assert_eq!(receipts(&h.take(c)), vec!["a"]);
    let mut r = h.restart();
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/a", "auto"));
    assert_eq!(bodies(&r.take(c)), vec!["m3"]);
}

#[test]
fn client_individual_ack_acks_one() {
    let mut h = h();
    let p = h.connect(1);
    for i in 1..=3 {
        h.send(p, send("/queue/a", &format!("m{i}")));
    }
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "client-individual"));
    let ids = ack_ids(&h.take(c));
    h.send(c, ack(&ids[1]));
    let mut r = h.restart();
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/a", "auto"));
    assert_eq!(bodies(&r.take(c)), vec!["m1", "m3"]);
}

#[test]
fn unknown_ack_id_is_an_error_and_other_connections_carry_on() {
    let mut h = h();
    let c = h.connect(1);
    let other = h.connect(2);
    h.send(c, ack("12345").with_header("receipt", "x"));
    let f = h.take(c);
    let err = f
        .iter()
        .find(|f| f.command == Command::Error)
        .expect("ERROR");
    assert!(err.header("message").unwrap().contains("unknown ack id"));
    assert_eq!(err.header("receipt-id"), Some("x"));
    assert!(h.closed.contains(&c));
    h.send(other, send_receipt("/queue/a", "ok", "r"));
    assert_eq!(receipts(&h.take(other)), vec!["r"]);
}

#[test]
fn nack_redelivers_with_redelivered_header() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/a", "m1"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "client-individual"));
    let first = h.take(c);
    // Artemis writes `redelivered` on every MESSAGE, false the first time.
    assert_eq!(messages(&first)[0].header("redelivered"), Some("false"));
    h.send(c, nack(&ack_ids(&first)[0]));
    let again = h.take(c);
    assert_eq!(bodies(&again), vec!["m1"]);
    let m = messages(&again)[0];
    assert_eq!(m.header("redelivered"), Some("true"));
    assert_eq!(m.header("delivery-count"), Some("2"));
}

#[test]
fn disconnect_returns_unacked_messages() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/a", "m1"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "client"));
    assert_eq!(bodies(&h.take(c)), vec!["m1"]);
    h.close(c);
    let d = h.connect(3);
    h.send(d, subscribe("s", "/queue/a", "client"));
    let again = h.take(d);
    assert_eq!(bodies(&again), vec!["m1"]);
    assert_eq!(messages(&again)[0].header("redelivered"), Some("true"));
}

#[test]
fn dead_letter_after_max_delivery_attempts_survives_restart() {
    let cfg = NodeConfig {
        broker: BrokerConfig {
            delivery_attempts_max: 3,
            ..BrokerConfig::default()
        },
        ..NodeConfig::default()
    };
    let mut h = Harness::new(cfg);
    let p = h.connect(1);
    h.send(p, send("/queue/a", "poison"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "client-individual"));
    for _ in 0..3 {
        let f = h.take(c);
        assert_eq!(bodies(&f), vec!["poison"]);
        h.send(c, nack(&ack_ids(&f)[0]));
    }
    assert!(bodies(&h.take(c)).is_empty(), "delivered more than 3 times");
    let mut r = h.restart();
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/a", "auto"));
    assert!(
        bodies(&r.take(c)).is_empty(),
        "poison message back on its queue"
    );
    r.send(c, subscribe("d", "/queue/DLQ", "auto"));
    let f = r.take(c);
    assert_eq!(bodies(&f), vec!["poison"]);
    assert_eq!(
        messages(&f)[0].header("original-destination"),
        Some("/queue/a")
    );
}

#[test]
fn durable_subscription_collects_while_away_and_survives_restart() {
    let mut h = h();
    let s = h.connect_with(1, &[("client-id", "app")]);
    let durable = |id: &str| {
        subscribe(id, "/topic/news", "client-individual")
            .with_header("durable-subscription-name", "feed")
    };
    h.send(s, durable("d").with_header("receipt", "sub"));
    assert_eq!(receipts(&h.take(s)), vec!["sub"]);
    let n = h.connect(2);
    h.send(n, subscribe("n", "/topic/news", "auto"));
    h.close(s);
    h.close(n);
    let p = h.connect(3);
    h.send(p, send("/topic/news", "while-away"));
    let mut r = h.restart();
    let s = r.connect_with(1, &[("client-id", "app")]);
    r.send(s, durable("d"));
    assert_eq!(bodies(&r.take(s)), vec!["while-away"]);
    // The non-durable subscription ended with its connection.
    let n = r.connect(2);
    r.send(n, subscribe("n", "/topic/news", "auto"));
    assert!(bodies(&r.take(n)).is_empty());
}

#[test]
fn durable_subscription_needs_client_id_and_can_be_removed() {
    let mut h = h();
    let s = h.connect(1);
    h.send(
        s,
        subscribe("d", "/topic/t", "auto").with_header("durable-subscription-name", "x"),
    );
    let f = h.take(s);
    assert!(
        f.iter()
            .any(|f| f.command == Command::Error
                && f.header("message").unwrap().contains("client-id"))
    );
    let s = h.connect_with(2, &[("client-id", "c")]);
    h.send(
        s,
        subscribe("d", "/topic/t", "auto").with_header("durable-subscription-name", "x"),
    );
    h.send(
        s,
        Frame::new(Command::Unsubscribe)
            .with_header("id", "d")
            .with_header("durable-subscription-name", "x")
            .with_header("receipt", "u"),
    );
    assert_eq!(receipts(&h.take(s)), vec!["u"]);
    let p = h.connect(3);
    h.send(p, send("/topic/t", "gone"));
    let mut r = h.restart();
    assert!(r.node.broker().queue_by_name("c.x").is_none());
    let s = r.connect_with(2, &[("client-id", "c")]);
    r.send(
        s,
        subscribe("d", "/topic/t", "auto").with_header("durable-subscription-name", "x"),
    );
    assert!(bodies(&r.take(s)).is_empty());
}

#[test]
fn transaction_commit_stores_sends_and_acks_atomically() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/in", "old"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/in", "client-individual"));
    let ids = ack_ids(&h.take(c));
    let watcher = h.connect(3);
    h.send(watcher, subscribe("w", "/queue/out", "auto"));
    h.send(
        c,
        Frame::new(Command::Begin).with_header("transaction", "t1"),
    );
    h.send(
        c,
        send("/queue/out", "new").with_header("transaction", "t1"),
    );
    h.send(c, ack(&ids[0]).with_header("transaction", "t1"));
    assert!(bodies(&h.take(watcher)).is_empty(), "visible before COMMIT");
    let batches_before = h.journal.len();
    h.hold_journal = true;
    h.send(
        c,
        Frame::new(Command::Commit)
            .with_header("transaction", "t1")
            .with_header("receipt", "c1"),
    );
    assert_eq!(h.in_flight.len(), 1, "commit is one batch");
    assert!(receipts(&h.take(c)).is_empty());
    h.complete(1);
    assert_eq!(receipts(&h.take(c)), vec!["c1"]);
    assert_eq!(bodies(&h.take(watcher)), vec!["new"]);
    assert!(h.journal.len() > batches_before);
    let mut r = h.restart();
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/in", "auto"));
    assert!(bodies(&r.take(c)).is_empty(), "transactional ack lost");
}

#[test]
fn transaction_abort_discards_sends_and_returns_acked_messages() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/in", "m"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/in", "client-individual"));
    let ids = ack_ids(&h.take(c));
    h.send(
        c,
        Frame::new(Command::Begin).with_header("transaction", "t"),
    );
    h.send(
        c,
        send("/queue/out", "never").with_header("transaction", "t"),
    );
    h.send(c, ack(&ids[0]).with_header("transaction", "t"));
    h.send(
        c,
        Frame::new(Command::Abort)
            .with_header("transaction", "t")
            .with_header("receipt", "ab"),
    );
    let f = h.take(c);
    assert!(receipts(&f).contains(&"ab".to_string()));
    assert_eq!(bodies(&f), vec!["m"], "rolled-back ack redelivers");
    let w = h.connect(3);
    h.send(w, subscribe("w", "/queue/out", "auto"));
    assert!(bodies(&h.take(w)).is_empty());
}

#[test]
fn consumer_window_limits_unacked_bytes() {
    let mut h = h();
    let p = h.connect(1);
    for i in 0..5 {
        h.send(p, send("/queue/a", &format!("message-{i}")));
    }
    let c = h.connect(2);
    h.send(
        c,
        subscribe("s", "/queue/a", "client-individual").with_header("consumer-window-size", "10"),
    );
    let f = h.take(c);
    assert_eq!(
        bodies(&f).len(),
        1,
        "window of 10 bytes holds one 40-byte message"
    );
    h.send(c, ack(&ack_ids(&f)[0]));
    assert_eq!(bodies(&h.take(c)), vec!["message-1"]);
    let d = h.connect(3);
    h.send(
        d,
        subscribe("s", "/queue/a", "client-individual").with_header("consumer-window-size", "-1"),
    );
    assert_eq!(
        bodies(&h.take(d)).len(),
        3,
        "unbounded window gets the rest"
    );
}

#[test]
fn non_persistent_messages_do_not_survive_restart() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/a", "keep"));
    h.send(
        p,
        send("/queue/a", "lose").with_header("persistent", "false"),
    );
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/a", "client"));
    assert_eq!(bodies(&h.take(c)), vec!["keep", "lose"]);
    let mut r = h.restart();
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/a", "auto"));
    assert_eq!(bodies(&r.take(c)), vec!["keep"]);
}

#[test]
fn duplicate_ids_are_stored_once() {
    let mut h = h();
    let p = h.connect(1);
    h.hold_journal = true;
    h.send(
        p,
        send_receipt("/queue/a", "x", "1").with_header("_AMQ_DUPL_ID", "d1"),
    );
    h.send(
        p,
        send_receipt("/queue/a", "x", "2").with_header("_AMQ_DUPL_ID", "d1"),
    );
    h.complete(usize::MAX);
    assert_eq!(receipts(&h.take(p)), vec!["1", "2"]);
    h.hold_journal = false;
    h.send(
        p,
        send_receipt("/queue/a", "x", "3").with_header("_AMQ_DUPL_ID", "d1"),
    );
    let mut r = h.restart();
    let p = r.connect(1);
    r.send(
        p,
        send_receipt("/queue/a", "x", "4").with_header("_AMQ_DUPL_ID", "d1"),
    );
    assert_eq!(receipts(&r.take(p)), vec!["4"]);
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/a", "auto"));
    assert_eq!(bodies(&r.take(c)), vec!["x"], "stored more than once");
}

#[test]
fn heart_beats_are_sent_and_silent_clients_are_dropped() {
    let cfg = NodeConfig {
        heartbeat_ms: 1_000,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(cfg);
    let c = h.connect_with(1, &[("heart-beat", "1000,1000")]);
    h.advance(1_500);
    assert!(!h.closed.contains(&c));
    h.advance(1_000);
    assert!(
        h.closed.contains(&c),
        "silent client kept for 2.5 s with 1 s heart-beats"
    );
    assert!(h.events.iter().any(
        |e| matches!(e, Event::ClientError { message, .. } if message.contains("heart-beat"))
    ));
}

#[test]
fn connect_timeout_and_frames_before_connect() {
    let mut h = h();
    h.input(halyard_core::node::Input::Conn(ConnEvent::Opened {
        conn: halyard_core::ids::ConnId(9),
    }));
    h.advance(31_000);
    assert!(h.closed.contains(&halyard_core::ids::ConnId(9)));
}

/// A connection refused before CONNECT while another's append is in
/// flight: its ERROR waits its turn, and meanwhile its deadline must not
/// stay due (a driver waking at deadlines would spin). Found by the
/// `node_ops` fuzz target.
#[test]
fn a_refused_connection_waiting_its_turn_has_no_deadline_due() {
    let cfg = NodeConfig {
        connect_timeout_ms: 2_000,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(cfg);
    let a = h.connect(1);
    h.hold_journal = true;
    h.send(a, send_receipt("/queue/q", "x", "r1"));
    let b = h.open(2);
    h.send(
        b,
        Frame::new(Command::Begin).with_header("transaction", "t"),
    );
    let mut ticks = 0;
    while let Some(d) = h.node.next_deadline() {
        if d > 10_000 {
            break;
        }
        ticks += 1;
        assert!(ticks < 100, "deadline {d} still due at {}", h.now);
        h.now = h.now.max(d);
        h.input(halyard_core::node::Input::Tick);
    }
    h.hold_journal = false;
    h.complete(usize::MAX);
    assert_eq!(receipts(&h.take(a)), ["r1"]);
    let errors = h.take(b);
    assert!(
        errors.iter().any(|f| f.command == Command::Error),
        "{errors:?}"
    );
    assert!(h.closed.contains(&b));
}

/// An ERROR before CONNECT is written without escapes; text from the
/// client's bytes must not make it unreadable to a STOMP 1.2 decoder.
#[test]
fn an_error_before_connect_reads_under_stomp_1_2() {
    let mut h = h();
    let c = h.open(3);
    h.send_raw(c, b"\tBOGUS\\x\n\n\0");
    let frames = h.take(c);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command, Command::Error);
    let m = frames[0].header("message").unwrap();
    assert!(m.starts_with("unknown command"), "{m}");
    assert!(h.closed.contains(&c));
}

#[test]
fn many_pending_sends_pause_the_reader_then_resume() {
    let cfg = NodeConfig {
        conn_inflight_max: 4,
        ..NodeConfig::default()
    };
    let mut h = Harness::new(cfg);
    let p = h.connect(1);
    h.hold_journal = true;
    let mut raw = Vec::new();
    for i in 0..10 {
        raw.extend_from_slice(&halyard_core::protocol::stomp::encode_to_bytes(
            &send_receipt("/queue/a", "x", &i.to_string()),
            halyard_core::protocol::stomp::Version::V1_2,
        ));
    }
    h.send_raw(p, &raw);
    assert!(h.paused.contains(&p));
    assert_eq!(h.in_flight.len(), 4);
    h.complete(usize::MAX);
    h.hold_journal = false;
    h.complete(usize::MAX);
    assert!(!h.paused.contains(&p));
    assert_eq!(receipts(&h.take(p)).len(), 10);
}

/// Compaction keeps only the latest copy of a re-emitted `QueueCreated`,
/// which can then come after a message that references the queue.
#[test]
fn replay_tolerates_queue_creation_after_its_messages() {
    use halyard_core::ids::Id;
    use halyard_core::journal::{Entry, QueueDef, QueueKind, Record, Routing};
    use halyard_core::message::{Body, Message};
    let q = Id::new(1, 2);
    let create = Entry::Put(Record::QueueCreated(QueueDef {
        id: q,
        name: "orders".into(),
        address: "orders".into(),
        kind: QueueKind::Anycast,
    }));
    let stored = |seq: u64, body: &str| {
        Entry::Put(Record::MessageStored {
            id: Id::new(1, seq),
            queues: vec![q],
            message: std::sync::Arc::new(Message::new(
                "orders",
                Routing::Anycast,
                Body::Text(bytes::Bytes::copy_from_slice(body.as_bytes())),
            )),
        })
    };
    // What is left after compaction dropped the first QueueCreated.
    let journal = vec![vec![stored(3, "first")], vec![create, stored(5, "second")]];
    let mut h = Harness::with_journal(NodeConfig::default(), journal);
    let c = h.connect(1);
    h.send(c, subscribe("s", "/queue/orders", "auto"));
    assert_eq!(bodies(&h.take(c)), vec!["first", "second"]);
    // A reference to a queue that never appears is dropped, and the message
    // is tombstoned so compaction can reclaim it.
    let ghost = Entry::Put(Record::MessageStored {
        id: Id::new(1, 9),
        queues: vec![Id::new(1, 8)],
        message: std::sync::Arc::new(Message::new(
            "gone",
            Routing::Anycast,
            Body::Text(bytes::Bytes::from_static(b"x")),
        )),
    });
    let h = Harness::with_journal(NodeConfig::default(), vec![vec![ghost]]);
    let last = h.journal.last().expect("activation batch");
    assert!(
        last.iter().any(|e| matches!(e, Entry::Tombstone(halyard_core::journal::Key::Message(id)) if *id == Id::new(1, 9))),
        "no tombstone for the orphaned message: {last:?}"
    );
}

/// A bad frame after good ones: the good ones are answered first, then ERROR.
#[test]
fn error_waits_for_the_receipts_of_earlier_frames() {
    let mut h = h();
    let p = h.connect(1);
    h.hold_journal = true;
    h.send_raw(
        p,
        b"SEND\ndestination:/queue/mixed\nreceipt:ok-1\n\none\0SEND\ndestination:/queue/mixed\nreceipt:ok-2\n\ntwo\0BOGUS\n\n\0",
    );
    assert!(h.take(p).is_empty(), "answered before the journal");
    h.complete(usize::MAX);
    let f = h.take(p);
    let order: Vec<String> = f
        .iter()
        .map(|f| match f.command {
            Command::Receipt => f.header("receipt-id").unwrap_or_default().to_string(),
            Command::Error => "ERROR".to_string(),
            _ => "?".to_string(),
        })
        .collect();
    assert_eq!(order, vec!["ok-1", "ok-2", "ERROR"]);
    assert!(h.closed.contains(&p));
}

/// Duplicate ids evicted from the bounded cache are tombstoned once: a
/// restart does not write their tombstones again, unless the journal lacks
/// them (a crash came between the eviction and its tombstone).
#[test]
fn evicted_duplicate_ids_are_tombstoned_once() {
    use halyard_core::journal::{Entry, Key};
    let cfg = NodeConfig {
        broker: BrokerConfig {
            duplicate_ids_per_address_max: 2,
            ..BrokerConfig::default()
        },
        ..NodeConfig::default()
    };
    let mut h = Harness::new(cfg);
    let p = h.connect(1);
    for i in 0..5 {
        h.send(
            p,
            send_receipt("/queue/a", "x", &i.to_string())
                .with_header("_AMQ_DUPL_ID", format!("d{i}")),
        );
    }
    let dup_tombstones = |batches: &[Vec<Entry>]| {
        batches
            .iter()
            .flatten()
            .filter(|e| matches!(e, Entry::Tombstone(Key::Duplicate { .. })))
            .count()
    };
    assert_eq!(dup_tombstones(&h.journal), 3, "three evictions");
    let r = h.restart();
    let activation = r.journal.last().expect("activation batch");
    assert_eq!(
        dup_tombstones(std::slice::from_ref(activation)),
        0,
        "rewritten on restart"
    );
    // Without the tombstones (journal cut before them), the restart writes them.
    let without: Vec<Vec<Entry>> = h
        .journal
        .iter()
        .map(|b| {
            b.iter()
                .filter(|e| !matches!(e, Entry::Tombstone(Key::Duplicate { .. })))
                .cloned()
                .collect()
        })
        .collect();
    let r = Harness::with_journal(h.node.config().clone(), without);
    let activation = r.journal.last().expect("activation batch");
    assert_eq!(dup_tombstones(std::slice::from_ref(activation)), 3);
}

/// What one consumed message costs the journal, by kind of entry.
fn journal_kinds(h: &Harness) -> Vec<&'static str> {
    use halyard_core::journal::{Entry, Key, Record};
    h.journal
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Entry::Put(Record::MessageStored { .. }) => Some("stored"),
            Entry::Put(Record::Acked { .. }) => Some("acked"),
            Entry::Put(Record::Routed { .. }) => Some("routed"),
            Entry::Tombstone(Key::Message(_)) => Some("m-tombstone"),
            Entry::Tombstone(Key::Ref { .. }) => Some("r-tombstone"),
            _ => None,
        })
        .collect()
}

#[test]
fn consuming_a_queued_message_takes_one_tombstone() {
    for mode in ["client-individual", "client", "auto"] {
        let mut h = h();
        let p = h.connect(1);
        h.send(p, send("/queue/q", "one"));
        let c = h.connect(2);
        h.send(c, subscribe("s", "/queue/q", mode));
        let got = h.take(c);
        assert_eq!(bodies(&got), vec!["one"], "{mode}");
        if mode != "auto" {
            h.send(c, ack(&ack_ids(&got)[0]));
        }
        // The only reference: the ack is the message's tombstone, one batch.
        assert_eq!(journal_kinds(&h), ["stored", "m-tombstone"], "{mode}");
        let mut r = h.restart();
        let c = r.connect(2);
        r.send(c, subscribe("s", "/queue/q", "auto"));
        assert!(
            bodies(&r.take(c)).is_empty(),
            "{mode}: consumed survives restart"
        );
    }
}

#[test]
fn a_message_on_two_durable_subscriptions_is_tombstoned_after_the_last_ack() {
    let mut h = h();
    let durable = |id: &str, name: &str| {
        subscribe(id, "/topic/news", "client-individual")
            .with_header("durable-subscription-name", name)
    };
    let a = h.connect_with(1, &[("client-id", "a")]);
    h.send(a, durable("a", "feed"));
    let b = h.connect_with(2, &[("client-id", "b")]);
    h.send(b, durable("b", "feed"));
    let p = h.connect(3);
    h.send(p, send("/topic/news", "both"));
    let got_a = h.take(a);
    let got_b = h.take(b);
    assert_eq!(bodies(&got_a), vec!["both"]);
    assert_eq!(bodies(&got_b), vec!["both"]);
    h.send(a, ack(&ack_ids(&got_a)[0]));
    // Still wanted by b: only a's reference goes.
    assert_eq!(journal_kinds(&h), ["stored", "acked"]);
    let mut r = h.restart();
    let b2 = r.connect_with(2, &[("client-id", "b")]);
    r.send(b2, durable("b", "feed"));
    assert_eq!(
        bodies(&r.take(b2)),
        vec!["both"],
        "b still has it after a restart"
    );
    h.send(b, ack(&ack_ids(&got_b)[0]));
    // The last one tombstones the message and a's `r/` key, nothing more.
    assert_eq!(
        journal_kinds(&h),
        ["stored", "acked", "m-tombstone", "r-tombstone"]
    );
    let mut r = h.restart();
    for (conn, id) in [(1, "a"), (2, "b")] {
        let c = r.connect_with(conn, &[("client-id", id)]);
        r.send(c, durable(id, "feed"));
        assert!(
            bodies(&r.take(c)).is_empty(),
            "{id}: consumed survives restart"
        );
    }
}

#[test]
fn a_message_also_held_by_a_non_durable_subscriber_is_acked_not_tombstoned() {
    let mut h = h();
    let d = h.connect_with(1, &[("client-id", "a")]);
    h.send(
        d,
        subscribe("d", "/topic/news", "client-individual")
            .with_header("durable-subscription-name", "feed"),
    );
    let n = h.connect(2);
    h.send(n, subscribe("n", "/topic/news", "client-individual"));
    let p = h.connect(3);
    h.send(p, send("/topic/news", "x"));
    let got_d = h.take(d);
    h.send(d, ack(&ack_ids(&got_d)[0]));
    // The non-durable subscriber's copy must not go with a tombstone.
    let got_n = h.take(n);
    assert_eq!(bodies(&got_n), vec!["x"]);
    // The journal forgets it (no durable reference is left); the
    // non-durable subscriber's copy lives on in memory.
    assert_eq!(
        journal_kinds(&h),
        ["stored", "acked", "m-tombstone", "r-tombstone"]
    );
    h.send(n, nack(&ack_ids(&got_n)[0]));
    assert_eq!(
        bodies(&h.take(n)),
        vec!["x"],
        "redelivered to the non-durable one"
    );
}

#[test]
fn nack_on_a_topic_subscription_redelivers() {
    let mut h = h();
    let n = h.connect(2);
    h.send(n, subscribe("n", "/topic/news", "client-individual"));
    let p = h.connect(3);
    h.send(p, send("/topic/news", "x"));
    let got_n = h.take(n);
    assert_eq!(bodies(&got_n), vec!["x"]);
    h.send(n, nack(&ack_ids(&got_n)[0]));
    assert_eq!(bodies(&h.take(n)), vec!["x"], "redelivered");
}
