#!/usr/bin/env bash
# Builds the native (Go) connector into ./.tools/bin/joinedup-connector, with the hash of
# its sources compiled in (connectors/native.py refuses a program built from other sources).
# Needs Go (>= 1.26) and the Go module proxy. Without Go it says so and exits 0 unless
# --require is given: `joinedup extract` then runs the Python engine.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
  echo "scripts/native.sh: Go is not installed; joinedup extract will use the Python engine" >&2
  [ "${1:-}" = "--require" ] && exit 1
  exit 0
fi
hash="$(.venv/bin/python -c 'from connectors.native import source_hash; print(source_hash())')"
mkdir -p .tools/bin
start=$(date +%s)
(cd native && go build -trimpath -ldflags "-X main.sourceHash=$hash" -o ../.tools/bin/joinedup-connector ./cmd/joinedup-connector)
elapsed=$(( $(date +%s) - start ))
if [ "$elapsed" -gt 5 ]; then echo "native connector built in ${elapsed}s" >&2; fi
