//! New mail reaches a client by itself: inboxes as MCP resources (`allman://inbox/{agent}`),
//! a 2025 session's subscriptions and `GET /mcp` event stream, a 2026-07-28
//! `subscriptions/listen` stream naming inbox resources, and Claude Code channel messages,
//! with their tokens and bounds.

mod common;

use common::{events, listen_request, metric, read_until, Client, Server};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const STATELESS: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// `initialize` and the session id it gave.
fn initialize(client: &mut Client) -> String {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize",
        "params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response = client.post("/mcp", body.to_string().as_bytes());
    assert_eq!(response.status, 200);
    let value = response.json();
    assert_eq!(
        value["result"]["capabilities"]["resources"]["subscribe"],
        true
    );
    assert_eq!(
        value["result"]["capabilities"]["experimental"]["claude/channel"],
        json!({})
    );
    let session = response.header("mcp-session-id").expect("a session id");
    assert_eq!(session.len(), 32, "{session}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    session.to_string()
}

/// A 2025 request with these extra header lines.
fn rpc_2025(client: &mut Client, headers: &[(&str, &str)], method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc":"2.0","id":7,"method":method,"params":params}).to_string();
    let mut all = vec![
        ("Host", "localhost"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    all.extend_from_slice(headers);
    let response = client.post_with_headers("/mcp", &all, body.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// A 2026-07-28 request with these extra header lines.
fn rpc_2026(client: &mut Client, headers: &[(&str, &str)], method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = meta();
    let body = json!({"jsonrpc":"2.0","id":8,"method":method,"params":params}).to_string();
    let uri = params["uri"].as_str().map(str::to_string);
    let mut all = vec![
        ("Host", "localhost"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", STATELESS),
        ("Mcp-Method", method),
    ];
    if let Some(uri) = &uri {
        all.push(("Mcp-Name", uri));
    }
    all.extend_from_slice(headers);
    let response = client.post_with_headers("/mcp", &all, body.as_bytes());
    response.json()
}

/// The summary a `resources/read` result carries.
fn summary(result: &Value) -> Value {
    let content = &result["result"]["contents"][0];
    assert_eq!(content["mimeType"], "application/json");
    serde_json::from_str(content["text"].as_str().expect("text")).expect("summary JSON")
}

/// Opens `GET /mcp` for `session` with these extra header lines; returns the stream and what
/// arrived once the head (and the first comment) did.
fn open_session_stream(
    server: &Server,
    session: &str,
    headers: &[(&str, &str)],
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut request = format!(
        "GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let text = read_until(&mut stream, String::new(), "\r\n\r\n");
    (stream, text)
}

/// Opens a `subscriptions/listen` stream naming these inbox resources.
fn open_listen(
    server: &Server,
    id: u64,
    uris: &[String],
    headers: &[(&str, &str)],
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let request = listen_request(id, uris, headers);
    stream.write_all(request.as_bytes()).expect("write");
    // A refusal is a JSON body; a stream starts with its acknowledgement event.
    let text = read_until(&mut stream, String::new(), "}");
    let text = if text.contains("text/event-stream") {
        read_until(&mut stream, text, "}\n\n")
    } else {
        text
    };
    (stream, text)
}

fn inbox(agent: &str) -> String {
    format!("allman://inbox/{agent}")
}

fn send(client: &mut Client, from: &str, to: &str, subject: &str) -> String {
    client.send(from, &[to], subject, "body")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// The events that arrived on `stream` until one whose text holds `until`.
fn events_until(stream: &mut TcpStream, until: &str) -> Vec<Value> {
    events(&read_until(stream, String::new(), until))
}

#[test]
fn an_inbox_reads_as_a_summary_in_both_eras_and_nothing_is_drained() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("proj", "Blue");
    client.create_agent("proj", "Green");
    send(&mut client, "Green", "Blue", "first");
    let second = send(&mut client, "Green", "Blue", "second");
    let session = initialize(&mut client);
    let templates = rpc_2025(&mut client, &[], "resources/templates/list", json!({}));
    assert_eq!(
        templates["result"]["resourceTemplates"][0]["uriTemplate"],
        "allman://inbox/{agent_name}"
    );
    let read = rpc_2025(
        &mut client,
        &[],
        "resources/read",
        json!({"uri": inbox("Blue")}),
    );
    assert_eq!(read["result"]["contents"][0]["uri"], inbox("Blue"));
    let seen = summary(&read);
    assert_eq!(seen["agent"], "Blue");
    assert_eq!(seen["counts"]["unread"], 2);
    assert_eq!(seen["newest_seq"], 2);
    let newest = seen["newest"].as_array().expect("headers");
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0]["id"], second.as_str(), "newest first");
    assert_eq!(newest[0]["subject"], "second");
    assert_eq!(newest[0]["from"], "Green");
    assert!(newest[0].get("body").is_none(), "headers only");
    // The same in 2026-07-28, marked complete and never cached.
    let stateless = rpc_2026(
        &mut client,
        &[],
        "resources/read",
        json!({"uri": inbox("Blue")}),
    );
    assert_eq!(stateless["result"]["resultType"], "complete");
    assert!(stateless["result"].get("ttlMs").is_none());
    assert_eq!(summary(&stateless)["counts"]["unread"], 2);
    // Lists: the template, and the inboxes this client is bound to or subscribed to.
    let bound = [("Allman-Agent", "Green")];
    let listed = rpc_2026(&mut client, &bound, "resources/list", json!({}));
    assert_eq!(
        listed["result"]["resources"],
        json!([{"uri": inbox("Green"), "name": "Green",
        "title": "Inbox of Green", "mimeType": "application/json"}])
    );
    let with_session = [("Mcp-Session-Id", session.as_str())];
    rpc_2025(
        &mut client,
        &with_session,
        "resources/subscribe",
        json!({"uri": inbox("Blue")}),
    );
    let listed = rpc_2025(&mut client, &with_session, "resources/list", json!({}));
    assert_eq!(listed["result"]["resources"][0]["uri"], inbox("Blue"));
    let paged = rpc_2025(&mut client, &[], "resources/list", json!({"cursor": "x"}));
    assert_eq!(paged["error"]["code"], -32602);
    // Unknown inboxes: 2025-11-25's -32002, 2026-07-28's -32602.
    let missing = rpc_2025(
        &mut client,
        &[],
        "resources/read",
        json!({"uri": inbox("Nobody")}),
    );
    assert_eq!(missing["error"]["code"], -32002, "{missing}");
    let missing = rpc_2026(
        &mut client,
        &[],
        "resources/read",
        json!({"uri": "file:///etc/passwd"}),
    );
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
    // Reading drained and marked nothing.
    let drained = client.inbox("Blue");
    assert_eq!(drained.len(), 2);
    assert!(drained.iter().all(|m| m["from"] == "Green"));
}

#[test]
fn a_session_stream_announces_mail_of_its_subscriptions_only() {
    let server = Server::start_with(&["--shards", "2"]);
    let mut client = server.client();
    for name in ["Blue", "Green", "Carol"] {
        client.create_agent("proj", name);
    }
    send(&mut client, "Green", "Blue", "old news");
    let session = initialize(&mut client);
    let with_session = [("Mcp-Session-Id", session.as_str())];
    let ok = rpc_2025(
        &mut client,
        &with_session,
        "resources/subscribe",
        json!({"uri": inbox("Blue")}),
    );
    assert_eq!(ok["result"], json!({}));
    let (mut stream, head) = open_session_stream(&server, &session, &[]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    // Mail for another agent, then for the subscribed one: one event, Blue's.
    send(&mut client, "Green", "Carol", "not yours");
    send(&mut client, "Green", "Blue", "yours");
    let got = events_until(&mut stream, "resources/updated");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["method"], "notifications/resources/updated");
    assert_eq!(got[0]["params"], json!({"uri": inbox("Blue")}));
    // Changing the subscriptions reaches the open stream.
    rpc_2025(
        &mut client,
        &with_session,
        "resources/unsubscribe",
        json!({"uri": inbox("Blue")}),
    );
    rpc_2025(
        &mut client,
        &with_session,
        "resources/subscribe",
        json!({"uri": inbox("Carol")}),
    );
    send(&mut client, "Green", "Blue", "no longer watched");
    send(&mut client, "Green", "Carol", "now watched");
    let got = events_until(&mut stream, "resources/updated");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["params"]["uri"], inbox("Carol"));
    // Ending the session ends its stream; the session is gone.
    let delete =
        format!("DELETE /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {session}\r\n\r\n");
    client.send_raw(delete.as_bytes());
    assert_eq!(client.read_response().status, 200);
    let rest = read_until(&mut stream, String::new(), "\u{0}");
    assert!(events(&rest).is_empty(), "{rest}");
    let gone = rpc_2025(
        &mut client,
        &with_session,
        "resources/subscribe",
        json!({"uri": inbox("Blue")}),
    );
    assert_eq!(gone["error"]["code"], -32000, "{gone}");
    let (_again, refused) = open_session_stream(&server, &session, &[]);
    assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");
}

#[test]
fn a_listen_stream_announces_the_inbox_resources_it_names() {
    let server = Server::start_with(&["--shards", "2"]);
    let mut client = server.client();
    for name in ["Blue", "Green", "Carol"] {
        client.create_agent("proj", name);
    }
    let (mut stream, head) = open_listen(&server, 5, &[inbox("Blue")], &[]);
    let ack = &events(&head)[0];
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    // Only what it will honour: the inbox, not tool-list changes (allman's never change).
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": [inbox("Blue")]})
    );
    send(&mut client, "Green", "Carol", "not yours");
    send(&mut client, "Green", "Blue", "yours");
    let got = events_until(&mut stream, "resources/updated");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["params"]["uri"], inbox("Blue"));
    assert_eq!(
        got[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        5
    );
    // Never more than one event per message (a burst may share one).
    for n in 0..5 {
        send(&mut client, "Green", "Blue", &format!("burst {n}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = events(&read_until(&mut stream, String::new(), "resources/updated"));
    assert!(!got.is_empty() && got.len() <= 5, "{got:?}");
    assert!(got.iter().all(|e| e["params"]["uri"] == inbox("Blue")));
    // A resource that is not an inbox, or an inbox that does not exist: refused.
    for uri in ["file:///x".to_string(), inbox("Nobody")] {
        let (_s, refused) = open_listen(&server, 6, std::slice::from_ref(&uri), &[]);
        assert!(refused.contains("-32602"), "{uri}: {refused}");
    }
}

#[test]
fn a_bound_session_stream_carries_claude_channel_messages_for_its_agent_only() {
    let server = Server::start_with(&["--shards", "2"]);
    let mut client = server.client();
    for name in ["Blue", "Green", "Carol"] {
        client.create_agent("proj", name);
    }
    let session = initialize(&mut client);
    let (mut stream, head) = open_session_stream(&server, &session, &[("Allman-Agent", "Blue")]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    send(&mut client, "Green", "Carol", "for Carol");
    let sent = client.call_ok(
        "send_message",
        json!({"from_agent":"Green","to":["Blue"],"subject":"Build broke","body":"see CI",
               "importance":"urgent","ack_required":true}),
    );
    let got = events_until(&mut stream, "claude/channel");
    assert_eq!(got.len(), 1, "{got:?}");
    let event = &got[0];
    assert_eq!(event["method"], "notifications/claude/channel");
    let content = event["params"]["content"].as_str().expect("content");
    for part in [
        "1 new message for Blue",
        "from Green",
        "\"Build broke\"",
        "urgent",
        "ack required",
        "fetch_inbox",
    ] {
        assert!(content.contains(part), "{part} in {content}");
    }
    assert!(!content.contains("Carol"), "{content}");
    let meta = event["params"]["meta"].as_object().expect("meta");
    assert_eq!(meta["agent"], "Blue");
    assert_eq!(meta["message_id"], sent["id"]);
    for (key, value) in meta {
        assert!(value.is_string(), "{key}: channel meta values are strings");
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{key}"
        );
    }
}

#[test]
fn tokens_guard_inbox_resources_and_streams() {
    let server = Server::start_with(&["--agent-auth"]);
    let mut client = server.client();
    let blue = client.create_agent("proj", "Blue");
    let token = blue["agent_token"].as_str().expect("token").to_string();
    client.create_agent("proj", "Green");
    let uri = inbox("Blue");
    let denied = rpc_2025(&mut client, &[], "resources/read", json!({"uri": uri}));
    assert_eq!(denied["error"]["code"], -32002, "{denied}");
    let wrong = [("Allman-Agent-Token", "0000")];
    let denied = rpc_2026(&mut client, &wrong, "resources/read", json!({"uri": uri}));
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    let right = [("Allman-Agent-Token", token.as_str())];
    let read = rpc_2026(&mut client, &right, "resources/read", json!({"uri": uri}));
    assert_eq!(summary(&read)["agent"], "Blue");
    let by_meta = rpc_2025(
        &mut client,
        &[],
        "resources/read",
        json!({"uri": uri, "_meta": {"allman/agentToken": token}}),
    );
    assert_eq!(summary(&by_meta)["agent"], "Blue");
    let session = initialize(&mut client);
    let with_session = [("Mcp-Session-Id", session.as_str())];
    let denied = rpc_2025(
        &mut client,
        &with_session,
        "resources/subscribe",
        json!({"uri": uri}),
    );
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    let (_s, refused) = open_listen(&server, 1, std::slice::from_ref(&uri), &wrong);
    assert!(refused.contains("-32602"), "{refused}");
    let (_s, refused) = open_session_stream(&server, &session, &[("Allman-Agent", "Blue")]);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let (_s, opened) = open_session_stream(
        &server,
        &session,
        &[
            ("Allman-Agent", "Blue"),
            ("Allman-Agent-Token", token.as_str()),
        ],
    );
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");
}

#[test]
fn hang_ups_free_streams_and_sigterm_ends_every_stream() {
    let mut server = Server::start_with(&["--shards", "1"]);
    let mut client = server.client();
    client.create_agent("proj", "Blue");
    let session = initialize(&mut client);
    let open = |client: &mut Client| {
        metric(
            &client.get("/metrics").text(),
            "allman_shard_event_streams{shard=\"0\"}",
        )
    };
    let (listen, _) = open_listen(&server, 3, &[inbox("Blue")], &[]);
    let (mut get, _) = open_session_stream(&server, &session, &[]);
    assert_eq!(open(&mut client), Some(2.0));
    // GET needs a session and an event stream to be acceptable.
    let no_session = "GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    client.send_raw(no_session.as_bytes());
    assert_eq!(client.read_response().status, 400);
    let wrong_accept = format!(
        "GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nMcp-Session-Id: {session}\r\n\r\n"
    );
    let mut other = server.client();
    other.send_raw(wrong_accept.as_bytes());
    assert_eq!(other.read_response().status, 406);
    drop(listen);
    let deadline = Instant::now() + common::IO_TIMEOUT;
    while open(&mut client) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the hung-up stream was never freed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut listen, head) = open_listen(&server, 4, &[inbox("Blue")], &[]);
    server.signal(libc::SIGTERM);
    let text = read_until(&mut listen, head, "\"result\"");
    assert_eq!(events(&text).last().expect("events")["id"], 4);
    let rest = read_until(&mut get, String::new(), "\u{0}");
    assert!(events(&rest).is_empty(), "{rest}");
    let status = common::wait_with_deadline(&mut server.take_child(), Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}
