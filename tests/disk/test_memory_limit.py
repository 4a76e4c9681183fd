"""`halyard node --max-memory-bytes N`: producers stopped while the messages
held add up to N bytes (`Message::size_bytes`: body, address, headers),
checked after every input the node handles, and let go again below 95 % of
N. No small disk here: plain nodes (`http_nodes`, an ordinary data dir,
`--http`) with `--max-memory-bytes 1048576` (the least accepted, 1 MiB)
and persistent STOMP messages of 10 KiB bodies (10307 bytes each as the
node counts them, so the 102nd reaches the limit).

- page (the default, local journal): nothing is held; past 90 % of the
  limit messages are paged to the journal and come back in order when
  consumed (tests/paging does it at scale).
- block: a SEND is held (no RECEIPT, no ERROR) once
  the limit is reached; acks by a consumer on another connection bring the
  sum below 95 % and the held SEND is receipted; everything receipted is
  consumed once, in order, and the sum goes back to 0.
- fail: the SEND gets an ERROR naming the address and the limit; the
  refused message is never stored; below 95 % a new connection sends.
- a restart (after SIGKILL) onto a journal already holding the limit:
  producers are stopped from the start, until consumers make room.
- `--max-memory-bytes` below 1 MiB (but not 0) refuses to start; 0 is no
  limit.
"""

from __future__ import annotations

import collections
import re
import subprocess
import time
from pathlib import Path

import pytest

from disk_helpers import KiB, MiB, WAIT_S, OrderedReceipts, assert_unanswered, bodies, wait_error
from harness.node import HALYARD_BIN, child_env, free_port, require_binary

LIMIT = 1 * MiB
RESUME_BELOW = LIMIT * 95 / 100
Q = "/queue/mem"
QUEUE = "mem"
BODY_BYTES = 10 * KiB
# What the node counts for each message held in memory besides its size
# (MESSAGE_OVERHEAD_BYTES in core/src/broker/state.rs).
MESSAGE_OVERHEAD = 768
# A SEND not receipted within this is held (a healthy receipt takes ~1 ms).
HELD_S = 2.0
# More than enough sends to reach the limit: ~102 do.
MAX_SENDS = 200
# Between 90 and 110 10 KiB messages fill 1 MiB, headers and overhead counted.
FILL_RANGE = (90, 110)


# -- log lines ------------------------------------------------------------------


def blocked_line(policy: str | None, limit: int = LIMIT) -> str:
    """The node's line when the sum reaches the limit under page (the
    default, None) or block; group 1: the bytes held."""
    head = rf"messages hold (\d+) bytes, --max-memory-bytes is {limit}: producers blocked"
    if policy in (None, "page"):
        return head + re.escape(" (paging keeps bodies on disk; what is left in memory is at the limit)")
    return head + r"(?! \(paging)"


def refused_line(limit: int = LIMIT) -> str:
    return rf"messages hold (\d+) bytes, --max-memory-bytes is {limit}: sends refused \(address-full-policy fail\)"


def resume_line(limit: int = LIMIT) -> str:
    return rf"messages hold (\d+) bytes, below --max-memory-bytes {limit} again: producers resume"


ANY_MEMORY_LINE = r"messages hold \d+ bytes"


# -- helpers --------------------------------------------------------------------


def body(tag: str, i: int) -> str:
    """BODY_BYTES bytes, all the same length (so each message counts the same)."""
    head = f"{tag}-{i:05d}-"
    return head + "x" * (BODY_BYTES - len(head))


def send_persistent(client, dest: str, text: str) -> str:
    """A persistent SEND asking for a receipt, not waited for; returns the id."""
    rid = client.rid("s")
    client.conn.send(dest, text, headers={"persistent": "true"}, receipt=rid)
    return rid


def answered(client, rid: str, timeout: float) -> bool:
    """Waits up to `timeout` for the RECEIPT `rid`, an ERROR or the close;
    True if any came."""
    rec = client.rec
    with rec.cv:
        return rec.cv.wait_for(lambda: rid in rec.receipts or bool(rec.errors) or rec.disconnected, timeout)


