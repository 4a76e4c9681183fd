"""Durability across crashes (SIGKILL) and clean stops (SIGTERM).

The contract under test (DESIGN.md, "Durability contract"): a RECEIPT for a
SEND or COMMIT means the journal made it durable, so whatever was receipted
must come back after a crash; a durable ACK removes a message for good;
nothing that was never sent may ever be delivered.

Messages carry a `seq` header (and a body derived from it) so every delivery
can be matched to the send that made it.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import stomp

from harness.clients import WAIT_S, Client
from harness.node import LocalNode

BODY_BYTES = 1024
MESSAGES = 10_000
WINDOW = 1_000  # receipts outstanding at most
KILL_AFTER_RECEIPTS = 4_000
SENTINEL = "sentinel"
STOP_WAIT_S = 5.0


def body_for(seq: int) -> str:
    head = f"seq={seq:06d};"
    fill = chr(ord("a") + seq % 26)
    return head + fill * (BODY_BYTES - len(head))


class PipelinedProducer(threading.Thread):
    """Sends `count` persistent messages, each with a receipt, keeping up to
    `window` receipts outstanding. Stops at the first send error or when the
    connection drops (the node was killed)."""

    def __init__(self, client: Client, dest: str, count: int, window: int = WINDOW):
        super().__init__(daemon=True, name=f"producer-{dest}")
        self.client = client
        self.dest = dest
        self.count = count
        self.window = window
        self.attempted: set[int] = set()
        self.send_error: BaseException | None = None
        self.stalled = False

    def receipted(self) -> set[int]:
        with self.client.rec.cv:
            rids = list(self.client.rec.receipts)
        return {int(r[2:]) for r in rids if r.startswith("p-")}

    def _outstanding(self) -> int:
        return len(self.attempted) - len(self.client.rec.receipts)

    def run(self) -> None:
        rec = self.client.rec
        for seq in range(self.count):
            with rec.cv:
                ok = rec.cv.wait_for(
                    lambda: rec.disconnected or self._outstanding() < self.window, WAIT_S
                )
                if rec.disconnected:
                    return
                if not ok:
                    self.stalled = True
                    return
                # Counted before the send: a frame cut short by the crash may
                # still have reached the broker.
                self.attempted.add(seq)
            try:
                self.client.conn.send(
                    self.dest, body_for(seq), headers={"seq": str(seq)}, receipt=f"p-{seq}"
                )
            except Exception as e:  # the node died under us
                self.send_error = e
                return


class SeqTracker(stomp.ConnectionListener):
    """Counts deliveries per `seq` and knows, in O(1) per message, when every
    expected seq and the sentinel have arrived."""

    def __init__(self, expected: set[int]):
        self.cv = threading.Condition()
        self.expected = set(expected)
        self.missing = len(self.expected)
        self.counts: Counter[int] = Counter()
        self.corrupt: list[int] = []
        self.sentinel_seen = False
        self.unknown: list[str] = []

    def on_message(self, frame):
        seq = frame.headers.get("seq")
        with self.cv:
            if seq == SENTINEL:
                self.sentinel_seen = True
            elif seq is None or not seq.isdigit():
                self.unknown.append(repr(frame.headers))
            else:
                s = int(seq)
                self.counts[s] += 1
                if self.counts[s] == 1 and s in self.expected:
                    self.missing -= 1
                if frame.body != body_for(s):
                    self.corrupt.append(s)
            self.cv.notify_all()

    def wait_done(self, timeout: float = WAIT_S, grace: float = 5.0) -> None:
        """Waits for the sentinel, then (briefly: they should have come
        first) for expected seqs still missing. The caller asserts."""
        with self.cv:
            self.cv.wait_for(lambda: self.sentinel_seen, timeout)
            self.cv.wait_for(lambda: self.missing == 0, grace)


def drain(
    node: LocalNode,
    clients,
    dest: str,
    expected: set[int],
    client_id: str | None = None,
    sub_headers: dict | None = None,
) -> SeqTracker:
    """Subscribes (auto ack) to `dest`, then sends a sentinel to it, which
    lands behind everything already stored; returns once the sentinel and
    every expected seq arrived (or the wait timed out)."""
    consumer = clients(node, client_id)
    tracker = SeqTracker(expected)
    consumer.conn.set_listener("tracker", tracker)
    consumer.subscribe(dest, "drain", ack="auto", **(sub_headers or {}))
    producer = clients(node)
    producer.send(dest, "sentinel", seq=SENTINEL)
    tracker.wait_done()
    return tracker


def check_delivery(
    label: str,
    attempted: set[int],
    receipted: set[int],
    tracker: SeqTracker,
    expected_name: str = "receipted",
) -> None:
    """`receipted` is what must come back (named `expected_name` in output)."""
    delivered = set(tracker.counts)
    duplicates = sum(n - 1 for n in tracker.counts.values())
    lost = receipted - delivered
    phantom = delivered - attempted
    unreceipted_delivered = delivered - receipted
    print(
        f"\n[{label}] attempted={len(attempted)} {expected_name}={len(receipted)} "
        f"delivered={len(delivered)} duplicates={duplicates} "
        f"not-{expected_name}-but-delivered={len(unreceipted_delivered)} lost={len(lost)} "
        f"never-sent-but-delivered={len(phantom)}"
    )
    assert tracker.sentinel_seen, f"[{label}] the sentinel sent after the restart never arrived"
    assert not lost, f"[{label}] {len(lost)} {expected_name} messages lost, e.g. {sorted(lost)[:20]}"
    assert not phantom, f"[{label}] delivered but never sent: {sorted(phantom)[:20]}"
    assert not tracker.unknown, f"[{label}] messages without a valid seq: {tracker.unknown[:5]}"
    assert not tracker.corrupt, f"[{label}] bodies not as sent for seqs {tracker.corrupt[:20]}"
    assert duplicates == 0, (
        f"[{label}] {duplicates} duplicate deliveries to a single auto-ack consumer: "
        f"{[(s, n) for s, n in tracker.counts.items() if n > 1][:20]}"
    )


def produce_and_crash(node: LocalNode, clients, dest: str) -> tuple[set[int], set[int]]:
    """Runs a pipelined producer and SIGKILLs the node from this thread once
    KILL_AFTER_RECEIPTS receipts have arrived, with sends still in flight."""
    client = clients(node)
    producer = PipelinedProducer(client, dest, MESSAGES)
    producer.start()
    client.rec.wait(
        lambda: len(client.rec.receipts) >= KILL_AFTER_RECEIPTS or client.rec.disconnected,
        what=f"{KILL_AFTER_RECEIPTS} receipts",
    )
    node.kill9()
    producer.join(timeout=WAIT_S)
    assert not producer.is_alive(), "producer thread did not stop after the crash"
    assert not producer.stalled, "producer stalled waiting for receipts before the crash"
    assert not client.rec.errors, f"ERROR frames while producing: {[e.headers for e in client.rec.errors]}"
    receipted = producer.receipted()
    attempted = set(producer.attempted)
    print(f"\n[{dest}] killed with {len(attempted - receipted)} sends without a receipt")
    assert receipted <= attempted, "receipts for messages never sent"
    assert KILL_AFTER_RECEIPTS <= len(receipted) < MESSAGES, (
        f"the crash was meant to hit mid-stream; receipted={len(receipted)}"
    )
    return attempted, receipted


def test_queue_receipted_sends_survive_sigkill(node, clients):
    dest = "/queue/crash-q"
    attempted, receipted = produce_and_crash(node, clients, dest)
    node.restart()
    tracker = drain(node, clients, dest, receipted)
    check_delivery("queue SIGKILL", attempted, receipted, tracker)


def test_durable_topic_subscription_survives_sigkill(node, clients):
    dest = "/topic/crash-t"
    durable = {"durable-subscription-name": "crash-sub"}
    sub = clients(node, client_id="crash-client")
    sub.subscribe(dest, "dur", ack="auto", **durable)
    sub.disconnect()

    attempted, receipted = produce_and_crash(node, clients, dest)
    node.restart()
    tracker = drain(node, clients, dest, receipted, client_id="crash-client", sub_headers=durable)
    check_delivery("durable topic SIGKILL", attempted, receipted, tracker)


def test_committed_transaction_survives_sigkill(node, clients):
    dest = "/queue/crash-tx-commit"
    n = 500
    p = clients(node)
    p.conn.begin(transaction="tx-commit")
    for seq in range(n):
        p.conn.send(dest, body_for(seq), headers={"seq": str(seq)}, transaction="tx-commit")
    rid = p.rid("commit")
    p.conn.commit(transaction="tx-commit", receipt=rid)
    p.wait_receipt(rid)
    node.kill9()  # right after the COMMIT receipt

    node.restart()
    everything = set(range(n))
    tracker = drain(node, clients, dest, everything)
    check_delivery("committed tx SIGKILL", everything, everything, tracker)
    assert set(tracker.counts) == everything


def test_uncommitted_transaction_leaves_nothing_after_sigkill(node, clients):
    dest = "/queue/crash-tx-open"
    n = 500
    p = clients(node)
    p.conn.begin(transaction="tx-open")
    for seq in range(n - 1):
        p.conn.send(dest, body_for(seq), headers={"seq": str(seq)}, transaction="tx-open")
    # A receipt on the last send proves the broker has taken in all of them.
    rid = p.rid("last")
    p.conn.send(dest, body_for(n - 1), headers={"seq": str(n - 1)}, transaction="tx-open", receipt=rid)
    p.wait_receipt(rid)
    node.kill9()

    node.restart()
    tracker = drain(node, clients, dest, set())
    print(f"\n[open tx SIGKILL] sent-in-open-tx={n} delivered-after-restart={len(tracker.counts)}")
    assert tracker.sentinel_seen
    assert not tracker.counts, (
        f"{len(tracker.counts)} messages of a never-committed transaction were delivered"
    )


def test_durable_acks_survive_sigkill(node, clients):
    dest = "/queue/crash-acks"
    n = 2_000
    p = clients(node)
    producer = PipelinedProducer(p, dest, n)
    producer.run()  # in this thread: no crash here
    p.rec.wait(lambda: len(p.rec.receipts) >= n or p.rec.disconnected, what=f"{n} receipts")
    assert producer.receipted() == set(range(n)), "not every send was receipted"

    c = clients(node)
    c.subscribe(dest, "acker", ack="client-individual")
    msgs = c.wait_messages(n)
    assert len(msgs) == n, f"expected {n} deliveries, got {len(msgs)}"
    acked: set[int] = set()
    rids = []
    for m in msgs:
        seq = int(m.headers["seq"])
        if seq % 2 == 0:
            rid = f"a-{seq}"
            c.conn.ack(m.headers["ack"], receipt=rid)
            rids.append(rid)
            acked.add(seq)
    c.rec.wait(
        lambda: all(r in c.rec.receipts for r in rids) or bool(c.rec.errors),
        what="receipts for every ACK",
    )
    assert not c.rec.errors, f"ERROR on ACK: {[e.headers for e in c.rec.errors]}"
    node.kill9()

    node.restart()
    unacked = set(range(n)) - acked
    tracker = drain(node, clients, dest, unacked)
    back = set(tracker.counts)
    print(
        f"\n[acks SIGKILL] delivered={n} acked-with-receipt={len(acked)} "
        f"came-back={len(back)} acked-but-came-back={len(back & acked)}"
    )
    check_delivery("acks SIGKILL", set(range(n)), unacked, tracker, expected_name="unacked")
    assert not (back & acked), f"acked messages redelivered after crash: {sorted(back & acked)[:20]}"
    assert back == unacked


def test_sigterm_exits_zero_and_keeps_receipted(node, clients):
    dest = "/queue/term-q"
    client = clients(node)
    producer = PipelinedProducer(client, dest, MESSAGES)
    producer.run()
    client.rec.wait(lambda: len(client.rec.receipts) >= MESSAGES or client.rec.disconnected)
    receipted = producer.receipted()
    assert receipted == set(range(MESSAGES))
    node.terminate()  # asserts exit code 0 within 10 s
    node.restart()
    tracker = drain(node, clients, dest, receipted)
    check_delivery("queue SIGTERM", set(producer.attempted), receipted, tracker)


SIGTERM_ROUNDS = 25


def test_sigterm_under_load_is_not_lost(node, clients):
    """SIGTERM while producers are busy must still drain and stop the node,
    and the drain must keep every receipted message.

    Known broker bug (fails at the time of writing, in some round): the
    driver loop in io/src/server.rs calls `shutdown()` anew for every
    `select!`, and bin/src/node_cmd.rs `shutdown_signal()` creates a fresh
    `tokio::signal::unix::signal(SignalKind::terminate())` on each call. A
    SIGTERM delivered while the loop is outside `select!` (carrying out
    outputs) has no listener and is dropped: the node keeps running and logs
    nothing; a second SIGTERM is then treated as the first.
    """
    rounds = {}
    for r in range(SIGTERM_ROUNDS):
        # Two producers keep the node's loop busy when the signal comes.
        producers = []
        for k in range(2):
            client = clients(node)
            producer = PipelinedProducer(client, f"/queue/term-load-{r}-{k}", 3_000)
            producer.start()
            producers.append(producer)
        for producer in producers:
            rec = producer.client.rec
            rec.wait(lambda: len(rec.receipts) >= 500 or rec.disconnected)
        node.sigterm()
        rc = node.wait_exit(STOP_WAIT_S)
        if rc is None:
            log = node.current_log()
            node.sigterm()
            rc2 = node.wait_exit(STOP_WAIT_S)
            log2 = node.current_log()
            if rc2 is None:
                node.kill9()
            handled_as_first = "stop signal received, draining" in log2 and "second stop signal" not in log2
            pytest.fail(
                f"round {r}: the node ignored a SIGTERM sent under load: still running after "
                f"{STOP_WAIT_S} s, log shows 'stop signal received': "
                f"{'stop signal received' in log}. A second SIGTERM "
                f"{'was handled as the first one (so the first was lost)' if handled_as_first else 'did not help either'}; "
                f"exit code after it: {rc2}"
            )
        assert rc == 0, f"round {r}: exit code {rc} after SIGTERM\n{node.log_tail()}"
        for producer in producers:
            producer.join(timeout=WAIT_S)
            assert not producer.is_alive() and not producer.stalled
            rounds[producer.dest] = (set(producer.attempted), producer.receipted())
        node.restart()

    for dest, (attempted, receipted) in rounds.items():
        tracker = drain(node, clients, dest, receipted)
        check_delivery(f"{dest} SIGTERM under load", attempted, receipted, tracker)
