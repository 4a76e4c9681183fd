#!/usr/bin/env bash
# Runs the Kafka bridge tests (tests/bridge) against real `halyard node`
# processes on the Kafka journal (the bridge is on by default there) and on
# the local journal (--bridge-kafka-bootstrap, the outbox), with stomp.py on
# the STOMP side and confluent-kafka on the Kafka side: records out of
# Halyard and into it exactly once across a SIGKILL of the live (Kafka
# journal), out at least once with bounded duplicates across a SIGKILL
# (local journal), headers, keys and the loop guard, a configured route and
# what the default prefix does not reach, queue subscriptions refused, and
# bad bridge settings refused at start. Works from any directory; about a
# minute.
#
# Needs a running Kafka: scripts/services/kafka.sh start. Its address comes
# from the caller, exported as HALYARD_KAFKA_BOOTSTRAP (this script does not
# start Kafka, and fails without it rather than skip):
#
#   scripts/services/kafka.sh start
#   export HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap)
#   scripts/ci/bridge.sh                      # whole suite
#   scripts/ci/bridge.sh -k loop_guard        # extra arguments go to pytest
#
# The node logs of a failed test stay in target/bridge-tests/<test>N/*.log
# (those of passed tests are removed; the directory is emptied at each run).
#
# Environment: HALYARD_KAFKA_BOOTSTRAP = Kafka bootstrap HOST:PORT (required);
# HALYARD_BIN = binary to test (default: target/release/halyard, built here
# if missing or older than the sources).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

[[ -n "${HALYARD_KAFKA_BOOTSTRAP:-}" ]] ||
    die "HALYARD_KAFKA_BOOTSTRAP is not set: the bridge tests need a running Kafka (scripts/services/kafka.sh start; export HALYARD_KAFKA_BOOTSTRAP=\$(scripts/services/kafka.sh bootstrap))"
export HALYARD_KAFKA_BOOTSTRAP

halyard_bin
PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; Kafka: $HALYARD_KAFKA_BOOTSTRAP"
"$PY" -c 'import confluent_kafka, stomp' ||
    die "confluent-kafka or stomp.py missing from the venv (scripts/services/requirements.txt)"

# -s: the tests print their counts and times; -rfE lists every failure and
# error in the summary; no -x, so one failure does not hide the rest.
# tests/pytest.ini puts tests/ (the shared harness package) on the path.
exec "$PY" -m pytest -q -s -rfE --durations=5 \
    --basetemp "$ROOT/target/bridge-tests" -o tmp_path_retention_policy=failed \
    tests/bridge "$@"
