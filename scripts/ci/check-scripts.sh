#!/usr/bin/env bash
# Every script still parses, and the tools the test command does not run
# otherwise still start: `bash -n` on every shell script under scripts/
# (and shellcheck -S warning, if installed), a compile of every Python file
# under scripts/ and tests/, and `--help` of the benchmark tools
# (bench-report.py; failover-figures.py, which imports the shared test harness
# in tests/harness).
#
#   scripts/ci/check-scripts.sh          # with the venv's python (scripts/services/pyenv.sh)
#   PY=python3 scripts/ci/check-scripts.sh
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
PY=${PY:-$(venv_python)}

mapfile -t shell_scripts < <(find scripts -name '*.sh' | sort)
for f in "${shell_scripts[@]}"; do
    bash -n "$f" || die "$f does not parse"
done
if command -v shellcheck >/dev/null; then
    shellcheck -x -S warning "${shell_scripts[@]}" || die "shellcheck found problems"
    shellcheck_note="shellcheck: no warnings"
else
    shellcheck_note="NOTE: shellcheck is not installed; only bash -n ran"
fi

mapfile -t python_files < <(find scripts tests -name '*.py' -not -path '*/__pycache__/*' | sort)
"$PY" - "${python_files[@]}" <<'PYEOF' || die "a Python file does not compile"
import sys
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        compile(f.read(), path, "exec")
PYEOF

for tool in scripts/bench/bench-report.py scripts/bench/failover-figures.py; do
    "$PY" "$tool" --help >/dev/null || die "$tool --help failed"
done
echo "scripts: ${#shell_scripts[@]} shell scripts parse ($shellcheck_note), ${#python_files[@]} Python files compile, the benchmark tools start"
