"""Fixtures for the STOMP differential tests: the same raw-frame scenario against Artemis 2.56's
STOMP acceptor and against a `halyard node`, in one test.

Minimal on purpose: it will be folded into the shared Python test harness later.

- Artemis: the instance scripts/services/artemis.sh runs with ARTEMIS_INSTANCE=tests (the same one the
  AMQP tests use; started here through the script if it is not running; a failure to start
  fails the tests, it never skips them). Its STOMP acceptor maps /queue/ to anycast and /topic/
  to multicast, as Halyard does, and it requires login artemis/artemis.
- Halyard: one `halyard node` (HALYARD_BIN, default target/release/halyard) per module on a free
  port with a fresh data dir; no login.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HALYARD_BIN = Path(os.environ.get("HALYARD_BIN", REPO_ROOT / "target" / "release" / "halyard"))
ARTEMIS_SH = REPO_ROOT / "scripts" / "services" / "artemis.sh"
ARTEMIS_ENV = {
    "ARTEMIS_INSTANCE": os.environ.get("ARTEMIS_INSTANCE", "tests"),
    "ARTEMIS_AMQP": "1",
    "ARTEMIS_STOMP_PORT": os.environ.get("ARTEMIS_STOMP_PORT", "61633"),
    "ARTEMIS_CORE_PORT": os.environ.get("ARTEMIS_CORE_PORT", "61636"),
    "ARTEMIS_AMQP_PORT": os.environ.get("ARTEMIS_AMQP_PORT", "61637"),
    "ARTEMIS_AMQP_IDLE_TIMEOUT_MS": os.environ.get("ARTEMIS_AMQP_IDLE_TIMEOUT_MS", "4000"),
    # Artemis blocks producers above 90 % disk use by default; a shared build disk gets there.
    "ARTEMIS_MAX_DISK_USAGE": os.environ.get("ARTEMIS_MAX_DISK_USAGE", "100"),
}


@dataclass
class Target:
    name: str  # "artemis" | "halyard"
    host: str
    port: int
    login: str | None = None
    passcode: str | None = None
    expiry_address: str = "ExpiryQueue"
    log_path: Path | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stomp_ready(port: int, login=None, passcode=None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            creds = f"login:{login}\npasscode:{passcode}\n" if login else ""
            s.sendall(f"CONNECT\naccept-version:1.2\nhost:localhost\n{creds}\n\x00".encode())
            return s.recv(64).lstrip(b"\r\n").startswith(b"CONNECTED")
    except OSError:
        return False


@pytest.fixture(scope="session")
def artemis() -> Target:
    env = dict(os.environ)
    env.update(ARTEMIS_ENV)
    r = subprocess.run(["bash", str(ARTEMIS_SH), "start"], env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"scripts/services/artemis.sh start failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    return Target("artemis", "127.0.0.1", int(ARTEMIS_ENV["ARTEMIS_STOMP_PORT"]), "artemis", "artemis")


@pytest.fixture(scope="module")
def halyard(tmp_path_factory) -> Target:
    if not HALYARD_BIN.is_file():
        pytest.fail(f"halyard binary not found at {HALYARD_BIN}", pytrace=False)
    d = tmp_path_factory.mktemp("halyard-stomp")
    port = free_port()
    log = d / "node.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALYARD_")}
    env["NO_COLOR"] = "1"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(HALYARD_BIN), "node", "--listen", f"127.0.0.1:{port}", "--data-dir",
                                 str(d / "data"), "--heartbeat-ms", "0"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while not stomp_ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"halyard node did not start:\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)
            time.sleep(0.1)
        yield Target("halyard", "127.0.0.1", port, log_path=log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        text = log.read_text(errors="replace")
        assert "panicked" not in text, f"halyard panicked:\n{text[-3000:]}"


@pytest.fixture
def targets(artemis, halyard) -> dict:
    return {"artemis": artemis, "halyard": halyard}
