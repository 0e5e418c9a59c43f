//! The three hot-path tools over a real socket: shapes, invariants and every error path.

mod common;

use common::{names_on_different_shards, names_on_same_shard, Server};
use serde_json::{json, Value};
use std::collections::HashSet;
use uuid::Uuid;

const SHARDS: usize = 2;

#[test]
fn create_agent_returns_the_contract_shape() {
    let server = Server::start();
    let mut client = server.client();
    let agent = client.call_ok(
        "create_agent",
        json!({"project_key": "/repo/x", "name_hint": "BlueLake", "program": "claude-code", "model": "opus"}),
    );
    let expected_project = Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"/repo/x").to_string();
    assert_eq!(agent["project_id"], expected_project);
    assert_eq!(agent["name"], "BlueLake");
    assert_eq!(agent["program"], "claude-code");
    assert_eq!(agent["model"], "opus");
    let id: Uuid = agent["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(id.get_version_num(), 7);
    assert_keys(&agent, &["id", "project_id", "name", "program", "model"]);
}

#[test]
fn reregistering_in_the_same_project_is_idempotent_and_updates_labels() {
    let server = Server::start();
    let mut client = server.client();
    let first = client.call_ok(
        "create_agent",
        json!({"project_key": "p", "name_hint": "Ann", "program": "a", "model": "m1"}),
    );
    let second = client.call_ok(
        "create_agent",
        json!({"project_key": "p", "name_hint": "Ann", "model": "m2"}),
    );
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["program"], "a", "an absent label keeps its value");
    assert_eq!(second["model"], "m2");
    // From another connection (likely another shard) too.
    let third = server.client().create_agent("p", "Ann");
    assert_eq!(third["id"], first["id"]);
}

#[test]
fn a_name_taken_by_another_project_is_refused() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("project-one", "Taken");
    let message = client.call_err(
        "create_agent",
        json!({"project_key": "project-two", "name_hint": "Taken"}),
    );
    assert!(
        message.contains("Taken") && message.contains("another project"),
        "{message}"
    );
}

#[test]
fn invented_names_are_readable_and_unique() {
    let server = Server::start();
    let mut client = server.client();
    let mut names = HashSet::new();
    for _ in 0..60 {
        let agent = client.call_ok("create_agent", json!({"project_key": "p"}));
        let name = agent["name"].as_str().expect("name").to_string();
        assert!(
            name.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
            "{name}"
        );
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        assert!(names.insert(name.clone()), "duplicate invented name {name}");
    }
}

#[test]
fn create_agent_argument_errors_name_the_argument() {
    let server = Server::start();
    let mut client = server.client();
    let cases = [
        (json!({}), "project_key"),
        (json!({"project_key": 5}), "project_key"),
        (json!({"project_key": ""}), "project_key"),
        (
            json!({"project_key": "p", "name_hint": "has space"}),
            "name_hint",
        ),
        (
            json!({"project_key": "p", "name_hint": "../../etc/passwd"}),
            "name_hint",
        ),
        (json!({"project_key": "p", "program": ["x"]}), "program"),
    ];
    for (arguments, argument) in cases {
        let message = client.call_err("create_agent", arguments.clone());
        assert!(message.contains(argument), "{arguments}: {message}");
    }
    let result = client.call("create_agent", json!("not an object"));
    assert_eq!(result["isError"], true);
}