def fill(producer, tag: str) -> tuple[list[str], list[str], str, str]:
    """Sends persistent 10 KiB messages with receipts, one at a time, until
    one is not receipted within HELD_S (held) or gets an ERROR (refused).
    Returns (receipted bodies, their receipt ids, the last one's body, its
    receipt id)."""
    sent: list[str] = []
    rids: list[str] = []
    for i in range(MAX_SENDS):
        text = body(tag, i)
        rid = send_persistent(producer, Q, text)
        if not answered(producer, rid, HELD_S) or rid not in producer.rec.receipts:
            return sent, rids, text, rid
        sent.append(text)
        rids.append(rid)
    raise AssertionError(f"{MAX_SENDS} messages of {BODY_BYTES} bytes receipted: the {LIMIT}-byte limit never "
                         "stopped the producer")


def message_size(held: float, n: int) -> int:
    """The size the node counts per message (all have the same body length
    and headers), from the sum `held` of `n` of them."""
    assert n > 0 and held % n == 0, f"{held} bytes held by {n} messages of the same size"
    size = int(held // n)
    low = BODY_BYTES + MESSAGE_OVERHEAD
    assert low < size < low + 200, f"{size} bytes counted for a {BODY_BYTES}-byte body (with {MESSAGE_OVERHEAD} of overhead)"
    return size


def acks_to_resume(n: int, size: int) -> int:
    """How many of the `n` messages must be acked for the sum to go below 95 %."""
    k = 0
    while (n - k) * size >= RESUME_BELOW:
        k += 1
    return k


def assert_filled(node, n: int, line: str, hit) -> int:
    """After fill(): the limit was reached by the n-th message (not before),
    /metrics and the log line agree. Returns the per-message size."""
    lo, hi = FILL_RANGE
    assert lo <= n <= hi, f"{n} messages of {BODY_BYTES} bytes receipted before the {LIMIT}-byte limit stopped them"
    m = node.metrics()
    held = m.value("halyard_memory_messages_bytes")
    assert held >= LIMIT, f"producers stopped with {held:.0f} bytes held, below --max-memory-bytes {LIMIT}"
    size = message_size(held, n)
    assert (n - 1) * size < LIMIT, f"the limit was reached at {(n - 1) * size} bytes already, yet {n} were taken"
    logged = int(re.search(line, hit.line).group(1))
    assert logged == held, f"the log says {logged} bytes held, /metrics {held:.0f}: {hit.line}"
    assert m.value("halyard_producers_blocked") == 1.0
    assert m.value("halyard_memory_full_total") == 1.0
    assert m.value("halyard_messages") == n
    return size


def settle_and_take(client, sub: str, n: int) -> list[str]:
    """`n` messages on `sub`, then 0.5 s for a duplicate to show up."""
    client.wait_messages(n, sub=sub, timeout=WAIT_S)
    time.sleep(0.5)
    return bodies(client.messages(sub))


def assert_once_in_order(got: list[str], expected: list[str], where: str) -> None:
    counts = collections.Counter(got)
    missing = [b[:12] for b in expected if b not in counts]
    duplicated = [b[:12] for b, c in counts.items() if c > 1]
    unexpected = [b[:12] for b in counts if b not in expected]
    assert not (missing or duplicated or unexpected), (
        f"{where}: missing {missing}, duplicated {duplicated}, unexpected {unexpected}")
    assert got == expected, f"{where}: out of order: {[b[:12] for b in got]}"


def ack_until_resumed(node, producer, consumer, held_rid: str, n: int, size: int, expected: list[str]) -> int:
    """The consumer (subscribed client-individual) acks the first messages
    one at a time; before the ack that takes the sum below 95 % the held
    SEND is unanswered and producers blocked; after it the SEND is
    receipted and the resume logged. Returns the log position before that ack."""
    k = acks_to_resume(n, size)
    assert 1 <= k < n, (n, size, k)
    for i in range(k):
        msgs = consumer.wait_messages(i + 1, sub="c", timeout=WAIT_S)
        assert msgs[i].body == expected[i], f"delivery {i}: {msgs[i].body[:12]}, want {expected[i][:12]}"
        m = node.metrics()
        held = (n - i) * size
        assert m.value("halyard_memory_messages_bytes") == held, (i, m.value("halyard_memory_messages_bytes"))
        assert m.value("halyard_producers_blocked") == 1.0, f"producers resumed after {i} acks, at {held} bytes"
        assert held_rid not in producer.rec.receipts, (
            f"the held SEND was receipted after {i} acks, with {held} bytes held (resume below {RESUME_BELOW:.0f})")
        assert not producer.rec.errors and not producer.rec.disconnected
        pos = node.log_pos()
        consumer.ack(msgs[i])
    producer.wait_receipt(held_rid, timeout=WAIT_S)
    hit = node.wait_log(resume_line(), timeout=WAIT_S, since=pos)
    assert int(re.search(resume_line(), hit.line).group(1)) == (n - k) * size, hit.line
    return pos


def ack_all(consumer, expected: list[str], start: int) -> None:
    """Acks deliveries start.. as they come, until len(expected) arrived."""
    for i in range(start, len(expected)):
        msgs = consumer.wait_messages(i + 1, sub="c", timeout=WAIT_S)
        consumer.ack(msgs[i])


def memory_node(http_nodes, name: str, policy: str | None = None, limit: int | str = LIMIT):
    """A node with `--max-memory-bytes limit` (and the policy), on an
    ordinary data dir; `--max-disk-usage 100`: only a completely full disk
    of this machine would stop producers as well."""
    args = ["--max-memory-bytes", str(limit), "--max-disk-usage", "100"]
    if policy is not None:
        args += ["--address-full-policy", policy]
    return http_nodes(name, extra_args=args)


# -- tests ------------------------------------------------------------------------


def test_page_by_default_pages_instead_of_holding(http_nodes, stomp_clients):
    """The default policy on the local journal: past the limit messages are
    paged (bodies in the journal only), producers are not held, and a
    consumer gets every message back in order, byte for byte."""
    node = memory_node(http_nodes, "mem-page").start()
    producer = stomp_clients(node)
    n = 3 * LIMIT // BODY_BYTES
    expected = [body("p", i) for i in range(n)]
    for text in expected:
        rid = send_persistent(producer, Q, text)
        assert answered(producer, rid, WAIT_S) and rid in producer.rec.receipts, (
            f"SEND {rid} not receipted past the limit under page: {[e.headers for e in producer.rec.errors]}")
    m = node.metrics()
    assert m.value("halyard_paged_messages") >= n - LIMIT // BODY_BYTES, m.value("halyard_paged_messages")
    assert m.value("halyard_memory_messages_bytes") <= LIMIT
    assert m.value("halyard_producers_blocked") == 0.0
    assert m.value("halyard_sends_held_total") == 0.0
    assert node.count(ANY_MEMORY_LINE) == 0, "a memory line although paging kept the messages under the limit"
    consumer = stomp_clients(node)
    consumer.subscribe(Q, "c", ack="client-individual")
    ack_all(consumer, expected, 0)
    got = settle_and_take(consumer, "c", n)
    assert_once_in_order(got, expected, "paged backlog")
    m = node.metrics()
    assert m.value("halyard_paged_in_total") >= n - LIMIT // BODY_BYTES
    node.wait_metric("halyard_paged_messages", lambda v: v == 0.0, "== 0 once everything is consumed", WAIT_S)


@pytest.mark.parametrize("policy", ["block"])
def test_sends_held_at_the_memory_limit(http_nodes, stomp_clients, policy):
    node = memory_node(http_nodes, f"mem-{policy or 'default'}", policy).start()
    producer = stomp_clients(node)
    order = OrderedReceipts(producer)
    pos = node.log_pos()
    sent, rids, held_body, held_rid = fill(producer, "m")
    assert not producer.rec.errors and not producer.rec.disconnected, (
        f"the SEND at the limit got an ERROR or a close: {[e.headers for e in producer.rec.errors]}")
    hit = node.wait_log(blocked_line(policy), timeout=WAIT_S, since=pos)
    n = len(sent)
    size = assert_filled(node, n, blocked_line(policy), hit)
    assert "paging" not in hit.line, hit.line
    assert node.count(refused_line()) == 0
    m = node.metrics()
    assert m.value("halyard_sends_held_total") >= 1
    assert m.value("halyard_sends_refused_full_total") == 0.0
    assert m.value("halyard_disk_full_total") == 0.0

    # Consumers go on: another connection takes and acks the messages.
    consumer = stomp_clients(node)
    consumer.subscribe(Q, "c", ack="client-individual")
    expected = sent + [held_body]
    resumed_at = ack_until_resumed(node, producer, consumer, held_rid, n, size, expected)
    assert order.order() == rids + [held_rid], "receipts out of order"
    ack_all(consumer, expected, acks_to_resume(n, size))
    got = settle_and_take(consumer, "c", len(expected))
    assert_once_in_order(got, expected, "after the resume")
    assert node.count(blocked_line(policy)) == 1 and node.count(resume_line(), since=resumed_at) == 1

    m = node.metrics()
    assert m.value("halyard_producers_blocked") == 0.0
    assert m.value("halyard_memory_full_total") == 1.0
    # Every message acked: nothing held, the sum back to 0.
    node.wait_metric("halyard_memory_messages_bytes", lambda v: v == 0.0, "== 0 once everything is acked", WAIT_S)
    producer.send(Q, "after")
    consumer.wait_for_body("after", sub="c", timeout=WAIT_S)
    assert not producer.rec.errors and not consumer.rec.errors
    assert not producer.rec.disconnected and not consumer.rec.disconnected


def test_sends_refused_at_the_memory_limit_under_fail(http_nodes, stomp_clients):
    node = memory_node(http_nodes, "mem-fail", "fail").start()
    producer = stomp_clients(node)
    pos = node.log_pos()
    sent, _, refused_body, refused_rid = fill(producer, "f")
    err = wait_error(producer)
    msg = err.get("message", "")
    want = (rf'send to "{QUEUE}" refused: messages hold (\d+) bytes, --max-memory-bytes is {LIMIT}: '
            r"sends refused \(address-full-policy fail\)")
    assert re.fullmatch(want, msg), msg
    assert refused_rid not in producer.rec.receipts
    hit = node.wait_log(refused_line(), timeout=WAIT_S, since=pos)
    n = len(sent)
    size = assert_filled(node, n, refused_line(), hit)
    assert int(re.fullmatch(want, msg).group(1)) == n * size, msg
    assert node.count(r"producers blocked") == 0
    m = node.metrics()
    assert m.value("halyard_sends_refused_full_total") >= 1
    assert m.value("halyard_sends_held_total") == 0.0
    # The refused message was not stored.
    assert m.value("halyard_memory_messages_bytes") == n * size
    assert m.value("halyard_messages") == n

    # A new connection is refused too while full.
    again = stomp_clients(node)
    rid = send_persistent(again, Q, "refused-2")
    assert "refused" in wait_error(again).get("message", "")
    assert rid not in again.rec.receipts

    consumer = stomp_clients(node)
    consumer.subscribe(Q, "c", ack="client-individual")
    k = acks_to_resume(n, size)
    for i in range(k):
        msgs = consumer.wait_messages(i + 1, sub="c", timeout=WAIT_S)
        assert node.metric("halyard_producers_blocked") == 1.0, f"resumed after {i} acks"
        pos = node.log_pos()
        consumer.ack(msgs[i])
    hit = node.wait_log(resume_line(), timeout=WAIT_S, since=pos)
    assert int(re.search(resume_line(), hit.line).group(1)) == (n - k) * size, hit.line
    node.wait_metric("halyard_producers_blocked", lambda v: v == 0.0, "== 0 below 95 % of the limit", WAIT_S)

    late = stomp_clients(node)
    late.send(Q, "after", persistent="true")  # receipted (Client.send waits for it)
    expected = sent + ["after"]
    ack_all(consumer, expected, k)
    got = settle_and_take(consumer, "c", len(expected))
    assert refused_body not in got and "refused-2" not in got, "a refused SEND was stored"
    assert_once_in_order(got, expected, "after the refusals")
    assert not consumer.rec.errors and not consumer.rec.disconnected
    assert node.metric("halyard_memory_full_total") == 1.0


def test_restart_onto_a_journal_over_the_memory_limit(http_nodes, stomp_clients):
    node = memory_node(http_nodes, "mem-restart", "block").start()
    producer = stomp_clients(node)
    pos = node.log_pos()
    sent, _, held_body, _ = fill(producer, "r")
    hit = node.wait_log(blocked_line("block"), timeout=WAIT_S, since=pos)
    n = len(sent)
    size = assert_filled(node, n, blocked_line("block"), hit)

    node.kill9()
    pos = node.log_pos()
    node.restart()
    loaded = node.wait_log(r"journal loaded: \d+ entries, (\d+) messages in (\d+) queues", since=pos)
    assert re.search(r"(\d+) messages in 1 queues", loaded.line).group(1) == str(n), (
        f"{n} messages were receipted before the SIGKILL: {loaded.line}")
    node.wait_log(r"node is live \(epoch \d+\)", since=pos)
    hit = node.wait_log(blocked_line("block"), timeout=WAIT_S, since=pos)
    assert int(re.search(blocked_line("block"), hit.line).group(1)) == n * size, hit.line
    m = node.metrics()
    assert m.value("halyard_memory_messages_bytes") == n * size
    assert m.value("halyard_producers_blocked") == 1.0, "restarted over the limit, producers are not stopped"
    assert m.value("halyard_memory_full_total") == 1.0

    # The first SEND after the restart is held.
    producer = stomp_clients(node)
    t_sent = time.monotonic()
    held_rid = send_persistent(producer, Q, body("new", 0))
    assert_unanswered(producer, held_rid, t_sent + HELD_S)
    assert node.metric("halyard_memory_messages_bytes") == n * size, "a SEND was stored over the limit"
    assert node.metric("halyard_sends_held_total") >= 1

    consumer = stomp_clients(node)
    consumer.subscribe(Q, "c", ack="client-individual")
    expected = sent + [body("new", 0)]
    k = acks_to_resume(n, size)
    ack_until_resumed(node, producer, consumer, held_rid, n, size, expected)
    ack_all(consumer, expected, k)
    got = settle_and_take(consumer, "c", len(expected))
    assert held_body not in got, "the SEND held when the node was killed (never receipted) was stored"
    assert_once_in_order(got, expected, "after the restart")
    node.wait_metric("halyard_memory_messages_bytes", lambda v: v == 0.0, "== 0 once everything is acked", WAIT_S)
    assert node.metric("halyard_producers_blocked") == 0.0


def run_refused(tmp_path: Path, *args: str, env_extra: dict | None = None) -> str:
    """`halyard node ARGS` must exit non-zero by itself, without a data dir;
    returns its output."""
    require_binary()
    data = tmp_path / "data"
    cmd = [str(HALYARD_BIN), "node", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data), *args]
    env = child_env()
    env.update(env_extra or {})
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} (env {env_extra}) was still running after 20 s: it must refuse "
                             f"to start; output {e.stdout!r} {e.stderr!r}") from None
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"{' '.join(cmd)} (env {env_extra}) exited 0: {out!r}"
    assert "accepting clients" not in out and "node is live" not in out, out
    assert not data.exists(), f"a refused start made {data}"
    return out


