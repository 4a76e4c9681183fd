//! Priority, expiry and scheduled delivery through the sans-IO node,
//! driven in memory with STOMP frames (Artemis's header names) and a
//! wall-clock-like `now`.

use halyard_core::broker::BrokerConfig;
use halyard_core::node::NodeConfig;
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

/// A wall-clock time (ms since the Unix epoch) the tests start at.
const T0: u64 = 1_800_000_000_000;

fn h_with(broker: BrokerConfig) -> Harness {
    let mut h = Harness::new(NodeConfig {
        broker,
        ..NodeConfig::default()
    });
    h.now = T0;
    h.advance(0);
    h
}

fn h() -> Harness {
    h_with(BrokerConfig::default())
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

fn error(frames: &[Frame]) -> Option<String> {
    frames
        .iter()
        .find(|f| f.command == Command::Error)
        .map(|f| f.header("message").unwrap_or_default().to_string())
}

fn queue_depth(h: &Harness, name: &str) -> usize {
    h.node.broker().queue_by_name(name).map_or(0, |q| q.depth())
}

#[test]
fn highest_priority_first_and_fifo_within_a_priority() {
    let mut h = h();
    let p = h.connect(1);
    let prios = [0u8, 9, 4, 7, 1, 9, 5, 2, 8, 3, 6, 0, 4];
    for (i, pr) in prios.iter().enumerate() {
        h.send(
            p,
            send("/queue/p", &format!("{pr}-{i}")).with_header("priority", pr.to_string()),
        );
    }
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/p", "auto"));
    let got = h.take(c);
    let mut want: Vec<(u8, usize)> = prios.iter().copied().zip(0..).collect();
    want.sort_by_key(|(p, i)| (std::cmp::Reverse(*p), *i));
    let want: Vec<String> = want.iter().map(|(p, i)| format!("{p}-{i}")).collect();
    assert_eq!(bodies(&got), want);
    assert_eq!(messages(&got)[0].header("priority"), Some("9"));
    h.node.check_invariants().unwrap();
}

#[test]
fn priority_above_nine_is_clamped_and_bad_priorities_are_refused() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/p", "low").with_header("priority", "0"));
    h.send(p, send("/queue/p", "huge").with_header("priority", "15"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/p", "auto"));
    let got = h.take(c);
    assert_eq!(bodies(&got), vec!["huge", "low"]);
    assert_eq!(messages(&got)[0].header("priority"), Some("9"));
    for bad in ["-1", "high", "4.5"] {
        let b = h.connect(10);
        h.send(b, send("/queue/p", "x").with_header("priority", bad));
        let e = error(&h.take(b)).expect("ERROR");
        assert!(e.contains("invalid priority"), "{bad}: {e}");
    }
}

#[test]
fn a_redelivered_message_goes_back_to_its_place_by_priority() {
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("/queue/r", "a").with_header("priority", "4"));
    h.send(p, send("/queue/r", "b").with_header("priority", "4"));
    let c = h.connect(2);
    h.send(
        c,
        subscribe("s", "/queue/r", "client-individual").with_header("activemq.prefetchSize", "2"),
    );
    let first = h.take(c);
    assert_eq!(bodies(&first), vec!["a", "b"]);
    let ids = ack_ids(&first);
    // Sent while the window is full: waits, then overtakes the redeliveries.
    h.send(p, send("/queue/r", "urgent").with_header("priority", "9"));
    assert!(bodies(&h.take(c)).is_empty());
    h.send(c, nack(&ids[0]));
    let second = h.take(c);
    assert_eq!(bodies(&second), vec!["urgent"]);
    h.send(c, nack(&ids[1]));
    let third = h.take(c);
    assert_eq!(bodies(&third), vec!["a"], "a before b: its old place");
    assert_eq!(messages(&third)[0].header("redelivered"), Some("true"));
    h.send(c, ack(&ack_ids(&second)[0]));
    assert_eq!(bodies(&h.take(c)), vec!["b"]);
    h.node.check_invariants().unwrap();
}

#[test]
fn replay_rebuilds_the_same_priority_order() {
    let mut h = h();
    let p = h.connect(1);
    for (i, pr) in [3u8, 8, 3, 0, 8, 5].iter().enumerate() {
        h.send(
            p,
            send("/queue/o", &format!("{pr}-{i}")).with_header("priority", pr.to_string()),
        );
    }
    let before = h.node.broker().queue_by_name("o").unwrap().ready_ids();
    let mut r = h.restart();
    assert_eq!(
        r.node.broker().queue_by_name("o").unwrap().ready_ids(),
        before
    );
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/o", "auto"));
    assert_eq!(
        bodies(&r.take(c)),
        vec!["8-1", "8-4", "5-5", "3-0", "3-2", "0-3"]
    );
}

#[test]
fn an_expired_message_is_not_delivered_and_moves_to_the_expiry_queue() {
    let mut h = h();
    let p = h.connect(1);
    let exp = T0 + 100;
    h.send(
        p,
        send("/queue/e", "old")
            .with_header("expires", exp.to_string())
            .with_header("priority", "7")
            .with_header("color", "red"),
    );
    h.send(
        p,
        send("/queue/e", "fresh").with_header("expires", (T0 + 600_000).to_string()),
    );
    h.send(p, send("/queue/e", "forever").with_header("expires", "0"));
    h.advance(500);
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/e", "auto"));
    let got = h.take(c);
    assert_eq!(bodies(&got), vec!["fresh", "forever"]);
    assert_eq!(
        messages(&got)[0].header("expires"),
        Some((T0 + 600_000).to_string().as_str())
    );
    assert_eq!(messages(&got)[1].header("expires"), Some("0"));
    // In the expiry queue, with what Artemis sets on the moved message.
    let x = h.connect(3);
    h.send(x, subscribe("x", "/queue/ExpiryQueue", "client-individual"));
    let moved = h.take(x);
    assert_eq!(bodies(&moved), vec!["old"]);
    let m = messages(&moved)[0];
    assert_eq!(m.header("destination"), Some("/queue/ExpiryQueue"));
    assert_eq!(m.header("expires"), Some("0"), "it does not expire again");
    assert_eq!(m.header("priority"), Some("7"));
    assert_eq!(m.header("_AMQ_ORIG_ADDRESS"), Some("e"));
    assert_eq!(m.header("_AMQ_ORIG_QUEUE"), Some("e"));
    assert_eq!(m.header("_AMQ_ORIG_ROUTING_TYPE"), Some("1"));
    assert_eq!(
        m.header("_AMQ_ACTUAL_EXPIRY"),
        Some(exp.to_string().as_str())
    );
    assert_eq!(m.header("original-destination"), Some("/queue/e"));
    assert_eq!(m.header("color"), Some("red"));
    h.node.check_invariants().unwrap();
    // A journaled move: the restarted node has it where it went.
    let r = h.restart();
    assert_eq!(queue_depth(&r, "e"), 0);
    assert_eq!(queue_depth(&r, "ExpiryQueue"), 1);
}

#[test]
fn the_periodic_scan_moves_expired_messages_nobody_consumes() {
    let mut h = h_with(BrokerConfig {
        expiry_batch_max: 3,
        ..BrokerConfig::default()
    });
    let p = h.connect(1);
    for i in 0..10 {
        h.send(
            p,
            send("/queue/idle", &format!("m{i}")).with_header("expires", (T0 + 1_000).to_string()),
        );
    }
    h.send(p, send("/queue/idle", "keep"));
    // The scan is due once an expiring message is held.
    assert!(h.node.next_deadline().is_some_and(|d| d <= T0 + 30_000));
    h.advance(1_000);
    // Not yet: the scan comes every expiry_scan_period_ms (30 s).
    h.advance(BrokerConfig::default().expiry_scan_period_ms);
    assert_eq!(
        queue_depth(&h, "idle"),
        1,
        "only the unexpiring one is left"
    );
    assert_eq!(queue_depth(&h, "ExpiryQueue"), 10);
    h.node.check_invariants().unwrap();
    // Moved messages never expire again: a later scan leaves them.
    h.advance(120_000);
    assert_eq!(queue_depth(&h, "ExpiryQueue"), 10);
    let r = h.restart();
    assert_eq!(queue_depth(&r, "ExpiryQueue"), 10);
    assert_eq!(queue_depth(&r, "idle"), 1);
}

#[test]
fn a_message_that_expires_while_held_is_not_redelivered() {
    let mut h = h();
    let p = h.connect(1);
    h.send(
        p,
        send("/queue/h", "soon").with_header("expires", (T0 + 1_000).to_string()),
    );
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/h", "client-individual"));
    let got = h.take(c);
    assert_eq!(bodies(&got), vec!["soon"], "not expired yet: delivered");
    h.advance(2_000);
    h.send(c, nack(&ack_ids(&got)[0]));
    assert!(bodies(&h.take(c)).is_empty(), "expired on its way back");
    assert_eq!(queue_depth(&h, "ExpiryQueue"), 1);
}

#[test]
fn non_persistent_expired_messages_move_too() {
    let mut h = h();
    let p = h.connect(1);
    h.send(
        p,
        send("/queue/v", "gone")
            .with_header("persistent", "false")
            .with_header("expires", (T0 + 10).to_string()),
    );
    h.advance(20);
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/v", "auto"));
    assert!(bodies(&h.take(c)).is_empty());
    let x = h.connect(3);
    h.send(x, subscribe("x", "/queue/ExpiryQueue", "auto"));
    assert_eq!(bodies(&h.take(x)), vec!["gone"]);
    h.node.check_invariants().unwrap();
}

#[test]
fn expiry_address_is_configurable() {
    let mut h = h_with(BrokerConfig {
        expiry_address: "expired.things".into(),
        ..BrokerConfig::default()
    });
    let p = h.connect(1);
    h.send(
        p,
        send("/queue/c", "x").with_header("expires", (T0 + 1).to_string()),
    );
    h.advance(10);
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/c", "auto"));
    assert!(bodies(&h.take(c)).is_empty());
    assert_eq!(queue_depth(&h, "expired.things"), 1);
}

#[test]
fn bad_expires_headers_are_refused() {
    let mut h = h();
    for bad in ["soon", "-5", "1.5"] {
        let b = h.connect(10);
        h.send(b, send("/queue/p", "x").with_header("expires", bad));
        let e = error(&h.take(b)).expect("ERROR");
        assert!(e.contains("invalid expires"), "{bad}: {e}");
    }
}

#[test]
fn scheduled_delay_holds_a_stored_message_until_its_time() {
    let mut h = h();
    let p = h.connect(1);
    h.send(
        p,
        send_receipt("/queue/s", "later", "r1").with_header("AMQ_SCHEDULED_DELAY", "3000"),
    );
    let f = h.take(p);
    assert!(
        f.iter().any(|f| f.command == Command::Receipt),
        "stored (journaled) at once: {f:?}"
    );
    h.send(p, send("/queue/s", "now"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/s", "auto"));
    assert_eq!(
        bodies(&h.take(c)),
        vec!["now"],
        "the undelayed one overtakes"
    );
    // The node asks to be ticked when the scheduled message is due.
    assert_eq!(h.node.next_deadline(), Some(T0 + 3_000));
    h.advance(2_999);
    assert!(bodies(&h.take(c)).is_empty());
    h.advance(1);
    let got = h.take(c);
    assert_eq!(bodies(&got), vec!["later"]);
    assert_eq!(
        messages(&got)[0].header("_AMQ_SCHED_DELIVERY"),
        Some((T0 + 3_000).to_string().as_str())
    );
    h.node.check_invariants().unwrap();
}

#[test]
fn scheduled_time_is_absolute_and_survives_a_restart() {
    let mut h = h();
    let p = h.connect(1);
    let at = T0 + 60_000;
    h.send(
        p,
        send("/queue/t", "timed").with_header("AMQ_SCHEDULED_TIME", at.to_string()),
    );
    h.send(
        p,
        send("/queue/t", "past").with_header("AMQ_SCHEDULED_TIME", (T0 - 5).to_string()),
    );
    h.send(
        p,
        send("/queue/t", "ignored").with_header("AMQ_SCHEDULED_DELAY", "-100"),
    );
    let mut r = h.restart();
    r.now = T0 + 10;
    let c = r.connect(2);
    r.send(c, subscribe("s", "/queue/t", "auto"));
    assert_eq!(bodies(&r.take(c)), vec!["past", "ignored"]);
    r.advance(at - r.now);
    assert_eq!(bodies(&r.take(c)), vec!["timed"]);
}

#[test]
fn many_scheduled_messages_are_released_in_bounded_steps() {
    let mut h = h_with(BrokerConfig {
        scheduled_release_max: 4,
        ..BrokerConfig::default()
    });
    let p = h.connect(1);
    for i in 0..10 {
        h.send(
            p,
            send("/queue/b", &format!("m{i}")).with_header("AMQ_SCHEDULED_DELAY", "100"),
        );
    }
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/b", "auto"));
    h.advance(100);
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies(&h.take(c)), want);
}
