//! The LLM policy against a tiny OpenAI-compatible stub server on a real socket.

use bench::sim::llm::LlmPolicy;
use bench::sim::{scenarios, Action, Received};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

/// Serves one request with `status` and `content` as the assistant message; hands the raw
/// request (head + body) back through the channel.
fn stub(status: u16, content: &str) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let body = serde_json::json!({
        "id": "stub", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
    })
    .to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("length");
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut request_body = vec![0u8; length];
        reader.read_exact(&mut request_body).expect("body");
        let mut stream = stream;
        let response = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(response.as_bytes()).expect("write");
        let _ = tx.send(head + &String::from_utf8_lossy(&request_body));
    });
    (url, rx)
}

#[test]
fn the_llm_policy_sends_a_chat_completion_and_parses_the_actions() {
    let (url, request) = stub(200, "Here you go: {\"messages\": [{\"to\": [\"Seller\"], \"subject\": \"offer 700\", \"body\": \"I can pay 700\"}]}");
    let scenario = scenarios::by_key("escrow_sim").expect("scenario");
    let mut policy = LlmPolicy::new(&url, "stub-model", Some("secret-key".into())).expect("policy");
    let inbox = vec![Received {
        from_role: "Seller".into(),
        subject: "ask 1200".into(),
        body: "I need 1200".into(),
    }];
    let actions = policy
        .decide(&scenario, "Buyer", "buy cheaply", 2, &inbox)
        .expect("decision");
    assert_eq!(
        actions,
        vec![Action::new(&["Seller"], "offer 700", "I can pay 700")]
    );

    let raw = request.recv().expect("request seen");
    assert!(
        raw.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{raw}"
    );
    assert!(raw.contains("Authorization: Bearer secret-key"), "{raw}");
    let body: serde_json::Value =
        serde_json::from_str(&raw[raw.find("\r\n\r\n").expect("body") + 4..]).expect("json body");
    assert_eq!(body["model"], "stub-model");
    let system = body["messages"][0]["content"]
        .as_str()
        .expect("system prompt");
    assert!(
        system.contains("Buyer") && system.contains("buy cheaply"),
        "{system}"
    );
    let user = body["messages"][1]["content"]
        .as_str()
        .expect("user prompt");
    assert!(
        user.contains("ask 1200"),
        "the inbox is in the prompt: {user}"
    );
}

#[test]
fn an_llm_error_is_reported_so_the_scripted_policy_can_take_over() {
    let (url, _request) = stub(500, "boom");
    let scenario = scenarios::by_key("cyber_sim").expect("scenario");
    let mut policy = LlmPolicy::new(&url, "stub-model", None).expect("policy");
    let error = policy
        .decide(&scenario, "Lead", "coordinate", 0, &[])
        .expect_err("HTTP 500");
    assert!(error.contains("500"), "{error}");

    let (url, _request) = stub(200, "I refuse to answer in JSON");
    let mut policy = LlmPolicy::new(&url, "stub-model", None).expect("policy");
    assert!(policy
        .decide(&scenario, "Lead", "coordinate", 0, &[])
        .is_err());
}