#[test]
fn send_then_drain_returns_the_message_once_with_the_contract_shape() {
    let server = Server::start();
    let mut client = server.client();
    let (alice, bob) = names_on_different_shards("Shape", SHARDS);
    client.create_agent("p", &alice);
    client.create_agent("p", &bob);
    let sent = client.send(
        &alice,
        &[&bob],
        "Hello ✉",
        "Body with \"quotes\"\nand lines",
    );
    assert_eq!(sent["status"], "sent");
    let id = sent["id"].as_str().expect("id").to_string();
    assert_eq!(id.parse::<Uuid>().expect("uuid").get_version_num(), 7);

    let inbox = client.inbox(&bob);
    assert_eq!(inbox.len(), 1);
    let message = &inbox[0];
    assert_eq!(message["id"], id);
    assert_eq!(message["from"], alice.as_str());
    assert_eq!(message["subject"], "Hello ✉");
    assert_eq!(message["body"], "Body with \"quotes\"\nand lines");
    let timestamp = message["timestamp"].as_str().expect("timestamp");
    assert_rfc3339_millis_utc(timestamp);
    // The seed's five fields, plus those issue #15 adds (new result fields are additive).
    assert_keys(
        message,
        &[
            "id",
            "from",
            "subject",
            "body",
            "timestamp",
            "seq",
            "thread_id",
            "reply_to",
            "importance",
            "ack_required",
            "cc",
        ],
    );

    assert!(
        client.inbox(&bob).is_empty(),
        "drained: a message is returned exactly once"
    );
    assert!(client.inbox(&alice).is_empty(), "the sender got nothing");
}

/// The object has exactly these keys: the contract's shape, nothing more.
fn assert_keys(value: &Value, expected: &[&str]) {
    let keys: HashSet<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, expected.iter().copied().collect::<HashSet<&str>>());
}

fn assert_rfc3339_millis_utc(text: &str) {
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 24, "{text}");
    for (index, expected) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        assert_eq!(bytes[index], expected, "{text}");
    }
    assert!(text.starts_with("20"), "{text}");
}

#[test]
fn subject_and_body_default_to_empty() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Quiet");
    client.call_ok(
        "send_message",
        json!({"from_agent": "Quiet", "to": ["Quiet"]}),
    );
    let inbox = client.inbox("Quiet");
    assert_eq!(
        (inbox[0]["subject"].as_str(), inbox[0]["body"].as_str()),
        (Some(""), Some(""))
    );
}

#[test]
fn inbox_is_oldest_first() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b) = names_on_different_shards("Order", SHARDS);
    client.create_agent("p", &a);
    client.create_agent("p", &b);
    for n in 0..50 {
        client.send(&a, &[&b], &format!("{n}"), "");
    }
    let subjects: Vec<String> = client
        .inbox(&b)
        .iter()
        .map(|m| m["subject"].as_str().expect("s").to_string())
        .collect();
    let expected: Vec<String> = (0..50).map(|n| n.to_string()).collect();
    assert_eq!(subjects, expected);
}

#[test]
fn multi_recipient_across_shards_and_duplicates_get_one_copy() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b) = names_on_different_shards("Multi", SHARDS);
    let (_, c) = names_on_same_shard("Multi", SHARDS);
    for name in [&a, &b, &c] {
        client.create_agent("p", name);
    }
    let sent = client.send(&a, &[&b, &c, &b, &a, &c], "fan", "out");
    for name in [&a, &b, &c] {
        let inbox = client.inbox(name);
        assert_eq!(inbox.len(), 1, "{name} gets exactly one copy");
        assert_eq!(inbox[0]["id"], sent["id"]);
    }
}

#[test]
fn unknown_sender_or_recipient_delivers_nothing() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b) = names_on_different_shards("Known", SHARDS);
    let (_, same) = names_on_same_shard("Known", SHARDS);
    client.create_agent("p", &a);
    client.create_agent("p", &b);
    client.create_agent("p", &same);

    let message = client.call_err("send_message", json!({"from_agent": "Ghost", "to": [b]}));
    assert!(message.contains("Ghost"), "{message}");

    // Unknown recipient on the same shard as a known one, and on another shard.
    for recipients in [
        json!([b, "NoSuchAgent"]),
        json!([b, same, "NoSuchAgent", "AlsoMissing"]),
    ] {
        let message = client.call_err("send_message", json!({"from_agent": a, "to": recipients}));
        assert!(message.contains("NoSuchAgent"), "{message}");
    }
    // Unknown names owned by both shards are all named, in request order.
    let (left, right) = names_on_different_shards("Missing", SHARDS);
    let message = client.call_err(
        "send_message",
        json!({"from_agent": a, "to": [b, left, same, right]}),
    );
    assert!(message.contains(&format!("{left}, {right}")), "{message}");
    for name in [&a, &b, &same] {
        assert!(client.inbox(name).is_empty(), "{name} must receive nothing");
    }
}

