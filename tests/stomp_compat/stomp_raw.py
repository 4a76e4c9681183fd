"""STOMP 1.2 over a plain socket: frames built and parsed by hand, no client library, so a test
sends exactly the headers it names and sees exactly what the broker answers."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Frame:
    command: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


def unescape(v: str) -> str:
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            out.append({"\\": "\\", "r": "\r", "n": "\n", "c": ":"}.get(v[i + 1], v[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode(command: str, headers: dict | None = None, body: bytes | str = b"",
           content_length: bool = False, raw_headers: bool = False) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    lines = [command]
    for k, v in (headers or {}).items():
        lines.append(f"{k}:{v}" if raw_headers or command == "CONNECT" else f"{escape(k)}:{escape(str(v))}")
    if content_length:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class Closed(Exception):
    pass


class RawStomp:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.frames: list[Frame] = []  # everything read, in order
        self._receipt = 0
        self.pending: list[Frame] = []

    def send(self, command: str, headers: dict | None = None, body: bytes | str = b"", **kw) -> None:
        self.sock.sendall(encode(command, headers, body, **kw))

    def _parse_one(self) -> Frame | None:
        buf = self.buf.lstrip(b"\r\n")  # heart-beats
        self.buf = buf
        end_hdr = buf.find(b"\n\n")
        if end_hdr < 0:
            return None
        head = buf[:end_hdr].decode("utf-8", "replace").split("\n")
        command = head[0].rstrip("\r")
        headers = {}
        for line in head[1:]:
            line = line.rstrip("\r")
            if ":" in line:
                k, v = line.split(":", 1)
                k = unescape(k) if command != "CONNECTED" else k
                v = unescape(v) if command != "CONNECTED" else v
                headers.setdefault(k, v)  # STOMP 1.2: the first of repeated headers wins
        start = end_hdr + 2
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(buf) < start + n + 1:
                return None
            body = buf[start:start + n]
            rest = buf[start + n + 1:]
        else:
            z = buf.find(b"\x00", start)
            if z < 0:
                return None
            body = buf[start:z]
            rest = buf[z + 1:]
        self.buf = rest
        return Frame(command, headers, body)

    def read(self, timeout: float = 10.0) -> Frame:
        """The next frame; TimeoutError on silence, Closed on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse_one()
            if f is not None:
                self.frames.append(f)
                return f
            if self.eof:
                raise Closed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.eof = True
                else:
                    self.buf += data

    def read_all(self, quiet: float = 1.0, limit: float = 30.0) -> list[Frame]:
        """Frames until the connection has been quiet for `quiet` seconds (or closed)."""
        out = []
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                out.append(self.read(quiet))
            except (TimeoutError, Closed):
                break
        return out

    def connect(self, login: str | None = None, passcode: str | None = None, version: str = "1.2",
                extra: dict | None = None) -> Frame:
        h = {"accept-version": version, "host": "localhost", "heart-beat": "0,0"}
        if login is not None:
            h["login"] = login
            h["passcode"] = passcode or ""
        h.update(extra or {})
        self.send("CONNECT", h)
        return self.read()

    def request(self, command: str, headers: dict | None = None, body: bytes | str = b"", **kw) -> Frame:
        """Sends with a receipt header and waits for that RECEIPT (other frames are kept in
        `pending`); an ERROR instead is returned as is."""
        self._receipt += 1
        rid = f"rcpt-{self._receipt}"
        self.send(command, {**(headers or {}), "receipt": rid}, body, **kw)
        while True:
            f = self.read()
            if f.command == "RECEIPT" and f.headers.get("receipt-id") == rid:
                return f
            if f.command == "ERROR":
                return f
            self.pending.append(f)

    def messages(self, quiet: float = 1.0) -> list[Frame]:
        """MESSAGE frames already read by request() plus those arriving until `quiet`."""
        got = [f for f in self.pending if f.command == "MESSAGE"]
        self.pending = [f for f in self.pending if f.command != "MESSAGE"]
        return got + [f for f in self.read_all(quiet) if f.command == "MESSAGE"]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
