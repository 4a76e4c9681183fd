#!/usr/bin/env python3
"""Turns one scripts/bench/bench-compare.sh run into BENCHMARKS.md (standard library only).

    python3 scripts/bench/bench-report.py --run target/bench-compare/RUN_ID \
        [--out BENCHMARKS.md] [--plots docs/benchmarks]

Reads, from the run directory:
  meta.txt                 KEY=VALUE: versions, settings, load averages
  commands.txt             LABEL<TAB>ROUND<TAB>command line, as executed
  results/LABEL-rN.json    `halyard bench --json` reports; results/LABEL-rN.run: start, exit code
  logs/ceiling-rN-K.log    `halyard kafka-ceiling` output (the better of the K runs of a round counts)
  results/LABEL-rN.journal-offsets, .bridge-offsets   end offsets of a Kafka run's journal topic
                           and bridged topic; results/LABEL-rN.run also has the durable consumer's
                           count and lag for halyard-kafka-topic and halyard-kafka-bridged
  logs/*.node.log          Halyard node logs (the "journal group commit" lines); a mirrored pair's
                           passive logs to logs/LABEL-rN.passive.log
  logs/LABEL-rN.scrapes.kept   halyard_mirror_* lines of the mirrored pairs' /metrics scrapes
  logs/artemis*-rN.broker.log   Artemis's output
  (in the JSON) node_append_stalls   the node's journal compaction pauses in the measured window,
                           read by `halyard bench --node-metrics` (the local-journal runs)
  cpu/TAG.txt              /proc samples (T: /proc/stat; P: LABEL and one thread's stat line)
  plots/LABEL-rN/          `halyard bench --plot` output
and the machine from /proc and /sys. For every configuration the round with the median
throughput is the one reported (all rounds are listed too); its plots are copied to
PLOTS/LABEL/.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

CLOSED = ["halyard-kafka", "halyard-kafka-topic", "halyard-kafka-bridged", "halyard-local", "halyard-local-scraped",
          "halyard-local-paged", "halyard-mirror-sync", "halyard-mirror-async", "artemis", "halyard-local-amqp",
          "artemis-amqp"]
OPEN = ["halyard-local-openloop", "halyard-local-paged-openloop", "halyard-mirror-sync-openloop",
        "halyard-mirror-async-openloop", "artemis-openloop", "halyard-local-amqp-openloop", "artemis-amqp-openloop"]
# Two mirrored brokers (bench-compare.sh's header), each against halyard-local (and its open-loop run)
MIRRORS = ["halyard-mirror-sync", "halyard-mirror-async"]
EXTRA = ["artemis-defaultwindow"]
# The bench only sends (--consumers 0); `halyard consume` on a durable subscription consumes.
DURABLE_TOPIC = {"halyard-kafka-topic", "halyard-kafka-bridged"}
# Runs over AMQP 1.0 (`halyard bench --protocol amqp`): their "receipt" is the broker's `accepted`.
AMQP = {"halyard-local-amqp", "artemis-amqp", "halyard-local-amqp-openloop", "artemis-amqp-openloop"}
NAMES = {
    "ceiling": "(a) Kafka ceiling: `halyard kafka-ceiling`",
    "halyard-kafka": "(b) Halyard, Kafka journal",
    "halyard-kafka-topic": "(b-topic) Halyard, Kafka journal, durable topic subscription, not bridged",
    "halyard-kafka-bridged": "(b-bridged) Halyard, Kafka journal, durable topic subscription, bridged to Kafka",
    "halyard-local": "(c) Halyard, local journal",
    "halyard-local-scraped": "(c-scraped) Halyard, local journal, /metrics scraped every second",
    "halyard-local-paged": "(c-paged) Halyard, local journal, --max-memory-bytes 1 MiB (paging)",
    "halyard-local-paged-openloop": "(c-paged') Halyard, local journal, --max-memory-bytes 1 MiB (paging), open loop",
    "halyard-mirror-sync": "(m-sync) Halyard, two brokers mirroring, --mirror-sync (bench on the active)",
    "halyard-mirror-async": "(m-async) Halyard, two brokers mirroring, --mirror-sync false (bench on the active)",
    "halyard-mirror-sync-openloop": "(m-sync') Halyard, two brokers mirroring, --mirror-sync, open loop",
    "halyard-mirror-async-openloop": "(m-async') Halyard, two brokers mirroring, --mirror-sync false, open loop",
    "artemis": "(d) Artemis",
    "halyard-local-amqp": "(e) Halyard, local journal, AMQP 1.0",
    "artemis-amqp": "(f) Artemis, AMQP 1.0",
    "halyard-local-openloop": "(c') Halyard, local journal, open loop",
    "artemis-openloop": "(d') Artemis, open loop",
    "halyard-local-amqp-openloop": "(e') Halyard, local journal, AMQP 1.0, open loop",
    "artemis-amqp-openloop": "(f') Artemis, AMQP 1.0, open loop",
    "artemis-defaultwindow": "(d*) Artemis, its default STOMP consumer window (10 KiB)",
}
GOAL_KAFKA = 0.80  # issue 16 (was 0.70 before it)
GOAL_BRIDGE = 0.70  # (b-bridged)/(b): the bridge costs at most 30% of the journal-only throughput
GOAL_ARTEMIS = 1.5
GOAL_SCRAPE = 0.03  # 1 - (c-scraped)/(c): scraping /metrics every second costs less throughput
GOAL_MIRROR = 0.5  # (m-sync)/(c): sync mirroring costs less than half the throughput (issue 13)


# --- reading ------------------------------------------------------------------------------


def read_kv(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v
    return out


def read_text(path):
    """The file's text, or that of PATH.gz; "" if neither exists."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        pass
    try:
        with gzip.open(path + ".gz", "rt", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def exists(path):
    return os.path.exists(path) or os.path.exists(path + ".gz")


def read_commands(run):
    cmds = []
    for line in read_text(os.path.join(run, "commands.txt")).splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            cmds.append((parts[0], parts[1], parts[2]))
    return cmds


def bench_runs(run, label):
    """[(round, report or None, runinfo)] for a bench label."""
    out = []
    d = os.path.join(run, "results")
    pat = re.compile(re.escape(label) + r"-r(\d+)\.run$")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        m = pat.match(name)
        if not m:
            continue
        rnd = int(m.group(1))
        info = read_kv(os.path.join(d, name))
        if "scrapes_ok" in info and info.get("rc") == "0":
            # a run whose /metrics scrapes failed (or never happened) is a failed run
            try:
                if int(info.get("scrapes_failed", "0")) or not int(info["scrapes_ok"]):
                    info["rc"] = "scrape-failed"
            except ValueError:
                info["rc"] = "scrape-failed"
        rep = None
        jp = os.path.join(d, f"{label}-r{rnd}.json")
        if os.path.exists(jp):
            try:
                with open(jp, encoding="utf-8") as f:
                    rep = json.load(f)
            except ValueError:
                rep = None
        out.append((rnd, rep, info))
    out.sort(key=lambda x: x[0])
    return out


# Older builds printed only records= (one record per message).
CEIL_RE = re.compile(
    r"kafka ceiling: (?:messages=(\d+) )?records=(\d+) transactions=(\d+) seconds=([\d.]+) "
    r"msg_per_sec=([\d.]+) (?:records_per_sec=[\d.]+ )?mb_per_sec=([\d.]+)"
)


def ceiling_runs(run):
    """{round: [(k, dict or None, runinfo)]}"""
    out = {}
    d = os.path.join(run, "results")
    pat = re.compile(r"ceiling-r(\d+)-(\d+)\.run$")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        m = pat.match(name)
        if not m:
            continue
        rnd, k = int(m.group(1)), int(m.group(2))
        info = read_kv(os.path.join(d, name))
        text = read_text(os.path.join(run, "logs", f"ceiling-r{rnd}-{k}.log"))
        mm = CEIL_RE.search(text)
        res = None
        if mm:
            records = int(mm.group(2))
            messages = int(mm.group(1)) if mm.group(1) else records
            res = {
                "messages": messages,
                "records": records,
                "records_per_message": records / messages if messages else 1.0,
                "transactions": int(mm.group(3)),
                "seconds": float(mm.group(4)),
                "msg_per_sec": float(mm.group(5)),
                "mb_per_sec": float(mm.group(6)),
                "line": mm.group(0),
            }
        out.setdefault(rnd, []).append((k, res, info))
    for v in out.values():
        v.sort(key=lambda x: x[0])
    return out


# --- CPU samples --------------------------------------------------------------------------


def parse_cpu(path):
    """[(ts, machine_busy_ticks, machine_total_ticks, {label: {(tid, comm): ticks}})]"""
    samples = {}
    order = []
    for line in read_text(path).splitlines():
        if line.startswith("T "):
            parts = line.split()
            ts = float(parts[1])
            vals = [int(x) for x in parts[3:11]]  # user nice system idle iowait irq softirq steal
            total = sum(vals)
            busy = total - vals[3] - vals[4]
            samples[ts] = [ts, busy, total, {}]
            order.append(ts)
        elif line.startswith("Q "):
            try:
                _, ts, label, rest = line.split(" ", 3)
                ts = float(ts)
                fields = rest[rest.rindex(")") + 2 :].split()
                ticks = int(fields[11]) + int(fields[12])
            except (ValueError, IndexError):
                continue
            if ts in samples:
                samples[ts][3]["#" + label] = ticks
                samples[ts][3]["@" + label] = int(rest.split(" ", 1)[0])
        elif line.startswith("P "):
            try:
                _, ts, label, rest = line.split(" ", 3)
                ts = float(ts)
                tid = int(rest.split(" ", 1)[0])
                comm = rest[rest.index("(") + 1 : rest.rindex(")")]
                fields = rest[rest.rindex(")") + 2 :].split()
                ticks = int(fields[11]) + int(fields[12])
            except (ValueError, IndexError):
                continue
            if ts in samples:
                samples[ts][3].setdefault(label, {})[(tid, comm)] = ticks
    return [samples[t] for t in order]


def _proc_pairs(a, b):
    """{label: (ticks at a, ticks at b)} from the whole-process lines (dead threads included)."""
    out = {}
    for key, tb in b[3].items():
        if key.startswith("#") and key in a[3]:
            out[key[1:]] = (a[3][key], tb)
    return out


def java_thread_names(path):
    """{tid: full name} from a `jcmd PID Thread.print` dump ({} if none)."""
    names = {}
    for m in re.finditer(r'^"(.*)" .*\bnid=(0x[0-9a-fA-F]+|\d+)', read_text(path), re.M):
        nid = m.group(2)
        names[int(nid, 16) if nid.startswith("0x") else int(nid)] = m.group(1)
    return names


def thread_group(name):
    """Pool name of a thread: numbers, Artemis's Thread-N (...) wrapper and broker name dropped."""
    g = re.sub(r"^Thread-\d+ \((.*)\)$", r"\1", name)
    g = g.replace("-halyard-bench", "")
    g = re.sub(r"@[0-9a-f]+", "", g)
    g = re.sub(r"[-_:# ]*\d+$", "", g).strip()
    g = re.sub(r"\d+$", "", g)
    return g or name


def cpu_window(path, start=None, end=None, names=None):
    """CPU use between the samples nearest to start and end (whole file if None):
    {'secs', 'machine' (% of one core, summed over cores), 'procs': {label: %},
    'threads': {label: [(group, %), ...]}} or None."""
    s = parse_cpu(path)
    if len(s) < 2:
        return None
    if start is None:
        a = s[0]
    else:
        a = min(s, key=lambda x: abs(x[0] - start))
    if end is None:
        b = s[-1]
    else:
        b = min(s, key=lambda x: abs(x[0] - end))
    if b[0] - a[0] < 0.5:
        a, b = s[0], s[-1]
    dt = b[0] - a[0]
    if dt <= 0:
        return None
    ncpu = os.cpu_count() or 1
    machine = (b[1] - a[1]) / max(1, b[2] - a[2]) * 100.0 * ncpu
    procs, threads = {}, {}
    for label, (ta_ticks, tb_ticks) in _proc_pairs(a, b).items():
        procs[label] = (tb_ticks - ta_ticks) / CLK_TCK / dt * 100.0
    tb_main = {k[1:]: v for k, v in b[3].items() if k.startswith("@")}
    for label, tb in b[3].items():
        if label.startswith(("#", "@")):
            continue
        ta = a[3].get(label, {})
        groups = {}
        for key, ticks in tb.items():
            # a thread born inside the window spent all its ticks inside it
            d = ticks - ta[key] if key in ta else ticks
            full = (names or {}).get(label, {}).get(key[0])
            if full is None and key[0] == tb_main.get(label):
                full = key[1] + " (main thread)"
            g = thread_group(full or key[1])
            groups[g] = groups.get(g, 0) + d
        threads[label] = sorted(
            ((g, v / CLK_TCK / dt * 100.0) for g, v in groups.items()),
            key=lambda x: -x[1],
        )
    return {"secs": dt, "machine": machine, "procs": procs, "threads": threads}


def measured_cpu(run, tag, info, warmup, duration, whole=False):
    """cpu_window of cpu/TAG.txt over the run's measured window (the whole file if whole or the
    .run file has no start); None without samples."""
    path = os.path.join(run, "cpu", f"{tag}.txt")
    if not exists(path):
        return None
    names = {
        lbl: java_thread_names(os.path.join(run, "cpu", f"{tag}.{lbl}.threads"))
        for lbl in ("broker", "kafka")
    }
    try:
        t0 = float(info.get("start"))
    except (TypeError, ValueError):
        whole = True
    if whole:
        return cpu_window(path, names=names)
    wu = float(info.get("warmup", warmup))
    du = float(info.get("duration", duration))
    return cpu_window(path, t0 + wu + 0.5, t0 + wu + du, names=names)


def kept_metrics(path, start=None, end=None):
    """{metric: [values]} from a .scrapes.kept file (EPOCH METRIC VALUE lines), within [start, end]."""
    out = {}
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            ts, v = float(parts[0]), float(parts[2])
        except ValueError:
            continue
        if (start is None or ts >= start) and (end is None or ts <= end):
            out.setdefault(parts[1], []).append(v)
    return out


# --- node logs ----------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def group_commits(path):
    """Sums of the 'journal group commit' lines of a node log."""
    text = ANSI.sub("", read_text(path))
    local = {"batches": 0, "group_commits": 0, "fsyncs": 0, "secs": 0.0, "lines": 0,
             "segments": None, "compactions": text.count("journal compacted")}
    kafka = {"batches": 0, "transactions": 0, "secs": 0.0, "lines": 0}
    for line in text.splitlines():
        if "journal group commit" not in line:
            continue
        kv = {k: v.strip('"') for k, v in KV.findall(line)}
        try:
            if "(Kafka)" in line:
                kafka["batches"] += int(kv["batches"])
                kafka["transactions"] += int(kv["transactions"])
                bps = float(kv.get("batches_per_sec", "0") or 0)
                if bps > 0:
                    kafka["secs"] += int(kv["batches"]) / bps
                kafka["lines"] += 1
            else:
                local["batches"] += int(kv["batches"])
                local["group_commits"] += int(kv["group_commits"])
                local["fsyncs"] += int(kv["fsyncs"])
                bps = float(kv.get("batches_per_sec", "0") or 0)
                if bps > 0:
                    local["secs"] += int(kv["batches"]) / bps
                local["lines"] += 1
                if "segments" in kv:
                    local["segments"] = int(kv["segments"])
        except (KeyError, ValueError):
            continue
    return local, kafka


def queue_stat(path):
    """Artemis `queue stat --json` of the bench queue after a run: dict or None."""
    text = read_text(path)
    i = text.find("{")
    if i < 0:
        return None
    try:
        data = json.loads(text[i:])
        rows = data.get("data") or []
        return rows[0] if rows else None
    except ValueError:
        return None


def stalls(rep):
    """Runs of whole seconds (warm-up or measured) in which fewer than 10% of the median
    per-second sends went out: [(first second, last second, messages sent before)]."""
    ps = [p for p in rep.get("per_second", []) if p["phase"] in ("warmup", "measure")]
    if len(ps) < 3:
        return []
    med = statistics.median(p["sent"] for p in ps)
    out, cum, cur = [], 0, None
    for p in ps:
        if p["sent"] < 0.1 * med:
            if cur is None:
                cur = [p["second"], p["second"], cum]
            else:
                cur[1] = p["second"]
        elif cur is not None:
            out.append(tuple(cur))
            cur = None
        cum += p["sent"]
    if cur is not None:
        out.append(tuple(cur))
    return out


def log_problems(path, pattern=r"\b(WARN|ERROR)\b"):
    text = ANSI.sub("", read_text(path))
    return [l for l in text.splitlines() if re.search(pattern, l)]


# --- machine ------------------------------------------------------------------------------


def machine_info(root):
    info = {}
    cpuinfo = read_text("/proc/cpuinfo")
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    info["cpu"] = m.group(1).strip() if m else "unknown"
    info["cores"] = os.cpu_count()
    m = re.search(r"^MemTotal:\s*(\d+) kB", read_text("/proc/meminfo"), re.M)
    info["ram"] = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else "unknown"
    u = os.uname()
    info["kernel"] = f"{u.sysname} {u.release} ({u.machine})"
    m = re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.M)
    info["virtual"] = bool(m)
    # The disk under the repository.
    disk = "unknown"
    try:
        st = os.stat(root)
        major, minor = os.major(st.st_dev), os.minor(st.st_dev)
        link = os.path.realpath(f"/sys/dev/block/{major}:{minor}")
        name = os.path.basename(link)
        # a partition's parent holds queue/rotational
        base = link if os.path.exists(os.path.join(link, "queue")) else os.path.dirname(link)
        rot = read_text(os.path.join(base, "queue", "rotational")).strip()
        model = read_text(os.path.join(base, "device", "model")).strip()
        kind = {"0": "the kernel flags it non-rotational", "1": "the kernel flags it rotational"}.get(
            rot, "type unknown"
        )
        driver = ""
        if name.startswith("vd"):
            driver = "virtio block device (a virtual disk: the host's storage is not visible), "
        elif name.startswith("nvme"):
            driver = "NVMe, "
        fs, mnt = "", ""
        best = ""
        for line in read_text("/proc/mounts").splitlines():
            p = line.split()
            if len(p) >= 3 and root.startswith(p[1]) and len(p[1]) >= len(best):
                best, fs, mnt = p[1], p[2], p[0]
        disk = f"/dev/{name}: {driver}{kind}" + (f", model {model}" if model else "")
        if fs:
            disk += f"; filesystem {fs} on {best}"
    except OSError:
        pass
    info["disk"] = disk
    return info


