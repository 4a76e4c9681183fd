"""Paging: a backlog far beyond `--max-memory-bytes` (268435456 by default
here) is taken without holding producers back, and the node's resident
memory stays bounded while it grows and while it is consumed: message
bodies beyond the limit are dropped from memory and read back from the
journal as consumers reach them.

Each test produces PAGING_MESSAGES (default 1,000,000) persistent messages
of 1 KiB bodies to one queue with no consumer (`harness.bulk_stomp`: 1000
SENDs with receipts in flight), samples the node's RSS every 0.2 s all
along, asserts that its peak stays under PAGING_RSS_BOUND_MIB (640 MiB),
then consumes everything with one consumer and checks every receipted
message, byte for byte, in send order.

- `test_million_backlog_bounded_rss`: one node, every message exactly once;
  the journal deletes (and may clean) segments on its compaction thread
  while paged bodies are read back (the figures give the compactions and
  the append loop's compaction pauses).
- `test_million_backlog_survives_sigkill`: the node SIGKILLed once half
  the messages are receipted (with SENDs in flight), restarted on the same
  data dir (seconds until it answers a STOMP CONNECT), the rest produced;
  every receipted message at least once (duplicates are reported), a SEND
  in flight at the kill at most once.

A node that holds producers back at the memory limit (before paging) fails
with "producers were held at N receipts: no RECEIPT for 30 s ...", naming
the node's `messages hold ... producers blocked` line.
"""

from __future__ import annotations

import re

from harness.bulk_stomp import BulkConsumer, BulkProducer, ConsumerStalled, ProducerHeld
from harness.waiting import wait_until
from paging_helpers import (ACK_MODE, BODIES, DEST, KILL_AT, MAX_MEMORY, MESSAGES, PHASE_S, PREFETCH, RESTART_S,
                            RSS_BOUND, STALL_S, WINDOW, Deliveries, Progress, RssSampler, mib, note)

LOADED_LINE = r"journal loaded: \d+ entries, (\d+) messages in (\d+) queues"
# Reading a little longer once everything arrived, for a duplicate to show up.
SETTLE_S = 2.0


def produce(node, sampler: RssSampler, receipted: bytearray, seqs: range, figs: dict, label: str,
            stop=None) -> tuple[BulkProducer, bool]:
    """Runs a BulkProducer over `seqs` (see BulkProducer.run); records the
    receipts and the rate as `<label>_*` figures. Returns the producer
    (closed, unless stopped early) and whether it finished."""
    prod = BulkProducer(node, DEST, BODIES, receipted, window=WINDOW, stall_s=STALL_S)
    progress = Progress(f"{label} receipts", lambda: prod.receipts, sampler)
    ok = False
    try:
        finished = prod.run(seqs, stop=stop, check=progress, deadline_s=PHASE_S)
        ok = True
    except ProducerHeld as e:
        raise AssertionError(f"{e}. The node's last limit line: {node.memory_line()!r}; peak RSS so far "
                             f"{mib(sampler.peak())}") from None
    finally:
        rate = prod.receipts / prod.send_seconds if prod.send_seconds else 0.0
        note(figs, f"{label}_receipted", prod.receipts)
        note(figs, f"{label}_msg_per_s", round(rate, 1))
        if progress.rates:
            note(figs, f"{label}_msg_per_s_by_10s", " ".join(map(str, progress.rates)))
        if not ok:
            note(figs, f"{label}_stopped_at", f"{prod.receipts} receipts, {prod.sent} sent, "
                                              f"{len(prod.in_flight)} in flight, peak RSS {mib(sampler.peak())}")
            prod.abort()
    if finished:
        prod.close()
    return prod, finished


def consume(node, sampler: RssSampler, deliveries: Deliveries, done, figs: dict) -> None:
    """One consumer (PAGING_ACK, prefetch PREFETCH) until `done()`, then
    SETTLE_S more; records the rate; the queue must then be empty."""
    cons = BulkConsumer(node, DEST, ack=ACK_MODE, prefetch=PREFETCH, stall_s=STALL_S)
    progress = Progress("consumed", lambda: cons.received, sampler)
    ok = False
    try:
        cons.run(deliveries.add, done, settle_s=SETTLE_S, deadline_s=PHASE_S, check=progress)
        ok = True
    except ConsumerStalled as e:
        missing = deliveries.missing_receipted()
        raise AssertionError(f"{e}: {deliveries.distinct} distinct messages, {deliveries.receipted_seen} of the "
                             f"{sum(deliveries.receipted)} receipted ones; {len(missing)} receipted never "
                             f"delivered, e.g. {missing[:20]}; queue depth {node.queue_depth()}") from None
    finally:
        secs = cons.done_seconds or cons.receive_seconds
        note(figs, "consumed", deliveries.total)
        note(figs, "consume_msg_per_s", round(cons.received / secs, 1) if secs else 0.0)
        if progress.rates:
            note(figs, "consume_msg_per_s_by_10s", " ".join(map(str, progress.rates)))
        if ok:
            cons.close()
        else:
            cons.abort()
    wait_until(lambda: node.queue_depth() == 0,
               f"halyard_queue_messages to be 0 after {deliveries.total} deliveries acked", timeout=30.0)


