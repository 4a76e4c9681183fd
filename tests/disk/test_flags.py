"""`--max-disk-usage` and `--address-full-policy` values the node refuses at
start: it exits non-zero at once, names the flag and the value, and leaves
no data dir behind. The same through the environment (HALYARD_MAX_DISK_USAGE,
HALYARD_ADDRESS_FULL_POLICY) and a --config TOML file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.node import HALYARD_BIN, child_env, free_port, require_binary

RANGE = "must be a percentage above 0 and at most 100"


def run_refused(tmp_path: Path, *args: str, env_extra: dict | None = None) -> str:
    """`halyard node ARGS` must exit non-zero by itself; returns its output."""
    require_binary()
    data = tmp_path / "data"
    cmd = [str(HALYARD_BIN), "node", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data), *args]
    env = child_env()
    env.update(env_extra or {})
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} (env {env_extra}) was still running after 20 s: it must refuse "
                             f"to start; output {e.stdout!r} {e.stderr!r}") from None
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"{' '.join(cmd)} (env {env_extra}) exited 0: {out!r}"
    assert "accepting clients" not in out and "node is live" not in out, out
    assert not data.exists(), f"a refused start made {data}"
    return out


@pytest.mark.parametrize(
    "value, expect",
    [
        ("0", f"--max-disk-usage 0: {RANGE}"),
        ("150", f"--max-disk-usage 150: {RANGE}"),
        ("100.5", f"--max-disk-usage 100.5: {RANGE}"),
        ("-5", f"--max-disk-usage -5: {RANGE}"),
        ("abc", "invalid value 'abc' for '--max-disk-usage"),
        ("", "--max-disk-usage"),
    ],
    ids=["zero", "150", "100.5", "negative", "abc", "empty"],
)
def test_bad_max_disk_usage_refused(tmp_path, value, expect):
    # `=`: a value starting with '-' is a value, not another flag.
    out = run_refused(tmp_path, f"--max-disk-usage={value}")
    assert expect in out, f"want {expect!r} in {out!r}"


def test_bad_address_full_policy_refused(tmp_path):
    out = run_refused(tmp_path, "--address-full-policy", "drop")
    assert "invalid value 'drop' for '--address-full-policy" in out, out
    for p in ("page", "block", "fail"):
        assert p in out, f"the refusal does not list {p!r}: {out!r}"


def test_bad_values_from_env_and_config_refused(tmp_path):
    out = run_refused(tmp_path, env_extra={"HALYARD_MAX_DISK_USAGE": "0"})
    assert f"--max-disk-usage 0: {RANGE}" in out, out
    out = run_refused(tmp_path, env_extra={"HALYARD_ADDRESS_FULL_POLICY": "drop"})
    assert "drop" in out and "--address-full-policy" in out, out

    cfg = tmp_path / "node.toml"
    cfg.write_text("max_disk_usage = 101\n")
    out = run_refused(tmp_path, "--config", str(cfg))
    assert f"--max-disk-usage 101: {RANGE}" in out, out
    cfg.write_text('address_full_policy = "drop"\n')
    out = run_refused(tmp_path, "--config", str(cfg))
    assert "drop" in out and str(cfg) in out, out
