//! search_messages: visibility, document shape, limits, query syntax and the no-loss path.

mod common;

use common::mail::{send, trio};
use common::{Client, Server};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Polls a search until it returns at least `want` hits (bounded), returning the last hits.
fn search_until(client: &mut Client, query: &str, limit: usize, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = search(client, query, limit);
        if hits.len() >= want || Instant::now() > deadline {
            return hits;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn search(client: &mut Client, query: &str, limit: usize) -> Vec<Value> {
    let result = client.call_ok("search_messages", json!({"query": query, "limit": limit}));
    result.as_array().expect("hits array").clone()
}

fn setup(client: &mut Client, names: &[&str]) {
    for name in names {
        client.create_agent("search", name);
    }
}

#[test]
fn every_sent_message_becomes_searchable() {
    let server = Server::start();
    let mut client = server.client();
    setup(&mut client, &["Seeker", "Finder"]);
    let mut ids = HashSet::new();
    for n in 0..100 {
        let sent = client.send(
            "Seeker",
            &["Finder"],
            &format!("token{n}x"),
            "visibility check",
        );
        ids.insert(sent["id"].as_str().expect("id").to_string());
    }
    for n in 0..100 {
        let hits = search_until(&mut client, &format!("token{n}x"), 10, 1);
        assert_eq!(hits.len(), 1, "token{n}x not found");
        assert!(ids.contains(hits[0]["id"][0].as_str().expect("id")));
    }
    let all = search_until(&mut client, "visibility", 1000, 100);
    assert_eq!(all.len(), 100);
}

#[test]
fn documents_have_every_field_as_an_array_and_drained_mail_stays_searchable() {
    let server = Server::start();
    let mut client = server.client();
    setup(&mut client, &["Shaper", "RecipientOne", "RecipientTwo"]);
    let sent = client.send(
        "Shaper",
        &["RecipientOne", "RecipientTwo"],
        "Quarterly zebra report",
        "Ünïcödé body ✓ naïve café",
    );
    assert_eq!(
        client.inbox("RecipientOne").len(),
        1,
        "drain before searching"
    );
    let hits = search_until(&mut client, "zebra", 10, 1);
    assert_eq!(hits.len(), 1);
    let doc = &hits[0];
    for field in [
        "id",
        "project_id",
        "from",
        "to",
        "subject",
        "body",
        "timestamp",
    ] {
        assert!(doc[field].is_array(), "{field} must be an array: {doc}");
    }
    assert_eq!(doc["id"], json!([sent["id"]]));
    assert_eq!(doc["from"], json!(["Shaper"]));
    assert_eq!(doc["to"], json!(["RecipientOne", "RecipientTwo"]));
    assert_eq!(doc["subject"], json!(["Quarterly zebra report"]));
    assert_eq!(doc["body"], json!(["Ünïcödé body ✓ naïve café"]));
    let project = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"search").to_string();
    assert_eq!(doc["project_id"], json!([project]));
    // Unicode terms and exact-match field queries.
    assert_eq!(search_until(&mut client, "café", 10, 1).len(), 1);
    assert_eq!(search_until(&mut client, "from:Shaper", 10, 1).len(), 1);
    assert_eq!(search_until(&mut client, "to:RecipientTwo", 10, 1).len(), 1);
    assert!(search(&mut client, "from:Nobody", 10).is_empty());
}

#[test]
fn a_document_is_found_by_each_indexed_field_and_carries_its_id_and_timestamp() {
    let server = Server::start();
    let mut client = server.client();
    setup(&mut client, &["Indexer", "Reader"]);
    let sent = client.send("Indexer", &["Reader"], "walrus ledger", "the narwhal audit");
    let id = sent["id"].as_str().expect("id").to_string();
    let inboxed = client.inbox("Reader");
    let project = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"search").to_string();
    for query in [
        "walrus".to_string(),
        "narwhal".to_string(),
        "subject:ledger".to_string(),
        "body:audit".to_string(),
        "from:Indexer AND walrus".to_string(),
        "to:Reader AND narwhal".to_string(),
        format!("project_id:{project} AND walrus"),
    ] {
        let hits = search_until(&mut client, &query, 10, 1);
        assert_eq!(hits.len(), 1, "{query}");
        let doc = &hits[0];
        assert_eq!(doc["id"], json!([id]), "{query}");
        assert_eq!(doc["project_id"], json!([project]));
        // The same RFC 3339 millisecond timestamp the inbox gave.
        assert_eq!(doc["timestamp"], json!([inboxed[0]["timestamp"]]));
    }
    // Ids and timestamps are unique to a message: returned, never put in the term index.
    for query in [format!("id:{id}"), "timestamp:x".to_string()] {
        let message = client.call_err("search_messages", json!({"query": query}));
        assert!(message.contains("not searchable"), "{message}");
    }
}

#[test]
fn limit_caps_results_and_best_matches_come_first() {
    let server = Server::start();
    let mut client = server.client();
    setup(&mut client, &["Ranker"]);
    for n in 0..30 {
        client.send("Ranker", &["Ranker"], &format!("filler {n}"), "apple");
    }
    client.send(
        "Ranker",
        &["Ranker"],
        "apple apple apple",
        "apple apple apple apple",
    );
    let all = search_until(&mut client, "apple", 1000, 31);
    assert_eq!(all.len(), 31);
    let top = search(&mut client, "apple", 5);
    assert_eq!(top.len(), 5);
    assert_eq!(
        top[0]["subject"],
        json!(["apple apple apple"]),
        "highest score first"
    );
    assert_eq!(search(&mut client, "apple", 1).len(), 1);
}

