//! Messaging for coordinating agents (issue #15), over real HTTP on a real socket: delivery
//! logs read without draining, threads and replies, acknowledgements, waiting for mail, the
//! roster, per-agent tokens, and all of it surviving kill -9.

mod common;

use common::{metric, names_on_different_shards, names_on_same_shard, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SHARDS: usize = 2;

fn fetch(client: &mut common::Client, agent: &str, extra: Value) -> Value {
    let mut arguments = json!({"agent_name": agent});
    for (key, value) in extra.as_object().expect("object") {
        arguments[key] = value.clone();
    }
    client.call_ok("fetch_inbox", arguments)
}

fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

fn id_of(sent: &Value) -> String {
    sent["id"].as_str().expect("id").to_string()
}

fn send(client: &mut common::Client, arguments: Value) -> Value {
    client.call_ok("send_message", arguments)
}

/// Three agents in one project: two on different shards, and a third.
fn trio(client: &mut common::Client, prefix: &str) -> (String, String, String) {
    let (a, b) = names_on_different_shards(prefix, SHARDS);
    let c = format!("{prefix}Third");
    for name in [&a, &b, &c] {
        client.create_agent(prefix, name);
    }
    (a, b, c)
}

#[test]
fn a_send_with_cc_reaches_everyone_once_and_fetch_reads_without_draining() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, c) = trio(&mut client, "Cc");
    let sent = send(
        &mut client,
        json!({"from_agent": a, "to": [b], "cc": [c, b], "subject": "plan", "body": "read me",
               "importance": "high", "ack_required": true}),
    );
    assert_eq!(sent["status"], "sent");
    let id = id_of(&sent);
    assert_eq!(
        sent["thread_id"],
        id.as_str(),
        "a new thread is named by its first message"
    );

    // Read-your-writes on every recipient's owner; fetching twice changes nothing.
    for (reader, kind) in [(&b, "to"), (&c, "cc")] {
        for _ in 0..2 {
            let page = fetch(&mut client, reader, json!({}));
            assert_eq!(ids(&page), vec![id.clone()], "{reader}");
            let message = &page["messages"][0];
            assert_eq!(message["kind"], kind);
            assert_eq!(message["seq"], 1);
            assert_eq!(message["to"], json!([b]));
            assert_eq!(
                message["cc"],
                json!([c]),
                "b in both lists is listed once, in to"
            );
            assert_eq!(message["importance"], "high");
            assert_eq!(message["ack_required"], true);
            assert_eq!(message["drained"], false);
            assert_eq!(message["read_at"], Value::Null);
            assert_eq!(message["body"], "read me");
            assert_eq!(
                page["counts"],
                json!({"unread": 1, "urgent_unread": 0, "ack_pending": 1})
            );
            assert_eq!(
                (page["next_after"].as_u64(), page["has_more"].as_bool()),
                (Some(1), Some(false))
            );
        }
    }
    // The sender sees its own message in the thread.
    let thread = client.call_ok("get_thread", json!({"agent_name": a, "thread_id": id}));
    assert_eq!(ids(&thread), vec![id.clone()]);
    assert_eq!(
        thread["messages"][0].get("seq"),
        None,
        "a sent message has no delivery state"
    );
    let mut participants: Vec<String> = vec![a.clone(), b.clone(), c.clone()];
    participants.sort();
    assert_eq!(thread["participants"], json!(participants));
}

#[test]
fn get_inbox_drains_once_marks_read_and_drained_mail_stays_readable() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, _) = trio(&mut client, "Drain");
    let first = id_of(&client.send(&a, &[&b], "one", "1"));
    let second = id_of(&client.send(&a, &[&b], "two", "2"));
    let drained = client.inbox(&b);
    assert_eq!(drained.len(), 2);
    assert_eq!(drained[0]["seq"], 1);
    assert_eq!(drained[1]["thread_id"], second.as_str());
    assert!(client.inbox(&b).is_empty(), "exactly once");
    let page = fetch(&mut client, &b, json!({}));
    assert_eq!(ids(&page), vec![first, second]);
    for message in page["messages"].as_array().expect("messages") {
        assert_eq!(message["drained"], true);
        assert!(
            message["read_at"].is_string(),
            "a drain marks read: {message}"
        );
        assert_eq!(
            message["acked_at"],
            Value::Null,
            "a drain never acknowledges"
        );
    }
    assert_eq!(page["counts"]["unread"], 0);
}

