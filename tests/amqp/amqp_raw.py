"""AMQP 1.0 at the byte level, for tests that need full control of what goes on the wire.

`RawAmqp` opens a TCP connection, does the SASL layer (PLAIN with a user, else ANONYMOUS),
sends the AMQP protocol header and an `open`, and then lets the test write any frame (good or
bad) and read the peer's frames back, decoded with python-qpid-proton's type codec (`Data`).
Nothing here sends empty frames on its own: a `RawAmqp` that is not written to is a silent
client. `FrameSplitter` cuts a byte stream into protocol headers and frames; the engine client
uses it to count the broker's transfer frames.

Performative descriptor codes (AMQP 1.0 part 2.7 and 5.3): open 0x10, begin 0x11, attach 0x12,
flow 0x13, transfer 0x14, disposition 0x15, detach 0x16, end 0x17, close 0x18; SASL mechanisms
0x40, init 0x41, challenge 0x42, response 0x43, outcome 0x44; error 0x1d.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field

from proton import Array, Data, Described, symbol, ulong, uint

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(0x40, 0x45)
NAMES = {
    0x10: "open", 0x11: "begin", 0x12: "attach", 0x13: "flow", 0x14: "transfer",
    0x15: "disposition", 0x16: "detach", 0x17: "end", 0x18: "close",
    0x40: "sasl-mechanisms", 0x41: "sasl-init", 0x42: "sasl-challenge", 0x43: "sasl-response",
    0x44: "sasl-outcome",
}


def as_list(value) -> list:
    """A multiple field (AMQP: one value or an array of them) as a list."""
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def encode_value(value) -> bytes:
    d = Data()
    d.put_object(value)
    return bytes(d.encode())


def performative(code: int, fields: list) -> bytes:
    return encode_value(Described(ulong(code), fields))


def frame(body: bytes, channel: int = 0, frame_type: int = 0) -> bytes:
    """An AMQP (type 0) or SASL (type 1) frame with a 2-word header."""
    return struct.pack(">IBBH", 8 + len(body), 2, frame_type, channel) + body


@dataclass
class Frame:
    frame_type: int  # 0 AMQP, 1 SASL; -1 for a protocol header
    channel: int
    size: int
    body: bytes
    descriptor: int | None = None
    fields: list | None = None
    payload: bytes = b""  # what follows the performative (a transfer's message bytes)
    header: bytes = b""  # the 8 bytes of a protocol header

    @property
    def name(self) -> str:
        if self.frame_type == -1:
            return f"header {self.header!r}"
        if self.descriptor is None:
            return "empty"
        return NAMES.get(self.descriptor, hex(self.descriptor))

    def field(self, i: int, default=None):
        if self.fields is None or i >= len(self.fields):
            return default
        return self.fields[i]


def decode_frame(frame_type: int, channel: int, size: int, body: bytes) -> Frame:
    f = Frame(frame_type, channel, size, body)
    if body:
        d = Data()
        n = d.decode(body)
        d.rewind()
        d.next()
        obj = d.get_object()
        if isinstance(obj, Described):
            f.descriptor = int(obj.descriptor) if not isinstance(obj.descriptor, str) else None
            f.fields = list(obj.value) if isinstance(obj.value, (list, tuple)) else [obj.value]
        f.payload = body[n:]
    return f


class FrameSplitter:
    """Cuts a byte stream into protocol headers and frames, as they come."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        while True:
            if len(self.buf) >= 4 and self.buf[:4] == b"AMQP":
                if len(self.buf) < 8:
                    break
                out.append(Frame(-1, 0, 8, b"", header=bytes(self.buf[:8])))
                del self.buf[:8]
                continue
            if len(self.buf) < 8:
                break
            size, doff, ftype, channel = struct.unpack(">IBBH", self.buf[:8])
            if size < 8 or len(self.buf) < size:
                if size < 8:
                    raise ValueError(f"frame size {size} < 8")
                break
            body = bytes(self.buf[doff * 4 : size])
            del self.buf[:size]
            out.append(decode_frame(ftype, channel, size, body))
        return out


class PeerClosed(Exception):
    pass


