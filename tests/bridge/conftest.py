"""Helpers and fixtures of the Kafka bridge tests: `halyard node` on the Kafka
journal (bridge on by default) or on the local journal with
`--bridge-kafka-bootstrap` (the outbox) against a real Kafka
(`HALYARD_KAFKA_BOOTSTRAP`; scripts/services/kafka.sh), stomp.py on the
STOMP side and confluent-kafka (librdkafka) on the Kafka side. No mocks.

- `kafka_bootstrap()`: the Kafka the tests need; not being given one is a
  failure, never a skip (as in tests/operations).
- `unique(prefix)`: a fresh name (topics, cluster ids, client ids), so reruns
  against the same Kafka never collide.
- Kafka side: `create_topic`, `topic_names`, `read_topic` (a read_committed
  or read_uncommitted consumer that reads every partition of a topic from
  its beginning to its end, with partition EOF events), `KafkaRecord`,
  `produce_records` (synchronous, with delivery reports) and
  `PacedKafkaProducer` (a thread producing at a fixed rate, recording the
  partition and offset of every record from its delivery report).
- STOMP side: `DurableSubscriber`, a thread holding a durable topic
  subscription (CONNECT `client-id`, SUBSCRIBE `durable-subscription-name`,
  client-individual acks, each ACK with a receipt) that fails over to
  whichever node accepts and subscribes again under the same names.
- Local journal: `LocalBridgeNode`, a `halyard node` on the local journal
  that bridges to Kafka with `--bridge-kafka-bootstrap` (the outbox); a
  live/backup pair shares `--data-dir` and `--lock-dir` (as in
  tests/operations), so the backup reads the live's journal when it takes
  over.
- Fixtures: `cluster` (a factory of `harness.kafka.Cluster`s, each on a
  fresh `--cluster-id`; no node may have panicked, every node is stopped at
  teardown), `local_pair` (a started live/backup pair of `LocalBridgeNode`s
  on a fresh `--cluster-id`, with the same teardown), `threads` (client
  threads stopped at teardown), `clients` (stomp.py
  `harness.clients.Client`s, disconnected at teardown).
- The test modules import these helpers as `bridge_helpers` (this module
  under a name of its own: a plain `import conftest` could find
  tests/conftest.py).

Node logs are files in the test's tmp_path (`<name>.log`); the runner
(scripts/ci/bridge.sh) keeps the tmp_path of every failed test under
target/bridge-tests, and a failing test's report carries the log tails.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import stomp
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from harness.clients import Client
from harness.failover import _hard_close, connect_any
from harness.kafka import ACCEPTING, BACKUP_ANNOUNCED, Cluster
from harness.node import close_all, NodeProcess, wait_accepts
from harness.waiting import waiter

# The test modules say `from bridge_helpers import ...` (see the docstring).
sys.modules["bridge_helpers"] = sys.modules[__name__]

# Bound for a wait on Kafka or a node; a healthy run needs a fraction of it.
WAIT_S = 60.0


def kafka_bootstrap() -> str:
    """The Kafka the tests need; not being given one is a failure, not a skip."""
    bootstrap = os.environ.get("HALYARD_KAFKA_BOOTSTRAP", "").strip()
    if not bootstrap:
        pytest.fail(
            "HALYARD_KAFKA_BOOTSTRAP is not set: the bridge tests need a running Kafka "
            "(scripts/services/kafka.sh start; then "
            "HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) scripts/ci/bridge.sh)",
            pytrace=False,
        )
    return bootstrap


def unique(prefix: str) -> str:
    """A fresh name: `prefix-<10 hex digits>` (legal as a Kafka topic, a
    cluster id and a STOMP destination part)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


wait_until = waiter(WAIT_S, retry_on=())


