"""STOMP in bulk on a raw socket: a pipelined producer and a batching
consumer fast enough for backlogs of a million messages (stomp.py with a
receipt per SEND manages a few thousand a second; these do tens of
thousands).

- `SeqBodies`: bodies that carry their sequence number (`body(seq)`,
  `seq_of(body)`), all of one size, with a filler that depends on the
  number, so a delivered body can be checked byte for byte.
- `FrameReader`: an incremental frame parser for a byte stream (heart-beat
  EOLs skipped, `content-length` honoured, STOMP 1.2 header escapes undone;
  a regex per header block, as a character-at-a-time parse such as
  `harness.stomp_wire.parse_frames` is too slow at a million frames).
- `BulkProducer`: persistent SENDs with `receipt:<seq>` on one connection,
  at most `window` of them unreceipted, written in batches from one
  non-blocking select loop that reads the RECEIPTs as they come.
  `run(seqs, stop=..., check=...)` returns when every SEND is receipted or
  `stop(producer)` says so (the SENDs in flight stay in flight, e.g. for a
  SIGKILL); it raises `ProducerHeld` (an AssertionError naming how many were
  receipted) when no RECEIPT comes for `stall_s` seconds, `ConnectionLost`
  when the node closes the connection, and AssertionError on an ERROR frame
  or past `deadline_s`. `drain()` reads the RECEIPTs the node wrote before
  it died. `receipted` is a bytearray indexed by sequence number.
- `BulkConsumer`: SUBSCRIBE with `ack:client` (cumulative ACK every
  `ack_every` messages and whenever the stream pauses) or
  `ack:client-individual` (one ACK per message, written in batches), with
  `activemq.prefetchSize`; `run(on_body, done)` hands each body to
  `on_body` until `done()` holds, then reads `settle_s` longer (a duplicate
  shows up there), ACKs everything and UNSUBSCRIBEs with a receipt, and
  waits for it. It
  raises `ConsumerStalled` when no MESSAGE comes for `stall_s` seconds before
  `done()`.

Connections are opened with `harness.stomp_wire.RawConn` (CONNECT, STOMP
1.2, no heart-beats). Every wait is bounded: socket timeouts, `stall_s`,
`deadline_s`.
"""

from __future__ import annotations

import re
import select
import socket
import time
from typing import Callable, Iterable

from harness.stomp_wire import RawConn

NUL = b"\x00"
# One "name:value" header line (a regex is several times faster than
# splitting each line in Python, which counts at a million frames).
_HEADER = re.compile(r"^([^:\n]*):(.*)$", re.M)
# STOMP 1.2 header escapes. Every MESSAGE has one (`message-id:1\c5`, the
# colon of epoch:seq), and stomp_wire.unescape_12, a character at a time,
# costs more than the rest of the parse; this does the same with a regex.
_ESCAPE = re.compile(r"\\([nrc\\])")
_ESCAPED = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}


def _unescape(s: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPED[m.group(1)], s) if "\\" in s else s


class ProducerHeld(AssertionError):
    """No RECEIPT for `stall_s` seconds with SENDs in flight."""


class ConnectionLost(AssertionError):
    """The node closed (or reset) the connection."""


class ConsumerStalled(AssertionError):
    """No MESSAGE for `stall_s` seconds before the consumer was done."""


