"""The management API (purge, move, retry, delete, browse) and the
`halyard queue` / `halyard node-status` CLI against real nodes.

The failover test makes every kind of change on the live node of a
live/backup pair, SIGKILLs it, and reads the results back from the backup
once it is live: each change was journaled before it was answered, so none
may be lost (or undone) by the crash."""

from __future__ import annotations

import json

from harness.node import free_port
from ops_helpers import http, run_cli, send_persistent

FAILOVER_S = 30.0


def check_error(a, status: int) -> str:
    """A management error: `status` and a JSON body {"error": "..."}."""
    assert a.status == status, str(a)
    assert a.content_type.startswith("application/json"), str(a)
    err = a.json().get("error")
    assert isinstance(err, str) and err, str(a)
    return err


def browse(node, queue: str, limit: int | None = None) -> list[dict]:
    path = f"/api/queues/{queue}/messages" + (f"?limit={limit}" if limit else "")
    got = node.api(path)
    assert got["queue"] == queue, got
    return got["messages"]


def dead_letter(clients, node, queue: str, n: int) -> None:
    """NACKs the `n` messages of `queue` one at a time (prefetch 1); with
    --max-delivery-attempts 1 each goes to the DLQ. Unsubscribes after."""
    c = clients(node)
    c.subscribe(f"/queue/{queue}", "dl", ack="client-individual", **{"activemq.prefetchSize": "1"})
    for i in range(n):
        c.nack(c.wait_messages(i + 1)[i])
    c.unsubscribe("dl")


def test_backup_refuses_management(pair, clients):
    """A backup answers every management request, browse included, with 503
    and {"error": ...}: the queues live on the live node (a backup has none
    loaded, so a 404 "no queue" would be wrong)."""
    p = pair()
    prod = clients(p.primary)
    send_persistent(prod, "/queue/g", 1, "g")
    for method, path in (("POST", "/api/queues/g/purge"), ("POST", "/api/queues/g/move?to=d"),
                         ("POST", "/api/queues/g/retry"), ("DELETE", "/api/queues/g"),
                         ("GET", "/api/queues/g/messages?limit=5")):
        err = check_error(http(method, p.backup.url(path)), 503)
        assert "live" in err, err
    assert p.primary.queues()["g"]["messages"] == 1


