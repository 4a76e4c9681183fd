"""Paging over the Kafka journal: a node whose journal is a Kafka topic takes
a backlog far beyond `--max-memory-bytes` (16 MiB by default here, see
scripts/ci/kafka-paging.sh) without holding producers back, keeps only a
stand-in of each message past 90% of it, and reads the bodies back from the
topic (by offset) as the consumer reaches them; a backup's standby copy of
the journal keeps no more message bodies than the node would either, and
reads the rest back from the topic when it takes over.

Run by scripts/ci/kafka-paging.sh (it starts Kafka and sets PAGING_KAFKA=1;
without it this module is left out, so that scripts/ci/paging.sh, which
runs the local-journal tests of this folder, needs no Kafka). Settings as
in conftest.py: PAGING_MESSAGES (the script's default 100,000),
PAGING_MAX_MEMORY (the script's default 16777216), PAGING_RSS_BOUND_MIB,
PAGING_STALL_S, PAGING_ACK.

- `test_kafka_backlog_paged_and_consumed_in_order`: one node on Kafka;
  PAGING_MESSAGES persistent 1 KiB messages with receipts and no consumer;
  `halyard_paged_messages` > 0 (at least the bodies over the limit) and
  `halyard_memory_messages_bytes` within the limit; then one consumer gets
  every message exactly once, byte for byte, in send order.
- `test_kafka_backlog_survives_sigkill_failover`: a primary and a backup on
  one cluster id; the primary SIGKILLed at three quarters of the backlog
  (SENDs in flight); the backup (whose RSS before it takes over is bounded:
  its standby copy keeps bodies only up to the paging threshold) takes
  over, reading the copy's other message records back from the topic
  (`records_read_back` of its `Kafka journal fenced and read to its end`
  line); the rest is produced to it, paged as well, and one consumer gets
  every receipted message, none twice, in send order.
"""

from __future__ import annotations

import os
import re
import time

import pytest

if os.environ.get("PAGING_KAFKA") != "1":
    pytest.skip("the Kafka paging tests run with scripts/ci/kafka-paging.sh (PAGING_KAFKA=1)",
                allow_module_level=True)

from harness.bulk_stomp import BulkConsumer, BulkProducer, ConsumerStalled, ProducerHeld  # noqa: E402
from harness.kafka import BACKUP_ANNOUNCED, BACKUP_LIVE, ensure_kafka, new_cluster_id  # noqa: E402
from harness.node import wait_accepts  # noqa: E402
from harness.waiting import wait_until  # noqa: E402
from paging_helpers import (ACK_MODE, BODIES, DEST, MAX_MEMORY, MESSAGES, PHASE_S, PREFETCH, RESTART_S,  # noqa: E402
                            RSS_BOUND, STALL_S, WINDOW, Deliveries, Progress, RssSampler, mib, note)

SESSION_TIMEOUT_MS = 3000
SETTLE_S = 2.0
MiB = 1 << 20
KAFKA_OPENED = (r"Kafka journal fenced and read to its end.* records=(\d+) .*from_standby_copy=(\w+) "
                r"records_read_back=(\d+)")


@pytest.fixture(scope="module")
def kafka() -> str:
    return ensure_kafka()


def kafka_args(bootstrap: str, cluster_id: str, name: str, role: str) -> list[str]:
    return ["--kafka-bootstrap", bootstrap, "--cluster-id", cluster_id, "--node-id", name, "--role", role,
            "--kafka-session-timeout-ms", str(SESSION_TIMEOUT_MS)]


def produce(node, sampler: RssSampler, receipted: bytearray, seqs: range, figs: dict, label: str,
            stop=None) -> tuple[BulkProducer, bool]:
    """A BulkProducer over `seqs`; its receipts and rate as `<label>_*` figures."""
    prod = BulkProducer(node, DEST, BODIES, receipted, window=WINDOW, stall_s=STALL_S)
    progress = Progress(f"{label} receipts", lambda: prod.receipts, sampler)
    ok = False
    finished = False
    try:
        finished = prod.run(seqs, stop=stop, check=progress, deadline_s=PHASE_S)
        ok = True
    except ProducerHeld as e:
        raise AssertionError(f"{e}. The node's last limit line: {node.memory_line()!r}") from None
    finally:
        rate = prod.receipts / prod.send_seconds if prod.send_seconds else 0.0
        note(figs, f"{label}_receipted", prod.receipts)
        note(figs, f"{label}_msg_per_s", round(rate, 1))
        if not ok:
            prod.abort()
    if finished:
        prod.close()
    return prod, finished