class SeqBodies:
    """Bodies of `size` bytes: a 10-digit sequence number, `|`, and a filler
    that depends on the number (so a body delivered for the wrong number,
    or cut, or mixed up with another, does not compare equal)."""

    HEAD = 11  # b"%010d|"

    def __init__(self, size: int = 1024):
        assert size > self.HEAD + 16, size
        self.size = size
        self.fill_len = size - self.HEAD
        pattern = bytes((i * 7 + 13) % 94 + 33 for i in range(251))  # printable, no NUL
        self._filler = pattern * (self.fill_len // len(pattern) + 3)

    def body(self, seq: int) -> bytes:
        off = seq % 251
        return b"%010d|" % seq + self._filler[off : off + self.fill_len]

    @staticmethod
    def seq_of(body: bytes) -> int:
        """The sequence number at the head of a body (ValueError if none)."""
        if len(body) < SeqBodies.HEAD or body[10:11] != b"|":
            raise ValueError(f"not a sequenced body: {bytes(body[:40])!r}")
        return int(body[:10])


class FrameReader:
    """Incremental STOMP frame parser: `feed(bytes)`, then `frames()` returns
    the complete frames received so far as (command, headers, body); a
    partial frame stays buffered. The first occurrence of a header wins."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def pending(self) -> int:
        return len(self.buf)

    def frames(self) -> list[tuple[str, dict[str, str], bytes]]:
        buf = self.buf
        n = len(buf)
        pos = 0
        out = []
        while pos < n:
            c = buf[pos]
            if c == 10 or c == 13:  # heart-beat EOLs between frames
                pos += 1
                continue
            head_end = buf.find(b"\n\n", pos)
            if head_end < 0:
                break
            head = buf[pos:head_end].decode("utf-8")
            if "\r" in head:
                head = head.replace("\r", "")
            command, _, rest = head.partition("\n")
            pairs = _HEADER.findall(rest)
            if "\\" in rest and command != "CONNECTED":
                pairs = [(_unescape(k), _unescape(v)) if "\\" in k or "\\" in v else (k, v) for k, v in pairs]
            # The first occurrence of a header wins.
            headers = dict(reversed(pairs))
            body_start = head_end + 2
            cl = headers.get("content-length")
            if cl is not None:
                body_end = body_start + int(cl)
                if body_end >= n:
                    break
                if buf[body_end] != 0:
                    raise AssertionError(f"{command} frame not NUL-terminated after content-length {cl}: "
                                         f"{bytes(buf[pos:pos + 200])!r}")
            else:
                body_end = buf.find(NUL, body_start)
                if body_end < 0:
                    break
            out.append((command, headers, bytes(buf[body_start:body_end])))
            pos = body_end + 1
        if pos:
            del buf[:pos]
        return out


def _error_text(headers: dict[str, str], body: bytes) -> str:
    return f"ERROR message={headers.get('message')!r} body={body[:300]!r}"


def _open(node, timeout: float) -> socket.socket:
    """A connected (STOMP 1.2 CONNECTED) socket to `node`."""
    conn = RawConn(node, timeout=timeout)
    try:
        conn.connect("1.2")
    except BaseException:
        conn.sock.close()
        raise
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn.sock


class BulkProducer:
    """Persistent SENDs with receipts, pipelined (see the module docstring)."""

    def __init__(self, node, destination: str, bodies: SeqBodies, receipted: bytearray, *,
                 window: int = 1000, batch: int = 100, stall_s: float = 30.0, io_timeout: float = 15.0):
        assert 0 < batch <= window
        self.node = node
        self.destination = destination
        self.bodies = bodies
        self.receipted = receipted
        self.window = window
        self.batch = batch
        self.stall_s = stall_s
        self.sock = _open(node, io_timeout)
        self.sock.setblocking(False)
        self.reader = FrameReader()
        self.head = (f"SEND\ndestination:{destination}\npersistent:true\n"
                     f"content-length:{bodies.size}\nreceipt:").encode()
        self.sent = 0  # SENDs written (or buffered for writing)
        self.receipts = 0  # RECEIPTs read on this connection
        self.duplicate_receipts = 0
        self.in_flight: set[int] = set()
        self.last_receipt = time.monotonic()
        self.started = time.monotonic()
        self.send_seconds = 0.0  # time inside run(), until the last RECEIPT of each
        self.closed = False

    def frame(self, seq: int) -> bytes:
        return b"%s%d\n\n%s\x00" % (self.head, seq, self.bodies.body(seq))

    # -- receipts --------------------------------------------------------------

    def _handle(self, frames) -> None:
        for command, headers, body in frames:
            if command == "RECEIPT":
                seq = int(headers["receipt-id"])
                self.in_flight.discard(seq)
                if self.receipted[seq]:
                    self.duplicate_receipts += 1
                else:
                    self.receipted[seq] = 1
                self.receipts += 1
            elif command == "ERROR":
                raise AssertionError(f"producer got an {_error_text(headers, body)} after "
                                     f"{self.receipts} receipts")
            else:
                raise AssertionError(f"producer got an unexpected {command} frame: {headers}")
        if frames:
            self.last_receipt = time.monotonic()

    def _read(self) -> None:
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionLost(f"producer connection reset ({e!r}) after {self.receipts} receipts") from None
        if not data:
            raise ConnectionLost(f"the node closed the producer connection after {self.receipts} receipts "
                                 f"({len(self.in_flight)} sends in flight)")
        self.reader.feed(data)
        self._handle(self.reader.frames())

    # -- the loop ------------------------------------------------------------

    def run(self, seqs: Iterable[int], *, stop: Callable[["BulkProducer"], bool] | None = None,
            check: Callable[[], None] | None = None, check_every_s: float = 0.25,
            deadline_s: float = 3600.0) -> bool:
        """Sends `seqs` and waits for their receipts. Returns True when all
        are receipted, False when `stop(self)` returned True first (SENDs
        may be in flight then). `check()` runs every `check_every_s` (it
        may raise to abort)."""
        it = iter(seqs)
        exhausted = False
        out = memoryview(b"")
        t0 = time.monotonic()
        deadline = t0 + deadline_s
        next_check = t0
        self.last_receipt = t0
        sock = self.sock
        try:
            while True:
                if stop is not None and stop(self):
                    return False
                if exhausted and not self.in_flight and not out:
                    return True
                if not out and not exhausted and len(self.in_flight) < self.window:
                    k = min(self.batch, self.window - len(self.in_flight))
                    parts = []
                    for _ in range(k):
                        seq = next(it, None)
                        if seq is None:
                            exhausted = True
                            break
                        parts.append(self.frame(seq))
                        self.in_flight.add(seq)
                    self.sent += len(parts)
                    out = memoryview(b"".join(parts))
                r, w, _ = select.select([sock], [sock] if out else [], [], 0.2)
                if r:
                    self._read()
                if w and out:
                    try:
                        n = sock.send(out)
                    except BlockingIOError:
                        n = 0
                    except (ConnectionResetError, BrokenPipeError) as e:
                        raise ConnectionLost(f"producer connection reset while sending ({e!r}) after "
                                             f"{self.receipts} receipts") from None
                    out = out[n:]
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + check_every_s
                    if check is not None:
                        check()
                    if self.in_flight and now - self.last_receipt > self.stall_s:
                        raise ProducerHeld(
                            f"producers were held at {self.receipts} receipts: no RECEIPT for {self.stall_s:.0f} s "
                            f"with {len(self.in_flight)} SENDs in flight ({self.sent} sent on this connection)")
                    if now > deadline:
                        raise AssertionError(f"producer not done within {deadline_s:.0f} s: {self.receipts} "
                                             f"receipts, {self.sent} sent")
        finally:
            # Until the last RECEIPT: a stall before a failure is not sending.
            self.send_seconds += max(self.last_receipt, t0) - t0

    def drain(self, timeout: float = 5.0) -> int:
        """After the node died: reads the RECEIPTs it wrote before that, until
        the connection ends (or `timeout`). Returns how many came."""
        before = self.receipts
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 18)
                if not data:
                    break
                self.reader.feed(data)
                self._handle(self.reader.frames())
        except (OSError, socket.timeout):
            pass
        return self.receipts - before

    def abort(self) -> None:
        """Closes the socket without a DISCONNECT (a held or dead connection)."""
        self.closed = True
        self.sock.close()

    def close(self, timeout: float = 15.0) -> None:
        """DISCONNECT with a receipt (if the connection is still usable), then
        close the socket."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(b"DISCONNECT\nreceipt:bye\n\n\x00")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.reader.feed(data)
                if any(c == "RECEIPT" and h.get("receipt-id") == "bye" for c, h, _ in self.reader.frames()):
                    break
        except OSError:
            pass
        finally:
            self.sock.close()


class BulkConsumer:
    """One subscription read in bulk (see the module docstring)."""

    def __init__(self, node, destination: str, *, ack: str = "client", prefetch: int = 2000,
                 ack_every: int | None = None, sub_id: str = "bulk", stall_s: float = 30.0,
                 io_timeout: float = 15.0):
        assert ack in ("client", "client-individual"), ack
        self.node = node
        self.ack_mode = ack
        self.prefetch = prefetch
        self.ack_every = ack_every or max(1, prefetch // 4)
        assert self.ack_every <= prefetch
        self.sub_id = sub_id
        self.stall_s = stall_s
        self.io_timeout = io_timeout
        self.sock = _open(node, io_timeout)
        self.reader = FrameReader()
        self.received = 0
        self.acked = 0  # messages covered by ACKs written
        self.unacked: list[str] = []  # ack ids not yet acknowledged
        self.receive_seconds = 0.0  # time inside run()
        self.done_seconds: float | None = None  # from run() until done() held
        self.closed = False
        self._early: list[bytes] = []  # MESSAGEs read before run() (with the SUBSCRIBE's receipt)
        self._subscribe(destination)

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(self.io_timeout)
        self.sock.sendall(data)

    def _recv(self, timeout: float) -> bytes | None:
        """Some bytes, None if none within `timeout`; ConnectionLost on close."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionLost(f"consumer connection reset ({e!r}) after {self.received} messages") from None
        if not data:
            raise ConnectionLost(f"the node closed the consumer connection after {self.received} messages")
        return data

    def _wait_receipt(self, rid: str, on_body: Callable[[bytes], None] | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no RECEIPT {rid} within {timeout:.0f} s (consumer, {self.received} messages)")
            data = self._recv(min(left, 1.0))
            if data is None:
                continue
            self.reader.feed(data)
            if self._handle(self.reader.frames(), on_body, want_receipt=rid):
                return

    def _subscribe(self, destination: str) -> None:
        self._send((f"SUBSCRIBE\nid:{self.sub_id}\ndestination:{destination}\nack:{self.ack_mode}\n"
                    f"activemq.prefetchSize:{self.prefetch}\nreceipt:sub\n\n\x00").encode())
        self._wait_receipt("sub", None, self.io_timeout)

    def _handle(self, frames, on_body, want_receipt: str | None = None) -> bool:
        """Handles frames; True if the RECEIPT `want_receipt` was among them.
        A MESSAGE before the subscription's receipt goes to `on_body` too
        (when there is none yet, it is kept for the first run())."""
        got = False
        for command, headers, body in frames:
            if command == "MESSAGE":
                self.received += 1
                self.unacked.append(headers["ack"])
                if on_body is not None:
                    on_body(body)
                else:
                    self._early.append(body)
            elif command == "RECEIPT":
                if headers.get("receipt-id") == want_receipt:
                    got = True
            elif command == "ERROR":
                raise AssertionError(f"consumer got an {_error_text(headers, body)} after {self.received} messages")
            else:
                raise AssertionError(f"consumer got an unexpected {command} frame: {headers}")
        return got

    def _ack(self) -> None:
        """ACKs what was received and not yet acked (cumulative: the last
        one; individual: each)."""
        if not self.unacked:
            return
        if self.ack_mode == "client":
            frame = f"ACK\nid:{self.unacked[-1]}\n\n\x00".encode()
        else:
            frame = "".join(f"ACK\nid:{a}\n\n\x00" for a in self.unacked).encode()
        self.acked += len(self.unacked)
        self.unacked.clear()
        self._send(frame)

    def run(self, on_body: Callable[[bytes], None], done: Callable[[], bool], *, settle_s: float = 1.0,
            deadline_s: float = 3600.0, check: Callable[[], None] | None = None, idle_poll_s: float = 0.1) -> None:
        """Hands every MESSAGE body to `on_body`, ACKing as it goes, until
        `done()` holds; then reads `settle_s` more (duplicates), ACKs
        everything and UNSUBSCRIBEs with a receipt, and waits for it.
        `check()` runs every 0.25 s (it may raise to abort)."""
        t0 = time.monotonic()
        deadline = t0 + deadline_s
        last_msg = t0
        next_check = t0
        for b in self._early:
            on_body(b)
        self._early.clear()
        settle_until = None
        try:
            while True:
                now = time.monotonic()
                if settle_until is None and done():
                    settle_until = now + settle_s
                    self.done_seconds = now - t0
                if settle_until is not None and now >= settle_until:
                    break
                data = self._recv(idle_poll_s)
                if data is None:
                    self._ack()  # the stream paused: ACK what we have (it may be what holds the window)
                else:
                    before = self.received
                    self.reader.feed(data)
                    self._handle(self.reader.frames(), on_body)
                    if self.received != before:
                        last_msg = time.monotonic()
                    if len(self.unacked) >= self.ack_every or (self.ack_mode == "client-individual" and self.unacked):
                        self._ack()
                now = time.monotonic()
                if check is not None and now >= next_check:
                    next_check = now + 0.25
                    check()
                if settle_until is None and now - last_msg > self.stall_s:
                    raise ConsumerStalled(f"consumer stalled: no MESSAGE for {self.stall_s:.0f} s after "
                                          f"{self.received} messages")
                if now > deadline:
                    raise AssertionError(f"consumer not done within {deadline_s:.0f} s ({self.received} messages)")
            # The last ACK, then UNSUBSCRIBE with a receipt: frames of a
            # connection are taken in order, so its RECEIPT means every ACK
            # before it was taken. (A MESSAGE still in flight is handed to
            # `on_body` and, unacked, goes back to the queue.)
            self._ack()
            self._send(f"UNSUBSCRIBE\nid:{self.sub_id}\nreceipt:acked\n\n\x00".encode())
            self._wait_receipt("acked", on_body, self.io_timeout)
        finally:
            self.receive_seconds += time.monotonic() - t0

    def abort(self) -> None:
        """Closes the socket without a DISCONNECT."""
        self.closed = True
        self.sock.close()

    def close(self, timeout: float = 15.0) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._send(b"DISCONNECT\nreceipt:bye\n\n\x00")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = self._recv(1.0)
                if data is None:
                    continue
                self.reader.feed(data)
                frames = self.reader.frames()
                if any(c == "RECEIPT" and h.get("receipt-id") == "bye" for c, h, _ in frames):
                    break
        except (OSError, AssertionError):
            pass
        finally:
            self.sock.close()
