"""STOMP (stomp.py) and JMS (Qpid JMS over AMQP) on the same broker: a message sent with one is
received with the other, headers and properties mapped as Artemis maps them (issue 11 point 5)."""

from __future__ import annotations

import threading

import stomp



class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.cv = threading.Condition()
        self.messages = []
        self.receipts = set()
        self.errors = []

    def on_message(self, frame):
        with self.cv:
            self.messages.append(frame)
            self.cv.notify_all()

    def on_receipt(self, frame):
        with self.cv:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cv.notify_all()

    def on_error(self, frame):
        with self.cv:
            self.errors.append(frame)
            self.cv.notify_all()

    def wait(self, pred, timeout=30.0, what="condition"):
        with self.cv:
            assert self.cv.wait_for(pred, timeout), f"timed out waiting for {what} (errors {self.errors})"


def stomp_client(broker: Broker, auto_content_length: bool = True):
    conn = stomp.Connection12([(broker.host, broker.stomp_port)], heartbeats=(0, 0),
                              auto_content_length=auto_content_length)
    lst = Listener()
    conn.set_listener("l", lst)
    if broker.user:
        conn.connect(broker.user, broker.password, wait=True)
    else:
        conn.connect(wait=True)
    return conn, lst


def stomp_send(conn, lst, destination, body, headers):
    rid = f"r-{len(lst.receipts)}-{id(body)}"
    conn.send(destination, body, headers={**headers, "receipt": rid})
    lst.wait(lambda: rid in lst.receipts, what=f"receipt {rid}")


def test_stomp_text_to_jms_text_message(broker: Broker, jms: Jms, name):
    conn, lst = stomp_client(broker, auto_content_length=False)
    try:
        stomp_send(conn, lst, f"/queue/{name}", "héllo from stomp", {"color": "red", "count": "7"})
    finally:
        conn.disconnect()
    got = jms.run("consume", "--queue", name, "--timeout-ms", "3000").of("received")
    assert len(got) == 1
    m = got[0]
    assert m["type"] == "text", "a STOMP frame without content-length is a JMS TextMessage"
    assert m["body"] == "héllo from stomp"
    assert m["props"].get("color") == "red" and m["props"].get("count") == "7", m["props"]


def test_stomp_with_content_length_to_jms(broker: Broker, jms: Jms, name):
    conn, lst = stomp_client(broker, auto_content_length=True)
    try:
        stomp_send(conn, lst, f"/queue/{name}", "sized body", {"color": "blue"})
    finally:
        conn.disconnect()
    got = jms.run("consume", "--queue", name, "--timeout-ms", "3000").of("received")
    assert len(got) == 1
    m = got[0]
    assert m["body"] == "sized body"
    # Artemis: a STOMP frame with content-length becomes a JMS BytesMessage (its documented rule);
    # Halyard follows the same rule (issue 11 point 5: map as Artemis does).
    assert m["type"] == "bytes", m
    assert m["props"].get("color") == "blue"


def test_stomp_topic_send_reaches_jms_topic_subscriber(broker: Broker, jms: Jms, name):
    sub = jms.start("consume", "--topic", name, "--count", "1", "--timeout-ms", "15000")
    sub.wait_for(lambda: sub.count("subscribed") == 1, what="JMS topic subscriber")
    conn, lst = stomp_client(broker, auto_content_length=False)
    try:
        stomp_send(conn, lst, f"/topic/{name}", "to all", {"k": "v"})
    finally:
        conn.disconnect()
    assert sub.wait(60) == 0
    got = sub.of("received")
    assert [(m["type"], m["body"], m["props"].get("k")) for m in got] == [("text", "to all", "v")]


def test_jms_text_message_to_stomp(broker: Broker, jms: Jms, name):
    jms.run("produce", "--queue", name, "--count", "2", "--property", "color=red", "--property", "weight:int=5",
            "--body", "jms text {seq}")
    conn, lst = stomp_client(broker)
    try:
        conn.subscribe(f"/queue/{name}", id="1", ack="auto")
        lst.wait(lambda: len(lst.messages) >= 2, what="2 messages over STOMP")
    finally:
        conn.disconnect()
    bodies = [f.body for f in lst.messages]
    bodies = [b.decode() if isinstance(b, bytes) else b for b in bodies]
    assert bodies == ["jms text 0", "jms text 1"], "a TextMessage reaches STOMP as its UTF-8 body"
    h = lst.messages[0].headers
    assert h.get("color") == "red" and h.get("weight") == "5" and h.get("seq") == "0", h
    assert h.get("message-id") and h.get("destination") in (f"/queue/{name}", name), h


def test_jms_bytes_message_to_stomp(broker: Broker, jms: Jms, name):
    jms.run("produce", "--queue", name, "--count", "1", "--type", "bytes", "--body", "raw bytes")
    conn, lst = stomp_client(broker)
    try:
        conn.subscribe(f"/queue/{name}", id="1", ack="auto")
        lst.wait(lambda: len(lst.messages) >= 1, what="1 message over STOMP")
    finally:
        conn.disconnect()
    f = lst.messages[0]
    body = f.body.encode() if isinstance(f.body, str) else f.body
    assert body == b"raw bytes"
    assert f.headers.get("content-length") == str(len(b"raw bytes")), f.headers
