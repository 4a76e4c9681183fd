#!/usr/bin/env bash
# Runs the Kafka HA tests (tests/kafka): real Apache Kafka, real `halyard node`
# processes (a live and its backups, journal and lock in Kafka), stomp.py
# clients that fail over. SIGKILL failover, failback, the live cut off from
# Kafka by `halyard proxy`, one primary with three backups. Works from any
# directory; exits non-zero if a test fails (or Kafka cannot be started).
#
#   scripts/kafka-ha.sh                  # whole suite (about 2 minutes)
#   scripts/kafka-ha.sh -k failback      # extra arguments go to pytest
#
# Kafka is started with scripts/kafka.sh (idempotent) and left running: another
# suite may be using it; scripts/test.sh stops it at the end.
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources). KAFKA_SH = another copy of
# scripts/kafka.sh to use (for a broker of your own, e.g. a copy in a scratch
# tree run with KAFKA_PORT=49092: the fault proxy's port is fixed by the
# broker's advertised PROXIED listener, so two suites cannot share a broker
# and both cut it).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$ROOT"

log() { printf 'kafka-ha.sh: %s\n' "$*" >&2; }

if [[ -z "${HALYARD_BIN:-}" ]]; then
    export HALYARD_BIN="$ROOT/target/release/halyard"
    log "building release binary"
    cargo build --release -p halyard --quiet
fi
[[ -x "$HALYARD_BIN" ]] || { log "error: $HALYARD_BIN is not an executable"; exit 1; }

KAFKA_SH=${KAFKA_SH:-$SCRIPT_DIR/kafka.sh}
export KAFKA_SH
log "starting Kafka ($KAFKA_SH start)"
"$KAFKA_SH" start >/dev/null

PY=$("$SCRIPT_DIR/pyenv.sh" | tail -1)
log "python: $PY; binary: $HALYARD_BIN; Kafka: $("$KAFKA_SH" bootstrap), fault proxy at $("$KAFKA_SH" proxied-bootstrap)"

# -s: the tests print their measured counts and times; -rfExX lists failures,
# errors and the known-bug xfails (and an XPASS once a bug is fixed) in the
# summary; no -x, so one failure does not hide the rest.
exec "$PY" -m pytest -q -s -rfExX --durations=10 -p no:cacheprovider "$ROOT/tests/kafka" "$@"
