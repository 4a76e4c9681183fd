"""The HTTP endpoint with a security file: /api/* and the console need HTTP
Basic credentials of a user with `manage` on halyard.management (401 with a
Basic challenge without them, 403 with a JSON error naming `manage` for a
user without it); /metrics and /health/* stay open; the login-failure and
authorization-denied counters follow what clients did."""

from __future__ import annotations

import pytest

from sec_helpers import (
    assert_login_refused,
    amqp_client,
    amqp_closed_condition,
    basic,
    denied,
    login_answer,
    send_expect,
    wait_until,
)

CHALLENGE = 'Basic realm="halyard"'
PROTECTED = ["/api/queues", "/api/node", "/api/connections", "/"]


@pytest.mark.parametrize("path", ["/metrics", "/health/live", "/health/ready"])
def test_open_endpoints_need_no_credentials(secure_node, path):
    a = secure_node.get(path)
    assert a.status == 200, str(a)


@pytest.mark.parametrize("path", PROTECTED)
def test_no_or_bad_credentials_get_401(secure_node, users, path):
    admin = users["admin"]
    for auth in (
        None,
        basic(admin.name, "not-" + admin.password),
        basic("mallory", admin.password),
        "Basic !!!not-base64!!!",
        "Bearer " + admin.password,
    ):
        a = secure_node.get(path, auth)
        assert a.status == 401, f"{auth!r}: {a}"
        assert a.headers.get("www-authenticate") == CHALLENGE, f"{auth!r}: {a}"


@pytest.mark.parametrize("path", PROTECTED)
def test_user_without_manage_gets_403(secure_node, users, path):
    for name in ("alice", "eve"):
        u = users[name]
        a = secure_node.get(path, basic(u.name, u.password))
        assert a.status == 403, f"{name}: {a}"
        if path.startswith("/api/"):
            assert a.content_type.startswith("application/json"), str(a)
            body = a.json()
            assert isinstance(body, dict) and "error" in body, str(a)
            assert "manage" in str(body["error"]), str(a)


def test_manager_gets_the_api_and_the_console(secure_node, users):
    admin = users["admin"]
    auth = basic(admin.name, admin.password)
    a = secure_node.get("/api/queues", auth)
    assert a.status == 200 and a.content_type.startswith("application/json"), str(a)
    assert "queues" in a.json(), str(a)
    a = secure_node.get("/api/node", auth)
    assert a.status == 200 and a.json().get("state") == "live", str(a)
    a = secure_node.get("/", auth)
    assert a.status == 200 and a.content_type.startswith("text/html"), str(a)


def test_management_actions_are_refused_without_manage(secure_node, users, clients):
    """A purge by alice is refused (403) and purges nothing; the admin's works."""
    admin, alice = users["admin"], users["alice"]
    p = clients(secure_node, alice)
    for i in range(3):
        p.send("/queue/orders.eu.mgmt", f"m{i}")
    auth = basic(admin.name, admin.password)

    def depth():
        q = {q["name"]: q for q in secure_node.get("/api/queues", auth).json()["queues"]}
        return q.get("orders.eu.mgmt", {}).get("messages")

    wait_until(lambda: depth() == 3, "depth 3 on orders.eu.mgmt")
    a = secure_node.post("/api/queues/orders.eu.mgmt/purge", basic(alice.name, alice.password))
    assert a.status == 403, str(a)
    assert "manage" in str(a.json().get("error")), str(a)
    a = secure_node.post("/api/queues/orders.eu.mgmt/purge")
    assert a.status == 401 and a.headers.get("www-authenticate") == CHALLENGE, str(a)
    assert depth() == 3, "a refused purge removed messages"
    a = secure_node.post("/api/queues/orders.eu.mgmt/purge", auth)
    assert a.status == 200, str(a)
    wait_until(lambda: depth() == 0, "depth 0 after the admin's purge")


def test_login_failure_and_denial_counters(secure_node, users, clients):
    m0 = secure_node.metrics()
    for name in ("halyard_login_failures", "halyard_authorization_denied"):
        assert m0.family(name).type == "counter", f"{name}: {m0.family(name).type}"
    fail0 = m0.total("halyard_login_failures_total")
    deny0 = m0.total("halyard_authorization_denied_total")

    alice = users["alice"]
    # Three failed logins: two STOMP, one AMQP (SASL PLAIN).
    assert_login_refused(*login_answer(secure_node.addr, alice.name, "nope"))
    assert_login_refused(*login_answer(secure_node.addr, "mallory", "nope"))
    amqp_closed_condition(amqp_client(secure_node.addr, alice.name, "nope"))

    def failures():
        v = secure_node.metrics().total("halyard_login_failures_total")
        return v if v == fail0 + 3 else None

    wait_until(failures, f"halyard_login_failures_total == {fail0 + 3}")
    # A successful login counts nothing.
    c = clients(secure_node, alice)
    # Two denials.
    assert send_expect(c, "/queue/orders.new", "x") == denied("alice", "send", "orders.new")
    c = clients(secure_node, users["eve"])
    assert send_expect(c, "/queue/orders.eu.x", "x") == denied("eve", "send", "orders.eu.x")

    def denials():
        v = secure_node.metrics().total("halyard_authorization_denied_total")
        return v if v == deny0 + 2 else None

    wait_until(denials, f"halyard_authorization_denied_total == {deny0 + 2}")
    m = secure_node.metrics()
    assert m.total("halyard_login_failures_total") == fail0 + 3, "a successful login counted as a failure"
