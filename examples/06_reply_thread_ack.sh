#!/usr/bin/env bash
# 06 - A thread with an acknowledgement: BlueLake asks GreenCastle to confirm a deploy,
# GreenCastle reads it without draining, replies in the thread and acknowledges; BlueLake
# reads the whole thread.
#
# send_message(...; cc, thread_id, importance, ack_required) -> {id, status, thread_id}
# fetch_inbox(agent_name; after, limit, unread_only, urgent_only, thread_id, include_bodies)
#   -> {messages: [{seq, id, thread_id, ..., read_at, acked_at, drained}], next_after,
#       has_more, skipped, counts: {unread, urgent_unread, ack_pending}}
#   Reading does not drain: get_inbox still returns these messages once.
# reply_message(from_agent, message_id, body; ...) keeps the thread, sets reply_to, and
#   defaults the subject to "Re: ..." and the recipient to the parent's sender.
# acknowledge_message(agent_name, message_ids[]) sets acked_at (and read_at); idempotent.
# get_thread(agent_name, thread_id) -> the thread as that agent saw it, oldest first.
#
# Needs a running server (see 01_health.sh) and the agents of 03_create_agents.sh.
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}
THREAD=${THREAD:-deploy-$$}

call() { # call TOOL ARGUMENTS-JSON : prints the tool's result
    curl -sS --fail-with-body "$URL/mcp" -H 'Content-Type: application/json' -d "{
      \"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"tools/call\",
      \"params\": {\"name\": \"$1\", \"arguments\": $2}}"
}
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else cat; echo; fi
}
first_id() { # the first "id" in a tool result
    grep -o '\\"id\\":\\"[0-9a-f-]*' | head -1 | grep -o '[0-9a-f-]\{36\}'
}

echo "== send_message BlueLake -> GreenCastle, in thread $THREAD, acknowledgement required"
call send_message "{\"from_agent\": \"BlueLake\", \"to\": [\"GreenCastle\"],
  \"subject\": \"ship 1.4?\", \"body\": \"CI is green. OK to deploy?\",
  \"thread_id\": \"$THREAD\", \"importance\": \"high\", \"ack_required\": true}" | pretty

echo "== fetch_inbox GreenCastle, this thread only (nothing is drained)"
page=$(call fetch_inbox "{\"agent_name\": \"GreenCastle\", \"thread_id\": \"$THREAD\"}")
printf '%s' "$page" | pretty
message=$(printf '%s' "$page" | first_id)

echo "== reply_message GreenCastle -> (the sender), in the same thread"
call reply_message "{\"from_agent\": \"GreenCastle\", \"message_id\": \"$message\",
  \"body\": \"Yes, go ahead.\"}" | pretty

echo "== acknowledge_message GreenCastle $message"
call acknowledge_message "{\"agent_name\": \"GreenCastle\", \"message_ids\": [\"$message\"]}" | pretty

echo "== get_thread BlueLake $THREAD (the question, then the answer)"
call get_thread "{\"agent_name\": \"BlueLake\", \"thread_id\": \"$THREAD\", \"include_bodies\": true}" | pretty
