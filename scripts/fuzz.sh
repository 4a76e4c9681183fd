#!/usr/bin/env bash
# Fuzzing campaigns: runs the cargo-fuzz targets of fuzz/ (every one, or the
# ones named) for SECONDS each, one after the other, and prints per target the
# executions and the coverage reached (libFuzzer's `cov:` edges and `ft:`
# features), then the total. Exits non-zero if a target crashed, naming the
# target and the crash input.
#
# Each target starts from a copy of its committed seed corpus
# (fuzz/corpus/TARGET, copied to target/fuzz-corpus/TARGET, where the inputs
# the run finds are kept; the committed corpus does not grow). Crash inputs go
# to target/fuzz-artifacts/TARGET/, each run's log to target/fuzz-logs/.
# The targets are cargo-fuzz's layout (fuzz/Cargo.toml, libfuzzer-sys), built
# here by cargo itself with the instrumentation flags `cargo fuzz build
# --sanitizer none` passes (cargo-fuzz 0.13: SanitizerCoverage with inline
# 8-bit counters, a PC table, traced compares and stack depth, `--cfg
# fuzzing`), so a fresh machine does not spend 90 s compiling cargo-fuzz;
# `cargo fuzz run` on the same fuzz/ works as well. Built into target/fuzz
# with the active (stable) toolchain, RUSTC_BOOTSTRAP=1 letting it take the
# unstable sancov pass: optimised, with debug assertions and overflow checks,
# without a sanitizer (halyard-core has no unsafe code).
#
# FUZZ_BUILD=dev builds fuzz/'s dev profile, lightly optimised (103 s for
# the six targets instead of about 215 s on 2 cores; executions run at a
# half to a tenth of release's speed): what the test command's brief run
# uses. Campaigns keep the default, release.
#
#   scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_BUILD=dev scripts/fuzz.sh 10     # every target briefly (the test command)
#   scripts/fuzz.sh 600 node_ops stomp_decode
#   target/fuzz/x86_64-unknown-linux-gnu/release/node_ops CRASH_FILE   # replay a crash
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

usage="usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]"
seconds=${1:-60}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "$usage"
shift $(( $# > 0 ? 1 : 0 ))

export RUSTC_BOOTSTRAP=1

# The [[bin]] names of fuzz/Cargo.toml: one per target.
mapfile -t all < <(awk '/^\[\[bin\]\]/ { bin = 1; next } bin && /^name *=/ { gsub(/[" ]/, "", $0); sub(/^name=/, "", $0); print; bin = 0 }' fuzz/Cargo.toml)
[[ ${#all[@]} -gt 0 ]] || die "no [[bin]] targets in fuzz/Cargo.toml"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || die "no fuzz target $t (there are: ${all[*]})"
    [[ -d fuzz/corpus/$t ]] || die "no seed corpus fuzz/corpus/$t"
done

profile=${FUZZ_BUILD:-release}
host=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz 0.13's `build --sanitizer none` gives rustc (its project.rs).
# --target keeps these flags off build scripts and proc macros.
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
flags+=" --cfg fuzzing -Clink-dead-code -Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions"
build=(--manifest-path fuzz/Cargo.toml --target "$host" --target-dir target/fuzz)
case $profile in
    # Release: one codegen unit, as cargo-fuzz does (sancov otherwise blocks ThinLTO imports).
    release) build+=(--release --config profile.release.debug=true); flags+=" -Coverflow-checks -Ccodegen-units=1" ;;
    dev) ;;
    *) die "FUZZ_BUILD=$profile: must be release or dev" ;;
esac
for t in "${targets[@]}"; do build+=(--bin "$t"); done
built_at=$(date +%s)
RUSTFLAGS="$flags ${RUSTFLAGS:-}" CARGO_FUZZ=1 CARGO_FUZZ_MANIFEST="$ROOT/fuzz/Cargo.toml" cargo build "${build[@]}"
log "built ${#targets[@]} targets ($profile) in $(( $(date +%s) - built_at )) s"
bins="$ROOT/target/fuzz/$host/$([[ $profile == dev ]] && echo debug || echo release)"

mkdir -p target/fuzz-logs
crashes=()
total=0
rows=()
for t in "${targets[@]}"; do
    corpus="$ROOT/target/fuzz-corpus/$t"
    artifacts="$ROOT/target/fuzz-artifacts/$t"
    out="$ROOT/target/fuzz-logs/$t.log"
    rm -rf "$corpus" && mkdir -p "$corpus" "$artifacts"
    cp fuzz/corpus/"$t"/* "$corpus"/
    log "$t: ${seconds} s from $(find "$corpus" -type f | wc -l) seed inputs"
    status=0
    "$bins/$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "$corpus" >"$out" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
    last=$(grep -E '^#[0-9]+' "$out" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    total=$(( total + ${execs:-0} ))
    rows+=("$(printf '%-16s %14s %10s %8s %8s %8s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
    if [[ $status -ne 0 ]]; then
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -1)
        crashes+=("$t: exit status $status, input ${crash:-(none written)}, log $out")
        grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$out" >&2 || tail -20 "$out" >&2
    fi
done

printf '\n%-16s %14s %10s %8s %8s %8s\n' target executions exec/s cov ft corpus
printf '%s\n' "${rows[@]}"
printf '%-16s %14s   (%s s per target)\n' total "$total" "$seconds"
if [[ ${#crashes[@]} -gt 0 ]]; then
    printf 'CRASH %s\n' "${crashes[@]}" >&2
    die "${#crashes[@]} of ${#targets[@]} fuzz targets crashed (replay: $bins/TARGET INPUT)"
fi
echo "fuzz: ${#targets[@]} targets, $total executions, no crash"
