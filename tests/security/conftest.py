"""Helpers and fixtures of the security tests: users and permissions
(`--security-file`), TLS (`--tls-listen`) and connection limits, against real
`halyard node` processes with stomp.py and python-qpid-proton clients.

- Users: `users` (session) hashes one password per user with
  `halyard user hash` (the binary under test) once; `User` holds the name,
  the clear password, the roles and the PHC string. `echo` is hashed from its
  password plus a newline (as `echo PW | halyard user hash` would feed it).
- Security files: `security_toml(users, permissions)` renders the TOML,
  `write_security_file(path, ...)` writes it; `PERMISSIONS` is the rule set
  most tests run with (`security_file`, session).
- Nodes: `SecNode`, a `harness.node.NodeProcess` with `--security-file`,
  `--http`, `--tls-listen` (+ `--tls-client-ca`) and another `--listen` host
  when asked; `start()` returns once the node answers a login (the admin's,
  or an anonymous CONNECT without a security file), its TLS port accepts and
  its HTTP answers. `NodeSet` makes them and, at teardown, checks each for a
  panic and stops it; fixtures `nodes` (per test) and `module_nodes`.
- STOMP: `LoginClient` (a `harness.clients.Client` that logs in, optionally
  over TLS), `StompRaw` (bytes on a socket, optionally TLS: `login()`,
  `exchange()` reads until the server closes), `frame()`, `connect_frame()`,
  `denied()` (the exact ERROR message of a refused operation), `wait_denied()`.
- AMQP: tests/amqp's `EngineClient` (proton's engine pumped by the test) and
  `amqp_raw` (frames by hand); `amqp_client()`, `open_link()`,
  `wait_refused()`.
- HTTP: `http()` with optional Basic credentials, `Metrics` (prometheus_client's
  OpenMetrics parser), `wait_until()`.
- TLS: `pki` (session): a CA, a server certificate for IP 127.0.0.1 and DNS
  localhost, client certificates (CN = user name) and a rogue CA's client
  certificate, made with the `openssl` CLI; `tls_context()`.

The test modules import these helpers as `sec_helpers` (this module under a
name of its own, as tests/operations does with `ops_helpers`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import stomp
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.clients import Client, Recorder
from harness.failover import _hard_close
from harness.node import close_all, HALYARD_BIN, NodeProcess, child_env, free_port, require_binary, wait_accepts
from harness.waiting import waiter
from harness.stomp_wire import parse_frames

# tests/amqp's proton helpers (the engine client pumped by the test, frames
# by hand) are plain modules of that folder, not a package.
AMQP_TESTS = Path(__file__).resolve().parents[1] / "amqp"
if str(AMQP_TESTS) not in sys.path:
    sys.path.insert(0, str(AMQP_TESTS))

from amqp_engine import EngineClient, set_capability  # noqa: E402
from proton import Endpoint, Link, Terminus  # noqa: E402

# The test modules say `from sec_helpers import ...` (see the docstring).
sys.modules["sec_helpers"] = sys.modules[__name__]

# Bound for a wait on a node; a healthy run needs a fraction of it.
WAIT_S = 20.0
HTTP_TIMEOUT_S = 5.0
ACCEPTING = "accepting clients"
# The address whose `manage` permission the HTTP API and console need.
MANAGEMENT_ADDRESS = "halyard.management"

PERMISSION_NAMES = (
    "send",
    "consume",
    "browse",
    "create_durable_queue",
    "delete_durable_queue",
    "create_address",
    "delete_address",
    "manage",
)
# How an ERROR frame names what a permission allows.
VERBS = {
    "send": "send to",
    "consume": "consume from",
    "browse": "browse",
    "create_durable_queue": "create a durable queue on",
    "delete_durable_queue": "delete a durable queue on",
    "create_address": "create address",
    "delete_address": "delete address",
    "manage": "manage",
}


def denied(user: str, permission: str, address: str) -> str:
    """The exact `message` of the ERROR frame refusing `user` `permission` on `address`."""
    return f'user "{user}" may not {VERBS[permission]} address "{address}" (permission {permission})'


# -- users -------------------------------------------------------------------

USER_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "alice": ("producer",),
    "bob": ("consumer",),
    "vic": ("vip",),
    "audrey": ("auditor",),
    "dave": ("subscriber",),
    "erin": ("janitor",),
    "pete": ("peeker",),
    "eve": (),
    # Hashed from its password and a newline (`echo PW | halyard user hash`).
    "echo": ("producer",),
}

# The rule set most tests run with. Which rule decides for an address:
#   orders.eu.new, orders   -> orders.#         (producer sends, consumer consumes)
#   orders.new              -> orders.*         (vip sends: beats orders.#, fewer '#')
#   orders.audit            -> orders.audit     (exact: beats both wildcards)
#   orders.eu.urgent        -> orders.*.urgent  (two literal words beat one)
#   news.*                  -> news.#           (durable subscriptions)
#   fixed.*                 -> fixed.#          (only admin creates addresses)
#   payments.x              -> nothing: denied
PERMISSIONS: list[dict] = [
    {"match": MANAGEMENT_ADDRESS, "manage": ["admin"]},
    {
        "match": "orders.#",
        "send": ["producer"],
        "consume": ["consumer"],
        "browse": ["consumer", "peeker"],
        "create_address": ["producer", "consumer"],
    },
    {"match": "orders.*", "send": ["vip"], "consume": ["consumer"], "create_address": ["vip", "consumer"]},
    {"match": "orders.audit", "send": ["auditor"], "consume": ["auditor"], "create_address": ["auditor"]},
    {"match": "orders.*.urgent", "send": ["vip"], "consume": ["consumer"], "create_address": ["vip", "consumer"]},
    {
        "match": "news.#",
        "send": ["producer"],
        "consume": ["consumer", "subscriber", "janitor"],
        "create_durable_queue": ["subscriber"],
        "delete_durable_queue": ["janitor"],
        "create_address": ["producer", "consumer", "subscriber", "janitor"],
    },
    {"match": "fixed.#", "send": ["admin", "producer"], "consume": ["consumer"], "create_address": ["admin"]},
    # A role no user holds: fine.
    {"match": "ghost.#", "send": ["ghost"], "delete_address": ["ghost"]},
]


@dataclass(frozen=True)
class User:
    name: str
    password: str
    roles: tuple[str, ...]
    hash: str


def hash_cli(stdin: bytes, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """`halyard user hash` with `stdin`, output captured as text."""
    require_binary()
    return subprocess.run(
        [str(HALYARD_BIN), "user", "hash"],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=child_env(),
    )


def hash_password(stdin: bytes) -> str:
    r = hash_cli(stdin)
    out = r.stdout.decode()
    assert r.returncode == 0, f"halyard user hash exited {r.returncode}: {r.stderr.decode()!r}"
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("$argon2id$"), f"halyard user hash printed {out!r}"
    return lines[0]


@pytest.fixture(scope="session")
def users() -> dict[str, User]:
    """Every user of USER_ROLES with a fresh password, hashed once per session."""
    made = {}
    for name, roles in USER_ROLES.items():
        password = f"{name}-pw-{secrets.token_hex(8)}"
        stdin = (password + "\n").encode() if name == "echo" else password.encode()
        made[name] = User(name, password, roles, hash_password(stdin))
    return made


# -- security files ----------------------------------------------------------


def _toml_value(v) -> str:
    # A JSON string is a TOML basic string (the PHC strings need no escapes).
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def security_toml(users, permissions: list[dict]) -> str:
    """The security file: `[users.NAME]` tables, then `[[permissions]]`."""
    out = []
    for u in users:
        out += [f"[users.{u.name}]", f"password = {_toml_value(u.hash)}", f"roles = {_toml_value(u.roles)}", ""]
    for rule in permissions:
        out.append("[[permissions]]")
        out += [f"{k} = {_toml_value(v)}" for k, v in rule.items()]
        out.append("")
    return "\n".join(out)


def write_security_file(path: Path, users, permissions: list[dict] = PERMISSIONS) -> Path:
    path.write_text(security_toml(users, permissions))
    return path


@pytest.fixture(scope="session")
def security_file(tmp_path_factory, users) -> Path:
    """Every user and the PERMISSIONS rules."""
    return write_security_file(tmp_path_factory.mktemp("security") / "security.toml", users.values())


# -- TLS ---------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    # name -> (certificate, key); "alice", "bob", "mallory" are signed by the
    # CA (CN = the name); "alice-rogue" (CN alice) by another CA.
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl CLI is not installed: the TLS tests make their certificates with it")
    r = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")


def _key(d: Path, name: str) -> Path:
    key = d / f"{name}.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key), cwd=d)
    return key


def _make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key = _key(d, name)
    cnf = d / f"{name}.cnf"
    cnf.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n"
        f"[dn]\nCN = {name}\n"
        "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    pem = d / f"{name}.pem"
    _openssl("req", "-x509", "-new", "-key", str(key), "-config", str(cnf), "-extensions", "v3_ca",
             "-days", "2", "-sha256", "-out", str(pem), cwd=d)
    return pem, key


def _make_leaf(d: Path, name: str, cn: str, ca: tuple[Path, Path], server: bool) -> tuple[Path, Path]:
    key = _key(d, name)
    cnf = d / f"{name}.cnf"
    usage = "serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost" if server else "clientAuth"
    cnf.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n"
        f"[dn]\nCN = {cn}\n"
        "[v3_leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        f"extendedKeyUsage = {usage}\n"
    )
    csr = d / f"{name}.csr"
    _openssl("req", "-new", "-key", str(key), "-config", str(cnf), "-out", str(csr), cwd=d)
    pem = d / f"{name}.pem"
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-set_serial", str(secrets.randbits(63)), "-days", "2", "-sha256",
             "-extfile", str(cnf), "-extensions", "v3_leaf", "-out", str(pem), cwd=d)
    return pem, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "halyard-test-ca")
    rogue = _make_ca(d, "rogue-ca")
    server_cert, server_key = _make_leaf(d, "server", "localhost", ca, server=True)
    p = Pki(ca[0], server_cert, server_key)
    for name in ("alice", "bob", "mallory"):
        p.clients[name] = _make_leaf(d, f"client-{name}", name, ca, server=False)
    p.clients["alice-rogue"] = _make_leaf(d, "client-alice-rogue", "alice", rogue, server=False)
    return p


def tls_context(pki: Pki, client: str | None = None, min_version=None, max_version=None,
                ca: Path | None = None) -> ssl.SSLContext:
    """A client context that verifies the node against the test CA (or `ca`)
    and presents `client`'s certificate, if named."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca or pki.ca))
    if client is not None:
        cert, key = pki.clients[client]
        ctx.load_cert_chain(str(cert), str(key))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


