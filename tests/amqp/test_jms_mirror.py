"""Seed 002 with Qpid JMS (issue 13): two mirrored Halyard brokers under a
file lock, reached through Qpid JMS's failover URL.

Artemis's mirroring + lock-coordinator example: two brokers, each on its own
journal, mirroring every change to each other; a lock decides which one
accepts clients; a JMS client on
`failover:(amqp://localhost:61616,amqp://localhost:61617)?failover.maxReconnectAttempts=-1`
sends 30 persistent messages, server0 is killed, the client reconnects to
server1 and consumes all 30. Here the brokers are `harness.mirror`'s pair
(the one tests/mirror drives with STOMP clients): `--mirror-sync`,
`--check-period-ms 200`, `file:<tmp>/locks`, STOMP and AMQP on one client
port; the client is tests/jms's jms-tool (Qpid JMS 2.10.0).

Halyard only: Artemis's shared-store run of the same flow is
test_jms_failover.py; Artemis's own mirroring is not set up here.
"""

from __future__ import annotations

import collections
from pathlib import Path
from urllib.parse import urlparse

import pytest

from amqp_conftest import BROKERS, JmsProc, halyard_amqp_gate
from harness.mirror import (QUEUE, Pair, check_monitor, format_figures, kill_and_time_failover, note, start_pair,
                            wait_queue_depth)
from harness.node import close_all

pytestmark = pytest.mark.skipif("halyard" not in BROKERS,
                                reason=f"AMQP_TEST_BROKERS={','.join(BROKERS)} leaves Halyard out")

SEED_MESSAGES = 30
MID_STREAM_MESSAGES = 1_000
MID_STREAM_KILL_AFTER = 500
# Bounds: a healthy run needs a fraction.
SEND_WAIT_S = 120.0
FAILOVER_CLIENT_WAIT_S = 60.0
CONSUME_WAIT_S = 180.0
# The consumer ends after this long without a message: the time a
# duplicate has to show up after the last expected message.
IDLE_MS = 3000


def failover_url(pair: Pair) -> str:
    """Seed 002's URL over the pair's client ports (server0 first)."""
    inner = ",".join(f"amqp://127.0.0.1:{n.port}" for n in pair.nodes)
    return f"failover:({inner})?failover.maxReconnectAttempts=-1"


def port_of(uri: str) -> int | None:
    return urlparse(str(uri)).port


def received(consumer: JmsProc) -> list[dict]:
    return consumer.of("received")


def seqs(events) -> list[int]:
    return [int(e["seq"]) for e in events]


class Mirrored:
    """The test's pair (`harness.mirror.Pair` on a file lock), its figures,
    its jms-tool runs and the AcceptMonitor `start()` starts."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.pair = Pair.file_lock(base_dir)
        self.figs: dict = {}
        self.procs: list[JmsProc] = []
        self.monitor = None

    def start(self) -> None:
        """server0 active, server1 passive and in the in-sync set; server0
        must answer the AMQP header."""
        self.monitor = start_pair(self.pair, self.figs)
        halyard_amqp_gate("127.0.0.1", self.pair.server0.port, "server0 (mirroring active)")
        note(self.figs, "url", failover_url(self.pair))

    def jms(self, command: str, *args: str) -> JmsProc:
        """jms-tool on seed 002's failover URL and queue."""
        p = JmsProc([command, "--url", failover_url(self.pair), "--queue", QUEUE, *args],
                    self.base_dir / "jms-tool.log")
        self.procs.append(p)
        return p

    def check_after_acks(self, what: str) -> None:
        """server1's queue is empty once everything was consumed, and only one
        broker accepted at a time: server0, then server1."""
        s1 = self.pair.server1
        depth = wait_queue_depth(s1, 0)
        note(self.figs, "server1_queue_depth_after_acks", depth if depth is None else int(depth))
        assert depth == 0, f"{s1.name}'s {QUEUE} holds {depth} messages after {what} were acked"
        check_monitor(self.monitor, self.figs, ["server0", "server1"])

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        if self.monitor is not None:
            self.monitor.stop()