# --- formatting ---------------------------------------------------------------------------


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_pct(x):
    return "—" if x is None else f"{x:.0f}%"


def lat(rep, kind, key):
    try:
        v = rep["latency_ms"][kind]
        return None if v is None else v[key]
    except (KeyError, TypeError):
        return None


def throughput(rep):
    """Delivered msg/s in the measured window (deliveries read by the consumers); for a run
    whose bench had no consumer (--consumers 0: another process consumed), msg/s sent."""
    try:
        if rep["config"].get("consumers") == 0:
            return rep["measured"]["msg_per_sec_sent"]
        return rep["measured"]["msg_per_sec_received"]
    except (KeyError, TypeError, AttributeError):
        return None


def topic_end(path):
    """Sum of the end offsets in a GetOffsetShell output (TOPIC:PARTITION:OFFSET), or None."""
    ends = [int(m.group(1)) for m in re.finditer(r"^[^\s:]+:\d+:(\d+)\s*$", read_text(path), re.M)]
    return sum(ends) if ends else None


def consumer_check(rep, info):
    """For a durable-topic run: (missing, problems) from the durable consumer's record in the
    .run file, or (None, []) when there is none."""
    if "consumer_received" not in info and "consumer_rc" not in info:
        return None, []
    probs = []
    try:
        sent = rep["totals"]["sent"] if rep else None
        got = int(info.get("consumer_distinct", "0") or 0)
        dups = int(info.get("consumer_duplicates", "0") or 0)
    except (ValueError, KeyError, TypeError):
        return None, ["the durable consumer's summary could not be read"]
    if info.get("consumer_rc", "0") != "0":
        probs.append(f"the durable consumer exited {info.get('consumer_rc')}")
    missing = None if sent is None else max(0, sent - got)
    if missing:
        probs.append(f"the durable consumer got {got:,} of {sent:,} messages sent")
    if dups:
        probs.append(f"the durable consumer got {dups:,} duplicates")
    try:
        lag = float(info.get("consumer_last_message_after_bench", "0"))
        if lag > 2.0:
            probs.append(
                f"the durable consumer's last message came {lag:.1f} s after the bench ended "
                "(it fell behind: acknowledgements, hence tombstones, came late)"
            )
    except ValueError:
        pass
    return missing, probs


