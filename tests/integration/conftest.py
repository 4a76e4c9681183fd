"""Shared fixtures for the Halyard integration tests.

`Node` runs one real `halyard node` process (binary from $HALYARD_BIN,
default target/release/halyard) on a free 127.0.0.1 port with its own data
dir, and can crash it (SIGKILL), stop it (SIGTERM) and restart it on the same
data dir and port. `Client` is a stomp.py 1.2 connection with a listener that
records every frame it receives, so tests wait on conditions rather than
sleeping. The raw-socket helpers at the end speak STOMP bytes directly, for
malformed input.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import stomp

REPO_ROOT = Path(__file__).resolve().parents[2]
HALYARD_BIN = Path(os.environ.get("HALYARD_BIN", REPO_ROOT / "target" / "release" / "halyard"))

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# Generous bound for waits on the broker; a healthy run needs a fraction.
WAIT_S = 60.0

# Nodes not yet closed; their log tails go into the report of a failing test.
_ACTIVE_NODES: list["Node"] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `halyard node` process with a data dir that outlives restarts."""

    def __init__(self, base_dir: Path, name: str = "node", extra_args: list[str] | None = None):
        if not HALYARD_BIN.is_file():
            raise RuntimeError(
                f"halyard binary not found at {HALYARD_BIN}; run `cargo build --release -p halyard` "
                "or set HALYARD_BIN"
            )
        self.name = name
        self.data_dir = base_dir / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = base_dir / f"{name}.log"
        self.port = free_port()
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        _ACTIVE_NODES.append(self)

    # -- lifecycle ---------------------------------------------------------

    @property
    def host_and_port(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> "Node":
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("HALYARD_")}
        env["RUST_BACKTRACE"] = "1"
        env["NO_COLOR"] = "1"
        cmd = [
            str(HALYARD_BIN),
            "node",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Waits until the node answers a STOMP CONNECT with CONNECTED."""
        deadline = time.monotonic() + timeout
        last_err = "nothing tried"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(
                    f"{self.name} exited with code {rc} before it was ready\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(self.host_and_port, timeout=2.0) as s:
                    s.settimeout(2.0)
                    s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
                    data = b""
                    while b"\x00" not in data:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if data.lstrip(b"\r\n").startswith(b"CONNECTED\n"):
                        s.sendall(b"DISCONNECT\n\n\x00")
                        return
                    last_err = f"unexpected answer {data[:200]!r}"
            except OSError as e:
                last_err = repr(e)
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name} not ready after {timeout:.0f} s (last: {last_err})\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """Crashes the node: SIGKILL, no chance to flush anything."""
        assert self.alive(), f"{self.name} is not running\n{self.log_tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._mark("SIGKILL")

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM; the node must drain and exit 0 within `timeout`."""
        assert self.alive(), f"{self.name} is not running\n{self.log_tail()}"
        self.send_sigterm()
        rc = self.wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            self._mark("no exit after SIGTERM, SIGKILLed")
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s of SIGTERM\n{self.log_tail()}"
            )
        assert rc == 0, f"{self.name} exited with code {rc} after SIGTERM\n{self.log_tail()}"

    def send_sigterm(self) -> None:
        self._mark("sending SIGTERM")
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if the node still runs after `timeout`."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._mark(f"exited with code {rc}")
        return rc

    def current_log(self) -> str:
        """The log of the current (or last) start only."""
        return self.log_text().rsplit("==== start #", 1)[-1]

    def restart(self) -> "Node":
        """Starts again on the same data dir and port (after kill9/terminate)."""
        assert not self.alive(), "restart() needs a stopped node"
        return self.start()

    def close(self) -> None:
        """Stops the node if it still runs (teardown)."""
        if self.alive():
            # Not an assertion (terminate() is): a SIGTERM can be lost by the
            # node (see test_sigterm_under_load_is_not_lost), so it is
            # repeated rather than stalling every teardown for 10 s.
            for attempt in range(1, 6):
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(timeout=2.0)
                    self._mark(f"teardown SIGTERM x{attempt}, exit code {rc}")
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.proc.kill()
                self.proc.wait()
                self._mark("teardown: no exit after 5 SIGTERMs, SIGKILLed")
        if self in _ACTIVE_NODES:
            _ACTIVE_NODES.remove(self)

    def _mark(self, what: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"==== test harness: {what}\n".encode())

    # -- logs --------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.name} log tail ({self.log_path}) ---\n" + "\n".join(tail)

    def assert_no_panic(self) -> None:
        text = self.log_text()
        assert "panicked" not in text, f"{self.name} panicked\n{self.log_tail(200)}"


