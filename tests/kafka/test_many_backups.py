"""One primary and three backups: the live is SIGKILLed twice in a row.

Each time exactly one backup becomes live (checked in the logs of every
node), at no moment do two nodes accept STOMP connections (a prober tries
every node's port all the time), and no receipted message is lost across
both failovers.
"""

from __future__ import annotations

import re
import time

from harness.failover import (
    AcceptMonitor,
    FailoverConsumer,
    FailoverProducer,
    assert_report,
    check_delivery,
    run_until_done,
)
from harness.kafka import ACCEPTING, ANY_LIVE, BACKUP_LIVE, new_cluster_id
from harness.logs import log
from harness.node import wait_accepts

COUNT = 20_000
RATE = 2500
KILL1_AFTER = 3_000
KILL2_AFTER = 9_000


def wait_one_new_live(nodes, positions, t_kill, timeout=20.0):
    """Waits until some node logs "backup is now live" after its position;
    then a little longer, to catch a second one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [(n, n.find(BACKUP_LIVE, since=positions[n.name])) for n in nodes]
        hits = [(n, h) for n, h in hits if h]
        if hits:
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"no backup became live within {timeout:.0f} s of the kill")
    time.sleep(2.0)  # a second activation would show up by now
    hits = [(n, n.find(BACKUP_LIVE, since=positions[n.name])) for n in nodes]
    hits = [(n, h) for n, h in hits if h]
    lines = [(n.name, l.line) for n, hs in hits for l in hs]
    assert len(lines) == 1, f"expected exactly one 'backup is now live' after the kill, got {lines}"
    n, hs = hits[0]
    return n, hs[0]


def test_three_backups_two_kills_exactly_one_takes_over_each_time(cluster, clients):
    t_start = time.monotonic()
    c = cluster()
    primary = c.node("primary", "primary")
    backups = [c.node(f"backup{i}", "backup") for i in (1, 2, 3)]
    c.start_live(primary)
    for b in backups:
        c.start_backup(b)
    nodes = c.nodes
    monitor = AcceptMonitor(nodes)
    monitor.start()

    run_id = new_cluster_id("run")
    dest = "/queue/many"
    consumer = clients(FailoverConsumer(c.addrs(), dest, run_id))
    producer = clients(FailoverProducer(c.addrs(), dest, COUNT, run_id, window=500, rate=RATE))
    consumer.start()
    producer.start()
    try:
        live = primary
        history = []
        for k, threshold in ((1, KILL1_AFTER), (2, KILL2_AFTER)):
            assert consumer.wait_count(threshold, timeout=30), (
                f"only {len(consumer.seen)} delivered before kill {k}"
            )
            positions = {n.name: n.log_pos() for n in nodes}
            t_kill = live.kill9()
            log(f"kill {k}: SIGKILL {live.name}; receipted={len(producer.receipted)} delivered={len(consumer.seen)}")
            candidates = [n for n in nodes if n.alive()]
            new_live, hit = wait_one_new_live(candidates, positions, t_kill)
            wait_accepts(new_live, timeout=10)
            acc = new_live.find(ACCEPTING, since=positions[new_live.name])[0]
            probe = next((t for t, up in monitor.samples if t > t_kill and new_live.name in up), float("nan"))
            log(
                f"kill {k}: {new_live.name} live {hit.ts - t_kill:.2f} s after SIGKILL, 'accepting' logged "
                f"{acc.ts - t_kill:.2f} s, first probe answered {probe - t_kill:.2f} s "
                f"({hit.line.split(': ')[-1]}); others stay backups"
            )
            history.append((live.name, new_live.name, hit.ts - t_kill))
            for n in candidates:
                if n is not new_live:
                    assert n.count(ACCEPTING, since=positions[n.name]) == 0, f"{n.name} also accepts"
            live = new_live

        run_until_done(producer, consumer, timeout=45)
        consumer.stop()
        consumer.join(timeout=10)
    finally:
        monitor.stop()

    r = check_delivery(producer, consumer)
    worst, bad = monitor.max_concurrent()
    total_live_lines = sum(n.count(BACKUP_LIVE) for n in nodes)
    epochs = sorted(int(m.group(1)) for n in nodes for l in n.log_lines() if (m := re.search(ANY_LIVE, l)))
    log(
        f"{r.line()}; failovers {history}; live epochs {epochs}; accepting sequence {monitor.accepted_by()} "
        f"({len(monitor.samples)} probe rounds, max accepting at once {worst}); "
        f"producer nodes {[i for _, i in producer.reconnects]}, consumer nodes {[i for _, i in consumer.connects]}; "
        f"test took {time.monotonic() - t_start:.1f} s"
    )
    assert_report(r)
    assert r.receipted == COUNT
    assert worst <= 1, f"several nodes accepted STOMP at once: {bad[:5]}"
    assert total_live_lines == 2, f"{total_live_lines} 'backup is now live' lines in all logs, expected 2"
    assert epochs == [1, 2, 3], epochs
    assert monitor.accepted_by() == ["primary", history[0][1], history[1][1]], monitor.accepted_by()
