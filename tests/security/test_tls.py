"""TLS client listeners (`--tls-listen`, `--tls-cert`, `--tls-key`,
`--tls-client-ca`), with a CA, a server certificate (IP 127.0.0.1, DNS
localhost) and client certificates made by the `openssl` CLI: STOMP
(stomp.py's set_ssl, and raw TLS sockets) and AMQP (python-qpid-proton
`amqps://`) on the same broker as the plain port; TLS 1.2 and 1.3; with a
client CA the certificate's CN is the user (no password), a missing or
foreign certificate fails the handshake; the TLS port is bound only while
the node is live."""

from __future__ import annotations

import socket
import ssl

import pytest
from proton import ConnectionException, LinkException, Message, SSLDomain
from proton.reactor import LinkOption
from proton.utils import BlockingConnection

from harness.node import free_port

from amqp_engine import set_capability
from sec_helpers import (
    StompRaw,
    assert_login_refused,
    connect_frame,
    denied,
    frame,
    login_answer,
    run_node_expecting_exit,
    send_expect,
    subscribe_expect,
    tls_context,
    wait_until,
)

FAILOVER_S = 30.0


@pytest.fixture(scope="module")
def tls_node(module_nodes, security_file, users, pki):
    """TLS with passwords (no client CA)."""
    return module_nodes("tls", security_file=security_file, admin=users["admin"], tls=pki).start()


@pytest.fixture(scope="module")
def mtls_node(module_nodes, security_file, users, pki):
    """TLS that requires a client certificate signed by the test CA."""
    return module_nodes("mtls", security_file=security_file, admin=users["admin"], tls=pki, client_ca=True).start()


# -- passwords over TLS --------------------------------------------------------


def test_stomp_over_tls_reaches_the_same_broker(tls_node, users, pki, clients):
    alice, bob = users["alice"], users["bob"]
    p = clients(tls_node, alice, addr=tls_node.tls_addr, tls=(pki, None))
    version = p.conn.transport.socket.version()
    assert version in ("TLSv1.2", "TLSv1.3"), version
    p.send("/queue/orders.eu.tls", "over-tls")
    # Read on the plain port...
    c = clients(tls_node, bob)
    c.subscribe("/queue/orders.eu.tls", "s")
    assert c.wait_for_body("over-tls", sub="s").body == "over-tls"
    # ...and the other way round.
    c2 = clients(tls_node, bob, addr=tls_node.tls_addr, tls=(pki, None))
    c2.subscribe("/queue/orders.eu.tls2", "s")
    p2 = clients(tls_node, alice)
    p2.send("/queue/orders.eu.tls2", "from-plain")
    assert c2.wait_for_body("from-plain", sub="s").body == "from-plain"
    # Permissions hold over TLS as on the plain port: the ERROR, then the
    # close (seen on a raw TLS socket: stomp.py does not notice a close over TLS).
    assert send_expect(p, "/queue/orders.new", "x") == denied("alice", "send", "orders.new")
    s = StompRaw(tls_node.tls_addr, tls_context(pki))
    cmd, headers, _ = s.login(alice.name, alice.password)
    assert cmd == "CONNECTED", headers
    frames, closed = s.exchange(frame("SEND", {"destination": "/queue/orders.new", "receipt": "r"}, b"x"))
    assert [(f[0], f[1].get("message")) for f in frames] == [("ERROR", denied("alice", "send", "orders.new"))], frames
    assert closed, "the TLS connection stayed open after the denial"


def test_the_node_presents_the_configured_certificate(tls_node, pki):
    s = StompRaw(tls_node.tls_addr, tls_context(pki))
    try:
        cert = s.sock.getpeercert()
    finally:
        s.close()
    sans = set(cert.get("subjectAltName", ()))
    assert ("IP Address", "127.0.0.1") in sans and ("DNS", "localhost") in sans, cert
    issuer = dict(x[0] for x in cert["issuer"])
    assert issuer.get("commonName") == "halyard-test-ca", cert


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_tls_versions(tls_node, users, pki, version):
    alice = users["alice"]
    s = StompRaw(tls_node.tls_addr, tls_context(pki, min_version=version, max_version=version))
    try:
        assert s.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        cmd, headers, _ = s.login(alice.name, alice.password)
        assert cmd == "CONNECTED", headers
    finally:
        s.close()


