//! Sustained mixed load: every connection sends, drains and searches for mail it sent about
//! a second earlier, for a fixed time split into windows. Shows whether throughput holds as
//! the index grows (each window against the first), how fresh search is under load, and
//! still accounts for every message (lost = duplicated = 0). Non-zero exit on any loss,
//! duplicate or error.

use bench::accounting::Ledger;
use bench::args::Args;
use bench::client::{CallError, McpClient, Stats};
use bench::http::Url;
use bench::report::{print_table, rows, write_json};
use bench::server::{CpuSplit, Snapshot};
use bench::Rng;
use serde_json::json;
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELP: &str = "mixed_load - sends, drains and searches for second-old mail, sustained

USAGE:
    cargo run --release --bin mixed_load -- [OPTIONS]

Each connection repeats: 8 send_message (to one of the agents it owns), 1 get_inbox (of its
next own agent), 1 search_messages for the newest message it sent at least --search-age-ms
earlier (a word unique to that message). At the end every inbox is drained and every message
accounted for.

OPTIONS:
    --url <URL>              server to load (default http://127.0.0.1:8000)
    --agents <N>             agents (default 1000)
    --concurrency <N>        connections, one thread each (default 16)
    --seconds <N>            length of the run (default 60)
    --window-seconds <N>     report throughput per window of this length (default 30)
    --search-age-ms <MS>     age of the mail each search looks for (default 1000)
    --seed <N>               seed for senders and recipients (default 1)
    --json <FILE>            also write the results as JSON
    -h, --help               print this help
";

/// Sends per cycle; each cycle also drains one inbox and runs one search.
const SENDS_PER_CYCLE: usize = 8;

struct Plan {
    url: Url,
    run: String,
    project: String,
    names: Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
    window: Duration,
    search_age: Duration,
    seed: u64,
}

/// What one connection did, per window.
#[derive(Default)]
struct WorkerResult {
    windows: Vec<Window>,
    /// (recipient index, message id) of every message it sent.
    sent: Vec<(usize, String)>,
    /// (agent index, message ids) of every drain it made.
    drained: Vec<(usize, Vec<String>)>,
    sample_errors: Vec<String>,
}

#[derive(Default, Clone)]
struct Window {
    stats: Stats,
    searches: u64,
    found: u64,
}

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let agents: usize = args.get("agents", 1000usize).max(1);
    let concurrency: usize = args.get("concurrency", 16usize).clamp(1, agents);
    let run = bench::run_id();
    let plan = Plan {
        url: args.url(),
        project: format!("mixed-{run}"),
        names: Arc::new((0..agents).map(|i| format!("m{run}A{i}")).collect()),
        run,
        concurrency,
        duration: Duration::from_secs(args.get("seconds", 60u64).max(1)),
        window: Duration::from_secs(args.get("window-seconds", 30u64).max(1)),
        search_age: Duration::from_millis(args.get("search-age-ms", 1000u64)),
        seed: args.get("seed", 1u64),
    };
    println!(
        "mixed_load: {agents} agents, {concurrency} connections, {} s in windows of {} s, {}",
        plan.duration.as_secs(),
        plan.window.as_secs(),
        plan.url.authority()
    );
    if let Err(error) = register(&plan) {
        eprintln!("cannot register the agents: {error}");
        return ExitCode::FAILURE;
    }
    let windows = plan.duration.as_secs().div_ceil(plan.window.as_secs()) as usize;
    let (results, cpu) = load(&plan, windows);
    let final_drain = match drain_all(&plan) {
        Ok(drained) => drained,
        Err(error) => {
            eprintln!("final drain failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    report(&args, &plan, results, final_drain, cpu)
}

fn register(plan: &Plan) -> Result<(), CallError> {
    let mut client = McpClient::connect(&plan.url)?;
    for name in plan.names.iter() {
        client.create_agent(&plan.project, name)?;
    }
    Ok(())
}

/// Runs the workers; the main thread scrapes the server at each window's end for its CPU.
fn load(plan: &Plan, windows: usize) -> (Vec<WorkerResult>, Vec<(Snapshot, CpuSplit)>) {
    let started = Instant::now();
    let handles: Vec<_> = (0..plan.concurrency)
        .map(|worker| {
            let worker_plan = WorkerPlan {
                url: plan.url.clone(),
                names: Arc::clone(&plan.names),
                token_prefix: format!("m{}w{worker}x", plan.run),
                worker,
                concurrency: plan.concurrency,
                started,
                duration: plan.duration,
                window: plan.window,
                windows,
                search_age: plan.search_age,
                seed: plan.seed.wrapping_mul(1000).wrapping_add(worker as u64),
            };
            std::thread::spawn(move || worker_plan.run())
        })
        .collect();
    let mut cpu = Vec::new();
    let mut before = Snapshot::take(&plan.url);
    for window in 1..=windows {
        let end = started + (plan.window * window as u32).min(plan.duration);
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        let after = Snapshot::take(&plan.url);
        cpu.push((before.clone(), before.cpu_between(&after)));
        before = after;
    }
    let results = handles
        .into_iter()
        .map(|handle| {
            handle.join().unwrap_or_else(|_| WorkerResult {
                sample_errors: vec!["a worker thread panicked".into()],
                ..WorkerResult::default()
            })
        })
        .collect();
    (results, cpu)
}

struct WorkerPlan {
    url: Url,
    names: Arc<Vec<String>>,
    token_prefix: String,
    worker: usize,
    concurrency: usize,
    started: Instant,
    duration: Duration,
    window: Duration,
    windows: usize,
    search_age: Duration,
    seed: u64,
}

impl WorkerPlan {
    /// The agents this connection sends to and drains: every `concurrency`-th, so no two
    /// connections drain the same inbox and every drained id is accounted for.
    fn own_agents(&self) -> Vec<usize> {
        (self.worker..self.names.len())
            .step_by(self.concurrency)
            .collect()
    }

    fn run(self) -> WorkerResult {
        let mut result = WorkerResult {
            windows: vec![Window::default(); self.windows],
            ..WorkerResult::default()
        };
        let mut client = match McpClient::connect(&self.url) {
            Ok(client) => client,
            Err(error) => {
                result.sample_errors.push(error.to_string());
                return result;
            }
        };
        let own = self.own_agents();
        let mut rng = Rng(self.seed);
        // Messages sent and not yet looked for: (sent at, sequence number).
        let mut unsearched: VecDeque<(Instant, u64)> = VecDeque::new();
        let (mut sequence, mut next_drain, mut window) = (0u64, 0usize, 0usize);
        while self.started.elapsed() < self.duration {
            let now_in = ((self.started.elapsed().as_nanos() / self.window.as_nanos()) as usize)
                .min(self.windows - 1);
            if now_in != window {
                // The client's latency stats so far belong to the window that just ended.
                result.windows[window].stats = std::mem::take(&mut client.stats);
                window = now_in;
            }
            for _ in 0..SENDS_PER_CYCLE {
                let to = own[rng.below(own.len())];
                let from = &self.names[rng.below(self.names.len())];
                let subject = format!("{}{sequence} mixed", self.token_prefix);
                match client.send(from, &[&self.names[to]], &subject, "sustained mixed load") {
                    Ok(id) => {
                        result.sent.push((to, id));
                        unsearched.push_back((Instant::now(), sequence));
                    }
                    Err(error) => note(&mut result.sample_errors, error),
                }
                sequence += 1;
            }
            let agent = own[next_drain % own.len()];
            next_drain += 1;
            match client.inbox_ids(&self.names[agent]) {
                Ok(ids) => result.drained.push((agent, ids)),
                Err(error) => note(&mut result.sample_errors, error),
            }
            self.search_one(&mut client, &mut unsearched, &mut result.windows[window]);
        }
        result.windows[window].stats = client.stats;
        result
    }

    /// Searches for the newest message sent at least `search_age` ago (older ones are
    /// skipped, so each search asks for mail of about that age).
    fn search_one(
        &self,
        client: &mut McpClient,
        unsearched: &mut VecDeque<(Instant, u64)>,
        window: &mut Window,
    ) {
        let mut candidate = None;
        while let Some(&(sent_at, sequence)) = unsearched.front() {
            if sent_at.elapsed() < self.search_age {
                break;
            }
            candidate = Some(sequence);
            unsearched.pop_front();
        }
        let Some(sequence) = candidate else {
            return;
        };
        window.searches += 1;
        let token = format!("{}{sequence}", self.token_prefix);
        if let Ok(hits) = client.search(&token, 1) {
            if !hits.is_empty() {
                window.found += 1;
            }
        }
    }
}

fn note(errors: &mut Vec<String>, error: CallError) {
    if errors.len() < 5 {
        errors.push(error.to_string());
    }
}

/// Drains every inbox until empty, for the accounting.
fn drain_all(plan: &Plan) -> Result<Vec<(usize, Vec<String>)>, CallError> {
    let mut client = McpClient::connect(&plan.url)?;
    let mut drained = Vec::new();
    for (agent, name) in plan.names.iter().enumerate() {
        loop {
            let ids = client.inbox_ids(name)?;
            if ids.is_empty() {
                break;
            }
            drained.push((agent, ids));
        }
    }
    Ok(drained)
}

fn report(
    args: &Args,
    plan: &Plan,
    results: Vec<WorkerResult>,
    final_drain: Vec<(usize, Vec<String>)>,
    cpu: Vec<(Snapshot, CpuSplit)>,
) -> ExitCode {
    let windows = results.first().map_or(0, |r| r.windows.len());
    let mut merged = vec![Window::default(); windows];
    let mut ledger = Ledger::default();
    let mut errors = Vec::new();
    for result in &results {
        for (total, window) in merged.iter_mut().zip(&result.windows) {
            total.stats.merge(&window.stats);
            total.searches += window.searches;
            total.found += window.found;
        }
        for (to, id) in &result.sent {
            ledger.sent(id, &[plan.names[*to].as_str()]);
        }
        errors.extend(result.sample_errors.iter().cloned());
    }
    let drains = results.iter().flat_map(|r| &r.drained).chain(&final_drain);
    for (agent, ids) in drains {
        for id in ids {
            ledger.received(&plan.names[*agent], id);
        }
    }
    let audit = ledger.audit();
    let mut table = Vec::new();
    let mut per_window = Vec::new();
    for (index, window) in merged.iter().enumerate() {
        let length = plan
            .window
            .min(plan.duration.saturating_sub(plan.window * index as u32));
        table.extend(rows(
            &format!("window-{}", index + 1),
            length,
            &window.stats,
        ));
        let calls: u64 = window.stats.latency.values().map(|h| h.count()).sum();
        let calls_per_s = calls as f64 / length.as_secs_f64();
        let found_pct = 100.0 * window.found as f64 / window.searches.max(1) as f64;
        per_window.push(json!({"window": index + 1, "calls_per_s": calls_per_s.round(), "searches": window.searches, "found": window.found, "found_pct": found_pct, "cpu": cpu.get(index).map(|(_, split)| split.to_json())}));
    }
    print_table(&table);
    if let Some((first, _)) = cpu.first() {
        println!("server layout: {}", first.describe_layout());
    }
    for (index, row) in per_window.iter().enumerate() {
        println!(
            "window {}: {} calls/s; search found {}/{} ({:.2} %) of {} ms old mail; cpu {}",
            index + 1,
            row["calls_per_s"],
            row["found"],
            row["searches"],
            row["found_pct"].as_f64().unwrap_or(0.0),
            plan.search_age.as_millis(),
            cpu.get(index)
                .map_or("unknown".into(), |(_, split)| split.describe())
        );
    }
    let rate = |i: usize| per_window[i]["calls_per_s"].as_f64().unwrap_or(0.0);
    let held = (windows >= 2).then(|| 100.0 * rate(windows - 1) / rate(0).max(1.0));
    if let Some(held) = held {
        println!("last window against the first: {held:.1} %");
    }
    println!(
        "delivery: expected {} received {} lost {} duplicated {} unexpected {}",
        audit.expected, audit.received, audit.lost, audit.duplicated, audit.unexpected
    );
    for error in &errors {
        eprintln!("error: {error}");
    }
    let result = json!({
        "tool": "mixed_load",
        "config": {"url": plan.url.authority(), "agents": plan.names.len(), "concurrency": plan.concurrency, "seconds": plan.duration.as_secs(), "window_seconds": plan.window.as_secs(), "search_age_ms": plan.search_age.as_millis() as u64},
        "rows": table,
        "windows": per_window,
        "last_vs_first_pct": held,
        "delivery": {"expected": audit.expected, "received": audit.received, "lost": audit.lost, "duplicated": audit.duplicated, "unexpected": audit.unexpected},
        "errors": errors.len(),
    });
    if let Some(path) = args.optional("json") {
        if let Err(error) = write_json(&path, &result) {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    let tool_errors: u64 = merged.iter().map(|w| w.stats.total_errors()).sum();
    if tool_errors > 0 || !errors.is_empty() || !audit.is_clean() {
        eprintln!("FAILED: {tool_errors} tool errors, delivery {audit:?}");
        return ExitCode::FAILURE;
    }
    println!("PASS: lost 0, duplicated 0, errors 0");
    ExitCode::SUCCESS
}
