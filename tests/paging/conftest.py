"""Helpers and fixtures of the paging tests: a `halyard node` on the local
journal with `--max-memory-bytes`, a backlog of a million persistent 1 KiB
messages produced and consumed in bulk (`harness.bulk_stomp`), and the
node's resident memory sampled all along.

- Settings (environment): `PAGING_MESSAGES` (default 1,000,000),
  `PAGING_MAX_MEMORY` (`--max-memory-bytes`, default 268435456),
  `PAGING_RSS_BOUND_MIB` (default 640), `PAGING_STALL_S` (no RECEIPT or
  MESSAGE for this long is a stall, default 30), `PAGING_ACK` (`client`,
  the default, or `client-individual`), `PAGING_KEEP_DATA=1` (keep the data
  dirs; by default they are deleted at teardown, a million messages take
  over a GiB).
- `PagingNode`: a `harness.node.NodeProcess` with `--http`,
  `--max-memory-bytes` and `--max-disk-usage 100` (only a full disk of this
  machine may stop producers besides memory); `start()` spawns it,
  `ready()` waits until it answers a STOMP CONNECT and returns the seconds
  since the spawn; `metric(name, **labels)` reads /metrics.
- `paging_nodes` (per test): factory of PagingNodes; at teardown each is
  checked for a panic and stopped (`harness.node.close_all`), then its data
  dir deleted. It first checks that the disk has room for the backlog.
- `RssSampler`: a thread reading `/proc/PID/status` (VmRSS and VmHWM) of
  the node's current process every 0.2 s, across restarts (one peak per
  pid); `check()` raises once the peak passes the bound (producer and
  consumer loops call it, so a run over the bound stops there).
- `Progress`: the loops' `check`: the sampler's, plus a progress line
  every 10 s (count, rate, RSS); the rates go into the figures.
- `Deliveries`: what a consumer got, per sequence number: bodies checked
  byte for byte, duplicates, order of first deliveries.
- `figures` (per test): a dict of measured figures; printed as they come,
  added to the test's report as a "paging figures" section and repeated in
  the terminal summary, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.bulk_stomp import SeqBodies
from harness.logs import log
from harness.node import NodeProcess, close_all, free_port, wait_accepts

# The test modules import these helpers as `paging_helpers`.
sys.modules["paging_helpers"] = sys.modules[__name__]

MiB = 1 << 20


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").replace("_", "").strip()
    return int(v) if v else default


MESSAGES = _env_int("PAGING_MESSAGES", 1_000_000)
MAX_MEMORY = _env_int("PAGING_MAX_MEMORY", 268_435_456)
RSS_BOUND = _env_int("PAGING_RSS_BOUND_MIB", 640) * MiB
STALL_S = float(_env_int("PAGING_STALL_S", 30))
ACK_MODE = os.environ.get("PAGING_ACK", "client")
KEEP_DATA = os.environ.get("PAGING_KEEP_DATA") == "1"
# Where the SIGKILL test kills the node: this fraction of the backlog
# receipted (0.5: half; 0.999 measures a restart over nearly all of it).
KILL_AT = float(os.environ.get("PAGING_KILL_AT", "0.5"))
if not 0.0 < KILL_AT < 1.0:
    raise ValueError(f"PAGING_KILL_AT={KILL_AT}: must be between 0 and 1 (a fraction of PAGING_MESSAGES)")
BODY_BYTES = 1024
QUEUE = "paging"
DEST = f"/queue/{QUEUE}"
WINDOW = 1000  # SENDs in flight without a RECEIPT
PREFETCH = 2000  # activemq.prefetchSize of the consumer
# Bound of a produce or consume phase: at least 2,000 messages a second on
# average (a healthy run does 10 times that), plus two minutes.
PHASE_S = 120.0 + MESSAGES / 2000
# Bound of a restart until the node answers a STOMP CONNECT (it loads the
# journal first): at least 5,000 journal messages a second, plus a minute.
RESTART_S = 60.0 + MESSAGES / 5000
HTTP_TIMEOUT_S = 5.0
SAMPLE_S = 0.2

BODIES = SeqBodies(BODY_BYTES)


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


# -- the node -------------------------------------------------------------------


class PagingNode(NodeProcess):
    """A node on the local journal with --http and --max-memory-bytes (see
    the module docstring)."""

    def __init__(self, base_dir: Path, name: str, max_memory: int = MAX_MEMORY, extra_args: list[str] | None = None):
        super().__init__(base_dir, name, extra_args)
        self.max_memory = max_memory
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.spawned_at = 0.0

    def node_args(self) -> list[str]:
        return ["--http", f"127.0.0.1:{self.http_port}", "--max-memory-bytes", str(self.max_memory),
                "--max-disk-usage", "100"]

    def start(self) -> "PagingNode":
        self.spawned_at = time.time()
        super().start()
        return self

    def ready(self, timeout: float) -> float:
        """Waits until the node answers a STOMP CONNECT; seconds since the spawn."""
        t = wait_accepts(self, timeout, poll=0.05, probe_timeout=2.0)
        return t - self.spawned_at

    def samples(self) -> list:
        """Every sample of /metrics (prometheus_client's OpenMetrics parser)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
            text = r.read().decode()
        return [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of /metrics (None if absent)."""
        for s in self.samples():
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None

    def metrics_named(self, part: str) -> str:
        """The samples whose name contains `part` ("paged": whatever paging
        exports), as "name{labels}=value ..." for the figures."""
        got = [f"{s.name}{s.labels or ''}={s.value:g}" for s in self.samples() if part in s.name]
        return " ".join(got) if got else "(none)"

    def queue_depth(self) -> float | None:
        return self.metric("halyard_queue_messages", queue=QUEUE)

    def memory_line(self) -> str:
        """The node's last line about the memory or disk limit, for a failure message."""
        hits = self.find(r"messages hold \d+ bytes|disk usage .* --max-disk-usage")
        return hits[-1].line.strip() if hits else "(no memory- or disk-limit line in the node's log)"


class PagingNodes:
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.made: list[PagingNode] = []

    def __call__(self, name: str, **kw) -> PagingNode:
        n = PagingNode(self.base_dir, name, **kw)
        self.made.append(n)
        return n

    def close(self) -> None:
        try:
            close_all(self.made)
        finally:
            if not KEEP_DATA:
                for n in self.made:
                    shutil.rmtree(n.data_dir, ignore_errors=True)


def journal_bytes_needed(messages: int) -> int:
    """Room for the backlog in the journal (body, headers, framing), twice
    over (segments are compacted, not rewritten in place), plus 1 GiB."""
    return messages * (BODY_BYTES + 200) * 2 + 1024 * MiB


@pytest.fixture
def paging_nodes(tmp_path):
    """Factory: paging_nodes(name, max_memory=, extra_args=) -> a PagingNode
    not yet started; checked and stopped at teardown, its data dir deleted."""
    need = journal_bytes_needed(MESSAGES)
    free = shutil.disk_usage(tmp_path).free
    if free < need:
        pytest.fail(f"{tmp_path} has {free / 2**30:.1f} GiB free; a backlog of {MESSAGES} messages of "
                    f"{BODY_BYTES} bytes needs about {need / 2**30:.1f} GiB (set PAGING_MESSAGES lower, "
                    "or TMPDIR to a bigger disk)", pytrace=False)
    f = PagingNodes(tmp_path)
    yield f
    f.close()


# -- resident memory ------------------------------------------------------------


def read_status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of `pid` in bytes, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = hwm = None
    for line in text.split(b"\n"):
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    if rss is None:  # a zombie has no memory lines
        return None
    return rss, hwm or rss


class RssSampler:
    """Samples the node's RSS every SAMPLE_S in a thread, whatever process
    the node runs as now (restarts included)."""

    def __init__(self, node: PagingNode, bound: int = RSS_BOUND):
        self.node = node
        self.bound = bound
        self.lock = threading.Lock()
        self.peak_by_pid: dict[int, int] = {}  # max(VmRSS sampled, VmHWM) per process
        self.sampled_peak_by_pid: dict[int, int] = {}  # VmRSS sampled only
        self.samples = 0
        self.last: tuple[float, int, int] | None = None  # (time, pid, rss)
        self.over: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> int | None:
        proc = self.node.proc
        if proc is None:
            return None
        got = read_status(proc.pid)
        if got is None:
            return None
        rss, hwm = got
        with self.lock:
            self.samples += 1
            self.last = (time.time(), proc.pid, rss)
            self.sampled_peak_by_pid[proc.pid] = max(self.sampled_peak_by_pid.get(proc.pid, 0), rss)
            peak = max(self.peak_by_pid.get(proc.pid, 0), rss, hwm)
            self.peak_by_pid[proc.pid] = peak
            if peak >= self.bound and self.over is None:
                self.over = (f"the node's resident memory reached {mib(peak)} (VmRSS {mib(rss)}, VmHWM {mib(hwm)}), "
                             f"the bound is {mib(self.bound)}")
        return rss

    def current(self) -> int:
        """RSS now (a fresh sample)."""
        rss = self.sample()
        assert rss is not None, f"{self.node.name} is not running\n{self.node.log_tail()}"
        return rss

    def peak(self) -> int:
        with self.lock:
            return max(self.peak_by_pid.values(), default=0)

    def sampled_peak(self) -> int:
        with self.lock:
            return max(self.sampled_peak_by_pid.values(), default=0)

    def peaks(self) -> list[int]:
        """Peak per process, in start order."""
        with self.lock:
            return list(self.peak_by_pid.values())

    def check(self) -> None:
        """Raises once the peak passed the bound (called from the client loops)."""
        if self.over is not None:
            raise AssertionError(self.over)


class Progress:
    """The `check` of a producer or consumer loop: `sampler.check()`, and
    every `every_s` a progress line (count, rate over the interval, RSS);
    `rates` keeps the rate of each interval."""

    def __init__(self, label: str, count, sampler: RssSampler, every_s: float = 10.0):
        self.label = label
        self.count = count
        self.sampler = sampler
        self.every_s = every_s
        self.t = time.monotonic()
        self.n = count()
        self.rates: list[int] = []

    def __call__(self) -> None:
        self.sampler.check()
        now = time.monotonic()
        if now - self.t >= self.every_s:
            n = self.count()
            rate = (n - self.n) / (now - self.t)
            self.rates.append(round(rate))
            last = self.sampler.last
            rss = mib(last[2]) if last else "?"
            log(f"{self.label}: {n:,} ({rate:,.0f}/s over the last {now - self.t:.0f} s), RSS {rss}")
            self.t, self.n = now, n


# -- deliveries -----------------------------------------------------------------


class Deliveries:
    """What a consumer got, by sequence number (0 .. n-1)."""

    def __init__(self, n: int, receipted: bytearray, bodies: SeqBodies = BODIES):
        self.n = n
        self.receipted = receipted
        self.bodies = bodies
        self.counts = bytearray(n)
        self.total = 0
        self.distinct = 0
        self.receipted_seen = 0
        self.duplicates = 0
        self.duplicate_seqs: list[int] = []  # the first 20
        self.bad: list[str] = []  # the first 20 bodies that are not what was sent
        self.bad_count = 0
        self.out_of_order = 0
        self.order_examples: list[tuple[int, int]] = []  # (previous, this), the first 20
        self.last = -1

    def add(self, body: bytes) -> None:
        self.total += 1
        try:
            seq = SeqBodies.seq_of(body)
        except ValueError as e:
            self._bad(str(e))
            return
        if seq >= self.n:
            self._bad(f"sequence number {seq} was never sent")
            return
        if body != self.bodies.body(seq):
            self._bad(f"body of {seq} differs from what was sent: {body[:60]!r}... ({len(body)} bytes)")
        c = self.counts[seq]
        if c:
            self.duplicates += 1
            if len(self.duplicate_seqs) < 20:
                self.duplicate_seqs.append(seq)
            self.counts[seq] = min(255, c + 1)
            return
        self.counts[seq] = 1
        self.distinct += 1
        if self.receipted[seq]:
            self.receipted_seen += 1
        if seq < self.last:
            self.out_of_order += 1
            if len(self.order_examples) < 20:
                self.order_examples.append((self.last, seq))
        else:
            self.last = seq

    def _bad(self, what: str) -> None:
        self.bad_count += 1
        if len(self.bad) < 20:
            self.bad.append(what)

    def missing_receipted(self) -> list[int]:
        return [i for i in range(self.n) if self.receipted[i] and not self.counts[i]]

    def unreceipted_delivered(self) -> list[int]:
        return [i for i in range(self.n) if self.counts[i] and not self.receipted[i]]

    def repeated(self, receipted: bool) -> list[int]:
        """Numbers delivered more than once, receipted ones or the others."""
        return [i for i in range(self.n) if self.counts[i] > 1 and bool(self.receipted[i]) == receipted]


# -- figures --------------------------------------------------------------------

_FIGURES_KEY = pytest.StashKey[dict]()
_ALL_FIGURES: list[tuple[str, dict]] = []


@pytest.fixture
def figures(request) -> dict:
    """Measured figures of this test (name -> value); see the module docstring."""
    d: dict = {}
    request.node.stash[_FIGURES_KEY] = d
    _ALL_FIGURES.append((request.node.nodeid, d))
    return d


def note(figs: dict, name: str, value, text: str | None = None) -> None:
    """Records a figure and prints it."""
    figs[name] = value
    log(f"{name}: {text if text is not None else value}")


def format_figures(d: dict) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    width = max((len(k) for k in d), default=0)
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in d.items())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        d = item.stash.get(_FIGURES_KEY, None)
        if d:
            rep.sections.append(("paging figures", format_figures(d)))
            for k, v in d.items():
                item.user_properties.append((k, v))


def pytest_terminal_summary(terminalreporter):
    shown = [(nodeid, d) for nodeid, d in _ALL_FIGURES if d]
    if not shown:
        return
    terminalreporter.section("paging figures")
    for nodeid, d in shown:
        terminalreporter.write_line(nodeid)
        for line in format_figures(d).splitlines():
            terminalreporter.write_line("    " + line)
