"""Into Halyard from Kafka, exactly once across a SIGKILL of the live.

Topic T2 is created with 3 partitions. A durable STOMP subscriber
(`bridge_helpers.DurableSubscriber`: CONNECT `client-id`, SUBSCRIBE
`durable-subscription-name`, client-individual, every message acked at once
with a receipt) subscribes to `/topic/kafka.<T2>` on a live/backup pair on
the Kafka journal, which makes the live read T2. confluent-kafka produces
10,000 records (value `<run>-<i>`, key `k<i>`, header `seq`, partition
i % 3) at a fixed rate; once the subscriber has 2,000 the live is SIGKILLed,
while records are still coming (the producer holds at 5,000 until the kill is
done, so a slow machine cannot let it finish first).
The subscriber fails over to the backup: its durable subscription is
journaled, and the new live resumes reading T2 at the journaled positions.
After all 10,000, one more record per partition (a sentinel: a partition is
ingested in offset order and a queue delivers in order, so once the
sentinels are in, anything ingested before them has been delivered).

Checked: every record arrived; each value was stored once (one broker
message-id per value: a record ingested twice would be two messages); each
message carries `kafka.topic`, `kafka.partition` and `kafka.offset` equal to
the record's delivery report, `kafka.key` and the record's header.

Redelivery: a message delivered before the kill whose ACK the broker had not
confirmed (no receipt) may come again after the failover: the new live knows
only acks that made it into the journal, and an ACK receipt is sent once the
ack is durable (tests/integration/test_crash_recovery.py::test_durable_acks_survive_sigkill
relies on the same). So a repeated delivery is accepted only if it is the
same message-id, on a later connection than the delivery it repeats, and
that earlier delivery's ACK was never receipted. Anything else (a repeat on
the same connection, a repeat of a message whose ACK was confirmed, a second
message-id for one record) fails the test.
"""

from __future__ import annotations

import time
from collections import defaultdict

from bridge_helpers import (
    DurableSubscriber,
    PacedKafkaProducer,
    create_topic,
    kafka_bootstrap,
    produce_records,
    unique,
)
from harness.kafka import BACKUP_LIVE
from harness.logs import log

COUNT = 10_000
PARTITIONS = 3
RATE = 1_500  # records per second: about 6.7 s of producing
KILL_AFTER = 2_000  # values received by the subscriber
# The producer holds after this many records until the kill is done, so the kill
# hits mid-stream even when the node ingests slowly (a loaded machine).
HOLD_AT = COUNT // 2


