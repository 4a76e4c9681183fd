"""The Kafka side of the harness: the test broker (scripts/services/kafka.sh),
`halyard node` on Kafka, clusters, the fault proxy, and the log lines of the
HA transitions.

- `ensure_kafka()`: `scripts/services/kafka.sh start` (idempotent; never
  stopped here), returns the bootstrap address.
- `HaNode`: one `halyard node` with its journal and live lock in Kafka.
  `start()` does not wait for STOMP readiness (a backup never binds its
  port); tests wait for log lines with `wait_log()`. `kill9()` / `sigterm()`
  return the wall-clock time of the signal, so failover times can be measured
  against log timestamps.
- `Cluster`: nodes sharing one fresh `--cluster-id`; `start_live()` waits for
  `accepting clients (STOMP, AMQP)` and a CONNECTED, `start_backup()` for
  `backup announced`.
- `FaultProxy`: `halyard proxy` on the PROXIED listener's advertised address.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

from harness.node import (
    HALYARD_BIN,
    REPO_ROOT,
    NodeProcess,
    child_env,
    close_all,
    free_port,
    stop_process,
    wait_accepts,
)

# The kafka.sh of another checkout (started there, e.g. with its own
# KAFKA_PORT) gives the suite a broker and a proxy port of its own.
KAFKA_SH = Path(os.environ.get("KAFKA_SH", REPO_ROOT / "scripts" / "services" / "kafka.sh"))

SESSION_TIMEOUT_MS = 3000
# Bound for waits on a node (log lines, accepting clients).
WAIT_S = 30.0

# Log lines of the HA transitions.
BACKUP_ANNOUNCED = r"backup announced"
LOCK_OBTAINED = r"live lock obtained"
BACKUP_LIVE = r"backup is now live \(epoch (\d+)\)"
NODE_LIVE = r"node is live \(epoch (\d+)\)"
ANY_LIVE = r"(?:backup is now live|node is live) \(epoch (\d+)\)"
ACCEPTING = r"accepting clients \(STOMP, AMQP\)"
FENCED = r"fenced by (?:epoch (\d+)|a newer live \(our epoch \d+\)), stepping down"
LOCK_LOST = r"live lock lost \((.*)\), stepping down"
JOURNAL_FAILED = r"journal append failed \((.*)\), stepping down"
FAILING_BACK = r"failing back to primary"
NOW_BACKUP = r"now a backup, waiting for the live lock"
JOURNAL_READ = (
    r"Kafka journal fenced and read to its end.*records=(\d+) megabytes=\"?([\d.]+)\"? "
    r"seconds=\"?([\d.]+)\"? records_per_sec=\"?([\d.]+)\"?"
)


def kafka_sh(*args: str, timeout: float = 240.0) -> str:
    r = subprocess.run(["bash", str(KAFKA_SH), *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{KAFKA_SH} {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout.strip()


def ensure_kafka() -> str:
    """Starts Kafka if needed (idempotent) and returns the bootstrap address."""
    kafka_sh("start")
    return kafka_sh("bootstrap").splitlines()[-1]


def new_cluster_id(prefix: str = "kt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def peer_pair_args() -> tuple[list[str], list[str]]:
    """Fenced preemption for a pair: each node's --peer-listen, and the
    other's as its --peer."""
    pa, pb = free_port(), free_port()
    return (
        ["--peer-listen", f"127.0.0.1:{pa}", "--peer", f"127.0.0.1:{pb}"],
        ["--peer-listen", f"127.0.0.1:{pb}", "--peer", f"127.0.0.1:{pa}"],
    )


# ---------------------------------------------------------------------------
# Nodes


class HaNode(NodeProcess):
    """One `halyard node` on Kafka, with a log file that survives restarts."""

    stop_timeout_s = 15.0

    def __init__(
        self,
        base_dir: Path,
        name: str,
        cluster_id: str,
        bootstrap: str,
        role: str,
        allow_failback: bool = False,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        extra_args: list[str] | None = None,
    ):
        super().__init__(base_dir, name, extra_args)
        self.cluster_id = cluster_id
        self.bootstrap = bootstrap
        self.role = role
        self.allow_failback = allow_failback
        self.session_timeout_ms = session_timeout_ms

    def node_args(self) -> list[str]:
        args = [
            "--kafka-bootstrap",
            self.bootstrap,
            "--cluster-id",
            self.cluster_id,
            "--node-id",
            self.name,
            "--role",
            self.role,
            "--kafka-session-timeout-ms",
            str(self.session_timeout_ms),
        ]
        if self.allow_failback:
            args.append("--allow-failback")
        return args


class Cluster:
    """Nodes of one Halyard cluster (one fresh cluster id)."""

    def __init__(self, base_dir: Path, bootstrap: str, cluster_id: str | None = None):
        self.base_dir = base_dir
        self.bootstrap = bootstrap
        self.cluster_id = cluster_id or new_cluster_id()
        self.nodes: list[HaNode] = []

    def node(self, name: str, role: str, bootstrap: str | None = None, **kw) -> HaNode:
        n = HaNode(self.base_dir, name, self.cluster_id, bootstrap or self.bootstrap, role, **kw)
        self.nodes.append(n)
        return n

    def start_live(self, n: HaNode, timeout: float = WAIT_S) -> HaNode:
        pos = n.log_pos()
        n.start()
        n.wait_log(ACCEPTING, timeout, since=pos)
        wait_accepts(n)
        return n

    def start_backup(self, n: HaNode, timeout: float = WAIT_S) -> HaNode:
        pos = n.log_pos()
        n.start()
        n.wait_log(BACKUP_ANNOUNCED, timeout, since=pos)
        return n

    def addrs(self) -> list[tuple[str, int]]:
        return [n.addr for n in self.nodes]

    def close(self) -> None:
        close_all(self.nodes)


# ---------------------------------------------------------------------------
# Fault proxy


class FaultProxy:
    """`halyard proxy` in front of Kafka's PROXIED listener."""

    def __init__(self, log_path: Path):
        self.listen = kafka_sh("proxied-bootstrap").splitlines()[-1]
        self.upstream = kafka_sh("proxied-upstream").splitlines()[-1]
        self.control_port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "FaultProxy":
        host, port = self.listen.rsplit(":", 1)
        # The advertised address is fixed, so only one proxy can run on this
        # machine at a time: wait (a while) for another user to finish.
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, int(port)))
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy address {self.listen} stays in use by another process")
            time.sleep(0.5)
        with open(self.log_path, "ab") as f:
            self.proc = subprocess.Popen(
                [
                    str(HALYARD_BIN),
                    "proxy",
                    "--listen",
                    self.listen,
                    "--upstream",
                    self.upstream,
                    "--control",
                    f"127.0.0.1:{self.control_port}",
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(),
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.status()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"halyard proxy did not start:\n{self.log_path.read_text()[-2000:]}")
                time.sleep(0.05)

    def _req(self, method: str, path: str) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=5)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read().decode()
            assert r.status == 200, f"proxy {method} {path}: {r.status} {body}"
            return json.loads(body)
        finally:
            c.close()

    def cut(self, mode: str = "blackhole") -> dict:
        return self._req("POST", f"/cut?mode={mode}")

    def heal(self) -> dict:
        return self._req("POST", "/heal")

    def status(self) -> dict:
        return self._req("GET", "/status")

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
