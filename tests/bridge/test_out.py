"""Out of Halyard into Kafka, exactly once across a SIGKILL of the live.

A live/backup pair on the Kafka journal (one fresh `--cluster-id`). A STOMP
producer (`harness.failover.FailoverProducer`: 500 sends in flight, each
with a receipt and a unique `_AMQ_DUPL_ID`; on a lost connection it connects
to whichever node accepts and resends every unreceipted message with the
same duplicate id) sends 10,000 messages to `/topic/kafka.<T>`. After about
3,000 receipts the live is SIGKILLed; the producer goes on against the
backup. Then a read_committed consumer (confluent-kafka) reads topic T from
its beginning to its end: every message (all are receipted in the end) is
there exactly once, with its body as the value, its duplicate id as the key,
its `mid` property as a header and `halyard.cluster=<cluster id>`.

Why exactly once is the right expectation: a bridged record is produced in
the Kafka transaction of the journal batch that stores its message, and the
receipt comes after the commit. A send receipted before the kill is
committed; a resend of it (the receipt may have been lost with the
connection) is a duplicate the new live knows from the journal, so it is
not produced again; a send whose batch was not committed is in the dead
live's open transaction, which the backup's fencing aborts (read_committed
skips it), and its resend is produced by the new live.
"""

from __future__ import annotations

import time
from collections import Counter

from bridge_helpers import kafka_bootstrap, read_topic, unique
from harness.failover import FailoverProducer, body_for
from harness.kafka import BACKUP_LIVE
from harness.logs import log
from harness.node import wait_accepts

COUNT = 10_000
KILL_AFTER = 3_000
SIZE = 200
WINDOW = 500


def test_out_exactly_once_across_sigkill(cluster, threads):
    t_start = time.monotonic()
    bootstrap = kafka_bootstrap()
    c = cluster()
    primary = c.node("primary", "primary")
    backup = c.node("backup", "backup")
    c.start_live(primary)
    c.start_backup(backup)
    topic = unique("out")
    run_id = unique("run")
    dest = f"/topic/kafka.{topic}"
    log(f"cluster {c.cluster_id}: primary :{primary.port} live, backup :{backup.port}; {dest} -> Kafka {topic}")

    producer = threads(FailoverProducer(c.addrs(), dest, COUNT, run_id, size=SIZE, window=WINDOW))
    producer.start()
    with producer.cv:
        producer.cv.wait_for(
            lambda: len(producer.receipted) >= KILL_AFTER or producer.failure is not None or not producer.is_alive(),
            timeout=60,
        )
        receipted_at_kill = len(producer.receipted)
        pending_at_kill = len(producer.pending)
    assert producer.failure is None, f"producer failed: {producer.failure!r}; errors {producer.errors[-5:]}"
    assert KILL_AFTER <= receipted_at_kill < COUNT, (
        f"the kill was meant to hit mid-stream: {receipted_at_kill} of {COUNT} receipted "
        f"(errors {producer.errors[-5:]})"
    )
    pos = backup.log_pos()
    t_kill = primary.kill9()
    log(f"SIGKILL primary: receipted={receipted_at_kill} in flight={pending_at_kill}")

    live = backup.wait_log(BACKUP_LIVE, since=pos, timeout=30)
    wait_accepts(backup, timeout=30)
    log(f"backup live {live.ts - t_kill:.2f} s after the kill")

    producer.join(timeout=90)
    assert producer.failure is None, f"producer failed: {producer.failure!r}; errors {producer.errors[-5:]}"
    assert not producer.is_alive(), (
        f"producer not done 90 s after the failover: receipted {len(producer.receipted)}/{COUNT}, "
        f"in flight {len(producer.pending)}, errors {producer.errors[-5:]}"
    )
    with producer.cv:
        receipted = set(producer.receipted)
    assert len(receipted) == COUNT, f"only {len(receipted)} of {COUNT} sends receipted"
    assert any(i == 1 for _, i in producer.reconnects), f"the producer never moved to the backup: {producer.reconnects}"

    t_read = time.monotonic()
    records = read_topic(bootstrap, topic, "read_committed")
    read_s = time.monotonic() - t_read
    uncommitted = read_topic(bootstrap, topic, "read_uncommitted")

    want = {f"{run_id}-{mid}": mid for mid in range(COUNT)}
    keys = Counter(r.key for r in records)
    duplicates = {k: n for k, n in keys.items() if n > 1}
    missing = sorted(mid for mid in receipted if f"{run_id}-{mid}" not in keys)
    unexpected = [(r.partition, r.offset, r.key, r.value[:40]) for r in records if r.key not in want]
    bad = []
    for r in records:
        mid = want.get(r.key)
        if mid is None:
            continue
        problems = []
        if r.value != body_for(run_id, mid, SIZE):
            problems.append(f"value {r.value[:40]!r}...")
        if r.header("mid") != [str(mid)]:
            problems.append(f"mid header {r.header('mid')}")
        if r.header("halyard.cluster") != [c.cluster_id]:
            problems.append(f"halyard.cluster header {r.header('halyard.cluster')}")
        if problems:
            bad.append((r.key, r.partition, r.offset, problems))
    summary = (
        f"receipted={len(receipted)} committed records={len(records)} distinct keys={len(keys)} "
        f"duplicated keys={len(duplicates)} (extra records {sum(n - 1 for n in duplicates.values())}) "
        f"missing={len(missing)} unexpected={len(unexpected)} malformed={len(bad)}; "
        f"read_uncommitted sees {len(uncommitted)} records (aborted: {len(uncommitted) - len(records)}); "
        f"producer resends={producer.resends} reconnects={producer.reconnects}"
    )
    log(f"{summary}; read in {read_s:.2f} s; test took {time.monotonic() - t_start:.1f} s")

    assert not missing, f"{len(missing)} receipted messages are not in Kafka, e.g. mids {missing[:20]}; {summary}"
    assert not duplicates, (
        f"{len(duplicates)} messages are in Kafka more than once, e.g. {list(duplicates.items())[:10]}; {summary}"
    )
    assert not unexpected, f"records that were never sent: {unexpected[:10]}; {summary}"
    assert not bad, f"{len(bad)} malformed records, e.g. {bad[:5]}; {summary}"
    assert len(records) == COUNT, summary
