"""`halyard node` processes for tests.

`NodeProcess` is one node on a free 127.0.0.1 port with its own data dir and
a log file that survives restarts; `start()` spawns it (binary from
$HALYARD_BIN, default target/release/halyard) and does not wait. Then:
`kill9()` (SIGKILL), `sigterm()`, `wait_exit()`, `terminate()` (SIGTERM and
exit 0 within the node's stop timeout, asserted), `restart()` on the same data
dir and port, and at teardown `close()`, which stops a node still running with
the one retry policy of `stop_process`. The log helpers read the node's log:
`wait_log(regex, since=pos)`, `find`, `count`, `current_log`, `log_tail`,
`assert_no_panic`; `close_all(nodes)` is the suites' teardown (stop them all,
then fail naming any that panicked).

`LocalNode` is a node on the local journal whose `start()` waits until it
answers a STOMP CONNECT. The Kafka suite's node is `harness.kafka.HaNode`.

Every node not yet closed is in `ACTIVE`; `harness.report` attaches their log
tails to a failing test's report.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness.logs import LogHit, parse_log_ts, strip_ansi
from harness.stomp_wire import stomp_probe

REPO_ROOT = Path(__file__).resolve().parents[2]
HALYARD_BIN = Path(os.environ.get("HALYARD_BIN", REPO_ROOT / "target" / "release" / "halyard"))

# The one stop policy for a process a test leaves running: SIGTERM, up to
# TEARDOWN_WAIT_S for it to exit, again up to TEARDOWN_SIGTERMS times, then
# SIGKILL. Repeated rather than one long wait: a node can lose a SIGTERM
# (tests/integration/test_crash_recovery.py::test_sigterm_under_load_is_not_lost),
# and a node that got one drains, so a later one only cuts the drain short
# ("second stop signal: exiting without draining").
TEARDOWN_SIGTERMS = 5
TEARDOWN_WAIT_S = 3.0

# Bound for log waits; a healthy run needs a fraction.
LOG_WAIT_S = 30.0

# Nodes not yet closed; their log tails go into the report of a failing test.
ACTIVE: list["NodeProcess"] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary() -> Path:
    if not HALYARD_BIN.is_file():
        raise RuntimeError(
            f"halyard binary not found at {HALYARD_BIN}; run `cargo build --release -p halyard` "
            "or set HALYARD_BIN"
        )
    return HALYARD_BIN


def child_env() -> dict[str, str]:
    """The environment of a halyard process: ours without HALYARD_* (the
    command line says everything), plain log lines, backtraces."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALYARD_")}
    env["RUST_BACKTRACE"] = "1"
    env["NO_COLOR"] = "1"
    return env


def stop_process(proc: subprocess.Popen) -> str:
    """Stops `proc` with the one teardown policy (see TEARDOWN_SIGTERMS);
    returns what happened, for the log."""
    if proc.poll() is not None:
        return f"already exited with code {proc.returncode}"
    for attempt in range(1, TEARDOWN_SIGTERMS + 1):
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=TEARDOWN_WAIT_S)
            return f"SIGTERM x{attempt}, exit code {rc}"
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()
    return f"no exit after {TEARDOWN_SIGTERMS} SIGTERMs, SIGKILLed"


