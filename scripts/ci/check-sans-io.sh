#!/usr/bin/env bash
# Fails if halyard-core depends on an async runtime, a Kafka client or an RNG
# crate, or if its source reads a clock, spawns threads or touches sockets or
# files. The core must stay sans-IO: time and bytes arrive as inputs.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

deps=$(cargo tree -q -p halyard-core -e normal --prefix none | awk '{print $1}' | sort -u)
bad_deps=$(echo "$deps" | grep -E -x '(tokio|mio|rdkafka|madsim|madsim-tokio|async-std|smol|rand|getrandom|socket2|libc)' || true)
if [ -n "$bad_deps" ]; then
  echo "halyard-core depends on I/O or randomness crates: $bad_deps" >&2
  exit 1
fi

# Source patterns that would read the outside world.
bad_src=$(grep -rn -E 'Instant::now|SystemTime|std::thread|std::net|std::fs|std::process|tokio|thread_rng|RandomState|HashMap|HashSet' core/src || true)
if [ -n "$bad_src" ]; then
  echo "halyard-core source reads the outside world (or iterates in random order):" >&2
  echo "$bad_src" >&2
  exit 1
fi
echo "halyard-core is sans-IO: dependencies are $(echo "$deps" | tr '\n' ' ')"
