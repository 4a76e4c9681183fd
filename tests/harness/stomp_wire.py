"""STOMP as bytes on a plain socket: the CONNECT probe that tells whether a
node accepts clients, a frame parser, and `RawConn` for input stomp.py would
never send."""

from __future__ import annotations

import socket
import threading


def stomp_probe(addr: tuple[str, int], timeout: float = 1.0) -> tuple[bool, str]:
    """Sends a STOMP 1.2 CONNECT to `addr`: (True, "") if it answers
    CONNECTED (then DISCONNECTs), else (False, what happened)."""
    try:
        with socket.create_connection(addr, timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
            data = b""
            while b"\x00" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.lstrip(b"\r\n").startswith(b"CONNECTED\n"):
                try:
                    s.sendall(b"DISCONNECT\n\n\x00")
                except OSError:
                    pass
                return True, ""
            return False, f"unexpected answer {data[:200]!r}"
    except OSError as e:
        return False, repr(e)


def stomp_accepts(addr: tuple[str, int], timeout: float = 1.0) -> bool:
    """True if the port answers a STOMP CONNECT with CONNECTED."""
    return stomp_probe(addr, timeout)[0]


def unescape_12(s: str) -> str:
    out, i = [], 0
    table = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in table:
            out.append(table[s[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_frames(data: bytes, escaped: bool = True) -> list[tuple[str, dict[str, str], bytes]]:
    """Splits received bytes into (command, headers, body) frames; EOLs
    between frames (heart-beats) are skipped. First header occurrence wins."""
    frames = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] == b"\n":
            pos += 1
            continue
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
            continue
        head_end = data.find(b"\n\n", pos)
        if head_end < 0:
            raise AssertionError(f"incomplete frame from server: {data[pos:pos + 200]!r}")
        lines = data[pos:head_end].decode("utf-8").replace("\r", "").split("\n")
        command = lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if escaped and command not in ("CONNECTED",):
                k, v = unescape_12(k), unescape_12(v)
            headers.setdefault(k, v)
        body_start = head_end + 2
        if "content-length" in headers:
            body_end = body_start + int(headers["content-length"])
        else:
            body_end = data.find(b"\x00", body_start)
            if body_end < 0:
                raise AssertionError(f"frame without NUL from server: {data[pos:pos + 200]!r}")
        assert data[body_end : body_end + 1] == b"\x00", f"frame not NUL-terminated: {data[pos:pos + 200]!r}"
        frames.append((command, headers, data[body_start:body_end]))
        pos = body_end + 1
    return frames


class RawConn:
    """A plain TCP connection to a node, for bytes stomp.py would never send."""

    def __init__(self, node, timeout: float = 15.0):
        self.sock = socket.create_connection(node.addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.escaped = False

    def connect(self, version: str = "1.2") -> dict[str, str]:
        self.sock.sendall(f"CONNECT\naccept-version:{version}\nhost:localhost\n\n\x00".encode())
        data = b""
        while b"\x00" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed while waiting for CONNECTED: {data!r}"
            data += chunk
        frames = parse_frames(data, escaped=False)
        assert frames and frames[0][0] == "CONNECTED", f"expected CONNECTED, got {data!r}"
        self.escaped = frames[0][1].get("version") in ("1.1", "1.2")
        return frames[0][1]

    def send_and_read_until_closed(self, payload: bytes) -> tuple[list, bool]:
        """Sends `payload` (from a helper thread, so a server that stops
        reading cannot block us) and reads until the server closes the
        connection. Returns (frames, closed_by_server); a read timeout
        means the server kept the connection open."""
        send_errors: list[BaseException] = []

        def pump():
            try:
                self.sock.sendall(payload)
            except OSError as e:  # the server may close while we still send
                send_errors.append(e)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        data = b""
        closed = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except socket.timeout:
            closed = False
        t.join(timeout=15)
        self.sock.close()
        return parse_frames(data, escaped=self.escaped), closed
