#!/usr/bin/env bash
# Apache ActiveMQ Artemis, for comparing Halyard against it (scripts/bench/bench-compare.sh).
# No Docker, no tarball from a web site: the binary distribution comes from Maven Central
# through Maven, like scripts/services/kafka.sh's Kafka jars.
#
#   scripts/services/artemis.sh fetch     download and unpack the pinned distribution once
#   scripts/services/artemis.sh start     fetch, create the broker instance if missing, start it in the
#                                         background, wait until STOMP answers a real CONNECT with login
#   scripts/services/artemis.sh stop      SIGTERM (Artemis stops cleanly), wait up to 60 s, then SIGKILL
#   scripts/services/artemis.sh status    exit 0 if running and STOMP answers a CONNECT
#   scripts/services/artemis.sh restart   stop + start
#   scripts/services/artemis.sh clean     stop and empty the instance's data dir (journal, bindings,
#                                         paging): the next start has no messages, same configuration
#   scripts/services/artemis.sh reset     stop and delete the instance (next start runs `artemis create`
#                                         again, journal auto-tuning included)
#   scripts/services/artemis.sh logs [TAIL ARGS]   tail the broker's output (default: last 200 lines)
#   scripts/services/artemis.sh version   print the Artemis version
#   scripts/services/artemis.sh info      version, journal type (NIO / ASYNCIO / MAPPED), journal settings,
#                                         the STOMP acceptor, as KEY=VALUE lines
#
# The version is pinned (ARTEMIS_VERSION, default 2.56.0: the newest 2.x that resolves on
# Maven Central here). From 2.41 on, Artemis is an Apache top-level project and its artifacts
# moved from groupId org.apache.activemq to org.apache.artemis: the old coordinates
# org.apache.activemq:apache-artemis:2.56.0 are only a relocation POM (no bin archive), so the
# group is derived from the version (ARTEMIS_GROUP overrides).
#
# The instance (target/artemis/instance) is made by `artemis create` with:
#   --user artemis --password artemis --require-login   (log in as artemis/artemis)
#   --host 127.0.0.1 --no-web                           (nothing listens beyond loopback)
#   --no-amqp-acceptor --no-mqtt-acceptor --no-hornetq-acceptor
#   --default-port ARTEMIS_CORE_PORT (61626: Halyard's own default is 61616, Artemis's too)
# and otherwise Artemis's defaults: persistence on, the journal type `create` picks (ASYNCIO if
# libaio is loadable, else NIO), journal-datasync true, journal-buffer-timeout auto-tuned by
# `create`'s sync-write test. The one edit: the STOMP acceptor binds 127.0.0.1:ARTEMIS_STOMP_PORT
# (61613) with anycastPrefix=/queue/;multicastPrefix=/topic/, so /queue/bench is the anycast
# queue `bench`, as in Halyard (and the consumer window below, if asked for).
#
# STOMP flow control: Artemis gives a STOMP subscription with ack client or client-individual a
# 10 KiB consumer window unless SUBSCRIBE carries consumer-window-size (Halyard's default is
# unbounded). ARTEMIS_STOMP_CONSUMER_WINDOW=-1 sets the acceptor's stompConsumerWindowSize to
# unbounded; unset keeps Artemis's default. Applied at every start.
#
# AMQP (for Qpid JMS and python-qpid-proton, tests/amqp): ARTEMIS_AMQP=1 gives the instance an
# AMQP 1.0 acceptor on 127.0.0.1:ARTEMIS_AMQP_PORT (61627), and start/status then also wait for
# it to answer the AMQP protocol header; unset (the benchmarks) removes that acceptor again, so
# the instance is STOMP-only as before. ARTEMIS_AMQP_IDLE_TIMEOUT_MS sets its amqpIdleTimeout
# (unset: Artemis's default, 60 s). Applied at every start.
#
# ARTEMIS_MAX_DISK_USAGE sets broker.xml's max-disk-usage (percent of the disk in use at which
# Artemis blocks producers; its default 90 can trip on a shared build machine whose disk is
# mostly full, and a blocked test looks like a broker bug). Unset keeps what `create` wrote.
#
# ARTEMIS_INSTANCE names the instance folder under target/artemis (default `instance`, the
# benchmarks'); another name (the tests use `tests`) is a separate broker with its own journal,
# pid file (target/artemis/NAME.pid) and log (target/artemis/NAME.out), so tests and benchmarks
# never share state. Give it its own ports too.
#
# Environment: ARTEMIS_VERSION, ARTEMIS_GROUP, ARTEMIS_STOMP_PORT (61613), ARTEMIS_CORE_PORT
# (61626), ARTEMIS_AMQP (unset), ARTEMIS_AMQP_PORT (61627),
# ARTEMIS_AMQP_IDLE_TIMEOUT_MS (unset), ARTEMIS_MAX_DISK_USAGE (unset), ARTEMIS_INSTANCE (instance),
# ARTEMIS_USER/ARTEMIS_PASSWORD (artemis/artemis), ARTEMIS_STOMP_CONSUMER_WINDOW (unset),
# ARTEMIS_START_TIMEOUT seconds (90).
set -euo pipefail

# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=../lib/terminate.sh
. "$SCRIPTS/lib/terminate.sh"

ARTEMIS_VERSION=${ARTEMIS_VERSION:-2.56.0}
ARTEMIS_STOMP_PORT=${ARTEMIS_STOMP_PORT:-61613}
ARTEMIS_CORE_PORT=${ARTEMIS_CORE_PORT:-61626}
ARTEMIS_AMQP=${ARTEMIS_AMQP-}
ARTEMIS_AMQP_PORT=${ARTEMIS_AMQP_PORT:-61627}
ARTEMIS_AMQP_IDLE_TIMEOUT_MS=${ARTEMIS_AMQP_IDLE_TIMEOUT_MS-}
ARTEMIS_INSTANCE=${ARTEMIS_INSTANCE:-instance}
ARTEMIS_MAX_DISK_USAGE=${ARTEMIS_MAX_DISK_USAGE-}
ARTEMIS_USER=${ARTEMIS_USER:-artemis}
ARTEMIS_PASSWORD=${ARTEMIS_PASSWORD:-artemis}
ARTEMIS_START_TIMEOUT=${ARTEMIS_START_TIMEOUT:-90}
# STOMP subscriptions' default consumer window in bytes (acceptor stompConsumerWindowSize); empty
# keeps Artemis's own default (10 KiB for client and client-individual acks).
ARTEMIS_STOMP_CONSUMER_WINDOW=${ARTEMIS_STOMP_CONSUMER_WINDOW-}

