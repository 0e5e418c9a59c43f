//! Swarm stress: register a swarm, storm it with mail (fan-out, fan-in, random pairs), drain
//! and account for every message, then check search finds the storm and measure how long
//! new mail takes to become searchable (idle and under load). Non-zero exit on any loss,
//! duplicate, error or missing search hit.

use bench::accounting::Ledger;
use bench::args::Args;
use bench::client::McpClient;
use bench::histogram::Histogram;
use bench::http::Url;
use bench::report::{phase_rows, print_table, write_json};
use bench::workers::run_phase;
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

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let agents: usize = args.get("agents", 2000usize).max(2);
    let concurrency: usize = args.get("concurrency", 64usize).max(1);
    let pairs: usize = args.get("pairs", 5usize);
    let fanout: usize = args.get("fanout", 10usize).clamp(1, agents);
    let hubs: usize = args.get("hubs", 4usize).min(agents);
    let sample: usize = args.get("search-sample", 200usize);
    let probes: usize = args.get("lag-probes", 100usize);
    let mut rng = Rng(args.get("seed", 1u64));
    let run = bench::run_id();
    let project = format!("swarm-{run}");
    let names: Arc<Vec<String>> = Arc::new((0..agents).map(|i| format!("s{run}A{i}")).collect());

    // The storm, decided up front so the ledger knows every message's recipients.
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
    let storm: Arc<Vec<StormMessage>> = Arc::new(
        storm
            .into_iter()
            .enumerate()
            .map(|(i, (from, mut to))| {
                to.sort_unstable();
                to.dedup();
                StormMessage {
                    from,
                    to,
                    token: format!("tok{run}x{i}"),
                }
            })
            .collect(),
    );

    println!(
        "swarm_stress: {agents} agents, {} storm messages, {concurrency} connections, {}",
        storm.len(),
        url.authority()
    );
    let mut rows = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    // Phase 1: register everyone.
    let register = {
        let (names, project) = (Arc::clone(&names), project.clone());
        run_phase("1-register", &url, concurrency, agents, move |client, i| {
            client.create_agent(&project, &names[i])
        })
    };
    let register = match register {
        Ok(phase) => phase,
        Err(error) => {
            eprintln!("cannot run: {error}");
            return ExitCode::FAILURE;
        }
    };
    rows.extend(phase_rows(&register));

    // Visibility lag while idle.
    let probe_agent = names[0].clone();
    let idle_lag = match measure_lag(&url, &probe_agent, &run, "idle", probes, None) {
        Ok(lag) => lag,
        Err(error) => {
            eprintln!("lag probe failed: {error}");
            return ExitCode::FAILURE;
        }
    };

    // Phase 2: the storm, with lag probes running alongside.
    let storming = Arc::new(AtomicBool::new(true));
    let loaded_probe = {
        let (url, agent, run, storming) = (
            url.clone(),
            probe_agent.clone(),
            run.clone(),
            Arc::clone(&storming),
        );
        std::thread::spawn(move || measure_lag(&url, &agent, &run, "load", probes, Some(storming)))
    };
    let storm_phase = {
        let (names, storm) = (Arc::clone(&names), Arc::clone(&storm));
        run_phase(
            "2-storm",
            &url,
            concurrency,
            storm.len(),
            move |client, i| {
                let message = &storm[i];
                let to: Vec<&str> = message.to.iter().map(|r| names[*r].as_str()).collect();
                let body = format!("storm body for {}", message.token);
                client
                    .send(
                        &names[message.from],
                        &to,
                        &format!("storm {}", message.token),
                        &body,
                    )
                    .map(|id| (i, id))
            },
        )
    };
    storming.store(false, Ordering::Relaxed);
    let loaded_lag = loaded_probe
        .join()
        .unwrap_or_else(|_| Err("probe thread panicked".into()));
    let storm_phase = match storm_phase {
        Ok(phase) => phase,
        Err(error) => {
            eprintln!("storm failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    rows.extend(phase_rows(&storm_phase));

    // Phase 3: drain every inbox and account.
    let drain = {
        let names = Arc::clone(&names);
        run_phase("3-drain", &url, concurrency, agents, move |client, i| {
            // Lag probes (subject "lag...") are not storm mail and are left out of the ledger.
            let ids: Vec<String> = client
                .inbox(&names[i])?
                .iter()
                .filter(|m| !m["subject"].as_str().unwrap_or_default().starts_with("lag"))
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect();
            Ok((i, ids))
        })
    };
    let drain = match drain {
        Ok(phase) => phase,
        Err(error) => {
            eprintln!("drain failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    rows.extend(phase_rows(&drain));
    let mut ledger = Ledger::default();
    for (i, id) in &storm_phase.outputs {
        let to: Vec<&str> = storm[*i].to.iter().map(|r| names[*r].as_str()).collect();
        ledger.sent(id, &to);
    }
    for (agent, ids) in &drain.outputs {
        for id in ids {
            ledger.received(&names[*agent], id);
        }
    }
    let audit = ledger.audit();

    // Phase 4: search finds storm messages.
    let picks: Vec<usize> = (0..sample.min(storm.len()))
        .map(|_| rng.below(storm.len()))
        .collect();
    let search = {
        let (storm, picks) = (Arc::clone(&storm), Arc::new(picks));
        run_phase(
            "4-search",
            &url,
            concurrency.min(8),
            picks.len(),
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
    };
    let search = match search {
        Ok(phase) => phase,
        Err(error) => {
            eprintln!("search phase failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    rows.extend(phase_rows(&search));
    let found = search.outputs.iter().filter(|found| **found).count();

    print_table(&rows);
    println!(
        "delivery: expected {} received {} lost {} duplicated {} unexpected {}",
        audit.expected, audit.received, audit.lost, audit.duplicated, audit.unexpected
    );
    println!(
        "search: {found}/{} storm messages found",
        search.outputs.len()
    );
    let lag_json = |label: &str, lag: &Histogram| {
        println!(
            "visibility lag ({label}, {} probes): {}",
            lag.count(),
            lag.summary_ms(1)
        );
        json!({"probes": lag.count(), "p50_us": lag.percentile(50.0), "p99_us": lag.percentile(99.0), "max_us": lag.max()})
    };
    let idle_json = lag_json("idle", &idle_lag);
    let loaded_json = match &loaded_lag {
        Ok(lag) => lag_json("under storm", lag),
        Err(error) => {
            failures.push(format!("lag probe under load: {error}"));
            json!(null)
        }
    };

    let errors = register.stats.total_errors()
        + storm_phase.stats.total_errors()
        + drain.stats.total_errors()
        + search.stats.total_errors();
    for error in register
        .sample_errors
        .iter()
        .chain(&storm_phase.sample_errors)
        .chain(&drain.sample_errors)
        .chain(&search.sample_errors)
    {
        eprintln!("error: {error}");
    }
    if errors > 0 {
        failures.push(format!("{errors} tool errors"));
    }
    if !audit.is_clean() {
        failures.push(format!("delivery {audit:?}"));
    }
    if found < search.outputs.len() {
        failures.push(format!(
            "{} storm messages missing from search",
            search.outputs.len() - found
        ));
    }
    let result = json!({
        "tool": "swarm_stress",
        "config": {"url": url.authority(), "agents": agents, "storm_messages": storm.len(), "concurrency": concurrency},
        "rows": rows,
        "delivery": {"expected": audit.expected, "received": audit.received, "lost": audit.lost, "duplicated": audit.duplicated, "unexpected": audit.unexpected},
        "search": {"sampled": search.outputs.len(), "found": found},
        "visibility_lag": {"idle": idle_json, "under_load": loaded_json},
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
        ExitCode::SUCCESS
    } else {
        for failure in &failures {
            eprintln!("FAILED: {failure}");
        }
        ExitCode::FAILURE
    }
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
