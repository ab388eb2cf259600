#!/usr/bin/env bash
# Installs the front-end assets the service serves itself (GOV.UK Frontend) and the page
# tests inject (axe-core), pinned by joinedup/pages/assets/package-lock.json, from the npm
# registry. No CDN, no browser download: the page tests drive Debian's /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/../joinedup/pages/assets"
if ! command -v npm >/dev/null 2>&1; then
  echo "frontend.sh: npm is needed (Debian package 'npm'); the web pages have no styles without it" >&2
  exit 1
fi
# npm ci deletes and reinstalls node_modules: only when the lock file changed since the last one.
stamp=node_modules/.joinedup-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -f node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.css ] \
    || [ ! -f node_modules/axe-core/axe.min.js ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
test -f node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.css
test -f node_modules/axe-core/axe.min.js