#[test]
fn retention_evicts_drained_mail_first_and_never_undrained_mail() {
    let server = Server::start_with(&["--shards", "2", "--max-retained-messages", "3"]);
    let mut client = server.client();
    let (a, b) = names_on_same_shard("Keep", SHARDS);
    client.create_agent("keep", &a);
    client.create_agent("keep", &b);
    for n in 1..=2 {
        client.send(&a, &[&b], &format!("old{n}"), "x");
    }
    client.inbox(&b);
    for n in 3..=6 {
        client.send(&a, &[&b], &format!("new{n}"), "x");
    }
    let page = fetch(&mut client, &b, json!({}));
    assert_eq!(
        seqs(&page),
        vec![1, 2, 3, 4, 5, 6],
        "the bound holds the history (2 drained); undrained mail is the inbox's"
    );
    assert_eq!(client.inbox(&b).len(), 4, "nothing undrained was lost");
    let page = fetch(&mut client, &b, json!({}));
    assert_eq!(seqs(&page), vec![4, 5, 6], "now drained, the oldest went");
    assert_eq!(
        page["skipped"], 3,
        "a cursor below retention says what it missed"
    );
    let skipped = fetch(&mut client, &b, json!({"after": 1, "limit": 1}));
    assert_eq!(seqs(&skipped), vec![4]);
    assert_eq!(
        skipped["skipped"], 2,
        "seq 2 and 3 were evicted past the cursor"
    );
    assert_eq!(skipped["has_more"], true);
}

#[test]
fn fetch_inbox_cursors_filters_and_bounds() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, _) = trio(&mut client, "Cursor");
    let urgent = id_of(&send(
        &mut client,
        json!({"from_agent": a, "to": [b], "subject": "u", "importance": "urgent", "thread_id": "ops-1"}),
    ));
    let normal = id_of(&client.send(&a, &[&b], "n", "body"));
    let peek = fetch(&mut client, &b, json!({"limit": 0}));
    assert_eq!(peek["messages"], json!([]));
    assert_eq!(peek["next_after"], 2, "the cursor of the newest delivery");
    assert_eq!(
        peek["counts"],
        json!({"unread": 2, "urgent_unread": 1, "ack_pending": 0})
    );
    assert_eq!(
        ids(&fetch(&mut client, &b, json!({"after": 1}))),
        vec![normal.clone()]
    );
    assert_eq!(
        ids(&fetch(&mut client, &b, json!({"urgent_only": true}))),
        vec![urgent.clone()]
    );
    assert_eq!(
        ids(&fetch(&mut client, &b, json!({"thread_id": "ops-1"}))),
        vec![urgent.clone()]
    );
    client.call_ok(
        "mark_message_read",
        json!({"agent_name": b, "message_ids": [urgent]}),
    );
    assert_eq!(
        ids(&fetch(&mut client, &b, json!({"unread_only": true}))),
        vec![normal]
    );
    let bare = fetch(&mut client, &b, json!({"include_bodies": false}));
    assert!(bare["messages"][0].get("body").is_none(), "{bare}");
    assert_eq!(
        fetch(&mut client, &b, json!({"after": 2}))["messages"],
        json!([])
    );

    let error = client.call_err("fetch_inbox", json!({"agent_name": b, "after": 3}));
    assert!(
        error.contains("'after'") && error.contains("never issued"),
        "{error}"
    );
    let error = client.call_err("fetch_inbox", json!({"agent_name": "Nobody"}));
    assert!(error.contains("unknown agent 'Nobody'"), "{error}");
    for (arguments, name) in [
        (json!({"agent_name": b, "limit": 201}), "limit"),
        (json!({"agent_name": b, "limit": -1}), "limit"),
        (json!({"agent_name": b, "after": "1"}), "after"),
        (
            json!({"agent_name": b, "urgent_only": "yes"}),
            "urgent_only",
        ),
        (
            json!({"agent_name": b, "thread_id": "no spaces"}),
            "thread_id",
        ),
        (json!({}), "agent_name"),
    ] {
        let error = client.call_err("fetch_inbox", arguments.clone());
        assert!(error.contains(&format!("'{name}'")), "{arguments}: {error}");
    }
    let mut many = Vec::new();
    for n in 0..205 {
        many.push(id_of(&client.send(&a, &[&b], &format!("m{n}"), "")));
    }
    let page = fetch(&mut client, &b, json!({"after": 2, "limit": 200}));
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(200));
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_after"], 202);
}

