"""`GET /metrics` of a real `halyard node`, parsed by prometheus_client's
OpenMetrics parser: the figures must follow what stomp.py clients did."""

from __future__ import annotations

from ops_helpers import OPENMETRICS, check_histogram, send_persistent, wait_until

N = 25
CONSUMED = 10
NACKED = 3

# Every family the endpoint promises (OpenMetrics names a counter's family
# without `_total`; its samples carry it).
NODE_FAMILIES = {
    "halyard_ha_state": "gauge",
    "halyard_ha_epoch": "gauge",
    "halyard_accepting_clients": "gauge",
    "halyard_lock_obtained": "counter",
    "halyard_lock_lost": "counter",
    "halyard_activations": "counter",
    "halyard_fenced": "counter",
    "halyard_connections": "gauge",
    "halyard_connections_accepted": "counter",
    "halyard_received_bytes": "counter",
    "halyard_sent_bytes": "counter",
    "halyard_client_errors": "counter",
    "halyard_journal_append_batches": "counter",
    "halyard_journal_written_bytes": "counter",
    "halyard_journal_group_commits": "counter",
    "halyard_journal_group_commit_batches": "histogram",
    "halyard_journal_compaction_stall_seconds": "histogram",
    "halyard_journal_compaction_stall_max_seconds": "gauge",
    "halyard_journal_write_seconds": "histogram",
    "halyard_journal_write_max_seconds": "gauge",
    "halyard_journal_fsyncs": "counter",
    "halyard_kafka_transaction_commits": "counter",
    "halyard_kafka_transaction_aborts": "counter",
    "halyard_journal_append_records": "counter",
    "halyard_journal_failures": "counter",
    "halyard_journal_durable_latency_seconds": "histogram",
    "halyard_send_receipt_latency_seconds": "histogram",
    "halyard_messages": "gauge",
    "halyard_queues": "gauge",
    "halyard_uptime_seconds": "gauge",
}
QUEUE_FAMILIES = {
    "halyard_queue_messages": "gauge",
    "halyard_queue_consumers": "gauge",
    "halyard_queue_messages_added": "counter",
    "halyard_queue_messages_delivered": "counter",
    "halyard_queue_messages_redelivered": "counter",
    "halyard_queue_messages_acknowledged": "counter",
    "halyard_queue_messages_dead_lettered": "counter",
    "halyard_queue_messages_expired": "counter",
}


def q(m, sample: str, queue: str) -> float:
    return m.value(sample, queue=queue)


def wait_metric(node, sample: str, want, what: str | None = None, **labels):
    """Polls /metrics until `sample{labels}` satisfies `want` (a value or a
    predicate); returns that scrape."""
    pred = want if callable(want) else (lambda v: v == want)

    def ok():
        m = node.metrics()
        v = m.get(sample, **labels)
        return m if v is not None and pred(v) else None

    try:
        return wait_until(ok, what or f"{sample}{labels} == {want}", timeout=15)
    except AssertionError as e:
        m = node.metrics()
        raise AssertionError(f"{e}; now {[(s.labels, s.value) for s in m.samples(sample)]}") from None


def test_every_family_is_there_with_its_type(nodes):
    node = nodes("fresh").start()
    a = node.get("/metrics")
    assert a.status == 200, str(a)
    assert a.content_type.startswith(OPENMETRICS), a.content_type
    m = node.metrics()
    for name, kind in NODE_FAMILIES.items():
        assert m.family(name).type == kind, f"{name}: {m.family(name).type}, want {kind}"
    assert m.ha_state() == "live"
    assert m.label_values("halyard_ha_state", "state") >= {
        "live", "backup", "fenced", "loading", "activating", "draining", "stopped", "not-started"
    }
    assert m.value("halyard_ha_epoch") >= 1
    assert m.value("halyard_accepting_clients") == 1
    assert m.value("halyard_lock_obtained_total") == 1
    assert m.value("halyard_activations_total") == 1
    assert m.value("halyard_lock_lost_total") == 0
    assert m.value("halyard_fenced_total") == 0
    assert m.value("halyard_journal_failures_total") == 0
    assert m.value("halyard_messages") == 0
    assert m.value("halyard_queues") == 0
    assert m.label_values("halyard_connections", "protocol") == {"stomp", "amqp", "unknown"}
    assert m.value("halyard_uptime_seconds") > 0


