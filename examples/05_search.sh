#!/usr/bin/env bash
# 05 - BlueLake sends a message with a distinctive word, then search_messages finds it.
#
# Run 03_create_agents.sh first: BlueLake and GreenCastle must exist.
#
# search_messages(query; limit) -> [document, ...], best match first
#   - query uses Tantivy's syntax: plain words search subject and body; field queries such as
#     from:BlueLake, to:GreenCastle, subject:deploy (names and ids match exactly, case
#     included); AND / OR / NOT and "quoted phrases".
#   - limit is an integer from 1 to 1000, default 10.
#   - Every field of a document is an array: {"body":["..."],"from":["BlueLake"],
#     "id":["..."],"project_id":["..."],"subject":["..."],"timestamp":["..."],"to":[...]}.
#     (structuredContent wraps the list as {"results": [...]}.)
#   - Search is eventually consistent: the indexer commits in batches, so a message becomes
#     searchable a few milliseconds after send_message returns. That is why this script polls.
#   - Drained mail stays searchable: get_inbox empties the inbox, not the index.
#
# Needs a running server (see 01_health.sh). jq, if installed, pretty-prints the answers.
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}

mcp() {
    curl -sS --fail-with-body "$URL/mcp" -H 'Content-Type: application/json' -d "$1"
}
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else cat; echo; fi
}

# A word no other message contains, so the search below finds exactly this message.
WORD="kumquat$$x$RANDOM"

echo "== send_message BlueLake -> [GreenCastle], body mentions \"$WORD\""
mcp '{
  "jsonrpc": "2.0", "id": 1, "method": "tools/call",
  "params": {
    "name": "send_message",
    "arguments": {
      "from_agent": "BlueLake",
      "to": ["GreenCastle"],
      "subject": "search demo",
      "body": "the release checklist now has a '"$WORD"' step."
    }
  }
}' | pretty

search() { # search <query> <limit>
    mcp '{
      "jsonrpc": "2.0", "id": 2, "method": "tools/call",
      "params": {"name": "search_messages", "arguments": {"query": "'"$1"'", "limit": '"$2"'}}
    }'
}

echo "== search_messages \"$WORD\" (polled until the indexer has committed it)"
answer=""
for _ in $(seq 1 50); do
    answer=$(search "$WORD" 10)
    # An empty result is "structuredContent":{"results":[]}; a hit has a document in it.
    if [[ $answer != *'"results":[]'* && $answer == *'"results":['* ]]; then
        break
    fi
    answer=""
    sleep 0.1
done
if [[ -z $answer ]]; then
    echo "not found after 50 tries; is the server the one 03 and this script talk to?" >&2
    exit 1
fi
printf '%s\n' "$answer" | pretty

echo "== search_messages \"from:BlueLake\" (a field query: exact name, every message it sent)"
search "from:BlueLake" 5 | pretty
