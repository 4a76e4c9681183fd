#!/usr/bin/env bash
# Runs the Python paging tests (tests/paging) against real `halyard node`
# processes on the local journal with --max-memory-bytes 268435456: a
# backlog of 1,000,000 persistent 1 KiB messages produced with receipts and
# no consumer (a pipelined raw-socket producer, tests/harness/bulk_stomp.py),
# the node's RSS sampled every 0.2 s and bounded (640 MiB), then consumed and
# checked byte for byte, in order; and the same across a SIGKILL at half the
# backlog and a restart on the same data dir. Prints peak RSS, produce and
# consume rates, RSS per backlogged message and the restart time (the
# "paging figures" section of pytest's summary). Needs no Kafka; about 2 GiB
# of free disk per test (the journal; deleted at teardown).
# Works from any directory.
#
#   scripts/ci/paging.sh                               # whole suite
#   scripts/ci/paging.sh -k sigkill                    # extra arguments go to pytest
#   PAGING_MESSAGES=100000 scripts/ci/paging.sh        # a smaller backlog
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources); PAGING_MESSAGES,
# PAGING_MAX_MEMORY, PAGING_RSS_BOUND_MIB, PAGING_STALL_S, PAGING_ACK,
# PAGING_KEEP_DATA (tests/paging/README.md).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

[[ -r /proc/self/status ]] || die "/proc is not mounted: the paging tests read the node's RSS from /proc/PID/status"

halyard_bin
PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; messages: ${PAGING_MESSAGES:-1000000}"
"$PY" -c 'import prometheus_client, pytest' ||
    die "prometheus_client or pytest missing from the venv (scripts/services/requirements.txt)"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
# A test path as the first argument narrows the run; otherwise the suite.
if [[ $# -gt 0 && $1 != -* ]]; then
    exec "$PY" -m pytest -q -rfE --durations=10 "$@"
fi
# The Kafka module runs under scripts/ci/kafka-paging.sh.
exec "$PY" -m pytest -q -rfE --durations=10 tests/paging --ignore tests/paging/test_kafka_paging.py "$@"
