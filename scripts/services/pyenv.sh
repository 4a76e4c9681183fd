#!/usr/bin/env bash
# Creates (idempotently) the Python venv at <repo>/target/pyenv with the pinned
# clients from scripts/services/requirements.txt (stomp.py, confluent-kafka,
# python-qpid-proton, pytest). The last line of stdout is the venv's python:
#
#   PY=$(scripts/services/pyenv.sh | tail -1)
#
# Environment: PYTHON = interpreter to build the venv from (default python3).
set -euo pipefail

# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
REQ="$SCRIPTS/services/requirements.txt"
VENV="$ROOT/target/pyenv"
PY="$VENV/bin/python"
STAMP="$VENV/.installed"
PYTHON=${PYTHON:-python3}

want_stamp() {
    { sha256sum "$REQ" | cut -d' ' -f1; "$PY" -c 'import sys; print(sys.version)'; } 2>/dev/null
}

if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
    printf '%s\n' "$PY"
    exit 0
fi

if [[ ! -x "$PY" ]] || ! "$PY" -c 'import sys' 2>/dev/null; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    mkdir -p "$ROOT/target"
    "$PYTHON" -m venv "$VENV" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
fi

rm -f "$STAMP"
log "installing $REQ"
"$PY" -m pip install --disable-pip-version-check -q -r "$REQ" >&2 || die "pip install -r $REQ failed"
"$PY" -c 'import stomp, confluent_kafka, proton, pytest, prometheus_client, selenium' || die "installed packages do not import"
want_stamp >"$STAMP"
log "ready: $("$PY" -m pip freeze --disable-pip-version-check | grep -iE '^(stomp|confluent|python-qpid|pytest|prometheus|selenium)' | tr '\n' ' ')"
printf '%s\n' "$PY"
