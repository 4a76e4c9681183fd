#!/usr/bin/env bash
# The HA walkthrough, for people: the JMS Bridge HA walkthrough (seed 001) step by step, with
# local processes instead of containers (docs/walkthrough.md; docker-compose.yml is the same
# as containers). Kafka topic `test` is the JMS-style topic `kafka.test` through the Kafka
# bridge: a producer sends to /topic/kafka.test, a durable subscriber consumes it, a Kafka
# consumer (kcat if installed, else confluent-kafka) reads topic `test`; the live node is
# stopped and comes back, then killed and comes back, then cut off from Kafka and healed.
# At the end the script checks that every message the producer got a receipt for reached the
# subscriber, and is in Kafka topic `test` exactly once.
#
#   bash scripts/walkthrough.sh
#   kcat -C -b 127.0.0.1:9092 -t test -e -f '%k %h %s\n'     # afterwards: what Kafka holds
#
# Builds target/release/halyard first (cargo; a no-op when it is up to date) unless
# HALYARD_BIN names a binary, then runs scripts/ci/walkthrough.sh, which CI runs as it is.
# Its settings (WALK_RATE, WALK_SECONDS, WALK_KAFKA_READER=kcat|python, WALK_KEEP=1, ...)
# are described there. Logs and records: target/walkthrough/RUN_ID/.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

halyard_bin
exec "$SCRIPTS/ci/walkthrough.sh" "$@"
