#!/usr/bin/env bash
# The AMQP 1.0 / JMS tests (tests/amqp) and the STOMP differential tests against Artemis
# (tests/stomp_compat), with everything they need installed and started here:
#
#   - jms-tool: tests/jms built by Maven (Qpid JMS 2.10.0 from Maven Central, Java 17)
#   - python-qpid-proton and stomp.py from PyPI into target/pyenv (scripts/services/pyenv.sh)
#   - Apache Artemis 2.56 (scripts/services/artemis.sh) as the instance `tests`, with an AMQP acceptor;
#     the Artemis shared-store pair used by the failover tests is started by the tests themselves
#   - halyard: HALYARD_BIN, default target/release/halyard (built here if it is missing)
#
# A service that cannot be started fails the run; nothing is skipped. STOMP headers listed as
# pending in tests/stomp_compat/test_artemis_headers.py are xfail (none today;
# STOMP_COMPAT_STRICT=1: must pass).
#
#   scripts/ci/amqp-tests.sh                       # both suites, both brokers
#   scripts/ci/amqp-tests.sh tests/stomp_compat    # arguments go to pytest (paths, -k, -x, ...)
#   AMQP_TEST_BROKERS=artemis scripts/ci/amqp-tests.sh tests/amqp
#
#   AMQP_TEST_BROKERS=halyard AMQP_KAFKA=0 scripts/ci/amqp-tests.sh tests/amqp/test_jms_mirror.py
#                                                  # Halyard only: neither Artemis nor Kafka started
#
# Environment: HALYARD_BIN, HALYARD_KAFKA_BOOTSTRAP (else Kafka is started here, unless AMQP_KAFKA=0),
# AMQP_TEST_BROKERS (artemis,halyard; Artemis is started only when listed),
# AMQP_ARTEMIS_SLOW=1 (also run Artemis in the tests marked slow_on_artemis), STOMP_COMPAT_STRICT,
# ARTEMIS_KEEP=1 (leave the Artemis test instance running afterwards), and the Artemis ports:
# ARTEMIS_STOMP_PORT (61633), ARTEMIS_CORE_PORT (61636), ARTEMIS_AMQP_PORT (61637),
# ARTEMIS_PAIR_PORTS (61646,61649).
set -euo pipefail

# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# The Artemis test instance: its own name and ports, so a benchmark's Artemis can run beside it.
export ARTEMIS_INSTANCE=${ARTEMIS_INSTANCE:-tests}
export ARTEMIS_AMQP=1
export ARTEMIS_STOMP_PORT=${ARTEMIS_STOMP_PORT:-61633}
export ARTEMIS_CORE_PORT=${ARTEMIS_CORE_PORT:-61636}
export ARTEMIS_AMQP_PORT=${ARTEMIS_AMQP_PORT:-61637}
export ARTEMIS_AMQP_IDLE_TIMEOUT_MS=${ARTEMIS_AMQP_IDLE_TIMEOUT_MS:-4000}
export ARTEMIS_MAX_DISK_USAGE=${ARTEMIS_MAX_DISK_USAGE:-100}
export ARTEMIS_PAIR_PORTS=${ARTEMIS_PAIR_PORTS:-61646,61649}

command -v java >/dev/null || die "java not found (Java 17 is needed for Qpid JMS and Artemis)"
command -v mvn >/dev/null || die "mvn not found (Maven builds tests/jms and fetches Artemis)"

halyard_bin

log "building tests/jms (Qpid JMS client tool)"
mvn -q -B -Dstyle.color=never -f tests/jms/pom.xml package >&2 || die "Maven build of tests/jms failed"
[[ -f tests/jms/target/jms-tool.jar ]] || die "no tests/jms/target/jms-tool.jar after the build"
export JMS_TOOL_JAR="$ROOT/tests/jms/target/jms-tool.jar"

PY=$(venv_python)
"$PY" -c 'import proton, stomp, pytest' || die "python-qpid-proton / stomp.py / pytest missing in $PY"

stop_artemis() {
    if [[ "${ARTEMIS_KEEP:-}" != 1 ]]; then
        "$SCRIPTS/services/artemis.sh" stop >/dev/null 2>&1 || true
    fi
}
# Artemis only when it is one of the brokers (tests/stomp_compat's fixture starts it itself when
# it runs without it).
if [[ ",${AMQP_TEST_BROKERS:-artemis,halyard}," == *",artemis,"* ]]; then
    trap stop_artemis EXIT
    log "starting Artemis (instance $ARTEMIS_INSTANCE: STOMP $ARTEMIS_STOMP_PORT, AMQP $ARTEMIS_AMQP_PORT)"
    "$SCRIPTS/services/artemis.sh" start || die "Artemis did not start"
    "$SCRIPTS/services/artemis.sh" status || die "Artemis does not answer"
fi

# The Halyard pair on a Kafka journal needs Kafka: the one scripts/test.sh started, or ours
# (AMQP_KAFKA=0: none; the Kafka pair's tests then fail saying HALYARD_KAFKA_BOOTSTRAP is missing).
if [[ ",${AMQP_TEST_BROKERS:-artemis,halyard}," == *",halyard,"* && -z "${HALYARD_KAFKA_BOOTSTRAP:-}" \
      && "${AMQP_KAFKA:-1}" != 0 ]]; then
    log "starting Kafka for the Halyard pair on a Kafka journal"
    "$SCRIPTS/services/kafka.sh" start || die "Kafka did not start"
    HALYARD_KAFKA_BOOTSTRAP=$("$SCRIPTS/services/kafka.sh" bootstrap)
    export HALYARD_KAFKA_BOOTSTRAP
fi
log "python: $PY; halyard: $HALYARD_BIN; brokers: ${AMQP_TEST_BROKERS:-artemis,halyard}"
if (($# == 0)); then
    set -- tests/amqp tests/stomp_compat
fi
# -rfExX: list failures, errors, xfails (with their reasons) and unexpected passes.
"$PY" -m pytest -q -rfExX --durations=10 -p no:cacheprovider "$@"