class NodeProcess:
    """One `halyard node` process with a data dir and a log that outlive restarts."""

    # How long kill9() waits for the process to go, and terminate()'s default.
    stop_timeout_s = 10.0

    def __init__(self, base_dir: Path, name: str = "node", extra_args: list[str] | None = None):
        require_binary()
        self.name = name
        self.data_dir = base_dir / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = base_dir / f"{name}.log"
        self.port = free_port()
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        ACTIVE.append(self)

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def node_args(self) -> list[str]:
        """Arguments after --listen and --data-dir (a subclass adds its own)."""
        return []

    def cmd(self) -> list[str]:
        return [
            str(HALYARD_BIN),
            "node",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            *self.node_args(),
            *self.extra_args,
        ]

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "NodeProcess":
        """Spawns the node; does not wait for anything."""
        assert not self.alive(), f"{self.name} already running"
        self.starts += 1
        cmd = self.cmd()
        with open(self.log_path, "ab") as f:
            f.write(f"==== start #{self.starts}: {' '.join(cmd)}\n".encode())
            f.flush()
            self.proc = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env()
            )
        return self

    def restart(self) -> "NodeProcess":
        """Starts again on the same data dir and port (after kill9/terminate)."""
        assert not self.alive(), f"restart() needs a stopped node ({self.name} is running)"
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> float:
        """Crashes the node: SIGKILL, no chance to flush anything. Returns
        time.time() just before the signal."""
        assert self.alive(), f"{self.name} is not running\n{self.log_tail()}"
        t = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=self.stop_timeout_s)
        self._mark("SIGKILL")
        return t

    def sigterm(self) -> float:
        """Sends SIGTERM (nothing, if the process has exited meanwhile: a
        test that resends one must see the exit code, not an error); returns
        time.time() just before the signal."""
        assert self.proc is not None, f"{self.name} was never started"
        t = time.time()
        self._mark("sending SIGTERM")
        self.proc.send_signal(signal.SIGTERM)
        return t

    def wait_exit(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if the node still runs after `timeout`
        (default: the node's stop timeout)."""
        try:
            rc = self.proc.wait(timeout=self.stop_timeout_s if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            return None
        self._mark(f"exited with code {rc}")
        return rc

    def terminate(self, timeout: float | None = None) -> None:
        """SIGTERM; the node must drain and exit 0 within `timeout` (default:
        the node's stop timeout)."""
        timeout = self.stop_timeout_s if timeout is None else timeout
        assert self.alive(), f"{self.name} is not running\n{self.log_tail()}"
        self.sigterm()
        rc = self.wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            self._mark("no exit after SIGTERM, SIGKILLed")
            raise AssertionError(f"{self.name} did not exit within {timeout} s of SIGTERM\n{self.log_tail()}")
        assert rc == 0, f"{self.name} exited with code {rc} after SIGTERM\n{self.log_tail()}"

    def close(self) -> None:
        """Teardown: stops the node if it still runs (not an assertion, unlike
        terminate()), and forgets it."""
        if self.alive():
            self._mark(f"teardown: {stop_process(self.proc)}")
        if self in ACTIVE:
            ACTIVE.remove(self)

    def _mark(self, what: str) -> None:
        with open(self.log_path, "ab") as f:
            f.write(f"==== test harness {time.time():.3f}: {what}\n".encode())

    # -- logs ----------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return strip_ansi(self.log_path.read_bytes().decode("utf-8", "replace"))
        except FileNotFoundError:
            return ""

    def current_log(self) -> str:
        """The log of the current (or last) start only."""
        return self.log_text().rsplit("==== start #", 1)[-1]

    def log_pos(self) -> int:
        """A position in the log; pass it as `since` to look only after it."""
        return len(self.log_text())

    def log_lines(self, since: int = 0) -> list[str]:
        return self.log_text()[since:].splitlines()

    def find(self, pattern: str, since: int = 0) -> list[LogHit]:
        rx = re.compile(pattern)
        now = time.time()
        return [LogHit(l, parse_log_ts(l), now) for l in self.log_lines(since) if rx.search(l)]

    def count(self, pattern: str, since: int = 0) -> int:
        return len(self.find(pattern, since))

    def wait_log(self, pattern: str, timeout: float = LOG_WAIT_S, since: int = 0, poll: float = 0.01) -> LogHit:
        """Waits for a log line matching the regex `pattern` after `since`.
        Fails if the node exits meanwhile, unless the harness stopped it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()[since:]
            for line in text.splitlines():
                if rx.search(line):
                    return LogHit(line, parse_log_ts(line), time.time())
            if self.proc is not None and self.proc.poll() is not None and "==== test harness" not in text:
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}) while waiting for {pattern!r}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no log line matching {pattern!r} within {timeout:.0f} s\n{self.log_tail()}"
                )
            time.sleep(poll)

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.name} log tail ({self.log_path}) ---\n" + "\n".join(tail)

    def assert_no_panic(self) -> None:
        assert "panicked" not in self.log_text(), f"{self.name} panicked\n{self.log_tail(200)}"


def close_all(nodes) -> None:
    """The suites' teardown: stops every node (each `close()` runs whatever
    happens), then fails naming each one that panicked."""
    errors = []
    for n in nodes:
        try:
            n.assert_no_panic()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            n.close()
    assert not errors, "\n".join(errors)


def wait_accepts(node: NodeProcess, timeout: float = LOG_WAIT_S, poll: float = 0.01, probe_timeout: float = 1.0) -> float:
    """Waits until `node` answers a STOMP CONNECT with CONNECTED; returns
    time.time() of the first success. Fails if the node exits first."""
    deadline = time.monotonic() + timeout
    last = "nothing tried"
    while time.monotonic() < deadline:
        ok, last = stomp_probe(node.addr, timeout=probe_timeout)
        if ok:
            return time.time()
        rc = node.proc.poll() if node.proc is not None else None
        if rc is not None:
            raise AssertionError(f"{node.name} exited with code {rc} before it accepted STOMP\n{node.log_tail()}")
        time.sleep(poll)
    raise AssertionError(
        f"{node.name} did not accept STOMP within {timeout:.0f} s (last: {last})\n{node.log_tail()}"
    )


class LocalNode(NodeProcess):
    """A node on the local journal; `start()` returns once it accepts STOMP."""

    ready_timeout_s = 20.0

    def start(self) -> "LocalNode":
        super().start()
        wait_accepts(self, self.ready_timeout_s, poll=0.05, probe_timeout=2.0)
        return self