def test_changes_are_durable_across_failover(pair, clients):
    p = pair("--max-delivery-attempts", "1")
    live, backup = p.primary, p.backup
    prod = clients(live)

    send_persistent(prod, "/queue/a", 10, "a")       # purged
    send_persistent(prod, "/queue/b", 2, "b")        # dead-lettered, then retried back
    send_persistent(prod, "/queue/c", 5, "c")        # moved to d
    send_persistent(prod, "/queue/e", 1, "e")        # consumed, then the empty queue deleted
    send_persistent(prod, "/queue/g", 2, "g")        # browsed
    body = "browse me: " + "x" * 40
    prod.send("/queue/g", body, persistent="true", trace="abc-123", priority="7")
    dead_letter(clients, live, "b", 2)
    c = clients(live)
    c.subscribe("/queue/e", "e", ack="client-individual")
    c.ack(c.wait_messages(1)[0])
    c.unsubscribe("e")
    holder = clients(live)  # a consumer on f: f cannot be deleted
    holder.subscribe("/queue/f", "f", ack="client-individual")

    before = live.queues()
    depths = {name: q["messages"] for name, q in before.items()}
    assert depths == {"a": 10, "b": 0, "DLQ": 2, "c": 5, "e": 0, "f": 0, "g": 3}, depths
    assert before["e"]["durable"] is True, before["e"]
    assert before["f"]["consumers"] == 1, before["f"]

    # Browse: the messages of g in delivery order (priority 7 before the
    # default 4, then by arrival), the known one intact.
    msgs = browse(live, "g", limit=10)
    assert [m["body_preview"] for m in msgs] == [body, "g-0000", "g-0001"], msgs
    k = msgs[0]
    assert k["headers"].get("trace") == "abc-123", k
    assert k["body_bytes"] == len(body.encode()), k
    assert k["address"] == "g" and k["original_address"] is None, k
    assert k["persistent"] is True and k["deliveries"] == 0 and k["state"] == "ready", k
    assert k["priority"] == 7, k
    assert isinstance(k["id"], str) and k["id"], k
    assert len(browse(live, "g", limit=1)) == 1
    dl = browse(live, "DLQ")
    assert len(dl) == 2 and all(m["original_address"] == "b" for m in dl), dl
    assert sorted(m["body_preview"] for m in dl) == ["b-0000", "b-0001"], dl

    # Purge a.
    got = live.api("/api/queues/a/purge", "POST")
    assert got["queue"] == "a" and got["purged"] == 10, got
    # Retry: the dead letters go back to b.
    got = live.api("/api/queues/DLQ/retry", "POST")
    assert got["queue"] == "DLQ" and got["moved"] == 2 and got["skipped"] == 0, got
    # Move c to d.
    got = live.api("/api/queues/c/move?to=d", "POST")
    assert got["queue"] == "c" and got["moved"] == 5 and got["to"] == "d", got
    moved = browse(live, "d")
    assert sorted(m["body_preview"] for m in moved) == [f"c-{i:04d}" for i in range(5)], moved
    assert all(m["original_address"] == "c" for m in moved), moved
    # Delete: refused with a consumer attached (409) and for a queue that
    # does not exist (404).
    err = check_error(live.delete("/api/queues/f"), 409)
    assert "consumer" in err, err
    check_error(live.delete("/api/queues/no-such-queue"), 404)
    check_error(live.post("/api/queues/no-such-queue/purge"), 404)
    check_error(live.get("/api/queues/no-such-queue/messages"), 404)
    expected = {"a": 0, "b": 2, "DLQ": 0, "c": 0, "d": 5, "e": 0, "f": 0, "g": 3}
    after = {name: q["messages"] for name, q in live.queues().items()}
    assert after == expected, after

    # The last change, an empty durable queue deleted, and the crash right
    # after its answer: the backup takes over.
    got = live.api("/api/queues/e", "DELETE")
    assert got["queue"] == "e" and got["deleted"] is True, got
    live.kill9()
    del expected["e"]
    backup.wait_live(FAILOVER_S)
    queues = backup.queues()
    survived = {name: q["messages"] for name, q in queues.items()}
    assert survived == expected, f"after failover: {survived}, want {expected}"
    assert "e" not in queues, queues
    check_error(backup.delete("/api/queues/e"), 404)
    moved = browse(backup, "d")
    assert sorted(m["body_preview"] for m in moved) == [f"c-{i:04d}" for i in range(5)], moved
    back = browse(backup, "b")
    assert sorted(m["body_preview"] for m in back) == ["b-0000", "b-0001"], back
    k = [m for m in browse(backup, "g") if m["body_preview"] == body]
    assert len(k) == 1 and k[0]["headers"].get("trace") == "abc-123" and k[0]["priority"] == 7, k

    # And a client of the new live receives the two retried dead letters from b.
    c = clients(backup)
    c.subscribe("/queue/b", "b", ack="auto")
    got = sorted(m.body for m in c.wait_messages(2))
    assert got == ["b-0000", "b-0001"], got


# -- CLI ------------------------------------------------------------------------


def cli_ok(*args: str):
    r = run_cli(*args)
    assert r.returncode == 0, f"halyard {' '.join(args)} -> {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def check_aligned(lines: list[str]) -> list[list[str]]:
    """The rows of a table whose columns line up: every row has the header's
    number of cells, and each column starts (left-aligned) or ends
    (right-aligned) at the same place on every line. Returns the cells."""
    def cells(line: str) -> list[tuple[int, int, str]]:
        out, i = [], 0
        for word in line.split():
            start = line.index(word, i)
            out.append((start, start + len(word), word))
            i = start + len(word)
        return out

    rows = [cells(l) for l in lines]
    width = len(rows[0])
    assert width >= 2 and all(len(r) == width for r in rows), "cells per row differ:\n" + "\n".join(lines)
    for col in range(width):
        starts = {r[col][0] for r in rows}
        ends = {r[col][1] for r in rows}
        assert len(starts) == 1 or len(ends) == 1, f"column {col} not aligned:\n" + "\n".join(lines)
    return [[w for _, _, w in r] for r in rows]


