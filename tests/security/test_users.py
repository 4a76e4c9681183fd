"""Users: `halyard user hash`, security files refused at start, STOMP logins
(CONNECT with login/passcode) accepted or refused, and the node's log never
holding a password."""

from __future__ import annotations

import pytest

from sec_helpers import (
    PHC_ARGON2ID,
    User,
    assert_login_refused,
    connect_frame,
    frame,
    hash_cli,
    login_answer,
    run_node_expecting_exit,
    security_toml,
    StompRaw,
    write_security_file,
)


# -- halyard user hash -------------------------------------------------------


def test_hash_prints_one_argon2id_phc_line():
    r = hash_cli(b"secret")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert out.endswith("\n") and out.count("\n") == 1, f"want exactly one line, got {out!r}"
    assert PHC_ARGON2ID.match(out.strip()), f"not an argon2id PHC string: {out!r}"
    # Salted: the same password never hashes to the same string twice.
    again = hash_cli(b"secret").stdout.decode().strip()
    assert PHC_ARGON2ID.match(again) and again != out.strip(), (out, again)


@pytest.mark.parametrize("stdin", [b"", b"\n"], ids=["empty", "newline-only"])
def test_hash_refuses_an_empty_password(stdin):
    # The command exists and hashes a real password (so exit 2 below is the
    # refusal, not a usage error).
    assert hash_cli(b"x").returncode == 0
    r = hash_cli(stdin)
    assert r.returncode == 2, f"exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}"
    assert r.stdout == b"", f"printed something for an empty password: {r.stdout!r}"
    err = r.stderr.decode().lower()
    assert "password" in err or "empty" in err, f"stderr does not say what is wrong: {r.stderr!r}"
    assert "panicked" not in err, r.stderr


def test_echo_hashed_password_logs_in(secure_node, users):
    """`echo PW | halyard user hash` (one trailing newline, stripped) verifies PW."""
    echo = users["echo"]
    s = StompRaw(secure_node.addr)
    try:
        cmd, headers, _ = s.login(echo.name, echo.password)
    finally:
        s.close()
    assert cmd == "CONNECTED", (cmd, headers)


# -- security files refused at start --------------------------------------------


def _alice(users) -> User:
    return users["alice"]


def _bad_file_cases(alice: User) -> dict[str, tuple[str, int, str | None]]:
    """name -> (file text, line of the error (1-based), reason in stderr or None)."""
    head = f'[users.alice]\npassword = "{alice.hash}"\nroles = ["producer"]\n\n'
    return {
        # line 7: the misspelt permission
        "unknown-permission": (head + '[[permissions]]\nmatch = "orders.#"\nsendd = ["producer"]\n',
                               7, "unknown field `sendd`"),
        # line 4: an unknown key in a user
        "unknown-user-key": (f'[users.alice]\npassword = "{alice.hash}"\nroles = ["producer"]\nrole = ["x"]\n',
                             4, "unknown field `role`"),
        # line 5: an unknown top-level table
        "unknown-table": (head + '[settings]\nx = 1\n', 5, "unknown field `settings`"),
        # line 1: not TOML at all
        "syntax": ('[users.alice\npassword = "x"\n', 1, None),
        # line 3: roles must be a list
        "wrong-type": (f'[users.alice]\npassword = "{alice.hash}"\nroles = "producer"\n', 3, None),
    }


