#!/usr/bin/env bash
# Runs the paging tests over the Kafka journal (tests/paging/test_kafka_paging.py)
# against real `halyard node` processes and a real Apache Kafka: a backlog of
# 100,000 persistent 1 KiB messages past --max-memory-bytes 16777216,
# produced with receipts and no consumer, paged (halyard_paged_messages > 0)
# and read back from the journal topic as one consumer takes every message
# once, in order; and the same across a SIGKILL of the live and a failover
# to its backup, whose standby copy keeps bodies only up to the paging
# threshold. Prints the figures (rates, RSS, records read back at the
# takeover) in pytest's "paging figures" summary. Works from any directory.
#
#   scripts/ci/kafka-paging.sh                          # both tests
#   scripts/ci/kafka-paging.sh -k failover              # extra arguments go to pytest
#   PAGING_MESSAGES=1000000 scripts/ci/kafka-paging.sh  # a bigger backlog
#
# Kafka is started with scripts/services/kafka.sh (idempotent) and left
# running: another suite may be using it; scripts/test.sh stops it at the end.
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources); PAGING_MESSAGES (default
# here 100000), PAGING_MAX_MEMORY (default here 16777216), PAGING_RSS_BOUND_MIB,
# PAGING_STALL_S, PAGING_ACK (tests/paging/README.md); KAFKA_SH = the kafka.sh
# of another checkout, to use its broker.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

[[ -r /proc/self/status ]] || die "/proc is not mounted: the paging tests read the node's RSS from /proc/PID/status"

halyard_bin

KAFKA_SH=${KAFKA_SH:-$SCRIPTS/services/kafka.sh}
export KAFKA_SH
log "starting Kafka ($KAFKA_SH start)"
"$KAFKA_SH" start >/dev/null

export PAGING_MESSAGES=${PAGING_MESSAGES:-100000}
export PAGING_MAX_MEMORY=${PAGING_MAX_MEMORY:-16777216}
# tests/paging/test_kafka_paging.py runs only when asked (scripts/ci/paging.sh
# runs the folder without Kafka).
export PAGING_KAFKA=1

PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; Kafka: $("$KAFKA_SH" bootstrap); messages: $PAGING_MESSAGES; --max-memory-bytes $PAGING_MAX_MEMORY"
"$PY" -c 'import prometheus_client, pytest' ||
    die "prometheus_client or pytest missing from the venv (scripts/services/requirements.txt)"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
exec "$PY" -m pytest -q -rfE --durations=10 tests/paging/test_kafka_paging.py "$@"
