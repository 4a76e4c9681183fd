"""STOMP semantics end to end with stomp.py: ack modes, NACK and
redelivery, dead-lettering, queues vs topics, subscription lifetimes,
non-persistent messages and transactions.

"Nothing more arrives" is shown without sleeping: a sentinel message is sent
after the ones under test and, since a queue or subscription is FIFO, its
arrival proves that everything before it has been delivered.
"""

from __future__ import annotations

import threading

import pytest


def bodies(msgs) -> list[str]:
    return [m.body for m in msgs]


def send_all(client, dest: str, names: list[str], **headers) -> None:
    for name in names:
        client.send(dest, name, **headers)


def receive_until_sentinel(client, dest: str, sub_id: str, sender, ack: str = "auto", **sub_headers):
    """Subscribes, sends a sentinel behind whatever is stored and returns the
    bodies delivered before it."""
    client.subscribe(dest, sub_id, ack=ack, **sub_headers)
    sentinel = f"sentinel-{sub_id}"
    sender.send(dest, sentinel)
    client.wait_for_body(sentinel, sub=sub_id)
    got = bodies(client.messages(sub_id))
    return got[: got.index(sentinel)]


@pytest.mark.parametrize("ack", ["auto", "client", "client-individual"])
def test_ack_mode_delivers_all_with_headers(node, clients, ack):
    dest = f"/queue/ackmode-{ack}"
    p = clients(node)
    names = [f"m{i}" for i in range(20)]
    send_all(p, dest, names)
    c = clients(node)
    c.subscribe(dest, "s1", ack=ack)
    msgs = c.wait_messages(20, sub="s1")
    assert bodies(msgs) == names, "queue order not kept"
    for m in msgs:
        h = m.headers
        assert h["destination"] == dest
        assert h["subscription"] == "s1"
        assert h["message-id"]
        # Artemis writes redelivered:false on a first delivery; so do we.
        assert h["redelivered"] == "false"
        assert h["delivery-count"] == "1"
        if ack == "auto":
            assert "ack" not in h, "auto mode MESSAGE must not carry an ack header"
        else:
            assert h["ack"], "client modes need an ack header"
    assert len({m.headers["message-id"] for m in msgs}) == 20, "message-ids are not unique"
    if ack == "client":
        c.ack(msgs[-1])  # cumulative: one ACK settles all 20
    elif ack == "client-individual":
        for m in msgs:
            c.ack(m)
    c.disconnect()
    # Whatever was settled must not come back to a new consumer.
    c2 = clients(node)
    assert receive_until_sentinel(c2, dest, "s2", p) == []


def test_auto_ack_unacked_not_needed(node, clients):
    """Auto-acknowledged messages are gone once delivered, even though the
    consumer never sends an ACK and then disconnects."""
    dest = "/queue/auto-gone"
    p = clients(node)
    send_all(p, dest, ["a", "b", "c"])
    c = clients(node)
    c.subscribe(dest, "s", ack="auto")
    assert bodies(c.wait_messages(3, sub="s")) == ["a", "b", "c"]
    c.disconnect()
    c2 = clients(node)
    assert receive_until_sentinel(c2, dest, "s2", p) == []


def test_client_ack_is_cumulative(node, clients):
    dest = "/queue/client-cumulative"
    p = clients(node)
    names = [f"m{i}" for i in range(10)]
    send_all(p, dest, names)
    c = clients(node)
    c.subscribe(dest, "s", ack="client")
    msgs = c.wait_messages(10, sub="s")
    c.ack(msgs[5])  # settles m0..m5, not m6..m9
    c.disconnect()  # the unacked ones go back to the queue

    c2 = clients(node)
    c2.subscribe(dest, "s2", ack="client")
    back = c2.wait_messages(4, sub="s2")
    assert bodies(back) == ["m6", "m7", "m8", "m9"]
    for m in back:
        assert m.headers.get("redelivered") == "true", m.headers
        assert m.headers["delivery-count"] == "2", m.headers
    c2.ack(back[-1])
    c2.disconnect()
    c3 = clients(node)
    assert receive_until_sentinel(c3, dest, "s3", p) == []


def test_client_individual_ack_settles_only_that_message(node, clients):
    dest = "/queue/client-individual"
    p = clients(node)
    names = [f"m{i}" for i in range(10)]
    send_all(p, dest, names)
    c = clients(node)
    c.subscribe(dest, "s", ack="client-individual")
    msgs = c.wait_messages(10, sub="s")
    for m in msgs[1::2]:  # m1, m3, ...
        c.ack(m)
    c.disconnect()

    c2 = clients(node)
    c2.subscribe(dest, "s2", ack="client-individual")
    back = c2.wait_messages(5, sub="s2")
    assert bodies(back) == ["m0", "m2", "m4", "m6", "m8"]
    assert all(m.headers.get("redelivered") == "true" for m in back)
    for m in back:
        c2.ack(m)
    c2.disconnect()
    c3 = clients(node)
    assert receive_until_sentinel(c3, dest, "s3", p) == []


