"""Issue 13's partition test, with real processes and the project's fault
proxy (`halyard proxy`, docs/proxy.md) on the mirror link: "A partition
between the two brokers: the active broker keeps serving after shrinking the
in-sync set; the other does not take over while it is out of sync, even if
the active is then killed; after healing it catches up and rejoins."

File lock, `--check-period-ms 200`, sync mirroring both ways; server0's
`--mirror` goes through proxy P01 to server1's mirror listener, server1's
through P10 to server0's (`mirror_proxies`). One test,
`test_partition_file_lock`, in steps:

1. server0 active, server1 passive and in the in-sync set (`wait_passive`);
   100 messages sent to server0 with receipts, all receipted.
2. Both proxies cut (`MIRROR_CUT_MODE`, default `blackhole`: sockets stay
   open, bytes vanish). 200 more sent with receipts (10 in flight, 50/s):
   all receipted by server0, the longest receipt stall within the peer
   timeout (3 check periods, at least 2 s) plus STALL_MARGIN_S; server0 logs
   `peer server1 silent for N ms: removing it from the in-sync set` and
   `peer server1 left the in-sync set of epoch E`.
3. SIGKILL of server0. For HOLD_OUT_S server1 stays alive and its client
   port refuses connections, and it logs `not in the in-sync set {server0}
   of epoch E: catching up from the active first`.
4. Proxies healed, server0 restarted with the same flags: it takes the lock
   back (`active with epoch E2 > E, in-sync set {server0}`), server1 catches
   up (snapshot or resume; recorded) and server0 logs `peer server1 joined
   the in-sync set of epoch E2`; server1's port stays closed. A consumer
   gets all 300 receipted messages from server0, exactly once, in order;
   server0's queue depth goes to 0.
5. 50 more sent to server0 with receipts, SIGKILL of server0: server1 (in
   the in-sync set now) takes over and a consumer gets exactly those 50 from
   server1 (none of the 300 acked before: the acks were mirrored too).

An `AcceptMonitor` watches both client ports throughout: never both
accepting, and accepting in turn server0, then server1 (step 5) only.
Figures: the longest receipt stall, the coordinator's lines relative to the
cut and the kill, the epochs, the catch-up (snapshot or resume) and its time.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
import stomp

from harness.failover import AcceptMonitor, FailoverConsumer, body_for
from harness.logs import log
from harness.mirror import (ACTIVE_LINE, CHECK_PERIOD_MS, DEST, FAILOVER_WAIT_S, PASSIVE_WAIT_S, compare_queues, note,
                            port_state, start_active, wait_accepting, wait_passive, wait_queue_depth)
from mirror_helpers import first_deliveries, new_run_id, stop_clients, wait_consumed

BODY_BYTES = 256
BEFORE_CUT = 100
DURING_CUT = 200
AFTER_HEAL = 50
WINDOW = 10  # receipts outstanding at most
DURING_CUT_RATE = 50.0  # messages per second while cut: the sending spans the peer timeout
CUT_MODE = os.environ.get("MIRROR_CUT_MODE", "blackhole")

# The coordinator's peer timeout (docs/mirroring.md): three check periods, at
# least 2 s. Receipts may stall that long after the cut, plus a lock write
# and the scheduling of a shared machine: STALL_MARGIN_S.
PEER_TIMEOUT_S = max(3 * CHECK_PERIOD_MS / 1000, 2.0)
STALL_MARGIN_S = 3.0
STALL_BOUND_S = PEER_TIMEOUT_S + STALL_MARGIN_S
# How long the out-of-sync server1 must keep its client port closed after
# the kill: 15 check periods (15 chances to take over wrongly).
HOLD_OUT_S = 3.0
# Bound on any batch of receipts (a stall this long is a failure, reported
# with the logs, never waited out by a test timeout).
RECEIPT_WAIT_S = 30.0
CONSUME_WAIT_S = 60.0
SETTLE_S = 2.0

SILENT_LINE = r"peer server1 silent for (\d+) ms: removing it from the in-sync set"
LEFT_LINE = r"peer server1 left the in-sync set of epoch (\d+)"
JOINED_LINE = r"peer server1 joined the in-sync set of epoch (\d+)"
NOT_IN_SYNC_LINE = r"not in the in-sync set \{([^}]*)\} of epoch (\d+): catching up from the active first"
OVERRIDE_LINE = r"operator override: taking the active role"
# The catch-up, as the mirror link logs it (io/src/mirror/hub.rs, target.rs).
SNAPSHOT_SENT_LINE = r"peer \S+ is not in this stream: sending it a snapshot of the journal"
SNAPSHOT_RECEIVED_LINE = r"receiving a snapshot of the active broker's journal"
CAUGHT_UP_LINE = r"peer server1 caught up with epoch (\d+)'s stream"


class ReceiptSender(stomp.ConnectionListener):
    """A STOMP producer on one broker (no failover: a partition must not
    make the clients move): sends persistent messages with receipts, at most
    `window` unreceipted, and records when each was sent and receipted. Same
    headers and bodies as `harness.failover.FailoverProducer`, so
    `FailoverConsumer` checks them."""

    def __init__(self, node, run_id: str, size: int = BODY_BYTES):
        self.node = node
        self.run_id = run_id
        self.size = size
        self.cv = threading.Condition()
        self.sent_at: dict[int, float] = {}
        self.receipt_at: dict[int, float] = {}
        self.errors: list[str] = []
        self.disconnected = False
        self.conn = stomp.Connection12([node.addr], heartbeats=(0, 0), reconnect_attempts_max=1,
                                       auto_content_length=True)
        self.conn.set_listener("l", self)
        self.conn.connect(wait=True)

    # stomp.py listener callbacks (its receiver thread)
    def on_receipt(self, frame):
        rid = frame.headers.get("receipt-id", "")
        if rid.startswith("m-"):
            with self.cv:
                self.receipt_at.setdefault(int(rid[2:]), time.time())
                self.cv.notify_all()

    def on_error(self, frame):
        with self.cv:
            self.errors.append(frame.headers.get("message", str(frame.headers)))
            self.cv.notify_all()

    def on_disconnected(self):
        with self.cv:
            self.disconnected = True
            self.cv.notify_all()

    def pending(self) -> list[int]:
        return sorted(set(self.sent_at) - set(self.receipt_at))

    def state(self) -> str:
        with self.cv:
            p = self.pending()
            return (f"sent {len(self.sent_at)}, receipted {len(self.receipt_at)}, unreceipted {len(p)} "
                    f"(e.g. {p[:10]}), errors {self.errors[-3:]}, disconnected {self.disconnected}")

    def _wait(self, pred, what: str) -> None:
        """Waits for `pred` (under the lock) while receipts keep coming: fails
        once RECEIPT_WAIT_S pass without one, or on an error frame or a lost
        connection."""
        with self.cv:
            while not pred():
                if self.errors or self.disconnected:
                    break
                last = max(self.receipt_at.values(), default=0.0)
                oldest = min((self.sent_at[m] for m in self.pending()), default=time.time())
                waited = time.time() - max(last, oldest)
                if waited > RECEIPT_WAIT_S:
                    break
                self.cv.wait(timeout=0.1)
            ok = pred()
        if not ok:
            pytest.fail(f"{self.node.name}: {what}: no receipt for {RECEIPT_WAIT_S:.0f} s, or the connection "
                        f"failed: {self.state()}\n{self.node.log_tail(40)}", pytrace=False)

    def send(self, mids: range, window: int = WINDOW, rate: float | None = None) -> None:
        """Sends `mids` in order, `window` unreceipted at most, at `rate` per
        second if given; returns once every one is receipted."""
        next_due = time.monotonic()
        for mid in mids:
            self._wait(lambda: len(self.pending()) < window, f"sending mid {mid}")
            if rate:
                now = time.monotonic()
                if next_due > now:
                    time.sleep(next_due - now)
                next_due = max(next_due, now) + 1.0 / rate
            with self.cv:
                self.sent_at[mid] = time.time()
            self.conn.send(DEST, body_for(self.run_id, mid, self.size),
                           headers={"mid": str(mid), "_AMQ_DUPL_ID": f"{self.run_id}-{mid}", "persistent": "true"},
                           receipt=f"m-{mid}")
        self._wait(lambda: not self.pending(), f"waiting for the receipts of {mids.start}..{mids.stop - 1}")

    def stalls(self, mids: range) -> tuple[float, float]:
        """(the longest send-to-receipt time, the longest time with sends
        unreceipted and no receipt coming) over `mids`, in seconds."""
        with self.cv:
            events = sorted([(self.sent_at[m], 1) for m in mids] + [(self.receipt_at[m], -1) for m in mids])
            latency = max(self.receipt_at[m] - self.sent_at[m] for m in mids)
        pending, since, gap = 0, 0.0, 0.0
        for t, d in events:
            if d == 1:
                if pending == 0:
                    since = t
                pending += 1
            else:
                gap = max(gap, t - since)
                since = t
                pending -= 1
        return latency, gap

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:
            pass


def wait_line(node, pattern: str, since: int, timeout: float, what: str):
    """The first line of `node`'s log after `since` matching `pattern`,
    within `timeout`; fails with both tails otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        hits = node.find(pattern, since=since)
        if hits:
            return hits[0]
        if time.monotonic() > deadline:
            pytest.fail(f"{node.name} logged no line matching {pattern!r} within {timeout:.1f} s ({what})\n"
                        f"{node.log_tail(40)}", pytrace=False)
        time.sleep(0.02)


