#!/usr/bin/env bash
# Java for `joinedup link --engine spark` (pyspark 4 needs Java 17 or newer): Debian's
# OpenJDK (default-jre-headless), installed only when no suitable java is on the PATH.
set -euo pipefail
java_major() {
  # `java -version` prints e.g. 'openjdk version "17.0.15" ...' (or "1.8.0_x" for Java 8)
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -1 |
    awk '{ if ($1 == 1) print $2; else print $1 }'
}
if command -v java >/dev/null 2>&1; then
  major=$(java_major)
  if [ -n "$major" ] && [ "$major" -ge 17 ]; then
    exit 0
  fi
  echo "java ${major:-?} is too old for pyspark 4 (needs 17+): installing default-jre-headless"
else
  echo "installing Java (default-jre-headless) for the Spark engine"
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null
major=$(java_major)
if [ -z "$major" ] || [ "$major" -lt 17 ]; then
  echo "Java 17 or newer is needed for the Spark engine; found: $(java -version 2>&1 | head -1)" >&2
  exit 1
fi
