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


def refused(tmp_path, *args: str) -> str:
    """Runs `halyard node ARGS` on a free port and a fresh data dir; asserts
    it exits non-zero within EXIT_WITHIN_S without a panic; returns stderr."""
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
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_LIMIT_S, env=child_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"`{' '.join(cmd)}` still ran after {RUN_LIMIT_S:.0f} s: the setting was accepted\n"
            f"stderr: {e.stderr!r}"
        ) from None
    took = time.monotonic() - t0
    what = f"`{' '.join(cmd)}` -> exit {r.returncode} after {took:.2f} s\nstdout: {r.stdout}\nstderr: {r.stderr}"
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

    # The bridge asked for on the local journal (no --kafka-bootstrap).
    for flag in (["--bridge", "true"], ["--bridge"]):
        err = refused(tmp_path, *flag)
        assert "invalid Kafka bridge setting" in err, err
        assert "bridge" in err and "--kafka-bootstrap" in err, err
