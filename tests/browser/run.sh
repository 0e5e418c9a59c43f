#!/usr/bin/env bash
# Issue 17: the web view in a real browser (see ui.mjs). Installs what is missing: Debian's
# chromium package (no browser is downloaded by a test tool) and playwright-core (npm ci here),
# then seeds the server at URL and checks every page, saving screenshots to DIR.
#
#   tests/browser/run.sh http://127.0.0.1:PORT DIR
set -euo pipefail
if [[ $# -ne 2 || $1 != http*://* ]]; then
  echo "usage: $0 http://127.0.0.1:PORT SCREENSHOT_DIR" >&2
  exit 2
fi
URL=$1
SHOTS=$(mkdir -p "$2" && cd "$2" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
  echo "== apt-get install chromium"
  SUDO=()
  [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -q >/dev/null
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "== npm ci (tests/browser)"
  npm ci --no-audit --no-fund
fi
CHROMIUM=$CHROMIUM timeout 300 node ui.mjs "$URL" "$SHOTS"
echo "screenshots in $SHOTS"
