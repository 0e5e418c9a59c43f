#!/usr/bin/env python3
"""A full index disk, from outside (issue 29): INDEX_PATH on a 3 MiB tmpfs fills up under
~20 KB messages; the server must stop rather than serve on with a frozen index, and once the
tmpfs is grown and the server restarted, search_messages must find every acknowledged message
exactly once. Needs root (it mounts a tmpfs on /mnt/idx) and a built server:

    sudo python3 bench/scripts/index_disk_full.py target/release/allman

Exit 0 when nothing is missing or duplicated."""
import json, os, subprocess, sys, time, urllib.request, shutil

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/allman"
PORT = 8850
URL = f"http://127.0.0.1:{PORT}"
BASE = "/tmp/repro29"
INDEX = "/mnt/idx/index"
env = dict(os.environ, DATA_DIR=f"{BASE}/data", INDEX_PATH=INDEX, REPO_ROOT=f"{BASE}/repo",
           RUST_LOG="info")

def call(name, args, timeout=10):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": name, "arguments": args}}).encode()
    req = urllib.request.Request(URL + "/mcp", body, {"Content-Type": "application/json",
                                                      "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        reply = json.loads(r.read())
    result = reply.get("result")
    if result is None or result.get("isError"):
        raise RuntimeError(json.dumps(reply)[:300])
    return json.loads(result["content"][0]["text"])

def start(log):
    proc = subprocess.Popen([BIN, "--port", str(PORT)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))
    for _ in range(200):
        try:
            urllib.request.urlopen(URL + "/health", timeout=1).read()
            return proc
        except Exception:
            if proc.poll() is not None:
                raise SystemExit(f"server exited {proc.returncode}; see {log}")
            time.sleep(0.05)
    raise SystemExit("no health")

shutil.rmtree(BASE, ignore_errors=True)
subprocess.run(["umount", "/mnt/idx"], stderr=subprocess.DEVNULL)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", "/mnt/idx"], check=True)
proc = start(f"{BASE}.1.log")
sender = call("create_agent", {"project_key": "p", "name_hint": "Sender"})["name"]
receiver = call("create_agent", {"project_key": "p", "name_hint": "Receiver"})["name"]
def filler():
    # About 20 KB of distinct words: neither compression nor the term dictionary shrinks it.
    return " ".join(os.urandom(4).hex() for _ in range(2200))
acked, failed = [], 0
for phase, count in (("fill", 600), ("late", 50)):
    for n in range(count):
        word = f"{phase}word{n}x"
        try:
            call("send_message", {"from_agent": sender, "to": [receiver],
                                  "subject": word, "body": f"{word} {filler()}"})
            acked.append(word)
        except Exception as error:
            failed += 1
            if proc.poll() is not None:
                break
    print(f"{phase}: acknowledged so far {len(acked)}, failed {failed}, "
          f"server {'running' if proc.poll() is None else 'exited ' + str(proc.returncode)}")
time.sleep(1)
status = proc.poll()
print("server after the load:", "running" if status is None else f"exited {status}")
if status is None:
    proc.terminate(); proc.wait(30)
    print("stopped with SIGTERM, exit", proc.returncode)
tail = open(f"{BASE}.1.log").read().strip().splitlines()[-3:]
print("last log lines:\n  " + "\n  ".join(l[:220] for l in tail))
subprocess.run(["mount", "-o", "remount,size=200m", "/mnt/idx"], check=True)
proc = start(f"{BASE}.2.log")
deadline = time.time() + 60
missing = list(acked)
counts = {}
while missing and time.time() < deadline:
    still = []
    for word in missing:
        hits = call("search_messages", {"query": word, "limit": 10})
        n = sum(1 for d in hits if word in d.get("subject", [""])[0])
        counts[word] = n
        if n == 0:
            still.append(word)
    missing = still
    if missing:
        time.sleep(0.5)
dup = [w for w, n in counts.items() if n > 1]
print(f"after the restart: acknowledged {len(acked)}, found {len(acked) - len(missing)}, "
      f"missing {len(missing)}, duplicated {len(dup)}")
proc.terminate(); proc.wait(30)
subprocess.run(["umount", "/mnt/idx"])
sys.exit(1 if missing or dup else 0)
