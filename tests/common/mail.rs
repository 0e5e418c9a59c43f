//! Mail helpers the tests of several features share: a two-shard server's agents, sends and
//! the pages `fetch_inbox` returns.

use super::{names_on_different_shards, Client};
use serde_json::{json, Value};

pub fn fetch(client: &mut Client, agent: &str, extra: Value) -> Value {
    let mut arguments = json!({"agent_name": agent});
    for (key, value) in extra.as_object().expect("object") {
        arguments[key] = value.clone();
    }
    client.call_ok("fetch_inbox", arguments)
}

pub fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

pub fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

pub fn id_of(sent: &Value) -> String {
    sent["id"].as_str().expect("id").to_string()
}

pub fn send(client: &mut Client, arguments: Value) -> Value {
    client.call_ok("send_message", arguments)
}

/// Three agents in one project: two on different shards (of a two-shard server), and a third.
pub fn trio(client: &mut Client, prefix: &str) -> (String, String, String) {
    let (a, b) = names_on_different_shards(prefix, 2);
    let c = format!("{prefix}Third");
    for name in [&a, &b, &c] {
        client.create_agent(prefix, name);
    }
    (a, b, c)
}
