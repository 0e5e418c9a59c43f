//! crash_campaign: kill -9 a real server again and again under mixed load, and check after each
//! restart that everything acknowledged is there exactly once.
//!
//! Each round starts the server on the same data directory, runs workers for a random time
//! (registrations, one- and multi-owner sends, some with an `idempotency_key`, drains,
//! non-destructive reads, file reservations), then sends SIGKILL. After the restart it checks:
//! - every acknowledged registration exists;
//! - every acknowledged delivery is in its recipient's delivery log exactly once (lost,
//!   duplicated), and no message body appears there under two ids;
//! - a keyed send whose reply the kill cut is retried with its key: it is then delivered
//!   exactly once, whether or not the first attempt had landed;
//! - every acknowledged reservation is still held;
//! - every acknowledged message is found by `search_messages` exactly once (waiting for the
//!   index, which catches up from the log).
//!
//! Usage: crash_campaign [--binary target/release/allman] [--kills 30] [--shards 2]
//!        [--workers 4] [--min-run-ms 300] [--max-run-ms 1500] [--seed 1]
//!        [--durability batch|fsync] [--send-pause-us 2000]

use bench::args::Args;
use bench::client::{CallError, McpClient};
use bench::http::Url;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HELP: &str = "crash_campaign [--binary PATH] [--kills N] [--shards N] [--workers N] \
[--min-run-ms MS] [--max-run-ms MS] [--seed N] [--durability batch|fsync] [--send-pause-us US]";

/// One project for everyone: reservations and the roster are per project.
const PROJECT: &str = "crash-campaign";

/// What the clients were told succeeded, across every round.
#[derive(Default)]
struct Acknowledged {
    agents: Vec<String>,
    /// Message id -> (its unique body token, recipients).
    messages: BTreeMap<String, (String, Vec<String>)>,
    /// Keyed sends whose reply the kill cut: (key, which is also the body token, sender,
    /// recipients).
    unanswered_keyed: Vec<(String, String, Vec<String>)>,
    /// (agent, path) -> lease id.
    leases: BTreeMap<(String, String), u64>,
}

/// Tiny deterministic generator (xorshift64*), so a campaign can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Server {
    child: Child,
    url: Url,
}

fn start(binary: &Path, dir: &Path, shards: usize, durability: &str) -> Server {
    let mut child = Command::new(binary)
        .args(["--port", "0", "--shards", &shards.to_string()])
        .args(["--durability", durability])
        .env("DATA_DIR", dir.join("data"))
        .env("INDEX_PATH", dir.join("index"))
        .env("REPO_ROOT", dir.join("repo"))
        .env("RUST_LOG", "allman=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("the server printed no ready line"));
    std::thread::spawn(move || for _ in lines {});
    let addr = line
        .strip_prefix("allman listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line: {line}"));
    let url = Url::parse(addr).expect("url");
    Server { child, url }
}

/// kill -9, also when the campaign itself stops early (a panic): no server is left behind.
impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn kill(server: Server) {
    drop(server);
}

/// The agents a worker may send to, shared: only acknowledged registrations.
type Roster = Arc<Mutex<Vec<String>>>;

struct Worker {
    id: usize,
    client: McpClient,
    rng: Rng,
    roster: Roster,
    mine: Vec<String>,
    counter: Arc<AtomicU64>,
    send_pause: Duration,
}

/// What one worker saw acknowledged in a round.
#[derive(Default)]
struct Seen {
    agents: Vec<String>,
    messages: Vec<(String, String, Vec<String>)>,
    unanswered_keyed: Vec<(String, String, Vec<String>)>,
    leases: Vec<(String, String, u64)>,
    errors: u64,
}

