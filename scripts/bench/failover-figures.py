#!/usr/bin/env python3
"""Failover figures for Halyard on a real Kafka; writes docs/failover.md.

    PY=$(scripts/services/pyenv.sh | tail -1)
    cargo build --release -p halyard
    scripts/services/kafka.sh start
    "$PY" scripts/bench/failover-figures.py                  # full set, about 5 minutes
    "$PY" scripts/bench/failover-figures.py --runs 1 --journal 0 --session-timeouts 3000 --no-write   # quick look

For each lock-group session timeout (3000 ms and the default 6000 ms) and each
journal size (0 and 100,000 unconsumed 1 KiB messages, filled with
`halyard produce`), a primary and a backup run on a fresh cluster id. A
stomp.py producer sends 200 msg/s of 1 KiB persistent messages with receipts
to /queue/probe and a stomp.py consumer acks them (client-individual); both
fail over. The live is SIGKILLed; measured from the signal:

- lock: the backup logs "live lock obtained";
- live: the backup logs "backup is now live";
- accept: a prober (STOMP CONNECT every 10 ms) first gets CONNECTED from it;
- first msg: the consumer, which was connected to the killed live, gets its
  first message after failing over (a redelivery or a new one);
- journal load: the "Kafka journal fenced and read to its end" line of the
  backup (records, MB, seconds, records/s, MB/s).

Runs alternate: the killed node is restarted as the backup and the next run
kills the node that took over (the consumer is connected to it). Then the
live is stopped cleanly (SIGTERM) and the time until the backup accepts is
measured the same way.

With --mirror file (or --mirror zookeeper:HOST:PORT) it measures two
mirrored brokers instead (issue 13, docs/mirroring.md), no Kafka needed:

    HALYARD_BIN=$PWD/target/test-release/halyard "$PY" scripts/bench/failover-figures.py \
        --mirror file --runs 15 --backlog 5000 --out /tmp/mirror-failover.md

server0 and server1 (tests/harness/mirror.py's MirrorNode: each its own local
journal, --mirror-sync both ways, --check-period-ms CHECK_PERIOD, default
1000) under a file lock in a shared folder or the ZooKeeper lock; client,
/metrics and mirror ports from --port-base (6 ports). server0 takes the lock,
server1 joins its in-sync set; `halyard produce` leaves --backlog 1 KiB
persistent receipted messages on /queue/fill, which nobody consumes, and
--top-up more before each run. Each run waits until the passive is in the
active's in-sync set, sleeps a random 0 to 1 check period (so the kill falls
anywhere in the passive's check cycle), SIGKILLs the active and measures from
the signal: **lock** (the other's `file lock acquired` / `ZooKeeper lock
acquired` line), **active** (its `active with epoch N` line), **accept** (a
prober's first CONNECTED, STOMP CONNECT every 10 ms) and checks that its
/metrics counts every receipted message on `fill`. The killed broker is
restarted as the passive and the next run kills the other one. Goal: accept
under check period + 1 s (the file lock; ZooKeeper waits for the killed
broker's session to expire first, bin/src/mirror_config.rs
ZOOKEEPER_SESSION_MS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

# The shared test harness (tests/harness), as the Kafka HA suite uses it.
from harness.failover import FailoverConsumer, FailoverProducer, check_delivery  # noqa: E402
from harness.kafka import (  # noqa: E402
    BACKUP_ANNOUNCED,
    BACKUP_LIVE,
    JOURNAL_READ,
    LOCK_OBTAINED,
    Cluster,
    HaNode,
    ensure_kafka,
    new_cluster_id,
    peer_pair_args,
)
from harness.logs import log  # noqa: E402
from harness.node import HALYARD_BIN  # noqa: E402
from harness.stomp_wire import stomp_accepts  # noqa: E402

PROBE_DEST = "/queue/probe"
NOTES_MARKER = "<!-- notes: written by hand, kept by scripts/bench/failover-figures.py -->"
FILL_DEST = "/queue/fill"


class Prober(threading.Thread):
    """Polls one node's STOMP port; records the first time it answers."""

    def __init__(self, node: HaNode, period_s: float = 0.01):
        super().__init__(daemon=True)
        self.node = node
        self.period_s = period_s
        self.first: float | None = None
        self.stop_flag = False

    def run(self):
        while not self.stop_flag and self.first is None:
            t = time.time()
            if stomp_accepts(self.node.addr, timeout=1.0):
                self.first = t
                return
            time.sleep(self.period_s)


