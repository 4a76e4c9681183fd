"""Helpers and fixtures of the operations tests: `halyard node` processes
with their HTTP endpoint (`--http`), read with a real HTTP client (urllib)
and a real OpenMetrics parser (prometheus_client), never with regexes.

- `HttpNode`: a `harness.node.NodeProcess` that also serves HTTP on a free
  port. `start()` returns once the node is live and answers STOMP;
  `start_backup()` once it is a backup (log "backup announced") answering
  HTTP. `get`/`post`/`delete` return an `HttpAnswer`; `metrics()` a parsed
  `Metrics`; `api(path)` the JSON of a 200 answer; `queues()` /api/queues
  by queue name.
- `Metrics`: the families of one scrape; `value(sample, **labels)` is the one
  sample with those labels (an assertion error naming what there is if none).
- `wait_until(fn, what)`: polls `fn` until it returns something truthy, with a
  deadline; never a blind sleep.
- The test modules import these helpers as `ops_helpers` (this module under
  a name of its own: a plain `import conftest` could find tests/conftest.py).
- Fixtures: `nodes` (a factory of `HttpNode`s, all checked for panics and
  stopped at teardown), `pair` (a factory of a live/backup pair on the local
  journal: both share --lock-dir and --data-dir) and `clients` (stomp.py
  `harness.clients.Client`s, disconnected at teardown).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.clients import Client
from harness.node import close_all, HALYARD_BIN, NodeProcess, child_env, free_port, wait_accepts
from harness.waiting import waiter

# The test modules say `from ops_helpers import ...` (see the docstring).
sys.modules["ops_helpers"] = sys.modules[__name__]

# Bound for a poll; a healthy run needs a fraction of it.
WAIT_S = 30.0
# One HTTP request.
HTTP_TIMEOUT_S = 5.0
OPENMETRICS = "application/openmetrics-text"


# -- HTTP --------------------------------------------------------------------


@dataclass
class HttpAnswer:
    method: str
    url: str
    status: int
    content_type: str
    body: str

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"{self}: not JSON ({e})") from None

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.content_type!r} {self.body[:500]!r}"


def http(method: str, url: str, timeout: float = HTTP_TIMEOUT_S) -> HttpAnswer:
    """One request; an HTTP error status is an answer, not an exception (a
    refused connection raises OSError)."""
    req = urllib.request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return HttpAnswer(method, url, r.status, r.headers.get("Content-Type", ""), r.read().decode())
    except urllib.error.HTTPError as e:
        return HttpAnswer(method, url, e.code, e.headers.get("Content-Type", ""), e.read().decode())


wait_until = waiter(WAIT_S)


# -- metrics -----------------------------------------------------------------


@dataclass
class Histogram:
    buckets: list[tuple[float, float]]  # (le, cumulative count), by le
    count: float
    sum: float


@dataclass
class Metrics:
    """One scrape, parsed by prometheus_client's OpenMetrics parser."""

    text: str
    families: dict = field(init=False)

    def __post_init__(self):
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}

    def family(self, name: str):
        assert name in self.families, f"no metric family {name!r}; families: {sorted(self.families)}"
        return self.families[name]

    def samples(self, sample: str, **labels) -> list:
        """Every sample named `sample` whose labels include `labels`."""
        want = {k: str(v) for k, v in labels.items()}
        return [
            s
            for f in self.families.values()
            for s in f.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in want.items())
        ]

    def value(self, sample: str, **labels) -> float:
        found = self.samples(sample, **labels)
        assert len(found) == 1, (
            f"want one sample {sample}{labels}, found {len(found)}; "
            f"there are: {[(s.labels, s.value) for s in self.samples(sample)]}"
        )
        return found[0].value

    def get(self, sample: str, default=None, **labels):
        found = self.samples(sample, **labels)
        return found[0].value if len(found) == 1 else default

    def label_values(self, sample: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples(sample) if label in s.labels}

    def histogram(self, name: str) -> Histogram:
        f = self.family(name)
        assert f.type == "histogram", f"{name} is a {f.type}, not a histogram"
        buckets = sorted(
            (float(s.labels["le"]), s.value) for s in f.samples if s.name == f"{name}_bucket"
        )
        return Histogram(buckets, self.value(f"{name}_count"), self.value(f"{name}_sum"))

    def ha_state(self) -> str:
        """The one state whose `halyard_ha_state` series is 1."""
        on = [s.labels["state"] for s in self.samples("halyard_ha_state") if s.value == 1]
        assert len(on) == 1, f"want exactly one halyard_ha_state at 1: {[(s.labels, s.value) for s in self.samples('halyard_ha_state')]}"
        return on[0]


def check_histogram(h: Histogram, name: str) -> None:
    """Buckets ascending by le, cumulative counts never decreasing, the last
    one +Inf and equal to the count."""
    assert h.buckets, f"{name}: no buckets"
    les = [le for le, _ in h.buckets]
    counts = [c for _, c in h.buckets]
    assert les == sorted(les) and len(set(les)) == len(les), f"{name}: bucket bounds {les}"
    assert all(a <= b for a, b in zip(counts, counts[1:])), f"{name}: bucket counts not monotonic: {h.buckets}"
    assert math.isinf(les[-1]), f"{name}: no +Inf bucket: {h.buckets}"
    assert counts[-1] == h.count, f"{name}: +Inf bucket {counts[-1]} != count {h.count}"
    assert h.sum >= 0, f"{name}: negative sum {h.sum}"


