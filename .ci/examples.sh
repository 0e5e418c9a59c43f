#!/usr/bin/env bash
# Runs examples/01..08 against a live server (URL) and checks what each prints.
set -euo pipefail
cd "$(dirname "$0")/.."
export URL=${1:?usage: .ci/examples.sh http://127.0.0.1:PORT}

check() { # check SCRIPT PATTERN... : the script succeeds and its output matches every pattern
  local script=$1 out
  shift
  if ! out=$(bash "examples/$script" 2>&1); then
    printf '%s\n' "$out"
    echo "FAIL $script: exited non-zero"
    return 1
  fi
  for pattern in "$@"; do
    if ! grep -Eq -- "$pattern" <<<"$out"; then
      printf '%s\n' "$out"
      echo "FAIL $script: output lacks /$pattern/"
      return 1
    fi
  done
  echo "ok   $script"
}

check 01_health.sh '^HTTP/1.1 200 OK' '^OK' '405 Method Not Allowed' '^Allow: GET, HEAD' '404 Not Found'
check 02_tools_list.sh '"protocolVersion": ?"2025-11-25"' 'HTTP 202' '"name": ?"create_agent"' '"name": ?"send_message"' '"name": ?"get_inbox"' '"name": ?"search_messages"'
check 03_create_agents.sh '"name": ?"BlueLake"' '"name": ?"GreenCastle"' '"project_id": ?"6bc1814c-5705-5b6e-af99-104b91962282"'
check 04_send_and_inbox.sh '"status": ?"sent"' '"from": ?"BlueLake"' '"messages": ?\[\]'
check 05_search.sh '"from": ?\[' '"BlueLake"'
check 06_reply_thread_ack.sh '"ack_required": ?true' 'Re: ship 1.4\?' '"changed": ?1' '"participants": ?\[' '"reply_to": ?"[0-9a-f-]{36}"'
check 07_wait_for_mail.sh '"counts"' '"messages": ?\[\]' '"subject": ?"wake up"' '"importance": ?"urgent"'
check 08_file_reservations.sh '"granted": ?\[' '"agent": ?"BlueLake"' 'src/parser.rs is reserved by BlueLake' 'hook: commit refused' 'hook: commit allowed' '"released": ?\['
echo "8 passed, 0 failed"
