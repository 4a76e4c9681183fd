"""Clean shutdown (SIGTERM) of the live hands over without a session timeout.

A live that stops cleanly drains, exits 0 and should leave the lock group on
its way out, so the backup gets the live lock at once (within a second)
instead of after the group's session timeout (3 s here).

Regression test: `halyard node` used to exit about 50 ms after "node
stopped" while the Kafka lock thread had not yet left the group, and the
backup then waited for the session timeout. The driver now waits (bounded)
for the lock backend to confirm it left the group ("left the lock group")
before exiting.
"""

from __future__ import annotations

import time

import pytest

from harness.kafka import BACKUP_ANNOUNCED, BACKUP_LIVE, LOCK_OBTAINED
from harness.logs import log
from harness.node import wait_accepts

ROUNDS = 4
LOCK_WITHIN_S = 1.5  # the session timeout is 3 s


def test_sigterm_of_live_hands_over_without_session_timeout(cluster):
    c = cluster()
    a = c.node("primary", "primary")
    b = c.node("backup", "backup")
    c.start_live(a)
    c.start_backup(b)
    live, backup = a, b
    rounds = []
    for i in range(ROUNDS):
        time.sleep(1.0)  # live for a moment, as in service
        pos, old_pos = backup.log_pos(), live.log_pos()
        t0 = live.sigterm()
        rc = live.wait_exit(20)
        assert rc == 0, f"{live.name} exited with {rc} after SIGTERM\n{live.log_tail()}"
        lock = backup.wait_log(LOCK_OBTAINED, since=pos, timeout=20)
        became = backup.wait_log(BACKUP_LIVE, since=pos, timeout=20)
        t_acc = wait_accepts(backup, timeout=10)
        left = live.count(r"left the lock group", since=old_pos) > 0
        rounds.append((live.name, lock.ts - t0, became.ts - t0, t_acc - t0, left))
        log(
            f"SIGTERM {i + 1}: {live.name} exited 0; {backup.name} lock {lock.ts - t0:.2f} s, live "
            f"{became.ts - t0:.2f} s, accepting {t_acc - t0:.2f} s; old live logged 'left the lock group': {left}"
        )
        p2 = live.log_pos()
        live.start()
        live.wait_log(BACKUP_ANNOUNCED, since=p2, timeout=30)
        live, backup = backup, live
    slow = [r for r in rounds if r[1] > LOCK_WITHIN_S]
    assert not slow, (
        f"{len(slow)} of {ROUNDS} clean shutdowns made the backup wait for the session timeout: "
        f"{[(n, round(l, 2), left) for n, l, _, _, left in slow]} (name, lock s, left the group)"
    )
