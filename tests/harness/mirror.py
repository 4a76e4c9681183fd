"""Two mirrored `halyard node` brokers (issue 13) for the tests: two
processes, each on its own local journal (`--data-dir`), mirroring to each
other with `--mirror-sync`, and a lock coordinator (a file lock in a shared
folder, or ZooKeeper) deciding which one accepts clients, as in Artemis's
mirroring + lock-coordinator example (seed 002). Used by tests/mirror (STOMP
failover clients) and tests/amqp/test_jms_mirror.py (Qpid JMS); the
fixtures stay in each suite's conftest.py.

- `MirrorNode`: a `harness.node.NodeProcess` with `--node-id`, `--http`,
  `--mirror-listen` (its own port), `--mirror` (the peer's mirror port),
  `--mirror-sync`, `--lock-coordinator`, `--lock-id` and
  `--check-period-ms CHECK_PERIOD_MS`. `start()` only spawns it. STOMP and
  AMQP share its client port.
- `Pair`: server0 and server1, mirroring to each other under one lock;
  `Pair.file_lock(base_dir)` makes one on `file:<base_dir>/locks`.
- `start_active(node)`: spawns and waits until the node answers a STOMP
  CONNECT (it took the lock); a node that exits first fails the test with
  its own error line.
- `wait_passive(passive, active)`: THE WAIT FOR "THE OTHER BROKER IS A
  MIRRORING PASSIVE", the one place to adjust; see its docstring and the
  constants PASSIVE_LINE, IN_SYNC_LINE and PASSIVE_HOLD_S.
- `start_pair(pair, figs)`: server0 active, then server1 passive and in the
  in-sync set; returns a started `AcceptMonitor`. `kill_and_time_failover`
  (SIGKILL of server0, the failover time into the figures) and
  `check_monitor` (never both accepting; who accepted in turn).
- `MirrorProxy`: `halyard proxy` (docs/proxy.md) on one direction of the
  mirror link, cut with `cut("blackhole" | "reset")`, healed with `heal()`.
- `port_state(node)`: "accepting" (answers CONNECTED), "refused" (nothing
  bound: the lock is not held) or what else happened.
- `queue_depth(node)`: `halyard_queue_messages{queue="exampleQueue"}` from
  /metrics (None if the series is absent); `wait_queue_depth`.
- `compare_queues(figs, a, b)`: `halyard mirror compare` on the two data
  folders; see its docstring.
- `note(figs, name, value)`: records a measured figure and prints it;
  `format_figures(figs)` for a report section.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.failover import AcceptMonitor
from harness.logs import log
from harness.node import HALYARD_BIN, NodeProcess, child_env, free_port, stop_process
from harness.stomp_wire import stomp_probe

# -- settings -------------------------------------------------------------------

CHECK_PERIOD_MS = 200
LOCK_ID = "mirror-test"
QUEUE = "exampleQueue"
DEST = f"/queue/{QUEUE}"

# Bound for a node to answer its first STOMP CONNECT after the spawn (an
# empty journal: a healthy start takes well under a second).
START_WAIT_S = 30.0
# Bound for the passive's log line and the active's in-sync line.
PASSIVE_WAIT_S = 30.0
# Once passive, the node must keep its client port closed for this long:
# two check periods (two chances to take the lock wrongly) plus a margin.
PASSIVE_HOLD_S = 2 * CHECK_PERIOD_MS / 1000 + 1.0

# The passive's log line that says it runs as a mirroring passive
# (bin/src/mirror_config.rs: "mirroring on: this broker is passive until it
# holds the lock"). Not just "passive" or "mirror": the start line holds the
# data folder's path, which holds the test's name. The harness's own `==== ...`
# lines never count. MIRROR_PASSIVE_LINE overrides it.
PASSIVE_LINE = os.environ.get("MIRROR_PASSIVE_LINE", r"mirroring on: this broker is passive")
# The active's line once the passive has caught up: from the lock
# coordinator's log (halyard_core::coordinator, docs/mirroring.md,
# "peer b joined the in-sync set of epoch 7"). Without it a SIGKILL of the
# active must not fail over (the other broker is not in the in-sync set),
# so the tests wait for it before killing. MIRROR_IN_SYNC_LINE overrides
# it; set it empty to skip that wait (then only PASSIVE_HOLD_S is waited).
IN_SYNC_LINE = os.environ.get("MIRROR_IN_SYNC_LINE", r"peer \S+ joined the in-sync set of epoch \d+")
# The line of a broker taking the active role (docs/mirroring.md). Only
# recorded in the figures (its timestamp), never waited for.
ACTIVE_LINE = r"active with epoch (\d+), in-sync set \{([^}]*)\}: opening the client listener"
# The refusal of a broker given any mirroring flag until the link exists.
NOT_AVAILABLE = "mirroring is not available yet (issue 13)"

# From SIGKILL of the active to the other accepting clients. File lock: the
# kernel drops the flock with the process, the other takes it at its next
# check period (the goal: check period + 1 s). ZooKeeper: the
# killed broker's ephemeral znode lives until its session times out
# (ZkLockConfig::session_timeout, 10 s by default), then a check period.
# Kafka: the killed broker's group member keeps partition 0 of the lock
# group until its session times out (6 s), then a rebalance and a check
# period.
FAILOVER_WAIT_S = {"file": 30.0, "zookeeper": 60.0, "kafka": 60.0}
FAILOVER_GOAL_S = CHECK_PERIOD_MS / 1000 + 1.0

HTTP_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 1.0

# -- the nodes ------------------------------------------------------------------

_USED_PORTS: set[int] = set()


def fresh_port() -> int:
    """A free port not handed out before in this run (each node takes four)."""
    while True:
        p = free_port()
        if p not in _USED_PORTS:
            _USED_PORTS.add(p)
            return p


class MirrorNode(NodeProcess):
    """One broker of a mirrored pair (see the module docstring)."""

    def __init__(self, base_dir: Path, name: str, lock_spec: str, lock_id: str,
                 extra_args: list[str] | None = None):
        super().__init__(base_dir, name, extra_args)
        _USED_PORTS.add(self.port)
        self.http_port = fresh_port()
        self.mirror_port = fresh_port()
        self.lock_spec = lock_spec
        self.lock_id = lock_id
        self.peer: MirrorNode | None = None
        # Where `--mirror` points: the peer's mirror listener, unless a test
        # routes the link through a fault proxy (`MirrorProxy.route`).
        self.mirror_target: str | None = None
        self.spawned_at = 0.0

    @property
    def mirror_addr(self) -> str:
        return f"127.0.0.1:{self.mirror_port}"

    def node_args(self) -> list[str]:
        assert self.peer is not None, f"{self.name} has no peer to mirror to"
        return [
            "--node-id", self.name,
            "--http", f"127.0.0.1:{self.http_port}",
            "--mirror-listen", self.mirror_addr,
            "--mirror", self.mirror_target or self.peer.mirror_addr,
            "--mirror-sync",
            "--lock-coordinator", self.lock_spec,
            "--lock-id", self.lock_id,
            "--check-period-ms", str(CHECK_PERIOD_MS),
        ]

    def start(self) -> "MirrorNode":
        self.spawned_at = time.time()
        super().start()
        return self

    def node_lines(self, since: int = 0) -> list[str]:
        """The node's own log lines after `since` (not the harness's `====` lines)."""
        return [l for l in self.log_lines(since) if not l.startswith("==== ")]

    def exit_reason(self) -> str:
        """The node's last error line, for a failure message."""
        lines = [l.strip() for l in self.current_log().splitlines()[1:] if l.strip() and not l.startswith("==== ")]
        for l in reversed(lines):
            if l.startswith("halyard:") or "ERROR" in l or "error" in l:
                return l
        return lines[-1] if lines else "(the node logged nothing)"

    def samples(self) -> list:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
            text = r.read().decode()
        return [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def metric(self, name: str, **labels: str) -> float | None:
        for s in self.samples():
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None


class Pair:
    """server0 and server1, mirroring to each other under one lock."""

    def __init__(self, base_dir: Path, kind: str, lock_spec: str, lock_id: str):
        self.kind = kind
        self.lock_spec = lock_spec
        self.lock_id = lock_id
        self.server0 = MirrorNode(base_dir, "server0", lock_spec, lock_id)
        self.server1 = MirrorNode(base_dir, "server1", lock_spec, lock_id)
        self.server0.peer = self.server1
        self.server1.peer = self.server0

    @classmethod
    def file_lock(cls, base_dir: Path, lock_id: str = LOCK_ID) -> "Pair":
        """A pair sharing a file lock in `<base_dir>/locks`."""
        lock_dir = base_dir / "locks"
        lock_dir.mkdir(exist_ok=True)
        return cls(base_dir, "file", f"file:{lock_dir}", lock_id)

    @property
    def nodes(self) -> list[MirrorNode]:
        return [self.server0, self.server1]

    def addrs(self) -> list[tuple[str, int]]:
        """The failover list, as seed 002's `failover:(...:61616,...:61617)`."""
        return [n.addr for n in self.nodes]

    def describe(self) -> str:
        return "; ".join(f"{n.name}: client :{n.port}, http :{n.http_port}, mirror :{n.mirror_port}"
                         for n in self.nodes) + f"; lock {self.lock_spec} id {self.lock_id}"


# -- the fault proxy on a mirror link -------------------------------------------


class MirrorProxy:
    """`halyard proxy` (docs/proxy.md) between one broker's mirror connector
    and the other's `--mirror-listen`: `route(src, dst)` makes src's
    `--mirror` point at the proxy, which forwards to dst's mirror listener
    (the active's connector dials its `--mirror` addresses, so a cut of both
    directions' proxies is a partition of the mirror link, whichever broker
    is active). Control over HTTP: `cut("blackhole" | "reset")`, `heal()`,
    `status()`. Its log is `<tmp>/<name>.log`; `close()` stops it."""

    def __init__(self, base_dir: Path, name: str, upstream: str):
        self.name = name
        self.listen_port = fresh_port()
        self.control_port = fresh_port()
        self.upstream = upstream
        self.log_path = base_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def route(cls, base_dir: Path, src: "MirrorNode", dst: "MirrorNode") -> "MirrorProxy":
        p = cls(base_dir, f"proxy-{src.name}-to-{dst.name}", dst.mirror_addr)
        src.mirror_target = p.listen
        return p

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def start(self, timeout: float = 10.0) -> "MirrorProxy":
        cmd = [str(HALYARD_BIN), "proxy", "--listen", self.listen, "--upstream", self.upstream,
               "--control", f"127.0.0.1:{self.control_port}"]
        with open(self.log_path, "ab") as f:
            f.write(f"==== start: {' '.join(cmd)}\n".encode())
            f.flush()
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=child_env())
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{self.name} (halyard proxy) did not start within {timeout:.0f} s:\n"
                                f"{self.log_path.read_text(errors='replace')[-2000:]}", pytrace=False)
                time.sleep(0.05)

    def _req(self, method: str, path: str) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=HTTP_TIMEOUT_S)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read().decode()
            assert r.status == 200, f"{self.name} {method} {path}: {r.status} {body}"
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
        if self.proc is not None and self.proc.poll() is None:
            with open(self.log_path, "ab") as f:
                f.write(f"==== teardown: {stop_process(self.proc)}\n".encode())


