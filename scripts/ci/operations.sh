#!/usr/bin/env bash
# Runs the Python operations tests (tests/operations) against real
# `halyard node` processes with their HTTP endpoint (--http): /metrics parsed
# by prometheus_client's OpenMetrics parser, /health/* across a live/backup
# failover, the management API and the `halyard queue` / `node-status` CLI,
# and the journal metrics of a live/backup pair on the Kafka journal.
# Works from any directory.
#
# Needs a running Kafka: scripts/services/kafka.sh start. Its address comes
# from the caller, exported as HALYARD_KAFKA_BOOTSTRAP (this script does not
# start Kafka, and fails without it rather than skip the Kafka test):
#
#   scripts/services/kafka.sh start
#   export HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap)
#   scripts/ci/operations.sh                  # whole suite
#   scripts/ci/operations.sh -k metrics       # extra arguments go to pytest
#
# Environment: HALYARD_KAFKA_BOOTSTRAP = Kafka bootstrap HOST:PORT (required);
# HALYARD_BIN = binary to test (default: target/release/halyard, built here
# if missing or older than the sources).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

[[ -n "${HALYARD_KAFKA_BOOTSTRAP:-}" ]] ||
    die "HALYARD_KAFKA_BOOTSTRAP is not set: tests/operations/test_kafka_metrics.py needs a running Kafka (scripts/services/kafka.sh start; export HALYARD_KAFKA_BOOTSTRAP=\$(scripts/services/kafka.sh bootstrap))"
export HALYARD_KAFKA_BOOTSTRAP

halyard_bin
PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; Kafka: $HALYARD_KAFKA_BOOTSTRAP"
"$PY" -c 'import prometheus_client, stomp' ||
    die "prometheus_client or stomp.py missing from the venv (scripts/services/requirements.txt)"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
exec "$PY" -m pytest -q -rfE --durations=5 tests/operations "$@"