#[test]
fn send_message_argument_errors_name_the_argument() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Sender");
    let cases = [
        (json!({"from_agent": "Sender", "to": "Sender"}), "to"),
        (json!({"from_agent": "Sender", "to": []}), "to"),
        (json!({"from_agent": "Sender", "to": [1]}), "to"),
        (json!({"from_agent": "Sender"}), "to"),
        (json!({"to": ["Sender"]}), "from_agent"),
        (
            json!({"from_agent": "Sender", "to": ["Sender"], "project_id": "not-a-uuid"}),
            "project_id",
        ),
        (
            json!({"from_agent": "Sender", "to": ["Sender"], "subject": 7}),
            "subject",
        ),
        (
            json!({"from_agent": "Sender", "to": ["Sender"], "body": {"a": 1}}),
            "body",
        ),
    ];
    for (arguments, argument) in cases {
        let message = client.call_err("send_message", arguments.clone());
        assert!(message.contains(argument), "{arguments}: {message}");
    }
    assert!(client.inbox("Sender").is_empty());
}

#[test]
fn explicit_project_id_is_accepted_and_agents_of_other_projects_can_write() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("one", "OneAgent");
    client.create_agent("two", "TwoAgent");
    let project = Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"one").to_string();
    client.call_ok(
        "send_message",
        json!({"from_agent": "OneAgent", "to": ["TwoAgent"], "project_id": project}),
    );
    client.send("TwoAgent", &["OneAgent"], "cross", "project");
    assert_eq!(client.inbox("TwoAgent").len(), 1);
    assert_eq!(client.inbox("OneAgent").len(), 1);
}

#[test]
fn get_inbox_of_unknown_agent_is_an_error_naming_it() {
    let server = Server::start();
    let message = server
        .client()
        .call_err("get_inbox", json!({"agent_name": "Nobody"}));
    assert!(message.contains("Nobody"), "{message}");
    let message = server.client().call_err("get_inbox", json!({}));
    assert!(message.contains("agent_name"), "{message}");
}

#[test]
fn read_your_writes_across_connections_and_shards() {
    let server = Server::start();
    let mut writer = server.client();
    let mut reader = server.client();
    let (a, b) = names_on_different_shards("Ryw", SHARDS);
    writer.create_agent("p", &a);
    writer.create_agent("p", &b);
    for n in 0..100 {
        let sent = writer.send(&a, &[&b], &n.to_string(), "");
        let inbox = reader.inbox(&b);
        assert_eq!(
            inbox.len(),
            1,
            "message {n} visible as soon as send_message returned"
        );
        assert_eq!(inbox[0]["id"], sent["id"]);
    }
}

#[test]
fn concurrent_drains_return_each_message_exactly_once() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Popular");
    client.create_agent("p", "Writer");
    const MESSAGES: usize = 400;
    for n in 0..MESSAGES {
        client.send("Writer", &["Popular"], &n.to_string(), "");
    }
    let addr = server.addr;
    let drainers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                let mut got = Vec::new();
                for _ in 0..50 {
                    got.extend(
                        client
                            .inbox("Popular")
                            .into_iter()
                            .map(|m| m["id"].as_str().expect("id").to_string()),
                    );
                }
                got
            })
        })
        .collect();
    // Keep sending while they drain.
    for n in 0..100 {
        client.send("Writer", &["Popular"], &format!("late{n}"), "");
    }
    let mut all: Vec<String> = drainers
        .into_iter()
        .flat_map(|d| d.join().expect("drainer"))
        .collect();
    all.extend(
        client
            .inbox("Popular")
            .into_iter()
            .map(|m| m["id"].as_str().expect("id").to_string()),
    );
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a message was returned twice");
    assert_eq!(all.len(), MESSAGES + 100, "a message was lost");
}