#[test]
fn send_message_refuses_bad_new_arguments_naming_them_and_stays_all_or_nothing() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, _) = trio(&mut client, "Bad");
    for (extra, name) in [
        (json!({"importance": "critical"}), "importance"),
        (json!({"ack_required": 1}), "ack_required"),
        (json!({"thread_id": "x".repeat(129)}), "thread_id"),
        (json!({"thread_id": "a/b"}), "thread_id"),
        (json!({"cc": "Bob"}), "cc"),
    ] {
        let mut arguments = json!({"from_agent": a, "to": [b]});
        for (key, value) in extra.as_object().expect("object") {
            arguments[key] = value.clone();
        }
        let error = client.call_err("send_message", arguments.clone());
        assert!(error.contains(&format!("'{name}'")), "{arguments}: {error}");
    }
    let error = client.call_err(
        "send_message",
        json!({"from_agent": a, "to": [b], "cc": ["Ghost"], "thread_id": "refused-1"}),
    );
    assert!(
        error.contains("Ghost") && error.contains("nothing was delivered"),
        "{error}"
    );
    assert_eq!(fetch(&mut client, &b, json!({}))["messages"], json!([]));
    let error = client.call_err(
        "get_thread",
        json!({"agent_name": a, "thread_id": "refused-1"}),
    );
    assert!(
        error.contains("unknown thread"),
        "the sender keeps no copy either: {error}"
    );
}

