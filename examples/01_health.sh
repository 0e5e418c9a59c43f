#!/usr/bin/env bash
# 01 - Is the server up? GET /health answers 200 with the body "OK".
#
# Start a server first (in another terminal):  cargo run --release --bin allman
# Then run:                                    examples/01_health.sh
# Another address:                             URL=http://127.0.0.1:9000 examples/01_health.sh
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}

echo "== GET $URL/health (status line and headers, then the body)"
# -i prints the response headers too; --fail-with-body makes curl exit non-zero on 4xx/5xx.
curl -sS -i --fail-with-body "$URL/health"
echo

echo
echo "== HEAD $URL/health (same headers, no body)"
curl -sS -I --fail-with-body "$URL/health"

# The next two are expected to fail, so no --fail-with-body: we want to see the answers.
echo "== DELETE $URL/health: the wrong method gets 405 and an Allow header"
curl -sS -i -X DELETE "$URL/health"

echo
echo "== GET $URL/nope: an unknown path gets 404"
curl -sS -i "$URL/nope"