#[test]
fn tool_results_carry_text_and_structured_content() {
    let server = Server::start();
    let mut client = server.client();
    let result = client.call(
        "create_agent",
        json!({"project_key": "p", "name_hint": "Shape"}),
    );
    assert_eq!(result["isError"], false);
    let text: Value =
        serde_json::from_str(result["content"][0]["text"].as_str().expect("text")).expect("json");
    assert_eq!(result["structuredContent"], text);
    let result = client.call("get_inbox", json!({"agent_name": "Shape"}));
    assert_eq!(result["content"][0]["text"], "[]");
    assert_eq!(result["structuredContent"], json!({"messages": []}));
}

#[test]
fn a_full_inbox_refuses_the_send_for_every_recipient() {
    let server = Server::start_with(&["--shards", "2", "--max-inbox-messages", "3"]);
    let mut client = server.client();
    let (full, other_shard) = names_on_different_shards("Cap", SHARDS);
    let (_, same_shard) = names_on_same_shard("Cap", SHARDS);
    for name in [&full, &other_shard, &same_shard] {
        client.create_agent("p", name);
    }
    for n in 0..3 {
        client.send(&other_shard, &[&full], &n.to_string(), "");
    }
    let message = client.call_err(
        "send_message",
        json!({"from_agent": other_shard, "to": [full]}),
    );
    assert!(
        message.contains("inbox full") && message.contains(full.as_str()),
        "{message}"
    );

    // Owners on two shards: the room reserved on the other shard is released, nothing lands.
    for to in [json!([other_shard, full]), json!([same_shard, full])] {
        let message = client.call_err("send_message", json!({"from_agent": same_shard, "to": to}));
        assert!(message.contains(full.as_str()), "{message}");
    }
    assert!(
        client.inbox(&other_shard).is_empty(),
        "nothing was delivered"
    );
    assert!(
        client.inbox(&same_shard).is_empty(),
        "nothing was delivered"
    );

    // Draining makes room; released reservations do not linger.
    assert_eq!(client.inbox(&full).len(), 3);
    for _ in 0..3 {
        client.send(&same_shard, &[&other_shard, &full], "after", "");
    }
    assert_eq!(
        client.inbox(&other_shard).len(),
        3,
        "reservations were released"
    );
    assert_eq!(client.inbox(&full).len(), 3);
}

#[test]
fn the_inbox_byte_cap_refuses_a_send_that_would_exceed_it() {
    let server = Server::start_with(&["--shards", "2", "--max-inbox-bytes", "100"]);
    let mut client = server.client();
    client.create_agent("p", "ByteCap");
    let body = "b".repeat(40);
    // "ByteCap" + 40 bytes = 47 bytes of text each: two fit in 100 bytes, a third does not.
    client.send("ByteCap", &["ByteCap"], "", &body);
    client.send("ByteCap", &["ByteCap"], "", &body);
    let message = client.call_err(
        "send_message",
        json!({"from_agent": "ByteCap", "to": ["ByteCap"], "body": body}),
    );
    assert!(message.contains("inbox full"), "{message}");
    assert_eq!(client.inbox("ByteCap").len(), 2);
}

