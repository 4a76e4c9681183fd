"""stomp.py clients that fail over between the nodes of a cluster, and the
zero-loss checker.

- `FailoverProducer` / `FailoverConsumer`: stomp.py clients in threads. On a
  lost connection they connect to whichever node accepts; the producer resends
  every unreceipted message with the same `_AMQ_DUPL_ID`, the consumer
  subscribes again. Both record everything the checker needs.
- `AcceptMonitor`: probes every node's STOMP port with CONNECT and records
  which nodes answer CONNECTED, to check that at most one accepts at a time.
- `check_delivery()` / `assert_report()`: the zero-loss / nothing-unexpected /
  stored-once checker; `run_until_done()` waits for both clients to finish.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

import stomp

from harness.stomp_wire import stomp_accepts

# stomp.py logs every refused connection attempt and broken pipe of the
# failover loop (with tracebacks); the clients below handle them.
logging.getLogger("stomp.py").setLevel(logging.CRITICAL)


def body_for(run_id: str, mid: int, size: int) -> str:
    head = f"{run_id}:{mid}:"
    fill = hashlib.sha256(head.encode()).hexdigest()
    reps = size // len(fill) + 1
    return (head + fill * reps)[:size]


def _new_conn(addr: tuple[str, int]) -> stomp.Connection12:
    # One attempt, no sleep: the failover loop below picks the next node.
    return stomp.Connection12(
        [addr],
        heartbeats=(0, 0),
        reconnect_attempts_max=1,
        reconnect_sleep_initial=0.0,
        reconnect_sleep_increase=0.0,
        reconnect_sleep_jitter=0.0,
        auto_content_length=True,
    )


def _hard_close(conn: stomp.Connection12 | None) -> None:
    """Drops a connection without a DISCONNECT handshake (it may be dead)."""
    if conn is None:
        return
    try:
        conn.transport.running = False
        conn.transport.disconnect_socket()
    except Exception:
        pass


def connect_any(
    addrs: list[tuple[str, int]],
    listener: stomp.ConnectionListener,
    start_index: int,
    deadline: float,
    headers: dict | None = None,
    should_stop=lambda: False,
) -> tuple[stomp.Connection12, int]:
    """Connects to the first node (round robin from `start_index`) that
    answers CONNECTED; retries until `deadline` (monotonic)."""
    i = start_index
    while True:
        if should_stop():
            raise ConnectionError("stopped")
        addr = addrs[i % len(addrs)]
        conn = _new_conn(addr)
        conn.set_listener("l", listener)
        try:
            conn.connect(wait=False, headers=headers or {})
            t_end = time.monotonic() + 3.0
            while not conn.is_connected() and time.monotonic() < t_end:
                if not conn.transport.running or conn.transport.connection_error:
                    break
                time.sleep(0.005)
            if conn.is_connected():
                return conn, i % len(addrs)
        except Exception:
            pass
        # A failed attempt must not report "disconnected" to the listener of
        # the connection that will eventually succeed.
        try:
            conn.remove_listener("l")
        except Exception:
            pass
        _hard_close(conn)
        i += 1
        if time.monotonic() > deadline:
            raise ConnectionError(f"no node accepted a STOMP connection ({addrs})")
        if i % len(addrs) == start_index % len(addrs):
            time.sleep(0.02)


class _Listener(stomp.ConnectionListener):
    def __init__(self, owner, gen: int):
        self.owner = owner
        self.gen = gen

    def on_receipt(self, frame):
        self.owner._on_receipt(self.gen, frame)

    def on_message(self, frame):
        self.owner._on_message(self.gen, frame)

    def on_error(self, frame):
        self.owner._on_error(self.gen, frame)

    def on_disconnected(self):
        self.owner._on_disconnected(self.gen)


class FailoverProducer(threading.Thread):
    """Sends `count` persistent messages with receipts, `window` in flight.

    Each message `mid` carries header `mid`, `_AMQ_DUPL_ID` = run_id-mid, a
    body from `body_for()`. On a lost connection (or no receipt for
    `stall_s` while sends are pending) it connects to whichever node accepts
    and resends every unreceipted message."""

    def __init__(
        self,
        addrs,
        dest: str,
        count: int,
        run_id: str,
        size: int = 1024,
        window: int = 500,
        rate: float | None = None,
        stall_s: float = 12.0,
        give_up_s: float = 60.0,
    ):
        super().__init__(daemon=True, name="producer")
        self.addrs = addrs
        self.dest = dest
        self.count = count
        self.run_id = run_id
        self.size = size
        self.window = window
        self.rate = rate
        self.stall_s = stall_s
        self.give_up_s = give_up_s
        self.cv = threading.Condition()
        self.pending: dict[int, int] = {}  # mid -> sends so far
        self.receipted: set[int] = set()
        self.receipt_times: dict[int, float] = {}
        self.sent_frames = 0
        self.breaks: list[tuple[float, int, str]] = []  # why connections were given up
        self.sent_distinct = 0
        self.resends = 0
        self.errors: list[str] = []
        self.reconnects: list[tuple[float, int]] = []  # (time.time(), node index)
        self.gen = 0
        self.broken = True
        self.stop_flag = False
        self.failure: BaseException | None = None
        self.done_at: float | None = None
        self.last_progress = time.monotonic()

    # listener callbacks (io threads)
    def _on_receipt(self, gen, frame):
        rid = frame.headers.get("receipt-id", "")
        if not rid.startswith("m-"):
            return
        mid = int(rid.split("-")[1])
        with self.cv:
            if mid in self.pending:
                del self.pending[mid]
            if mid not in self.receipted:
                self.receipted.add(mid)
                self.receipt_times[mid] = time.time()
            self.last_progress = time.monotonic()
            self.cv.notify_all()

    def _on_message(self, gen, frame):
        pass

    def _on_error(self, gen, frame):
        with self.cv:
            self.errors.append(f"gen {gen}: {frame.headers.get('message')}")
            if gen == self.gen:
                self.broken = True
            self.cv.notify_all()

    def _on_disconnected(self, gen):
        with self.cv:
            if gen == self.gen:
                self.broken = True
                self.breaks.append((time.time(), gen, "disconnected"))
            self.cv.notify_all()

    def _send(self, conn, mid: int) -> None:
        with self.cv:
            n = self.pending.get(mid, 0)
            self.pending[mid] = n + 1
            if n > 0:
                self.resends += 1
            self.sent_frames += 1
            gen = self.gen
        conn.send(
            self.dest,
            body_for(self.run_id, mid, self.size),
            headers={"mid": str(mid), "_AMQ_DUPL_ID": f"{self.run_id}-{mid}", "persistent": "true"},
            receipt=f"m-{mid}-{gen}",
        )

    def stop(self):
        with self.cv:
            self.stop_flag = True
            self.cv.notify_all()

    def finished(self) -> bool:
        with self.cv:
            return len(self.receipted) >= self.count

    def run(self):
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.failure = e
        finally:
            with self.cv:
                self.cv.notify_all()

    def _run(self):
        conn = None
        idx = 0
        next_mid = 0
        next_due = time.monotonic()
        while True:
            with self.cv:
                if self.stop_flag or len(self.receipted) >= self.count:
                    break
                broken = self.broken
            if broken:
                _hard_close(conn)
                with self.cv:
                    self.gen += 1
                    gen = self.gen
                    self.broken = False
                conn, idx = connect_any(
                    self.addrs,
                    _Listener(self, gen),
                    idx if gen == 1 else idx + 1,
                    time.monotonic() + self.give_up_s,
                    should_stop=lambda: self.stop_flag,
                )
                self.reconnects.append((time.time(), idx))
                with self.cv:
                    self.last_progress = time.monotonic()
                    resend = sorted(self.pending)
                try:
                    for mid in resend:
                        with self.cv:
                            if mid not in self.pending:
                                continue
                        self._send(conn, mid)
                except Exception as e:
                    with self.cv:
                        self.broken = True
                        self.breaks.append((time.time(), gen, f"resend failed: {e!r}"))
                continue
            with self.cv:
                ok = self.cv.wait_for(
                    lambda: self.broken
                    or self.stop_flag
                    or (len(self.pending) < self.window and next_mid < self.count)
                    or len(self.receipted) >= self.count,
                    timeout=0.5,
                )
                if self.pending and time.monotonic() - self.last_progress > self.stall_s:
                    self.errors.append(f"no receipt for {self.stall_s} s on node {idx}: failing over")
                    self.broken = True
                    continue
                if not ok or self.broken or self.stop_flag:
                    continue
                can_send = len(self.pending) < self.window and next_mid < self.count
            if can_send:
                if self.rate:
                    # Paced, with no catch-up burst after an outage.
                    now = time.monotonic()
                    if next_due > now:
                        time.sleep(min(next_due - now, 0.2))
                        continue
                    next_due = max(next_due, now - 0.05) + 1.0 / self.rate
                try:
                    self._send(conn, next_mid)
                    next_mid += 1
                    self.sent_distinct = next_mid
                except Exception as e:
                    with self.cv:
                        self.broken = True
                        self.breaks.append((time.time(), self.gen, f"send failed: {e!r}"))
        self.done_at = time.time()
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass
            _hard_close(conn)


@dataclass
class Delivery:
    mid: int
    message_id: str
    redelivered: bool
    gen: int
    t: float
    body_ok: bool


class FailoverConsumer(threading.Thread):
    """Subscribes with ack=client-individual and acks every message; on a
    lost connection subscribes again on whichever node accepts."""

    def __init__(self, addrs, dest: str, run_id: str, size: int = 1024, window_bytes: int = 262144,
                 ack_delay_s: float = 0.0, give_up_s: float = 60.0, start_index: int = 0):
        super().__init__(daemon=True, name="consumer")
        self.addrs = addrs
        self.dest = dest
        self.run_id = run_id
        self.size = size
        self.window_bytes = window_bytes
        self.ack_delay_s = ack_delay_s
        self.give_up_s = give_up_s
        self.start_index = start_index
        self.cv = threading.Condition()
        self.deliveries: list[Delivery] = []
        self.seen: set[int] = set()
        self.unexpected: list[str] = []
        self.errors: list[str] = []
        self.gen = 0
        self.broken = True
        self.stop_flag = False
        self.failure: BaseException | None = None
        self.connects: list[tuple[float, int]] = []  # (time.time() subscribed, node index)
        self.disconnects: list[float] = []
        self.first_after: dict[int, float] = {}  # gen -> time.time() of its first message
        self.conn = None
        self.subscribed_gen = 0

    def _on_receipt(self, gen, frame):
        with self.cv:
            if frame.headers.get("receipt-id") == f"sub-{gen}":
                self.subscribed_gen = gen
            self.cv.notify_all()

    def _on_message(self, gen, frame):
        now = time.time()
        h = frame.headers
        body = frame.body if isinstance(frame.body, str) else frame.body.decode()
        try:
            mid = int(h["mid"])
        except (KeyError, ValueError):
            with self.cv:
                self.unexpected.append(f"no mid header: {dict(h)} body={body[:60]!r}")
            return
        ok = body == body_for(self.run_id, mid, self.size)
        with self.cv:
            self.deliveries.append(
                Delivery(mid, h.get("message-id", ""), h.get("redelivered") == "true", gen, now, ok)
            )
            self.seen.add(mid)
            self.first_after.setdefault(gen, now)
            conn = self.conn if gen == self.gen else None
            self.cv.notify_all()
        if self.ack_delay_s:
            time.sleep(self.ack_delay_s)
        if conn is not None:
            try:
                conn.ack(h["ack"])
            except Exception:
                pass

    def _on_error(self, gen, frame):
        with self.cv:
            self.errors.append(f"gen {gen}: {frame.headers.get('message')}")
            if gen == self.gen:
                self.broken = True
            self.cv.notify_all()

    def _on_disconnected(self, gen):
        with self.cv:
            if gen == self.gen:
                self.broken = True
                self.disconnects.append(time.time())
            self.cv.notify_all()

    def stop(self):
        with self.cv:
            self.stop_flag = True
            self.cv.notify_all()

    def run(self):
        try:
            self._run()
        except BaseException as e:
            self.failure = e

    def _run(self):
        idx = self.start_index
        first = True
        while True:
            with self.cv:
                if self.stop_flag:
                    break
                broken = self.broken
            if not broken:
                with self.cv:
                    self.cv.wait_for(lambda: self.broken or self.stop_flag, timeout=0.5)
                continue
            _hard_close(self.conn)
            with self.cv:
                self.gen += 1
                gen = self.gen
                self.broken = False
            conn, idx = connect_any(
                self.addrs,
                _Listener(self, gen),
                idx if first else idx + 1,
                time.monotonic() + self.give_up_s,
                should_stop=lambda: self.stop_flag,
            )
            first = False
            with self.cv:
                self.conn = conn
            try:
                conn.subscribe(
                    self.dest,
                    id="1",
                    ack="client-individual",
                    headers={"consumer-window-size": str(self.window_bytes)},
                    receipt=f"sub-{gen}",
                )
            except Exception:
                with self.cv:
                    self.broken = True
                continue
            self.connects.append((time.time(), idx))
        with self.cv:
            conn = self.conn
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass
            _hard_close(conn)

    def wait_for(self, mids: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cv:
            return self.cv.wait_for(
                lambda: mids <= self.seen or self.failure is not None,
                timeout=max(0.0, deadline - time.monotonic()),
            ) and mids <= self.seen

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: len(self.seen) >= n, timeout=timeout)


class AcceptMonitor(threading.Thread):
    """Probes every node's STOMP port in turn; records the set that accepts."""

    def __init__(self, nodes: list, period_s: float = 0.05):
        super().__init__(daemon=True, name="accept-monitor")
        self.nodes = nodes
        self.period_s = period_s
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.stop_flag = False

    def run(self):
        while not self.stop_flag:
            t = time.time()
            up = tuple(n.name for n in self.nodes if n.alive() and stomp_accepts(n.addr, timeout=0.5))
            self.samples.append((t, up))
            time.sleep(self.period_s)

    def stop(self):
        self.stop_flag = True
        self.join(timeout=10)

    def max_concurrent(self) -> tuple[int, list]:
        worst = max((len(s[1]) for s in self.samples), default=0)
        bad = [s for s in self.samples if len(s[1]) > 1]
        return worst, bad

    def accepted_by(self) -> list[str]:
        """The sequence of distinct nodes that accepted, in order."""
        seq: list[str] = []
        for _, up in self.samples:
            for n in up:
                if not seq or seq[-1] != n:
                    seq.append(n)
        return seq


