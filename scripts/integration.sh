#!/usr/bin/env bash
# Runs the Python integration tests (tests/integration) against a real
# `halyard node` binary: crash recovery (SIGKILL/SIGTERM), STOMP semantics and
# malformed input, with stomp.py clients. Works from any directory.
#
#   scripts/integration.sh                 # whole suite
#   scripts/integration.sh -k crash        # extra arguments go to pytest
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$ROOT"

log() { printf 'integration.sh: %s\n' "$*" >&2; }

if [[ -z "${HALYARD_BIN:-}" ]]; then
    export HALYARD_BIN="$ROOT/target/release/halyard"
    # cargo decides whether anything changed; a no-op build takes well under a second.
    log "building release binary"
    cargo build --release -p halyard --quiet
fi
[[ -x "$HALYARD_BIN" ]] || { log "error: $HALYARD_BIN is not an executable"; exit 1; }

PY=$("$SCRIPT_DIR/pyenv.sh" | tail -1)
log "python: $PY; binary: $HALYARD_BIN"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest.
exec "$PY" -m pytest -q -rfE --durations=5 "$ROOT/tests/integration" "$@"
