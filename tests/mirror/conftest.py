"""Fixtures of the mirroring tests (issue 13): the brokers, waits and steps
are in `harness.mirror` (two mirrored `halyard node` processes under a lock
coordinator, seed 002's shape; shared with tests/amqp/test_jms_mirror.py).
Here:

- `mirror_pair(kind)` (per test): a `harness.mirror.Pair` of two MirrorNodes
  named `server0` and `server1`, mirroring to each other, sharing one lock
  (`file:<tmp>/locks`, `zookeeper:<HALYARD_ZOOKEEPER>` or
  `kafka:<HALYARD_KAFKA_BOOTSTRAP>`, the last two with a lock id of their
  own so an earlier run's znodes or topics do not count). At teardown each node
  is checked for a panic and stopped (`harness.node.close_all`).
- `mirror_proxies(pair)` (per test): `harness.mirror.MirrorProxy` on each
  direction of the mirror link (server0's `--mirror` through P01 to
  server1's mirror listener, server1's through P10 to server0's); stopped
  at teardown.
- the STOMP failover clients' helpers: `new_run_id`, `stop_clients`,
  `wait_consumed`, `first_deliveries`, `producer_state`.
- `zookeeper` (session): the connect string in HALYARD_ZOOKEEPER
  (scripts/ci/mirror.sh starts ZooKeeper 3.9.5 and sets it); missing or not
  answering fails the test, it is never skipped.
- `kafka` (session): the bootstrap address in HALYARD_KAFKA_BOOTSTRAP
  (scripts/ci/mirror.sh starts Kafka with scripts/services/kafka.sh unless
  it runs, and sets it); missing or not answering a metadata request fails
  the test, it is never skipped.
- `figures` (per test): measured figures (`harness.mirror.note`), printed
  as they come, added to the test's report as a "mirror figures" section
  and repeated in the terminal summary, pass or fail (as tests/paging does).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid

import pytest

from harness.failover import FailoverConsumer, FailoverProducer
from harness.logs import log
from harness.mirror import LOCK_ID, MirrorProxy, Pair, format_figures
from harness.node import close_all

# The test modules import these helpers as `mirror_helpers`.
sys.modules["mirror_helpers"] = sys.modules[__name__]

# -- clients --------------------------------------------------------------------


def new_run_id() -> str:
    return f"mirror-{uuid.uuid4().hex[:10]}"


def stop_clients(*clients) -> None:
    for c in clients:
        if c is not None:
            c.stop()
    for c in clients:
        if c is not None:
            c.join(timeout=10)


def wait_consumed(consumer: FailoverConsumer, want: set[int], timeout: float, stall_s: float = 15.0) -> bool:
    """Waits until `consumer` has every mid of `want`; gives up after
    `timeout`, or once no delivery came for `stall_s` (what is missing then
    is not coming: the test need not wait out the whole bound)."""
    deadline = time.monotonic() + timeout
    last_n, last_t = -1, time.monotonic()
    while True:
        with consumer.cv:
            if want <= consumer.seen:
                return True
            n = len(consumer.deliveries)
            failed = consumer.failure is not None
        now = time.monotonic()
        if n != last_n:
            last_n, last_t = n, now
        if failed or now > deadline or now - last_t > stall_s:
            return False
        time.sleep(0.05)


def first_deliveries(consumer: FailoverConsumer) -> tuple[list[int], dict[int, int]]:
    """The mids in order of first delivery, and how often each was delivered."""
    with consumer.cv:
        mids = [d.mid for d in consumer.deliveries]
    order: list[int] = []
    counts: dict[int, int] = {}
    for m in mids:
        if m not in counts:
            order.append(m)
        counts[m] = counts.get(m, 0) + 1
    return order, counts


def producer_state(p: FailoverProducer) -> str:
    with p.cv:
        return (f"receipted {len(p.receipted)}/{p.count}, sent {p.sent_distinct}, pending {len(p.pending)}, "
                f"resends {p.resends}, reconnects {p.reconnects}, errors {p.errors[-5:]}, "
                f"failure {p.failure!r}")


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def zookeeper() -> str:
    """HALYARD_ZOOKEEPER, checked to answer; fails (never skips) otherwise."""
    cs = os.environ.get("HALYARD_ZOOKEEPER", "").strip()
    if not cs:
        pytest.fail("HALYARD_ZOOKEEPER is not set: run the suite with scripts/ci/mirror.sh (it starts ZooKeeper "
                    "3.9.5 with scripts/services/zookeeper.sh), or start it and export "
                    "HALYARD_ZOOKEEPER=$(scripts/services/zookeeper.sh connect-string)", pytrace=False)
    host, _, port = cs.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"ruok")
            answer = s.recv(16)
    except (OSError, ValueError) as e:
        pytest.fail(f"ZooKeeper at HALYARD_ZOOKEEPER={cs} does not answer: {e!r}", pytrace=False)
    if answer != b"imok":
        pytest.fail(f"ZooKeeper at HALYARD_ZOOKEEPER={cs} answered {answer!r} to ruok", pytrace=False)
    return cs


@pytest.fixture(scope="session")
def kafka() -> str:
    """HALYARD_KAFKA_BOOTSTRAP, checked to answer a metadata request (with
    confluent-kafka); fails (never skips) otherwise."""
    bootstrap = os.environ.get("HALYARD_KAFKA_BOOTSTRAP", "").strip()
    if not bootstrap:
        pytest.fail("HALYARD_KAFKA_BOOTSTRAP is not set: run the suite with scripts/ci/mirror.sh (it starts Kafka "
                    "with scripts/services/kafka.sh), or start it and export "
                    "HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap)", pytrace=False)
    from confluent_kafka.admin import AdminClient
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as e:  # KafkaException, or a timeout
        pytest.fail(f"Kafka at HALYARD_KAFKA_BOOTSTRAP={bootstrap} does not answer: {e!r}", pytrace=False)
    return bootstrap


@pytest.fixture
def mirror_pair(tmp_path, request):
    """Factory: mirror_pair("file" | "zookeeper" | "kafka") -> a Pair not yet started;
    checked for panics and stopped at teardown."""
    made: list[Pair] = []

    def make(kind: str) -> Pair:
        if kind == "file":
            pair = Pair.file_lock(tmp_path)
        elif kind == "zookeeper":
            zk = request.getfixturevalue("zookeeper")
            # A lock id of its own: /halyard/NAME's epoch and state persist
            # in ZooKeeper across runs.
            pair = Pair(tmp_path, kind, f"zookeeper:{zk}", f"{LOCK_ID}-{uuid.uuid4().hex[:8]}")
        elif kind == "kafka":
            bootstrap = request.getfixturevalue("kafka")
            # A lock id of its own: the group and the state topic
            # (halyard-mirror-lock-NAME, halyard-mirror-state-NAME) outlive
            # a run.
            pair = Pair(tmp_path, kind, f"kafka:{bootstrap}", f"{LOCK_ID}-{uuid.uuid4().hex[:8]}")
        else:
            raise ValueError(f"unknown lock kind {kind!r}")
        log(pair.describe())
        made.append(pair)
        return pair

    yield make
    close_all([n for p in made for n in p.nodes])


@pytest.fixture
def mirror_proxies(tmp_path):
    """Factory: mirror_proxies(pair) -> (P01, P10), two started `MirrorProxy`s
    carrying server0's mirror link to server1 and server1's to server0 (call
    it before the nodes start: it sets their `--mirror`); stopped at
    teardown."""
    made: list[MirrorProxy] = []

    def make(pair: "Pair") -> tuple[MirrorProxy, MirrorProxy]:
        p01 = MirrorProxy.route(tmp_path, pair.server0, pair.server1)
        p10 = MirrorProxy.route(tmp_path, pair.server1, pair.server0)
        made.extend([p01, p10])
        p01.start()
        p10.start()
        log(f"{p01.name}: {p01.listen} -> {p01.upstream} (control :{p01.control_port}); "
            f"{p10.name}: {p10.listen} -> {p10.upstream} (control :{p10.control_port})")
        return p01, p10

    yield make
    for p in made:
        p.close()


# -- figures --------------------------------------------------------------------

_FIGURES_KEY = pytest.StashKey[dict]()
_ALL_FIGURES: list[tuple[str, dict]] = []


@pytest.fixture
def figures(request) -> dict:
    """Measured figures of this test (name -> value)."""
    d: dict = {}
    request.node.stash[_FIGURES_KEY] = d
    _ALL_FIGURES.append((request.node.nodeid, d))
    return d


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        d = item.stash.get(_FIGURES_KEY, None)
        if d:
            rep.sections.append(("mirror figures", format_figures(d)))
            for k, v in d.items():
                item.user_properties.append((k, v))


def pytest_terminal_summary(terminalreporter):
    shown = [(nodeid, d) for nodeid, d in _ALL_FIGURES if d]
    if not shown:
        return
    terminalreporter.section("mirror figures")
    for nodeid, d in shown:
        terminalreporter.write_line(nodeid)
        for line in format_figures(d).splitlines():
            terminalreporter.write_line("    " + line)
