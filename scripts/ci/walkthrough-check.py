#!/usr/bin/env python3
"""Helpers for scripts/ci/walkthrough.sh (the HA walkthrough with local processes).

    walkthrough-check.py free-ports N
        Print N distinct free TCP ports on 127.0.0.1, one per line.

    walkthrough-check.py durable-subscribe --client-id C --durable-name N --destination D HOST:PORT [...]
        With stomp.py: connect (client-id C) to whichever address accepts, SUBSCRIBE to D
        with durable-subscription-name N and a receipt, wait for the receipt, DISCONNECT
        (with a receipt) without unsubscribing. The durable subscription then exists (the
        receipt comes after it is journaled) before any message is sent, so it gets them all.

    walkthrough-check.py tap --out FILE LISTEN_PORT=HOST:PORT [LISTEN_PORT=HOST:PORT ...]
        A recording STOMP tap: forwards each 127.0.0.1:LISTEN_PORT to its upstream and
        writes "PRODUCER SEQ MESSAGE-ID conn=N" for every MESSAGE frame (halyard-producer,
        halyard-seq and message-id headers; N counts the tap's connections) the upstream
        sends to the client.
        `halyard consume` prints counts only; the tap tells exactly which messages it
        was given, without trusting the consumer's own bookkeeping.
        When the upstream refuses (a backup does not listen), the client is closed at once,
        so a failover client moves on to the next address. Runs until SIGTERM/SIGINT.

    walkthrough-check.py drain --out FILE --destination D [--client-id C --durable-name N] HOST:PORT [...]
        With stomp.py (an independent client): connect to whichever address accepts,
        subscribe (client-individual; durable under C and N if given, which resumes the
        consumer's subscription), record and ack every message until idle, then write
        "PRODUCER SEQ MESSAGE-ID" lines. Finds what the consumer left behind.

    walkthrough-check.py verify --count N --producer-id P FILE [FILE ...]
        Union of the recorded messages; exit 1 unless every seq 0..N-1 of producer P
        is present, under one message-id each (a seq under two ids was stored twice),
        and nothing else arrived. Prints a JSON summary.

    walkthrough-check.py kafka-read --bootstrap B --topic T --out FILE [--isolation L] [--follow]
        With confluent-kafka (librdkafka), the stand-in for kcat: read every partition of
        T from its beginning with isolation.level L (read_committed by default) and write
        one line per record in the format of
            kcat -C -f '%p\\t%o\\t%k\\t%h\\t%s\\n'
        (partition, offset, key, headers as name=value,name=value, value). Without
        --follow: stop at the end of every partition (kcat -e), i.e. at the last stable
        offset under read_committed. With --follow: run until SIGTERM/SIGINT, like a
        `kcat -C` left running in a terminal.

    walkthrough-check.py verify-kafka --count N --producer-id P --cluster-id C [--size S] FILE
        Checks a record file of the format above (from kcat or kafka-read): exit 1 unless
        every seq 0..N-1 of producer P is there exactly once (key P:SEQ, the bridge's key
        from _AMQ_DUPL_ID; header halyard-seq SEQ; header halyard.cluster C; value
        "SEQ:..." of S bytes) and nothing else is in the topic. Prints a JSON summary.

Only the standard library, plus stomp.py for `durable-subscribe` and `drain` and
confluent-kafka for `kafka-read` (target/pyenv, scripts/services/pyenv.sh).
"""

import argparse
import asyncio
import json
import os
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


# --- stomp.py clients: durable-subscribe and drain --------------------------

def _hosts(addrs):
    hosts = []
    for a in addrs:
        h, p = a.rsplit(":", 1)
        hosts.append((h, int(p)))
    return hosts


def _connect_any(addrs, make_listener, connect_secs, headers):
    """stomp.py: connect to whichever address accepts (a backup does not listen),
    trying again until connect_secs have passed. Returns (conn, None) or (None, error)."""
    import stomp  # stomp.py 9

    deadline = time.monotonic() + connect_secs
    err = None
    while time.monotonic() < deadline:
        for h in _hosts(addrs):
            c = stomp.Connection12([h], reconnect_attempts_max=1, timeout=3)
            c.set_listener("", make_listener(c))
            try:
                c.connect(wait=True, headers=dict(headers, **{"heart-beat": "0,0"}))
                return c, None
            except Exception as e:  # refused: not the live node
                err = e
        time.sleep(0.5)
    return None, err


