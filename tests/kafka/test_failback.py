"""Failback: with --allow-failback, a restarted primary takes the live role
back from the backup while traffic flows, and nothing receipted is lost."""

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
from harness.kafka import (
    ACCEPTING,
    ANY_LIVE,
    BACKUP_ANNOUNCED,
    BACKUP_LIVE,
    FAILING_BACK,
    LOCK_OBTAINED,
    NOW_BACKUP,
    new_cluster_id,
)
from harness.logs import log
from harness.node import wait_accepts
from harness.stomp_wire import stomp_accepts

COUNT = 20_000
RATE = 1500  # msg/s: traffic keeps flowing through the failover and the failback
KILL_AFTER = 3_000


def test_primary_returns_and_takes_live_role_back(cluster, clients):
    t_start = time.monotonic()
    c = cluster()
    primary = c.node("primary", "primary", allow_failback=True)
    backup = c.node("backup", "backup", allow_failback=True)
    c.start_live(primary)
    c.start_backup(backup)

    monitor = clients(AcceptMonitor(c.nodes))
    monitor.start()
    run_id = new_cluster_id("run")
    dest = "/queue/failback"
    consumer = clients(FailoverConsumer(c.addrs(), dest, run_id))
    producer = clients(FailoverProducer(c.addrs(), dest, COUNT, run_id, window=500, rate=RATE))
    consumer.start()
    producer.start()
    assert consumer.wait_count(KILL_AFTER, timeout=30), f"only {len(consumer.seen)} delivered before the kill"

    # 1. Failover.
    b_pos = backup.log_pos()
    t_kill = primary.kill9()
    live = backup.wait_log(BACKUP_LIVE, since=b_pos, timeout=20)
    wait_accepts(backup, timeout=10)
    log(f"failover: backup live {live.ts - t_kill:.2f} s after SIGKILL ({live.line.split(': ')[-1]})")
    # Traffic reaches the backup before the primary returns.
    with producer.cv:
        n0 = len(producer.receipted)
    producer_deadline = time.monotonic() + 20
    while len(producer.receipted) < n0 + 500 and time.monotonic() < producer_deadline:
        time.sleep(0.05)
    assert len(producer.receipted) >= n0 + 500, "no traffic on the backup after the failover"

    # 2. Failback, with traffic flowing.
    p_pos = primary.log_pos()
    b_pos2 = backup.log_pos()
    with producer.cv:
        receipted_before = len(producer.receipted)
    t_restart = time.time()
    primary.start()
    obtained = primary.wait_log(LOCK_OBTAINED, since=p_pos, timeout=30)
    back = backup.wait_log(FAILING_BACK, since=b_pos2, timeout=5)
    stepped = backup.wait_log(NOW_BACKUP, since=b_pos2, timeout=5)
    # The returning primary logs "backup is now live" (it announced itself
    # as a backup first), so either live line counts.
    p_live = primary.wait_log(ANY_LIVE, since=p_pos, timeout=20)
    t_acc = wait_accepts(primary, timeout=10)
    backup.wait_log(BACKUP_ANNOUNCED, since=b_pos2, timeout=20)
    log(
        f"failback (s after primary restart): backup 'failing back' {back.ts - t_restart:.2f}, "
        f"'now a backup' {stepped.ts - t_restart:.2f}; primary 'live lock obtained' {obtained.ts - t_restart:.2f}, "
        f"live {p_live.ts - t_restart:.2f} ({p_live.line.split(': ')[-1]}), accepting {t_acc - t_restart:.2f}"
    )
    # The backup let go before the primary got the lock: never two lives.
    assert stepped.ts <= obtained.ts, (stepped.line, obtained.line)
    assert int(re.search(ANY_LIVE, p_live.line).group(1)) > int(re.search(BACKUP_LIVE, live.line).group(1))
    assert not stomp_accepts(backup.addr), "the backup still accepts STOMP after failing back"
    assert backup.count(ACCEPTING, since=b_pos2) == 0

    run_until_done(producer, consumer, timeout=45)
    consumer.stop()
    consumer.join(timeout=10)
    monitor.stop()
    r = check_delivery(producer, consumer)
    worst, bad = monitor.max_concurrent()
    receipted_during = sorted(t for t in producer.receipt_times.values() if t >= t_restart)
    log(
        f"{r.line()}; receipted after the primary restarted: {len(receipted_during)} "
        f"(before it: {receipted_before}); producer nodes {[i for _, i in producer.reconnects]}, "
        f"consumer nodes {[i for _, i in consumer.connects]}; producer connects (s after restart) "
        f"{[(round(t - t_restart, 2), i) for t, i in producer.reconnects]}; test took {time.monotonic() - t_start:.1f} s"
    )
    assert_report(r)
    assert r.receipted == COUNT
    assert worst <= 1, f"both nodes accepted STOMP at once: {bad[:5]}"
    assert monitor.accepted_by() == ["primary", "backup", "primary"], monitor.accepted_by()
    # Clients followed: primary -> backup -> primary.
    for name, seq in (("producer", producer.reconnects), ("consumer", consumer.connects)):
        nodes = [i for _, i in seq]
        assert nodes[0] == 0 and 1 in nodes and nodes[-1] == 0 and nodes.index(1) < len(nodes) - 1, (name, nodes)
    # Traffic really flowed during the failback: receipts from the backup
    # while the primary was coming back, and from the primary after.
    times = list(producer.receipt_times.values())
    assert any(t_restart <= t <= back.ts for t in times), "nothing receipted between the restart and the failback"
    assert any(t > t_acc for t in times), "nothing receipted by the primary after the failback"