def test_queue_counters_follow_sends_acks_and_dead_letters(nodes, clients):
    node = nodes("ops", "--max-delivery-attempts", "1").start()
    m0 = node.metrics()
    batches0 = m0.value("halyard_journal_append_batches_total")
    records0 = m0.value("halyard_journal_append_records_total")

    producer = clients(node)
    send_persistent(producer, "/queue/ops", N)
    m = wait_metric(node, "halyard_queue_messages", N, queue="ops")
    for name, kind in QUEUE_FAMILIES.items():
        assert m.family(name).type == kind, f"{name}: {m.family(name).type}, want {kind}"
    labels = m.samples("halyard_queue_messages", queue="ops")[0].labels
    assert labels == {"queue": "ops", "address": "ops", "routing": "anycast"}, labels
    assert q(m, "halyard_queue_messages_added_total", "ops") == N
    assert q(m, "halyard_queue_messages_delivered_total", "ops") == 0
    assert q(m, "halyard_queue_messages_acknowledged_total", "ops") == 0
    assert q(m, "halyard_queue_consumers", "ops") == 0
    assert m.value("halyard_messages") == N
    assert m.value("halyard_queues") == 1
    batches1 = m.value("halyard_journal_append_batches_total")
    records1 = m.value("halyard_journal_append_records_total")
    assert batches1 > batches0 > 0, (batches0, batches1)
    assert records1 >= records0 + N, (records0, records1)
    assert records1 >= batches1, (records1, batches1)
    assert m.value("halyard_journal_failures_total") == 0
    # The local journal's own view: group commits carried those batches,
    # each fsynced, and wrote at least the bodies.
    groups = m.value("halyard_journal_group_commits_total")
    assert 0 < groups <= batches1, (groups, batches1)
    check_histogram(m.histogram("halyard_journal_group_commit_batches"), "group commit batches")
    assert m.histogram("halyard_journal_group_commit_batches").count == groups
    # Each group commit's write and fdatasync was timed.
    writes = m.histogram("halyard_journal_write_seconds")
    check_histogram(writes, "journal writes")
    # (within one: a scrape reads the two counters one after the other)
    assert writes.count > 0 and abs(writes.count - groups) <= 1, (writes.count, groups)
    assert 0 < m.value("halyard_journal_write_max_seconds") <= writes.sum, writes.sum
    assert m.value("halyard_journal_fsyncs_total") >= groups
    assert m.value("halyard_journal_written_bytes_total") > N
    assert m.value("halyard_kafka_transaction_commits_total") == 0
    # Every persistent send waited for its receipt: both histograms saw them.
    for name in ("halyard_journal_durable_latency_seconds", "halyard_send_receipt_latency_seconds"):
        h = m.histogram(name)
        check_histogram(h, name)
    assert m.histogram("halyard_send_receipt_latency_seconds").count >= N
    assert m.histogram("halyard_journal_durable_latency_seconds").count >= batches1 - batches0 - 1

    # One message out at a time (prefetch 1), so each ACK or NACK is the
    # only thing in flight and the counters are exact.
    consumer = clients(node)
    consumer.subscribe("/queue/ops", "s", ack="client-individual", **{"activemq.prefetchSize": "1"})
    m = wait_metric(node, "halyard_queue_consumers", 1, queue="ops")
    for i in range(CONSUMED):
        msg = consumer.wait_messages(i + 1)[i]
        assert msg.headers["seq"] == str(i), msg.headers
        consumer.ack(msg)
    m = wait_metric(node, "halyard_queue_messages_acknowledged_total", CONSUMED, queue="ops")
    # The 11th is out with the consumer, unacknowledged: still counted.
    m = wait_metric(node, "halyard_queue_messages_delivered_total", CONSUMED + 1, queue="ops")
    assert q(m, "halyard_queue_messages", "ops") == N - CONSUMED
    assert q(m, "halyard_queue_messages_delivered_total", "ops") >= CONSUMED
    assert q(m, "halyard_queue_messages_redelivered_total", "ops") == 0
    assert q(m, "halyard_queue_messages_dead_lettered_total", "ops") == 0
    assert m.value("halyard_messages") == N - CONSUMED

    # --max-delivery-attempts 1: a NACKed delivery goes to the DLQ at once.
    for i in range(CONSUMED, CONSUMED + NACKED):
        msg = consumer.wait_messages(i + 1)[i]
        assert msg.headers["seq"] == str(i), msg.headers
        consumer.nack(msg)
    m = wait_metric(node, "halyard_queue_messages", NACKED, queue="DLQ")
    assert q(m, "halyard_queue_messages_dead_lettered_total", "ops") == NACKED
    assert q(m, "halyard_queue_messages_acknowledged_total", "ops") == CONSUMED
    assert q(m, "halyard_queue_messages_added_total", "ops") == N
    assert q(m, "halyard_queue_messages_added_total", "DLQ") == NACKED
    assert q(m, "halyard_queue_messages", "ops") == N - CONSUMED - NACKED
    assert m.value("halyard_queues") == 2
    assert m.value("halyard_messages") == N - CONSUMED
    assert m.value("halyard_client_errors_total") == 0
    batches2 = m.value("halyard_journal_append_batches_total")
    records2 = m.value("halyard_journal_append_records_total")
    assert batches2 > batches1 and records2 > records1, (batches1, batches2, records1, records2)
    for name in ("halyard_journal_durable_latency_seconds", "halyard_send_receipt_latency_seconds"):
        check_histogram(m.histogram(name), name)
    assert m.histogram("halyard_journal_durable_latency_seconds").count > 0

    # /api/queues says the same.
    api = node.queues()
    assert api["ops"]["messages"] == N - CONSUMED - NACKED, api["ops"]
    assert api["ops"]["added"] == N and api["ops"]["acknowledged"] == CONSUMED, api["ops"]
    assert api["ops"]["dead_lettered"] == NACKED and api["DLQ"]["messages"] == NACKED, api