def check_rss(sampler: RssSampler, figs: dict) -> None:
    sampler.stop()
    note(figs, "rss_samples", sampler.samples)
    note(figs, "peak_rss_mib", round(sampler.peak() / (1 << 20), 1),
         f"{mib(sampler.peak())} (VmRSS sampled every 0.2 s: {mib(sampler.sampled_peak())}; "
         f"per process: {', '.join(mib(p) for p in sampler.peaks())}; bound {mib(RSS_BOUND)})")


def assert_paged(node, backlog: int) -> None:
    """A backlog whose bodies pass the memory limit is paged, not held in
    memory (and the producers were not held back to get here)."""
    bodies = backlog * 1024
    paged = node.metric("halyard_paged_messages")
    if MAX_MEMORY == 0:
        # No limit (PAGING_MAX_MEMORY=0, for comparisons): nothing pages.
        assert paged == 0, f"{paged} messages paged without a memory limit"
        return
    if bodies > MAX_MEMORY:
        assert paged and paged >= (bodies - MAX_MEMORY) // 1024, (
            f"{paged} messages paged with {bodies} bytes of bodies over a {MAX_MEMORY}-byte limit")
    held = node.metric("halyard_memory_messages_bytes")
    assert held is not None and held <= MAX_MEMORY, f"{held} bytes of messages held over --max-memory-bytes {MAX_MEMORY}"


def assert_deliveries(d: Deliveries, exactly_once: bool) -> None:
    assert not d.bad, f"{d.bad_count} deliveries are not what was sent, e.g. {d.bad}"
    missing = d.missing_receipted()
    assert not missing, (f"{len(missing)} receipted messages never delivered, e.g. {missing[:20]} "
                         f"({d.distinct} distinct delivered)")
    if exactly_once:
        assert d.duplicates == 0, f"{d.duplicates} duplicate deliveries, e.g. of {d.duplicate_seqs}"
    else:
        twice = d.repeated(receipted=False)
        assert not twice, f"messages never receipted delivered more than once: {twice[:20]}"
    assert d.out_of_order == 0, (f"{d.out_of_order} messages delivered out of send order, "
                                 f"e.g. (previous, this): {d.order_examples}")


def settings(figs: dict) -> None:
    note(figs, "messages", MESSAGES)
    note(figs, "max_memory_bytes", MAX_MEMORY)
    note(figs, "rss_bound_mib", RSS_BOUND >> 20)
    note(figs, "ack_mode", ACK_MODE)


def test_million_backlog_bounded_rss(paging_nodes, figures):
    n = MESSAGES
    settings(figures)
    node = paging_nodes("backlog").start()
    sampler = RssSampler(node).start()
    receipted = bytearray(n)
    deliveries = Deliveries(n, receipted)
    try:
        note(figures, "start_to_accept_s", round(node.ready(RESTART_S), 2))
        base = sampler.current()
        note(figures, "idle_rss_mib", round(base / (1 << 20), 1))

        produce(node, sampler, receipted, range(n), figures, "produce")
        backlog = sampler.current()
        note(figures, "backlog_rss_mib", round(backlog / (1 << 20), 1))
        note(figures, "rss_bytes_per_backlogged_msg", round((backlog - base) / n, 1),
             f"{(backlog - base) / n:.1f} (RSS with the backlog minus idle RSS, over {n} messages)")
        note(figures, "memory_messages_bytes", node.metric("halyard_memory_messages_bytes"))
        note(figures, "paged_metrics", node.metrics_named("paged"))
        assert_paged(node, n)
        depth = node.queue_depth()
        assert depth == n, f"halyard_queue_messages is {depth} with {n} messages receipted and none consumed"

        consume(node, sampler, deliveries, lambda: deliveries.distinct >= n, figures)
        compactions = compaction_figures(node, figures)
    finally:
        check_rss(sampler, figures)
    assert sampler.peak() < RSS_BOUND, sampler.over
    assert_deliveries(deliveries, exactly_once=True)
    assert deliveries.total == n
    # The journal compacted on its own thread while paged bodies were read
    # back from it (a read of a segment being cleaned goes through the
    # cleaning's open handle): the deliveries above were checked byte for byte.
    assert compactions, "the journal never deleted or cleaned a segment while the backlog was consumed"


