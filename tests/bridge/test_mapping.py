"""How messages and records map onto each other, on one live node on the
Kafka journal: headers, keys, the loop guard, duplicate ids, and a
configured route (regex and address template)."""

from __future__ import annotations

from bridge_helpers import (
    create_topic,
    kafka_bootstrap,
    partitions_of,
    produce_records,
    read_topic,
    topic_names,
    unique,
)
from harness.logs import log

ROUTE = "match=orders-.*;address=shop.${topic}.events;direction=both"


def test_headers_keys_and_loop_guard(cluster, clients):
    """A STOMP send to `/topic/kafka.<T3>` with custom headers and a
    `_AMQ_DUPL_ID` becomes one record of T3 (created on first use with one
    partition): value = body, key = the duplicate id, one header per
    property, `halyard.cluster=<cluster id>`. A resend with the same
    duplicate id produces nothing. A subscriber of the address gets the send
    once: the bridged record is not read back in, and neither is a record
    another client writes with our `halyard.cluster`; records from Kafka
    clients (one keyed with headers, one marked by another cluster) arrive
    with `kafka.*` properties and their headers. The subscriber's messages
    are checked after the last of those records arrived: the topic has one
    partition, read in order, so anything read back in would have come
    before it."""
    bootstrap = kafka_bootstrap()
    c = cluster()
    node = c.node("live", "primary")
    c.start_live(node)
    topic = unique("hk")
    dest = f"/topic/kafka.{topic}"
    log(f"cluster {c.cluster_id}: {dest} <-> Kafka {topic}")

    sub = clients(node)
    sub.subscribe(dest, "s")
    p = clients(node)
    dup = unique("dup")
    body = f"hello {dup}"
    props = {"color": "blue", "weight": "42", "x-trace": "t-1"}
    p.send(dest, body, **{"_AMQ_DUPL_ID": dup}, **props)
    # The receipt came after the record's transaction committed.
    records = read_topic(bootstrap, topic)
    assert len(records) == 1, f"want one record in {topic} after one send, found {records}"
    r = records[0]
    assert r.value == body, r
    assert r.key == dup, f"record key {r.key!r}, want the duplicate id {dup!r}"
    for k, v in props.items():
        assert r.header(k) == [v], f"header {k}: {r.header(k)}, want [{v!r}]; headers {r.headers}"
    assert r.header("halyard.cluster") == [c.cluster_id], f"loop-guard header: {r.headers}"
    assert partitions_of(bootstrap, topic) == [0], "a topic created on first use has 1 partition"

    # The same duplicate id again: dropped, not produced a second time.
    p.send(dest, body, **{"_AMQ_DUPL_ID": dup}, **props)
    again = read_topic(bootstrap, topic)
    assert [x.key for x in again] == [dup], f"a resend with the same _AMQ_DUPL_ID was produced again: {again}"

    kafka_key = unique("order")
    ours = f"marked-ours {dup}"
    keyed = f"from-kafka {dup}"
    foreign = f"other-cluster {dup}"
    other_cluster = unique("elsewhere")
    delivered = produce_records(
        bootstrap,
        topic,
        [
            {"value": ours, "key": "g", "headers": [("halyard.cluster", c.cluster_id)]},
            {"value": keyed, "key": kafka_key, "headers": [("origin", "kafka-client"), ("trace-id", "t-99")]},
            {"value": foreign, "headers": [("halyard.cluster", other_cluster), ("origin", "elsewhere")]},
        ],
    )
    sub.wait_for_body(foreign, timeout=30)
    msgs = sub.messages("s")
    bodies = [m.body for m in msgs]
    log(f"subscriber got {bodies}")
    assert bodies.count(body) == 1, f"the sent message reached the subscriber {bodies.count(body)} times: {bodies}"
    assert ours not in bodies, f"a record with halyard.cluster={c.cluster_id} was read back in: {bodies}"
    assert bodies == [body, keyed, foreign], bodies

    h = msgs[1].headers
    want = {
        "kafka.topic": topic,
        "kafka.partition": "0",
        "kafka.offset": str(delivered[1][1]),
        "kafka.key": kafka_key,
        "origin": "kafka-client",
        "trace-id": "t-99",
    }
    assert {k: h.get(k) for k in want} == want, f"keyed record's message headers: {h}"
    h = msgs[2].headers
    assert "kafka.key" not in h, f"an unkeyed record's message has kafka.key: {h}"
    assert h.get("halyard.cluster") == other_cluster and h.get("origin") == "elsewhere", h
    assert h.get("kafka.offset") == str(delivered[2][1]), h