# ---------------------------------------------------------------------------
# Checker


@dataclass
class Report:
    sent: int
    receipted: int
    delivered_distinct: int
    deliveries: int
    duplicates: int
    redelivered_flagged: int
    lost: list[int] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stored_twice: dict[int, list[str]] = field(default_factory=dict)
    bad_bodies: int = 0

    def line(self) -> str:
        return (
            f"sent={self.sent} receipted={self.receipted} delivered={self.delivered_distinct} "
            f"deliveries={self.deliveries} duplicates={self.duplicates} "
            f"(redelivered:true on {self.redelivered_flagged}) lost={len(self.lost)} "
            f"unexpected={len(self.unexpected)} stored_twice={len(self.stored_twice)} bad_bodies={self.bad_bodies}"
        )


def check_delivery(producer: FailoverProducer, consumer: FailoverConsumer) -> Report:
    with producer.cv:
        receipted = set(producer.receipted)
    with consumer.cv:
        deliveries = list(consumer.deliveries)
        unexpected = list(consumer.unexpected)
    ids_per_mid: dict[int, set[str]] = {}
    for d in deliveries:
        ids_per_mid.setdefault(d.mid, set()).add(d.message_id)
        if d.mid < 0 or d.mid >= producer.count:
            unexpected.append(f"mid {d.mid} was never sent")
    seen = set(ids_per_mid)
    r = Report(
        sent=producer.sent_distinct,
        receipted=len(receipted),
        delivered_distinct=len(seen),
        deliveries=len(deliveries),
        duplicates=len(deliveries) - len(seen),
        redelivered_flagged=sum(1 for d in deliveries if d.redelivered),
        lost=sorted(receipted - seen),
        unexpected=unexpected,
        stored_twice={m: sorted(ids) for m, ids in ids_per_mid.items() if len(ids) > 1},
        bad_bodies=sum(1 for d in deliveries if not d.body_ok),
    )
    return r


