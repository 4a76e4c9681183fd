//! Users, permissions and connection limits through the sans-IO node in
//! memory: STOMP logins (the password verified through the driver's
//! `CheckPassword`), permission checks per operation with the most
//! specific match deciding, answers owed before a refusal still given.

use std::sync::Arc;

use halyard_core::node::{ConnEvent, Input, NodeConfig};
use halyard_core::protocol::stomp::{Command, Frame};
use halyard_core::security::{self, password};
use halyard_core::testkit::frames::*;
use halyard_core::testkit::Harness;

fn security_file() -> String {
    let h = password::hash(b"secret", &[9; password::SALT_BYTES]);
    format!(
        r#"
[users.alice]
password = "{h}"
roles = ["producer"]

[users.bob]
password = "{h}"
roles = ["consumer"]

[[permissions]]
match = "orders.#"
send = ["producer"]
consume = ["consumer"]
create_address = ["producer", "consumer"]
create_durable_queue = ["consumer"]

[[permissions]]
match = "orders.secret"
consume = []
"#
    )
}

fn node() -> Harness {
    Harness::new(NodeConfig {
        security: Some(Arc::new(security::parse(&security_file()).unwrap())),
        ..NodeConfig::default()
    })
}

fn login(user: &str, pass: &str) -> Vec<(&'static str, String)> {
    vec![("login", user.to_string()), ("passcode", pass.to_string())]
}