# -- STOMP -------------------------------------------------------------------


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


def frame(command: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    """One STOMP 1.2 frame (header values escaped, except in CONNECT)."""
    lines = [command]
    for k, v in (headers or {}).items():
        lines.append(f"{k}:{v if command == 'CONNECT' else _escape(str(v))}")
    if body:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


def connect_frame(login: str | None = None, passcode: str | None = None, **headers) -> bytes:
    h = {"accept-version": "1.2", "host": "localhost"}
    if login is not None:
        h["login"] = login
    if passcode is not None:
        h["passcode"] = passcode
    h.update(headers)
    return frame("CONNECT", h)


class StompRaw:
    """STOMP as bytes on one connection (TLS if `tls` is given), for
    refusals and exact frame order. Frames are parsed by harness.stomp_wire."""

    def __init__(self, addr: tuple[str, int], tls: ssl.SSLContext | None = None, timeout: float = 10.0):
        sock = socket.create_connection(addr, timeout=timeout)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=addr[0])
            except BaseException:
                sock.close()
                raise
        sock.settimeout(timeout)
        self.sock = sock
        self.error: BaseException | None = None

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            # A TLS alert or a reset: the server ended the connection.
            self.error = e
            return b""

    def login(self, login: str | None = None, passcode: str | None = None, **headers) -> tuple[str, dict, bytes]:
        """Sends CONNECT; returns the first frame of the answer."""
        self.sock.sendall(connect_frame(login, passcode, **headers))
        data = b""
        while b"\x00" not in data:
            chunk = self._recv()
            if not chunk:
                raise AssertionError(f"connection closed after {data!r} (error: {self.error!r})")
            data += chunk
        return parse_frames(data)[0]

    def exchange(self, payload: bytes = b"") -> tuple[list, bool]:
        """Sends `payload`, reads until the server closes: (frames, closed);
        closed is False if the server kept the connection open for the timeout."""
        try:
            if payload:
                self.sock.sendall(payload)
        except OSError as e:  # closed while we were still sending
            self.error = e
        data = b""
        closed = False
        try:
            while True:
                chunk = self._recv()
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            closed = False
        self.close()
        return parse_frames(data), closed

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def login_answer(addr, login=None, passcode=None, tls: ssl.SSLContext | None = None, **headers) -> tuple[list, bool]:
    """CONNECT with these credentials, then read until the server closes (or
    10 s of silence): (frames, closed). For logins that must be refused."""
    return StompRaw(addr, tls).exchange(connect_frame(login, passcode, **headers))


