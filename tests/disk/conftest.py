"""Helpers and fixtures of the disk-limit tests: `halyard node` with
`--max-disk-usage` and `--address-full-policy` on a small disk of its own,
with stomp.py and python-qpid-proton clients.

- The small disk: `DiskNode` is a `harness.node.NodeProcess` whose command
  is wrapped in `unshare -Urm sh -c 'mount -t tmpfs -o size=N tmpfs DIR &&
  exec "$0" "$@"'`: the node runs in a mount namespace of its own, on a
  size-limited tmpfs that goes away with the process. `unshare` and `sh`
  exec, so the Popen pid is the node's pid, and the test reaches the tmpfs
  from outside through `/proc/<pid>/root/<DIR>` (`DiskNode.mnt`): it fills
  it with filler files (`fill_to`, `fill_leaving`, `remove_fillers`) and
  reads its usage with statvfs, counted as the node (and `df`) counts it
  (`usage`). `start()` returns once the node answers a STOMP CONNECT and
  its /metrics reports the size of the tmpfs (so the disk watch is reading
  the right filesystem). `data_snapshot()` copies the data dir out of the
  tmpfs (for a restart on the copy: the tmpfs dies with the node).
- `tmpfs_ok` (session): unshare + a tmpfs mount must work here; if not, every
  test that needs it FAILS with the reason (never a skip).
- `disk_nodes` (per test): factory of DiskNodes (and `plain()`: a LocalNode
  on an ordinary data dir); at teardown each is checked for a panic and
  stopped.
- `http_nodes` (per test, no tmpfs): factory of HttpNodes, LocalNodes with
  `--http` and /metrics (`HttpMetrics`, shared with DiskNode), for the
  memory limit; checked and stopped the same way.
- STOMP: `stomp_clients` (factory of `harness.clients.Client`, closed at
  teardown), `OrderedReceipts` (the order receipts arrive in),
  `send_nowait`, `assert_unanswered`, `wait_error`.
- AMQP: tests/amqp's `EngineClient` (proton's engine, pumped by the test);
  `amqp_clients` (factory, closed at teardown).
- Metrics: `Metrics` (prometheus_client's OpenMetrics parser), `wait_until`.
- Log lines: `blocked_line`, `refused_line`, `resume_line` (regexes of the
  node's log lines for a given limit).

The test modules import these helpers as `disk_helpers`.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.clients import Client
from harness.failover import _hard_close
from harness.node import close_all, LocalNode, NodeProcess, free_port, wait_accepts
from harness.waiting import waiter

# tests/amqp's proton helpers are plain modules of that folder, not a package.
AMQP_TESTS = Path(__file__).resolve().parents[1] / "amqp"
if str(AMQP_TESTS) not in sys.path:
    sys.path.insert(0, str(AMQP_TESTS))

from amqp_engine import EngineClient  # noqa: E402

sys.modules["disk_helpers"] = sys.modules[__name__]

MiB = 1 << 20
KiB = 1 << 10
# Bound for a wait on a node; a healthy run needs a fraction of it.
WAIT_S = 15.0
# The node reads its disk every second: a change is seen within ~1 s.
DISK_SEEN_S = 10.0
HTTP_TIMEOUT_S = 5.0


# -- log lines ------------------------------------------------------------------


def _pct(limit: str) -> str:
    """`--max-disk-usage` as the node prints it: "50" -> "50.0%"."""
    return re.escape(f"{float(limit):.1f}%")


def blocked_line(limit: str) -> str:
    return rf"disk usage (\d+\.\d)% is above --max-disk-usage {_pct(limit)}: producers blocked"


def refused_line(limit: str) -> str:
    return rf"disk usage (\d+\.\d)% is above --max-disk-usage {_pct(limit)}: sends refused \(address-full-policy fail\)"


def resume_line(limit: str) -> str:
    return rf"disk usage (\d+\.\d)% is below --max-disk-usage {_pct(limit)} again: producers resume"


# -- HTTP and metrics -------------------------------------------------------------


class Metrics:
    """One scrape, parsed by prometheus_client's OpenMetrics parser."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str) -> float:
        found = [s for f in self.families.values() for s in f.samples if s.name == sample]
        assert len(found) == 1, f"want one sample {sample}, found {[(s.labels, s.value) for s in found]}"
        return found[0].value

    def has(self, sample: str) -> bool:
        return any(s.name == sample for f in self.families.values() for s in f.samples)