def _node_teardown(node: Node) -> None:
    try:
        node.assert_no_panic()
    finally:
        node.close()


@pytest.fixture
def node(tmp_path) -> Node:
    """A started node, private to the test."""
    n = Node(tmp_path)
    try:
        n.start()
        yield n
    finally:
        _node_teardown(n)


@pytest.fixture(scope="module")
def module_node(tmp_path_factory) -> Node:
    """A started node shared by every test of a module."""
    n = Node(tmp_path_factory.mktemp("node"))
    try:
        n.start()
        yield n
    finally:
        _node_teardown(n)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _ACTIVE_NODES:
        for n in _ACTIVE_NODES:
            rep.sections.append((f"halyard {n.name} log tail", n.log_tail(80)))


# ---------------------------------------------------------------------------
# stomp.py clients


class Recorder(stomp.ConnectionListener):
    """Records every frame; waiters block on `cv` instead of sleeping."""

    def __init__(self, cv: threading.Condition | None = None):
        # Clients may share one condition so a test can wait on all of them.
        self.cv = cv or threading.Condition()
        self.messages: list[stomp.utils.Frame] = []
        self.receipts: set[str] = set()
        self.errors: list[stomp.utils.Frame] = []
        self.disconnected = False
        self.on_receipt_hook = None

    def on_message(self, frame):
        with self.cv:
            self.messages.append(frame)
            self.cv.notify_all()

    def on_receipt(self, frame):
        rid = frame.headers.get("receipt-id")
        with self.cv:
            self.receipts.add(rid)
            self.cv.notify_all()
        hook = self.on_receipt_hook
        if hook is not None:
            hook(rid)

    def on_error(self, frame):
        with self.cv:
            self.errors.append(frame)
            self.cv.notify_all()

    def on_disconnected(self):
        with self.cv:
            self.disconnected = True
            self.cv.notify_all()

    def wait(self, pred, timeout: float = WAIT_S, what: str = "condition"):
        with self.cv:
            ok = self.cv.wait_for(pred, timeout)
            if not ok:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what} "
                    f"(messages={len(self.messages)}, receipts={len(self.receipts)}, "
                    f"errors={[e.headers.get('message') for e in self.errors]}, "
                    f"disconnected={self.disconnected})"
                )
            return ok


