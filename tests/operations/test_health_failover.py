"""/health/live, /health/ready and `halyard_ha_state` across a real failover
of a live/backup pair on the local journal (shared --lock-dir and
--data-dir): the live says ready, the backup not; after a SIGKILL of the
live the backup says ready within 30 s, on a newer epoch; the old primary,
restarted (no failback), waits as a backup and says not ready."""

from __future__ import annotations

import time

from ops_helpers import wait_until

FAILOVER_S = 30.0


def cluster(node) -> dict[str, dict]:
    """/api/cluster of `node`, by each node's HTTP base URL."""
    nodes = node.api("/api/cluster")["nodes"]
    by_url = {n["http"].rstrip("/"): n for n in nodes}
    assert len(by_url) == len(nodes) == 2, nodes
    return by_url


def test_ready_follows_the_live_role_across_failover(pair, clients):
    p = pair()
    primary, backup = p.primary, p.backup

    for n in (primary, backup):
        a = n.get("/health/live")
        assert a.status == 200, str(a)

    a = primary.ready()
    assert a.status == 200, str(a)
    assert a.body.startswith("ready: live, epoch "), str(a)
    epoch_before = int(a.body.split("epoch ")[1])
    a = backup.ready()
    assert a.status == 503, str(a)
    assert a.body.strip() == "not ready: backup: waiting for the live lock", str(a)

    m = primary.metrics()
    assert m.value("halyard_ha_state", state="live") == 1
    assert m.ha_state() == "live"
    assert m.value("halyard_accepting_clients") == 1
    assert m.value("halyard_ha_epoch") == epoch_before
    assert m.value("halyard_lock_obtained_total") == 1
    mb = backup.metrics()
    assert mb.value("halyard_ha_state", state="backup") == 1
    assert mb.value("halyard_ha_state", state="live") == 0
    assert mb.ha_state() == "backup"
    assert mb.value("halyard_accepting_clients") == 0
    assert mb.value("halyard_activations_total") == 0
    assert mb.value("halyard_lock_obtained_total") == 0

    node = primary.api("/api/node")
    assert node["state"] == "live" and node["ready"] is True and node["epoch"] == epoch_before, node
    node = backup.api("/api/node")
    assert node["state"] == "backup" and node["ready"] is False and node["reason"], node

    # /api/cluster: each node, and its peer as the peer's /api/node says.
    cl = cluster(primary)
    assert cl[primary.base_url]["state"] == "live" and cl[backup.base_url]["state"] == "backup", cl
    assert cl[backup.base_url]["reachable"] is True and cl[backup.base_url]["node_id"] == "backup", cl
    cl = cluster(backup)
    assert cl[backup.base_url]["state"] == "backup" and cl[primary.base_url]["state"] == "live", cl

    # Something durable to find on the other side.
    c = clients(primary)
    c.send("/queue/ha", "before-the-crash", persistent="true")
    c.close_quietly()

    t0 = time.monotonic()
    primary.kill9()
    a = backup.wait_live(FAILOVER_S)
    took = time.monotonic() - t0
    print(f"\nbackup ready {took:.2f} s after the SIGKILL: {a.body.strip()}")
    assert took < FAILOVER_S
    epoch_after = int(a.body.split("epoch ")[1])
    assert epoch_after > epoch_before, (epoch_before, epoch_after)

    mb = backup.metrics()
    assert mb.value("halyard_ha_state", state="live") == 1
    assert mb.value("halyard_ha_state", state="backup") == 0
    assert mb.value("halyard_ha_epoch") == epoch_after
    assert mb.value("halyard_accepting_clients") == 1
    assert mb.value("halyard_activations_total") == 1
    assert mb.value("halyard_lock_obtained_total") == 1
    assert mb.value("halyard_queue_messages", queue="ha") == 1
    node = backup.api("/api/node")
    assert node["state"] == "live" and node["ready"] is True and node["epoch"] == epoch_after, node

    cl = cluster(backup)
    assert cl[backup.base_url]["state"] == "live", cl
    assert cl[primary.base_url]["reachable"] is False and cl[primary.base_url].get("error"), cl

    # No failback: the old primary comes back as a backup of the new live.
    primary.start_backup()
    a = primary.ready()
    assert a.status == 503, str(a)
    assert a.body.strip() == "not ready: backup: waiting for the live lock", str(a)
    assert primary.get("/health/live").status == 200
    m = wait_until(
        lambda: (lambda m: m if m.ha_state() == "backup" else None)(primary.metrics()),
        "the restarted primary's halyard_ha_state to be backup",
    )
    assert m.value("halyard_ha_state", state="live") == 0
    assert m.value("halyard_accepting_clients") == 0
    cl = cluster(backup)
    assert cl[primary.base_url]["reachable"] is True and cl[primary.base_url]["state"] == "backup", cl
    # The live stays live.
    a = backup.ready()
    assert a.status == 200 and a.body.startswith(f"ready: live, epoch {epoch_after}"), str(a)
