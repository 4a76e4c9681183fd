"""Fixtures for the AMQP 1.0 / JMS tests: brokers, live/backup pairs and the JMS client tool.

Minimal on purpose: it will be folded into the shared Python test harness (tests/...) later.

Brokers (the `broker` fixture, parameterized; every test runs once per broker):
  artemis  the Artemis 2.56 instance that scripts/services/artemis.sh runs with ARTEMIS_INSTANCE=tests and
           ARTEMIS_AMQP=1 (AMQP on ARTEMIS_AMQP_PORT, STOMP on ARTEMIS_STOMP_PORT); the fixture
           starts it through the script if it is not running and fails loudly if it cannot.
  halyard  a `halyard node` (HALYARD_BIN) serving STOMP and AMQP on one port. Until Halyard
           speaks AMQP, the fixture sends the AMQP protocol header, sees a non-AMQP answer and
           marks the test xfail with that answer as the reason (never a silent skip). Set
AMQP_TEST_BROKERS=artemis (comma-separated) narrows the set.

Pairs (the `pair` fixture, parameterized the same way): a live and a backup that share state,
reached through Qpid JMS's failover URL, with `kill_live()` (SIGKILL):
  artemis  two Artemis 2.56 instances with HA policy shared-store (primary + backup on one
           journal folder, a file lock decides who is live), created once under
           target/artemis/pair-*; the journal folder is emptied for every test.
  halyard  two `halyard node` processes sharing --data-dir and --lock-dir (primary + backup).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
JMS_JAR = Path(os.environ.get("JMS_TOOL_JAR", REPO_ROOT / "tests" / "jms" / "target" / "jms-tool.jar"))
HALYARD_BIN = Path(os.environ.get("HALYARD_BIN", REPO_ROOT / "target" / "release" / "halyard"))
ARTEMIS_SH = REPO_ROOT / "scripts" / "services" / "artemis.sh"
ARTEMIS_DIR = REPO_ROOT / "target" / "artemis"
ARTEMIS_VERSION = os.environ.get("ARTEMIS_VERSION", "2.56.0")

# The test instance of scripts/services/artemis.sh: its own name and ports, so a benchmark's Artemis
# (61613/61626) can run at the same time.
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
ARTEMIS_USER = os.environ.get("ARTEMIS_USER", "artemis")
ARTEMIS_PASSWORD = os.environ.get("ARTEMIS_PASSWORD", "artemis")
# Client ports of the Artemis shared-store pair (each instance's one all-protocol acceptor).
ARTEMIS_PAIR_PORTS = tuple(int(p) for p in os.environ.get("ARTEMIS_PAIR_PORTS", "61646,61649").split(","))

BROKERS = [b.strip() for b in os.environ.get("AMQP_TEST_BROKERS", "artemis,halyard").split(",") if b.strip()]
# Live/backup pairs: each broker's, plus Halyard on a Kafka journal (issue 11: "a local pair
# sharing a lock folder, and a Kafka pair"); the Kafka pair needs HALYARD_KAFKA_BOOTSTRAP
# (scripts/ci/amqp-tests.sh and scripts/test.sh start Kafka and set it).
PAIR_KINDS = BROKERS + (["halyard-kafka"] if "halyard" in BROKERS else [])

WAIT_S = 60.0

# Test modules import these helpers as `amqp_conftest` (`conftest` alone names whichever suite's
# conftest.py pytest loaded last, e.g. tests/stomp_compat's in the default run).
sys.modules["amqp_conftest"] = sys.modules[__name__]

_LIVE_PROCS: list["Proc"] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def amqp_answer(host: str, port: int, timeout: float = 5.0) -> bytes:
    """What the server answers to the AMQP SASL protocol header (first bytes), b'' if nothing."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"AMQP\x03\x01\x00\x00")
            data = b""
            deadline = time.monotonic() + timeout
            while len(data) < 8 and time.monotonic() < deadline:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError as e:
        return repr(e).encode()


def speaks_amqp(host: str, port: int) -> tuple[bool, bytes]:
    a = amqp_answer(host, port)
    return a.startswith(b"AMQP"), a


_GATE_CACHE: dict = {}