def consume(node, sampler: RssSampler, deliveries: Deliveries, done, figs: dict) -> None:
    """One consumer until `done()`, then SETTLE_S more; the queue is then empty."""
    cons = BulkConsumer(node, DEST, ack=ACK_MODE, prefetch=PREFETCH, stall_s=STALL_S)
    progress = Progress("consumed", lambda: cons.received, sampler)
    ok = False
    try:
        cons.run(deliveries.add, done, settle_s=SETTLE_S, deadline_s=PHASE_S, check=progress)
        ok = True
    except ConsumerStalled as e:
        missing = deliveries.missing_receipted()
        raise AssertionError(f"{e}: {deliveries.distinct} distinct messages; {len(missing)} receipted never "
                             f"delivered, e.g. {missing[:20]}; queue depth {node.queue_depth()}") from None
    finally:
        secs = cons.done_seconds or cons.receive_seconds
        note(figs, "consumed", deliveries.total)
        note(figs, "consume_msg_per_s", round(cons.received / secs, 1) if secs else 0.0)
        if ok:
            cons.close()
        else:
            cons.abort()
    wait_until(lambda: node.queue_depth() == 0,
               f"halyard_queue_messages to be 0 after {deliveries.total} deliveries acked", timeout=30.0)


def assert_paged(node, backlog: int, figs: dict) -> None:
    """The backlog's bodies over the limit are paged, and what the node
    holds stays within the limit."""
    paged = node.metric("halyard_paged_messages")
    held = node.metric("halyard_memory_messages_bytes")
    note(figs, "paged_messages", paged)
    note(figs, "memory_messages_bytes", held)
    bodies = backlog * 1024
    assert paged and paged > 0, f"nothing paged with {backlog} messages of 1 KiB over a {MAX_MEMORY}-byte limit"
    if bodies > MAX_MEMORY:
        assert paged >= (bodies - MAX_MEMORY) // 1024, (
            f"{paged} messages paged with {bodies} bytes of bodies over a {MAX_MEMORY}-byte limit")
    assert held is not None and held <= MAX_MEMORY, f"{held} bytes of messages held over {MAX_MEMORY}"


def assert_in_order(d: Deliveries, exactly_once: bool) -> None:
    assert not d.bad, f"{d.bad_count} deliveries are not what was sent, e.g. {d.bad}"
    missing = d.missing_receipted()
    assert not missing, f"{len(missing)} receipted messages never delivered, e.g. {missing[:20]}"
    if exactly_once:
        assert d.duplicates == 0, f"{d.duplicates} duplicate deliveries, e.g. of {d.duplicate_seqs}"
    else:
        twice = d.repeated(receipted=True) + d.repeated(receipted=False)
        assert not twice, f"messages delivered more than once: {twice[:20]}"
    assert d.out_of_order == 0, (f"{d.out_of_order} messages delivered out of send order, "
                                 f"e.g. (previous, this): {d.order_examples}")


def settings(figs: dict) -> None:
    note(figs, "messages", MESSAGES)
    note(figs, "max_memory_bytes", MAX_MEMORY)
    note(figs, "ack_mode", ACK_MODE)


def page_read_figures(node, figs: dict) -> None:
    note(figs, "page_reads_total", node.metric("halyard_page_reads_total"))
    note(figs, "paged_in_total", node.metric("halyard_paged_in_total"))


def test_kafka_backlog_paged_and_consumed_in_order(paging_nodes, figures, kafka):
    n = MESSAGES
    settings(figures)
    cid = new_cluster_id("kpage")
    node = paging_nodes("kafka-live", max_memory=MAX_MEMORY,
                        extra_args=kafka_args(kafka, cid, "kafka-live", "primary")).start()
    sampler = RssSampler(node).start()
    receipted = bytearray(n)
    deliveries = Deliveries(n, receipted)
    try:
        note(figures, "start_to_accept_s", round(node.ready(RESTART_S), 2))
        base = sampler.current()
        note(figures, "idle_rss_mib", round(base / MiB, 1))
        produce(node, sampler, receipted, range(n), figures, "produce")
        backlog = sampler.current()
        note(figures, "backlog_rss_mib", round(backlog / MiB, 1))
        note(figures, "rss_bytes_per_backlogged_msg", round((backlog - base) / n, 1))
        assert_paged(node, n, figures)
        depth = node.queue_depth()
        assert depth == n, f"halyard_queue_messages is {depth} with {n} messages receipted and none consumed"
        consume(node, sampler, deliveries, lambda: deliveries.distinct >= n, figures)
        page_read_figures(node, figures)
    finally:
        sampler.stop()
        note(figures, "peak_rss_mib", round(sampler.peak() / MiB, 1))
    assert sampler.peak() < RSS_BOUND, sampler.over
    assert_in_order(deliveries, exactly_once=True)
    assert deliveries.total == n


