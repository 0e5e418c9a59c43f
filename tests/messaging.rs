//! Messaging for coordinating agents (issue #15), over real HTTP on a real socket: delivery
//! logs read without draining, retention, threads and replies, acknowledgements and the
//! roster. Waiting for mail is `waiting.rs`, per-agent tokens `agent_tokens.rs`, surviving
//! kill -9 `durability.rs`, search `search.rs`.

mod common;

use common::mail::{fetch, id_of, ids, send, seqs, trio};
use common::{names_on_same_shard, Server};
use serde_json::{json, Value};
use std::time::Duration;

const SHARDS: usize = 2;

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
