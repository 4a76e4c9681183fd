#!/usr/bin/env bash
# The HA walkthrough with local processes, following the JMS Bridge HA walkthrough (seed 001)
# step by step (docs/walkthrough.md; docker-compose.yml is the same thing as containers;
# scripts/walkthrough.sh is the entry point for people). A live and a backup Halyard node
# share a journal and a live lock in a real Kafka; the live reaches Kafka only through
# `halyard proxy`. The Kafka bridge is on (the nodes use the Kafka journal), so the JMS-style
# topic `kafka.test` (STOMP /topic/kafka.test) is Kafka topic `test`:
#
#   seed steps 1-2: Kafka topic `test` is deleted and created again (1 partition), so that it
#      holds this run's records only (the seed's compose pre-creates `test`); a Kafka consumer
#      reads it from the beginning, read_committed, for the whole run (`kcat -C ... -t test`)
#   seed steps 3-4: a durable subscription on /topic/kafka.test is made (stomp.py, with a
#      receipt) BEFORE the producer starts; the consumer (`halyard consume`, through a
#      recording STOMP tap) resumes it; the producer (`halyard produce`, a receipt and a unique
#      _AMQ_DUPL_ID on every send) sends to /topic/kafka.test; both follow the failover URL
#   phase 1 (seed step 4): stops the live (SIGTERM, as `docker compose stop`) -> live: "stop
#      signal received, draining", exits 0; the backup logs "backup is now live (epoch N)"
#   phase 2 (seed step 5): starts the live again (`docker compose start`) -> backup: "failing
#      back to primary", live: "live lock obtained"
#   phase 3: SIGKILLs the live (a crash) -> the backup logs "backup is now live (epoch N)"
#   phase 4: starts the live again       -> failback as in phase 2
#   phase 5 (the seed's ToxiProxy part): cuts the proxy (blackhole) -> the backup takes over;
#      heals it                      -> the old live: "fenced by epoch N, stepping down" or
#                                       "live lock lost (...), stepping down", then "now a backup"
#                                       (and, with --allow-failback, takes the live role back)
#
# then lets the producer finish and the consumer drain, and checks: every send receipted;
# every receipted message delivered to the durable subscriber at least once and stored once
# (by sequence number, recorded by the tap plus a final stomp.py drain of the subscription);
# Kafka topic `test`, read to its end with isolation.level=read_committed, holds every
# receipted message exactly once (key = its _AMQ_DUPL_ID, header halyard.cluster = this run's
# cluster id) and nothing else, and so does what the Kafka consumer of seed step 2 saw; the
# expected log lines present. Prints a summary; exits non-zero on a lost, duplicated or
# foreign message or record, a missing log line or a timeout.
#
#   bash scripts/ci/walkthrough.sh
#   WALK_RATE=300 WALK_SECONDS=90 bash scripts/ci/walkthrough.sh
#
# Environment (defaults): WALK_RATE (200 msg/s), WALK_SECONDS (75: count = rate x seconds),
# WALK_COUNT (overrides the count), WALK_SIZE (512 bytes), WALK_SESSION_TIMEOUT_MS (3000),
# WALK_PHASE_TIMEOUT (45 s per wait), WALK_SETTLE (3 s of traffic between phases),
# WALK_PROXY_WAIT (120 s: how long to wait for the proxied port to be free), HALYARD_BIN,
# PY (a python with stomp.py; default from scripts/services/pyenv.sh), WALK_KAFKA_READER
# (auto: kcat if installed, else confluent-kafka from PY; kcat: kcat only, installed with
# apt-get (Debian package kcat) if missing; python: confluent-kafka only; no usable reader
# is a failure, never a skip), WALK_KAFKA_SH (the
# kafka.sh of another checkout, e.g. one started there with KAFKA_PORT=29092 for a private
# broker whose proxy port is 39094), WALK_KEEP=1 (keep the nodes' data dirs on success). Kafka comes from
# scripts/services/kafka.sh: started if not running, stopped at the end only if this script started it.
# Kafka advertises one fixed proxy address (127.0.0.1:19094), so one walkthrough at a time:
# the script waits (WALK_PROXY_WAIT) while anything else listens there; topic `test` is reset
# only while holding that lock. It is left in Kafka after the run, for kcat.
# Work dir: target/walkthrough/RUN_ID (the log of every process, the tap's record, the drain,
# the Kafka records).
set -euo pipefail

# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
BIN=${HALYARD_BIN:-$ROOT/target/release/halyard}
KAFKA_SH=${WALK_KAFKA_SH:-$SCRIPTS/services/kafka.sh}
CHECK="$SCRIPTS/ci/walkthrough-check.py"

RATE=${WALK_RATE:-200}
SECONDS_OF_TRAFFIC=${WALK_SECONDS:-75}
COUNT=${WALK_COUNT:-$((RATE * SECONDS_OF_TRAFFIC))}
SIZE=${WALK_SIZE:-512}
SESSION_MS=${WALK_SESSION_TIMEOUT_MS:-3000}
PHASE_TIMEOUT=${WALK_PHASE_TIMEOUT:-45}
SETTLE=${WALK_SETTLE:-3}
PROXY_WAIT=${WALK_PROXY_WAIT:-120}
KAFKA_READER=${WALK_KAFKA_READER:-auto}
KAFKA_TOPIC="test"            # the seed's topic; the JMS-style topic is kafka.test
DEST=/topic/kafka.$KAFKA_TOPIC