class Client:
    """A connected stomp.py 1.2 client that records what it receives."""

    def __init__(self, node: Node, client_id: str | None = None, cv: threading.Condition | None = None):
        self.node = node
        self.rec = Recorder(cv)
        self.conn = stomp.Connection12([node.host_and_port], heartbeats=(0, 0), reconnect_attempts_max=1)
        self.conn.set_listener("rec", self.rec)
        headers = {"client-id": client_id} if client_id else {}
        self.conn.connect(wait=True, headers=headers)

    # -- plumbing ------------------------------------------------------------

    @staticmethod
    def rid(prefix: str = "r") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def wait_receipt(self, rid: str, timeout: float = WAIT_S) -> None:
        self.rec.wait(
            lambda: rid in self.rec.receipts or bool(self.rec.errors) or self.rec.disconnected,
            timeout,
            f"receipt {rid}",
        )
        assert rid in self.rec.receipts, (
            f"no receipt {rid}: errors={[e.headers for e in self.rec.errors]}, "
            f"disconnected={self.rec.disconnected}"
        )

    def messages(self, sub: str | None = None) -> list:
        with self.rec.cv:
            return [m for m in self.rec.messages if sub is None or m.headers.get("subscription") == sub]

    def wait_messages(self, n: int, sub: str | None = None, timeout: float = WAIT_S) -> list:
        self.rec.wait(lambda: len(self.messages(sub)) >= n, timeout, f"{n} messages on {sub or 'any'}")
        return self.messages(sub)

    def wait_for_body(self, body: str, sub: str | None = None, timeout: float = WAIT_S):
        def found():
            return any(m.body == body for m in self.messages(sub))

        self.rec.wait(found, timeout, f"message with body {body!r}")
        return [m for m in self.messages(sub) if m.body == body][0]

    def clear(self) -> None:
        with self.rec.cv:
            self.rec.messages.clear()

    # -- STOMP -------------------------------------------------------------

    def send(self, dest: str, body: str, receipt: bool = True, **headers) -> None:
        if receipt:
            rid = self.rid("s")
            self.conn.send(dest, body, headers=headers, receipt=rid)
            self.wait_receipt(rid)
        else:
            self.conn.send(dest, body, headers=headers)

    def subscribe(self, dest: str, sub_id: str, ack: str = "auto", **headers) -> None:
        rid = self.rid("sub")
        self.conn.subscribe(dest, sub_id, ack=ack, headers=headers, receipt=rid)
        self.wait_receipt(rid)

    def unsubscribe(self, sub_id: str, **headers) -> None:
        rid = self.rid("unsub")
        self.conn.unsubscribe(sub_id, headers=headers, receipt=rid)
        self.wait_receipt(rid)

    def ack(self, msg, receipt: bool = True, transaction: str | None = None) -> None:
        rid = self.rid("ack") if receipt else None
        self.conn.ack(msg.headers["ack"], transaction=transaction, receipt=rid)
        if rid:
            self.wait_receipt(rid)

    def nack(self, msg, receipt: bool = True) -> None:
        rid = self.rid("nack") if receipt else None
        self.conn.nack(msg.headers["ack"], receipt=rid)
        if rid:
            self.wait_receipt(rid)

    def disconnect(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect(receipt=self.rid("bye"))

    def close_quietly(self) -> None:
        try:
            self.disconnect()
        except Exception:
            pass


@pytest.fixture
def clients():
    """Factory of `Client`s that are all disconnected at teardown."""
    made: list[Client] = []

    def make(node: Node, client_id: str | None = None, cv: threading.Condition | None = None) -> Client:
        c = Client(node, client_id, cv)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close_quietly()


# ---------------------------------------------------------------------------
# Raw STOMP over a socket


def unescape_12(s: str) -> str:
    out, i = [], 0
    table = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in table:
            out.append(table[s[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_frames(data: bytes, escaped: bool = True) -> list[tuple[str, dict[str, str], bytes]]:
    """Splits received bytes into (command, headers, body) frames; EOLs
    between frames (heart-beats) are skipped. First header occurrence wins."""
    frames = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] == b"\n":
            pos += 1
            continue
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
            continue
        head_end = data.find(b"\n\n", pos)
        if head_end < 0:
            raise AssertionError(f"incomplete frame from server: {data[pos:pos + 200]!r}")
        lines = data[pos:head_end].decode("utf-8").replace("\r", "").split("\n")
        command = lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if escaped and command not in ("CONNECTED",):
                k, v = unescape_12(k), unescape_12(v)
            headers.setdefault(k, v)
        body_start = head_end + 2
        if "content-length" in headers:
            body_end = body_start + int(headers["content-length"])
        else:
            body_end = data.find(b"\x00", body_start)
            if body_end < 0:
                raise AssertionError(f"frame without NUL from server: {data[pos:pos + 200]!r}")
        assert data[body_end : body_end + 1] == b"\x00", f"frame not NUL-terminated: {data[pos:pos + 200]!r}"
        frames.append((command, headers, data[body_start:body_end]))
        pos = body_end + 1
    return frames


class RawConn:
    """A plain TCP connection to the node, for bytes stomp.py would never send."""

    def __init__(self, node: Node, timeout: float = 15.0):
        self.sock = socket.create_connection(node.host_and_port, timeout=timeout)
        self.sock.settimeout(timeout)
        self.escaped = False

    def connect(self, version: str = "1.2") -> dict[str, str]:
        self.sock.sendall(f"CONNECT\naccept-version:{version}\nhost:localhost\n\n\x00".encode())
        data = b""
        while b"\x00" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed while waiting for CONNECTED: {data!r}"
            data += chunk
        frames = parse_frames(data, escaped=False)
        assert frames and frames[0][0] == "CONNECTED", f"expected CONNECTED, got {data!r}"
        self.escaped = frames[0][1].get("version") in ("1.1", "1.2")
        return frames[0][1]

    def send_and_read_until_closed(self, payload: bytes) -> tuple[list, bool]:
        """Sends `payload` (from a helper thread, so a server that stops
        reading cannot block us) and reads until the server closes the
        connection. Returns (frames, closed_by_server); a read timeout
        means the server kept the connection open."""
        send_errors: list[BaseException] = []

        def pump():
            try:
                self.sock.sendall(payload)
            except OSError as e:  # the server may close while we still send
                send_errors.append(e)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        data = b""
        closed = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except socket.timeout:
            closed = False
        t.join(timeout=15)
        self.sock.close()
        return parse_frames(data, escaped=self.escaped), closed
