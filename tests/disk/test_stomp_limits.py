"""STOMP producers against `--max-disk-usage 50` on a 32 MiB tmpfs, filled
from outside to ~70 % and emptied again.

- page (the default) and block: a SEND is held (no RECEIPT, no ERROR) and the
  frames after it on that connection wait in order, while another
  connection subscribes, consumes and ACKs; once the disk is below the limit
  the held SENDs are receipted in order and delivered.
- fail: the SEND gets an ERROR naming the address and the limit, and the
  connection is closed; the refused message is never stored; below the
  limit a new connection's SEND is receipted.
The node logs each crossing of the limit and /metrics counts it."""

from __future__ import annotations

import re
import time

import pytest

from disk_helpers import (
    DISK_SEEN_S,
    WAIT_S,
    OrderedReceipts,
    assert_unanswered,
    blocked_line,
    bodies,
    refused_line,
    resume_line,
    send_nowait,
    wait_error,
)

SIZE_MIB = 32
LIMIT = "50"
FILL = 0.70
HOLD_S = 3.0


@pytest.mark.parametrize("policy", [None, "block"], ids=["page-by-default", "block"])
def test_sends_held_while_full(disk_nodes, stomp_clients, policy):
    node = disk_nodes(f"held-{policy or 'default'}", SIZE_MIB, max_disk_usage=LIMIT, policy=policy).start()
    q = "/queue/disk.held"
    producer = stomp_clients(node)
    consumer = stomp_clients(node)
    order = OrderedReceipts(producer)
    for i in range(3):
        producer.send(q, f"early-{i}")
    m = node.metrics()
    assert m.value("halyard_producers_blocked") == 0.0
    assert m.value("halyard_disk_used_ratios") < 0.1, m.value("halyard_disk_used_ratios")
    full_before = m.value("halyard_disk_full_total")
    held_before = m.value("halyard_sends_held_total")

    pos = node.log_pos()
    filled = node.fill_to(FILL)
    hit = node.wait_log(blocked_line(LIMIT), timeout=DISK_SEEN_S, since=pos)
    seen = float(re.search(blocked_line(LIMIT), hit.line).group(1))
    assert abs(seen - filled * 100) < 2.0, f"logged {seen}%, the tmpfs is {filled * 100:.1f}% used: {hit.line}"
    node.wait_metric("halyard_producers_blocked", lambda v: v == 1.0, "== 1 while full")
    m = node.metrics()
    assert m.value("halyard_disk_used_ratios") > 0.5, m.value("halyard_disk_used_ratios")
    assert m.value("halyard_disk_full_total") == full_before + 1

    # Two SENDs on one connection: the first is held, the second waits behind it.
    t_sent = time.monotonic()
    held1 = send_nowait(producer, q, "held-1")
    held2 = send_nowait(producer, q, "held-2")

    # Another connection subscribes, gets the earlier messages and ACKs them.
    consumer.subscribe(q, "c", ack="client-individual")
    got = consumer.wait_messages(3, sub="c", timeout=WAIT_S)
    assert bodies(got) == ["early-0", "early-1", "early-2"], bodies(got)
    for msg in got:
        consumer.ack(msg)

    assert_unanswered(producer, held1, t_sent + HOLD_S)
    assert held2 not in producer.rec.receipts
    assert "held-1" not in bodies(consumer.messages("c")), "a held message was delivered while full"
    assert node.metric("halyard_producers_blocked") == 1.0

    pos = node.log_pos()
    node.remove_fillers()
    producer.wait_receipt(held1, timeout=DISK_SEEN_S)
    producer.wait_receipt(held2, timeout=WAIT_S)
    assert [r for r in order.order() if r in (held1, held2)] == [held1, held2], order.order()
    node.wait_log(resume_line(LIMIT), timeout=WAIT_S, since=pos)
    consumer.wait_for_body("held-2", sub="c", timeout=WAIT_S)
    assert bodies(consumer.messages("c")) == ["early-0", "early-1", "early-2", "held-1", "held-2"]

    m = node.metrics()
    assert m.value("halyard_producers_blocked") == 0.0
    assert m.value("halyard_sends_held_total") >= held_before + 1, m.value("halyard_sends_held_total")
    assert m.value("halyard_sends_refused_full_total") == 0.0
    producer.send(q, "after")
    consumer.wait_for_body("after", sub="c")
    assert not producer.rec.errors and not consumer.rec.errors
    assert not producer.rec.disconnected and not consumer.rec.disconnected
    assert node.count(refused_line(LIMIT)) == 0


def test_sends_refused_while_full_under_fail(disk_nodes, stomp_clients):
    node = disk_nodes("fail", SIZE_MIB, max_disk_usage=LIMIT, policy="fail").start()
    q = "/queue/orders"
    consumer = stomp_clients(node)
    consumer.subscribe(q, "c")
    stomp_clients(node).send(q, "before")
    consumer.wait_for_body("before", sub="c")

    pos = node.log_pos()
    node.fill_to(FILL)
    node.wait_log(refused_line(LIMIT), timeout=DISK_SEEN_S, since=pos)
    assert node.count(blocked_line(LIMIT)) == 0
    node.wait_metric("halyard_producers_blocked", lambda v: v == 1.0, "== 1 while full")

    producer = stomp_clients(node)
    rid = send_nowait(producer, q, "refused-1")
    err = wait_error(producer)
    msg = err.get("message", "")
    assert "refused" in msg and "above --max-disk-usage 50.0%" in msg, msg
    assert re.fullmatch(
        r'send to "orders" refused: disk usage \d+\.\d% is above --max-disk-usage 50\.0%: '
        r"sends refused \(address-full-policy fail\)",
        msg,
    ), msg
    assert rid not in producer.rec.receipts
    assert node.metric("halyard_sends_refused_full_total") >= 1
    # The consumer's connection is not a producer's: it stays.
    assert not consumer.rec.errors and not consumer.rec.disconnected

    pos = node.log_pos()
    node.remove_fillers()
    node.wait_log(resume_line(LIMIT), timeout=DISK_SEEN_S, since=pos)
    node.wait_metric("halyard_producers_blocked", lambda v: v == 0.0, "== 0 below the limit")
    stomp_clients(node).send(q, "after")  # receipted (Client.send waits for it)
    consumer.wait_for_body("after", sub="c")
    assert bodies(consumer.messages("c")) == ["before", "after"], "the refused SEND was stored"
    m = node.metrics()
    assert m.value("halyard_sends_held_total") == 0.0
    assert m.value("halyard_disk_full_total") == 1.0
