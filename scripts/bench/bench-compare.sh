#!/usr/bin/env bash
# Halyard against the ceiling of its journal and against Apache ActiveMQ Artemis, in one run,
# on one machine and one Kafka, then BENCHMARKS.md (scripts/bench/bench-report.py).
#
#   scripts/bench/bench-compare.sh      build, run every configuration ROUNDS times, write the report
#
# Configurations (CONFIGS, in this order within a round):
#   ceiling        `halyard kafka-ceiling`: a plain rdkafka transactional producer writing
#                  journal-shaped 1 KiB records as fast as it can (sized to ~CEILING_SECONDS,
#                  with CEILING_TOMBSTONES=1 also each message's tombstone one transaction
#                  later: the same records Halyard writes for a message stored and consumed;
#                  CEILING_RUNS runs, the better one counts)
#   halyard-kafka  `halyard node` with the Kafka journal (a fresh cluster id each round)
#   halyard-kafka-bridged  the Kafka bridge's cost (docs/bench.md#the-kafka-bridge): the same node
#                  flags as halyard-kafka, two runs per round, each on a fresh node:
#                  halyard-kafka-topic (the control, unless BRIDGE_CONTROL=0): the bench's producer
#                  sends to /topic/bench-RUN-rN, an address that is NOT bridged, and `halyard consume`
#                  (a durable subscription, client-individual acks) is its only consumer
#                  (bench --consumers 0), so every message is journaled and later tombstoned as on
#                  halyard-kafka; then halyard-kafka-bridged: exactly that, but to
#                  /topic/kafka.bench-RUN-rN, so each message is ALSO produced to the Kafka topic
#                  bench-RUN-rN (created on first use) in the journal batch's own transaction.
#                  A plain (non-durable) topic subscription, which is all `halyard bench` makes,
#                  is not journaled: with it a bridged run writes the Kafka record INSTEAD of the
#                  journal records, which is not the bridge's cost. Throughput of these runs is
#                  msg/s sent (receipted after the transaction commits); the durable consumer's
#                  count and lag are checked and recorded (results/LABEL-rN.run).
#   halyard-local  `halyard node` with the local journal (fsync on; a fresh data dir under target/),
#                  serving /metrics on --http 127.0.0.1:HALYARD_HTTP_PORT that only the bench reads,
#                  twice (see --node-metrics below)
#   halyard-local-paged  exactly halyard-local with --max-memory-bytes 1048576 (the least accepted):
#                  messages past 90% of it are paged to the journal and read back (issue 14: paging
#                  must not slow the common case, consumers keeping up)
#   halyard-local-scraped  exactly halyard-local (same node flags, same STOMP load), but a scraper
#                  GETs http://127.0.0.1:HALYARD_HTTP_PORT/metrics every SCRAPE_INTERVAL seconds
#                  (`curl -sf`) for the whole bench (warm-up, measured window and drain); every
#                  scrape is logged (logs/LABEL-rN.scrapes: time, ok/fail, HTTP code, bytes, seconds).
#                  A failed scrape (curl error, non-2xx or empty body) fails the run (the report
#                  shows it failed) and the script exits non-zero after writing the report.
#                  Closed loop only: no open-loop run even when LATENCY_RATE is set
#   halyard-mirror-sync  two `halyard node` processes mirroring to each other (docs/mirroring.md), each on
#                  its local journal in its own fresh data dir (DIR/server0, DIR/server1), --mirror-sync
#                  both ways, the file lock in a fresh shared folder (--lock-coordinator file:DIR/locks
#                  --lock-id bench --check-period-ms MIRROR_CHECK_PERIOD_MS). server0 gets halyard-local's
#                  flags (client port HALYARD_LOCAL_PORT, --http HALYARD_HTTP_PORT, mirror listener
#                  MIRROR_PORT0) and takes the lock; server1 (client port MIRROR_PASSIVE_PORT, --http
#                  MIRROR_PASSIVE_HTTP_PORT, mirror listener MIRROR_PORT1) starts once server0 accepts
#                  clients, and the bench starts once server0 logs `peer server1 joined the in-sync
#                  set`. The bench loads server0 (the active) exactly as halyard-local; CPU is sampled
#                  for both processes (broker = the active, passive = server1). Unless MIRROR_SCRAPE=0,
#                  the active's /metrics is scraped every SCRAPE_INTERVAL s as in halyard-local-scraped
#                  (a failed scrape fails the run) and its halyard_mirror_* lines are kept
#                  (logs/LABEL-rN.scrapes.kept: EPOCH METRIC VALUE). Also an open-loop run.
#   halyard-mirror-async  exactly halyard-mirror-sync with --mirror-sync false on both brokers (a
#                  receipt waits for the local journal only; the stream follows behind)
#   artemis        Apache ActiveMQ Artemis (scripts/services/artemis.sh: default persistent journal,
#                  STOMP acceptor, login artemis/artemis; its data emptied before each run).
#                  Its STOMP consumer window is set to ARTEMIS_WINDOW (-1, unbounded: Halyard's
#                  default; Artemis's own default is 10 KiB for client-individual acks, with which
#                  its consumer falls behind). Unless ARTEMIS_DEFAULT_WINDOW_RUN=0, a run with
#                  Artemis's default window follows (label artemis-defaultwindow, not in the goals).
#   halyard-local-amqp  the same `halyard node` (local journal, fresh data dir), loaded over AMQP 1.0
#                  (`halyard bench --protocol amqp`: SASL ANONYMOUS, /queue/bench -> address bench
#                  with the `queue` capability, unsettled sends timed to the broker's `accepted`)
#   artemis-amqp   Artemis as above with its AMQP acceptor (ARTEMIS_AMQP=1 scripts/services/artemis.sh
#                  start: 127.0.0.1:ARTEMIS_AMQP_PORT, SASL PLAIN artemis/artemis), same AMQP load
# The brokers get the same closed-loop `halyard bench` workload (same window, producers,
# consumers, size, persistence), one broker at a time; the AMQP runs differ only by --protocol.
# Every `halyard node` with the local journal (halyard-local, halyard-local-scraped,
# halyard-local-amqp, the mirrors' server0 and their open-loop runs) gets the same --http flag,
# and the bench of each of those runs gets --node-metrics http://127.0.0.1:HALYARD_HTTP_PORT/metrics:
# it GETs the node's /metrics when its measured window starts and when it ends, and its JSON then
# has the node's append stalls (journal compaction pauses) in that window (node_append_stalls;
# the report's "Append stalls" section). A binary whose bench lacks the flag runs without it.
# Unless LATENCY_RATE=0, halyard-local, artemis, halyard-local-amqp, artemis-amqp and the
# halyard-mirror-* configurations also get an
# open-loop run at LATENCY_RATE msg/s (labels LABEL-openloop): latencies at an equal offered
# load, which closed-loop runs cannot give (docs/bench.md).
#
# Environment (defaults in brackets):
#   PRODUCERS [1] CONSUMERS [1] SIZE [1024] WINDOW [1000] DURATION [20] WARMUP [15] RATE [max]
#                         (15 s warm-up: Artemis's JIT needs 10-15 s of load to reach its
#                         steady throughput; with 5 s its measured window still climbs)
#   DESTINATION [/queue/bench] PERSISTENT [true] RECEIPTS [true] ACK [client-individual]
#   ROUNDS [1]            rounds of every configuration; the report takes the median
#   CONFIGS               [ceiling halyard-kafka halyard-local halyard-local-scraped artemis
#                          halyard-local-amqp artemis-amqp]
#   LATENCY_RATE [5000]   open-loop rate for the equal-load latency runs; 0 skips them
#   CEILING_SECONDS [20]  CEILING_RUNS [2]  CEILING_TXN [1000] (messages per transaction)
#   CEILING_TOMBSTONES [1] (1: the ceiling also tombstones each message, as Halyard does)
#   KAFKA_WARMUP_MESSAGES [1000000]  written through kafka-ceiling before the calibration and
#                         the rounds, not measured (a freshly started Kafka speeds up several-fold
#                         over its first minutes); 0 skips it
#   ARTEMIS_WINDOW [-1]   ARTEMIS_DEFAULT_WINDOW_RUN [1]
#   HALYARD_KAFKA_PORT [61701] HALYARD_LOCAL_PORT [61702]  (Artemis: ARTEMIS_STOMP_PORT, 61613,
#                         ARTEMIS_AMQP_PORT, 61627)
#   HALYARD_HTTP_PORT [61703]  the local-journal nodes' --http port (/metrics)
#   SCRAPE_INTERVAL [1]   seconds between /metrics scrapes in halyard-local-scraped (whole seconds)
#   MIRROR_PASSIVE_PORT [61704] MIRROR_PASSIVE_HTTP_PORT [61705]  the mirrors' server1 (the passive)
#   MIRROR_PORT0 [61706] MIRROR_PORT1 [61707]  the mirror listeners of server0 and server1
#   MIRROR_CHECK_PERIOD_MS [1000]  the mirrors' --check-period-ms (the default)
#   MIRROR_SCRAPE [1]     0: the halyard-mirror-* runs are not scraped (no halyard_mirror_* figures)
#   SETTLE [3]            seconds of quiet between configurations
#   SAMPLE_INTERVAL [0.25] seconds between CPU samples (/proc/PID/task/*/stat)
#   BUILD [1]             cargo build --release -p halyard first (0: use target/release/halyard)
#   HALYARD_BIN [target/release/halyard]  the binary measured, e.g. a copy built from a clean
#                         export of a commit while others edit the work tree (then BUILD=0);
#                         HALYARD_BIN_SOURCE: one line saying what it was built from (in the report)
#   BRIDGE_CONTROL [1]    0: halyard-kafka-bridged runs without its halyard-kafka-topic control
#   BRIDGE_IDLE [3]       seconds without a message after which the durable consumer stops
#   REPORT [BENCHMARKS.md]  PLOTS [docs/benchmarks with the default REPORT, else REPORT's name
#                         without .md plus -plots] (the report copies the plots there)
#                         e.g. REPORT=/tmp/bridge.md leaves BENCHMARKS.md and docs/benchmarks alone
# Raw results, logs and CPU samples: target/bench-compare/RUN_ID/ (target/bench-compare/latest).
#
# Kafka (only when CONFIGS has ceiling, halyard-kafka or halyard-kafka-bridged):
# scripts/services/kafka.sh start if it is not running (then stopped at the end); if it was
# already running (someone else may use it) it is left running. Topics this script creates
# (ceiling topics, the Halyard clusters' journal and lock topics, the bridged runs' Kafka
# topics) are deleted after use so the log cleaner does not compact them during later runs.
set -euo pipefail

# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

PRODUCERS=${PRODUCERS:-1}
CONSUMERS=${CONSUMERS:-1}
SIZE=${SIZE:-1024}
WINDOW=${WINDOW:-1000}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-15}
RATE=${RATE:-max}
DESTINATION=${DESTINATION:-/queue/bench}
PERSISTENT=${PERSISTENT:-true}
RECEIPTS=${RECEIPTS:-true}
ACK=${ACK:-client-individual}
ROUNDS=${ROUNDS:-1}
CONFIGS=${CONFIGS:-ceiling halyard-kafka halyard-local halyard-local-scraped artemis halyard-local-amqp artemis-amqp}
LATENCY_RATE=${LATENCY_RATE:-5000}
CEILING_SECONDS=${CEILING_SECONDS:-20}
CEILING_RUNS=${CEILING_RUNS:-2}
CEILING_TXN=${CEILING_TXN:-1000}
KAFKA_WARMUP_MESSAGES=${KAFKA_WARMUP_MESSAGES:-1000000}
CEILING_TOMBSTONES=${CEILING_TOMBSTONES:-1}
CEILING_FLAGS=()
if [[ "$CEILING_TOMBSTONES" == 1 ]]; then CEILING_FLAGS=(--tombstones); fi
HALYARD_KAFKA_PORT=${HALYARD_KAFKA_PORT:-61701}
HALYARD_LOCAL_PORT=${HALYARD_LOCAL_PORT:-61702}
HALYARD_HTTP_PORT=${HALYARD_HTTP_PORT:-61703}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-1}
[[ "$SCRAPE_INTERVAL" =~ ^[1-9][0-9]*$ ]] || { echo "SCRAPE_INTERVAL must be a whole number of seconds" >&2; exit 1; }
MIRROR_PASSIVE_PORT=${MIRROR_PASSIVE_PORT:-61704}
MIRROR_PASSIVE_HTTP_PORT=${MIRROR_PASSIVE_HTTP_PORT:-61705}
MIRROR_PORT0=${MIRROR_PORT0:-61706}
MIRROR_PORT1=${MIRROR_PORT1:-61707}
MIRROR_CHECK_PERIOD_MS=${MIRROR_CHECK_PERIOD_MS:-1000}
MIRROR_SCRAPE=${MIRROR_SCRAPE:-1}
ARTEMIS_STOMP_PORT=${ARTEMIS_STOMP_PORT:-61613}
ARTEMIS_AMQP_PORT=${ARTEMIS_AMQP_PORT:-61627}
ARTEMIS_USER=${ARTEMIS_USER:-artemis}
ARTEMIS_PASSWORD=${ARTEMIS_PASSWORD:-artemis}
ARTEMIS_WINDOW=${ARTEMIS_WINDOW--1}
ARTEMIS_DEFAULT_WINDOW_RUN=${ARTEMIS_DEFAULT_WINDOW_RUN:-1}
export ARTEMIS_STOMP_PORT ARTEMIS_AMQP_PORT ARTEMIS_USER ARTEMIS_PASSWORD
SETTLE=${SETTLE:-3}
SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-0.25}
BUILD=${BUILD:-1}
BRIDGE_CONTROL=${BRIDGE_CONTROL:-1}
BRIDGE_IDLE=${BRIDGE_IDLE:-3}
[[ "$BRIDGE_IDLE" =~ ^[1-9][0-9]*$ ]] || { echo "BRIDGE_IDLE must be a whole number of seconds" >&2; exit 1; }
REPORT=${REPORT:-BENCHMARKS.md}
if [[ "$REPORT" == BENCHMARKS.md ]]; then
    PLOTS=${PLOTS:-docs/benchmarks}
