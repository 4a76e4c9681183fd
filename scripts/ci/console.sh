#!/usr/bin/env bash
# Runs the web console's browser test (tests/console): a real `halyard node
# --http` and the page it serves at / in Debian's headless Chromium, driven by
# Selenium (PyPI, in target/pyenv). Installs chromium and chromium-driver
# with apt-get if /usr/bin/chromium or /usr/bin/chromedriver is missing, and
# fails if they cannot be installed: it never skips. Works from any directory.
#
#   scripts/ci/console.sh                 # the console test
#   scripts/ci/console.sh -k retry        # extra arguments go to pytest
#
# Environment: HALYARD_BIN = binary to test (default: target/release/halyard,
# built here if missing or older than the sources). The test leaves a
# screenshot of the page in target/console.png.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
APT_PACKAGES=(chromium chromium-driver)

have_browser() { [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; }

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}" >&2
}

if ! have_browser; then
    command -v apt-get >/dev/null || die "$CHROMIUM or $CHROMEDRIVER is missing and there is no apt-get to install ${APT_PACKAGES[*]}"
    log "installing ${APT_PACKAGES[*]} with apt-get"
    if ! apt_install; then
        log "apt-get install failed; updating the package lists and trying again"
        apt-get update >&2 || die "apt-get update failed; cannot install ${APT_PACKAGES[*]}"
        apt_install || die "apt-get install ${APT_PACKAGES[*]} failed"
    fi
    have_browser || die "${APT_PACKAGES[*]} installed, but $CHROMIUM or $CHROMEDRIVER is still missing"
fi
log "browser: $("$CHROMIUM" --version 2>/dev/null | tail -1); driver: $("$CHROMEDRIVER" --version | tail -1)"

halyard_bin
PY=$(venv_python)
"$PY" -c 'import selenium' 2>/dev/null || die "selenium does not import in $PY (is it in scripts/services/requirements.txt?)"
log "python: $PY; selenium $("$PY" -c 'import selenium; print(selenium.__version__)'); binary: $HALYARD_BIN"

# -rfE: list every failure and error in the summary. tests/pytest.ini puts
# tests/ (the shared harness package) on the path.
exec "$PY" -m pytest -q -rfE --durations=5 "$ROOT/tests/console" "$@"
