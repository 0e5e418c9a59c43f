//! Start-up and shutdown of the real binary: exclusive port, config errors, signals.

mod common;

use common::{wait_with_deadline, Server};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_second_server_on_the_same_port_fails_with_address_in_use() {
    let server = Server::start();
    let output = Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--port", &server.addr.port().to_string(), "--shards", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run second server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("address in use")
            || stderr.contains("Address already in use"),
        "{stderr}"
    );
    // The first server is unaffected.
    assert_eq!(server.client().get("/health").status, 200);
}

#[test]
fn help_prints_usage_and_bad_flags_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_allman"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--port",
        "--shards",
        "--shard-cores",
        "--index-core",
        "--git-core",
        "INDEX_PATH",
        "REPO_ROOT",
        "RUST_LOG",
    ] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_allman"))
        .arg("--bogus")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bogus"));
    let output = Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--shard-cores", "9999"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn sigterm_closes_idle_connections_and_exits_zero() {
    let server = Server::start();
    let mut idle = server.client();
    assert_eq!(idle.get("/health").status, 200);
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(idle.is_closed_by_server());
}

#[test]
fn sigint_exits_zero() {
    let server = Server::start_with(&["--shards", "1"]);
    server.signal(libc::SIGINT);
    let mut child_status = None;
    for _ in 0..3000 {
        if server.client_probe_closed() {
            child_status = Some(());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child_status.is_some(),
        "server still accepting after SIGINT"
    );
    let status = server.stop_after_signal();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn in_flight_pipelined_requests_are_answered_before_exit() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Busy");
    // A burst of pipelined requests, then SIGTERM right away: everything already received must
    // still be answered (the connection closes after).
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"Busy","to":["Busy"]}}}"#;
    let one = format!(
        "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.send_raw(one.repeat(200).as_bytes());
    let first = client.read_response();
    assert_eq!(first.status, 200);
    server.signal(libc::SIGTERM);
    let mut answered = 1;
    while let Some(response) = client.try_read_response() {
        assert_eq!(response.status, 200);
        answered += 1;
    }
    assert_eq!(
        answered, 200,
        "every request read before the stop is answered"
    );
    let status = server.stop_after_signal();
    assert!(status.success());
}

trait StopHelpers {
    fn client_probe_closed(&self) -> bool;
    fn stop_after_signal(self) -> std::process::ExitStatus;
}

impl StopHelpers for Server {
    /// True once new connections are refused (the listener is closed).
    fn client_probe_closed(&self) -> bool {
        std::net::TcpStream::connect(self.addr).is_err()
    }

    fn stop_after_signal(self) -> std::process::ExitStatus {
        let mut server = self;
        let mut child = server.take_child();
        wait_with_deadline(&mut child, Duration::from_secs(30))
    }
}

#[test]
fn a_client_that_never_reads_cannot_hang_shutdown() {
    let server = Server::start_with(&["--shards", "2", "--shutdown-grace-ms", "300"]);
    let mut stuck = server.client();
    // Thousands of pipelined requests whose responses fill both socket buffers: the
    // connection's task stays blocked writing, past the shutdown grace period.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let one = format!(
        "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let burst = one.repeat(3000);
    let _ = std::io::Write::write_all(&mut stuck.stream, burst.as_bytes());
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_under_load_loses_no_accepted_message() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Loaded");
    client.create_agent("p", "Sink");
    // 300 sends and then a drain, pipelined on one connection, with SIGTERM in the middle:
    // every send that was answered must be in the drain's answer.
    let send = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"Loaded","to":["Sink"]}}}"#;
    let drain = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_inbox","arguments":{"agent_name":"Sink"}}}"#;
    let frame = |body: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut burst = frame(send).repeat(300);
    burst.push_str(&frame(drain));
    client.send_raw(burst.as_bytes());
    let first = client.read_response();
    assert_eq!(first.status, 200);
    server.signal(libc::SIGTERM);
    let mut sent_ids = vec![first.json()["result"]["structuredContent"]["id"].clone()];
    let mut drained: Option<Vec<serde_json::Value>> = None;
    while let Some(response) = client.try_read_response() {
        let value = response.json();
        let result = &value["result"]["structuredContent"];
        if value["id"] == 2 {
            drained = Some(result["messages"].as_array().expect("messages").clone());
        } else {
            sent_ids.push(result["id"].clone());
        }
    }
    let drained = drained.expect("the drain was answered before the server stopped");
    let drained_ids: Vec<serde_json::Value> = drained.iter().map(|m| m["id"].clone()).collect();
    assert_eq!(
        drained_ids, sent_ids,
        "every accepted message, exactly once, in order"
    );
    let status = server.stop_after_signal();
    assert!(status.success());
}