# -- Kafka -------------------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """Creates `topic` (replication 1) and waits until its metadata lists
    every partition."""
    a = admin(bootstrap)  # kept until the result is in: its futures die with it
    futures = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=30)
    wait_until(
        lambda: len(partitions_of(bootstrap, topic)) == partitions,
        f"topic {topic} with {partitions} partitions in the metadata",
        timeout=30,
    )


def topic_names(bootstrap: str) -> set[str]:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    md = admin(bootstrap).list_topics(topic=topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        return []
    return sorted(md.partitions)


@dataclass
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> list[str]:
        """Every value of header `name` (a header may repeat in Kafka)."""
        return [v for k, v in self.headers if k == name]


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = WAIT_S) -> list[KafkaRecord]:
    """Every record of every partition of `topic`, from the beginning to the
    end, as a consumer with `isolation.level=isolation` sees them (a
    read_committed consumer reads to the last stable offset: records of
    aborted transactions and control records are skipped). The end is where
    librdkafka reports partition EOF on each partition; fails if that takes
    longer than `timeout` (e.g. a transaction left open: its records would
    hold the last stable offset back)."""
    parts = partitions_of(bootstrap, topic)
    assert parts, f"Kafka topic {topic} does not exist"
    c = KafkaConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("bridge-test-reader"),
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        # OFFSET_BEGINNING is -2.
        c.assign([TopicPartition(topic, p, -2) for p in parts])
        records: list[KafkaRecord] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while at_eof != set(parts):
            if time.monotonic() > deadline:
                marks = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5) for p in parts}
                positions = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in parts])}
                raise AssertionError(
                    f"{topic} ({isolation}): no end reached within {timeout:.0f} s: "
                    f"{len(records)} records read, EOF on partitions {sorted(at_eof)} of {parts}; "
                    f"positions {positions}, (low, high) watermarks {marks}"
                )
            for m in c.consume(num_messages=1000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise AssertionError(f"consuming {topic}: {err}")
                # A record after an EOF: the end moved on (more was written).
                at_eof.discard(m.partition())
                records.append(
                    KafkaRecord(
                        topic=m.topic(),
                        partition=m.partition(),
                        offset=m.offset(),
                        key=_text(m.key()),
                        value=_text(m.value()) or "",
                        headers=[(k, _text(v) or "") for k, v in (m.headers() or [])],
                    )
                )
        return records
    finally:
        c.close()


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})


def produce_records(bootstrap: str, topic: str, records: list[dict]) -> list[tuple[int, int]]:
    """Produces `records` (each a dict of Producer.produce keyword arguments:
    value, key, headers, partition), in order, and waits for all of them;
    returns each one's (partition, offset) from its delivery report."""
    p = _producer(bootstrap)
    got: list[tuple[int, int] | None] = [None] * len(records)
    errors: list[str] = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append(f"record {i}: {err}")
            else:
                got[i] = (msg.partition(), msg.offset())

        return cb

    for i, r in enumerate(records):
        p.produce(topic, on_delivery=on_delivery(i), **r)
    left = p.flush(30)
    assert left == 0 and not errors, f"producing to {topic}: {left} records not delivered, errors {errors}"
    return got  # type: ignore[return-value]


