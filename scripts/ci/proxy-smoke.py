#!/usr/bin/env python3
"""Smoke check of the fault proxy between a Kafka client and the test broker's
PROXIED listener (docs/proxy.md, docs/kafka.md).

    scripts/services/kafka.sh start
    cargo build --release -p halyard
    PY=$(scripts/services/pyenv.sh | tail -1)
    "$PY" scripts/ci/proxy-smoke.py

It starts `halyard proxy --listen 127.0.0.1:19094 --upstream 127.0.0.1:9094
--control 127.0.0.1:19095` itself (or uses a running one with --no-spawn;
binary: $HALYARD_BIN, default target/release/halyard; the addresses are those
of the broker scripts/services/kafka.sh runs, the control port is the proxy's
plus one) and checks, with confluent-kafka (librdkafka):
  1. clients that bootstrap at the proxy are told the broker is at the proxy
     (the PROXIED listener's advertised address), so they stay on it;
  2. through the proxy only: create a topic, commit a transaction
     (init_transactions, produce, commit), consume it in a consumer group;
  3. POST /cut (blackhole): the proxied consumer gets nothing, the proxied
     transaction's commit times out, a new proxied client cannot even fetch
     metadata -- while a client on the plain listener (9092) keeps producing
     and consuming;
  4. POST /heal: the proxied commit goes through on retry, the proxied
     consumer receives what was produced during the cut, new clients work;
  5. POST /cut?mode=reset: librdkafka reports the transport error quickly;
     POST /heal: it works again.
Timings are printed. Exits non-zero on any unexpected result.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import libversion, version
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RDKAFKA_LOG_FILE = os.path.join(ROOT, "target", "proxy-smoke-rdkafka.log")
RDKAFKA_LOG = logging.getLogger("rdkafka")
failures = []


def step(msg):
    print(f"== {msg}", flush=True)


def check(cond, msg):
    print(("   ok: " if cond else "   FAIL: ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def ms_since(t0):
    return int((time.monotonic() - t0) * 1000)


def describe(err):
    if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], KafkaError):
        err = err.args[0]
    if isinstance(err, KafkaError):
        return f"{err.name()} (code={err.code()} retriable={err.retriable()} fatal={err.fatal()}): {err.str()}"
    return f"{type(err).__name__}: {err}"


class Control:
    """The proxy's HTTP control API."""

    def __init__(self, addr):
        self.base = f"http://{addr}"

    def call(self, method, path):
        req = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def status(self):
        return self.call("GET", "/status")

    def cut(self, mode):
        return self.call("POST", f"/cut?mode={mode}")

    def heal(self):
        return self.call("POST", "/heal")


class Errors:
    """Collects error_cb reports with the time they arrived."""

    def __init__(self, name):
        self.name = name
        self.seen = []  # (monotonic time, KafkaError)

    def __call__(self, err):
        print(f"   [{self.name} error_cb] {describe(err)}", flush=True)
        self.seen.append((time.monotonic(), err))

    def first_after(self, t0):
        for t, e in self.seen:
            if t >= t0:
                return t, e
        return None


