"""A python-qpid-proton engine (sans-IO) connection pumped over a plain socket by the test.

The test decides when bytes move (`pump`), so credit, drain, settlement and heart-beats can be
observed step by step, and every inbound frame is also cut by `amqp_raw.FrameSplitter` so a test
can count, say, the transfer frames of one delivery.
"""

from __future__ import annotations

import select
import socket
import time
import uuid

from proton import Collector, Connection, Data, Delivery, Link, Message, Transport, symbol

from amqp_raw import FrameSplitter, Frame


def set_capability(terminus, capability: str | None) -> None:
    """Qpid JMS marks a node's kind with a terminus capability (queue, topic); without one,
    Artemis auto-creates an address with its default routing type (multicast)."""
    if capability:
        terminus.capabilities.put_array(False, Data.SYMBOL)
        terminus.capabilities.enter()
        terminus.capabilities.put_symbol(symbol(capability))
        terminus.capabilities.exit()


class EngineClient:
    def __init__(self, host: str, port: int, user: str | None, password: str | None,
                 max_frame_size: int | None = None, idle_timeout_s: float | None = None,
                 container: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setblocking(False)
        self.transport = Transport()
        if max_frame_size:
            self.transport.max_frame_size = max_frame_size
        if idle_timeout_s:
            self.transport.idle_timeout = idle_timeout_s
        sasl = self.transport.sasl()
        sasl.allowed_mechs("PLAIN" if user else "ANONYMOUS")
        sasl.allow_insecure_mechs = True  # PLAIN over plain TCP on loopback
        self.conn = Connection()
        self.conn.container = container or f"engine-{uuid.uuid4().hex[:8]}"
        self.conn.hostname = host
        if user:
            self.conn.user = user
            self.conn.password = password or ""
        self.collector = Collector()
        self.conn.collect(self.collector)
        self.transport.bind(self.conn)
        self.splitter = FrameSplitter()
        self.frames_in: list[Frame] = []
        self.bytes_out = 0
        self.eof = False
        self.conn.open()
        self.session = self.conn.session()
        self.session.open()
        self._tag = 0

    # -- I/O ------------------------------------------------------------------

    def pump(self, timeout: float = 0.05) -> None:
        """Moves pending output to the socket, reads what arrived (waiting up to `timeout`),
        and ticks the transport's clock (heart-beats, idle time-out)."""
        self.transport.tick(time.monotonic())
        while True:
            n = self.transport.pending()
            if n <= 0:
                break
            data = self.transport.peek(n)
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                break
            except OSError:
                self.transport.close_head()
                break
            self.bytes_out += sent
            self.transport.pop(sent)
        if self.eof:
            time.sleep(timeout)
            return
        r, _, _ = select.select([self.sock], [], [], timeout)
        if r:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self.eof = True
                self.transport.close_tail()
            elif data:
                self.frames_in.extend(self.splitter.feed(data))
                while data:
                    cap = self.transport.capacity()
                    if cap <= 0:
                        break
                    self.transport.push(data[:cap])
                    data = data[cap:]
        self.transport.tick(time.monotonic())

    def run_until(self, pred, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what} "
                    f"(eof={self.eof}, remote condition={self.conn.remote_condition})"
                )
            self.pump()

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(min(0.05, max(0.0, end - time.monotonic())))

    def opened(self) -> None:
        self.run_until(lambda: self.conn.state & Connection.REMOTE_ACTIVE, what="remote open")

    def close(self) -> None:
        try:
            self.conn.close()
            self.run_until(lambda: self.conn.state & Connection.REMOTE_CLOSED or self.eof, timeout=5)
        except AssertionError:
            pass
        finally:
            self.sock.close()

    # -- links --------------------------------------------------------------------

    def sender(self, address: str, settle: str = "unsettled", capability: str | None = "queue") -> Link:
        s = self.session.sender(f"snd-{uuid.uuid4().hex[:8]}")
        s.target.address = address
        set_capability(s.target, capability)
        s.source.address = address
        s.snd_settle_mode = Link.SND_SETTLED if settle == "settled" else Link.SND_UNSETTLED
        s.open()
        self.run_until(lambda: s.state & Link.REMOTE_ACTIVE, what=f"sender attach to {address}")
        return s

    def receiver(self, address: str, rcv_settle: str = "first", snd_settle: str = "unsettled",
                 credit: int = 0, capability: str | None = "queue") -> Link:
        r = self.session.receiver(f"rcv-{uuid.uuid4().hex[:8]}")
        r.source.address = address
        set_capability(r.source, capability)
        r.target.address = address
        r.rcv_settle_mode = Link.RCV_SECOND if rcv_settle == "second" else Link.RCV_FIRST
        r.snd_settle_mode = Link.SND_SETTLED if snd_settle == "settled" else Link.SND_UNSETTLED
        r.open()
        self.run_until(lambda: r.state & Link.REMOTE_ACTIVE, what=f"receiver attach to {address}")
        if credit:
            r.flow(credit)
        return r

    def send(self, sender: Link, msg: Message, settle: bool = False) -> Delivery:
        """Queues one message on the link (credit permitting once pumped)."""
        self._tag += 1
        d = sender.delivery(str(self._tag))
        sender.send(msg.encode())
        sender.advance()
        if settle:
            d.settle()
        return d

    def send_all(self, sender: Link, msgs: list[Message], settle: bool = False,
                 timeout: float = 30.0) -> list[Delivery]:
        """Sends each message when the link has credit; waits for every outcome unless presettled."""
        out = []
        for m in msgs:
            self.run_until(lambda: sender.credit > 0, timeout=timeout, what="credit to send")
            out.append(self.send(sender, m, settle))
            self.pump(0)
        if not settle:
            self.run_until(lambda: all(d.remote_state or d.settled for d in out), timeout=timeout,
                           what="outcomes of the sends")
        else:
            self.run_until(lambda: self.transport.pending() <= 0, timeout=timeout, what="bytes flushed")
        return out

    def take(self, receiver: Link, outcome: int | None = Delivery.ACCEPTED, settle: bool = True):
        """The next complete delivery on the link as (Message, Delivery), or None."""
        d = receiver.current
        if d is None or not d.readable or d.partial:
            return None
        data = receiver.recv(d.pending)
        receiver.advance()
        m = Message()
        m.decode(data)
        if outcome is not None and not d.settled:
            d.update(outcome)
        if settle:
            d.settle()
        return m, d

    def receive(self, receiver: Link, n: int, timeout: float = 20.0, **kw):
        got = []

        def more():
            while len(got) < n:
                x = self.take(receiver, **kw)
                if x is None:
                    return False
                got.append(x)
            return True

        self.run_until(more, timeout=timeout, what=f"{n} deliveries (have {len(got)})")
        return got