if [[ -z "${ARTEMIS_GROUP:-}" ]]; then
    minor=${ARTEMIS_VERSION#2.}
    minor=${minor%%.*}
    if [[ "$ARTEMIS_VERSION" == 2.* && "$minor" =~ ^[0-9]+$ ]] && ((minor >= 41)); then
        ARTEMIS_GROUP=org.apache.artemis
    else
        ARTEMIS_GROUP=org.apache.activemq
    fi
fi

ADIR="$ROOT/target/artemis"
DIST="$ADIR/dist"
HOME_DIR="$ADIR/apache-artemis-$ARTEMIS_VERSION"
[[ "$ARTEMIS_INSTANCE" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "artemis.sh: bad ARTEMIS_INSTANCE" >&2; exit 2; }
INSTANCE="$ADIR/$ARTEMIS_INSTANCE"
BROKER_XML="$INSTANCE/etc/broker.xml"
if [[ "$ARTEMIS_INSTANCE" == instance ]]; then
    PIDFILE="$ADIR/artemis.pid"
    LOGFILE="$ADIR/artemis.out"
    CREATE_LOG="$ADIR/create.log"
else
    PIDFILE="$ADIR/$ARTEMIS_INSTANCE.pid"
    LOGFILE="$ADIR/$ARTEMIS_INSTANCE.out"
    CREATE_LOG="$ADIR/$ARTEMIS_INSTANCE-create.log"
fi
INSTANCE_STAMP="$INSTANCE/.halyard-create"

# --- fetch -----------------------------------------------------------------

fetch() {
    if [[ -x "$HOME_DIR/bin/artemis" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (needed to fetch Artemis from Maven Central)"
    command -v java >/dev/null || die "java not found"
    local coords="$ARTEMIS_GROUP:apache-artemis:$ARTEMIS_VERSION:tar.gz:bin"
    log "fetching $coords with Maven into $DIST"
    mkdir -p "$DIST"
    if ! mvn -q -B -Dstyle.color=never \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="$coords" -DoutputDirectory="$DIST" >&2; then
        die "mvn could not fetch $coords"
    fi
    local tgz="$DIST/apache-artemis-$ARTEMIS_VERSION-bin.tar.gz"
    [[ -f "$tgz" ]] || die "no $tgz after fetch"
    rm -rf "$HOME_DIR.tmp"
    mkdir -p "$HOME_DIR.tmp"
    tar -xzf "$tgz" -C "$HOME_DIR.tmp" || die "cannot unpack $tgz"
    [[ -x "$HOME_DIR.tmp/apache-artemis-$ARTEMIS_VERSION/bin/artemis" ]] \
        || die "unexpected layout in $tgz"
    rm -rf "$HOME_DIR"
    mv "$HOME_DIR.tmp/apache-artemis-$ARTEMIS_VERSION" "$HOME_DIR"
    rmdir "$HOME_DIR.tmp"
    log "Artemis $ARTEMIS_VERSION unpacked in $HOME_DIR"
}

# --- instance --------------------------------------------------------------

create_args() {
    printf '%s\n' --silent --force \
        --user "$ARTEMIS_USER" --password "$ARTEMIS_PASSWORD" --require-login \
        --name halyard-bench --host 127.0.0.1 --default-port "$ARTEMIS_CORE_PORT" \
        --no-web --no-amqp-acceptor --no-mqtt-acceptor --no-hornetq-acceptor
}

stamp_text() {
    printf 'version=%s core=%s\n' "$ARTEMIS_VERSION" "$ARTEMIS_CORE_PORT"
    create_args
}

create_instance() {
    if [[ -f "$INSTANCE_STAMP" && "$(cat "$INSTANCE_STAMP")" == "$(stamp_text)" ]]; then
        return 0
    fi
    rm -rf "$INSTANCE"
    local args=()
    mapfile -t args < <(create_args)
    log "creating broker instance in $INSTANCE (artemis create ${args[*]})"
    if ! "$HOME_DIR/bin/artemis" create "${args[@]}" "$INSTANCE" >"$CREATE_LOG" 2>&1; then
        tail -n 40 "$CREATE_LOG" >&2
        die "artemis create failed (log: $CREATE_LOG)"
    fi
    stamp_text >"$INSTANCE_STAMP"
}

# Rewrites the STOMP acceptor: loopback, our port, Halyard's destination prefixes, and
# ARTEMIS_STOMP_CONSUMER_WINDOW if set.
configure_stomp() {
    [[ -f "$BROKER_XML" ]] || die "no $BROKER_XML"
    local url="tcp://127.0.0.1:${ARTEMIS_STOMP_PORT}?tcpSendBufferSize=1048576;tcpReceiveBufferSize=1048576;protocols=STOMP;useEpoll=true;anycastPrefix=/queue/;multicastPrefix=/topic/"
    if [[ -n "$ARTEMIS_STOMP_CONSUMER_WINDOW" ]]; then
        url+=";stompConsumerWindowSize=${ARTEMIS_STOMP_CONSUMER_WINDOW}"
    fi
    if grep -q '<acceptor name="stomp">' "$BROKER_XML"; then
        sed -i -E "s#<acceptor name=\"stomp\">[^<]*</acceptor>#<acceptor name=\"stomp\">${url}</acceptor>#" "$BROKER_XML"
    else
        sed -i -E "s#</acceptors>#   <acceptor name=\"stomp\">${url}</acceptor>\n      </acceptors>#" "$BROKER_XML"
    fi
    grep -qF "<acceptor name=\"stomp\">${url}</acceptor>" "$BROKER_XML" \
        || die "could not configure the STOMP acceptor in $BROKER_XML"
}

# ARTEMIS_AMQP=1: an AMQP acceptor on 127.0.0.1:ARTEMIS_AMQP_PORT; otherwise none.
configure_amqp() {
    sed -i -E '/<acceptor name="amqp">[^<]*<\/acceptor>/d' "$BROKER_XML"
    [[ "$ARTEMIS_AMQP" == 1 ]] || return 0
    local url="tcp://127.0.0.1:${ARTEMIS_AMQP_PORT}?protocols=AMQP;useEpoll=true;amqpCredits=1000;amqpLowCredits=300;amqpDuplicateDetection=true"
    if [[ -n "$ARTEMIS_AMQP_IDLE_TIMEOUT_MS" ]]; then
        url+=";amqpIdleTimeout=${ARTEMIS_AMQP_IDLE_TIMEOUT_MS}"
    fi
    sed -i -E "s#</acceptors>#   <acceptor name=\"amqp\">${url}</acceptor>\n      </acceptors>#" "$BROKER_XML"
    grep -qF "<acceptor name=\"amqp\">${url}</acceptor>" "$BROKER_XML" \
        || die "could not configure the AMQP acceptor in $BROKER_XML"
}

configure_disk() {
    [[ -n "$ARTEMIS_MAX_DISK_USAGE" ]] || return 0
    sed -i -E "s#<max-disk-usage>[^<]*</max-disk-usage>#<max-disk-usage>${ARTEMIS_MAX_DISK_USAGE}</max-disk-usage>#" "$BROKER_XML"
    grep -qF "<max-disk-usage>${ARTEMIS_MAX_DISK_USAGE}</max-disk-usage>" "$BROKER_XML" \
        || die "could not set max-disk-usage in $BROKER_XML"
}

# 0 if ARTEMIS_AMQP is unset, or if the AMQP port answers a SASL protocol header with one.
amqp_ready() {
    [[ "$ARTEMIS_AMQP" == 1 ]] || return 0
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 3
        printf "AMQP\003\001\000\000" >&3
        head -c 4 <&3 | grep -q AMQP
    ' _ "$ARTEMIS_AMQP_PORT" 2>/dev/null
}

xml_value() { # TAG -> text of the first <TAG>...</TAG> in broker.xml
    sed -n -E "s#.*<$1>([^<]*)</$1>.*#\\1#p" "$BROKER_XML" | head -n 1
}

# --- process ---------------------------------------------------------------

running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # The pid is the JVM (bin/artemis execs java): make sure it is still ours.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "artemis.instance=$INSTANCE" || return 1
    printf '%s\n' "$pid"
}

# A real STOMP 1.2 CONNECT with login; 0 if the answer is CONNECTED. Prints the first line.
stomp_connect() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 3
        printf "CONNECT\naccept-version:1.2\nhost:127.0.0.1\nlogin:%s\npasscode:%s\nheart-beat:0,0\n\n\0" "$2" "$3" >&3
        IFS= read -r -t 4 line <&3 || exit 4
        printf "%s\n" "$line"
        printf "DISCONNECT\n\n\0" >&3
        exec 3>&-
        [[ "$line" == CONNECTED* ]]
    ' _ "$ARTEMIS_STOMP_PORT" "$ARTEMIS_USER" "$ARTEMIS_PASSWORD" 2>/dev/null
}

cmd_start() {
    fetch
    create_instance
    local pid
    if ! running_pid >/dev/null; then
        configure_stomp # every start: the port and consumer window may differ from last time
        configure_amqp
        configure_disk
    fi
    if pid=$(running_pid); then
        if stomp_connect >/dev/null && amqp_ready; then
            log "already running (pid $pid), STOMP on 127.0.0.1:$ARTEMIS_STOMP_PORT"
            return 0
        fi
        die "process $pid is running but STOMP does not answer on 127.0.0.1:$ARTEMIS_STOMP_PORT (or AMQP on $ARTEMIS_AMQP_PORT, if asked for)"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$ARTEMIS_STOMP_PORT") 2>/dev/null; then
        die "127.0.0.1:$ARTEMIS_STOMP_PORT is already taken by another process"
    fi
    if [[ "$ARTEMIS_AMQP" == 1 ]] && (exec 3<>"/dev/tcp/127.0.0.1/$ARTEMIS_AMQP_PORT") 2>/dev/null; then
        die "127.0.0.1:$ARTEMIS_AMQP_PORT is already taken by another process"
    fi
    [[ -f "$LOGFILE" ]] && mv -f "$LOGFILE" "$LOGFILE.1"
    log "starting Artemis $ARTEMIS_VERSION ($INSTANCE), log $LOGFILE"
    setsid nohup "$INSTANCE/bin/artemis" run </dev/null >"$LOGFILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"
    local deadline=$((SECONDS + ARTEMIS_START_TIMEOUT)) answer=""
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "Artemis exited during start-up; last lines of $LOGFILE:"
            tail -n 40 "$LOGFILE" >&2 || true
            rm -f "$PIDFILE"
            die "Artemis did not start"
        fi
        if answer=$(stomp_connect) && amqp_ready; then
            log "running (pid $pid): STOMP CONNECT as $ARTEMIS_USER on 127.0.0.1:$ARTEMIS_STOMP_PORT answered CONNECTED$([[ "$ARTEMIS_AMQP" == 1 ]] && echo ", AMQP on 127.0.0.1:$ARTEMIS_AMQP_PORT"); journal $(journal_type)"
            return 0
        fi
        sleep 0.5
    done
    log "STOMP on 127.0.0.1:$ARTEMIS_STOMP_PORT did not answer CONNECTED within ${ARTEMIS_START_TIMEOUT}s (last answer: ${answer:-none}); last lines of $LOGFILE:"
    tail -n 40 "$LOGFILE" >&2 || true
    die "Artemis did not become ready (still running as pid $pid; scripts/services/artemis.sh stop ends it)"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    terminate "$pid"
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_status() {
    local pid answer
    if ! pid=$(running_pid); then
        echo "artemis: not running"
        return 1
    fi
    if answer=$(stomp_connect) && amqp_ready; then
        echo "artemis: running (pid $pid, STOMP 127.0.0.1:$ARTEMIS_STOMP_PORT$([[ "$ARTEMIS_AMQP" == 1 ]] && echo ", AMQP 127.0.0.1:$ARTEMIS_AMQP_PORT"), Artemis $ARTEMIS_VERSION, journal $(journal_type))"
        return 0
    fi
    echo "artemis: process $pid is running but STOMP does not answer CONNECTED on 127.0.0.1:$ARTEMIS_STOMP_PORT (${answer:-no answer})"
    return 1
}

# The journal type the running broker reported (log line AMQ221013 / "Using ... Journal"),
# else the one broker.xml asks for.
journal_type() {
    local t=""
    if [[ -f "$LOGFILE" ]]; then
        t=$(sed -n -E 's/.*Using (NIO|AIO|ASYNCIO|MAPPED|[A-Za-z]+) Journal.*/\1/p' "$LOGFILE" | tail -n 1)
    fi
    if [[ -z "$t" && -f "$BROKER_XML" ]]; then
        t=$(xml_value journal-type)
    fi
    printf '%s\n' "${t:-unknown}"
}

cmd_info() {
    echo "version=$ARTEMIS_VERSION"
    local running=""
    [[ -f "$LOGFILE" ]] && running=$(sed -n -E 's/.*Artemis Server version ([^ ]+).*/\1/p' "$LOGFILE" | tail -n 1)
    echo "version_running=${running:-unknown}"
    echo "create_args=$(create_args | tr '\n' ' ' | sed 's/ $//')"
    echo "coordinates=$ARTEMIS_GROUP:apache-artemis:$ARTEMIS_VERSION:tar.gz:bin"
    [[ -f "$BROKER_XML" ]] || { echo "instance=none"; return 0; }
    echo "instance=$INSTANCE"
    echo "journal_type_configured=$(xml_value journal-type)"
    echo "journal_type_running=$(journal_type)"
    echo "persistence_enabled=$(xml_value persistence-enabled)"
    echo "journal_datasync=$(xml_value journal-datasync)"
    echo "journal_buffer_timeout_ns=$(xml_value journal-buffer-timeout)"
    echo "journal_max_io=$(xml_value journal-max-io)"
    echo "journal_file_size=$(xml_value journal-file-size)"
    local tune
    tune=$(grep -o 'Your system can make [^,]*' "$CREATE_LOG" 2>/dev/null | head -n 1 || true)
    echo "create_sync_test=${tune#Your system can make }"
    echo "stomp_acceptor=$(sed -n -E 's#.*<acceptor name="stomp">([^<]*)</acceptor>.*#\1#p' "$BROKER_XML")"
    echo "amqp_acceptor=$(sed -n -E 's#.*<acceptor name="amqp">([^<]*)</acceptor>.*#\1#p' "$BROKER_XML")"
    echo "java_args=$(sed -n -E 's/^ *JAVA_ARGS="(.*)"$/\1/p' "$INSTANCE/etc/artemis.profile" | head -n 1 | grep -oE -- '-Xm[sx][^ ]+|-XX:\+Use[A-Za-z0-9]+GC' | tr '\n' ' ')"
}

cmd_logs() {
    [[ -f "$LOGFILE" ]] || die "no log yet ($LOGFILE)"
    if (($# == 0)); then set -- -n 200; fi
    tail "$@" "$LOGFILE"
}

usage() {
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

main() {
    (($# >= 1)) || usage
    local cmd=$1
    shift
    case "$cmd" in
        fetch) fetch; log "Artemis $ARTEMIS_VERSION in $HOME_DIR" ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        status) cmd_status ;;
        clean) cmd_stop; log "emptying $INSTANCE/data"; rm -rf "${INSTANCE:?}/data"; mkdir -p "$INSTANCE/data" ;;
        reset) cmd_stop; log "deleting $INSTANCE"; rm -rf "$INSTANCE" ;;
        logs) cmd_logs "$@" ;;
        version) echo "$ARTEMIS_VERSION" ;;
        info) cmd_info ;;
        -h | --help | help) usage 0 ;;
        *) log "unknown command: $cmd"; usage ;;
    esac
}

main "$@"
