#!/usr/bin/env bash
# The README's two commands: `bash scripts/run.sh demo` and `bash scripts/run.sh test`.
# Each creates .venv at the repo root if needed, installs the project with pinned versions, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-demo}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all]"
case "$cmd" in
  demo) exec .venv/bin/mmfuse demo "$@" ;;
  test)
    bash scripts/setup-system.sh
    # two workers on two cores: most tests run one process on one core (MMFUSE_TEST_WORKERS=0 runs them serially)
    exec .venv/bin/python -m pytest -n "${MMFUSE_TEST_WORKERS:-2}" "$@" ;;
  *) echo "usage: bash scripts/run.sh demo|test [args...]" >&2; exit 2 ;;
esac