def test_ack_of_unknown_id_is_an_error(node, clients):
    c = clients(node)
    c.conn.ack("no-such-ack-id")
    c.rec.wait(lambda: bool(c.rec.errors), what="ERROR frame")
    assert "unknown ack id" in c.rec.errors[0].headers["message"]


def test_nack_redelivers_with_redelivered_flag(node, clients):
    dest = "/queue/nack"
    p = clients(node)
    p.send(dest, "once")
    c = clients(node)
    c.subscribe(dest, "s", ack="client-individual")
    first = c.wait_messages(1, sub="s")[0]
    assert first.headers["redelivered"] == "false"
    assert first.headers["delivery-count"] == "1"
    c.nack(first)
    second = c.wait_messages(2, sub="s")[1]
    assert second.body == "once"
    assert second.headers["message-id"] == first.headers["message-id"]
    assert second.headers["redelivered"] == "true"
    assert second.headers["delivery-count"] == "2"
    assert second.headers["ack"] != first.headers["ack"], "a redelivery needs a fresh ack id"
    c.ack(second)
    c.disconnect()
    c2 = clients(node)
    assert receive_until_sentinel(c2, dest, "s2", p) == []


def test_dead_letter_after_max_delivery_attempts(node, clients):
    dest = "/queue/poison"
    p = clients(node)
    p.send(dest, "poison", kind="poison")
    p.send(dest, "healthy")  # behind the poison message; must not be stuck
    c = clients(node)
    c.subscribe(dest, "s", ack="client-individual")

    def poison():
        return [m for m in c.messages("s") if m.body == "poison"]

    counts = []
    for attempt in range(1, 11):
        c.rec.wait(lambda: len(poison()) >= attempt, what=f"poison delivery {attempt}")
        m = poison()[attempt - 1]
        counts.append(int(m.headers["delivery-count"]))
        c.nack(m)
    assert counts == list(range(1, 11)), f"delivery-count sequence {counts}"
    healthy = c.wait_for_body("healthy", sub="s")
    c.ack(healthy)

    d = clients(node)
    d.subscribe("/queue/DLQ", "dlq", ack="client-individual")
    dead = d.wait_messages(1, sub="dlq")[0]
    assert dead.body == "poison"
    assert dead.headers["kind"] == "poison", "user headers lost on the way to the DLQ"
    assert dead.headers["destination"] == "/queue/DLQ"
    assert dead.headers.get("original-destination") == dest, dead.headers
    d.ack(dead)
    # No eleventh delivery on the original queue.
    c.disconnect()
    c2 = clients(node)
    assert receive_until_sentinel(c2, dest, "s2", p) == []
    assert len(poison()) == 10


def test_queue_competing_consumers_share_messages(node, clients):
    dest = "/queue/compete"
    cv = threading.Condition()  # shared, to wait on both consumers at once
    a, b = clients(node, cv=cv), clients(node, cv=cv)
    a.subscribe(dest, "a")
    b.subscribe(dest, "b")
    p = clients(node)
    names = [f"m{i}" for i in range(100)]
    for n in names:
        p.conn.send(dest, n)
    p.send(dest, "last-a")  # receipt: everything before is in the queue
    p.send(dest, "last-b")
    a.rec.wait(lambda: len(a.messages()) + len(b.messages()) >= 102, what="102 deliveries in total")
    got_a, got_b = bodies(a.messages()), bodies(b.messages())
    print(f"\n[competing consumers] a={len(got_a)} b={len(got_b)}")
    assert sorted(got_a + got_b) == sorted(names + ["last-a", "last-b"]), "lost or duplicated"
    assert not set(got_a) & set(got_b), "a queue message went to two consumers"
    assert got_a and got_b, "one consumer got nothing: no load sharing"
    # Each consumer sees its share in send order.
    order = {n: i for i, n in enumerate(names + ["last-a", "last-b"])}
    assert got_a == sorted(got_a, key=order.get)
    assert got_b == sorted(got_b, key=order.get)


def test_topic_fans_out_to_every_subscriber(node, clients):
    dest = "/topic/fanout"
    subs = [clients(node) for _ in range(3)]
    for i, s in enumerate(subs):
        s.subscribe(dest, f"t{i}")
    p = clients(node)
    names = [f"m{i}" for i in range(50)]
    send_all(p, dest, names)
    for i, s in enumerate(subs):
        assert bodies(s.wait_messages(50, sub=f"t{i}")) == names
        assert all(m.headers["destination"] == dest for m in s.messages())