def test_cli(nodes, clients):
    node = nodes("cli").start()
    url = node.base_url
    c = clients(node)
    send_persistent(c, "/queue/alpha", 3, "alpha")
    send_persistent(c, "/queue/a-much-longer-queue-name", 12, "long")
    c.send("/queue/alpha", "known body", persistent="true", trace="cli-1")

    r = cli_ok("queue", "stat", "--http", url)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    rows = check_aligned(lines)
    header = [h.lower() for h in rows[0]]
    name_col = next(i for i, h in enumerate(header) if h in ("queue", "name"))
    depth_col = next(i for i, h in enumerate(header) if h in ("messages", "depth"))
    depths = {row[name_col]: row[depth_col] for row in rows[1:]}
    assert depths == {"alpha": "4", "a-much-longer-queue-name": "12"}, r.stdout

    r = cli_ok("queue", "stat", "--http", url, "--json")
    got = json.loads(r.stdout)
    queues = got["queues"] if isinstance(got, dict) else got
    assert {q["name"]: q["messages"] for q in queues} == {"alpha": 4, "a-much-longer-queue-name": 12}, got

    r = cli_ok("node-status", "--http", url)
    assert "live" in r.stdout, r.stdout
    assert "cli" in r.stdout, r.stdout  # the node id
    r = cli_ok("node-status", "--http", url, "--json")
    st = json.loads(r.stdout)  # /api/cluster: this node (and its peers)
    assert len(st["nodes"]) == 1, st
    st = st["nodes"][0]
    assert st["state"] == "live" and st["node_id"] == "cli" and st["ready"] is True, st

    r = cli_ok("queue", "browse", "alpha", "--limit", "10", "--http", url)
    assert "known body" in r.stdout and "cli-1" in r.stdout, r.stdout
    r = cli_ok("queue", "move", "alpha", "--to", "omega", "--http", url)
    assert "4" in r.stdout, r.stdout
    r = cli_ok("queue", "purge", "a-much-longer-queue-name", "--http", url)
    assert "12" in r.stdout, r.stdout
    assert {n: q["messages"] for n, q in node.queues().items()} == {
        "alpha": 0, "omega": 4, "a-much-longer-queue-name": 0}
    cli_ok("queue", "delete", "alpha", "--http", url)
    assert "alpha" not in node.queues()
    # Retry sends each message back to the address it was sent to: alpha.
    r = cli_ok("queue", "retry", "omega", "--http", url)
    assert "4" in r.stdout, r.stdout
    depths = {name: q["messages"] for name, q in node.queues().items()}
    assert depths == {"alpha": 4, "omega": 0, "a-much-longer-queue-name": 0}, depths

    # Errors: non-zero exit, a message on stderr, no panic.
    r = run_cli("queue", "purge", "no-such-queue", "--http", url)
    assert r.returncode != 0, r
    assert "no-such-queue" in r.stderr and "panicked" not in r.stderr, r.stderr

    dead = f"http://127.0.0.1:{free_port()}"
    for args in (("node-status",), ("queue", "stat"), ("queue", "purge", "omega")):
        r = run_cli(*args, "--http", dead, timeout=30)
        assert r.returncode != 0, f"halyard {' '.join(args)} against nothing: exit 0\n{r.stdout}"
        assert r.stderr.strip(), f"halyard {' '.join(args)}: no message on stderr"
        assert dead.split("//")[1] in r.stderr, r.stderr
        assert "cannot reach" in r.stderr or "refused" in r.stderr.lower(), r.stderr
        assert "panicked" not in r.stderr and "RUST_BACKTRACE" not in r.stderr, r.stderr
