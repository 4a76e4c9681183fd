//! STOMP headers by Artemis's names (issue 11, point 4), each through the
//! in-memory node: what Artemis 2.56 does with them, or a clear ERROR where
//! Halyard does not implement what a header asks for.

use halyard_core::node::NodeConfig;
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

const T0: u64 = 1_800_000_000_000;

fn h() -> Harness {
    let mut h = Harness::new(NodeConfig::default());
    h.now = T0;
    h.advance(0);
    h
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

fn error(frames: &[Frame]) -> Option<&Frame> {
    frames.iter().find(|f| f.command == Command::Error)
}

fn error_text(frames: &[Frame]) -> String {
    error(frames)
        .and_then(|f| f.header("message"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn message_frames_carry_artemis_standard_headers() {
    let mut h = h();
    let p = h.connect(1);
    h.send(
        p,
        send("/queue/std", "x")
            .with_header("priority", "6")
            .with_header("persistent", "false")
            .with_header("expires", (T0 + 60_000).to_string()),
    );
    h.send(p, send("/queue/std", "y"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/std", "auto"));
    let got = h.take(c);
    let (x, y) = (messages(&got)[0], messages(&got)[1]);
    assert_eq!(x.header("priority"), Some("6"));
    assert_eq!(x.header("persistent"), Some("false"));
    assert_eq!(
        x.header("expires"),
        Some((T0 + 60_000).to_string().as_str())
    );
    assert_eq!(x.header("redelivered"), Some("false"));
    assert_eq!(x.header("timestamp"), Some(T0.to_string().as_str()));
    // Defaults: priority 4, persistent (Halyard's default; Artemis's STOMP
    // default is non-persistent), never expires.
    assert_eq!(y.header("priority"), Some("4"));
    assert_eq!(y.header("persistent"), Some("true"));
    assert_eq!(y.header("expires"), Some("0"));
}

#[test]
fn selector_takes_only_matching_messages_and_leaves_the_rest() {
    let mut h = h();
    let c = h.connect(1);
    h.send(
        c,
        subscribe("s", "/queue/sel", "auto")
            .with_header("selector", "color = 'red' AND n > 1")
            .with_header("receipt", "r"),
    );
    assert_eq!(receipts(&h.take(c)), vec!["r"]);
    let p = h.connect(2);
    for (color, n) in [("red", "1"), ("blue", "2"), ("red", "2"), ("red", "x")] {
        // STOMP headers are strings: `n > 1` needs a number, so the
        // producer sends typed-looking text and the selector sees text.
        h.send(
            p,
            send_receipt("/queue/sel", &format!("{color} {n}"), "x")
                .with_header("color", color)
                .with_header("n", n),
        );
    }
    h.take(p);
    // Artemis compares a STOMP header as the string it is: `n > 1` is
    // false for "2" (a string never orders against a number).
    assert!(bodies(&h.take(c)).is_empty());
    h.send(
        c,
        subscribe("t", "/queue/sel2", "auto").with_header("selector", "color = 'red'"),
    );
    for color in ["red", "blue", "red"] {
        h.send(
            p,
            send_receipt("/queue/sel2", color, "y").with_header("color", color),
        );
    }
    h.take(p);
    assert_eq!(bodies(&h.take(c)), vec!["red", "red"]);
    // The blue one waits for a consumer that takes it.
    let other = h.connect(3);
    h.send(other, subscribe("u", "/queue/sel2", "auto"));
    assert_eq!(bodies(&h.take(other)), vec!["blue"]);
}

#[test]
fn a_bad_selector_is_refused_with_an_error() {
    let mut h = h();
    let c = h.connect(1);
    h.send(
        c,
        subscribe("s", "/queue/sel", "auto").with_header("selector", "color = "),
    );
    let got = h.take(c);
    assert!(
        error_text(&got).contains("selector") || error(&got).is_some(),
        "{got:?}"
    );
    assert!(error(&got).is_some(), "an ERROR frame: {got:?}");
}

#[test]
fn no_local_topic_subscriber_gets_only_other_connections_messages() {
    let mut h = h();
    let a = h.connect(1);
    let b = h.connect(2);
    h.send(
        a,
        subscribe("s", "/topic/nl", "auto").with_header("no-local", "true"),
    );
    h.send(a, send("/topic/nl", "from-a"));
    h.send(b, send("/topic/nl", "from-b"));
    assert_eq!(bodies(&h.take(a)), vec!["from-b"]);
    // Nothing of its own waits in its subscription either.
    let q = h
        .node
        .broker()
        .queues()
        .find(|q| q.address == "nl")
        .expect("subscription queue");
    assert_eq!(q.depth(), 0);
}

#[test]
fn no_local_queue_consumer_leaves_its_own_messages_for_others() {
    let mut h = h();
    let a = h.connect(1);
    let b = h.connect(2);
    h.send(
        a,
        subscribe("s", "/queue/nlq", "auto").with_header("activemq.noLocal", "true"),
    );
    h.send(a, send("/queue/nlq", "qa"));
    h.send(b, send("/queue/nlq", "qb"));
    assert_eq!(bodies(&h.take(a)), vec!["qb"]);
    h.send(b, subscribe("s", "/queue/nlq", "auto"));
    assert_eq!(bodies(&h.take(b)), vec!["qa"]);
    h.node.check_invariants().unwrap();
}

#[test]
fn prefetch_size_is_a_window_in_messages() {
    let mut h = h();
    let p = h.connect(1);
    for i in 0..5 {
        h.send(p, send("/queue/pf", &format!("m{i}")));
    }
    let c = h.connect(2);
    h.send(
        c,
        subscribe("s", "/queue/pf", "client-individual").with_header("activemq.prefetchSize", "2"),
    );
    let got = h.take(c);
    assert_eq!(bodies(&got), vec!["m0", "m1"]);
    h.send(c, ack(&ack_ids(&got)[0]));
    assert_eq!(bodies(&h.take(c)), vec!["m2"]);
    // 0 still lets one through at a time, as a zero byte window does.
    let z = h.connect(3);
    h.send(
        z,
        subscribe("z", "/queue/pf", "client").with_header("activemq.prefetchSize", "0"),
    );
    assert_eq!(bodies(&h.take(z)), vec!["m3"]);
    let e = h.connect(4);
    h.send(
        e,
        subscribe("e", "/queue/pf", "client").with_header("activemq.prefetchSize", "lots"),
    );
    assert!(error_text(&h.take(e)).contains("activemq.prefetchSize"));
}

#[test]
fn durable_subscriber_name_is_an_alias() {
    let mut h = h();
    let c = h.connect_with(1, &[("client-id", "app")]);
    h.send(
        c,
        subscribe("s", "/topic/news", "client-individual")
            .with_header("durable-subscriber-name", "reader")
            .with_header("receipt", "r"),
    );
    assert_eq!(receipts(&h.take(c)), vec!["r"]);
    h.close(c);
    let p = h.connect(2);
    h.send(p, send("/topic/news", "while-away"));
    let mut r = h.restart();
    let c = r.connect_with(3, &[("client-id", "app")]);
    r.send(
        c,
        subscribe("s", "/topic/news", "client-individual")
            .with_header("durable-subscriber-name", "reader"),
    );
    assert_eq!(bodies(&r.take(c)), vec!["while-away"]);
}

#[test]
fn subscription_type_multicast_on_a_bare_name() {
    let mut h = h();
    let a = h.connect(1);
    let b = h.connect(2);
    for c in [a, b] {
        h.send(
            c,
            subscribe("s", "bare", "auto").with_header("subscription-type", "MULTICAST"),
        );
    }
    let p = h.connect(3);
    h.send(
        p,
        send_receipt("bare", "hello", "r").with_header("destination-type", "MULTICAST"),
    );
    assert_eq!(receipts(&h.take(p)), vec!["r"]);
    assert_eq!(bodies(&h.take(a)), vec!["hello"]);
    assert_eq!(bodies(&h.take(b)), vec!["hello"]);
    // A bare SEND now follows the address's routing.
    h.send(p, send("bare", "again"));
    assert_eq!(bodies(&h.take(a)), vec!["again"]);
    assert_eq!(bodies(&h.take(b)), vec!["again"]);
    let e = h.connect(4);
    h.send(
        e,
        subscribe("s", "x", "auto").with_header("subscription-type", "BOTH"),
    );
    assert!(error_text(&h.take(e)).contains("BOTH"));
}

#[test]
fn multicast_send_to_a_new_name_creates_a_multicast_address() {
    let mut h = h();
    let p = h.connect(1);
    h.send(
        p,
        send_receipt("fresh", "nobody-listening", "r").with_header("destination-type", "MULTICAST"),
    );
    assert_eq!(receipts(&h.take(p)), vec!["r"]);
    // The address is there, multicast, and survives a restart (journaled).
    let mut h = h.restart();
    h.now = T0;
    let c = h.connect(2);
    h.send(c, subscribe("s", "fresh", "auto"));
    assert!(
        bodies(&h.take(c)).is_empty(),
        "a later subscriber is not retroactive"
    );
    let p = h.connect(3);
    h.send(p, send("fresh", "kept"));
    assert_eq!(bodies(&h.take(c)), vec!["kept"]);
    assert!(h
        .node
        .broker()
        .queues()
        .all(|q| q.routing == halyard_core::journal::Routing::Multicast));
}

#[test]
fn a_bare_name_send_without_subscribers_keeps_the_message() {
    // Artemis's default address routing is MULTICAST, so there this
    // message is dropped; Halyard's bare names default to ANYCAST
    // (DestinationConfig::default_routing) and keep it for a consumer.
    let mut h = h();
    let p = h.connect(1);
    h.send(p, send("plain", "kept"));
    let c = h.connect(2);
    h.send(c, subscribe("s", "plain", "auto"));
    assert_eq!(bodies(&h.take(c)), vec!["kept"]);
}

#[test]
fn unsupported_version_error_carries_the_version_header() {
    let mut h = h();
    let c = h.open(9);
    h.send_raw(c, b"CONNECT\naccept-version:2.0\nhost:x\n\n\0");
    let got = h.take(c);
    let e = error(&got).expect("ERROR");
    assert_eq!(e.header("version"), Some("1.0,1.1,1.2"));
    assert!(e.header("message").unwrap().contains("1.0,1.1,1.2"));
    assert!(h.closed.contains(&c));
}

#[test]
fn headers_that_would_change_delivery_and_are_not_implemented_are_refused() {
    let cases: [(&str, Frame, &str); 7] = [
        (
            "group",
            send("/queue/g", "x").with_header("JMSXGroupID", "g1"),
            "message groups",
        ),
        (
            "group-core",
            send("/queue/g", "x").with_header("_AMQ_GROUP_ID", "g1"),
            "message groups",
        ),
        (
            "repeat",
            send("/queue/g", "x").with_header("AMQ_SCHEDULED_REPEAT", "3"),
            "repeated scheduled delivery",
        ),
        (
            "exclusive",
            subscribe("s", "/queue/g", "auto").with_header("activemq.exclusive", "true"),
            "exclusive consumers",
        ),
        (
            "retroactive",
            subscribe("s", "/topic/g", "auto").with_header("activemq.retroactive", "true"),
            "retroactive",
        ),
        (
            "fqqn",
            subscribe("s", "/queue/g::mine", "auto"),
            "address::queue",
        ),
        (
            "no-local garbage",
            subscribe("s", "/queue/g", "auto").with_header("no-local", "maybe"),
            "no-local",
        ),
    ];
    let mut h = h();
    for (i, (what, frame, why)) in cases.into_iter().enumerate() {
        let c = h.connect(100 + i as u64);
        h.send(c, frame.with_header("receipt", "r"));
        let got = h.take(c);
        let e = error(&got).unwrap_or_else(|| panic!("{what}: no ERROR in {got:?}"));
        let text = e.header("message").unwrap_or_default();
        assert!(text.contains(why), "{what}: {text}");
        assert_eq!(e.header("receipt-id"), Some("r"), "{what}");
        assert!(receipts(&got).is_empty(), "{what}: accepted");
    }
}

#[test]
fn scheduled_delivery_property_header_schedules_too() {
    let mut h = h();
    let p = h.connect(1);
    h.send(
        p,
        send("/queue/sp", "x").with_header("_AMQ_SCHED_DELIVERY", (T0 + 500).to_string()),
    );
    let c = h.connect(2);
    h.send(c, subscribe("s", "/queue/sp", "auto"));
    assert!(bodies(&h.take(c)).is_empty());
    h.advance(500);
    assert_eq!(bodies(&h.take(c)), vec!["x"]);
}