def assert_login_refused(frames: list, closed: bool) -> str:
    """One ERROR whose message starts with "login refused", nothing else, and
    the connection closed; returns the message."""
    assert [f[0] for f in frames] == ["ERROR"], f"want one ERROR frame, got {frames!r}"
    message = frames[0][1].get("message", "")
    assert message.startswith("login refused"), f"ERROR message {message!r}"
    assert closed, "the server kept the connection open after refusing the login"
    return message


class LoginClient(Client):
    """A `harness.clients.Client` that logs in (login/passcode, client-id),
    on `addr` (default the node's plain port), over TLS if `tls` is given
    (stomp.py's set_ssl: the CA, and a client certificate if named)."""

    def __init__(self, node, user: str | None, password: str | None, client_id: str | None = None,
                 addr: tuple[str, int] | None = None, tls: tuple[Pki, str | None] | None = None):
        self.node = node
        self.rec = Recorder()
        addr = addr or node.addr
        self.conn = stomp.Connection12([addr], heartbeats=(0, 0), reconnect_attempts_max=1)
        if tls is not None:
            p, cert = tls
            kw = {}
            if cert is not None:
                kw = {"cert_file": str(p.clients[cert][0]), "key_file": str(p.clients[cert][1])}
            self.conn.set_ssl(for_hosts=[addr], ca_certs=str(p.ca), **kw)
        self.conn.set_listener("rec", self.rec)
        self.tls = tls is not None
        headers = {"client-id": client_id} if client_id else {}
        try:
            self.conn.connect(username=user, passcode=password, wait=True, headers=headers)
        except stomp.exception.ConnectFailedException:
            errors = [e.headers.get("message") for e in self.rec.errors]
            self.close_quietly()
            raise AssertionError(f"STOMP login of {user!r} on {addr} failed: errors={errors}") from None