def durable_subscribe(destination, client_id, durable_name, addrs, connect_secs):
    import stomp  # stomp.py 9

    receipts, errors = set(), []
    cv = threading.Condition()

    class Listener(stomp.ConnectionListener):
        def __init__(self, conn):
            self.conn = conn

        def on_receipt(self, frame):
            with cv:
                receipts.add(frame.headers.get("receipt-id"))
                cv.notify_all()

        def on_error(self, frame):
            with cv:
                errors.append(frame.headers.get("message", "ERROR"))
                cv.notify_all()

    conn, err = _connect_any(addrs, Listener, connect_secs, {"client-id": client_id})
    if conn is None:
        print(f"durable-subscribe: no broker accepted within {connect_secs}s ({err})", file=sys.stderr)
        return 2
    conn.subscribe(destination, id="1", ack="client-individual",
                   headers={"durable-subscription-name": durable_name}, receipt="subscribed")
    with cv:
        ok = cv.wait_for(lambda: "subscribed" in receipts or errors, 30)
    if not ok or errors:
        print(f"durable-subscribe: no receipt for the SUBSCRIBE to {destination} "
              f"(errors: {errors or 'none, timed out after 30 s'})", file=sys.stderr)
        return 1
    # Read before the disconnect: stomp.py's receiver thread clears it once
    # the socket is closed (a race that once failed this step).
    host, port = conn.transport.current_host_and_port or ("?", "?")
    conn.disconnect()  # with a receipt (stomp.py waits for it); no UNSUBSCRIBE: the subscription stays
    print(f"durable-subscribe: {client_id}.{durable_name} on {destination} "
          f"(receipted by {host}:{port})",
          file=sys.stderr)
    return 0


def drain(out_path, destination, addrs, idle_secs, connect_secs, client_id=None, durable_name=None):
    import stomp  # stomp.py 9

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

    headers = {"client-id": client_id} if client_id else {}
    conn, err = _connect_any(addrs, Listener, connect_secs, headers)
    if conn is None:
        print(f"drain: no broker accepted within {connect_secs}s ({err})", file=sys.stderr)
        return 2
    sub_headers = {"durable-subscription-name": durable_name} if durable_name else {}
    conn.subscribe(destination, id="drain", ack="client-individual", headers=sub_headers)
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


# --- kafka-read and verify-kafka -----------------------------------------------

def _text(b):
    return "" if b is None else b.decode("utf-8", "replace")


def kafka_record_line(m):
    """One record as kcat -f '%p\\t%o\\t%k\\t%h\\t%s\\n' prints it."""
    headers = ",".join(f"{k}={_text(v)}" for k, v in (m.headers() or []))
    return f"{m.partition()}\t{m.offset()}\t{_text(m.key())}\t{headers}\t{_text(m.value())}\n"


def kafka_read(bootstrap, topic, out_path, isolation, follow, timeout):
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    stop = threading.Event()
    if follow:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"walkthrough-reader-{os.getpid()}",  # never joins: partitions are assigned
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    n = 0
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            print(f"kafka-read: topic {topic} does not exist ({md.error if md else 'not in the metadata'})",
                  file=sys.stderr)
            return 2
        parts = sorted(md.partitions)
        c.assign([TopicPartition(topic, p, -2) for p in parts])  # -2: OFFSET_BEGINNING
        at_eof = set()
        deadline = time.monotonic() + timeout
        with open(out_path, "w", buffering=1 if follow else -1) as out:
            while not stop.is_set():
                if not follow and at_eof == set(parts):
                    break
                if not follow and time.monotonic() > deadline:
                    print(f"kafka-read: {topic} ({isolation}): no end within {timeout:.0f} s "
                          f"({n} records, EOF on {sorted(at_eof)} of {parts})", file=sys.stderr)
                    return 1
                for m in c.consume(num_messages=1000, timeout=0.2):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            at_eof.add(m.partition())
                            continue
                        print(f"kafka-read: {topic}: {err}", file=sys.stderr)
                        return 1
                    at_eof.discard(m.partition())
                    out.write(kafka_record_line(m))
                    n += 1
    finally:
        c.close()
    print(f"kafka-read: {n} records of {topic} ({isolation})", file=sys.stderr)
    return 0


