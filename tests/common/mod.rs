//! Test harness: start a real `allman` process on port 0, talk to it over real sockets.
#![allow(dead_code)]

pub mod mail;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: a debug build on a loaded 2-core CI machine.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
    pub dir: PathBuf,
    /// Everything the server logged to stderr so far (also echoed to the test's stderr).
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Two shards by default, so cross-shard paths are exercised on any machine.
    pub fn start() -> Server {
        Server::start_with(&["--shards", "2"])
    }

    pub fn start_with(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// Starts a server with extra environment variables (e.g. the debug-build test hooks).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_in_with_env(&fresh_dir(), args, env)
    }

    /// Starts a server whose index and repository live under `dir` (kept across restarts).
    pub fn start_in(dir: &std::path::Path, args: &[&str]) -> Server {
        Server::start_in_with_env(dir, args, &[])
    }

    pub fn start_in_with_env(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_allman"));
        command
            .arg("--port")
            .arg("0")
            .args(args)
            .env("RUST_LOG", "allman=warn,glommio=warn")
            .env("DATA_DIR", dir.join("data"))
            .env("INDEX_PATH", dir.join("index"))
            .env("REPO_ROOT", dir.join("repo"))
            .envs(env.iter().copied());
        Server::spawn(command, dir)
    }

    /// Starts a server in the working directory `cwd` with no path settings of the harness's:
    /// the data directory, index and repository are the binary's defaults (or what `args` and
    /// `env` say), relative to `cwd`. `cwd` is removed when the `Server` is dropped.
    pub fn start_in_cwd(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_allman"));
        command
            .current_dir(cwd)
            .arg("--port")
            .arg("0")
            .args(args)
            .env("RUST_LOG", "allman=warn,glommio=warn")
            .env_remove("DATA_DIR")
            .env_remove("INDEX_PATH")
            .env_remove("REPO_ROOT")
            .envs(env.iter().copied());
        Server::spawn(command, cwd)
    }

    /// Spawns `command` (an allman with `--port 0`) and waits for its ready line.
    fn spawn(mut command: Command, dir: &std::path::Path) -> Server {
        let dir = dir.to_path_buf();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn allman");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[allman] {line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("allman did not report ready within {STARTUP_DEADLINE:?}");
            }
        };
        let addr = line
            .strip_prefix("allman listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line: {line}"));
        Server {
            addr,
            child: Some(child),
            dir,
            log,
        }
    }

    /// Waits (bounded) until the server has logged a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .any(|line| line.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Hands over the child process (the caller waits for it).
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("running")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    /// Like `stop`, but keeps `dir` (removed when the `Server` is dropped) for inspection.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        wait_with_deadline(&mut child, Duration::from_secs(30))
    }
}

/// A new, empty directory under the system's temporary directory, unique to this test run.
pub fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "allman-test-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection.
pub struct Client {
    pub stream: TcpStream,
    buffer: Vec<u8>,
    next_id: u64,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client {
            stream,
            buffer: Vec::new(),
            next_id: 1,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// POSTs `body` to `path` with exactly these header lines besides `Content-Length`.
    pub fn post_with_headers(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut request = format!("POST {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        request.extend_from_slice(body);
        self.send_raw(&request);
        self.read_response()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send_raw(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        self.read_response()
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> Response {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.send_raw(&request);
        self.read_response()
    }

    /// Reads one response; `None` if the server closed the connection first.
    pub fn try_read_response(&mut self) -> Option<Response> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = String::from_utf8(self.buffer[..end].to_vec()).expect("ascii head");
                let mut lines = head.split("\r\n");
                let status_line = lines.next().expect("status line");
                let status: u16 = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line {status_line}"));
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().expect("length"))
                    .unwrap_or(0);
                let total = end + 4 + length;
                if status == 100 {
                    self.buffer.drain(..end + 4);
                    continue;
                }
                while self.buffer.len() < total {
                    if !self.fill() {
                        panic!("connection closed mid-body");
                    }
                }
                let body = self.buffer[end + 4..total].to_vec();
                self.buffer.drain(..total);
                return Some(Response {
                    status,
                    headers,
                    body,
                });
            }
            if !self.fill() {
                return None;
            }
        }
    }