# -- waits ----------------------------------------------------------------------


def _fail_if_exited(node: MirrorNode, what: str) -> None:
    rc = node.proc.poll() if node.proc is not None else None
    if rc is not None:
        # The log tails of both nodes follow in the report (harness.report).
        pytest.fail(f"{node.name} exited with code {rc} {what}: {node.exit_reason()}", pytrace=False)


def wait_accepting(node: MirrorNode, timeout: float, what: str) -> float:
    """Waits until `node` answers a STOMP CONNECT; returns time.time() of the
    first CONNECTED. A node that exits first fails with its error line."""
    deadline = time.monotonic() + timeout
    last = "nothing tried"
    while time.monotonic() < deadline:
        ok, last = stomp_probe(node.addr, timeout=PROBE_TIMEOUT_S)
        if ok:
            return time.time()
        _fail_if_exited(node, f"before it accepted STOMP clients ({what})")
        time.sleep(0.01)
    pytest.fail(f"{node.name} did not accept STOMP clients within {timeout:.0f} s ({what}; last probe: {last})\n"
                f"{node.log_tail(40)}", pytrace=False)


def start_active(node: MirrorNode, figs: dict) -> float:
    """Spawns `node` and waits until it accepts clients (it holds the lock);
    returns the seconds from the spawn."""
    node.start()
    t = wait_accepting(node, START_WAIT_S, "the first broker should take the lock")
    secs = t - node.spawned_at
    note(figs, f"{node.name}_start_to_accept_s", round(secs, 3))
    return secs