def test_wrong_password_over_tls_is_refused(tls_node, users, pki):
    alice = users["alice"]
    assert_login_refused(*login_answer(tls_node.tls_addr, alice.name, "not-" + alice.password, tls=tls_context(pki)))
    # No client certificate without --tls-client-ca: a login is needed.
    assert_login_refused(*login_answer(tls_node.tls_addr, tls=tls_context(pki)))


def test_plaintext_on_the_tls_port_gets_no_stomp(tls_node, users):
    admin = users["admin"]
    with socket.create_connection(tls_node.tls_addr, timeout=10) as s:
        s.sendall(connect_frame(admin.name, admin.password))
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError(f"the TLS port kept a plaintext client open; got {data!r}") from None
    assert b"CONNECTED" not in data, data


class QueueCapability(LinkOption):
    """The `queue` terminus capability, as Qpid JMS sends it."""

    def apply(self, link):
        set_capability(link.target if link.is_sender else link.source, "queue")


def amqps(node, pki, user: str | None, password: str | None, client: str | None = None) -> BlockingConnection:
    """proton's BlockingConnection over amqps://, the node's certificate
    verified for the name localhost; SASL PLAIN with a user, else EXTERNAL
    or ANONYMOUS (with `client`'s certificate naming the user)."""
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(str(pki.ca))
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, str(pki.ca))
    if client is not None:
        cert, key = pki.clients[client]
        domain.set_credentials(str(cert), str(key), None)
    kw = {"user": user, "password": password, "allowed_mechs": "PLAIN"} if user else {"allowed_mechs": "EXTERNAL ANONYMOUS"}
    return BlockingConnection(
        f"amqps://127.0.0.1:{node.tls_port}", ssl_domain=domain, sni="localhost", timeout=15, **kw
    )


def test_amqps_with_sasl_plain(tls_node, users, pki):
    alice, bob = users["alice"], users["bob"]
    p = amqps(tls_node, pki, alice.name, alice.password)
    try:
        snd = p.create_sender("orders.eu.amqps", options=QueueCapability())
        snd.send(Message(body="over-amqps"))
    finally:
        p.close()
    c = amqps(tls_node, pki, bob.name, bob.password)
    try:
        rcv = c.create_receiver("orders.eu.amqps", credit=10, options=QueueCapability())
        m = rcv.receive(timeout=15)
        rcv.accept()
        assert m.body == "over-amqps"
    finally:
        c.close()
    with pytest.raises(ConnectionException) as e:
        amqps(tls_node, pki, alice.name, "not-" + alice.password).close()
    assert "unauthorized-access" in str(e.value), str(e.value)


# -- client certificates -------------------------------------------------------


def test_client_certificate_is_the_login(mtls_node, users, pki, clients):
    """alice's certificate, no login header: connected as alice (she may
    send, not consume); bob's certificate: he consumes what she sent."""
    a = clients(mtls_node, None, addr=mtls_node.tls_addr, tls=(pki, "alice"))
    assert send_expect(a, "/queue/orders.eu.cert", "by-certificate") == "receipt"
    assert subscribe_expect(a, "/queue/orders.eu.cert", "s") == denied("alice", "consume", "orders.eu.cert")
    b = clients(mtls_node, None, addr=mtls_node.tls_addr, tls=(pki, "bob"))
    b.subscribe("/queue/orders.eu.cert", "s")
    assert b.wait_for_body("by-certificate", sub="s").body == "by-certificate"


def test_amqps_client_certificate_is_the_user(mtls_node, pki):
    """AMQP over the client-CA listener without a password (SASL EXTERNAL or
    ANONYMOUS): the certificate names the user (alice may send, not consume)."""
    c = amqps(mtls_node, pki, None, None, client="alice")
    try:
        snd = c.create_sender("orders.eu.amqps-cert", options=QueueCapability())
        snd.send(Message(body="by-certificate"))
        with pytest.raises(LinkException) as e:
            c.create_receiver("orders.eu.amqps-cert", options=QueueCapability())
        assert "amqp:unauthorized-access" in str(e.value), str(e.value)
    finally:
        c.close()