@pytest.fixture
def mirrored(tmp_path, report, request):
    """A `Mirrored` (not started); at teardown its figures go to the "amqp
    test figures" summary and the nodes are stopped (a panic fails the test)."""
    m = Mirrored(tmp_path)
    try:
        yield m
    finally:
        m.close()
        if m.figs:
            report(f"{request.node.nodeid}:")
            for line in format_figures(m.figs).splitlines():
                report(f"    {line}")
        close_all(m.pair.nodes)


def finish(consumer: JmsProc, what: str) -> None:
    rc = consumer.wait(CONSUME_WAIT_S)
    assert rc == 0, f"{what} exited {rc}: {consumer.describe()}"


def test_seed002_qpid_jms_mirrored(mirrored):
    m = mirrored
    pair, figs = m.pair, m.figs
    s0, s1 = pair.server0, pair.server1
    m.start()
    # The consuming client connects first (to server0, the URL's first
    # address) and waits at its gate: the kill interrupts its connection.
    consumer = m.jms("consume", "--gate", "--timeout-ms", str(IDLE_MS), "--first-timeout-ms", "60000")
    consumer.wait_for(lambda: consumer.count("gate") == 1, timeout=FAILOVER_CLIENT_WAIT_S,
                      what="consumer connected")
    assert port_of(consumer.of("connected")[0]["uri"]) == s0.port, consumer.of("connected")

    producer = m.jms("produce", "--count", str(SEED_MESSAGES), "--persistent")
    rc = producer.wait(SEND_WAIT_S)
    assert rc == 0, f"producer exited {rc}: {producer.describe()}"
    assert port_of(producer.of("connected")[0]["uri"]) == s0.port, producer.of("connected")
    assert seqs(producer.of("sent")) == list(range(SEED_MESSAGES)), producer.describe()
    assert producer.summary["sent"] == SEED_MESSAGES and producer.summary["reconnects"] == 0, producer.summary
    note(figs, "sent", SEED_MESSAGES)

    t_kill = kill_and_time_failover(pair, figs, f"after {SEED_MESSAGES} sends")
    consumer.wait_for(lambda: consumer.count("restored") >= 1, timeout=FAILOVER_CLIENT_WAIT_S,
                      what="the consumer's connection restored on server1")
    restored = consumer.of("restored")[0]
    note(figs, "jms_consumer_restored_after_kill_s", round(restored["t_ms"] / 1000 - t_kill, 3),
         f"{restored['t_ms'] / 1000 - t_kill:.3f} s from SIGKILL of {s0.name} to Qpid JMS's "
         f"onConnectionRestored({restored['uri']})")
    assert port_of(restored["uri"]) == s1.port, restored
    consumer.release()
    finish(consumer, "consumer")

    got = received(consumer)
    order = seqs(got)
    counts = collections.Counter(order)
    dups = sum(n - 1 for n in counts.values() if n > 1)
    note(figs, "received", len(got))
    note(figs, "duplicates", dups)
    note(figs, "consumer_reconnects", consumer.summary["reconnects"])
    assert dups == 0, f"{dups} duplicate deliveries: {sorted(s for s, n in counts.items() if n > 1)}"
    assert order == list(range(SEED_MESSAGES)), f"received {order}"
    assert [e["body"] for e in got] == [f"msg-{i}" for i in range(SEED_MESSAGES)], [e["body"] for e in got]
    assert all(e["persistent"] for e in got), [e["seq"] for e in got if not e["persistent"]]
    assert consumer.summary["reconnects"] == 1, consumer.summary
    m.check_after_acks(f"all {SEED_MESSAGES}")


