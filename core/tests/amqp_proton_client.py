"""python-qpid-proton against Halyard's AMQP connection (see amqp_proton.rs).

Checks: SASL PLAIN, open, sessions, a producer with the server's credit, a
consumer with small credit, a multi-frame message both ways (the server's
max-frame-size is 4096), drain, idle-timeout heartbeats, and that a bad
frame gets a clear close while another connection keeps working.
"""
import socket
import struct
import sys
import time

from proton import Link, Message
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection

port = int(sys.argv[1])
url = f"amqp://127.0.0.1:{port}"

def check(cond, what):
    if not cond:
        print("FAILED:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)

conn = BlockingConnection(url, user="alice", password="secret", allowed_mechs="PLAIN", heartbeat=1)
sender = conn.create_sender("q1")
for i in range(25):
    sender.send(Message(body=f"m{i}", properties={"i": i, "f": 1.5, "s": "x"}, subject="s", durable=True,
                        priority=7, ttl=60, id=f"id-{i}", correlation_id=i, reply_to="r",
                        content_type="text/plain", annotations={"x-opt-jms-msg-type": 5}))
big = "x" * 300_000
sender.send(Message(body=big, annotations={"x-opt-jms-msg-type": 5}))
# Each body kind: data (bytes), amqp-value (map), amqp-sequence (list).
sender.send(Message(body=b"\x00\x01binary"))
sender.send(Message(body={"k": 1, "l": [1, 2]}))
seq = Message(body=[1, "two"])
seq.inferred = True
sender.send(seq)
check(True, "29 messages sent, each accepted (blocking send waits for the outcome)")

receiver = conn.create_receiver("q1", credit=3)
for i in range(25):
    m = receiver.receive(timeout=5)
    check(m.body == f"m{i}" and m.properties == {"i": i, "f": 1.5, "s": "x"} and m.subject == "s"
          and m.durable and m.priority == 7 and m.ttl == 60 and m.id == f"id-{i}"
          and m.correlation_id == i and m.reply_to == "r" and m.content_type == "text/plain"
          and m.annotations == {"x-opt-jms-msg-type": 5}, f"received m{i} with its header, properties and annotations")
    receiver.accept()
m = receiver.receive(timeout=5)
check(m.body == big and m.annotations == {"x-opt-jms-msg-type": 5}, "received the 300 kB multi-frame message")
receiver.accept()
m = receiver.receive(timeout=5)
check(m.body == b"\x00\x01binary", "data body kept")
receiver.accept()
m = receiver.receive(timeout=5)
check(m.body == {"k": 1, "l": [1, 2]} and not m.inferred, "amqp-value map body kept")
receiver.accept()
m = receiver.receive(timeout=5)
check(m.body == [1, "two"] and m.inferred, "amqp-sequence body kept")
receiver.accept()

# Drain with nothing left: the server must answer with drain and use up the credit.
link = receiver.link
link.drain(10)
conn.wait(lambda: not link.draining(), timeout=5, msg="drain answered")
check(link.credit == 0, "drain answered, credit used up")

# Idle: our heartbeats (every 0.5 s) keep the server's 2 s idle timeout at bay.
try:
    conn.wait(lambda: False, timeout=3)
except Exception:
    pass
sender.send(Message(body="after idle"))
m = receiver.receive(timeout=5) if receiver.link.credit else None
if m is None:
    receiver.link.flow(1)
    m = receiver.receive(timeout=5)
check(m.body == "after idle", "connection alive after 3 s idle with heartbeats")
receiver.accept()

# Pre-settled both ways (snd-settle-mode settled): nothing to acknowledge.
fast_sender = conn.create_sender("q3", options=AtMostOnce())
for i in range(3):
    fast_sender.send(Message(body=f"fast{i}"))
fast_receiver = conn.create_receiver("q3", credit=5, options=AtMostOnce())
for i in range(3):
    m = fast_receiver.receive(timeout=5)
    check(m.body == f"fast{i}", f"pre-settled fast{i} received")
check(fast_receiver.link.snd_settle_mode == Link.SND_SETTLED, "server honoured snd-settle-mode settled")
conn.close()

# A bad frame on a second connection: a clear close with decode-error.
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"AMQP\x00\x01\x00\x00")
s.sendall(struct.pack(">IBBH", 12, 2, 0, 0) + b"\xff\xff\xff\xff")
s.settimeout(5)
got = b""
try:
    while b"amqp:decode-error" not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
except socket.timeout:
    pass
check(got.startswith(b"AMQP\x00\x01\x00\x00") and b"amqp:decode-error" in got, "bad frame closed with amqp:decode-error")

# A wrong protocol header is answered with ours, then closed.
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET / HTTP/1.1\r\n\r\n")
s.settimeout(5)
check(s.recv(8) == b"AMQP\x00\x01\x00\x00", "wrong header answered with the AMQP header")

# Another connection works after those.
conn = BlockingConnection(url, allowed_mechs="ANONYMOUS")
sender = conn.create_sender("q2")
sender.send(Message(body="still here"))
receiver = conn.create_receiver("q2", credit=1)
m = receiver.receive(timeout=5)
check(m.body == "still here", "a new connection works after the bad ones")
receiver.accept()
conn.close()
print("all checks passed")