/// Opens `conn` and sends CONNECT with `headers`; the frames it got back.
fn try_connect(h: &mut Harness, conn: u64, headers: &[(&'static str, String)]) -> Vec<Frame> {
    let id = h.open(conn);
    let mut f = Frame::new(Command::Connect).with_header("accept-version", "1.2");
    for (k, v) in headers {
        f.push_header(k, v.as_str());
    }
    h.send(id, f);
    h.take(id)
}

fn error_message(frames: &[Frame]) -> String {
    frames
        .iter()
        .find(|f| f.command == Command::Error)
        .and_then(|f| f.header("message"))
        .unwrap_or_else(|| panic!("no ERROR in {frames:?}"))
        .to_string()
}

#[test]
fn logins_are_checked() {
    let mut h = node();
    let got = try_connect(&mut h, 1, &login("alice", "secret"));
    assert_eq!(got[0].command, Command::Connected, "{got:?}");

    for (conn, headers) in [
        (2, login("alice", "wrong")),
        (3, login("mallory", "secret")),
        (4, vec![]),
    ] {
        let got = try_connect(&mut h, conn, &headers);
        assert!(
            got.iter().all(|f| f.command != Command::Connected),
            "{got:?}"
        );
        assert!(error_message(&got).starts_with("login refused"), "{got:?}");
        assert!(h.closed.contains(&halyard_core::ids::ConnId(conn)));
    }
    // Missing credentials are refused without a check; the two bad ones count.
    assert_eq!(h.node.stats(10).counters.login_failures, 2);
}

#[test]
fn frames_sent_before_the_login_is_answered_wait_for_it() {
    let mut h = node();
    h.hold_journal = false;
    let id = h.open(1);
    let connect = Frame::new(Command::Connect)
        .with_header("accept-version", "1.2")
        .with_header("login", "alice")
        .with_header("passcode", "secret");
    let mut bytes = halyard_core::protocol::stomp::encode_to_bytes(
        &connect,
        halyard_core::protocol::stomp::Version::V1_2,
    )
    .to_vec();
    bytes.extend_from_slice(&halyard_core::protocol::stomp::encode_to_bytes(
        &send_receipt("/queue/orders.new", "m", "r1"),
        halyard_core::protocol::stomp::Version::V1_2,
    ));
    h.send_raw(id, &bytes);
    let got = h.take(id);
    let commands: Vec<Command> = got.iter().map(|f| f.command).collect();
    assert_eq!(
        commands,
        vec![Command::Connected, Command::Receipt],
        "{got:?}"
    );
}

#[test]
fn permissions_most_specific_match_wins_and_earlier_receipts_are_kept() {
    let mut h = node();
    let got = try_connect(&mut h, 1, &login("alice", "secret"));
    assert_eq!(got[0].command, Command::Connected);
    let alice = halyard_core::ids::ConnId(1);
    h.send(alice, send_receipt("/queue/orders.new", "kept", "r1"));
    h.send(alice, send_receipt("/queue/prices", "refused", "r2"));
    let got = h.take(alice);
    assert_eq!(got[0].command, Command::Receipt, "{got:?}");
    assert_eq!(got[0].header("receipt-id"), Some("r1"));
    assert_eq!(
        error_message(&got),
        r#"user "alice" may not send to address "prices" (permission send)"#
    );
    assert!(h.closed.contains(&alice));

    // bob consumes orders.new (orders.#) but not orders.secret (exact, no roles).
    let got = try_connect(&mut h, 2, &login("bob", "secret"));
    assert_eq!(got[0].command, Command::Connected);
    let bob = halyard_core::ids::ConnId(2);
    h.send(bob, subscribe("s1", "/queue/orders.new", "auto"));
    let got = h.take(bob);
    let m = got
        .iter()
        .find(|f| f.command == Command::Message)
        .expect("the kept message");
    assert_eq!(body(m), "kept");
    h.send(bob, subscribe("s2", "/queue/orders.secret", "auto"));
    let got = h.take(bob);
    assert_eq!(
        error_message(&got),
        r#"user "bob" may not consume from address "orders.secret" (permission consume)"#
    );
    // bob may not send.
    let got = try_connect(&mut h, 3, &login("bob", "secret"));
    assert_eq!(got[0].command, Command::Connected);
    let bob2 = halyard_core::ids::ConnId(3);
    h.send(bob2, send_receipt("/queue/orders.new", "x", "r"));
    assert!(error_message(&h.take(bob2)).contains("(permission send)"));
    assert_eq!(h.node.stats(10).counters.authorization_denied, 3);
}

#[test]
fn durable_subscriptions_need_their_permissions() {
    let mut h = node();
    // alice may consume nothing, so no durable subscription either.
    let mut hdr = login("alice", "secret");
    hdr.push(("client-id", "c1".into()));
    try_connect(&mut h, 1, &hdr);
    let alice = halyard_core::ids::ConnId(1);
    let mut sub = subscribe("d", "/topic/orders.events", "client");
    sub.push_header("durable-subscription-name", "audit");
    h.send(alice, sub.clone());
    assert!(error_message(&h.take(alice)).contains("(permission consume)"));

    let mut hdr = login("bob", "secret");
    hdr.push(("client-id", "c2".into()));
    try_connect(&mut h, 2, &hdr);
    let bob = halyard_core::ids::ConnId(2);
    h.send(bob, sub.with_header("receipt", "ok"));
    let got = h.take(bob);
    assert!(got.iter().any(|f| f.command == Command::Receipt), "{got:?}");
    // Deleting it needs delete_durable_queue, which bob lacks.
    h.send(
        bob,
        Frame::new(Command::Unsubscribe)
            .with_header("id", "d")
            .with_header("durable-subscription-name", "audit"),
    );
    assert!(error_message(&h.take(bob)).contains("(permission delete_durable_queue)"));
}

#[test]
fn connection_limits_refuse_in_the_protocol() {
    let mut h = Harness::new(NodeConfig {
        connections_max: 3,
        pending_connections_max: 1,
        ..NodeConfig::default()
    });
    let a = h.connect(1); // established
    let _pending = h.open(2); // no CONNECT yet
                              // A third while one is pending: the pending limit (1) refuses it.
    let got = try_connect(&mut h, 3, &[]);
    assert!(
        error_message(&got).starts_with("too many connections waiting to log in"),
        "{got:?}"
    );
    h.close(a);
    h.input(Input::Conn(ConnEvent::Closed {
        conn: halyard_core::ids::ConnId(2),
    }));
    let b = h.connect(4);
    let _c = h.connect(5);
    let _d = h.connect(6);
    let got = try_connect(&mut h, 7, &[]);
    assert!(
        error_message(&got).starts_with("too many connections (limit 3)"),
        "{got:?}"
    );
    // Those already in are unaffected.
    h.send(b, send_receipt("/queue/q", "m", "r"));
    assert_eq!(h.take(b)[0].command, Command::Receipt);
}