#[test]
fn large_bodies_are_indexed() {
    let server = Server::start();
    let mut client = server.client();
    setup(&mut client, &["Big"]);
    let body = format!(
        "{} needleinhaystack {}",
        "lorem ".repeat(6_000),
        "ipsum ".repeat(6_000)
    );
    assert!(body.len() >= 64 * 1024 - 1000);
    client.send("Big", &["Big"], "big", &body);
    let hits = search_until(&mut client, "needleinhaystack", 10, 1);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["body"][0].as_str().map(str::len), Some(body.len()));
}

#[test]
fn bad_queries_and_limits_are_tool_errors() {
    let server = Server::start();
    let mut client = server.client();
    let message = client.call_err("search_messages", json!({"query": "subject:(unclosed"}));
    assert!(message.contains("query"), "{message}");
    let message = client.call_err("search_messages", json!({"query": "nosuchfield:x"}));
    assert!(message.contains("query"), "{message}");
    for arguments in [json!({"query": ""}), json!({"query": "   "}), json!({})] {
        let message = client.call_err("search_messages", arguments);
        assert!(message.contains("query"), "{message}");
    }
    for limit in [json!(0), json!(1001), json!("5"), json!(2.5)] {
        let message = client.call_err("search_messages", json!({"query": "a", "limit": limit}));
        assert!(message.contains("limit"), "{message}");
    }
    assert!(search(&mut client, "nothingmatchesthis", 10).is_empty());
}

#[test]
fn a_full_indexer_channel_loses_nothing() {
    // A channel of one forces almost every document through the shards' hold-and-retry path.
    let server = Server::start_with(&["--shards", "2", "--search-queue-depth", "1"]);
    let addr = server.addr;
    let mut client = server.client();
    setup(&mut client, &["Flood", "Sink"]);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for n in 0..100 {
                    client.send(
                        "Flood",
                        &["Sink"],
                        &format!("flood w{worker}n{n}"),
                        "floodmark",
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    let hits = search_until(&mut client, "floodmark", 1000, 400);
    assert_eq!(hits.len(), 400, "messages missing from search");
    let subjects: HashSet<String> = hits
        .iter()
        .map(|h| h["subject"][0].as_str().expect("subject").to_string())
        .collect();
    assert_eq!(subjects.len(), 400);
}

#[test]
fn shutdown_commits_every_message_to_the_index() {
    let mut server = Server::start();
    let index_path = server.dir.join("index");
    // While running, fresh segments and the metadata live in memory; the writer's lock is
    // on disk at INDEX_PATH.
    assert!(
        index_path.join(".tantivy-writer.lock").exists(),
        "index created at INDEX_PATH"
    );
    let mut client = server.client();
    setup(&mut client, &["Last"]);
    for n in 0..50 {
        client.send("Last", &["Last"], &format!("final{n}"), "");
    }
    // Stop at once: documents still in the channel or the writer must be committed on exit,
    // and the whole index written to disk.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let index = tantivy::Index::open_in_dir(&index_path).expect("open index");
    let reader = index.reader().expect("reader");
    assert_eq!(reader.searcher().num_docs(), 50);
}

#[test]
fn a_restart_keeps_the_index_and_without_durability_starts_empty() {
    let mut server = Server::start();
    let mut client = server.client();
    setup(&mut client, &["Old"]);
    client.send("Old", &["Old"], "kept", "");
    assert!(server.terminate().success());
    let mut restarted = Server::start_in(&server.dir, &["--shards", "2"]);
    let mut client = restarted.client();
    assert_eq!(
        search(&mut client, "kept", 10).len(),
        1,
        "mail of the last run is still found, exactly once"
    );
    assert!(restarted.terminate().success());
    let memory_only = Server::start_in(&server.dir, &["--durability", "none"]);
    let mut client = memory_only.client();
    assert!(
        search(&mut client, "kept", 10).is_empty(),
        "with --durability none the index starts empty, like the mail"
    );
}

#[test]
fn an_unusable_index_path_stops_start_up_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("allman-badindex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let precious = dir.join("precious.txt");
    std::fs::write(&precious, "do not delete").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--port", "0", "--shards", "1"])
        .env("INDEX_PATH", &dir)
        .env("DATA_DIR", dir.join("data"))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to delete"), "{stderr}");
    assert!(precious.exists(), "a foreign directory is never wiped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_server_on_the_same_index_path_is_refused() {
    let first = Server::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_allman"))
        .args(["--port", "0", "--shards", "1"])
        .env("INDEX_PATH", first.dir.join("index"))
        .env("REPO_ROOT", first.dir.join("other-repo"))
        .env("DATA_DIR", first.dir.join("other-data"))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    // The first server's index is intact and still serving.
    let mut client = first.client();
    setup(&mut client, &["StillHere"]);
    client.send("StillHere", &["StillHere"], "survivor", "");
    assert_eq!(search_until(&mut client, "survivor", 10, 1).len(), 1);
}

#[test]
fn search_matches_thread_ids_and_importance_exactly() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, _) = trio(&mut client, "Find");
    send(
        &mut client,
        json!({"from_agent": a, "to": [b], "subject": "alpha", "thread_id": "rel-9", "importance": "urgent"}),
    );
    send(
        &mut client,
        json!({"from_agent": a, "to": [b], "subject": "beta", "thread_id": "rel-10"}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = client.call_ok("search_messages", json!({"query": "thread_id:rel-9"}));
        let hits = hits.as_array().expect("hits");
        if hits.len() == 1 {
            assert_eq!(hits[0]["subject"], json!(["alpha"]));
            assert_eq!(hits[0]["importance"], json!(["urgent"]));
            break;
        }
        assert!(Instant::now() < deadline, "never searchable: {hits:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let urgent = client.call_ok("search_messages", json!({"query": "importance:urgent"}));
    assert_eq!(urgent.as_array().map(Vec::len), Some(1));
}
