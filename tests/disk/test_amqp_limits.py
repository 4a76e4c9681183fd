"""AMQP 1.0 producers (python-qpid-proton's engine, pumped by the test)
against the disk limit on a 32 MiB tmpfs filled from outside to ~70 %.

- block: a sender attached while the disk is above the limit gets no credit,
  so its message does not leave the client; credit granted before the limit
  was crossed is still honoured (that transfer is accepted); a receiver
  attached meanwhile consumes. Below the limit the waiting sender gets
  credit, its message is accepted and delivered.
- fail: a transfer is rejected with amqp:resource-limit-exceeded (the
  description names the limit), the connection and link stay, and below
  the limit the same link's next transfer is accepted; the rejected message
  is never stored."""

from __future__ import annotations

from proton import Delivery, Endpoint, Message

from disk_helpers import DISK_SEEN_S, WAIT_S, blocked_line, refused_line, resume_line

SIZE_MIB = 32
FILL = 0.70
NO_CREDIT_S = 3.0
LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"


def outcome(c, d, what: str) -> int:
    c.run_until(lambda: d.remote_state != 0, timeout=WAIT_S, what=what)
    return d.remote_state


def assert_open(c, *links) -> None:
    assert not c.eof, f"the connection was closed ({c.conn.remote_condition})"
    assert c.conn.state & Endpoint.REMOTE_ACTIVE and not c.conn.state & Endpoint.REMOTE_CLOSED, (
        c.conn.remote_condition)
    for link in links:
        assert link.state & Endpoint.REMOTE_ACTIVE and not link.state & Endpoint.REMOTE_CLOSED, (
            link.remote_condition)


def drain_bodies(c, address: str, n: int) -> list:
    """Attaches a receiver, takes `n` messages, then checks for 0.5 s that
    no more come."""
    r = c.receiver(address, credit=n + 10)
    got = [m.body for m, _ in c.receive(r, n, timeout=WAIT_S)]
    c.run_for(0.5)
    extra = c.take(r)
    assert extra is None, f"more than {n} messages on {address}: {got} + {extra[0].body!r}"
    return got


def test_amqp_no_credit_while_full_under_block(disk_nodes, amqp_clients):
    limit = "50.5"  # tenths of a percent are accepted and printed back
    node = disk_nodes("amqp-block", SIZE_MIB, max_disk_usage=limit, policy="block").start()
    address = "disk.amqp.block"
    early = amqp_clients(node)
    early_snd = early.sender(address)
    early.run_until(lambda: early_snd.credit > 0, what="credit at attach below the limit")
    granted = early_snd.credit

    pos = node.log_pos()
    node.fill_to(FILL)
    node.wait_log(blocked_line(limit), timeout=DISK_SEEN_S, since=pos)
    node.wait_metric("halyard_producers_blocked", lambda v: v == 1.0, "== 1 while full")

    # Credit granted before the limit was crossed is honoured...
    d0 = early.send(early_snd, Message(body="granted-before"))
    assert outcome(early, d0, "the outcome of a transfer on earlier credit") == Delivery.ACCEPTED
    # Consumers go on: a receiver attached now gets it (and accepts it).
    rcv = early.receiver(address, credit=10)
    assert [m.body for m, _ in early.receive(rcv, 1)] == ["granted-before"]
    # A sender attached now gets no credit at all.
    late = amqp_clients(node)
    late_snd = late.sender(address)
    late.run_for(NO_CREDIT_S)
    early.run_for(0.1)
    assert late_snd.credit == 0, f"a sender attached while full got {late_snd.credit} credit"
    # Its message waits in the client (proton counts it against the credit).
    d1 = late.send(late_snd, Message(body="held-amqp"))
    late.run_for(0.3)
    assert late_snd.credit == -1 and late_snd.queued == 1, (late_snd.credit, late_snd.queued)
    assert d1.remote_state == 0 and not d1.settled, "a transfer without credit was answered"
    assert early_snd.credit <= granted - 1, f"credit topped up while full: {early_snd.credit}"
    assert_open(late, late_snd)
    assert_open(early, early_snd)

    pos = node.log_pos()
    node.remove_fillers()
    node.wait_log(resume_line(limit), timeout=DISK_SEEN_S, since=pos)
    late.run_until(lambda: late_snd.credit > 0 or d1.remote_state != 0, timeout=WAIT_S,
                   what="credit once below the limit")
    assert outcome(late, d1, "the outcome of the held transfer") == Delivery.ACCEPTED
    assert [m.body for m, _ in early.receive(rcv, 1)] == ["held-amqp"]
    early.run_for(0.5)
    assert early.take(rcv) is None, "a message delivered twice"
    assert node.metric("halyard_producers_blocked") == 0.0
    assert node.count(refused_line(limit)) == 0


def test_amqp_transfer_rejected_while_full_under_fail(disk_nodes, amqp_clients):
    limit = "50"
    node = disk_nodes("amqp-fail", SIZE_MIB, max_disk_usage=limit, policy="fail").start()
    address = "disk.amqp.fail"
    c = amqp_clients(node)
    snd = c.sender(address)
    c.run_until(lambda: snd.credit > 0, what="credit at attach")
    before = c.send(snd, Message(body="before"))
    assert outcome(c, before, "the outcome below the limit") == Delivery.ACCEPTED

    pos = node.log_pos()
    node.fill_to(FILL)
    node.wait_log(refused_line(limit), timeout=DISK_SEEN_S, since=pos)
    refused_before = node.metric("halyard_sends_refused_full_total")

    d = c.send(snd, Message(body="refused-amqp"))
    assert outcome(c, d, "the outcome of a transfer while full") == Delivery.REJECTED
    cond = d.remote.condition
    assert cond is not None and cond.name == LIMIT_EXCEEDED, f"rejected with {cond}, want {LIMIT_EXCEEDED}"
    assert "above --max-disk-usage 50.0%" in (cond.description or ""), cond.description
    assert_open(c, snd)
    assert node.metric("halyard_sends_refused_full_total") >= refused_before + 1

    pos = node.log_pos()
    node.remove_fillers()
    node.wait_log(resume_line(limit), timeout=DISK_SEEN_S, since=pos)
    c.run_until(lambda: snd.credit > 0, what="credit below the limit")
    after = c.send(snd, Message(body="after"))
    assert outcome(c, after, "the outcome below the limit again") == Delivery.ACCEPTED
    assert_open(c, snd)
    assert drain_bodies(c, address, 2) == ["before", "after"], "the rejected transfer was stored"
