//! MCP over JSON-RPC 2.0 at POST /mcp: lifecycle, tools/list, error codes, batches.

mod common;

use common::Server;
use serde_json::{json, Value};

fn post_json(server: &Server, body: &str) -> common::Response {
    server.client().post("/mcp", body.as_bytes())
}

#[test]
fn initialize_negotiates_the_protocol_version() {
    let server = Server::start();
    let mut client = server.client();
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let response = client.rpc(
            "initialize",
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        );
        let result = &response["result"];
        assert_eq!(result["protocolVersion"], version);
        assert_eq!(
            result["capabilities"],
            json!({"tools": {}, "resources": {"subscribe": true, "listChanged": false},
                "experimental": {"claude/channel": {}}})
        );
        assert_eq!(result["serverInfo"]["name"], "allman");
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    }
    let response = client.rpc(
        "initialize",
        json!({"protocolVersion": "2024-01-01", "capabilities": {}}),
    );
    assert_eq!(
        response["result"]["protocolVersion"], "2025-11-25",
        "unknown version -> our latest"
    );
    let response = client.rpc("initialize", json!({"capabilities": {}}));
    assert_eq!(response["error"]["code"], -32602);
}

#[test]
fn notifications_and_client_responses_get_202_without_body() {
    let server = Server::start();
    for body in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        r#"{"jsonrpc":"2.0","method":"some/unknown/notification"}"#,
        r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":6,"error":{"code":1,"message":"x"}}"#,
    ] {
        let response = post_json(&server, body);
        assert_eq!(response.status, 202, "{body}");
        assert!(response.body.is_empty(), "{body}");
    }
}

#[test]
fn ping_answers_an_empty_object_and_string_ids_are_echoed() {
    let server = Server::start();
    let response = post_json(&server, r#"{"jsonrpc":"2.0","id":"abc-1","method":"ping"}"#);
    assert_eq!(
        response.json(),
        json!({"jsonrpc": "2.0", "id": "abc-1", "result": {}})
    );
}

#[test]
fn tools_list_describes_every_tool_with_schemas() {
    let server = Server::start();
    let response = server.client().rpc("tools/list", json!({}));
    let tools = response["result"]["tools"]
        .as_array()
        .expect("tools")
        .clone();
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    for expected in ["create_agent", "send_message", "get_inbox"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for tool in &tools {
        assert_eq!(tool["inputSchema"]["type"], "object");
        assert!(tool["inputSchema"]["required"].is_array());
    }
    let send = tools
        .iter()
        .find(|t| t["name"] == "send_message")
        .expect("send_message");
    assert_eq!(send["inputSchema"]["properties"]["to"]["type"], "array");
}

fn error_of(response: &common::Response) -> (Value, i64) {
    let value = response.json();
    (
        value["id"].clone(),
        value["error"]["code"].as_i64().expect("error code"),
    )
}

#[test]
fn every_json_rpc_error_code() {
    let server = Server::start();
    let cases: &[(&str, u16, Value, i64)] = &[
        ("{not json", 400, Value::Null, -32700),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
            400,
            Value::Null,
            -32700,
        ),
        ("\"just a string\"", 400, Value::Null, -32600),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            400,
            json!(1),
            -32600,
        ),
        (r#"{"jsonrpc":"2.0","id":2}"#, 400, json!(2), -32600),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            400,
            Value::Null,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#,
            200,
            json!(3),
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call"}"#,
            200,
            json!(4),
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}"#,
            200,
            json!(5),
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nope"}}"#,
            200,
            json!(6),
            -32602,
        ),
        // A 2026-07-28 method belongs to that era, which needs `_meta` (tests/stateless.rs).
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"server/discover"}"#,
            400,
            json!(7),
            -32602,
        ),
    ];
    for (body, status, id, code) in cases {
        let response = post_json(&server, body);
        assert_eq!(response.status, *status, "{body}: {}", response.text());
        assert_eq!(error_of(&response), (id.clone(), *code), "{body}");
    }
    let response = server.client().post("/mcp", b"\xff\xfe{}");
    assert_eq!(error_of(&response).1, -32700);
}

#[test]
fn batches_answer_requests_in_order_and_skip_notifications() {
    let server = Server::start();
    let body = r#"[
        {"jsonrpc":"2.0","id":1,"method":"ping"},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":2,"method":"nope"},
        {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_inbox","arguments":{"agent_name":"Nobody"}}},
        42
    ]"#;
    let response = post_json(&server, body);
    assert_eq!(response.status, 200);
    let items = response.json();
    let items = items.as_array().expect("array");
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["result"], json!({}));
    assert_eq!(items[1]["error"]["code"], -32601);
    assert_eq!(items[2]["result"]["isError"], true);
    assert_eq!(items[3]["error"]["code"], -32600);
    assert_eq!(items[3]["id"], Value::Null);

    let only_notifications = r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b"}]"#;
    let response = post_json(&server, only_notifications);
    assert_eq!(response.status, 202);
    assert!(response.body.is_empty());

    let response = post_json(&server, "[]");
    assert_eq!(error_of(&response).1, -32600);
}

#[test]
fn deeply_nested_or_odd_json_never_breaks_the_server() {
    let server = Server::start();
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // (body, status, JSON-RPC error code at the top level or in the batch's only answer)
    let cases: [(&str, u16, Option<i64>); 5] = [
        // A batch whose one entry is an array, not an object.
        (nested.as_str(), 200, Some(-32600)),
        (
            r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#,
            400,
            Some(-32600),
        ),
        // Valid JSON-RPC whose arguments are wrong: a tool error, not a protocol error.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_message","arguments":{"from_agent":"\u0000","to":["\ud800"]}}}"#,
            200,
            None,
        ),
        ("", 400, Some(-32700)),
        ("null", 400, Some(-32600)),
    ];
    for (body, status, code) in cases {
        let response = post_json(&server, body);
        assert_eq!(response.status, status, "{}", &body[..body.len().min(80)]);
        let value = response.json();
        let answer = if value.is_array() { &value[0] } else { &value };
        match code {
            Some(code) => assert_eq!(answer["error"]["code"], code, "{value}"),
            None => assert_eq!(answer["result"]["isError"], true, "{value}"),
        }
    }
    assert_eq!(server.client().get("/health").status, 200);
}
