//! Swarm stress: register a swarm, storm it with mail (fan-out, fan-in, random pairs), drain
//! and account for every message, then check search finds the storm and measure how long
//! new mail takes to become searchable (idle and under load). Non-zero exit on any loss,
//! duplicate, error or missing search hit.

use bench::accounting::Ledger;
use bench::args::Args;
use bench::client::CallError;
use bench::client::McpClient;
use bench::histogram::Histogram;
use bench::http::Url;
use bench::report::{phase_rows, print_table, write_json};
use bench::server::{CpuSplit, Snapshot};
use bench::workers::{run_phase, PhaseResult};
use bench::Rng;
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELP: &str =
    "swarm_stress - a swarm of agents storms a live allman; every message is accounted for

USAGE:
    cargo run --release --bin swarm_stress -- [OPTIONS]

OPTIONS:
    --url <URL>              server to load (default http://127.0.0.1:8000)
    --agents <N>             swarm size (default 2000)
    --concurrency <N>        connections, one thread each (default 64)
    --pairs <N>              random-pair messages per agent (default 5)
    --fanout <N>             recipients per fan-out message (default 10)
    --hubs <N>               fan-in targets; every agent writes to each (default 4)
    --search-sample <N>      storm messages checked in search (default 200)
    --lag-probes <N>         visibility-lag probes, idle and again under load (default 100)
    --seed <N>               seed for the storm's shape (default 1)
    --json <FILE>            also write the results as JSON
    -h, --help               print this help
";

/// How long search may take to show a message before it counts as missing.
const SEARCH_DEADLINE: Duration = Duration::from_secs(10);

struct StormMessage {
    from: usize,
    to: Vec<usize>,
    token: String,
}

/// The swarm and its storm, decided up front so the ledger knows every message's recipients.
struct Swarm {
    url: Url,
    concurrency: usize,
    run: String,
    project: String,
    names: Arc<Vec<String>>,
    storm: Arc<Vec<StormMessage>>,
}

/// What the phases measured, for the report.
struct Results {
    rows: Vec<serde_json::Value>,
    storm_ids: Vec<(usize, String)>,
    drained: Vec<(usize, Vec<String>)>,
    search_found: Vec<bool>,
    idle_lag: Histogram,
    loaded_lag: Result<Histogram, String>,
    /// Before the storm; describes the layout too.
    before_storm: Snapshot,
    storm_cpu: CpuSplit,
    errors: u64,
    sample_errors: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let mut rng = Rng(args.get("seed", 1u64));
    let swarm = plan(&args, &mut rng);
    println!(
        "swarm_stress: {} agents, {} storm messages, {} connections, {}",
        swarm.names.len(),
        swarm.storm.len(),
        swarm.concurrency,
        swarm.url.authority()
    );
    let sample: usize = args.get("search-sample", 200usize);
    let probes: usize = args.get("lag-probes", 100usize);
    let picks: Vec<usize> = (0..sample.min(swarm.storm.len()))
        .map(|_| rng.below(swarm.storm.len()))
        .collect();
    match run_phases(&swarm, probes, picks) {
        Ok(results) => report(&args, &swarm, results),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// The swarm's names and the storm: a fan-out from every tenth agent, every agent to each
/// hub, and random pairs.
fn plan(args: &Args, rng: &mut Rng) -> Swarm {
    let agents: usize = args.get("agents", 2000usize).max(2);
    let pairs: usize = args.get("pairs", 5usize);
    let fanout: usize = args.get("fanout", 10usize).clamp(1, agents);
    let hubs: usize = args.get("hubs", 4usize).min(agents);
    let run = bench::run_id();
    let mut storm = Vec::new();
    for from in (0..agents).step_by(10) {
        let to: Vec<usize> = (0..fanout).map(|_| rng.below(agents)).collect();
        storm.push((from, to));
    }
    for from in 0..agents {
        for hub in 0..hubs {
            storm.push((from, vec![hub]));
        }
        for _ in 0..pairs {
            storm.push((from, vec![rng.below(agents)]));
        }
    }
    let storm = storm
        .into_iter()
        .enumerate()
        .map(|(i, (from, mut to))| {
            to.sort_unstable();
            to.dedup();
            let token = format!("tok{run}x{i}");
            StormMessage { from, to, token }
        })
        .collect();
    Swarm {
        url: args.url(),
        concurrency: args.get("concurrency", 64usize).max(1),
        project: format!("swarm-{run}"),
        names: Arc::new((0..agents).map(|i| format!("s{run}A{i}")).collect()),
        storm: Arc::new(storm),
        run,
    }
}

/// Register, measure idle lag, storm (with lag probes alongside), drain, search.
fn run_phases(swarm: &Swarm, probes: usize, picks: Vec<usize>) -> Result<Results, String> {
    let (url, concurrency) = (&swarm.url, swarm.concurrency);
    let agents = swarm.names.len();
    let register = {
        let (names, project) = (Arc::clone(&swarm.names), swarm.project.clone());
        run_phase("1-register", url, concurrency, agents, move |client, i| {
            client.create_agent(&project, &names[i])
        })
    }
    .map_err(|e| format!("cannot run: {e}"))?;
    let probe_agent = swarm.names[0].clone();
    let idle_lag = measure_lag(url, &probe_agent, &swarm.run, "idle", probes, None)
        .map_err(|e| format!("lag probe failed: {e}"))?;
    let storming = Arc::new(AtomicBool::new(true));
    let loaded_probe = {
        let (url, run, storming) = (url.clone(), swarm.run.clone(), Arc::clone(&storming));
        std::thread::spawn(move || {
            measure_lag(&url, &probe_agent, &run, "load", probes, Some(storming))
        })
    };
    let before_storm = Snapshot::take(url);
    let storm = storm_phase(swarm);
    let storm_cpu = before_storm.cpu_between(&Snapshot::take(url));
    storming.store(false, Ordering::Relaxed);
    let loaded_lag = loaded_probe
        .join()
        .unwrap_or_else(|_| Err("probe thread panicked".into()));
    let storm = storm.map_err(|e| format!("storm failed: {e}"))?;
    let drain = drain_phase(swarm).map_err(|e| format!("drain failed: {e}"))?;
    let search = search_phase(swarm, picks).map_err(|e| format!("search phase failed: {e}"))?;
    let mut rows = phase_rows(&register);
    rows.extend(phase_rows(&storm));
    rows.extend(phase_rows(&drain));
    rows.extend(phase_rows(&search));
    let errors = register.stats.total_errors()
        + storm.stats.total_errors()
        + drain.stats.total_errors()
        + search.stats.total_errors();
    let sample_errors = [
        register.sample_errors,
        storm.sample_errors.clone(),
        drain.sample_errors.clone(),
        search.sample_errors.clone(),
    ]
    .concat();
    Ok(Results {
        rows,
        storm_ids: storm.outputs,
        drained: drain.outputs,
        search_found: search.outputs,
        idle_lag,
        loaded_lag,
        before_storm,
        storm_cpu,
        errors,
        sample_errors,
    })
}

fn storm_phase(swarm: &Swarm) -> Result<PhaseResult<(usize, String)>, CallError> {
    let (names, storm) = (Arc::clone(&swarm.names), Arc::clone(&swarm.storm));
    let jobs = storm.len();
    run_phase(
        "2-storm",
        &swarm.url,
        swarm.concurrency,
        jobs,
        move |client, i| {
            let message = &storm[i];
            let to: Vec<&str> = message.to.iter().map(|r| names[*r].as_str()).collect();
            let subject = format!("storm {}", message.token);
            let body = format!("storm body for {}", message.token);
            client
                .send(&names[message.from], &to, &subject, &body)
                .map(|id| (i, id))
        },
    )
}

fn drain_phase(swarm: &Swarm) -> Result<PhaseResult<(usize, Vec<String>)>, CallError> {
    let names = Arc::clone(&swarm.names);
    let agents = names.len();
    run_phase(
        "3-drain",
        &swarm.url,
        swarm.concurrency,
        agents,
        move |client, i| {
            // Lag probes (subject "lag...") are not storm mail and are left out of the ledger.
            let ids: Vec<String> = client
                .inbox(&names[i])?
                .iter()
                .filter(|m| !m["subject"].as_str().unwrap_or_default().starts_with("lag"))
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect();
            Ok((i, ids))
        },
    )
}

/// Each picked storm message must show up in search within `SEARCH_DEADLINE`.
fn search_phase(swarm: &Swarm, picks: Vec<usize>) -> Result<PhaseResult<bool>, CallError> {
    let (storm, picks) = (Arc::clone(&swarm.storm), Arc::new(picks));
    let jobs = picks.len();
    let concurrency = swarm.concurrency.min(8);
    run_phase(
        "4-search",
        &swarm.url,
        concurrency,
        jobs,
        move |client, i| {
            let token = &storm[picks[i]].token;
            let deadline = Instant::now() + SEARCH_DEADLINE;
            loop {
                if !client.search(token, 10)?.is_empty() {
                    return Ok(true);
                }
                if Instant::now() > deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        },
    )
}

/// Prints the table, delivery accounting, search and lag; writes `--json`; the exit status.
fn report(args: &Args, swarm: &Swarm, results: Results) -> ExitCode {
    let mut ledger = Ledger::default();
    for (i, id) in &results.storm_ids {
        let to: Vec<&str> = swarm.storm[*i]
            .to
            .iter()
            .map(|r| swarm.names[*r].as_str())
            .collect();
        ledger.sent(id, &to);
    }
    for (agent, ids) in &results.drained {
        for id in ids {
            ledger.received(&swarm.names[*agent], id);
        }
    }
    let audit = ledger.audit();
    let found = results.search_found.iter().filter(|found| **found).count();
    let sampled = results.search_found.len();
    print_table(&results.rows);
    let layout = results.before_storm.describe_layout();
    println!("server layout: {layout}");
    println!("cpu storm: {}", results.storm_cpu.describe());
    println!(
        "delivery: expected {} received {} lost {} duplicated {} unexpected {}",
        audit.expected, audit.received, audit.lost, audit.duplicated, audit.unexpected
    );
    println!("search: {found}/{sampled} storm messages found");
    let lag_json = |label: &str, lag: &Histogram| {
        println!(
            "visibility lag ({label}, {} probes): {}",
            lag.count(),
            lag.summary_ms(1)
        );
        json!({"probes": lag.count(), "p50_us": lag.percentile(50.0), "p99_us": lag.percentile(99.0), "max_us": lag.max()})
    };
    let mut failures: Vec<String> = Vec::new();
    let idle_json = lag_json("idle", &results.idle_lag);
    let loaded_json = match &results.loaded_lag {
        Ok(lag) => lag_json("under storm", lag),
        Err(error) => {
            failures.push(format!("lag probe under load: {error}"));
            json!(null)
        }
    };
    for error in &results.sample_errors {
        eprintln!("error: {error}");
    }
    if results.errors > 0 {
        failures.push(format!("{} tool errors", results.errors));
    }
    if !audit.is_clean() {
        failures.push(format!("delivery {audit:?}"));
    }
    if found < sampled {
        failures.push(format!(
            "{} storm messages missing from search",
            sampled - found
        ));
    }
    let result = json!({
        "tool": "swarm_stress",
        "config": {"url": swarm.url.authority(), "agents": swarm.names.len(), "storm_messages": swarm.storm.len(), "concurrency": swarm.concurrency},
        "rows": results.rows,
        "delivery": {"expected": audit.expected, "received": audit.received, "lost": audit.lost, "duplicated": audit.duplicated, "unexpected": audit.unexpected},
        "search": {"sampled": sampled, "found": found},
        "visibility_lag": {"idle": idle_json, "under_load": loaded_json},
        "layout": layout,
        "cpu": {"storm": results.storm_cpu.to_json()},
        "failures": failures,
    });
    if let Some(path) = args.optional("json") {
        if let Err(error) = write_json(&path, &result) {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    if failures.is_empty() {
        println!("PASS: lost 0, duplicated 0, errors 0");
        return ExitCode::SUCCESS;
    }
    for failure in &failures {
        eprintln!("FAILED: {failure}");
    }
    ExitCode::FAILURE
}

/// Sends `probes` messages with unique tokens (probe agent to itself) and measures, for each,
/// the time from the `send_message` reply until search first returns it. With `while_flag`,
/// stops early once the flag drops (the storm ended).
fn measure_lag(
    url: &Url,
    agent: &str,
    run: &str,
    label: &str,
    probes: usize,
    while_flag: Option<Arc<AtomicBool>>,
) -> Result<Histogram, String> {
    let mut client = McpClient::connect(url).map_err(|e| e.to_string())?;
    let mut lag = Histogram::default();
    for n in 0..probes {
        if while_flag
            .as_ref()
            .is_some_and(|flag| !flag.load(Ordering::Relaxed))
        {
            break;
        }
        let token = format!("lag{run}{label}{n}");
        client
            .send(agent, &[agent], &token, "visibility probe")
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        loop {
            if !client
                .search(&token, 1)
                .map_err(|e| e.to_string())?
                .is_empty()
            {
                lag.record(sent.elapsed().as_micros() as u64);
                break;
            }
            if sent.elapsed() > SEARCH_DEADLINE {
                return Err(format!(
                    "probe {token} not searchable after {SEARCH_DEADLINE:?}"
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    Ok(lag)
}
