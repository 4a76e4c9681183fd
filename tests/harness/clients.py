"""`Client`: a connected stomp.py 1.2 client whose listener (`Recorder`)
records every frame it receives, so tests wait on conditions rather than
sleeping."""

from __future__ import annotations

import threading
import uuid

import stomp

# Generous bound for waits on the broker; a healthy run needs a fraction.
WAIT_S = 60.0


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
    """A connected stomp.py 1.2 client of one node that records what it receives."""

    def __init__(self, node, client_id: str | None = None, cv: threading.Condition | None = None):
        self.node = node
        self.rec = Recorder(cv)
        self.conn = stomp.Connection12([node.addr], heartbeats=(0, 0), reconnect_attempts_max=1)
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

    # -- STOMP ---------------------------------------------------------------

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

    def close_quietly(self, timeout: float = 5.0) -> None:
        """DISCONNECT, waiting at most `timeout` for its receipt: a node that
        stopped reading this connection (a producer held at a limit) never
        answers, and a teardown must not hang on it. Then the socket is
        dropped if it is still open."""

        def bye() -> None:
            try:
                self.disconnect()
            except Exception:
                pass

        t = threading.Thread(target=bye, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            try:
                self.conn.transport.running = False
                self.conn.transport.disconnect_socket()
            except Exception:
                pass