RUN_ID=walk-$(date +%Y%m%d-%H%M%S)-$$
WORK="$ROOT/target/walkthrough/$RUN_ID"
PRODUCER_ID="$RUN_ID-producer"
CLIENT_ID="$RUN_ID-consumer"  # the durable subscription is CLIENT_ID.DURABLE_NAME
DURABLE_NAME=walkthrough
export NO_COLOR=1            # plain log lines for grep
T0=$(date +%s%N)

log() { printf '[walkthrough %6.1fs] %s\n' "$(elapsed)" "$*" >&2; }
elapsed() { awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

FAILURES=()
fail() { FAILURES+=("$*"); log "FAIL: $*"; }
die() { fail "$*"; exit 1; }

mkdir -p "$WORK"
log "run $RUN_ID, work dir $WORK"

[[ -x "$BIN" ]] || { log "building $BIN"; (cd "$ROOT" && cargo build --release -p halyard >&2); }
PY=${PY:-$(venv_python)}
"$PY" -c 'import stomp' || { echo "walkthrough: $PY has no stomp.py (scripts/services/pyenv.sh)" >&2; exit 1; }

# The Kafka reader: kcat (the seed's tool, Debian package kcat) or confluent-kafka (PyPI,
# in the venv). Never skipped: without one the run fails here.
have_confluent() { "$PY" -c 'import confluent_kafka' 2>/dev/null; }
case $KAFKA_READER in
    auto)
        if command -v kcat >/dev/null; then KAFKA_READER=kcat
        elif have_confluent; then KAFKA_READER=python
        else
            echo "walkthrough: no Kafka reader: neither kcat (apt-get install kcat) nor confluent-kafka in $PY (scripts/services/requirements.txt)" >&2
            exit 1
        fi ;;
    kcat)
        if ! command -v kcat >/dev/null; then
            command -v apt-get >/dev/null || { echo "walkthrough: kcat is missing and there is no apt-get to install it" >&2; exit 1; }
            log "installing kcat with apt-get"
            if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kcat >&2; then
                apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kcat >&2 \
                    || { echo "walkthrough: apt-get install kcat failed" >&2; exit 1; }
            fi
            command -v kcat >/dev/null || { echo "walkthrough: kcat installed but not on PATH" >&2; exit 1; }
        fi ;;
    python)
        have_confluent || { echo "walkthrough: WALK_KAFKA_READER=python but $PY has no confluent_kafka" >&2; exit 1; } ;;
    *) echo "walkthrough: WALK_KAFKA_READER must be auto, kcat or python (not '$KAFKA_READER')" >&2; exit 1 ;;
esac
if [[ $KAFKA_READER == kcat ]]; then
    KAFKA_READER_NAME="kcat $(kcat -V 2>&1 | sed -nE 's/^Version ([^ ]+) .*librdkafka ([^ ]+) .*/\1 (librdkafka \2)/p')"
else
    KAFKA_READER_NAME="confluent-kafka $("$PY" -c 'import confluent_kafka as c; print(getattr(c, "__version__", "?"), "(librdkafka", c.libversion()[0] + ")")')"
fi
log "Kafka reader: $KAFKA_READER_NAME"

# --- process bookkeeping ---------------------------------------------------------

declare -A PIDS=()            # name -> pid of every process this script started
KAFKA_STARTED=0
PROXY_LOCK_FD=

start_bg() {                  # start_bg NAME LOGFILE CMD... : background, own session
    local name=$1 logf=$2; shift 2
    if [[ -n $PROXY_LOCK_FD ]]; then   # children must not keep the proxy-port lock
        setsid "$@" >>"$logf" 2>&1 </dev/null {PROXY_LOCK_FD}>&- &
    else
        setsid "$@" >>"$logf" 2>&1 </dev/null &
    fi
    PIDS[$name]=$!
}

start_bg_out() {              # start_bg_out NAME OUTFILE ERRFILE CMD... : as start_bg, stdout to OUTFILE
    local name=$1 out=$2 errf=$3; shift 3
    if [[ -n $PROXY_LOCK_FD ]]; then
        setsid "$@" >"$out" 2>>"$errf" </dev/null {PROXY_LOCK_FD}>&- &
    else
        setsid "$@" >"$out" 2>>"$errf" </dev/null &
    fi
    PIDS[$name]=$!
}