class PacedKafkaProducer(threading.Thread):
    """Produces `count` records to `topic` at `rate` per second: record i has
    value `<run_id>-<i:05d>`, key `k<i>`, header `seq=<i>`, and goes to
    partition i % partitions. `delivered` maps each value to the (partition,
    offset) of its delivery report. With `hold_at`, it stops after that many
    records until `resume` is set (still serving delivery reports), so a test
    can act while records are certainly still to come, however slow the
    machine."""

    def __init__(self, bootstrap: str, topic: str, count: int, partitions: int, run_id: str, rate: float,
                 hold_at: int | None = None):
        super().__init__(daemon=True, name="kafka-producer")
        self.bootstrap = bootstrap
        self.topic = topic
        self.count = count
        self.partitions = partitions
        self.run_id = run_id
        self.rate = rate
        self.lock = threading.Lock()
        self.produced = 0
        self.delivered: dict[str, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.stop_flag = False
        self.hold_at = hold_at
        self.resume = threading.Event()

    def value(self, i: int) -> str:
        return f"{self.run_id}-{i:05d}"

    def stop(self) -> None:
        self.stop_flag = True

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.failure = e

    def _on_delivery(self, err, msg) -> None:
        with self.lock:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.delivered[_text(msg.value())] = (msg.partition(), msg.offset())

    def _run(self) -> None:
        p = _producer(self.bootstrap)
        t0 = time.monotonic()
        for i in range(self.count):
            if self.stop_flag:
                break
            if i == self.hold_at:
                while not self.resume.is_set() and not self.stop_flag:
                    p.poll(0.05)
                t0 = time.monotonic() - i / self.rate  # pace on from here
            due = t0 + i / self.rate
            while (now := time.monotonic()) < due:
                p.poll(min(due - now, 0.05))
            p.produce(
                self.topic,
                value=self.value(i),
                key=f"k{i}",
                partition=i % self.partitions,
                headers=[("seq", str(i))],
                on_delivery=self._on_delivery,
            )
            with self.lock:
                self.produced = i + 1
            p.poll(0)
        left = p.flush(30)
        if left:
            self.errors.append(f"{left} records not delivered after flush")


# -- STOMP -------------------------------------------------------------------


@dataclass
class Got:
    """One MESSAGE frame the durable subscriber received."""

    value: str
    message_id: str
    redelivered: bool
    gen: int  # the subscriber's connection generation (1 = the first node)
    t: float
    headers: dict
    ack_receipted: bool = False


class _Listener(stomp.ConnectionListener):
    """stomp.py listener of one connection generation."""

    def __init__(self, owner: "DurableSubscriber", gen: int):
        self.owner = owner
        self.gen = gen

    def on_receipt(self, frame):
        self.owner._on_receipt(self.gen, frame)

    def on_message(self, frame):
        self.owner._on_message(self.gen, frame)

    def on_error(self, frame):
        self.owner._on_error(self.gen, frame)

    def on_disconnected(self):
        self.owner._on_disconnected(self.gen)


class DurableSubscriber(threading.Thread):
    """A durable topic subscription over STOMP that fails over.

    CONNECT carries `client-id`, SUBSCRIBE `durable-subscription-name` and
    ack=client-individual. Every MESSAGE is acked at once on the connection
    it came on, the ACK with a receipt; `Got.ack_receipted` says the broker
    confirmed it. On a lost connection it connects to whichever node accepts
    and subscribes again under the same names."""

    def __init__(self, addrs, dest: str, client_id: str, sub_name: str, give_up_s: float = WAIT_S):
        super().__init__(daemon=True, name="durable-subscriber")
        self.addrs = addrs
        self.dest = dest
        self.client_id = client_id
        self.sub_name = sub_name
        self.give_up_s = give_up_s
        self.cv = threading.Condition()
        self.got: list[Got] = []
        self.values: set[str] = set()
        self.errors: list[str] = []
        self.gen = 0
        self.subscribed_gen = 0
        self.connects: list[tuple[float, int]] = []  # (time.time(), node index)
        self.broken = True
        self.stop_flag = False
        self.failure: BaseException | None = None
        self.conn = None

    # listener callbacks (stomp.py's receiver threads)
    def _on_receipt(self, gen, frame):
        rid = frame.headers.get("receipt-id", "")
        with self.cv:
            if rid == f"sub-{gen}":
                self.subscribed_gen = gen
            elif rid.startswith("ack-"):
                self.got[int(rid[4:])].ack_receipted = True
            self.cv.notify_all()

    def _on_message(self, gen, frame):
        h = dict(frame.headers)
        body = frame.body if isinstance(frame.body, str) else frame.body.decode("utf-8", "replace")
        with self.cv:
            idx = len(self.got)
            self.got.append(Got(body, h.get("message-id", ""), h.get("redelivered") == "true", gen, time.time(), h))
            self.values.add(body)
            conn = self.conn if gen == self.gen else None
            self.cv.notify_all()
        if conn is not None and "ack" in h:
            try:
                conn.ack(h["ack"], receipt=f"ack-{idx}")
            except Exception:
                pass  # the connection is going: the message will be redelivered

    def _on_error(self, gen, frame):
        with self.cv:
            self.errors.append(f"gen {gen}: {frame.headers.get('message')}")
            if gen == self.gen:
                self.broken = True
            self.cv.notify_all()

    def _on_disconnected(self, gen):
        with self.cv:
            if gen == self.gen:
                self.broken = True
            self.cv.notify_all()

    def stop(self) -> None:
        with self.cv:
            self.stop_flag = True
            self.cv.notify_all()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.failure = e

    def _run(self) -> None:
        idx = 0
        first = True
        while True:
            with self.cv:
                if self.stop_flag:
                    break
                if not self.broken:
                    self.cv.wait_for(lambda: self.broken or self.stop_flag, timeout=0.5)
                    continue
                self.gen += 1
                gen = self.gen
                self.broken = False
                old = self.conn
            _hard_close(old)
            conn, idx = connect_any(
                self.addrs,
                _Listener(self, gen),
                idx if first else idx + 1,
                time.monotonic() + self.give_up_s,
                headers={"client-id": self.client_id},
                should_stop=lambda: self.stop_flag,
            )
            first = False
            with self.cv:
                self.conn = conn
            try:
                conn.subscribe(
                    self.dest,
                    id="1",
                    ack="client-individual",
                    headers={"durable-subscription-name": self.sub_name},
                    receipt=f"sub-{gen}",
                )
            except Exception:
                with self.cv:
                    self.broken = True
                continue
            self.connects.append((time.time(), idx))
        with self.cv:
            conn = self.conn
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass
            _hard_close(conn)

    def wait_subscribed(self, timeout: float = WAIT_S) -> None:
        with self.cv:
            ok = self.cv.wait_for(lambda: self.subscribed_gen >= 1 or self.failure is not None, timeout)
        assert ok and self.subscribed_gen >= 1, (
            f"durable subscription not confirmed within {timeout:.0f} s: failure={self.failure!r} errors={self.errors}"
        )

    def wait_values(self, want: set[str], timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: want <= self.values or self.failure is not None, timeout) and want <= self.values

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: len(self.values) >= n, timeout)

    def snapshot(self) -> list[Got]:
        with self.cv:
            return list(self.got)


