"""Who may listen where: without a security file a non-loopback --listen
refuses to start (exit 2, naming --security-file and --allow-anonymous)
unless --allow-anonymous is given; loopback stays anonymous as before; with
a security file a non-loopback listener starts and every client logs in."""

from __future__ import annotations

import pytest
from proton import Delivery, Message

from harness.node import free_port
from harness.stomp_wire import stomp_probe
from sec_helpers import (
    StompRaw,
    amqp_open,
    assert_login_refused,
    login_answer,
    open_link,
    run_node_expecting_exit,
    wait_attached,
)


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]"])
def test_non_loopback_listen_without_security_file_refused(tmp_path, host):
    r = run_node_expecting_exit(tmp_path, listen=f"{host}:{free_port()}")
    assert r.returncode == 2, f"exit {r.returncode}; stdout {r.stdout!r}; stderr {r.stderr!r}"
    assert "--security-file" in r.stderr and "--allow-anonymous" in r.stderr, (
        f"the message does not name --security-file and --allow-anonymous: {r.stderr!r}"
    )
    assert "panicked" not in r.stderr, r.stderr


def test_allow_anonymous_starts_on_every_interface(nodes):
    n = nodes("anon", listen_host="0.0.0.0", extra_args=["--allow-anonymous"]).start()
    assert stomp_probe(n.addr)[0], "no anonymous CONNECTED on 127.0.0.1"
    c = amqp_open(n.addr, None, None)
    try:
        s = wait_attached(c, open_link(c, "sender", "anon.q"))
        assert c.send_all(s, [Message(body="hi")])[0].remote_state == Delivery.ACCEPTED
    finally:
        c.close()


def test_loopback_without_security_file_stays_anonymous(nodes):
    n = nodes("loopback").start()
    s = StompRaw(n.addr)
    try:
        cmd, headers, _ = s.login()
        assert cmd == "CONNECTED", headers
    finally:
        s.close()
    # A login and passcode are not checked either (there are no users).
    s = StompRaw(n.addr)
    try:
        cmd, headers, _ = s.login("whoever", "whatever")
        assert cmd == "CONNECTED", headers
    finally:
        s.close()


def test_security_file_allows_a_non_loopback_listener(nodes, security_file, users):
    admin = users["admin"]
    n = nodes("secure-any", security_file=security_file, admin=admin, listen_host="0.0.0.0").start()
    assert_login_refused(*login_answer(n.addr))
    s = StompRaw(n.addr)
    try:
        cmd, headers, _ = s.login(admin.name, admin.password)
        assert cmd == "CONNECTED", headers
    finally:
        s.close()