def test_route_regex_and_template(cluster, clients):
    """With `--bridge-route "match=orders-.*;address=shop.${topic}.events;
    direction=both"`: records of Kafka topic `orders-eu-<id>` reach a
    subscriber of `/topic/shop.orders-eu-<id>.events`, and a send there is
    produced to that topic; the regex is anchored, so a send to
    `/topic/shop.xorders-eu-<id>.events` goes to no topic."""
    bootstrap = kafka_bootstrap()
    c = cluster()
    node = c.node("live", "primary", extra_args=["--bridge-route", ROUTE])
    c.start_live(node)
    topic = unique("orders-eu")
    create_topic(bootstrap, topic, 1)
    dest = f"/topic/shop.{topic}.events"
    log(f"cluster {c.cluster_id}: route {ROUTE!r}; {dest} <-> Kafka {topic}")

    sub = clients(node)
    sub.subscribe(dest, "s")
    inbound = f"in {topic}"
    [(_, off)] = produce_records(bootstrap, topic, [{"value": inbound, "key": "o-1", "headers": [("src", "kafka")]}])
    m = sub.wait_for_body(inbound, timeout=30)
    want = {"kafka.topic": topic, "kafka.partition": "0", "kafka.offset": str(off), "kafka.key": "o-1", "src": "kafka"}
    assert {k: m.headers.get(k) for k in want} == want, f"message from {topic}: {m.headers}"
    assert m.headers.get("destination") == dest, m.headers

    p = clients(node)
    outbound = f"out {topic}"
    p.send(dest, outbound, region="eu")
    records = read_topic(bootstrap, topic)
    outs = [r for r in records if r.value == outbound]
    assert len(outs) == 1, f"want the send to {dest} once in Kafka {topic}: {records}"
    assert outs[0].header("region") == ["eu"] and outs[0].header("halyard.cluster") == [c.cluster_id], outs[0]

    # Anchored: `orders-.*` does not cover `xorders-...`. The receipt comes
    # after the batch's transaction committed, so a bridged record would
    # have created the topic by now.
    stray = f"x{topic}"
    p.send(f"/topic/shop.{stray}.events", "not bridged")
    assert stray not in topic_names(bootstrap), f"/topic/shop.{stray}.events was bridged to topic {stray}"

    sentinel = f"sentinel {topic}"
    produce_records(bootstrap, topic, [{"value": sentinel}])
    sub.wait_for_body(sentinel, timeout=30)
    bodies = [x.body for x in sub.messages("s")]
    assert bodies == [inbound, outbound, sentinel], f"subscriber of {dest} got {bodies}"


def test_default_prefix_and_queue_subscriptions(cluster, clients):
    """With the route of the test above: the default prefix does not reach a
    topic the route covers, either way. A send to `/topic/kafka.<T>`
    (T = `orders-<id>`) is a plain local send: no record of T, while a send
    to `/topic/shop.<T>.events` is one; a record of T reaches the route's
    address and not a subscriber of `/topic/kafka.<T>`. A send to
    `/topic/kafka.halyard-<id>-journal` (another cluster's journal topic)
    creates no topic. A queue
    subscription (STOMP SUBSCRIBE to `/queue/...`) of a bridged address,
    the default route's or a routed one, is refused with an ERROR frame
    saying the address is a topic."""
    bootstrap = kafka_bootstrap()
    c = cluster()
    node = c.node("live", "primary", extra_args=["--bridge-route", ROUTE])
    c.start_live(node)
    topic = unique("orders")
    create_topic(bootstrap, topic, 1)
    routed = f"/topic/shop.{topic}.events"
    default = f"/topic/kafka.{topic}"
    log(f"cluster {c.cluster_id}: route {ROUTE!r}; {routed} <-> Kafka {topic}; {default} not bridged")

    sub = clients(node)
    sub.subscribe(routed, "r")
    sub.subscribe(default, "d")
    p = clients(node)
    via_prefix = f"via the default prefix {topic}"
    via_route = f"via the route {topic}"
    p.send(default, via_prefix)
    # The receipt of the routed send comes after its batch's transaction
    # committed; the default-prefix send was journaled before it, so a record
    # of it would be committed (and read_committed would see it) by now.
    p.send(routed, via_route)
    values = [r.value for r in read_topic(bootstrap, topic)]
    assert values == [via_route], f"Kafka {topic} after a send to {default} and one to {routed}: {values}"

    inbound = f"from kafka {topic}"
    produce_records(bootstrap, topic, [{"value": inbound}])
    sub.wait_for_body(inbound, sub="r", timeout=30)
    # Messages of one subscription arrive in order: had the record also gone
    # to kafka.<T>, it would reach "d" before this later local send.
    end = f"end {topic}"
    p.send(default, end)
    sub.wait_for_body(end, sub="d", timeout=30)
    got = {s: [m.body for m in sub.messages(s)] for s in ("r", "d")}
    assert got == {"r": [via_route, inbound], "d": [via_prefix, end]}, got
    values = [r.value for r in read_topic(bootstrap, topic)]
    assert values == [via_route, inbound], f"Kafka {topic} at the end: {values}"

    # Another Halyard cluster's journal topic is never bridged, whatever
    # the address (the receipt comes after the commit, as above).
    journal = f"halyard-{unique('other')}-journal"
    p.send(f"/topic/kafka.{journal}", "not bridged")
    assert journal not in topic_names(bootstrap), f"/topic/kafka.{journal} was bridged to topic {journal}"

    for dest, address in (
        (f"/queue/kafka.{unique('q')}", None),
        (f"/queue/shop.{topic}.events", f"shop.{topic}.events"),
    ):
        q = clients(node)
        rid = q.rid("sub")
        q.conn.subscribe(dest, "q", ack="auto", receipt=rid)
        q.rec.wait(lambda: bool(q.rec.errors) or rid in q.rec.receipts, 30, f"ERROR or RECEIPT for SUBSCRIBE {dest}")
        assert rid not in q.rec.receipts, f"a queue subscription to {dest} was accepted"
        err = q.rec.errors[0]
        text = f"{err.headers.get('message', '')} {err.body}"
        log(f"SUBSCRIBE {dest}: ERROR {text!r}")
        assert "is a topic" in text, f"ERROR frame for SUBSCRIBE {dest}: {err.headers} {err.body!r}"
        assert (address or dest.removeprefix("/queue/")) in text, f"ERROR frame does not name the address: {text!r}"