def test_kafka_backlog_survives_sigkill_failover(paging_nodes, figures, kafka):
    n = MESSAGES
    at_kill = n * 3 // 4
    settings(figures)
    cid = new_cluster_id("kpage")
    primary = paging_nodes("primary", max_memory=MAX_MEMORY,
                           extra_args=kafka_args(kafka, cid, "primary", "primary")).start()
    primary.ready(RESTART_S)
    backup = paging_nodes("backup", max_memory=MAX_MEMORY, extra_args=kafka_args(kafka, cid, "backup", "backup"))
    backup.start()
    backup.wait_log(BACKUP_ANNOUNCED, timeout=60.0)
    primary_rss = RssSampler(primary).start()
    backup_rss = RssSampler(backup).start()
    receipted = bytearray(n)
    deliveries = Deliveries(n, receipted)
    try:
        time.sleep(1.0)
        backup_idle = backup_rss.current()
        note(figures, "backup_idle_rss_mib", round(backup_idle / MiB, 1))

        prod, finished = produce(primary, primary_rss, receipted, range(n), figures, "produce_before_kill",
                                 stop=lambda p: p.receipts >= at_kill)
        assert not finished
        sent_before = prod.sent
        # Let the backup's copy catch up with what was receipted, then look
        # at its memory: bodies kept only up to the paging threshold.
        time.sleep(3.0)
        copy_rss = backup_rss.current()
        note(figures, "backup_rss_before_takeover_mib", round(copy_rss / MiB, 1),
             f"{mib(copy_rss)} ({mib(copy_rss - backup_idle)} over idle, with {prod.receipts} messages "
             f"({mib(prod.receipts * 1024)} of bodies) in the journal)")
        kill_t = primary.kill9()
        late = prod.drain(timeout=5.0)
        prod.abort()
        receipted_before = sum(receipted)
        note(figures, "at_kill", f"{receipted_before} receipted ({late} RECEIPTs read after the kill), "
                                 f"{sent_before} sent")
        primary_rss.stop()

        hit = backup.wait_log(BACKUP_LIVE, timeout=60.0)
        accepted = wait_accepts(backup, timeout=RESTART_S)
        note(figures, "kill_to_accept_s", round(accepted - kill_t, 2))
        opened = backup.find(KAFKA_OPENED)
        assert opened, f"no `Kafka journal fenced and read to its end` line in the backup's log ({hit.line})"
        m = re.search(KAFKA_OPENED, opened[-1].line)
        records, from_copy, read_back = int(m.group(1)), m.group(2), int(m.group(3))
        note(figures, "takeover_records", records)
        note(figures, "takeover_records_read_back", read_back)
        note(figures, "takeover_from_standby_copy", from_copy)
        # The copy kept about the paging threshold (90% of the limit) of
        # bodies; the rest it read back from the topic.
        if at_kill * 1024 > 2 * MAX_MEMORY:
            assert from_copy == "true" and read_back > 0, f"the standby copy kept every body: {opened[-1].line}"
            # The copy's own memory: within the bodies it may keep, twice
            # over (allocations), plus 200 bytes per message.
            bound = backup_idle + 2 * MAX_MEMORY + 200 * receipted_before + 32 * MiB
            assert copy_rss < bound, (f"the backup held {mib(copy_rss)} before it took over, over {mib(bound)}: its "
                                      f"standby copy does not keep to the paging threshold")

        produce(backup, backup_rss, receipted, range(sent_before, n), figures, "produce_after_failover")
        total = sum(receipted)
        note(figures, "receipted", total)
        assert_paged(backup, total, figures)
        consume(backup, backup_rss, deliveries, lambda: deliveries.receipted_seen >= total, figures)
        page_read_figures(backup, figures)
    finally:
        backup_rss.stop()
        note(figures, "backup_peak_rss_mib", round(backup_rss.peak() / MiB, 1))
        note(figures, "primary_peak_rss_mib", round(primary_rss.peak() / MiB, 1))
    note(figures, "unreceipted_delivered", len(deliveries.unreceipted_delivered()))
    assert backup_rss.peak() < RSS_BOUND, backup_rss.over
    assert_in_order(deliveries, exactly_once=False)
