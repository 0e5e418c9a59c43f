//! HTTP/1.1 behaviour over a real socket: routing, keep-alive, pipelining, framing, limits.

mod common;

use common::{Client, Server};
use std::io::{Read, Write};
use std::time::Duration;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[test]
fn health_answers_ok() {
    let server = Server::start();
    let response = server.client().get("/health");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "OK");
    assert!(response.header("date").is_some_and(|d| d.ends_with(" GMT")));
}

#[test]
fn head_health_has_length_but_no_body() {
    let server = Server::start();
    let mut client = server.client();
    client.send_raw(b"HEAD /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    // If HEAD had a body, the second response would be misparsed.
    let head = read_head_only(&mut client);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2"));
    let get = client.read_response();
    assert_eq!(get.text(), "OK");
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
    let server = Server::start();
    let mut client = server.client();
    assert_eq!(client.get("/nope").status, 404);
    client.send_raw(b"PUT /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, POST, DELETE"));
    let response = client.post("/health", b"");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    // Still usable afterwards: these are not framing errors.
    assert_eq!(client.get("/health").status, 200);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start();
    let mut client = server.client();
    for _ in 0..100 {
        assert_eq!(client.get("/health").text(), "OK");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let mut client = server.client();
    let ping = |id: u32| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        format!(
            "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut batch = String::new();
    for id in 0..20 {
        batch.push_str(&ping(id));
        batch.push_str("GET /nope HTTP/1.1\r\n\r\n");
    }
    client.send_raw(batch.as_bytes());
    for id in 0..20 {
        let response = client.read_response();
        assert_eq!(response.json()["id"], id);
        assert_eq!(client.read_response().status, 404);
    }
}

#[test]
fn request_split_across_many_packets_is_reassembled() {
    let server = Server::start();
    let mut client = server.client();
    let body = r#"{"jsonrpc":"2.0","id":"split","method":"ping"}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for byte in request.as_bytes() {
        client.stream.write_all(&[*byte]).expect("write");
        client.stream.flush().expect("flush");
    }
    let response = client.read_response();
    assert_eq!(response.json()["id"], "split");
}

#[test]
fn http10_and_connection_close_end_the_connection_after_the_response() {
    let server = Server::start();
    let mut client = server.client();
    client.send_raw(b"GET /health HTTP/1.0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.text(), "OK");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed_by_server());

    let mut client = server.client();
    client.send_raw(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
    assert!(client.is_closed_by_server());

    let mut client = server.client();
    client.send_raw(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("connection"),
        Some("keep-alive"),
        "HTTP/1.0 keep-alive is announced"
    );
    assert_eq!(client.get("/health").status, 200);
}

fn refused_with(server: &Server, raw: &[u8]) -> (u16, String) {
    let mut client = server.client();
    client.send_raw(raw);
    let response = client.read_response();
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "refusals close the connection"
    );
    assert!(client.is_closed_by_server());
    (response.status, response.text())
}

#[test]
fn every_limit_and_framing_error_has_its_status() {
    let server = Server::start_with(&["--shards", "2", "--max-body-bytes", "1024"]);
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    assert_eq!(refused_with(&server, huge_header.as_bytes()).0, 431);
    let many = format!("GET /health HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(65));
    assert_eq!(refused_with(&server, many.as_bytes()).0, 431);
    let (status, text) = refused_with(
        &server,
        b"POST /mcp HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
    );
    assert_eq!(status, 413);
    assert!(text.contains("1024"), "{text}");
    assert_eq!(refused_with(&server, b"POST /mcp HTTP/1.1\r\n\r\n").0, 411);
    let (status, text) = refused_with(
        &server,
        b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, 411);
    assert!(text.contains("Content-Length"), "{text}");
    assert_eq!(refused_with(&server, b"NOT HTTP AT ALL\r\n\r\n").0, 400);
    assert_eq!(
        refused_with(&server, b"POST /mcp HTTP/1.1\r\nContent-Length: x\r\n\r\n").0,
        400
    );
    // A body exactly at the limit is fine.
    let mut client = server.client();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "p".repeat(960)
    );
    assert!(body.len() <= 1024);
    assert_eq!(client.post("/mcp", body.as_bytes()).status, 200);
}

#[test]
fn a_bad_request_on_one_connection_leaves_others_working() {
    let server = Server::start();
    let mut good = server.client();
    assert_eq!(good.get("/health").status, 200);
    for _ in 0..10 {
        refused_with(&server, b"\x00\x01\x02garbage\r\n\r\n");
    }
    assert_eq!(good.get("/health").status, 200);
    assert_eq!(server.client().get("/health").status, 200);
}

#[test]
fn expect_100_continue_gets_continue_then_the_response() {
    let server = Server::start();
    let mut client = server.client();
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
    client.send_raw(
        format!(
            "POST /mcp HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut client.stream, &mut interim).expect("read 100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send_raw(body.as_bytes());
    assert_eq!(client.read_response().json()["id"], 9);
}

#[test]
fn large_body_up_to_the_default_limit_is_accepted() {
    let server = Server::start();
    let mut client = server.client();
    let padding = "x".repeat(1000 * 1000);
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{padding}"}}}}"#);
    let response = client.post("/mcp", body.as_bytes());
    assert_eq!(response.status, 200);
    // The connection's buffers shrink back and it keeps working.
    assert_eq!(client.get("/health").status, 200);
}

#[test]
fn connections_over_the_limit_get_503_and_the_slot_frees_on_close() {
    let server = Server::start_with(&["--shards", "2", "--max-connections", "2"]);
    let mut first = server.client();
    let mut second = server.client();
    assert_eq!(first.get("/health").status, 200);
    assert_eq!(second.get("/health").status, 200);
    let mut third = server.client();
    let response = third.read_response();
    assert_eq!(response.status, 503);
    assert!(response.text().contains("too many open connections"));
    assert!(third.is_closed_by_server());
    drop(first);
    // The freed slot is reusable once the server has seen the close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut retry = server.client();
        retry.send_raw(b"GET /health HTTP/1.1\r\n\r\n");
        if retry.read_response().status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(second.get("/health").status, 200);
}

/// Reads a response to HEAD: headers only, whatever Content-Length says. Reads byte by byte
/// straight from the socket so nothing of the next response is consumed.
fn read_head_only(client: &mut Client) -> common::Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut client.stream, &mut byte).expect("read head");
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).expect("ascii");
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    common::Response {
        status,
        headers,
        body: Vec::new(),
    }
}

#[test]
fn a_client_trickling_a_request_gets_408_and_is_closed() {
    let server = Server::start_with(&["--shards", "2", "--request-timeout-ms", "300"]);
    let mut slow = server.client();
    slow.send_raw(b"POST /mcp HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"partial\":");
    let response = slow.read_response();
    assert_eq!(response.status, 408);
    assert!(slow.is_closed_by_server());
    // A header section that never ends is cut off the same way.
    let mut slower = server.client();
    slower.send_raw(b"GET /health HTTP/1.1\r\nX-Slow: 1\r\n");
    assert_eq!(slower.read_response().status, 408);
    // Others are unaffected.
    assert_eq!(server.client().get("/health").status, 200);
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start_with(&["--shards", "2", "--idle-timeout-ms", "300"]);
    let mut idle = server.client();
    assert_eq!(idle.get("/health").status, 200);
    // Blocks until the server closes it (bounded by the client's own 30 s read timeout).
    assert!(idle.is_closed_by_server());
}

#[test]
fn close_wins_over_keep_alive_in_any_connection_header() {
    let server = Server::start();
    let mut client = server.client();
    client.send_raw(b"GET /health HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed_by_server());
}

#[test]
fn http10_expect_continue_gets_no_100() {
    let server = Server::start();
    let mut client = server.client();
    let head = format!(
        "POST /mcp HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        PING.len()
    );
    client.send_raw(head.as_bytes());
    // An HTTP/1.0 client sends its body without waiting; we must not interleave a 100.
    std::thread::sleep(Duration::from_millis(100));
    client.send_raw(PING.as_bytes());
    let mut raw = Vec::new();
    client.stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
}

#[test]
fn two_host_headers_are_a_400() {
    let server = Server::start();
    let mut client = server.client();
    client.send_raw(b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 400);
    assert!(response.text().contains("Host"), "{}", response.text());
}