wait_until = waiter(WAIT_S)


# -- the small disk ---------------------------------------------------------------


def unshare_problem(probe_dir: Path) -> str | None:
    """Why a tmpfs cannot be mounted in a user + mount namespace here (None:
    it can)."""
    if shutil.which("unshare") is None:
        return "the `unshare` command (util-linux) is not installed"
    script = f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(probe_dir))} && exec cat /proc/self/mountinfo"
    try:
        r = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`unshare -Urm sh -c 'mount -t tmpfs ...'` did not finish within 20 s"
    if r.returncode != 0:
        return f"`unshare -Urm sh -c 'mount -t tmpfs ...'` exited {r.returncode}: {r.stderr.strip()!r}"
    if not any(f" {probe_dir} " in line and " tmpfs " in line for line in r.stdout.splitlines()):
        return f"after `unshare -Urm` + mount, no tmpfs at {probe_dir} in /proc/self/mountinfo"
    return None


@pytest.fixture(scope="session")
def tmpfs_ok(tmp_path_factory) -> None:
    """The tests need a small disk of their own: a tmpfs mounted in an
    unprivileged user + mount namespace. Without it they fail, loudly."""
    problem = unshare_problem(tmp_path_factory.mktemp("unshare-probe"))
    if problem is not None:
        pytest.fail(
            "the disk-limit tests run each node on a size-limited tmpfs in a mount namespace of its own "
            f"(`unshare -Urm`), which does not work here: {problem}. They need util-linux's unshare and "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0) or root.",
            pytrace=False,
        )


