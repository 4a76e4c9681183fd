"""Qpid JMS against one broker: selectors, expiry, priority, scheduled delivery, temporary queues
for request/reply, durable and shared subscriptions, rollback and redelivery, body types."""

from __future__ import annotations

import time
import uuid

import pytest



def seqs(events) -> list[int]:
    return [int(e["seq"]) for e in events]


# Ten messages: seq i has color red/blue/green (i % 3), weight i, priority i % 10 (some with a
# property `opt` only when i is even).
COLORS = ["red", "blue", "green"]


def produce_selector_fixture(jms: Jms, queue: str) -> None:
    jms.run("produce", "--queue", queue, "--count", "10", "--priorities", ",".join(str(i) for i in range(10)),
            "--property-cycle", "color=" + ",".join(COLORS), "--property", "weight:int={seq}",
            "--property-cycle", "opt=yes,")


SELECTORS = {
    "equality": ("color = 'red'", lambda i: i % 3 == 0),
    "and-comparison": ("color = 'red' AND weight > 4", lambda i: i % 3 == 0 and i > 4),
    "range": ("weight > 5 AND weight <= 8", lambda i: 5 < i <= 8),
    "like": ("color LIKE 'gr%'", lambda i: i % 3 == 2),
    "in": ("color IN ('green', 'blue')", lambda i: i % 3 in (1, 2)),
    "between": ("weight BETWEEN 2 AND 4", lambda i: 2 <= i <= 4),
    "is-null": ("opt IS NULL", lambda i: i % 2 == 1),
    "arithmetic": ("weight * 2 + 1 = 7", lambda i: i == 3),
    "not": ("NOT (color = 'red') AND weight >= 8", lambda i: i % 3 != 0 and i >= 8),
    "header": ("JMSPriority >= 7", lambda i: i % 10 >= 7),
}


def test_consumer_selector_takes_only_matching_messages(broker: Broker, jms: Jms, name):
    produce_selector_fixture(jms, name)
    picked = jms.run("consume", "--queue", name, "--selector", "color = 'red' AND weight > 4", "--timeout-ms", "2000")
    assert sorted(seqs(picked.of("received"))) == [6, 9]
    rest = jms.run("consume", "--queue", name, "--timeout-ms", "2000")
    assert sorted(seqs(rest.of("received"))) == [0, 1, 2, 3, 4, 5, 7, 8], "the others stay for other consumers"


def test_selector_grammar(broker: Broker, jms: Jms, name):
    """Each selector through a QueueBrowser (the broker evaluates it, nothing is consumed)."""
    produce_selector_fixture(jms, name)
    wrong = {}
    for label, (selector, pred) in SELECTORS.items():
        b = jms.run("browse", "--queue", name, "--selector", selector)
        got = sorted(seqs(b.of("browsed")))
        want = [i for i in range(10) if pred(i)]
        if got != want:
            wrong[label] = (selector, got, want)
    assert not wrong, wrong


def test_ttl_expired_message_goes_to_expiry_address(broker: Broker, jms: Jms, name):
    run = uuid.uuid4().hex
    jms.run("produce", "--queue", name, "--count", "3", "--ttl", "300", "--run", run)
    jms.run("produce", "--queue", name, "--count", "1", "--start", "100", "--ttl", "600000", "--run", run)
    time.sleep(1.5)
    c = jms.run("consume", "--queue", name, "--timeout-ms", "3000")
    got = c.of("received")
    assert seqs(got) == [100], "only the unexpired message is delivered"
    assert got[0]["expiration"] > time.time() * 1000, got[0]
    e = jms.run("consume", "--queue", broker.expiry_address, "--selector", f"run = '{run}'", "--timeout-ms", "3000",
                "--first-timeout-ms", "40000")
    expired = e.of("received")
    assert sorted(seqs(expired)) == [0, 1, 2], f"expired messages in {broker.expiry_address}: {expired}"
    assert all(x["body"] == f"msg-{x['seq']}" for x in expired)


def test_priority_highest_first(broker: Broker, jms: Jms, name):
    prios = [0, 9, 4, 7, 1, 9, 5, 2, 8, 3, 6, 0, 4]
    jms.run("produce", "--queue", name, "--count", str(len(prios)), "--priorities", ",".join(map(str, prios)))
    c = jms.run("consume", "--queue", name, "--timeout-ms", "2000")
    got = [(e["priority"], e["seq"]) for e in c.of("received")]
    want = sorted(((p, i) for i, p in enumerate(prios)), key=lambda x: (-x[0], x[1]))
    assert got == want, "priority 9 first, FIFO within a priority"


def test_scheduled_delivery_delay(broker: Broker, jms: Jms, name):
    delay_ms = 3000
    consumer = jms.start("consume", "--queue", name, "--count", "2", "--timeout-ms", "15000")
    consumer.wait_for(lambda: consumer.count("subscribed") == 1, what="consumer subscribed")
    delayed = jms.run("produce", "--queue", name, "--count", "1", "--delay", str(delay_ms))
    jms.run("produce", "--queue", name, "--count", "1", "--start", "1")
    assert consumer.wait(60) == 0, consumer.describe()
    got = consumer.of("received")
    assert seqs(got) == [1, 0], "the undelayed message overtakes the delayed one"
    sent_at = delayed.of("sent")[0]["t_ms"]
    waited = got[1]["t_ms"] - sent_at
    assert waited >= delay_ms - 100, f"delivered {waited} ms after the send"
    assert waited < delay_ms + 10000


