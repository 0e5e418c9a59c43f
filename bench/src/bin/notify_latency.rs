//! New-mail notifications under measurement (issue 27): how soon a `subscriptions/listen`
//! stream announces a send after its reply, with one stream open and with many; what an
//! idle stream costs the server; whether many open streams slow sends down.

use bench::args::Args;
use bench::client::McpClient;
use bench::histogram::Histogram;
use bench::http::Url;
use bench::server::{CpuSplit, Snapshot};
use bench::workers::{run_phase, PhaseResult};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELP: &str = "notify_latency - measure inbox notifications against a live allman

USAGE:
    cargo run --release --bin notify_latency -- [OPTIONS]

OPTIONS:
    --url <URL>              server to load (default http://127.0.0.1:8000)
    --rounds <N>             latency rounds: one send to a watched inbox, one event (default 500)
    --streams <N>            listen streams open for the memory and loaded phases (default 1000)
    --messages <N>           messages per send phase (default 20000)
    --repeats <N>            send phases without and with the streams open, alternating;
                             medians are reported (default 3)
    --concurrency <N>        sending connections (default 16)
    -h, --help               print this help

Run the server with --max-waiters and --max-connections above --streams.
";

/// Opens a `subscriptions/listen` stream on `agent`'s inbox; returns it once acknowledged.
fn open_stream(url: &Url, id: usize, agent: &str) -> std::io::Result<TcpStream> {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"subscriptions/listen","params":{
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities":{}},
        "notifications":{"resourceSubscriptions":[format!("allman://inbox/{agent}")]}}})
    .to_string();
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n\r\n{body}",
        url.host,
        body.len()
    )?;
    read_until(&mut stream, "acknowledged")?;
    Ok(stream)
}

/// Reads until `needle` has arrived (events are small: a 4 KiB read holds several).
fn read_until(stream: &mut TcpStream, needle: &str) -> std::io::Result<()> {
    let mut seen = String::new();
    let mut chunk = [0u8; 4096];
    while !seen.contains(needle) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    Ok(())
}

fn latency(
    client: &mut McpClient,
    sender: &str,
    agent: &str,
    stream: &mut TcpStream,
    rounds: usize,
) -> Result<Histogram, String> {
    let mut from_reply = Histogram::default();
    for _ in 0..rounds {
        client
            .send(sender, &[agent], "news", "hello")
            .map_err(|e| e.to_string())?;
        let replied = Instant::now();
        read_until(stream, "resources/updated").map_err(|e| e.to_string())?;
        from_reply.record(replied.elapsed().as_micros() as u64);
    }
    Ok(from_reply)
}

/// Waits this long for the helpers to settle before a reading.
const SETTLE: Duration = Duration::from_millis(1500);

/// One send phase: messages per second, p99, and the shard threads' CPU per message.
#[derive(Debug, Clone, Copy)]
struct Sends {
    rate: f64,
    p99_ms: f64,
    shard_us: f64,
}

impl Sends {
    fn of(phase: &PhaseResult<String>, cpu: &CpuSplit) -> Sends {
        let sent = phase.outputs.len().max(1) as f64;
        Sends {
            rate: sent / phase.elapsed.as_secs_f64(),
            p99_ms: phase
                .stats
                .latency
                .get("send_message")
                .map_or(0.0, |h| h.percentile(99.0) as f64 / 1000.0),
            shard_us: cpu.server.get("shard").copied().unwrap_or(0.0) * 1e6 / sent,
        }
    }

