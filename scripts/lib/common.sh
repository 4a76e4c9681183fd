# shellcheck shell=bash
# Sourced by every shell script under scripts/ (after `set -euo pipefail`):
#
#   # shellcheck source=../lib/common.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
#
# Sets ROOT (the repository, absolute) and SCRIPTS ($ROOT/scripts), and defines
#   log MSG...        "NAME: MSG" on stderr, NAME = the running script's file name
#                     (a script may redefine log after sourcing, e.g. to add a clock)
#   die MSG...        log "error: MSG", exit 1
#   halyard_bin       exports HALYARD_BIN: as given, or target/release/halyard built
#                     with cargo (a no-op build takes well under a second); dies if
#                     it is not an executable
#   venv_python       prints the Python of target/pyenv (scripts/services/pyenv.sh
#                     creates it if needed, with the clients of requirements.txt)
# Does not cd: a script that wants to run from the root says `cd "$ROOT"`.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPTS="$ROOT/scripts"

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

halyard_bin() {
    if [[ -z "${HALYARD_BIN:-}" ]]; then
        HALYARD_BIN="$ROOT/target/release/halyard"
        log "building release binary"
        (cd "$ROOT" && cargo build --release -p halyard --quiet)
    fi
    export HALYARD_BIN
    [[ -x "$HALYARD_BIN" ]] || die "$HALYARD_BIN is not an executable"
}

venv_python() { "$SCRIPTS/services/pyenv.sh" | tail -1; }
