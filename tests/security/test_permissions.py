"""Permissions over STOMP, with the PERMISSIONS rules of conftest.py: which
operation needs which permission, the most specific match deciding alone
(exact beats wildcards, more literal words beat fewer, `*` beats `#` on a
tie), durable subscriptions, and what a denial does to the connection (the
receipts owed first, then the ERROR and the close) and to the others
(nothing)."""

from __future__ import annotations

import pytest

from sec_helpers import (
    StompRaw,
    denied,
    frame,
    receive_until,
    send_expect,
    subscribe_expect,
    unsubscribe_expect,
    wait_denied,
)

OK = "receipt"

# (user, address, allowed): SEND to /queue/<address>.
SEND_CASES = [
    ("alice", "orders.eu.new", True),  # orders.# : producer
    ("alice", "orders", True),  # orders.# matches zero words after `orders`
    ("bob", "orders.eu.new", False),  # a consumer does not send
    ("eve", "orders.eu.new", False),  # no role at all
    ("alice", "orders.new", False),  # orders.* beats orders.# (a tie on literal words, fewer '#'), decides alone
    ("vic", "orders.new", True),
    ("vic", "orders.eu.new", False),  # three words: only orders.# matches
    ("vic", "orders.audit", False),  # the exact match beats orders.* and orders.#
    ("alice", "orders.audit", False),
    ("audrey", "orders.audit", True),
    ("audrey", "orders.eu.audit", False),  # not the exact address: orders.# decides
    ("alice", "orders.eu.urgent", False),  # orders.*.urgent (two literal words) beats orders.#
    ("vic", "orders.eu.urgent", True),
    ("alice", "orders.eu.urgent.now", True),  # orders.*.urgent needs exactly 3 words: orders.#
    ("admin", "payments.x", False),  # no rule matches: denied, even for the admin
    ("admin", "orders.eu.new", False),  # the admin's roles are in no rule that matches
]


@pytest.mark.parametrize("user,address,allowed", SEND_CASES, ids=[f"{u}-{a}" for u, a, _ in SEND_CASES])
def test_send_permission(secure_node, users, clients, user, address, allowed):
    c = clients(secure_node, users[user])
    got = send_expect(c, f"/queue/{address}", f"from-{user}")
    assert got == (OK if allowed else denied(user, "send", address)), got


# (user, address, allowed): SUBSCRIBE to /queue/<address>.
CONSUME_CASES = [
    ("bob", "orders.eu.c1", True),
    ("alice", "orders.eu.c1", False),
    ("vic", "orders.c2", False),  # orders.*: consumer only
    ("bob", "orders.c2", True),
    ("bob", "orders.audit", False),  # exact rule: auditor only
    ("audrey", "orders.audit", True),
    ("bob", "payments.y", False),  # no rule
]


@pytest.mark.parametrize("user,address,allowed", CONSUME_CASES, ids=[f"{u}-{a}" for u, a, _ in CONSUME_CASES])
def test_consume_permission(secure_node, users, clients, user, address, allowed):
    c = clients(secure_node, users[user])
    got = subscribe_expect(c, f"/queue/{address}", "s")
    assert got == (OK if allowed else denied(user, "consume", address)), got


def test_allowed_send_reaches_an_allowed_consumer(secure_node, users, clients):
    p = clients(secure_node, users["alice"])
    for i in range(3):
        p.send("/queue/orders.eu.flow", f"m{i}")
    c = clients(secure_node, users["bob"])
    c.subscribe("/queue/orders.eu.flow", "s")
    assert [m.body for m in c.wait_messages(3, sub="s")] == ["m0", "m1", "m2"]


def test_creating_a_queue_needs_create_address(secure_node, users, clients):
    """fixed.#: alice may send and bob consume, but only the admin creates
    addresses: a SEND or SUBSCRIBE that would create a queue is refused for
    them with create_address; on a queue that exists, they work."""
    admin, alice, bob = users["admin"], users["alice"], users["bob"]
    a = clients(secure_node, admin)
    assert send_expect(a, "/queue/fixed.q", "by-admin") == OK

    p = clients(secure_node, alice)
    assert send_expect(p, "/queue/fixed.q", "by-alice") == OK
    p2 = clients(secure_node, alice)
    assert send_expect(p2, "/queue/fixed.new", "x") == denied("alice", "create_address", "fixed.new")

    c = clients(secure_node, bob)
    assert subscribe_expect(c, "/queue/fixed.q", "s") == OK
    assert [m.body for m in c.wait_messages(2, sub="s")] == ["by-admin", "by-alice"]
    c2 = clients(secure_node, bob)
    assert subscribe_expect(c2, "/queue/fixed.other", "s") == denied("bob", "create_address", "fixed.other")

    # Nothing was created by the refused operations: the admin's SEND creates
    # fixed.new now, and bob finds only what the admin sent.
    assert send_expect(a, "/queue/fixed.new", "first") == OK
    c3 = clients(secure_node, bob)
    c3.subscribe("/queue/fixed.new", "s")
    assert [m.body for m in c3.wait_messages(1, sub="s")] == ["first"]