def wait_port(addr, timeout_s):
    import socket

    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def kafka_sh(command):
    """The last line `scripts/services/kafka.sh COMMAND` prints (an address
    of the running broker, or the configured one)."""
    out = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "services", "kafka.sh"), command],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def poll_values(consumer, want, timeout_s):
    """Polls until every value in `want` arrived or time runs out; returns (got, ms)."""
    t0 = time.monotonic()
    got = set()
    while time.monotonic() - t0 < timeout_s and not want <= got:
        m = consumer.poll(0.2)
        if m is None:
            continue
        if m.error():
            print(f"   [consumer] {describe(m.error())}")
            continue
        got.add(m.value().decode())
    return got, ms_since(t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    proxy = kafka_sh("proxied-bootstrap")
    proxy_port = int(proxy.rsplit(":", 1)[1])
    ap.add_argument("--bootstrap", default=kafka_sh("bootstrap"), help="the plain listener")
    ap.add_argument("--upstream", default=kafka_sh("proxied-upstream"), help="the PROXIED listener")
    ap.add_argument("--proxy", default=proxy, help="the proxy (PROXIED's advertised address)")
    ap.add_argument("--control", default=f"127.0.0.1:{proxy_port + 1}", help="the proxy's control API")
    ap.add_argument(
        "--halyard", default=os.environ.get("HALYARD_BIN", os.path.join(ROOT, "target", "release", "halyard"))
    )
    ap.add_argument("--no-spawn", action="store_true", help="use an already running proxy")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(RDKAFKA_LOG_FILE), exist_ok=True)
    handler = logging.FileHandler(RDKAFKA_LOG_FILE, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    RDKAFKA_LOG.addHandler(handler)
    RDKAFKA_LOG.setLevel(logging.DEBUG)
    RDKAFKA_LOG.propagate = False
    run = uuid.uuid4().hex[:8]
    topic = f"halyard-proxy-smoke-{run}"
    print(f"confluent-kafka {version()[0]}, librdkafka {libversion()[0]}")
    print(f"plain listener {args.bootstrap}; proxy {args.proxy} -> PROXIED listener {args.upstream}; control {args.control}")

    proxy_proc = None
    proxy_log = os.path.join(ROOT, "target", "proxy-smoke-proxy.log")
    if not args.no_spawn:
        cmd = [args.halyard, "proxy", "--listen", args.proxy, "--upstream", args.upstream, "--control", args.control]
        print("   starting: " + " ".join(cmd))
        proxy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(proxy_log, "w"))
    try:
        if not wait_port(args.control, 10):
            print(f"FAIL: control API at {args.control} not reachable", file=sys.stderr)
            return 1
        run_checks(args, topic, Control(args.control))
    finally:
        if proxy_proc is not None:
            proxy_proc.terminate()
            proxy_proc.wait(10)
            print("-- proxy log (state changes):")
            with open(proxy_log) as f:
                for line in f:
                    if "proxy" in line and ("cut" in line or "healed" in line or "forwarding" in line):
                        print("   " + line.rstrip())
    if failures:
        print(f"\n{len(failures)} check(s) FAILED:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print(f"librdkafka log: {RDKAFKA_LOG_FILE}")
    print("\nall proxy checks passed")
    return 0


def run_checks(args, topic, ctl):
    s = ctl.status()
    check(s["state"] == "open" and s["mode"] is None, f"proxy status at start: {s}")

    # Proxied clients: short timeouts so a partition shows up in seconds, stated here.
    # librdkafka's own log (very chatty while cut) goes to a file, not the terminal.
    proxied_common = {
        "bootstrap.servers": args.proxy,
        "socket.timeout.ms": 3000,
        "socket.connection.setup.timeout.ms": 3000,
        "reconnect.backoff.max.ms": 1000,
        "logger": RDKAFKA_LOG,
    }

    step("1. metadata through the proxy advertises the proxy")
    admin_p = AdminClient(dict(proxied_common, error_cb=Errors("admin-proxied")))
    md = admin_p.list_topics(timeout=10)
    brokers = [f"{b.host}:{b.port}" for b in md.brokers.values()]
    check(brokers == [args.proxy], f"brokers seen through the proxy: {brokers}")
    admin_d = AdminClient({"bootstrap.servers": args.bootstrap, "logger": RDKAFKA_LOG})
    brokers_d = [f"{b.host}:{b.port}" for b in admin_d.list_topics(timeout=10).brokers.values()]
    check(brokers_d == [args.bootstrap], f"brokers seen on the plain listener: {brokers_d}")

    step(f"2. through the proxy only: create {topic}, transaction, consumer group")
    admin_p.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    # The broker's metadata cache learns of a new topic shortly after the
    # create answers; poll for it (bounded) rather than read it once.
    deadline = time.monotonic() + 30
    while topic not in admin_p.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    check(topic in admin_p.list_topics(timeout=10).topics, "topic created through the proxy")

    perr = Errors("tx-proxied")
    delivered = []
    txp = Producer(
        dict(
            proxied_common,
            **{
                "transactional.id": f"halyard-proxy-smoke-tx-{uuid.uuid4().hex[:8]}",
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": 60000,
                "request.timeout.ms": 5000,
                "message.timeout.ms": 30000,
                "error_cb": perr,
            },
        )
    )

    def on_delivery(err, msg):
        delivered.append((msg.value().decode(), err))
        if err is not None:
            print(f"   [tx-proxied delivery] {msg.value().decode()}: {describe(err)}")

    t0 = time.monotonic()
    txp.init_transactions(30)
    print(f"   init_transactions through the proxy: {ms_since(t0)} ms")
    txp.begin_transaction()
    for i in range(10):
        txp.produce(topic, value=f"tx-{i}".encode(), on_delivery=on_delivery)
    txp.commit_transaction(30)
    check(len(delivered) == 10 and all(e is None for _, e in delivered), "10 records committed through the proxy")

    cerr = Errors("consumer-proxied")
    cons_p = Consumer(
        dict(
            proxied_common,
            **{
                "group.id": f"halyard-proxy-smoke-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": 45000,
                "error_cb": cerr,
            },
        )
    )
    cons_p.subscribe([topic])
    want = {f"tx-{i}" for i in range(10)}
    got, took = poll_values(cons_p, want, 30)
    check(got == want, f"proxied consumer group read the 10 committed records ({took} ms)")
    s = ctl.status()
    check(
        s["connections"] >= 2 and s["bytes_up"] > 0 and s["bytes_down"] > 0,
        f"proxy carried the traffic: {s}",
    )

    cons_d = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"halyard-proxy-smoke-direct-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    cons_d.subscribe([topic])
    got, took = poll_values(cons_d, want, 30)
    check(got == want, f"direct consumer (plain listener) read them too ({took} ms)")
    prod_d = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "logger": RDKAFKA_LOG})

    step("3. POST /cut?mode=blackhole")
    s = ctl.cut("blackhole")
    t_cut = time.monotonic()
    check(s["state"] == "cut" and s["mode"] == "blackhole", f"status: {s}")

    t0 = time.monotonic()
    prod_d.produce(topic, value=b"during-cut")
    left = prod_d.flush(10)
    check(left == 0, f"direct producer on {args.bootstrap} still works during the cut ({ms_since(t0)} ms)")
    got, took = poll_values(cons_d, {"during-cut"}, 10)
    check("during-cut" in got, f"direct consumer still receives during the cut ({took} ms)")

    got, took = poll_values(cons_p, {"during-cut"}, 5)
    check(not got, f"proxied consumer receives nothing during the cut (watched {took} ms, got {sorted(got)})")

    t0 = time.monotonic()
    try:
        AdminClient(dict(proxied_common)).list_topics(timeout=5)
        check(False, "a new proxied client fetched metadata during the blackhole")
    except KafkaException as e:
        check(True, f"a new proxied client cannot fetch metadata: {describe(e)} after {ms_since(t0)} ms")

    txp.begin_transaction()
    txp.produce(topic, value=b"tx-during-cut", on_delivery=on_delivery)
    t0 = time.monotonic()
    commit_err = None
    try:
        txp.commit_transaction(8)
    except KafkaException as e:
        commit_err = e.args[0]
    took = ms_since(t0)
    check(
        commit_err is not None and not commit_err.fatal(),
        f"proxied commit_transaction(8 s) failed during the cut after {took} ms: "
        + (describe(commit_err) if commit_err else "it succeeded"),
    )
    print(f"   proxy status during the cut: {ctl.status()}")
    quiet = [e.name for e in (perr, cerr) if e.first_after(t_cut) is None]
    print(
        f"   note: error_cb reports during the blackhole: none from {quiet or 'no client'} "
        "(librdkafka only logs request timeouts; connects still succeed)"
    )

    step("4. POST /heal")
    s = ctl.heal()
    t_heal = time.monotonic()
    print(f"   the cut lasted {int((t_heal - t_cut) * 1000)} ms")
    check(s["state"] == "open" and s["mode"] is None, f"status: {s}")
    committed = False
    for attempt in range(1, 6):
        try:
            if commit_err is not None and commit_err.txn_requires_abort():
                txp.abort_transaction(30)
                print("   transaction needed an abort; redoing it")
                txp.begin_transaction()
                txp.produce(topic, value=b"tx-during-cut", on_delivery=on_delivery)
            txp.commit_transaction(30)
            committed = True
            break
        except KafkaException as e:
            commit_err = e.args[0]
            print(f"   commit attempt {attempt}: {describe(commit_err)}")
            if commit_err.fatal() or not (commit_err.retriable() or commit_err.txn_requires_abort()):
                break
    check(committed, f"proxied transaction committed after heal ({ms_since(t_heal)} ms after heal)")
    got, took = poll_values(cons_p, {"during-cut", "tx-during-cut"}, 30)
    check(
        got >= {"during-cut", "tx-during-cut"},
        f"proxied consumer caught up after heal ({ms_since(t_heal)} ms after heal)",
    )
    t0 = time.monotonic()
    md = AdminClient(dict(proxied_common)).list_topics(timeout=10)
    check(topic in md.topics, f"a new proxied client fetches metadata again ({ms_since(t0)} ms)")

    step("5. POST /cut?mode=reset, then heal")
    admin_r = AdminClient(dict(proxied_common))
    admin_r.list_topics(timeout=10)
    s = ctl.cut("reset")
    t_cut = time.monotonic()
    check(s["state"] == "cut" and s["mode"] == "reset", f"status: {s}")
    # error_cb runs inside poll(): poll the consumer to see how soon it hears of the reset.
    leftovers = []
    while cerr.first_after(t_cut) is None and time.monotonic() - t_cut < 5:
        m = cons_p.poll(0.05)
        if m is not None and not m.error():
            leftovers.append(m.value().decode())
    first = cerr.first_after(t_cut)
    check(
        first is not None,
        "the proxied consumer's error_cb reported the reset "
        + (f"{int((first[0] - t_cut) * 1000)} ms after the cut: {describe(first[1])}" if first else "within 5 s: no"),
    )
    check(not leftovers, f"proxied consumer got nothing through the reset cut ({leftovers})")
    t0 = time.monotonic()
    try:
        admin_r.list_topics(timeout=4)
        check(False, "a proxied client fetched metadata through a reset cut")
    except KafkaException as e:
        check(True, f"proxied metadata request failed: {describe(e)} after {ms_since(t0)} ms")
    ctl.heal()
    t0 = time.monotonic()
    md = admin_r.list_topics(timeout=10)
    check(topic in md.topics, f"same client works again after heal ({ms_since(t0)} ms)")
    t0 = time.monotonic()
    prod_d.produce(topic, value=b"after")
    prod_d.flush(10)
    got, took = poll_values(cons_p, {"after"}, 20)
    check("after" in got, f"proxied consumer receives new records after the reset cut ({took} ms)")

    cons_p.close()
    cons_d.close()
    admin_d.delete_topics([topic])[topic].result(timeout=30)
    print(f"   final proxy status: {ctl.status()}")


if __name__ == "__main__":
    sys.exit(main())
