#!/usr/bin/env python3
"""Helpers for scripts/ci/walkthrough.sh (the HA walkthrough with local processes).

    walkthrough-check.py free-ports N
        Print N distinct free TCP ports on 127.0.0.1, one per line.

    walkthrough-check.py tap --out FILE LISTEN_PORT=HOST:PORT [LISTEN_PORT=HOST:PORT ...]
        A recording STOMP tap: forwards each 127.0.0.1:LISTEN_PORT to its upstream and
        writes "PRODUCER SEQ MESSAGE-ID conn=N" for every MESSAGE frame (halyard-producer,
        halyard-seq and message-id headers; N counts the tap's connections) the upstream
        sends to the client.
        `halyard consume` prints counts only; the tap tells exactly which messages it
        was given, without trusting the consumer's own bookkeeping.
        When the upstream refuses (a backup does not listen), the client is closed at once,
        so a failover client moves on to the next address. Runs until SIGTERM/SIGINT.

    walkthrough-check.py drain --out FILE --destination D HOST:PORT [HOST:PORT ...]
        With stomp.py (an independent client): connect to whichever address accepts,
        subscribe (client-individual), record and ack every message until idle, then
        write "PRODUCER SEQ MESSAGE-ID" lines. Finds what the consumer left behind.

    walkthrough-check.py verify --count N --producer-id P FILE [FILE ...]
        Union of the recorded messages; exit 1 unless every seq 0..N-1 of producer P
        is present, under one message-id each (a seq under two ids was stored twice),
        and nothing else arrived. Prints a JSON summary.

Only the standard library, plus stomp.py for `drain` (target/pyenv, scripts/services/pyenv.sh).
"""

import argparse
import asyncio
import json
import signal
import socket
import sys
import threading
import time


# --- free-ports -------------------------------------------------------------

def free_ports(n):
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)  # keep bound until all are chosen: no repeats
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# --- tap ----------------------------------------------------------------------

FRAME_MAX_BYTES = 16 * 1024 * 1024


class FrameScanner:
    """Incremental STOMP frame splitter for the server-to-client direction."""

    def __init__(self, on_message):
        self.buf = bytearray()
        self.on_message = on_message
        self.broken = False

    def feed(self, data):
        if self.broken:
            return
        self.buf += data
        while True:
            # Heart-beats and blank lines between frames.
            i = 0
            while i < len(self.buf) and self.buf[i] in (0x0A, 0x0D):
                i += 1
            if i:
                del self.buf[:i]
            if not self.buf:
                return
            end = self.buf.find(b"\n\n")
            sep = 2
            crlf = self.buf.find(b"\r\n\r\n")
            if crlf != -1 and (end == -1 or crlf < end):
                end, sep = crlf, 4
            if end == -1:
                if len(self.buf) > FRAME_MAX_BYTES:
                    self.broken = True
                return
            head = bytes(self.buf[:end]).decode("utf-8", "replace").replace("\r", "")
            lines = head.split("\n")
            command = lines[0]
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.setdefault(k, v)  # STOMP: the first occurrence wins
            body_start = end + sep
            if "content-length" in headers:
                try:
                    n = int(headers["content-length"])
                except ValueError:
                    self.broken = True
                    return
                if len(self.buf) < body_start + n + 1:
                    return
                frame_end = body_start + n + 1
            else:
                nul = self.buf.find(b"\x00", body_start)
                if nul == -1:
                    if len(self.buf) > FRAME_MAX_BYTES:
                        self.broken = True
                    return
                frame_end = nul + 1
            del self.buf[:frame_end]
            if command == "MESSAGE":
                self.on_message(headers)


