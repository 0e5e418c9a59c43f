//! New-mail notifications under measurement (issue 27): how soon a `subscriptions/listen`
//! stream announces a send after its reply, with one stream open and with many; what an
//! idle stream costs the server; whether many open streams slow sends down.

use bench::args::Args;
use bench::client::McpClient;
use bench::histogram::Histogram;
use bench::http::Url;
use bench::server::Snapshot;
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
    --messages <N>           messages sent with and without the streams open (default 20000)
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

fn main() -> ExitCode {
    let args = Args::from_env(HELP);
    let url = args.url();
    let rounds: usize = args.get("rounds", 500usize);
    let open: usize = args.get("streams", 1000usize);
    let messages: usize = args.get("messages", 20000usize);
    let concurrency: usize = args.get("concurrency", 16usize).max(1);
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
    let send_phase = |label: &str| {
        let pairs = Arc::clone(&pairs);
        run_phase(label, &url, concurrency, messages, move |client, i| {
            let from = &pairs[i % pairs.len()];
            let to = &pairs[(i * 7 + 1) % pairs.len()];
            client.send(from, &[to], "load", "the quick brown fox")
        })
    };
    let result = (|| -> Result<(), String> {
        // 1. Sends with no stream open: the baseline.
        let without = send_phase("send, no streams").map_err(|_| "send phase failed")?;
        // 2. One stream: latency from the send's reply to its event.
        let mut watcher = open_stream(&url, 0, &watched).map_err(|e| e.to_string())?;
        let one = latency(&mut client, &sender, &watched, &mut watcher, rounds)?;
        println!(
            "notification latency, 1 stream open, from the send's reply: {}",
            one.summary_ms(3)
        );
        // 3. Memory: many more streams, each on its own inbox.
        let before = Snapshot::take(&url);
        let mut streams = Vec::with_capacity(open);
        for i in 1..open {
            let agent = format!("n{run}W{i}");
            let _ = client.create_agent(&project, &agent);
            streams.push(open_stream(&url, i, &agent).map_err(|e| format!("stream {i}: {e}"))?);
        }
        std::thread::sleep(Duration::from_millis(1500));
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
        // 4. Latency and sends with every stream open.
        let many = latency(&mut client, &sender, &watched, &mut watcher, rounds)?;
        println!(
            "notification latency, {open} streams open, from the send's reply: {}",
            many.summary_ms(3)
        );
        let with = send_phase("send, streams open").map_err(|_| "send phase failed")?;
        let rate =
            |phase: &PhaseResult<String>| phase.outputs.len() as f64 / phase.elapsed.as_secs_f64();
        let p99 = |phase: &PhaseResult<String>| {
            phase
                .stats
                .latency
                .get("send_message")
                .map_or(0.0, |h| h.percentile(99.0) as f64 / 1000.0)
        };
        println!(
            "send: {:.0} msgs/s (p99 {:.2} ms) with no stream, {:.0} msgs/s (p99 {:.2} ms) with {open} streams open ({:+.1} %)",
            rate(&without),
            p99(&without),
            rate(&with),
            p99(&with),
            (rate(&with) / rate(&without) - 1.0) * 100.0
        );
        drop(streams);
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