def median_pick(items, key):
    """The item with the median key (lower median for an even count); None if none valid."""
    valid = [it for it in items if key(it) is not None]
    if not valid:
        return None
    valid.sort(key=key)
    return valid[(len(valid) - 1) // 2]


def rel(path, start):
    return os.path.relpath(path, start).replace(os.sep, "/")


def shell_cmd(cmd):
    return cmd


# --- report -------------------------------------------------------------------------------


def fmt_pause_ms(x):
    """Milliseconds of pauses: 3 decimals below 10 ms (pauses can be microseconds)."""
    return f"{x:,.1f}" if x >= 10 else f"{x:.3f}"


def fmt_bound(le_ms, last_finite):
    """A stall bucket's name: "≤ 20 ms", "≤ 1 s", or "> 1 s" for +Inf."""
    def txt(ms):
        return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"

    if isinstance(le_ms, (int, float)):
        return "≤ " + txt(le_ms)
    return "> " + txt(last_finite) if last_finite is not None else "any"


def stall_section(w, rounds, picked):
    """## Append stalls: for each run whose bench read the node's /metrics (--node-metrics), the
    pauses of the local journal's append loop for compaction work in the measured window, one
    table per run (the reported round), from the JSON's node_append_stalls."""
    runs = []
    for label in CLOSED + OPEN + EXTRA:
        p = picked.get(label)
        if not p or not p[1] or not isinstance(p[1].get("node_append_stalls"), dict):
            continue
        runs.append((label, p[0], p[1]["node_append_stalls"]))
    if not runs:
        return
    w("## Append stalls (journal compaction pauses)")
    w("")
    w(
        "The local journal does compaction's file work (deleting dead segments, cleaning) on its "
        "own thread, `halyard-compact`; its append loop pauses only to plan a step, apply what a "
        "step did to the index, drop a slice of the index keys removed segments left, or wait for a "
        "running step before the journal is read whole or closed: an append arriving during a pause "
        "waits at most that long. The bench of each "
        "local-journal run read the node's `/metrics` when its measured window started and when it "
        "ended (`halyard bench --node-metrics`); the difference of the histogram "
        "`halyard_journal_compaction_stall_seconds` is the pauses of the measured window. Each column "
        "counts the pauses in that bucket only (not cumulative); the reported round of each "
        "configuration."
    )
    w("")
    for label, rnd, st in runs:
        name = NAMES.get(label, label)
        head = f"**{name}** (`{label}`, round {rnd}"
        if st.get("status") != "ok":
            why = st.get("error") or "no figures"
            if st.get("status") == "missing":
                w(f"{head}): the node exported no compaction-stall histogram at `{st.get('url', '?')}`.")
            else:
                w(f"{head}): no figures, the scrape failed: {why}.")
            w("")
            continue
        buckets = [b for b in st.get("buckets") or [] if isinstance(b, dict)]
        finite = [b["le_ms"] for b in buckets if isinstance(b.get("le_ms"), (int, float))]
        last = finite[-1] if finite else None
        count, sum_ms, over = st.get("count") or 0, st.get("sum_ms") or 0.0, st.get("over_20ms") or 0
        window = st.get("window_secs")
        parts = [f"{count:,} pause{'s' if count != 1 else ''}, {fmt_pause_ms(sum_ms)} ms in all"
                 + (f" ({sum_ms / 10 / window:.2f}% of the window)" if window else "")]
        if count:
            parts.append(f"largest bucket reached: {fmt_bound(st.get('max_le_ms'), last)}")
            share = st.get("over_20ms_share")
            parts.append(f"{over:,} over 20 ms" + (f" ({share * 100:.0f}%)" if share is not None else ""))
        if st.get("node_max_ms") is not None:
            parts.append(f"the node's longest pause since it started: {fmt_pause_ms(st['node_max_ms'])} ms")
        w(
            head
            + (f", {window:.1f} s between the scrapes" if window else "")
            + "): "
            + "; ".join(parts)
            + "."
        )
        others = [
            f"round {r}: {s['count']:,} ({s.get('over_20ms') or 0:,} over 20 ms)"
            for r, rep, _ in rounds.get(label, [])
            if r != rnd and rep and isinstance(s := rep.get("node_append_stalls"), dict)
            and s.get("status") == "ok" and s.get("count") is not None
        ]
        if others:
            w("")
            w("Pauses in the other rounds: " + "; ".join(others) + ".")
        if buckets:
            w("")
            w("| pause | " + " | ".join(fmt_bound(b.get("le_ms"), last) for b in buckets) + " |")
            w("| --- | " + " | ".join("---:" for _ in buckets) + " |")
            w("| pauses | " + " | ".join(fmt_int(b.get("count")) for b in buckets) + " |")
        w("")


def mirror_section(w, run, rounds, picked, env, warmup, duration):
    """### Mirroring: every round of (c), (m-sync), (m-async) side by side, their ratios, CPU of
    both brokers and the active's halyard_mirror_* gauges over the measured window."""
    w("### Mirroring: two brokers against one")
    w("")
    w(
        "Every round side by side (each round runs (c), (m-sync) and (m-async) one after the other, "
        "so a round's three saw similar machine load); ratio = mirrored / (c) of the same round; p99 "
        "is send→receipt in ms. CPU per message counts both brokers of a pair (the active and the "
        "passive that applies and fsyncs the stream) in the measured window."
    )
    w("")

    def by_round(label):
        return {rnd: (rep, info) for rnd, rep, info in rounds.get(label, []) if rep and info.get("rc") == "0"}

    def cpu_per_msg(label, rnd, rep, info):
        cw = measured_cpu(run, f"{label}-r{rnd}", info, warmup, duration)
        if not cw or cw["procs"].get("broker") is None:
            return None
        m = rep["measured"]
        handled = max(m["msg_per_sec_sent"], m["msg_per_sec_received"])
        both = cw["procs"]["broker"] + cw["procs"].get("passive", 0.0)
        return both / 100.0 / handled * 1e6 if handled else None

    for suffix, loop in (("", "closed loop (`--rate max`)"), ("-openloop", f"open loop (`--rate {env.get('LATENCY_RATE')}`)")):
        base = by_round("halyard-local" + suffix)
        mirrors = [(m + suffix, by_round(m + suffix)) for m in MIRRORS if m + suffix in rounds]
        if not mirrors:
            continue
        tags = {"halyard-mirror-sync": "m-sync", "halyard-mirror-async": "m-async"}
        head = ["round", "(c) msg/s"]
        for ml, _ in mirrors:
            t = tags[ml.replace("-openloop", "")]
            head += [f"({t}) msg/s", "ratio"]
        head.append("(c) p99")
        for ml, _ in mirrors:
            t = tags[ml.replace("-openloop", "")]
            head += [f"({t}) p99", "ratio"]
        head.append("(c) CPU/msg")
        for ml, _ in mirrors:
            head.append(f"({tags[ml.replace('-openloop', '')]}) CPU/msg, both brokers")
        w(f"{loop}:")
        w("")
        w("| " + " | ".join(head) + " |")
        w("| " + " | ".join(["---:"] * len(head)) + " |")
        ratios = {ml: ([], []) for ml, _ in mirrors}
        for rnd in sorted(set(base) | {r for _, d in mirrors for r in d}):
            b = base.get(rnd)
            btp = throughput(b[0]) if b else None
            bp99 = lat(b[0], "send_to_receipt", "p99_ms") if b else None
            cells = [str(rnd), fmt_int(btp)]
            for ml, d in mirrors:
                x = d.get(rnd)
                mtp = throughput(x[0]) if x else None
                rr = mtp / btp if mtp is not None and btp else None
                if rr is not None:
                    ratios[ml][0].append(rr)
                cells += [fmt_int(mtp), "—" if rr is None else f"{rr:.2f}x"]
            cells.append(fmt_ms(bp99))
            for ml, d in mirrors:
                x = d.get(rnd)
                mp = lat(x[0], "send_to_receipt", "p99_ms") if x else None
                rr = mp / bp99 if mp is not None and bp99 else None
                if rr is not None:
                    ratios[ml][1].append(rr)
                cells += [fmt_ms(mp), "—" if rr is None else f"{rr:.2f}x"]
            cpb = cpu_per_msg("halyard-local" + suffix, rnd, *b) if b else None
            cells.append("—" if cpb is None else f"{cpb:.1f} µs")
            for ml, d in mirrors:
                x = d.get(rnd)
                cpm = cpu_per_msg(ml, rnd, *x) if x else None
                cells.append("—" if cpm is None else f"{cpm:.1f} µs")
            w("| " + " | ".join(cells) + " |")
        cells = ["median of the ratios", ""]
        for ml, _ in mirrors:
            cells += ["", f"**{statistics.median(ratios[ml][0]):.2f}x**" if ratios[ml][0] else "—"]
        cells.append("")
        for ml, _ in mirrors:
            cells += ["", f"**{statistics.median(ratios[ml][1]):.2f}x**" if ratios[ml][1] else "—"]
        cells += [""] * (1 + len(mirrors))
        w("| " + " | ".join(cells) + " |")
        w("")
    # the active's mirror gauges in the reported rounds
    notes = []
    for label in [m + s for s in ("", "-openloop") for m in MIRRORS]:
        p = picked.get(label)
        if not p:
            continue
        rnd, _, info = p
        try:
            t0 = float(info["start"]) + float(info.get("warmup", warmup))
            t1 = t0 + float(info.get("duration", duration))
        except (KeyError, ValueError):
            t0 = t1 = None
        km = kept_metrics(os.path.join(run, "logs", f"{label}-r{rnd}.scrapes.kept"), t0, t1)
        parts = []
        for name, what in (
            ("halyard_mirror_answers_held", "answers the sync gate held"),
            ("halyard_mirror_unacknowledged_groups", "groups server1 had not acknowledged"),
            ("halyard_mirror_outbox_bytes", "outbox bytes"),
        ):
            v = km.get(name)
            if v:
                parts.append(f"{what} mean {statistics.mean(v):,.0f}, max {max(v):,.0f}")
        local, _ = group_commits(os.path.join(run, "logs", f"{label}-r{rnd}.node.log"))
        if local["secs"] > 0 and local["fsyncs"]:
            parts.append(
                f"server0 fsyncs {local['fsyncs'] / local['secs']:.0f}/s while busy, "
                f"{local['batches'] / local['fsyncs']:.0f} journal batches per fsync (whole run)"
            )
        if parts:
            n = len(next(iter(km.values()), []))
            notes.append(f"- **{label}** (round {rnd}, {n} scrapes in the measured window): " + "; ".join(parts) + ".")
    if notes:
        w(
            "The active's mirror gauges (`halyard_mirror_*` on its /metrics, docs/operations.md), read "
            "every second in the measured window of the reported round:"
        )
        w("")
        for n in notes:
            w(n)
        w("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="target/bench-compare/RUN_ID")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--plots", default="docs/benchmarks")
    a = ap.parse_args()

    run = a.run.rstrip("/")
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    out_dir = os.path.dirname(os.path.abspath(a.out)) or "."
    meta = read_kv(os.path.join(run, "meta.txt"))
    cmds = read_commands(run)
    mach = machine_info(root)
    env = {k[4:]: v for k, v in meta.items() if k.startswith("env_")}
    warmup = float(env.get("WARMUP", "5"))
    duration = float(env.get("DURATION", "20"))

    # ---- collect ----
    picked = {}  # label -> (round, rep, info)
    rounds = {}  # label -> [(round, rep, info)]
    for label in CLOSED + OPEN + EXTRA:
        rs = bench_runs(run, label)
        if not rs:
            continue
        rounds[label] = rs
        ok = [r for r in rs if r[1] is not None and r[2].get("rc") == "0"]
        if label in OPEN:
            # equal offered load: the median is taken on the p99 send->receipt latency
            pick = median_pick(ok, lambda r: lat(r[1], "send_to_receipt", "p99_ms"))
        else:
            pick = median_pick(ok, lambda r: throughput(r[1]))
        if pick is None and rs:
            pick = rs[-1]
        picked[label] = pick

    ceil = ceiling_runs(run)
    ceil_best = {}  # round -> (k, res, info)
    for rnd, runs in ceil.items():
        good = [r for r in runs if r[1] is not None]
        if good:
            ceil_best[rnd] = max(good, key=lambda r: r[1]["msg_per_sec"])
    ceil_pick = median_pick(list(ceil_best.items()), lambda x: x[1][1]["msg_per_sec"])

    # plots of the median rounds
    plot_links = {}
    for label, pick in picked.items():
        if pick is None:
            continue
        src = os.path.join(run, "plots", f"{label}-r{pick[0]}")
        if not os.path.isdir(src):
            continue
        dst = os.path.join(a.plots, label)
        os.makedirs(dst, exist_ok=True)
        for f in os.listdir(dst):
            if f.endswith((".png", ".svg")):
                os.remove(os.path.join(dst, f))
        for f in sorted(os.listdir(src)):
            if f.endswith((".png", ".svg")):
                shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
        plot_links[label] = {
            f[: -len(".png")]: rel(os.path.join(dst, f), out_dir)
            for f in os.listdir(dst)
            if f.endswith(".png")
        }

    def rep_of(label):
        p = picked.get(label)
        return None if p is None else p[1]

    def tp(label):
        return throughput(rep_of(label))

    ceiling_tp = ceil_pick[1][1]["msg_per_sec"] if ceil_pick else None

    L = []
    w = L.append
    w("# Benchmarks: Halyard against its journal's ceiling and against ActiveMQ Artemis (STOMP and AMQP 1.0)")
    w("")
    w(
        f"Generated by `scripts/bench/bench-compare.sh` (run `{meta.get('run_id', '?')}`, "
        f"{meta.get('started_utc', '?')} to {meta.get('finished_utc', '?')}) and "
        "`scripts/bench/bench-report.py`; do not edit by hand, run the script again. "
        f"Raw results, logs and CPU samples were in `{run}/` (not committed)."
    )
    w("")
    nrounds = int(env.get("ROUNDS", "1") or 1)
    w(
        "**Read with care:** the machine is small (2 cores) and shared: other engineers' builds, "
        "test suites and simulations may run alongside (the *others* column under "
        "[Where the time goes](#where-the-time-goes) shows how much CPU they took), so numbers "
        "move by tens of percent from run to run; "
        + (
            f"each configuration ran {nrounds} times and the round with the median "
            "throughput (for the open-loop runs: the median p99 send→receipt) is reported."
            if nrounds > 1
            else "each configuration ran **once** (`ROUNDS=3 scripts/bench/bench-compare.sh` "
            "repeats every configuration and reports the median)."
        )
        + f" Load average (1, 5, 15 min) at start: {', '.join(meta.get('load_at_start', '?').split(' ')[0:3])}; "
        f"at end: {', '.join(meta.get('load_at_end', '?').split(' ')[0:3])}."
    )
    w("")

    # ---- machine and versions ----
    w("## Machine and versions")
    w("")
    w("| what | value |")
    w("| --- | --- |")
    w(f"| CPU | {mach['cpu']}, {mach['cores']} cores" + (" (virtual machine)" if mach["virtual"] else "") + " |")
    w(f"| RAM | {mach['ram']} |")
    sync = meta.get("artemis_create_sync_test", "")
    w(
        f"| disk (repository, local journal, Kafka and Artemis data) | {mach['disk']}"
        + (f"; `artemis create`'s sync-write test measured {sync}" if sync else "")
        + " |"
    )
    w(f"| kernel | {mach['kernel']} |")
    dirty = meta.get("git_dirty_rust", "0").strip()
    commit = meta.get("git_commit", "unknown")
    source = meta.get("halyard_binary_source", "").strip()
    if source:
        # HALYARD_BIN: a binary built elsewhere (e.g. from a clean export), described by the runner
        state = f"; binary `{meta.get('halyard_binary', '?')}`: {source}"
    elif dirty not in ("", "0"):
        state = (
            f"; **{dirty} Rust/Cargo files modified in the work tree** when the run started "
            f"(other work in progress: {meta.get('git_dirty_files', '').strip()}), so the binary "
            "measured is that commit plus those changes"
        )
    else:
        state = "; clean work tree"
    w(
        f"| Halyard | `{meta.get('halyard_version', '?')}`, commit `{commit[:12]}` "
        f"({meta.get('git_commit_subject', '')})"
        + state
        + f"; binary built {meta.get('halyard_binary_mtime', '?')}, {meta.get('rustc', '')} |"
    )
    if meta.get("kafka_version"):
        w(
            f"| Kafka | Apache Kafka {meta.get('kafka_version')} (KRaft, one broker+controller, "
            f"`scripts/services/kafka.sh`, heap `{meta.get('kafka_heap', '')}`), {meta.get('kafka_bootstrap', '')}, "
            f"data on the same disk |"
        )
    if meta.get("artemis_version"):
        w(
            f"| Artemis | Apache Artemis (formerly ActiveMQ Artemis) {meta.get('artemis_version_running') or meta.get('artemis_version')} "
            f"(`{meta.get('artemis_coordinates', '')}` from Maven Central), journal "
            f"**{meta.get('artemis_journal_type_running', '?')}**"
            + (
                " (libaio is not installed here, so `artemis create` could not choose ASYNCIO, "
                "its preferred journal on Linux)"
                if meta.get("libaio") == "absent"
                else ""
            )
            + ", persistence "
            f"{meta.get('artemis_persistence_enabled', '?')}, journal-datasync "
            f"{meta.get('artemis_journal_datasync', '?')}, journal-buffer-timeout "
            f"{meta.get('artemis_journal_buffer_timeout_ns', '?')} ns (auto-tuned by `artemis create`: "
            f"{meta.get('artemis_create_sync_test', '?')}), JVM `{meta.get('artemis_java_args', '').strip()}` |"
        )
    w(f"| Java | {meta.get('java', '?')} ({meta.get('java_runtime', '')}) |")
    w("")

    # ---- workload ----
    w("## Workload")
    w("")
    w(
        f"Every broker got the same `halyard bench` load, one broker at a time: "
        f"{env.get('PRODUCERS')} producer and {env.get('CONSUMERS')} consumer connection(s) on "
        f"`{env.get('DESTINATION')}`, {env.get('SIZE')}-byte bodies, `persistent:{env.get('PERSISTENT')}`, "
        f"a RECEIPT asked for every SEND (receipts {env.get('RECEIPTS')}), at most "
        f"{env.get('WINDOW')} unreceipted sends in flight per producer, consumers ack "
        f"`{env.get('ACK')}`, closed loop (`--rate {env.get('RATE')}`), {env.get('WARMUP')} s warm-up "
        f"then {env.get('DURATION')} s measured. Both brokers send a persistent message's RECEIPT only "
        "once it is fsync'd (Halyard: local journal fsync or committed Kafka transaction; "
        "Artemis: `journal-datasync` true, sync on non-transactional sends by default)."
    )
    w("")
    tomb = env.get("CEILING_TOMBSTONES") == "1"
    w(
        "- **(a) the ceiling** is `halyard kafka-ceiling`: a plain rdkafka transactional producer "
        "(idempotent, acks=all, linger.ms=2) writing journal-shaped records (an `m/` key and an "
        f"encoded {env.get('SIZE')}-byte message) to a fresh compacted one-partition topic, "
        f"{env.get('CEILING_TXN')} messages per transaction, as fast as it can, no STOMP, no consumer"
        + (
            " — and, with `--tombstones`, each message's tombstone in the next transaction: the "
            "same records Halyard's journal writes for a message that is stored and then consumed "
            "(2 per message)"
            if tomb
            else " (1 record per message; Halyard writes 2, see below)"
        )
        + f"; the run size was calibrated to take about {env.get('CEILING_SECONDS')} s "
        f"({fmt_int(float(meta['ceiling_count']) if meta.get('ceiling_count') else None)} messages), "
        f"run {env.get('CEILING_RUNS')} times per round, the better run counts."
    )
    w("- **(b)** `halyard node` with the Kafka journal, a fresh cluster id (so fresh topics) per round.")
    if any(l in rounds for l in DURABLE_TOPIC):
        lags = [
            float(info["consumer_last_message_after_bench"])
            for l in DURABLE_TOPIC
            for _, _, info in rounds.get(l, [])
            if info.get("consumer_last_message_after_bench")
        ]
        w(
            "- **(b-topic) and (b-bridged)**: the Kafka bridge's cost. The same node flags as (b) "
            "(the bridge is on by default with the Kafka journal), a fresh cluster id per run; the "
            "bench's producer sends as in (b), but to a topic with a **durable subscription** "
            "(made before the first send by a `halyard consume` that subscribes and leaves), whose "
            "only consumer is `halyard consume --durable-name` (client-individual acks, one ACK per "
            "message), while the bench itself consumes nothing (`--consumers 0`). So each message "
            "is journaled and, once acknowledged, tombstoned, as in (b). **(b-topic)** sends to "
            "`/topic/bench-RUN-rN`, not bridged: the control, the same harness without the bridge. "
            "**(b-bridged)** sends to `/topic/kafka.bench-RUN-rN`: each message is also produced "
            "to the Kafka topic `bench-RUN-rN` (created on first use, 1 partition) in the same "
            "transaction as the journal batch that stores it, and, since the address has a "
            "subscription, the bridge's reader reads that topic back (it skips its own records: "
            "loop guard) and journals how far it read. The bridged topic is deleted after the run. "
            "Why not the bench's own consumer: a plain STOMP topic subscription is not durable, "
            "so a message sent to it is not journaled at all and the bridged run would write the "
            "Kafka record *instead of* the journal records (docs/bench.md#the-kafka-bridge). "
            "Throughput of these two is **msg/s sent** (each receipted after its transaction "
            "committed); the durable consumer kept up if it got every message sent and its last "
            "one soon after the bench ended"
            + (
                f" (here {min(lags):+.1f} s to {max(lags):+.1f} s after the bench ended)"
                if lags
                else ""
            )
            + ". The control runs just before the bridged run in each round."
        )
    http_note = ""
    for _, _, cmd in cmds:
        mh = re.search(r"--http (\S+)", cmd)
        if mh:
            http_note = f", serving `/metrics` on `--http {mh.group(1)}`"
            break
    w(
        "- **(c)** `halyard node` with the local journal (fsync on), a fresh data dir under `target/` per round"
        + (
            http_note
            + (
                " (read by the bench only, at the start and end of its measured window: "
                "`--node-metrics`; see (c-scraped))"
                if any("--node-metrics" in cmd for _, _, cmd in cmds)
                else " (not scraped: see (c-scraped))"
            )
            if http_note and "halyard-local-scraped" in rounds
            else http_note
        )
        + "."
    )
    if "halyard-local-scraped" in rounds:
        per_round = []
        for rnd, _, info in rounds["halyard-local-scraped"]:
            if "scrapes_ok" not in info:
                per_round.append(f"round {rnd}: no scrape record")
                continue
            txt = f"round {rnd}: {int(info['scrapes_ok']):,} scrapes"
            try:
                txt += f" in {float(info['end']) - float(info['start']):.0f} s"
            except (KeyError, ValueError):
                pass
            nf = int(info.get("scrapes_failed", "0") or 0)
            txt += f", {nf} failed" if nf else ", none failed"
            if info.get("scrape_max_seconds"):
                txt += f", slowest {float(info['scrape_max_seconds']) * 1000:.1f} ms"
            per_round.append(txt)
        w(
            "- **(c-scraped)** exactly (c) (same node flags, same load), but while the bench runs "
            "(warm-up, measured window and drain) a shell loop fetches "
            f"`{(rounds['halyard-local-scraped'][0][2].get('scrape_url') or '/metrics')}` with `curl -sf` "
            f"every {env.get('SCRAPE_INTERVAL', '1')} s (one new connection per scrape; curl runs on the same "
            "2 cores, its CPU is under *others*); a failed scrape fails the run. "
            + "; ".join(per_round)
            + ". The rounds alternate (c) and (c-scraped), so each pair saw similar machine load."
        )
    if any(l in rounds for l in MIRRORS):
        w(
            "- **(m-sync) and (m-async)**: two `halyard node` processes mirroring to each other "
            "(docs/mirroring.md), each on its own local journal (fsync on) in a fresh data dir, under a "
            "file lock in a fresh shared folder (`--lock-coordinator file:DIR --check-period-ms "
            f"{env.get('MIRROR_CHECK_PERIOD_MS', '1000')}`); server0 has (c)'s flags and takes the lock, "
            "server1 starts next and the bench starts once server0 logs `peer server1 joined the in-sync "
            "set`. The bench loads server0 exactly as (c). **(m-sync)** has `--mirror-sync` on both: a "
            "receipt waits for the local fsync and for server1's fsync of the same journal group; "
            "**(m-async)** has `--mirror-sync false`: a receipt waits for the local fsync only. Both "
            "processes' CPU is sampled"
            + (
                f"; server0's `/metrics` is read every {env.get('SCRAPE_INTERVAL', '1')} s during the bench "
                "for its `halyard_mirror_*` gauges (scraping costs nothing measurable: "
                "[Scraping /metrics](#scraping-metrics-run-20261204t053912z-commit-7d58b45))"
                if env.get("MIRROR_SCRAPE", "1") != "0"
                else ""
            )
            + "."
        )
    acc = meta.get("artemis_acceptor_artemis", "")
    mwin = re.search(r"stompConsumerWindowSize=(-?\d+)", acc)
    w(
        "- **(d)** Artemis, `scripts/services/artemis.sh`: `artemis create --require-login` defaults "
        "(journal included), STOMP acceptor on 127.0.0.1:61613 with "
        "`anycastPrefix=/queue/;multicastPrefix=/topic/`"
        + (
            f" and `stompConsumerWindowSize={mwin.group(1)}`"
            + (" (unbounded, like Halyard's default: see (d*))" if mwin.group(1) == "-1" else "")
            if mwin
            else " (Artemis's default STOMP consumer window)"
        )
        + ", login artemis/artemis, its data dir emptied before each run."
    )
    if "artemis-defaultwindow" in rounds:
        w(
            "- **(d\*)** Artemis exactly as (d) but with Artemis's own default STOMP consumer window: "
            "a subscription with `ack:client-individual` and no `consumer-window-size` header gets "
            "10 KiB of unacknowledged messages (about 9 of these messages) in flight; Halyard's "
            "default is unbounded. Shown for the record, not used for the goals."
        )
    if any(l in rounds for l in ("halyard-local-amqp", "artemis-amqp")):
        amqp_acc = meta.get("artemis_acceptor_artemis-amqp", "")
        w(
            "- **(e) and (f)**: the same load over **AMQP 1.0** (`halyard bench --protocol amqp`, the "
            "bench's own AMQP client on Halyard's codec): one connection, session and link per "
            "producer and per consumer; `/queue/bench` is the address `bench` with the `queue` "
            "capability (anycast on both brokers); messages carry a header with `durable` "
            f"{env.get('PERSISTENT')} and a {env.get('SIZE')}-byte data section; sends are unsettled "
            "and a send is complete when the broker's disposition says `accepted` (both brokers "
            "answer a durable message only once it is stored: the same contract as a STOMP RECEIPT), "
            f"at most {env.get('WINDOW')} unaccepted per producer; each consumer's link credit is "
            f"{env.get('WINDOW')}, topped up when half is used, and it accepts every delivery with "
            "its own disposition (`--ack client-individual`). **(e)** is the same `halyard node` "
            "(local journal, SASL ANONYMOUS, same port as STOMP); **(f)** is Artemis with its AMQP "
            "acceptor (`ARTEMIS_AMQP=1 scripts/services/artemis.sh start`"
            + (f": `{amqp_acc}`" if amqp_acc else "")
            + "), SASL PLAIN artemis/artemis, its data dir emptied before each run."
        )
    open_pairs = [
        pair
        for pair, labels in (
            ("(c') and (d')", ("halyard-local-openloop", "artemis-openloop")),
            ("(e') and (f')", ("halyard-local-amqp-openloop", "artemis-amqp-openloop")),
        )
        if any(l in rounds for l in labels)
    ]
    if open_pairs:
        w(
            "- **" + ", ".join(open_pairs)
            + f"**: the same, but open loop at `--rate {env.get('LATENCY_RATE')}` msg/s, "
            "so both brokers face the same offered load: closed-loop latencies mostly measure "
            "the queue the window builds (docs/bench.md), these measure the broker."
        )
    w("")
    if warmup >= 10:
        w(
            f"The {warmup:g} s warm-up is for Artemis: its JIT needs 10 to 15 s of load before its "
            "throughput stops climbing (with a 5 s warm-up its measured window still ramped from "
            "20,000 to 55,000 msg/s here). Halyard gets the same warm-up."
        )
        w("")
    w("Throughput below is **msg/s delivered** to the consumer in the measured window "
      "(equal to msg/s sent when the consumer keeps up); MB/s counts delivered body bytes (10^6).")
    w("")

    # ---- the table ----
    w("## Results")
    w("")
    if any(l in rounds for l in AMQP):
        w("For the AMQP rows, *send→receipt* is send→`accepted` and *unreceipted* counts sends never accepted.")
        w("")
    w(
        "| configuration | msg/s sent | msg/s delivered | MB/s | send→receipt p50 / p99 / p99.9 (ms) "
        "| end-to-end p50 / p99 / p99.9 (ms) | max send→receipt (ms) | unreceipted | missing |"
    )
    w("| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    if ceil_pick:
        r = ceil_pick[1][1]
        w(
            f"| {NAMES['ceiling']} ({r['transactions']:,} transactions of {env.get('CEILING_TXN')} messages"
            + (f", {r['records_per_message']:.2f} records per message" if r["records_per_message"] != 1 else "")
            + ") "
            f"| {fmt_int(r['msg_per_sec'])} | — (no consumer) | {r['mb_per_sec']:.1f} (written) | — | — | — | — | — |"
        )
    elif "ceiling" in env.get("CONFIGS", ""):
        w(f"| {NAMES['ceiling']} | failed | | | | | | | |")

    def row(label):
        p = picked.get(label)
        if p is None:
            return
        rnd, rep, info = p
        if rep is None or info.get("rc") != "0":
            errs = ", ".join((rep or {}).get("errors", []) or []) if rep else ""
            if info.get("rc") == "scrape-failed":
                why = (
                    f"{info.get('scrapes_failed', '?')} of "
                    f"{int(info.get('scrapes_ok', 0) or 0) + int(info.get('scrapes_failed', 0) or 0)} "
                    f"/metrics scrapes failed; bench exit {info.get('bench_rc', '?')}"
                )
            else:
                why = f"bench exit {info.get('rc', '?')}"
            w(
                f"| {NAMES[label]} | **failed** ({why}"
                + (f": {errs}" if errs else "")
                + ") | | | | | | | |"
            )
            if rep is None:
                return
        m = rep["measured"]
        t = rep["totals"]
        sr = " / ".join(fmt_ms(lat(rep, "send_to_receipt", k)) for k in ("p50_ms", "p99_ms", "p999_ms"))
        e2e = " / ".join(fmt_ms(lat(rep, "end_to_end", k)) for k in ("p50_ms", "p99_ms", "p999_ms"))
        if label in DURABLE_TOPIC:
            # the bench only sent; `halyard consume` consumed the durable subscription
            missing, _ = consumer_check(rep, info)
            got = info.get("consumer_distinct")
            w(
                f"| {NAMES[label]} | {fmt_int(m['msg_per_sec_sent'])} | — (durable consumer: "
                + (f"{int(got):,} of {t['sent']:,} sent" if got else "no record")
                + f") | {m['mb_per_sec_sent']:.1f} (sent) | {sr} | — | "
                f"{fmt_ms(lat(rep, 'send_to_receipt', 'max_ms'))} | {t['unreceipted']:,} "
                f"| {'—' if missing is None else f'{missing:,}'} |"
            )
            return
        w(
            f"| {NAMES[label]} | {fmt_int(m['msg_per_sec_sent'])} | {fmt_int(m['msg_per_sec_received'])} "
            f"| {m['mb_per_sec_received']:.1f} | {sr} | {e2e} | {fmt_ms(lat(rep, 'send_to_receipt', 'max_ms'))} "
            f"| {t['unreceipted']:,} | {t['missing']:,} |"
        )

    for label in CLOSED:
        row(label)
    for label in OPEN + EXTRA:
        row(label)
    w("")
    bad = []
    for label, p in picked.items():
        if p and p[1]:
            t = p[1]["totals"]
            if t["unreceipted"] or t["missing"] or t["duplicates"] or p[1].get("errors"):
                bad.append(
                    f"{label}: unreceipted {t['unreceipted']}, missing {t['missing']}, "
                    f"duplicates {t['duplicates']}, errors {p[1].get('errors')}"
                )
            if t["missing"] and label.startswith("artemis"):
                qs = queue_stat(os.path.join(run, "results", f"{label}-r{p[0]}.queue-stat"))
                if qs is not None:
                    bad.append(
                        f"{label}: after the run Artemis still held {int(qs.get('messageCount', 0)):,} "
                        f"messages on `{qs.get('name')}` (added {int(qs.get('messagesAdded', 0)):,}, "
                        f"acked {int(qs.get('messagesAcked', 0)):,}): the missing deliveries were "
                        "a backlog the consumer had not reached within the bench's 5 s drain"
                        + (
                            ""
                            if int(qs.get("messageCount", 0)) == t["missing"]
                            else (
                                f" (Artemis counts {int(qs.get('messageCount', 0)) - t['missing']} more: "
                                "messages already on their way to the consumer when it disconnected "
                                "go back to the queue)"
                                if int(qs.get("messageCount", 0)) > t["missing"]
                                else " (**fewer than missing: some may be lost**)"
                            )
                        )
                    )
            if label in DURABLE_TOPIC:
                bad.extend(f"{label}: {x}" for x in consumer_check(p[1], p[2])[1])
            if t.get("foreign"):
                bad.append(f"{label}: {t['foreign']} foreign messages were on the destination")
            if t.get("behind_schedule"):
                bad.append(f"{label}: {t['behind_schedule']:,} messages behind schedule (broker did not keep up with the offered rate)")
    if bad:
        w("Anomalies: " + "; ".join(bad) + ".")
    else:
        w("Every message sent was receipted and delivered exactly once in every reported run "
          "(unreceipted, missing and duplicates all 0).")
    w("")

    # ---- ratios and goals ----
    w("## Ratios and goals")
    w("")

    def all_tp(label):
        return [throughput(r[1]) for r in rounds.get(label, []) if r[1] and r[2].get("rc") == "0"]

    ceil_all = [v[1]["msg_per_sec"] for v in ceil_best.values()]

    def spread(num, den):
        """' (rounds: worst–best pairing X–Y)' when there are several rounds."""
        num = [x for x in num if x]
        den = [x for x in den if x]
        if len(num) < 2 and len(den) < 2 or not num or not den:
            return ""
        lo, hi = min(num) / max(den), max(num) / min(den)
        return lo, hi

    w("| goal | measured (medians) | met? | across rounds (worst to best pairing) |")
    w("| --- | --- | --- | --- |")
    fragile = []
    verdicts = {}
    b, c, d = tp("halyard-kafka"), tp("halyard-local"), tp("artemis")
    if b is not None and ceiling_tp:
        r = b / ceiling_tp
        verdicts["kafka"] = r >= GOAL_KAFKA
        sp = spread(all_tp("halyard-kafka"), ceil_all)
        w(
            f"| (b)/(a): Halyard on Kafka ≥ {GOAL_KAFKA:.0%} of the Kafka ceiling "
            f"| {fmt_int(b)} / {fmt_int(ceiling_tp)} msg/s = **{r:.0%}** "
            f"| {'yes' if r >= GOAL_KAFKA else '**no**'} | "
            + (f"{sp[0]:.0%} to {sp[1]:.0%}" if sp else "—")
            + " |"
        )
        if sp and sp[0] < GOAL_KAFKA <= sp[1]:
            fragile.append("(b)/(a)")
    elif any(x in env.get("CONFIGS", "").split() for x in ("ceiling", "halyard-kafka")):
        w(f"| (b)/(a) ≥ {GOAL_KAFKA:.0%} | not measured (a run failed or was not selected) | — | — |")

    def same_round(num_label, den_label):
        """Ratios of the same-round pairs (the rounds run the two side by side)."""
        den = {
            rnd: throughput(rep)
            for rnd, rep, info in rounds.get(den_label, [])
            if rep and info.get("rc") == "0"
        }
        return [
            throughput(rep) / den[rnd]
            for rnd, rep, info in rounds.get(num_label, [])
            if rep and info.get("rc") == "0" and den.get(rnd) and throughput(rep) is not None
        ]

    bb, bt = tp("halyard-kafka-bridged"), tp("halyard-kafka-topic")
    for den_label, den, name in (
        ("halyard-kafka", b, "(b-bridged)/(b): the bridge costs at most 30% of the journal-only throughput"),
        ("halyard-kafka-topic", bt, "(b-bridged)/(b-topic): the same, against the same harness without the bridge"),
    ):
        if bb is not None and den:
            r = bb / den
            verdicts["bridge" if den_label == "halyard-kafka" else "bridge_vs_topic"] = r >= GOAL_BRIDGE
            sp = spread(all_tp("halyard-kafka-bridged"), all_tp(den_label))
            pairs = same_round("halyard-kafka-bridged", den_label)
            w(
                f"| {name} (≥ {GOAL_BRIDGE:.0%}) "
                f"| {fmt_int(bb)} / {fmt_int(den)} msg/s = **{r:.0%}** "
                f"| {'yes' if r >= GOAL_BRIDGE else '**no**'} | "
                + (f"{sp[0]:.0%} to {sp[1]:.0%}" if sp else "—")
                + (f"; same-round pairs {', '.join(f'{x:.0%}' for x in pairs)}" if len(pairs) > 1 else "")
                + " |"
            )
            if sp and sp[0] < GOAL_BRIDGE <= sp[1]:
                fragile.append(name.split(":")[0])
        elif "halyard-kafka-bridged" in env.get("CONFIGS", "").split() and (
            den_label != "halyard-kafka-topic" or env.get("BRIDGE_CONTROL", "1") != "0"
        ):
            w(f"| {name.split(':')[0]} ≥ {GOAL_BRIDGE:.0%} | not measured (a run failed or was not selected) | — | — |")
    if bb is not None and ceiling_tp:
        r = bb / ceiling_tp
        sp = spread(all_tp("halyard-kafka-bridged"), ceil_all)
        w(
            f"| (b-bridged)/(a): bridged, against the Kafka ceiling (for reference: the ceiling writes "
            f"(b)'s records, not the bridged record) | {fmt_int(bb)} / {fmt_int(ceiling_tp)} msg/s = **{r:.0%}** "
            f"| — (no goal of its own) | "
            + (f"{sp[0]:.0%} to {sp[1]:.0%}" if sp else "—")
            + " |"
        )
    if c is not None and d:
        r = c / d
        verdicts["artemis_tp"] = r >= GOAL_ARTEMIS
        sp = spread(all_tp("halyard-local"), all_tp("artemis"))
        w(
            f"| (c)/(d): Halyard local ≥ {GOAL_ARTEMIS}x Artemis throughput "
            f"| {fmt_int(c)} / {fmt_int(d)} msg/s = **{r:.2f}x** "
            f"| {'yes' if r >= GOAL_ARTEMIS else '**no**'} | "
            + (f"{sp[0]:.2f}x to {sp[1]:.2f}x" if sp else "—")
            + " |"
        )
        if sp and sp[0] < GOAL_ARTEMIS <= sp[1]:
            fragile.append("(c)/(d) throughput")
    elif any(x in env.get("CONFIGS", "").split() for x in ("halyard-local", "artemis")):
        w(f"| (c)/(d) ≥ {GOAL_ARTEMIS}x | not measured | — | — |")
    cs = tp("halyard-local-scraped")
    if cs is not None and c:
        r = cs / c
        # One-sided: the goal is about what scraping costs; a scraped run
        # that comes out faster is the machine's noise (±10% here), not a
        # change scraping made.
        ok_ = r > 1 - GOAL_SCRAPE
        verdicts["scrape"] = ok_
        sp = spread(all_tp("halyard-local-scraped"), all_tp("halyard-local"))
        # the rounds alternate the two: the same-round pairs are the fairest comparison
        by_round = {
            rnd: throughput(rep)
            for rnd, rep, info in rounds.get("halyard-local", [])
            if rep and info.get("rc") == "0"
        }
        pairs = [
            f"{throughput(rep) / by_round[rnd] - 1:+.1%}"
            for rnd, rep, info in rounds.get("halyard-local-scraped", [])
            if rep and info.get("rc") == "0" and by_round.get(rnd)
        ]
        w(
            f"| (c-scraped)/(c): throughput lost to scraping /metrics every second < {GOAL_SCRAPE:.0%} "
            f"| {fmt_int(cs)} / {fmt_int(c)} msg/s = **{r - 1:+.1%}** "
            f"| {'yes' if ok_ else '**no**'} | "
            + (f"{sp[0] - 1:+.1%} to {sp[1] - 1:+.1%}" if sp else "—")
            + (f"; same-round pairs {', '.join(pairs)}" if len(pairs) > 1 else "")
            + " |"
        )
        # fragile: some pairings meet the goal and others do not
        if sp and sp[0] < 1 - GOAL_SCRAPE < sp[1]:
            fragile.append("(c-scraped)/(c)")
    elif any(x in env.get("CONFIGS", "").split() for x in ("halyard-local-scraped",)):
        w(f"| (c-scraped)/(c): throughput lost to scraping /metrics every second < {GOAL_SCRAPE:.0%} "
          "| not measured (a run failed or was not selected) | — | — |")
    for ml in MIRRORS:
        mv = tp(ml)
        if mv is None or not c:
            if ml in env.get("CONFIGS", "").split():
                w(f"| {NAMES[ml].split(' ')[0]}/(c) | not measured (a run failed or was not selected) | — | — |")
            continue
        r = mv / c
        pairs = same_round(ml, "halyard-local")
        sync = ml == "halyard-mirror-sync"
        if sync:
            verdicts["mirror"] = r >= GOAL_MIRROR
        w(
            f"| {NAMES[ml].split(' ')[0]}/(c): "
            + (f"sync mirroring keeps ≥ {GOAL_MIRROR:.0%} of one broker's throughput" if sync
               else "async mirroring, against one broker (no goal of its own)")
            + f" | {fmt_int(mv)} / {fmt_int(c)} msg/s = **{r:.0%}** | "
            + (("yes" if r >= GOAL_MIRROR else "**no**") if sync else "—")
            + " | "
            + (f"same-round pairs {', '.join(f'{x:.0%}' for x in pairs)}" if pairs else "—")
            + " |"
        )
        if sync and pairs and min(pairs) < GOAL_MIRROR <= max(pairs):
            fragile.append("(m-sync)/(c)")
    rc_, rd_ = rep_of("halyard-local"), rep_of("artemis")
    for kind, name in (("send_to_receipt", "send→receipt"), ("end_to_end", "end-to-end")):
        pc, pd = lat(rc_, kind, "p99_ms"), lat(rd_, kind, "p99_ms")
        if pc is not None and pd is not None:
            verdicts[f"p99_{kind}"] = pc < pd
            ac = [lat(x[1], kind, "p99_ms") for x in rounds.get("halyard-local", []) if x[1]]
            ad = [lat(x[1], kind, "p99_ms") for x in rounds.get("artemis", []) if x[1]]
            sp = spread(ac, ad)
            w(
                f"| p99 {name}, closed loop: (c) lower than (d) | {fmt_ms(pc)} ms vs {fmt_ms(pd)} ms "
                f"({pc / pd:.2f}x) | {'yes' if pc < pd else '**no**'} | "
                + (f"(c)/(d) {sp[0]:.2f}x to {sp[1]:.2f}x" if sp else "—")
                + " |"
            )
    ro_c, ro_d = rep_of("halyard-local-openloop"), rep_of("artemis-openloop")
    for kind, name in (("send_to_receipt", "send→receipt"), ("end_to_end", "end-to-end")):
        pc, pd = lat(ro_c, kind, "p99_ms"), lat(ro_d, kind, "p99_ms")
        if pc is not None and pd is not None:
            ac = [lat(x[1], kind, "p99_ms") for x in rounds.get("halyard-local-openloop", []) if x[1]]
            ad = [lat(x[1], kind, "p99_ms") for x in rounds.get("artemis-openloop", []) if x[1]]
            sp = spread(ac, ad)
            w(
                f"| p99 {name}, open loop at {env.get('LATENCY_RATE')} msg/s: (c') lower than (d') "
                f"| {fmt_ms(pc)} ms vs {fmt_ms(pd)} ms ({pc / pd:.2f}x) | {'yes' if pc < pd else '**no**'} | "
                + (f"(c')/(d') {sp[0]:.2f}x to {sp[1]:.2f}x" if sp else "—")
                + " |"
            )
    e_, f_ = tp("halyard-local-amqp"), tp("artemis-amqp")
    if e_ is not None and f_:
        r = e_ / f_
        verdicts["amqp_tp"] = r >= GOAL_ARTEMIS
        sp = spread(all_tp("halyard-local-amqp"), all_tp("artemis-amqp"))
        w(
            f"| (e)/(f): Halyard local ≥ {GOAL_ARTEMIS}x Artemis throughput, AMQP 1.0 "
            f"| {fmt_int(e_)} / {fmt_int(f_)} msg/s = **{r:.2f}x** "
            f"| {'yes' if r >= GOAL_ARTEMIS else '**no**'} | "
            + (f"{sp[0]:.2f}x to {sp[1]:.2f}x" if sp else "—")
            + " |"
        )
        if sp and sp[0] < GOAL_ARTEMIS <= sp[1]:
            fragile.append("(e)/(f) throughput")
    elif "halyard-local-amqp" in rounds or "artemis-amqp" in rounds:
        w(f"| (e)/(f) ≥ {GOAL_ARTEMIS}x, AMQP 1.0 | not measured (a run failed) | — | — |")
    for (lc, ld, tag, loop) in (
        ("halyard-local-amqp", "artemis-amqp", "(e)", "closed loop"),
        ("halyard-local-amqp-openloop", "artemis-amqp-openloop", "(e')", f"open loop at {env.get('LATENCY_RATE')} msg/s"),
    ):
        rc2, rd2 = rep_of(lc), rep_of(ld)
        for kind, name in (("send_to_receipt", "send→accepted"), ("end_to_end", "end-to-end")):
            pc, pd = lat(rc2, kind, "p99_ms"), lat(rd2, kind, "p99_ms")
            if pc is None or pd is None:
                continue
            verdicts[f"amqp_p99_{kind}_{tag}"] = pc < pd
            ac = [lat(x[1], kind, "p99_ms") for x in rounds.get(lc, []) if x[1]]
            ad = [lat(x[1], kind, "p99_ms") for x in rounds.get(ld, []) if x[1]]
            sp = spread(ac, ad)
            other = "(f)" if tag == "(e)" else "(f')"
            w(
                f"| p99 {name}, AMQP 1.0, {loop}: {tag} lower than {other} | {fmt_ms(pc)} ms vs "
                f"{fmt_ms(pd)} ms ({pc / pd:.2f}x) | {'yes' if pc < pd else '**no**'} | "
                + (f"{tag}/{other} {sp[0]:.2f}x to {sp[1]:.2f}x" if sp else "—")
                + " |"
            )
    w("")
    if any(l in rounds for l in ("halyard-local-amqp", "artemis-amqp")):
        w("### AMQP 1.0: Halyard against Artemis")
        w("")
        w(
            "The AMQP runs side by side (same load, same window; p99 in ms; ratio = Halyard / Artemis). "
            "Where Halyard's AMQP time goes (profiles of the node under this load) is in "
            "[docs/bench.md](docs/bench.md#amqp-10-halyard-against-artemis)."
        )
        w("")
        w("| run | Halyard msg/s | Artemis msg/s | ratio | Halyard p99 send→accepted | Artemis p99 send→accepted | ratio | Halyard p99 end-to-end | Artemis p99 end-to-end | ratio |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

        def ratio(x, y, fmt):
            return fmt(x / y) if x is not None and y else "—"

        for lc, ld, name in (
            ("halyard-local-amqp", "artemis-amqp", "closed loop (`--rate max`)"),
            ("halyard-local-amqp-openloop", "artemis-amqp-openloop", f"open loop (`--rate {env.get('LATENCY_RATE')}`)"),
        ):
            rc2, rd2 = rep_of(lc), rep_of(ld)
            if rc2 is None and rd2 is None:
                continue
            cells = [name, fmt_int(throughput(rc2)), fmt_int(throughput(rd2)),
                     ratio(throughput(rc2), throughput(rd2), lambda v: f"**{v:.2f}x**")]
            for kind in ("send_to_receipt", "end_to_end"):
                pc, pd = lat(rc2, kind, "p99_ms"), lat(rd2, kind, "p99_ms")
                cells += [fmt_ms(pc), fmt_ms(pd), ratio(pc, pd, lambda v: f"{v:.2f}x")]
            w("| " + " | ".join(cells) + " |")
        w("")
    if any(l in rounds for l in MIRRORS):
        mirror_section(w, run, rounds, picked, env, warmup, duration)
    if fragile:
        w(
            "**Not robust:** for " + " and ".join(fragile) + " the verdict flips depending on which "
            "rounds are paired (last column): on this shared machine, whether the goal is met is "
            "within the run-to-run noise. Run `ROUNDS=5` (or more) on a quiet machine before trusting it."
        )
        w("")
    if b is not None and ceiling_tp:
        rpm = None
        pk = picked.get("halyard-kafka")
        if pk and pk[1]:
            _, kst = group_commits(os.path.join(run, "logs", f"halyard-kafka-r{pk[0]}.node.log"))
            offs = read_text(os.path.join(run, "results", f"halyard-kafka-r{pk[0]}.journal-offsets"))
            mo = re.search(r"^[^\s:]+:0:(\d+)\s*$", offs, re.M)
            if mo and pk[1]["totals"]["sent"]:
                rpm = (int(mo.group(1)) - kst["transactions"]) / pk[1]["totals"]["sent"]
        crpm = ceil_pick[1][1].get("records_per_message", 1.0) if ceil_pick else 1.0
        text = (
            "How to read (b)/(a): Halyard's journal writes the message record when a message is "
            "stored and, when the consumer acknowledges it, a tombstone for the message key (a "
            "message on several durable queues takes an `Acked` record per queue before its last "
            "acknowledgement, and tombstones for those too) so that compaction can drop it. "
            + (
                f"The ceiling writes the same records ({crpm:.2f} per message), with no STOMP "
                "clients to serve"
                if crpm > 1
                else "The ceiling writes **one** 1 KiB record per message and nothing else, with no "
                "STOMP clients to serve"
            )
        )
        if rpm is not None:
            text += (
                f". Measured on the journal topic, Halyard wrote **{rpm:.2f} records per message**; "
                f"in records, (b) wrote {rpm * b:,.0f} records/s against the ceiling's "
                f"{crpm * ceiling_tp:,.0f} ({rpm * b / (crpm * ceiling_tp):.0%}); only the first record "
                "of a message carries its body"
            )
        text += (
            ". Both share the machine's cores with Kafka; (b) also with the bench's producer and "
            "consumer."
        )
        w(text)
        w("")
    if bb is not None:
        parts = []
        for label in ("halyard-kafka-topic", "halyard-kafka-bridged"):
            pk = picked.get(label)
            if not pk or not pk[1] or not pk[1]["totals"]["sent"]:
                continue
            sent = pk[1]["totals"]["sent"]
            _, kst = group_commits(os.path.join(run, "logs", f"{label}-r{pk[0]}.node.log"))
            je = topic_end(os.path.join(run, "results", f"{label}-r{pk[0]}.journal-offsets"))
            be = topic_end(os.path.join(run, "results", f"{label}-r{pk[0]}.bridge-offsets"))
            txt = f"{label} (round {pk[0]}, {sent:,} messages sent): "
            if je is not None and kst["transactions"]:
                txt += (
                    f"journal topic {(je - kst['transactions']) / sent:.2f} records per message "
                    f"({je:,} offsets less {kst['transactions']:,} commit markers)"
                )
            elif je is not None:
                txt += f"journal topic end offset {je:,}"
            if be is not None:
                txt += (
                    f"; bridged topic end offset {be:,}: {be / sent:.3f} per message (one record "
                    "per message plus a commit marker per transaction that wrote to it)"
                )
            parts.append(txt)
        w(
            "How to read (b-bridged): a bridged message costs the journal the same records as in "
            "(b) and (b-topic), plus one more record with its body (the Kafka record, written to "
            "the bridged topic in the same transaction: a second partition in each transaction that carries sends), "
            "and the bridge's reader reads the bridged topic back (skipping its own records) and "
            "journals its position. (b-bridged)/(b) is the ratio the issue asks for; (b-topic) "
            "runs the same clients on the same kind of destination without the bridge, so "
            "(b-bridged)/(b-topic) is the bridge alone, and (b-topic)/(b) what the harness "
            "itself costs (a durable topic subscription and `halyard consume` instead of a queue "
            "and the bench's consumer)"
            + (f": {fmt_int(bt)} / {fmt_int(b)} msg/s = {bt / b:.0%}" if bt is not None and b else "")
            + ". Measured: "
            + ("; ".join(parts) if parts else "no offsets recorded")
            + "."
        )
        w("")

    # ---- all rounds ----
    if nrounds > 1 or any(len(v) > 1 for v in rounds.values()) or any(len(v) > 1 for v in ceil.values()):
        w("## Every round")
        w("")
        if any(l in rounds for l in DURABLE_TOPIC):
            w("For halyard-kafka-topic and halyard-kafka-bridged the msg/s column is msg/s sent (the bench "
              "consumed nothing) and *durable consumer* says what `halyard consume` got and when its last "
              "message came (seconds after the bench ended).")
            w("")
        w("*send lag p99*: open loop only, how late the bench took up a scheduled send (docs/bench.md); "
          "it is part of both latencies.")
        w("")
        w("| configuration | round | msg/s delivered | send→receipt p99 (ms) | end-to-end p99 (ms) | send lag p99 (ms) | load avg before | reported |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for rnd in sorted(ceil):
            for k, res, info in ceil[rnd]:
                mark = "median" if ceil_pick and ceil_pick[0] == rnd and ceil_pick[1][0] == k else ""
                w(
                    f"| ceiling (run {k}) | {rnd} | {fmt_int(res['msg_per_sec']) if res else 'failed'} (written) "
                    f"| — | — | — | {info.get('load_before', '?')} | {mark} |"
                )
        for label in CLOSED + OPEN + EXTRA:
            for rnd, rep, info in rounds.get(label, []):
                mark = "median" if picked.get(label) and picked[label][0] == rnd else ""
                if label in DURABLE_TOPIC and info.get("consumer_distinct"):
                    mark = (
                        f"{mark}{'; ' if mark else ''}durable consumer {int(info['consumer_distinct']):,}"
                        + (f" of {rep['totals']['sent']:,}" if rep else "")
                        + f", last {float(info.get('consumer_last_message_after_bench', 'nan')):+.1f} s"
                    )
                w(
                    f"| {label} | {rnd} | {fmt_int(throughput(rep)) if rep and info.get('rc') == '0' else 'failed'} "
                    f"| {fmt_ms(lat(rep, 'send_to_receipt', 'p99_ms'))} | {fmt_ms(lat(rep, 'end_to_end', 'p99_ms'))} "
                    f"| {fmt_ms(lat(rep, 'send_lag', 'p99_ms'))} | {info.get('load_before', '?')} | {mark} |"
                )
        w("")

    # ---- plots ----
    if plot_links:
        w("## Plots")
        w("")
        w(
            "Latency against percentile (send→receipt and end-to-end) and sends/deliveries per "
            "second over the run (measured window marked), as drawn by `halyard bench --plot`; "
            f"SVG versions beside the PNGs in `{a.plots}/LABEL/`."
        )
        w("")
        for label in CLOSED + OPEN + EXTRA:
            links = plot_links.get(label)
            if not links:
                continue
            w(f"### {NAMES[label]}")
            w("")
            for kind in ("latency", "throughput"):
                if kind in links:
                    w(f"![{label} {kind}]({links[kind]})")
            w("")

    # ---- journal compaction pauses (halyard bench --node-metrics) ----
    stall_section(w, rounds, picked)

    # ---- where the time goes ----
    w("## Where the time goes")
    w("")
    w(
        f"CPU use sampled every {env.get('SAMPLE_INTERVAL', '1')} s from `/proc/PID/task/*/stat` "
        "(what `ps` reads) during the measured window, in % of one core (the machine has "
        f"{mach['cores']}, so {100 * (mach['cores'] or 1)}% is everything). *others* is the rest of "
        "the machine: processes that are not part of the run (other engineers' work) and the kernel. "
        "*Broker CPU per message* is the broker's CPU time divided by the messages it handled (the "
        "larger of msg/s sent and delivered; each message is received, journaled, receipted, "
        "delivered, acked and journaled again); at a low open-loop rate it is mostly fixed costs. For "
        "Halyard on Kafka, Kafka's own CPU comes on top."
    )
    w("")
    w("| configuration | bench (client) | broker | Kafka | others | machine busy | broker CPU per message | busiest threads |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    cpu_rows = {}

    def cpu_for(tag, info, whole=False):
        return measured_cpu(run, tag, info, warmup, duration, whole)

    def busiest(cw):
        parts = []
        for label in ("broker", "passive", "bench", "consumer", "kafka"):
            for g, v in cw["threads"].get(label, [])[:3]:
                if v >= 5:
                    parts.append(f"{label}:`{g}` {v:.0f}%")
        return ", ".join(parts[:7])

    def cpu_row(name, cw, msg_per_sec=None):
        ours = sum(cw["procs"].values())
        others = max(0.0, cw["machine"] - ours)
        per = "—"
        brokers = cw["procs"].get("broker")
        broker_cell = fmt_pct(brokers)
        if brokers is not None and cw["procs"].get("passive") is not None:
            # a mirrored pair: both brokers count (the passive applies and fsyncs the stream)
            brokers += cw["procs"]["passive"]
            broker_cell = f"{fmt_pct(brokers)} (active {broker_cell} + passive {fmt_pct(cw['procs']['passive'])})"
        if msg_per_sec and brokers is not None:
            per = f"{brokers / 100.0 / msg_per_sec * 1e6:.1f} µs"
        client = fmt_pct(cw["procs"].get("bench"))
        if cw["procs"].get("consumer") is not None and cw["procs"].get("bench") is not None:
            # (b-topic), (b-bridged): the bench sends, `halyard consume` consumes
            client = (
                f"{fmt_pct(cw['procs']['bench'] + cw['procs']['consumer'])} "
                f"(bench {fmt_pct(cw['procs']['bench'])} + consume {fmt_pct(cw['procs']['consumer'])})"
            )
        w(
            f"| {name} | {client} | {broker_cell} "
            f"| {fmt_pct(cw['procs'].get('kafka'))} | {fmt_pct(others)} | {fmt_pct(cw['machine'])} "
            f"| {per} | {busiest(cw)} |"
        )

    if ceil_pick:
        rnd, (k, res, info) = ceil_pick
        cw = cpu_for(f"ceiling-r{rnd}-{k}", info, whole=True)
        if cw:
            cpu_rows["ceiling"] = cw
            cpu_row(NAMES["ceiling"] + " (bench = the producer)", cw)
    for label in CLOSED + OPEN + EXTRA:
        p = picked.get(label)
        if not p:
            continue
        cw = cpu_for(f"{label}-r{p[0]}", p[2])
        if cw:
            cpu_rows[label] = cw
            handled = None
            if p[1]:
                m = p[1]["measured"]
                handled = max(m["msg_per_sec_sent"], m["msg_per_sec_received"])
            cpu_row(NAMES[label], cw, handled)
    w("")

    # group commit
    gc_lines = []
    for label in ("halyard-kafka", "halyard-kafka-topic", "halyard-kafka-bridged", "halyard-local",
                  "halyard-local-scraped", "halyard-local-openloop", *MIRRORS, *(m + "-openloop" for m in MIRRORS),
                  "halyard-local-amqp", "halyard-local-amqp-openloop"):
        p = picked.get(label)
        if not p or not p[1]:
            continue
        local, kafka = group_commits(os.path.join(run, "logs", f"{label}-r{p[0]}.node.log"))
        sent = p[1]["totals"]["sent"]
        if kafka["transactions"]:
            offs = read_text(os.path.join(run, "results", f"{label}-r{p[0]}.journal-offsets"))
            mo = re.search(r"^[^\s:]+:0:(\d+)\s*$", offs, re.M)
            if mo and sent:
                end = int(mo.group(1))
                recs = end - kafka["transactions"]
                gc_lines.append(
                    f"- **{label}**: the journal topic ended at offset {end:,}: {recs:,} records plus "
                    f"{kafka['transactions']:,} transaction commit markers, i.e. **{recs / sent:.2f} "
                    f"records per message** sent ({sent:,}); the ceiling writes "
                    f"{(ceil_pick[1][1].get('records_per_message', 1.0) if ceil_pick else 1.0):.2f}."
                )
            gc_lines.append(
                f"- **{label}**: {kafka['transactions']:,} Kafka transactions carried "
                f"{kafka['batches']:,} journal batches ({kafka['batches'] / kafka['transactions']:.1f} "
                f"batches per transaction, {kafka['transactions'] / kafka['secs']:.0f} transactions/s while busy); "
                f"{sent:,} messages were sent in the whole run, so about "
                f"{sent / kafka['transactions']:.0f} messages (each stored and later acknowledged) "
                f"per transaction, against {env.get('CEILING_TXN')} messages per transaction for the ceiling"
                + (
                    " (and the tombstones of the transaction before: twice as many records)."
                    if env.get("CEILING_TOMBSTONES") == "1"
                    else "."
                )
                if kafka["secs"] > 0
                else f"- **{label}**: {kafka['transactions']:,} Kafka transactions, {kafka['batches']:,} batches."
            )
        if local["fsyncs"]:
            gc_lines.append(
                f"- **{label}**: {local['fsyncs']:,} fsyncs for {local['group_commits']:,} group commits "
                f"carrying {local['batches']:,} journal batches ({local['batches'] / local['fsyncs']:.0f} "
                f"batches per fsync, {local['fsyncs'] / local['secs']:.0f} fsyncs/s while busy); "
                f"{sent:,} messages sent in the whole run, so about {sent / local['fsyncs']:.0f} "
                "messages per fsync"
                + (
                    f"; {local['segments']} journal segments at shutdown, "
                    + (
                        f"{local['compactions']} compaction(s) that deleted segments"
                        if local["compactions"]
                        else "none deleted during the run although every message was consumed"
                    )
                    if local["segments"] is not None
                    else ""
                )
                + "."
                if local["secs"] > 0
                else f"- **{label}**: {local['fsyncs']:,} fsyncs, {local['batches']:,} batches."
            )
    if gc_lines:
        w("Group commit, from the nodes' `journal group commit` log lines (logged every 10 s and at "
          "shutdown, so warm-up and drain are included):")
        w("")
        L.extend(gc_lines)
        w("")

    # automatic observations
    obs = []
    ncores = mach["cores"] or 1
    for label in CLOSED + EXTRA:
        rp = rep_of(label)
        mean = lat(rp, "send_to_receipt", "mean_ms")
        if not rp or not mean or rp["config"].get("rate") != "max":
            continue
        inflight = rp["config"]["producers"] * rp["config"]["window"]
        bound = inflight / (mean / 1000.0)
        sent = rp["measured"]["msg_per_sec_sent"]
        cw = cpu_rows.get(label)
        if sent and abs(bound - sent) / sent < 0.2:
            obs.append(
                f"{label}: {inflight:,} sends in flight / {mean:.1f} ms mean send→receipt = "
                f"{bound:,.0f} msg/s, the rate measured ({sent:,.0f}): the producer's window was "
                "always full, so the closed loop ran at the pace of the broker's receipts"
                + (
                    f"; the bench process itself used {cw['procs'].get('bench', 0):.0f}% of a core"
                    if cw
                    else ""
                )
            )
    for label in CLOSED + OPEN + EXTRA:
        p = picked.get(label)
        if not p or not p[1]:
            continue
        st = stalls(p[1])
        if not st:
            continue
        parts = []
        cpath = os.path.join(run, "cpu", f"{label}-r{p[0]}.txt")
        names = {
            lbl: java_thread_names(os.path.join(run, "cpu", f"{label}-r{p[0]}.{lbl}.threads"))
            for lbl in ("broker", "kafka")
        }
        try:
            t0 = float(p[2].get("start"))
        except (TypeError, ValueError):
            t0 = None
        for first, last, before in st:
            txt = (
                f"second{'s' if last > first else ''} {first}"
                + (f"–{last}" if last > first else "")
                + f" (after {before:,} messages)"
            )
            if t0 is not None and exists(cpath):
                cw = cpu_window(cpath, t0 + first, t0 + last + 1, names=names)
                if cw and cw["threads"].get("broker"):
                    top = cw["threads"]["broker"][:2]
                    txt += ": broker threads " + ", ".join(f"`{g}` {v:.0f}%" for g, v in top)
            parts.append(txt)
        obs.append(
            f"{label}: the producer sent almost nothing (under 10% of its median rate) in "
            + "; ".join(parts)
            + " (seconds since the producers started; CPU over those seconds, in % of a core)"
        )
    for label in ("halyard-local", "halyard-kafka"):
        p = picked.get(label)
        if not p or not p[1]:
            continue
        local, kafka = group_commits(os.path.join(run, "logs", f"{label}-r{p[0]}.node.log"))
        cw = cpu_rows.get(label)
        thr = None
        if cw:
            for g, v in cw["threads"].get("broker", []):
                if g.startswith("halyard-journal") or g.startswith("halyard-kafka-j"):
                    thr = (g, v)
                    break
        if local["fsyncs"] and local["secs"]:
            cyc = local["secs"] / local["fsyncs"] * 1000
            text = (
                f"{label}: one group commit (write + fsync) every {cyc:.2f} ms on average while busy, "
                f"about {p[1]['totals']['sent'] / local['fsyncs']:.0f} messages each"
                + (f"; the journal thread `{thr[0]}` was on a CPU {thr[1]:.0f}% of the time" if thr else "")
            )
            ol = picked.get("halyard-local-openloop") if label == "halyard-local" else None
            lo = None
            if ol and ol[1]:
                lo, _ = group_commits(os.path.join(run, "logs", f"halyard-local-openloop-r{ol[0]}.node.log"))
            sync = meta.get("artemis_create_sync_test", "")
            facts = []
            if lo and lo["fsyncs"] and lo["secs"]:
                facts.append(
                    f"under the open-loop load the same journal completed a group commit every "
                    f"{lo['secs'] / lo['fsyncs'] * 1000:.2f} ms"
                )
            if sync:
                facts.append(f"`artemis create`'s sync-write test measured {sync}")
            if facts:
                text += (
                    ". An fsync on this disk takes far less than that cycle ("
                    + "; ".join(facts)
                    + ")"
                    + (
                        f": the journal thread is off the CPU {100 - thr[1]:.0f}% of each cycle, "
                        "mostly waiting for work from the rest of the node or for a free core, "
                        "not for the disk"
                        if thr
                        else ""
                    )
                )
            obs.append(text)
        if kafka["transactions"] and kafka["secs"]:
            cyc = kafka["secs"] / kafka["transactions"] * 1000
            obs.append(
                f"{label}: one Kafka transaction every {cyc:.1f} ms on average while busy"
                + (f"; the journal thread `{thr[0]}` used {thr[1]:.0f}% of a core" if thr else "")
                + " (it encodes the records, hands them to rdkafka and polls for the commit)"
            )
    for label, cw in cpu_rows.items():
        for g, v in cw["threads"].get("kafka", []):
            if g.startswith("kafka-log-cleaner") and v >= 10:
                obs.append(
                    f"{label}: Kafka's log cleaner used {v:.0f}% of a core (`scripts/services/kafka.sh` sets "
                    "`log.cleaner.min.cleanable.ratio=0.01` for tests, so compacted topics, the journal "
                    "and the ceiling's among them, are cleaned eagerly; Kafka's default is 0.5)"
                )
        if cw["machine"] >= 85 * ncores:
            obs.append(
                f"{label}: the machine was {cw['machine']:.0f}% busy out of {100 * ncores}%: "
                "the run is CPU-bound, the client, the broker (and Kafka) compete for the same cores; "
                "a faster broker shows up as more CPU left for the others"
            )
        for proc in ("broker", "bench", "kafka"):
            for g, v in cw["threads"].get(proc, [])[:2]:
                if v >= 85:
                    obs.append(f"{label}: {proc} thread group `{g}` used {v:.0f}% of a core: a single-thread limit")
    if obs:
        w("Observations computed from these samples:")
        w("")
        for o in obs:
            w(f"- {o}.")
        w("")

    # Artemis log warnings
    art_notes = []
    for label in ("artemis", "artemis-openloop", "artemis-amqp", "artemis-amqp-openloop"):
        p = picked.get(label)
        if not p:
            continue
        probs = log_problems(os.path.join(run, "logs", f"{label}-r{p[0]}.broker.log"))
        # What was logged before the bench started (e.g. the reset of
        # artemis.sh's AMQP readiness probe) is not the run's doing.
        before = set(log_problems(os.path.join(run, "logs", f"{label}-r{p[0]}.start.log")))
        probs = [l for l in probs if l not in before]
        if probs:
            art_notes.append(f"- {label}: {len(probs)} WARN/ERROR lines in Artemis's log, e.g. `{probs[0][-200:]}`")
    if art_notes:
        w("Artemis log:")
        w("")
        L.extend(art_notes)
        w("")

    # ---- commands ----
    w("## Exact commands")
    w("")
    w("Round 1 (later rounds differ only in file names, the cluster id and the topic):")
    w("")
    w("```sh")
    w("# what scripts/bench/bench-compare.sh ran, with "
      + " ".join(f"{k}={v}" for k, v in env.items() if k in ("ROUNDS", "DURATION", "WARMUP", "LATENCY_RATE")))
    seen = set()
    created = False
    for label, rnd, cmd in cmds:
        if rnd not in ("0", "1"):
            continue
        key = (label, cmd.split(" --topic ")[0] if label.startswith("ceiling") else cmd)
        if key in seen:
            continue
        seen.add(key)
        w(f"# {label}")
        if label.startswith("artemis"):
            acc = meta.get(f"artemis_acceptor_{label}", "")
            mwin = re.search(r"stompConsumerWindowSize=(-?\d+)", acc)
            if not created:
                created = True
                w("# artemis: scripts/services/artemis.sh reset once; the first start below runs")
                if meta.get("artemis_create_args"):
                    w(f"#   artemis create {meta['artemis_create_args']} target/artemis/instance")
            if label in AMQP:
                w("scripts/services/artemis.sh clean && ARTEMIS_AMQP=1 scripts/services/artemis.sh start")
                if acc:
                    w(f"#   AMQP acceptor: {acc}")
            else:
                w(
                    "scripts/services/artemis.sh clean && "
                    + (f"ARTEMIS_STOMP_CONSUMER_WINDOW={mwin.group(1)} " if mwin else "")
                    + "scripts/services/artemis.sh start"
                )
                if acc:
                    w(f"#   STOMP acceptor: {acc}")
        w(cmd)
    w("```")
    w("")
    w(
        "Reproduce: `scripts/bench/bench-compare.sh` (env: `ROUNDS`, `DURATION`, `WARMUP`, `PRODUCERS`, "
        "`CONSUMERS`, `SIZE`, `WINDOW`, `RATE`, `LATENCY_RATE`, `CEILING_SECONDS`, `CONFIGS`; "
        "see the script's header)."
    )
    w("")

    text = "\n".join(L).rstrip() + "\n"
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {a.out}", file=sys.stderr)
    for k, v in verdicts.items():
        print(f"goal {k}: {'met' if v else 'NOT met'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