def port_state(node: MirrorNode) -> str:
    """"accepting", "refused" (nothing bound on the client port) or what
    else happened (a port that is bound but does not answer CONNECTED)."""
    try:
        with socket.create_connection(node.addr, timeout=PROBE_TIMEOUT_S):
            pass
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"connect failed: {e!r}"
    ok, why = stomp_probe(node.addr, timeout=PROBE_TIMEOUT_S)
    return "accepting" if ok else f"bound but not accepting ({why})"


def wait_passive(passive: MirrorNode, active: MirrorNode, figs: dict, since_passive: int = 0,
                 since_active: int = 0) -> None:
    """THE WAIT FOR A MIRRORING PASSIVE BROKER; adjust here (or with the
    environment variables) once the implementation's log lines are known.

    1. `passive` logs a line matching PASSIVE_LINE (MIRROR_PASSIVE_LINE;
       default: `mirroring on: this broker is passive`) after `since_passive`,
       within PASSIVE_WAIT_S;
    2. unless IN_SYNC_LINE is empty: `active` logs a line matching it
       (MIRROR_IN_SYNC_LINE; default `peer X joined the in-sync set of
       epoch N`) after `since_active`, within PASSIVE_WAIT_S: the passive
       has caught up and the active's receipts wait for it;
    3. for PASSIVE_HOLD_S (two check periods and a second) the passive is
       alive and its client port refuses connections (the lock is not
       held, so the listener is not bound), and `active` still accepts.
    A node that exits meanwhile fails with its own error line."""
    t0 = time.time()
    rx = re.compile(PASSIVE_LINE)
    deadline = time.monotonic() + PASSIVE_WAIT_S
    while True:
        _fail_if_exited(passive, "while it should become a mirroring passive")
        hits = [l for l in passive.node_lines(since_passive) if rx.search(l)]
        if hits:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{passive.name}: no log line matching {PASSIVE_LINE!r} (MIRROR_PASSIVE_LINE) within "
                        f"{PASSIVE_WAIT_S:.0f} s of waiting for it to be a mirroring passive\n{passive.log_tail(40)}",
                        pytrace=False)
        time.sleep(0.02)
    note(figs, f"{passive.name}_passive_line", hits[0].strip())
    note(figs, f"{passive.name}_passive_after_s", round(time.time() - t0, 3))

    if IN_SYNC_LINE:
        rx = re.compile(IN_SYNC_LINE)
        while True:
            _fail_if_exited(active, "while the other broker caught up")
            _fail_if_exited(passive, "while it caught up")
            hits = [l for l in active.node_lines(since_active) if rx.search(l)]
            if hits:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{active.name}: no log line matching {IN_SYNC_LINE!r} (MIRROR_IN_SYNC_LINE) within "
                            f"{PASSIVE_WAIT_S:.0f} s: {passive.name} never joined the in-sync set, so a SIGKILL of "
                            f"{active.name} could not fail over\n{active.log_tail(30)}\n{passive.log_tail(30)}",
                            pytrace=False)
            time.sleep(0.02)
        note(figs, f"{passive.name}_in_sync_line", hits[0].strip())
        note(figs, f"{passive.name}_in_sync_after_s", round(time.time() - t0, 3))

    hold_end = time.monotonic() + PASSIVE_HOLD_S
    probes = 0
    while time.monotonic() < hold_end:
        _fail_if_exited(passive, "while passive")
        st = port_state(passive)
        assert st == "refused", (f"{passive.name} should be passive (client port closed) but its client port "
                                 f"{passive.port} is {st}\n{passive.log_tail(30)}")
        probes += 1
        time.sleep(0.05)
    st = port_state(active)
    assert st == "accepting", f"{active.name} should be active but its client port {active.port} is {st}"
    note(figs, f"{passive.name}_passive_hold", f"client port refused on {probes} probes over {PASSIVE_HOLD_S:.1f} s")
    note(figs, f"{passive.name}_health_ready", health_ready(passive))


