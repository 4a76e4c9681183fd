"""Fixtures of the Kafka HA tests; the helpers themselves (`HaNode`,
`Cluster`, `FaultProxy`, the failover clients and the checker) are in
tests/harness (harness.kafka, harness.failover).

- `kafka` (session): `scripts/services/kafka.sh start` (idempotent; never
  stopped here), yields the bootstrap address.
- `cluster`: a factory of `Cluster`s, each with one fresh `--cluster-id`; at
  teardown no node may have panicked, and every node is stopped.
- `fault_proxy`: a started `FaultProxy`, stopped at teardown.
- `clients`: tracks client threads so they are stopped at teardown.
"""

from __future__ import annotations

import pytest

from harness.kafka import Cluster, FaultProxy, ensure_kafka


@pytest.fixture(scope="session")
def kafka() -> str:
    return ensure_kafka()


@pytest.fixture
def cluster(tmp_path, kafka):
    made: list[Cluster] = []

    def make(cluster_id: str | None = None) -> Cluster:
        c = Cluster(tmp_path, kafka, cluster_id)
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
def fault_proxy(tmp_path, kafka):
    p = FaultProxy(tmp_path / "proxy.log").start()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def clients():
    """Tracks client threads so they are stopped at teardown."""
    made: list = []

    def track(t):
        made.append(t)
        return t

    yield track
    for t in made:
        t.stop()
    for t in made:
        t.join(timeout=10)
