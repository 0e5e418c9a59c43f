//! MCP 2026-07-28 on the same `/mcp` as the 2025 lifecycle: stateless requests with their own
//! `_meta`, `server/discover`, the header rules, the revision's error codes and statuses,
//! result members, tool annotations and `subscriptions/listen`.

mod common;

use common::{events, read_until, Client, Response, Server};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const VERSION: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    })
}

/// POSTs a JSON-RPC request with exactly these header lines (besides length and types).
fn post_with(client: &mut Client, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![
        ("Host", "localhost"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    client.post_with_headers("/mcp", &all, body.to_string().as_bytes())
}

/// A 2026-07-28 request as a conforming client sends it: `_meta`, and the three headers
/// taken from the body.
fn request(client: &mut Client, id: u64, method: &str, mut params: Value) -> Response {
    params["_meta"] = meta();
    let mut headers = vec![("MCP-Protocol-Version", VERSION), ("Mcp-Method", method)];
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = &name {
        headers.push(("Mcp-Name", name));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    post_with(client, &headers, &body)
}

fn call(client: &mut Client, id: u64, tool: &str, arguments: Value) -> Value {
    let response = request(
        client,
        id,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let value = response.json();
    assert_eq!(value["id"], id);
    let result = value["result"].clone();
    assert_eq!(result["resultType"], "complete", "{value}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "allman"
    );
    result
}

fn error(response: &Response) -> (u16, i64, Value) {
    let value = response.json();
    (
        response.status,
        value["error"]["code"].as_i64().expect("an error code"),
        value,
    )
}

#[test]
fn discover_answers_without_a_handshake() {
    let server = Server::start();
    let mut client = server.client();
    let response = request(&mut client, 1, "server/discover", json!({}));
    assert_eq!(response.status, 200, "{}", response.text());
    let result = response.json()["result"].clone();
    assert_eq!(
        result["supportedVersions"],
        json!(["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"])
    );
    assert_eq!(
        result["capabilities"],
        json!({"tools": {}, "prompts": {}, "resources": {"subscribe": true}})
    );
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["cacheScope"], "public");
    assert!(result["ttlMs"].as_u64().is_some());
    let info = &result["_meta"]["io.modelcontextprotocol/serverInfo"];
    assert_eq!(info["name"], "allman");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let instructions = result["instructions"].as_str().expect("instructions");
    for group in [
        "create_agent",
        "send_message",
        "fetch_inbox",
        "wait_for_mail",
        "reply_message",
        "acknowledge_message",
        "file_reservation_paths",
        "search_messages",
    ] {
        assert!(instructions.contains(group), "instructions name {group}");
    }
    // clientInfo is optional.
    let mut bare = meta();
    bare.as_object_mut()
        .expect("object")
        .remove("io.modelcontextprotocol/clientInfo");
    let body = json!({"jsonrpc":"2.0","id":2,"method":"server/discover","params":{"_meta": bare}});
    let response = post_with(
        &mut client,
        &[
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "server/discover"),
        ],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn the_seed_tools_work_statelessly_and_the_2025_lifecycle_beside_them() {
    let server = Server::start();
    let mut client = server.client();
    let created = call(
        &mut client,
        1,
        "create_agent",
        json!({"project_key": "era", "name_hint": "Modern"}),
    );
    assert_eq!(created["isError"], false);
    assert_eq!(created["structuredContent"]["name"], "Modern");
    // A 2025 client registers the other agent on the same server, same connection.
    let mut old = server.client();
    old.rpc(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}}),
    );
    old.create_agent("era", "Classic");
    let sent = call(
        &mut client,
        2,
        "send_message",
        json!({"from_agent": "Modern", "to": ["Classic"], "subject": "hi", "body": "from 2026"}),
    );
    assert_eq!(sent["structuredContent"]["status"], "sent");
    let drained = old.inbox("Classic");
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0]["body"], "from 2026");
    old.send("Classic", &["Modern"], "re", "from 2025");
    let inbox = call(&mut client, 3, "get_inbox", json!({"agent_name": "Modern"}));
    let messages = inbox["structuredContent"]["messages"]
        .as_array()
        .expect("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["body"], "from 2025");
    // The text content carries the same JSON (the seed shape, a bare array).
    let text: Value = serde_json::from_str(inbox["content"][0]["text"].as_str().expect("text"))
        .expect("text is JSON");
    assert_eq!(text, json!(messages));
    // A tool error is a result with isError, still a complete result.
    let failed = call(&mut client, 4, "get_inbox", json!({"agent_name": "Nobody"}));
    assert_eq!(failed["isError"], true);
}

