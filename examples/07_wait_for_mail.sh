#!/usr/bin/env bash
# 07 - Waiting for mail instead of polling: GreenCastle parks a wait_for_mail call; the
# moment BlueLake's message is delivered (and durable), the wait answers with it.
#
# wait_for_mail(agent_name; after, timeout_ms = 25000 (0-50000), urgent_only, limit)
#   -> the same result as fetch_inbox. It answers as soon as the agent has a message past
#   the cursor `after`, or with no messages and the same cursor when the timeout passes.
#   It never drains or marks read. Pass the `next_after` of your last fetch_inbox or
#   wait_for_mail as `after`; fetch_inbox with "limit": 0 gives the newest cursor cheaply.
#
# Needs a running server (see 01_health.sh) and the agents of 03_create_agents.sh.
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}

call() { # call TOOL ARGUMENTS-JSON : prints the tool's result
    curl -sS --fail-with-body "$URL/mcp" -H 'Content-Type: application/json' -d "{
      \"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"tools/call\",
      \"params\": {\"name\": \"$1\", \"arguments\": $2}}"
}
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else cat; echo; fi
}

echo "== fetch_inbox GreenCastle, limit 0: only the counts and the newest cursor"
peek=$(call fetch_inbox '{"agent_name": "GreenCastle", "limit": 0}')
printf '%s' "$peek" | pretty
cursor=$(printf '%s' "$peek" | grep -o '\\"next_after\\":[0-9]*' | head -1 | grep -o '[0-9]*$')

echo "== wait_for_mail GreenCastle after $cursor, 500 ms: nothing new, so it times out"
call wait_for_mail "{\"agent_name\": \"GreenCastle\", \"after\": $cursor, \"timeout_ms\": 500}" | pretty

echo "== wait_for_mail GreenCastle after $cursor (parked in the background) ..."
waited=$(mktemp)
call wait_for_mail "{\"agent_name\": \"GreenCastle\", \"after\": $cursor, \"timeout_ms\": 20000}" >"$waited" &
waiter=$!
sleep 1

echo "== ... while BlueLake sends"
call send_message '{"from_agent": "BlueLake", "to": ["GreenCastle"], "subject": "wake up",
  "body": "the build you were waiting for is done", "importance": "urgent"}' | pretty

wait "$waiter"
echo "== the wait answered with the new message"
pretty <"$waited"
rm -f "$waited"
