"""Failback of mirrored brokers (issue 13: "A returning broker catches up
first, then may take the lock back where failback is configured"), with
real processes: server0 `--role primary --allow-failback`, server1 `--role
backup`, each on its own journal, mirroring to each other with
`--mirror-sync`, one lock (a file lock, or ZooKeeper).

`test_failback[file|zookeeper]`, in steps:

1. server0 active, server1 passive and in the in-sync set (`start_pair`);
   100 messages to server0 with receipts.
2. SIGKILL of server0: server1 takes over; 100 more with receipts on
   server1.
3. A failover producer starts on a second queue (300 messages, 10 in flight,
   60/s: it spans the handback), then server0 restarts with the same
   flags. It catches up (snapshot), server1 logs `peer server0 joined the
   in-sync set of epoch E` and only then `primary server0 is in sync (in
   the in-sync set of epoch E) and asks for failback: handing the active
   role back`; server1 drains and releases; server0 logs `failback: took
   the active role back under epoch E2` (E2 > E) and accepts clients;
   server1's port closes and it rejoins server0's in-sync set.
4. `halyard mirror compare` says both journals hold the same queues; a
   consumer gets all 200 receipted messages of the first queue from
   server0, exactly once, in order; every receipted message of the second
   queue is consumed, none stored twice.

Throughout, an `AcceptMonitor`: never both accepting; accepting in turn
server0, server1, server0.

`test_no_failback_without_allow_failback`: the same with server0 `--role
primary` only: after its restart it catches up and joins server1's in-sync
set, and stays passive (its port closed for 15 check periods, no handing
back line); the 200 are consumed from server1.
"""

from __future__ import annotations

import re
import time

import pytest

from harness.failover import FailoverConsumer, FailoverProducer, assert_report, check_delivery
from harness.logs import log
from harness.mirror import (ACTIVE_LINE, CHECK_PERIOD_MS, PASSIVE_WAIT_S, check_monitor, compare_queues,
                            kill_and_time_failover, note, port_state, start_pair, wait_accepting)
from mirror_helpers import new_run_id, stop_clients
from test_partition import ReceiptSender, consume_exactly, wait_line

BEFORE_KILL = 100
AFTER_KILL = 100
# The second queue's traffic while server0 comes back and takes over.
DURING = 300
DURING_RATE = 60.0
DURING_DEST = "/queue/failbackQueue"
DURING_BODY_BYTES = 256
PRODUCE_WAIT_S = 90.0
CONSUME_WAIT_S = 60.0
# How long server0 without --allow-failback must stay passive once in sync.
HOLD_PASSIVE_S = 15 * CHECK_PERIOD_MS / 1000

JOINED = r"peer server0 joined the in-sync set of epoch (\d+)"
HANDING_BACK = (r"primary server0 is in sync \(in the in-sync set of epoch (\d+)\) and asks for failback: "
                r"handing the active role back")
TOOK_BACK = r"failback: took the active role back under epoch (\d+)"
S1_JOINED = r"peer server1 joined the in-sync set of epoch (\d+)"


def make_pair(mirror_pair, kind: str, allow_failback: bool):
    pair = mirror_pair(kind)
    # `--allow-failback` last and bare, as an operator writes it.
    pair.server0.extra_args += ["--role", "primary"] + (["--allow-failback"] if allow_failback else [])
    pair.server1.extra_args += ["--role", "backup"]
    return pair


def fail_over_to_server1(pair, figures, run_id: str) -> None:
    """Steps 1 and 2: 100 receipted on server0, SIGKILL, 100 receipted on server1."""
    s0, s1 = pair.server0, pair.server1
    sender = ReceiptSender(s0, run_id)
    try:
        sender.send(range(0, BEFORE_KILL))
    finally:
        sender.close()
    note(figures, "receipted_by_server0", BEFORE_KILL)
    kill_and_time_failover(pair, figures, f"after {BEFORE_KILL} receipts")
    sender = ReceiptSender(s1, run_id)
    try:
        sender.send(range(BEFORE_KILL, BEFORE_KILL + AFTER_KILL))
    finally:
        sender.close()
    note(figures, "receipted_by_server1", AFTER_KILL)


