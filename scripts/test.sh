#!/usr/bin/env bash
# The whole test suite. Installs and starts what it needs: Apache Kafka from
# Maven Central (scripts/kafka.sh) and Python clients from PyPI into
# target/pyenv (scripts/pyenv.sh). Fails loudly if a service does not come up.
#
#   bash scripts/test.sh            # everything (what CI runs)
#   SIM_SEEDS=10000 bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
SIM_SEEDS=${SIM_SEEDS:-2000}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
started=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

step "format (cargo fmt --check)"
cargo fmt --all --check

step "lint (cargo clippy --all-targets -D warnings)"
cargo clippy --workspace --all-targets --features halyard-sim/planted-bugs -- -D warnings

step "halyard-core stays sans-IO"
scripts/check-sans-io.sh

step "unit, property and driver tests (cargo test)"
cargo test --workspace

step "simulator self-tests with planted bugs (release)"
cargo test --release -p halyard-sim --features planted-bugs

step "release binary"
cargo build --release -p halyard
bin="$root/target/release/halyard"
"$bin" --help >/dev/null

step "simulation: $SIM_SEEDS seeds"
"$bin" sim --seeds "$SIM_SEEDS"
"$bin" sim --seed 42 --check-determinism >/dev/null

step "Python clients (PyPI, target/pyenv)"
PY=$(scripts/pyenv.sh | tail -1)
export PY HALYARD_BIN="$bin"

step "Apache Kafka (Maven Central, KRaft on 127.0.0.1)"
scripts/kafka.sh start
trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
scripts/kafka.sh status
"$PY" scripts/kafka-smoke.py

step "integration tests with real clients (stomp.py)"
scripts/integration.sh

step "benchmarks compile and run once (criterion --test)"
cargo bench -p halyard-benches -- --test

step "all tests passed"
