"""Fenced preemption on a real Kafka (issue 16): the nodes watch each other's
peer port (`--peer-listen`, `--peer`), so a backup takes over as soon as the
live's peer link closes, not after the lock group's session timeout.

- SIGKILL of the live mid-stream with the default 6 s session timeout: the
  backup suspects it, fences it and accepts clients well inside the session
  timeout; every receipted message is delivered, none stored twice.
- A false suspicion: the live is only paused (SIGSTOP) past
  `--peer-suspect-ms`. The backup preempts; once resumed, the old live is
  fenced (at its next write, or by hearing the newer epoch on the peer
  port) and steps down; in the end only the new live accepts clients, and
  nothing receipted is lost. (For a moment after it resumes the old live
  may still answer a CONNECT: it cannot receipt anything, its producer
  epoch being fenced, which is what the checker's no-loss and
  no-duplicate rules cover.)
"""

from __future__ import annotations

import re
import signal
import time

from harness.failover import (
    FailoverConsumer,
    FailoverProducer,
    assert_report,
    check_delivery,
    run_until_done,
)
from harness.kafka import ACCEPTING, new_cluster_id, peer_pair_args
from harness.logs import log
from harness.node import wait_accepts
from harness.stomp_wire import stomp_accepts

SESSION_MS = 6000
SUSPECTED = r"suspected gone \((.*)\): fencing it and going live without the lock"
SUPERSEDED_OR_FENCED = (
    r"(?:peer \S+ is live at epoch \d+ \(ours \d+\): fenced, stepping down"
    r"|fenced by (?:epoch \d+|a newer live \(our epoch \d+\)), stepping down)"
)


def why(hit) -> str:
    m = re.search(SUSPECTED, hit.line)
    return m.group(1) if m else "?"


def pair(cluster):
    """A primary and a backup watching each other's peer port."""
    c = cluster()
    args_a, args_b = peer_pair_args()
    a = c.node("a", "primary", session_timeout_ms=SESSION_MS, extra_args=args_a)
    b = c.node("b", "backup", session_timeout_ms=SESSION_MS, extra_args=args_b)
    c.start_live(a)
    c.start_backup(b)
    return c, a, b


def traffic(c, clients, tag: str, count: int, window: int):
    """A failover producer of `count` messages and its consumer, started."""
    run_id = new_cluster_id(tag)
    dest = f"/queue/{tag}"
    consumer = clients(FailoverConsumer(c.addrs(), dest, run_id))
    producer = clients(FailoverProducer(c.addrs(), dest, count, run_id, window=window))
    consumer.start()
    producer.start()
    return producer, consumer


def all_delivered(producer, consumer, count: int) -> None:
    """Lets the traffic finish; every receipted message delivered, none twice."""
    run_until_done(producer, consumer, timeout=60)
    consumer.stop()
    consumer.join(timeout=10)
    r = check_delivery(producer, consumer)
    log(r.line())
    assert_report(r)
    assert r.receipted == count


def test_sigkill_of_the_live_is_preempted_inside_the_session_timeout(cluster, clients):
    c, a, b = pair(cluster)
    producer, consumer = traffic(c, clients, "pre", 6_000, 200)
    assert consumer.wait_count(2_000, timeout=40), f"only {len(consumer.seen)} delivered before the kill"
    # The backup must have heard the live on the peer port by now.
    pos = b.log_pos()
    t_kill = a.kill9()
    hit = b.wait_log(SUSPECTED, timeout=SESSION_MS / 1000, since=pos)
    t_acc = wait_accepts(b, timeout=SESSION_MS / 1000)
    log(
        f"SIGKILL: suspected after {hit.ts - t_kill:.2f} s ({why(hit)}), "
        f"accepting after {t_acc - t_kill:.2f} s (session timeout {SESSION_MS / 1000:.0f} s)"
    )
    # Preemption, not the lock: clients were back well before Kafka could
    # have expired the dead member's session.
    assert t_acc - t_kill < SESSION_MS / 1000 - 1.5, f"accepting only after {t_acc - t_kill:.2f} s"
    assert b.count(ACCEPTING, since=pos) == 1
    all_delivered(producer, consumer, 6_000)


def test_a_paused_live_is_preempted_and_steps_down_when_it_resumes(cluster, clients):
    c, a, b = pair(cluster)
    producer, consumer = traffic(c, clients, "pause", 3_000, 100)
    assert consumer.wait_count(800, timeout=40)
    pos_a, pos_b = a.log_pos(), b.log_pos()
    t_stop = time.time()
    a.proc.send_signal(signal.SIGSTOP)
    try:
        hit = b.wait_log(SUSPECTED, timeout=5, since=pos_b)
        wait_accepts(b, timeout=5)
        log(f"SIGSTOP: b suspected a after {hit.ts - t_stop:.2f} s ({why(hit)}) and accepts")
        time.sleep(1.0)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    down = a.wait_log(SUPERSEDED_OR_FENCED, timeout=10, since=pos_a)
    log(f"a resumed and stepped down: {down.line.strip()[-100:]}")
    all_delivered(producer, consumer, 3_000)
    assert a.alive() and b.alive()
    assert stomp_accepts(b.addr, timeout=2), "the new live does not accept clients"
    assert not stomp_accepts(a.addr, timeout=2), "the fenced old live still accepts clients"
    assert a.count(SUPERSEDED_OR_FENCED, since=pos_a) >= 1


def test_sigterm_hands_over_through_the_peer_link(cluster, clients):
    """A drained live closes its peer links as it stops: the backup takes
    over on that, without waiting for the lock group to rebalance."""
    c, a, b = pair(cluster)
    producer, consumer = traffic(c, clients, "term", 2_000, 100)
    assert consumer.wait_count(500, timeout=40)
    pos = b.log_pos()
    t_term = a.sigterm()
    assert a.wait_exit(20) == 0, a.log_tail()
    hit = b.wait_log(SUSPECTED, timeout=SESSION_MS / 1000, since=pos)
    t_acc = wait_accepts(b, timeout=10)
    log(f"SIGTERM: b took over on '{why(hit)}' after {hit.ts - t_term:.2f} s, accepting after {t_acc - t_term:.2f} s")
    assert "link closed" in why(hit)
    all_delivered(producer, consumer, 2_000)