def write_filler(path: Path, size: int) -> None:
    """A file of `size` bytes that really takes space: posix_fallocate where
    the filesystem supports it (tmpfs does), else zeros written."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        if size <= 0:
            return
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        chunk = b"\0" * MiB
        left = size
        while left > 0:
            left -= os.write(fd, chunk[: min(left, MiB)])
    finally:
        os.close(fd)


class HttpMetrics:
    """/metrics of a node started with `--http 127.0.0.1:<http_port>` (a
    mixin of `NodeProcess` subclasses)."""

    http_port: int

    def _exited(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with code {self.proc.returncode}\n{self.log_tail()}")

    def metrics(self) -> Metrics:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
            assert r.status == 200, f"GET {url} -> {r.status}"
            return Metrics(r.read().decode())

    def metric(self, sample: str) -> float:
        return self.metrics().value(sample)

    def wait_metric(self, sample: str, pred, what: str, timeout: float = DISK_SEEN_S) -> float:
        def ok():
            self._exited()
            v = self.metric(sample)
            return (True, v) if pred(v) else None

        return wait_until(ok, f"{sample} {what}", timeout)[1]


class DiskNode(HttpMetrics, NodeProcess):
    """A node on the local journal, on a tmpfs of `size_mib` MiB of its own
    (see the module docstring), with --http and the limit flags given."""

    ready_timeout_s = 20.0

    def __init__(self, base_dir: Path, name: str, size_mib: int, max_disk_usage: str | None = None,
                 policy: str | None = None, extra_args: list[str] | None = None):
        super().__init__(base_dir, name, extra_args)
        # The base class made <name>-data; the data dir is on the tmpfs.
        self.data_dir.rmdir()
        self.size_mib = size_mib
        self.max_disk_usage = max_disk_usage
        self.policy = policy
        # The mount point, as the node sees it (an empty directory outside).
        self.mount_dir = base_dir / f"{name}-tmpfs"
        self.mount_dir.mkdir()
        self.data_dir = self.mount_dir / "data"
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.fillers: list[Path] = []

    def node_args(self) -> list[str]:
        args = ["--http", f"127.0.0.1:{self.http_port}"]
        if self.max_disk_usage is not None:
            args += ["--max-disk-usage", self.max_disk_usage]
        if self.policy is not None:
            args += ["--address-full-policy", self.policy]
        return args

    def cmd(self) -> list[str]:
        mount = (f"mount -t tmpfs -o size={self.size_mib}m tmpfs {shlex.quote(str(self.mount_dir))}"
                 ' && exec "$0" "$@"')
        return ["unshare", "-Urm", "sh", "-c", mount, *super().cmd()]

    def start(self) -> "DiskNode":
        super().start()
        wait_accepts(self, self.ready_timeout_s, poll=0.05, probe_timeout=2.0)
        want = self.size_mib * MiB

        def sized():
            self._exited()
            m = self.metrics()
            return m.has("halyard_disk_size_bytes") and m.value("halyard_disk_size_bytes")

        got = wait_until(sized, f"{self.name}'s /metrics to report its disk", self.ready_timeout_s)
        assert got == want, (f"{self.name} reports a disk of {got:.0f} bytes, want its tmpfs's {want}: "
                             f"it is not reading the disk of {self.data_dir}\n{self.log_tail()}")
        return self

    # -- the tmpfs, from outside -------------------------------------------

    @property
    def mnt(self) -> Path:
        """The tmpfs as this process reaches it (the node's mount namespace)."""
        assert self.alive(), f"{self.name} is not running: its tmpfs is gone\n{self.log_tail()}"
        return Path(f"/proc/{self.proc.pid}/root") / self.mount_dir.relative_to("/")

    def usage(self) -> tuple[int, int]:
        """(used, total) bytes as the node counts them: used against used +
        available (`df`)."""
        s = os.statvfs(self.mnt)
        used = (s.f_blocks - s.f_bfree) * s.f_frsize
        return used, used + s.f_bavail * s.f_frsize

    def free_bytes(self) -> int:
        used, total = self.usage()
        return total - used

    def _filler(self, size: int) -> Path:
        path = self.mnt / f"filler-{len(self.fillers)}"
        write_filler(path, size)
        self.fillers.append(path)
        return path

    def fill_to(self, ratio: float) -> float:
        """Adds a filler file so the tmpfs is `ratio` used; returns the ratio."""
        used, total = self.usage()
        self._filler(int(total * ratio) - used)
        used, total = self.usage()
        assert used / total >= ratio - 0.01, f"filled to {used / total:.3f}, wanted {ratio}"
        return used / total

    def fill_leaving(self, free: int) -> int:
        """Adds a filler file so about `free` bytes stay free; returns them."""
        self._filler(self.free_bytes() - free)
        return self.free_bytes()

    def remove_fillers(self) -> None:
        for path in self.fillers:
            path.unlink()
        self.fillers.clear()

    def journal_bytes(self) -> int:
        """The size of the journal's files on the tmpfs."""
        journal = self.mnt / self.data_dir.relative_to(self.mount_dir) / "journal"
        return sum(p.stat().st_size for p in journal.iterdir() if p.is_file())

    def data_snapshot(self, dest: Path) -> Path:
        """Copies the data dir out of the tmpfs into `dest` (a new folder)."""
        shutil.copytree(self.mnt / self.data_dir.relative_to(self.mount_dir), dest)
        return dest


class HttpNode(HttpMetrics, LocalNode):
    """A LocalNode on an ordinary data dir (no tmpfs) with `--http`;
    `start()` returns once it accepts STOMP and its /metrics answers (for the
    limits that need no small disk: `--max-memory-bytes`)."""

    def __init__(self, base_dir: Path, name: str, extra_args: list[str] | None = None):
        super().__init__(base_dir, name, extra_args)
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()

    def node_args(self) -> list[str]:
        return ["--http", f"127.0.0.1:{self.http_port}"]

    def start(self) -> "HttpNode":
        super().start()

        def scraped():
            self._exited()
            return self.metrics().has("halyard_producers_blocked")

        wait_until(scraped, f"{self.name}'s /metrics", self.ready_timeout_s)
        return self


class NodeFactory:
    """Makes DiskNodes (and plain LocalNodes); `close()` checks each for a
    panic and stops it."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.made: list[NodeProcess] = []

    def __call__(self, name: str, size_mib: int, **kw) -> DiskNode:
        n = DiskNode(self.base_dir, name, size_mib, **kw)
        self.made.append(n)
        return n

    def plain(self, name: str, data_dir: Path, extra_args: list[str] | None = None) -> LocalNode:
        """A LocalNode (no tmpfs) on `data_dir`, not yet started."""
        n = LocalNode(self.base_dir, name, extra_args)
        n.data_dir.rmdir()
        n.data_dir = data_dir
        self.made.append(n)
        return n

    def http(self, name: str, extra_args: list[str] | None = None) -> HttpNode:
        """An HttpNode (no tmpfs) on a data dir of its own, not yet started."""
        n = HttpNode(self.base_dir, name, extra_args)
        self.made.append(n)
        return n

    def close(self) -> None:
        close_all(self.made)


@pytest.fixture
def disk_nodes(tmp_path, tmpfs_ok):
    """Factory: disk_nodes(name, size_mib, max_disk_usage=, policy=,
    extra_args=) -> a DiskNode not yet started."""
    f = NodeFactory(tmp_path)
    yield f
    f.close()


@pytest.fixture
def http_nodes(tmp_path):
    """Factory (no tmpfs, no unshare): http_nodes(name, extra_args=) -> an
    HttpNode not yet started; checked for a panic and stopped at teardown."""
    f = NodeFactory(tmp_path)
    yield f.http
    f.close()


# -- STOMP ------------------------------------------------------------------------


class OrderedReceipts:
    """Records the receipt ids of a client in the order they arrive."""

    def __init__(self, client: Client):
        self.ids: list[str] = []
        self.lock = threading.Lock()
        client.rec.on_receipt_hook = self._add

    def _add(self, rid: str) -> None:
        with self.lock:
            self.ids.append(rid)

    def order(self) -> list[str]:
        with self.lock:
            return list(self.ids)


@pytest.fixture
def stomp_clients():
    """Factory of connected stomp.py clients, closed at teardown."""
    made: list[Client] = []

    def make(node) -> Client:
        c = Client(node)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.rec.errors or c.rec.disconnected:
            _hard_close(c.conn)
        else:
            c.close_quietly()


def send_nowait(client: Client, dest: str, body: str) -> str:
    """A SEND asking for a receipt, not waited for; returns the receipt id."""
    rid = client.rid("s")
    client.conn.send(dest, body, receipt=rid)
    return rid


def assert_unanswered(client: Client, rid: str, until: float) -> None:
    """Neither the RECEIPT `rid` nor an ERROR (nor the close) reaches
    `client` before time.monotonic() reaches `until`."""
    rec = client.rec
    with rec.cv:
        answered = rec.cv.wait_for(lambda: rid in rec.receipts or bool(rec.errors) or rec.disconnected,
                                   max(0.0, until - time.monotonic()))
    assert not answered, (
        f"a held SEND was answered: receipt={rid in rec.receipts}, "
        f"errors={[e.headers for e in rec.errors]}, disconnected={rec.disconnected}"
    )


def wait_error(client: Client, timeout: float = WAIT_S) -> dict:
    """The headers of the one ERROR frame `client` gets; the server must then
    close the connection."""
    rec = client.rec
    rec.wait(lambda: bool(rec.errors) and rec.disconnected, timeout, "an ERROR and the close")
    assert len(rec.errors) == 1, f"more than one ERROR: {[e.headers for e in rec.errors]}"
    return rec.errors[0].headers


def bodies(msgs) -> list[str]:
    return [m.body for m in msgs]


# -- AMQP -------------------------------------------------------------------------


@pytest.fixture
def amqp_clients():
    """Factory: amqp_clients(node) -> an opened anonymous EngineClient,
    closed at teardown."""
    made: list[EngineClient] = []

    def make(node) -> EngineClient:
        c = EngineClient(node.addr[0], node.addr[1], None, None)
        made.append(c)
        c.opened()
        return c

    yield make
    for c in made:
        c.close()
