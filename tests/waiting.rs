//! Waiting for mail (`wait_for_mail`) over a real socket: it wakes on new mail, times out,
//! never drains, and its waiters are bounded, freed by a hang-up and answered at shutdown.

mod common;

use common::mail::{id_of, ids, send, seqs};
use common::{metric, names_on_different_shards, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SHARDS: usize = 2;

#[test]
fn wait_for_mail_wakes_on_new_mail_times_out_and_never_drains() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b) = names_on_different_shards("Wait", SHARDS);
    client.create_agent("wait", &a);
    client.create_agent("wait", &b);
    for waiter in [&a, &b] {
        let addr = server.addr;
        let waiter_name = waiter.clone();
        let handle = std::thread::spawn(move || {
            let mut waiting = common::Client::connect(addr);
            waiting.call_ok(
                "wait_for_mail",
                json!({"agent_name": waiter_name, "timeout_ms": 20000}),
            )
        });
        wait_for_waiters(&server, 1);
        let sender = if waiter == &a { &b } else { &a };
        let sent = client.send(sender, &[waiter], "wake", "up");
        let woke = handle.join().expect("waiter");
        assert_eq!(ids(&woke), vec![id_of(&sent)], "{waiter}");
        assert_eq!(woke["messages"][0]["drained"], false);
        assert_eq!(
            woke["messages"][0]["read_at"],
            Value::Null,
            "waiting never marks read"
        );
        assert_eq!(client.inbox(waiter).len(), 1, "and never drains");
    }
    // Mail already there past the cursor answers at once; none past it waits and times out.
    let started = Instant::now();
    let timed_out = client.call_ok(
        "wait_for_mail",
        json!({"agent_name": a, "after": 1, "timeout_ms": 300}),
    );
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    assert_eq!(timed_out["messages"], json!([]));
    assert_eq!(timed_out["next_after"], 1, "the same cursor");
    let now = client.call_ok(
        "wait_for_mail",
        json!({"agent_name": a, "after": 0, "timeout_ms": 50000}),
    );
    assert_eq!(seqs(&now), vec![1]);
    // urgent_only ignores other mail.
    let addr = server.addr;
    let (a2, b2) = (a.clone(), b.clone());
    let handle = std::thread::spawn(move || {
        let mut waiting = common::Client::connect(addr);
        waiting.call_ok(
            "wait_for_mail",
            json!({"agent_name": a2, "after": 1, "urgent_only": true, "timeout_ms": 20000}),
        )
    });
    wait_for_waiters(&server, 1);
    client.send(&b2, &[&a], "routine", "");
    std::thread::sleep(Duration::from_millis(100));
    let urgent = id_of(&send(
        &mut client,
        json!({"from_agent": b, "to": [a], "importance": "urgent"}),
    ));
    let woke = handle.join().expect("waiter");
    assert_eq!(ids(&woke), vec![urgent]);
    wait_for_no_waiters(&server);
    for (arguments, name) in [
        (json!({"agent_name": a, "timeout_ms": 50001}), "timeout_ms"),
        (json!({"agent_name": a, "limit": 0}), "limit"),
        (json!({"agent_name": a, "after": 99}), "after"),
        (json!({"agent_name": "Nobody"}), "Nobody"),
    ] {
        let error = client.call_err("wait_for_mail", arguments.clone());
        assert!(error.contains(name), "{arguments}: {error}");
    }
}

fn waiters(server: &Server) -> u64 {
    let text = server.client().get("/metrics").text();
    (0..SHARDS)
        .map(|s| {
            metric(&text, &format!("allman_shard_waiters{{shard=\"{s}\"}}")).unwrap_or(0.0) as u64
        })
        .sum()
}

/// Waits (bounded) until `count` long polls are parked; the gauges refresh every second.
fn wait_for_waiters(server: &Server, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiters(server) < count {
        assert!(Instant::now() < deadline, "never saw {count} waiters");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until no long poll is parked: a waiter whose client left is freed.
fn wait_for_no_waiters(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiters(server) > 0 {
        assert!(Instant::now() < deadline, "a waiter was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn waiters_are_bounded_freed_by_a_hang_up_and_answered_at_shutdown() {
    let mut server = Server::start_with(&["--shards", "2", "--max-waiters", "2"]);
    let mut client = server.client();
    let names: Vec<String> = (0..3).map(|n| format!("Parked{n}")).collect();
    for name in &names {
        client.create_agent("parked", name);
    }
    // A client that hangs up frees its waiter.
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "wait_for_mail", "arguments": {"agent_name": names[0], "timeout_ms": 50000}}});
    let mut quitter = common::Client::connect(server.addr);
    let body = request.to_string();
    quitter.send_raw(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    wait_for_waiters(&server, 1);
    drop(quitter);
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiters(&server) > 0 {
        assert!(
            Instant::now() < deadline,
            "the hung-up waiter was never freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The shard bound: every connection here may land on either shard, so fill both.
    let mut handles = Vec::new();
    for name in names.iter().take(2) {
        let (addr, name) = (server.addr, name.clone());
        handles.push(std::thread::spawn(move || {
            let started = Instant::now();
            let mut waiting = common::Client::connect(addr);
            let result = waiting.call(
                "wait_for_mail",
                json!({"agent_name": name, "timeout_ms": 50000}),
            );
            (result, started.elapsed())
        }));
    }
    wait_for_waiters(&server, 2);
    // SIGTERM answers every waiter at once, and the server exits.
    let stopping = Instant::now();
    assert!(server.terminate().success());
    for handle in handles {
        let (result, waited) = handle.join().expect("waiter");
        assert_eq!(result["isError"], false, "{result}");
        assert_eq!(result["structuredContent"]["messages"], json!([]));
        assert!(
            waited < Duration::from_secs(50),
            "answered before its timeout"
        );
    }
    assert!(stopping.elapsed() < Duration::from_secs(30));
}

#[test]
fn past_the_waiter_bound_a_wait_is_refused_clearly() {
    let server = Server::start_with(&["--shards", "1", "--max-waiters", "1"]);
    let mut client = server.client();
    client.create_agent("bound", "BoundA");
    client.create_agent("bound", "BoundB");
    let addr = server.addr;
    let handle = std::thread::spawn(move || {
        let mut waiting = common::Client::connect(addr);
        waiting.call_ok(
            "wait_for_mail",
            json!({"agent_name": "BoundA", "timeout_ms": 20000}),
        )
    });
    wait_for_waiters(&server, 1);
    let error = client.call_err(
        "wait_for_mail",
        json!({"agent_name": "BoundB", "timeout_ms": 1000}),
    );
    assert!(
        error.contains("too many wait_for_mail calls") && error.contains("at most 1"),
        "{error}"
    );
    client.send("BoundB", &["BoundA"], "free", "");
    assert_eq!(
        handle.join().expect("waiter")["messages"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