@dataclass
class CloseInfo:
    """How a connection ended: the peer's close (or end/detach) frame, if any, then EOF."""

    frames: list = field(default_factory=list)  # every frame read until EOF
    eof: bool = False
    close: Frame | None = None

    @property
    def error(self):
        """(condition, description) of the close's error, or None."""
        if self.close is None:
            return None
        err = self.close.field(0)
        if err is None:
            return None
        if isinstance(err, Described):
            vals = list(err.value)
            cond = vals[0] if vals else None
            desc = vals[1] if len(vals) > 1 else None
            return (str(cond), desc)
        return (str(err), None)


class RawAmqp:
    def __init__(self, host: str, port: int, user: str | None = None, password: str | None = None,
                 timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.splitter = FrameSplitter()
        self.pending: list[Frame] = []
        self.user = user
        self.password = password
        self.host = host
        self.timeout = timeout
        self.remote_open: Frame | None = None
        self.eof = False

    # -- bytes ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_performative(self, code: int, fields: list, channel: int = 0, payload: bytes = b"") -> None:
        self.send(frame(performative(code, fields) + payload, channel))

    def read_frame(self, timeout: float | None = None) -> Frame:
        """The next header or frame; raises PeerClosed on EOF, TimeoutError on silence."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            if self.eof:
                raise PeerClosed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the peer")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                continue
            self.pending.extend(self.splitter.feed(data))
        return self.pending.pop(0)

    def expect(self, name: str, timeout: float | None = None) -> Frame:
        f = self.read_frame(timeout)
        assert f.name == name or (name == "header" and f.frame_type == -1), \
            f"expected {name}, got {f.name} {f.fields!r}"
        return f

    # -- handshake -------------------------------------------------------------

    def sasl(self) -> None:
        self.send(SASL_HEADER)
        h = self.expect("header")
        assert h.header == SASL_HEADER, f"peer answered the SASL header with {h.header!r}"
        mechs = self.expect("sasl-mechanisms")
        offered = as_list(mechs.field(0))
        offered = [str(m) for m in offered]
        if self.user is not None:
            assert "PLAIN" in offered, f"PLAIN not offered: {offered}"
            resp = b"\x00" + self.user.encode() + b"\x00" + (self.password or "").encode()
            self.send(frame(performative(SASL_INIT, [symbol("PLAIN"), resp, self.host]), frame_type=1))
        else:
            assert "ANONYMOUS" in offered, f"ANONYMOUS not offered: {offered}"
            self.send(frame(performative(SASL_INIT, [symbol("ANONYMOUS"), b"", self.host]), frame_type=1))
        outcome = self.expect("sasl-outcome")
        assert int(outcome.field(0)) == 0, f"SASL outcome {outcome.fields!r}"

    def open(self, container_id: str = "raw-test", max_frame_size: int | None = None,
             idle_timeout_ms: int | None = None) -> Frame:
        """SASL, AMQP header, open; returns the peer's open frame."""
        self.sasl()
        self.send(AMQP_HEADER)
        h = self.expect("header")
        assert h.header == AMQP_HEADER, f"peer answered the AMQP header with {h.header!r}"
        fields = [container_id, self.host,
                  uint(max_frame_size) if max_frame_size else None,
                  None,
                  uint(idle_timeout_ms) if idle_timeout_ms else None]
        self.send_performative(OPEN, fields)
        self.remote_open = self.expect("open")
        return self.remote_open

    def begin(self, channel: int = 0) -> Frame:
        # begin: remote-channel null, next-outgoing-id 0, incoming-window, outgoing-window
        self.send_performative(BEGIN, [None, uint(0), uint(2048), uint(2048)], channel=channel)
        return self.expect("begin")

    def wait_closed(self, timeout: float) -> CloseInfo:
        """Reads until EOF (or timeout); answers a peer close with a close, as a client would."""
        info = CloseInfo()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return info
            try:
                f = self.read_frame(left)
            except PeerClosed:
                info.eof = True
                return info
            except TimeoutError:
                return info
            info.frames.append(f)
            if f.name == "close":
                info.close = f
                try:
                    self.send_performative(CLOSE, [])
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
