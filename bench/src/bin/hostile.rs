//! hostile: the two hostile-client reproductions of issue #11, as measurements.
//!
//! - `--mode flood`: `--floods` connections pipeline `GET /health` (or, with
//!   `--flood-request send`, `send_message` to one agent) as fast as the server takes them,
//!   while a fresh connection sends `ping` every `--probe-interval-ms`; prints the probe
//!   latencies. A shard that never yields shows the whole flood as probe latency.
//! - `--mode announce`: `--connections` connections each send the head of a `POST /mcp`
//!   announcing a `--body-bytes` body and one byte of it, then the server's RSS (read from
//!   `/proc/<--pid>/status`) is printed. A server that commits memory before a body arrives
//!   shows the announced total.
//!
//! Sends only to the server at `--url` (loopback), for a bounded time.

use bench::args::Args;
use bench::histogram::Histogram;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELP: &str = "\
hostile - measure what hostile clients do to an allman server

USAGE:
    hostile --mode flood|announce [OPTIONS]

OPTIONS:
    --url <URL>                 server (default http://127.0.0.1:8000)
    --mode <MODE>               flood or announce
    --floods <N>                flood: pipelining connections (default 2)
    --flood-request <KIND>      flood: health or send (default health)
    --seconds <S>               flood: how long to probe (default 3)
    --probe-interval-ms <MS>    flood: pause between probes (default 20)
    --connections <N>           announce: connections (default 1000)
    --body-bytes <N>            announce: Content-Length each announces (default 1048576)
    --token <TOKEN>             announce: send this bearer token (default none)
    --pid <PID>                 announce: the server's process id, for its RSS
    -h, --help                  print this help
";

fn main() {
    let args = Args::from_env(HELP);
    let url = args.url();
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| {
            eprintln!("cannot resolve {}:{}", url.host, url.port);
            std::process::exit(2);
        });
    match args.get("mode", String::new()).as_str() {
        "flood" => flood(&args, addr),
        "announce" => announce(&args, addr),
        other => {
            eprintln!("unknown --mode {other:?}\n\n{HELP}");
            std::process::exit(2);
        }
    }
}

fn post(body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` and reads one response (headers and a Content-Length body).
fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<()> {
    stream.write_all(request)?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

fn flood(args: &Args, addr: std::net::SocketAddr) {
    let floods: usize = args.get("floods", 2);
    let seconds: u64 = args.get("seconds", 3);
    let interval = Duration::from_millis(args.get("probe-interval-ms", 20));
    let request = match args.get("flood-request", "health".to_string()).as_str() {
        "health" => b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        "send" => {
            let mut setup = TcpStream::connect(addr).expect("connect");
            let create = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_agent","arguments":{"project_key":"hostile","name_hint":"HostileFlood"}}}"#;
            exchange(&mut setup, &post(create)).expect("create_agent");
            post(
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"HostileFlood","to":["HostileFlood"],"body":"x"}}}"#,
            )
        }
        other => {
            eprintln!("unknown --flood-request {other:?}");
            std::process::exit(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..floods {
        let stream = TcpStream::connect(addr).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = stream;
        let burst = request.repeat(4096);
        let writer_stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            let _ = writer.set_write_timeout(Some(Duration::from_millis(200)));
            while !writer_stop.load(Ordering::Relaxed) {
                if let Err(e) = writer.write(&burst) {
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut
                    {
                        break;
                    }
                }
            }
            let _ = writer.shutdown(Shutdown::Both);
        }));
        let reader_stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
            let mut sink = vec![0u8; 1024 * 1024];
            while !reader_stop.load(Ordering::Relaxed) {
                if let Ok(0) = reader.read(&mut sink) {
                    break;
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ping = post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    let mut latencies = Histogram::default();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut failed = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let outcome = TcpStream::connect(addr).and_then(|mut probe| {
            probe.set_read_timeout(Some(Duration::from_secs(30)))?;
            exchange(&mut probe, &ping)
        });
        match outcome {
            Ok(()) => latencies.record(started.elapsed().as_micros() as u64),
            Err(_) => failed += 1,
        }
        std::thread::sleep(interval);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    println!(
        "probes {} (failed {failed}) under {floods} flooding connections: {}",
        latencies.count(),
        latencies.summary_ms(2)
    );
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn announce(args: &Args, addr: std::net::SocketAddr) {
    let connections: usize = args.get("connections", 1000);
    let body_bytes: usize = args.get("body-bytes", 1 << 20);
    let pid: u32 = args.get("pid", 0);
    if pid == 0 {
        eprintln!("--pid is required for --mode announce");
        std::process::exit(2);
    }
    let auth = args
        .optional("token")
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}Content-Length: {body_bytes}\r\n\r\n{{"
    );
    let before = rss_mib(pid).unwrap_or(f64::NAN);
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                if stream.write_all(head.as_bytes()).is_ok() {
                    streams.push(stream);
                }
            }
            Err(error) => {
                eprintln!(
                    "connect failed after {} connections: {error}",
                    streams.len()
                );
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_mib(pid).unwrap_or(f64::NAN);
    println!(
        "{} connections announcing {body_bytes} bytes each (1 byte sent): RSS {before:.0} MiB -> {after:.0} MiB",
        streams.len()
    );
}
