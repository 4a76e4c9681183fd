"""Regression test: an activation must not rewrite the tombstones of
duplicate-detection ids that were evicted from the bounded cache (20,000 per
address) long ago; otherwise the Kafka journal grows by one tombstone per
evicted id on every failover and activations get slower each time.

Scenario: 30,000 messages sent with `_AMQ_DUPL_ID` (as `halyard produce`
does by default), so 10,000 ids are evicted and tombstoned while the primary
is live. SIGKILL the primary (the backup activates), restart it as the
backup, SIGKILL the backup (the primary activates). Between the two
journal reads only the first activation writes to the journal, so the second
read must find about as many records as the first (plus the activation
record). The bug (fixed in core/src/broker/state.rs: evictions during replay
wait for their tombstones in the journal) made it 10,001 more.
"""

from __future__ import annotations

import re
import time
import subprocess

import pytest

from harness.kafka import BACKUP_ANNOUNCED, BACKUP_LIVE, JOURNAL_READ
from harness.logs import log
from harness.node import HALYARD_BIN

COUNT = 30_000
CACHE = 20_000  # duplicate ids kept per address (the broker's default bound)


def test_activation_does_not_rewrite_evicted_duplicate_id_tombstones(cluster):
    c = cluster()
    primary = c.node("primary", "primary")
    backup = c.node("backup", "backup")
    c.start_live(primary)
    c.start_backup(backup)
    r = subprocess.run(
        [str(HALYARD_BIN), "produce", "--url", f"tcp://127.0.0.1:{primary.port}", "--destination", "/queue/dups",
         "--count", str(COUNT), "--size", "256", "--window", "2000"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    # The tombstones of the last evictions follow the last receipts in a
    # batch of their own: let it become durable before the crash, or the
    # backup rightly writes the ones it does not find.
    time.sleep(2)

    reads = []
    for live, nxt in ((primary, backup), (backup, primary)):
        pos = nxt.log_pos()
        t_kill = live.kill9()
        became = nxt.wait_log(BACKUP_LIVE, since=pos, timeout=60)
        m = re.search(JOURNAL_READ, nxt.find(JOURNAL_READ, since=pos)[0].line)
        reads.append(int(m.group(1)))
        log(f"{nxt.name} live {became.ts - t_kill:.2f} s after SIGKILL of {live.name}; journal read: {m.group(0)}")
        p2 = live.log_pos()
        live.start()
        live.wait_log(BACKUP_ANNOUNCED, since=p2, timeout=60)
    growth = reads[1] - reads[0]
    log(f"journal records at the two activations: {reads}; growth {growth} (evicted ids: {COUNT - CACHE})")
    assert growth < 100, f"the first activation wrote {growth} records (about one per evicted duplicate id)"