def test_request_reply_through_a_temporary_queue(broker: Broker, jms: Jms, name):
    responder = jms.start("respond", "--queue", name, "--count", "5")
    responder.wait_for(lambda: responder.count("subscribed") == 1, what="responder ready")
    req = jms.run("request", "--queue", name, "--count", "5", "--timeout-ms", "20000")
    assert req.summary["replies"] == 5
    assert all(e["matches"] for e in req.of("reply"))
    assert req.summary["temporary_queue_deleted"] is True
    assert responder.wait(60) == 0
    assert all(e["reply_to_temporary"] for e in responder.of("replied")), responder.of("replied")


def test_durable_subscription_keeps_messages_while_away(broker: Broker, jms: Jms, name):
    topic, cid = f"{name}-t", f"{name}-cid"
    jms.run("consume", "--topic", topic, "--durable", "sub", "--client-id", cid, "--count", "0")
    jms.run("produce", "--topic", topic, "--count", "5")
    c = jms.run("consume", "--topic", topic, "--durable", "sub", "--client-id", cid, "--timeout-ms", "2000",
                "--unsubscribe")
    assert sorted(seqs(c.of("received"))) == list(range(5))
    assert c.of("unsubscribed")
    jms.run("produce", "--topic", topic, "--count", "3", "--start", "10")
    again = jms.run("consume", "--topic", topic, "--durable", "sub", "--client-id", cid, "--timeout-ms", "1500",
                    "--unsubscribe")
    assert seqs(again.of("received")) == [], "after unsubscribe the subscription kept nothing"


def test_non_durable_topic_subscriber_gets_nothing_sent_while_away(broker: Broker, jms: Jms, name):
    topic = f"{name}-t"
    jms.run("consume", "--topic", topic, "--count", "0")
    jms.run("produce", "--topic", topic, "--count", "3")
    c = jms.run("consume", "--topic", topic, "--timeout-ms", "1500")
    assert seqs(c.of("received")) == []


def test_shared_subscription_splits_and_plain_subscriber_sees_all(broker: Broker, jms: Jms, name):
    topic = f"{name}-t"
    url = broker.amqp_url + "?jms.prefetchPolicy.all=1"
    shared = [jms.start("consume", "--topic", topic, "--shared", "shr", "--timeout-ms", "3000", "--sleep-ms", "50",
                        url=url) for _ in range(2)]
    plain = jms.start("consume", "--topic", topic, "--timeout-ms", "3000")
    for p in shared + [plain]:
        p.wait_for(lambda p=p: p.count("subscribed") == 1, what="subscribed")
    jms.run("produce", "--topic", topic, "--count", "20")
    for p in shared + [plain]:
        assert p.wait(60) == 0, p.describe()
    a, b = (seqs(p.of("received")) for p in shared)
    assert sorted(a + b) == list(range(20)), "the shared subscription gets each message once"
    assert a and b, f"both shared consumers take part: {len(a)} + {len(b)}"
    assert sorted(seqs(plain.of("received"))) == list(range(20))


def test_rolled_back_session_redelivers(broker: Broker, jms: Jms, name):
    jms.run("produce", "--queue", name, "--count", "3")
    c = jms.run("consume", "--queue", name, "--transacted", "--commit-every", "3", "--rollback-first", "--count", "6",
                "--timeout-ms", "5000")
    got = c.of("received")
    assert [e["seq"] for e in got] == [0, 1, 2, 0, 1, 2]
    assert [e["redelivered"] for e in got] == [False] * 3 + [True] * 3
    assert [e["delivery_count"] for e in got] == [1] * 3 + [2] * 3
    assert c.summary["committed"] == 3 and c.summary["rolled_back"] == 3
    left = jms.run("consume", "--queue", name, "--timeout-ms", "1500")
    assert left.of("received") == []


def test_rolled_back_producer_transaction_sends_nothing(broker: Broker, jms: Jms, name):
    p = jms.run("produce", "--queue", name, "--count", "4", "--transacted", "--commit-every", "4", "--rollback")
    assert p.summary["rolled_back"] == 4
    jms.run("produce", "--queue", name, "--count", "2", "--start", "10", "--transacted", "--commit-every", "2")
    c = jms.run("consume", "--queue", name, "--timeout-ms", "1500")
    assert seqs(c.of("received")) == [10, 11]


@pytest.mark.parametrize("kind", ["text", "bytes", "map", "stream", "object"])
def test_body_types_kept_as_sent(broker: Broker, jms: Jms, name, kind):
    jms.run("produce", "--queue", name, "--count", "1", "--type", kind, "--body", "héllo-{seq}")
    got = jms.run("consume", "--queue", name, "--timeout-ms", "2000").of("received")
    assert len(got) == 1 and got[0]["type"] == kind, got
    body = got[0]["body"]
    want = {"text": "héllo-0", "bytes": "héllo-0", "map": {"body": "héllo-0", "seq": 0},
            "stream": ["héllo-0", 0], "object": "héllo-0"}[kind]
    assert body == want