# -- the local journal -------------------------------------------------------


class LocalBridgeNode(NodeProcess):
    """`halyard node` on the local journal with the bridge on through
    `--bridge-kafka-bootstrap` (out through the outbox). The data dir and
    the lock dir are `shared`: the two nodes of a pair use the same one."""

    stop_timeout_s = 15.0

    def __init__(self, base_dir, name: str, role: str, cluster_id: str, bootstrap: str, shared, extra_args=None):
        super().__init__(base_dir, name, extra_args)
        shared.mkdir(parents=True, exist_ok=True)
        self.data_dir = shared
        self.role = role
        self.cluster_id = cluster_id
        self.bootstrap = bootstrap

    def node_args(self) -> list[str]:
        return [
            "--lock-dir",
            str(self.data_dir),
            "--node-id",
            self.name,
            "--role",
            self.role,
            "--cluster-id",
            self.cluster_id,
            "--bridge-kafka-bootstrap",
            self.bootstrap,
        ]


@dataclass
class LocalPair:
    primary: LocalBridgeNode
    backup: LocalBridgeNode
    cluster_id: str

    def addrs(self) -> list[tuple[str, int]]:
        return [self.primary.addr, self.backup.addr]


# -- fixtures ----------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path):
    """Factory: cluster() -> a `harness.kafka.Cluster` on a fresh cluster id
    and HALYARD_KAFKA_BOOTSTRAP (a factory, so that a missing bootstrap fails
    the test itself). At teardown no node may have panicked; every node is
    stopped."""
    made: list[Cluster] = []

    def make() -> Cluster:
        c = Cluster(tmp_path, kafka_bootstrap(), unique("br"))
        made.append(c)
        return c

    yield make
    errors = []
    for c in made:
        try:
            c.close()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def local_pair(tmp_path):
    """Factory: local_pair(*extra_args) -> a started `LocalPair` on the local
    journal (shared data and lock dir, a fresh `--cluster-id`, both bridging
    to HALYARD_KAFKA_BOOTSTRAP): returns once the primary accepts STOMP and
    the backup announced itself. At teardown no node may have panicked;
    every node is stopped."""
    made: list[LocalBridgeNode] = []

    def make(*extra: str) -> LocalPair:
        bootstrap = kafka_bootstrap()
        cluster_id = unique("brl")
        shared = tmp_path / "pair-shared"
        primary = LocalBridgeNode(tmp_path, "primary", "primary", cluster_id, bootstrap, shared, list(extra))
        made.append(primary)
        backup = LocalBridgeNode(tmp_path, "backup", "backup", cluster_id, bootstrap, shared, list(extra))
        made.append(backup)
        pos = primary.log_pos()
        primary.start()
        primary.wait_log(ACCEPTING, since=pos)
        wait_accepts(primary)
        pos = backup.log_pos()
        backup.start()
        backup.wait_log(BACKUP_ANNOUNCED, since=pos)
        return LocalPair(primary, backup, cluster_id)

    yield make
    close_all(made)


@pytest.fixture
def threads():
    """Tracks client threads (anything with stop() and join()), stopped at teardown."""
    made: list = []

    def track(t):
        made.append(t)
        return t

    yield track
    for t in made:
        t.stop()
    for t in made:
        t.join(timeout=10)


@pytest.fixture
def clients():
    """Factory of stomp.py `Client`s of a node, disconnected at teardown."""
    made: list[Client] = []

    def make(node, client_id: str | None = None) -> Client:
        c = Client(node, client_id)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close_quietly()
