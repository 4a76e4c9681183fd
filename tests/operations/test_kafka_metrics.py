"""The journal metrics of `GET /metrics` on the Kafka journal, against a real
Kafka (`HALYARD_KAFKA_BOOTSTRAP`; scripts/services/kafka.sh) and a live/backup
pair of `halyard node` processes on one fresh `--cluster-id`: on the live,
Kafka transactions are the group commits (no fsync, no abort); on the backup,
`halyard_standby_lag_records` follows the journal down to 0, and disappears
once a SIGKILL of the live made the backup live."""

from __future__ import annotations

import os
import time

import pytest

from harness.kafka import HaNode, new_cluster_id
from harness.node import close_all, free_port
from ops_helpers import HttpNode, check_histogram, send_persistent, wait_until

N = 50
QUEUE = "kmetrics"
FAILOVER_S = 30.0
# Bound for the gauge showing up on the backup.
LAG_WAIT_S = 30.0
# Bound for the gauge reaching 0 after the sends. Once the standby reader has
# caught up it asks Kafka for the journal's end every 5 s
# (CHECK_EVERY_CAUGHT_UP in io/src/kafka/standby.rs), and the gauge keeps the
# lag of the last check until then: a value taken while the sends were
# being written can stand for up to 5 s. Hence 5 s plus a wide margin for a
# loaded machine. (For the same reason a 0 seen right after the sends may
# date from before them; the values seen are printed, and the new live
# holding the N messages is the proof that the copy followed.)
CAUGHT_UP_WAIT_S = 20.0
LAG = "halyard_standby_lag_records"


def kafka_bootstrap() -> str:
    """The Kafka the test needs; not being given one is a failure, not a skip."""
    bootstrap = os.environ.get("HALYARD_KAFKA_BOOTSTRAP", "").strip()
    if not bootstrap:
        pytest.fail(
            "HALYARD_KAFKA_BOOTSTRAP is not set: this test needs a running Kafka "
            "(scripts/services/kafka.sh start; then "
            "HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) scripts/ci/operations.sh)",
            pytrace=False,
        )
    return bootstrap


class KafkaHttpNode(HttpNode, HaNode):
    """A `harness.kafka.HaNode` (its Kafka flags: --kafka-bootstrap,
    --cluster-id, --node-id, --role, --kafka-session-timeout-ms) that also
    serves HTTP on a free port, with `HttpNode`'s HTTP helpers and waits."""

    # A node on Kafka joins a group and fences a transactional id first.
    ready_timeout_s = 60.0

    def __init__(self, base_dir, name: str, cluster_id: str, bootstrap: str, role: str):
        HaNode.__init__(self, base_dir, name, cluster_id, bootstrap, role)
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()

    def node_args(self) -> list[str]:
        return [*HaNode.node_args(self), "--http", f"127.0.0.1:{self.http_port}"]


@pytest.fixture
def kafka_pair(tmp_path):
    """Factory: kafka_pair() -> (primary, backup), a started live/backup pair
    on one Kafka journal (a cluster id of its own); returns once the primary
    is live and the backup announced. A factory, so that a missing
    HALYARD_KAFKA_BOOTSTRAP fails the test itself. Both nodes must not have
    panicked, and are stopped, at teardown."""
    made: list[KafkaHttpNode] = []

    def make() -> tuple[KafkaHttpNode, KafkaHttpNode]:
        bootstrap = kafka_bootstrap()
        cluster_id = new_cluster_id("ops")
        primary = KafkaHttpNode(tmp_path, "kafka-primary", cluster_id, bootstrap, "primary")
        made.append(primary)
        backup = KafkaHttpNode(tmp_path, "kafka-backup", cluster_id, bootstrap, "backup")
        made.append(backup)
        primary.start()
        backup.start_backup()
        return primary, backup

    yield make
    close_all(made)


def lag_samples(m) -> list:
    return [(s.labels, s.value) for s in m.samples(LAG)]


def test_kafka_journal_metrics_and_standby_lag(kafka_pair, clients):
    primary, backup = kafka_pair()

    # The backup follows the journal: the gauge is there (only then).
    def lag_present():
        m = backup.metrics()
        return m if m.samples(LAG) else None

    t0 = time.monotonic()
    m = wait_until(lag_present, f"{LAG} on the backup", LAG_WAIT_S)
    print(f"\n{LAG} on the backup after {time.monotonic() - t0:.2f} s: {lag_samples(m)}")
    assert m.family(LAG).type == "gauge", m.family(LAG).type
    assert m.value(LAG) >= 0
    assert m.ha_state() == "backup"

    # N persistent sends, each acknowledged by a receipt (durable in Kafka).
    c = clients(primary)
    send_persistent(c, f"/queue/{QUEUE}", N)

    m = primary.metrics()
    assert m.ha_state() == "live"
    commits = m.value("halyard_kafka_transaction_commits_total")
    batches = m.value("halyard_journal_append_batches_total")
    group = m.value("halyard_journal_group_commits_total")
    h = m.histogram("halyard_journal_group_commit_batches")
    print(
        f"live: kafka commits {commits}, append batches {batches}, group commits {group}, "
        f"written bytes {m.value('halyard_journal_written_bytes_total')}, "
        f"group commit batches {h.buckets} count {h.count} sum {h.sum}"
    )
    assert 0 < commits <= batches, f"kafka commits {commits}, append batches {batches}"
    assert group == commits, f"group commits {group} != kafka transaction commits {commits}"
    check_histogram(h, "halyard_journal_group_commit_batches")
    assert h.count == group, f"group commit histogram count {h.count} != group commits {group}"
    assert m.value("halyard_journal_written_bytes_total") > 0
    assert m.value("halyard_journal_fsyncs_total") == 0, "fsyncs on the Kafka journal"
    assert m.value("halyard_kafka_transaction_aborts_total") == 0
    assert m.value("halyard_queue_messages", queue=QUEUE) == N
    # The live follows no standby copy.
    assert not m.samples(LAG), f"{LAG} on the live: {lag_samples(m)}"

    # The backup catches up with those N sends: lag 0.
    seen: list[tuple[float, float | None]] = []  # (seconds, value) at each change

    def caught_up():
        m = backup.metrics()
        v = m.get(LAG)
        if not seen or seen[-1][1] != v:
            seen.append((round(time.monotonic() - t0, 2), v))
        return m if v == 0 else None

    t0 = time.monotonic()
    try:
        wait_until(caught_up, f"{LAG} == 0 on the backup", CAUGHT_UP_WAIT_S)
    except AssertionError as e:
        raise AssertionError(f"{e}; values seen (s, value): {seen}") from None
    print(
        f"{LAG} 0 on the backup {time.monotonic() - t0:.2f} s after the last receipt; "
        f"values seen (s, value): {seen}"
    )
    c.close_quietly()

    # SIGKILL of the live: the backup becomes live and follows nothing.
    t0 = time.monotonic()
    primary.kill9()
    a = backup.wait_live(FAILOVER_S)
    took = time.monotonic() - t0
    print(f"backup ready {took:.2f} s after the SIGKILL: {a.body.strip()}")
    m = backup.metrics()
    assert m.ha_state() == "live"
    assert not m.samples(LAG), f"{LAG} still exported by the new live: {lag_samples(m)}"
    assert m.value("halyard_activations_total") == 1
    assert m.value("halyard_queue_messages", queue=QUEUE) == N
