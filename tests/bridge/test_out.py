"""Out of Halyard into Kafka across a SIGKILL of the live: exactly once on
the Kafka journal, at least once (none lost, duplicates counted and bounded)
on the local journal.

A live/backup pair (one fresh `--cluster-id`). A STOMP producer
(`harness.failover.FailoverProducer`: 500 sends in flight, each with a
receipt and a unique `_AMQ_DUPL_ID`; on a lost connection it connects to
whichever node accepts and resends every unreceipted message with the same
duplicate id) sends 10,000 messages to `/topic/kafka.<T>`. After about 3,000
receipts the live is SIGKILLed; the producer goes on against the backup.
Then a read_committed consumer (confluent-kafka) reads topic T from its
beginning to its end: every message (all are receipted in the end) is there,
with its body as the value, its duplicate id as the key, its `mid` property
as a header and `halyard.cluster=<cluster id>`.

The Kafka journal: exactly once. A bridged record is produced in the Kafka
transaction of the journal batch that stores its message, and the receipt
comes after the commit. A send receipted before the kill is committed; a
resend of it (the receipt may have been lost with the connection) is a
duplicate the new live knows from the journal, so it is not produced again;
a send whose batch was not committed is in the dead live's open transaction,
which the backup's fencing aborts (read_committed skips it), and its resend
is produced by the new live.

The local journal (`--bridge-kafka-bootstrap`, a pair sharing its data and
lock dir): at least once, through the outbox. The record is journaled with
its message (the receipt comes after the local fsync, before Kafka has it),
forwarded by an idempotent producer once durable, and tombstoned in the
journal when Kafka acknowledges it; the new live forwards again whatever is
still in the outbox and logs how many (`forwarding outbox records again
after activation ... records=N`). So no receipted message may be missing;
a resend by the producer is a duplicate id the journal knows, so it adds no
record; a record can be in Kafka twice only if the dead live had it
acknowledged and its tombstone was not yet durable, that is, only a message
the dead live had (sent before the kill) and only one of the N forwarded
again: duplicates <= N. N > 0 with no duplicates is fine (records the dead
live journaled but had not got into Kafka yet).
"""

from __future__ import annotations

import re
import time
from collections import Counter

from bridge_helpers import kafka_bootstrap, partitions_of, read_topic, unique
from harness.failover import FailoverProducer, body_for
from harness.kafka import BACKUP_LIVE
from harness.logs import log
from harness.node import wait_accepts

COUNT = 10_000
KILL_AFTER = 3_000
SIZE = 200
WINDOW = 500


def malformed(records, want: dict[str, int], run_id: str, cluster_id: str) -> list:
    """(key, partition, offset, problems) of each record of a sent message
    (key in `want`: duplicate id -> mid) whose value is not the message's
    body, or whose `mid` or `halyard.cluster` header is wrong."""
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
        if r.header("halyard.cluster") != [cluster_id]:
            problems.append(f"halyard.cluster header {r.header('halyard.cluster')}")
        if problems:
            bad.append((r.key, r.partition, r.offset, problems))
    return bad


def send_across_sigkill(primary, backup, addrs, dest: str, run_id: str, threads) -> FailoverProducer:
    """Sends COUNT messages to `dest` with a `FailoverProducer` (receipts,
    unique duplicate ids, WINDOW in flight), SIGKILLs `primary` after
    KILL_AFTER receipts, waits for `backup` to go live and for the producer
    to have every message receipted (it fails over and resends the
    unreceipted ones). Returns the finished producer, with
    `mids_before_kill` set: no mid from there on reached the dead live."""
    producer = threads(FailoverProducer(addrs, dest, COUNT, run_id, size=SIZE, window=WINDOW))
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
    # Every send begun before the kill is pending or receipted by now: their
    # largest mid + 1 bounds the mids the dead live can have journaled.
    with producer.cv:
        producer.mids_before_kill = max(producer.pending.keys() | producer.receipted) + 1
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
        receipted = len(producer.receipted)
    assert receipted == COUNT, f"only {receipted} of {COUNT} sends receipted"
    assert any(i == 1 for _, i in producer.reconnects), f"the producer never moved to the backup: {producer.reconnects}"
    return producer


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

    producer = send_across_sigkill(primary, backup, c.addrs(), dest, run_id, threads)
    with producer.cv:
        receipted = set(producer.receipted)

    t_read = time.monotonic()
    records = read_topic(bootstrap, topic, "read_committed")
    read_s = time.monotonic() - t_read
    uncommitted = read_topic(bootstrap, topic, "read_uncommitted")

    want = {f"{run_id}-{mid}": mid for mid in range(COUNT)}
    keys = Counter(r.key for r in records)
    duplicates = {k: n for k, n in keys.items() if n > 1}
    missing = sorted(mid for mid in receipted if f"{run_id}-{mid}" not in keys)
    unexpected = [(r.partition, r.offset, r.key, r.value[:40]) for r in records if r.key not in want]
    bad = malformed(records, want, run_id, c.cluster_id)
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


# The new live's log line for the outbox records it forwards again.
FORWARDED_AGAIN = r"forwarding outbox records again after activation.*records=(\d+)"
# A record Kafka refused (delivery error), put back in the queue.
REFUSED = r"Kafka refused a bridged record"
# How long the outbox may take to get every receipted message to Kafka after
# the last receipt (it forwards behind the receipts).
FORWARD_S = 60.0


