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
npm ci --no-audit --no-fund --loglevel=error
test -f node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.css
test -f node_modules/axe-core/axe.min.js