def sees_close(client: Client) -> bool:
    """Whether stomp.py reports the server's close of this client: not over
    TLS, where stomp.py 9.0.0 reads with a non-blocking socket and takes an
    empty read for "no data yet" (transport.py `__read`), so it never learns
    of the close. Tests check the close over TLS with `StompRaw` instead."""
    return not getattr(client, "tls", False)


def wait_denied(client: Client, message: str, timeout: float = WAIT_S) -> None:
    """`client` gets exactly one ERROR, whose message is `message`, and the
    server closes the connection (see `sees_close`)."""
    client.rec.wait(lambda: bool(client.rec.errors) and (client.rec.disconnected or not sees_close(client)),
                    timeout, f"ERROR {message!r} and the connection closed")
    got = [e.headers.get("message") for e in client.rec.errors]
    assert got == [message], f"ERROR messages {got}, want [{message!r}]"


def send_expect(client: Client, dest: str, body: str, **headers) -> str:
    """SEND with a receipt; returns "receipt" or the ERROR's message (then the
    connection must be closed by the server)."""
    rid = client.rid("s")
    client.conn.send(dest, body, headers=headers, receipt=rid)
    return _receipt_or_error(client, rid)


def subscribe_expect(client: Client, dest: str, sub_id: str, ack: str = "auto", **headers) -> str:
    rid = client.rid("sub")
    client.conn.subscribe(dest, sub_id, ack=ack, headers=headers, receipt=rid)
    return _receipt_or_error(client, rid)


def unsubscribe_expect(client: Client, sub_id: str, **headers) -> str:
    rid = client.rid("unsub")
    client.conn.unsubscribe(sub_id, headers=headers, receipt=rid)
    return _receipt_or_error(client, rid)


