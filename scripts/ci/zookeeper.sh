#!/usr/bin/env bash
# Runs the ZooKeeper lock tests (io/tests/zookeeper_lock.rs) against a real
# Apache ZooKeeper: two contenders and one holder, epochs that only grow, a
# closed session and an expired one (the holder cut off by the fault proxy)
# handing the lock over, loss events, stale state writes refused; and the
# coordinated lock's ZooKeeper tests (io/tests/coordinated_lock.rs, the
# `zookeeper_*` ones: two drivers taking turns as the active). Works from
# any directory; exits non-zero if a test fails or ZooKeeper cannot be
# started.
#
#   scripts/ci/zookeeper.sh                  # the whole file (a few seconds once built)
#   scripts/ci/zookeeper.sh expired          # extra arguments go to the test binary
#
# ZooKeeper is started with scripts/services/zookeeper.sh (ZOOKEEPER_PORT and
# the rest of its header apply) and stopped at the end if this script started
# it; one that was already running is left running.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

ZOOKEEPER_SH="$SCRIPTS/services/zookeeper.sh"
started=0
if ! "$ZOOKEEPER_SH" status >/dev/null 2>&1; then
    log "starting ZooKeeper ($ZOOKEEPER_SH start)"
    started=1
fi
stop_zookeeper() {
    if ((started)); then
        "$ZOOKEEPER_SH" stop >/dev/null 2>&1 || log "could not stop ZooKeeper"
    fi
}
trap stop_zookeeper EXIT
"$ZOOKEEPER_SH" start >/dev/null

HALYARD_ZOOKEEPER=$("$ZOOKEEPER_SH" connect-string)
export HALYARD_ZOOKEEPER
log "ZooKeeper at $HALYARD_ZOOKEEPER"

# --ignored: the tests are marked #[ignore] so that the workspace's test step,
# which runs without ZooKeeper, lists them as ignored instead of failing.
# --skip kafka_: coordinated_lock's Kafka tests, which scripts/test.sh runs
# with Kafka.
cargo test --profile test-release -p halyard-io --test zookeeper_lock --test coordinated_lock \
    -- --ignored --skip kafka_ "$@"