#[test]
fn a_large_inbox_drains_in_pages_of_at_most_8_mib_sent_each_message_once() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Pages");
    // Each message is sent twice in a result (escaped text and structured content): about
    // 2 MB of response per 1 MB body, so four fit in a page of 8 MiB as sent.
    let body = "p".repeat(1_000_000);
    for n in 0..9 {
        client.send("Pages", &["Pages"], &n.to_string(), &body);
    }
    let drain = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_inbox","arguments":{"agent_name":"Pages"}}}"#;
    let mut subjects = Vec::new();
    let mut page_sizes = Vec::new();
    loop {
        let response = client.post("/mcp", drain.as_bytes());
        assert_eq!(response.status, 200);
        assert!(
            response.body.len() <= 8 * 1024 * 1024,
            "a page of {} bytes",
            response.body.len()
        );
        let value = response.json();
        let messages = value["result"]["structuredContent"]["messages"]
            .as_array()
            .expect("messages")
            .clone();
        if messages.is_empty() {
            break;
        }
        page_sizes.push(messages.len());
        subjects.extend(
            messages
                .iter()
                .map(|m| m["subject"].as_str().expect("s").to_string()),
        );
    }
    assert_eq!(page_sizes, vec![4, 4, 1]);
    assert_eq!(subjects, (0..9).map(|n| n.to_string()).collect::<Vec<_>>());
}

#[test]
fn escaping_cannot_amplify_a_page_past_8_mib() {
    let server = Server::start();
    let mut client = server.client();
    client.create_agent("p", "Quotes");
    // 500 KB of quotes: about 3 MB of response each (\" in structured content, \\\" in
    // text), where counting text alone would let 16 of them into one "8 MiB" page.
    let body = "\"".repeat(500_000);
    for _ in 0..6 {
        client.send("Quotes", &["Quotes"], "", &body);
    }
    let drain = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_inbox","arguments":{"agent_name":"Quotes"}}}"#;
    let mut drained = 0;
    while drained < 6 {
        let response = client.post("/mcp", drain.as_bytes());
        assert!(
            response.body.len() <= 8 * 1024 * 1024,
            "{}",
            response.body.len()
        );
        let value = response.json();
        let page = value["result"]["structuredContent"]["messages"]
            .as_array()
            .expect("messages")
            .len();
        assert!(page >= 1, "every page makes progress");
        drained += page;
    }
    assert_eq!(drained, 6);
    assert!(client.inbox("Quotes").is_empty());
}

#[test]
fn a_batch_response_stays_within_16_mib_and_drains_nothing_it_cannot_send() {
    let server = Server::start();
    let mut client = server.client();
    let body = "q".repeat(1_000_000);
    for agent in ["BatchA", "BatchB", "BatchC"] {
        client.create_agent("p", agent);
        for _ in 0..4 {
            client.send(agent, &[agent], "", &body);
        }
    }
    // Each inbox is ~8 MB as sent; two fit in the batch bound, the third does not.
    let drain = |id: u32, agent: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"get_inbox","arguments":{{"agent_name":"{agent}"}}}}}}"#
        )
    };
    let batch = format!(
        "[{},{},{}]",
        drain(1, "BatchA"),
        drain(2, "BatchB"),
        drain(3, "BatchC")
    );
    let response = client.post("/mcp", batch.as_bytes());
    assert_eq!(response.status, 200);
    assert!(
        response.body.len() <= 16 * 1024 * 1024,
        "{}",
        response.body.len()
    );
    let answers = response.json();
    let drained = |answer: &serde_json::Value| {
        answer["result"]["structuredContent"]["messages"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(drained(&answers[0]), 4);
    assert_eq!(drained(&answers[1]), 4);
    assert_eq!(answers[2]["result"]["isError"], true, "{}", answers[2]);
    let text = answers[2]["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("not drained"), "{text}");
    assert_eq!(client.inbox("BatchC").len(), 4, "nothing was lost");
}

#[test]
fn a_message_larger_than_any_inbox_gets_its_own_error() {
    let server = Server::start_with(&["--shards", "2", "--max-inbox-bytes", "100"]);
    let mut client = server.client();
    client.create_agent("p", "Small");
    let message = client.call_err(
        "send_message",
        json!({"from_agent": "Small", "to": ["Small"], "body": "z".repeat(200)}),
    );
    assert!(message.contains("message too large"), "{message}");
    assert!(message.contains("--max-inbox-bytes"), "{message}");
    assert!(client.inbox("Small").is_empty());
}
