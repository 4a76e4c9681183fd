#!/usr/bin/env bash
# Runs the Python mirroring tests (tests/mirror, issue 13) against real
# `halyard node` processes: seed 002 (Artemis's mirroring + lock-coordinator
# example) with two brokers, each on its own local journal, mirroring to each
# other with --mirror-sync, one lock deciding which one accepts clients (a
# file lock in a shared folder, ZooKeeper, and Kafka); 30 messages through the STOMP
# failover client, SIGKILL of server0, all 30 consumed from server1 in order
# exactly once; 10,000 messages with the SIGKILL mid-stream, no receipted
# message lost, duplicates counted, server0 restarted as a passive; a
# partition of the mirror link through `halyard proxy` (the active keeps
# receipting, the out-of-sync passive does not take over when the active is
# killed, after the heal it rejoins); failback (a restarted primary with
# --allow-failback catches up, joins the in-sync set, and the active backup
# hands the role back; without the flag it stays passive). Prints the
# failover time and the rest of the figures (the "mirror figures" section
# of pytest's summary).
# Works from any directory.
#
#   scripts/ci/mirror.sh                       # whole suite
#   scripts/ci/mirror.sh -k file_lock          # extra arguments go to pytest
#   scripts/ci/mirror.sh -s                    # progress lines and figures as they come
#
# ZooKeeper (for test_seed002_zookeeper) is started with
# scripts/services/zookeeper.sh (ZOOKEEPER_PORT and the rest of its header
# apply; HALYARD_ZOOKEEPER is set to its connect string), and Kafka (for
# test_seed002_kafka) with scripts/services/kafka.sh (KAFKA_PORT and the
# rest of its header apply; HALYARD_KAFKA_BOOTSTRAP is set to its bootstrap
# address); each is stopped at the end if this script started it, and one
# already running (scripts/test.sh starts Kafka earlier) is left running. If
# either cannot be started the script fails: nothing is skipped.
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources); MIRROR_PASSIVE_LINE,
# MIRROR_IN_SYNC_LINE, MIRROR_COMPARE, MIRROR_CUT_MODE (tests/mirror/README.md).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

halyard_bin
PY=$(venv_python)
"$PY" -c 'import prometheus_client, pytest, stomp' ||
    die "prometheus_client, pytest or stomp.py missing from the venv (scripts/services/requirements.txt)"

ZOOKEEPER_SH="$SCRIPTS/services/zookeeper.sh"
KAFKA_SH="$SCRIPTS/services/kafka.sh"
started_zookeeper=0
started_kafka=0
stop_services() {
    if ((started_kafka)); then
        "$KAFKA_SH" stop >/dev/null 2>&1 || log "could not stop Kafka"
    fi
    if ((started_zookeeper)); then
        "$ZOOKEEPER_SH" stop >/dev/null 2>&1 || log "could not stop ZooKeeper"
    fi
}
trap stop_services EXIT
if ! "$ZOOKEEPER_SH" status >/dev/null 2>&1; then
    log "starting ZooKeeper ($ZOOKEEPER_SH start)"
    started_zookeeper=1
fi
"$ZOOKEEPER_SH" start >/dev/null || die "ZooKeeper did not start ($ZOOKEEPER_SH start): the ZooKeeper lock test needs it"
"$ZOOKEEPER_SH" status >/dev/null || die "ZooKeeper is not answering ($ZOOKEEPER_SH status)"
HALYARD_ZOOKEEPER=$("$ZOOKEEPER_SH" connect-string)
export HALYARD_ZOOKEEPER
if ! "$KAFKA_SH" status >/dev/null 2>&1; then
    log "starting Kafka ($KAFKA_SH start)"
    started_kafka=1
fi
"$KAFKA_SH" start >/dev/null || die "Kafka did not start ($KAFKA_SH start): the Kafka lock test needs it"
"$KAFKA_SH" status >/dev/null || die "Kafka is not answering ($KAFKA_SH status)"
HALYARD_KAFKA_BOOTSTRAP=$("$KAFKA_SH" bootstrap)
export HALYARD_KAFKA_BOOTSTRAP
log "python: $PY; binary: $HALYARD_BIN; ZooKeeper at $HALYARD_ZOOKEEPER; Kafka at $HALYARD_KAFKA_BOOTSTRAP"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path. Not exec: the trap stops what it started afterwards.
# A test path as the first argument narrows the run; otherwise the suite.
if [[ $# -gt 0 && $1 != -* ]]; then
    "$PY" -m pytest -q -rfE --durations=10 "$@"
else
    "$PY" -m pytest -q -rfE --durations=10 tests/mirror "$@"
fi