#[test]
fn tools_list_carries_annotations_and_cache_hints_in_a_stable_order() {
    let server = Server::start();
    let mut client = server.client();
    let first = request(&mut client, 1, "tools/list", json!({})).json()["result"].clone();
    assert_eq!(first["resultType"], "complete");
    assert_eq!(first["cacheScope"], "public");
    assert!(first["ttlMs"].as_u64().is_some());
    let second = request(&mut client, 2, "tools/list", json!({})).json()["result"].clone();
    assert_eq!(first["tools"], second["tools"], "deterministic");
    let tools = first["tools"].as_array().expect("tools");
    let flags = |name: &str| {
        let tool = tools.iter().find(|t| t["name"] == name).expect(name);
        let a = &tool["annotations"];
        assert_eq!(a["title"], tool["title"], "{name}");
        assert_eq!(a["openWorldHint"], false, "{name}");
        (
            a["readOnlyHint"].as_bool().expect("readOnlyHint"),
            a["destructiveHint"].as_bool().expect("destructiveHint"),
            a["idempotentHint"].as_bool().expect("idempotentHint"),
        )
    };
    // (read-only, destructive, idempotent), stated per tool.
    let expected = [
        ("create_agent", (false, false, true)),
        ("send_message", (false, false, false)),
        ("get_inbox", (false, true, false)),
        ("search_messages", (true, false, true)),
        ("fetch_inbox", (true, false, true)),
        ("wait_for_mail", (true, false, true)),
        ("reply_message", (false, false, false)),
        ("acknowledge_message", (false, false, true)),
        ("mark_message_read", (false, false, true)),
        ("get_thread", (true, false, true)),
        ("list_agents", (true, false, true)),
        ("file_reservation_paths", (false, false, false)),
        ("release_file_reservations", (false, true, true)),
        ("renew_file_reservations", (false, false, false)),
        ("check_file_reservation_conflicts", (true, false, true)),
        ("list_file_reservations", (true, false, true)),
        ("force_release_file_reservation", (false, true, true)),
    ];
    assert_eq!(tools.len(), expected.len());
    for (name, hints) in expected {
        assert_eq!(flags(name), hints, "{name}");
    }
    // The 2025 era lists the same tools with the same annotations.
    let legacy = server.client().rpc("tools/list", json!({}));
    assert_eq!(legacy["result"]["tools"], first["tools"]);
    // Honest lists: no prompts; no inbox resource for a client bound to no agent; one
    // template, the inbox's.
    for (method, key, length) in [
        ("prompts/list", "prompts", 0),
        ("resources/list", "resources", 0),
        ("resources/templates/list", "resourceTemplates", 1),
    ] {
        let result = request(&mut client, 9, method, json!({})).json()["result"].clone();
        assert_eq!(
            result[key].as_array().map(Vec::len),
            Some(length),
            "{method}"
        );
        assert_eq!(result["cacheScope"], "public", "{method}");
    }
    let response = request(&mut client, 10, "resources/read", json!({"uri": "x://y"}));
    assert_eq!(error(&response).1, -32602);
}

