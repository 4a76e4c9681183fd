#!/usr/bin/env python3
"""Smoke check of the test Kafka broker, and of the Kafka behaviour the Halyard
journal relies on (see /work/shared/DESIGN.md, "Kafka journal and lock").

Run with the venv python against a started broker:

    scripts/services/kafka.sh start
    PY=$(scripts/services/pyenv.sh | tail -1)
    "$PY" scripts/ci/kafka-smoke.py [--bootstrap 127.0.0.1:9092] [--keep]

It checks, with confluent-kafka (librdkafka):
  1. a compacted topic can be created (cleanup.policy=compact);
  2. a transactional producer commits a record;
  3. the same producer aborts a transaction;
  4. a second producer with the same transactional.id fences the first:
     a) first producer idle when fenced -> its next transaction fails;
     b) first producer mid-transaction when fenced -> its commit fails and the
        in-flight records are aborted;
     the exact error (code, name, fatal/retriable/abortable) is printed;
  5. the aborted and fenced transactions' records are in the log
     (read_uncommitted sees them) but hidden under isolation.level=read_committed;
  6. the broker's cleaner compacts a topic with segment.ms=100 within seconds
     (old values gone, tombstone kept).
Exits non-zero on any unexpected result.
"""

import argparse
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import libversion, version
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

FENCING_CODES = {
    KafkaError._FENCED,  # librdkafka: "producer fenced by newer instance"
    KafkaError.PRODUCER_FENCED,  # broker error 90
    KafkaError.INVALID_PRODUCER_EPOCH,  # broker error 47
}

failures = []


def step(msg):
    print(f"== {msg}", flush=True)


def check(cond, msg):
    print(("   ok: " if cond else "   FAIL: ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def describe(err):
    """All we know about a KafkaError, on one line."""
    if isinstance(err, KafkaException):
        err = err.args[0]
    if not isinstance(err, KafkaError):
        return f"{type(err).__name__}: {err}"
    return (
        f"KafkaError code={err.code()} name={err.name()} fatal={err.fatal()} "
        f"retriable={err.retriable()} txn_requires_abort={err.txn_requires_abort()} "
        f"str={err.str()!r}"
    )


def as_kafka_error(exc):
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class TxProducer:
    """A transactional producer that records everything librdkafka tells it."""

    def __init__(self, bootstrap, txid, name):
        self.name = name
        self.errors = []  # from error_cb
        self.delivery = []  # (key, KafkaError or None)
        self.p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": txid,
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": 30000,
                "error_cb": self._on_error,
            }
        )

    def _on_error(self, err):
        print(f"   [{self.name} error_cb] {describe(err)}", flush=True)
        self.errors.append(err)

    def _on_delivery(self, err, msg):
        key = msg.key().decode() if msg.key() else None
        if err is not None:
            print(f"   [{self.name} delivery] key={key} failed: {describe(err)}", flush=True)
        self.delivery.append((key, err))

    def produce(self, topic, key, value):
        self.p.produce(topic, key=key.encode(), value=value.encode(), on_delivery=self._on_delivery)
        self.p.poll(0)


def make_topic(admin, topic, extra=None):
    config = {"cleanup.policy": "compact"}
    config.update(extra or {})
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config=config)],
        operation_timeout=30,
    )
    fs[topic].result(timeout=30)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    # CreateTopics answers once the controller has the topic; the broker that
    # answers DescribeConfigs may learn of it a moment later (seen in CI:
    # UNKNOWN_TOPIC_OR_PART right after a successful create). Retry that one
    # error for a bounded time; anything else, or a topic that never appears,
    # still fails the smoke.
    deadline = time.monotonic() + 30
    while True:
        try:
            cfg = admin.describe_configs([res])[res].result(timeout=30)
            return cfg["cleanup.policy"].value
        except KafkaException as e:
            err = e.args[0]
            if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
            print(f"   {topic} not yet known to DescribeConfigs, retrying", flush=True)
            time.sleep(0.2)