def test_seed002_qpid_jms_mirrored_kill_while_sending(mirrored):
    """1,000 synchronous persistent sends; SIGKILL of server0 once 500 have
    returned. Every send that returned without an exception must be consumed
    from server1. A duplicate is allowed only of the send in flight at the
    kill (Qpid JMS sends it again after the failover; server1 may have it
    from the mirror already): counted and reported."""
    m = mirrored
    pair, figs = m.pair, m.figs
    s0, s1 = pair.server0, pair.server1
    n = MID_STREAM_MESSAGES
    m.start()
    producer = m.jms("produce", "--count", str(n), "--persistent")
    producer.wait_for(lambda: producer.count("sent") >= MID_STREAM_KILL_AFTER, timeout=SEND_WAIT_S,
                      what=f"{MID_STREAM_KILL_AFTER} returned sends")
    t_kill = kill_and_time_failover(pair, figs, f"{producer.count('sent')} sends returned")
    rc = producer.wait(SEND_WAIT_S)
    events = producer.events[:]
    sent = seqs(e for e in events if e.get("event") == "sent")
    failed = seqs(e for e in events if e.get("event") == "send-failed")
    interrupted = [i for i, e in enumerate(events) if e.get("event") == "interrupted"]
    restored = [e for e in events if e.get("event") == "restored"]
    # Sends are synchronous and in seq order: those returned before the
    # connection was interrupted went to server0; the next one was in
    # flight (or not yet started) at the kill.
    before = seqs(e for e in events[:interrupted[0]] if e.get("event") == "sent") if interrupted else sent
    in_flight = {max(before) + 1} if before else {0}
    note(figs, "sends_returned_before_kill", len(before),
         f"{len(before)} sends returned by server0 before the interruption; in flight: {sorted(in_flight)}")
    if restored:
        note(figs, "jms_producer_restored_after_kill_s", round(restored[0]["t_ms"] / 1000 - t_kill, 3),
             f"{restored[0]['t_ms'] / 1000 - t_kill:.3f} s from SIGKILL to the producer's connection "
             f"restored on {restored[0]['uri']}")
    last = [e for e in events if e.get("event") == "sent"][-1:]
    if last:
        note(figs, "produce_after_kill_s", round(last[0]["t_ms"] / 1000 - t_kill, 3))
    note(figs, "sends_returned", len(sent))
    note(figs, "sends_failed", len(failed), f"{len(failed)} {failed[:10]}")
    assert rc == 0 and not failed, f"producer exited {rc}, {len(failed)} sends failed: {producer.describe()}"
    assert sent == list(range(n)), f"returned sends out of order or missing: {producer.describe()}"
    assert MID_STREAM_KILL_AFTER <= len(before) < n, f"the kill was meant to hit mid-stream: {len(before)}"
    assert len(restored) == 1 and port_of(restored[0]["uri"]) == s1.port, restored

    consumer = m.jms("consume", "--timeout-ms", str(IDLE_MS), "--first-timeout-ms", "60000")
    finish(consumer, "consumer")
    assert port_of(consumer.of("connected")[0]["uri"]) == s1.port, consumer.of("connected")
    got = received(consumer)
    order = seqs(got)
    counts = collections.Counter(order)
    first: list[int] = list(dict.fromkeys(order))
    repeated = sorted(s for s, c in counts.items() if c > 1)
    dups = sum(c - 1 for c in counts.values() if c > 1)
    lost = sorted(set(sent) - set(counts))
    unexpected = sorted(set(counts) - set(range(n)))
    not_allowed = [s for s in repeated if s not in in_flight]
    out_of_order = sum(1 for a, b in zip(first, first[1:]) if b < a)
    note(figs, "received", len(got))
    note(figs, "received_distinct", len(counts))
    note(figs, "lost", len(lost))
    note(figs, "duplicates", dups, f"{dups} (seqs {repeated[:20]}; {len(not_allowed)} of them not in flight "
                                   f"at the kill)")
    note(figs, "out_of_order_first_deliveries", out_of_order)
    assert not lost, f"{len(lost)} returned sends never consumed: {lost[:50]}"
    assert not unexpected, unexpected[:20]
    assert len(counts) == n, f"{len(counts)} distinct of {n}"
    assert not not_allowed, f"delivered more than once though their send had returned before the kill: " \
                            f"{not_allowed[:20]}"
    assert len(got) == n + dups
    assert out_of_order == 0, f"first deliveries out of send order: {out_of_order} inversions"
    m.check_after_acks(f"all {n}")
