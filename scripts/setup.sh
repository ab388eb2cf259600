#!/usr/bin/env bash
# Installs joinedup into ./.venv. With --test, also the system packages the tests use
# (PostgreSQL server for the council connector, Chromium for page tests, Java for the
# Spark engine), from Debian,
# and OPA built from the Go module proxy into ./.tools/bin (scripts/opa.sh). The native
# connector is built from native/ into ./.tools/bin when Go is installed (scripts/native.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip runs only when what it installs from has changed since the last successful install
# (pyproject.toml, the extras asked for, the Python): a second run of this script is quick.
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi
stamp=".venv/.joinedup-installed"
want="$( { cat pyproject.toml; echo "extras=$extras"; .venv/bin/python -VV; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import joinedup" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # A failed install stops the script (pipefail): only pip's location warnings are filtered.
  .venv/bin/python -m pip install -q -e ".$extras" 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
  bash scripts/system-deps.sh
  bash scripts/java.sh  # Debian's OpenJDK for the Spark engine's tests (pyspark, local mode)
  bash scripts/opa.sh   # OPA itself, pinned, into ./.tools/bin (the tests' reference engine)
fi
if [ "${1:-}" = "--test" ]; then
  bash scripts/native.sh --require  # the native connector (tests compare it with the Python engine)
else
  bash scripts/native.sh            # the native connector, when Go is installed
fi
bash scripts/frontend.sh   # GOV.UK Frontend (served by the pages) and axe-core (page tests)
.venv/bin/joinedup --version
