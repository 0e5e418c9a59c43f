//! `/mcp` latency with and without the web view hammered, in one run: phases alternate
//! between MCP load alone and MCP load plus clients reloading `/ui/` pages as fast as the
//! server answers them. Reports p50/p99 of the MCP calls in each kind of phase, the pages
//! served, and each page's size and server time (its `Server-Timing`). With
//! `--max-p99-increase-pct`, exits non-zero when the loaded p99 exceeds the quiet one by more.

use bench::args::Args;
use bench::client::McpClient;
use bench::histogram::Histogram;
use bench::http::Url;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HELP: &str = "ui_load - /mcp latency with and without the web view under load

USAGE:
    cargo run --release --bin ui_load -- [OPTIONS]

Seeds a project (agents, messages, a long thread), then alternates quiet phases (MCP load
only) and loaded phases (MCP load plus --ui-connections clients reloading every kind of /ui/
page back to back). Each MCP worker repeats send_message (to itself), fetch_inbox and get_inbox.

OPTIONS:
    --url <URL>                   server (default http://127.0.0.1:8000)
    --agents <N>                  agents in the project (default 40)
    --messages <N>                messages seeded (default 2000)
    --concurrency <N>             MCP connections (default 4)
    --ui-connections <N>          page-loading connections in loaded phases (default 6)
    --rounds <N>                  quiet+loaded phase pairs (default 10)
    --phase-ms <MS>               length of each phase (default 1000)
    --pages <LIST>                only these pages, e.g. overview,roster (default all: overview,
                                  roster, agent, thread, message, message-by-project, search)
    --loader-nice <N>             nice value of the page loaders' threads (default 19; 0 to
                                  let them compete with the server and the MCP clients)
    --max-p99-increase-pct <P>    fail if the loaded p99 is more than P % above the quiet one
    -h, --help                    print this help
";

const QUIET: u8 = 0;
const LOADED: u8 = 1;
const STOP: u8 = 2;

/// One GET on a kept-alive connection: status, body bytes, and the server's time (µs).
struct Page {
    status: u16,
    bytes: usize,
    server_us: Option<u64>,
}

struct Browser {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Browser {
    fn connect(url: &Url) -> std::io::Result<Browser> {
        let stream = TcpStream::connect(url.authority())?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Browser {
            reader: BufReader::new(stream),
            host: url.host.clone(),
        })
    }

    fn get(&mut self, path: &str) -> std::io::Result<Page> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut server_us) = (0usize, None);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("server-timing") {
                server_us = value
                    .split("dur=")
                    .nth(1)
                    .and_then(|ms| ms.parse::<f64>().ok())
                    .map(|ms| (ms * 1000.0) as u64);
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(Page {
            status,
            bytes: length,
            server_us,
        })
    }
}

