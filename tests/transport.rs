//! MCP Streamable HTTP transport rules over raw HTTP: status codes, headers and bodies.

mod common;

use common::{Client, Response, Server};
use serde_json::Value;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// POSTs `body` to /mcp with exactly these extra header lines. A refusal closes the
/// connection (its body is never read), so the client then reconnects for the next request.
fn post(client: &mut Client, headers: &[(&str, &str)], body: &str) -> Response {
    let response = client.post_with_headers("/mcp", headers, body.as_bytes());
    // Transport refusals are decided on the head; a version refusal needs the body (initialize
    // is exempt) and keeps the connection.
    if [401, 403, 406, 415].contains(&response.status) {
        assert_eq!(
            response.header("connection"),
            Some("close"),
            "a refused request closes its connection"
        );
        assert!(client.is_closed_by_server());
        let addr = client.stream.peer_addr().expect("peer");
        *client = Client::connect(addr);
    }
    response
}

fn error_message(response: &Response) -> String {
    let value: Value = response.json();
    value["error"]["message"]
        .as_str()
        .expect("error message")
        .to_string()
}

#[test]
fn get_and_delete_on_mcp_need_a_session_and_other_methods_are_405() {
    let server = Server::start();
    // A refusal on the head closes the connection: one client each.
    let status = |request: &str| {
        let mut client = server.client();
        client.send_raw(request.as_bytes());
        let response = client.read_response();
        (
            response.status,
            response.header("allow").map(str::to_string),
        )
    };
    // GET is a session's event stream: the client must accept one, and name its session.
    let get = "GET /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status(get), (406, None));
    let get = "GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n";
    assert_eq!(status(get), (400, None));
    let get = format!(
        "GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {}\r\n\r\n",
        "0".repeat(32)
    );
    assert_eq!(status(&get), (404, None));
    let delete = "DELETE /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status(delete), (404, None));
    let put = "PUT /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status(put), (405, Some("GET, POST, DELETE".to_string())));
}

#[test]
fn requests_get_json_and_notifications_get_202() {
    let server = Server::start();
    let mut client = server.client();
    let response = post(&mut client, &[("Content-Type", "application/json")], PING);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let response = post(
        &mut client,
        &[],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(response.status, 202);
    assert!(response.body.is_empty());
    assert_eq!(response.header("content-type"), None);
}

#[test]
fn protocol_version_header_is_checked_after_initialize() {
    let server = Server::start();
    let mut client = server.client();
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let response = post(&mut client, &[("MCP-Protocol-Version", version)], PING);
        assert_eq!(response.status, 200, "{version}");
    }
    // Missing: treated as 2025-03-26.
    assert_eq!(post(&mut client, &[], PING).status, 200);
    for bad in ["1999-01-01", "garbage", "2025-06-18x"] {
        let response = post(&mut client, &[("MCP-Protocol-Version", bad)], PING);
        assert_eq!(response.status, 400, "{bad}");
        assert!(error_message(&response).contains("MCP-Protocol-Version"));
    }
    // initialize itself is how a client learns our versions: never refused for the header.
    let response = post(
        &mut client,
        &[("MCP-Protocol-Version", "1999-01-01")],
        INITIALIZE,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["result"]["protocolVersion"], "2025-06-18");
    // Under 2026-07-28 (tests/stateless.rs has the whole era) a request without its `_meta`
    // is an invalid-params refusal that keeps the request id; `ping` is a method that era
    // removed, but the envelope is checked first.
    let discover = r#"{"jsonrpc":"2.0","id":3,"method":"server/discover","params":{}}"#;
    let response = post(
        &mut client,
        &[("MCP-Protocol-Version", "2026-07-28")],
        discover,
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["code"], -32602);
    assert_eq!(response.json()["id"], 3);
    let response = post(&mut client, &[("MCP-Protocol-Version", "2026-07-28")], PING);
    assert_eq!(
        response.json()["id"],
        1,
        "the refusal echoes the request id"
    );
    let only_initialize = format!("[{INITIALIZE}]");
    let response = post(
        &mut client,
        &[("MCP-Protocol-Version", "nope")],
        &only_initialize,
    );
    assert_eq!(
        response.status, 200,
        "a batch of initialize alone is answered"
    );
    let batch = format!("[{PING}]");
    assert_eq!(
        post(&mut client, &[("MCP-Protocol-Version", "nope")], &batch).status,
        400
    );
}