impl Worker {
    fn register(&mut self, seen: &mut Seen) -> Result<(), CallError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("W{}x{n}", self.id);
        self.client.create_agent(PROJECT, &name)?;
        self.roster.lock().expect("roster").push(name.clone());
        self.mine.push(name.clone());
        seen.agents.push(name);
        Ok(())
    }

    fn recipients(&mut self) -> Vec<String> {
        let roster = self.roster.lock().expect("roster");
        let count = 1 + self.rng.below(3) as usize;
        let mut chosen: Vec<String> = (0..count)
            .map(|_| roster[self.rng.below(roster.len() as u64) as usize].clone())
            .collect();
        chosen.sort();
        chosen.dedup();
        chosen
    }

    fn send(&mut self, seen: &mut Seen) -> Result<(), CallError> {
        let from = self.mine[self.rng.below(self.mine.len() as u64) as usize].clone();
        let to = self.recipients();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let token = format!("tok{}x{n}", self.id);
        let keyed = self.rng.below(4) == 0;
        let mut arguments = json!({"from_agent": from, "to": to, "subject": "crash", "body": format!("body {token} end")});
        if keyed {
            arguments["idempotency_key"] = json!(token);
        }
        match self.client.call("send_message", arguments) {
            Ok(sent) => {
                let id = sent["id"].as_str().unwrap_or_default().to_string();
                seen.messages.push((id, token, to));
                Ok(())
            }
            Err(error) => {
                if keyed && is_cut(&error) {
                    seen.unanswered_keyed.push((token, from, to));
                }
                Err(error)
            }
        }
    }

    fn reserve(&mut self, seen: &mut Seen) -> Result<(), CallError> {
        let agent = self.mine[self.rng.below(self.mine.len() as u64) as usize].clone();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = format!("w{}/f{n}.rs", self.id);
        let result = self.client.call(
            "file_reservation_paths",
            json!({"agent_name": agent, "paths": [path], "ttl_seconds": 86_400}),
        )?;
        if let Some(id) = result["granted"][0]["id"].as_u64() {
            seen.leases.push((agent, path, id));
        }
        Ok(())
    }

    fn run(mut self, stop: Arc<AtomicBool>) -> Seen {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let step = if self.mine.is_empty() {
                0
            } else {
                self.rng.below(100)
            };
            let result = match step {
                0..=4 => self.register(&mut seen),
                5..=74 => self.send(&mut seen),
                75..=84 => {
                    let agent = self.mine[self.rng.below(self.mine.len() as u64) as usize].clone();
                    self.client.inbox(&agent).map(|_| ())
                }
                85..=94 => {
                    let agent = self.mine[self.rng.below(self.mine.len() as u64) as usize].clone();
                    let arguments = json!({"agent_name": agent, "limit": 20});
                    self.client.call("fetch_inbox", arguments).map(|_| ())
                }
                _ => self.reserve(&mut seen),
            };
            match result {
                Ok(()) => std::thread::sleep(self.send_pause),
                Err(error) if is_cut(&error) => break,
                Err(_) => seen.errors += 1,
            }
        }
        seen
    }
}

/// The server went away mid-call (the kill), as opposed to a refusal.
fn is_cut(error: &CallError) -> bool {
    matches!(error, CallError::Io(_) | CallError::Http { .. })
}

