#!/usr/bin/env bash
# The README's copy-paste blocks, as written. Sourced by .ci/run.
#
# A block CI runs is preceded in README.md by a marker line `<!-- ci: NAME ... -->`; this
# prints the lines of the fenced block that follows it. A missing marker or block is an error,
# so the README cannot drift away from what CI runs.
readme_block() {
  local name=$1 block
  block=$(awk -v name="$name" '
    $0 ~ "^<!-- ci: " name "[ >]" { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' README.md)
  if [[ -z $block ]]; then
    echo "README.md has no block marked <!-- ci: $name -->" >&2
    return 1
  fi
  printf '%s\n' "$block"
}

# The README's run command, its test command: the first two lines of the set-up block, each
# without its trailing comment.
readme_command() { # readme_command 1|2
  readme_block serve-and-test | sed -n "${1}p" | sed 's/[[:space:]]*#.*$//'
}

# Starts the README's run command from the clone's root exactly as written, waits for the ready
# line, then runs the walkthrough and the audit-trail blocks against it, checks their output,
# and stops the server with SIGTERM (it must exit 0). $1: a scratch directory.
readme_live_check() {
  local work=$1 serve server status out
  serve=$(readme_command 1)
  [[ $serve == "cargo run --release --bin allman" ]] || echo "note: the README's run command is now: $serve"
  if [[ -e allman_data ]]; then
    echo "allman_data already exists in the clone's root; CI needs a fresh one" >&2
    return 1
  fi
  echo "\$ $serve"
  # `cargo run` execs the binary (same pid), so the signal below reaches allman itself.
  bash -c "exec $serve" >"$work/readme.stdout" 2>"$work/readme.stderr" &
  server=$!
  # A release build from scratch (fat LTO) takes about 5 minutes on 2 cores.
  for _ in $(seq 1 9000); do
    grep -q 'listening on' "$work/readme.stdout" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { tail -n 40 "$work/readme.stderr"; echo "the README's run command exited at start" >&2; return 1; }
    sleep 0.1
  done
  grep -q '^allman listening on http://127.0.0.1:8000$' "$work/readme.stdout" || {
    tail -n 40 "$work/readme.stderr"; cat "$work/readme.stdout"
    kill "$server" 2>/dev/null || true
    echo "the README's run command never reported ready on http://127.0.0.1:8000" >&2
    return 1
  }
  echo "its log:"
  grep -v '^ *\(Compiling\|Downloaded\|Downloading\)' "$work/readme.stderr" | tail -n 8
  cat "$work/readme.stdout"

  local failed=0
  expect() { # expect WHAT PATTERN: the last output matches
    if grep -Eq -- "$2" <<<"$out"; then echo "ok   $1"; else echo "FAIL $1: output lacks /$2/"; failed=1; fi
  }
  out=$(curl -s http://127.0.0.1:8000/health)
  [[ $out == OK ]] && echo "ok   GET /health answers OK" || { echo "FAIL GET /health answered: $out"; failed=1; }

  echo "--- the README's walkthrough (Try it), as written"
  out=$(bash -euo pipefail -c "$(readme_block try-it)" 2>&1) || { echo "FAIL the walkthrough exited non-zero"; failed=1; }
  printf '%s\n' "$out"
  expect "the walkthrough's health check" '^OK$'
  expect "initialize" '"protocolVersion":"2025-11-25"'
  expect "create_agent BlueLake" '"name":"BlueLake"'
  expect "create_agent GreenCastle" '"name":"GreenCastle"'
  expect "send_message" '"status":"sent"'
  expect "get_inbox drains the message sent" '"id":5,.*"from":"BlueLake","subject":"hello","body":"build is green"'
  expect "search_messages answers" '"id":6,"result":\{'

  echo "--- the README's 2026-07-28 request, as written"
  out=$(bash -euo pipefail -c "$(readme_block try-it-2026)" 2>&1) || { echo "FAIL the 2026-07-28 block exited non-zero"; failed=1; }
  printf '%s\n' "$out"
  expect "a stateless tools/call without a handshake" '"id":7,"result":\{.*"structuredContent":\{"messages":\[\{.*"body":"build is green"'
  expect "its result says it is complete" '"resultType":"complete"'

  echo "--- the README's audit-trail commands, as written (the commit follows the registration)"
  local audit ok=0
  audit=$(readme_block audit-trail)
  for _ in $(seq 1 100); do
    if out=$(bash -euo pipefail -c "$audit" 2>&1) && grep -q '"name": "BlueLake"' <<<"$out"; then ok=1; break; fi
    sleep 0.1
  done
  printf '%s\n' "$out"
  [[ $ok == 1 ]] && echo "ok   the audit trail holds BlueLake's profile" || { echo "FAIL the audit-trail block"; failed=1; }

  kill -TERM "$server"
  status=0
  wait "$server" || status=$?
  [[ $status -eq 0 ]] || { tail -n 30 "$work/readme.stderr"; echo "FAIL the server exited $status on SIGTERM"; failed=1; }
  rm -rf allman_data
  [[ $failed == 0 ]] || { echo "the README's commands failed" >&2; return 1; }
  echo "the README's run command, walkthrough and audit-trail commands work as written"
}