def test_memory_limit_values(tmp_path, http_nodes, stomp_clients):
    for value in ("1000", "1048575"):
        out = run_refused(tmp_path, "--max-memory-bytes", value)
        want = f"--max-memory-bytes {value}: must be 0 (no limit) or at least 1048576 (1 MiB)"
        assert want in out, f"want {want!r} in {out!r}"
    out = run_refused(tmp_path, env_extra={"HALYARD_MAX_MEMORY_BYTES": "1000"})
    assert "--max-memory-bytes 1000: must be 0 (no limit) or at least 1048576 (1 MiB)" in out, out

    # 0: no limit. More than the least limit (1 MiB) is taken without a stop.
    node = memory_node(http_nodes, "mem-unlimited", limit=0).start()
    c = stomp_clients(node)
    count = 150
    rids = [send_persistent(c, Q, body("u", i)) for i in range(count)]
    for rid in rids:
        c.wait_receipt(rid, timeout=WAIT_S)
    m = node.metrics()
    held = m.value("halyard_memory_messages_bytes")
    assert held > LIMIT and message_size(held, count)
    assert m.value("halyard_producers_blocked") == 0.0
    assert m.value("halyard_memory_full_total") == 0.0
    assert m.value("halyard_sends_held_total") == 0.0
    assert node.count(ANY_MEMORY_LINE) == 0, node.find(ANY_MEMORY_LINE)[0].line
