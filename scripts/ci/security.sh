#!/usr/bin/env bash
# Runs the Python security tests (tests/security) against real `halyard node`
# processes: `halyard user hash`, security files (--security-file) refused at
# start, STOMP logins and the log never holding a password, permissions per
# address pattern (stomp.py), SASL and link permissions over AMQP
# (python-qpid-proton), HTTP Basic auth of the API and console, the
# non-loopback --listen rule, TLS listeners (--tls-listen, client
# certificates; the CA and certificates made with the openssl CLI) and
# connection limits. Works from any directory; needs no Kafka.
#
#   scripts/ci/security.sh                   # whole suite
#   scripts/ci/security.sh -k tls            # extra arguments go to pytest
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# tests/security/test_tls.py makes its CA and certificates with the openssl
# CLI: installed from Debian if missing, never skipped.
if ! command -v openssl >/dev/null; then
    command -v apt-get >/dev/null || die "the openssl CLI is missing and there is no apt-get to install it"
    log "installing openssl with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >&2; } ||
        die "apt-get install openssl failed"
fi
halyard_bin
PY=$(venv_python)
log "python: $PY; binary: $HALYARD_BIN; $(openssl version)"
"$PY" -c 'import prometheus_client, proton, stomp' ||
    die "prometheus_client, python-qpid-proton or stomp.py missing from the venv (scripts/services/requirements.txt)"

# -rfE: list every failure and error in the summary; no -x, so one failure
# does not hide the rest. tests/pytest.ini puts tests/ (the shared harness
# package) on the path.
exec "$PY" -m pytest -q -rfE --durations=5 tests/security "$@"