#[test]
fn foreign_origins_get_403_and_local_ones_pass() {
    let server = Server::start();
    let mut client = server.client();
    for origin in [
        "http://localhost:3000",
        "http://127.0.0.1:8000",
        "https://localhost",
    ] {
        assert_eq!(
            post(&mut client, &[("Origin", origin)], PING).status,
            200,
            "{origin}"
        );
    }
    for origin in [
        "https://evil.example",
        "null",
        "http://localhost.evil.example",
    ] {
        let response = post(&mut client, &[("Origin", origin)], PING);
        assert_eq!(response.status, 403, "{origin}");
        assert!(error_message(&response).contains("Origin"));
    }
    // /health is not guarded.
    client.send_raw(b"GET /health HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn allowed_origins_and_hosts_are_configurable() {
    let server = Server::start_with(&[
        "--shards",
        "1",
        "--allowed-origins",
        "https://app.example.com, https://other.example",
        "--allowed-hosts",
        "mail.internal",
    ]);
    let mut client = server.client();
    assert_eq!(
        post(&mut client, &[("Origin", "https://app.example.com")], PING).status,
        200
    );
    assert_eq!(
        post(&mut client, &[("Origin", "https://third.example")], PING).status,
        403
    );
    assert_eq!(
        post(&mut client, &[("Host", "mail.internal:8000")], PING).status,
        200
    );
}

#[test]
fn non_local_host_is_refused_on_loopback_dns_rebinding() {
    let server = Server::start();
    let mut client = server.client();
    for host in ["localhost:8000", "127.0.0.1", "[::1]:8000"] {
        assert_eq!(
            post(&mut client, &[("Host", host)], PING).status,
            200,
            "{host}"
        );
    }
    for host in [
        "evil.example",
        "attacker.example:8000",
        "127.0.0.1.evil.example",
    ] {
        let response = post(&mut client, &[("Host", host)], PING);
        assert_eq!(response.status, 403, "{host}");
        assert!(error_message(&response).contains("Host"));
    }
}

#[test]
fn media_types_are_enforced_with_406_and_415() {
    let server = Server::start();
    let mut client = server.client();
    let ok = post(
        &mut client,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Accept", "application/json, text/event-stream"),
        ],
        PING,
    );
    assert_eq!(ok.status, 200);
    assert_eq!(post(&mut client, &[("Accept", "*/*")], PING).status, 200);
    assert_eq!(
        post(&mut client, &[("Content-Type", "text/plain")], PING).status,
        415
    );
    assert_eq!(
        post(
            &mut client,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            PING
        )
        .status,
        415
    );
    assert_eq!(
        post(&mut client, &[("Accept", "text/event-stream")], PING).status,
        406
    );
}

#[test]
fn bearer_token_guards_mcp_but_not_health() {
    let server = Server::start_with(&["--shards", "1", "--token", "s3cret-token"]);
    let mut client = server.client();
    let response = post(&mut client, &[], PING);
    assert_eq!(response.status, 401);
    assert!(response
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    assert_eq!(
        post(&mut client, &[("Authorization", "Bearer wrong")], PING).status,
        401
    );
    assert_eq!(
        post(
            &mut client,
            &[("Authorization", "Bearer s3cret-token")],
            PING
        )
        .status,
        200
    );
    assert_eq!(client.get("/health").status, 200);
}

#[test]
fn later_protocol_methods_are_plain_method_not_found() {
    let server = Server::start();
    let mut client = server.client();
    let response = post(
        &mut client,
        &[("MCP-Protocol-Version", "2025-11-25")],
        r#"{"jsonrpc":"2.0","id":9,"method":"server/discover","params":{}}"#,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["error"]["code"], -32601);
}
