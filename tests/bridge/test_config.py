"""A bad bridge setting stops `halyard node` at start: a non-zero exit within
a few seconds, with a message on stderr that names the setting and the bad
value (and no panic). A node that accepted the setting would keep running:
the run is cut after RUN_LIMIT_S and the test fails."""

from __future__ import annotations

import subprocess
import time

from bridge_helpers import kafka_bootstrap, unique
from harness.node import HALYARD_BIN, child_env, free_port

# A node refusing its configuration exits long before this.
EXIT_WITHIN_S = 10.0
RUN_LIMIT_S = 20.0


def refused(tmp_path, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs `halyard node ARGS` on a free port and a fresh data dir (with
    `env` added to its environment); asserts it exits non-zero within
    EXIT_WITHIN_S without a panic; returns stderr."""
    cmd = [
        str(HALYARD_BIN),
        "node",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--data-dir",
        str(tmp_path / unique("data")),
        *args,
    ]
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT_S,
            env={**child_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"`{' '.join(cmd)}` (env {env}) still ran after {RUN_LIMIT_S:.0f} s: the setting was accepted\n"
            f"stderr: {e.stderr!r}"
        ) from None
    took = time.monotonic() - t0
    shown = " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), *cmd])
    what = f"`{shown}` -> exit {r.returncode} after {took:.2f} s\nstdout: {r.stdout}\nstderr: {r.stderr}"
    print(what)
    assert r.returncode != 0, what
    assert took < EXIT_WITHIN_S, what
    assert "panicked" not in r.stderr + r.stdout, what
    return r.stderr


def test_bad_route_config_fails_at_start(tmp_path):
    kafka = ["--kafka-bootstrap", kafka_bootstrap(), "--cluster-id", unique("cfg")]

    err = refused(tmp_path, *kafka, "--bridge-route", "match=(;address=a.${topic}")
    assert "invalid Kafka bridge setting" in err, err
    assert "bridge route 1" in err and 'match = "("' in err and "not a valid regex" in err, err

    # The second route is the bad one: the message says which.
    err = refused(
        tmp_path,
        *kafka,
        "--bridge-route",
        "match=orders-.*;address=shop.${topic}",
        "--bridge-route",
        "match=pay[;address=pay.${topic}",
    )
    assert "bridge route 2" in err and 'match = "pay["' in err and "not a valid regex" in err, err

    err = refused(tmp_path, *kafka, "--bridge-route", "match=orders-.*;address=shop.events")
    assert "invalid Kafka bridge setting" in err, err
    assert 'address = "shop.events"' in err and "${topic}" in err, err

    err = refused(tmp_path, *kafka, "--bridge-route", "match=orders-.*;address=${topic}.${topic}")
    assert 'address = "${topic}.${topic}"' in err and "exactly once" in err, err

    # Routes are checked even while the bridge is off: on the local journal
    # without --bridge-kafka-bootstrap, and with `--bridge false`.
    err = refused(tmp_path, "--bridge-route", "match=(;address=a.${topic}")
    assert "bridge route 1" in err and 'match = "("' in err and "not a valid regex" in err, err
    err = refused(tmp_path, *kafka, "--bridge", "false", "--bridge-route", "match=orders-.*;address=shop.events")
    assert 'address = "shop.events"' in err and "${topic}" in err, err

    # The bridge asked for on the local journal with no Kafka to bridge to
    # (neither --kafka-bootstrap nor --bridge-kafka-bootstrap): the message
    # names the flag that would give it one.
    for flag in (["--bridge", "true"], ["--bridge"]):
        err = refused(tmp_path, *flag)
        assert "invalid Kafka bridge setting" in err, err
        assert "bridge = true" in err and "--bridge-kafka-bootstrap" in err, err


def test_bridge_kafka_bootstrap_other_than_the_journals_fails_at_start(tmp_path):
    """With the Kafka journal the bridge uses the journal's Kafka (its
    transactions make out exactly once): a `--bridge-kafka-bootstrap` (or
    HALYARD_BRIDGE_KAFKA_BOOTSTRAP) naming another Kafka is refused, and the
    message names the setting and both addresses."""
    bootstrap = kafka_bootstrap()
    other = f"127.0.0.1:{free_port()}"
    kafka = ["--kafka-bootstrap", bootstrap, "--cluster-id", unique("cfg")]

    err = refused(tmp_path, *kafka, "--bridge-kafka-bootstrap", other)
    assert "invalid Kafka bridge setting" in err, err
    assert f"bridge_kafka_bootstrap = {other}" in err and bootstrap in err, err

    err = refused(tmp_path, *kafka, env={"HALYARD_BRIDGE_KAFKA_BOOTSTRAP": other})
    assert f"bridge_kafka_bootstrap = {other}" in err, err
