#!/usr/bin/env bash
# 04 - BlueLake sends a message to GreenCastle, then GreenCastle drains its inbox twice.
#
# Run 03_create_agents.sh first: both agents must exist, or send_message delivers nothing and
# answers with "isError": true and the unknown names.
#
# send_message(from_agent, to[]; subject, body, project_id) -> {id, status: "sent"}
#   "to" is always an array, even for one recipient. When the call returns, the message is
#   already in every recipient's inbox.
# get_inbox(agent_name) -> [{id, from, subject, body, timestamp}], oldest first
#   Draining removes what it returns: each message comes back exactly once, so the second
#   get_inbox below finds the inbox empty. (structuredContent wraps the list as
#   {"messages": [...]}, because structuredContent must be an object.)
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

echo "== send_message BlueLake -> [GreenCastle]"
mcp '{
  "jsonrpc": "2.0", "id": 1, "method": "tools/call",
  "params": {
    "name": "send_message",
    "arguments": {
      "from_agent": "BlueLake",
      "to": ["GreenCastle"],
      "subject": "build status",
      "body": "main is green again; I am taking the flaky test next."
    }
  }
}'

echo "== get_inbox GreenCastle (the message is here)"
mcp '{
  "jsonrpc": "2.0", "id": 2, "method": "tools/call",
  "params": {"name": "get_inbox", "arguments": {"agent_name": "GreenCastle"}}
}'

echo "== get_inbox GreenCastle again (empty: the first call drained it)"
mcp '{
  "jsonrpc": "2.0", "id": 3, "method": "tools/call",
  "params": {"name": "get_inbox", "arguments": {"agent_name": "GreenCastle"}}
}'