/// Lowers the calling thread's scheduling priority: on a machine shared with the server, a
/// page loader waking up must not preempt the shard (a browser would be on another machine).
fn lower_priority(nice: i32) {
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority as is.
    unsafe {
        let thread = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, nice);
    }
}

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let agents: usize = args.get("agents", 40usize).max(2);
    let messages: usize = args.get("messages", 2000usize);
    let concurrency: usize = args.get("concurrency", 4usize).max(1);
    let ui_connections: usize = args.get("ui-connections", 6usize);
    let rounds: usize = args.get("rounds", 10usize).max(1);
    let phase = Duration::from_millis(args.get("phase-ms", 1000u64).max(50));
    let max_increase: Option<f64> = match args.optional("max-p99-increase-pct") {
        None => None,
        Some(text) => match text.parse() {
            Ok(percent) => Some(percent),
            Err(_) => {
                eprintln!("--max-p99-increase-pct takes a number, not {text:?}");
                return ExitCode::FAILURE;
            }
        },
    };
    let loader_nice: i32 = args.get("loader-nice", 19i32);
    let run = bench::run_id();
    let names: Vec<String> = (0..agents).map(|i| format!("u{run}A{i}")).collect();

    // --- seed
    let mut client = match McpClient::connect(&url) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot connect: {error}");
            return ExitCode::FAILURE;
        }
    };
    let key = format!("ui-load-{run}");
    // create_agent tells the project's id (the bench crate computes no UUIDs).
    let mut project = String::new();
    for name in &names {
        match client.create_agent(&key, name) {
            Ok(agent) => project = agent["project_id"].as_str().unwrap_or_default().to_string(),
            Err(error) => {
                eprintln!("create_agent failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut rng = bench::Rng(7);
    let mut some_message = (String::new(), String::new());
    let mut thread = String::new();
    for n in 0..messages {
        let from = &names[rng.below(agents)];
        let to = &names[rng.below(agents)];
        let mut arguments = json!({"from_agent": from, "to": [to], "subject": format!("status {n}"), "body": format!("progress report {n}: tests green, moving on to the next step")});
        if n % 10 == 0 && !thread.is_empty() {
            arguments["thread_id"] = json!(thread);
        }
        match client.call("send_message", arguments) {
            Ok(sent) => {
                let id = sent["id"].as_str().unwrap_or_default().to_string();
                if thread.is_empty() {
                    thread = id.clone();
                }
                some_message = (id, from.clone());
            }
            Err(error) => {
                eprintln!("send_message failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let busiest = &names[0];
    let all_pages = vec![
        ("overview", "/ui/".to_string()),
        ("roster", format!("/ui/p/{project}")),
        ("agent", format!("/ui/p/{project}/a/{busiest}")),
        ("thread", format!("/ui/p/{project}/t/{thread}")),
        (
            "message",
            format!("/ui/m/{}?from={}", some_message.0, some_message.1),
        ),
        (
            "message-by-project",
            format!("/ui/m/{}?p={project}", some_message.0),
        ),
        ("search", "/ui/search?q=progress".to_string()),
    ];
    let chosen = args.optional("pages");
    let pages: Arc<Vec<(&'static str, String)>> = Arc::new(
        all_pages
            .into_iter()
            .filter(|(name, _)| {
                chosen
                    .as_deref()
                    .is_none_or(|list| list.split(',').any(|p| p.trim() == *name))
            })
            .collect(),
    );
    if pages.is_empty() {
        eprintln!("--pages names none of: overview, roster, agent, thread, message, message-by-project, search");
        return ExitCode::FAILURE;
    }
    // Let search catch up before measuring the search-backed pages.
    std::thread::sleep(Duration::from_millis(500));

    // --- each page once per round, alone: size and server time
    println!("ui_load: {agents} agents, {messages} messages seeded, {concurrency} MCP connections, {ui_connections} page connections, {rounds} rounds of {} ms", phase.as_millis());
    println!(
        "\n{:<20} {:>10} {:>16} {:>16}",
        "page", "bytes", "server ms (mean)", "server ms (max)"
    );
    let mut browser = match Browser::connect(&url) {
        Ok(browser) => browser,
        Err(error) => {
            eprintln!("cannot connect: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = 0u64;
    for (name, path) in pages.iter() {
        let (mut bytes, mut total_us, mut max_us, mut count) = (0usize, 0u64, 0u64, 0u64);
        for _ in 0..5 {
            match browser.get(path) {
                Ok(page) if page.status == 200 => {
                    bytes = bytes.max(page.bytes);
                    let us = page.server_us.unwrap_or(0);
                    total_us += us;
                    max_us = max_us.max(us);
                    count += 1;
                }
                Ok(page) => {
                    eprintln!("{path}: HTTP {}", page.status);
                    failures += 1;
                }
                Err(error) => {
                    eprintln!("{path}: {error}");
                    failures += 1;
                }
            }
        }
        let mean = total_us as f64 / count.max(1) as f64 / 1000.0;
        println!(
            "{name:<20} {bytes:>10} {mean:>16.3} {:>16.3}",
            max_us as f64 / 1000.0
        );
    }

    // --- alternating phases
    let state = Arc::new(AtomicU8::new(QUIET));
    let errors = Arc::new(AtomicU64::new(0));
    let histograms = Arc::new(Mutex::new([Histogram::default(), Histogram::default()]));
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (url, state, errors, histograms) = (
            url.clone(),
            Arc::clone(&state),
            Arc::clone(&errors),
            Arc::clone(&histograms),
        );
        let me = names[worker % agents].clone();
        workers.push(std::thread::spawn(move || {
            let Ok(mut client) = McpClient::connect(&url) else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut local = [Histogram::default(), Histogram::default()];
            let mut n = 0u64;
            loop {
                let phase = state.load(Ordering::Acquire);
                if phase == STOP {
                    break;
                }
                let started = Instant::now();
                // Send to itself, read, drain: the inbox stays short however long the run.
                let result = match n % 3 {
                    0 => client.send(&me, &[&me], "ping", "load").map(|_| ()),
                    1 => client
                        .call("fetch_inbox", json!({"agent_name": me, "limit": 10}))
                        .map(|_| ()),
                    _ => client.inbox(&me).map(|_| ()),
                };
                n += 1;
                let micros = started.elapsed().as_micros() as u64;
                // A call that straddled a phase change counts for neither.
                if state.load(Ordering::Acquire) == phase {
                    local[usize::from(phase)].record(micros);
                }
                if result.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            let mut shared = histograms.lock().unwrap_or_else(|e| e.into_inner());
            for (total, mine) in shared.iter_mut().zip(&local) {
                total.merge(mine);
            }
        }));
    }
    let pages_served = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let loading = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for loader in 0..ui_connections {
        let (url, state, loading, pages, served, busy, errors) = (
            url.clone(),
            Arc::clone(&state),
            Arc::clone(&loading),
            Arc::clone(&pages),
            Arc::clone(&pages_served),
            Arc::clone(&busy),
            Arc::clone(&errors),
        );
        loaders.push(std::thread::spawn(move || {
            if loader_nice != 0 {
                lower_priority(loader_nice);
            }
            let mut browser: Option<Browser> = None;
            let mut next = loader;
            while state.load(Ordering::Acquire) != STOP {
                if !loading.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                if browser.is_none() {
                    browser = Browser::connect(&url).ok();
                }
                let Some(open) = browser.as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (_, path) = &pages[next % pages.len()];
                next += 1;
                match open.get(path) {
                    Ok(page) if page.status == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(page) if page.status == 503 => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) | Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        browser = None;
                    }
                }
            }
        }));
    }
    // Warm up, then alternate.
    std::thread::sleep(phase / 2);
    for _ in 0..rounds {
        state.store(QUIET, Ordering::Release);
        loading.store(false, Ordering::Release);
        std::thread::sleep(phase);
        loading.store(true, Ordering::Release);
        state.store(LOADED, Ordering::Release);
        std::thread::sleep(phase);
    }
    state.store(STOP, Ordering::Release);
    for handle in workers.into_iter().chain(loaders) {
        let _ = handle.join();
    }
    let histograms = histograms.lock().unwrap_or_else(|e| e.into_inner());
    let [quiet, loaded] = &*histograms;
    let seconds = (phase * rounds as u32).as_secs_f64();
    println!(
        "\n{:<8} {:>10} {:>10} {:>10} {:>10}",
        "phase", "calls", "p50 ms", "p99 ms", "max ms"
    );
    for (name, h) in [("quiet", quiet), ("ui load", loaded)] {
        println!(
            "{name:<8} {:>10} {:>10.3} {:>10.3} {:>10.3}",
            h.count(),
            h.percentile(50.0) as f64 / 1000.0,
            h.percentile(99.0) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    let served = pages_served.load(Ordering::Relaxed);
    println!(
        "\npages served under load: {served} ({:.1}/s), 503 busy: {}, errors: {}",
        served as f64 / seconds,
        busy.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed) + failures
    );
    let (p99_quiet, p99_loaded) = (
        quiet.percentile(99.0) as f64,
        loaded.percentile(99.0) as f64,
    );
    let increase = (p99_loaded / p99_quiet.max(1.0) - 1.0) * 100.0;
    println!("p99 under UI load: {increase:+.1} % against quiet");
    if errors.load(Ordering::Relaxed) + failures > 0 || served == 0 {
        eprintln!("errors, or no page served under load");
        return ExitCode::FAILURE;
    }
    if let Some(max) = max_increase {
        if increase > max {
            eprintln!("p99 rose {increase:.1} % under UI load, more than {max} %");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
