# shellcheck shell=bash
# Sourced by scripts/services/kafka.sh and scripts/services/artemis.sh (after lib/common.sh).
#
# terminate PID: SIGTERM, up to 60 s to exit, then SIGKILL and up to 10 s
# more. Logs through the caller's `log`.
terminate() {
    local pid=$1 i
    log "stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do # 60 s
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    log "still alive after 60 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
}
