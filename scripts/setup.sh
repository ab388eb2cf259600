#!/usr/bin/env bash
# Installs joinedup into ./.venv. With --test, also the system packages the tests use
# (PostgreSQL server for the council connector, Chromium for page tests, Java for the
# Spark engine), from Debian,
# and OPA built from the Go module proxy into ./.tools/bin (scripts/opa.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# A failed install stops the script (pipefail): only pip's location warnings are filtered.
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | { grep -v "^WARNING: Location" || true; }
  bash scripts/system-deps.sh
  bash scripts/java.sh  # Debian's OpenJDK for the Spark engine's tests (pyspark, local mode)
  bash scripts/opa.sh   # OPA itself, pinned, into ./.tools/bin (the tests' reference engine)
else
  .venv/bin/python -m pip install -q -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
fi
bash scripts/frontend.sh   # GOV.UK Frontend (served by the pages) and axe-core (page tests)
.venv/bin/joinedup --version