def spans(mids: list[int]) -> str:
    """`[1, 2, 3, 7]` -> `1-3,7`."""
    out = []
    for m in sorted(mids):
        if out and out[-1][1] == m - 1:
            out[-1][1] = m
        else:
            out.append([m, m])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def test_out_local_journal_at_least_once_across_sigkill(local_pair, threads, clients):
    """The same with the local journal: none lost, duplicates counted.

    A pair on the local journal bridging through the outbox, the same
    producer and kill. Then the topic is read (read_committed; the outbox
    producer is idempotent, not transactional) until a sentinel sent after
    the last receipt is there and no receipted message is missing (up to
    FORWARD_S). Asserted: every receipted message is there, well formed; no
    record of a message never sent; every duplicate (a record beyond the
    first with its key) is of a message sent before the kill, and there are
    at most as many as the backup forwarded again; the primary, on an empty
    journal, forwarded nothing again. The duplicates are printed."""
    t_start = time.monotonic()
    bootstrap = kafka_bootstrap()
    pair = local_pair()
    primary, backup = pair.primary, pair.backup
    topic = unique("outl")
    run_id = unique("run")
    dest = f"/topic/kafka.{topic}"
    log(
        f"local journal, cluster {pair.cluster_id}: primary :{primary.port} live, backup :{backup.port}; "
        f"{dest} -> Kafka {topic} through the outbox"
    )

    producer = send_across_sigkill(primary, backup, pair.addrs(), dest, run_id, threads)
    with producer.cv:
        receipted = set(producer.receipted)
    t_receipted = time.monotonic()

    # The receipts came after the local fsync, not after Kafka had the
    # records: the outbox forwards them behind. A sentinel sent now is
    # journaled after everything else, and the outbox forwards in journal
    # order (the records forwarded again first, at the activation) through
    # one idempotent producer to a topic of one partition, which keeps that
    # order: once the sentinel is in the topic, so is everything forwarded
    # before it. Read until it is and no receipted message is missing.
    sentinel = unique("sentinel")
    clients(backup).send(dest, "sentinel", _AMQ_DUPL_ID=sentinel)
    want = {f"{run_id}-{mid}": mid for mid in range(COUNT)}
    state = {}

    def forwarded():
        state["records"] = read_topic(bootstrap, topic)
        keys = {r.key for r in state["records"]}
        state["missing"] = sorted(mid for mid in receipted if f"{run_id}-{mid}" not in keys)
        return sentinel in keys and not state["missing"]

    deadline = time.monotonic() + FORWARD_S
    while not forwarded() and time.monotonic() < deadline:
        time.sleep(0.5)
    forward_s = time.monotonic() - t_receipted
    records = state["records"]
    missing = state["missing"]
    assert partitions_of(bootstrap, topic) == [0], "the bridge creates its topics with one partition"

    keys = Counter(r.key for r in records)
    extra = {k: n - 1 for k, n in keys.items() if n > 1}
    n_extra = sum(extra.values())
    dup_mids = sorted(want[k] for k in extra if k in want)
    unexpected = [(r.partition, r.offset, r.key, r.value[:40]) for r in records if r.key not in want and r.key != sentinel]
    bad = malformed(records, want, run_id, pair.cluster_id)
    # Duplicates can only be records the dead live had journaled (so sent
    # before the kill) that the new live forwarded again.
    dup_after_kill = [m for m in dup_mids if m >= producer.mids_before_kill]
    again = {n.name: [int(re.search(FORWARDED_AGAIN, h.line)[1]) for h in n.find(FORWARDED_AGAIN)] for n in (primary, backup)}
    forwarded_again = sum(again["backup"])
    refused = backup.count(REFUSED) + primary.count(REFUSED)
    summary = (
        f"receipted={len(receipted)} records={len(records)} distinct keys={len(keys)} "
        f"duplicated keys={len(extra)} duplicates (records beyond the first)={n_extra} "
        f"forwarded again by the backup={forwarded_again} (log lines: {again}) refused by Kafka={refused} "
        f"missing={len(missing)} unexpected={len(unexpected)} malformed={len(bad)}; "
        f"mids before the kill < {producer.mids_before_kill}; producer resends={producer.resends} "
        f"reconnects={producer.reconnects}"
    )
    log(
        f"{summary}; read complete {forward_s:.2f} s after the last receipt; "
        f"test took {time.monotonic() - t_start:.1f} s"
    )
    if extra:
        log(f"duplicated mids: {spans(dup_mids)}; counts {sorted(set(extra.values()))}")

    assert not missing, (
        f"{len(missing)} receipted messages not in Kafka {FORWARD_S:.0f} s after the last receipt, "
        f"e.g. mids {missing[:20]}; {summary}"
    )
    assert keys[sentinel] == 1, f"sentinel {sentinel} in Kafka {keys[sentinel]} times; {summary}"
    assert not unexpected, f"records that were never sent: {unexpected[:10]}; {summary}"
    assert not bad, f"{len(bad)} malformed records, e.g. {bad[:5]}; {summary}"
    assert not again["primary"], f"the primary started on an empty journal yet forwarded again: {summary}"
    assert not dup_after_kill, (
        f"duplicates of messages first sent after the kill (the dead live never had them): "
        f"{spans(dup_after_kill)}; {summary}"
    )
    assert all(n <= 1 for n in extra.values()), (
        f"records in Kafka more than twice (one activation forwards each outbox record again once): "
        f"{[(want.get(k, k), n + 1) for k, n in extra.items() if n > 1][:10]}; {summary}"
    )
    assert n_extra <= forwarded_again, (
        f"{n_extra} duplicates but the backup forwarded only {forwarded_again} outbox records again: "
        f"a duplicate that is not a record forwarded again after the activation; {summary}"
    )
    assert len(records) == COUNT + 1 + n_extra, summary
