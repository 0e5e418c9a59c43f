//! Per-agent tokens (`--agent-auth`) over a real socket: every call that acts as an agent
//! takes its token, and tokens survive a restart.

mod common;

use common::mail::{fetch, send};
use common::Server;
use serde_json::json;

#[test]
fn agent_tokens_guard_every_agent_and_survive_a_restart() {
    let mut server = Server::start_with(&["--shards", "2", "--agent-auth"]);
    let mut client = server.client();
    let alice = client.create_agent("auth", "AuthAlice");
    let bob = client.create_agent("auth", "AuthBob");
    let alice_token = alice["agent_token"]
        .as_str()
        .expect("a token, once")
        .to_string();
    let bob_token = bob["agent_token"].as_str().expect("a token").to_string();
    assert_eq!(alice_token.len(), 64);
    assert_ne!(alice_token, bob_token);
    // Without the token, a wrong one, or for a name that does not exist: the same answer.
    let unknown = client.call_err(
        "fetch_inbox",
        json!({"agent_name": "AuthNobody", "agent_token": alice_token}),
    );
    let missing = client.call_err("fetch_inbox", json!({"agent_name": "AuthBob"}));
    let wrong = client.call_err(
        "fetch_inbox",
        json!({"agent_name": "AuthBob", "agent_token": alice_token}),
    );
    assert_eq!(
        missing.replace("AuthBob", "X"),
        unknown.replace("AuthNobody", "X")
    );
    assert_eq!(wrong, missing);
    let forged = client.call_err(
        "send_message",
        json!({"from_agent": "AuthBob", "to": ["AuthAlice"], "agent_token": alice_token}),
    );
    assert!(forged.contains("agent_token"), "{forged}");
    send(
        &mut client,
        json!({"from_agent": "AuthAlice", "to": ["AuthBob"], "subject": "signed", "agent_token": alice_token}),
    );
    let page = fetch(&mut client, "AuthBob", json!({"agent_token": bob_token}));
    assert_eq!(page["messages"][0]["subject"], "signed");
    // Re-registering does not issue a second token, and needs the first.
    let again = client.call_err(
        "create_agent",
        json!({"project_key": "auth", "name_hint": "AuthBob"}),
    );
    assert!(again.contains("agent_token"), "{again}");
    let updated = client.call_ok("create_agent", json!({"project_key": "auth", "name_hint": "AuthBob", "agent_token": bob_token, "program": "x"}));
    assert!(updated.get("agent_token").is_none());

    server.signal(libc::SIGKILL);
    let _ = server.take_child().wait();
    let restarted = Server::start_in(&server.dir, &["--shards", "3", "--agent-auth"]);
    let mut client = restarted.client();
    let page = fetch(&mut client, "AuthBob", json!({"agent_token": bob_token}));
    assert_eq!(
        page["messages"][0]["subject"], "signed",
        "tokens survive kill -9 and a reshard"
    );
    let error = client.call_err(
        "get_inbox",
        json!({"agent_name": "AuthBob", "agent_token": alice_token}),
    );
    assert!(error.contains("agent_token"), "{error}");
}