def parse_journal(spec: str) -> tuple[int, bool]:
    """"100000" = that many messages with duplicate ids (halyard produce's
    default), "100000n" = without (--no-duplicate-ids)."""
    spec = spec.strip()
    if spec.endswith("n"):
        return int(spec[:-1]), False
    return int(spec), True


def journal_label(count: int, dup_ids: bool) -> str:
    if count == 0:
        return "0"
    return f"{count:,}" + ("" if dup_ids else " (no dup ids)")


def fill(node, count: int, dup_ids: bool = True) -> tuple[float, str]:
    t0 = time.monotonic()
    r = subprocess.run(
        [
            str(HALYARD_BIN),
            "produce",
            "--url",
            f"tcp://127.0.0.1:{node.port}",
            "--destination",
            FILL_DEST,
            "--count",
            str(count),
            "--size",
            "1024",
            "--window",
            "2000",
            *([] if dup_ids else ["--no-duplicate-ids"]),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        raise RuntimeError(f"halyard produce failed ({r.returncode}): {r.stderr[-2000:]}")
    out = (r.stdout + r.stderr).strip().splitlines()
    return time.monotonic() - t0, (out[-1] if out else "")


def journal_line(node: HaNode, since: int) -> dict:
    hits = node.find(JOURNAL_READ, since=since)
    if not hits:
        return {}
    m = re.search(JOURNAL_READ, hits[-1].line)
    records, mb, secs, rps = int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4))
    return {"records": records, "mb": mb, "secs": secs, "rps": rps, "mbps": mb / secs if secs else 0.0}


def loaded_line(node: HaNode, since: int) -> str:
    hits = node.find(r"journal loaded: .*", since=since)
    return re.search(r"journal loaded: .*", hits[-1].line).group(0) if hits else ""


# With --preempt the backup goes live on a suspicion (its peer link to the
# live closed) instead of the lock: "lock" is then that line.
TAKEOVER = r"(?:live lock obtained|suspected gone \(.*\): fencing it and going live)"


