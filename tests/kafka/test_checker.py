"""The checker of the HA tests must be able to fail: feed it a lost message,
a message stored twice, an unexpected delivery and a corrupted body."""

from __future__ import annotations

import pytest

from harness.failover import (
    Delivery,
    FailoverConsumer,
    FailoverProducer,
    assert_report,
    body_for,
    check_delivery,
)


def _clients(receipted, deliveries, unexpected=()):
    p = FailoverProducer([("127.0.0.1", 1)], "/queue/x", 5, "run")
    p.receipted = set(receipted)
    c = FailoverConsumer([("127.0.0.1", 1)], "/queue/x", "run")
    c.deliveries = [Delivery(m, mid, False, 1, 0.0, ok) for m, mid, ok in deliveries]
    c.unexpected = list(unexpected)
    return p, c


def test_clean_run_passes_and_counts_duplicates():
    p, c = _clients({0, 1, 2}, [(0, "1:1", True), (1, "1:2", True), (1, "1:2", True), (2, "1:3", True)])
    r = check_delivery(p, c)
    assert_report(r)
    assert r.duplicates == 1 and r.delivered_distinct == 3


@pytest.mark.parametrize(
    "receipted, deliveries, unexpected, what",
    [
        ({0, 1, 2}, [(0, "1:1", True), (1, "1:2", True)], (), "never delivered"),
        ({0, 1}, [(0, "1:1", True), (1, "1:2", True), (1, "2:7", True)], (), "stored more than once"),
        ({0}, [(0, "1:1", True), (9, "1:9", True)], (), "unexpected"),
        ({0}, [(0, "1:1", True)], ("no mid header",), "unexpected"),
        ({0}, [(0, "1:1", False)], (), "corrupted body"),
    ],
)
def test_checker_catches(receipted, deliveries, unexpected, what):
    p, c = _clients(receipted, deliveries, unexpected)
    with pytest.raises(AssertionError, match=what):
        assert_report(check_delivery(p, c))


def test_bodies_are_distinct_and_sized():
    assert len(body_for("r", 1, 1024)) == 1024
    assert body_for("r", 1, 1024) != body_for("r", 2, 1024)
