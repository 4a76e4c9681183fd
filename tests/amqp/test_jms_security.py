"""Qpid JMS against Halyard's security features: SASL PLAIN logins checked against a security
file (--security-file), per-address permissions on producer and consumer links, and the TLS
listener (--tls-listen) with `amqps://`.

Halyard only: Artemis has no security file, so these tests do not use the `broker` fixture; the
module starts its own `halyard node` (conftest's `halyard_node`) with:

  users        alice (role producer), bob (role consumer); passwords hashed by `halyard user hash`
  orders.#     send: producer; consume, browse: consumer; create_address: both
  prices       consume: consumer; create_address: both (nobody may send)
  TLS          a test CA made with the openssl CLI; the server certificate has the SANs
               IP:127.0.0.1 and DNS:localhost, so Qpid JMS verifies the host name (its default);
               the CA is in a PKCS12 truststore made by keytool

Each jms-tool run is its own JMS connection (conftest's `Jms` with `--user/--password`). The
tests need no Artemis and run whatever AMQP_TEST_BROKERS says.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from amqp_conftest import HALYARD_BIN, Broker, Jms, Proc, free_port, halyard_node, stomp_connected, wait_until

TRUSTSTORE_PASSWORD = "changeit"
USERS = {"alice": ["producer"], "bob": ["consumer"]}
PERMISSIONS = """
[[permissions]]
match = "orders.#"
send = ["producer"]
consume = ["consumer"]
browse = ["consumer"]
create_address = ["producer", "consumer"]

[[permissions]]
match = "prices"
consume = ["consumer"]
create_address = ["producer", "consumer"]
"""


def _run(cmd: list[str], what: str, cwd: Path, input: str | None = None) -> str:
    exe = shutil.which(cmd[0]) or cmd[0]
    r = subprocess.run([exe, *cmd[1:]], input=input, capture_output=True, text=True, cwd=cwd, timeout=60)
    assert r.returncode == 0, f"{what} failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def make_pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA, a server certificate (IP:127.0.0.1, DNS:localhost) and key, and a PKCS12 truststore
    holding the CA. Returns (server cert, server key, truststore)."""
    for tool in ("openssl", "keytool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found (the TLS test makes its certificates with openssl and its "
                        "truststore with the JDK's keytool)", pytrace=False)
    (d / "ca.cnf").write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = halyard-jms-test-ca\n"
        "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n")
    (d / "server.cnf").write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = localhost\n"
        "[v3_leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\nextendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1,DNS:localhost\n")
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    _run(["openssl", "genpkey", *ec, "-out", "ca-key.pem"], "CA key", d)
    _run(["openssl", "req", "-x509", "-new", "-key", "ca-key.pem", "-config", "ca.cnf", "-extensions", "v3_ca",
          "-days", "2", "-sha256", "-out", "ca.pem"], "CA certificate", d)
    _run(["openssl", "genpkey", *ec, "-out", "server-key.pem"], "server key", d)
    _run(["openssl", "req", "-new", "-key", "server-key.pem", "-config", "server.cnf", "-out", "server.csr"],
         "server CSR", d)
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
          "-set_serial", str(secrets.randbits(63)), "-days", "2", "-sha256", "-extfile", "server.cnf",
          "-extensions", "v3_leaf", "-out", "server.pem"], "server certificate", d)
    _run(["keytool", "-importcert", "-noprompt", "-alias", "halyard-jms-test-ca", "-file", "ca.pem",
          "-keystore", "truststore.p12", "-storetype", "PKCS12", "-storepass", TRUSTSTORE_PASSWORD],
         "keytool truststore", d)
    return d / "server.pem", d / "server-key.pem", d / "truststore.p12"


def hash_password(password: str, cwd: Path) -> str:
    out = _run([str(HALYARD_BIN), "user", "hash"], "halyard user hash", cwd, input=password).strip()
    assert out.startswith("$argon2id$") and "\n" not in out, f"halyard user hash printed {out!r}"
    return out


