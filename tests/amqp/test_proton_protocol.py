"""AMQP 1.0 protocol details with python-qpid-proton (engine API pumped by the test, and raw
frames): credit and drain, settlement modes, dispositions, multi-frame transfers, idle
time-out, and bad input answered by an error close while another connection keeps working."""

from __future__ import annotations

import time
import uuid

import pytest
from proton import Delivery, Link, Message, symbol, uint

from amqp_engine import EngineClient
from amqp_raw import ATTACH, BEGIN, TRANSFER, Described, RawAmqp, encode_value, frame, performative


def client(broker: Broker, **kw) -> EngineClient:
    c = EngineClient(broker.host, broker.amqp_port, broker.user, broker.password, **kw)
    c.opened()
    return c


def bodies(got) -> list:
    return [m.body for m, _ in got]


def drain_all(c: EngineClient, r) -> list:
    """Drains the link: every message the broker has now, then credit 0."""
    got = []
    r.drain(100)
    c.run_until(lambda: not r.draining(), what="drain to complete")
    while (x := c.take(r)) is not None:
        got.append(x)
    return got


def test_credit_limits_deliveries(broker: Broker, name):
    c = client(broker)
    try:
        s = c.sender(name)
        c.send_all(s, [Message(body=f"m{i}") for i in range(5)])
        r = c.receiver(name)
        r.flow(2)
        got = c.receive(r, 2)
        c.run_for(1.0)
        assert c.take(r) is None, "no delivery beyond the credit"
        assert r.credit == 0
        r.flow(3)
        got += c.receive(r, 3)
        assert bodies(got) == [f"m{i}" for i in range(5)]
    finally:
        c.close()


def test_drain_uses_up_credit_and_completes(broker: Broker, name):
    c = client(broker)
    try:
        s = c.sender(name)
        c.send_all(s, [Message(body=f"m{i}") for i in range(3)])
        r = c.receiver(name)
        got = drain_all(c, r)
        assert bodies(got) == ["m0", "m1", "m2"]
        assert r.credit == 0, "the broker's flow answers the drain with credit used up"
        # Drain on an empty queue completes at once with nothing.
        assert drain_all(c, r) == [] and r.credit == 0
    finally:
        c.close()


def test_unsettled_sends_are_accepted(broker: Broker, name):
    c = client(broker)
    try:
        s = c.sender(name, settle="unsettled")
        ds = c.send_all(s, [Message(body=f"m{i}", durable=True) for i in range(5)])
        assert [d.remote_state for d in ds] == [Delivery.ACCEPTED] * 5
        for d in ds:
            d.settle()
        r = c.receiver(name)
        assert bodies(drain_all(c, r)) == [f"m{i}" for i in range(5)]
    finally:
        c.close()


def test_presettled_sends_arrive(broker: Broker, name):
    c = client(broker)
    try:
        s = c.sender(name, settle="settled")
        assert s.remote_snd_settle_mode == Link.SND_SETTLED
        c.send_all(s, [Message(body=f"m{i}") for i in range(5)], settle=True)
        r = c.receiver(name)
        deadline = time.monotonic() + 10
        got = []
        while len(got) < 5 and time.monotonic() < deadline:
            got += drain_all(c, r)
        assert bodies(got) == [f"m{i}" for i in range(5)]
    finally:
        c.close()


def test_receiver_settle_first_removes_on_accept(broker: Broker, name):
    c = client(broker)
    try:
        c.send_all(c.sender(name), [Message(body="only")])
        r = c.receiver(name, rcv_settle="first")
        assert r.remote_rcv_settle_mode == Link.RCV_FIRST
        got = c.receive(r, 1 if r.flow(1) is None else 1)
        m, d = got[0]
        assert m.body == "only" and d.local_state == Delivery.ACCEPTED
        r.close()
        r2 = c.receiver(name)
        assert drain_all(c, r2) == [], "accepted and settled first: gone"
    finally:
        c.close()


def test_presettled_deliveries_to_a_receiver_are_at_most_once(broker: Broker, name):
    c = client(broker)
    try:
        c.send_all(c.sender(name), [Message(body=f"m{i}") for i in range(3)])
        r = c.receiver(name, snd_settle="settled")
        assert r.remote_snd_settle_mode == Link.SND_SETTLED
        r.flow(3)
        got = c.receive(r, 3, outcome=None, settle=True)
        assert all(d.settled for _, d in got), "the broker sends them settled"
        r.close()
        assert drain_all(c, c.receiver(name)) == []
    finally:
        c.close()


