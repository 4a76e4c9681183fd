"""A journal append that meets ENOSPC: a 16 MiB tmpfs with
`--max-disk-usage 100` (only a completely full disk would stop producers)
and 1 MiB journal segments, filled from outside until ~48 KiB are free; a
512 KiB SEND cannot be written.

Before that, the disk filled to the last byte stops producers (the limit
100 is a full disk) and emptied lets them go on. The node must not receipt it, log `journal append failed (...), stepping
down`, close its client connections and stay up; once there is room again
it is live again (`node is live (epoch N)`) and serves every receipted
message exactly once. The journal it leaves (copied out of the tmpfs while
the node is stopped with SIGSTOP, then SIGKILLed: the state a crash leaves)
loads in a new node without error, with the same messages."""

from __future__ import annotations

import collections
import signal
import time

from disk_helpers import DISK_SEEN_S, KiB, MiB, WAIT_S, blocked_line, bodies, resume_line, send_nowait
from harness.node import wait_accepts

SIZE_MIB = 16
SMALL = [f"m-{i:02d}" for i in range(20)]
BIG = "B" * (512 * KiB)
LEFT_FREE = 48 * KiB


def consume_all(client, q: str, sub: str, ack: str, expected: list[str]) -> list[str]:
    """Subscribes and takes what the queue holds: the expected messages, then
    0.5 s for anything more (the never-receipted big one, or a duplicate)."""
    client.subscribe(q, sub, ack=ack)
    client.wait_messages(len(expected), sub=sub, timeout=WAIT_S)
    time.sleep(0.5)
    return bodies(client.messages(sub))


def assert_receipted_once(got: list[str], expected: list[str], where: str) -> None:
    """Every receipted message exactly once, in order; the big one at most once."""
    others = [b for b in got if b != BIG]
    counts = collections.Counter(others)
    missing = [e for e in expected if e not in counts]
    duplicated = [b for b, n in counts.items() if n > 1]
    unexpected = [b[:20] for b in counts if b not in expected]
    assert not (missing or duplicated or unexpected), (
        f"{where}: receipted messages missing {missing}, duplicated {duplicated}; unexpected {unexpected}")
    assert others == expected, f"{where}: out of order: {others}"
    big = got.count(BIG)
    assert big <= 1, f"{where}: the never-receipted 512 KiB message is there {big} times"


def test_enospc_during_an_append(disk_nodes, stomp_clients, tmp_path):
    node = disk_nodes("enospc", SIZE_MIB, max_disk_usage="100",
                      extra_args=["--segment-bytes", str(1 * MiB)]).start()
    q = "/queue/disk.enospc"
    c = stomp_clients(node)
    for body in SMALL:
        c.send(q, body)

    # --max-disk-usage 100: only a completely full disk stops producers.
    pos = node.log_pos()
    assert node.fill_leaving(0) == 0
    node.wait_log(blocked_line("100"), timeout=DISK_SEEN_S, since=pos)
    node.remove_fillers()
    node.wait_log(resume_line("100"), timeout=DISK_SEEN_S, since=pos)

    free = node.fill_leaving(LEFT_FREE)
    assert free <= 64 * KiB, f"{free} bytes still free"
    assert node.metric("halyard_producers_blocked") == 0.0
    journal_before = node.journal_bytes()

    pos = node.log_pos()
    rid = send_nowait(c, q, BIG)
    node.wait_log(r"journal append failed \(.*\), stepping down", timeout=WAIT_S, since=pos)
    c.rec.wait(lambda: c.rec.disconnected or rid in c.rec.receipts, WAIT_S, "the node to close the connection")
    assert rid not in c.rec.receipts, "a SEND that could not be written was receipted"
    assert node.alive(), f"the node exited on ENOSPC\n{node.log_tail()}"

    node.remove_fillers()
    node.wait_log(r"node is live \(epoch \d+\)", timeout=WAIT_S, since=pos)
    wait_accepts(node, WAIT_S, poll=0.05, probe_timeout=2.0)
    assert node.alive()
    # What was written of the failed batch is gone (the new epoch's record is small).
    journal_after = node.journal_bytes()
    assert journal_after < journal_before + 4 * KiB, (
        f"the journal grew from {journal_before} to {journal_after} bytes: the failed append was kept")

    # Producers go on, and every receipted message is there once (not acked
    # here, so they stay for the restart below).
    reader = stomp_clients(node)
    reader.send(q, "after")
    expected = SMALL + ["after"]
    assert_receipted_once(consume_all(reader, q, "r", "client-individual", expected), expected,
                          "after the failed append")
    reader.disconnect()

    # The state a crash leaves: copied while the node is stopped, then SIGKILL.
    node.proc.send_signal(signal.SIGSTOP)
    try:
        copy = node.data_snapshot(tmp_path / "enospc-data-copy")
    finally:
        node.kill9()
    assert (copy / "journal").is_dir(), list(copy.iterdir())

    again = disk_nodes.plain("enospc-reload", copy).start()
    loaded = again.wait_log(r"journal loaded: \d+ entries", timeout=WAIT_S)
    assert again.count(r"journal open failed") == 0, again.log_tail()
    consumer = stomp_clients(again)
    assert_receipted_once(consume_all(consumer, q, "c", "auto", expected), expected,
                          f"after a restart ({loaded.line})")