@dataclass
class SecureHalyard:
    proc: Proc
    port: int
    tls_port: int
    truststore: Path
    passwords: dict

    @property
    def tls_url(self) -> str:
        return (f"amqps://127.0.0.1:{self.tls_port}?transport.trustStoreLocation={self.truststore}"
                f"&transport.trustStorePassword={TRUSTSTORE_PASSWORD}&transport.trustStoreType=PKCS12")

    def jms(self, user: str, log_dir: Path, password: str | None = None) -> Jms:
        """conftest's Jms runner logging in as `user` on the plain port (pass url= for TLS)."""
        pw = self.passwords[user] if password is None else password
        return Jms(Broker("halyard", "127.0.0.1", self.port, self.port, user, pw), log_dir)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    if not HALYARD_BIN.is_file():
        pytest.fail(f"halyard binary not found at {HALYARD_BIN}", pytrace=False)
    d = tmp_path_factory.mktemp("jms-security")
    cert, key, truststore = make_pki(d)
    passwords = {u: f"{u}-{secrets.token_hex(8)}" for u in USERS}
    toml = "".join(f'[users.{u}]\npassword = "{hash_password(passwords[u], d)}"\n'
                   f"roles = {json.dumps(roles)}\n\n" for u, roles in USERS.items())
    sec = d / "security.toml"
    sec.write_text(toml + PERMISSIONS)
    port, tls_port = free_port(), free_port()
    p = halyard_node("secure", port, d / "data", d, "--security-file", str(sec),
                     "--tls-listen", f"127.0.0.1:{tls_port}", "--tls-cert", str(cert), "--tls-key", str(key))
    p.start()
    try:
        wait_until(lambda: stomp_connected("127.0.0.1", port, "alice", passwords["alice"]), 30,
                   "halyard node with a security file: alice's STOMP login", p)
        p.wait_log(f"accepting TLS clients (STOMP, AMQP) listen=127.0.0.1:{tls_port}", 30)
        yield SecureHalyard(p, port, tls_port, truststore, passwords)
        assert "panicked" not in p.log_text(), p.log_tail()
    finally:
        p.stop()


def seqs(events) -> list[int]:
    return sorted(int(e["seq"]) for e in events)


def security_error(p) -> str:
    """The one `error` event of a failed run must be a JMSSecurityException (or a subclass);
    returns its text ('ExceptionClass: message')."""
    errors = p.of("error")
    assert len(errors) == 1, p.describe()
    assert errors[0].get("security") is True, f"not a JMSSecurityException: {errors[0]}"
    return errors[0]["error"]


def finish(p, ok_codes=(0,)):
    """Waits for a run started with Jms.start (runs that do not depend on each other go in
    parallel: each is a JVM start)."""
    rc = p.wait(120)
    assert rc in ok_codes, f"jms-tool exited {rc}: {p.describe()}"
    return p


def test_amqps_sasl_plain_produce_and_consume(secure: SecureHalyard, tmp_path):
    """TLS (host name verified against the test CA) + SASL PLAIN: alice sends 10 messages to
    orders.jms over amqps://, bob receives all 10 over amqps://."""
    run = uuid.uuid4().hex
    alice, bob = secure.jms("alice", tmp_path), secure.jms("bob", tmp_path)
    consumer = bob.start("consume", "--queue", "orders.jms", "--count", "10", "--first-timeout-ms", "30000",
                         "--timeout-ms", "5000", url=secure.tls_url)
    p = finish(alice.start("produce", "--queue", "orders.jms", "--count", "10", "--run", run, url=secure.tls_url))
    assert p.summary["sent"] == 10 and seqs(p.of("sent")) == list(range(10)), p.describe()
    c = finish(consumer)
    for run_ in (p, c):
        uri = run_.of("connected")[0]["uri"]
        assert uri.startswith(f"amqps://127.0.0.1:{secure.tls_port}"), uri
    got = c.of("received")
    assert seqs(got) == list(range(10)), c.describe()
    assert all(e["body"] == f"msg-{e['seq']}" and e["props"].get("run") == run for e in got), got