def read_all(bootstrap, topic, isolation):
    """Every record of partition 0 under the given isolation level, as (key, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"halyard-smoke-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(m.error())
            out.append((m.key().decode(), None if m.value() is None else m.value().decode()))
        raise RuntimeError(f"no end of partition within 30 s ({isolation})")
    finally:
        c.close()


def expect_fenced(prod, topic, key):
    """Run one transaction on a producer that should be fenced; return the error seen."""
    seen = None
    where = None
    try:
        where = "begin_transaction"
        prod.p.begin_transaction()
        where = "produce"
        prod.produce(topic, key, "must never be visible")
        where = "commit_transaction"
        prod.p.commit_transaction(15)
        where = None
    except KafkaException as e:
        seen = e
    if where is None:
        print("   the whole transaction succeeded (not fenced!)")
        return None, None
    print(f"   {where} raised: {describe(seen)}")
    return as_kafka_error(seen), where


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_bs = os.environ.get("KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
    ap.add_argument("--bootstrap", default=default_bs)
    ap.add_argument("--keep", action="store_true", help="do not delete the topic at the end")
    args = ap.parse_args()
    bs = args.bootstrap
    run = uuid.uuid4().hex[:8]
    topic = f"halyard-smoke-{run}"
    txid = f"halyard-smoke-tx-{run}"
    txid2 = f"halyard-smoke-tx2-{run}"
    ctopic = f"halyard-smoke-compact-{run}"
    print(f"confluent-kafka {version()[0]}, librdkafka {libversion()[0]}, bootstrap {bs}")

    admin = AdminClient({"bootstrap.servers": bs})
    md = admin.list_topics(timeout=10)
    print(f"broker(s): {[str(b) for b in md.brokers.values()]} cluster_id={md.cluster_id}")

    step(f"1. create compacted topic {topic} (default segment.ms: no cleaning during the run)")
    policy = make_topic(admin, topic)
    check(policy == "compact", f"cleanup.policy={policy}")

    step(f"2. transactional producer A (transactional.id={txid}) commits k-committed-a")
    a = TxProducer(bs, txid, "A")
    t0 = time.monotonic()
    a.p.init_transactions(30)
    print(f"   init_transactions took {int((time.monotonic() - t0) * 1000)} ms")
    a.p.begin_transaction()
    a.produce(topic, "k-committed-a", "v1")
    a.p.commit_transaction(30)
    check(a.delivery == [("k-committed-a", None)], "record delivered and transaction committed")

    step("3. A aborts a transaction holding k-aborted")
    a.p.begin_transaction()
    a.produce(topic, "k-aborted", "should be hidden under read_committed")
    a.p.flush(10)  # make sure it really reached the log before the abort
    a.p.abort_transaction(30)
    check(("k-aborted", None) in a.delivery, "aborted record was written to the log before the abort")

    step("4a. producer B with the same transactional.id inits (A is idle)")
    b = TxProducer(bs, txid, "B")
    t0 = time.monotonic()
    b.p.init_transactions(30)
    print(f"   B init_transactions took {int((time.monotonic() - t0) * 1000)} ms")
    b.p.begin_transaction()
    b.produce(topic, "k-committed-b", "v2")
    b.p.commit_transaction(30)
    check(b.delivery == [("k-committed-b", None)], "B committed k-committed-b")

    step("4a. A runs its next transaction")
    err, where = expect_fenced(a, topic, "k-fenced-a")
    a.p.flush(5)
    check(err is not None, f"A is refused (at {where})")
    if err is not None:
        check(err.code() in FENCING_CODES, f"error is a fencing error: {err.name()} ({err.code()})")
        check(err.fatal(), "error is fatal (the producer must be discarded)")
    if a.errors:
        print(f"   A error_cb saw: {[describe(e) for e in a.errors]}")
    print(f"   A delivery reports: {[(k, describe(e) if e else None) for k, e in a.delivery]}")
    try:
        a.p.begin_transaction()
        check(False, "A can begin another transaction after being fenced")
    except KafkaException as e:
        print(f"   A begin_transaction afterwards: {describe(e)}")
        check(True, "A stays unusable after the fencing error")

    step(f"4b. producer C (transactional.id={txid2}) is mid-transaction when D with the same id inits")
    c = TxProducer(bs, txid2, "C")
    c.p.init_transactions(30)
    c.p.begin_transaction()
    c.produce(topic, "k-inflight-c", "in flight when fenced")
    c.p.flush(10)
    check(c.delivery == [("k-inflight-c", None)], "C's in-flight record reached the log")
    d = TxProducer(bs, txid2, "D")
    t0 = time.monotonic()
    d.p.init_transactions(60)
    print(f"   D init_transactions took {int((time.monotonic() - t0) * 1000)} ms (aborts C's open transaction)")
    try:
        c.p.commit_transaction(15)
        check(False, "C's commit after D's init must fail")
    except KafkaException as e:
        ce = as_kafka_error(e)
        print(f"   C commit_transaction raised: {describe(e)}")
        check(ce is not None and ce.code() in FENCING_CODES, f"C's commit fails with a fencing error ({ce.name() if ce else e})")
        check(ce is not None and ce.fatal(), "C's error is fatal")
    if c.errors:
        print(f"   C error_cb saw: {[describe(e) for e in c.errors]}")
    d.p.begin_transaction()
    d.produce(topic, "k-committed-d", "v3")
    d.p.commit_transaction(30)
    check(d.delivery == [("k-committed-d", None)], "D committed k-committed-d")

    step("5. read back")
    committed = read_all(bs, topic, "read_committed")
    uncommitted = read_all(bs, topic, "read_uncommitted")
    print(f"   read_committed:   {[k for k, _ in committed]}")
    print(f"   read_uncommitted: {[k for k, _ in uncommitted]}")
    want = ["k-committed-a", "k-committed-b", "k-committed-d"]
    check([k for k, _ in committed] == want, f"read_committed sees exactly {want}")
    ukeys = [k for k, _ in uncommitted]
    check("k-aborted" in ukeys, "read_uncommitted sees the aborted record (it is in the log)")
    check("k-inflight-c" in ukeys, "read_uncommitted sees C's fenced in-flight record")
    check("k-fenced-a" not in ukeys, "A's post-fencing record never reached the log")

    step(f"6. compaction happens quickly on {ctopic} (segment.ms=100)")
    policy = make_topic(admin, ctopic, {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01"})
    check(policy == "compact", f"cleanup.policy={policy}")
    p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True})
    for k, v in [("a", "1"), ("b", "1"), ("a", "2"), ("b", None)]:
        p.produce(ctopic, key=k.encode(), value=None if v is None else v.encode())
    p.flush(10)
    t0 = time.monotonic()
    compacted = None
    while time.monotonic() - t0 < 60:
        time.sleep(1)
        # the active segment is never cleaned: a later record rolls the segment (segment.ms)
        p.produce(ctopic, key=b"roll", value=b"x")
        p.flush(10)
        recs = [r for r in read_all(bs, ctopic, "read_uncommitted") if r[0] != "roll"]
        if recs == [("a", "2"), ("b", None)]:
            compacted = time.monotonic() - t0
            break
    print(f"   log now: {recs}")
    check(compacted is not None, "a=1 and b=1 compacted away, b's tombstone kept"
          + (f" after {compacted:.1f} s" if compacted is not None else " (not within 60 s)"))

    for p in (b, d):
        p.p.flush(5)
    if not args.keep:
        for t in (topic, ctopic):
            admin.delete_topics([t], operation_timeout=30)[t].result(timeout=30)
        print(f"deleted {topic} {ctopic}")

    if failures:
        print(f"SMOKE FAILED: {len(failures)} check(s): {failures}")
        return 1
    print("SMOKE OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # unexpected exception = failure, with the error spelled out
        print(f"SMOKE FAILED with unexpected {describe(e)}", file=sys.stderr)
        raise
