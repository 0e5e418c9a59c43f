//! File reservations under load: grants per second when agents reserve disjoint paths, and
//! requests per second when they all contend for the same ones (each answered with the
//! conflict and its holder).

use bench::args::Args;
use bench::client::McpClient;
use bench::workers::run_phase;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

const HELP: &str = "reservations - load a live allman's file reservations

USAGE:
    cargo run --release --bin reservations -- [OPTIONS]

OPTIONS:
    --url <URL>              server to load (default http://127.0.0.1:8000)
    --agents <N>             agents in the project (default 64)
    --requests <N>           reservation requests per phase (default 20000)
    --concurrency <N>        connections (default 16)
    -h, --help               print this help
";

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let agents: usize = args.get("agents", 64usize).max(2);
    let requests: usize = args.get("requests", 20000usize);
    let concurrency: usize = args.get("concurrency", 16usize).max(1);
    let run = bench::run_id();
    let project = format!("leases-{run}");
    let names: Arc<Vec<String>> = Arc::new((0..agents).map(|i| format!("l{run}A{i}")).collect());
    let mut client = match McpClient::connect(&url) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot reach {url:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    for name in names.iter() {
        if let Err(error) = client.create_agent(&project, name) {
            eprintln!("create_agent failed: {error}");
            return ExitCode::FAILURE;
        }
    }
    // Disjoint: agent i reserves its own directory's file k (a new lease each time, released
    // by the next request of the same agent with `ids` omitted: release all).
    let disjoint = {
        let names = Arc::clone(&names);
        run_phase(
            "reserve, disjoint",
            &url,
            concurrency,
            requests,
            move |client, i| {
                let agent = &names[i % names.len()];
                let reply = client.call(
                "file_reservation_paths",
                json!({"agent_name": agent, "paths": [format!("{agent}/f{}", i % 200)], "ttl_seconds": 600}),
            )?;
                if i % 200 == 199 {
                    client.call("release_file_reservations", json!({"agent_name": agent}))?;
                }
                Ok(reply["granted"].as_array().map_or(0, Vec::len))
            },
        )
    };
    for name in names.iter() {
        let _ = client.call("release_file_reservations", json!({"agent_name": name}));
    }
    // Contended: everyone asks for the same file; one holds it, the rest get the conflict.
    let _ = client.call(
        "file_reservation_paths",
        json!({"agent_name": names[0], "paths": ["hot/file.rs"], "ttl_seconds": 3600}),
    );
    let contended = {
        let names = Arc::clone(&names);
        run_phase(
            "reserve, contended",
            &url,
            concurrency,
            requests,
            move |client, i| {
                let agent = &names[1 + i % (names.len() - 1)];
                let reply = client.call(
                    "file_reservation_paths",
                    json!({"agent_name": agent, "paths": ["hot/file.rs", "hot/**"]}),
                )?;
                Ok(reply["conflicts"].as_array().map_or(0, Vec::len))
            },
        )
    };
    let (Ok(disjoint), Ok(contended)) = (disjoint, contended) else {
        eprintln!("a phase failed");
        return ExitCode::FAILURE;
    };
    let report = |phase: &bench::workers::PhaseResult<usize>, what: &str| {
        let per_s = phase.outputs.len() as f64 / phase.elapsed.as_secs_f64();
        let counted: usize = phase.outputs.iter().sum();
        let p99 = phase
            .stats
            .latency
            .get("file_reservation_paths")
            .map_or(0.0, |h| h.percentile(99.0) as f64 / 1000.0);
        println!(
            "{}: {per_s:.0} requests/s, {counted} {what} in {} requests, p99 {p99:.2} ms, {} errors",
            phase.name,
            phase.outputs.len(),
            phase.stats.total_errors()
        );
    };
    report(&disjoint, "paths granted");
    report(&contended, "paths in conflict");
    if disjoint.stats.total_errors() + contended.stats.total_errors() > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