def test_bad_password_is_a_jms_security_exception(secure: SecureHalyard, tmp_path):
    """A wrong password over plain amqp://: SASL outcome auth, which Qpid JMS throws as
    JMSSecuritySaslException (a JMSSecurityException) from connecting; nothing is sent."""
    queue = f"orders.badpw-{uuid.uuid4().hex[:8]}"
    wrong = f"wrong-{secrets.token_hex(6)}"
    p = secure.jms("alice", tmp_path, password=wrong).run("produce", "--queue", queue, "--count", "3",
                                                         ok_codes=(1,))
    err = security_error(p)
    assert "failed to authenticate using SASL: PLAIN" in err, err
    assert p.of("connected") == [] and p.of("sent") == [], p.describe()
    c = secure.jms("bob", tmp_path).run("consume", "--queue", queue, "--timeout-ms", "1000")
    assert c.of("received") == [], "nothing was stored for the refused login"
    secure.proc.wait_log('login refused for user "alice"', 10)
    assert wrong not in secure.proc.log_text(), "the wrong password must not be logged"


def test_producer_without_send_permission_is_refused(secure: SecureHalyard, tmp_path):
    """alice logs in but may not send to `prices`: createProducer throws JMSSecurityException
    (attach refused with amqp:unauthorized-access); a new connection of hers sends to orders.x."""
    run = uuid.uuid4().hex
    alice, bob = secure.jms("alice", tmp_path), secure.jms("bob", tmp_path)
    denied = alice.start("produce", "--queue", "prices", "--count", "1")
    ok = alice.start("produce", "--queue", "orders.x", "--count", "3", "--run", run)
    finish(denied, ok_codes=(1,))
    assert len(denied.of("connected")) == 1, "the login itself succeeds"
    assert denied.of("sent") == [], denied.describe()
    err = security_error(denied)
    assert err.startswith("jakarta.jms.JMSSecurityException: "), err
    assert "[condition = amqp:unauthorized-access]" in err, err
    assert 'may not send to address "prices" (permission send)' in err, err
    assert finish(ok).summary["sent"] == 3, ok.describe()

    orders = bob.start("consume", "--queue", "orders.x", "--count", "3", "--timeout-ms", "5000")
    prices = bob.start("consume", "--queue", "prices", "--timeout-ms", "1000")
    got = finish(orders).of("received")
    assert seqs(got) == [0, 1, 2] and all(e["props"].get("run") == run for e in got), got
    assert finish(prices).of("received") == [], "the refused producer stored nothing in prices"


def test_consumer_without_consume_permission_is_refused(secure: SecureHalyard, tmp_path):
    """alice (producer) may send to orders.#, not consume: createConsumer throws
    JMSSecurityException; the message stays for bob."""
    queue = f"orders.noconsume-{uuid.uuid4().hex[:8]}"
    alice, bob = secure.jms("alice", tmp_path), secure.jms("bob", tmp_path)
    alice.run("produce", "--queue", queue, "--count", "1")
    denied = alice.run("consume", "--queue", queue, "--timeout-ms", "1000", ok_codes=(1,))
    assert denied.of("subscribed") == [] and denied.of("received") == [], denied.describe()
    err = security_error(denied)
    assert err.startswith("jakarta.jms.JMSSecurityException: "), err
    assert "[condition = amqp:unauthorized-access]" in err, err
    assert f'may not consume from address "{queue}" (permission consume)' in err, err
    got = bob.run("consume", "--queue", queue, "--count", "1", "--timeout-ms", "5000").of("received")
    assert seqs(got) == [0], got