#[test]
fn replies_keep_the_thread_and_default_sensibly() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, c) = trio(&mut client, "Reply");
    let opener = send(
        &mut client,
        json!({"from_agent": a, "to": [b], "cc": [c], "subject": "deploy?", "body": "ok to ship",
               "importance": "urgent", "ack_required": true}),
    );
    let opener_id = id_of(&opener);
    let reply = client.call_ok(
        "reply_message",
        json!({"from_agent": b, "message_id": opener_id, "body": "yes"}),
    );
    assert_eq!(reply["thread_id"], opener_id.as_str());
    let got = fetch(&mut client, &a, json!({}));
    let message = &got["messages"][0];
    assert_eq!(message["subject"], "Re: deploy?");
    assert_eq!(message["reply_to"], opener_id.as_str());
    assert_eq!(message["thread_id"], opener_id.as_str());
    assert_eq!(message["from"], b.as_str());
    assert_eq!(message["to"], json!([a]), "to the parent's sender");
    assert_eq!(
        (
            message["importance"].clone(),
            message["ack_required"].clone()
        ),
        (json!("urgent"), json!(true))
    );
    // A reply to a reply: the subject is not doubled; overrides win.
    let second = client.call_ok(
        "reply_message",
        json!({"from_agent": a, "message_id": id_of(&reply), "body": "shipping", "importance": "low", "ack_required": false}),
    );
    let message = &fetch(&mut client, &b, json!({"after": 1}))["messages"][0];
    assert_eq!(message["id"], second["id"]);
    assert_eq!(message["subject"], "Re: deploy?");
    assert_eq!(
        (
            message["importance"].clone(),
            message["ack_required"].clone()
        ),
        (json!("low"), json!(false))
    );
    // The sender of the parent replying goes to the parent's recipients, cc kept.
    let follow_up = client.call_ok(
        "reply_message",
        json!({"from_agent": a, "message_id": opener_id, "body": "also"}),
    );
    let seen_by_c = fetch(&mut client, &c, json!({"after": 1}));
    assert_eq!(ids(&seen_by_c), vec![id_of(&follow_up)]);
    assert_eq!(seen_by_c["messages"][0]["kind"], "cc");
    // The whole thread as b took part in it, oldest first, then paged.
    let thread = client.call_ok(
        "get_thread",
        json!({"agent_name": b, "thread_id": opener_id}),
    );
    assert_eq!(
        ids(&thread),
        vec![
            opener_id.clone(),
            id_of(&reply),
            id_of(&second),
            id_of(&follow_up)
        ]
    );
    let page = client.call_ok(
        "get_thread",
        json!({"agent_name": b, "thread_id": opener_id, "limit": 2}),
    );
    assert_eq!(page["has_more"], true);
    let rest = client.call_ok(
        "get_thread",
        json!({"agent_name": b, "thread_id": opener_id, "after": page["next_after"]}),
    );
    assert_eq!(ids(&rest), vec![id_of(&second), id_of(&follow_up)]);
    // Only a participant may reply, and unknown threads are errors.
    let outsider = "ReplyOutsider";
    client.create_agent("Reply", outsider);
    let error = client.call_err(
        "reply_message",
        json!({"from_agent": outsider, "message_id": opener_id, "body": "me too"}),
    );
    assert!(error.contains("only a participant may reply"), "{error}");
    let error = client.call_err(
        "get_thread",
        json!({"agent_name": outsider, "thread_id": opener_id}),
    );
    assert!(error.contains("unknown thread"), "{error}");
    let error = client.call_err(
        "get_thread",
        json!({"agent_name": b, "thread_id": opener_id, "limit": 501}),
    );
    assert!(error.contains("'limit'"), "{error}");
}

#[test]
fn acknowledgements_and_reads_are_idempotent_and_report_what_was_not_found() {
    let server = Server::start();
    let mut client = server.client();
    let (a, b, _) = trio(&mut client, "Ack");
    let id = id_of(&send(
        &mut client,
        json!({"from_agent": a, "to": [b], "ack_required": true}),
    ));
    let stranger = "00000000-0000-7000-8000-000000000000";
    let first = client.call_ok(
        "acknowledge_message",
        json!({"agent_name": b, "message_ids": [id, stranger]}),
    );
    assert_eq!(first["changed"], 1);
    assert_eq!(first["not_found"], json!([stranger]));
    let acked_at = first["messages"][0]["acked_at"].clone();
    assert!(acked_at.is_string());
    assert_eq!(
        first["messages"][0]["read_at"], acked_at,
        "acknowledging reads too"
    );
    std::thread::sleep(Duration::from_millis(5));
    let again = client.call_ok(
        "acknowledge_message",
        json!({"agent_name": b, "message_ids": [id]}),
    );
    assert_eq!(again["changed"], 0);
    assert_eq!(
        again["messages"][0]["acked_at"], acked_at,
        "the first time is kept"
    );
    let page = fetch(&mut client, &b, json!({}));
    assert_eq!(page["messages"][0]["acked_at"], acked_at);
    assert_eq!(page["counts"]["ack_pending"], 0);
    let error = client.call_err(
        "mark_message_read",
        json!({"agent_name": b, "message_ids": [stranger]}),
    );
    assert!(error.contains("none of the 1 message id"), "{error}");
    let error = client.call_err(
        "acknowledge_message",
        json!({"agent_name": a, "message_ids": [id]}),
    );
    assert!(
        error.contains("none of"),
        "the sender has no delivery of it: {error}"
    );
    for (ids, what) in [
        (json!([]), "empty"),
        (json!(["nope"]), "not a uuid"),
        (json!(vec![stranger; 1001]), "too many"),
    ] {
        let error = client.call_err(
            "mark_message_read",
            json!({"agent_name": b, "message_ids": ids}),
        );
        assert!(error.contains("'message_ids'"), "{what}: {error}");
    }
}

