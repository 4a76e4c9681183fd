"""Connection limits: `--max-connections N` refuses the connection beyond N
(STOMP ERROR "too many connections...", AMQP close with
amqp:resource-limit-exceeded); `--max-pending-connections N` counts the
connections that have not finished CONNECT / AMQP open and refuses new ones
beyond it ("too many connections waiting to log in"). Connections already
there work on; a freed slot takes the next client. The node's
`halyard_connections` gauge says when the node has seen a connection come
or go, so nothing sleeps."""

from __future__ import annotations

import socket

from amqp_raw import SASL_HEADER

from sec_helpers import (
    StompRaw,
    amqp_client,
    amqp_closed_condition,
    connect_frame,
    wait_until,
)

LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"


def refused_message(addr) -> str:
    """A STOMP CONNECT that must be refused: one ERROR, then the close."""
    frames, closed = StompRaw(addr).exchange(connect_frame())
    assert [f[0] for f in frames] == ["ERROR"], f"want one ERROR, got {frames!r}"
    assert closed, "the refused connection stayed open"
    return frames[0][1].get("message", "")


def wait_connections(node, n: int) -> None:
    wait_until(lambda: node.connections() == n, f"{node.name} to count {n} client connections")


def test_max_connections(nodes, clients):
    n = nodes("max-conn", http=True, extra_args=["--max-connections", "3"]).start()
    wait_connections(n, 0)  # the start-up probe is gone
    held = [clients(n, None) for _ in range(3)]
    wait_connections(n, 3)

    msg = refused_message(n.addr)
    assert msg.startswith("too many connections"), msg
    assert "waiting to log in" not in msg, msg
    names = amqp_closed_condition(amqp_client(n.addr, None, None))
    assert LIMIT_EXCEEDED in names, f"AMQP beyond the limit: {names}"

    # The three work on.
    held[1].subscribe("/queue/limits", "s")
    held[0].send("/queue/limits", "still-working")
    held[1].wait_for_body("still-working", sub="s")
    assert not any(c.rec.errors or c.rec.disconnected for c in held)

    # One leaves: the next client gets in.
    held[2].disconnect()
    wait_connections(n, 2)
    newcomer = clients(n, None)
    newcomer.send("/queue/limits", "newcomer")
    held[1].wait_for_body("newcomer", sub="s")


def test_max_pending_connections(nodes, clients):
    n = nodes("max-pending", http=True, extra_args=["--max-pending-connections", "3"]).start()
    wait_connections(n, 0)
    logged_in = clients(n, None)
    logged_in.subscribe("/queue/pending", "s")

    # Three connections that have not finished logging in: one silent, one
    # in the middle of its CONNECT frame, one after the AMQP SASL header.
    silent = socket.create_connection(n.addr, timeout=10)
    half_stomp = socket.create_connection(n.addr, timeout=10)
    half_stomp.sendall(b"CONNECT\naccept-version:1.2\nhost:loc")
    half_amqp = socket.create_connection(n.addr, timeout=10)
    half_amqp.sendall(SASL_HEADER)
    try:
        wait_connections(n, 4)

        msg = refused_message(n.addr)
        assert msg.startswith("too many connections waiting to log in"), msg
        names = amqp_closed_condition(amqp_client(n.addr, None, None))
        assert LIMIT_EXCEEDED in names, f"AMQP beyond the pending limit: {names}"

        # The logged-in connection is not one of them, and works on.
        logged_in.send("/queue/pending", "still-working")
        logged_in.wait_for_body("still-working", sub="s")
        assert not logged_in.rec.errors and not logged_in.rec.disconnected

        # One waiting connection goes: a new client logs in.
        silent.close()
        wait_connections(n, 3)
        s = StompRaw(n.addr)
        try:
            cmd, headers, _ = s.login()
            assert cmd == "CONNECTED", (cmd, headers)
        finally:
            s.close()
    finally:
        for sock in (silent, half_stomp, half_amqp):
            sock.close()