fn main() {
    let args = Args::from_env(HELP);
    let binary = PathBuf::from(args.get("binary", "target/release/allman".to_string()));
    let kills: usize = args.get("kills", 30);
    let shards: usize = args.get("shards", 2);
    let workers: usize = args.get("workers", 4);
    let min_run_ms: u64 = args.get("min-run-ms", 300);
    let max_run_ms: u64 = args.get("max-run-ms", 1500);
    let durability: String = args.get("durability", "batch".to_string());
    let send_pause = Duration::from_micros(args.get("send-pause-us", 2000));
    let mut rng = Rng(args.get("seed", 1u64).max(1));
    let dir = std::env::temp_dir().join(format!("allman-crash-campaign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut acknowledged = Acknowledged::default();
    let counter = Arc::new(AtomicU64::new(0));
    let roster: Roster = Arc::default();
    let mut totals = Totals::default();
    let started = Instant::now();
    for round in 0..=kills {
        let server = start(&binary, &dir, shards, &durability);
        let mut client = McpClient::connect(&server.url).expect("connects");
        check(&mut client, &mut acknowledged, &mut totals, round);
        if round == kills {
            kill(server);
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..workers)
            .map(|id| {
                let worker = Worker {
                    id,
                    client: McpClient::connect(&server.url).expect("connects"),
                    rng: Rng(rng.next() | 1),
                    roster: Arc::clone(&roster),
                    mine: Vec::new(),
                    counter: Arc::clone(&counter),
                    send_pause,
                };
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || worker.run(stop))
            })
            .collect();
        let run_for = min_run_ms + rng.below(max_run_ms.saturating_sub(min_run_ms) + 1);
        std::thread::sleep(Duration::from_millis(run_for));
        kill(server);
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            let seen = handle.join().expect("worker");
            totals.refused += seen.errors;
            acknowledged.agents.extend(seen.agents);
            for (id, token, to) in seen.messages {
                acknowledged.messages.insert(id, (token, to));
            }
            acknowledged.unanswered_keyed.extend(seen.unanswered_keyed);
            for (agent, path, id) in seen.leases {
                acknowledged.leases.insert((agent, path), id);
            }
        }
        totals.kills += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "crash_campaign: {} kills in {:.0} s ({} shards, {durability}, {workers} workers)",
        totals.kills,
        started.elapsed().as_secs_f64(),
        shards
    );
    println!(
        "acknowledged: {} registrations, {} messages ({} deliveries), {} reservations, {} keyed sends retried after a cut",
        acknowledged.agents.len(),
        acknowledged.messages.len(),
        totals.deliveries,
        acknowledged.leases.len(),
        totals.retried_keyed
    );
    println!(
        "lost: registrations {}, deliveries {}, reservations {}; duplicated deliveries {}; search misses {}, search duplicates {}; refusals {}",
        totals.lost_agents,
        totals.lost_deliveries,
        totals.lost_leases,
        totals.duplicated,
        totals.search_missing,
        totals.search_duplicated,
        totals.refused
    );
    let failed = totals.lost_agents
        + totals.lost_deliveries
        + totals.lost_leases
        + totals.duplicated
        + totals.search_missing
        + totals.search_duplicated;
    if failed > 0 {
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Totals {
    kills: usize,
    deliveries: u64,
    retried_keyed: u64,
    lost_agents: u64,
    lost_deliveries: u64,
    lost_leases: u64,
    duplicated: u64,
    search_missing: u64,
    search_duplicated: u64,
    refused: u64,
}

/// The whole delivery log of `agent`: (id, body) of every retained delivery.
fn delivery_log(client: &mut McpClient, agent: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let page = client
            .call(
                "fetch_inbox",
                json!({"agent_name": agent, "after": after, "limit": 200, "include_bodies": true}),
            )
            .unwrap_or_else(|e| panic!("fetch_inbox {agent}: {e:?}"));
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        for m in &messages {
            all.push((
                m["id"].as_str().unwrap_or_default().to_string(),
                m["body"].as_str().unwrap_or_default().to_string(),
            ));
        }
        if page["has_more"] != json!(true) || messages.is_empty() {
            return all;
        }
        after = page["next_after"].as_u64().unwrap_or(after);
    }
}

fn check(
    client: &mut McpClient,
    acknowledged: &mut Acknowledged,
    totals: &mut Totals,
    round: usize,
) {
    // Keyed sends the kill cut: retried with their key, then held like any acknowledged send.
    for (key, from, to) in std::mem::take(&mut acknowledged.unanswered_keyed) {
        let arguments = json!({"from_agent": from, "to": to, "subject": "crash", "body": format!("body {key} end"), "idempotency_key": key});
        match client.call("send_message", arguments) {
            Ok(sent) => {
                let id = sent["id"].as_str().unwrap_or_default().to_string();
                acknowledged.messages.insert(id, (key, to));
                totals.retried_keyed += 1;
            }
            // Only if an acknowledged registration was lost (counted below).
            Err(error) => eprintln!("round {round}: the retry of {key} failed: {error:?}"),
        }
    }
    let mut logs: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for agent in &acknowledged.agents {
        let exists = client.call("fetch_inbox", json!({"agent_name": agent, "limit": 1}));
        if exists.is_err() {
            totals.lost_agents += 1;
            eprintln!("round {round}: registration of {agent} lost");
            continue;
        }
        logs.insert(agent.clone(), delivery_log(client, agent));
    }
    let mut deliveries = 0u64;
    for (id, (token, to)) in &acknowledged.messages {
        for recipient in to {
            deliveries += 1;
            let log = logs.get(recipient).map(Vec::as_slice).unwrap_or_default();
            let by_id = log.iter().filter(|(i, _)| i == id).count();
            let needle = format!(" {token} ");
            let by_body = log.iter().filter(|(_, b)| b.contains(&needle)).count();
            if by_id == 0 {
                totals.lost_deliveries += 1;
                eprintln!("round {round}: {id} ({token}) lost for {recipient}");
            }
            if by_id > 1 || by_body > 1 {
                totals.duplicated += 1;
                eprintln!("round {round}: {token} delivered {by_body} times to {recipient}");
            }
        }
    }
    totals.deliveries = deliveries;
    // Listed per holder: a project's list stops at 1000.
    let holders: HashSet<&String> = acknowledged.leases.keys().map(|(agent, _)| agent).collect();
    let mut held: HashSet<u64> = HashSet::new();
    for agent in holders {
        let arguments = json!({"project_key": PROJECT, "agent_name": agent, "limit": 1000});
        let listed = client
            .call("list_file_reservations", arguments)
            .map(|r| r["reservations"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        held.extend(listed.iter().filter_map(|l| l["id"].as_u64()));
    }
    for ((agent, path), id) in &acknowledged.leases {
        if !held.contains(id) {
            totals.lost_leases += 1;
            eprintln!("round {round}: reservation {id} of {agent} on {path} lost");
        }
    }
    check_search(client, acknowledged, totals, round);
}

/// Every acknowledged message is found by search exactly once, once the index has caught up.
fn check_search(
    client: &mut McpClient,
    acknowledged: &Acknowledged,
    totals: &mut Totals,
    round: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<&String> = acknowledged.messages.values().map(|(t, _)| t).collect();
    loop {
        let mut missing = Vec::new();
        for token in pending {
            let hits = client.search(token, 5).unwrap_or_default();
            match hits.len() {
                1 => {}
                0 => missing.push(token),
                n => {
                    totals.search_duplicated += 1;
                    eprintln!("round {round}: search finds {token} {n} times");
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            totals.search_missing += missing.len() as u64;
            eprintln!(
                "round {round}: search never found {} messages, e.g. {}",
                missing.len(),
                missing[0]
            );
            return;
        }
        pending = missing;
        std::thread::sleep(Duration::from_millis(200));
    }
}
