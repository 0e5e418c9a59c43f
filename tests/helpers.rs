//! The search and git helper threads: their feeds are bounded in bytes, and a helper that dies
//! stops the server instead of leaving requests waiting on a queue nobody drains.
//!
//! These use fault-injection hooks compiled into debug builds only (see
//! `src/search/indexer.rs`).
#![cfg(debug_assertions)]

mod common;

use common::{wait_with_deadline, Server};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pending_bytes(server: &Server) -> f64 {
    let text = server.client().get("/metrics").text();
    common::metric(&text, "allman_search_pending_bytes").expect("pending bytes gauge")
}

#[test]
fn a_stalled_indexer_makes_senders_wait_within_the_byte_budget_and_loses_nothing() {
    let pause = std::env::temp_dir().join(format!("allman-pause-{}", std::process::id()));
    std::fs::write(&pause, b"").expect("pause file");
    let server = Server::start_with_env(
        &["--shards", "2", "--search-queue-bytes", "4096"],
        &[("ALLMAN_TEST_PAUSE_INDEXER", pause.to_str().expect("utf8"))],
    );
    server.client().create_agent("p", "Stalled");
    // Each send charges its text, its thread id and its recipients' names: 7 ("Stalled") + 1
    // ("s") + 1011 (body) + 36 (the thread id: the message's own) + 7 (the recipient) = 1062
    // bytes. Three fit in 4096; a fourth would overshoot.
    let body = format!("budgetword {}", "b".repeat(1000));
    const CHARGE: usize = 7 + 1 + 1011 + 36 + 7;
    let answered = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let mut client = server.client();
            let answered = Arc::clone(&answered);
            let body = body.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    client.send("Stalled", &["Stalled"], "s", &body);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        answered.load(Ordering::SeqCst),
        4096 / CHARGE,
        "sends answered while the indexer took nothing"
    );
    assert_eq!(pending_bytes(&server), (4096 / CHARGE * CHARGE) as f64);

    std::fs::remove_file(&pause).expect("unpause");
    for sender in senders {
        sender.join().expect("sender");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 40);
    // Nothing was lost: every message is delivered and, soon, searchable.
    assert_eq!(server.client().inbox("Stalled").len(), 40);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = server.client().call_ok(
            "search_messages",
            json!({"query": "budgetword", "limit": 100}),
        );
        let found = hits.as_array().expect("hits").len();
        if found == 40 {
            break;
        }
        assert!(Instant::now() < deadline, "only {found} of 40 searchable");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pending_bytes(&server), 0.0);
}

#[test]
fn a_dead_indexer_stops_the_server_with_its_cause_and_no_request_hangs() {
    let mut server = Server::start_with_env(
        &["--shards", "2"],
        &[("ALLMAN_TEST_PANIC_SUBJECT", "fail-the-indexer")],
    );
    let mut client = server.client();
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client.create_agent("p", "Doomed");
    client.send("Doomed", &["Doomed"], "fail-the-indexer", "x");
    let mut child = server.take_child();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(
        server.wait_for_log("search indexer", Duration::from_secs(5)),
        "the log names the helper"
    );
    assert!(server.wait_for_log("told to fail", Duration::from_secs(5)));
    // The connection is closed, not left waiting.
    assert!(client.is_closed_by_server());
}

/// A hand-off to Tantivy or a commit that fails (a full disk, an I/O error) must not let the
/// index record the lost documents as indexed: the server stops, and the next start indexes
/// them again.
#[test]
fn a_failed_hand_off_or_commit_stops_the_server_and_the_next_start_indexes_the_message() {
    for hook in [
        "ALLMAN_TEST_FAIL_HAND_OFF_SUBJECT",
        "ALLMAN_TEST_FAIL_COMMIT_SUBJECT",
    ] {
        stops_and_the_next_start_indexes(hook);
    }
}

fn stops_and_the_next_start_indexes(hook: &str) {
    let mut server = Server::start_with_env(&["--shards", "2"], &[(hook, "lost-in-indexing")]);
    let status =
        send_until_the_indexer_stops(&mut server, "Handed", "lost-in-indexing", "handoffword");
    assert_eq!(status.code(), Some(1), "{hook}: {status:?}");
    assert!(
        server.wait_for_log("search indexer", Duration::from_secs(5)),
        "{hook}: the log names the helper"
    );
    let restarted = Server::start_in(&server.dir, &["--shards", "2"]);
    found_times(&mut restarted.client(), "handoffword", 1, hook);
}

/// Registers `agent` and sends it a message with `subject` (one a test hook makes the
/// indexer fail on) and `body`, then waits for the server to exit.
fn send_until_the_indexer_stops(
    server: &mut Server,
    agent: &str,
    subject: &str,
    body: &str,
) -> std::process::ExitStatus {
    let mut client = server.client();
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client.create_agent("p", agent);
    // Durable before the indexer sees it, whether or not the reply beats the stop.
    let _ = client.call(
        "send_message",
        json!({"from_agent": agent, "to": [agent], "subject": subject, "body": body}),
    );
    wait_with_deadline(&mut server.take_child(), Duration::from_secs(20))
}

/// Searches until `word` is found `expected` times, or fails after 20 s.
fn found_times(client: &mut common::Client, word: &str, expected: usize, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = client.call_ok("search_messages", json!({"query": word, "limit": 50}));
        let found = hits.as_array().expect("hits").len();
        if found == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: found {found} of {word}, not {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn after_the_log_is_wiped_the_index_takes_the_new_logs_records_from_its_start() {
    // The first log: eight records, so the index's watermark ends past the new log's first
    // few positions.
    let mut first = Server::start_with(&["--shards", "1"]);
    let mut client = first.client();
    client.create_agent("p", "Wiped");
    for n in 0..6 {
        client.send("Wiped", &["Wiped"], &format!("old {n}"), "oldword");
    }
    found_times(&mut client, "oldword", 6, "before the wipe");
    let dir = first.dir.clone();
    assert!(first.terminate().success());
    // The documented way to start over with the mail: a wiped log. Generation 1 again.
    std::fs::remove_dir_all(dir.join("data").join("log")).expect("wipes the log");
    let hook = [("ALLMAN_TEST_FAIL_COMMIT_SUBJECT", "after-wipe")];
    let mut server = Server::start_in_with_env(&dir, &["--shards", "1"], &hook);
    // Logged at position 1 or 2 of the new log; its commit fails, so only the log has it.
    let status = send_until_the_indexer_stops(&mut server, "Wiped", "after-wipe", "newword");
    assert_eq!(status.code(), Some(1), "the failed commit stops the server");
    let restarted = Server::start_in(&dir, &["--shards", "1"]);
    let mut client = restarted.client();
    found_times(
        &mut client,
        "newword",
        1,
        "the old log's positions must not pass for the new log's",
    );
    found_times(&mut client, "oldword", 6, "the old mail stays searchable");
}