def one_scenario(base: Path, bootstrap: str, session_ms: int, spec: str, runs: int, sigterm_runs: int,
                 preempt: bool = False):
    journal_msgs, dup_ids = parse_journal(spec)
    label = journal_label(journal_msgs, dup_ids)
    c = Cluster(base / f"s{session_ms}-j{spec}", bootstrap, new_cluster_id("fig"))
    c.base_dir.mkdir(parents=True, exist_ok=True)
    args_a, args_b = peer_pair_args() if preempt else ([], [])
    a = c.node("a", "primary", session_timeout_ms=session_ms, extra_args=args_a)
    b = c.node("b", "backup", session_timeout_ms=session_ms, extra_args=args_b)
    results = {"kill": [], "term": [], "fill": None}
    producer = consumer = None
    try:
        c.start_live(a)
        c.start_backup(b)
        if journal_msgs:
            secs, line = fill(a, journal_msgs, dup_ids)
            results["fill"] = (secs, line)
            log(f"filled {label} messages in {secs:.1f} s: {line}")
        run_id = new_cluster_id("run")
        consumer = FailoverConsumer(c.addrs(), PROBE_DEST, run_id, window_bytes=65536)
        producer = FailoverProducer(c.addrs(), PROBE_DEST, 10**9, run_id, window=200, rate=200, give_up_s=120)
        consumer.start()
        producer.start()
        assert consumer.wait_count(200, timeout=30), "the probe consumer gets nothing"

        live, backup = a, b
        for i in range(runs + sigterm_runs):
            kind = "kill" if i < runs else "term"
            # The consumer must be on the live before the signal.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with consumer.cv:
                    on_live = consumer.connects and c.nodes[consumer.connects[-1][1]] is live and not consumer.broken
                    n0 = len(consumer.deliveries)
                if on_live:
                    time.sleep(0.5)
                    with consumer.cv:
                        if len(consumer.deliveries) > n0:
                            break
                time.sleep(0.1)
            else:
                raise AssertionError("the consumer is not receiving from the live node")
            pos = backup.log_pos()
            gen_before = consumer.gen
            prober = Prober(backup)
            prober.start()
            t0 = live.kill9() if kind == "kill" else live.sigterm()
            if kind == "term":
                rc = live.wait_exit(20)
                assert rc == 0, f"{live.name} exit code {rc} after SIGTERM"
            lock = backup.wait_log(TAKEOVER, since=pos, timeout=60)
            became = backup.wait_log(BACKUP_LIVE, since=pos, timeout=120)
            prober.join(timeout=30)
            assert prober.first is not None, f"{backup.name} never accepted"
            deadline = time.monotonic() + 30
            first = None
            while time.monotonic() < deadline and first is None:
                with consumer.cv:
                    cands = [t for g, t in consumer.first_after.items() if g > gen_before]
                first = min(cands) if cands else None
                time.sleep(0.02)
            j = journal_line(backup, pos)
            row = {
                "kind": kind,
                "killed": live.name,
                "lock": lock.ts - t0,
                "live": became.ts - t0,
                "accept": prober.first - t0,
                "first": (first - t0) if first else None,
                "journal": j,
                "loaded": loaded_line(backup, pos),
            }
            results[kind].append(row)
            log(
                f"session {session_ms} ms, journal {label}: {kind} {live.name}: lock {row['lock']:.2f} s, "
                f"live {row['live']:.2f} s, accept {row['accept']:.2f} s, first msg "
                f"{row['first'] if row['first'] is None else round(row['first'], 2)} s; journal {j}; {row['loaded']}"
            )
            # The old live comes back as the backup for the next run.
            pos2 = live.log_pos()
            live.start()
            live.wait_log(BACKUP_ANNOUNCED, since=pos2, timeout=60)
            if preempt:
                # A preempting live holds no lock until Kafka expires the
                # dead member; the next kill must find the pair settled.
                backup.wait_log(LOCK_OBTAINED, since=pos, timeout=60)
            # A backup that has been up a while holds a caught-up copy of the
            # journal (hot standby); measure that steady state, not a copy
            # still being built seconds after a restart (see the notes).
            live.wait_log(r"standby journal copy caught up", since=pos2, timeout=120)
            live, backup = backup, live
        # Stop producing, let the consumer catch up with every receipted
        # message, then check the probe traffic.
        producer.stop()
        producer.join(timeout=30)
        with producer.cv:
            want = set(producer.receipted)
        caught_up = consumer.wait_for(want, timeout=60)
        consumer.stop()
        consumer.join(timeout=10)
        r = check_delivery(producer, consumer)
        if not caught_up:
            log(f"the probe consumer did not catch up within 60 s: {len(r.lost)} receipted messages missing")
        log(f"probe traffic: {r.line()}")
        results["check"] = r
        return results
    finally:
        for t in (producer, consumer):
            if t is not None:
                t.stop()
        c.close()


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def summary(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    return f"{statistics.median(vals):.2f} (min {min(vals):.2f}, max {max(vals):.2f})"


def binary_info() -> str:
    def git(*a):
        r = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        # rstrip only: a porcelain line starts with its status columns (" M path")
        return r.stdout.rstrip() if r.returncode == 0 else "?"

    head = git("rev-parse", "--short", "HEAD")
    dirty = [l[3:] for l in git("status", "--porcelain", "--untracked-files=no").splitlines() if l.strip()]
    built = dt.datetime.fromtimestamp(HALYARD_BIN.stat().st_mtime, dt.timezone.utc)
    tree = f"commit {head}" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
    try:
        name = HALYARD_BIN.resolve().relative_to(ROOT)
    except ValueError:
        name = HALYARD_BIN
    return f"`{name}` (built {built:%H:%M} UTC); source tree at run time: {tree}"


def breakdown(r) -> tuple[float | None, float | None]:
    """(journal fence+read, the rest of the activation) in seconds: the rest
    is live - lock - read, i.e. applying the records in the node and writing
    the activation batch."""
    jl = r["journal"]
    if not jl:
        return None, None
    return jl["secs"], r["live"] - r["lock"] - jl["secs"]


def render(all_results, args, started, elapsed) -> str:
    cmd = "\"$PY\" scripts/bench/failover-figures.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    lines = [
        "# Failover figures (Kafka journal and lock)",
        "",
        "Measured by `scripts/bench/failover-figures.py` against a real Apache Kafka 4.3.1",
        "(`scripts/services/kafka.sh`, single KRaft node on 127.0.0.1) and real `halyard node`",
        "processes (release build). Reproduce with:",
        "",
        "```sh",
        "cargo build --release -p halyard",
        "scripts/services/kafka.sh start",
        "PY=$(scripts/services/pyenv.sh | tail -1)",
        cmd,
        "```",
        "",
        f"Run on {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs ({cpu or platform.processor()}), "
        f"taking {elapsed / 60:.1f} minutes. Kafka, both nodes and the Python clients share the machine. "
        f"Binary: {binary_info()}.",
        "",
        "Each scenario is a primary and a backup on a fresh cluster id, both with the given",
        "`--kafka-session-timeout-ms`. The journal is filled first with",
        "`halyard produce --url tcp://127.0.0.1:PORT --destination /queue/fill --count 100000 --size 1024 --window 2000`",
        "(nobody consumes `/queue/fill`). `halyard produce` puts an `_AMQ_DUPL_ID` on every send by default;",
        "the \"no dup ids\" rows add `--no-duplicate-ids` (see the note on duplicate ids below). During every run a",
        "stomp.py producer sends 200 msg/s (1 KiB, persistent, receipts, `_AMQ_DUPL_ID`) to `/queue/probe` and a",
        "stomp.py consumer acks them (client-individual); both fail over between the two nodes. Times are",
        "seconds from the signal to the live:",
        "",
        "- **lock**: the backup logs `live lock obtained` (node log timestamp);",
        "- **live**: the backup logs `backup is now live`;",
        "- **accept**: a prober sending STOMP CONNECT every 10 ms first gets CONNECTED from the backup;",
        "- **first msg**: the consumer, which was connected to the killed live, gets its first message after",
        "  failing over (a redelivery or a new message);",
        "- **read**: `seconds=` of the backup's `Kafka journal fenced and read to its end` line",
        "  (init_transactions, then catching the hot-standby copy up to the end offset and handing it to the",
        "  node; see docs/kafka.md);",
        "- **rest**: live - lock - read, i.e. applying the records in the node and writing the activation batch.",
        "",
        "Runs alternate: the killed node is restarted as the backup and the next run kills the node that took",
        "over (the journal keeps growing a little between runs). Before each signal the script waits until",
        "the backup logs `standby journal copy caught up`: the steady state of a backup that has been up for",
        "a while (a backup restarted moments before a failover reads the rest of its copy at activation).",
        "",
        "## SIGKILL of the live",
        "",
        "| session timeout | journal (unconsumed msgs) | run | lock | read | rest | live | accept | first msg | "
        + ("goal: 2 s |" if args.preempt else "goal: timeout + 2 s |") + " records read |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    preempt = args.preempt
    for (s_ms, j_msgs), res in all_results:
        goal = 2.0 if preempt else s_ms / 1000 + 2
        for i, r in enumerate(res["kill"], 1):
            worst = max(v for v in (r["accept"], r["first"]) if v is not None)
            met = "met" if r["first"] is not None and worst <= goal else "**missed**"
            read, rest = breakdown(r)
            jl = r["journal"]
            lines.append(
                f"| {s_ms} ms | {j_msgs} | {i} | {fmt(r['lock'])} | {fmt(read)} | {fmt(rest)} | {fmt(r['live'])} | "
                f"{fmt(r['accept'])} | {fmt(r['first'])} | {goal:.0f} s: {met} | {jl['records'] if jl else '-'} |"
            )
    lines += [
        "",
        "Medians (min, max) in seconds:",
        "",
        "| session timeout | journal | lock | accept | first msg | goal | met in |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (s_ms, j_msgs), res in all_results:
        goal = 2.0 if preempt else s_ms / 1000 + 2
        k = res["kill"]
        ok = sum(1 for r in k if r["first"] is not None and max(r["accept"], r["first"]) <= goal)
        goal_text = f"≤ {goal:.0f} s" + (" every run, median ≤ 1 s" if preempt else "")
        lines.append(
            f"| {s_ms} ms | {j_msgs} | {summary([r['lock'] for r in k])} | {summary([r['accept'] for r in k])} | "
            f"{summary([r['first'] for r in k])} | {goal_text} | {ok}/{len(k)} runs |"
        )
    lines += [
        "",
        "## Clean shutdown (SIGTERM) of the live",
        "",
        "The live drains, exits 0 and should leave the lock group on its way out, so that the backup does not wait",
        "for a session timeout: **lock** well under the session timeout means it did, near the session timeout means it did not.",
        "",
        "| session timeout | journal (unconsumed msgs) | run | lock | read | rest | live | accept | first msg | "
        + ("goal: 0.3 s |" if args.preempt else "goal: 1 s |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (s_ms, j_msgs), res in all_results:
        for i, r in enumerate(res["term"], 1):
            met = "met" if r["accept"] <= (0.3 if preempt else 1.0) else "**missed**"
            read, rest = breakdown(r)
            lines.append(
                f"| {s_ms} ms | {j_msgs} | {i} | {fmt(r['lock'])} | {fmt(read)} | {fmt(rest)} | {fmt(r['live'])} | "
                f"{fmt(r['accept'])} | {fmt(r['first'])} | {met} |"
            )
    lines += [
        "",
        "## Journal load on activation",
        "",
        "From the activating backup's `Kafka journal fenced and read to its end ... records=N megabytes=M seconds=S`",
        "line: records and megabytes handed to the node (the compacted copy), seconds for init_transactions,",
        "which fences the old live, plus the copy's catch-up. MB/s is megabytes / seconds. How fast a copy is",
        "built from scratch is in the `standby journal copy caught up` line of a freshly started backup",
        "(see the notes).",
        "",
        "| session timeout | journal (unconsumed msgs) | signal | records | MB | seconds | records/s | MB/s | `journal loaded` line |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (s_ms, j_msgs), res in all_results:
        for r in res["kill"] + res["term"]:
            jl = r["journal"]
            if not jl:
                continue
            lines.append(
                f"| {s_ms} ms | {j_msgs} | {r['kind']} | {jl['records']} | {jl['mb']:.1f} | {jl['secs']:.2f} | "
                f"{jl['rps']:.0f} | {jl['mbps']:.1f} | {r['loaded']} |"
            )
    fills = [(s, j, res["fill"]) for (s, j), res in all_results if res["fill"]]
    if fills:
        lines += ["", "Filling the journal (`halyard produce`, window 2000):", ""]
        for s_ms, j_msgs, (secs, line) in fills:
            lines.append(f"- session {s_ms} ms, {j_msgs}: {secs:.1f} s (`{line}`)")
    lines += [
        "",
        "Probe traffic, checked after each scenario (every receipted message delivered, none stored twice):",
        "",
    ]
    for (s_ms, j_msgs), res in all_results:
        lines.append(f"- session {s_ms} ms, journal {j_msgs}: {res['check'].line()}")
    lines.append("")
    return "\n".join(lines)


# -- two mirrored brokers (--mirror) ---------------------------------------------

MIRROR_LOCK_LINE = r"(file|ZooKeeper) lock acquired"


def mirror_pair(base: Path, lock: str, check_period_ms: int, port_base: int):
    """server0 and server1 of tests/harness/mirror.py on fixed ports from port_base."""
    import harness.mirror as hm  # noqa: E402 (it imports pytest; only this mode needs it)

    hm.CHECK_PERIOD_MS = check_period_ms  # MirrorNode.node_args reads it at each start
    if lock == "file":
        pair = hm.Pair.file_lock(base)
    else:
        hosts = lock.split(":", 1)[1]
        # a lock id of its own: the epoch and state znodes outlive the run
        pair = hm.Pair(base, "zookeeper", f"zookeeper:{hosts}", f"figures-{uuid.uuid4().hex[:8]}")
    for i, n in enumerate(pair.nodes):
        n.port, n.http_port, n.mirror_port = port_base + 3 * i, port_base + 3 * i + 1, port_base + 3 * i + 2
    return hm, pair


def mirror_queue_depth(node, queue: str) -> float | None:
    try:
        return node.metric("halyard_queue_messages", queue=queue)
    except OSError:
        return None


def mirror_scenario(base: Path, lock: str, runs: int, backlog: int, top_up: int, check_period_ms: int,
                    port_base: int) -> dict:
    hm, pair = mirror_pair(base, lock, check_period_ms, port_base)
    log(pair.describe())
    period = check_period_ms / 1000
    wait_s = hm.FAILOVER_WAIT_S[pair.kind]
    res = {"lock": pair.lock_spec, "kill": [], "fill": None}
    try:
        active, other = pair.server0, pair.server1
        hm.start_active(active, {})
        pos = active.log_pos()
        other.start()
        active.wait_log(hm.IN_SYNC_LINE, since=pos, timeout=60)
        total = 0
        if backlog:
            res["fill"] = fill(active, backlog)
            total += backlog
            log(f"backlog of {backlog:,} messages in {res['fill'][0]:.1f} s: {res['fill'][1]}")
        for i in range(runs):
            if top_up:
                fill(active, top_up)
                total += top_up
            time.sleep(random.uniform(0, period))
            pos = other.log_pos()
            prober = Prober(other)
            prober.start()
            t0 = active.kill9()
            prober.join(timeout=wait_s)
            assert prober.first is not None, f"{other.name} did not accept within {wait_s:.0f} s\n{other.log_tail()}"
            lock_hit = other.wait_log(MIRROR_LOCK_LINE, since=pos, timeout=10)
            act = other.wait_log(hm.ACTIVE_LINE, since=pos, timeout=10)
            deadline = time.monotonic() + 30
            depth = mirror_queue_depth(other, "fill")
            while depth != total and time.monotonic() < deadline:
                time.sleep(0.1)
                depth = mirror_queue_depth(other, "fill")
            row = {
                "killed": active.name,
                "lock": lock_hit.ts - t0 if lock_hit.ts else None,
                "active": act.ts - t0 if act.ts else None,
                "accept": prober.first - t0,
                "epoch": int(re.search(hm.ACTIVE_LINE, act.line).group(1)),
                "held": total,
                "found": depth,
            }
            res["kill"].append(row)
            log(f"run {i + 1}: SIGKILL {active.name}: lock {fmt(row['lock'])} s, active {fmt(row['active'])} s, "
                f"accept {row['accept']:.3f} s (epoch {row['epoch']}); {other.name} holds {depth} of {total}")
            assert depth == total, f"{other.name} holds {depth} messages on fill, {total} were receipted"
            # the killed broker comes back as the passive; the next run kills the other
            pos = other.log_pos()
            active.start()
            other.wait_log(hm.IN_SYNC_LINE, since=pos, timeout=60)
            active, other = other, active
        return res
    finally:
        for n in pair.nodes:
            n.close()


def render_mirror(res: dict, args, started, elapsed) -> str:
    period = args.check_period_ms / 1000
    goal = period + 1.0
    zk = res["lock"].startswith("zookeeper")
    k = res["kill"]
    ok = sum(1 for r in k if r["accept"] < goal)
    cmd = "\"$PY\" scripts/bench/failover-figures.py " + " ".join(sys.argv[1:])
    lines = [
        f"SIGKILL of the active broker to the other accepting clients: two mirrored brokers (`--mirror-sync` both ways), "
        f"lock `{res['lock']}`, `--check-period-ms {args.check_period_ms}`, {args.backlog:,} unconsumed 1 KiB messages "
        f"on `/queue/fill` plus {args.top_up:,} more before each run ({k[-1]['held']:,} at the last run). "
        f"Run on {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes, binary {binary_info()}:",
        "",
        "```sh",
        cmd,
        "```",
        "",
        "| run | killed | lock | active | accept | epoch | messages on the new active | goal: accept < check period + 1 s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for i, r in enumerate(k, 1):
        lines.append(
            f"| {i} | {r['killed']} | {fmt(r['lock'])} | {fmt(r['active'])} | {r['accept']:.3f} | {r['epoch']} "
            f"| {r['found']:,.0f} of {r['held']:,} | {'met' if r['accept'] < goal else '**missed**'} |"
        )
    lines += [
        "",
        f"Seconds from the SIGKILL, median (min, max) of {len(k)} runs: lock {summary([r['lock'] for r in k])}; "
        f"active {summary([r['active'] for r in k])}; **accept {summary([r['accept'] for r in k])}**; "
        f"goal {goal:.1f} s met in {ok}/{len(k)} runs"
        + (" (the ZooKeeper lock: the killed broker's znode lives until its 6 s session expires, "
           "so the goal is not this lock's bound)" if zk else "")
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="SIGKILL runs per scenario (default 3)")
    ap.add_argument("--sigterm-runs", type=int, default=2, help="SIGTERM runs per scenario (default 2)")
    ap.add_argument("--session-timeouts", default="3000,6000", help="comma-separated ms (default 3000,6000)")
    ap.add_argument(
        "--journal",
        default="0,100000,100000n",
        help="comma-separated message counts; a trailing n fills with --no-duplicate-ids (default 0,100000,100000n)",
    )
    ap.add_argument("--out", default=None, help="default docs/failover.md (with --mirror: print only)")
    ap.add_argument("--no-write", action="store_true", help="print the report, do not write --out")
    ap.add_argument("--mirror", default=None,
                    help="two mirrored brokers instead of Kafka HA: file, or zookeeper:HOST:PORT")
    ap.add_argument("--backlog", type=int, default=5000, help="--mirror: unconsumed messages first (default 5000)")
    ap.add_argument("--top-up", type=int, default=200, help="--mirror: messages added before each run (default 200)")
    ap.add_argument("--check-period-ms", type=int, default=1000, help="--mirror: the brokers' check period")
    ap.add_argument("--port-base", type=int, default=62720, help="--mirror: 6 ports from this one")
    ap.add_argument("--preempt", action="store_true",
                    help="fenced preemption: the nodes watch each other's --peer-listen (goals: SIGKILL 1 s median, "
                         "2 s every run; SIGTERM 0.3 s)")
    args = ap.parse_args()

    if args.mirror:
        if args.mirror != "file" and not args.mirror.startswith("zookeeper:"):
            ap.error("--mirror is file or zookeeper:HOST:PORT")
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.monotonic()
        base = Path(tempfile.mkdtemp(prefix="halyard-mirror-figures-"))
        log(f"logs under {base}")
        res = mirror_scenario(base, args.mirror, args.runs, args.backlog, args.top_up, args.check_period_ms,
                              args.port_base)
        report = render_mirror(res, args, started, time.monotonic() - t0)
        print(report)
        if args.out and not args.no_write:
            Path(args.out).write_text(report)
            log(f"wrote {args.out}")
        return 0
    args.out = args.out or str(ROOT / "docs" / "failover.md")

    bootstrap = ensure_kafka()
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="halyard-figures-"))
    log(f"logs under {base}")
    all_results = []
    for s_ms in [int(x) for x in args.session_timeouts.split(",")]:
        for spec in args.journal.split(","):
            res = one_scenario(base, bootstrap, s_ms, spec, args.runs, args.sigterm_runs, args.preempt)
            all_results.append(((s_ms, journal_label(*parse_journal(spec))), res))
    report = render(all_results, args, started, time.monotonic() - t0)
    print(report)
    if not args.no_write:
        out = Path(args.out)
        # Hand-written notes below the marker survive a new run.
        if out.exists() and NOTES_MARKER in out.read_text():
            report += "\n" + NOTES_MARKER + out.read_text().split(NOTES_MARKER, 1)[1]
        out.write_text(report)
        log(f"wrote {args.out}")
    bad = [r for _, res in all_results if (r := res["check"]) and (r.lost or r.stored_twice or r.unexpected)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