def rel(hit, t0: float) -> float | str:
    return round(hit.ts - t0, 3) if hit.ts is not None else "no timestamp"


def consume_exactly(figures, label: str, addrs, run_id: str, want: set[int], index: int, node) -> None:
    """A failover consumer (client-individual acks, starting with server0's
    address) must get exactly `want`, once each, in order, all from the node
    at `index`; then that node's queue depth goes to 0."""
    consumer = FailoverConsumer(addrs, DEST, run_id, size=BODY_BYTES, give_up_s=30.0)
    consumer.start()
    try:
        got = wait_consumed(consumer, want, CONSUME_WAIT_S)
        time.sleep(SETTLE_S)
    finally:
        stop_clients(consumer)
    order, counts = first_deliveries(consumer)
    dups = sorted(m for m, c in counts.items() if c > 1)
    extra = sorted(set(counts) - want)
    missing = sorted(want - set(counts))
    bad = sum(1 for d in consumer.deliveries if not d.body_ok)
    note(figures, f"{label}_consumed", f"{len(counts)} distinct, {len(consumer.deliveries)} deliveries, "
                                       f"{len(dups)} duplicated, {len(extra)} unexpected, {len(missing)} missing, "
                                       f"from {sorted({node_i for _, node_i in consumer.connects})}")
    assert consumer.failure is None, f"{label}: consumer failed: {consumer.failure!r}"
    assert not missing, f"{label}: {len(missing)} receipted messages never delivered, e.g. {missing[:20]}"
    assert got
    assert not extra, f"{label}: delivered although not expected here: {extra[:20]}"
    assert not consumer.unexpected, f"{label}: unexpected deliveries: {consumer.unexpected[:10]}"
    assert bad == 0, f"{label}: {bad} deliveries with a body that is not what was sent"
    assert not dups, f"{label}: delivered more than once: {dups[:20]}"
    assert order == sorted(want), f"{label}: delivered out of send order: {order[:50]}"
    assert {i for _, i in consumer.connects} == {index}, (
        f"{label}: the consumer should have subscribed on {node.name} (index {index}) only: {consumer.connects}")
    depth = wait_queue_depth(node, 0)
    note(figures, f"{label}_queue_depth_after_acks", depth if depth is None else int(depth))
    assert depth == 0, f"{label}: {node.name}'s exampleQueue holds {depth} messages after all were acked"