def health_ready(node: MirrorNode) -> str:
    """`GET /health/ready` as "STATUS body" (only recorded in the figures:
    docs/operations.md says 503 with the reason while not taking clients)."""
    url = f"http://127.0.0.1:{node.http_port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
            return f"{r.status} {r.read().decode(errors='replace').strip()}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode(errors='replace').strip()}"
    except OSError as e:
        return f"no answer: {e!r}"


def wait_queue_depth(node: MirrorNode, want: int, timeout: float = 15.0) -> float | None:
    """Waits until `queue_depth(node) == want`; returns the last depth read."""
    deadline = time.monotonic() + timeout
    depth = None
    while time.monotonic() < deadline:
        try:
            depth = queue_depth(node)
        except OSError:
            depth = None
        if depth == want:
            return depth
        time.sleep(0.1)
    return depth


def queue_depth(node: MirrorNode) -> float | None:
    return node.metric("halyard_queue_messages", queue=QUEUE)


# -- the compare command (issue 13) ----------------------------------------------


COMPARE_WAIT_S = 15.0


def compare_queues(figs: dict, a: MirrorNode, b: MirrorNode) -> None:
    """`halyard mirror compare A B` on the two brokers' data folders (it reads
    their journals without opening them, so they keep running): every queue
    must hold the same messages (count and a checksum over ids, sizes and
    bodies). Retried for a few seconds while the passive may still apply
    the last groups; the command's table goes into the figures."""
    cmd = [str(HALYARD_BIN), "mirror", "compare", str(a.data_dir), str(b.data_dir)]
    deadline = time.monotonic() + COMPARE_WAIT_S
    while True:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    note(figs, "queues_compared", " | ".join(out.stdout.strip().splitlines()[-3:]))
    assert out.returncode == 0, (f"halyard mirror compare {a.name} {b.name} exited {out.returncode}:\n"
                                 f"{out.stdout}{out.stderr}")