def test_released_and_modified_deliveries_come_back(broker: Broker, name):
    c = client(broker)
    try:
        c.send_all(c.sender(name), [Message(body="a"), Message(body="b")])
        r = c.receiver(name)
        r.flow(2)
        (ma, da), (mb, db) = c.receive(r, 2, outcome=None, settle=False)
        da.update(Delivery.RELEASED)
        da.settle()
        db.local.failed = True  # modified, delivery-failed: the delivery count goes up
        db.update(Delivery.MODIFIED)
        db.settle()
        r.close()
        r2 = c.receiver(name)
        got = {m.body: m for m, _ in drain_all(c, r2)}
        assert set(got) == {"a", "b"}
        assert got["a"].delivery_count == 0, "released: not counted as a delivery attempt"
        assert got["b"].delivery_count == 1, "modified with delivery-failed: counted"
    finally:
        c.close()


def test_multi_frame_transfer_both_ways(broker: Broker, name):
    max_frame = 1024
    body = "".join(chr(ord("a") + i % 26) for i in range(100_000))
    c = client(broker, max_frame_size=max_frame)
    try:
        assert c.transport.remote_max_frame_size >= 512
        s = c.sender(name)
        out0 = c.bytes_out
        c.send_all(s, [Message(body=body, properties={"k": "v"})])
        assert c.bytes_out - out0 > len(body), "the whole message went out (proton split it into frames)"
        r = c.receiver(name)
        n0 = len(c.frames_in)
        r.flow(1)
        (m, _), = c.receive(r, 1)
        assert m.body == body and m.properties == {"k": "v"}
        transfers = [f for f in c.frames_in[n0:] if f.name == "transfer"]
        assert len(transfers) >= len(body) // max_frame, f"{len(transfers)} transfer frames"
        assert max(f.size for f in transfers) <= max_frame, "frames respect our max-frame-size"
        assert [bool(f.field(5)) for f in transfers[:-1]] == [True] * (len(transfers) - 1), "more=true until the last"
    finally:
        c.close()


@pytest.mark.parametrize("max_frame", [65536, 1024])
def test_data_section_bodies_arrive_byte_for_byte(broker: Broker, name, max_frame):
    """Binary bodies (one data section) around the size from which the broker hands the stored
    body to the socket instead of copying it into the frame (512 bytes), and bodies split over
    several frames: each arrives byte for byte, with its properties, in order."""
    sizes = [0, 100, 511, 512, 513, 1024, 4000, 30_000]
    sent = [bytes((i * 7 + n) % 251 for i in range(n)) for n in sizes]
    c = client(broker, max_frame_size=max_frame)
    try:
        s = c.sender(name)
        msgs = []
        for n, b in zip(sizes, sent):
            m = Message(body=b, properties={"size": n}, durable=True)
            m.inferred = True  # a bytes body as a data section, not an amqp-value
            msgs.append(m)
        c.send_all(s, msgs)
        r = c.receiver(name)
        r.flow(len(sizes))
        got = c.receive(r, len(sizes))
        assert [m.properties["size"] for m, _ in got] == sizes
        for (m, _), b in zip(got, sent):
            assert m.inferred, f"{len(b)} bytes: not a data section"
            assert bytes(m.body) == b, f"{len(b)} bytes: body differs"
        if max_frame < 65536:
            transfers = [f for f in c.frames_in if f.name == "transfer"]
            assert max(f.size for f in transfers) <= max_frame, "frames respect our max-frame-size"
    finally:
        c.close()


def test_idle_timeout_empty_frames_keep_a_quiet_connection_open(broker: Broker, name):
    c = client(broker, idle_timeout_s=2.0)
    try:
        remote_idle = c.transport.remote_idle_timeout
        assert remote_idle > 0, "the broker announces an idle-time-out"
        quiet = max(3 * remote_idle, 6.0)
        n0 = len(c.frames_in)
        c.run_for(quiet)  # nothing but heart-beats in either direction
        empty = [f for f in c.frames_in[n0:] if f.frame_type == 0 and not f.body]
        assert not c.eof and c.conn.remote_condition is None
        assert len(empty) >= int(quiet / 2.0), f"{len(empty)} empty frames from the broker in {quiet} s"
        c.send_all(c.sender(name), [Message(body="still here")])
        assert bodies(drain_all(c, c.receiver(name))) == ["still here"]
    finally:
        c.close()


def test_silent_client_is_closed(broker: Broker, report):
    raw = RawAmqp(broker.host, broker.amqp_port, broker.user, broker.password)
    try:
        remote_open = raw.open()
        idle_ms = remote_open.field(4)
        assert idle_ms, f"broker announces no idle-time-out: {remote_open.fields}"
        idle_s = int(idle_ms) / 1000.0
        # The announced value is half the broker's own timeout (spec 2.4.5: the peer sends empty
        # frames at least that often); allow twice it plus slack, at most two minutes.
        t0 = time.monotonic()
        info = raw.wait_closed(min(2 * idle_s + 10, 120))
        waited = time.monotonic() - t0
        assert info.eof, f"still open after {waited:.1f} s of silence"
        assert info.error and info.error[0].startswith("amqp:"), info.error
        assert waited >= idle_s * 0.9, f"closed after {waited:.1f} s, before the announced {idle_s} s"
        report(f"[{broker.kind}] silent client closed after {waited:.1f} s "
              f"(announced idle-time-out {idle_s} s): {info.error}")
    finally:
        raw.close()