def test_partition_file_lock(mirror_proxies, mirror_pair, figures):
    pair = mirror_pair("file")
    s0, s1 = pair.server0, pair.server1
    p01, p10 = mirror_proxies(pair)
    note(figures, "lock", f"{pair.lock_spec} (lock id {pair.lock_id}), check period {CHECK_PERIOD_MS} ms, "
                          f"peer timeout {PEER_TIMEOUT_S:.1f} s")
    note(figures, "mirror_links", f"server0 -> {p01.listen} -> server1 :{s1.mirror_port}; "
                                  f"server1 -> {p10.listen} -> server0 :{s0.mirror_port}; cut mode {CUT_MODE}")
    run_id = new_run_id()
    monitor = None
    sender = None
    try:
        # -- 1. server0 active, server1 passive and in sync; 100 receipted ----
        start_active(s0, figures)
        pos0 = s0.log_pos()
        s1.start()
        wait_passive(s1, s0, figures, since_active=pos0)
        assert port_state(s0) == "accepting"
        epoch1 = int(re.search(r"epoch (\d+)", figures["server1_in_sync_line"]).group(1))
        monitor = AcceptMonitor(pair.nodes, period_s=0.05)
        monitor.start()
        assert p01.status()["bytes_up"] > 0, f"server0's mirror link does not go through {p01.name}: {p01.status()}"

        sender = ReceiptSender(s0, run_id)
        sender.send(range(0, BEFORE_CUT))
        lat, gap = sender.stalls(range(0, BEFORE_CUT))
        note(figures, "before_cut_receipted", BEFORE_CUT, f"{BEFORE_CUT} (longest receipt {lat * 1000:.0f} ms)")

        # -- 2. partition: server0 keeps serving, server1 leaves the set ------
        pos0 = s0.log_pos()
        t_cut = time.time()
        p01.cut(CUT_MODE)
        p10.cut(CUT_MODE)
        log(f"mirror link cut both ways ({CUT_MODE})")
        mids = range(BEFORE_CUT, BEFORE_CUT + DURING_CUT)
        sender.send(mids, rate=DURING_CUT_RATE)
        t_done = time.time()
        lat, gap = sender.stalls(mids)
        first = min(sender.receipt_at[m] for m in mids)
        note(figures, "during_cut_receipted", DURING_CUT,
             f"{DURING_CUT} in {t_done - t_cut:.2f} s after the cut")
        note(figures, "longest_receipt_s", round(lat, 3),
             f"{lat:.3f} s from send to receipt (bound: peer timeout {PEER_TIMEOUT_S:.1f} s + {STALL_MARGIN_S:.1f} s)")
        note(figures, "longest_receipt_gap_s", round(gap, 3),
             f"{gap:.3f} s with messages unreceipted and no receipt coming")
        note(figures, "cut_to_first_receipt_s", round(first - t_cut, 3))
        silent = wait_line(s0, SILENT_LINE, pos0, STALL_BOUND_S, "server1 should be dropped from the in-sync set")
        left = wait_line(s0, LEFT_LINE, pos0, STALL_BOUND_S, "server1 should leave the in-sync set")
        note(figures, "server0_silent_line_after_cut_s", rel(silent, t_cut), silent.line.strip())
        note(figures, "server0_left_line_after_cut_s", rel(left, t_cut), left.line.strip())
        epoch_cut = int(re.search(LEFT_LINE, left.line).group(1))
        assert epoch_cut == epoch1, f"server1 left the set of epoch {epoch_cut}, joined that of {epoch1}"
        assert lat <= STALL_BOUND_S, (
            f"a receipt took {lat:.3f} s during the partition: more than the peer timeout {PEER_TIMEOUT_S:.1f} s "
            f"+ {STALL_MARGIN_S:.1f} s (server0: {silent.line.strip()!r} at +{rel(silent, t_cut)} s)")
        assert port_state(s1) == "refused"
        # The active reports what server1 has not acknowledged: the groups
        # written since the cut (group commit may put several sends in one).
        unacked = s0.metric("halyard_mirror_unacknowledged_groups")
        note(figures, "unacknowledged_groups_during_cut", unacked)
        assert unacked is not None and 1 <= unacked <= DURING_CUT + 10, (
            f"halyard_mirror_unacknowledged_groups is {unacked} with {DURING_CUT} receipted sends server1 never got")
        sender.close()
        sender = None
        note(figures, "proxies_at_kill", f"{p01.name} {p01.status()}; {p10.name} {p10.status()}")

        # -- 3. SIGKILL of server0: server1 must not take over ----------------
        pos1 = s1.log_pos()
        t_kill = s0.kill9()
        log("SIGKILL server0 (server1 out of the in-sync set)")
        hold_end = time.monotonic() + HOLD_OUT_S
        probes = 0
        while time.monotonic() < hold_end:
            assert s1.alive(), f"server1 exited after server0's kill: {s1.exit_reason()}"
            st = port_state(s1)
            assert st == "refused", (
                f"server1 is out of the in-sync set of epoch {epoch_cut} but its client port is {st} "
                f"{time.time() - t_kill:.3f} s after server0's SIGKILL: it took over out of sync\n{s1.log_tail(30)}")
            probes += 1
            time.sleep(0.05)
        note(figures, "server1_held_out", f"client port refused on {probes} probes over {HOLD_OUT_S:.1f} s "
                                          f"after the kill")
        why = wait_line(s1, NOT_IN_SYNC_LINE, pos1, 1.0, "server1 should say why it does not take over")
        note(figures, "server1_not_in_sync_after_kill_s", rel(why, t_kill), why.line.strip())
        m = re.search(NOT_IN_SYNC_LINE, why.line)
        assert m.group(1).strip() == "server0" and int(m.group(2)) == epoch_cut, (
            f"server1 should find the in-sync set {{server0}} of epoch {epoch_cut}: {why.line.strip()}")
        assert not s1.find(OVERRIDE_LINE, since=pos1), "server1 used the operator override"
        assert not s1.find(ACTIVE_LINE, since=pos1), f"server1 went active: {s1.find(ACTIVE_LINE, since=pos1)}"

        # -- 4. heal, restart server0: it takes the lock back, server1 rejoins --
        p01.heal()
        p10.heal()
        pos0, pos1 = s0.log_pos(), s1.log_pos()
        t_restart = time.time()
        s0.restart()
        log("proxies healed; server0 restarted")
        t_acc = wait_accepting(s0, PASSIVE_WAIT_S, "server0 is in its own in-sync set: it should take the lock back")
        note(figures, "server0_restart_to_accept_s", round(t_acc - t_restart, 3))
        active = wait_line(s0, ACTIVE_LINE, pos0, 5.0, "server0's active line")
        m = re.search(ACTIVE_LINE, active.line)
        epoch2, in_sync = int(m.group(1)), m.group(2)
        note(figures, "server0_active_again", active.line.strip())
        assert epoch2 > epoch_cut, f"server0 went active again with epoch {epoch2}, not after {epoch_cut}"
        assert in_sync.strip() == "server0", f"server0's in-sync set on taking the lock back: {{{in_sync}}}"
        joined = wait_line(s0, JOINED_LINE, pos0, PASSIVE_WAIT_S, "server1 should catch up and rejoin")
        note(figures, "server1_rejoined_after_restart_s", rel(joined, t_restart), joined.line.strip())
        assert int(re.search(JOINED_LINE, joined.line).group(1)) == epoch2, joined.line
        snap_sent = s0.find(SNAPSHOT_SENT_LINE, since=pos0)
        snap_got = s1.find(SNAPSHOT_RECEIVED_LINE, since=pos1)
        note(figures, "server1_catch_up",
             ("snapshot" if snap_sent or snap_got else "resume (no snapshot line)")
             + f" ({len(snap_sent)} sent by server0, {len(snap_got)} received by server1)")
        for _ in range(int(1.4 / 0.05)):
            st = port_state(s1)
            assert st == "refused", f"server1 should be passive after server0 came back: its port is {st}"
            time.sleep(0.05)
        assert port_state(s0) == "accepting"
        # Both journals hold the same 300 unconsumed messages (the operator's
        # check, on running brokers).
        compare_queues(figures, s0, s1)
        caught_up = s0.metric("halyard_mirror_unacknowledged_groups")
        note(figures, "unacknowledged_groups_after_rejoin", caught_up)
        assert caught_up is not None and caught_up <= 1, f"server1 rejoined but {caught_up} groups are unacknowledged"

        consume_exactly(figures, "after_heal", pair.addrs(), run_id, set(range(BEFORE_CUT + DURING_CUT)), 0, s0)

        # -- 5. server1, back in sync, takes over from a killed server0 --------
        sender = ReceiptSender(s0, run_id)
        extra = range(BEFORE_CUT + DURING_CUT, BEFORE_CUT + DURING_CUT + AFTER_HEAL)
        sender.send(extra)
        sender.close()
        sender = None
        note(figures, "after_heal_receipted", AFTER_HEAL)
        pos1 = s1.log_pos()
        t_kill2 = s0.kill9()
        log("SIGKILL server0 (server1 in the in-sync set)")
        t_acc = wait_accepting(s1, FAILOVER_WAIT_S["file"], "server1 is in the in-sync set: it should take over")
        note(figures, "failover_s", round(t_acc - t_kill2, 3), f"{t_acc - t_kill2:.3f} s from the second SIGKILL "
                                                               f"of server0 to server1 answering CONNECTED")
        hits = s1.find(ACTIVE_LINE, since=pos1)
        note(figures, "server1_active", hits[0].line.strip() if hits else "no `active with epoch N` line")
        consume_exactly(figures, "after_failover", pair.addrs(), run_id, set(extra), 1, s1)

        monitor.stop()
        worst, bad = monitor.max_concurrent()
        note(figures, "accept_probes", len(monitor.samples))
        note(figures, "accepted_by", " -> ".join(monitor.accepted_by()))
        assert worst <= 1, f"both brokers accepted clients at once: {bad[:5]}"
        assert monitor.accepted_by() == ["server0", "server1"], f"accepting in turn: {monitor.accepted_by()}"
    finally:
        if sender is not None:
            sender.close()
        if monitor is not None and monitor.is_alive():
            monitor.stop()