def _refused_without_a_good_certificate(addr, ctx, users) -> str:
    """The TLS handshake fails (now, or at the first read under TLS 1.3,
    where the client's handshake ends before the server checks it); a
    CONNECT with a valid password never gets CONNECTED. Returns what happened."""
    alice = users["alice"]
    try:
        s = StompRaw(addr, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return f"handshake failed: {e!r}"
    frames, closed = s.exchange(connect_frame(alice.name, alice.password))
    assert "CONNECTED" not in [f[0] for f in frames], frames
    assert not frames, f"the server spoke STOMP to a client without a good certificate: {frames}"
    assert closed, "the connection stayed open"
    return f"closed after the handshake ({s.error!r})"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("cert", [None, "alice-rogue"], ids=["no-certificate", "foreign-ca"])
def test_handshake_fails_without_a_certificate_from_the_client_ca(mtls_node, users, pki, cert, version):
    ctx = tls_context(pki, cert, min_version=version, max_version=version)
    what = _refused_without_a_good_certificate(mtls_node.tls_addr, ctx, users)
    if version == ssl.TLSVersion.TLSv1_2:
        # Under TLS 1.2 the server's verdict comes within the handshake.
        assert what.startswith("handshake failed"), what


def test_certificate_of_an_unknown_user_is_refused(mtls_node, pki):
    """mallory's certificate is signed by the CA, but mallory is no user."""
    try:
        s = StompRaw(mtls_node.tls_addr, tls_context(pki, "mallory"))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return  # refused in the handshake: fine too
    frames, closed = s.exchange(connect_frame())
    assert "CONNECTED" not in [f[0] for f in frames], frames
    if frames:
        assert_login_refused(frames, closed)
    assert closed


def test_plain_port_of_a_client_ca_node_still_takes_passwords(mtls_node, users):
    alice = users["alice"]
    s = StompRaw(mtls_node.addr)
    try:
        cmd, headers, _ = s.login(alice.name, alice.password)
        assert cmd == "CONNECTED", headers
    finally:
        s.close()


# -- bound only while live -------------------------------------------------------


def test_tls_port_is_bound_only_while_live(nodes, security_file, users, pki, clients, tmp_path):
    admin, alice = users["admin"], users["alice"]
    shared = tmp_path / "pair-shared"
    shared.mkdir()
    common = dict(security_file=security_file, admin=admin, tls=pki, data_dir=shared)
    primary = nodes("primary", extra_args=["--role", "primary", "--lock-dir", str(shared)], **common)
    backup = nodes("backup", extra_args=["--role", "backup", "--lock-dir", str(shared)], **common)
    primary.start()
    backup.start_backup(backup.log_pos())

    for addr in (backup.addr, backup.tls_addr):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=2).close()

    primary.kill9()
    ctx = tls_context(pki)

    def tls_login():
        if not backup.alive():
            raise AssertionError(f"backup exited\n{backup.log_tail()}")
        s = StompRaw(backup.tls_addr, ctx, timeout=5)
        try:
            return s.login(alice.name, alice.password)[0] == "CONNECTED"
        finally:
            s.close()

    wait_until(tls_login, "the backup's TLS port to take a login after the failover", FAILOVER_S)
    c = clients(backup, alice, addr=backup.tls_addr, tls=(pki, None))
    assert send_expect(c, "/queue/orders.eu.after-failover", "x") == "receipt"


# -- TLS settings refused at start -------------------------------------------------


def test_non_loopback_tls_listener_needs_a_security_file(tmp_path, pki):
    r = run_node_expecting_exit(
        tmp_path, "--tls-listen", f"0.0.0.0:{free_port()}", "--tls-cert", str(pki.server_cert),
        "--tls-key", str(pki.server_key),
    )
    assert r.returncode == 2, f"exit {r.returncode}; stderr {r.stderr!r}"
    assert "--security-file" in r.stderr and "--allow-anonymous" in r.stderr, r.stderr


def test_incomplete_or_bad_tls_settings_stop_the_node(tmp_path, pki, security_file):
    tls = ["--tls-listen", f"127.0.0.1:{free_port()}"]
    sec = ["--security-file", str(security_file)]
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        # (arguments, what stderr must contain (lower case))
        (sec + tls + ["--tls-cert", str(pki.server_cert)], "tls"),  # no key
        (sec + tls + ["--tls-cert", str(junk), "--tls-key", str(pki.server_key)], str(junk).lower()),
        # Client certificates name users: they need a security file.
        (tls + ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                "--tls-client-ca", str(pki.ca)], "security"),
    ]
    for args, needle in cases:
        r = run_node_expecting_exit(tmp_path, *args)
        assert r.returncode != 0, f"{args}: started; stderr {r.stderr!r}"
        assert needle in r.stderr.lower(), f"{args}: stderr does not mention {needle!r}: {r.stderr!r}"
        assert "panicked" not in r.stderr, r.stderr
