#!/usr/bin/env bash
# Runs the Python integration tests (tests/integration) against a real
# `halyard node` binary: crash recovery (SIGKILL/SIGTERM), STOMP semantics and
# malformed input, with stomp.py clients. Works from any directory.
#
#   scripts/ci/integration.sh                 # whole suite
#   scripts/ci/integration.sh -k crash        # extra arguments go to pytest
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

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
exec "$PY" -m pytest -q -rfE --durations=5 "$ROOT/tests/integration" "$@"