async def run_tap(out_path, routes):
    out = open(out_path, "a", buffering=1)
    stats = {"connections": 0, "refused": 0, "messages": 0, "unparsed_streams": 0}

    def recorder(conn_no):
        def record(headers):
            stats["messages"] += 1
            p = headers.get("halyard-producer", "-")
            s = headers.get("halyard-seq", "-")
            m = headers.get("message-id", "-").replace(" ", "_")
            out.write(f"{p} {s} {m} conn={conn_no}\n")
        return record

    async def pump(reader, writer, scanner=None):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if scanner is not None:
                    scanner.feed(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    def handler(upstream):
        host, port = upstream.rsplit(":", 1)

        async def handle(c_reader, c_writer):
            stats["connections"] += 1
            try:
                u_reader, u_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port)), 3)
            except (OSError, asyncio.TimeoutError):
                stats["refused"] += 1
                c_writer.close()
                return
            scanner = FrameScanner(recorder(stats["connections"]))
            up = asyncio.ensure_future(pump(c_reader, u_writer))
            down = asyncio.ensure_future(pump(u_reader, c_writer, scanner))
            # Either side closing ends the connection (like a broker going away).
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            for w in (c_writer, u_writer):
                try:
                    w.close()
                except Exception:
                    pass
            await asyncio.gather(up, down, return_exceptions=True)
            if scanner.broken:
                stats["unparsed_streams"] += 1
        return handle

    servers = []
    for listen_port, upstream in routes:
        servers.append(await asyncio.start_server(handler(upstream), "127.0.0.1", listen_port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"tap ready: {' '.join(f'{p}->{u}' for p, u in routes)}", file=sys.stderr, flush=True)
    await stop.wait()
    for s in servers:
        s.close()
    out.close()
    print("tap " + " ".join(f"{k}={v}" for k, v in stats.items()), file=sys.stderr, flush=True)


# --- drain --------------------------------------------------------------------

def drain(out_path, destination, addrs, idle_secs, connect_secs):
    import stomp  # stomp.py 9

    hosts = []
    for a in addrs:
        h, p = a.rsplit(":", 1)
        hosts.append((h, int(p)))
    got = []
    last = [time.monotonic()]
    lock = threading.Lock()

    class Listener(stomp.ConnectionListener):
        def __init__(self, conn):
            self.conn = conn

        def on_message(self, frame):
            with lock:
                got.append((frame.headers.get("halyard-producer", "-"),
                            frame.headers.get("halyard-seq", "-"),
                            frame.headers.get("message-id", "-").replace(" ", "_")))
                last[0] = time.monotonic()
            self.conn.ack(frame.headers["ack"], frame.headers["subscription"])

    deadline = time.monotonic() + connect_secs
    conn, err = None, None
    while conn is None and time.monotonic() < deadline:
        for h in hosts:
            c = stomp.Connection12([h], reconnect_attempts_max=1, timeout=3)
            c.set_listener("", Listener(c))
            try:
                c.connect(wait=True, headers={"heart-beat": "0,0"})
                conn = c
                break
            except Exception as e:  # refused: not the live node
                err = e
        if conn is None:
            time.sleep(0.5)
    if conn is None:
        print(f"drain: no broker accepted within {connect_secs}s ({err})", file=sys.stderr)
        return 2
    conn.subscribe(destination, id="drain", ack="client-individual")
    last[0] = time.monotonic()
    while time.monotonic() - last[0] < idle_secs:
        time.sleep(0.2)
    conn.disconnect()
    with open(out_path, "w") as out:
        for p, s, m in got:
            out.write(f"{p} {s} {m}\n")
    print(f"drain: {len(got)} messages left in {destination}", file=sys.stderr)
    return 0


# --- verify -------------------------------------------------------------------

def verify(count, producer_id, files):
    ids = {}                      # seq -> set of message-ids it was delivered under
    deliveries = 0
    foreign = []
    for f in files:
        with open(f) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                deliveries += 1
                p, s, m = parts[:3]
                if p == producer_id and s.isdigit() and int(s) < count:
                    ids.setdefault(int(s), set()).add(m)
                else:
                    foreign.append(line.strip())
    missing = [s for s in range(count) if s not in ids]
    # One send stored twice (a resend that duplicate detection let through) shows up as one
    # seq under two message-ids; a redelivery after a failover keeps its message-id.
    stored_twice = sorted(s for s, m in ids.items() if len(m) > 1)
    summary = {
        "expected": count,
        "delivered_distinct": len(ids),
        "deliveries": deliveries,
        "redeliveries": deliveries - len(foreign) - sum(len(m) for m in ids.values()),
        "missing": len(missing),
        "missing_first": missing[:20],
        "stored_twice": len(stored_twice),
        "stored_twice_first": [(s, sorted(ids[s])) for s in stored_twice[:5]],
        "foreign": len(foreign),
        "foreign_first": foreign[:5],
    }
    print(json.dumps(summary))
    return 0 if not missing and not foreign and not stored_twice else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("free-ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("tap")
    p.add_argument("--out", required=True)
    p.add_argument("routes", nargs="+", help="LISTEN_PORT=HOST:PORT")
    p = sub.add_parser("drain")
    p.add_argument("--out", required=True)
    p.add_argument("--destination", default="/queue/test")
    p.add_argument("--idle-secs", type=float, default=3.0)
    p.add_argument("--connect-secs", type=float, default=30.0)
    p.add_argument("addrs", nargs="+")
    p = sub.add_parser("verify")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--producer-id", required=True)
    p.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.cmd == "free-ports":
        print("\n".join(str(x) for x in free_ports(a.n)))
        return 0
    if a.cmd == "tap":
        routes = []
        for r in a.routes:
            lp, _, up = r.partition("=")
            routes.append((int(lp), up))
        asyncio.run(run_tap(a.out, routes))
        return 0
    if a.cmd == "drain":
        return drain(a.out, a.destination, a.addrs, a.idle_secs, a.connect_secs)
    if a.cmd == "verify":
        return verify(a.count, a.producer_id, a.files)
    return 2


if __name__ == "__main__":
    sys.exit(main())
