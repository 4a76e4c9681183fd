#!/usr/bin/env bash
# Runs the Python operations tests (tests/operations) against real
# `halyard node` processes with their HTTP endpoint (--http): /metrics parsed
# by prometheus_client's OpenMetrics parser, /health/* across a live/backup
# failover, the management API and the `halyard queue` / `node-status` CLI.
# Works from any directory.
#
#   scripts/ci/operations.sh                  # whole suite
#   scripts/ci/operations.sh -k metrics       # extra arguments go to pytest
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

halyard_bin
PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN"
"$PY" -c 'import prometheus_client, stomp' ||
    die "prometheus_client or stomp.py missing from the venv (scripts/services/requirements.txt)"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
exec "$PY" -m pytest -q -rfE --durations=5 tests/operations "$@"
