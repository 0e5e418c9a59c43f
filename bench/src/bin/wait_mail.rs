//! `wait_for_mail` under measurement: how soon a parked long poll answers after a send, what
//! a parked waiter costs the server, and whether many parked waiters slow sends down.

use bench::args::Args;
use bench::client::McpClient;
use bench::histogram::Histogram;
use bench::server::Snapshot;
use bench::workers::run_phase;
use serde_json::json;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

const HELP: &str = "wait_mail - measure wait_for_mail against a live allman

USAGE:
    cargo run --release --bin wait_mail -- [OPTIONS]

OPTIONS:
    --url <URL>              server to load (default http://127.0.0.1:8000)
    --rounds <N>             wake-latency rounds: park one waiter, send it one message (default 1000)
    --waiters <N>            waiters parked at once for the memory and send phases (default 1000)
    --messages <N>           messages sent with and without the waiters parked (default 20000)
    --concurrency <N>        sending connections (default 16)
    -h, --help               print this help

Run the server with --max-waiters at least --waiters, and enough --max-connections.
";

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let rounds: usize = args.get("rounds", 1000usize);
    let parked: usize = args.get("waiters", 1000usize);
    let messages: usize = args.get("messages", 20000usize);
    let concurrency: usize = args.get("concurrency", 16usize).max(1);
    let run = bench::run_id();
    let project = format!("wait-{run}");
    let sender = format!("w{run}Sender");
    let setup = || McpClient::connect(&url).map_err(|e| e.to_string());
    let mut client = match setup() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot reach {url:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _ = client.create_agent(&project, &sender);

    // 1. Wake latency: one waiter parked at a time; the clock runs from the send's reply (and
    //    from its start) to the waiter's answer.
    let latency_agents: Vec<String> = (0..16).map(|i| format!("w{run}L{i}")).collect();
    for name in &latency_agents {
        let _ = client.create_agent(&project, name);
    }
    let (go_tx, go_rx) = mpsc::channel::<(String, u64)>();
    let (woke_tx, woke_rx) = mpsc::channel::<(Instant, u64)>();
    let waiter_url = url.clone();
    let waiter = std::thread::spawn(move || {
        let mut client = McpClient::connect(&waiter_url).expect("waiter connects");
        while let Ok((agent, after)) = go_rx.recv() {
            let page = client
                .call(
                    "wait_for_mail",
                    json!({"agent_name": agent, "after": after, "timeout_ms": 50000}),
                )
                .expect("wait_for_mail");
            let next = page["next_after"].as_u64().unwrap_or(after);
            let _ = woke_tx.send((Instant::now(), next));
        }
    });
    let mut cursors = vec![0u64; latency_agents.len()];
    let (mut from_reply, mut from_start) = (Histogram::default(), Histogram::default());
    let mut before_reply = 0;
    for round in 0..rounds {
        let slot = round % latency_agents.len();
        let agent = &latency_agents[slot];
        let _ = go_tx.send((agent.clone(), cursors[slot]));
        // Time for the request to reach the server and park.
        std::thread::sleep(Duration::from_millis(3));
        let started = Instant::now();
        if let Err(error) = client.send(&sender, &[agent], "wake", "up") {
            eprintln!("send failed: {error}");
            return ExitCode::FAILURE;
        }
        let replied = Instant::now();
        let Ok((woke, next)) = woke_rx.recv() else {
            eprintln!("the waiter stopped");
            return ExitCode::FAILURE;
        };
        cursors[slot] = next;
        if woke < replied {
            before_reply += 1;
        }
        from_reply.record(woke.saturating_duration_since(replied).as_micros() as u64);
        from_start.record(woke.duration_since(started).as_micros() as u64);
    }
    drop(go_tx);
    let _ = waiter.join();
    println!("wake latency over {rounds} rounds (one waiter parked, one send):");
    println!(
        "  from the send's reply: {}  ({before_reply} woke before the reply arrived)",
        from_reply.summary_ms(3)
    );
    println!("  from the send's start: {}", from_start.summary_ms(3));

    // 2. Sends without waiters, as the baseline of phase 4.
    let pairs: Arc<Vec<String>> = Arc::new((0..100).map(|i| format!("w{run}S{i}")).collect());
    for name in pairs.iter() {
        let _ = client.create_agent(&project, name);
    }
    let send_phase = |label: &str| {
        let pairs = Arc::clone(&pairs);
        run_phase(label, &url, concurrency, messages, move |client, i| {
            let from = &pairs[i % pairs.len()];
            let to = &pairs[(i * 7 + 1) % pairs.len()];
            client.send(from, &[to], "load", "the quick brown fox")
        })
    };
    let Ok(without) = send_phase("send, no waiters") else {
        eprintln!("send phase failed");
        return ExitCode::FAILURE;
    };

    // 3. Memory: the same connections idle, then each parked in a long poll.
    let waiting_agents: Vec<String> = (0..parked).map(|i| format!("w{run}P{i}")).collect();
    for name in &waiting_agents {
        let _ = client.create_agent(&project, name);
    }
    let mut connections = Vec::with_capacity(parked);
    for _ in 0..parked {
        match McpClient::connect(&url) {
            Ok(mut client) => {
                // Touch the connection so it is open and initialized on the server.
                let _ = client.call("fetch_inbox", json!({"agent_name": sender, "limit": 0}));
                connections.push(client);
            }
            Err(error) => {
                eprintln!("connection failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle = Snapshot::take(&url);
    let start_line = Arc::new(Barrier::new(parked + 1));
    let mut handles = Vec::with_capacity(parked);
    for (mut connection, agent) in connections.into_iter().zip(waiting_agents.iter().cloned()) {
        let start_line = Arc::clone(&start_line);
        handles.push(std::thread::spawn(move || {
            start_line.wait();
            connection
                .call(
                    "wait_for_mail",
                    json!({"agent_name": agent, "timeout_ms": 50000}),
                )
                .map(|page| page["messages"].as_array().map_or(0, Vec::len))
        }));
    }
    start_line.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut waiting = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        waiting = parked_waiters(&url);
        if waiting >= parked as u64 {
            break;
        }
    }
    let parked_snapshot = Snapshot::take(&url);
    match (idle.server_rss_bytes, parked_snapshot.server_rss_bytes) {
        (Some(before), Some(after)) => println!(
            "{waiting} waiters parked: server RSS {:.1} MiB idle connections -> {:.1} MiB waiting: {} bytes per waiter",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            (after as i64 - before as i64) / parked.max(1) as i64
        ),
        _ => println!("{waiting} waiters parked (the server exports no RSS)"),
    }

    // 4. The same sends with every waiter parked.
    let Ok(with) = send_phase("send, waiters parked") else {
        eprintln!("send phase failed");
        return ExitCode::FAILURE;
    };
    let rate = |phase: &bench::workers::PhaseResult<String>| {
        phase.outputs.len() as f64 / phase.elapsed.as_secs_f64()
    };
    let p99 = |phase: &bench::workers::PhaseResult<String>| {
        phase
            .stats
            .latency
            .get("send_message")
            .map_or(0.0, |h| h.percentile(99.0) as f64 / 1000.0)
    };
    println!(
        "send: {:.0} msgs/s (p99 {:.2} ms) without waiters, {:.0} msgs/s (p99 {:.2} ms) with {waiting} parked",
        rate(&without),
        p99(&without),
        rate(&with),
        p99(&with)
    );

    // Release every waiter with one message each.
    for agent in &waiting_agents {
        let _ = client.send(&sender, &[agent], "release", "");
    }
    let woken = handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|r| matches!(r, Ok(n) if *n > 0))
        .count();
    println!("released: {woken} of {parked} waiters answered with their message");
    if woken == parked {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `wait_for_mail` calls parked across the server's shards (gauges refresh every second).
fn parked_waiters(url: &bench::http::Url) -> u64 {
    let Ok(response) = bench::http::Connection::get(url, "/metrics") else {
        return 0;
    };
    String::from_utf8_lossy(&response.body)
        .lines()
        .filter(|line| line.starts_with("allman_shard_waiters{"))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum::<f64>() as u64
}