def test_topic_message_without_subscribers_is_dropped(node, clients):
    dest = "/topic/nobody"
    p = clients(node)
    p.send(dest, "into the void")
    s = clients(node)
    assert receive_until_sentinel(s, dest, "late", p) == []


def test_non_durable_topic_subscription_ends_with_connection(node, clients):
    dest = "/topic/volatile"
    p = clients(node)
    s = clients(node)
    s.subscribe(dest, "v", ack="client-individual")
    p.send(dest, "while-connected")
    live = s.wait_messages(1, sub="v")[0]
    assert live.body == "while-connected"
    s.disconnect()  # unacked, but the subscription goes with the connection
    p.send(dest, "while-away")

    s2 = clients(node)
    assert receive_until_sentinel(s2, dest, "v", p) == [], (
        "a non-durable subscription outlived its connection"
    )


def test_durable_topic_subscription_keeps_messages_while_away(node, clients):
    dest = "/topic/durable-sem"
    hdr = {"durable-subscription-name": "keep"}
    s = clients(node, client_id="sem-client")
    s.subscribe(dest, "d", **hdr)
    s.disconnect()
    p = clients(node)
    send_all(p, dest, ["x1", "x2", "x3"])
    s2 = clients(node, client_id="sem-client")
    assert receive_until_sentinel(s2, dest, "d", p, **hdr) == ["x1", "x2", "x3"]


def test_non_persistent_message_does_not_survive_restart(node, clients):
    dest = "/queue/np"
    p = clients(node)
    p.send(dest, "np-before", persistent="false")
    c = clients(node)
    c.subscribe(dest, "s")
    assert c.wait_messages(1, sub="s")[0].body == "np-before", "non-persistent send not delivered"
    c.disconnect()

    p.send(dest, "np-1", persistent="false")
    p.send(dest, "p-1")
    p.send(dest, "np-2", persistent="false")
    p.send(dest, "p-2", persistent="true")
    node.terminate()
    node.restart()
    p2 = clients(node)
    c2 = clients(node)
    assert receive_until_sentinel(c2, dest, "s2", p2) == ["p-1", "p-2"]


def test_transaction_commit_delivers_only_at_commit(node, clients):
    dest = "/queue/tx-commit"
    c = clients(node)
    c.subscribe(dest, "s")
    p = clients(node)
    p.conn.begin(transaction="t1")
    for i in range(5):
        p.conn.send(dest, f"tx{i}", transaction="t1")
    p.send(dest, "outside")  # not part of the transaction
    c.wait_for_body("outside", sub="s")
    assert bodies(c.messages("s")) == ["outside"], "transactional sends visible before COMMIT"
    rid = p.rid("commit")
    p.conn.commit(transaction="t1", receipt=rid)
    p.wait_receipt(rid)
    msgs = c.wait_messages(6, sub="s")
    assert bodies(msgs) == ["outside"] + [f"tx{i}" for i in range(5)]


def test_transaction_abort_discards_sends_and_returns_acks(node, clients):
    dest = "/queue/tx-abort"
    p = clients(node)
    p.send(dest, "to-be-acked")
    c = clients(node)
    c.subscribe(dest, "s", ack="client-individual")
    m = c.wait_messages(1, sub="s")[0]

    c.conn.begin(transaction="t2")
    c.ack(m, transaction="t2")
    for i in range(3):
        c.conn.send(dest, f"aborted{i}", transaction="t2")
    rid = c.rid("abort")
    c.conn.abort(transaction="t2", receipt=rid)
    c.wait_receipt(rid)

    # The rolled-back ACK hands the message back (redelivered); the aborted
    # sends never reach the queue.
    p.send(dest, "after-abort")
    c.wait_for_body("after-abort", sub="s")
    got = c.messages("s")
    assert bodies(got) == ["to-be-acked", "to-be-acked", "after-abort"], bodies(got)
    assert got[1].headers.get("redelivered") == "true"
    for x in got[1:]:
        c.ack(x)
    c.disconnect()
    c2 = clients(node)
    assert receive_until_sentinel(c2, dest, "s2", p) == []


def test_commit_of_aborted_transaction_fails(node, clients):
    c = clients(node)
    c.conn.begin(transaction="t3")
    rid = c.rid("abort")
    c.conn.abort(transaction="t3", receipt=rid)
    c.wait_receipt(rid)
    c.conn.commit(transaction="t3")
    c.rec.wait(lambda: bool(c.rec.errors), what="ERROR for COMMIT after ABORT")
    assert "unknown transaction" in c.rec.errors[0].headers["message"]