alive() { [[ -n ${PIDS[$1]:-} ]] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

stop_proc() {                 # stop_proc NAME [SIGNAL]: signal, wait up to 10 s, then SIGKILL
    local name=$1 sig=${2:-TERM} pid=${PIDS[$1]:-} i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -"$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The backup first: stopping the live first would hand it the lock for nothing.
    for name in producer consumer tap kafka-follow backup live proxy; do stop_proc "$name"; done
    if [[ -n ${CLUSTER_TOPICS_CREATED:-} ]]; then
        # Our journal and lock topics only (the cluster id is unique to this run).
        timeout 60 "$KAFKA_SH" topics --delete --topic "halyard-$RUN_ID-.*" >/dev/null 2>&1 || true
    fi
    if [[ $KAFKA_STARTED == 1 ]]; then
        log "stopping the Kafka this script started"
        "$KAFKA_SH" stop >/dev/null 2>&1 || true
    fi
    if ((rc != 0)) || ((${#FAILURES[@]} > 0)); then
        echo >&2
        echo "=== walkthrough FAILED (exit $rc) after $(elapsed)s; logs in $WORK ===" >&2
        for f in "${FAILURES[@]}"; do echo "  - $f" >&2; done
        for f in live.log backup.log proxy.log producer.log consumer.log tap.log subscribe.log kafka-follow.log kafka-read.log topic.log; do
            [[ -f "$WORK/$f" ]] || continue
            echo "--- last 25 lines of $f ---" >&2
            tail -n 25 "$WORK/$f" >&2
        done
        ((rc != 0)) || rc=1
    elif [[ ${WALK_KEEP:-0} != 1 ]]; then
        rm -rf "$WORK/live-data" "$WORK/backup-data"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

# --- log waiting ------------------------------------------------------------------

lines_of() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

# first_after FILE SINCE_LINE REGEX: print the first line after SINCE_LINE matching the ERE;
# status 1 if none. (awk, not tail | grep -m1, which pipefail would see fail on SIGPIPE.)
first_after() {
    [[ -f $1 ]] || return 1
    RE=$3 awk -v n="$2" 'NR > n && $0 ~ ENVIRON["RE"] { print; found = 1; exit } END { exit !found }' "$1"
}

# wait_log FILE SINCE_LINE REGEX [TIMEOUT_S]: wait until a line after SINCE_LINE matches.
# Prints the matching line. Fails (returns 1) on timeout.
wait_log() {
    local f=$1 since=$2 re=$3 t=${4:-$PHASE_TIMEOUT} deadline line
    deadline=$(( $(now_ms) + t * 1000 ))
    while (( $(now_ms) < deadline )); do
        if line=$(first_after "$f" "$since" "$re"); then
            printf '%s\n' "$line"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# expect_log NAME FILE SINCE REGEX: wait_log or record a failure and exit.
expect_log() {
    local what=$1 f=$2 since=$3 re=$4 line
    if ! line=$(wait_log "$f" "$since" "$re"); then
        die "timeout (${PHASE_TIMEOUT}s): no line matching /$re/ in $(basename "$f") ($what)"
    fi
    log "  $(basename "$f" .log): $(msg_of "$line")"
}

# The message of a node log line, without time, level and target.
msg_of() { sed -E 's/^[0-9T:.Z-]+ +[A-Z]+ +//; s/^node\{[^}]*\}: //; s/^[a-z_:]+: //' <<<"$1"; }
# A node log line's timestamp (UTC, RFC 3339) in ms since the epoch.
ts_of() { date -u -d "${1%% *}" +%s%3N; }

count_log() { grep -E -c -- "$2" "$1" 2>/dev/null || true; }

proxy_ctl() {                 # proxy_ctl METHOD PATH
    curl -sS --max-time 5 -X "$1" "http://$PROXY_CONTROL$2"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Kafka and the fault proxy -----------------------------------------------------

if "$KAFKA_SH" status >/dev/null 2>&1; then
    log "Kafka is already running: using it (and leaving it running)"
else
    log "starting Kafka (scripts/services/kafka.sh start)"
    if ! "$KAFKA_SH" start >"$WORK/kafka-start.log" 2>&1; then
        cat "$WORK/kafka-start.log" >&2
        die "scripts/services/kafka.sh start failed"
    fi
    # start is idempotent: if another run started it meanwhile, it is not ours to stop.
    if grep -q "started Kafka" "$WORK/kafka-start.log"; then KAFKA_STARTED=1; fi
fi
KAFKA_DIRECT=$("$KAFKA_SH" bootstrap)
PROXY_LISTEN=$("$KAFKA_SH" proxied-bootstrap)      # what the PROXIED listener advertises
PROXY_UPSTREAM=$("$KAFKA_SH" proxied-upstream)     # the PROXIED listener itself
PROXY_PORT=${PROXY_LISTEN##*:}

mapfile -t PORTS < <("$PY" "$CHECK" free-ports 5)
((${#PORTS[@]} == 5)) || die "could not find 5 free ports"
LIVE_PORT=${PORTS[0]} BACKUP_PORT=${PORTS[1]} CONTROL_PORT=${PORTS[2]} TAP_LIVE_PORT=${PORTS[3]} TAP_BACKUP_PORT=${PORTS[4]}
PROXY_CONTROL=127.0.0.1:$CONTROL_PORT
URL="failover:(tcp://127.0.0.1:$LIVE_PORT,tcp://127.0.0.1:$BACKUP_PORT)?maxReconnectAttempts=-1&initialReconnectDelay=100&maxReconnectDelay=5000"
TAP_URL="failover:(tcp://127.0.0.1:$TAP_LIVE_PORT,tcp://127.0.0.1:$TAP_BACKUP_PORT)?maxReconnectAttempts=-1&initialReconnectDelay=100&maxReconnectDelay=5000"

# Kafka advertises the PROXIED listener as one fixed address, so only one fault proxy can
# serve it at a time: serialize walkthroughs with a lock, and wait (bounded) while anything
# else holds the port.
mkdir -p "$ROOT/target/kafka"
exec {PROXY_LOCK_FD}>"$ROOT/target/kafka/.proxy-port-$PROXY_PORT.lock"
flock -w "$PROXY_WAIT" "$PROXY_LOCK_FD" || die "another walkthrough held target/kafka/.proxy-port-$PROXY_PORT.lock for ${PROXY_WAIT}s"
deadline=$((SECONDS + PROXY_WAIT))
while :; do
    if port_busy "$PROXY_PORT"; then
        if ((SECONDS >= deadline)); then
            die "port $PROXY_PORT (the PROXIED listener's advertised address) stayed in use for ${PROXY_WAIT}s: $(ss -ltnpH "sport = :$PROXY_PORT" 2>/dev/null | tr -s ' ')"
        fi
        [[ ${warned:-} ]] || { log "port $PROXY_PORT is in use by another fault proxy; waiting up to ${PROXY_WAIT}s"; warned=1; }
        sleep 1
        continue
    fi
    start_bg proxy "$WORK/proxy.log" "$BIN" proxy --listen "$PROXY_LISTEN" --upstream "$PROXY_UPSTREAM" --control "$PROXY_CONTROL"
    ok=0
    for _ in $(seq 50); do
        if ! alive proxy; then break; fi
        if proxy_ctl GET /status >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.1
    done
    ((ok)) && break
    stop_proc proxy
    ((SECONDS < deadline)) || die "halyard proxy did not start: $(tail -n 3 "$WORK/proxy.log")"
    sleep 1                   # lost a race for the port: try again
done
log "proxy $PROXY_LISTEN -> $PROXY_UPSTREAM (control $PROXY_CONTROL): $(proxy_ctl GET /status)"

# --- seed steps 1 and 2: topic `test`, and a Kafka consumer on it ------------------------

# The seed's compose file pre-creates `test`. Here Kafka may be shared with earlier runs,
# whose records (another cluster id: not skipped by the bridge's loop guard) the bridge
# would read into kafka.test, and which would blur the exactly-once count: so delete the
# topic and create it again, empty, with 1 partition (what the bridge itself would create).
# Walkthroughs are serialized by the proxy-port lock held above; nothing else uses `test`.
topics() { timeout 60 "$KAFKA_SH" topics "$@" >>"$WORK/topic.log" 2>&1; }
log "Kafka topic $KAFKA_TOPIC: delete and create again (1 partition)"
topics --delete --if-exists --topic "$KAFKA_TOPIC" || die "deleting topic $KAFKA_TOPIC failed: $(tail -n 3 "$WORK/topic.log")"
deadline=$((SECONDS + 60))
# Deletion is asynchronous: until it is done, --create fails ("already exists" or "marked
# for deletion"), never succeeds on the old topic.
until topics --create --topic "$KAFKA_TOPIC" --partitions 1 --replication-factor 1; do
    ((SECONDS < deadline)) || die "topic $KAFKA_TOPIC could not be created again within 60 s: $(tail -n 3 "$WORK/topic.log")"
    sleep 0.5
done
# kcat -f: partition, offset, key, headers (name=value,...), value; kafka-read writes the same.
KCAT_FORMAT='%p\t%o\t%k\t%h\t%s\n'
kafka_read_once() {           # kafka_read_once ISOLATION OUTFILE: the topic from its beginning to its end
    if [[ $KAFKA_READER == kcat ]]; then
        timeout 120 kcat -C -b "$KAFKA_DIRECT" -t "$KAFKA_TOPIC" -o beginning -e -q \
            -X "isolation.level=$1" -f "$KCAT_FORMAT" >"$2" 2>>"$WORK/kafka-read.log"
    else
        "$PY" "$CHECK" kafka-read --bootstrap "$KAFKA_DIRECT" --topic "$KAFKA_TOPIC" --isolation "$1" \
            --timeout 110 --out "$2" 2>>"$WORK/kafka-read.log"
    fi
}
# Seed step 2: a Kafka consumer on `test` in a terminal of its own, for the whole run.
if [[ $KAFKA_READER == kcat ]]; then
    log "Kafka consumer: kcat -C -b $KAFKA_DIRECT -t $KAFKA_TOPIC -o beginning -X isolation.level=read_committed (running through the whole walkthrough)"
    start_bg_out kafka-follow "$WORK/kafka-follow.txt" "$WORK/kafka-follow.log" kcat -C -b "$KAFKA_DIRECT" -t "$KAFKA_TOPIC" \
        -o beginning -u -q -X isolation.level=read_committed -f "$KCAT_FORMAT"
else
    log "Kafka consumer: walkthrough-check.py kafka-read --follow --topic $KAFKA_TOPIC (confluent-kafka, read_committed, running through the whole walkthrough)"
    start_bg kafka-follow "$WORK/kafka-follow.log" "$PY" "$CHECK" kafka-read --follow --bootstrap "$KAFKA_DIRECT" \
        --topic "$KAFKA_TOPIC" --out "$WORK/kafka-follow.txt"
fi

# --- the two nodes ----------------------------------------------------------------

node_args() {                 # node_args live|backup
    local who=$1
    if [[ $who == live ]]; then
        echo --listen "127.0.0.1:$LIVE_PORT" --data-dir "$WORK/live-data" --kafka-bootstrap "$PROXY_LISTEN" \
            --node-id live --role primary
    else
        echo --listen "127.0.0.1:$BACKUP_PORT" --data-dir "$WORK/backup-data" --kafka-bootstrap "$KAFKA_DIRECT" \
            --node-id backup --role backup
    fi
}

start_node() {
    local who=$1
    # shellcheck disable=SC2046  # node_args is a word list without spaces
    start_bg "$who" "$WORK/$who.log" "$BIN" node $(node_args "$who") --cluster-id "$RUN_ID" \
        --allow-failback --kafka-session-timeout-ms "$SESSION_MS"
}

CLUSTER_TOPICS_CREATED=1
log "starting live (primary, Kafka via the proxy $PROXY_LISTEN) on 127.0.0.1:$LIVE_PORT"
start_node live
expect_log "live starts" "$WORK/live.log" 0 'node is live \(epoch [0-9]+\)'
log "starting backup (Kafka direct $KAFKA_DIRECT) on 127.0.0.1:$BACKUP_PORT"
start_node backup
expect_log "backup starts" "$WORK/backup.log" 0 'backup announced'

# --- clients ------------------------------------------------------------------------

# Seed step 4's consumer subscribes to the JMS topic; a topic keeps only what arrives while it
# has a subscription, so the durable subscription is made, with a receipt, before anything is sent.
log "durable subscription $CLIENT_ID.$DURABLE_NAME on $DEST (stomp.py, receipted)"
"$PY" "$CHECK" durable-subscribe --destination "$DEST" --client-id "$CLIENT_ID" --durable-name "$DURABLE_NAME" \
    "127.0.0.1:$LIVE_PORT" "127.0.0.1:$BACKUP_PORT" 2>>"$WORK/subscribe.log" \
    || die "could not make the durable subscription: $(tail -n 2 "$WORK/subscribe.log")"
start_bg tap "$WORK/tap.log" "$PY" "$CHECK" tap --out "$WORK/consumed.txt" \
    "$TAP_LIVE_PORT=127.0.0.1:$LIVE_PORT" "$TAP_BACKUP_PORT=127.0.0.1:$BACKUP_PORT"
wait_log "$WORK/tap.log" 0 'tap ready' 10 >/dev/null || die "the STOMP tap did not start"
log "consumer: halyard consume --url '$TAP_URL' (through the recording tap) --destination $DEST --client-id $CLIENT_ID --durable-name $DURABLE_NAME --count $COUNT"
start_bg consumer "$WORK/consumer.log" "$BIN" consume --url "$TAP_URL" --destination "$DEST" \
    --client-id "$CLIENT_ID" --durable-name "$DURABLE_NAME" --ack client-individual --count "$COUNT" --idle-secs 60
log "producer: halyard produce --url '$URL' --destination $DEST --count $COUNT --size $SIZE --rate $RATE"
PRODUCE_T0=$(now_ms)
start_bg producer "$WORK/producer.log" "$BIN" produce --url "$URL" --destination "$DEST" \
    --count "$COUNT" --size "$SIZE" --rate "$RATE" --producer-id "$PRODUCER_ID"
sleep "$SETTLE"

declare -A TIMING=()
phase_start() { log "$*"; PHASE_T0=$(now_ms); }
phase_end() { TIMING[$1]=$(( $(now_ms) - PHASE_T0 )); log "  -> $1 took ${TIMING[$1]} ms"; }
need_clients() {
    alive producer || die "the producer already finished before $1: raise WALK_SECONDS (or lower WALK_RATE)"
}

# The live comes back (seed step 5, `docker compose start`) and takes its role back.
failback() {                  # failback TIMING_NAME
    local l b
    l=$(lines_of "$WORK/live.log"); b=$(lines_of "$WORK/backup.log")
    start_node live
    expect_log "failback" "$WORK/backup.log" "$b" 'failing back to primary'
    expect_log "failback" "$WORK/live.log" "$l" 'live lock obtained'
    expect_log "failback" "$WORK/live.log" "$l" '(node|backup) is now live \(epoch [0-9]+\)|node is live \(epoch [0-9]+\)'
    expect_log "failback" "$WORK/backup.log" "$b" 'now a backup, waiting for the live lock'
    phase_end "$1"
}

# --- phase 1: stop the live (seed step 4, `docker compose stop`) -------------------------

need_clients "phase 1"
l=$(lines_of "$WORK/live.log"); b=$(lines_of "$WORK/backup.log")
pid=${PIDS[live]}
phase_start "phase 1: stop the live (SIGTERM, as docker compose stop; pid $pid)"
kill -TERM "$pid"
deadline=$(( $(now_ms) + PHASE_TIMEOUT * 1000 ))
while kill -0 "$pid" 2>/dev/null && (( $(now_ms) < deadline )); do sleep 0.05; done
kill -0 "$pid" 2>/dev/null && die "the live did not exit within ${PHASE_TIMEOUT}s of SIGTERM"
TIMING[stop->live_exited]=$(( $(now_ms) - PHASE_T0 ))
rc=0; wait "$pid" 2>/dev/null || rc=$?
unset "PIDS[live]"
log "  live exited (status $rc) after ${TIMING[stop->live_exited]} ms"
((rc == 0)) || fail "the live exited with status $rc after SIGTERM (a graceful stop should exit 0)"
expect_log "graceful stop" "$WORK/live.log" "$l" 'stop signal received, draining'
expect_log "graceful stop" "$WORK/live.log" "$l" 'halyard stopped'
expect_log "failover after the stop" "$WORK/backup.log" "$b" 'backup is now live \(epoch [0-9]+\)'
phase_end "stop->backup_live"
sleep "$SETTLE"

# --- phase 2: start the live again (seed step 5, `docker compose start`): failback ----------

need_clients "phase 2"
phase_start "phase 2: start the live again (failback)"
failback "start->failback"
sleep "$SETTLE"

# --- phase 3: kill the live (a crash: `docker compose kill -s SIGKILL`) ---------------------

need_clients "phase 3"
b=$(lines_of "$WORK/backup.log")
phase_start "phase 3: SIGKILL the live (pid ${PIDS[live]})"
kill -KILL "${PIDS[live]}"; wait "${PIDS[live]}" 2>/dev/null || true; unset "PIDS[live]"
expect_log "failover after SIGKILL" "$WORK/backup.log" "$b" 'backup is now live \(epoch [0-9]+\)'
phase_end "kill->backup_live"
sleep "$SETTLE"

# --- phase 4: the live comes back and fails back ----------------------------------------

need_clients "phase 4"
phase_start "phase 4: start the live again (failback)"
failback "restart->failback"
sleep "$SETTLE"

# --- phase 5: cut the live off from Kafka, then heal -------------------------------------

need_clients "phase 5"
l=$(lines_of "$WORK/live.log"); b=$(lines_of "$WORK/backup.log")
phase_start "phase 5: cut the proxy (blackhole): the live loses Kafka"
CUT_MS=$(now_ms)
log "  proxy: $(proxy_ctl POST '/cut?mode=blackhole')"
expect_log "takeover after the cut" "$WORK/backup.log" "$b" 'backup is now live \(epoch [0-9]+\)'
phase_end "cut->backup_live"
sleep "$SETTLE"
phase_start "phase 5: heal the proxy: the old live must step down"
HEAL_MS=$(now_ms)
log "  proxy: $(proxy_ctl POST /heal)"
STEPDOWN_RE='fenced by epoch [0-9]+, stepping down|live lock lost \(.*\), stepping down'
STEPDOWN_LINE=$(wait_log "$WORK/live.log" "$l" "$STEPDOWN_RE") \
    || die "timeout (${PHASE_TIMEOUT}s): the old live logged neither 'fenced by epoch N' nor 'live lock lost' (other: $(first_after "$WORK/live.log" "$l" 'fenced by a newer live|journal append failed'))"
log "  live: $(msg_of "$STEPDOWN_LINE")"
STEPDOWN_MS=$(ts_of "$STEPDOWN_LINE")
if ((STEPDOWN_MS < HEAL_MS)); then STEPDOWN_WHEN="during the cut"; else STEPDOWN_WHEN="after the heal"; fi
TIMING[cut->old_live_stepped_down]=$((STEPDOWN_MS - CUT_MS))
log "  (the old live stepped down $STEPDOWN_WHEN, $((STEPDOWN_MS - CUT_MS)) ms after the cut)"
expect_log "step down" "$WORK/live.log" "$l" 'now a backup, waiting for the live lock'
# With --allow-failback the primary, back in the lock group, takes the live role again.
b2=$b
phase_start "phase 5: the primary fails back again"
PHASE_T0=$HEAL_MS
expect_log "failback after heal" "$WORK/backup.log" "$b2" 'failing back to primary'
expect_log "failback after heal" "$WORK/live.log" "$l" 'live lock obtained'
phase_end "heal->failback"
PRODUCER_RUNNING_AFTER_PHASES=$(alive producer && echo yes || echo no)

# --- let the clients finish --------------------------------------------------------------

# The producer's schedule ends COUNT/RATE seconds after it began; give it that plus a margin.
remaining_ms=$(( PRODUCE_T0 + COUNT * 1000 / RATE - $(now_ms) ))
((remaining_ms > 0)) || remaining_ms=0
wait_secs=$(( remaining_ms / 1000 + 60 ))
log "waiting up to ${wait_secs}s for the producer to finish"
deadline=$((SECONDS + wait_secs))
while alive producer && ((SECONDS < deadline)); do sleep 0.2; done
alive producer && die "timeout: the producer did not finish within ${wait_secs}s"
PRODUCE_MS=$(( $(now_ms) - PRODUCE_T0 ))
log "waiting up to 75s for the consumer to finish"
deadline=$((SECONDS + 75))
while alive consumer && ((SECONDS < deadline)); do sleep 0.2; done
alive consumer && die "timeout: the consumer did not finish within 75s"
stop_proc tap                 # writes its totals to tap.log

log "draining the durable subscription $CLIENT_ID.$DURABLE_NAME on $DEST with stomp.py (what the consumer left behind)"
"$PY" "$CHECK" drain --out "$WORK/drained.txt" --destination "$DEST" --client-id "$CLIENT_ID" --durable-name "$DURABLE_NAME" \
    --idle-secs 3 --connect-secs 30 "127.0.0.1:$LIVE_PORT" "127.0.0.1:$BACKUP_PORT" 2>>"$WORK/drain.log" \
    || die "the stomp.py drain failed: $(tail -n 2 "$WORK/drain.log")"

# --- Kafka: what topic `test` holds (seed: "kcat -C -b localhost:29092 -t test") --------------

# Every receipt came after its Kafka transaction committed, so the committed records are all
# there now: read the topic to its end (the last stable offset) once more, read_committed.
log "reading Kafka topic $KAFKA_TOPIC to its end (read_committed, $KAFKA_READER)"
kafka_read_once read_committed "$WORK/kafka-committed.txt" \
    || die "reading topic $KAFKA_TOPIC (read_committed) failed: $(tail -n 3 "$WORK/kafka-read.log")"
K_COMMITTED=$(wc -l <"$WORK/kafka-committed.txt")
# For the record: records of aborted transactions (a killed or fenced live's open batch)
# are there too, visible to read_uncommitted only.
kafka_read_once read_uncommitted "$WORK/kafka-uncommitted.txt" \
    || die "reading topic $KAFKA_TOPIC (read_uncommitted) failed: $(tail -n 3 "$WORK/kafka-read.log")"
K_UNCOMMITTED=$(wc -l <"$WORK/kafka-uncommitted.txt")
# The Kafka consumer of seed step 2 has been following the topic all along: let it reach the same end.
deadline=$((SECONDS + 30))
while (($(lines_of "$WORK/kafka-follow.txt") < K_COMMITTED)) && alive kafka-follow && ((SECONDS < deadline)); do sleep 0.2; done
alive kafka-follow || fail "the Kafka consumer of seed step 2 exited early: $(tail -n 3 "$WORK/kafka-follow.log")"
stop_proc kafka-follow

# --- checks ------------------------------------------------------------------------------

kv() { grep -E -o "(^| )$2=[0-9]+" "$1" | tail -1 | cut -d= -f2; }
P_SENT=$(kv "$WORK/producer.log" sent); P_RECEIPTED=$(kv "$WORK/producer.log" receipted)
P_RESENT=$(kv "$WORK/producer.log" resent); P_RECONNECTS=$(kv "$WORK/producer.log" reconnects)
C_RECEIVED=$(kv "$WORK/consumer.log" received); C_DISTINCT=$(kv "$WORK/consumer.log" distinct)
C_DUPLICATES=$(kv "$WORK/consumer.log" duplicates); C_RECONNECTS=$(kv "$WORK/consumer.log" reconnects)
DRAINED=$(wc -l <"$WORK/drained.txt")
# Any write the old live still had in flight when it was cut off is refused by the fence.
FENCE_LINE=$(first_after "$WORK/live.log" "$l" 'halyard_io::server: fenced by' \
    || first_after "$WORK/live.log" "$l" 'fenced by' || true)
VERIFY=$("$PY" "$CHECK" verify --count "$COUNT" --producer-id "$PRODUCER_ID" "$WORK/consumed.txt" "$WORK/drained.txt") \
    || fail "messages lost, stored twice or foreign: $VERIFY"
# Kafka: every receipted message exactly once (receipted = all COUNT, checked below), and
# nothing else; both in the final read and in what the seed step 2 consumer saw.
KVERIFY=$("$PY" "$CHECK" verify-kafka --count "$COUNT" --producer-id "$PRODUCER_ID" --cluster-id "$RUN_ID" \
    --size "$SIZE" "$WORK/kafka-committed.txt") || fail "Kafka topic $KAFKA_TOPIC (read_committed): $KVERIFY"
KFOLLOW=$("$PY" "$CHECK" verify-kafka --count "$COUNT" --producer-id "$PRODUCER_ID" --cluster-id "$RUN_ID" \
    --size "$SIZE" "$WORK/kafka-follow.txt") || fail "the Kafka consumer of seed step 2: $KFOLLOW"
jf() { "$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); print(" ".join(f"{k}={d[k]}" for k in sys.argv[2:]))' "$@" 2>/dev/null || echo "?"; }

[[ -n $P_RECEIPTED ]] || fail "the producer printed no totals: $(tail -n 2 "$WORK/producer.log")"
[[ -n $C_DISTINCT ]] || fail "the consumer printed no totals: $(tail -n 2 "$WORK/consumer.log")"
[[ ${P_RECEIPTED:-0} == "$COUNT" ]] || fail "producer receipted=${P_RECEIPTED:-?}, expected $COUNT"
(( ${C_DISTINCT:-0} >= ${P_RECEIPTED:-1} )) || fail "consumer distinct=${C_DISTINCT:-?} < producer receipted=${P_RECEIPTED:-?}"
[[ $PRODUCER_RUNNING_AFTER_PHASES == yes ]] || fail "the producer finished before the last phase ended: raise WALK_SECONDS"

# Expected log lines, with how many times each must appear.
check_line() {                # check_line FILE MIN REGEX
    local n
    n=$(count_log "$WORK/$1" "$3")
    ((n >= $2)) || fail "$1: /$3/ appeared $n times, expected at least $2"
}
check_line live.log 1 'Kafka bridge on: addresses kafka\.<topic> <-> Kafka topics'
check_line backup.log 1 'Kafka bridge on: addresses kafka\.<topic> <-> Kafka topics'
check_line live.log 1 "Kafka bridge reads partition topic=$KAFKA_TOPIC "
check_line live.log 1 'node is live \(epoch [0-9]+\)'
check_line live.log 1 'stop signal received, draining'
check_line live.log 1 'halyard stopped'
check_line live.log 4 'live lock obtained'
check_line live.log 1 "$STEPDOWN_RE"
check_line live.log 1 'now a backup, waiting for the live lock'
check_line backup.log 1 'backup announced'
check_line backup.log 3 'backup is now live \(epoch [0-9]+\)'
check_line backup.log 3 'failing back to primary'
check_line backup.log 3 'now a backup, waiting for the live lock'
check_line producer.log 5 'connection lost \(.*\), trying again'
check_line consumer.log 5 'connection lost \(.*\), trying again'
check_line proxy.log 1 'proxy cut \(blackhole\)'
check_line proxy.log 1 'proxy healed'

epochs() { grep -E -o "$2" "$WORK/$1" | grep -E -o '[0-9]+' | tr '\n' ' '; }
cat <<EOF

=== walkthrough summary ($RUN_ID) ===
messages     count=$COUNT size=$SIZE rate=$RATE/s  producer ran ${PRODUCE_MS} ms
producer     sent=${P_SENT:-?} receipted=${P_RECEIPTED:-?} resent=${P_RESENT:-?} reconnects=${P_RECONNECTS:-?}
consumer     received=${C_RECEIVED:-?} distinct=${C_DISTINCT:-?} duplicates=${C_DUPLICATES:-?} reconnects=${C_RECONNECTS:-?}
tap          $(grep -E -o 'tap connections=.*' "$WORK/tap.log" | tail -1)
drain        left in the durable subscription $CLIENT_ID.$DURABLE_NAME after the consumer: $DRAINED
check        $VERIFY
kafka        topic $KAFKA_TOPIC, read with $KAFKA_READER_NAME
             read_committed:   $(jf "$KVERIFY" records distinct duplicate_records missing foreign bad)
             step-2 consumer:  $(jf "$KFOLLOW" records distinct duplicate_records missing foreign bad) (seed step 2: read_committed, following the topic since before the producer)
             read_uncommitted: records=$K_UNCOMMITTED (records of aborted transactions: $((K_UNCOMMITTED - K_COMMITTED)); a killed or cut-off live's open batch, sent again)
timings      stop -> live exited:             ${TIMING[stop->live_exited]:-?} ms
             stop -> backup live:             ${TIMING[stop->backup_live]:-?} ms
             start -> failback done:          ${TIMING[start->failback]:-?} ms
             SIGKILL -> backup live:          ${TIMING[kill->backup_live]:-?} ms
             restart -> failback done:        ${TIMING[restart->failback]:-?} ms
             cut -> backup live:              ${TIMING[cut->backup_live]:-?} ms
             cut -> old live stepped down:    ${TIMING[cut->old_live_stepped_down]:-?} ms ($STEPDOWN_WHEN; the cut lasted $((HEAL_MS - CUT_MS)) ms)
             heal -> failback again:          ${TIMING[heal->failback]:-?} ms
step-down    $(msg_of "$STEPDOWN_LINE")
fencing      $(if [[ -n $FENCE_LINE ]]; then msg_of "$FENCE_LINE"; else echo "(no write of the old live was in flight)"; fi)
epochs       live became live at epochs: $(epochs live.log '(node|backup) is now live \(epoch [0-9]+\)|node is live \(epoch [0-9]+\)')
             backup became live at epochs: $(epochs backup.log 'backup is now live \(epoch [0-9]+\)')
total        $(elapsed) s
EOF
if ((${#FAILURES[@]} > 0)); then exit 1; fi
echo "walkthrough passed (Kafka topic $KAFKA_TOPIC keeps this run's records until the next run: kcat -C -b $KAFKA_DIRECT -t $KAFKA_TOPIC -e -f '%k %h %s\n')"