@pytest.mark.parametrize(
    "case", ["unknown-permission", "unknown-user-key", "unknown-table", "syntax", "wrong-type"]
)
def test_bad_security_file_stops_the_node(tmp_path, users, case):
    text, line, reason = _bad_file_cases(_alice(users))[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    r = run_node_expecting_exit(tmp_path, "--security-file", str(path))
    assert r.returncode == 2, f"exit {r.returncode}; stderr {r.stderr!r}"
    assert str(path) in r.stderr, f"stderr does not name {path}: {r.stderr!r}"
    assert f"line {line}" in r.stderr, f"stderr does not say line {line}: {r.stderr!r}"
    if reason:
        assert reason in r.stderr, f"stderr does not say {reason!r}: {r.stderr!r}"
    assert "panicked" not in r.stderr, r.stderr


def test_security_file_from_the_environment(tmp_path, users):
    """HALYARD_SECURITY_FILE is read like --security-file (a bad one stops the node)."""
    text, line, reason = _bad_file_cases(_alice(users))["unknown-permission"]
    path = tmp_path / "env.toml"
    path.write_text(text)
    r = run_node_expecting_exit(tmp_path, env_extra={"HALYARD_SECURITY_FILE": str(path)})
    assert r.returncode == 2, f"exit {r.returncode}; stderr {r.stderr!r}"
    assert str(path) in r.stderr and f"line {line}" in r.stderr and reason in r.stderr, r.stderr


def test_missing_security_file_stops_the_node(tmp_path):
    path = tmp_path / "no-such-file.toml"
    r = run_node_expecting_exit(tmp_path, "--security-file", str(path))
    assert r.returncode != 0, f"started without its security file; stderr {r.stderr!r}"
    assert str(path) in r.stderr, r.stderr
    assert "panicked" not in r.stderr, r.stderr


def test_role_held_by_no_user_is_fine(nodes, users, tmp_path):
    admin = users["admin"]
    path = write_security_file(
        tmp_path / "ghosts.toml",
        [admin],
        [{"match": "#", "send": ["admin", "nobody-has-this-role"], "consume": ["ghost"]}],
    )
    assert "nobody-has-this-role" in path.read_text()
    n = nodes("ghosts", security_file=path, admin=admin).start()
    assert n.alive()


# -- STOMP login ---------------------------------------------------------------


def test_correct_login_is_connected(secure_node, users):
    for name in ("admin", "alice", "eve"):  # eve holds no role: she may still log in
        u = users[name]
        s = StompRaw(secure_node.addr)
        try:
            cmd, headers, _ = s.login(u.name, u.password)
            assert cmd == "CONNECTED", (name, cmd, headers)
            assert headers.get("version") == "1.2", headers
        finally:
            s.close()


REFUSALS = {
    "wrong-password": lambda u: (u["alice"].name, "not-" + u["alice"].password),
    "unknown-user": lambda u: ("mallory", u["alice"].password),
    "missing-login": lambda u: (None, u["alice"].password),
    "missing-passcode": lambda u: (u["alice"].name, None),
    "no-credentials": lambda u: (None, None),
    "empty-passcode": lambda u: (u["alice"].name, ""),
    "other-users-password": lambda u: (u["alice"].name, u["bob"].password),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_login_gets_only_an_error_and_is_closed(secure_node, users, case):
    login, passcode = REFUSALS[case](users)
    frames, closed = login_answer(secure_node.addr, login, passcode)
    assert_login_refused(frames, closed)


def test_frames_after_a_refused_connect_do_nothing(secure_node, users, clients):
    """A client that does not wait for CONNECTED: the SEND behind a refused
    CONNECT is not stored."""
    alice, bob = users["alice"], users["bob"]
    payload = connect_frame(alice.name, "wrong") + frame(
        "SEND", {"destination": "/queue/orders.eu.sneaky", "receipt": "r1"}, b"sneaked-in"
    )
    frames, closed = StompRaw(secure_node.addr).exchange(payload)
    assert_login_refused(frames, closed)
    p = clients(secure_node, alice)
    p.send("/queue/orders.eu.sneaky", "sentinel")
    c = clients(secure_node, bob)
    c.subscribe("/queue/orders.eu.sneaky", "s")
    c.wait_for_body("sentinel", sub="s")
    assert [m.body for m in c.messages("s")] == ["sentinel"], "a SEND behind a refused CONNECT was stored"


def test_login_refusals_are_logged_without_passwords(secure_node, users, clients):
    """Every refusal is logged with "login refused" and the user name; no
    password, right or wrong, ever appears in the node's log."""
    pos = secure_node.log_pos()
    alice = users["alice"]
    wrong = "wrong-" + alice.password + "-zz"
    assert_login_refused(*login_answer(secure_node.addr, alice.name, wrong))
    assert_login_refused(*login_answer(secure_node.addr, "mallory", "mallory-secret-9931"))
    secure_node.wait_log(r"login refused.*\balice\b|\balice\b.*login refused", since=pos)
    secure_node.wait_log(r"login refused.*\bmallory\b|\bmallory\b.*login refused", since=pos)
    # Successful logins of every user, too, before the log is read.
    for u in users.values():
        clients(secure_node, u).disconnect()
    text = secure_node.log_text()
    leaked = [p for p in [wrong, "mallory-secret-9931", *(u.password for u in users.values())] if p in text]
    assert not leaked, f"passwords in the node's log {secure_node.log_path}: {leaked}"
    # Nor the security file's hashes.
    hashes = [u.hash for u in users.values() if u.hash in text]
    assert not hashes, f"password hashes in the node's log: {hashes}"


def test_security_toml_renders_every_user():
    """The file writer itself (a broken writer would make every test above moot)."""
    u = User("zed", "pw", ("a", "b"), "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
    text = security_toml([u], [{"match": "x.#", "send": ["a"]}])
    assert '[users.zed]\npassword = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"\nroles = ["a", "b"]' in text
    assert '[[permissions]]\nmatch = "x.#"\nsend = ["a"]' in text