#[test]
fn a_request_without_its_meta_is_invalid_params_with_400() {
    let server = Server::start();
    let mut client = server.client();
    let headers = [
        ("MCP-Protocol-Version", VERSION),
        ("Mcp-Method", "server/discover"),
    ];
    let no_version = json!({"io.modelcontextprotocol/clientCapabilities": {}});
    let no_capabilities = json!({"io.modelcontextprotocol/protocolVersion": VERSION});
    for (id, params) in [
        (101, json!({})),
        (102, json!({"_meta": no_version})),
        (104, json!({"_meta": no_capabilities})),
    ] {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"server/discover","params":params});
        let (status, code, value) = error(&post_with(&mut client, &headers, &body));
        assert_eq!((status, code), (400, -32602), "{value}");
        assert_eq!(value["id"], id, "the id is kept");
    }
}

#[test]
fn headers_must_agree_with_the_body() {
    let server = Server::start();
    let mut client = server.client();
    let mut params = json!({"_meta": meta()});
    let list = json!({"jsonrpc":"2.0","id":5,"method":"tools/list","params": params.clone()});
    let cases: [(&[(&str, &str)], u16); 6] = [
        (&[("MCP-Protocol-Version", VERSION)], 400), // no Mcp-Method
        (
            &[
                ("MCP-Protocol-Version", VERSION),
                ("Mcp-Method", "prompts/list"),
            ],
            400,
        ),
        (
            &[
                ("MCP-Protocol-Version", VERSION),
                ("Mcp-Method", "TOOLS/LIST"),
            ],
            400,
        ),
        (
            &[
                ("MCP-Protocol-Version", VERSION),
                ("mcp-method", "tools/list"),
            ],
            200,
        ),
        (
            &[
                ("MCP-Protocol-Version", VERSION),
                ("MCP-METHOD", "  tools/list  "),
            ],
            200,
        ),
        (&[("Mcp-Method", "tools/list")], 400), // no version header, _meta has one
    ];
    for (headers, status) in cases {
        let response = post_with(&mut client, headers, &list);
        assert_eq!(response.status, status, "{headers:?}: {}", response.text());
        if status == 400 {
            assert_eq!(error(&response).1, -32020, "{headers:?}");
            assert_eq!(response.json()["id"], 5);
        }
    }
    // The version header against _meta's version.
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let body = json!({"jsonrpc":"2.0","id":6,"method":"tools/list","params": params});
    let response = post_with(
        &mut client,
        &[
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "tools/list"),
        ],
        &body,
    );
    assert_eq!(error(&response).0, 400);
    assert_eq!(error(&response).1, -32020);
    // Mcp-Name for tools/call: missing, wrong, padded, base64.
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"list_agents","arguments":{"project":"none"},"_meta":meta()}});
    let with_name = |name: Option<&'static str>| -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "tools/call"),
        ];
        headers.extend(name.map(|n| ("Mcp-Name", n)));
        headers
    };
    for (name, status) in [
        (None, 400),
        (Some("wrong_tool"), 400),
        (Some("  list_agents  "), 200),
        (Some("=?base64?bGlzdF9hZ2VudHM=?="), 200),
    ] {
        let response = post_with(&mut client, &with_name(name), &call);
        assert_eq!(response.status, status, "{name:?}: {}", response.text());
        if status == 400 {
            assert_eq!(error(&response).1, -32020);
        } else {
            assert!(
                response.json().get("error").is_none(),
                "{}",
                response.text()
            );
        }
    }
}

#[test]
fn an_unsupported_version_lists_what_is_spoken() {
    let server = Server::start();
    let mut client = server.client();
    let mut meta = meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let body = json!({"jsonrpc":"2.0","id":301,"method":"server/discover","params":{"_meta":meta}});
    let response = post_with(
        &mut client,
        &[
            ("MCP-Protocol-Version", "v999.0.0"),
            ("Mcp-Method", "server/discover"),
        ],
        &body,
    );
    let (status, code, value) = error(&response);
    assert_eq!((status, code), (400, -32022), "{value}");
    assert_eq!(value["id"], 301);
    assert_eq!(value["error"]["data"]["requested"], "v999.0.0");
    assert_eq!(
        value["error"]["data"]["supported"],
        json!(["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"])
    );
}