# -- the seed-002 flow's steps ---------------------------------------------------


def start_pair(pair, figures) -> AcceptMonitor:
    """server0 first (it takes the lock and accepts clients), then server1
    (a mirroring passive in the in-sync set); returns a started monitor of
    which ports accept."""
    s0, s1 = pair.server0, pair.server1
    note(figures, "lock", f"{pair.lock_spec} (lock id {pair.lock_id}), check period {CHECK_PERIOD_MS} ms")
    start_active(s0, figures)
    pos0 = s0.log_pos()
    s1.start()
    wait_passive(s1, s0, figures, since_active=pos0)
    assert port_state(s0) == "accepting"
    monitor = AcceptMonitor(pair.nodes, period_s=0.05)
    monitor.start()
    return monitor


def kill_and_time_failover(pair, figures, what: str, after_kill=None) -> float:
    """SIGKILL of server0 (then `after_kill()`, at once); waits until server1
    accepts. Returns the time of the kill and records the failover time
    (kill to a CONNECTED from server1) and, if logged, server1's `active
    with epoch N` line."""
    s0, s1 = pair.server0, pair.server1
    pos1 = s1.log_pos()
    t_kill = s0.kill9()
    if after_kill is not None:
        after_kill()
    log(f"SIGKILL {s0.name} ({what})")
    t_acc = wait_accepting(s1, FAILOVER_WAIT_S[pair.kind], f"after SIGKILL of {s0.name}")
    failover = t_acc - t_kill
    note(figures, "failover_s", round(failover, 3),
         f"{failover:.3f} s from SIGKILL of {s0.name} to {s1.name} answering CONNECTED "
         f"(goal with the file lock: under check period + 1 s = {FAILOVER_GOAL_S:.1f} s)")
    note(figures, "failover_within_goal", failover < FAILOVER_GOAL_S)
    hits = s1.find(ACTIVE_LINE, since=pos1)
    if hits and hits[0].ts is not None:
        note(figures, "server1_active_line_after_kill_s", round(hits[0].ts - t_kill, 3), hits[0].line.strip())
    else:
        note(figures, "server1_active_line_after_kill_s", "no `active with epoch N ...` line")
    assert port_state(s0) == "refused", f"{s0.name} was SIGKILLed but its port is {port_state(s0)}"
    assert port_state(s1) == "accepting", f"{s1.name} should accept clients: {port_state(s1)}"
    return t_kill


def check_monitor(monitor: AcceptMonitor, figures, want: list[str]) -> None:
    monitor.stop()
    worst, bad = monitor.max_concurrent()
    note(figures, "accept_probes", len(monitor.samples))
    note(figures, "accepted_by", " -> ".join(monitor.accepted_by()))
    assert worst <= 1, f"both brokers accepted clients at once: {bad[:5]}"
    assert monitor.accepted_by() == want, f"accepting brokers in turn: {monitor.accepted_by()}, want {want}"


# -- figures --------------------------------------------------------------------


def note(figs: dict, name: str, value, text: str | None = None) -> None:
    """Records a figure and prints it."""
    figs[name] = value
    log(f"{name}: {text if text is not None else value}")


def format_figures(d: dict) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.3f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    width = max((len(k) for k in d), default=0)
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in d.items())
