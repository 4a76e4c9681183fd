#!/usr/bin/env bash
# The real Tokio driver and failover client under madsim: seeded runs of a
# three-node cluster (Kafka served by the simulator's model) with kills,
# restarts and clogged links; zero lost receipted messages per seed. A failing
# seed prints `MADSIM_TEST_SEED=...`; rerun with that variable to replay it.
#
#   scripts/ci/madsim.sh                  # seeds 1..200
#   MADSIM_TEST_NUM=1000 scripts/ci/madsim.sh
#   MADSIM_TEST_SEED=42 MADSIM_TEST_NUM=1 RUST_LOG=info scripts/ci/madsim.sh -- --nocapture
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
export RUSTFLAGS="--cfg madsim"
export MADSIM_TEST_SEED=${MADSIM_TEST_SEED:-1}
export MADSIM_TEST_NUM=${MADSIM_TEST_NUM:-200}
export MADSIM_TEST_JOBS=${MADSIM_TEST_JOBS:-2}
# A separate target dir: everything is compiled with --cfg madsim.
cargo clippy -p halyard-io --target-dir target/madsim \
  --test madsim_failover --test madsim_planted -- -D warnings
cargo test -p halyard-io --target-dir target/madsim \
  --test madsim_failover --test madsim_planted "$@"
