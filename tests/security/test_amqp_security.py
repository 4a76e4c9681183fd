"""AMQP 1.0 with a security file, with python-qpid-proton (tests/amqp's
engine client pumped by the test, and frames by hand): SASL PLAIN only,
a bad password refused with sasl-outcome `auth`, a client skipping SASL
refused, sender/receiver attaches and anonymous-relay messages refused with
`amqp:unauthorized-access` while the connection stays open, QueueBrowsers
needing `browse`."""

from __future__ import annotations

import pytest
from proton import Delivery, Endpoint, Message, byte, symbol

from amqp_raw import AMQP_HEADER, SASL_HEADER, SASL_INIT, PeerClosed, RawAmqp, as_list, frame, performative

from sec_helpers import amqp_client, amqp_closed_condition, open_link, wait_attached, wait_refused

UNAUTHORIZED = "amqp:unauthorized-access"
# Qpid JMS's annotation for a message on the anonymous relay: 0 = a queue.
JMS_DEST = symbol("x-opt-jms-dest")


def offered_mechanisms(addr) -> list[str]:
    raw = RawAmqp(addr[0], addr[1])
    try:
        raw.send(SASL_HEADER)
        h = raw.expect("header")
        assert h.header == SASL_HEADER, f"answered the SASL header with {h.header!r}"
        return [str(m) for m in as_list(raw.expect("sasl-mechanisms").field(0))]
    finally:
        raw.close()


def test_only_plain_is_offered_with_a_security_file(secure_node):
    assert offered_mechanisms(secure_node.addr) == ["PLAIN"]


def test_anonymous_and_plain_are_offered_without_one(nodes):
    n = nodes("open").start()
    assert sorted(offered_mechanisms(n.addr)) == ["ANONYMOUS", "PLAIN"]


@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_bad_plain_credentials_get_outcome_auth(secure_node, users, who):
    alice = users["alice"]
    user, password = (alice.name, "not-" + alice.password) if who == "wrong-password" else ("mallory", "x")
    raw = RawAmqp(secure_node.addr[0], secure_node.addr[1])
    try:
        raw.send(SASL_HEADER)
        raw.expect("header")
        raw.expect("sasl-mechanisms")
        resp = b"\x00" + user.encode() + b"\x00" + password.encode()
        raw.send(frame(performative(SASL_INIT, [symbol("PLAIN"), resp, "localhost"]), frame_type=1))
        outcome = raw.expect("sasl-outcome")
        assert int(outcome.field(0)) == 1, f"sasl-outcome code {outcome.fields!r}, want 1 (auth)"
        # Nothing more than the outcome: no AMQP header, no open.
        info = raw.wait_closed(10.0)
        assert info.eof, f"the connection stayed open after the failed SASL exchange: {[f.name for f in info.frames]}"
        assert all(f.frame_type != 0 for f in info.frames), [f.name for f in info.frames]
    finally:
        raw.close()


def test_proton_reports_the_failed_login(secure_node, users):
    alice = users["alice"]
    c = amqp_client(secure_node.addr, alice.name, "not-" + alice.password)
    names = amqp_closed_condition(c)
    assert UNAUTHORIZED in names, f"proton saw {names}, want {UNAUTHORIZED}"
    assert not c.conn.state & Endpoint.REMOTE_ACTIVE, "the connection was opened"


def test_failed_amqp_login_is_logged_without_the_password(secure_node, users):
    pos = secure_node.log_pos()
    bob = users["bob"]
    wrong = "amqp-wrong-" + bob.password
    c = amqp_client(secure_node.addr, bob.name, wrong)
    amqp_closed_condition(c)
    secure_node.wait_log(r"login refused.*\bbob\b|\bbob\b.*login refused", since=pos)
    text = secure_node.log_text()
    assert wrong not in text and bob.password not in text, f"a password is in {secure_node.log_path}"


def test_a_client_skipping_sasl_is_refused(secure_node):
    """The AMQP header without SASL first: never an open, and the connection ends."""
    raw = RawAmqp(secure_node.addr[0], secure_node.addr[1])
    try:
        raw.send(AMQP_HEADER)
        got = []
        while True:
            try:
                got.append(raw.read_frame(10.0))
            except PeerClosed:
                break
            except TimeoutError:
                raise AssertionError(f"the connection stayed open without SASL; got {[f.name for f in got]}")
        assert "open" not in [f.name for f in got], [f.name for f in got]
        headers = [f.header for f in got if f.frame_type == -1]
        assert AMQP_HEADER not in headers, f"the server agreed to AMQP without SASL: {headers}"
    finally:
        raw.close()


def test_plain_login_sends_and_receives(secure_node, users, amqp_clients):
    p = amqp_clients(secure_node.addr, users["alice"])
    s = wait_attached(p, open_link(p, "sender", "orders.eu.amqp"))
    ds = p.send_all(s, [Message(body=f"a{i}", durable=True) for i in range(3)])
    assert [d.remote_state for d in ds] == [Delivery.ACCEPTED] * 3
    c = amqp_clients(secure_node.addr, users["bob"])
    r = wait_attached(c, open_link(c, "receiver", "orders.eu.amqp"))
    r.flow(10)
    assert [m.body for m, _ in c.receive(r, 3)] == ["a0", "a1", "a2"]


