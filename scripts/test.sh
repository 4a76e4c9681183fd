#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls exactly this).
#
# It installs and starts what it needs: Apache Kafka and Apache Artemis 2.56
# from Maven Central (scripts/services/kafka.sh, KRaft on 127.0.0.1;
# scripts/services/artemis.sh), the Qpid JMS test tool built by Maven
# (tests/jms), and Python clients from PyPI into target/pyenv
# (scripts/services/pyenv.sh). A service that does not come
# up fails the run; nothing is skipped. Its steps that are more than a command
# live in scripts/ci/.
#
#   bash scripts/test.sh
#   SIM_SEEDS=10000 MADSIM_TEST_NUM=1000 bash scripts/test.sh
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

SIM_SEEDS=${SIM_SEEDS:-2000}
export MADSIM_TEST_NUM=${MADSIM_TEST_NUM:-200}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
started=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
work="$ROOT/target/test-run"
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    scripts/services/kafka.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "format (cargo fmt --check)"
cargo fmt --all --check

# In the test-release profile: the build scripts (librdkafka's C build, ring)
# and proc macros clippy has to build are then the ones the test step reuses.
step "lint (cargo clippy --all-targets -D warnings)"
cargo clippy --workspace --all-targets --profile test-release --features halyard-sim/planted-bugs -- -D warnings

step "halyard-core stays sans-IO"
scripts/ci/check-sans-io.sh

step "no two source files import each other, no module over 900 lines"
python3 scripts/ci/check-imports.py

step "unit, property, codec, journal, proxy, driver and CLI tests"
cargo test --workspace --profile test-release

step "simulator self-tests: determinism, planted bugs caught"
# One run: its summary lines here, the whole output in target/test-run if it fails.
status=0
cargo test --profile test-release -p halyard-sim --features planted-bugs -- --nocapture >"$work/planted-bugs.log" 2>&1 || status=$?
grep -E "planted bug|test result|panicked|FAILED" "$work/planted-bugs.log" || true
((status == 0)) || { tail -50 "$work/planted-bugs.log"; echo "simulator self-tests failed (exit $status): $work/planted-bugs.log" >&2; exit "$status"; }

step "simulator with debug assertions: 300 seeds, broker invariants checked after every step"
cargo test --profile debug-seeds -p halyard-sim --test debug_seeds -- --include-ignored

# The binary every later step runs: the test step built it (test-release,
# optimised like release) for bin/tests/cli.rs. Release's whole-program
# optimisation (fat LTO) changes speed, not behaviour, and would cost 8 more
# minutes on 2 cores. It has the workspace's test features: core's in-memory
# testkit driver and the local journal's crash hooks are compiled in, but
# only test code can reach them; a `cargo build -p halyard` without them
# would compile core, io, sim and the binary again (2.5 minutes).
step "the optimised binary the test step built (test-release profile)"
bin="$ROOT/target/test-release/halyard"
[[ -x $bin ]] || { echo "no $bin after the test step" >&2; exit 1; }
"$bin" --version

step "simulation: $SIM_SEEDS seeds"
"$bin" sim --seeds "$SIM_SEEDS"
"$bin" sim --seed 42 --check-determinism | tail -1

step "madsim: real driver and client, $MADSIM_TEST_NUM seeds"
scripts/ci/madsim.sh

step "fuzzing: every fuzz target for 10 s from its seed corpus and regression inputs (libFuzzer on stable with RUSTC_BOOTSTRAP=1, a lightly optimised build)"
FUZZ_BUILD=dev scripts/fuzz.sh 10

step "Python clients (PyPI into target/pyenv)"
PY=$(venv_python)
export PY HALYARD_BIN="$bin"

step "python-qpid-proton against the core's AMQP connection machine (the test ignored without it)"
# --workspace: the test step's build (same features), nothing to compile.
HALYARD_PROTON_PYTHON="$PY" cargo test --workspace --profile test-release --test amqp_proton -- --include-ignored

step "scripts: every shell script parses (and passes shellcheck), every Python file compiles, the bench tools start"
scripts/ci/check-scripts.sh

step "Apache Kafka (Maven Central, KRaft on 127.0.0.1)"
scripts/services/kafka.sh start
scripts/services/kafka.sh status
"$PY" scripts/ci/kafka-smoke.py --bootstrap "$(scripts/services/kafka.sh bootstrap)"

step "the fault proxy between librdkafka clients and real Kafka (PROXIED listener, cut, heal)"
"$PY" scripts/ci/proxy-smoke.py