def verify_kafka(path, count, producer_id, cluster_id, size):
    offsets = {}                  # seq -> [(partition, offset)]
    records = 0
    foreign, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            records += 1
            parts = line.split("\t", 4)
            if len(parts) != 5:
                bad.append(f"unparsable: {line[:120]}")
                continue
            p, o, key, hs, value = parts
            headers = {}
            for h in hs.split(",") if hs else []:
                k, _, v = h.partition("=")
                headers.setdefault(k, v)
            where = f"{p}/{o}"
            prod, _, seq = key.rpartition(":")
            if headers.get("halyard.cluster") != cluster_id or prod != producer_id \
                    or not seq.isdigit() or int(seq) >= count:
                foreign.append(f"{where} key={key} halyard.cluster={headers.get('halyard.cluster')}")
                continue
            s = int(seq)
            problems = []
            if headers.get("halyard-seq") != seq:
                problems.append(f"halyard-seq={headers.get('halyard-seq')}")
            if headers.get("halyard-producer") != producer_id:
                problems.append(f"halyard-producer={headers.get('halyard-producer')}")
            if not value.startswith(f"{seq}:") or (size and len(value.encode()) != size):
                problems.append(f"value {value[:16]!r}... of {len(value.encode())} bytes")
            if problems:
                bad.append(f"{where} key={key}: {', '.join(problems)}")
            offsets.setdefault(s, []).append(where)
    missing = [s for s in range(count) if s not in offsets]
    duplicated = sorted(s for s, w in offsets.items() if len(w) > 1)
    summary = {
        "records": records,
        "expected": count,
        "distinct": len(offsets),
        "duplicated": len(duplicated),
        "duplicate_records": sum(len(offsets[s]) - 1 for s in duplicated),
        "duplicated_first": [(s, offsets[s]) for s in duplicated[:5]],
        "missing": len(missing),
        "missing_first": missing[:20],
        "foreign": len(foreign),
        "foreign_first": foreign[:5],
        "bad": len(bad),
        "bad_first": bad[:5],
    }
    print(json.dumps(summary))
    return 0 if not missing and not duplicated and not foreign and not bad else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("free-ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("tap")
    p.add_argument("--out", required=True)
    p.add_argument("routes", nargs="+", help="LISTEN_PORT=HOST:PORT")
    p = sub.add_parser("durable-subscribe")
    p.add_argument("--destination", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--durable-name", required=True)
    p.add_argument("--connect-secs", type=float, default=30.0)
    p.add_argument("addrs", nargs="+")
    p = sub.add_parser("drain")
    p.add_argument("--out", required=True)
    p.add_argument("--destination", required=True)
    p.add_argument("--client-id")
    p.add_argument("--durable-name")
    p.add_argument("--idle-secs", type=float, default=3.0)
    p.add_argument("--connect-secs", type=float, default=30.0)
    p.add_argument("addrs", nargs="+")
    p = sub.add_parser("verify")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--producer-id", required=True)
    p.add_argument("files", nargs="+")
    p = sub.add_parser("kafka-read")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--isolation", default="read_committed", choices=["read_committed", "read_uncommitted"])
    p.add_argument("--follow", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to reach the end (without --follow)")
    p = sub.add_parser("verify-kafka")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--producer-id", required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--size", type=int, default=0, help="expected value size in bytes (0: not checked)")
    p.add_argument("file")
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
    if a.cmd == "durable-subscribe":
        return durable_subscribe(a.destination, a.client_id, a.durable_name, a.addrs, a.connect_secs)
    if a.cmd == "drain":
        return drain(a.out, a.destination, a.addrs, a.idle_secs, a.connect_secs, a.client_id, a.durable_name)
    if a.cmd == "verify":
        return verify(a.count, a.producer_id, a.files)
    if a.cmd == "kafka-read":
        return kafka_read(a.bootstrap, a.topic, a.out, a.isolation, a.follow, a.timeout)
    if a.cmd == "verify-kafka":
        return verify_kafka(a.file, a.count, a.producer_id, a.cluster_id, a.size)
    return 2


if __name__ == "__main__":
    sys.exit(main())
