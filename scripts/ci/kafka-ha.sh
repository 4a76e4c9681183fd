#!/usr/bin/env bash
# Runs the Kafka HA tests (tests/kafka): real Apache Kafka, real `halyard node`
# processes (a live and its backups, journal and lock in Kafka), stomp.py
# clients that fail over. SIGKILL failover, failback, the live cut off from
# Kafka by `halyard proxy`, one primary with three backups. Works from any
# directory; exits non-zero if a test fails (or Kafka cannot be started).
#
#   scripts/ci/kafka-ha.sh                  # whole suite (about 2 minutes)
#   scripts/ci/kafka-ha.sh -k failback      # extra arguments go to pytest
#
# Kafka is started with scripts/services/kafka.sh (idempotent) and left
# running: another suite may be using it; scripts/test.sh stops it at the end.
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources). KAFKA_SH = the kafka.sh of
# another checkout, to use its broker. The broker is the one kafka.sh runs, or
# starts with KAFKA_PORT and the rest of its header; the fault proxy's port
# derives from KAFKA_PORT and only one proxy fits a broker, so two runs that
# both cut Kafka need two brokers, e.g. one started in another checkout with
# `KAFKA_PORT=39092 scripts/services/kafka.sh start` (proxy port 49094).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

halyard_bin

KAFKA_SH=${KAFKA_SH:-$SCRIPTS/services/kafka.sh}
export KAFKA_SH
log "starting Kafka ($KAFKA_SH start)"
"$KAFKA_SH" start >/dev/null

PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; Kafka: $("$KAFKA_SH" bootstrap), fault proxy at $("$KAFKA_SH" proxied-bootstrap)"

# -s: the tests print their measured counts and times; -rfExX lists failures,
# errors and the known-bug xfails (and an XPASS once a bug is fixed) in the
# summary; no -x, so one failure does not hide the rest.
exec "$PY" -m pytest -q -s -rfExX --durations=10 "$ROOT/tests/kafka" "$@"
