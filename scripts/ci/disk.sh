#!/usr/bin/env bash
# Runs the Python disk-limit tests (tests/disk) against real `halyard node`
# processes, each on a size-limited tmpfs of its own (a mount namespace made
# with `unshare -Urm`), and the memory limit (--max-memory-bytes: held,
# refused, a restart over the limit) on ordinary folders: bad --max-disk-usage / --address-full-policy values
# refused at start; STOMP producers held (page, block) or refused (fail)
# while the disk is above the limit and going on below it (stomp.py); AMQP
# producers without credit (block) or with transfers rejected (fail)
# (python-qpid-proton); /metrics; and ENOSPC during a journal append (no
# receipt, the node steps down and comes back, the journal reloads).
# Works from any directory; needs no Kafka.
#
#   scripts/ci/disk.sh                   # whole suite
#   scripts/ci/disk.sh -k enospc         # extra arguments go to pytest
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# The small disks: a tmpfs mounted in a user + mount namespace. Without that
# the suite cannot run, and it says so (never skipped).
command -v unshare >/dev/null || die "the unshare command (util-linux) is missing: the disk tests mount a tmpfs per node with 'unshare -Urm'"
probe=$(mktemp -d)
# shellcheck disable=SC2016  # $0 is expanded by the inner sh
if ! out=$(unshare -Urm sh -c 'mount -t tmpfs -o size=1m tmpfs "$0"' "$probe" 2>&1); then
    rmdir "$probe"
    die "'unshare -Urm sh -c \"mount -t tmpfs ...\"' does not work here ($out): the disk tests need util-linux's unshare and user namespaces (root, or kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0)"
fi
rmdir "$probe"

halyard_bin
PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; $(unshare --version | head -1)"
"$PY" -c 'import prometheus_client, proton, stomp' ||
    die "prometheus_client, python-qpid-proton or stomp.py missing from the venv (scripts/services/requirements.txt)"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
# A test path as the first argument narrows the run; otherwise the suite.
if [[ $# -gt 0 && $1 != -* ]]; then
    exec "$PY" -m pytest -q -rfE --durations=10 "$@"
fi
exec "$PY" -m pytest -q -rfE --durations=10 tests/disk "$@"
