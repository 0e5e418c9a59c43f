//! Hostile clients against a real server: no client may stall a shard or make the server
//! commit memory it has not earned.

mod common;

use common::{listen_request, metric, wait_with_deadline, Client, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// A health check padded with a 4 KB header: the shard spends its time parsing input while
/// its answers stay small, so the flood's bytes are always waiting and its answers never fill
/// the socket (a full socket would make the connection wait, and yield, on its own).
fn padded_health() -> Vec<u8> {
    format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(4000)
    )
    .into_bytes()
}

/// A connection that pipelines `request` as fast as the server takes it and reads (and
/// discards) every answer, until `stop` is raised.
struct Flood {
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

impl Flood {
    fn start(addr: SocketAddr, request: &[u8], stop: &Arc<AtomicBool>) -> Flood {
        let stream = TcpStream::connect(addr).expect("connect");
        let mut write_half = stream.try_clone().expect("clone");
        let mut read_half = stream;
        let burst = request.repeat((256 * 1024 / request.len()).max(1));
        let writer_stop = Arc::clone(stop);
        let writer = std::thread::spawn(move || {
            write_half
                .set_write_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            while !writer_stop.load(Ordering::Relaxed) {
                match write_half.write(&burst) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            let _ = write_half.shutdown(Shutdown::Write);
        });
        let reader_stop = Arc::clone(stop);
        let reader = std::thread::spawn(move || {
            read_half
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let mut sink = vec![0u8; 1024 * 1024];
            loop {
                match read_half.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) if reader_stop.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
        });
        Flood { writer, reader }
    }

    fn join(self) {
        self.writer.join().expect("writer");
        self.reader.join().expect("reader");
    }
}

/// A POST of `body` padded the same way as [`padded_health`].
fn padded_post(body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nX-Pad: {}\r\nContent-Length: {}\r\n\r\n{body}",
        "p".repeat(4000),
        body.len()
    )
    .into_bytes()
}

/// The floods and the thousand-connection tests run one at a time: each loads both cores, and
/// a probe's latency should measure the server, not the other tests' clients.
static HEAVY: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Flooding connections: two keep a shard's input full from a release-built client
/// (`bench/src/bin/hostile.rs`); this debug-built client needs four to do the same.
const FLOODS: usize = 4;

/// Probes with `ping` on a fresh connection while `FLOODS` connections flood the only shard;
/// returns the slowest probe.
fn slowest_probe_under_flood(server: &Server, flood_request: &[u8]) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<Flood> = (0..FLOODS)
        .map(|_| Flood::start(server.addr, flood_request, &stop))
        .collect();
    // Let the floods fill the pipes first.
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let started = Instant::now();
        let mut probe = Client::connect(server.addr);
        let response = probe.post("/mcp", PING.as_bytes());
        assert_eq!(response.status, 200);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        flood.join();
    }
    eprintln!("slowest probe under the flood: {slowest:?}");
    slowest
}

#[test]
fn a_pipelining_flood_of_health_checks_cannot_stall_the_shard() {
    let _heavy = one_at_a_time();
    let server = Server::start_with(&["--shards", "1"]);
    let slowest = slowest_probe_under_flood(&server, &padded_health());
    assert!(
        slowest < Duration::from_millis(50),
        "a fresh connection's ping took {slowest:?} under the flood"
    );
}

#[test]
fn a_pipelining_flood_of_local_sends_cannot_stall_the_shard() {
    let _heavy = one_at_a_time();
    let server = Server::start_with(&["--shards", "1"]);
    server.client().create_agent("p", "Flooder");
    let send = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"Flooder","to":["Flooder"],"body":"x"}}}"#;
    let slowest = slowest_probe_under_flood(&server, &padded_post(send));
    assert!(
        slowest < Duration::from_millis(50),
        "a fresh connection's ping took {slowest:?} under the flood"
    );
}

/// Event streams opened by clients that never read one byte.
const STUCK_STREAMS: usize = 8;

