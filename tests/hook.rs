//! `allman hook`: a coding agent's hook that reports new mail once, says nothing otherwise,
//! and never fails the session (the real binary against a real server).

mod common;

use common::{fresh_dir, Server};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the hook for `agent` with `event` on stdin; its stdout, after checking it exited 0.
fn hook(url: &str, agent: &str, state: &Path, event: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["hook", "--agent", agent, "--url", url, "--state-dir"])
        .arg(state)
        .env_remove("ALLMAN_AGENT_TOKEN")
        .env_remove("ALLMAN_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run allman hook");
    let event_json = json!({"session_id": "s", "cwd": "/", "hook_event_name": event});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(event_json.to_string().as_bytes())
        .expect("write the event");
    let output = child.wait_with_output().expect("hook output");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

fn context(output: &str, event: &str) -> String {
    let value: Value = serde_json::from_str(output).expect("one JSON answer");
    assert_eq!(value["hookSpecificOutput"]["hookEventName"], event);
    value["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .expect("context")
        .to_string()
}

#[test]
fn the_hook_reports_new_mail_once_and_is_quiet_otherwise() {
    let server = Server::start();
    let url = format!("http://{}/mcp", server.addr);
    let state = fresh_dir();
    let mut client = server.client();
    client.create_agent("proj", "Blue");
    client.create_agent("proj", "Green");
    assert_eq!(
        hook(&url, "Blue", &state, "SessionStart"),
        "",
        "nothing yet"
    );
    client.send("Green", &["Blue"], "plain news", "b");
    client.call_ok(
        "send_message",
        json!({"from_agent":"Green","to":["Blue"],"subject":"please ack","body":"b","ack_required":true}),
    );
    let text = context(&hook(&url, "Blue", &state, "SessionStart"), "SessionStart");
    assert!(
        text.starts_with(
            "allman: 2 new unread messages for Blue (1 awaiting your acknowledgement):"
        ),
        "{text}"
    );
    assert!(
        text.contains("\"please ack\"") && text.contains("\"plain news\""),
        "{text}"
    );
    // Reported once: the next prompt hears nothing until new mail comes.
    assert_eq!(hook(&url, "Blue", &state, "UserPromptSubmit"), "");
    client.send("Green", &["Blue"], "third", "b");
    let text = context(
        &hook(&url, "Blue", &state, "UserPromptSubmit"),
        "UserPromptSubmit",
    );
    assert!(text.contains("1 new unread message for Blue"), "{text}");
    assert!(
        text.contains("\"third\"") && !text.contains("plain news"),
        "{text}"
    );
    // Mail already read is not news.
    client.send("Green", &["Blue"], "fourth", "b");
    let fetched = client.call_ok("fetch_inbox", json!({"agent_name": "Blue", "after": 3}));
    let id = fetched["messages"][0]["id"].clone();
    client.call_ok(
        "mark_message_read",
        json!({"agent_name": "Blue", "message_ids": [id]}),
    );
    assert_eq!(hook(&url, "Blue", &state, "UserPromptSubmit"), "");
    // The hook drained nothing.
    assert_eq!(client.inbox("Blue").len(), 4);
}

#[test]
fn an_unreachable_server_or_unknown_agent_is_silence_not_failure() {
    let state = fresh_dir();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/mcp", closed.local_addr().expect("addr"));
    drop(closed);
    assert_eq!(hook(&url, "Blue", &state, "SessionStart"), "");
    let server = Server::start();
    let url = format!("http://{}/mcp", server.addr);
    assert_eq!(hook(&url, "Nobody", &state, "SessionStart"), "");
}
