"""The live loses its connection to Kafka (a black-holed fault proxy).

The live reaches Kafka only through `halyard proxy` on the PROXIED listener;
the backup goes to Kafka directly. With traffic flowing the proxy is cut
(blackhole: no error, only silence). The backup must take the lock, fence the
old live's producer epoch and serve; after the proxy heals, the old live must
step down (fenced by the new epoch, or lock lost) and end as a backup, and no
receipted message may be lost.
"""

from __future__ import annotations

import re
import time

from harness.failover import FailoverConsumer, FailoverProducer, assert_report, check_delivery, run_until_done
from harness.kafka import (
    ACCEPTING,
    BACKUP_ANNOUNCED,
    BACKUP_LIVE,
    FENCED,
    JOURNAL_FAILED,
    LOCK_LOST,
    LOCK_OBTAINED,
    NOW_BACKUP,
    new_cluster_id,
)
from harness.logs import log
from harness.node import wait_accepts
from harness.stomp_wire import stomp_accepts

# Logged when a write still in flight at the step-down is refused later.
LATE_FENCE = r"fenced by (?:epoch \d+|a newer live)\S*: .*still in flight.*"

COUNT = 20_000
CUT_AFTER = 4_000


def test_live_cut_off_from_kafka_is_replaced_and_steps_down(cluster, clients, fault_proxy):
    t_start = time.monotonic()
    c = cluster()
    primary = c.node("primary", "primary", bootstrap=fault_proxy.listen)
    backup = c.node("backup", "backup")
    c.start_live(primary)
    c.start_backup(backup)
    st = fault_proxy.status()
    assert st["state"] == "open" and st["connections"] > 0, f"the primary does not go through the proxy: {st}"
    log(f"cluster {c.cluster_id}: primary via proxy {fault_proxy.listen} ({st['connections']} connections), backup direct")

    run_id = new_cluster_id("run")
    dest = "/queue/partition"
    consumer = clients(FailoverConsumer(c.addrs(), dest, run_id))
    # Paced so that sends (and journal writes) are still flowing at the cut
    # and during the whole outage.
    producer = clients(FailoverProducer(c.addrs(), dest, COUNT, run_id, window=500, rate=2500))
    consumer.start()
    producer.start()
    assert consumer.wait_count(CUT_AFTER, timeout=30), f"only {len(consumer.seen)} delivered before the cut"

    p_pos, b_pos = primary.log_pos(), backup.log_pos()
    with producer.cv:
        receipted_at_cut, pending_at_cut = len(producer.receipted), len(producer.pending)
    t_cut = time.time()
    fault_proxy.cut("blackhole")
    log(f"proxy cut (blackhole): receipted={receipted_at_cut} pending={pending_at_cut}")

    live = backup.wait_log(BACKUP_LIVE, since=b_pos, timeout=30)
    lock = backup.find(LOCK_OBTAINED, since=b_pos)[0]
    t_acc = wait_accepts(backup, timeout=10)
    log(
        f"backup: lock after {lock.ts - t_cut:.2f} s, live after {live.ts - t_cut:.2f} s, "
        f"accepting after {t_acc - t_cut:.2f} s ({live.line.split(': ')[-1]})"
    )
    epoch = int(re.search(BACKUP_LIVE, live.line).group(1))
    # What the old live noticed while cut off (it may step down on its own
    # when its lock-group session runs out).
    during_cut = [l for l in primary.log_lines(p_pos) if re.search(f"{FENCED}|{LOCK_LOST}|{JOURNAL_FAILED}", l)]
    with producer.cv:
        pending_at_heal = len(producer.pending)
    t_heal = time.time()
    fault_proxy.heal()
    log(f"proxy healed {t_heal - t_cut:.2f} s after the cut; producer pending={pending_at_heal}; "
        f"old live before heal: {[l.split(': ', 1)[-1] for l in during_cut] or 'nothing'}")

    down = primary.wait_log(f"{FENCED}|{LOCK_LOST}|{JOURNAL_FAILED}", since=p_pos, timeout=30)
    primary.wait_log(NOW_BACKUP, since=p_pos, timeout=30)
    primary.wait_log(BACKUP_ANNOUNCED, since=p_pos, timeout=30)
    fenced = re.search(FENCED, down.line)
    lost = re.search(LOCK_LOST, down.line)
    how = "fenced" if fenced else "lock lost" if lost else "journal append failed"
    log(
        f"old live stepped down {down.ts - t_cut:.2f} s after the cut "
        f"({'before' if down.ts < t_heal else 'after'} the heal): {how}: {down.line.split(': ', 1)[-1]}"
    )
    for l in primary.log_lines(p_pos):
        if re.search(f"{FENCED}|{LOCK_LOST}|{JOURNAL_FAILED}|{NOW_BACKUP}|{ACCEPTING}", l):
            log(f"  primary: {l}")
    if fenced and fenced.group(1):
        assert int(fenced.group(1)) == epoch, f"fenced by epoch {fenced.group(1)}, the new live is epoch {epoch}"
    assert fenced or lost, f"the old live stepped down for another reason: {down.line}"

    run_until_done(producer, consumer, timeout=45)
    consumer.stop()
    consumer.join(timeout=10)
    r = check_delivery(producer, consumer)
    log(
        f"{r.line()}; producer resends={producer.resends} reconnects={len(producer.reconnects)} "
        f"stalls={len(producer.errors)}; consumer reconnects={len(consumer.connects)}; "
        f"test took {time.monotonic() - t_start:.1f} s"
    )
    late = primary.find(LATE_FENCE, since=p_pos)
    log(
        "write in flight at the step-down, refused by fencing later: "
        + (f"{late[0].line.split(': ', 1)[-1]} ({late[0].ts - t_heal:.2f} s after the heal)" if late else "not logged")
    )
    if late and (m := re.search(r"fenced by epoch (\d+)", late[0].line)):
        assert int(m.group(1)) == epoch, f"fenced by epoch {m.group(1)}, the new live is epoch {epoch}"
    assert_report(r)
    assert r.receipted == COUNT
    # The old live is a backup now: it does not accept, the new live does.
    assert not stomp_accepts(primary.addr), "the old live still accepts STOMP"
    assert primary.count(ACCEPTING, since=p_pos) == 0
    assert wait_accepts(backup, timeout=5)
    assert backup.count(BACKUP_LIVE, since=b_pos) == 1
    assert primary.count(r"node is live|backup is now live", since=p_pos) == 0