/// Shrinks a client socket's receive buffer, so that a stream it never reads backs up into
/// the server's socket within a few hundred events instead of megabytes of them.
fn shrink_receive_buffer(stream: &TcpStream) {
    let bytes: libc::c_int = 4096;
    // SAFETY: a valid open socket and a c_int option of the size given.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of!(bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(status, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

fn open_streams(client: &mut Client) -> Option<f64> {
    metric(
        &client.get("/metrics").text(),
        "allman_shard_event_streams{shard=\"0\"}",
    )
}

/// Event streams whose clients never read watch the inbox a flood of sends fills: their
/// events back up in their sockets, and the shard keeps serving everyone else within the
/// floods' bound. The stuck streams stay open (bounded by the write timeout), and hanging
/// up frees them.
#[test]
fn event_streams_that_never_read_cannot_stall_the_shard() {
    let _heavy = one_at_a_time();
    let server = Server::start_with(&["--shards", "1", "--max-inbox-messages", "1000000"]);
    let mut client = server.client();
    client.create_agent("p", "Flooder");
    client.create_agent("p", "Watched");
    let uris = ["allman://inbox/Watched".to_string()];
    let stuck: Vec<TcpStream> = (0..STUCK_STREAMS as u64)
        .map(|id| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            shrink_receive_buffer(&stream);
            stream
                .write_all(listen_request(id, &uris, &[]).as_bytes())
                .expect("write");
            stream
        })
        .collect();
    let deadline = Instant::now() + common::IO_TIMEOUT;
    while open_streams(&mut client) != Some(STUCK_STREAMS as f64) {
        assert!(Instant::now() < deadline, "the streams never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let send = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"Flooder","to":["Watched"],"body":"x"}}}"#;
    let slowest = slowest_probe_under_flood(&server, &padded_post(send));
    assert!(
        slowest < Duration::from_millis(50),
        "a fresh connection's ping took {slowest:?} beside streams that never read"
    );
    assert_eq!(
        open_streams(&mut client),
        Some(STUCK_STREAMS as f64),
        "a stream that cannot be written to is kept, not dropped, within the write timeout"
    );
    let inbox = client.call_ok("fetch_inbox", json!({"agent_name": "Watched", "limit": 1}));
    assert!(inbox.to_string().contains("Flooder"), "{inbox}");
    drop(stuck);
    while open_streams(&mut client) != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the hung-up streams were never freed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_during_a_flood_exits_zero_within_the_grace() {
    let _heavy = one_at_a_time();
    let mut server = Server::start_with(&["--shards", "1", "--shutdown-grace-ms", "2000"]);
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<Flood> = (0..FLOODS)
        .map(|_| Flood::start(server.addr, &padded_health(), &stop))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let mut child = server.take_child();
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        flood.join();
    }
    assert!(status.success(), "exit status {status:?}");
    // The grace, plus the search and git flushes after it.
    assert!(
        took < Duration::from_millis(2000 + 3000),
        "stopped after {took:?}"
    );
}

/// The peak resident memory of the server process (`VmHWM`, from /proc): what it ever held,
/// so memory committed and given back in between still counts.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// Opens `count` connections that each send the head of a POST announcing a 1 MiB body and one
/// byte of it, and returns them with the server's peak RSS once `all_in` holds for /metrics.
fn announce_large_bodies(
    server: &Server,
    count: usize,
    all_in: impl Fn(&str) -> bool,
) -> (Vec<TcpStream>, u64) {
    let head = "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{";
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream.write_all(head.as_bytes()).expect("write");
        streams.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.client().get("/metrics").text();
        if all_in(&text) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connections never all arrived:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The heads are read as they arrive; let the last reads land before measuring.
    std::thread::sleep(Duration::from_millis(300));
    (streams, peak_rss_bytes(server.pid()))
}

const RSS_BOUND_BYTES: u64 = 100 * 1024 * 1024;

#[test]
fn announced_bodies_cost_no_memory_before_authentication() {
    let _heavy = one_at_a_time();
    let server = Server::start_with(&["--shards", "2", "--token", "s3cret"]);
    // Each is refused on its head, then closed after a linger: count the refusals, not the
    // connections open.
    let (streams, rss) = announce_large_bodies(&server, 1000, |text| {
        common::metric(text, "allman_http_responses_total{code=\"401\"}").unwrap_or(0.0) >= 1000.0
    });
    assert!(
        rss < RSS_BOUND_BYTES,
        "peak RSS {} MiB with 1,000 unauthenticated announcements",
        rss >> 20
    );
    // Each is refused with 401 at once, its body never read.
    for mut stream in streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 401");
    }
}

#[test]
fn without_a_token_buffers_grow_only_with_the_bytes_that_arrive() {
    let _heavy = one_at_a_time();
    let server = Server::start_with(&["--shards", "2"]);
    let (streams, rss) = announce_large_bodies(&server, 1000, |text| {
        common::metric(text, "allman_open_connections").unwrap_or(0.0) > 1000.0
    });
    assert!(
        rss < RSS_BOUND_BYTES,
        "peak RSS {} MiB with 1,000 announced 1 MiB bodies of which 1 byte arrived",
        rss >> 20
    );
    drop(streams);
}

#[test]
fn a_trickled_body_is_not_reparsed_on_every_read() {
    let server = Server::start_with(&["--shards", "1"]);
    let parses = |server: &Server| {
        let text = server.client().get("/metrics").text();
        common::metric(&text, "allman_http_head_parses_total").expect("parse counter")
    };
    let mut client = server.client();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(400)
    );
    let head = format!(
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let before = parses(&server);
    client.send_raw(head.as_bytes());
    // A few bytes per write, each after the server has had time to read the last.
    for chunk in body.as_bytes().chunks(4) {
        client.send_raw(chunk);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(client.read_response().status, 200);
    let after = parses(&server);
    // This request's head is parsed when it arrives and once more when the body is complete;
    // the /metrics request before the count is taken adds one. Re-parsing per read would
    // add about a hundred.
    assert!(
        after - before <= 4.0,
        "{} head parses for one trickled request",
        after - before
    );
}

#[test]
fn past_the_read_budget_a_request_gets_503_and_others_proceed() {
    let server = Server::start_with(&[
        "--shards",
        "1",
        "--max-body-bytes",
        "150000",
        "--read-buffer-budget-bytes",
        "200000",
    ]);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(140_000)
    );
    let head = format!(
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The first holds most of its body (about 140 KB of the budget)...
    let mut first = server.client();
    first.send_raw(head.as_bytes());
    first.send_raw(&body.as_bytes()[..130_000]);
    std::thread::sleep(Duration::from_millis(300));
    // ...so a second growing past the rest is refused.
    let mut second = server.client();
    second.send_raw(head.as_bytes());
    let _ = second.stream.write_all(&body.as_bytes()[..100_000]);
    let refused = second.read_response();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("connection"), Some("close"));
    // The first completes, and its buffer returns to the budget for the next.
    first.send_raw(&body.as_bytes()[130_000..]);
    assert_eq!(first.read_response().status, 200);
    let mut third = server.client();
    assert_eq!(third.post("/mcp", body.as_bytes()).status, 200);
}