def test_connections_and_bytes(nodes, clients):
    node = nodes("conns").start()
    # The start-up probe's connection (start() waits for a STOMP CONNECTED)
    # may not be gone yet: wait until no client is connected.
    m0 = wait_metric(node, "halyard_connections", 0, protocol="stomp")
    base = 0
    accepted0 = m0.value("halyard_connections_accepted_total")
    received0 = m0.value("halyard_received_bytes_total")
    sent0 = m0.value("halyard_sent_bytes_total")

    c = clients(node)
    m = wait_metric(node, "halyard_connections", base + 1, protocol="stomp")
    assert m.value("halyard_connections_accepted_total") >= accepted0 + 1
    assert m.value("halyard_connections", protocol="amqp") == 0
    c.send("/queue/bytes", "x" * 1000, persistent="true")
    m = wait_metric(node, "halyard_received_bytes_total", lambda v: v >= received0 + 1000, "1000 bytes received")
    assert m.value("halyard_sent_bytes_total") > sent0  # CONNECTED and RECEIPT frames

    # /api/connections lists it with its address; /api/addresses the queue.
    conns = node.api("/api/connections")["connections"]
    stomp_conns = [x for x in conns if x["protocol"] == "stomp"]
    assert len(stomp_conns) == 1, conns
    assert stomp_conns[0]["remote"].startswith("127.0.0.1:"), stomp_conns
    assert stomp_conns[0]["in_flight"] == 0 and stomp_conns[0]["paused"] is False, stomp_conns
    addresses = {a["name"]: a for a in node.api("/api/addresses")["addresses"]}
    assert addresses["bytes"]["routing"] == "anycast", addresses
    assert addresses["bytes"]["queues"] == 1 and addresses["bytes"]["messages"] == 1, addresses

    c.disconnect()
    wait_metric(node, "halyard_connections", base, protocol="stomp")


def test_max_queues_lists_the_fullest(nodes, clients):
    node = nodes("maxq", "--metrics-max-queues", "2").start()
    c = clients(node)
    depths = {"q1": 1, "q2": 2, "q3": 3, "q4": 4}
    for name, n in depths.items():
        send_persistent(c, f"/queue/{name}", n)
    m = wait_metric(node, "halyard_queues", 4)
    assert m.label_values("halyard_queue_messages", "queue") == {"q3", "q4"}
    assert q(m, "halyard_queue_messages", "q3") == 3
    assert q(m, "halyard_queue_messages", "q4") == 4
    for name in ("halyard_queue_messages_added_total", "halyard_queue_consumers"):
        assert m.label_values(name, "queue") == {"q3", "q4"}, name
    assert m.value("halyard_messages") == sum(depths.values())
