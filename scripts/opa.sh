#!/usr/bin/env bash
# Builds the pinned OPA into ./.tools/bin (project-local, no system install).
# Idempotent: does nothing when .tools/bin/opa already reports the pinned version.
# Needs Go (>= 1.24) and the Go module proxy; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
OPA_VERSION=1.22.3
BIN="$PWD/.tools/bin"
# (Read the version into a variable first: `opa version | grep -q` can fail under pipefail
# when grep exits before opa has written everything.)
if [ -x "$BIN/opa" ] && [ "$("$BIN/opa" version 2>/dev/null | head -1)" = "Version: $OPA_VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "scripts/opa.sh: Go is not installed; cannot build OPA $OPA_VERSION (the regopy engine still works)" >&2
  exit 1
fi
mkdir -p "$BIN"
echo "building OPA $OPA_VERSION into .tools/bin (a few minutes on 2 cores)" >&2
start=$(date +%s)
GOBIN="$BIN" go install "github.com/open-policy-agent/opa@v$OPA_VERSION"
echo "OPA $OPA_VERSION built in $(( $(date +%s) - start ))s" >&2