def _receipt_or_error(client: Client, rid: str) -> str:
    rec = client.rec
    rec.wait(lambda: rid in rec.receipts or bool(rec.errors), WAIT_S, f"receipt {rid} or an ERROR")
    if rid in rec.receipts:
        assert not rec.errors, [e.headers for e in rec.errors]
        return "receipt"
    if sees_close(client):
        rec.wait(lambda: rec.disconnected, WAIT_S, "the connection closed after the ERROR")
    msgs = [e.headers.get("message") for e in rec.errors]
    assert len(msgs) == 1, f"more than one ERROR: {msgs}"
    return msgs[0]


def bodies(msgs) -> list[str]:
    return [m.body for m in msgs]


def receive_until(client: Client, sub: str, sentinel: str, timeout: float = WAIT_S) -> list[str]:
    """The bodies `client` got on `sub` up to and including `sentinel`."""
    client.wait_for_body(sentinel, sub=sub, timeout=timeout)
    got = bodies(client.messages(sub))
    return got[: got.index(sentinel) + 1]


# -- AMQP --------------------------------------------------------------------


def amqp_client(addr: tuple[str, int], user: str | None, password: str | None) -> EngineClient:
    """tests/amqp's engine client: SASL PLAIN with a user (ANONYMOUS without),
    a session begun; not waited for."""
    return EngineClient(addr[0], addr[1], user, password)


def amqp_open(addr, user: str | None, password: str | None) -> EngineClient:
    c = amqp_client(addr, user, password)
    c.opened()
    return c


def open_link(c: EngineClient, kind: str, address: str | None, capability: str | None = "queue",
              browse: bool = False) -> Link:
    """Attaches a sender ("sender") or receiver ("receiver") without waiting
    for the answer; `browse` asks for distribution mode copy (a QueueBrowser)."""
    if kind == "sender":
        link = c.session.sender(f"snd-{secrets.token_hex(4)}")
        link.target.address = address
        set_capability(link.target, capability)
        link.source.address = address
    else:
        link = c.session.receiver(f"rcv-{secrets.token_hex(4)}")
        link.source.address = address
        set_capability(link.source, capability)
        if browse:
            link.source.distribution_mode = Terminus.DIST_MODE_COPY
        link.target.address = address
    link.open()
    return link


def wait_attached(c: EngineClient, link: Link) -> Link:
    c.run_until(lambda: link.state & (Endpoint.REMOTE_ACTIVE | Endpoint.REMOTE_CLOSED), what="attach answered")
    assert link.state & Endpoint.REMOTE_ACTIVE and not link.state & Endpoint.REMOTE_CLOSED, (
        f"link to {link.target.address or link.source.address} refused: {link.remote_condition}"
    )
    return link


def wait_refused(c: EngineClient, link: Link, condition: str = "amqp:unauthorized-access") -> str | None:
    """The broker answers the attach with a null terminus, then detaches with
    `condition`; the connection stays open. Returns the error description."""
    c.run_until(lambda: link.state & Endpoint.REMOTE_CLOSED or c.eof, what="detach of the refused link")
    assert not c.eof, f"the connection was closed (condition {c.conn.remote_condition})"
    terminus = link.remote_target if link.is_sender else link.remote_source
    assert terminus.address is None, f"refused attach echoed address {terminus.address!r}, want a null terminus"
    cond = link.remote_condition
    assert cond is not None and cond.name == condition, f"detach condition {cond}, want {condition}"
    link.close()
    c.pump(0)
    assert c.conn.state & Endpoint.REMOTE_ACTIVE and not c.conn.state & Endpoint.REMOTE_CLOSED, (
        f"the connection did not stay open: {c.conn.remote_condition}"
    )
    return cond.description


def amqp_closed_condition(c: EngineClient, timeout: float = WAIT_S) -> list[str]:
    """Pumps until the broker closes the connection; the condition names
    proton saw (the peer's close, then the transport's)."""
    c.run_until(lambda: c.eof or c.conn.state & Endpoint.REMOTE_CLOSED, timeout=timeout, what="the broker's close")
    names = [x.name for x in (c.conn.remote_condition, c.transport.condition) if x is not None]
    try:
        c.sock.close()
    except OSError:
        pass
    return names