def compaction_figures(node, figs: dict) -> int:
    """Records the journal's compactions (deletions and cleanings, from its
    log) and the append loop's compaction pauses (`/metrics`); returns how
    many compactions there were."""
    deleted = len(node.find(r"journal compacted: deleted"))
    cleaned = len(node.find(r"journal cleaned: "))
    note(figs, "compactions", deleted + cleaned, f"{deleted} deletions, {cleaned} cleanings")
    count = node.metric("halyard_journal_compaction_stall_seconds_count") or 0
    total = node.metric("halyard_journal_compaction_stall_seconds_sum")
    longest = node.metric("halyard_journal_compaction_stall_max_seconds")
    note(figs, "compaction_pauses", count,
         f"{count:g} pauses of the append loop, {1000 * (total or 0):.3f} ms in all, the longest "
         f"{1000 * (longest or 0):.3f} ms (halyard_journal_compaction_stall_*)")
    return deleted + cleaned


def test_million_backlog_survives_sigkill(paging_nodes, figures):
    n = MESSAGES
    half = int(n * KILL_AT)
    settings(figures)
    node = paging_nodes("killed").start()
    sampler = RssSampler(node).start()
    receipted = bytearray(n)
    deliveries = Deliveries(n, receipted)
    try:
        node.ready(RESTART_S)
        base = sampler.current()
        note(figures, "idle_rss_mib", round(base / (1 << 20), 1))

        # The first half, then SIGKILL with up to WINDOW SENDs in flight.
        prod, finished = produce(node, sampler, receipted, range(n), figures, "produce_before_kill",
                                 stop=lambda p: p.receipts >= half)
        assert not finished
        sent_before = prod.sent
        in_flight = len(prod.in_flight)
        note(figures, "rss_at_kill_mib", round(sampler.current() / (1 << 20), 1))
        node.kill9()
        late = prod.drain(timeout=5.0)
        prod.abort()
        receipted_before = sum(receipted)
        note(figures, "at_kill", f"{receipted_before} receipted ({late} of those RECEIPTs read after the kill), "
                                 f"{sent_before} sent, {in_flight} in flight")

        pos = node.log_pos()
        node.restart()
        note(figures, "restart_to_accept_s", round(node.ready(RESTART_S), 2))
        loaded = node.find(LOADED_LINE, since=pos)
        assert len(loaded) == 1, f"want one `journal loaded` line after the restart, got {[h.line for h in loaded]}"
        m = re.search(LOADED_LINE, loaded[0].line)
        stored = int(m.group(1))
        note(figures, "journal_loaded_messages", stored)
        assert receipted_before <= stored <= sent_before, (
            f"the restarted node loaded {stored} messages: {receipted_before} were receipted, {sent_before} sent "
            f"({loaded[0].line.strip()})")
        note(figures, "restarted_rss_mib", round(sampler.current() / (1 << 20), 1))

        # The rest, from the first number never sent (SENDs in flight at the
        # kill are not sent again: each number is sent once).
        produce(node, sampler, receipted, range(sent_before, n), figures, "produce_after_restart")
        total = sum(receipted)
        backlog = sampler.current()
        note(figures, "receipted", total)
        note(figures, "backlog_rss_mib", round(backlog / (1 << 20), 1))
        note(figures, "rss_bytes_per_backlogged_msg", round((backlog - base) / total, 1),
             f"{(backlog - base) / total:.1f} (RSS with the backlog minus the first process's idle RSS, "
             f"over {total} messages)")
        note(figures, "memory_messages_bytes", node.metric("halyard_memory_messages_bytes"))
        note(figures, "paged_metrics", node.metrics_named("paged"))
        assert_paged(node, total)
        depth = node.queue_depth()
        unreceipted_stored = stored - receipted_before
        assert total <= depth <= total + unreceipted_stored, (
            f"halyard_queue_messages is {depth}: {total} receipted, {unreceipted_stored} stored unreceipted")

        consume(node, sampler, deliveries, lambda: deliveries.receipted_seen >= total, figures)
    finally:
        check_rss(sampler, figures)
    note(figures, "unreceipted_delivered", len(deliveries.unreceipted_delivered()))
    dups = deliveries.repeated(receipted=True)
    note(figures, "receipted_delivered_twice", len(dups),
         f"{len(dups)}" + (f" (e.g. {dups[:20]}: each number was sent once, so the node delivered a stored "
                           "message twice)" if dups else ""))
    assert sampler.peak() < RSS_BOUND, sampler.over
    # Nothing was sent twice and the consumer ran only after the restart:
    # a second delivery would be the node's.
    assert not dups, f"{len(dups)} receipted messages delivered twice, e.g. {dups[:20]}"
    assert_deliveries(deliveries, exactly_once=False)
