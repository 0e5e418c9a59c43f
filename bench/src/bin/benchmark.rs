//! The seed's benchmark: register agents, send messages between them, drain every inbox and
//! check that each message arrived exactly once. Prints throughput and latency per tool.

use bench::accounting::Ledger;
use bench::args::Args;
use bench::client::{use_era, Era};
use bench::report::{phase_rows, print_table, regressions, write_json};
use bench::server::Snapshot;
use bench::workers::run_phase;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

const HELP: &str =
    "benchmark - load a live allman with the seed's workload and report per-tool latency

USAGE:
    cargo run --release --bin benchmark -- [OPTIONS]

OPTIONS:
    --url <URL>              server to load (default http://127.0.0.1:8000)
    --agents <N>             agents to register (default 100)
    --messages <N>           messages to send, each to one agent (default 1000)
    --concurrency <N>        connections, one thread each (default 16)
    --body-bytes <N>         length of each message body (default 19: \"the quick brown fox\")
    --era <2025|2026>        MCP era: 2025-11-25 (initialize first, the default) or 2026-07-28
                             (stateless: _meta and headers on every request, no handshake)
    --keep-queued <BOOL>     true: skip the drain phase and leave every message queued (to
                             measure a restart's recovery, or the log's disk use per message)
    --json <FILE>            also write the results as JSON
    --baseline <FILE>        compare with an earlier --json result; exit 3 on a regression
    --threshold-pct <PCT>    throughput drop or p99 rise that counts as a regression (default 10)
    -h, --help               print this help
";

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let agents: usize = args.get("agents", 100usize).max(1);
    let messages: usize = args.get("messages", 1000usize);
    let concurrency: usize = args.get("concurrency", 16usize).max(1);
    let body: Arc<String> = Arc::new(match args.optional("body-bytes") {
        None => "the quick brown fox".into(),
        Some(_) => {
            let bytes: usize = args.get("body-bytes", 0usize);
            "the quick brown fox ".repeat(bytes / 20 + 1)[..bytes].to_string()
        }
    });
    let keep_queued: bool = args.get("keep-queued", false);
    let era_text = args.get("era", "2025".to_string());
    let Some(era) = Era::parse(&era_text) else {
        eprintln!("benchmark: --era is 2025 or 2026, not {era_text:?}");
        return ExitCode::from(2);
    };
    use_era(era);
    let run = bench::run_id();
    let project = format!("bench-{run}");
    let names: Arc<Vec<String>> = Arc::new((0..agents).map(|i| format!("b{run}A{i}")).collect());

    let before_register = Snapshot::take(&url);
    let register = {
        let (names, project) = (Arc::clone(&names), project.clone());
        run_phase("register", &url, concurrency, agents, move |client, i| {
            client.create_agent(&project, &names[i])
        })
    };
    let before_send = Snapshot::take(&url);
    let send = {
        let (names, body) = (Arc::clone(&names), Arc::clone(&body));
        run_phase("send", &url, concurrency, messages, move |client, i| {
            let from = &names[i % names.len()];
            let to = &names[(i * 7 + 3) % names.len()];
            let id = client.send(from, &[to], &format!("benchmark message {i}"), &body)?;
            Ok((to.clone(), id))
        })
    };
    let before_drain = Snapshot::take(&url);
    let drain = {
        let names = Arc::clone(&names);
        let drained = if keep_queued { 0 } else { agents };
        run_phase("drain", &url, concurrency, drained, move |client, i| {
            Ok((names[i].clone(), client.inbox_ids(&names[i])?))
        })
    };
    let after_drain = Snapshot::take(&url);
    let cpu = [
        ("register", before_register.cpu_between(&before_send)),
        ("send", before_send.cpu_between(&before_drain)),
        ("drain", before_drain.cpu_between(&after_drain)),
    ];
    let (register, send, drain) = match (register, send, drain) {
        (Ok(r), Ok(s), Ok(d)) => (r, s, d),
        (r, s, d) => {
            for error in [r.err(), s.err(), d.err()].into_iter().flatten() {
                eprintln!("benchmark could not run: {error}");
            }
            return ExitCode::FAILURE;
        }
    };

    let mut ledger = Ledger::default();
    for (to, id) in &send.outputs {
        ledger.sent(id, &[to]);
    }
    for (agent, ids) in &drain.outputs {
        for id in ids {
            ledger.received(agent, id);
        }
    }
    let audit = ledger.audit();
    let mut rows = Vec::new();
    for phase_rows in [phase_rows(&register), phase_rows(&send), phase_rows(&drain)] {
        rows.extend(phase_rows);
    }
    println!(
        "allman benchmark: {agents} agents, {messages} messages, {concurrency} connections, {}",
        url.authority()
    );
    print_table(&rows);
    println!("server layout: {}", before_register.describe_layout());
    for (phase, split) in &cpu {
        println!("cpu {phase:<9} {}", split.describe());
    }
    // Everything sent is queued (nothing drained yet) when the drain phase starts.
    let text_bytes: usize = (0..messages)
        .map(|i| names[i % names.len()].len() + format!("benchmark message {i}").len() + body.len())
        .sum();
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    if let Some(rss) = before_drain.server_rss_bytes {
        println!(
            "server RSS with every message queued: {:.0} MiB for {:.0} MiB of message text",
            mib(rss as f64),
            mib(text_bytes as f64)
        );
    }
    if !keep_queued {
        println!(
            "delivery: expected {} received {} lost {} duplicated {} unexpected {}",
            audit.expected, audit.received, audit.lost, audit.duplicated, audit.unexpected
        );
    }
    let errors =
        register.stats.total_errors() + send.stats.total_errors() + drain.stats.total_errors();
    for error in register
        .sample_errors
        .iter()
        .chain(&send.sample_errors)
        .chain(&drain.sample_errors)
    {
        eprintln!("error: {error}");
    }
    let result = json!({
        "tool": "benchmark",
        "config": {"url": url.authority(), "agents": agents, "messages": messages, "concurrency": concurrency, "era": era_text},
        "rows": rows,
        "delivery": {"expected": audit.expected, "received": audit.received, "lost": audit.lost, "duplicated": audit.duplicated, "unexpected": audit.unexpected},
        "errors": errors,
        "layout": before_register.describe_layout(),
        "queued": {"text_bytes": text_bytes, "server_rss_bytes": before_drain.server_rss_bytes},
        "cpu": cpu.iter().map(|(phase, split)| (phase.to_string(), split.to_json())).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(path) = args.optional("json") {
        if let Err(error) = write_json(&path, &result) {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    if keep_queued {
        println!("delivery: not checked, every message left queued (--keep-queued)");
    }
    if errors > 0 || (!keep_queued && !audit.is_clean()) {
        eprintln!("FAILED: {errors} errors, delivery {audit:?}");
        return ExitCode::FAILURE;
    }
    if let Some(path) = args.optional("baseline") {
        let baseline = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(baseline) => baseline,
            Err(error) => {
                eprintln!("cannot read baseline {path}: {error}");
                return ExitCode::from(2);
            }
        };
        let found = regressions(&result, &baseline, args.get("threshold-pct", 10.0f64));
        if !found.is_empty() {
            for regression in &found {
                println!("REGRESSION {regression}");
            }
            return ExitCode::from(3);
        }
        println!("no regression against {path}");
    }
    ExitCode::SUCCESS
}