def test_durable_subscriptions_need_their_permissions(secure_node, users, clients):
    """news.#: bob consumes; dave also creates durable subscriptions; erin
    also deletes them. Creating one needs create_durable_queue, using an
    existing one only consume, removing one (UNSUBSCRIBE with its name)
    delete_durable_queue."""
    alice, bob, dave, erin = users["alice"], users["bob"], users["dave"], users["erin"]
    topic, name, cid = "/topic/news.sports", "feed", "news-reader"
    durable = {"durable-subscription-name": name}

    # bob cannot create it.
    b = clients(secure_node, bob, client_id=cid)
    assert subscribe_expect(b, topic, "d", **durable) == denied("bob", "create_durable_queue", "news.sports")
    # A non-durable subscription needs only consume.
    b = clients(secure_node, bob)
    assert subscribe_expect(b, topic, "v") == OK
    b.disconnect()

    # dave creates it; an UNSUBSCRIBE without its name only detaches (no
    # delete permission needed), the subscription stays.
    d = clients(secure_node, dave, client_id=cid)
    assert subscribe_expect(d, topic, "d", **durable) == OK
    assert unsubscribe_expect(d, "d") == OK
    d.disconnect()

    # Kept while nobody is attached.
    p = clients(secure_node, alice)
    p.send(topic, "while-away")

    # bob attaches to the existing one: consume is enough.
    b = clients(secure_node, bob, client_id=cid)
    assert subscribe_expect(b, topic, "d", **durable) == OK
    assert [m.body for m in b.wait_messages(1, sub="d")] == ["while-away"]
    # ...but may not remove it.
    assert unsubscribe_expect(b, "d", **durable) == denied("bob", "delete_durable_queue", "news.sports")

    # Still there: erin (consume + delete, no create) attaches and removes it.
    e = clients(secure_node, erin, client_id=cid)
    assert subscribe_expect(e, topic, "d", **durable) == OK
    assert unsubscribe_expect(e, "d", **durable) == OK
    e.disconnect()

    # Gone: attaching again would create it, which bob may not.
    b = clients(secure_node, bob, client_id=cid)
    assert subscribe_expect(b, topic, "d", **durable) == denied("bob", "create_durable_queue", "news.sports")


def test_receipts_before_a_denial_are_delivered_then_the_connection_closes(secure_node, users, clients):
    """SEND (receipt) allowed, SEND (receipt) denied, SEND (receipt) allowed,
    in one write: the first is receipted and stored, then one ERROR with the
    exact message, then the close; the third is neither receipted nor stored.
    Another client's connection is untouched."""
    alice, bob = users["alice"], users["bob"]
    dest = "/queue/orders.eu.rcpt"
    consumer = clients(secure_node, bob)
    consumer.subscribe(dest, "s")
    bystander = clients(secure_node, alice)

    s = StompRaw(secure_node.addr)
    cmd, headers, _ = s.login(alice.name, alice.password)
    assert cmd == "CONNECTED", headers
    payload = (
        frame("SEND", {"destination": dest, "receipt": "r1"}, b"before")
        + frame("SEND", {"destination": "/queue/orders.new", "receipt": "r2"}, b"denied")
        + frame("SEND", {"destination": dest, "receipt": "r3"}, b"after")
    )
    frames, closed = s.exchange(payload)
    assert [f[0] for f in frames] == ["RECEIPT", "ERROR"], frames
    assert frames[0][1].get("receipt-id") == "r1", frames[0]
    assert frames[1][1].get("message") == denied("alice", "send", "orders.new"), frames[1]
    assert closed, "the connection stayed open after the denial"

    bystander.send(dest, "sentinel")
    assert receive_until(consumer, "s", "sentinel") == ["before", "sentinel"]
    assert not consumer.rec.disconnected and not consumer.rec.errors
    assert not bystander.rec.disconnected and not bystander.rec.errors


def test_a_denial_closes_only_its_own_connection(secure_node, users, clients):
    alice, bob = users["alice"], users["bob"]
    dest = "/queue/orders.eu.others"
    c = clients(secure_node, bob)
    c.subscribe(dest, "s")
    p = clients(secure_node, alice)
    p.send(dest, "one")
    c.wait_for_body("one", sub="s")

    victim = clients(secure_node, alice)
    victim.conn.subscribe(dest, "x", ack="auto")
    wait_denied(victim, denied("alice", "consume", "orders.eu.others"))

    p.send(dest, "two")
    c.wait_for_body("two", sub="s")
    assert [m.body for m in c.messages("s")] == ["one", "two"]
    assert not c.rec.errors and not p.rec.errors and not c.rec.disconnected and not p.rec.disconnected


def test_denied_operation_on_a_topic(secure_node, users, clients):
    """The topic prefix is not part of the address: /topic/orders.new is orders.new."""
    c = clients(secure_node, users["alice"])
    assert send_expect(c, "/topic/orders.new", "x") == denied("alice", "send", "orders.new")
    c = clients(secure_node, users["alice"])
    assert subscribe_expect(c, "/topic/orders.eu.t", "t") == denied("alice", "consume", "orders.eu.t")