else
    # A report elsewhere must not replace the committed plots that BENCHMARKS.md links to.
    PLOTS=${PLOTS:-${REPORT%.md}-plots}
fi

BIN=${HALYARD_BIN:-target/release/halyard}
HALYARD_BIN_SOURCE=${HALYARD_BIN_SOURCE:-}
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RUN="target/bench-compare/$RUN_ID"
mkdir -p "$RUN/results" "$RUN/logs" "$RUN/plots" "$RUN/cpu" "$RUN/data"
ln -sfn "$RUN_ID" target/bench-compare/latest
META="$RUN/meta.txt"
COMMANDS="$RUN/commands.txt"
: >"$META"
: >"$COMMANDS"

log() { printf '[bench-compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
meta() { printf '%s=%s\n' "$1" "$2" >>"$META"; }
record_cmd() { # LABEL ROUND ARGV...
    local label=$1 round=$2
    shift 2
    printf '%s\t%s\t%s\n' "$label" "$round" "$(printf '%q ' "$@" | sed 's/ $//')" >>"$COMMANDS"
}

# --- cleanup -----------------------------------------------------------------

KAFKA_STARTED=0
ARTEMIS_USED=0
NODE_PID=""
MIRROR_PID=""     # a mirrored pair's passive (server1); NODE_PID is its active
SAMPLER_PID=""
CONSUMER_PID=""   # halyard-kafka-bridged's durable consumer (`halyard consume`)
SAMPLE_EXTRA=()   # more LABEL=PID for run_bench's CPU sampler (that consumer)
SCRAPER_PID=""
SCRAPE_URL=""     # set while a configuration wants /metrics scraped during its bench
SCRAPE_KEEP=""    # with SCRAPE_URL: a regex; matching lines of each scrape go to LOGFILE.kept
SCRAPE_FAILURES=0 # runs whose scrapes failed

cleanup() {
    local rc=$?
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    [[ -n "$SCRAPER_PID" ]] && kill "$SCRAPER_PID" 2>/dev/null || true
    [[ -n "$CONSUMER_PID" ]] && kill "$CONSUMER_PID" 2>/dev/null || true
    local pid
    for pid in "$MIRROR_PID" "$NODE_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if ((ARTEMIS_USED)); then scripts/services/artemis.sh stop || true; fi
    if ((KAFKA_STARTED)); then
        log "stopping the Kafka this script started"
        scripts/services/kafka.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kafka_pid() { cat target/kafka/kafka.pid 2>/dev/null || true; }

# Samples CPU ticks of the machine (/proc/stat) and of every thread of each LABEL=PID, every
# SAMPLE_INTERVAL seconds, into FILE, until killed. bench-report.py turns it into CPU %.
# One Python process that never forks (scripts/bench/sample-cpu.py): the shell loop it replaced
# ran `date` and `sleep` four times a second, which alone doubled a broker's open-loop p99.
sample_cpu() { # FILE LABEL=PID...
    local out=$1
    shift
    exec python3 scripts/bench/sample-cpu.py "$out" "$SAMPLE_INTERVAL" "$@"
}

start_sampler() { # FILE LABEL=PID...
    sample_cpu "$@" &
    SAMPLER_PID=$!
}

# For each LABEL=PID that is a JVM, the full thread names (kernel thread names stop at 15
# characters): jcmd Thread.print into cpu/TAG.LABEL.threads, once the window is over.
java_thread_names() { # TAG LABEL=PID...
    local tag=$1 lp
    shift
    command -v jcmd >/dev/null || return 0
    for lp in "$@"; do
        local label=${lp%%=*} pid=${lp#*=}
        [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == java ]] || continue
        timeout 20 jcmd "$pid" Thread.print >"$RUN/cpu/$tag.$label.threads" 2>/dev/null || true
    done
}

stop_sampler() {
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
    fi
}

# GETs URL every SCRAPE_INTERVAL seconds (on a fixed schedule from the start, not drifting by
# the scrape time) until STOPFILE exists; one line per scrape into FILE:
#   EPOCH ok HTTP_CODE BYTES SECONDS    or    EPOCH fail CURL_RC HTTP_CODE BYTES SECONDS
# With KEEP (a regex), the body's matching lines also go to FILE.kept, each after the EPOCH.
scrape_metrics() { # URL FILE STOPFILE [KEEP]
    local url=$1 out=$2 stop=$3 keep=${4:-} body=/dev/null start next now delay res rc n=0
    if [[ -n "$keep" ]]; then body="$out.body"; fi
    start=$(date +%s%N)
    while [[ ! -e "$stop" ]]; do
        now=$(date +%s%N)
        rc=0
        res=$(curl -sf -m 5 -o "$body" -w '%{http_code} %{size_download} %{time_total}' "$url") || rc=$?
        if [[ -n "$keep" ]]; then
            grep -E "$keep" "$body" 2>/dev/null | sed "s/^/${now:0:-9}.${now: -9:3} /" >>"$out.kept" || true
        fi
        # res: HTTP_CODE BYTES SECONDS
        if ((rc == 0)) && [[ "${res%% *}" == 2* && "$(cut -d' ' -f2 <<<"$res")" != 0 ]]; then
            printf '%s.%s ok %s\n' "${now:0:-9}" "${now: -9:3}" "$res" >>"$out"
        else
            printf '%s.%s fail %s %s\n' "${now:0:-9}" "${now: -9:3}" "$rc" "${res:-000 0 0}" >>"$out"
        fi
        n=$((n + 1))
        next=$((start + n * SCRAPE_INTERVAL * 1000000000))
        now=$(date +%s%N)
        delay=$((next - now))
        if ((delay > 0)); then
            sleep "$((delay / 1000000000)).$(printf '%09d' $((delay % 1000000000)))"
        fi
    done
}

start_scraper() { # URL FILE [KEEP]
    rm -f "$2.stop"
    : >"$2"
    scrape_metrics "$1" "$2" "$2.stop" "${3:-}" &
    SCRAPER_PID=$!
}

# Stops the scraper (it finishes its current scrape) and waits for it.
stop_scraper() { # FILE
    if [[ -n "$SCRAPER_PID" ]]; then
        touch "$1.stop"
        wait "$SCRAPER_PID" 2>/dev/null || true
        SCRAPER_PID=""
        rm -f "$1.stop" "$1.body"
    fi
}

delete_topic() {
    scripts/services/kafka.sh topics --delete --if-exists --topic "$1" >>"$RUN/logs/topic-deletes.log" 2>&1 \
        || log "warning: could not delete Kafka topic $1 (see $RUN/logs/topic-deletes.log)"
}

# Starts `halyard node --listen 127.0.0.1:PORT ARGS...` in the background (the command recorded
# as LABEL-node), logging to LOGFILE. Sets SPAWNED_PID.
spawn_node() { # LABEL ROUND LOGFILE PORT ARGS...
    local label=$1 round=$2 logfile=$3 port=$4
    shift 4
    port_free "$port" || die "127.0.0.1:$port is taken; set HALYARD_KAFKA_PORT / HALYARD_LOCAL_PORT / MIRROR_PASSIVE_PORT"
    local cmd=("$BIN" node --listen "127.0.0.1:$port" "$@")
    record_cmd "$label-node" "$round" "${cmd[@]}"
    NO_COLOR=1 "${cmd[@]}" >"$logfile" 2>&1 &
    SPAWNED_PID=$!
}

# Waits (60 s at most) until LOGFILE has a line matching the regex PATTERN; dies naming WHAT if
# one of PIDS exits first or the line does not come.
wait_node_log() { # LOGFILE PATTERN WHAT PID...
    local logfile=$1 pattern=$2 what=$3 i pid
    shift 3
    for ((i = 0; i < 600; i++)); do
        if grep -Eqs "$pattern" "$logfile"; then
            return 0
        fi
        for pid in "$@"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 30 "$logfile" >&2
                die "$what: process $pid exited (log $logfile)"
            fi
        done
        sleep 0.1
    done
    tail -n 30 "$logfile" >&2
    die "$what: no line matching '$pattern' after 60 s (log $logfile)"
}

# spawn_node, then waits for "accepting clients (STOMP, AMQP)". Sets NODE_PID.
start_node() { # LABEL ROUND LOGFILE PORT ARGS...
    spawn_node "$@"
    NODE_PID=$SPAWNED_PID
    wait_node_log "$3" "accepting clients \(STOMP, AMQP\)" "halyard node ($1) accepting clients" "$NODE_PID"
}

# SIGTERM, then SIGKILL if PID still runs 30 s later.
stop_pid() { # PID
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "node $pid still running 30 s after SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_node() {
    if [[ -n "$NODE_PID" ]]; then
        stop_pid "$NODE_PID"
        NODE_PID=""
    fi
}

# Runs `halyard bench` against 127.0.0.1:PORT while sampling CPU of the bench, the broker
# and Kafka (and, if SCRAPE_URL is set, scraping it from the bench's start to its end).
# Results: results/LABEL-rROUND.json, plots/LABEL-rROUND/, logs/LABEL-rROUND.bench.log,
# cpu/LABEL-rROUND.txt, logs/LABEL-rROUND.scrapes, and results/LABEL-rROUND.run (start time,
# exit code, scrape counts). Failed scrapes make rc "scrape-failed" in the .run file.
run_bench() { # LABEL ROUND PORT BROKER_PID RATE [EXTRA BENCH ARGS...]
    local label=$1 round=$2 port=$3 broker_pid=$4 rate=$5
    shift 5
    local tag="$label-r$round"
    local cmd=("$BIN" bench --url "tcp://127.0.0.1:$port" "$@"
        --destination "$DESTINATION" --producers "$PRODUCERS" --consumers "$CONSUMERS"
        --size "$SIZE" --persistent "$PERSISTENT" --receipts "$RECEIPTS" --ack "$ACK"
        --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" --rate "$rate"
        --json "$RUN/results/$tag.json" --plot "$RUN/plots/$tag" --label "$label")
    record_cmd "$label" "$round" "${cmd[@]}"
    log "$tag: bench against 127.0.0.1:$port (rate $rate, ${WARMUP}s warm-up + ${DURATION}s)"
    local load_before
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    local t0
    t0=$(date +%s.%N)
    "${cmd[@]}" >"$RUN/logs/$tag.bench.log" 2>&1 &
    local bench_pid=$!
    local scrapes="$RUN/logs/$tag.scrapes"
    if [[ -n "$SCRAPE_URL" ]]; then
        printf '%s\t%s\t%s\n' "$label-scraper" "$round" \
            "# every ${SCRAPE_INTERVAL}s from the bench's start to its end: curl -sf -m 5 -o /dev/null $SCRAPE_URL${SCRAPE_KEEP:+ (lines of the body matching $SCRAPE_KEEP kept)}" \
            >>"$COMMANDS"
        start_scraper "$SCRAPE_URL" "$scrapes" "$SCRAPE_KEEP"
    fi
    start_sampler "$RUN/cpu/$tag.txt" "bench=$bench_pid" "broker=$broker_pid" "kafka=$(kafka_pid)" \
        "${SAMPLE_EXTRA[@]}"
    local rc=0
    wait "$bench_pid" || rc=$?
    local t1 scrape_info=""
    t1=$(date +%s.%N)
    if [[ -n "$SCRAPE_URL" ]]; then
        stop_scraper "$scrapes"
        local ok failed max
        ok=$(grep -c ' ok ' "$scrapes" || true)
        failed=$(grep -c ' fail ' "$scrapes" || true)
        max=$(awk '$2 == "ok" && $5 > m { m = $5 } END { printf "%.3f", m + 0 }' "$scrapes")
        scrape_info=$(printf 'scrape_url=%s\nscrape_interval=%s\nscrapes_ok=%s\nscrapes_failed=%s\nscrape_max_seconds=%s\nbench_rc=%s' \
            "$SCRAPE_URL" "$SCRAPE_INTERVAL" "$ok" "$failed" "$max" "$rc")
        if ((failed > 0 || ok == 0)); then
            log "ERROR: $tag: $failed of $((ok + failed)) scrapes of $SCRAPE_URL FAILED (see $scrapes):"
            grep ' fail ' "$scrapes" | head -n 5 | sed 's/^/    /' >&2 || true
            SCRAPE_FAILURES=$((SCRAPE_FAILURES + 1))
            rc=scrape-failed
        else
            log "$tag: $ok scrapes of $SCRAPE_URL, none failed, slowest ${max}s"
        fi
    fi
    stop_sampler
    java_thread_names "$tag" "broker=$broker_pid" "kafka=$(kafka_pid)"
    printf 'start=%s\nend=%s\nrc=%s\nwarmup=%s\nduration=%s\nload_before=%s\nload_after=%s\n%s\n' \
        "$t0" "$t1" "$rc" "$WARMUP" "$DURATION" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$scrape_info" >"$RUN/results/$tag.run"
    if [[ "$rc" != 0 ]]; then
        log "$tag: failed (rc $rc); last lines of the bench:"
        tail -n 15 "$RUN/logs/$tag.bench.log" >&2
    else
        grep -E '^(sent=|'"$label"' )' "$RUN/logs/$tag.bench.log" | sed 's/^/    /' >&2 || true
    fi
    sleep "$SETTLE"
}

# --- configurations ------------------------------------------------------------

run_ceiling() { # ROUND
    local round=$1 bootstrap
    bootstrap=$(scripts/services/kafka.sh bootstrap)
    local count=$CEILING_COUNT k
    for ((k = 1; k <= CEILING_RUNS; k++)); do
        local tag="ceiling-r$round-$k" topic="halyard-ceiling-$RUN_ID-r$round-$k"
        local cmd=("$BIN" kafka-ceiling --bootstrap "$bootstrap" --count "$count" --size "$SIZE"
            --transaction-records "$CEILING_TXN" --topic "$topic" "${CEILING_FLAGS[@]}")
        record_cmd ceiling "$round" "${cmd[@]}"
        log "$tag: kafka-ceiling, $count records, $CEILING_TXN per transaction"
        local t0 load_before rc=0
        load_before=$(cut -d' ' -f1-3 /proc/loadavg)
        t0=$(date +%s.%N)
        "${cmd[@]}" >"$RUN/logs/$tag.log" 2>&1 &
        local pid=$!
        start_sampler "$RUN/cpu/$tag.txt" "bench=$pid" "kafka=$(kafka_pid)"
        wait "$pid" || rc=$?
        stop_sampler
        java_thread_names "$tag" "kafka=$(kafka_pid)"
        printf 'start=%s\nrc=%s\nload_before=%s\nload_after=%s\n' "$t0" "$rc" "$load_before" \
            "$(cut -d' ' -f1-3 /proc/loadavg)" >"$RUN/results/$tag.run"
        if ((rc != 0)); then
            log "$tag: kafka-ceiling exited $rc"
            tail -n 15 "$RUN/logs/$tag.log" >&2
        fi
        grep '^kafka ceiling:' "$RUN/logs/$tag.log" | sed 's/^/    /' >&2 || true
        delete_topic "$topic"
        sleep "$SETTLE"
    done
}

# Writes KAFKA_WARMUP_MESSAGES through kafka-ceiling before anything is measured: a freshly
# started Kafka's JVM speeds up several-fold over its first minutes (run 20261205T130513Z, no
# warm-up: the ceiling climbed from 56,741 to 179,107 msg/s over five rounds, Halyard from
# 39,865 to 54,805), which would otherwise be measured as a difference between rounds and
# would size the ceiling runs from a cold calibration.
warm_kafka() {
    ((KAFKA_WARMUP_MESSAGES > 0)) || return 0
    log "warming Kafka up: $KAFKA_WARMUP_MESSAGES messages through kafka-ceiling, not measured"
    unmeasured_ceiling kafka-warmup "$KAFKA_WARMUP_MESSAGES"
    meta kafka_warmup "$(sed -n 's/.*kafka ceiling: //p' "$RUN/logs/kafka-warmup.log")"
}

# Runs kafka-ceiling for COUNT messages into a topic of its own, deleted afterwards; its
# output goes to logs/LABEL.log.
unmeasured_ceiling() { # LABEL COUNT
    local label=$1 n=$2 bootstrap topic="halyard-ceiling-$RUN_ID-$1"
    bootstrap=$(scripts/services/kafka.sh bootstrap)
    local cmd=("$BIN" kafka-ceiling --bootstrap "$bootstrap" --count "$n" --size "$SIZE"
        --transaction-records "$CEILING_TXN" --topic "$topic" "${CEILING_FLAGS[@]}")
    record_cmd "$label" 0 "${cmd[@]}"
    "${cmd[@]}" >"$RUN/logs/$label.log" 2>&1 \
        || { tail -n 15 "$RUN/logs/$label.log" >&2; die "kafka-ceiling ($label) failed"; }
    delete_topic "$topic"
    sleep "$SETTLE"
}

# Sizes the ceiling runs to take about CEILING_SECONDS: a short calibration run first.
calibrate_ceiling() {
    local n=${CEILING_CALIBRATION_COUNT:-200000}
    log "calibrating the ceiling run size ($n records)"
    unmeasured_ceiling ceiling-calibration "$n"
    local rate
    rate=$(sed -n -E 's/.*msg_per_sec=([0-9.]+).*/\1/p' "$RUN/logs/ceiling-calibration.log")
    [[ -n "$rate" ]] || die "no msg_per_sec in $RUN/logs/ceiling-calibration.log"
    CEILING_COUNT=$(awk -v r="$rate" -v s="$CEILING_SECONDS" -v t="$CEILING_TXN" \
        'BEGIN { c = int(r * s / t + 0.5) * t; if (c < 10 * t) c = 10 * t; print c }')
    log "calibration: $rate msg/s -> $CEILING_COUNT records per ceiling run"
    meta ceiling_calibration_msg_per_sec "$rate"
    meta ceiling_count "$CEILING_COUNT"
}

run_halyard_kafka() { # ROUND
    local round=$1
    local cid="bench-$RUN_ID-r$round"
    cid=${cid,,}
    start_node halyard-kafka "$round" "$RUN/logs/halyard-kafka-r$round.node.log" "$HALYARD_KAFKA_PORT" \
        --data-dir "$RUN/data/halyard-kafka-r$round" \
        --kafka-bootstrap "$(scripts/services/kafka.sh bootstrap)" --cluster-id "$cid"
    run_bench halyard-kafka "$round" "$HALYARD_KAFKA_PORT" "$NODE_PID" "$RATE"
    stop_node
    topic_end "halyard-$cid-journal" "$RUN/results/halyard-kafka-r$round.journal-offsets"
    delete_topic "halyard-$cid-journal"
    delete_topic "halyard-$cid-lock"
}

# End offset of a topic's partitions (TOPIC:PARTITION:OFFSET lines): records written plus one
# commit marker per transaction that wrote to the partition.
topic_end() { # TOPIC FILE
    scripts/services/kafka.sh tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server \
        "$(scripts/services/kafka.sh bootstrap)" --topic "$1" >"$2" 2>>"$RUN/logs/topic-deletes.log" || true
}

# One run of halyard-kafka-bridged (see the header): a fresh node with halyard-kafka's flags;
# a durable subscription on /topic/ADDRESS, made before the first send, is the only consumer
# (`halyard consume`, client-individual acks) while `halyard bench --consumers 0` sends there.
# LABEL halyard-kafka-topic: ADDRESS is not bridged; halyard-kafka-bridged: ADDRESS is
# kafka.TOPIC, bridged to the Kafka topic TOPIC (deleted afterwards with the journal's topics).
run_kafka_durable_topic() { # LABEL ROUND ADDRESS [BRIDGED KAFKA TOPIC]
    local label=$1 round=$2 address=$3 bridged=${4:-}
    local tag="$label-r$round" cid="bench-$RUN_ID-r$round-${label#halyard-kafka-}" bootstrap
    cid=${cid,,}
    bootstrap=$(scripts/services/kafka.sh bootstrap)
    start_node "$label" "$round" "$RUN/logs/$tag.node.log" "$HALYARD_KAFKA_PORT" \
        --data-dir "$RUN/data/$tag" --kafka-bootstrap "$bootstrap" --cluster-id "$cid"
    local sub=(--url "tcp://127.0.0.1:$HALYARD_KAFKA_PORT" --destination "/topic/$address"
        --ack client-individual --client-id "bench-$label" --durable-name bench)
    # Subscribe and leave: the durable subscription exists before the producer starts.
    local pre=("$BIN" consume "${sub[@]}" --idle-secs 1)
    record_cmd "$label-subscribe" "$round" "${pre[@]}"
    "${pre[@]}" >"$RUN/logs/$tag.subscribe.log" 2>&1 \
        || { tail -n 15 "$RUN/logs/$tag.subscribe.log" >&2; die "$tag: the durable subscription failed"; }
    local con=("$BIN" consume "${sub[@]}" --idle-secs "$BRIDGE_IDLE")
    record_cmd "$label-consumer" "$round" "${con[@]}"
    local c0 c1 crc=0
    c0=$(date +%s.%N)
    "${con[@]}" >"$RUN/logs/$tag.consumer.log" 2>&1 &
    CONSUMER_PID=$!
    SAMPLE_EXTRA=("consumer=$CONSUMER_PID")
    # run_bench reads these: the bench sends to the durable topic and consumes nothing itself.
    local DESTINATION="/topic/$address" CONSUMERS=0
    run_bench "$label" "$round" "$HALYARD_KAFKA_PORT" "$NODE_PID" "$RATE"
    SAMPLE_EXTRA=()
    # The consumer stops BRIDGE_IDLE s after its last message; 120 s at most.
    local i
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$CONSUMER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$CONSUMER_PID" 2>/dev/null; then
        log "$tag: the durable consumer still runs 120 s after the bench; stopping it"
        kill "$CONSUMER_PID" 2>/dev/null || true
        crc=timeout
    fi
    local wrc=0
    wait "$CONSUMER_PID" 2>/dev/null || wrc=$?
    if [[ "$crc" == 0 ]]; then crc=$wrc; fi
    CONSUMER_PID=""
    c1=$(date +%s.%N)
    local line bench_end
    line=$(grep -E '^received=' "$RUN/logs/$tag.consumer.log" | tail -n 1 || true)
    bench_end=$(sed -n 's/^end=//p' "$RUN/results/$tag.run")
    {
        printf 'destination=/topic/%s\nbridged_topic=%s\n' "$address" "$bridged"
        printf 'consumer_rc=%s\nconsumer_start=%s\nconsumer_end=%s\nconsumer_idle=%s\n' "$crc" "$c0" "$c1" "$BRIDGE_IDLE"
        # when the durable consumer's last message came, in seconds after the bench ended
        # (about 0: it kept up; the bench ends once its last send is receipted)
        printf 'consumer_last_message_after_bench=%s\n' \
            "$(awk -v a="$c1" -v b="$bench_end" -v i="$BRIDGE_IDLE" 'BEGIN { printf "%.2f", a - i - b }')"
        tr ' ' '\n' <<<"$line" | sed -n -E 's/^(received|distinct|duplicates|reconnects|seconds)=/consumer_\1=/p'
    } >>"$RUN/results/$tag.run"
    log "$tag: durable consumer: ${line:-no summary (see $RUN/logs/$tag.consumer.log)}"
    stop_node
    topic_end "halyard-$cid-journal" "$RUN/results/$tag.journal-offsets"
    delete_topic "halyard-$cid-journal"
    delete_topic "halyard-$cid-lock"
    if [[ -n "$bridged" ]]; then
        topic_end "$bridged" "$RUN/results/$tag.bridge-offsets"
        delete_topic "$bridged"
    fi
}

run_halyard_kafka_bridged() { # ROUND
    local round=$1
    local topic="bench-$RUN_ID-r$round"
    topic=${topic,,}
    if [[ "$BRIDGE_CONTROL" != 0 ]]; then
        run_kafka_durable_topic halyard-kafka-topic "$round" "$topic"
    fi
    run_kafka_durable_topic halyard-kafka-bridged "$round" "kafka.$topic" "$topic"
}

# LABEL halyard-local-amqp adds --protocol amqp; halyard-local-scraped scrapes /metrics during the
# bench and has no open-loop run.
# Extra `halyard node` flags of the local-journal runs (halyard-local-paged sets them).
LOCAL_NODE_EXTRA=()
# halyard-mirror-sync / halyard-mirror-async set it to true / false: the local-journal runs are then
# a mirrored pair (see the header), the bench on its active.
MIRROR_SYNC=""

# The node (or, with MIRROR_SYNC, the mirrored pair) of one local-journal run, in DIR, logs
# logs/TAG.node.log (server0) and logs/TAG.passive.log (server1). Sets NODE_PID (and MIRROR_PID).
start_local() { # LABEL ROUND DIR
    local label=$1 round=$2 dir=$3 tag="$1-r$2"
    local http=(--http "127.0.0.1:$HALYARD_HTTP_PORT")
    if [[ -z "$MIRROR_SYNC" ]]; then
        start_node "$label" "$round" "$RUN/logs/$tag.node.log" "$HALYARD_LOCAL_PORT" \
            --data-dir "$dir" "${http[@]}" "${LOCAL_NODE_EXTRA[@]}"
        return
    fi
    mkdir -p "$dir/locks"
    local lock=(--mirror-sync "$MIRROR_SYNC" --lock-coordinator "file:$dir/locks" --lock-id bench
        --check-period-ms "$MIRROR_CHECK_PERIOD_MS")
    start_node "$label" "$round" "$RUN/logs/$tag.node.log" "$HALYARD_LOCAL_PORT" \
        --node-id server0 --data-dir "$dir/server0" "${http[@]}" "${LOCAL_NODE_EXTRA[@]}" \
        --mirror-listen "127.0.0.1:$MIRROR_PORT0" --mirror "127.0.0.1:$MIRROR_PORT1" "${lock[@]}"
    spawn_node "$label-passive" "$round" "$RUN/logs/$tag.passive.log" "$MIRROR_PASSIVE_PORT" \
        --node-id server1 --data-dir "$dir/server1" --http "127.0.0.1:$MIRROR_PASSIVE_HTTP_PORT" \
        "${LOCAL_NODE_EXTRA[@]}" --mirror-listen "127.0.0.1:$MIRROR_PORT1" --mirror "127.0.0.1:$MIRROR_PORT0" "${lock[@]}"
    MIRROR_PID=$SPAWNED_PID
    wait_node_log "$RUN/logs/$tag.node.log" "peer server1 joined the in-sync set" \
        "$tag: server1 joining server0's in-sync set" "$NODE_PID" "$MIRROR_PID"
    SAMPLE_EXTRA=("passive=$MIRROR_PID")
    if [[ "$MIRROR_SCRAPE" != 0 ]]; then
        SCRAPE_URL="http://127.0.0.1:$HALYARD_HTTP_PORT/metrics"
        SCRAPE_KEEP='^halyard_mirror_'
    fi
}

stop_local() { # the passive first: the active does not fail over to it
    SCRAPE_URL=""
    SCRAPE_KEEP=""
    SAMPLE_EXTRA=()
    if [[ -n "$MIRROR_PID" ]]; then
        stop_pid "$MIRROR_PID"
        MIRROR_PID=""
    fi
    stop_node
}

run_halyard_local() { # ROUND [LABEL [EXTRA BENCH ARGS...]]
    local round=$1 label=${2:-halyard-local} dir
    shift
    if (($#)); then shift; fi
    port_free "$HALYARD_HTTP_PORT" || die "127.0.0.1:$HALYARD_HTTP_PORT is taken; set HALYARD_HTTP_PORT"
    dir="$RUN/data/$label-r$round"
    start_local "$label" "$round" "$dir"
    if [[ "$label" == halyard-local-scraped ]]; then SCRAPE_URL="http://127.0.0.1:$HALYARD_HTTP_PORT/metrics"; fi
    # start_local gave the node (a mirrored pair's active) --http 127.0.0.1:HALYARD_HTTP_PORT.
    run_bench "$label" "$round" "$HALYARD_LOCAL_PORT" "$NODE_PID" "$RATE" "${NODE_METRICS_ARGS[@]}" "$@"
    stop_local
    rm -rf "$dir"
    if [[ "$LATENCY_RATE" != 0 && "$label" != halyard-local-scraped ]]; then
        dir="$RUN/data/$label-openloop-r$round"
        start_local "$label-openloop" "$round" "$dir"
        run_bench "$label-openloop" "$round" "$HALYARD_LOCAL_PORT" "$NODE_PID" "$LATENCY_RATE" \
            "${NODE_METRICS_ARGS[@]}" "$@"
        stop_local
        rm -rf "$dir"
    fi
}

artemis_pid() { cat target/artemis/artemis.pid; }

run_artemis() { # ROUND
    local round=$1
    ARTEMIS_USED=1
    local labels=(artemis) rates=("$RATE") windows=("$ARTEMIS_WINDOW") i
    if [[ "$LATENCY_RATE" != 0 ]]; then
        labels+=(artemis-openloop)
        rates+=("$LATENCY_RATE")
        windows+=("$ARTEMIS_WINDOW")
    fi
    if ((ARTEMIS_DEFAULT_WINDOW_RUN)); then
        labels+=(artemis-defaultwindow)
        rates+=("$RATE")
        windows+=("")
    fi
    for i in "${!labels[@]}"; do
        scripts/services/artemis.sh clean
        ARTEMIS_STOMP_CONSUMER_WINDOW=${windows[$i]} scripts/services/artemis.sh start
        meta "artemis_acceptor_${labels[$i]}" \
            "$(sed -n -E 's#.*<acceptor name="stomp">([^<]*)</acceptor>.*#\1#p' target/artemis/instance/etc/broker.xml)"
        cp target/artemis/artemis.out "$RUN/logs/${labels[$i]}-r$round.start.log" 2>/dev/null || true
        run_bench "${labels[$i]}" "$round" "$ARTEMIS_STOMP_PORT" "$(artemis_pid)" "${rates[$i]}" \
            --login "$ARTEMIS_USER" --passcode "$ARTEMIS_PASSWORD"
        # What is left on the queue (the bench's "missing" are either still queued or lost).
        timeout 60 target/artemis/instance/bin/artemis queue stat --silent --json \
            --user "$ARTEMIS_USER" --password "$ARTEMIS_PASSWORD" \
            --url "tcp://127.0.0.1:${ARTEMIS_CORE_PORT:-61626}" --queueName "${DESTINATION##*/}" \
            >"$RUN/results/${labels[$i]}-r$round.queue-stat" 2>&1 || true
        scripts/services/artemis.sh stop
        cp target/artemis/artemis.out "$RUN/logs/${labels[$i]}-r$round.broker.log" 2>/dev/null || true
    done
}

# Artemis with its AMQP acceptor, loaded over AMQP 1.0 (SASL PLAIN): a closed-loop run and,
# unless LATENCY_RATE=0, an open-loop one, each on an emptied journal.
run_artemis_amqp() { # ROUND
    local round=$1
    ARTEMIS_USED=1
    local labels=(artemis-amqp) rates=("$RATE") i
    if [[ "$LATENCY_RATE" != 0 ]]; then
        labels+=(artemis-amqp-openloop)
        rates+=("$LATENCY_RATE")
    fi
    for i in "${!labels[@]}"; do
        scripts/services/artemis.sh clean
        ARTEMIS_AMQP=1 scripts/services/artemis.sh start
        meta "artemis_acceptor_${labels[$i]}" \
            "$(sed -n -E 's#.*<acceptor name="amqp">([^<]*)</acceptor>.*#\1#p' target/artemis/instance/etc/broker.xml)"
        cp target/artemis/artemis.out "$RUN/logs/${labels[$i]}-r$round.start.log" 2>/dev/null || true
        run_bench "${labels[$i]}" "$round" "$ARTEMIS_AMQP_PORT" "$(artemis_pid)" "${rates[$i]}" \
            --protocol amqp --user "$ARTEMIS_USER" --password "$ARTEMIS_PASSWORD"
        timeout 60 target/artemis/instance/bin/artemis queue stat --silent --json \
            --user "$ARTEMIS_USER" --password "$ARTEMIS_PASSWORD" \
            --url "tcp://127.0.0.1:${ARTEMIS_CORE_PORT:-61626}" --queueName "${DESTINATION##*/}" \
            >"$RUN/results/${labels[$i]}-r$round.queue-stat" 2>&1 || true
        scripts/services/artemis.sh stop
        cp target/artemis/artemis.out "$RUN/logs/${labels[$i]}-r$round.broker.log" 2>/dev/null || true
    done
}

# --- main ----------------------------------------------------------------------

log "run $RUN_ID: configurations [$CONFIGS], $ROUNDS round(s); results in $RUN"

# The work tree as the build sees it: files edited while the run goes on are not in the binary.
DIRTY_RUST=$(git status --porcelain -- '*.rs' 'Cargo.toml' 'Cargo.lock' '**/Cargo.toml' 2>/dev/null | wc -l)
DIRTY_FILES=$(git status --porcelain -- '*.rs' 'Cargo.toml' 'Cargo.lock' '**/Cargo.toml' 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
if ((BUILD)); then
    log "cargo build --release -p halyard"
    cargo build --release -p halyard >"$RUN/logs/build.log" 2>&1 \
        || { tail -n 30 "$RUN/logs/build.log" >&2; die "build failed"; }
fi
[[ -x "$BIN" ]] || die "$BIN missing (cargo build --release -p halyard)"
# The local-journal runs' benches read the node's append stalls from its /metrics (see the header),
# if this binary's bench can.
NODE_METRICS_ARGS=(--node-metrics "http://127.0.0.1:$HALYARD_HTTP_PORT/metrics")
bench_help=$("$BIN" bench --help 2>/dev/null || true)
if [[ "$bench_help" != *--node-metrics* ]]; then
    log "note: $BIN bench has no --node-metrics; the local-journal runs report no append stalls"
    NODE_METRICS_ARGS=()
fi

wants() { [[ " $CONFIGS " == *" $1 "* ]]; }
wants_kafka() { wants ceiling || wants halyard-kafka || wants halyard-kafka-bridged; }

if wants_kafka; then
    if scripts/services/kafka.sh status >/dev/null 2>&1; then
        log "Kafka already running; leaving it running afterwards"
    else
        log "starting Kafka (scripts/services/kafka.sh start)"
        scripts/services/kafka.sh start
        KAFKA_STARTED=1
    fi
fi
if wants artemis || wants artemis-amqp; then
    # A fresh instance for this run (artemis create, journal auto-tuning included).
    scripts/services/artemis.sh reset
    scripts/services/artemis.sh fetch
fi
ports=("$HALYARD_KAFKA_PORT" "$HALYARD_LOCAL_PORT" "$HALYARD_HTTP_PORT")
if wants halyard-mirror-sync || wants halyard-mirror-async; then
    ports+=("$MIRROR_PASSIVE_PORT" "$MIRROR_PASSIVE_HTTP_PORT" "$MIRROR_PORT0" "$MIRROR_PORT1")
fi
for p in "${ports[@]}"; do
    port_free "$p" || die "127.0.0.1:$p is taken by another process"
done

# --- what ran, on what ---
meta run_id "$RUN_ID"
meta started_utc "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta git_commit "$(git rev-parse HEAD 2>/dev/null || echo unknown)"
meta git_commit_subject "$(git log -1 --format=%s 2>/dev/null || echo unknown)"
meta git_dirty_rust "$DIRTY_RUST"
meta git_dirty_files "$DIRTY_FILES"
meta halyard_version "$("$BIN" --version 2>/dev/null || echo unknown)"
meta halyard_binary_mtime "$(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)"
meta halyard_binary "$BIN"
meta halyard_binary_source "$HALYARD_BIN_SOURCE"
meta bench_node_metrics "$([[ ${#NODE_METRICS_ARGS[@]} -gt 0 ]] && echo "${NODE_METRICS_ARGS[1]}" || echo none)"
meta rustc "$(rustc --version 2>/dev/null || echo unknown)"
meta java "$(java -version 2>&1 | head -n 1)"
meta java_runtime "$(java -version 2>&1 | sed -n 2p)"
if wants_kafka; then
    meta kafka_version "$(ls target/kafka/libs/kafka_2.13-*.jar 2>/dev/null | head -n 1 | sed -E 's/.*kafka_2.13-(.*)\.jar/\1/')"
    meta kafka_bootstrap "$(scripts/services/kafka.sh bootstrap)"
    meta kafka_started_by_script "$KAFKA_STARTED"
    meta kafka_data_dir "target/kafka/data"
    meta kafka_heap "${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
fi
for v in PRODUCERS CONSUMERS SIZE WINDOW DURATION WARMUP RATE DESTINATION PERSISTENT RECEIPTS ACK \
    ROUNDS CONFIGS LATENCY_RATE CEILING_SECONDS CEILING_RUNS CEILING_TXN CEILING_TOMBSTONES KAFKA_WARMUP_MESSAGES SETTLE SAMPLE_INTERVAL ARTEMIS_WINDOW \
    ARTEMIS_DEFAULT_WINDOW_RUN SCRAPE_INTERVAL BRIDGE_CONTROL BRIDGE_IDLE MIRROR_CHECK_PERIOD_MS MIRROR_SCRAPE; do
    meta "env_$v" "${!v}"
done
meta load_at_start "$(cat /proc/loadavg)"

if wants_kafka; then warm_kafka; fi
if wants ceiling; then calibrate_ceiling; fi

for ((round = 1; round <= ROUNDS; round++)); do
    log "=== round $round of $ROUNDS ==="
    for c in $CONFIGS; do
        case "$c" in
            ceiling) run_ceiling "$round" ;;
            halyard-kafka) run_halyard_kafka "$round" ;;
            halyard-kafka-bridged) run_halyard_kafka_bridged "$round" ;;
            halyard-local) run_halyard_local "$round" ;;
            halyard-local-scraped) run_halyard_local "$round" halyard-local-scraped ;;
            halyard-local-paged)
                LOCAL_NODE_EXTRA=(--max-memory-bytes 1048576)
                run_halyard_local "$round" halyard-local-paged
                LOCAL_NODE_EXTRA=()
                ;;
            halyard-mirror-sync | halyard-mirror-async)
                MIRROR_SYNC=$([[ "$c" == halyard-mirror-sync ]] && echo true || echo false)
                run_halyard_local "$round" "$c"
                MIRROR_SYNC=""
                ;;
            artemis) run_artemis "$round" ;;
            halyard-local-amqp) run_halyard_local "$round" halyard-local-amqp --protocol amqp ;;
            artemis-amqp) run_artemis_amqp "$round" ;;
            *) die "unknown configuration $c (ceiling, halyard-kafka, halyard-kafka-bridged, halyard-local, halyard-local-scraped, halyard-local-paged, halyard-mirror-sync, halyard-mirror-async, artemis, halyard-local-amqp, artemis-amqp)" ;;
        esac
    done