def test_in_exactly_once_across_kill(cluster, threads):
    t_start = time.monotonic()
    bootstrap = kafka_bootstrap()
    topic = unique("in")
    create_topic(bootstrap, topic, PARTITIONS)
    c = cluster()
    primary = c.node("primary", "primary")
    backup = c.node("backup", "backup")
    c.start_live(primary)
    c.start_backup(backup)
    dest = f"/topic/kafka.{topic}"
    log(f"cluster {c.cluster_id}: primary :{primary.port} live, backup :{backup.port}; Kafka {topic} -> {dest}")

    sub = threads(DurableSubscriber(c.addrs(), dest, unique("client"), "bridge-durable"))
    sub.start()
    sub.wait_subscribed()

    run_id = unique("rec")
    producer = threads(PacedKafkaProducer(bootstrap, topic, COUNT, PARTITIONS, run_id, RATE, hold_at=HOLD_AT))
    producer.start()

    assert sub.wait_count(KILL_AFTER, timeout=60), (
        f"only {len(sub.values)} records delivered within 60 s; produced {producer.produced}, "
        f"subscriber errors {sub.errors}"
    )
    pos = backup.log_pos()
    with producer.lock:
        produced_at_kill = producer.produced
    with sub.cv:
        received_at_kill = len(sub.values)
    t_kill = primary.kill9()
    producer.resume.set()
    log(f"SIGKILL primary: produced={produced_at_kill} received={received_at_kill}")
    assert produced_at_kill < COUNT, (
        f"the kill was meant to hit while records are still coming: all {COUNT} were produced already "
        f"(received {received_at_kill}); lower RATE"
    )

    live = backup.wait_log(BACKUP_LIVE, since=pos, timeout=30)
    log(f"backup live {live.ts - t_kill:.2f} s after the kill")

    producer.join(timeout=60)
    assert producer.failure is None, f"Kafka producer failed: {producer.failure!r}"
    assert not producer.is_alive(), f"Kafka producer not done: {producer.produced} of {COUNT}"
    assert not producer.errors and len(producer.delivered) == COUNT, (
        f"Kafka producer: {len(producer.delivered)} of {COUNT} delivered, errors {producer.errors[:5]}"
    )
    t_produced = time.monotonic()

    values = {producer.value(i): i for i in range(COUNT)}
    if not sub.wait_values(set(values), timeout=60):
        missing = sorted(set(values) - sub.values)
        raise AssertionError(
            f"{len(missing)} of {COUNT} records never delivered within 60 s, e.g. {missing[:10]}; "
            f"subscriber connects {sub.connects}, errors {sub.errors}, failure {sub.failure!r}"
        )
    all_in_s = time.monotonic() - t_produced
    sentinels = {f"{run_id}-end-p{p}": p for p in range(PARTITIONS)}
    produce_records(bootstrap, topic, [{"value": v, "partition": p} for v, p in sentinels.items()])
    assert sub.wait_values(set(sentinels), timeout=30), (
        f"sentinels not delivered: {set(sentinels) - sub.values}; errors {sub.errors}"
    )
    sub.stop()
    sub.join(timeout=10)
    assert sub.failure is None, f"subscriber failed: {sub.failure!r}"
    assert any(i == 1 for _, i in sub.connects), f"the subscriber never moved to the backup: {sub.connects}"

    got = sub.snapshot()
    by_value: dict[str, list] = defaultdict(list)
    for g in got:
        by_value[g.value].append(g)
    unexpected = sorted(set(by_value) - set(values) - set(sentinels))
    stored_twice = {v: sorted({g.message_id for g in gs}) for v, gs in by_value.items() if len({g.message_id for g in gs}) > 1}
    bad_repeats = []
    allowed_repeats = 0
    for v, gs in by_value.items():
        for a, b in zip(gs, gs[1:]):
            if b.gen > a.gen and not a.ack_receipted and a.message_id == b.message_id:
                allowed_repeats += 1
            else:
                bad_repeats.append(
                    (v, f"earlier gen {a.gen} ack receipted {a.ack_receipted} id {a.message_id}; "
                        f"again on gen {b.gen} id {b.message_id}")
                )
    bad_headers = []
    partitions_seen = set()
    for v, i in values.items():
        h = by_value[v][0].headers
        part, off = producer.delivered[v]
        partitions_seen.add(h.get("kafka.partition"))
        want = {
            "kafka.topic": topic,
            "kafka.partition": str(part),
            "kafka.offset": str(off),
            "kafka.key": f"k{i}",
            "seq": str(i),
        }
        diff = {k: (h.get(k), w) for k, w in want.items() if h.get(k) != w}
        if diff:
            bad_headers.append((v, diff))
    # Informational: within a partition, first deliveries in offset order.
    out_of_order = 0
    last_offset: dict[str, int] = {}
    first_seen: set[str] = set()
    for g in got:
        if g.value not in values or g.value in first_seen:
            continue
        first_seen.add(g.value)
        p, o = g.headers.get("kafka.partition"), int(g.headers.get("kafka.offset", -1))
        if o < last_offset.get(p, -1):
            out_of_order += 1
        last_offset[p] = o
    acks_unconfirmed_at_kill = sum(1 for g in got if g.gen == 1 and not g.ack_receipted)
    summary = (
        f"records={COUNT} delivered distinct={len(set(by_value) & set(values))} deliveries={len(got)} "
        f"repeats allowed={allowed_repeats} (first connection deliveries without ack receipt: "
        f"{acks_unconfirmed_at_kill}; flagged redelivered: {sum(1 for g in got if g.redelivered)}) "
        f"bad repeats={len(bad_repeats)} stored twice={len(stored_twice)} unexpected={len(unexpected)} "
        f"bad headers={len(bad_headers)} partitions={sorted(partitions_seen)}; "
        f"first deliveries out of offset order within a partition={out_of_order}; "
        f"subscriber connects={sub.connects}"
    )
    log(f"{summary}; all in {all_in_s:.2f} s after the last record was produced; "
        f"test took {time.monotonic() - t_start:.1f} s")

    assert not stored_twice, (
        f"{len(stored_twice)} records ingested more than once (distinct message-ids), "
        f"e.g. {list(stored_twice.items())[:5]}; {summary}"
    )
    assert not bad_repeats, f"{len(bad_repeats)} repeated deliveries that are not allowed, e.g. {bad_repeats[:5]}; {summary}"
    assert not unexpected, f"unexpected messages: {unexpected[:10]}; {summary}"
    assert not bad_headers, f"{len(bad_headers)} messages with wrong kafka.* headers, e.g. {bad_headers[:5]}; {summary}"
    assert partitions_seen == {str(p) for p in range(PARTITIONS)}, summary