    pub fn read_response(&mut self) -> Response {
        self.try_read_response()
            .expect("server closed the connection before responding")
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// True once the server has closed the connection (reads hit end-of-stream).
    pub fn is_closed_by_server(&mut self) -> bool {
        self.buffer.is_empty() && !self.fill()
    }

    /// Sends one JSON-RPC request and returns the whole response object.
    pub fn rpc(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post("/mcp", body.to_string().as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("content-type"), Some("application/json"));
        let value = response.json();
        assert_eq!(value["id"], json!(id), "response id matches request id");
        value
    }

    /// Calls a tool and returns its `result` (content, structuredContent, isError).
    pub fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self.rpc("tools/call", json!({"name": tool, "arguments": arguments}));
        assert!(
            response.get("error").is_none(),
            "unexpected JSON-RPC error: {response}"
        );
        response["result"].clone()
    }

    /// Calls a tool that must succeed; returns the parsed `text` content (the seed shape),
    /// after checking it agrees with `structuredContent`.
    pub fn call_ok(&mut self, tool: &str, arguments: Value) -> Value {
        let result = self.call(tool, arguments.clone());
        assert_eq!(
            result["isError"],
            json!(false),
            "{tool}({arguments}) failed: {result}"
        );
        let content = &result["content"][0];
        assert_eq!(content["type"], "text");
        let text: Value =
            serde_json::from_str(content["text"].as_str().expect("text")).expect("json text");
        let structured = &result["structuredContent"];
        assert!(
            structured.is_object(),
            "structuredContent must be an object: {result}"
        );
        if text.is_array() {
            // Arrays are wrapped in a one-key object ("messages" or "results").
            let wrapper = structured.as_object().expect("object");
            assert_eq!(wrapper.len(), 1, "{result}");
            assert_eq!(
                wrapper.values().next(),
                Some(&text),
                "structuredContent mirrors text"
            );
        } else {
            assert_eq!(*structured, text, "structuredContent mirrors text");
        }
        text
    }

    /// Calls a tool that must fail with `isError`; returns the message.
    pub fn call_err(&mut self, tool: &str, arguments: Value) -> String {
        let result = self.call(tool, arguments.clone());
        assert_eq!(
            result["isError"],
            json!(true),
            "{tool}({arguments}) should fail: {result}"
        );
        result["content"][0]["text"]
            .as_str()
            .expect("error text")
            .to_string()
    }

    pub fn create_agent(&mut self, project_key: &str, name: &str) -> Value {
        self.call_ok(
            "create_agent",
            json!({"project_key": project_key, "name_hint": name}),
        )
    }

    pub fn send(&mut self, from: &str, to: &[&str], subject: &str, body: &str) -> Value {
        self.call_ok(
            "send_message",
            json!({"from_agent": from, "to": to, "subject": subject, "body": body}),
        )
    }

    pub fn inbox(&mut self, agent: &str) -> Vec<Value> {
        match self.call_ok("get_inbox", json!({"agent_name": agent})) {
            Value::Array(messages) => messages,
            other => panic!("inbox is not an array: {other}"),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Two names owned by different shards (of `shard_count`), for cross-shard tests.
pub fn names_on_different_shards(prefix: &str, shard_count: usize) -> (String, String) {
    let first = format!("{prefix}A");
    let owner = shards::owner_of(&first, shard_count);
    for i in 0..1000 {
        let candidate = format!("{prefix}B{i}");
        if shards::owner_of(&candidate, shard_count) != owner {
            return (first, candidate);
        }
    }
    panic!("no name on another shard");
}

/// Two distinct names owned by the same shard.
pub fn names_on_same_shard(prefix: &str, shard_count: usize) -> (String, String) {
    let first = format!("{prefix}A");
    let owner = shards::owner_of(&first, shard_count);
    for i in 0..1000 {
        let candidate = format!("{prefix}B{i}");
        if shards::owner_of(&candidate, shard_count) == owner {
            return (first, candidate);
        }
    }
    panic!("no name on the same shard");
}

/// Reads `stream` until `until` is in what arrived (or the server closes it).
pub fn read_until(stream: &mut TcpStream, mut text: String, until: &str) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 4096];
    while !text.contains(until) {
        assert!(Instant::now() < deadline, "no {until:?} in {text:?}");
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    text
}

/// The JSON of every `data:` line of an event stream.
pub fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("event JSON"))
        .collect()
}

/// The value of the sample named exactly `series` (with its labels) in a /metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

/// A raw 2026-07-28 `subscriptions/listen` request naming the resources `uris`, with these
/// extra header lines.
pub fn listen_request(id: u64, uris: &[String], headers: &[(&str, &str)]) -> String {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let body = json!({"jsonrpc":"2.0","id":id,"method":"subscriptions/listen",
        "params":{"_meta":meta,"notifications":{"toolsListChanged":true,"resourceSubscriptions":uris}}})
    .to_string();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    request
}