# -- HTTP and metrics ----------------------------------------------------------


@dataclass
class HttpAnswer:
    method: str
    url: str
    status: int
    headers: dict
    body: str

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"{self}: not JSON ({e})") from None

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.headers} {self.body[:300]!r}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http(method: str, url: str, authorization: str | None = None) -> HttpAnswer:
    """One request; an error status is an answer, not an exception."""
    req = urllib.request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None)
    if authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            headers = {k.lower(): v for k, v in r.headers.items()}
            return HttpAnswer(method, url, r.status, headers, r.read().decode())
    except urllib.error.HTTPError as e:
        headers = {k.lower(): v for k, v in e.headers.items()}
        return HttpAnswer(method, url, e.code, headers, e.read().decode())


class Metrics:
    """One scrape, parsed by prometheus_client's OpenMetrics parser."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def family(self, name: str):
        assert name in self.families, f"no metric family {name!r}; families: {sorted(self.families)}"
        return self.families[name]

    def total(self, sample: str) -> float:
        """The sum of every sample named `sample` (0 if none)."""
        return sum(s.value for f in self.families.values() for s in f.samples if s.name == sample)

    def value(self, sample: str) -> float:
        found = [s for f in self.families.values() for s in f.samples if s.name == sample]
        assert len(found) == 1, f"want one sample {sample}, found {[(s.labels, s.value) for s in found]}"
        return found[0].value


wait_until = waiter(WAIT_S)


# -- nodes -------------------------------------------------------------------


class SecNode(NodeProcess):
    """A node on the local journal with the security options asked for.
    `start()` returns once it answers a login (see the module docstring)."""

    ready_timeout_s = 20.0

    def __init__(self, base_dir: Path, name: str, security_file: Path | None = None, admin: User | None = None,
                 http: bool = False, tls: Pki | None = None, client_ca: bool = False,
                 listen_host: str = "127.0.0.1", extra_args=None, data_dir: Path | None = None):
        super().__init__(base_dir, name, extra_args)
        if data_dir is not None:
            self.data_dir = data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.security_file = security_file
        self.admin = admin
        self.listen_host = listen_host
        self.pki = tls
        self.client_ca = client_ca
        taken = {self.port}
        self.http_port = self._other_port(taken) if http else None
        self.tls_port = self._other_port(taken) if tls is not None else None

    @staticmethod
    def _other_port(taken: set) -> int:
        while True:
            p = free_port()
            if p not in taken:
                taken.add(p)
                return p

    @property
    def tls_addr(self) -> tuple[str, int]:
        assert self.tls_port is not None, f"{self.name} has no TLS listener"
        return ("127.0.0.1", self.tls_port)

    @property
    def base_url(self) -> str:
        assert self.http_port is not None, f"{self.name} has no HTTP endpoint"
        return f"http://127.0.0.1:{self.http_port}"

    def node_args(self) -> list[str]:
        args = ["--node-id", self.name]
        if self.security_file is not None:
            args += ["--security-file", str(self.security_file)]
        if self.http_port is not None:
            args += ["--http", f"127.0.0.1:{self.http_port}"]
        if self.pki is not None:
            args += ["--tls-listen", f"127.0.0.1:{self.tls_port}", "--tls-cert", str(self.pki.server_cert),
                     "--tls-key", str(self.pki.server_key)]
            if self.client_ca:
                args += ["--tls-client-ca", str(self.pki.ca)]
        return args

    def cmd(self) -> list[str]:
        cmd = super().cmd()
        if self.listen_host != "127.0.0.1":
            cmd[cmd.index("--listen") + 1] = f"{self.listen_host}:{self.port}"
        return cmd

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "SecNode":
        super().start()
        self.wait_ready()
        return self

    def start_backup(self, pos: int) -> "SecNode":
        """Starts the node and waits for "backup announced" after log position `pos`."""
        super().start()
        self.wait_log("backup announced", self.ready_timeout_s, since=pos)
        return self

    def _exited(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with code {self.proc.returncode}\n{self.log_tail()}")

    def login_probe(self) -> bool:
        """True once the plain port answers the admin's CONNECT with CONNECTED;
        a refused login fails at once (the test's setup is wrong)."""
        try:
            s = StompRaw(self.addr, timeout=5.0)
        except OSError:
            return False
        try:
            cmd, headers, _ = s.login(self.admin.name, self.admin.password)
        except (OSError, AssertionError):
            return False
        finally:
            s.close()
        if cmd != "CONNECTED":
            raise AssertionError(f"{self.name} refused the admin's login: {cmd} {headers}\n{self.log_tail()}")
        return True

    def wait_ready(self) -> None:
        if self.security_file is None or self.admin is None:
            wait_accepts(self, self.ready_timeout_s, poll=0.05, probe_timeout=2.0)
        else:
            def logged_in():
                self._exited()
                return self.login_probe()

            wait_until(logged_in, f"{self.name} to accept the admin's login", self.ready_timeout_s)
        if self.tls_port is not None:
            def tls_bound():
                self._exited()
                with socket.create_connection(self.tls_addr, timeout=2.0):
                    return True

            wait_until(tls_bound, f"{self.name} to accept TCP on its TLS port", self.ready_timeout_s)
        if self.http_port is not None:
            def http_up():
                self._exited()
                return self.get("/health/live").status == 200

            wait_until(http_up, f"{self.name} to answer /health/live", self.ready_timeout_s)

    # -- HTTP ----------------------------------------------------------------

    def get(self, path: str, authorization: str | None = None) -> HttpAnswer:
        return http("GET", self.base_url + path, authorization)

    def post(self, path: str, authorization: str | None = None) -> HttpAnswer:
        return http("POST", self.base_url + path, authorization)

    def metrics(self) -> Metrics:
        a = self.get("/metrics")
        assert a.status == 200, str(a)
        return Metrics(a.body)

    def connections(self) -> float:
        """Every client connection the node counts now (all protocols)."""
        return self.metrics().total("halyard_connections")


class NodeSet:
    """Makes SecNodes; `close()` checks each for a panic and stops it."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.made: list[SecNode] = []

    def __call__(self, name: str, **kw) -> SecNode:
        n = SecNode(self.base_dir, name, **kw)
        self.made.append(n)
        return n

    def close(self) -> None:
        close_all(self.made)


@pytest.fixture
def nodes(tmp_path):
    """Factory: nodes(name, **SecNode options) -> a SecNode not yet started."""
    ns = NodeSet(tmp_path)
    yield ns
    ns.close()


@pytest.fixture(scope="module")
def module_nodes(tmp_path_factory):
    ns = NodeSet(tmp_path_factory.mktemp("nodes"))
    yield ns
    ns.close()


@pytest.fixture(scope="module")
def secure_node(module_nodes, security_file, users) -> SecNode:
    """One node per test module with the PERMISSIONS rules and HTTP."""
    return module_nodes("secure", security_file=security_file, admin=users["admin"], http=True).start()


@pytest.fixture
def clients():
    """Factory of `LoginClient`s, disconnected at teardown."""
    made: list[Client] = []

    def make(node, user: User | None, client_id: str | None = None, **kw) -> LoginClient:
        c = LoginClient(node, user.name if user else None, user.password if user else None, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.rec.errors:
            # Refused: no DISCONNECT (its receipt would never come).
            _hard_close(c.conn)
        else:
            c.close_quietly()


@pytest.fixture
def amqp_clients():
    """Factory of opened `EngineClient`s, closed at teardown."""
    made: list[EngineClient] = []

    def make(addr, user: User | None) -> EngineClient:
        c = amqp_open(addr, user.name if user else None, user.password if user else None)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def run_node_expecting_exit(tmp_path: Path, *args: str, env_extra: dict | None = None,
                            listen: str | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """`halyard node --listen ... --data-dir ... ARGS` that must exit by itself
    (a refused configuration); output captured as text."""
    require_binary()
    listen = listen or f"127.0.0.1:{free_port()}"
    data = tmp_path / f"data-{secrets.token_hex(4)}"
    cmd = [str(HALYARD_BIN), "node", "--listen", listen, "--data-dir", str(data), *args]
    env = child_env()
    env.update(env_extra or {})
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} was still running after {timeout} s (it must refuse to start); "
                             f"output: {e.stdout!r} {e.stderr!r}") from None


PHC_ARGON2ID = re.compile(r"^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
