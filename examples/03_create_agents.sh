#!/usr/bin/env bash
# 03 - Register two agents, BlueLake and GreenCastle, in the project "demo".
#
# create_agent(project_key; name_hint, program, model) -> {id, project_id, name, program, model}
#   - project_id is UUIDv5(NAMESPACE_DNS, project_key): "demo" always gives
#     6bc1814c-5705-5b6e-af99-104b91962282.
#   - Running this script again is fine: the same name in the same project returns the same
#     id (and updates program/model). A name already used by another project is refused.
#   - Without name_hint the server invents a free name such as "SwiftOtter".
#
# Needs a running server (see 01_health.sh). jq, if installed, pretty-prints the answers.
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}

mcp() {
    curl -sS --fail-with-body "$URL/mcp" -H 'Content-Type: application/json' -d "$1" | pretty
}
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else cat; echo; fi
}

# A tool is run with tools/call: params are {"name": <tool>, "arguments": {...}}.
# The result carries the same JSON twice: as text in "content" (for a model to read) and as
# "structuredContent" (for programs). "isError": false means the tool succeeded.
echo "== create_agent BlueLake"
mcp '{
  "jsonrpc": "2.0", "id": 1, "method": "tools/call",
  "params": {
    "name": "create_agent",
    "arguments": {"project_key": "demo", "name_hint": "BlueLake", "program": "curl", "model": "none"}
  }
}'

echo "== create_agent GreenCastle"
mcp '{
  "jsonrpc": "2.0", "id": 2, "method": "tools/call",
  "params": {
    "name": "create_agent",
    "arguments": {"project_key": "demo", "name_hint": "GreenCastle", "program": "curl", "model": "none"}
  }
}'