# Bad input after a good open + begin. Each: (bytes, condition Artemis answers, condition the
# spec names for it). Artemis (proton-j) answers undecodable performatives with
# amqp:internal-error; Halyard is held to the spec's condition (a deliberate difference).
BAD_FRAMES = {
    "size-below-8": (b"\x00\x00\x00\x04\x02\x00\x00\x00", "amqp:connection:framing-error",
                     "amqp:connection:framing-error"),
    "doff-below-2": (b"\x00\x00\x00\x0c\x01\x00\x00\x00\x00\x53\x18\x45", "amqp:connection:framing-error",
                     "amqp:connection:framing-error"),
    "larger-than-max-frame-size": (b"\x00\x03\x0d\x40\x02\x00\x00\x00" + b"\x00" * 2000,
                                   "amqp:connection:framing-error", "amqp:connection:framing-error"),
    "unknown-frame-type": (b"\x00\x00\x00\x0c\x02\x07\x00\x00\x00\x53\x18\x45", "amqp:connection:framing-error",
                           "amqp:connection:framing-error"),
    "not-amqp-at-all": (b"hello world, this is not AMQP!!!!", "amqp:connection:framing-error",
                        "amqp:connection:framing-error"),
}
BAD_PERFORMATIVES = {
    "body-not-described": (frame(encode_value("hello")), "amqp:internal-error", "amqp:decode-error"),
    "unknown-descriptor": (frame(performative(0x99, [1])), "amqp:internal-error", "amqp:decode-error"),
    # The list decodes; a mandatory field is missing: the spec's amqp:invalid-field (2.8.15,
    # "an invalid field was passed in a frame body"), where Artemis says decode-error.
    "attach-without-mandatory-fields": (frame(performative(ATTACH, [])), "amqp:decode-error", "amqp:invalid-field"),
    # A session error (spec 2.8.16): Halyard ends that session and keeps the connection,
    # where Artemis closes the connection with internal-error.
    "transfer-on-unattached-handle": (frame(performative(TRANSFER, [uint(7), uint(0), b"tag"]) + b"\x00Sw\xa1\x02hi"),
                                      "amqp:internal-error", "amqp:session:unattached-handle", "session"),
}


def check_bad_input(broker: Broker, name: str, report, case: str, data: bytes, artemis_condition: str,
                    spec_condition: str, halyard_scope: str = "connection"):
    good = client(broker)
    try:
        raw = RawAmqp(broker.host, broker.amqp_port, broker.user, broker.password)
        session_error = broker.kind != "artemis" and halyard_scope == "session"
        try:
            raw.open()
            raw.begin()
            raw.send(data)
            if session_error:
                end = raw.expect("end")
            else:
                info = raw.wait_closed(15)
        finally:
            raw.close()
        if session_error:
            # The session ends with the condition; the connection stays up.
            err = end.field(0)
            vals = list(err.value) if isinstance(err, Described) else []
            cond = str(vals[0]) if vals else None
            assert cond == spec_condition, f"end condition {cond!r}, expected {spec_condition!r}"
            report(f"[{broker.kind}] bad input {case}: end {cond}: {vals[1] if len(vals) > 1 else ''}")
            good.send_all(good.sender(name), [Message(body="after")])
            assert bodies(drain_all(good, good.receiver(name))) == ["after"]
            return
        assert info.close is not None, f"no close frame (eof={info.eof}, frames={[f.name for f in info.frames]})"
        assert info.eof, "the broker closes the socket after its close"
        cond, desc = info.error
        want = artemis_condition if broker.kind == "artemis" else spec_condition
        assert cond == want, f"close condition {cond!r} ({desc!r}), expected {want!r}"
        assert desc, "the close says what was wrong"
        report(f"[{broker.kind}] bad input {case}: close {cond}: {desc}")
        # The other connection is unaffected.
        good.send_all(good.sender(name), [Message(body="after")])
        assert bodies(drain_all(good, good.receiver(name))) == ["after"]
    finally:
        good.close()


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gets_error_close(broker: Broker, name, report, case):
    check_bad_input(broker, name, report, case, *BAD_FRAMES[case])


@pytest.mark.parametrize("case", list(BAD_PERFORMATIVES))
def test_bad_performative_gets_error_close(broker: Broker, name, report, case):
    check_bad_input(broker, name, report, case, *BAD_PERFORMATIVES[case])


def test_open_offers_jms_capabilities(broker: Broker):
    """What Qpid JMS looks for in the broker's open (issue 11 point 3)."""
    raw = RawAmqp(broker.host, broker.amqp_port, broker.user, broker.password)
    try:
        o = raw.open()
        from amqp_raw import as_list
        caps = {str(x) for x in as_list(o.field(7))}
        assert {"ANONYMOUS-RELAY", "SHARED-SUBS", "DELAYED_DELIVERY"} <= caps, caps
    finally:
        raw.close()