# -- nodes -------------------------------------------------------------------


class HttpNode(NodeProcess):
    """A node on the local journal serving HTTP on its own free port; the
    data dir may be shared (a live/backup pair)."""

    ready_timeout_s = 20.0

    def __init__(self, base_dir: Path, name: str, extra_args=None, data_dir: Path | None = None):
        super().__init__(base_dir, name, extra_args)
        if data_dir is not None:
            self.data_dir = data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()

    def node_args(self) -> list[str]:
        return ["--node-id", self.name, "--http", f"127.0.0.1:{self.http_port}"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # -- lifecycle -----------------------------------------------------------

    def _wait_http(self) -> None:
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with code {self.proc.returncode}\n{self.log_tail()}")
            return self.get("/health/live").status == 200

        wait_until(up, f"{self.name} to answer /health/live", self.ready_timeout_s)

    def start(self) -> "HttpNode":
        """Starts the node and waits until it is live: answers STOMP and HTTP."""
        super().start()
        wait_accepts(self, self.ready_timeout_s, poll=0.05, probe_timeout=2.0)
        self._wait_http()
        return self

    def start_backup(self, since: int | None = None) -> "HttpNode":
        """Starts the node and waits until it announced itself a backup and
        answers HTTP."""
        pos = self.log_pos() if since is None else since
        super().start()
        self.wait_log("backup announced", self.ready_timeout_s, since=pos)
        self._wait_http()
        return self

    # -- HTTP ----------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str) -> HttpAnswer:
        return http("GET", self.url(path))

    def post(self, path: str) -> HttpAnswer:
        return http("POST", self.url(path))

    def delete(self, path: str) -> HttpAnswer:
        return http("DELETE", self.url(path))

    def api(self, path: str, method: str = "GET"):
        """The JSON of a 200 answer."""
        a = http(method, self.url(path))
        assert a.status == 200, f"{a}\n{self.log_tail(20)}"
        assert a.content_type.startswith("application/json"), str(a)
        return a.json()

    def metrics(self) -> Metrics:
        a = self.get("/metrics")
        assert a.status == 200, str(a)
        assert a.content_type.startswith(OPENMETRICS), str(a)
        return Metrics(a.body)

    def queues(self) -> dict[str, dict]:
        """/api/queues by queue name."""
        return {q["name"]: q for q in self.api("/api/queues")["queues"]}

    def ready(self) -> HttpAnswer:
        return self.get("/health/ready")

    def wait_live(self, timeout: float = WAIT_S) -> HttpAnswer:
        """Waits for /health/ready to say 200; returns that answer."""

        def live():
            a = self.ready()
            return a if a.status == 200 else None

        return wait_until(live, f"{self.name} /health/ready 200", timeout)


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """`halyard ARGS...` (the binary under test), output captured as text."""
    return subprocess.run(
        [str(HALYARD_BIN), *args], capture_output=True, text=True, timeout=timeout, env=child_env()
    )


# -- fixtures ----------------------------------------------------------------


@pytest.fixture
def nodes(tmp_path):
    """Factory: nodes(name, *extra_args, data_dir=None) -> an HttpNode not yet
    started. Every one must not have panicked, and is stopped, at teardown."""
    made: list[HttpNode] = []

    def make(name: str, *extra: str, data_dir: Path | None = None) -> HttpNode:
        n = HttpNode(tmp_path, name, list(extra), data_dir=data_dir)
        made.append(n)
        return n

    yield make
    close_all(made)


@dataclass
class Pair:
    primary: HttpNode
    backup: HttpNode


@pytest.fixture
def pair(nodes, tmp_path):
    """Factory: pair(*extra_args) -> a started live/backup pair on the local
    journal: both nodes share --lock-dir and --data-dir, the second runs with
    --role backup, each names the other with --peer-http; returns once the
    primary is live and the backup announced."""

    def make(*extra: str) -> Pair:
        shared = tmp_path / "pair-shared"
        shared.mkdir(parents=True, exist_ok=True)
        common = ["--lock-dir", str(shared), *extra]
        primary = nodes("primary", "--role", "primary", *common, data_dir=shared)
        backup = nodes("backup", "--role", "backup", *common, data_dir=shared)
        # Each knows the other's HTTP endpoint, for /api/cluster.
        primary.extra_args += ["--peer-http", backup.base_url]
        backup.extra_args += ["--peer-http", primary.base_url]
        primary.start()
        backup.start_backup()
        return Pair(primary, backup)

    return make


@pytest.fixture
def clients():
    """Factory of stomp.py `Client`s of a node, all disconnected at teardown."""
    made: list[Client] = []

    def make(node, client_id: str | None = None) -> Client:
        c = Client(node, client_id)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close_quietly()


def send_persistent(client: Client, dest: str, n: int, prefix: str = "m", **headers) -> list[str]:
    """Sends `n` persistent messages, each with a receipt; returns the bodies."""
    bodies = [f"{prefix}-{i:04d}" for i in range(n)]
    for i, body in enumerate(bodies):
        client.send(dest, body, persistent="true", seq=str(i), **headers)
    return bodies