#[test]
fn list_agents_shows_the_roster_most_recently_active_first() {
    let server = Server::start();
    let mut client = server.client();
    let names: Vec<String> = (0..5).map(|n| format!("Roster{n}")).collect();
    for name in &names {
        client.call_ok(
            "create_agent",
            json!({"project_key": "roster", "name_hint": name, "program": "p", "task_description": format!("task of {name}")}),
        );
    }
    client.create_agent("elsewhere", "RosterOther");
    std::thread::sleep(Duration::from_millis(20));
    fetch(&mut client, &names[2], json!({"limit": 0}));
    let listed = client.call_ok("list_agents", json!({"project_key": "roster"}));
    let agents = listed["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 5, "only this project's agents");
    assert_eq!(
        agents[0]["name"],
        names[2].as_str(),
        "the last to act comes first"
    );
    assert_eq!(
        agents[0]["task_description"],
        format!("task of {}", names[2])
    );
    assert!(agents
        .iter()
        .all(|a| a["created"].is_string() && a["last_active"].is_string()));
    let by_id = client.call_ok(
        "list_agents",
        json!({"project_id": listed["project_id"], "limit": 2}),
    );
    assert_eq!(by_id["agents"].as_array().map(Vec::len), Some(2));
    let recent = client.call_ok(
        "list_agents",
        json!({"project_key": "roster", "active_within_s": 3600}),
    );
    assert_eq!(recent["agents"].as_array().map(Vec::len), Some(5));
    let error = client.call_err("list_agents", json!({}));
    assert!(error.contains("'project_key'"), "{error}");
    let error = client.call_err(
        "list_agents",
        json!({"project_key": "roster", "limit": 1001}),
    );
    assert!(error.contains("'limit'"), "{error}");
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

#[test]
fn deliveries_read_and_ack_state_and_threads_survive_kill_9() {
    let mut server = Server::start();
    let mut client = server.client();
    let (a, b, c) = trio(&mut client, "Crash");
    let opener = id_of(&send(
        &mut client,
        json!({"from_agent": a, "to": [b], "cc": [c], "subject": "s", "ack_required": true, "thread_id": "crash-1"}),
    ));
    let reply = id_of(&client.call_ok(
        "reply_message",
        json!({"from_agent": b, "message_id": opener, "body": "r"}),
    ));
    client.call_ok(
        "acknowledge_message",
        json!({"agent_name": b, "message_ids": [opener]}),
    );
    client.inbox(&c);
    let before: Vec<Value> = [&a, &b, &c]
        .iter()
        .map(|n| fetch(&mut client, n, json!({})))
        .collect();
    let thread_before = client.call_ok(
        "get_thread",
        json!({"agent_name": a, "thread_id": "crash-1"}),
    );
    assert_eq!(ids(&thread_before), vec![opener.clone(), reply.clone()]);

    server.signal(libc::SIGKILL);
    let _ = server.take_child().wait();
    let restarted = Server::start_in(&server.dir, &["--shards", "2"]);
    let mut client = restarted.client();
    for (name, page) in [&a, &b, &c].iter().zip(&before) {
        let after = fetch(&mut client, name, json!({}));
        assert_eq!(after["messages"], page["messages"], "{name}");
        assert_eq!(after["counts"], page["counts"], "{name}");
    }
    let thread_after = client.call_ok(
        "get_thread",
        json!({"agent_name": a, "thread_id": "crash-1"}),
    );
    assert_eq!(thread_after["messages"], thread_before["messages"]);
    // Sequence numbers continue, never reused.
    client.send(&a, &[&c], "after", "");
    assert_eq!(seqs(&fetch(&mut client, &c, json!({"after": 1}))), vec![2]);
}