done

if wants artemis || wants artemis-amqp; then
    scripts/services/artemis.sh info | sed 's/^/artemis_/' >>"$META"
    # Artemis's ASYNCIO journal needs libaio; without it `artemis create` picks NIO.
    meta libaio "$( (ldconfig -p 2>/dev/null | grep -q 'libaio\.so') && echo present || echo absent)"
    cp target/artemis/create.log "$RUN/logs/artemis-create.log" 2>/dev/null || true
    cp target/artemis/instance/etc/broker.xml "$RUN/logs/artemis-broker.xml" 2>/dev/null || true
    scripts/services/artemis.sh clean # its journal files: hundreds of MB
fi
meta finished_utc "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta load_at_end "$(cat /proc/loadavg)"

log "writing $REPORT"
python3 scripts/bench/bench-report.py --run "$RUN" --out "$REPORT" --plots "$PLOTS"
gzip -q "$RUN"/cpu/*.txt "$RUN"/cpu/*.threads 2>/dev/null || true # bench-report.py reads .gz too
log "done: $REPORT, plots in $PLOTS/, raw results in $RUN"
if ((SCRAPE_FAILURES)); then
    die "/metrics scrapes failed in $SCRAPE_FAILURES run(s) (logs/*.scrapes in $RUN); those runs are reported failed"
fi
