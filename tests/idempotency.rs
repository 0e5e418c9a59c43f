//! Idempotent sends: `send_message` and `reply_message` with an `idempotency_key`. A repeat of
//! a request by the same sender with the same key gets the first answer and delivers nothing
//! again, while the first message is in the sender's retained history; the key survives
//! kill -9, log compaction and a change of the shard count; another message under the same
//! key is refused.

mod common;

use common::{metric, names_on_different_shards, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn keyed(from: &str, to: &str, body: &str, key: &str) -> Value {
    json!({"from_agent": from, "to": [to], "subject": "s", "body": body, "idempotency_key": key})
}

#[test]
fn a_repeated_send_or_reply_with_its_key_gets_the_first_answer_and_delivers_once() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b) = names_on_different_shards("Key", 2);
    client.create_agent("p", &a);
    client.create_agent("p", &b);
    // Across shards (prepare and commit) and to the sender's own shard (one step).
    let mut first_ids = Vec::new();
    for (to, key) in [(&b, "cross-1"), (&a, "self-1")] {
        let first = client.call_ok("send_message", keyed(&a, to, "once", key));
        let again = client.call_ok("send_message", keyed(&a, to, "once", key));
        assert_eq!(again, first, "{key}: the first answer");
        first_ids.push(first["id"].clone());
    }
    let delivered = |client: &mut common::Client, name: &str| -> Vec<Value> {
        client.inbox(name).iter().map(|m| m["id"].clone()).collect()
    };
    assert_eq!(delivered(&mut client, &b), vec![first_ids[0].clone()]);
    assert_eq!(delivered(&mut client, &a), vec![first_ids[1].clone()]);
    // Another message under a used key: refused, nothing delivered.
    let error = client.call_err("send_message", keyed(&a, &b, "changed", "cross-1"));
    assert!(
        error.contains("idempotency_key") && error.contains("different request"),
        "{error}"
    );
    assert!(delivered(&mut client, &b).is_empty());
    // The key is the sender's: another sender may use the same one.
    client.call_ok("send_message", keyed(&b, &a, "once", "cross-1"));
    assert_eq!(delivered(&mut client, &a).len(), 1);
    // A reply retried with its key.
    let reply = json!({"from_agent": b, "message_id": first_ids[0], "body": "ok", "idempotency_key": "r-1"});
    let first = client.call_ok("reply_message", reply.clone());
    assert_eq!(client.call_ok("reply_message", reply), first);
    assert_eq!(delivered(&mut client, &a), vec![first["id"].clone()]);
    // A reservation retried with its key: the same leases, nothing extended.
    let reserve = json!({"agent_name": a, "paths": ["src/lib.rs"], "idempotency_key": "lease-1"});
    let first = client.call_ok("file_reservation_paths", reserve.clone());
    assert_eq!(
        first["granted"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    assert_eq!(client.call_ok("file_reservation_paths", reserve), first);
    let other = json!({"agent_name": a, "paths": ["src/main.rs"], "idempotency_key": "lease-1"});
    let error = client.call_err("file_reservation_paths", other);
    assert!(error.contains("different request"), "{error}");
    // Keys are 1 to 128 bytes.
    for bad in [json!(""), json!("k".repeat(129)), json!(7)] {
        let mut arguments = keyed(&a, &b, "x", "");
        arguments["idempotency_key"] = bad.clone();
        let error = client.call_err("send_message", arguments);
        assert!(error.contains("'idempotency_key'"), "{bad}: {error}");
    }
}

/// The lease ids a keyed reservation of `path` by `agent` is answered with.
fn reserved_ids(server: &Server, agent: &str, path: &str, key: &str) -> Value {
    let arguments = json!({"agent_name": agent, "paths": [path], "idempotency_key": key});
    let answer = server.client().call_ok("file_reservation_paths", arguments);
    (answer["granted"].as_array().expect("granted").iter())
        .map(|lease| lease["id"].clone())
        .collect()
}

/// Sends `key`'s message again and returns its id, checking `to` got it exactly once.
fn repeat(server: &Server, from: &str, to: &str, key: &str) -> Value {
    let mut client = server.client();
    let again = client.call_ok("send_message", keyed(from, to, "durable", key));
    let page = client.call_ok("fetch_inbox", json!({"agent_name": to, "limit": 50}));
    let copies = (page["messages"].as_array().expect("messages").iter())
        .filter(|m| m["id"] == again["id"])
        .count();
    assert_eq!(copies, 1, "{key}: one copy in {to}'s inbox");
    again["id"].clone()
}

#[test]
fn a_key_survives_kill_9_compaction_and_a_new_shard_count() {
    // A small history keeps the live state small, so 1 MiB of log makes a snapshot.
    let compacting = [
        "--log-compact-bytes",
        "1048576",
        "--max-retained-bytes",
        "262144",
    ];
    let mut server = Server::start_with(&[&["--shards", "2"][..], &compacting].concat());
    let mut client = server.client();
    let (a, b) = names_on_different_shards("Kept", 2);
    // Other traffic, one agent on each shard, to itself: a's history keeps only its message.
    let (fill_0, fill_1) = names_on_different_shards("Fill", 2);
    for name in [&a, &b, &fill_0, &fill_1] {
        client.create_agent("p", name);
    }
    let first = client.call_ok("send_message", keyed(&a, &b, "durable", "kept-1"))["id"].clone();
    let leases = reserved_ids(&server, &a, "src/kept.rs", "kept-lease");
    assert_eq!(leases.as_array().map(Vec::len), Some(1));

    // kill -9 right after the answer.
    server.signal(libc::SIGKILL);
    let _ = server.take_child().wait();
    let mut server = Server::start_in(&server.dir, &[&["--shards", "2"][..], &compacting].concat());
    assert_eq!(repeat(&server, &a, &b, "kept-1"), first, "after kill -9");
    assert_eq!(
        reserved_ids(&server, &a, "src/kept.rs", "kept-lease"),
        leases
    );

    // Enough other traffic through both logs for a snapshot, then kill -9 again: the key
    // comes back from the snapshot.
    let mut client = server.client();
    let body = "x".repeat(4000);
    for n in 0..400 {
        for filler in [&fill_0, &fill_1] {
            client.send(filler, &[filler], &format!("f{n}"), &body);
            if n % 50 == 49 {
                client.inbox(filler);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = client.get("/metrics").text();
        let snapshots: f64 = (0..2)
            .map(|shard| {
                let series = format!("allman_log_snapshots_total{{shard=\"{shard}\"}}");
                metric(&text, &series).unwrap_or(0.0)
            })
            .sum();
        if snapshots >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no snapshots: {snapshots}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.signal(libc::SIGKILL);
    let _ = server.take_child().wait();
    let server = Server::start_in(&server.dir, &[&["--shards", "2"][..], &compacting].concat());
    assert_eq!(repeat(&server, &a, &b, "kept-1"), first, "after compaction");
    assert_eq!(
        reserved_ids(&server, &a, "src/kept.rs", "kept-lease"),
        leases
    );

    // Another shard count moves every agent, with its history and keys.
    let mut server = server;
    assert!(server.terminate().success());
    let server = Server::start_in(&server.dir, &["--shards", "3"]);
    assert_eq!(repeat(&server, &a, &b, "kept-1"), first, "after a reshard");
    assert_eq!(
        reserved_ids(&server, &a, "src/kept.rs", "kept-lease"),
        leases
    );
}