#[test]
fn removed_and_unknown_methods_are_404_with_method_not_found() {
    let server = Server::start();
    let mut client = server.client();
    for method in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "unknown/method",
    ] {
        let response = request(&mut client, 500, method, json!({}));
        let (status, code, value) = error(&response);
        assert_eq!((status, code), (404, -32601), "{method}: {value}");
        assert_eq!(value["id"], 500);
    }
    // Batches are not part of the revision.
    let batch = json!([{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":meta()}}]);
    let response = post_with(
        &mut client,
        &[
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "tools/list"),
        ],
        &batch,
    );
    assert_eq!(error(&response).0, 400);
    // Notifications are accepted without an answer.
    let notification = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":1,"_meta":meta()}});
    let response = post_with(
        &mut client,
        &[
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "notifications/cancelled"),
        ],
        &notification,
    );
    assert_eq!(response.status, 202);
}

/// Opens a listen stream on a fresh connection and returns it with what arrived so far once
/// `until` is in it.
fn open_listen(server: &Server, id: u64, until: &str) -> (TcpStream, String) {
    open_listen_with(server, id, "", "", until)
}

/// The same, with `padding` inside the params and `trailing` bytes sent after the request.
fn open_listen_with(
    server: &Server,
    id: u64,
    padding: &str,
    trailing: &str,
    until: &str,
) -> (TcpStream, String) {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"subscriptions/listen",
        "params":{"_meta":meta(),"notifications":{"toolsListChanged":true},"padding":padding}})
    .to_string();
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {VERSION}\r\n\
         Mcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n\r\n{body}{trailing}",
        body.len()
    )
    .expect("write");
    let text = read_until(&mut stream, String::new(), until);
    (stream, text)
}

#[test]
fn listen_acknowledges_first_stays_open_and_ends_with_its_result_on_sigterm() {
    let server = Server::start_with(&["--shards", "1"]);
    let (mut stream, head) = open_listen(&server, 42, "\n\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(!head.contains("Content-Length"), "{head}");
    let ack = &events(&head)[0];
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        42
    );
    // No list of allman's changes: nothing is promised, nothing else is sent.
    assert_eq!(ack["params"]["notifications"], json!({}));
    // Other requests are served meanwhile.
    let mut client = server.client();
    let response = request(&mut client, 1, "tools/list", json!({}));
    assert_eq!(response.status, 200);
    let mut server = server;
    server.signal(libc::SIGTERM);
    let text = read_until(&mut stream, head, "\"result\"");
    let all = events(&text);
    assert_eq!(all.len(), 2, "{text}");
    assert_eq!(all[1]["id"], 42);
    assert_eq!(all[1]["result"]["resultType"], "complete");
    assert_eq!(
        all[1]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        42
    );
    let status = common::wait_with_deadline(&mut server.take_child(), Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

#[test]
fn listen_streams_are_bounded_per_shard_and_a_hang_up_frees_the_slot() {
    let server = Server::start_with(&["--shards", "1", "--max-waiters", "1"]);
    // A request larger than 4 KiB would hold its buffer (and read budget) for the stream's life.
    let (_big, refused) = open_listen_with(&server, 9, &"x".repeat(5000), "", "}}");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(refused.contains("-32602"), "{refused}");
    // Bytes after the request (a stray CRLF, a pipelined request), sent with it or while the
    // stream runs, do not hide the hang-up.
    let pipelined = "\r\nPOST /mcp HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    let (mut first, _) = open_listen_with(&server, 1, "", pipelined, "\n\n");
    first.write_all(b"\r\n").expect("write after the request");
    std::thread::sleep(Duration::from_millis(50));
    let (_second, refused) = open_listen(&server, 2, "}}");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("listen streams"), "{refused}");
    drop(first);
    // The slot comes back once the server sees the hang-up.
    let deadline = Instant::now() + common::IO_TIMEOUT;
    loop {
        let (_stream, text) = open_listen(&server, 3, "\r\n\r\n");
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