step "Kafka model vs real Kafka (through the fault proxy for the group scenario)"
proxy=$(scripts/services/kafka.sh proxied-bootstrap)
upstream=$(scripts/services/kafka.sh proxied-upstream)
control=127.0.0.1:$(( ${proxy##*:} + 1 ))
"$bin" proxy --listen "$proxy" --upstream "$upstream" --control "$control" >"$work/proxy.log" 2>&1 &
pids+=($!)
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) HALYARD_KAFKA_PROXY="$proxy" HALYARD_KAFKA_PROXY_CONTROL="$control" \
    cargo test --workspace --profile test-release --test kafka_model_conformance -- --ignored --test-threads 2
kill "${pids[-1]}" 2>/dev/null || true

step "hot-standby journal copy vs a full read of real Kafka"
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) \
    cargo test --workspace --profile test-release --test kafka_standby -- --ignored

step "Kafka journal reads of paged messages vs real Kafka (by id, tombstoned, across activations; the page reader)"
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) \
    cargo test --workspace --profile test-release --test kafka_journal_reads -- --ignored

step "Kafka mirror lock (--lock-coordinator kafka:) vs real Kafka: one holder, epochs grow, stale and fenced writes refused, a SIGKILLed holder and one cut off by the fault proxy followed with a larger epoch; the coordinated lock driver on it"
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) \
HALYARD_KAFKA_PROXIED_BOOTSTRAP=$(scripts/services/kafka.sh proxied-bootstrap) \
HALYARD_KAFKA_PROXIED_UPSTREAM=$(scripts/services/kafka.sh proxied-upstream) \
    cargo test --workspace --profile test-release --test kafka_mirror_lock -- --ignored
# The coordinated lock driver on it (io/tests/coordinated_lock.rs, its kafka_* tests).
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) \
    cargo test --workspace --profile test-release --test coordinated_lock -- --ignored kafka_

step "ZooKeeper lock: the io lock (ephemeral node, fencing epoch, lock state) against a real Apache ZooKeeper 3.9.5 (Maven Central, standalone on 127.0.0.1)"
scripts/ci/zookeeper.sh

step "integration tests with stomp.py against real nodes (local journal)"
scripts/ci/integration.sh

step "operations: /metrics (prometheus_client's parser), health across a failover, the management API and CLI (real nodes)"
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) scripts/ci/operations.sh

step "security: users and permissions (--security-file), SASL, HTTP Basic auth, TLS listeners and connection limits (stomp.py, python-qpid-proton, real nodes)"
scripts/ci/security.sh

step "disk limits: --max-disk-usage and --address-full-policy on a small tmpfs (block, fail, AMQP credit) and ENOSPC during an append (stomp.py, python-qpid-proton, real nodes)"
scripts/ci/disk.sh

step "paging: 1,000,000 persistent 1 KiB messages past --max-memory-bytes 256 MiB paged to the local journal, RSS sampled under 640 MiB, consumed byte for byte in order, also across a SIGKILL and restart (real nodes)"
scripts/ci/paging.sh

step "paging over the Kafka journal: 100,000 persistent 1 KiB messages past --max-memory-bytes 16 MiB read back from the topic in order, also across a SIGKILL and failover to a backup (real nodes, real Kafka)"
scripts/ci/kafka-paging.sh

step "mirroring: seed 002's flow with real brokers (sync mirroring both ways, file lock, ZooKeeper lock and Kafka lock, SIGKILL of the active, all 30 from the other), 10,000 messages with the kill mid-stream, the killed broker back in sync (stomp.py, real nodes)"
scripts/ci/mirror.sh

step "the Kafka bridge: kafka.<topic> addresses <-> Kafka topics exactly once across a SIGKILL (stomp.py, confluent-kafka, real nodes)"
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) scripts/ci/bridge.sh

step "the web console in headless Chromium (Debian chromium + chromium-driver, Selenium from PyPI)"
scripts/ci/console.sh

step "live/backup failover on Kafka with real processes"
scripts/ci/kafka-ha.sh

step "AMQP 1.0 and JMS (Qpid JMS, python-qpid-proton; local and Kafka pairs) and STOMP vs Artemis 2.56, each test against Halyard and Artemis"
HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) STOMP_COMPAT_STRICT=1 scripts/ci/amqp-tests.sh

step "the HA walkthrough with local processes"
scripts/ci/walkthrough.sh

step "docker-compose.yml accepted by docker compose config"
if docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose.yml config -q && echo "docker compose config: docker-compose.yml accepted"
elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f docker-compose.yml config -q && echo "docker-compose config: docker-compose.yml accepted ($(docker-compose version --short 2>/dev/null))"
else
    echo "NOTE: neither 'docker compose' nor 'docker-compose' is installed here; the compose file is not checked (install one to check it)"
fi

step "benchmarks: criterion benches run once, and a halyard bench smoke run"
# Each criterion bench once (criterion's test mode under `cargo test`), on
# the test step's artifacts (--workspace: the same features, so only the
# bench targets compile): `cargo bench` would build everything again in the
# bench profile.
cargo test --workspace --profile test-release --benches
"$bin" node --listen 127.0.0.1:61690 --data-dir "$work/bench-node" >"$work/bench-node.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "accepting clients (STOMP, AMQP)" "$work/bench-node.log" && break; sleep 0.1; done
"$bin" bench --url tcp://127.0.0.1:61690 --smoke
"$bin" bench --protocol amqp --url tcp://127.0.0.1:61690 --smoke

step "all tests passed in $(( $(date +%s) - started )) s"