def halyard_amqp_gate(host: str, port: int, what: str, cache: bool = False) -> None:
    """Fails (with the server's answer) if a Halyard node does not speak AMQP.
    `cache`: probe a long-lived node once (a STOMP-only node answers nothing for 5 s)."""
    key = (host, port)
    if cache and key in _GATE_CACHE:
        ok, answer = _GATE_CACHE[key]
    else:
        ok, answer = speaks_amqp(host, port)
        if cache:
            _GATE_CACHE[key] = (ok, answer)
    if ok:
        return
    pytest.fail(f"{what} on {host}:{port} does not speak AMQP 1.0: it answered the AMQP header with "
                f"{answer[:80]!r}", pytrace=False)


def stomp_connected(host: str, port: int, login: str | None = None, passcode: str | None = None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.settimeout(2.0)
            creds = f"login:{login}\npasscode:{passcode}\n" if login else ""
            s.sendall(f"CONNECT\naccept-version:1.2\nhost:localhost\n{creds}\n\x00".encode())
            data = b""
            while b"\x00" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.lstrip(b"\r\n").startswith(b"CONNECTED"):
                s.sendall(b"DISCONNECT\n\n\x00")
                return True
    except OSError:
        pass
    return False


# ---------------------------------------------------------------------------
# processes


class Proc:
    """A broker process (halyard node or an Artemis JVM) with its log file."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None, cwd=None):
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        with open(self.log_path, "ab") as log:
            log.write(f"==== start: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=self.cwd, start_new_session=True)
        _LIVE_PROCS.append(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.alive(), f"{self.name} is not running\n{self.log_tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._mark("SIGKILL")

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._mark("stopped")
        if self in _LIVE_PROCS:
            _LIVE_PROCS.remove(self)

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def wait_log(self, text: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if not self.alive():
                raise AssertionError(f"{self.name} exited while waiting for {text!r}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} in the log after {timeout} s\n{self.log_tail()}")
            time.sleep(0.1)

    def _mark(self, what: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"==== test harness: {what}\n".encode())


def wait_until(pred, timeout: float, what: str, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited while waiting for {what}\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f"\n{proc.log_tail()}" if proc else ""))
        time.sleep(0.1)


def halyard_node(name: str, port: int, data_dir: Path, log_dir: Path, *extra: str) -> Proc:
    if not HALYARD_BIN.is_file():
        pytest.fail(f"halyard binary not found at {HALYARD_BIN} (cargo build --release -p halyard, or set HALYARD_BIN)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALYARD_")}
    env["NO_COLOR"] = "1"
    # A 6 s AMQP idle time-out (the default is 30 s) keeps the idle-time-out tests short.
    cmd = [str(HALYARD_BIN), "node", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
           "--node-id", name, "--amqp-idle-timeout-ms", "6000", *extra]
    return Proc(f"halyard {name}", cmd, log_dir / f"{name}.log", env=env)


# Lines the tests want in the run's summary (lost/duplicate counts and the like), printed at the
# end even when the tests pass and their output is captured.
REPORT_LINES: list[str] = []


@pytest.fixture
def report():
    return REPORT_LINES.append


def pytest_terminal_summary(terminalreporter):
    if REPORT_LINES:
        terminalreporter.section("amqp test figures")
        for line in REPORT_LINES:
            terminalreporter.write_line(line)


# A test marked `slow_on_artemis` runs against Artemis only with AMQP_ARTEMIS_SLOW=1: Artemis's run
# shows what Artemis does and asserts nothing about Halyard, and on 2 cores it costs more than a
# minute of the test command's budget. Left out, it is reported as deselected (never a silent skip).
ARTEMIS_SLOW = os.environ.get("AMQP_ARTEMIS_SLOW") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow_on_artemis: run against Artemis only with AMQP_ARTEMIS_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if ARTEMIS_SLOW:
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_artemis = callspec is not None and "artemis" in (callspec.params.get("pair"), callspec.params.get("broker"))
        (drop if on_artemis and item.get_closest_marker("slow_on_artemis") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        REPORT_LINES.extend(f"deselected (slow on Artemis; AMQP_ARTEMIS_SLOW=1 runs it): {i.nodeid}" for i in drop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in _LIVE_PROCS:
            rep.sections.append((f"log tail {p.name}", p.log_tail(60)))


# ---------------------------------------------------------------------------
# brokers


@dataclass
class Broker:
    kind: str  # "artemis" | "halyard"
    host: str
    amqp_port: int
    stomp_port: int
    user: str | None = None
    password: str | None = None
    expiry_address: str = "ExpiryQueue"
    dead_letter_address: str = "DLQ"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.host}:{self.amqp_port}"

    def jms_auth(self) -> list[str]:
        return ["--user", self.user, "--password", self.password or ""] if self.user else []


def start_artemis() -> Broker:
    env = dict(os.environ)
    env.update(ARTEMIS_ENV)
    r = subprocess.run(["bash", str(ARTEMIS_SH), "start"], env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"scripts/services/artemis.sh start failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    return Broker("artemis", "127.0.0.1", int(ARTEMIS_ENV["ARTEMIS_AMQP_PORT"]), int(ARTEMIS_ENV["ARTEMIS_STOMP_PORT"]),
                  ARTEMIS_USER, ARTEMIS_PASSWORD)


@pytest.fixture(scope="session")
def artemis_broker() -> Broker:
    return start_artemis()


@pytest.fixture(scope="session")
def halyard_single(tmp_path_factory):
    d = tmp_path_factory.mktemp("halyard-single")
    port = free_port()
    p = halyard_node("single", port, d / "data", d)
    p.start()
    try:
        wait_until(lambda: stomp_connected("127.0.0.1", port), 30, "halyard single node ready (STOMP CONNECT)", p)
        yield Broker("halyard", "127.0.0.1", port, port)
    finally:
        p.stop()


@pytest.fixture(params=BROKERS)
def broker(request) -> Broker:
    if request.param == "artemis":
        return request.getfixturevalue("artemis_broker")
    if request.param == "halyard":
        b = request.getfixturevalue("halyard_single")
        halyard_amqp_gate(b.host, b.amqp_port, "halyard node", cache=True)
        return b
    raise ValueError(request.param)


# ---------------------------------------------------------------------------
# live/backup pairs


@dataclass
class Pair:
    kind: str
    ports: tuple
    procs: list
    user: str | None = None
    password: str | None = None
    live: int = 0
    kills: int = 0
    expiry_address: str = "ExpiryQueue"

    @property
    def failover_url(self) -> str:
        inner = ",".join(f"amqp://127.0.0.1:{p}" for p in self.ports)
        return f"failover:({inner})?failover.maxReconnectAttempts=-1"

    def url(self, i: int) -> str:
        return f"amqp://127.0.0.1:{self.ports[i]}"

    def jms_auth(self) -> list[str]:
        return ["--user", self.user, "--password", self.password or ""] if self.user else []

    def kill_live(self) -> None:
        """SIGKILL the live; returns once the other node accepts AMQP connections."""
        self.procs[self.live].kill9()
        self.kills += 1
        self.live = 1 - self.live
        wait_until(lambda: speaks_amqp("127.0.0.1", self.ports[self.live])[0], 120,
                   f"{self.kind} backup on port {self.ports[self.live]} to serve AMQP", self.procs[self.live])


def _artemis_home() -> Path:
    home = ARTEMIS_DIR / f"apache-artemis-{ARTEMIS_VERSION}"
    if not (home / "bin" / "artemis").is_file():
        env = dict(os.environ)
        r = subprocess.run(["bash", str(ARTEMIS_SH), "fetch"], env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.fail(f"scripts/services/artemis.sh fetch failed:\n{r.stderr}", pytrace=False)
    return home


def _artemis_pair_instance(role: str, port: int, peer_port: int, data: Path) -> Path:
    """An Artemis instance with HA policy shared-store (primary or backup) on `data`, created once."""
    home = _artemis_home()
    inst = ARTEMIS_DIR / f"pair-{role}"
    args = ["--silent", "--force", "--user", ARTEMIS_USER, "--password", ARTEMIS_PASSWORD, "--require-login",
            "--cluster-user", "cluster", "--cluster-password", "cluster", "--name", f"pair-{role}",
            "--host", "127.0.0.1", "--default-port", str(port), "--no-web", "--no-mqtt-acceptor",
            "--no-hornetq-acceptor", "--no-stomp-acceptor", "--no-amqp-acceptor", "--no-autotune",
            "--shared-store", "--failover-on-shutdown", "--data", str(data),
            # static cluster connection over loopback TCP (the default would broadcast on UDP multicast)
            "--staticCluster", f"tcp://127.0.0.1:{peer_port}"]
    if role == "backup":
        args.append("--backup")
    stamp = inst / ".halyard-create"
    want = " ".join(args)
    if not (stamp.is_file() and stamp.read_text() == want):
        shutil.rmtree(inst, ignore_errors=True)
        r = subprocess.run([str(home / "bin" / "artemis"), "create", *args, str(inst)], capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"artemis create {role} failed:\n{r.stdout}\n{r.stderr}", pytrace=False)
        stamp.write_text(want)
    xml = inst / "etc" / "broker.xml"
    text = xml.read_text()
    usage = ARTEMIS_ENV["ARTEMIS_MAX_DISK_USAGE"]
    new = re.sub(r"<max-disk-usage>[^<]*</max-disk-usage>", f"<max-disk-usage>{usage}</max-disk-usage>", text)
    if new != text:
        xml.write_text(new)
    return inst


def start_artemis_pair(log_dir: Path) -> Pair:
    a, b = ARTEMIS_PAIR_PORTS
    data = ARTEMIS_DIR / "pair-data"
    primary = _artemis_pair_instance("primary", a, b, data)
    backup = _artemis_pair_instance("backup", b, a, data)
    shutil.rmtree(data, ignore_errors=True)
    for port in (a, b):
        if speaks_amqp("127.0.0.1", port)[0] or stomp_connected("127.0.0.1", port):
            pytest.fail(f"127.0.0.1:{port} is already taken (a pair left running?)", pytrace=False)
    env = dict(os.environ)
    p = Proc("artemis pair primary", [str(primary / "bin" / "artemis"), "run"], log_dir / "artemis-primary.log", env=env)
    q = Proc("artemis pair backup", [str(backup / "bin" / "artemis"), "run"], log_dir / "artemis-backup.log", env=env)
    p.start()
    try:
        wait_until(lambda: speaks_amqp("127.0.0.1", a)[0], 120, "Artemis primary to serve AMQP", p)
        q.start()
        q.wait_log("AMQ221031", 120)  # backup announced
    except BaseException:
        p.stop()
        q.stop()
        raise
    return Pair("artemis", (a, b), [p, q], ARTEMIS_USER, ARTEMIS_PASSWORD)


def start_halyard_pair(log_dir: Path) -> Pair:
    a, b = free_port(), free_port()
    shared = log_dir / "pair-shared"
    shared.mkdir(parents=True, exist_ok=True)
    common = ["--lock-dir", str(shared), "--heartbeat-ms", "2000"]
    p = halyard_node("pair-a", a, shared, log_dir, "--role", "primary", *common)
    q = halyard_node("pair-b", b, shared, log_dir, "--role", "backup", *common)
    p.start()
    try:
        wait_until(lambda: stomp_connected("127.0.0.1", a), 30, "halyard primary ready", p)
        q.start()
        q.wait_log("backup announced", 30)
    except BaseException:
        p.stop()
        q.stop()
        raise
    return Pair("halyard", (a, b), [p, q])


def start_halyard_kafka_pair(log_dir: Path) -> Pair:
    """Two nodes on one Kafka journal: the journal topic, the lock group and the fencing
    transactional id all derive from a cluster id fresh for this test."""
    bootstrap = os.environ.get("HALYARD_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        pytest.fail("the Kafka pair needs HALYARD_KAFKA_BOOTSTRAP (scripts/ci/amqp-tests.sh starts Kafka)",
                    pytrace=False)
    a, b = free_port(), free_port()
    cluster = f"amqp-{uuid.uuid4().hex[:10]}"
    common = ["--kafka-bootstrap", bootstrap, "--cluster-id", cluster, "--kafka-session-timeout-ms", "3000",
              "--heartbeat-ms", "2000"]
    p = halyard_node("kafka-a", a, log_dir / "kafka-a", log_dir, "--role", "primary",
                     "--failover-server", f"127.0.0.1:{b}", *common)
    q = halyard_node("kafka-b", b, log_dir / "kafka-b", log_dir, "--role", "backup",
                     "--failover-server", f"127.0.0.1:{a}", *common)
    p.start()
    try:
        wait_until(lambda: stomp_connected("127.0.0.1", a), 90, "halyard primary on Kafka ready", p)
        q.start()
        q.wait_log("backup announced", 90)
        # A standby copy that has caught up makes the failover quick.
        q.wait_log("caught up", 90)
    except BaseException:
        p.stop()
        q.stop()
        raise
    return Pair("halyard-kafka", (a, b), [p, q])


@pytest.fixture(params=PAIR_KINDS)
def pair(request, tmp_path):
    if request.param == "artemis":
        pr = start_artemis_pair(tmp_path)
    elif request.param == "halyard-kafka":
        pr = start_halyard_kafka_pair(tmp_path)
    else:
        pr = start_halyard_pair(tmp_path)
    try:
        if pr.kind.startswith("halyard"):
            halyard_amqp_gate("127.0.0.1", pr.ports[0], "halyard live node")
        yield pr
    finally:
        for p in pr.procs:
            p.stop()


# ---------------------------------------------------------------------------
# the JMS tool


class JmsProc:
    """One run of jms-tool; stdout's JSON lines are parsed as they come."""

    def __init__(self, args: list[str], log_path: Path):
        if not JMS_JAR.is_file():
            pytest.fail(f"{JMS_JAR} missing: build it with `mvn -q -B -f tests/jms/pom.xml package` "
                        "(scripts/ci/amqp-tests.sh does)", pytrace=False)
        self.args = args
        self.log_path = log_path
        self.events: list[dict] = []
        self.cv = threading.Condition()
        self._stderr = open(log_path, "ab")
        self._stderr.write(f"==== jms-tool {' '.join(args)}\n".encode())
        self._stderr.flush()
        self.proc = subprocess.Popen(["java", "-Xmx256m", "-jar", str(JMS_JAR), *args], stdout=subprocess.PIPE,
                                     stderr=self._stderr, stdin=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "unparsed", "line": line}
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def count(self, name: str) -> int:
        with self.cv:
            return sum(1 for e in self.events if e.get("event") == name)

    def wait_for(self, pred, timeout: float = WAIT_S, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    if pred():
                        return
                    raise AssertionError(f"jms-tool: {what} not reached ({self.describe()})")
                self.cv.wait(min(left, 0.5))

    def wait(self, timeout: float = WAIT_S * 3) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"jms-tool did not finish within {timeout} s ({self.describe()})")
        self._reader.join(timeout=10)
        self._stderr.close()
        return rc

    def release(self) -> None:
        """Opens the --gate: the tool goes on to create its session."""
        self.wait_for(lambda: any(e.get("event") == "gate" for e in self.events), what="gate")
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def of(self, name: str) -> list[dict]:
        with self.cv:
            return [e for e in self.events if e.get("event") == name]

    @property
    def summary(self) -> dict:
        s = self.of("summary")
        assert s, f"no summary from jms-tool ({self.describe()})"
        return s[-1]

    def describe(self) -> str:
        errs = [e for e in self.events if e.get("event") in ("error", "send-failed", "commit-failed",
                                                              "connection-failure", "connection-error")]
        tail = ""
        try:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            pass
        return (f"args={' '.join(self.args)}; events={len(self.events)}; errors={errs[:5]}; "
                f"rc={self.proc.poll()}; stderr tail:\n{tail}")


class Jms:
    """Runs jms-tool against a broker or pair (url and credentials filled in)."""

    def __init__(self, target, log_dir: Path):
        self.target = target
        self.log_path = log_dir / "jms-tool.log"

    def url(self) -> str:
        return self.target.failover_url if isinstance(self.target, Pair) else self.target.amqp_url

    def start(self, command: str, *args: str, url: str | None = None) -> JmsProc:
        return JmsProc([command, "--url", url or self.url(), *self.target.jms_auth(), *args], self.log_path)

    def run(self, command: str, *args: str, url: str | None = None, timeout: float = 180.0,
            ok_codes=(0,)) -> JmsProc:
        p = self.start(command, *args, url=url)
        rc = p.wait(timeout)
        assert rc in ok_codes, f"jms-tool {command} exited {rc}: {p.describe()}"
        return p


@pytest.fixture
def jms(broker, tmp_path) -> Jms:
    return Jms(broker, tmp_path)


@pytest.fixture
def pair_jms(pair, tmp_path) -> Jms:
    return Jms(pair, tmp_path)


@pytest.fixture
def name(request) -> str:
    """A destination name private to this test (brokers are shared between tests)."""
    base = request.node.originalname.replace("test_", "")[:24]
    return f"{base}-{uuid.uuid4().hex[:8]}"
