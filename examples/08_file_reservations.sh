#!/usr/bin/env bash
# 08 - File reservations: BlueLake leases src/ before a refactor; GreenCastle's reservation of
# a file under it is not granted (the answer names the holder); then the git pre-commit hook
# (examples/pre-commit) refuses GreenCastle's commit of a file under src/ and lets one of
# docs/ through; BlueLake releases.
#
# file_reservation_paths(agent_name, paths[]; ttl_seconds, exclusive, reason)
#   -> {granted: [{id, path, exclusive, reason, expires_at}], conflicts: [{path, holders}]}
# check_file_reservation_conflicts(agent_name, paths[]) -> {conflicts, own, clear}
# release_file_reservations(agent_name; paths, ids) -> {released}
#
# Needs a running server (see 01_health.sh), the agents of 03_create_agents.sh, git, curl
# and python3 (the hook's JSON).
set -euo pipefail

URL=${URL:-http://127.0.0.1:8000}
HOOK=$(cd "$(dirname "$0")" && pwd)/pre-commit

call() { # call TOOL ARGUMENTS-JSON : prints the tool's result
    curl -sS --fail-with-body "$URL/mcp" -H 'Content-Type: application/json' -d "{
      \"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"tools/call\",
      \"params\": {\"name\": \"$1\", \"arguments\": $2}}"
}
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else cat; echo; fi
}

echo "== file_reservation_paths BlueLake [src/] (exclusive, 1 hour)"
call file_reservation_paths '{"agent_name": "BlueLake", "paths": ["src/"], "reason": "refactoring the parser"}' | pretty

echo "== file_reservation_paths GreenCastle [src/parser.rs, docs/parser.md]: src/ is BlueLake's"
call file_reservation_paths '{"agent_name": "GreenCastle", "paths": ["src/parser.rs", "docs/parser.md"]}' | pretty

repo=$(mktemp -d)
trap 'rm -rf "$repo"' EXIT
git -C "$repo" init -q
mkdir -p "$repo/src" "$repo/docs"
echo change >"$repo/src/parser.rs"
echo change >"$repo/docs/parser.md"

echo "== git pre-commit hook as GreenCastle, staging src/parser.rs"
git -C "$repo" add src/parser.rs
if (cd "$repo" && ALLMAN_URL=$URL ALLMAN_AGENT=GreenCastle "$HOOK"); then
  echo "hook: commit allowed"
else
  echo "hook: commit refused"
fi

echo "== git pre-commit hook as GreenCastle, staging docs/parser.md only"
git -C "$repo" reset -q
git -C "$repo" add docs/parser.md
if (cd "$repo" && ALLMAN_URL=$URL ALLMAN_AGENT=GreenCastle "$HOOK"); then
  echo "hook: commit allowed"
else
  echo "hook: commit refused"
fi

echo "== release_file_reservations BlueLake (all of its reservations)"
call release_file_reservations '{"agent_name": "BlueLake"}' | pretty
call release_file_reservations '{"agent_name": "GreenCastle"}' | pretty
