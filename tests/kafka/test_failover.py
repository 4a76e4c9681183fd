"""Live/backup failover on a real Kafka: SIGKILL of the live mid-stream.

A producer sends 20,000 persistent 1 KiB messages with receipts (500 in
flight, resends with `_AMQ_DUPL_ID` after a failover) while a consumer acks
with client-individual; both fail over between the nodes. At the end every
receipted message was delivered, nothing unexpected was, and no message was
stored twice (at most one broker message-id per producer message id).
"""

from __future__ import annotations

import time

from harness.failover import FailoverConsumer, FailoverProducer, assert_report, check_delivery, run_until_done
from harness.kafka import ACCEPTING, BACKUP_LIVE, JOURNAL_READ, LOCK_OBTAINED, new_cluster_id
from harness.logs import log
from harness.node import wait_accepts

COUNT = 20_000
# The kill comes once the producer has this many receipts and the consumer
# this many deliveries: both mid-stream. (Waiting on the consumer alone let a
# producer far ahead of it finish all 20,000 first on a busy machine, and
# then it had nothing to fail over with.)
KILL_AFTER_RECEIPTS = 6_000
KILL_AFTER_DELIVERIES = 2_000


def test_sigkill_of_live_fails_over_to_backup_without_loss(cluster, clients):
    t_start = time.monotonic()
    c = cluster()
    primary = c.node("primary", "primary")
    backup = c.node("backup", "backup")
    c.start_live(primary)
    c.start_backup(backup)
    log(f"cluster {c.cluster_id}: primary :{primary.port} live, backup :{backup.port} announced")

    run_id = new_cluster_id("run")
    dest = "/queue/failover"
    consumer = clients(FailoverConsumer(c.addrs(), dest, run_id))
    producer = clients(FailoverProducer(c.addrs(), dest, COUNT, run_id, window=500))
    consumer.start()
    producer.start()

    assert consumer.wait_count(KILL_AFTER_DELIVERIES, timeout=40), (
        f"only {len(consumer.seen)} delivered before the kill; producer receipted {len(producer.receipted)}"
    )
    with producer.cv:
        assert producer.cv.wait_for(lambda: len(producer.receipted) >= KILL_AFTER_RECEIPTS, timeout=40), (
            f"only {len(producer.receipted)} receipted before the kill"
        )
        assert len(producer.receipted) < COUNT, "the producer finished before the kill: nothing to fail over"
    pos = backup.log_pos()
    with producer.cv:
        receipted_at_kill = len(producer.receipted)
        pending_at_kill = len(producer.pending)
    t_kill = primary.kill9()
    log(f"SIGKILL primary: receipted={receipted_at_kill} pending={pending_at_kill} delivered={len(consumer.seen)}")

    lock = backup.wait_log(LOCK_OBTAINED, since=pos, timeout=20)
    live = backup.wait_log(BACKUP_LIVE, since=pos, timeout=20)
    t_acc = wait_accepts(backup, timeout=20)
    read = backup.find(JOURNAL_READ, since=pos)
    log(
        f"backup: lock after {lock.ts - t_kill:.2f} s, live after {live.ts - t_kill:.2f} s, "
        f"accepting (probe) after {t_acc - t_kill:.2f} s; {live.line.split(': ')[-1]}"
    )
    if read:
        log(f"journal read: {read[0].line.split('read to its end')[-1].strip()}")
    assert backup.count(ACCEPTING, since=pos) == 1

    run_until_done(producer, consumer, timeout=45)
    consumer.stop()
    consumer.join(timeout=10)
    r = check_delivery(producer, consumer)
    first_after = min((t for g, t in consumer.first_after.items() if g >= 2), default=None)
    log(
        f"{r.line()}; producer resends={producer.resends} reconnects={len(producer.reconnects)}; "
        f"consumer reconnects={len(consumer.connects)}; first delivery after kill "
        f"{(first_after - t_kill) if first_after else float('nan'):.2f} s; "
        f"test took {time.monotonic() - t_start:.1f} s"
    )
    assert_report(r)
    assert r.receipted == COUNT
    # Both clients really failed over to the backup.
    assert any(i == 1 for _, i in producer.reconnects), producer.reconnects
    assert any(i == 1 for _, i in consumer.connects), consumer.connects