@pytest.mark.parametrize("kind", ["file", "zookeeper"])
def test_failback(mirror_pair, figures, kind):
    pair = make_pair(mirror_pair, kind, allow_failback=True)
    s0, s1 = pair.server0, pair.server1
    monitor = start_pair(pair, figures)
    run_id = new_run_id()
    producer = consumer = None
    try:
        fail_over_to_server1(pair, figures, run_id)
        epoch1 = int(re.search(ACTIVE_LINE, s1.find(ACTIVE_LINE)[-1].line).group(1))

        # -- 3. traffic on, server0 back: catch up, then the handback ---------
        producer = FailoverProducer(pair.addrs(), DURING_DEST, DURING, f"{run_id}-during", size=DURING_BODY_BYTES,
                                    window=10, rate=DURING_RATE, give_up_s=60.0)
        producer.start()
        time.sleep(0.5)
        pos0, pos1 = s0.log_pos(), s1.log_pos()
        t_restart = time.time()
        s0.restart()
        log("server0 restarted (--role primary --allow-failback)")
        joined = wait_line(s1, JOINED, pos1, PASSIVE_WAIT_S, "server0 should catch up and join the in-sync set")
        hand = wait_line(s1, HANDING_BACK, pos1, PASSIVE_WAIT_S, "server1 should hand the active role back")
        t_acc = wait_accepting(s0, PASSIVE_WAIT_S, "server0 should take the active role back")
        took = wait_line(s0, TOOK_BACK, pos0, 5.0, "server0's failback line")
        note(figures, "server0_joined_after_restart_s", round(joined.ts - t_restart, 3), joined.line.strip())
        note(figures, "handing_back_after_restart_s", round(hand.ts - t_restart, 3), hand.line.strip())
        note(figures, "server0_took_back_after_restart_s", round(took.ts - t_restart, 3), took.line.strip())
        note(figures, "handing_back_line_to_server0_accepting_s", round(t_acc - hand.ts, 3))
        assert int(re.search(JOINED, joined.line).group(1)) == epoch1, joined.line
        assert int(re.search(HANDING_BACK, hand.line).group(1)) == epoch1, hand.line
        assert hand.ts >= joined.ts, "handing back before server0 was in the in-sync set"
        epoch2 = int(re.search(TOOK_BACK, took.line).group(1))
        assert epoch2 > epoch1, f"server0 took the role back under epoch {epoch2}, not after {epoch1}"
        # server1 is passive again and rejoins server0's in-sync set.
        rejoined = wait_line(s0, S1_JOINED, pos0, PASSIVE_WAIT_S, "server1 should rejoin server0's in-sync set")
        assert int(re.search(S1_JOINED, rejoined.line).group(1)) == epoch2, rejoined.line
        note(figures, "server1_rejoined_after_restart_s", round(rejoined.ts - t_restart, 3), rejoined.line.strip())
        assert port_state(s1) == "refused", f"server1 handed back but its port is {port_state(s1)}"
        assert port_state(s0) == "accepting"

        producer.join(timeout=PRODUCE_WAIT_S)
        assert not producer.is_alive() and producer.failure is None, (
            f"the producer on {DURING_DEST} did not finish: receipted {len(producer.receipted)}/{DURING}, "
            f"failure {producer.failure!r}, errors {producer.errors[-5:]}")
        note(figures, "during_receipted", len(producer.receipted),
             f"{len(producer.receipted)} receipted, {producer.resends} resent, reconnects "
             f"{[i for _, i in producer.reconnects]}")
        assert len(producer.receipted) == DURING
        # The traffic crossed the handback: sent to server1, then to server0.
        went = [i for _, i in producer.reconnects]
        assert went[-1] == 0 and 1 in went, f"the producer should have moved from server1 to server0: {went}"

        # -- 4. the same journals; everything from server0, once --------------
        compare_queues(figures, s0, s1)
        consume_exactly(figures, "after_failback", pair.addrs(), run_id, set(range(BEFORE_KILL + AFTER_KILL)), 0, s0)
        consumer = FailoverConsumer(pair.addrs(), DURING_DEST, f"{run_id}-during", size=DURING_BODY_BYTES,
                                    give_up_s=30.0)
        consumer.start()
        ok = consumer.wait_for(set(producer.receipted), timeout=CONSUME_WAIT_S)
        time.sleep(1.0)
        stop_clients(consumer)
        report = check_delivery(producer, consumer)
        note(figures, "during_delivery", report.line())
        assert ok, f"not every receipted message of {DURING_DEST} was consumed: {report.line()}"
        assert_report(report)
        assert {i for _, i in consumer.connects} == {0}, f"consumed from {consumer.connects}, not server0"

        check_monitor(monitor, figures, ["server0", "server1", "server0"])
    finally:
        stop_clients(producer, consumer)
        if monitor.is_alive():
            monitor.stop()


def test_no_failback_without_allow_failback(mirror_pair, figures):
    pair = make_pair(mirror_pair, "file", allow_failback=False)
    s0, s1 = pair.server0, pair.server1
    monitor = start_pair(pair, figures)
    run_id = new_run_id()
    try:
        fail_over_to_server1(pair, figures, run_id)
        pos0, pos1 = s0.log_pos(), s1.log_pos()
        t_restart = time.time()
        s0.restart()
        log("server0 restarted (--role primary, no --allow-failback)")
        joined = wait_line(s1, JOINED, pos1, PASSIVE_WAIT_S, "server0 should catch up and join the in-sync set")
        note(figures, "server0_joined_after_restart_s", round(joined.ts - t_restart, 3), joined.line.strip())
        end = time.monotonic() + HOLD_PASSIVE_S
        probes = 0
        while time.monotonic() < end:
            assert s0.alive(), f"server0 exited: {s0.exit_reason()}"
            st = port_state(s0)
            assert st == "refused", f"server0 has no --allow-failback but its port is {st}\n{s0.log_tail(30)}"
            probes += 1
            time.sleep(0.05)
        note(figures, "server0_stayed_passive", f"port refused on {probes} probes over {HOLD_PASSIVE_S:.1f} s")
        assert port_state(s1) == "accepting"
        assert not s1.find(r"handing the active role back", since=pos1)
        assert not s0.find(TOOK_BACK, since=pos0)
        compare_queues(figures, s1, s0)
        consume_exactly(figures, "no_failback", pair.addrs(), run_id, set(range(BEFORE_KILL + AFTER_KILL)), 1, s1)
        check_monitor(monitor, figures, ["server0", "server1"])
    finally:
        if monitor.is_alive():
            monitor.stop()
