#!/usr/bin/env bash
# 02 - The MCP handshake, then the list of tools.
#
# Everything MCP goes to one endpoint: POST /mcp with a JSON-RPC 2.0 message as the body.
# allman keeps no session, so initialize is optional for curl, but real MCP clients send it.
# Needs a running server (see 01_health.sh). jq, if installed, pretty-prints the answers.
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}

# POST one JSON-RPC message and print the answer (pretty if jq is available).
mcp() {
    curl -sS --fail-with-body "$URL/mcp" -H 'Content-Type: application/json' -d "$1" | pretty
}
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else cat; echo; fi
}

echo "== initialize: the server answers with the protocol version it will speak"
mcp '{
  "jsonrpc": "2.0", "id": 1, "method": "initialize",
  "params": {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "examples/02_tools_list.sh", "version": "1.0"}
  }
}'

echo "== notifications/initialized: a notification (no id) gets 202 and an empty body"
curl -sS --fail-with-body -o /dev/null -w 'HTTP %{http_code}\n' "$URL/mcp" \
    -H 'Content-Type: application/json' \
    -d '{"jsonrpc": "2.0", "method": "notifications/initialized"}'

echo "== ping: the answer is an empty result"
mcp '{"jsonrpc": "2.0", "id": 2, "method": "ping"}'

echo "== tools/list: every tool with its input and output JSON Schema"
mcp '{"jsonrpc": "2.0", "id": 3, "method": "tools/list"}'