def test_sender_attach_without_send_is_refused(secure_node, users, amqp_clients):
    c = amqp_clients(secure_node.addr, users["alice"])
    desc = wait_refused(c, open_link(c, "sender", "orders.new"))  # orders.*: vip only
    print(f"\ndetach description: {desc!r}")
    # The connection works on: an allowed sender on it.
    s = wait_attached(c, open_link(c, "sender", "orders.eu.after-refusal"))
    assert s.remote_target.address == "orders.eu.after-refusal"
    ds = c.send_all(s, [Message(body="still-here")])
    assert ds[0].remote_state == Delivery.ACCEPTED


def test_receiver_attach_without_consume_is_refused(secure_node, users, amqp_clients):
    p = amqp_clients(secure_node.addr, users["alice"])
    p.send_all(wait_attached(p, open_link(p, "sender", "orders.eu.rcv")), [Message(body="kept")])
    desc = wait_refused(p, open_link(p, "receiver", "orders.eu.rcv"))
    print(f"\ndetach description: {desc!r}")
    # Same connection, allowed link; the message is still there for bob.
    s = wait_attached(p, open_link(p, "sender", "orders.eu.rcv"))
    assert p.send_all(s, [Message(body="after")])[0].remote_state == Delivery.ACCEPTED
    c = amqp_clients(secure_node.addr, users["bob"])
    r = wait_attached(c, open_link(c, "receiver", "orders.eu.rcv"))
    r.flow(10)
    assert [m.body for m, _ in c.receive(r, 2)] == ["kept", "after"]


def test_anonymous_relay_rejects_a_forbidden_address(secure_node, users, amqp_clients):
    c = amqp_clients(secure_node.addr, users["alice"])
    relay = wait_attached(c, open_link(c, "sender", None, capability=None))
    ann = {JMS_DEST: byte(0)}
    ok, bad, ok2 = c.send_all(relay, [
        Message(address="orders.eu.relay", body="allowed", annotations=ann),
        Message(address="orders.new", body="forbidden", annotations=ann),
        Message(address="orders.eu.relay", body="allowed-too", annotations=ann),
    ])
    assert ok.remote_state == Delivery.ACCEPTED and ok2.remote_state == Delivery.ACCEPTED, (
        ok.remote_state, ok2.remote_state)
    assert bad.remote_state == Delivery.REJECTED, bad.remote_state
    cond = bad.remote.condition
    assert cond is not None and cond.name == UNAUTHORIZED, f"rejected with {cond}"
    # Link and connection stay open.
    assert relay.state & Endpoint.REMOTE_ACTIVE and not relay.state & Endpoint.REMOTE_CLOSED
    assert c.conn.state & Endpoint.REMOTE_ACTIVE and not c.conn.state & Endpoint.REMOTE_CLOSED
    # Nothing reached orders.new; the two allowed ones reached orders.eu.relay.
    p = amqp_clients(secure_node.addr, users["vic"])
    p.send_all(wait_attached(p, open_link(p, "sender", "orders.new")), [Message(body="sentinel")])
    b = amqp_clients(secure_node.addr, users["bob"])
    rn = wait_attached(b, open_link(b, "receiver", "orders.new"))
    rn.flow(10)
    assert [m.body for m, _ in b.receive(rn, 1)] == ["sentinel"]
    rr = wait_attached(b, open_link(b, "receiver", "orders.eu.relay"))
    rr.flow(10)
    assert [m.body for m, _ in b.receive(rr, 2)] == ["allowed", "allowed-too"]


def test_queue_browser_needs_browse(secure_node, users, amqp_clients):
    """pete may only browse orders.#: his browser sees the message and leaves
    it; his consumer is refused; eve's browser is refused; bob consumes it."""
    p = amqp_clients(secure_node.addr, users["alice"])
    p.send_all(wait_attached(p, open_link(p, "sender", "orders.eu.browse")), [Message(body="look")])

    pete = amqp_clients(secure_node.addr, users["pete"])
    b = wait_attached(pete, open_link(pete, "receiver", "orders.eu.browse", browse=True))
    b.flow(10)
    # A browser's delivery is a copy: no outcome to give it.
    assert [m.body for m, _ in pete.receive(b, 1, outcome=None)] == ["look"]
    wait_refused(pete, open_link(pete, "receiver", "orders.eu.browse"))

    eve = amqp_clients(secure_node.addr, users["eve"])
    wait_refused(eve, open_link(eve, "receiver", "orders.eu.browse", browse=True))

    bob = amqp_clients(secure_node.addr, users["bob"])
    r = wait_attached(bob, open_link(bob, "receiver", "orders.eu.browse"))
    r.flow(10)
    assert [m.body for m, _ in bob.receive(r, 1)] == ["look"], "the browser took the message"