    /// Each figure's median over `runs` (taken apart: the figures need not share a run).
    fn median(runs: &[Sends]) -> Sends {
        let middle = |figure: fn(&Sends) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(figure).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Sends {
            rate: middle(|s| s.rate),
            p99_ms: middle(|s| s.p99_ms),
            shard_us: middle(|s| s.shard_us),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} msgs/s (p99 {:.2} ms, shard {:.1} µs CPU per message)",
            self.rate, self.p99_ms, self.shard_us
        )
    }
}

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let rounds: usize = args.get("rounds", 500usize);
    let open: usize = args.get("streams", 1000usize);
    let messages: usize = args.get("messages", 20000usize);
    let concurrency: usize = args.get("concurrency", 16usize).max(1);
    let repeats: usize = args.get("repeats", 3usize).max(1);
    let run = bench::run_id();
    let project = format!("notify-{run}");
    let sender = format!("n{run}Sender");
    let mut client = match McpClient::connect(&url) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot reach {url:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _ = client.create_agent(&project, &sender);
    let watched = format!("n{run}Watched");
    let _ = client.create_agent(&project, &watched);
    let pairs: Arc<Vec<String>> = Arc::new((0..100).map(|i| format!("n{run}S{i}")).collect());
    for name in pairs.iter() {
        let _ = client.create_agent(&project, name);
    }
    let send_phase = |url: &Url, label: &str| -> Result<Sends, String> {
        let pairs = Arc::clone(&pairs);
        let before = Snapshot::take(url);
        let phase = run_phase(label, url, concurrency, messages, move |client, i| {
            let from = &pairs[i % pairs.len()];
            let to = &pairs[(i * 7 + 1) % pairs.len()];
            client.send(from, &[to], "load", "the quick brown fox")
        })
        .map_err(|_| format!("{label}: phase failed"))?;
        let cpu = before.cpu_between(&Snapshot::take(url));
        Ok(Sends::of(&phase, &cpu))
    };
    let open_all = |agents: &[String]| -> Result<Vec<TcpStream>, String> {
        let mut streams = Vec::with_capacity(agents.len());
        for (i, agent) in agents.iter().enumerate() {
            let id = i + 1;
            streams.push(open_stream(&url, id, agent).map_err(|e| format!("stream {id}: {e}"))?);
        }
        Ok(streams)
    };
    let result = (|| -> Result<(), String> {
        // 1. One stream: latency from the send's reply to its event.
        let mut watcher = open_stream(&url, 0, &watched).map_err(|e| e.to_string())?;
        let one = latency(&mut client, &sender, &watched, &mut watcher, rounds)?;
        println!(
            "notification latency, 1 stream open, from the send's reply: {}",
            one.summary_ms(3)
        );
        // 2. Memory: many more streams, each on its own inbox. The agents exist (and the
        //    helpers have committed them) before the first reading: only streams are counted.
        let agents: Vec<String> = (1..open).map(|i| format!("n{run}W{i}")).collect();
        for agent in &agents {
            let _ = client.create_agent(&project, agent);
        }
        std::thread::sleep(SETTLE);
        let before = Snapshot::take(&url);
        let streams = open_all(&agents)?;
        std::thread::sleep(SETTLE);
        let after = Snapshot::take(&url);
        if let (Some(a), Some(b)) = (before.server_rss_bytes, after.server_rss_bytes) {
            println!(
                "{} more streams open: server RSS {:.1} -> {:.1} MiB: {} bytes per idle stream",
                open - 1,
                a as f64 / 1048576.0,
                b as f64 / 1048576.0,
                (b as i64 - a as i64) / (open as i64 - 1).max(1)
            );
        }
        // 3. Latency with every stream open.
        let many = latency(&mut client, &sender, &watched, &mut watcher, rounds)?;
        println!(
            "notification latency, {open} streams open, from the send's reply: {}",
            many.summary_ms(3)
        );
        drop(streams);
        // 4. Sends without and with the streams open, alternating, so that the mail piling
        //    up and the machine's drift fall on both sides alike.
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            std::thread::sleep(SETTLE / 3);
            without.push(send_phase(&url, "send, no streams")?);
            let streams = open_all(&agents)?;
            std::thread::sleep(SETTLE / 3);
            with.push(send_phase(&url, "send, streams open")?);
            drop(streams);
        }
        let (none, some) = (Sends::median(&without), Sends::median(&with));
        println!(
            "send, median of {repeats}: {} with no stream; {} with {open} streams open \
             ({:+.1} % msgs/s, {:+.1} % shard CPU per message)",
            none.describe(),
            some.describe(),
            (some.rate / none.rate - 1.0) * 100.0,
            (some.shard_us / none.shard_us - 1.0) * 100.0
        );
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("notify_latency: {error}");
            ExitCode::FAILURE
        }
    }
}