def assert_report(r: Report) -> None:
    assert not r.lost, f"{len(r.lost)} receipted messages never delivered, e.g. {r.lost[:20]}"
    assert not r.unexpected, f"unexpected deliveries: {r.unexpected[:10]}"
    assert r.bad_bodies == 0, f"{r.bad_bodies} deliveries with a corrupted body"
    assert not r.stored_twice, (
        f"{len(r.stored_twice)} messages stored more than once (distinct message-ids): "
        f"{list(r.stored_twice.items())[:5]}"
    )


def thread_stack(t: threading.Thread) -> str:
    frame = sys._current_frames().get(t.ident)
    return "".join(traceback.format_stack(frame)) if frame else "(thread not running)"


def run_until_done(producer: FailoverProducer, consumer: FailoverConsumer, timeout: float) -> None:
    """Waits for the producer to have every message receipted and the
    consumer to have every one of them."""
    deadline = time.monotonic() + timeout
    producer.join(timeout=max(0.0, deadline - time.monotonic()))
    assert producer.failure is None, f"producer failed: {producer.failure!r}; errors={producer.errors[-5:]}"
    assert not producer.is_alive(), (
        f"producer not done after {timeout:.0f} s: receipted {len(producer.receipted)}/{producer.count}, "
        f"pending {len(producer.pending)}, errors={producer.errors[-5:]}\n{thread_stack(producer)}"
    )
    with producer.cv:
        want = set(producer.receipted)
    ok = consumer.wait_for(want, timeout=max(1.0, deadline - time.monotonic()))
    assert consumer.failure is None, f"consumer failed: {consumer.failure!r}"
    if not ok:
        missing = sorted(want - consumer.seen)
        raise AssertionError(
            f"consumer lacks {len(missing)} receipted messages after {timeout:.0f} s, e.g. {missing[:20]}; "
            f"consumer errors={consumer.errors[-5:]}"
        )
